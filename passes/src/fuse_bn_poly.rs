//! `fuse_bn_poly`: folds a `BatchNormalization` `y = b1 x + b0` into the quadratic `Poly`
//! `p(y) = c2 y^2 + c1 y + c0` that consumes it, giving per-channel coefficients
//! `d2 = c2 b1^2`, `d1 = b1 (2 c2 b0 + c1)`, `d0 = c2 b0^2 + c1 b0 + c0`.
//!
//! Preconditions: the BN's only consumer is the Poly (and it is not a graph output); runs
//! after `fuse_conv_bn`, so it only sees BNs no linear layer could absorb. Afterwards: no
//! BN -> quadratic Poly pair remains; values unchanged up to rounding. Idempotent.

use crate::ir::{Graph, Op, Poly};
use crate::pass::{channels, coef, sole_consumer, PassError, PassReport};

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("fuse_bn_poly");
    for id in g.topo_order()? {
        if !g.contains(id) {
            continue;
        }
        let Op::BatchNorm(bn) = &g.node(id).op else {
            continue;
        };
        let Some(p) = sole_consumer(g, id) else {
            continue;
        };
        let Op::Poly(Poly::Quadratic { c0, c1, c2 }) = &g.node(p).op else {
            continue;
        };
        let (b1, b0) = bn.affine();
        let c = channels(&g.node(id).shape);
        let n = if b1.len() == 1 && c0.len() == 1 && c1.len() == 1 && c2.len() == 1 {
            1
        } else {
            c
        };
        let (mut d0, mut d1, mut d2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for ch in 0..n {
            let (b1, b0) = (coef(&b1, ch), coef(&b0, ch));
            let (c0, c1, c2) = (coef(c0, ch), coef(c1, ch), coef(c2, ch));
            d2[ch] = c2 * b1 * b1;
            d1[ch] = b1 * (2.0 * c2 * b0 + c1);
            d0[ch] = c2 * b0 * b0 + c1 * b0 + c0;
        }
        let bn_name = g.node(id).name.clone();
        let src = g.inputs_of(id)[0];
        g.node_mut(p).op = Op::Poly(Poly::Quadratic {
            c0: d0,
            c1: d1,
            c2: d2,
        });
        g.set_input(p, 0, src);
        g.remove_node(id);
        let name = g.node(p).name.clone();
        rep.push(
            &name,
            vec![bn_name],
            "BatchNorm folded into Poly coefficients",
        );
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::testutil::{check_pass, Rng};
    use crate::testgraphs::random_net;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn preserves_values_and_is_idempotent(seed in any::<u64>()) {
            let mut rng = Rng(seed);
            let mut g = random_net(&mut rng);
            check_pass(&mut g, &mut rng, run)?;
        }
    }
}
