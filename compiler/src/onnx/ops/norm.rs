//! ONNX `BatchNormalization` (inference form, any input rank >= 2) into `Op::BatchNorm`.

use passes::ir::{BatchNorm, Op};
use tract_onnx::pb::NodeProto;

use crate::onnx::attrs::{self, node_err};
use crate::onnx::context::{Ctx, Value};
use crate::onnx::ImportError;

pub fn batch_normalization(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    if attrs::int(n, "training_mode", 0) != 0 {
        return Err(node_err(n, "training_mode = 1 is not supported"));
    }
    let get = |slot, what| -> Result<Vec<f64>, ImportError> {
        let t = cx.constant(n, slot, what)?;
        Ok(t.into_data())
    };
    let bn = BatchNorm {
        scale: get(1, "scale")?,
        bias: get(2, "bias")?,
        mean: get(3, "mean")?,
        var: get(4, "variance")?,
        epsilon: attrs::float(n, "epsilon", 1e-5) as f64,
    };
    cx.emit(n, Op::BatchNorm(bn), &[0])
}
