//! `fuse_conv_bn`: folds a `BatchNormalization` into the `Conv` that produces its input.
//! With the BN's per-channel affine form `y = a1 x + a0` (a1 = gamma / sqrt(var + eps),
//! a0 = beta - mean a1): `w'[o] = w[o] a1[o]`, `b'[o] = b[o] a1[o] + a0[o]`.
//!
//! Preconditions: the Conv has the BN as its only consumer and is not a graph output.
//! Afterwards: no such Conv -> BN pair remains (BN costs no level); values are unchanged
//! up to rounding. Idempotent.

use crate::ir::{Graph, Op, Tensor};
use crate::pass::{bypass, sole_consumer, PassError, PassReport};

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("fuse_conv_bn");
    for id in g.topo_order()? {
        if !g.contains(id) {
            continue;
        }
        let Op::BatchNorm(bn) = &g.node(id).op else {
            continue;
        };
        let src = g.inputs_of(id)[0];
        if sole_consumer(g, src) != Some(id) || !matches!(g.node(src).op, Op::Conv(_)) {
            continue;
        }
        let (a1, a0) = bn.affine();
        let bn_name = g.node(id).name.clone();
        let Op::Conv(conv) = &mut g.node_mut(src).op else {
            unreachable!()
        };
        let m = conv.weight.shape()[0];
        if a1.len() != m && a1.len() != 1 {
            continue;
        }
        let per = conv.weight.len() / m;
        let at = |v: &[f64], o: usize| if v.len() == 1 { v[0] } else { v[o] };
        for (i, w) in conv.weight.data_mut().iter_mut().enumerate() {
            *w *= at(&a1, i / per);
        }
        let old_b = conv
            .bias
            .take()
            .map(|b| b.into_data())
            .unwrap_or_else(|| vec![0.0; m]);
        let b: Vec<f64> = (0..m).map(|o| old_b[o] * at(&a1, o) + at(&a0, o)).collect();
        conv.bias = Some(Tensor::vector(b));
        bypass(g, id, src);
        let name = g.node(src).name.clone();
        rep.push(
            &name,
            vec![bn_name],
            "BatchNorm folded into Conv weights and bias",
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
            for id in g.node_ids() {
                if matches!(g.node(id).op, Op::BatchNorm(_)) {
                    let s = g.inputs_of(id)[0];
                    prop_assert!(!matches!(g.node(s).op, Op::Conv(_)) || sole_consumer(&g, s).is_none());
                }
            }
        }
    }
}
