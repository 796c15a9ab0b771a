//! `redistribute_leading`: makes every quadratic activation monic, `x^2 + c1' x + c0'`
//! (one level: `x*x` and `c1' x` both land at Delta^2), moving its leading coefficient
//! `c2` into neighbouring linear layers through the scale-factor solver (`scale_factors`):
//! forward into consuming Conv / Gemm weights, and, where the value meets a residual Add,
//! onto both addends: the conv before the Add emits the skip's factor, and when that
//! factor must come out of a Poly fed by a conv, the conv emits `sqrt(t / c2)` (the
//! coefficients are re-solved). Covers identity shortcuts, option-A Slice + channel Pad
//! shortcuts (pad channels take any factor), 1x1-conv shortcuts, chains of blocks and
//! skips over several blocks.
//!
//! Preconditions: fusion passes and `redistribute_pool` ran. Afterwards: every quadratic
//! Poly with non-zero leading coefficients has `c2 == 1`, except where a constraint could
//! not be met: there an explicit constant `Mul` is inserted and reported as paying one
//! level. Values unchanged up to rounding. Idempotent.

use crate::ir::Graph;
use crate::pass::{PassError, PassReport};
use crate::scale_factors::{solve_and_apply, Options};

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("redistribute_leading");
    solve_and_apply(
        g,
        Options {
            pools: false,
            monic: true,
        },
        &mut rep,
    )?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Op, Poly};
    use crate::pass::testutil::{check_pass, Rng};
    use crate::testgraphs::random_net;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn monic_preserves_values_and_is_idempotent(seed in any::<u64>()) {
            let mut rng = Rng(seed);
            let mut g = random_net(&mut rng);
            crate::fuse_conv_bn::run(&mut g).unwrap();
            crate::redistribute_pool::run(&mut g).unwrap();
            let rep = check_pass(&mut g, &mut rng, run)?;
            // All Polys become monic; a level is paid only by an align multiply on an Add
            // input (two skips over several blocks each fix the one free factor of the
            // chain: the second one cannot hold).
            prop_assert!(rep.changes.iter().all(|c| !c.pays_level || c.node.contains("/align")), "{:?}", rep);
            for id in g.node_ids() {
                if let Op::Poly(Poly::Quadratic { c2, .. }) = &g.node(id).op {
                    prop_assert!(c2.iter().all(|&x| x == 1.0), "{:?}", c2);
                }
            }
        }
    }
}

#[cfg(test)]
mod patterns {
    //! Each residual pattern of the committed models, alone and chained, costs no level.
    use super::*;
    use crate::ir::{Op, Poly};
    use crate::pass::testutil::{inputs, rel_err, Rng};
    use crate::testgraphs::Net;

    fn check(build: impl Fn(&mut Net, crate::ir::NodeId) -> crate::ir::NodeId) {
        for seed in 0..8 {
            let mut rng = Rng(seed);
            let mut n = Net::new(&mut rng);
            let x = n.g.add_input("x", vec![1, 2, 8, 8]);
            let c = n.conv(x, 2, 3, 1, false);
            let b = n.bn(c);
            let h = n.poly(b);
            let h = build(&mut n, h);
            let o = n.head(h, 3);
            n.g.set_outputs(vec![o]);
            let mut g = n.g;
            for p in [crate::fuse_conv_bn::run, crate::redistribute_pool::run] {
                p(&mut g).unwrap();
            }
            let before = g.clone();
            let rep = run(&mut g).unwrap();
            assert!(rep.changes.iter().all(|c| !c.pays_level), "{rep:?}");
            for id in g.node_ids() {
                if let Op::Poly(Poly::Quadratic { c2, .. }) = &g.node(id).op {
                    assert!(c2.iter().all(|&x| x == 1.0));
                }
            }
            let inp = inputs(&g, &mut rng);
            assert!(rel_err(&before, &g, &inp) < 1e-9);
        }
    }

    #[test]
    fn identity_chain() {
        check(|n, h| {
            let h = n.block(h, 0);
            let h = n.block(h, 0);
            n.block(h, 0)
        });
    }

    #[test]
    fn option_a_then_identity() {
        check(|n, h| {
            let h = n.block(h, 1);
            n.block(h, 0)
        });
    }

    #[test]
    fn conv_shortcut_then_identity() {
        check(|n, h| {
            let h = n.block(h, 2);
            n.block(h, 0)
        });
    }

    #[test]
    fn skip_over_two_blocks() {
        check(|n, h| {
            let h1 = n.block(h, 0);
            let h2 = n.block(h1, 1);
            let h2 = n.block(h2, 0);
            let s = n.conv(h, 4, 1, 2, false);
            let a = n.add(h2, s);
            let p = n.poly(a);
            let h3 = n.block(p, 0);
            let h4 = n.block(h3, 0);
            let a = n.add(h4, h3);
            n.poly(a)
        });
    }
}
