//! `assign_levels`: the level and scale checker / annotator (reads the graph, changes
//! nothing). Units: one unit = one factor Delta of scale; a ciphertext at `u` units has
//! scale Delta^e with `e = 1` (u even) or `e = 2` (u odd) after the rescales so far, and has
//! used `r = (u + 1 - e) / 2` towers (one ~2 log2(Delta)-bit prime divides two units away).
//!
//! Rules ("tower reuse"): Conv / Gemm / BN / constant Mul: +1 unit (weights at Delta) and
//! +1 multiplicative depth. A quadratic Poly reads its input at an even unit (scale Delta,
//! just rescaled): an odd input is rounded up for free when its producer is a plaintext
//! linear layer with no other consumer (its weights are encoded at Delta^2 instead:
//! `weight_scale_exp = 2`), otherwise by a constant multiply (one level, reported). A monic
//! Poly then adds +1 (x*x and c1' x land at Delta^2); a non-monic one +2 (reported). Add:
//! +0; both inputs at the deeper one's unit: prime dropping aligns levels, and when the
//! parities differ the shallower addend's scale is aligned by its producer's weight scale
//! (free) or by a constant multiply on that branch (one level there, usually off the
//! critical path; recorded per node). Sum pools, Flatten, Reshape, Slice, Pad: +0. Pools
//! that kept a divisor: +1. So one tower serves one activation + conv pair.
//!
//! Preconditions: the rewrite passes ran; ops outside the HE-friendly set (Relu, products of
//! two ciphertexts other than Polys) are errors naming the node. Afterwards: a `LevelPlan`
//! with per-node levels and the prime chain length (`towers + 1` base prime).

use std::collections::HashMap;

use serde::Serialize;

use crate::ir::{Graph, NodeId, Op, Poly};
use crate::pass::{channels, sole_consumer, PassError};

/// The levels of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeLevel {
    /// Units at which the node reads its (aligned, rounded) inputs.
    pub level_in: u32,
    pub level_out: u32,
    /// Multiplicative depth (number of multiplications on the longest path).
    pub depth_in: u32,
    pub depth_out: u32,
    /// Scale exponent of the output after rescaling: scale = Delta^scale_exp.
    pub scale_exp: u32,
    /// Towers divided away up to and including this node.
    pub primes_used: u32,
    /// Towers this node's result costs (`primes_used` minus that of its inputs).
    pub primes_consumed: u32,
    /// Plaintext operands (weights, coefficients) are encoded at Delta^this.
    pub weight_scale_exp: Option<u32>,
    /// For quadratic Polys: evaluates as x*x + c1' x + c0'.
    pub monic: Option<bool>,
    /// Levels this node pays beyond the rules' minimum, with reasons.
    pub notes: Vec<String>,
    pub pays_level: bool,
}

/// The level plan of a graph.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LevelPlan {
    #[serde(skip)]
    pub nodes: HashMap<NodeId, NodeLevel>,
    /// Topological order of the non-constant nodes.
    #[serde(skip)]
    pub order: Vec<NodeId>,
    /// Multiplicative depth of the program.
    pub depth: u32,
    /// Largest level (units) at an output.
    pub units: u32,
    /// Towers (~2 log2(Delta)-bit primes) the program divides away.
    pub towers: u32,
    /// Scale exponent of the outputs: the base prime holds Delta^this times the value.
    pub final_scale_exp: u32,
    /// Degree-2 activations.
    pub activations: usize,
    /// Nodes that pay a level beyond the rules' minimum.
    pub paid_levels: usize,
}

impl LevelPlan {
    /// Length of the prime chain Q: the towers plus the base prime.
    pub fn primes(&self) -> u32 {
        self.towers + 1
    }
}

fn canon(u: u32) -> (u32, u32) {
    let e = if u.is_multiple_of(2) { 1 } else { 2 };
    (e, (u + 1 - e) / 2)
}

fn is_const(g: &Graph, id: NodeId) -> bool {
    matches!(g.node(id).op, Op::Constant(_))
}

fn plaintext_linear(g: &Graph, id: NodeId) -> bool {
    let ins = g.inputs_of(id);
    match &g.node(id).op {
        Op::Conv(_) | Op::Gemm(_) | Op::BatchNorm(_) => true,
        Op::Mul | Op::MatMul => ins.iter().any(|&i| is_const(g, i)),
        Op::Div => is_const(g, ins[1]),
        _ => false,
    }
}

/// Annotates every node of `g` with levels (see the module doc).
pub fn run(g: &Graph) -> Result<LevelPlan, PassError> {
    run_with_extra(g, &|_| 0)
}

/// Extra units (each a factor Delta of scale, two per prime) a layout spends on an op
/// beyond the rules above: the packed layout's downsampling masks.
pub type ExtraUnits<'a> = &'a dyn Fn(&Op) -> u32;

/// [`run`], with `extra(op)` more units (and as many more multiplications) for each node,
/// noted on the node.
pub fn run_with_extra(g: &Graph, extra: ExtraUnits) -> Result<LevelPlan, PassError> {
    let mut plan = LevelPlan::default();
    let order = g.topo_order()?;
    for &id in &order {
        if is_const(g, id) {
            continue;
        }
        plan.order.push(id);
        let node = g.node(id);
        let ins: Vec<NodeId> = g
            .inputs_of(id)
            .into_iter()
            .filter(|&i| !is_const(g, i))
            .collect();
        let mut notes = vec![];
        let mut pays = false;
        let (mut u_in, mut d_in) = (0u32, 0u32);
        // Align the ciphertext inputs (Adds, bivariate Polys).
        if !ins.is_empty() {
            u_in = ins.iter().map(|i| plan.nodes[i].level_out).max().unwrap();
            for (k, &i) in ins.iter().enumerate() {
                let ui = plan.nodes[&i].level_out;
                if ui < u_in && (u_in - ui) % 2 == 1 {
                    if bump(g, &mut plan, i, id) {
                        notes.push(format!(
                            "input {k} scale-aligned by encoding its producer's weights at Delta^2"
                        ));
                    } else {
                        let di = plan.nodes[&i].depth_out + 1;
                        notes.push(format!(
                            "input {k} scale-aligned by a constant multiply on its branch \
                             (one level there, depth {di})"
                        ));
                        plan.nodes.get_mut(&i).unwrap().notes.push(format!(
                            "consumer '{}' multiplies this value by a scale-aligning constant",
                            node.name
                        ));
                    }
                }
            }
            d_in = ins
                .iter()
                .map(|i| {
                    let n = &plan.nodes[i];
                    let extra = u32::from(n.level_out < u_in && (u_in - n.level_out) % 2 == 1);
                    n.depth_out + extra
                })
                .max()
                .unwrap();
        }
        let mut weight = None;
        let mut monic = None;
        let (du, dd): (u32, u32) = match &node.op {
            Op::Input { .. } => (0, 0),
            Op::Identity
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::SumPool(_)
            | Op::GlobalSumPool => (0, 0),
            Op::Add | Op::Sub => (0, 0),
            Op::AveragePool(_) | Op::GlobalAveragePool | Op::ReduceMean { .. } => {
                pays = true;
                notes.push("pays one level: the pool divisor was not redistributed".into());
                weight = Some(1);
                (1, 1)
            }
            _ if plaintext_linear(g, id) => {
                weight = Some(1);
                (1, 1)
            }
            Op::Poly(p) => {
                let deg = p.degree();
                let coeffs_one = |v: &Vec<f64>| v.iter().all(|&x| x == 1.0);
                let is_monic = match p {
                    Poly::Quadratic { c2, .. } => coeffs_one(c2),
                    Poly::Bivariate { dab, da2, db2, .. } => {
                        coeffs_one(da2) && coeffs_one(db2) && dab.iter().all(|&x| x == 2.0)
                    }
                };
                weight = Some(2);
                if deg == 2 {
                    plan.activations += 1;
                    if u_in % 2 == 1 {
                        if ins.len() == 1 && bump(g, &mut plan, ins[0], id) {
                            notes.push(
                                "input rounded to an even level by its producer's weights at Delta^2"
                                    .into(),
                            );
                        } else {
                            pays = true;
                            d_in += 1;
                            notes.push(
                                "pays one level: input rounded to an even level by a constant multiply"
                                    .into(),
                            );
                        }
                        u_in += 1;
                    }
                    monic = Some(is_monic);
                    if is_monic {
                        (1, 1)
                    } else {
                        pays = true;
                        notes.push(
                            "pays one level: leading coefficient not redistributed (not monic)"
                                .into(),
                        );
                        (2, 2)
                    }
                } else if deg == 1 {
                    let plain = match p {
                        Poly::Quadratic { c1, .. } => coeffs_one(c1),
                        Poly::Bivariate { da, db, .. } => coeffs_one(da) && coeffs_one(db),
                    };
                    if plain {
                        (0, 0)
                    } else {
                        (1, 1)
                    }
                } else {
                    (0, 0)
                }
            }
            other => {
                return Err(PassError::node(
                    g,
                    id,
                    format!(
                        "{} has no leveled-CKKS evaluation (not HE-friendly)",
                        other.kind()
                    ),
                ))
            }
        };
        let more = extra(&node.op);
        let (du, dd) = if more > 0 {
            notes.push(format!("the layout spends {more} more unit(s) here"));
            (du + more, dd + more)
        } else {
            (du, dd)
        };
        let level_out = u_in + du;
        let (e, r) = canon(level_out);
        let r_in = if ins.is_empty() { 0 } else { canon(u_in).1 };
        if pays {
            plan.paid_levels += 1;
        }
        plan.nodes.insert(
            id,
            NodeLevel {
                level_in: u_in,
                level_out,
                depth_in: d_in,
                depth_out: d_in + dd,
                scale_exp: e,
                primes_used: r,
                primes_consumed: r - r_in.min(r),
                weight_scale_exp: weight,
                monic,
                notes,
                pays_level: pays,
            },
        );
    }
    for &o in g.outputs() {
        let n = &plan.nodes[&o];
        plan.depth = plan.depth.max(n.depth_out);
        if n.level_out >= plan.units {
            plan.units = n.level_out;
            plan.final_scale_exp = n.scale_exp;
        }
        plan.towers = plan.towers.max(n.primes_used);
    }
    plan.depth = plan
        .order
        .iter()
        .map(|i| plan.nodes[i].depth_out)
        .max()
        .unwrap_or(0)
        .max(plan.depth);
    Ok(plan)
}

/// Encodes the weights of `producer` at Delta^2 (one more unit, no multiplication) when it
/// is a plaintext linear layer read only by `consumer`.
fn bump(g: &Graph, plan: &mut LevelPlan, producer: NodeId, consumer: NodeId) -> bool {
    if !plaintext_linear(g, producer) || sole_consumer(g, producer) != Some(consumer) {
        return false;
    }
    let n = plan.nodes.get_mut(&producer).unwrap();
    if n.weight_scale_exp != Some(1) {
        return false;
    }
    n.weight_scale_exp = Some(2);
    n.level_out += 1;
    let (e, r) = canon(n.level_out);
    n.scale_exp = e;
    let r_in = canon(n.level_in).1;
    n.primes_used = r;
    n.primes_consumed = r - r_in.min(r);
    true
}

/// Ciphertexts per node value in the per-channel layout (one per channel).
pub fn ciphertexts(g: &Graph, id: NodeId) -> usize {
    channels(&g.node(id).shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::testutil::Rng;
    use crate::testgraphs::{random_net, Net};

    fn prepared(g: &mut Graph) {
        crate::fuse_conv_bn::run(g).unwrap();
        crate::redistribute_pool::run(g).unwrap();
        crate::redistribute_leading::run(g).unwrap();
    }

    #[test]
    fn a_resnet_like_chain_has_one_tower_per_pair() {
        let mut rng = Rng(3);
        let mut n = Net::new(&mut rng);
        let x = n.g.add_input("x", vec![1, 2, 8, 8]);
        let mut h = n.cbp(x, 2, 1);
        for _ in 0..3 {
            h = n.block(h, 0);
        }
        let o = n.head(h, 3);
        n.g.set_outputs(vec![o]);
        let mut g = n.g;
        prepared(&mut g);
        let p = run(&g).unwrap();
        // 7 convs, 7 activations, 1 linear layer.
        assert_eq!(p.depth, 15);
        assert_eq!(p.activations, 7);
        assert_eq!(p.primes(), 9);
        assert_eq!(p.paid_levels, 0);
    }

    #[test]
    fn level_plans_of_random_nets_are_consistent() {
        for seed in 0..40 {
            let mut rng = Rng(seed);
            let mut g = random_net(&mut rng);
            prepared(&mut g);
            let p = run(&g).unwrap();
            for &id in &p.order {
                let n = &p.nodes[&id];
                assert!(n.level_out >= n.level_in && n.depth_out >= n.depth_in);
                if n.monic == Some(true) {
                    assert_eq!(n.level_in % 2, 0);
                    assert_eq!(n.level_out, n.level_in + 1);
                }
            }
            // The only level paid in generated nets: an Add of two activation outputs
            // (a skip over two blocks) read by a Poly needs its odd level rounded up.
            for &id in &p.order {
                if p.nodes[&id].pays_level {
                    let add = g.inputs_of(id)[0];
                    assert!(matches!(g.node(id).op, Op::Poly(_)), "seed {seed}");
                    assert!(matches!(g.node(add).op, Op::Add), "seed {seed}");
                    assert!(g
                        .inputs_of(add)
                        .iter()
                        .all(|&i| !matches!(g.node(i).op, Op::Conv(_) | Op::Gemm(_))));
                }
            }
            assert!(p.primes() >= p.depth.div_ceil(2));
        }
    }

    #[test]
    fn relu_is_rejected_by_name() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2]);
        let r = g.add_node("the_relu", Op::Relu, &[x]).unwrap();
        g.set_outputs(vec![r]);
        let e = run(&g).unwrap_err().to_string();
        assert!(e.contains("the_relu"), "{e}");
    }
}
