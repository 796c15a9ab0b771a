//! The graph IR: tensors, ops, shape inference and the graph container.

pub mod graph;
pub mod ops;
pub mod shape;
pub mod tensor;

pub use graph::{Graph, Node, NodeId};
pub use ops::{AveragePool, BatchNorm, Conv, Gemm, Op, Poly, SliceAxis};
pub use tensor::Tensor;

/// Errors from building or checking IR graphs.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("{op}: {msg}")]
    Shape { op: String, msg: String },
    #[error("{op} takes {expected} input(s), got {got}")]
    Arity {
        op: String,
        expected: usize,
        got: usize,
    },
    #[error("node '{node}': {source}")]
    At {
        node: String,
        #[source]
        source: Box<IrError>,
    },
    #[error("no node with id {0}")]
    NoSuchNode(usize),
    #[error("the graph has a cycle")]
    Cycle,
    #[error("{0}")]
    Invalid(String),
}

impl IrError {
    /// Wraps the error with the name of the node it concerns.
    pub fn at(self, node: &str) -> IrError {
        IrError::At {
            node: node.to_string(),
            source: Box::new(self),
        }
    }
}
