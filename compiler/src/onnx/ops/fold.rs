//! Shape-computation ONNX ops, constant-folded at import: `Shape`, `Gather`, `Cast`,
//! `Concat`, `ConstantOfShape`, `Transpose` and `Constant`. Apart from `Shape` (which only
//! needs the fixed input shape) and float `Cast`, they require constant inputs.

use passes::ir::{Op, Tensor};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::NodeProto;

use crate::onnx::attrs::{self, node_err};
use crate::onnx::context::{Ctx, Value};
use crate::onnx::tensor::from_proto;
use crate::onnx::ImportError;

fn mk(n: &NodeProto, shape: Vec<usize>, data: Vec<f64>) -> Result<Value, ImportError> {
    Tensor::new(shape, data)
        .map(Value::Const)
        .map_err(|e| node_err(n, e.to_string()))
}

pub fn shape(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let s = cx.shape(n, 0)?;
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(attrs::int(n, "start", 0));
    let end = clamp(attrs::int(n, "end", r));
    let dims: Vec<f64> = s[start..end.max(start)].iter().map(|&d| d as f64).collect();
    mk(n, vec![dims.len()], dims)
}

pub fn gather(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    if let Value::Node(_) = cx.value(n, 0)? {
        return gather_identity(cx, n);
    }
    let data = cx.constant(n, 0, "data")?;
    let idx = cx.constant(n, 1, "indices")?;
    let ds = data.shape().to_vec();
    if ds.is_empty() {
        return Err(node_err(n, "cannot gather from a scalar"));
    }
    let axis = attrs::axis(n, attrs::int(n, "axis", 0), ds.len())?;
    let (outer, dim, inner) = (
        ds[..axis].iter().product::<usize>(),
        ds[axis],
        ds[axis + 1..].iter().product::<usize>(),
    );
    let mut indices = Vec::with_capacity(idx.len());
    for i in idx.to_i64_vec().map_err(|e| node_err(n, e.to_string()))? {
        let j = if i < 0 { i + dim as i64 } else { i };
        if j < 0 || j >= dim as i64 {
            return Err(node_err(
                n,
                format!("index {i} out of range for dimension {dim}"),
            ));
        }
        indices.push(j as usize);
    }
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &j in &indices {
            out.extend_from_slice(&data.data()[(o * dim + j) * inner..(o * dim + j + 1) * inner]);
        }
    }
    let mut shape = ds[..axis].to_vec();
    shape.extend_from_slice(idx.shape());
    shape.extend_from_slice(&ds[axis + 1..]);
    mk(n, shape, out)
}

/// Gather from a computed tensor: exporters write `flatten` / `as_strided` as a Gather of
/// every index in order (0, 1, ..., d - 1, in any index shape), which is a reshape. Any
/// other selection would move values between slots and is refused, naming the node.
fn gather_identity(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let ds = cx.shape(n, 0)?;
    if ds.is_empty() {
        return Err(node_err(n, "cannot gather from a scalar"));
    }
    let idx = cx.constant(n, 1, "indices")?;
    let axis = attrs::axis(n, attrs::int(n, "axis", 0), ds.len())?;
    let dim = ds[axis] as i64;
    let ids = idx.to_i64_vec().map_err(|e| node_err(n, e.to_string()))?;
    let identity = ids.len() as i64 == dim
        && ids
            .iter()
            .enumerate()
            .all(|(k, &i)| (if i < 0 { i + dim } else { i }) == k as i64);
    if !identity {
        return Err(node_err(
            n,
            "Gather on a computed tensor is supported only when it takes every index in \
             order (a reshape); this one selects or permutes values",
        ));
    }
    let mut shape = ds[..axis].to_vec();
    shape.extend_from_slice(idx.shape());
    shape.extend_from_slice(&ds[axis + 1..]);
    cx.emit(n, Op::Reshape { shape }, &[0])
}

fn is_float_type(to: i64) -> bool {
    [
        DataType::Float,
        DataType::Double,
        DataType::Float16,
        DataType::Bfloat16,
    ]
    .iter()
    .any(|&d| d as i64 == to)
}

pub fn cast(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let to = attrs::int(n, "to", DataType::Float as i64);
    match cx.value(n, 0)? {
        Value::Const(t) => {
            let r = if is_float_type(to) {
                t
            } else if to == DataType::Bool as i64 {
                t.map(|x| (x != 0.0) as u8 as f64)
            } else {
                t.map(f64::trunc)
            };
            Ok(Value::Const(r))
        }
        Value::Node(x) if is_float_type(to) => cx.add(n, Op::Identity, &[x]),
        Value::Node(_) => Err(node_err(
            n,
            "casting a non-constant tensor to a non-float type is not supported",
        )),
    }
}

pub fn concat(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    // Only constants (shape arithmetic) are concatenated at import; joining computed
    // tensors (a DenseNet- or U-Net-style channel concatenation) has no lowering yet.
    for i in (0..n.input.len()).filter(|&i| cx.input_name(n, i).is_some()) {
        if let Value::Node(_) = cx.value(n, i)? {
            return Err(node_err(
                n,
                format!(
                    "concatenating computed tensors (input {i}, '{}') is not supported: only \
                     constants (initializers, bound graph inputs, shape arithmetic) are \
                     concatenated; add the branches (a residual sum) instead",
                    cx.input_name(n, i).unwrap_or_default()
                ),
            ));
        }
    }
    let parts: Vec<Tensor> = (0..n.input.len())
        .filter(|&i| cx.input_name(n, i).is_some())
        .map(|i| cx.constant(n, i, "concatenated tensor"))
        .collect::<Result<_, _>>()?;
    let first = parts.first().ok_or_else(|| node_err(n, "no inputs"))?;
    let rank = first.rank();
    if rank == 0 {
        return Err(node_err(n, "cannot concatenate scalars"));
    }
    let axis = attrs::axis(n, attrs::int(n, "axis", 0), rank.max(1))?;
    for p in &parts {
        let ok = p.rank() == rank
            && p.shape()
                .iter()
                .enumerate()
                .all(|(i, &d)| i == axis || d == first.shape()[i]);
        if !ok {
            return Err(node_err(
                n,
                format!(
                    "cannot concatenate {:?} with {:?}",
                    first.shape(),
                    p.shape()
                ),
            ));
        }
    }
    let outer: usize = first.shape()[..axis].iter().product();
    let mut out = vec![];
    for o in 0..outer {
        for p in &parts {
            let chunk: usize = p.shape()[axis..].iter().product();
            out.extend_from_slice(&p.data()[o * chunk..(o + 1) * chunk]);
        }
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    mk(n, shape, out)
}

pub fn constant_of_shape(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let s = cx.constant(n, 0, "shape")?;
    let dims: Vec<usize> = s
        .to_i64_vec()
        .map_err(|e| node_err(n, e.to_string()))?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| node_err(n, format!("negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let v = match attrs::tensor(n, "value") {
        Some(t) => *from_proto(t, None)?
            .data()
            .first()
            .ok_or_else(|| node_err(n, "empty value"))?,
        None => 0.0,
    };
    Ok(Value::Const(Tensor::full(dims, v)))
}

pub fn transpose(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let t = cx.constant(
        n,
        0,
        "transposed tensor (Transpose of non-constant tensors is not supported)",
    )?;
    let r = t.rank();
    let perm: Vec<usize> = match attrs::ints(n, "perm") {
        Some(p) => p
            .iter()
            .map(|&a| attrs::axis(n, a, r))
            .collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort();
    if sorted != (0..r).collect::<Vec<_>>() {
        return Err(node_err(n, format!("invalid perm {perm:?}")));
    }
    let is = Tensor::strides_of(t.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape()[p]).collect();
    let mut out = Vec::with_capacity(t.len());
    let mut ctr = vec![0usize; r];
    for _ in 0..t.len() {
        out.push(
            t.data()[ctr
                .iter()
                .zip(&perm)
                .map(|(&c, &p)| c * is[p])
                .sum::<usize>()],
        );
        for d in (0..r).rev() {
            ctr[d] += 1;
            if ctr[d] < shape[d] {
                break;
            }
            ctr[d] = 0;
        }
    }
    mk(n, shape, out)
}

pub fn constant(_cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    if let Some(t) = attrs::tensor(n, "value") {
        return from_proto(t, None).map(Value::Const);
    }
    if let Some(a) = attrs::attr(n, "value_float") {
        return Ok(Value::Const(Tensor::scalar(a.f as f64)));
    }
    if let Some(v) = attrs::floats(n, "value_floats") {
        return Ok(Value::Const(Tensor::vector(
            v.iter().map(|&x| x as f64).collect(),
        )));
    }
    if let Some(a) = attrs::attr(n, "value_int") {
        return Ok(Value::Const(Tensor::scalar(a.i as f64)));
    }
    if let Some(v) = attrs::ints(n, "value_ints") {
        return Ok(Value::Const(Tensor::vector(
            v.iter().map(|&x| x as f64).collect(),
        )));
    }
    Err(node_err(
        n,
        "only tensor, float(s) and int(s) constant values are supported",
    ))
}
