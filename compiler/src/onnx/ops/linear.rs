//! ONNX `Gemm` (alpha, beta, transA, transB; B and C constant) and `MatMul` (numpy semantics).

use passes::ir::{Gemm, Op};
use tract_onnx::pb::NodeProto;

use crate::onnx::attrs::{self, node_err};
use crate::onnx::context::{Ctx, Value};
use crate::onnx::ImportError;

pub fn gemm(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let b = cx.constant(n, 1, "B matrix")?;
    let c = cx.opt_constant(n, 2, "C bias")?;
    if b.rank() != 2 {
        return Err(node_err(n, format!("B must be 2-D, got {:?}", b.shape())));
    }
    let op = Op::Gemm(Gemm {
        b,
        c,
        alpha: attrs::float(n, "alpha", 1.0) as f64,
        beta: attrs::float(n, "beta", 1.0) as f64,
        trans_a: attrs::int(n, "transA", 0) != 0,
        trans_b: attrs::int(n, "transB", 0) != 0,
    });
    cx.emit(n, op, &[0])
}

pub fn matmul(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::MatMul, &[0, 1])
}
