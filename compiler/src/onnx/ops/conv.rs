//! ONNX `Conv` (2-D, any kernel / stride / padding incl. auto_pad, any group count; dilations
//! must be 1) into `Op::Conv`.

use passes::ir::{Conv, Op};
use tract_onnx::pb::NodeProto;

use crate::onnx::attrs::{self, node_err};
use crate::onnx::context::{Ctx, Value};
use crate::onnx::ImportError;

/// Resolves explicit `pads` or `auto_pad` into `[top, left, bottom, right]`.
pub fn resolve_pads(
    n: &NodeProto,
    input_hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
) -> Result<[usize; 4], ImportError> {
    let auto = attrs::string(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = attrs::usizes(n, "pads")?.unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 {
                return Err(node_err(
                    n,
                    format!("expected 4 pads for a 2-D op, got {p:?}"),
                ));
            }
            Ok([p[0], p[1], p[2], p[3]])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut begin = [0; 2];
            let mut end = [0; 2];
            for i in 0..2 {
                let out = input_hw[i].div_ceil(strides[i]);
                let total = ((out - 1) * strides[i] + kernel[i]).saturating_sub(input_hw[i]);
                let small = total / 2;
                (begin[i], end[i]) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
            Ok([begin[0], begin[1], end[0], end[1]])
        }
        other => Err(node_err(n, format!("unknown auto_pad '{other}'"))),
    }
}

/// Checks `dilations` (all 1) and reads `strides` (default 1) for a 2-D window op.
pub fn strides_2d(n: &NodeProto) -> Result<[usize; 2], ImportError> {
    if let Some(d) = attrs::usizes(n, "dilations")? {
        if d.iter().any(|&x| x != 1) {
            return Err(node_err(
                n,
                format!("dilations {d:?} are not supported (only 1)"),
            ));
        }
    }
    let s = attrs::usizes(n, "strides")?.unwrap_or_else(|| vec![1, 1]);
    if s.len() != 2 || s.contains(&0) {
        return Err(node_err(
            n,
            format!("expected 2 positive strides, got {s:?}"),
        ));
    }
    Ok([s[0], s[1]])
}

pub fn conv(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    let weight = cx.constant(n, 1, "weight")?;
    let bias = cx.opt_constant(n, 2, "bias")?;
    if weight.rank() != 4 || x.len() != 4 {
        return Err(node_err(
            n,
            format!(
                "only 2-D convolutions (NCHW input, 4-D weight) are supported; input {x:?}, weight {:?}",
                weight.shape()
            ),
        ));
    }
    let ws = weight.shape().to_vec();
    if let Some(k) = attrs::usizes(n, "kernel_shape")? {
        if k != ws[2..] {
            return Err(node_err(
                n,
                format!("kernel_shape {k:?} differs from weight {ws:?}"),
            ));
        }
    }
    let strides = strides_2d(n)?;
    let pads = resolve_pads(n, [x[2], x[3]], [ws[2], ws[3]], strides)?;
    let group = attrs::int(n, "group", 1);
    if group < 1 {
        return Err(node_err(n, format!("group {group} must be positive")));
    }
    let bias = match bias {
        Some(b) if b.rank() != 1 => return Err(node_err(n, "bias must be 1-D")),
        b => b,
    };
    let op = Op::Conv(Conv {
        weight,
        bias,
        strides,
        pads,
        group: group as usize,
    });
    cx.emit(n, op, &[0])
}
