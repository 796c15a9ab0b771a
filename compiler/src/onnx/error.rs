//! `ImportError`: everything that can go wrong while reading an ONNX model into the IR.

use passes::ir::IrError;

/// Errors of the ONNX importer. None of them is a panic: bad input is reported here.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is not an ONNX model: {reason}")]
    NotOnnx { path: String, reason: String },
    #[error("unsupported ONNX op '{op}' (node '{node}'); supported ops: {supported}")]
    UnsupportedOp {
        op: String,
        node: String,
        supported: String,
    },
    #[error(
        "input '{name}' has a dynamic or unknown shape {shape}; give a fixed shape with \
         --input-shape {example}"
    )]
    DynamicShape {
        name: String,
        shape: String,
        example: String,
    },
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    #[error("node '{node}' ({op}): {source}")]
    Ir {
        node: String,
        op: String,
        #[source]
        source: IrError,
    },
    #[error("tensor '{name}': {msg}")]
    Tensor { name: String, msg: String },
    #[error("{0}")]
    Model(String),
}
