//! Plaintexts and ciphertexts: RNS polynomials in NTT form with their exact scale.
//!
//! The level of either is its number of Q limbs minus one. A ciphertext also names the key
//! set it was encrypted under, so that keys of another key set are refused, and may carry
//! the public seed of its `c1` (a fresh symmetric encryption), which halves its size on
//! the wire.

use crate::math::poly::RnsPoly;
use serde::{Deserialize, Serialize};

/// A random identifier shared by a secret key and everything derived from it.
pub type KeySetId = [u8; 16];

/// An encoded message: m(X) in NTT form at some level, with its scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Plaintext {
    pub poly: RnsPoly,
    pub scale: f64,
}

impl Plaintext {
    pub fn level(&self) -> usize {
        self.poly.limbs() - 1
    }
}

/// A ciphertext (c_0, c_1[, c_2]) decrypting to c_0 + c_1 s [+ c_2 s^2].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ciphertext {
    pub parts: Vec<RnsPoly>,
    pub scale: f64,
    pub key_set: KeySetId,
    /// `Some(seed)` when `parts[1]` is the uniform polynomial expanded from this seed.
    pub seed: Option<[u8; 32]>,
}

impl Ciphertext {
    pub fn level(&self) -> usize {
        self.parts[0].limbs() - 1
    }
    /// 1 for a normal ciphertext, 2 after a multiplication before relinearisation.
    pub fn degree(&self) -> usize {
        self.parts.len() - 1
    }
    pub fn n(&self) -> usize {
        self.parts[0].n()
    }
}
