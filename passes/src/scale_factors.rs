//! The scale-factor solver shared by `redistribute_pool` and `redistribute_leading` (an
//! analysis plus one rewrite, not a pass of its own).
//!
//! Every value `v` gets a per-channel factor `s` and the graph is rewritten to compute
//! `v' = v / s` instead. Linear layers (Conv, Gemm, BN, Mul/Div by a constant) absorb any
//! factor on their input and may emit any factor on their output (their weights become
//! `w s_in / s_out`): they are the free choices. The constraints:
//! - a monic quadratic Poly: `s_out = c2 s_in^2` (then it computes `x^2 + c1' x + c0'`);
//! - a pool whose divisor `d` is dropped (Sum pool): `s_out = s_in / d`;
//! - Add / Sub of two values: both addends and the sum share one factor per channel;
//! - Flatten / Reshape / Slice / Pad / Identity / Sum pools carry factors along (a zero
//!   channel of a Pad takes any factor);
//! - graph inputs and outputs, and every op not listed, have factor 1.
//!
//! Solving: one variable per (node, channel); equalities by union-find; the Poly / pool
//! relations are `out = k in^p` links, solved backwards when a demand reaches them (a skip
//! branch with factor `t` meeting `Poly(Conv(..))` sets the Conv's output factor to
//! `sqrt(t / c2)`: the "push `sqrt(c2)` into the producer" rule, applied to any depth of
//! nesting). Constraints are applied node by node in topological order and transactionally;
//! one that cannot hold (two determined factors meet, or a square root of a negative ratio)
//! is resolved by inserting an explicit `Mul` by a constant before the Add input (or the
//! output, or the barrier op): that node pays one level and is reported. What is still
//! free at the end is set to 1.
//!
//! Why not egg: the placements form a system of per-channel multiplicative equalities with
//! a few one-way links; union-find solves it exactly in near-linear time, while an
//! e-graph would need the per-channel vectors as e-class analyses and a cost extraction
//! that this structure makes unnecessary (and another dependency in the CI build). egg is
//! the better tool once choices interact with level costs non-locally (e.g. choosing
//! between paying at an Add and paying at a Poly); see ARCHITECTURE.md.

use std::collections::HashMap;

use crate::interpret::binary;
use crate::ir::{Graph, NodeId, Op, Poly, Tensor};
use crate::pass::{channels, coef, PassError, PassReport};

/// Which relations the solver uses.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// AveragePool / GlobalAveragePool become sum pools, their divisor a factor.
    pub pools: bool,
    /// Quadratic Polys are made monic (else they are free: coefficients absorb factors).
    pub monic: bool,
}

#[derive(Clone, Debug)]
struct Var {
    parent: usize,
    value: Option<f64>,
    /// On roots: `self = k * input^p`.
    derived: Option<(usize, f64, i32)>,
    /// On roots: vars derived from this one.
    dependents: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
struct Vars(Vec<Var>, bool);

/// Factors outside [MIN_FACTOR, 1 / MIN_FACTOR] are refused while solving.
const MIN_FACTOR: f64 = 1.0 / (1u64 << 40) as f64;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

impl Vars {
    fn fresh(&mut self) -> usize {
        let id = self.0.len();
        self.0.push(Var {
            parent: id,
            value: None,
            derived: None,
            dependents: vec![],
        });
        id
    }
    fn fixed(&mut self, v: f64) -> usize {
        let id = self.fresh();
        self.0[id].value = Some(v);
        id
    }
    fn find(&mut self, mut a: usize) -> usize {
        while self.0[a].parent != a {
            let p = self.0[a].parent;
            self.0[a].parent = self.0[p].parent;
            a = p;
        }
        a
    }
    fn derived(&mut self, input: usize, k: f64, p: i32) -> usize {
        let r = self.find(input);
        let id = self.fresh();
        self.0[id].derived = Some((r, k, p));
        if let Some(x) = self.0[r].value {
            self.0[id].value = Some(k * x.powi(p));
        } else {
            self.0[r].dependents.push(id);
        }
        id
    }
    fn value(&mut self, a: usize) -> Option<f64> {
        let r = self.find(a);
        self.0[r].value
    }
    fn set(&mut self, a: usize, val: f64, depth: usize) -> Result<(), ()> {
        if depth > 10_000 || !val.is_finite() || val == 0.0 {
            return Err(());
        }
        // While solving constraints, factors far from 1 count as conflicts (a chain whose
        // factors square at every block drifts doubly exponentially): paying a level there
        // resets the chain.
        if self.1 && !(MIN_FACTOR..=1.0 / MIN_FACTOR).contains(&val.abs()) {
            return Err(());
        }
        let mut r = self.find(a);
        if let Some(x) = self.0[r].value {
            return if close(x, val) { Ok(()) } else { Err(()) };
        }
        if let Some((inp, k, p)) = self.0[r].derived {
            let need = val / k;
            let iv = if p == 2 {
                if need <= 0.0 {
                    return Err(());
                }
                need.sqrt()
            } else {
                need
            };
            self.set(inp, iv, depth + 1)?;
            r = self.find(r);
            if let Some(x) = self.0[r].value {
                return if close(x, val) { Ok(()) } else { Err(()) };
            }
        }
        self.0[r].value = Some(val);
        for d in std::mem::take(&mut self.0[r].dependents) {
            let (_, k, p) = self.0[d].derived.expect("dependents are derived");
            self.set(d, k * val.powi(p), depth + 1)?;
        }
        Ok(())
    }
    /// Follows the links from `root`; `Reaches(K, P)` when `root = K target^P`.
    fn chain_to(&mut self, root: usize, target: usize) -> Chain {
        let (mut x, mut kk, mut pp) = (root, 1.0f64, 1i32);
        while let Some((inp, k, p)) = self.0[x].derived {
            let ri = self.find(inp);
            kk *= k.powi(pp);
            pp = pp.saturating_mul(p);
            if ri == root || pp > 1 << 20 {
                return Chain::Bad;
            }
            if ri == target {
                return Chain::Reaches(kk, pp);
            }
            x = ri;
        }
        Chain::Free
    }

    fn union(&mut self, a: usize, b: usize, depth: usize) -> Result<(), ()> {
        if depth > 10_000 {
            return Err(());
        }
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Ok(());
        }
        match (self.0[ra].value, self.0[rb].value) {
            (Some(x), Some(y)) => return if close(x, y) { Ok(()) } else { Err(()) },
            (Some(x), None) => return self.set(rb, x, depth + 1),
            (None, Some(y)) => return self.set(ra, y, depth + 1),
            (None, None) => {}
        }
        // If the link chain from one reaches the other (a skip over several blocks meets
        // its own source), the equality is `x = K x^P`: solve it for x.
        for (root, child) in [(ra, rb), (rb, ra)] {
            match self.chain_to(root, child) {
                Chain::Reaches(kk, pp) => {
                    if pp == 1 || !kk.is_finite() || kk == 0.0 {
                        return Err(());
                    }
                    let v = kk.signum() * kk.abs().powf(1.0 / (1.0 - pp as f64));
                    return self.set(child, v, depth + 1);
                }
                Chain::Bad => return Err(()),
                Chain::Free => {}
            }
        }
        let (da, db) = (self.0[ra].derived, self.0[rb].derived);
        if let (Some(_), Some((inp, _, _))) = (da, db) {
            // Two independent links meet: fix one chain's free end and retry.
            self.set(inp, 1.0, depth + 1)?;
            return self.union(ra, rb, depth + 1);
        }
        let (root, child) = if db.is_some() { (rb, ra) } else { (ra, rb) };
        self.0[child].parent = root;
        let deps = std::mem::take(&mut self.0[child].dependents);
        self.0[root].dependents.extend(deps);
        Ok(())
    }
}

enum Chain {
    Free,
    Reaches(f64, i32),
    Bad,
}

enum Kind {
    Free,
    Pass,
    Barrier,
}

fn const_id(g: &Graph, id: NodeId) -> bool {
    matches!(g.node(id).op, Op::Constant(_))
}

/// The input channel each output channel of a layout op reads (`None`: a zero channel).
fn channel_map(g: &Graph, id: NodeId) -> Option<Vec<Option<usize>>> {
    let n = g.node(id);
    let inp = g.inputs_of(id);
    let ins = g.node(*inp.first()?).shape.clone();
    let cout = channels(&n.shape);
    let cin = channels(&ins);
    match &n.op {
        Op::Identity | Op::SumPool(_) | Op::GlobalSumPool => Some((0..cout).map(Some).collect()),
        Op::Flatten { .. } | Op::Reshape { .. } => {
            if n.shape == ins {
                return Some((0..cout).map(Some).collect());
            }
            let flat_like = ins.len() >= 2
                && n.shape.len() == 2
                && n.shape[0] == ins[0]
                && n.shape[1] == ins[1..].iter().product::<usize>();
            if !flat_like {
                return None;
            }
            let inner: usize = ins[2..].iter().product();
            Some((0..cout).map(|f| Some(f / inner.max(1))).collect())
        }
        Op::Slice { axes } if ins.len() >= 2 => {
            let a = axes[1];
            Some(
                (0..cout)
                    .map(|c| {
                        let i = a.start as isize + c as isize * a.step;
                        (i >= 0 && (i as usize) < cin).then_some(i as usize)
                    })
                    .collect(),
            )
        }
        Op::Pad { pads, value } if *value == 0.0 && ins.len() >= 2 => {
            let b = pads[1].0;
            Some(
                (0..cout)
                    .map(|c| (c >= b && c - b < cin).then(|| c - b))
                    .collect(),
            )
        }
        _ => None,
    }
}

struct Solver<'a> {
    g: &'a mut Graph,
    opts: Options,
    vars: Vars,
    fac: HashMap<NodeId, Vec<usize>>,
    sum_pools: Vec<NodeId>,
    monic: Vec<NodeId>,
    /// Multiplicative depth estimate (to put align multiplies off the critical path).
    depth: HashMap<NodeId, usize>,
}

impl Solver<'_> {
    fn fresh_vec(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.vars.fresh()).collect()
    }

    fn kind(&self, id: NodeId) -> Kind {
        let g = &*self.g;
        let ins = g.inputs_of(id);
        let same_shape = |a: NodeId, b: NodeId| g.node(a).shape == g.node(b).shape;
        match &g.node(id).op {
            Op::Conv(_) | Op::BatchNorm(_) => Kind::Free,
            Op::Gemm(gm) if !gm.trans_a => Kind::Free,
            Op::Poly(_) => Kind::Free, // monic ones are handled before
            Op::Mul if const_id(g, ins[1]) || const_id(g, ins[0]) => Kind::Free,
            Op::Div if const_id(g, ins[1]) => Kind::Free,
            Op::Add | Op::Sub
                if (const_id(g, ins[0]) || const_id(g, ins[1]))
                    && (same_shape(id, ins[0]) || same_shape(id, ins[1])) =>
            {
                Kind::Pass
            }
            _ if channel_map(g, id).is_some() => Kind::Pass,
            _ => Kind::Barrier,
        }
    }

    /// Inserts `Mul(src, 1)` on input `slot` of `node`; returns the new node.
    fn insert_mul(&mut self, node: NodeId, slot: usize) -> Result<NodeId, PassError> {
        let src = self.g.inputs_of(node)[slot];
        let name = format!("{}/align{slot}", self.g.node(node).name);
        let c = self.g.add_const(format!("{name}/k"), Tensor::scalar(1.0));
        let m = self.g.add_node(name, Op::Mul, &[src, c])?;
        self.g.set_input(node, slot, m);
        let d = self.depth[&src] + 1;
        self.depth.insert(m, d);
        let n = channels(&self.g.node(m).shape);
        let v = self.fresh_vec(n);
        self.fac.insert(m, v);
        Ok(m)
    }

    fn set_all(&mut self, vs: &[usize], v: f64) -> Result<(), ()> {
        for &x in vs {
            self.vars.set(x, v, 0)?;
        }
        Ok(())
    }

    fn visit(&mut self, id: NodeId, rep: &mut PassReport) -> Result<(), PassError> {
        let g = &*self.g;
        let node = g.node(id);
        let c = channels(&node.shape);
        let ins = g.inputs_of(id);
        let inv = |s: &Self, i: usize| s.fac.get(&ins[i]).cloned();
        let out: Vec<usize> = match &node.op {
            Op::Input { .. } => (0..c).map(|_| self.vars.fixed(1.0)).collect(),
            Op::Constant(_) => return Ok(()),
            Op::Poly(Poly::Quadratic { c2, .. })
                if self.opts.monic && c2.iter().all(|&x| x != 0.0 && x.is_finite()) =>
            {
                let c2 = c2.clone();
                let i = inv(self, 0).expect("poly input has factors");
                self.monic.push(id);
                (0..c)
                    .map(|ch| self.vars.derived(i[ch], coef(&c2, ch), 2))
                    .collect()
            }
            Op::AveragePool(p)
                if self.opts.pools && (p.count_include_pad || p.pads.iter().all(|&x| x == 0)) =>
            {
                let d = (p.kernel[0] * p.kernel[1]) as f64;
                let i = inv(self, 0).unwrap();
                self.sum_pools.push(id);
                i.iter()
                    .map(|&v| self.vars.derived(v, 1.0 / d, 1))
                    .collect()
            }
            Op::ReduceMean { axes, .. }
                if self.opts.pools
                    && g.node(ins[0]).shape.len() >= 3
                    && *axes == (2..g.node(ins[0]).shape.len()).collect::<Vec<_>>() =>
            {
                let d: usize = g.node(ins[0]).shape[2..].iter().product();
                let i = inv(self, 0).unwrap();
                self.sum_pools.push(id);
                i.iter()
                    .map(|&v| self.vars.derived(v, 1.0 / d as f64, 1))
                    .collect()
            }
            Op::GlobalAveragePool if self.opts.pools => {
                let d: usize = g.node(ins[0]).shape[2..].iter().product();
                let i = inv(self, 0).unwrap();
                self.sum_pools.push(id);
                i.iter()
                    .map(|&v| self.vars.derived(v, 1.0 / d as f64, 1))
                    .collect()
            }
            Op::Add | Op::Sub
                if !const_id(g, ins[0])
                    && !const_id(g, ins[1])
                    && g.node(ins[0]).shape == node.shape
                    && g.node(ins[1]).shape == node.shape =>
            {
                let a = inv(self, 0).unwrap();
                let mut b = inv(self, 1).unwrap();
                let snap = self.vars.clone();
                let ok = a
                    .iter()
                    .zip(&b)
                    .try_for_each(|(&x, &y)| self.vars.union(x, y, 0));
                let mut a = a;
                if ok.is_err() {
                    self.vars = snap;
                    // Pay on the shallower addend (usually the skip): off the critical path.
                    let slot = usize::from(self.depth[&ins[1]] <= self.depth[&ins[0]]);
                    let m = self.insert_mul(id, slot)?;
                    b = self.fac[&m].clone();
                    if slot == 0 {
                        a = inv(self, 1).unwrap();
                    }
                    for (&x, &y) in a.iter().zip(&b) {
                        self.vars.union(x, y, 0).expect("fresh factors unify");
                    }
                    let name = self.g.node(m).name.clone();
                    rep.push_cost(
                        &name,
                        format!(
                            "factors of the two addends of '{}' could not be made equal: \
                             explicit constant multiply (one level on that branch)",
                            self.g.node(id).name
                        ),
                    );
                }
                a
            }
            _ => match self.kind(id) {
                Kind::Free => self.fresh_vec(c),
                Kind::Pass => {
                    let src = if const_id(g, ins[0]) { 1 } else { 0 };
                    let i = inv(self, src).unwrap();
                    match channel_map(g, id) {
                        Some(map) => map
                            .iter()
                            .map(|m| match m {
                                Some(ch) => i[*ch],
                                None => self.vars.fresh(),
                            })
                            .collect(),
                        None => i, // Add / Sub with a constant
                    }
                }
                Kind::Barrier => {
                    for (slot, src) in ins.iter().enumerate() {
                        let Some(i) = self.fac.get(src).cloned() else {
                            continue;
                        };
                        let snap = self.vars.clone();
                        if self.set_all(&i, 1.0).is_err() {
                            self.vars = snap;
                            let m = self.insert_mul(id, slot)?;
                            let v = self.fac[&m].clone();
                            self.set_all(&v, 1.0).expect("fresh");
                            let name = self.g.node(m).name.clone();
                            rep.push_cost(&name, "factor could not reach 1 before a barrier op");
                        }
                    }
                    (0..c).map(|_| self.vars.fixed(1.0)).collect()
                }
            },
        };
        self.fac.insert(id, out);
        Ok(())
    }
}

fn factors_of(vars: &mut Vars, v: &[usize]) -> Vec<f64> {
    v.iter().map(|&x| vars.value(x).unwrap_or(1.0)).collect()
}

fn all_one(v: &[f64]) -> bool {
    v.iter().all(|&x| x == 1.0)
}

/// `t` (broadcast against a value of `shape`) times the per-channel factors `f`, in the
/// smallest shape that holds the product: the constant's own axes and the channel axis
/// (a scalar on an (N, C, H, W) value becomes (1, C, 1, 1), not a full tensor, so it stays
/// a per-channel constant for the lowering).
fn rescale_const(t: &Tensor, shape: &[usize], f: &[f64]) -> Result<Tensor, PassError> {
    let c = channels(shape);
    let per_channel: Vec<usize> = if shape.len() >= 2 {
        (0..shape.len())
            .map(|a| if a == 1 { c } else { 1 })
            .collect()
    } else {
        shape.to_vec()
    };
    let mut full = binary(t, &Tensor::zeros(per_channel), |a, b| a + b)?;
    let fs = full.shape().to_vec();
    let inner: usize = if fs.len() >= 2 {
        fs[2..].iter().product()
    } else {
        full.len()
    };
    for (i, v) in full.data_mut().iter_mut().enumerate() {
        let ch = if fs.len() >= 2 { (i / inner) % c } else { 0 };
        *v *= coef(f, ch);
    }
    Ok(full)
}

/// Runs the solver and rewrites the graph; pushes changes to `rep`.
pub fn solve_and_apply(
    g: &mut Graph,
    opts: Options,
    rep: &mut PassReport,
) -> Result<(), PassError> {
    let order = g.topo_order()?;
    let mut depth = HashMap::new();
    for &id in &order {
        let d = g.inputs_of(id).iter().map(|i| depth[i]).max().unwrap_or(0);
        let own = matches!(
            g.node(id).op,
            Op::Conv(_) | Op::Gemm(_) | Op::Poly(_) | Op::BatchNorm(_) | Op::Mul | Op::MatMul
        );
        depth.insert(id, d + usize::from(own));
    }
    let mut s = Solver {
        depth,
        g,
        opts,
        vars: Vars(vec![], true),
        fac: HashMap::new(),
        sum_pools: vec![],
        monic: vec![],
    };
    for id in order {
        s.visit(id, rep)?;
    }
    // Graph outputs have factor 1.
    for (k, o) in s.g.outputs().to_vec().into_iter().enumerate() {
        let Some(v) = s.fac.get(&o).cloned() else {
            continue;
        };
        let snap = s.vars.clone();
        if s.set_all(&v, 1.0).is_err() {
            s.vars = snap;
            let name = format!("{}/out_align", s.g.node(o).name);
            let c = s.g.add_const(format!("{name}/k"), Tensor::scalar(1.0));
            let m = s.g.add_node(name.clone(), Op::Mul, &[o, c])?;
            let mut outs = s.g.outputs().to_vec();
            outs[k] = m;
            s.g.set_outputs(outs);
            let n = channels(&s.g.node(m).shape);
            let fv = s.fresh_vec(n);
            s.fac.insert(m, fv.clone());
            s.set_all(&fv, 1.0).expect("fresh");
            rep.push_cost(&name, "output factor could not reach 1: constant multiply");
        }
    }
    // Whatever is still free is fixed in creation order (producers first): to the fixed
    // point `1/|k|` of a squaring link it feeds (`k v^2 = 1/k`: identity-shortcut chains
    // with a shared c2 then keep the factor 1/c2 at every block instead of squaring it
    // away), else to 1.
    s.vars.1 = false;
    for x in 0..s.vars.0.len() {
        if s.vars.value(x).is_none() {
            let r = s.vars.find(x);
            let k = s.vars.0[r]
                .dependents
                .iter()
                .find_map(|&d| match s.vars.0[d].derived {
                    Some((_, k, 2)) => Some(k),
                    _ => None,
                });
            let v = k.map_or(1.0, |k| 1.0 / k.abs());
            s.vars
                .set(x, v, 0)
                .expect("unconstrained factors can be set");
        }
    }
    let Solver {
        g,
        mut vars,
        mut fac,
        sum_pools,
        monic,
        ..
    } = s;
    let monic: std::collections::HashSet<NodeId> = monic.into_iter().collect();
    let pools: std::collections::HashSet<NodeId> = sum_pools.into_iter().collect();
    for id in g.topo_order()? {
        let Some(outv) = fac.get(&id) else { continue };
        let so = factors_of(&mut vars, outv);
        let ins = g.inputs_of(id);
        let si: Vec<Vec<f64>> = ins
            .iter()
            .map(|i| {
                fac.get(i)
                    .map(|v| factors_of(&mut vars, v))
                    .unwrap_or_default()
            })
            .collect();
        let name = g.node(id).name.clone();
        let trivial = all_one(&so) && si.iter().all(|v| all_one(v));
        if pools.contains(&id) {
            let op = match &g.node(id).op {
                Op::AveragePool(p) => Op::SumPool(p.clone()),
                _ => Op::GlobalSumPool,
            };
            let keep = matches!(
                g.node(id).op,
                Op::ReduceMean {
                    keepdims: false,
                    ..
                }
            );
            g.node_mut(id).op = op;
            if keep {
                // ReduceMean without keepdims: a GlobalSumPool and a Reshape to [N, C].
                // The pool gets its [N, C, 1, .., 1] shape before the reshape is wired
                // in; shapes are re-inferred only once its consumers read the reshape.
                let shape = g.node(id).shape.clone();
                let src = &g.node(ins[0]).shape;
                let pooled: Vec<usize> = src[..2]
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(1, src.len() - 2))
                    .collect();
                g.node_mut(id).shape = pooled;
                let r = g.add_node(format!("{name}/reshape"), Op::Reshape { shape }, &[id])?;
                g.replace_uses(id, r);
                g.infer_shapes()?;
                let v = fac[&id].clone();
                fac.insert(r, v);
            }
            rep.push(
                &name,
                vec![],
                "average pool became a sum pool; its divisor moved",
            );
            continue;
        }
        if trivial && !monic.contains(&id) {
            continue;
        }
        let shape = g.node(id).shape.clone();
        let what: String = match &mut g.node_mut(id).op {
            Op::Conv(cv) => {
                let ws = cv.weight.shape().to_vec();
                let (m, cg) = (ws[0], ws[1]);
                let per = ws[2] * ws[3];
                let mg = m / cv.group;
                for (i, w) in cv.weight.data_mut().iter_mut().enumerate() {
                    let oc = i / (cg * per);
                    let ic = (oc / mg) * cg + (i / per) % cg;
                    *w *= coef(&si[0], ic) / coef(&so, oc);
                }
                if let Some(b) = &mut cv.bias {
                    for (o, v) in b.data_mut().iter_mut().enumerate() {
                        *v /= coef(&so, o);
                    }
                }
                "weights scaled by input / output factors".into()
            }
            Op::Gemm(gm) => {
                let n = shape[1];
                let c = match &gm.c {
                    None => None,
                    Some(c) => Some(binary(c, &Tensor::zeros(shape.clone()), |a, b| a + b)?),
                };
                let (alpha, beta) = (gm.alpha, gm.beta);
                let cols = gm.b.shape()[1];
                let tb = gm.trans_b;
                for (i, w) in gm.b.data_mut().iter_mut().enumerate() {
                    let (k, j) = if tb {
                        (i % cols, i / cols)
                    } else {
                        (i / cols, i % cols)
                    };
                    *w *= alpha * coef(&si[0], k) / coef(&so, j);
                }
                gm.alpha = 1.0;
                gm.c = c.map(|mut c| {
                    for (i, v) in c.data_mut().iter_mut().enumerate() {
                        *v *= beta / coef(&so, i % n);
                    }
                    c
                });
                gm.beta = 1.0;
                "weights scaled by input / output factors".into()
            }
            Op::BatchNorm(bn) => {
                let (a1, a0) = bn.affine();
                let c = a1.len().max(so.len()).max(si[0].len());
                bn.scale = (0..c)
                    .map(|ch| coef(&a1, ch) * coef(&si[0], ch) / coef(&so, ch))
                    .collect();
                bn.bias = (0..c).map(|ch| coef(&a0, ch) / coef(&so, ch)).collect();
                bn.mean = vec![0.0; c];
                bn.var = vec![1.0 - bn.epsilon; c];
                "affine scaled by input / output factors".into()
            }
            Op::Poly(Poly::Quadratic { c0, c1, c2 }) => {
                let c = so.len();
                let is_monic = monic.contains(&id);
                let n2: Vec<f64> = (0..c)
                    .map(|ch| {
                        let v = coef(c2, ch) * coef(&si[0], ch).powi(2) / coef(&so, ch);
                        if is_monic && (v - 1.0).abs() < 1e-9 {
                            1.0
                        } else {
                            v
                        }
                    })
                    .collect();
                let n1 = (0..c)
                    .map(|ch| coef(c1, ch) * coef(&si[0], ch) / coef(&so, ch))
                    .collect();
                let n0 = (0..c).map(|ch| coef(c0, ch) / coef(&so, ch)).collect();
                let was_monic = c2.iter().all(|&x| x == 1.0);
                *c2 = n2;
                *c1 = n1;
                *c0 = n0;
                if trivial || was_monic {
                    continue;
                }
                if is_monic {
                    "made monic (x^2 + c1' x + c0'); leading coefficient moved to neighbours".into()
                } else {
                    "coefficients absorb input factors (degree i scaled by factor^i)".into()
                }
            }
            Op::Poly(Poly::Bivariate {
                d0,
                da,
                db,
                dab,
                da2,
                db2,
            }) => {
                let c = so.len();
                let (sa, sb) = (&si[0], &si[1]);
                let f = |v: &mut Vec<f64>, g: &dyn Fn(usize) -> f64| {
                    *v = (0..c)
                        .map(|ch| coef(v, ch) * g(ch) / coef(&so, ch))
                        .collect();
                };
                f(d0, &|_| 1.0);
                f(da, &|ch| coef(sa, ch));
                f(db, &|ch| coef(sb, ch));
                f(dab, &|ch| coef(sa, ch) * coef(sb, ch));
                f(da2, &|ch| coef(sa, ch).powi(2));
                f(db2, &|ch| coef(sb, ch).powi(2));
                "coefficients absorb input factors".into()
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let k = if const_id(g, ins[0]) { 0 } else { 1 };
                let Op::Constant(t) = &g.node(ins[k]).op else {
                    continue;
                };
                let op = g.node(id).op.clone();
                let x = 1 - k;
                let f: Vec<f64> = (0..so.len().max(si[x].len()))
                    .map(|ch| match op {
                        Op::Add | Op::Sub => 1.0 / coef(&so, ch),
                        Op::Mul => coef(&si[x], ch) / coef(&so, ch),
                        _ => coef(&so, ch) / coef(&si[x], ch),
                    })
                    .collect();
                if all_one(&f) {
                    continue;
                }
                let t = rescale_const(t, &shape, &f)?;
                let cname = format!("{name}/k");
                let cid = g.add_const(cname, t);
                g.set_input(id, k, cid);
                if g.consumers(ins[k]).is_empty() && !g.is_output(ins[k]) {
                    g.remove_node(ins[k]);
                }
                "constant operand scaled by the factors".into()
            }
            _ => continue,
        };
        rep.push(&name, vec![], what);
    }
    g.infer_shapes()?;
    Ok(())
}
