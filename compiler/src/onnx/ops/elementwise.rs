//! Elementwise ONNX ops: Add, Sub, Mul, Div (numpy broadcasting), Relu, Identity, Dropout
//! (inference: identity), Neg (times -1) and Pow with exponent 2 (as `Mul(x, x)`) or 1.

use passes::ir::{Op, Tensor};
use tract_onnx::pb::NodeProto;

use crate::onnx::attrs::node_err;
use crate::onnx::context::{Ctx, Value};
use crate::onnx::ImportError;

pub fn add(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::Add, &[0, 1])
}

pub fn sub(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::Sub, &[0, 1])
}

pub fn mul(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::Mul, &[0, 1])
}

pub fn div(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::Div, &[0, 1])
}

pub fn relu(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::Relu, &[0])
}

pub fn identity(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    cx.emit(n, Op::Identity, &[0])
}

/// Inference-mode dropout is the identity; training mode is rejected.
pub fn dropout(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    if let Some(t) = cx.opt_constant(n, 2, "training_mode")? {
        if t.data().iter().any(|&v| v != 0.0) {
            return Err(node_err(n, "training_mode = true is not supported"));
        }
    }
    cx.emit(n, Op::Identity, &[0])
}

/// `Neg(x)` as `Mul(x, -1)`.
pub fn neg(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    match cx.value(n, 0)? {
        Value::Const(t) => Ok(Value::Const(t.map(|x| -x))),
        Value::Node(x) => {
            let c = cx
                .graph
                .add_const(format!("{}_minus_one", n.output[0]), Tensor::scalar(-1.0));
            cx.add(n, Op::Mul, &[x, c])
        }
    }
}

/// `Pow(x, 2)` becomes `Mul(x, x)`, `Pow(x, 1)` the identity; other exponents only fold
/// over constants.
pub fn pow(cx: &mut Ctx, n: &NodeProto) -> Result<Value, ImportError> {
    let e = cx.constant(n, 1, "exponent")?;
    match cx.value(n, 0)? {
        Value::Const(b) => {
            let r = passes::interpret::binary(&b, &e, f64::powf)
                .map_err(|err| node_err(n, err.to_string()))?;
            Ok(Value::Const(r))
        }
        Value::Node(x) => {
            let first = e.data().first().copied().unwrap_or(f64::NAN);
            if e.data().iter().any(|&v| v != first) || e.len() != 1 {
                return Err(node_err(n, "the exponent must be a single value (2 or 1)"));
            }
            let shape = cx.graph.node(x).shape.clone();
            let check = passes::ir::shape::broadcast(&shape, e.shape());
            if check.as_deref() != Some(&shape[..]) {
                return Err(node_err(
                    n,
                    "an exponent that broadcasts the base is not supported",
                ));
            }
            if first == 2.0 {
                cx.add(n, Op::Mul, &[x, x])
            } else if first == 1.0 {
                cx.add(n, Op::Identity, &[x])
            } else {
                Err(node_err(
                    n,
                    format!(
                        "exponent {first} is not supported on non-constant inputs (only 2 and 1)"
                    ),
                ))
            }
        }
    }
}
