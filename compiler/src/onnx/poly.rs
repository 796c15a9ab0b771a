//! The polynomial pattern matcher: finds expression trees of Add / Sub / Mul / Div-by-constant
//! nodes over ONE tensor x (Pow(x, 2) was already imported as Mul(x, x)) that expand
//! symbolically to degree 2, e.g. `c2*x*x + c1*x + c0` in any order, Horner form
//! `(c2*x + c1)*x + c0`, `x*x`, scaled variants, with constants broadcast per channel, and
//! replaces each whole tree by one `Poly::Quadratic` node. Intermediate results must have no
//! consumer outside the tree and the same shape as x.

use passes::ir::{Graph, NodeId, Op, Poly, Tensor};

/// A candidate tree, before coefficients are computed.
enum Term {
    Var,
    Const(Tensor),
    Add(Box<Term>, Box<Term>),
    Sub(Box<Term>, Box<Term>),
    Mul(Box<Term>, Box<Term>),
    Div(Box<Term>, Tensor),
}

#[derive(Clone, Default)]
struct State {
    base: Option<NodeId>,
    interior: Vec<NodeId>,
}

/// Builds the term rooted at `n`. `parent` is the tree node reading `n` (None for the root).
fn build(g: &Graph, n: NodeId, parent: Option<NodeId>, st: &mut State) -> Option<Term> {
    let node = g.node(n);
    if let Op::Constant(t) = &node.op {
        return Some(Term::Const(t.clone()));
    }
    let eligible = node.op.is_binary_elementwise()
        && match parent {
            None => true,
            Some(p) => !g.is_output(n) && g.consumers(n).iter().all(|&(c, _)| c == p),
        };
    if eligible {
        let saved = st.clone();
        st.interior.push(n);
        let ins = g.inputs_of(n);
        let t = (|| {
            let a = build(g, ins[0], Some(n), st)?;
            if let Op::Div = node.op {
                return match &g.node(ins[1]).op {
                    Op::Constant(t) => Some(Term::Div(Box::new(a), t.clone())),
                    _ => None,
                };
            }
            let b = build(g, ins[1], Some(n), st)?;
            let (a, b) = (Box::new(a), Box::new(b));
            Some(match node.op {
                Op::Add => Term::Add(a, b),
                Op::Sub => Term::Sub(a, b),
                _ => Term::Mul(a, b),
            })
        })();
        match t {
            Some(t) => return Some(t),
            None => *st = saved,
        }
        // A failed root is not retried as a leaf.
        parent?;
    }
    // A leaf: the variable.
    match st.base {
        None => st.base = Some(n),
        Some(b) if b == n => {}
        Some(_) => return None,
    }
    Some(Term::Var)
}

/// Per-channel values of a constant broadcast against `shape` (channel axis 1), or None if
/// it varies along another axis or would grow the shape.
fn per_channel(t: &Tensor, shape: &[usize], channels: usize) -> Option<Vec<f64>> {
    if t.rank() > shape.len() {
        return None;
    }
    let off = shape.len() - t.rank();
    let mut on_channel = false;
    for (i, &d) in t.shape().iter().enumerate() {
        if d == 1 {
            continue;
        }
        if i + off == 1 && d == shape[1] {
            on_channel = true;
        } else {
            return None;
        }
    }
    Some(if on_channel {
        t.data().to_vec()
    } else {
        vec![t.data()[0]; channels]
    })
}

type Coeffs = [Vec<f64>; 3];

/// Expands a term into per-channel coefficients and its structural degree.
fn expand(t: &Term, shape: &[usize], c: usize) -> Option<(Coeffs, usize)> {
    let zero = vec![0.0; c];
    Some(match t {
        Term::Var => ([zero.clone(), vec![1.0; c], zero], 1),
        Term::Const(k) => ([per_channel(k, shape, c)?, zero.clone(), zero], 0),
        Term::Add(a, b) | Term::Sub(a, b) => {
            let ((pa, da), (pb, db)) = (expand(a, shape, c)?, expand(b, shape, c)?);
            let s = if matches!(t, Term::Add(..)) {
                1.0
            } else {
                -1.0
            };
            let f = |i: usize| pa[i].iter().zip(&pb[i]).map(|(x, y)| x + s * y).collect();
            ([f(0), f(1), f(2)], da.max(db))
        }
        Term::Mul(a, b) => {
            let ((pa, da), (pb, db)) = (expand(a, shape, c)?, expand(b, shape, c)?);
            if da + db > 2 {
                return None;
            }
            let mut r = [zero.clone(), zero.clone(), zero];
            for i in 0..3 {
                for j in 0..3 - i {
                    for ch in 0..c {
                        r[i + j][ch] += pa[i][ch] * pb[j][ch];
                    }
                }
            }
            (r, da + db)
        }
        Term::Div(a, k) => {
            let (pa, da) = expand(a, shape, c)?;
            let inv = per_channel(k, shape, c)?;
            if inv.contains(&0.0) {
                return None;
            }
            let f = |i: usize| pa[i].iter().zip(&inv).map(|(x, y)| x / y).collect();
            ([f(0), f(1), f(2)], da)
        }
    })
}

/// One coefficient vector, shortened to length 1 when all channels agree.
fn compact(v: Vec<f64>) -> Vec<f64> {
    if v.iter().all(|&x| x == v[0]) {
        vec![v[0]]
    } else {
        v
    }
}

/// Replaces every maximal degree-2 polynomial tree by a `Poly` node (named after the tree's
/// root); returns how many were created.
pub fn match_polynomials(g: &mut Graph) -> usize {
    let Ok(order) = g.topo_order() else { return 0 };
    let mut count = 0;
    for &root in order.iter().rev() {
        if !g.contains(root) || !g.node(root).op.is_binary_elementwise() {
            continue;
        }
        let mut st = State::default();
        let Some(term) = build(g, root, None, &mut st) else {
            continue;
        };
        let Some(base) = st.base else { continue };
        let shape = g.node(base).shape.clone();
        if st.interior.iter().any(|&i| g.node(i).shape != shape) {
            continue;
        }
        let c = if shape.len() >= 2 { shape[1] } else { 1 };
        if c == 0 {
            continue;
        }
        let Some(([c0, c1, c2], deg)) = expand(&term, &shape, c) else {
            continue;
        };
        if deg != 2 {
            continue;
        }
        let poly = Poly::Quadratic {
            c0: compact(c0),
            c1: compact(c1),
            c2: compact(c2),
        };
        let name = g.node(root).name.clone();
        let Ok(p) = g.add_node(name, Op::Poly(poly), &[base]) else {
            continue;
        };
        g.replace_uses(root, p);
        for &i in &st.interior {
            g.remove_node(i);
        }
        count += 1;
    }
    if count > 0 {
        g.remove_dead();
    }
    count
}

#[cfg(test)]
mod tests {
    use super::super::builder::ModelBuilder;
    use super::super::{import_model, ImportOptions};
    use passes::interpret::run;
    use passes::ir::{Graph, Op, Poly, Tensor};

    const C: i64 = 3;

    fn t(shape: &[usize], d: &[f64]) -> Tensor {
        Tensor::new(shape.to_vec(), d.to_vec()).unwrap()
    }

    /// A model with input x [2, C, 2, 2] and scalar constants a=0.5, b=-2, c=3, a per-channel
    /// vector v = [1, 2, 3] (shape [C, 1, 1]), built by `f`, output "y".
    fn model(f: impl FnOnce(&mut ModelBuilder)) -> ModelBuilder {
        let mut b = ModelBuilder::new(13);
        b.input("x", &[2, C, 2, 2])
            .init("a", &Tensor::scalar(0.5))
            .init("b", &Tensor::scalar(-2.0))
            .init("c", &Tensor::scalar(3.0))
            .init("v", &t(&[3, 1, 1], &[1.0, 2.0, 3.0]))
            .init("v4", &t(&[1, 3, 1, 1], &[-1.0, 0.25, 4.0]))
            .init("two", &Tensor::scalar(2.0))
            .init("pix", &Tensor::full(vec![1, 1, 2, 2], 1.5));
        f(&mut b);
        b.output("y");
        b
    }

    fn import(b: &ModelBuilder, poly: bool) -> Graph {
        let opts = ImportOptions {
            match_polynomials: poly,
            ..Default::default()
        };
        import_model(&b.build(), None, &opts).unwrap().graph
    }

    fn polys(g: &Graph) -> Vec<Poly> {
        g.node_ids()
            .into_iter()
            .filter_map(|id| match &g.node(id).op {
                Op::Poly(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Checks the model matches to exactly one Poly feeding the output, with these
    /// coefficients, and that the rewrite keeps the values.
    fn expect_one(b: &ModelBuilder, c0: &[f64], c1: &[f64], c2: &[f64]) {
        let g = import(b, true);
        let ps = polys(&g);
        assert_eq!(
            ps,
            vec![Poly::Quadratic {
                c0: c0.to_vec(),
                c1: c1.to_vec(),
                c2: c2.to_vec()
            }]
        );
        assert_eq!(g.len(), 2, "only x and the Poly remain");
        same_values(b, &g);
    }

    fn same_values(b: &ModelBuilder, g: &Graph) {
        let plain = import(b, false);
        let x = Tensor::new(
            vec![2, 3, 2, 2],
            (0..24).map(|i| (i as f64 - 11.0) / 7.0).collect(),
        )
        .unwrap();
        let (r1, r2) = (
            run(g, std::slice::from_ref(&x)).unwrap(),
            run(&plain, &[x]).unwrap(),
        );
        assert!(r1[0].max_abs_diff(&r2[0]).unwrap() < 1e-12);
    }

    #[test]
    fn standard_form_any_order() {
        // 0.5*x*x + (-2)*x + 3
        let b = model(|b| {
            b.node("Mul", &["a", "x"], &["t1"], vec![])
                .node("Mul", &["t1", "x"], &["t2"], vec![])
                .node("Mul", &["b", "x"], &["t3"], vec![])
                .node("Add", &["t2", "t3"], &["t4"], vec![])
                .node("Add", &["t4", "c"], &["y"], vec![]);
        });
        expect_one(&b, &[3.0], &[-2.0], &[0.5]);
        // 3 + (x * -2 + x * (x * 0.5))
        let b = model(|b| {
            b.node("Mul", &["x", "b"], &["t1"], vec![])
                .node("Mul", &["x", "a"], &["t2"], vec![])
                .node("Mul", &["x", "t2"], &["t3"], vec![])
                .node("Add", &["t1", "t3"], &["t4"], vec![])
                .node("Add", &["c", "t4"], &["y"], vec![]);
        });
        expect_one(&b, &[3.0], &[-2.0], &[0.5]);
    }

    #[test]
    fn horner_square_and_pow() {
        // (0.5*x + -2)*x + 3
        let b = model(|b| {
            b.node("Mul", &["a", "x"], &["t1"], vec![])
                .node("Add", &["t1", "b"], &["t2"], vec![])
                .node("Mul", &["t2", "x"], &["t3"], vec![])
                .node("Add", &["t3", "c"], &["y"], vec![]);
        });
        expect_one(&b, &[3.0], &[-2.0], &[0.5]);
        let b = model(|b| {
            b.node("Mul", &["x", "x"], &["y"], vec![]);
        });
        expect_one(&b, &[0.0], &[0.0], &[1.0]);
        // Pow(x, 2) * 3 - x
        let b = model(|b| {
            b.node("Pow", &["x", "two"], &["t1"], vec![])
                .node("Mul", &["t1", "c"], &["t2"], vec![])
                .node("Sub", &["t2", "x"], &["y"], vec![]);
        });
        expect_one(&b, &[0.0], &[-1.0], &[3.0]);
    }

    #[test]
    fn scaled_and_divided() {
        // ((x*x + 2x) / 2 + 3) * -2  and  3 - x*x
        let b = model(|b| {
            b.node("Mul", &["x", "x"], &["t1"], vec![])
                .node("Mul", &["two", "x"], &["t2"], vec![])
                .node("Add", &["t1", "t2"], &["t3"], vec![])
                .node("Div", &["t3", "two"], &["t4"], vec![])
                .node("Add", &["t4", "c"], &["t5"], vec![])
                .node("Mul", &["t5", "b"], &["y"], vec![]);
        });
        expect_one(&b, &[-6.0], &[-2.0], &[-1.0]);
        let b = model(|b| {
            b.node("Mul", &["x", "x"], &["t1"], vec![])
                .node("Sub", &["c", "t1"], &["y"], vec![]);
        });
        expect_one(&b, &[3.0], &[0.0], &[-1.0]);
    }

    #[test]
    fn per_channel_constants() {
        // v*x*x + v4*x + 3 with v [C,1,1] and v4 [1,C,1,1]
        let b = model(|b| {
            b.node("Mul", &["x", "x"], &["t1"], vec![])
                .node("Mul", &["t1", "v"], &["t2"], vec![])
                .node("Mul", &["v4", "x"], &["t3"], vec![])
                .node("Add", &["t2", "t3"], &["t4"], vec![])
                .node("Add", &["t4", "c"], &["y"], vec![]);
        });
        expect_one(&b, &[3.0], &[-1.0, 0.25, 4.0], &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn non_matches() {
        // x*x also leaves the graph: only x*x becomes a Poly; the outer tree stays.
        let mut b = model(|b| {
            b.node("Mul", &["x", "x"], &["t1"], vec![])
                .node("Add", &["t1", "x"], &["y"], vec![]);
        });
        b.output("t1");
        let g = import(&b, true);
        assert_eq!(
            polys(&g),
            vec![Poly::Quadratic {
                c0: vec![0.0],
                c1: vec![0.0],
                c2: vec![1.0]
            }]
        );
        assert!(g.node_ids().iter().any(|&i| g.node(i).op == Op::Add));
        // Degree 3: x*x*x keeps an outer Mul.
        let b = model(|b| {
            b.node("Mul", &["x", "x"], &["t1"], vec![])
                .node("Mul", &["t1", "x"], &["y"], vec![]);
        });
        let g = import(&b, true);
        assert_eq!(polys(&g).len(), 1);
        assert!(g.node_ids().iter().any(|&i| g.node(i).op == Op::Mul));
        same_values(&b, &g);
        // A per-pixel constant is not per-channel; a division by x is not polynomial.
        for b in [
            model(|b| {
                b.node("Mul", &["x", "x"], &["t1"], vec![]).node(
                    "Mul",
                    &["t1", "pix"],
                    &["y"],
                    vec![],
                );
            }),
            model(|b| {
                b.node("Add", &["x", "c"], &["t1"], vec![]).node(
                    "Div",
                    &["t1", "x"],
                    &["y"],
                    vec![],
                );
            }),
            model(|b| {
                b.node("Relu", &["x"], &["r"], vec![])
                    .node("Mul", &["x", "r"], &["y"], vec![]);
            }),
        ] {
            let g = import(&b, true);
            assert!(polys(&g).iter().all(|p| *p
                != Poly::Quadratic {
                    c0: vec![0.0],
                    c1: vec![0.0],
                    c2: vec![1.5]
                }));
            same_values(&b, &g);
        }
        // Degree 1 stays as it is.
        let b = model(|b| {
            b.node("Mul", &["x", "a"], &["t1"], vec![])
                .node("Add", &["t1", "c"], &["y"], vec![]);
        });
        assert!(polys(&import(&b, true)).is_empty());
    }
}
