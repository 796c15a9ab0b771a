//! The pass pipeline: runs the rewrite passes in order on an imported graph, records what
//! each changed and which nodes were fused into which, then annotates levels
//! (`assign_levels`) and selects parameters (`select_params`, with the runtime's 128-bit
//! security table).
//!
//! Order: fold_identity, fuse_conv_bn, fuse_linear_bn, fuse_bn_poly, fuse_residual_poly,
//! redistribute_pool, redistribute_leading. Each pass is checked against the f64
//! interpreter by its own property tests; `check_equivalence` lets callers re-check a
//! concrete model.

use std::collections::HashMap;

use passes::assign_levels::{self, LevelPlan};
use passes::ir::{Graph, Tensor};
use passes::pass::{PassError, PassReport};
use passes::select_params::{self, ParamError, ParamRequest, ParamSet};

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("interpreter: {0}")]
    Interpret(#[from] passes::interpret::InterpretError),
}

type PassFn = fn(&mut Graph) -> Result<PassReport, PassError>;

/// The rewrite passes, in order.
pub const PASSES: [(&str, PassFn); 7] = [
    ("fold_identity", passes::fold_identity::run),
    ("fuse_conv_bn", passes::fuse_conv_bn::run),
    ("fuse_linear_bn", passes::fuse_linear_bn::run),
    ("fuse_bn_poly", passes::fuse_bn_poly::run),
    ("fuse_residual_poly", passes::fuse_residual_poly::run),
    ("redistribute_pool", passes::redistribute_pool::run),
    ("redistribute_leading", passes::redistribute_leading::run),
];

/// The graph after the rewrite passes.
#[derive(Clone, Debug)]
pub struct Rewritten {
    pub graph: Graph,
    pub reports: Vec<PassReport>,
    /// For a node name: the names of the nodes fused into it.
    pub fused_from: HashMap<String, Vec<String>>,
}

/// Runs the rewrite passes.
pub fn rewrite(mut graph: Graph) -> Result<Rewritten, PipelineError> {
    let mut reports = vec![];
    let mut fused_from: HashMap<String, Vec<String>> = HashMap::new();
    for (_, pass) in PASSES {
        let rep = pass(&mut graph)?;
        for c in &rep.changes {
            if !c.absorbed.is_empty() {
                let mut all = vec![];
                for a in &c.absorbed {
                    all.push(a.clone());
                    if let Some(inner) = fused_from.remove(a) {
                        all.extend(inner);
                    }
                }
                fused_from.entry(c.node.clone()).or_default().extend(all);
            }
        }
        reports.push(rep);
    }
    graph.remove_dead();
    graph.validate().map_err(PassError::from)?;
    Ok(Rewritten {
        graph,
        reports,
        fused_from,
    })
}

/// The 128-bit table of the runtime.
pub fn security_table(log_n: u32) -> Option<u32> {
    runtime::ckks::security::max_log_qp_128(log_n)
}

/// Security level (bits) of a parameter set per the runtime's table.
pub fn security_bits(p: &ParamSet) -> Option<u32> {
    runtime::ckks::security::security_level(p.log_n, p.log_qp as f64)
}

/// Everything `inspect` and the lowering need.
#[derive(Debug)]
pub struct Planned {
    pub rewritten: Rewritten,
    pub plan: LevelPlan,
    pub params: ParamSet,
}

/// Smallest log_n whose N/2 slots hold one input channel (per-channel layout).
pub fn min_log_n(g: &Graph) -> u32 {
    let hw: usize = g
        .inputs()
        .iter()
        .map(|&i| g.node(i).shape.iter().skip(2).product::<usize>())
        .max()
        .unwrap_or(1);
    (hw.max(1).next_power_of_two().trailing_zeros() + 1).max(10)
}

/// Rewrites, annotates levels and selects parameters.
pub fn plan(graph: Graph, req: &ParamRequest) -> Result<Planned, PipelineError> {
    plan_clustered(graph, req, None)
}

/// `plan`, with the conv weights clustered after the rewrite passes when asked.
pub fn plan_clustered(
    graph: Graph,
    req: &ParamRequest,
    cluster: Option<&passes::cluster::ClusterSpec>,
) -> Result<Planned, PipelineError> {
    let mut rewritten = rewrite(graph)?;
    if let Some(spec) = cluster {
        let rep = passes::cluster::run(&mut rewritten.graph, spec)?;
        rewritten.reports.push(rep);
    }
    plan_rewritten(rewritten, req)
}

/// Level plan and parameter selection of an already rewritten (and maybe clustered) graph.
pub fn plan_rewritten(rewritten: Rewritten, req: &ParamRequest) -> Result<Planned, PipelineError> {
    plan_rewritten_for(rewritten, req, &|_| 0)
}

/// [`plan_rewritten`] for a layout that spends `extra(op)` more level units on some ops
/// (`assign_levels::run_with_extra`).
pub fn plan_rewritten_for(
    rewritten: Rewritten,
    req: &ParamRequest,
    extra: assign_levels::ExtraUnits,
) -> Result<Planned, PipelineError> {
    let mut plan = assign_levels::run_with_extra(&rewritten.graph, extra)?;
    // A program whose only product uses the last prime would take its input at Delta and
    // rotate it there, where key-switching noise costs several bits; one tower lets the
    // input sit at Delta^2 instead.
    if plan.towers == 0 && plan.depth > 0 {
        plan.towers = 1;
        plan.final_scale_exp = 1;
    }
    plan.towers += req.extra_towers;
    let mut req = req.clone();
    req.min_log_n = req.min_log_n.max(min_log_n(&rewritten.graph));
    let params = select_params::select(&rewritten.graph, &plan, &req, &security_table)?;
    Ok(Planned {
        rewritten,
        plan,
        params,
    })
}

/// Largest relative difference between `a` and `b` on `inputs` (relative to the largest
/// output magnitude, at least 1).
pub fn check_equivalence(a: &Graph, b: &Graph, inputs: &[Tensor]) -> Result<f64, PipelineError> {
    let oa = passes::interpret::run(a, inputs)?;
    let ob = passes::interpret::run(b, inputs)?;
    let mut worst: f64 = 0.0;
    for (x, y) in oa.iter().zip(&ob) {
        let m = x.data().iter().fold(1.0f64, |m, v| m.max(v.abs()));
        worst = worst.max(x.max_abs_diff(y).unwrap_or(f64::INFINITY) / m);
    }
    Ok(worst)
}
