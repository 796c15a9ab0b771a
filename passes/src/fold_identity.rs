//! `fold_identity`: removes `Identity` nodes (torch's exporter emits them for shared
//! initializers), rewiring their consumers and the graph outputs to the Identity's input.
//!
//! Preconditions: none. Afterwards: no `Identity` node remains; values are unchanged.
//! Idempotent.

use crate::ir::{Graph, Op};
use crate::pass::{bypass, PassError, PassReport};

pub fn run(g: &mut Graph) -> Result<PassReport, PassError> {
    let mut rep = PassReport::new("fold_identity");
    for id in g.topo_order()? {
        if matches!(g.node(id).op, Op::Identity) {
            let src = g.inputs_of(id)[0];
            let name = g.node(id).name.clone();
            bypass(g, id, src);
            rep.push(&g.node(src).name.clone(), vec![name], "removed Identity");
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Tensor;
    use crate::pass::testutil::{rel_err, Rng};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn removes_identities_and_keeps_values(seed in any::<u64>(), k in 1usize..4) {
            let mut rng = Rng(seed);
            let mut g = Graph::new();
            let x = g.add_input("x", vec![1, 3]);
            let mut h = x;
            for i in 0..k {
                h = g.add_node(format!("id{i}"), Op::Identity, &[h]).unwrap();
                let c = g.add_const(format!("c{i}"), rng.tensor(vec![3], -1.0, 1.0));
                h = g.add_node(format!("add{i}"), Op::Add, &[h, c]).unwrap();
            }
            let out = g.add_node("out", Op::Identity, &[h]).unwrap();
            g.set_outputs(vec![out]);
            let before = g.clone();
            let rep = run(&mut g).unwrap();
            prop_assert_eq!(rep.changes.len(), k + 1);
            g.validate().unwrap();
            prop_assert!(g.node_ids().iter().all(|&n| !matches!(g.node(n).op, Op::Identity)));
            let inp = vec![Tensor::new(vec![1, 3], rng.vec(3, -1.0, 1.0)).unwrap()];
            prop_assert!(rel_err(&before, &g, &inp) < 1e-12);
            prop_assert!(run(&mut g).unwrap().is_empty());
        }
    }
}
