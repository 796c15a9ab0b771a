//! Versioned, checksummed serialisation: the file container ([`container`]) and the wire
//! forms of parameters, keys and ciphertexts ([`objects`]).

pub mod container;
pub mod objects;

pub use container::{decode, encode, encoded_len, seal, FileKind, Header, FORMAT_VERSION};
pub use objects::*;

#[cfg(test)]
mod tests;
