//! `fuse_residual_poly`: `(BN_a, BN_b) -> Add -> Poly` becomes one bivariate `Poly` over
//! the two BN inputs: with `a' = al1 a + al0`, `b' = be1 b + be0`, `k = al0 + be0` and
//! `p(y) = c2 y^2 + c1 y + c0`:
//! `d_a2 = c2 al1^2`, `d_b2 = c2 be1^2`, `d_ab = 2 c2 al1 be1`, `d_a = al1 (2 c2 k + c1)`,
//! `d_b = be1 (2 c2 k + c1)`, `d0 = c2 k^2 + c1 k + c0` (per channel).
//!
//! Preconditions: both BNs and the Add have exactly one consumer each, the two BN outputs
//! have the Add's shape (no broadcasting). Runs after `fuse_conv_bn`, so in the committed
//! models (every BN follows a Conv) it finds nothing; it matters for graphs whose BNs no
//! linear layer can absorb. Afterwards: no such pattern remains; values unchanged up to
//! rounding. Idempotent.

use crate::ir::{Graph, Op, Poly};
use crate::pass::{channels, coef, sole_consumer, PassError, PassReport};

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("fuse_residual_poly");
    for id in g.topo_order()? {
        if !g.contains(id) {
            continue;
        }
        let Op::Poly(Poly::Quadratic { c0, c1, c2 }) = &g.node(id).op else {
            continue;
        };
        let add = g.inputs_of(id)[0];
        if !matches!(g.node(add).op, Op::Add) || sole_consumer(g, add) != Some(id) {
            continue;
        }
        let ins = g.inputs_of(add);
        if ins[0] == ins[1] {
            continue;
        }
        let shape = g.node(add).shape.clone();
        let bns: Vec<_> = ins
            .iter()
            .filter_map(|&i| match &g.node(i).op {
                Op::BatchNorm(b)
                    if sole_consumer(g, i) == Some(add) && g.node(i).shape == shape =>
                {
                    Some(b.affine())
                }
                _ => None,
            })
            .collect();
        if bns.len() != 2 {
            continue;
        }
        let n = channels(&shape);
        let (mut d0, mut da, mut db, mut dab, mut da2, mut db2) = (
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
        );
        for ch in 0..n {
            let (a1, a0) = (coef(&bns[0].0, ch), coef(&bns[0].1, ch));
            let (b1, b0) = (coef(&bns[1].0, ch), coef(&bns[1].1, ch));
            let (c0, c1, c2) = (coef(c0, ch), coef(c1, ch), coef(c2, ch));
            let k = a0 + b0;
            da2[ch] = c2 * a1 * a1;
            db2[ch] = c2 * b1 * b1;
            dab[ch] = 2.0 * c2 * a1 * b1;
            da[ch] = a1 * (2.0 * c2 * k + c1);
            db[ch] = b1 * (2.0 * c2 * k + c1);
            d0[ch] = c2 * k * k + c1 * k + c0;
        }
        let srcs = [g.inputs_of(ins[0])[0], g.inputs_of(ins[1])[0]];
        let absorbed = vec![
            g.node(ins[0]).name.clone(),
            g.node(ins[1]).name.clone(),
            g.node(add).name.clone(),
        ];
        g.node_mut(id).op = Op::Poly(Poly::Bivariate {
            d0,
            da,
            db,
            dab,
            da2,
            db2,
        });
        g.set_inputs(id, &srcs);
        for r in [ins[0], ins[1], add] {
            g.remove_node(r);
        }
        let name = g.node(id).name.clone();
        rep.push(
            &name,
            absorbed,
            "(BN, BN) -> Add -> Poly fused into a bivariate Poly",
        );
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::testutil::{check_pass, inputs, rel_err, Rng};
    use crate::testgraphs::random_net;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn preserves_values_and_is_idempotent(seed in any::<u64>()) {
            let mut rng = Rng(seed);
            // Without Conv -> BN folding first, every residual block has the pattern.
            let mut g = random_net(&mut rng);
            check_pass(&mut g, &mut rng, run)?;
        }
    }

    #[test]
    fn fires_on_a_bn_bn_add_poly() {
        let mut rng = Rng(7);
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2, 3, 3]);
        let y = g.add_input("y", vec![1, 2, 3, 3]);
        let bn = |rng: &mut Rng| {
            Op::BatchNorm(crate::ir::BatchNorm {
                scale: rng.vec(2, 0.5, 1.5),
                bias: rng.vec(2, -0.5, 0.5),
                mean: rng.vec(2, -0.5, 0.5),
                var: rng.vec(2, 0.5, 1.5),
                epsilon: 1e-5,
            })
        };
        let a = g.add_node("bna", bn(&mut rng), &[x]).unwrap();
        let b = g.add_node("bnb", bn(&mut rng), &[y]).unwrap();
        let s = g.add_node("add", Op::Add, &[a, b]).unwrap();
        let p = g
            .add_node(
                "p",
                Op::Poly(Poly::Quadratic {
                    c0: vec![0.19],
                    c1: vec![0.5],
                    c2: vec![0.23],
                }),
                &[s],
            )
            .unwrap();
        g.set_outputs(vec![p]);
        let before = g.clone();
        let rep = run(&mut g).unwrap();
        assert_eq!(rep.changes.len(), 1);
        assert_eq!(g.len(), 3);
        let inp = inputs(&g, &mut rng);
        assert!(rel_err(&before, &g, &inp) < 1e-12);
    }
}
