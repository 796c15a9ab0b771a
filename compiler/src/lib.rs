//! ONNX importer, pass pipeline and lowering to the runtime's program format.

pub mod cifar;
pub mod e2e;
pub mod fuzzing;
pub mod image;
pub mod inputs;
pub mod lower;
pub mod members;
pub mod onnx;
pub mod pipeline;
pub mod ranges;

/// Re-exported so integration tests and tools use the same ONNX protobuf types.
pub use prost;
pub use tract_onnx;
