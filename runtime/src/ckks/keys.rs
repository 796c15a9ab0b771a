//! Key types. The secret key has its own type, is zeroised on drop and is never part of
//! the evaluation-key bundle; everything the server needs (public key, relinearisation and
//! Galois keys) lives in [`EvalKeys`].
//!
//! A switching key from s' to s has one digit per group of `alpha` primes:
//! b_j = -a_j s + e_j + P s' [on the primes of digit j] over Q_level * P, with a_j expanded
//! from a public 32-byte seed. Keys are generated only up to the level where they are used.

use crate::ckks::plaintext::KeySetId;
use crate::math::poly::RnsPoly;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroize;

/// The client's secret: a uniform ternary polynomial, kept in coefficient form and in NTT
/// form over all primes of Q and P.
pub struct SecretKey {
    pub key_set: KeySetId,
    pub params_id: [u8; 32],
    pub(crate) coeffs: Vec<i64>,
    pub(crate) ntt_qp: RnsPoly,
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.coeffs.zeroize();
        let mut data = std::mem::replace(&mut self.ntt_qp, RnsPoly::zero(1, 0, true)).into_data();
        data.zeroize();
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(<redacted>)")
    }
}

/// One digit of a switching key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyDigit {
    pub b: RnsPoly,
    pub a: RnsPoly,
    pub seed: [u8; 32],
}

/// A hybrid key-switching key, valid for ciphertexts at levels 0..=`level`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwitchingKey {
    pub level: usize,
    pub digits: Vec<KeyDigit>,
}

impl SwitchingKey {
    /// Size in bytes of the seeded serialised form (b parts only).
    pub fn seeded_bytes(&self) -> usize {
        self.digits.iter().map(|d| d.b.data().len() * 8 + 32).sum()
    }
}

/// The public encryption key (b, a) = (-a s + e, a) over Q.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicKey {
    pub key_set: KeySetId,
    pub b: RnsPoly,
    pub a: RnsPoly,
    pub seed: [u8; 32],
}

/// Everything the server may hold: it cannot decrypt with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalKeys {
    pub key_set: KeySetId,
    pub params_id: [u8; 32],
    pub relin: Option<SwitchingKey>,
    /// Galois keys by Galois element.
    pub galois: BTreeMap<u64, SwitchingKey>,
}

impl EvalKeys {
    pub fn seeded_bytes(&self) -> usize {
        self.relin.iter().map(|k| k.seeded_bytes()).sum::<usize>()
            + self
                .galois
                .values()
                .map(|k| k.seeded_bytes())
                .sum::<usize>()
    }
}
