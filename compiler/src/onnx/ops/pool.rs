//! Pooling and reductions: ONNX `AveragePool` (pads, strides, count_include_pad 0/1),
//! `GlobalAveragePool` and `ReduceMean` (any axes, keepdims 0/1, attribute or input axes).

use passes::ir::shape::window_out;
use passes::ir::{AveragePool, Op};
use tract_onnx::pb::NodeProto;

use super::conv::{resolve_pads, strides_2d};
use crate::onnx::attrs::{self, node_err};
use crate::onnx::context::{Ctx, Value};
use crate::onnx::ImportError;

pub fn average_pool(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let x = cx.shape(n, 0)?;
    if x.len() != 4 {
        return Err(node_err(
            n,
            format!("only 2-D pooling (NCHW) is supported, input {x:?}"),
        ));
    }
    let k = attrs::usizes(n, "kernel_shape")?.ok_or_else(|| node_err(n, "missing kernel_shape"))?;
    if k.len() != 2 {
        return Err(node_err(
            n,
            format!("expected a 2-D kernel_shape, got {k:?}"),
        ));
    }
    let kernel = [k[0], k[1]];
    let strides = strides_2d(n)?;
    let pads = resolve_pads(n, [x[2], x[3]], kernel, strides)?;
    if attrs::int(n, "ceil_mode", 0) != 0 {
        for i in 0..2 {
            let padded = x[2 + i] + pads[i] + pads[i + 2];
            let floor = window_out(x[2 + i], pads[i] + pads[i + 2], kernel[i], strides[i]);
            let ceil = padded
                .checked_sub(kernel[i])
                .map(|d| d.div_ceil(strides[i]) + 1);
            if floor != ceil {
                return Err(node_err(
                    n,
                    "ceil_mode = 1 with partial windows is not supported",
                ));
            }
        }
    }
    let cip = attrs::int(n, "count_include_pad", 0) != 0;
    let op = Op::AveragePool(AveragePool {
        kernel,
        strides,
        pads,
        count_include_pad: cip,
    });
    cx.emit(n, op, &[0])
}

pub fn global_average_pool(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::GlobalAveragePool, &[0])
}

pub fn reduce_mean(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let rank = cx.shape(n, 0)?.len();
    let axes: Option<Vec<i64>> = match attrs::ints(n, "axes") {
        Some(a) => Some(a),
        None => match cx.opt_constant(n, 1, "axes")? {
            Some(t) => Some(t.to_i64_vec().map_err(|e| node_err(n, e.to_string()))?),
            None => None,
        },
    };
    let keepdims = attrs::int(n, "keepdims", 1) != 0;
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| attrs::axis(n, a, rank))
            .collect::<Result<_, _>>()?,
        _ => {
            if attrs::int(n, "noop_with_empty_axes", 0) != 0 {
                return cx.emit(n, Op::Identity, &[0]);
            }
            (0..rank).collect()
        }
    };
    axes.sort();
    axes.dedup();
    cx.emit(n, Op::ReduceMean { axes, keepdims }, &[0])
}
