//! The table of supported ONNX ops: one import function per op type, and for each op the
//! input slots that must be constant (weights, shape operands), which decides which graph
//! inputs are bound to user-given values before shape inference.

use tract_onnx::pb::NodeProto;

use super::context::{Ctx, Value};
use super::ImportError;

mod conv;
mod elementwise;
mod fold;
mod layout;
mod linear;
mod norm;
mod pool;

/// Imports one ONNX node; returns the value of its (first) output.
pub type ImportFn = fn(&mut Ctx, &NodeProto) -> Result<Value, ImportError>;

/// One supported op type.
pub struct OpEntry {
    pub op_type: &'static str,
    pub import: ImportFn,
    /// Input slots that must be known at import time.
    pub const_slots: &'static [usize],
    /// Whether a constant output requires constant inputs (false only for `Shape`).
    pub needs_data: bool,
}

const fn e(op_type: &'static str, import: ImportFn, const_slots: &'static [usize]) -> OpEntry {
    OpEntry {
        op_type,
        import,
        const_slots,
        needs_data: true,
    }
}

/// Every supported op type, sorted by name.
pub static OPS: &[OpEntry] = &[
    e("Add", elementwise::add, &[]),
    e("AveragePool", pool::average_pool, &[]),
    e(
        "BatchNormalization",
        norm::batch_normalization,
        &[1, 2, 3, 4],
    ),
    e("Cast", fold::cast, &[]),
    e("Concat", fold::concat, &[]),
    e("Constant", fold::constant, &[]),
    e("ConstantOfShape", fold::constant_of_shape, &[0]),
    e("Conv", conv::conv, &[1, 2]),
    e("Div", elementwise::div, &[]),
    e("Dropout", elementwise::dropout, &[1, 2]),
    e("Flatten", layout::flatten, &[]),
    e("Gather", fold::gather, &[1]),
    e("Gemm", linear::gemm, &[1, 2]),
    e("GlobalAveragePool", pool::global_average_pool, &[]),
    e("Identity", elementwise::identity, &[]),
    e("MatMul", linear::matmul, &[]),
    e("Mul", elementwise::mul, &[]),
    e("Neg", elementwise::neg, &[]),
    e("Pad", layout::pad, &[1, 2, 3]),
    e("Pow", elementwise::pow, &[1]),
    e("ReduceMean", pool::reduce_mean, &[1]),
    e("Relu", elementwise::relu, &[]),
    e("Reshape", layout::reshape, &[1]),
    OpEntry {
        op_type: "Shape",
        import: fold::shape,
        const_slots: &[],
        needs_data: false,
    },
    e("Slice", layout::slice, &[1, 2, 3, 4]),
    e("Squeeze", layout::squeeze, &[1]),
    e("Sub", elementwise::sub, &[]),
    e("Transpose", fold::transpose, &[]),
    e("Unsqueeze", layout::unsqueeze, &[1]),
];

/// The entry for `op_type` (default ONNX domain only).
pub fn lookup(node: &NodeProto) -> Option<&'static OpEntry> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    OPS.iter().find(|e| e.op_type == node.op_type)
}

/// Comma-separated list of supported op types, for error messages.
pub fn supported_list() -> String {
    OPS.iter().map(|e| e.op_type).collect::<Vec<_>>().join(", ")
}
