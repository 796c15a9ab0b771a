//! Negacyclic NTT over one prime, on tfhe-ntt's `prime64::Plan` (AVX-512 IFMA for primes
//! below 2^50), plus the order of its evaluation points, which Galois automorphisms need to
//! act on NTT-domain polynomials as pure permutations.
//!
//! tfhe-ntt's forward transform leaves its output in bit-reversed order and its inverse does
//! not divide by N; [`NttTable::inverse`] does.

use crate::error::{Error, Result};
use crate::math::modulus::Modulus;
use std::collections::HashMap;
use tfhe_ntt::prime64::Plan;

/// The NTT plan for one prime.
pub struct NttTable {
    plan: Plan,
    modulus: Modulus,
    n: usize,
}

impl NttTable {
    pub fn new(n: usize, q: u64) -> Result<Self> {
        let plan = Plan::try_new(n, q).ok_or_else(|| {
            Error::InvalidParams(format!("{q} is not an NTT-friendly prime for N = {n}"))
        })?;
        Ok(NttTable {
            plan,
            modulus: Modulus::new(q),
            n,
        })
    }

    pub fn modulus(&self) -> &Modulus {
        &self.modulus
    }

    /// The ring degree.
    pub fn n(&self) -> usize {
        self.n
    }

    /// In-place forward transform (coefficients -> evaluations, bit-reversed).
    #[inline]
    pub fn forward(&self, a: &mut [u64]) {
        self.plan.fwd(a);
    }

    /// In-place inverse transform including the division by N.
    #[inline]
    pub fn inverse(&self, a: &mut [u64]) {
        self.plan.inv(a);
        self.plan.normalize(a);
    }

    /// In-place inverse transform WITHOUT the division by N (the caller folds N^-1 into a
    /// later constant multiplication).
    #[inline]
    pub fn inverse_unnormalized(&self, a: &mut [u64]) {
        self.plan.inv(a);
    }

    /// `acc += a * b` pointwise (vectorised).
    #[inline]
    pub fn mul_accumulate(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        self.plan.mul_accumulate(acc, a, b);
    }

    /// For each NTT index i, the exponent e_i (odd, in [0, 2N)) such that the evaluation
    /// point of slot i is psi^e_i for the primitive 2N-th root psi = point of index 0.
    pub fn root_exponents(&self) -> Result<Vec<u32>> {
        let n = self.n;
        let m = &self.modulus;
        let mut x = vec![0u64; n];
        x[1] = 1;
        self.forward(&mut x);
        let psi = x[0];
        let mut pow_to_exp = HashMap::with_capacity(2 * n);
        let mut p = 1u64;
        for e in 0..2 * n as u32 {
            pow_to_exp.insert(p, e);
            p = m.mul(p, psi);
        }
        if p != 1 || pow_to_exp.len() != 2 * n {
            return Err(Error::InvalidParams(
                "NTT evaluation point is not a primitive 2N-th root".into(),
            ));
        }
        x.iter()
            .map(|w| {
                pow_to_exp.get(w).copied().ok_or_else(|| {
                    Error::InvalidParams("NTT evaluation point outside <psi>".into())
                })
            })
            .collect()
    }
}

/// The NTT-domain permutation of the automorphism X -> X^g: `out[i] = in[perm[i]]`.
pub fn galois_permutation(exponents: &[u32], g: u64) -> Vec<u32> {
    let two_n = 2 * exponents.len() as u64;
    let mut index_of = vec![u32::MAX; two_n as usize];
    for (i, &e) in exponents.iter().enumerate() {
        index_of[e as usize] = i as u32;
    }
    exponents
        .iter()
        .map(|&e| index_of[((e as u64 * g) % two_n) as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    #[allow(clippy::needless_range_loop)]
    fn negacyclic_mul(a: &[u64], b: &[u64], m: &Modulus) -> Vec<u64> {
        let n = a.len();
        let mut out = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let p = m.mul(a[i], b[j]);
                let k = i + j;
                if k < n {
                    out[k] = m.add(out[k], p);
                } else {
                    out[k - n] = m.sub(out[k - n], p);
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn ntt_round_trip_and_convolution(seed in any::<u64>(), bits in prop::sample::select(vec![30u32, 40, 49, 55, 60])) {
            let n = 64;
            let q = ntt_primes(bits, n, 1, &[]).unwrap()[0];
            let t = NttTable::new(n, q).unwrap();
            let m = t.modulus();
            let mut s = seed;
            let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 1) % q };
            let a: Vec<u64> = (0..n).map(|_| next()).collect();
            let b: Vec<u64> = (0..n).map(|_| next()).collect();
            let mut fa = a.clone();
            t.forward(&mut fa);
            let mut back = fa.clone();
            t.inverse(&mut back);
            prop_assert_eq!(&back, &a);
            let mut fb = b.clone();
            t.forward(&mut fb);
            let mut prod = vec![0u64; n];
            t.mul_accumulate(&mut prod, &fa, &fb);
            t.inverse(&mut prod);
            prop_assert_eq!(prod, negacyclic_mul(&a, &b, m));
        }
    }

    #[test]
    fn automorphism_is_a_permutation_in_ntt_domain() {
        let n = 32;
        let q = ntt_primes(40, n, 1, &[]).unwrap()[0];
        let t = NttTable::new(n, q).unwrap();
        let m = *t.modulus();
        let exps = t.root_exponents().unwrap();
        let a: Vec<u64> = (0..n as u64).map(|i| (i * 7919 + 3) % q).collect();
        for g in [5u64, 25, 2 * n as u64 - 1, 3] {
            // Coefficient-domain automorphism: X^i -> +-X^(i g mod 2n).
            let mut want = vec![0u64; n];
            for (i, &c) in a.iter().enumerate() {
                let k = (i as u64 * g) % (2 * n as u64);
                if k < n as u64 {
                    want[k as usize] = m.add(want[k as usize], c);
                } else {
                    let k = (k - n as u64) as usize;
                    want[k] = m.sub(want[k], c);
                }
            }
            t.forward(&mut want);
            let mut fa = a.clone();
            t.forward(&mut fa);
            let perm = galois_permutation(&exps, g);
            let got: Vec<u64> = perm.iter().map(|&j| fa[j as usize]).collect();
            assert_eq!(got, want, "g = {g}");
        }
    }
}

#[cfg(test)]
mod composition_tests {
    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// sigma_a o sigma_b == sigma_(a b): rotation by i then by j is rotation by i + j
        /// (5^i 5^j = 5^(i+j)), and conjugation is an involution.
        #[test]
        fn galois_permutations_compose(i in 0u64..512, j in 0u64..512) {
            let n = 1024;
            let q = ntt_primes(40, n, 1, &[]).unwrap()[0];
            let t = NttTable::new(n, q).unwrap();
            let exps = t.root_exponents().unwrap();
            let m = Modulus::new(2 * n as u64);
            let (ga, gb) = (m.pow(5, i), m.pow(5, j));
            let pa = galois_permutation(&exps, ga);
            let pb = galois_permutation(&exps, gb);
            let pab = galois_permutation(&exps, m.mul(ga, gb));
            // out = sigma_b(sigma_a(x)): out[k] = sigma_a(x)[pb[k]] = x[pa[pb[k]]]
            let composed: Vec<u32> = pb.iter().map(|&k| pa[k as usize]).collect();
            prop_assert_eq!(composed, pab);
            let conj = galois_permutation(&exps, 2 * n as u64 - 1);
            let twice: Vec<u32> = conj.iter().map(|&k| conj[k as usize]).collect();
            prop_assert_eq!(twice, (0..n as u32).collect::<Vec<_>>());
        }
    }
}
