//! Leveled RNS-CKKS on tfhe-ntt, the `.fheprog` program format and its executor.
//!
//! Layering (one concept per file): [`math`] (modular arithmetic, primes, NTT, RNS
//! polynomials, basis conversion, CRT, sampling) -> [`ckks`] (parameters, context,
//! encoder, keys, encryptor, decryptor, key switching, evaluator) -> [`codec`]
//! (versioned, checksummed files). This crate knows nothing of ONNX or of the graph IR.

pub mod ckks;
pub mod codec;
pub mod error;
pub mod math;
pub mod program;
pub mod sys;

pub use error::{Error, Result};
