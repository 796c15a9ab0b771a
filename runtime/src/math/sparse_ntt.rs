//! Forward NTT of a sparse polynomial p(X) = r(X^d) (non-zero coefficients only at
//! multiples of d) in O(N + (N/d) log(N/d)) instead of O(N log N).
//!
//! A slot vector that is periodic with period P (a power of two) encodes to such a
//! polynomial with d = N / (2P): it is fixed by the rotation by P, i.e. by X -> X^(5^P),
//! and the monomials that automorphism fixes are exactly those at multiples of N / (2P).
//! Slot masks of a layer replicated with a period are periodic, so every weight x mask
//! plaintext of a convolution can be encoded this way.
//!
//! How: the big transform evaluates p at psi^e_i (psi a primitive 2N-th root, e_i odd);
//! p(psi^e) = r((psi^d)^e) and psi^d is a primitive 2(N/d)-th root, so each big value is
//! one value of the size-N/d negacyclic transform of r, taken at the matching exponent.
//! [`SparseNtt`] precomputes that index map once per (prime, d); each transform is then a
//! small NTT plus a gather. The result equals the full NTT exactly (tested).

use crate::error::{Error, Result};
use crate::math::ntt::NttTable;

/// The smallest inner transform used (tfhe-ntt plans need a few butterflies).
pub const MIN_INNER: usize = 64;

/// Sparse forward NTT for one prime and one sparsity stride `d`.
pub struct SparseNtt {
    d: usize,
    inner: NttTable,
    /// Big NTT index -> inner NTT index.
    map: Vec<u32>,
    /// Whether `map[i] == i / d` (tfhe-ntt's bit-reversed order gives that): big value i
    /// is then inner value i / d, and products need no gather ([`crate::math::simd::smac`]).
    blocked: bool,
}

impl SparseNtt {
    /// For the ring of `big` (degree N) and stride `d` (a power of two, N/d >= MIN_INNER).
    pub fn new(big: &NttTable, d: usize) -> Result<Self> {
        let n = big.n();
        if !d.is_power_of_two() || !n.is_multiple_of(d) || n / d < MIN_INNER {
            return Err(Error::InvalidParams(format!(
                "sparse NTT stride {d} does not fit ring degree {n}"
            )));
        }
        let ns = n / d;
        let q = big.modulus().value();
        let inner = NttTable::new(ns, q)?;
        let m = *big.modulus();
        // psi (big) and psi_s (inner): the evaluation points of index 0, primitive roots of
        // order 2N and 2 ns.
        let point0 = |t: &NttTable, len: usize| {
            let mut x = vec![0u64; len];
            x[1] = 1;
            t.forward(&mut x);
            x[0]
        };
        let psi_d = m.pow(point0(big, n), d as u64);
        let psi_s = point0(&inner, ns);
        // psi^d = psi_s^u for one odd u < 2 ns.
        let two_ns = 2 * ns as u64;
        let mut p = psi_s;
        let mut u = None;
        for k in (1..two_ns).step_by(2) {
            if p == psi_d {
                u = Some(k);
                break;
            }
            p = m.mul(p, m.mul(psi_s, psi_s));
        }
        let u = u.ok_or_else(|| {
            Error::InvalidParams("sparse NTT: psi^d is not a power of the inner root".into())
        })?;
        let big_exps = big.root_exponents()?;
        let inner_exps = inner.root_exponents()?;
        let mut inner_index = vec![u32::MAX; 2 * ns];
        for (j, &e) in inner_exps.iter().enumerate() {
            inner_index[e as usize] = j as u32;
        }
        let map = big_exps
            .iter()
            .map(|&e| {
                let j = inner_index[((e as u64 * u) % two_ns) as usize];
                if j == u32::MAX {
                    Err(Error::InvalidParams(
                        "sparse NTT: unmatched evaluation point".into(),
                    ))
                } else {
                    Ok(j)
                }
            })
            .collect::<Result<Vec<u32>>>()?;
        let blocked = map.iter().enumerate().all(|(i, &j)| j as usize == i / d);
        Ok(SparseNtt {
            d,
            inner,
            map,
            blocked,
        })
    }

    pub fn stride(&self) -> usize {
        self.d
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The inner transform alone, in place: with [`Self::is_blocked`], big value i of the
    /// full NTT is `r[i / d]`.
    pub fn forward_inner(&self, r: &mut [u64]) {
        self.inner.forward(r);
    }

    /// `out` (length N) = NTT of the polynomial whose coefficient k*d is `r[k]` and whose
    /// other coefficients are zero; `r` (length N/d, reduced) is transformed in place.
    pub fn forward_into(&self, r: &mut [u64], out: &mut [u64]) {
        debug_assert_eq!(r.len() * self.d, out.len());
        self.inner.forward(r);
        for (o, &j) in out.iter_mut().zip(&self.map) {
            *o = r[j as usize];
        }
    }
}

/// The largest stride d (a power of two with N/d >= MIN_INNER) such that every coefficient
/// off the multiples of d is below `tol` in magnitude; 1 when there is none.
pub fn sparsity_stride(coeffs: &[f64], tol: f64) -> usize {
    let n = coeffs.len();
    let mut d = (n / MIN_INNER).max(1);
    while d > 1 {
        let off = coeffs
            .iter()
            .enumerate()
            .filter(|(k, _)| k % d != 0)
            .all(|(_, c)| c.abs() < tol);
        if off {
            return d;
        }
        d /= 2;
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn sparse_forward_equals_full_forward(seed in any::<u64>(), log_d in 1u32..5, bits in prop::sample::select(vec![40u32, 49, 55])) {
            let n = 1024;
            let d = 1usize << log_d;
            let q = ntt_primes(bits, n, 1, &[]).unwrap()[0];
            let big = NttTable::new(n, q).unwrap();
            let sp = SparseNtt::new(&big, d).unwrap();
            let mut s = seed;
            let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 1) % q };
            let r: Vec<u64> = (0..n / d).map(|_| next()).collect();
            let mut full = vec![0u64; n];
            for (k, &c) in r.iter().enumerate() {
                full[k * d] = c;
            }
            big.forward(&mut full);
            let mut r2 = r.clone();
            let mut out = vec![0u64; n];
            sp.forward_into(&mut r2, &mut out);
            if sp.is_blocked() {
                let mut r3 = r.clone();
                sp.forward_inner(&mut r3);
                let expanded: Vec<u64> = (0..n).map(|i| r3[i / d]).collect();
                prop_assert_eq!(&expanded, &full);
            }
            prop_assert_eq!(out, full);
        }
    }

    #[test]
    fn stride_detection() {
        let mut c = vec![0f64; 1024];
        for k in (0..1024).step_by(8) {
            c[k] = 1.0 + k as f64;
        }
        assert_eq!(sparsity_stride(&c, 1e-9), 8);
        c[3] = 1e-12;
        assert_eq!(sparsity_stride(&c, 1e-9), 8);
        c[4] = 0.5;
        assert_eq!(sparsity_stride(&c, 1e-9), 4);
        c[1] = 0.5;
        assert_eq!(sparsity_stride(&c, 1e-9), 1);
    }
}
