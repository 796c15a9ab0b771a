//! Lowering: the planned graph (after the rewrite passes, the level plan and the parameter
//! selection) becomes a runtime `Program`. The driver walks the nodes in topological order
//! and hands each op to a [`layout::Layout`] (today the [`reference::Reference`] layout),
//! which emits instructions through the [`emitter::Emitter`]; values die after their last
//! consumer and their registers are freed, so the program's live memory follows the
//! graph's width, not its length.
//!
//! Preconditions: `pipeline::plan` succeeded (HE-friendly ops only, monic activations where
//! possible). Guarantees: the program validates, its key requirements derive from its
//! instructions, every Add is aligned exactly, and a level budget that runs out is an error
//! naming the layer. Checked against the f64 interpreter end to end under encryption by
//! `compiler/tests/lower_e2e.rs`.

pub mod batch;
pub mod cost;
pub mod emitter;
pub mod ensemble;
pub mod error;
pub mod layout;
pub mod packed;
pub mod reference;

use std::collections::HashMap;

use passes::ir::{Graph, NodeId, Op, Tensor};
use passes::select_params::ParamSet;
use runtime::ckks::Params;
use runtime::program::{ImageNormalization, InputLayout, KeyRequirements, OutputLayout, Program};

pub use batch::BatchSize;
use emitter::Emitter;
pub use error::LowerError;
use layout::{Layout, Value};

use crate::pipeline::Planned;

/// The CKKS parameters of a selected set. `insecure_test_params` builds them without the
/// 128-bit check (tests at small ring degrees only; the CLI refuses such programs unless
/// told otherwise).
pub fn params_for(ps: &ParamSet, insecure_test_params: bool) -> Result<Params, LowerError> {
    let dnum = ps.dnum as usize;
    Ok(if insecure_test_params {
        Params::insecure_for_tests(ps.log_n, &ps.primes, &ps.special_primes, dnum)?
    } else {
        Params::new(ps.log_n, &ps.primes, &ps.special_primes, dnum)?
    })
}

/// Per-channel constant of a tensor broadcast against a value with `channels` channels on
/// axis 1 (`None` if it varies along another axis).
fn channel_vector(t: &Tensor, channels: usize) -> Option<Vec<f64>> {
    let shape = t.shape();
    let data = t.data();
    if data.len() == 1 {
        return Some(vec![data[0]]);
    }
    // Find the axis of length `channels`, counted from the right against (1, C, ...).
    let nontrivial: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] != 1).collect();
    if nontrivial.len() == 1 && shape[nontrivial[0]] == channels && data.len() == channels {
        // Its position from the right must be the channel axis of the value.
        return Some(data.to_vec());
    }
    None
}

fn unsupported(layer: &str, op: &str, layout: &'static str, why: &str) -> LowerError {
    LowerError::Unsupported {
        layer: layer.to_string(),
        op: op.to_string(),
        layout,
        why: why.to_string(),
    }
}

fn channels_of(v: &Value) -> usize {
    match v {
        Value::Spatial(s) => s.chans.len(),
        Value::Features(f) => f.items.len(),
        Value::Packed(p) => p.c,
    }
}

/// Lowers a planned graph to a program under `params` (from [`params_for`]).
pub fn lower(
    planned: &Planned,
    params: Params,
    image: Option<ImageNormalization>,
    layout: &dyn Layout,
    progress: impl FnMut(usize, usize, &str),
) -> Result<Program, LowerError> {
    lower_batched(planned, params, image, layout, BatchSize::One, progress)
}

/// [`lower`], then [`batch::replicate`] to evaluate `batch` inputs per run.
pub fn lower_batched(
    planned: &Planned,
    params: Params,
    image: Option<ImageNormalization>,
    layout: &dyn Layout,
    batch: BatchSize,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Program, LowerError> {
    let g: &Graph = &planned.rewritten.graph;
    let delta = 2f64.powi(planned.params.log_delta as i32);
    let mut em = Emitter::new(&params, delta);
    em.spread = batch == BatchSize::One;
    let ins = g.inputs();
    let outs = g.outputs();
    if ins.len() != 1 || outs.len() != 1 {
        return Err(unsupported(
            "graph",
            "graph",
            layout.name(),
            &format!(
                "{} inputs and {} outputs (one of each is supported)",
                ins.len(),
                outs.len()
            ),
        ));
    }
    let order = g
        .topo_order()
        .map_err(|e| LowerError::Internal(e.to_string()))?;
    // Uses left per node: one per consuming input slot, one more for a graph output.
    let mut uses: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        for i in g.inputs_of(id) {
            *uses.entry(i).or_default() += 1;
        }
    }
    for &o in outs {
        *uses.entry(o).or_default() += 1;
    }
    let mut values: HashMap<NodeId, Value> = HashMap::new();
    let mut packing = None;
    let total = order.len();
    for (k, &id) in order.iter().enumerate() {
        let node = g.node(id);
        em.set_origin(&node.name);
        let name = node.name.as_str();
        let kind = node.op.kind();
        let srcs = g.inputs_of(id);
        let is_const = |i: NodeId| matches!(g.node(i).op, Op::Constant(_));
        let konst = |i: NodeId| match &g.node(i).op {
            Op::Constant(t) => Some(t),
            _ => None,
        };
        let val = |i: NodeId| {
            values
                .get(&i)
                .ok_or_else(|| LowerError::Internal(format!("{name}: input not lowered")))
        };
        // This node is the last user of input i (and uses it once): its registers may be
        // modified in place.
        let steal =
            |i: NodeId| uses.get(&i) == Some(&1) && srcs.iter().filter(|&&s| s == i).count() == 1;
        let v: Option<Value> = match &node.op {
            Op::Constant(_) => None,
            Op::Input { shape } => {
                let (v, p) = layout.input(&mut em, shape)?;
                packing = Some((shape.clone(), p));
                Some(v)
            }
            Op::Identity => Some(val(srcs[0])?.clone()),
            Op::Conv(c) => Some(layout.conv(&mut em, val(srcs[0])?, c)?),
            Op::BatchNorm(bn) => {
                let (a1, a0) = bn.affine();
                Some(layout.affine(&mut em, val(srcs[0])?, &a1, &a0, steal(srcs[0]))?)
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let (a, b) = (srcs[0], srcs[1]);
                let sign = if matches!(node.op, Op::Sub) {
                    -1.0
                } else {
                    1.0
                };
                match (is_const(a), is_const(b)) {
                    (false, false) => match node.op {
                        Op::Add | Op::Sub => Some(layout.add(
                            &mut em,
                            val(a)?,
                            val(b)?,
                            sign as i64,
                            (steal(a), steal(b)),
                        )?),
                        _ => {
                            return Err(unsupported(
                                name,
                                kind,
                                layout.name(),
                                "a product of two encrypted tensors outside a polynomial",
                            ))
                        }
                    },
                    (ca, _) => {
                        let (x, t) = if ca {
                            (b, konst(a).unwrap())
                        } else {
                            (a, konst(b).unwrap())
                        };
                        let xv = val(x)?;
                        let c = channel_vector(t, channels_of(xv)).ok_or_else(|| {
                            unsupported(
                                name,
                                kind,
                                layout.name(),
                                "a constant that varies across pixels",
                            )
                        })?;
                        let ones = vec![1.0];
                        let zeros = vec![0.0];
                        let (mul, add): (Vec<f64>, Vec<f64>) = match (&node.op, ca) {
                            (Op::Add, _) => (ones, c),
                            (Op::Sub, false) => (ones, c.iter().map(|v| -v).collect()),
                            (Op::Sub, true) => (vec![-1.0], c),
                            (Op::Mul, _) => (c, zeros),
                            (Op::Div, false) => (c.iter().map(|v| 1.0 / v).collect(), zeros),
                            _ => {
                                return Err(unsupported(
                                    name,
                                    kind,
                                    layout.name(),
                                    "dividing a constant by an encrypted tensor",
                                ))
                            }
                        };
                        Some(layout.affine(&mut em, xv, &mul, &add, steal(x))?)
                    }
                }
            }
            Op::Poly(p) => Some(layout.poly(&mut em, val(srcs[0])?, p, steal(srcs[0]))?),
            Op::SumPool(p) => Some(layout.sum_pool(&mut em, val(srcs[0])?, p)?),
            Op::GlobalSumPool => Some(layout.global_sum_pool(&mut em, val(srcs[0])?)?),
            Op::AveragePool(p) => {
                let s = layout.sum_pool(&mut em, val(srcs[0])?, p)?;
                let d = (p.kernel[0] * p.kernel[1]) as f64;
                let r = layout.affine(&mut em, &s, &[1.0 / d], &[0.0], true)?;
                release(&mut em, &s, &r);
                Some(r)
            }
            Op::GlobalAveragePool => {
                let x = val(srcs[0])?;
                let d = match x {
                    Value::Spatial(s) => (s.h * s.w) as f64,
                    Value::Features(_) => 1.0,
                    Value::Packed(p) => (p.h * p.w) as f64,
                };
                let s = layout.global_sum_pool(&mut em, x)?;
                let r = layout.affine(&mut em, &s, &[1.0 / d], &[0.0], true)?;
                release(&mut em, &s, &r);
                Some(r)
            }
            Op::Gemm(gm) => Some(layout.gemm(&mut em, val(srcs[0])?, gm)?),
            Op::Flatten { .. } | Op::Reshape { .. } => {
                Some(layout.reshape(&mut em, val(srcs[0])?, &node.shape)?)
            }
            Op::Slice { axes } => Some(layout.slice(&mut em, val(srcs[0])?, axes)?),
            Op::Pad { pads, value } => {
                if *value != 0.0 {
                    return Err(unsupported(
                        name,
                        kind,
                        layout.name(),
                        "padding with a non-zero value",
                    ));
                }
                Some(layout.pad(&mut em, val(srcs[0])?, pads)?)
            }
            Op::Relu => {
                return Err(unsupported(
                    name,
                    kind,
                    layout.name(),
                    "ReLU has no leveled-FHE evaluation: train with the quadratic activation",
                ))
            }
            Op::MatMul | Op::ReduceMean { .. } => {
                return Err(unsupported(
                    name,
                    kind,
                    layout.name(),
                    "left unrewritten by the passes",
                ))
            }
        };
        if let Some(v) = v {
            for r in v.regs() {
                em.retain(r);
            }
            values.insert(id, v);
        }
        em.sweep(&[]);
        let mut seen = vec![];
        for &i in &srcs {
            if let Some(u) = uses.get_mut(&i) {
                *u -= 1;
                if *u == 0 && !seen.contains(&i) {
                    seen.push(i);
                    if let Some(v) = values.remove(&i) {
                        for r in v.regs() {
                            em.release(r);
                        }
                    }
                }
            }
        }
        progress(k + 1, total, name);
    }
    let out_node = outs[0];
    em.set_origin(&g.node(out_node).name);
    let out_val = values
        .get(&out_node)
        .ok_or_else(|| LowerError::Internal("output not lowered".into()))?
        .clone();
    // The outputs go down to Delta where a prime is left (smaller ciphertexts to return).
    for r in out_val.regs() {
        let st = em.state(r);
        if st.level > 0
            && st.scale > delta * delta.sqrt()
            && st.scale / em.prime(st.level) >= delta / 16.0
        {
            em.rescale(r)?;
        }
    }
    // The base prime was sized for an output at Delta^final_scale_exp; one left above that
    // at level 0 would wrap when decrypted: a prime short, as an exhausted budget is (the
    // compile then retries with one more tower).
    let fse = planned.plan.final_scale_exp.max(1) as i32;
    for r in out_val.regs() {
        let st = em.state(r);
        if st.level == 0 && st.scale > 16.0 * delta.powi(fse) {
            return Err(LowerError::Exhausted {
                layer: g.node(out_node).name.clone(),
            });
        }
    }
    let placement = layout.output(&mut em, &out_val)?;
    for &(_, _, slot) in &placement {
        em.need_period(slot as usize + 1);
    }
    let (in_shape, pack) = packing.ok_or_else(|| LowerError::Internal("no input".into()))?;
    let top = em.top_level();
    let in_scale = if top > 0 { delta * delta } else { delta };
    let e = em.finish();
    let period = e.period;
    let mut program = Program {
        params,
        masks: e.masks,
        vectors: e.vectors,
        input: InputLayout {
            shape: in_shape,
            image,
            cts: pack.cts,
            placement: pack.placement,
            scale: in_scale,
            level: top as u32,
        },
        output: OutputLayout {
            shape: g.node(out_node).shape.clone(),
            placement,
            members: 1,
        },
        registers: e.registers,
        instrs: e.instrs,
        origins: e.origins,
    };
    program
        .validate()
        .map_err(|e| LowerError::Internal(format!("the lowered program is invalid: {e}")))?;
    KeyRequirements::of(&program).map_err(|e| match e {
        runtime::Error::LevelMismatch(m) if m.contains("exhausted") => LowerError::Internal(m),
        other => LowerError::Internal(other.to_string()),
    })?;
    batch::replicate(&mut program, period, batch)?;
    Ok(program)
}

/// Releases the registers of an intermediate value `s` not kept by `r`.
fn release(em: &mut Emitter, s: &Value, r: &Value) {
    let keep = r.regs();
    for reg in s.regs() {
        if !keep.contains(&reg) && em.refs(reg) == 0 {
            em.release(reg);
        }
    }
}
