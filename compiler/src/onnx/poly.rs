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
        if parent.is_none() {
            return None;
        }
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
    Some(if on_channel { t.data().to_vec() } else { vec![t.data()[0]; channels] })
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
            let s = if matches!(t, Term::Add(..)) { 1.0 } else { -1.0 };
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
        let Some(term) = build(g, root, None, &mut st) else { continue };
        let Some(base) = st.base else { continue };
        let shape = g.node(base).shape.clone();
        if st.interior.iter().any(|&i| g.node(i).shape != shape) {
            continue;
        }
        let c = if shape.len() >= 2 { shape[1] } else { 1 };
        if c == 0 {
            continue;
        }
        let Some(([c0, c1, c2], deg)) = expand(&term, &shape, c) else { continue };
        if deg != 2 {
            continue;
        }
        let poly = Poly::Quadratic { c0: compact(c0), c1: compact(c1), c2: compact(c2) };
        let name = g.node(root).name.clone();
        let Ok(p) = g.add_node(name, Op::Poly(poly), &[base]) else { continue };
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
