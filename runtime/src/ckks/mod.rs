//! RNS-CKKS: parameters and their security check, the precomputed context, encoding,
//! keys, encryption, decryption, key switching and evaluation.

pub mod context;
pub mod decryptor;
pub mod encoder;
pub mod encryptor;
pub mod evaluator;
pub mod fft;
pub mod keygen;
pub mod keys;
pub mod keyswitch;
pub mod params;
pub mod plaintext;
pub mod security;

pub use context::Context;
pub use decryptor::Decryptor;
pub use encoder::Encoder;
pub use encryptor::Encryptor;
pub use evaluator::Evaluator;
pub use fft::C64;
pub use keygen::KeyGenerator;
pub use keys::{EvalKeys, PublicKey, SecretKey, SwitchingKey};
pub use params::Params;
pub use plaintext::{Ciphertext, KeySetId, Plaintext};

#[cfg(test)]
pub(crate) mod tests;
