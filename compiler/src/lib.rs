//! ONNX importer, pass pipeline and lowering to the runtime's program format.
