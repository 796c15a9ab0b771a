//! Data-layout ONNX ops: `Flatten`, `Reshape` (0 and -1 resolved at import), `Squeeze` /
//! `Unsqueeze` (as reshapes), `Pad` (constant mode) and `Slice` (any steps, e.g. `::2`).

use passes::ir::{Op, SliceAxis, Tensor};
use tract_onnx::pb::NodeProto;

use crate::onnx::attrs::{self, node_err};
use crate::onnx::context::{Ctx, Value};
use crate::onnx::ImportError;

fn ints_of(n: &NodeProto, t: &Tensor) -> Result<Vec<i64>, ImportError> {
    t.to_i64_vec().map_err(|e| node_err(n, e.to_string()))
}

/// Axes from the `axes` attribute (older opsets) or input `slot` (newer).
fn axes_operand(cx: &Ctx, n: &NodeProto, slot: usize) -> Result<Option<Vec<i64>>, ImportError> {
    if let Some(a) = attrs::ints(n, "axes") {
        return Ok(Some(a));
    }
    match cx.opt_constant(n, slot, "axes")? {
        Some(t) => Ok(Some(ints_of(n, &t)?)),
        None => Ok(None),
    }
}

pub fn flatten(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let rank = cx.shape(n, 0)?.len();
    let a = attrs::int(n, "axis", 1);
    let axis = if a == rank as i64 {
        rank
    } else {
        attrs::axis(n, a, rank)?
    };
    cx.emit(n, Op::Flatten { axis }, &[0])
}

pub fn reshape(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    let spec = ints_of(n, &cx.constant(n, 1, "target shape")?)?;
    let allowzero = attrs::int(n, "allowzero", 0) != 0;
    let mut shape = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 if !allowzero => {
                let v = *x
                    .get(i)
                    .ok_or_else(|| node_err(n, format!("0 at axis {i} beyond input rank")))?;
                shape.push(v);
            }
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            d if d >= 0 => shape.push(d as usize),
            d => {
                return Err(node_err(
                    n,
                    format!("invalid target dimension {d} in {spec:?}"),
                ))
            }
        }
    }
    let total: usize = x.iter().product();
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(node_err(n, format!("cannot reshape {x:?} to {spec:?}")));
        }
        shape[i] = total / known;
    }
    cx.emit(n, Op::Reshape { shape }, &[0])
}

pub fn squeeze(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    let axes = match axes_operand(cx, n, 1)? {
        Some(a) => a
            .iter()
            .map(|&a| attrs::axis(n, a, x.len()))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..x.len()).filter(|&i| x[i] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| x[a] != 1) {
        return Err(node_err(
            n,
            format!("cannot squeeze axis {a} of size {}", x[a]),
        ));
    }
    let shape = x
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    cx.emit(n, Op::Reshape { shape }, &[0])
}

pub fn unsqueeze(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    let a = axes_operand(cx, n, 1)?.ok_or_else(|| node_err(n, "missing axes"))?;
    let rank = x.len() + a.len();
    let mut axes = a
        .iter()
        .map(|&a| attrs::axis(n, a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort();
    axes.dedup();
    if axes.len() != a.len() {
        return Err(node_err(n, format!("repeated axes {a:?}")));
    }
    let mut src = x.iter();
    let shape = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *src.next().expect("rank adds up")
            }
        })
        .collect();
    cx.emit(n, Op::Reshape { shape }, &[0])
}

pub fn pad(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    let mode = attrs::string(n, "mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(node_err(
            n,
            format!("pad mode '{mode}' is not supported (only constant)"),
        ));
    }
    let (raw, value) = if let Some(p) = attrs::ints(n, "pads") {
        (p, attrs::float(n, "value", 0.0) as f64)
    } else {
        let p = ints_of(n, &cx.constant(n, 1, "pads")?)?;
        let v = match cx.opt_constant(n, 2, "constant_value")? {
            Some(t) if t.len() == 1 => t.data()[0],
            Some(_) => return Err(node_err(n, "constant_value must be a single value")),
            None => 0.0,
        };
        (p, v)
    };
    let axes: Vec<usize> = match cx.opt_constant(n, 3, "axes")? {
        Some(t) => ints_of(n, &t)?
            .iter()
            .map(|&a| attrs::axis(n, a, x.len()))
            .collect::<Result<_, _>>()?,
        None => (0..x.len()).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(node_err(
            n,
            format!("{} pads for {} axes", raw.len(), axes.len()),
        ));
    }
    if raw.iter().any(|&p| p < 0) {
        return Err(node_err(
            n,
            format!("negative pads {raw:?} are not supported"),
        ));
    }
    let mut pads = vec![(0usize, 0usize); x.len()];
    for (i, &a) in axes.iter().enumerate() {
        pads[a] = (raw[i] as usize, raw[i + axes.len()] as usize);
    }
    cx.emit(n, Op::Pad { pads, value }, &[0])
}

/// ONNX slice semantics for one axis (negative indices, clamping, any non-zero step).
pub fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> SliceAxis {
    let d = dim as i128;
    let (mut s, mut e, st) = (start as i128, end as i128, step as i128);
    if s < 0 {
        s += d;
    }
    if e < 0 {
        e += d;
    }
    let len = if st > 0 {
        s = s.clamp(0, d);
        e = e.clamp(0, d);
        if e > s {
            (e - s + st - 1) / st
        } else {
            0
        }
    } else {
        s = s.clamp(0, d - 1);
        e = e.clamp(-1, d - 1);
        if s > e {
            (s - e + (-st) - 1) / (-st)
        } else {
            0
        }
    };
    SliceAxis {
        start: if len == 0 { 0 } else { s as usize },
        step: step as isize,
        len: len as usize,
    }
}

pub fn slice(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    let (starts, ends, axes, steps) = if let Some(s) = attrs::ints(n, "starts") {
        let e = attrs::ints(n, "ends").ok_or_else(|| node_err(n, "missing ends"))?;
        (s, e, attrs::ints(n, "axes"), None)
    } else {
        let s = ints_of(n, &cx.constant(n, 1, "starts")?)?;
        let e = ints_of(n, &cx.constant(n, 2, "ends")?)?;
        let a = cx
            .opt_constant(n, 3, "axes")?
            .map(|t| ints_of(n, &t))
            .transpose()?;
        let st = cx
            .opt_constant(n, 4, "steps")?
            .map(|t| ints_of(n, &t))
            .transpose()?;
        (s, e, a, st)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(node_err(n, "starts, ends, axes and steps differ in length"));
    }
    let mut spec: Vec<SliceAxis> = x
        .iter()
        .map(|&d| SliceAxis {
            start: 0,
            step: 1,
            len: d,
        })
        .collect();
    for i in 0..starts.len() {
        let a = attrs::axis(n, axes[i], x.len())?;
        if steps[i] == 0 {
            return Err(node_err(n, "slice step 0"));
        }
        spec[a] = slice_axis(x[a], starts[i], ends[i], steps[i]);
    }
    cx.emit(n, Op::Slice { axes: spec }, &[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_axis_semantics() {
        let sa = |start, step, len| SliceAxis { start, step, len };
        assert_eq!(slice_axis(32, 0, i64::MAX, 2), sa(0, 2, 16));
        assert_eq!(slice_axis(5, -2, 100, 1), sa(3, 1, 2));
        assert_eq!(slice_axis(5, -1, i64::MIN, -1), sa(4, -1, 5));
        assert_eq!(slice_axis(5, 3, 1, 1).len, 0);
        assert_eq!(slice_axis(6, 1, 6, 2), sa(1, 2, 3));
    }
}
