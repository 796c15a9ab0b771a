//! The f64 reference interpreter: executes an IR `Graph` (any rank, any batch size) and
//! evaluates single ops (`eval_op`, also used for constant folding at import).

use std::collections::HashMap;

use crate::ir::shape::{broadcast, infer_shape};
use crate::ir::{Graph, IrError, NodeId, Op, Poly, Tensor};

/// Errors from running a graph.
#[derive(Debug, thiserror::Error)]
pub enum InterpretError {
    #[error("the graph has {expected} input(s), {got} given")]
    InputCount { expected: usize, got: usize },
    #[error("input '{name}' has shape {expected:?}, the given tensor has {got:?}")]
    InputShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("node '{node}' ({op}): {source}")]
    Node {
        node: String,
        op: &'static str,
        #[source]
        source: IrError,
    },
    #[error(transparent)]
    Graph(#[from] IrError),
}

/// Runs `graph` on `inputs` (in graph-input order) and returns its outputs.
/// Intermediate values are freed as soon as their last consumer ran.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpretError> {
    let mut keep = |_: NodeId| false;
    let values = execute(graph, inputs, &mut keep)?;
    Ok(graph.outputs().iter().map(|o| values[o].clone()).collect())
}

/// Runs `graph` and returns the value of every node (for checking passes node by node).
pub fn run_all(
    graph: &Graph,
    inputs: &[Tensor],
) -> Result<HashMap<NodeId, Tensor>, InterpretError> {
    let mut keep = |_: NodeId| true;
    execute(graph, inputs, &mut keep)
}

fn execute(
    graph: &Graph,
    inputs: &[Tensor],
    keep: &mut dyn FnMut(NodeId) -> bool,
) -> Result<HashMap<NodeId, Tensor>, InterpretError> {
    let gin = graph.inputs();
    if gin.len() != inputs.len() {
        return Err(InterpretError::InputCount {
            expected: gin.len(),
            got: inputs.len(),
        });
    }
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    for (&id, t) in gin.iter().zip(inputs) {
        let n = graph.node(id);
        if n.shape != t.shape() {
            return Err(InterpretError::InputShape {
                name: n.name.clone(),
                expected: n.shape.clone(),
                got: t.shape().to_vec(),
            });
        }
        values.insert(id, t.clone());
    }
    let order = graph.topo_order()?;
    let mut remaining: HashMap<NodeId, usize> = order
        .iter()
        .map(|&n| (n, graph.consumers(n).len()))
        .collect();
    for id in order {
        let node = graph.node(id);
        if !values.contains_key(&id) {
            let ins = graph.inputs_of(id);
            let args: Vec<&Tensor> = ins.iter().map(|i| &values[i]).collect();
            let v = eval_op(&node.op, &args).map_err(|source| InterpretError::Node {
                node: node.name.clone(),
                op: node.op.kind(),
                source,
            })?;
            values.insert(id, v);
            for i in ins {
                let r = remaining.get_mut(&i).expect("input counted");
                *r -= 1;
                if *r == 0 && !keep(i) && !graph.is_output(i) {
                    values.remove(&i);
                }
            }
        }
    }
    Ok(values)
}

/// Evaluates one op on concrete inputs (in slot order).
pub fn eval_op(op: &Op, inputs: &[&Tensor]) -> Result<Tensor, IrError> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let out_shape = infer_shape(op, &shapes)?;
    let t = match op {
        Op::Input { .. } => {
            return Err(IrError::Invalid("graph inputs are not evaluated".into()));
        }
        Op::Constant(t) => t.clone(),
        Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } => inputs[0].reshaped(out_shape)?,
        Op::Relu => inputs[0].map(|x| x.max(0.0)),
        Op::Add => binary(inputs[0], inputs[1], |a, b| a + b)?,
        Op::Sub => binary(inputs[0], inputs[1], |a, b| a - b)?,
        Op::Mul => binary(inputs[0], inputs[1], |a, b| a * b)?,
        Op::Div => binary(inputs[0], inputs[1], |a, b| a / b)?,
        Op::Conv(c) => conv2d(inputs[0], c, out_shape)?,
        Op::BatchNorm(b) => {
            let (a1, a0) = b.affine();
            per_channel(inputs[0], |ch, x| a1[ch] * x + a0[ch])
        }
        Op::Poly(p) => poly(p, inputs)?,
        Op::AveragePool(p) => avg_pool(inputs[0], p, out_shape)?,
        Op::GlobalAveragePool => {
            let axes: Vec<usize> = (2..inputs[0].rank()).collect();
            reduce_mean(inputs[0], &axes, true)?
        }
        Op::SumPool(p) => {
            let d = (p.kernel[0] * p.kernel[1]) as f64;
            let sum_pool = crate::ir::AveragePool {
                count_include_pad: true,
                ..p.clone()
            };
            avg_pool(inputs[0], &sum_pool, out_shape)?.map(|v| v * d)
        }
        Op::GlobalSumPool => {
            let axes: Vec<usize> = (2..inputs[0].rank()).collect();
            let d: usize = inputs[0].shape()[2..].iter().product();
            reduce_mean(inputs[0], &axes, true)?.map(|v| v * d as f64)
        }
        Op::ReduceMean { axes, keepdims } => reduce_mean(inputs[0], axes, *keepdims)?,
        Op::Gemm(g) => gemm(inputs[0], g)?,
        Op::MatMul => matmul(inputs[0], inputs[1], out_shape)?,
        Op::Pad { pads, value } => pad(inputs[0], pads, *value, out_shape)?,
        Op::Slice { axes } => slice(inputs[0], axes, out_shape)?,
    };
    Ok(t)
}

/// Strides of `shape` aligned (right) to `out`, 0 along broadcast axes.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = Tensor::strides_of(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off]
            }
        })
        .collect()
}

/// Elementwise `f(a, b)` with numpy broadcasting.
pub fn binary(a: &Tensor, b: &Tensor, f: impl Fn(f64, f64) -> f64) -> Result<Tensor, IrError> {
    if a.shape() == b.shape() {
        let d = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(&x, &y)| f(x, y))
            .collect();
        return Tensor::new(a.shape().to_vec(), d);
    }
    let out = broadcast(a.shape(), b.shape()).ok_or_else(|| {
        IrError::Invalid(format!(
            "cannot broadcast {:?} with {:?}",
            a.shape(),
            b.shape()
        ))
    })?;
    let (sa, sb) = (
        broadcast_strides(a.shape(), &out),
        broadcast_strides(b.shape(), &out),
    );
    let n: usize = out.iter().product();
    let mut data = Vec::with_capacity(n);
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut ctr = vec![0usize; out.len()];
    let (ad, bd) = (a.data(), b.data());
    for _ in 0..n {
        data.push(f(ad[ia], bd[ib]));
        for d in (0..out.len()).rev() {
            ctr[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if ctr[d] < out[d] {
                break;
            }
            ia -= sa[d] * out[d];
            ib -= sb[d] * out[d];
            ctr[d] = 0;
        }
    }
    Tensor::new(out, data)
}

/// Applies `f(channel, x)` along axis 1 (channel 0 everywhere for rank < 2).
fn per_channel(x: &Tensor, f: impl Fn(usize, f64) -> f64) -> Tensor {
    let s = x.shape();
    let (c, inner) = if s.len() >= 2 {
        (s[1], s[2..].iter().product())
    } else {
        (1, x.len())
    };
    let mut out = x.clone();
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let ch = if c == 0 || inner == 0 {
            0
        } else {
            (i / inner) % c
        };
        *v = f(ch, *v);
    }
    out
}

fn coef(v: &[f64], ch: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[ch]
    }
}

fn poly(p: &Poly, inputs: &[&Tensor]) -> Result<Tensor, IrError> {
    Ok(match p {
        Poly::Quadratic { c0, c1, c2 } => per_channel(inputs[0], |ch, x| {
            coef(c0, ch) + coef(c1, ch) * x + coef(c2, ch) * x * x
        }),
        Poly::Bivariate {
            d0,
            da,
            db,
            dab,
            da2,
            db2,
        } => {
            let b = inputs[1];
            let mut out = inputs[0].clone();
            let s = out.shape().to_vec();
            let (c, inner) = if s.len() >= 2 {
                (s[1], s[2..].iter().product())
            } else {
                (1, out.len())
            };
            for (i, v) in out.data_mut().iter_mut().enumerate() {
                let ch = if c == 0 || inner == 0 {
                    0
                } else {
                    (i / inner) % c
                };
                let (a, bb) = (*v, b.data()[i]);
                *v = coef(d0, ch)
                    + coef(da, ch) * a
                    + coef(db, ch) * bb
                    + coef(dab, ch) * a * bb
                    + coef(da2, ch) * a * a
                    + coef(db2, ch) * bb * bb;
            }
            out
        }
    })
}

fn conv2d(x: &Tensor, c: &crate::ir::Conv, out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let (n, cin, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let ws = c.weight.shape();
    let (m, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let mg = m / c.group;
    let (sh, sw) = (c.strides[0], c.strides[1]);
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    let mut out = vec![0.0; n * m * oh * ow];
    let (xd, wd) = (x.data(), c.weight.data());
    for b in 0..n {
        for oc in 0..m {
            let plane = &mut out[(b * m + oc) * oh * ow..(b * m + oc + 1) * oh * ow];
            if let Some(bias) = &c.bias {
                plane.iter_mut().for_each(|v| *v = bias.data()[oc]);
            }
            let g = oc / mg;
            for ci in 0..cg {
                let ic = g * cg + ci;
                let xin = &xd[(b * cin + ic) * h * w..(b * cin + ic + 1) * h * w];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wv = wd[((oc * cg + ci) * kh + ky) * kw + kx];
                        for oy in 0..oh {
                            let iy = (oy * sh) as isize + ky as isize - pt;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let row = &xin[iy as usize * w..(iy as usize + 1) * w];
                            let orow = &mut plane[oy * ow..(oy + 1) * ow];
                            for (ox, o) in orow.iter_mut().enumerate() {
                                let ix = (ox * sw) as isize + kx as isize - pl;
                                if ix >= 0 && ix < w as isize {
                                    *o += wv * row[ix as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = cin;
    Tensor::new(out_shape, out)
}

fn avg_pool(
    x: &Tensor,
    p: &crate::ir::AveragePool,
    out_shape: Vec<usize>,
) -> Result<Tensor, IrError> {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let (kh, kw) = (p.kernel[0], p.kernel[1]);
    let (pt, pl) = (p.pads[0] as isize, p.pads[1] as isize);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    if h * w == 0 {
        return Tensor::new(
            out_shape.clone(),
            vec![f64::NAN; out_shape.iter().product()],
        );
    }
    for plane in x.data().chunks(h * w) {
        for oy in 0..oh {
            for ox in 0..ow {
                let (y0, x0) = (
                    (oy * p.strides[0]) as isize - pt,
                    (ox * p.strides[1]) as isize - pl,
                );
                let (mut sum, mut cnt) = (0.0, 0usize);
                for iy in y0..y0 + kh as isize {
                    for ix in x0..x0 + kw as isize {
                        if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                            sum += plane[iy as usize * w + ix as usize];
                            cnt += 1;
                        }
                    }
                }
                let d = if p.count_include_pad {
                    kh * kw
                } else {
                    cnt.max(1)
                };
                out.push(sum / d as f64);
            }
        }
    }
    Tensor::new(out_shape, out)
}

fn reduce_mean(x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor, IrError> {
    let s = x.shape();
    let kept: Vec<usize> = s
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let ks = broadcast_strides(&kept, s);
    let mut acc = vec![0.0; kept.iter().product()];
    let mut ctr = vec![0usize; s.len()];
    let mut o = 0usize;
    for &v in x.data() {
        acc[o] += v;
        for d in (0..s.len()).rev() {
            ctr[d] += 1;
            o += ks[d];
            if ctr[d] < s[d] {
                break;
            }
            o -= ks[d] * s[d];
            ctr[d] = 0;
        }
    }
    let count: usize = axes.iter().map(|&a| s[a]).product();
    acc.iter_mut().for_each(|v| *v /= count as f64);
    let shape = if keepdims {
        kept
    } else {
        s.iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    Tensor::new(shape, acc)
}

fn gemm(a: &Tensor, g: &crate::ir::Gemm) -> Result<Tensor, IrError> {
    let (ar, ac) = (a.shape()[0], a.shape()[1]);
    let (br, bc) = (g.b.shape()[0], g.b.shape()[1]);
    let (m, k) = if g.trans_a { (ac, ar) } else { (ar, ac) };
    let n = if g.trans_b { br } else { bc };
    let at = |i: usize, kk: usize| {
        if g.trans_a {
            a.data()[kk * ac + i]
        } else {
            a.data()[i * ac + kk]
        }
    };
    let bt = |kk: usize, j: usize| {
        if g.trans_b {
            g.b.data()[j * bc + kk]
        } else {
            g.b.data()[kk * bc + j]
        }
    };
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for kk in 0..k {
                s += at(i, kk) * bt(kk, j);
            }
            out[i * n + j] = g.alpha * s;
        }
    }
    let mut t = Tensor::new(vec![m, n], out)?;
    if let Some(c) = &g.c {
        let beta = g.beta;
        t = binary(&t, c, |x, y| x + beta * y)?;
    }
    Ok(t)
}

fn matmul(a: &Tensor, b: &Tensor, out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let a2: Vec<usize> = if a.rank() == 1 {
        vec![1, a.shape()[0]]
    } else {
        a.shape().to_vec()
    };
    let b2: Vec<usize> = if b.rank() == 1 {
        vec![b.shape()[0], 1]
    } else {
        b.shape().to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let n = b2[b2.len() - 1];
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = broadcast(ab, bb).ok_or_else(|| IrError::Invalid("matmul batch dims".into()))?;
    // Matrix strides along the broadcast batch dims.
    let sa: Vec<usize> = broadcast_strides(ab, &batch)
        .iter()
        .map(|s| s * m * k)
        .collect();
    let sb: Vec<usize> = broadcast_strides(bb, &batch)
        .iter()
        .map(|s| s * k * n)
        .collect();
    let nb: usize = batch.iter().product();
    let mut out = Vec::with_capacity(nb * m * n);
    let mut ctr = vec![0usize; batch.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..nb {
        let am = &a.data()[oa..oa + m * k];
        let bm = &b.data()[ob..ob + k * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for kk in 0..k {
                    s += am[i * k + kk] * bm[kk * n + j];
                }
                out.push(s);
            }
        }
        for d in (0..batch.len()).rev() {
            ctr[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if ctr[d] < batch[d] {
                break;
            }
            oa -= sa[d] * batch[d];
            ob -= sb[d] * batch[d];
            ctr[d] = 0;
        }
    }
    Tensor::new(out_shape, out)
}

fn pad(
    x: &Tensor,
    pads: &[(usize, usize)],
    value: f64,
    out_shape: Vec<usize>,
) -> Result<Tensor, IrError> {
    let os = Tensor::strides_of(&out_shape);
    let s = x.shape();
    let mut out = vec![value; out_shape.iter().product()];
    let base: usize = pads.iter().zip(&os).map(|((b, _), st)| b * st).sum();
    let mut ctr = vec![0usize; s.len()];
    let mut o = base;
    for &v in x.data() {
        out[o] = v;
        for d in (0..s.len()).rev() {
            ctr[d] += 1;
            o += os[d];
            if ctr[d] < s[d] {
                break;
            }
            o -= os[d] * s[d];
            ctr[d] = 0;
        }
    }
    Tensor::new(out_shape, out)
}

fn slice(
    x: &Tensor,
    axes: &[crate::ir::SliceAxis],
    out_shape: Vec<usize>,
) -> Result<Tensor, IrError> {
    let is = Tensor::strides_of(x.shape());
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Tensor::new(out_shape, out);
    }
    let start: isize = axes
        .iter()
        .zip(&is)
        .map(|(a, &st)| (a.start * st) as isize)
        .sum();
    let step: Vec<isize> = axes
        .iter()
        .zip(&is)
        .map(|(a, &st)| a.step * st as isize)
        .collect();
    let mut ctr = vec![0usize; axes.len()];
    let mut o = start;
    for _ in 0..n {
        out.push(x.data()[o as usize]);
        for d in (0..axes.len()).rev() {
            ctr[d] += 1;
            o += step[d];
            if ctr[d] < out_shape[d] {
                break;
            }
            o -= step[d] * out_shape[d] as isize;
            ctr[d] = 0;
        }
    }
    Tensor::new(out_shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{AveragePool, BatchNorm, Conv, Gemm, SliceAxis};

    fn t(shape: &[usize], d: &[f64]) -> Tensor {
        Tensor::new(shape.to_vec(), d.to_vec()).unwrap()
    }
    fn seq(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        t(shape, &(1..=n).map(|i| i as f64).collect::<Vec<_>>())
    }

    #[test]
    fn broadcasting_binary_ops() {
        let a = t(&[2, 1], &[1.0, 2.0]);
        let b = t(&[3], &[10.0, 20.0, 30.0]);
        let r = eval_op(&Op::Add, &[&a, &b]).unwrap();
        assert_eq!(r, t(&[2, 3], &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]));
        let r = eval_op(&Op::Sub, &[&b, &a]).unwrap();
        assert_eq!(r.data(), &[9.0, 19.0, 29.0, 8.0, 18.0, 28.0]);
        let s = Tensor::scalar(2.0);
        assert_eq!(eval_op(&Op::Div, &[&a, &s]).unwrap().data(), &[0.5, 1.0]);
        // Per-channel constant over NCHW.
        let x = seq(&[1, 2, 1, 2]);
        let c = t(&[2, 1, 1], &[10.0, 100.0]);
        assert_eq!(
            eval_op(&Op::Mul, &[&x, &c]).unwrap().data(),
            &[10.0, 20.0, 300.0, 400.0]
        );
        assert!(eval_op(&Op::Add, &[&t(&[2], &[1.0, 2.0]), &b]).is_err());
    }

    fn conv(w: Tensor, bias: Option<Tensor>, s: usize, p: usize, group: usize) -> Op {
        Op::Conv(Conv {
            weight: w,
            bias,
            strides: [s, s],
            pads: [p; 4],
            group,
        })
    }

    #[test]
    fn convolution() {
        let x = seq(&[1, 1, 3, 3]);
        let ones = Tensor::full(vec![1, 1, 2, 2], 1.0);
        let r = eval_op(&conv(ones.clone(), None, 1, 0, 1), &[&x]).unwrap();
        assert_eq!(r, t(&[1, 1, 2, 2], &[12.0, 16.0, 24.0, 28.0]));
        let r = eval_op(&conv(ones, Some(Tensor::vector(vec![0.5])), 2, 1, 1), &[&x]).unwrap();
        assert_eq!(r, t(&[1, 1, 2, 2], &[1.5, 5.5, 11.5, 28.5]));
        // Depthwise: channel 0 -> 2x + 1, channel 1 -> 3x.
        let x = seq(&[1, 2, 1, 2]);
        let w = t(&[2, 1, 1, 1], &[2.0, 3.0]);
        let r = eval_op(
            &conv(w, Some(Tensor::vector(vec![1.0, 0.0])), 1, 0, 2),
            &[&x],
        )
        .unwrap();
        assert_eq!(r.data(), &[3.0, 5.0, 9.0, 12.0]);
        // Two input channels summed, batch 2.
        let x = seq(&[2, 2, 1, 1]);
        let w = t(&[1, 2, 1, 1], &[1.0, 10.0]);
        let r = eval_op(&conv(w, None, 1, 0, 1), &[&x]).unwrap();
        assert_eq!(r, t(&[2, 1, 1, 1], &[21.0, 43.0]));
    }

    #[test]
    fn batch_norm_any_rank() {
        let bn = Op::BatchNorm(BatchNorm {
            scale: vec![2.0, 1.0],
            bias: vec![1.0, 0.0],
            mean: vec![1.0, 0.0],
            var: vec![0.0, 0.75],
            epsilon: 0.25,
        });
        // Channel 0: 4x - 3; channel 1: x.
        let r = eval_op(&bn, &[&t(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]).unwrap();
        assert_eq!(r.data(), &[1.0, 2.0, 9.0, 4.0]);
        let r = eval_op(&bn, &[&seq(&[1, 2, 1, 2])]).unwrap();
        assert_eq!(r.data(), &[1.0, 5.0, 3.0, 4.0]);
    }

    #[test]
    fn average_pools() {
        let x = seq(&[1, 1, 2, 2]);
        let p = |cip| {
            Op::AveragePool(AveragePool {
                kernel: [2, 2],
                strides: [2, 2],
                pads: [1; 4],
                count_include_pad: cip,
            })
        };
        assert_eq!(
            eval_op(&p(true), &[&x]).unwrap().data(),
            &[0.25, 0.5, 0.75, 1.0]
        );
        assert_eq!(
            eval_op(&p(false), &[&x]).unwrap().data(),
            &[1.0, 2.0, 3.0, 4.0]
        );
        let g = eval_op(&Op::GlobalAveragePool, &[&seq(&[1, 2, 2, 2])]).unwrap();
        assert_eq!(g, t(&[1, 2, 1, 1], &[2.5, 6.5]));
    }

    #[test]
    fn reduce_mean_axes() {
        let x = seq(&[2, 3]);
        let r = eval_op(
            &Op::ReduceMean {
                axes: vec![1],
                keepdims: false,
            },
            &[&x],
        )
        .unwrap();
        assert_eq!(r, t(&[2], &[2.0, 5.0]));
        let r = eval_op(
            &Op::ReduceMean {
                axes: vec![0],
                keepdims: true,
            },
            &[&x],
        )
        .unwrap();
        assert_eq!(r, t(&[1, 3], &[2.5, 3.5, 4.5]));
        let r = eval_op(
            &Op::ReduceMean {
                axes: vec![2, 3],
                keepdims: false,
            },
            &[&seq(&[1, 2, 2, 2])],
        )
        .unwrap();
        assert_eq!(r, t(&[1, 2], &[2.5, 6.5]));
    }

    #[test]
    fn gemm_and_matmul() {
        let a = seq(&[1, 2]);
        let b = t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]); // transposed [2, 3]
        let g = Op::Gemm(Gemm {
            b,
            c: Some(Tensor::vector(vec![1.0, 2.0, 3.0])),
            alpha: 2.0,
            beta: 0.5,
            trans_a: false,
            trans_b: true,
        });
        assert_eq!(eval_op(&g, &[&a]).unwrap(), t(&[1, 3], &[2.5, 5.0, 7.5]));
        let a = seq(&[2, 1, 2]);
        let b = t(&[2, 1], &[1.0, 10.0]);
        assert_eq!(
            eval_op(&Op::MatMul, &[&a, &b]).unwrap(),
            t(&[2, 1, 1], &[21.0, 43.0])
        );
        let v = t(&[2], &[1.0, 1.0]);
        assert_eq!(
            eval_op(&Op::MatMul, &[&v, &seq(&[2, 2])]).unwrap(),
            t(&[2], &[4.0, 6.0])
        );
    }

    #[test]
    fn pad_and_slice() {
        // Option-A shortcut: zero channels on both sides.
        let x = t(&[1, 1, 1, 1], &[7.0]);
        let p = Op::Pad {
            pads: vec![(0, 0), (1, 1), (0, 0), (0, 0)],
            value: 0.0,
        };
        assert_eq!(
            eval_op(&p, &[&x]).unwrap(),
            t(&[1, 3, 1, 1], &[0.0, 7.0, 0.0])
        );
        let p = Op::Pad {
            pads: vec![(1, 0), (0, 2)],
            value: -1.0,
        };
        assert_eq!(
            eval_op(&p, &[&t(&[1, 1], &[5.0])]).unwrap(),
            t(&[2, 3], &[-1.0, -1.0, -1.0, 5.0, -1.0, -1.0])
        );
        // x[:, :, ::2, ::2]
        let x = Tensor::new(vec![1, 1, 4, 4], (0..16).map(|i| i as f64).collect()).unwrap();
        let all = |n| SliceAxis {
            start: 0,
            step: 1,
            len: n,
        };
        let half = SliceAxis {
            start: 0,
            step: 2,
            len: 2,
        };
        let s = Op::Slice {
            axes: vec![all(1), all(1), half, half],
        };
        assert_eq!(
            eval_op(&s, &[&x]).unwrap(),
            t(&[1, 1, 2, 2], &[0.0, 2.0, 8.0, 10.0])
        );
        let rev = Op::Slice {
            axes: vec![SliceAxis {
                start: 2,
                step: -1,
                len: 3,
            }],
        };
        assert_eq!(
            eval_op(&rev, &[&t(&[3], &[1.0, 2.0, 3.0])]).unwrap().data(),
            &[3.0, 2.0, 1.0]
        );
        let bad = Op::Slice {
            axes: vec![SliceAxis {
                start: 1,
                step: 1,
                len: 3,
            }],
        };
        assert!(eval_op(&bad, &[&t(&[3], &[1.0, 2.0, 3.0])]).is_err());
    }

    #[test]
    fn polynomials() {
        let x = seq(&[1, 2, 1, 1]);
        let p = Op::Poly(Poly::Quadratic {
            c0: vec![1.0],
            c1: vec![0.0, 1.0],
            c2: vec![1.0, 2.0],
        });
        // ch0: 1 + x^2 at 1 -> 2; ch1: 1 + x + 2x^2 at 2 -> 11.
        assert_eq!(eval_op(&p, &[&x]).unwrap().data(), &[2.0, 11.0]);
        let b = t(&[1, 2, 1, 1], &[3.0, 1.0]);
        let z = vec![0.0];
        let q = Op::Poly(Poly::Bivariate {
            d0: vec![1.0],
            da: z.clone(),
            db: vec![2.0],
            dab: vec![1.0],
            da2: z.clone(),
            db2: vec![0.0, 1.0],
        });
        // ch0: 1 + 2*3 + 1*3 = 10; ch1: 1 + 2*1 + 2*1 + 1 = 6.
        assert_eq!(eval_op(&q, &[&x, &b]).unwrap().data(), &[10.0, 6.0]);
        assert_eq!(
            eval_op(&Op::Relu, &[&t(&[2], &[-1.0, 2.0])])
                .unwrap()
                .data(),
            &[0.0, 2.0]
        );
    }

    #[test]
    fn runs_graphs() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![3, 2]);
        let c = g.add_const("c", Tensor::vector(vec![1.0, -1.0]));
        let a = g.add_node("a", Op::Add, &[x, c]).unwrap();
        let r = g.add_node("r", Op::Relu, &[a]).unwrap();
        let f = g.add_node("f", Op::Flatten { axis: 0 }, &[r]).unwrap();
        g.set_outputs(vec![f]);
        let out = run(&g, &[seq(&[3, 2])]).unwrap();
        assert_eq!(out[0], t(&[1, 6], &[2.0, 1.0, 4.0, 3.0, 6.0, 5.0]));
        let all = run_all(&g, &[seq(&[3, 2])]).unwrap();
        assert_eq!(all[&a].data()[1], 1.0);
        assert!(matches!(
            run(&g, &[seq(&[2, 2])]),
            Err(InterpretError::InputShape { .. })
        ));
        assert!(matches!(
            run(&g, &[]),
            Err(InterpretError::InputCount { .. })
        ));
    }
}
