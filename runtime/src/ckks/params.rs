//! CKKS parameter sets: ring degree, the chain of ciphertext primes Q (base prime first,
//! of arbitrary and mixed bit sizes), the special primes P and the number of key-switching
//! digits (dnum). Every set is checked against the 128-bit table of
//! [`crate::ckks::security`] when it is built or deserialised, except one built by the
//! loudly named [`Params::insecure_for_tests`].

use crate::ckks::security::{max_log_qp_128, security_level};
use crate::error::{Error, Result};
use crate::math::primes::{is_prime, ntt_primes};
use serde::{Deserialize, Serialize};

/// Most primes (Q and P together) a parameter set may have.
pub const MAX_PRIMES: usize = 256;

/// A validated CKKS parameter set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    log_n: u32,
    q: Vec<u64>,
    p: Vec<u64>,
    dnum: usize,
    insecure_for_tests: bool,
}

/// Distinct NTT-friendly primes for a list of bit sizes, in the order of `bits`.
fn primes_for(bits: &[u32], n: usize, exclude: &[u64]) -> Result<Vec<u64>> {
    let mut taken: Vec<u64> = exclude.to_vec();
    let mut out = Vec::with_capacity(bits.len());
    for &b in bits {
        let p = ntt_primes(b, n, 1, &taken)?[0];
        taken.push(p);
        out.push(p);
    }
    Ok(out)
}

impl Params {
    /// A 128-bit secure parameter set with primes of the given bit sizes.
    /// `q_bits[0]` is the base prime; `dnum` is the number of key-switching digits.
    pub fn new(log_n: u32, q_bits: &[u32], p_bits: &[u32], dnum: usize) -> Result<Self> {
        Self::build(log_n, q_bits, p_bits, dnum, false)
    }

    /// INSECURE: the same construction without the 128-bit check. For tests and
    /// benchmarks at small ring degrees only; nothing user-facing may call it without an
    /// explicit opt-in.
    pub fn insecure_for_tests(
        log_n: u32,
        q_bits: &[u32],
        p_bits: &[u32],
        dnum: usize,
    ) -> Result<Self> {
        Self::build(log_n, q_bits, p_bits, dnum, true)
    }

    fn build(
        log_n: u32,
        q_bits: &[u32],
        p_bits: &[u32],
        dnum: usize,
        insecure: bool,
    ) -> Result<Self> {
        if !(10..=17).contains(&log_n) {
            return Err(Error::UnsupportedRingDegree(log_n));
        }
        let n = 1usize << log_n;
        let q = primes_for(q_bits, n, &[])?;
        let p = primes_for(p_bits, n, &q)?;
        Self::from_primes(log_n, q, p, dnum, insecure)
    }

    /// A parameter set from explicit primes (as stored in a program file).
    pub fn from_primes(
        log_n: u32,
        q: Vec<u64>,
        p: Vec<u64>,
        dnum: usize,
        insecure_for_tests: bool,
    ) -> Result<Self> {
        let params = Params {
            log_n,
            q,
            p,
            dnum,
            insecure_for_tests,
        };
        params.validate()?;
        Ok(params)
    }

    /// Structural and security checks (also run on every deserialised set).
    pub fn validate(&self) -> Result<()> {
        if !(10..=17).contains(&self.log_n) {
            return Err(Error::UnsupportedRingDegree(self.log_n));
        }
        let bad = |m: String| Err(Error::InvalidParams(m));
        if self.q.is_empty() {
            return bad("the ciphertext modulus needs at least one prime".into());
        }
        if self.p.is_empty() {
            return bad("key switching needs at least one special prime".into());
        }
        // Even at N = 2^17 the 128-bit bound (3523 bits) holds at most 207 primes of 17
        // bits; a longer chain can only come from a hostile file (insecure sets included).
        if self.q.len() + self.p.len() > MAX_PRIMES {
            return bad(format!(
                "{} primes in the chain, at most {MAX_PRIMES} are supported",
                self.q.len() + self.p.len()
            ));
        }
        if self.dnum == 0 || self.dnum > self.q.len() {
            return bad(format!(
                "dnum = {} must be between 1 and the number of primes ({})",
                self.dnum,
                self.q.len()
            ));
        }
        let two_n = 2u64 << self.log_n;
        let all: Vec<u64> = self.q.iter().chain(&self.p).copied().collect();
        for (i, &x) in all.iter().enumerate() {
            if !(1 << 16..1 << 61).contains(&x) || !is_prime(x) || x % two_n != 1 {
                return bad(format!(
                    "{x} is not a prime of 17..61 bits that is 1 mod 2N = {two_n}"
                ));
            }
            if all[..i].contains(&x) {
                return bad(format!("prime {x} appears twice"));
            }
        }
        // Key-switching noise grows with (largest digit) / P: refuse a P far below a digit.
        let log_p = self.log_p();
        let alpha = self.alpha();
        for digit in self.q.chunks(alpha) {
            let log_digit: f64 = digit.iter().map(|&x| (x as f64).log2()).sum();
            if log_p + 4.0 < log_digit {
                return bad(format!(
                    "the special primes ({log_p:.1} bits) must be about as large as the \
                     largest key-switching digit ({log_digit:.1} bits): add special primes \
                     or raise dnum"
                ));
            }
        }
        if !self.insecure_for_tests {
            let limit =
                max_log_qp_128(self.log_n).ok_or(Error::UnsupportedRingDegree(self.log_n))?;
            let log_qp = self.log_qp();
            if log_qp > limit as f64 {
                return Err(Error::Insecure {
                    log_n: self.log_n,
                    log_qp,
                    limit,
                });
            }
        }
        Ok(())
    }

    pub fn log_n(&self) -> u32 {
        self.log_n
    }
    pub fn n(&self) -> usize {
        1 << self.log_n
    }
    pub fn slots(&self) -> usize {
        self.n() / 2
    }
    pub fn q(&self) -> &[u64] {
        &self.q
    }
    pub fn p(&self) -> &[u64] {
        &self.p
    }
    pub fn dnum(&self) -> usize {
        self.dnum
    }
    /// Highest ciphertext level (number of Q primes - 1).
    pub fn max_level(&self) -> usize {
        self.q.len() - 1
    }
    /// Primes per key-switching digit.
    pub fn alpha(&self) -> usize {
        self.q.len().div_ceil(self.dnum)
    }
    pub fn is_insecure_for_tests(&self) -> bool {
        self.insecure_for_tests
    }
    pub fn log_q(&self) -> f64 {
        self.q.iter().map(|&x| (x as f64).log2()).sum()
    }
    pub fn log_p(&self) -> f64 {
        self.p.iter().map(|&x| (x as f64).log2()).sum()
    }
    pub fn log_qp(&self) -> f64 {
        self.log_q() + self.log_p()
    }
    /// 128, 192 or 256 where the standard's table reaches it, `None` below 128 bits.
    pub fn security_bits(&self) -> Option<u32> {
        security_level(self.log_n, self.log_qp())
    }
    /// Bit sizes of the Q primes (base first) and of the P primes.
    pub fn bit_sizes(&self) -> (Vec<u32>, Vec<u32>) {
        let bits = |v: &[u64]| v.iter().map(|&x| 64 - x.leading_zeros()).collect();
        (bits(&self.q), bits(&self.p))
    }
}

impl Params {
    /// A fingerprint of the parameter set (BLAKE3 of its canonical encoding); keys and
    /// programs record it so that mismatched files are refused.
    pub fn id(&self) -> [u8; 32] {
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        *blake3::hash(&bytes).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_sets_are_accepted_and_insecure_refused() {
        // The compiler's ResNet-20 set at N = 2^15: 30 + 20*40 + one 40-bit special prime.
        let mut q = vec![30];
        q.extend([40; 20]);
        let p = Params::new(15, &q, &[40], 21).unwrap();
        assert!(p.log_qp() <= 881.0);
        assert_eq!(p.security_bits(), Some(128));
        // The paper's own ResNet-20 set (906 bits) is over the limit.
        let mut q = vec![22];
        q.extend([42; 20]);
        let err = Params::new(15, &q, &[44], 21).unwrap_err();
        assert!(matches!(err, Error::Insecure { limit: 881, .. }), "{err}");
        let weak = Params::insecure_for_tests(15, &q, &[44], 21).unwrap();
        assert!(weak.is_insecure_for_tests());
        assert_eq!(weak.security_bits(), None);
    }

    #[test]
    fn structural_errors_are_named() {
        assert!(matches!(
            Params::new(9, &[30], &[30], 1),
            Err(Error::UnsupportedRingDegree(9))
        ));
        assert!(Params::insecure_for_tests(12, &[30, 30], &[30], 3).is_err());
        assert!(Params::insecure_for_tests(12, &[30], &[], 1).is_err());
        let p = Params::insecure_for_tests(12, &[30, 30], &[30], 2).unwrap();
        let dup = Params::from_primes(12, vec![p.q()[0], p.q()[0]], p.p().to_vec(), 1, true);
        assert!(dup.is_err());
    }
}
