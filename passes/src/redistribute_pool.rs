//! `redistribute_pool`: AveragePool / GlobalAveragePool divisors `1/d` move out of the pools
//! (which become `SumPool` / `GlobalSumPool`: rotations and additions only) into the
//! neighbouring linear layers and polynomials, through the scale-factor solver
//! (`scale_factors`, with Polys free): a consumer Conv / Gemm gets weights `* 1/d`, a
//! consuming Poly gets its degree-i coefficient `* (1/d)^i`, and where the consumer cannot
//! absorb it (an Add), the factor is pushed back into the producer or onto the sibling
//! addend.
//!
//! Preconditions: the fusion passes ran (BN folded). Pools with `count_include_pad = 0`
//! and padding have a position-dependent divisor and are left alone (the level pass
//! charges them). Afterwards: every other pool is a sum pool; values unchanged up to
//! rounding; where no neighbour could absorb the factor an explicit `Mul` is inserted and
//! reported as paying one level. Idempotent.

use crate::ir::Graph;
use crate::pass::{PassError, PassReport};
use crate::scale_factors::{solve_and_apply, Options};

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("redistribute_pool");
    solve_and_apply(
        g,
        Options {
            pools: true,
            monic: false,
        },
        &mut rep,
    )?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Op;
    use crate::pass::testutil::{check_pass, Rng};
    use crate::testgraphs::random_net;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn preserves_values_and_is_idempotent(seed in any::<u64>()) {
            let mut rng = Rng(seed);
            let mut g = random_net(&mut rng);
            crate::fuse_conv_bn::run(&mut g).unwrap();
            check_pass(&mut g, &mut rng, run)?;
            for id in g.node_ids() {
                let mean = matches!(
                    g.node(id).op,
                    Op::AveragePool(_) | Op::GlobalAveragePool | Op::ReduceMean { .. }
                );
                prop_assert!(!mean, "a mean left at '{}'", g.node(id).name);
            }
        }
    }
}
