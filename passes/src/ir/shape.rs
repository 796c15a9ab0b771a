//! Shape inference: the output shape of every `Op` from its input shapes, plus the numpy
//! broadcasting and window-size rules the interpreter shares.

use super::ops::{Op, Poly};
use super::IrError;

fn invalid<T>(op: &str, msg: String) -> Result<T, IrError> {
    Err(IrError::Shape {
        op: op.to_string(),
        msg,
    })
}

/// Numpy (multidirectional) broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Output length of a sliding window: `(n + pad - k) / s + 1`.
pub fn window_out(n: usize, pad: usize, k: usize, s: usize) -> Option<usize> {
    if s == 0 || k == 0 || n + pad < k {
        None
    } else {
        Some((n + pad - k) / s + 1)
    }
}

/// Checks a per-channel vector: length 1 or `channels`.
fn per_channel_ok(len: usize, shape: &[usize]) -> bool {
    len == 1 || (shape.len() >= 2 && len == shape[1])
}

/// The output shape of `op` applied to inputs of the given shapes.
pub fn infer_shape(op: &Op, inputs: &[&[usize]]) -> Result<Vec<usize>, IrError> {
    let kind = op.kind();
    if inputs.len() != op.arity() {
        return Err(IrError::Arity {
            op: kind.to_string(),
            expected: op.arity(),
            got: inputs.len(),
        });
    }
    match op {
        Op::Input { shape } => Ok(shape.clone()),
        Op::Constant(t) => Ok(t.shape().to_vec()),
        Op::Identity | Op::Relu => Ok(inputs[0].to_vec()),
        Op::Add | Op::Sub | Op::Mul | Op::Div => match broadcast(inputs[0], inputs[1]) {
            Some(s) => Ok(s),
            None => invalid(
                kind,
                format!("cannot broadcast {:?} with {:?}", inputs[0], inputs[1]),
            ),
        },
        Op::Conv(c) => {
            let x = inputs[0];
            let w = c.weight.shape();
            if x.len() != 4 || w.len() != 4 {
                return invalid(
                    kind,
                    format!("needs 4-D input and weight, got {x:?} and {w:?}"),
                );
            }
            let (m, g) = (w[0], c.group);
            if g == 0 || !x[1].is_multiple_of(g) || !m.is_multiple_of(g) || w[1] * g != x[1] {
                return invalid(
                    kind,
                    format!(
                        "weight {w:?} with group {g} does not fit input channels {}",
                        x[1]
                    ),
                );
            }
            if let Some(b) = &c.bias {
                if b.len() != m {
                    return invalid(
                        kind,
                        format!("bias has {} values for {m} channels", b.len()),
                    );
                }
            }
            let h = window_out(x[2], c.pads[0] + c.pads[2], w[2], c.strides[0]);
            let wd = window_out(x[3], c.pads[1] + c.pads[3], w[3], c.strides[1]);
            match (h, wd) {
                (Some(h), Some(wd)) => Ok(vec![x[0], m, h, wd]),
                _ => invalid(kind, format!("kernel {w:?} does not fit input {x:?}")),
            }
        }
        Op::BatchNorm(b) => {
            let x = inputs[0];
            let n = b.scale.len();
            if x.len() < 2 || x[1] != n || [b.bias.len(), b.mean.len(), b.var.len()] != [n, n, n] {
                return invalid(kind, format!("input {x:?} vs {n} channel parameters"));
            }
            Ok(x.to_vec())
        }
        Op::Poly(p) => {
            let x = inputs[0];
            if let Poly::Bivariate { .. } = p {
                if inputs[1] != x {
                    return invalid(kind, format!("inputs differ: {x:?} vs {:?}", inputs[1]));
                }
            }
            for c in p.coefficients() {
                if !per_channel_ok(c.len(), x) {
                    return invalid(kind, format!("{} coefficients for input {x:?}", c.len()));
                }
            }
            Ok(x.to_vec())
        }
        Op::AveragePool(p) | Op::SumPool(p) => {
            let x = inputs[0];
            if x.len() != 4 {
                return invalid(kind, format!("needs a 4-D input, got {x:?}"));
            }
            let h = window_out(x[2], p.pads[0] + p.pads[2], p.kernel[0], p.strides[0]);
            let w = window_out(x[3], p.pads[1] + p.pads[3], p.kernel[1], p.strides[1]);
            if p.pads[0] >= p.kernel[0]
                || p.pads[2] >= p.kernel[0]
                || p.pads[1] >= p.kernel[1]
                || p.pads[3] >= p.kernel[1]
            {
                return invalid(kind, format!("pads {:?} not smaller than kernel", p.pads));
            }
            match (h, w) {
                (Some(h), Some(w)) => Ok(vec![x[0], x[1], h, w]),
                _ => invalid(
                    kind,
                    format!("kernel {:?} does not fit input {x:?}", p.kernel),
                ),
            }
        }
        Op::GlobalAveragePool | Op::GlobalSumPool => {
            let x = inputs[0];
            if x.len() < 3 {
                return invalid(kind, format!("needs rank >= 3, got {x:?}"));
            }
            let mut s = x.to_vec();
            s[2..].iter_mut().for_each(|d| *d = 1);
            Ok(s)
        }
        Op::ReduceMean { axes, keepdims } => {
            let x = inputs[0];
            if axes.iter().any(|&a| a >= x.len()) || axes.windows(2).any(|w| w[0] >= w[1]) {
                return invalid(kind, format!("axes {axes:?} invalid for {x:?}"));
            }
            let mut s = vec![];
            for (i, &d) in x.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdims {
                        s.push(1);
                    }
                } else {
                    s.push(d);
                }
            }
            Ok(s)
        }
        Op::Gemm(g) => {
            let a = inputs[0];
            let b = g.b.shape();
            if a.len() != 2 || b.len() != 2 {
                return invalid(kind, format!("needs 2-D A and B, got {a:?} and {b:?}"));
            }
            let (m, k) = if g.trans_a {
                (a[1], a[0])
            } else {
                (a[0], a[1])
            };
            let (kb, n) = if g.trans_b {
                (b[1], b[0])
            } else {
                (b[0], b[1])
            };
            if k != kb {
                return invalid(kind, format!("inner dims differ: A {a:?}, B {b:?}"));
            }
            if let Some(c) = &g.c {
                if broadcast(c.shape(), &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return invalid(
                        kind,
                        format!("C {:?} not broadcastable to [{m}, {n}]", c.shape()),
                    );
                }
            }
            Ok(vec![m, n])
        }
        Op::MatMul => matmul_shape(inputs[0], inputs[1]).ok_or(()).or_else(|_| {
            invalid(
                kind,
                format!("cannot multiply {:?} by {:?}", inputs[0], inputs[1]),
            )
        }),
        Op::Flatten { axis } => {
            let x = inputs[0];
            if *axis > x.len() {
                return invalid(kind, format!("axis {axis} for rank {}", x.len()));
            }
            Ok(vec![
                x[..*axis].iter().product(),
                x[*axis..].iter().product(),
            ])
        }
        Op::Reshape { shape } => {
            let n: usize = inputs[0].iter().product();
            if shape.iter().product::<usize>() != n {
                return invalid(kind, format!("cannot reshape {:?} to {shape:?}", inputs[0]));
            }
            Ok(shape.clone())
        }
        Op::Pad { pads, .. } => {
            let x = inputs[0];
            if pads.len() != x.len() {
                return invalid(
                    kind,
                    format!("{} pad pairs for rank {}", pads.len(), x.len()),
                );
            }
            Ok(x.iter().zip(pads).map(|(d, (b, e))| d + b + e).collect())
        }
        Op::Slice { axes } => {
            let x = inputs[0];
            if axes.len() != x.len() {
                return invalid(
                    kind,
                    format!("{} slice axes for rank {}", axes.len(), x.len()),
                );
            }
            for (d, a) in x.iter().zip(axes) {
                if a.len > 0 {
                    let last = a.start as isize + (a.len as isize - 1) * a.step;
                    if a.start >= *d || last < 0 || last >= *d as isize || a.step == 0 {
                        return invalid(kind, format!("slice {a:?} out of range for dim {d}"));
                    }
                }
            }
            Ok(axes.iter().map(|a| a.len).collect())
        }
    }
}

/// Numpy matmul output shape.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return None;
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast(&[2, 3], &[4]), None);
    }

    #[test]
    fn matmul_shapes() {
        assert_eq!(matmul_shape(&[2, 3], &[3, 4]), Some(vec![2, 4]));
        assert_eq!(matmul_shape(&[3], &[3, 4]), Some(vec![4]));
        assert_eq!(matmul_shape(&[5, 2, 3], &[3]), Some(vec![5, 2]));
        assert_eq!(
            matmul_shape(&[5, 1, 2, 3], &[7, 3, 4]),
            Some(vec![5, 7, 2, 4])
        );
        assert_eq!(matmul_shape(&[2, 3], &[4, 4]), None);
    }

    #[test]
    fn windows() {
        assert_eq!(window_out(32, 2, 3, 1), Some(32));
        assert_eq!(window_out(32, 2, 3, 2), Some(16));
        assert_eq!(window_out(2, 0, 3, 1), None);
    }
}
