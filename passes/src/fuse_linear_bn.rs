//! `fuse_linear_bn`: canonicalises fully connected layers and folds what follows them.
//! 1. `MatMul(x, B)` with a constant rank-2 `B` and a rank-2 `x` becomes `Gemm`.
//! 2. `alpha` and `beta` of a Gemm are folded into `B` and `C` (both become 1).
//! 3. `Add(gemm, const)` (the bias of a MatMul + Add layer) is folded into `C`.
//! 4. A 1-D `BatchNormalization` after a Gemm (MLPs) is folded into its columns and `C`.
//!
//! Preconditions: the Gemm (or MatMul) has the folded node as its only consumer and is not
//! a graph output; `trans_a` is false. Afterwards: such chains are one Gemm; values are
//! unchanged up to rounding. Idempotent.

use crate::interpret::binary;
use crate::ir::{Gemm, Graph, NodeId, Op, Tensor};
use crate::pass::{bypass, coef, sole_consumer, PassError, PassReport};

/// `C` of a Gemm with `n` output features as a `[n]` vector when it is one, else `None`.
fn bias_vector(g: &Gemm, n: usize) -> Option<Vec<f64>> {
    match &g.c {
        None => Some(vec![0.0; n]),
        Some(c) if c.len() == 1 => Some(vec![c.data()[0] * g.beta; n]),
        Some(c) if c.len() == n && c.shape().last() == Some(&n) => {
            Some(c.data().iter().map(|v| v * g.beta).collect())
        }
        _ => None,
    }
}

fn out_features(g: &Gemm) -> usize {
    if g.trans_b {
        g.b.shape()[0]
    } else {
        g.b.shape()[1]
    }
}

/// Multiplies column `j` of op(B) by `f(j)`.
fn scale_columns(g: &mut Gemm, f: impl Fn(usize) -> f64) {
    let cols = g.b.shape()[1];
    let tb = g.trans_b;
    for (i, w) in g.b.data_mut().iter_mut().enumerate() {
        let j = if tb { i / cols } else { i % cols };
        *w *= f(j);
    }
}

fn normalise(gm: &mut Gemm) -> bool {
    let n = out_features(gm);
    if gm.alpha == 1.0 && (gm.beta == 1.0 || gm.c.is_none()) {
        return false;
    }
    let Some(c) = bias_vector(gm, n) else {
        return false;
    };
    let a = gm.alpha;
    gm.b = gm.b.map(|w| w * a);
    gm.alpha = 1.0;
    gm.c = Some(Tensor::vector(c));
    gm.beta = 1.0;
    true
}

fn const_of(g: &Graph, id: NodeId) -> Option<&Tensor> {
    match &g.node(id).op {
        Op::Constant(t) => Some(t),
        _ => None,
    }
}

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("fuse_linear_bn");
    for id in g.topo_order()? {
        if !g.contains(id) {
            continue;
        }
        // 1. MatMul with a constant matrix.
        if matches!(g.node(id).op, Op::MatMul) {
            let ins = g.inputs_of(id);
            let ok = g.node(ins[0]).shape.len() == 2
                && const_of(g, ins[1]).is_some_and(|b| b.rank() == 2);
            if ok {
                let b = const_of(g, ins[1]).unwrap().clone();
                g.node_mut(id).op = Op::Gemm(Gemm {
                    b,
                    c: None,
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: false,
                });
                g.set_inputs(id, &[ins[0]]);
                if g.consumers(ins[1]).is_empty() && !g.is_output(ins[1]) {
                    g.remove_node(ins[1]);
                }
                let name = g.node(id).name.clone();
                rep.push(&name, vec![], "MatMul with a constant matrix became Gemm");
            }
        }
        let Op::Gemm(gm) = &mut g.node_mut(id).op else {
            continue;
        };
        if gm.trans_a {
            continue;
        }
        if normalise(gm) {
            let name = g.node(id).name.clone();
            rep.push(&name, vec![], "alpha/beta folded into B and C");
        }
        // 3. and 4., repeatedly: Add(const) and BN after the Gemm.
        while let Some(next) = sole_consumer(g, id) {
            let Op::Gemm(gm) = &g.node(id).op else {
                unreachable!()
            };
            let n = out_features(gm);
            let shape = g.node(id).shape.clone();
            let Some(c) = bias_vector(gm, n) else {
                break;
            };
            let next_name = g.node(next).name.clone();
            let new_c: Vec<f64>;
            let mut col: Option<Vec<f64>> = None;
            match &g.node(next).op {
                Op::Add => {
                    let ins = g.inputs_of(next);
                    let other = if ins[0] == id { ins[1] } else { ins[0] };
                    if ins[0] == ins[1] {
                        break;
                    }
                    let Some(t) = const_of(g, other) else {
                        break;
                    };
                    if g.node(next).shape != shape {
                        break;
                    }
                    // Broadcast the constant to [M, N]; it must be the same for every row.
                    let full = binary(t, &Tensor::zeros(shape.clone()), |a, b| a + b)?;
                    let row = &full.data()[..n];
                    if full.data().chunks(n).any(|r| r != row) {
                        break;
                    }
                    new_c = c.iter().zip(row).map(|(a, b)| a + b).collect();
                    let other_dead = g.consumers(other).len() == 1 && !g.is_output(other);
                    bypass(g, next, id);
                    if other_dead {
                        g.remove_node(other);
                    }
                }
                Op::BatchNorm(bn) if shape.len() == 2 => {
                    let (a1, a0) = bn.affine();
                    if a1.len() != n && a1.len() != 1 {
                        break;
                    }
                    new_c = (0..n).map(|j| c[j] * coef(&a1, j) + coef(&a0, j)).collect();
                    col = Some((0..n).map(|j| coef(&a1, j)).collect());
                    bypass(g, next, id);
                }
                _ => break,
            }
            let Op::Gemm(gm) = &mut g.node_mut(id).op else {
                unreachable!()
            };
            if let Some(col) = &col {
                scale_columns(gm, |j| col[j]);
            }
            gm.c = Some(Tensor::vector(new_c));
            gm.beta = 1.0;
            let name = g.node(id).name.clone();
            let what = if col.is_some() {
                "1-D BatchNorm folded into Gemm columns and bias"
            } else {
                "constant Add folded into Gemm bias"
            };
            rep.push(&name, vec![next_name], what);
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::testutil::{check_pass, Rng};
    use crate::testgraphs::random_mlp;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn preserves_values_and_is_idempotent(seed in any::<u64>()) {
            let mut rng = Rng(seed);
            let mut g = random_mlp(&mut rng);
            check_pass(&mut g, &mut rng, run)?;
            for id in g.node_ids() {
                prop_assert!(!matches!(g.node(id).op, Op::MatMul | Op::BatchNorm(_)));
            }
        }
    }
}
