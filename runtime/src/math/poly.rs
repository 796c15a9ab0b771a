//! RNS polynomials: one residue vector ("limb") of length N per prime, stored limb after
//! limb in one allocation, in coefficient or NTT (evaluation) form.
//!
//! A polynomial does not own its moduli: every operation takes the NTT tables of its limbs
//! in order, which the CKKS context hands out for a level (Q primes, optionally followed by
//! the special primes P).

use crate::math::ntt::NttTable;
use crate::math::simd;
use rayon::prelude::*;

/// Ring degrees from which a polynomial's limbs are transformed in parallel (below it the
/// task overhead outweighs one NTT).
pub(crate) const PAR_LIMBS_FROM: usize = 1 << 12;
use serde::{Deserialize, Serialize};

/// A polynomial in RNS form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RnsPoly {
    n: usize,
    ntt: bool,
    data: Vec<u64>,
}

impl RnsPoly {
    /// The zero polynomial with `limbs` limbs.
    pub fn zero(n: usize, limbs: usize, ntt: bool) -> Self {
        RnsPoly {
            n,
            ntt,
            data: vec![0; n * limbs],
        }
    }

    /// Wraps raw limb data (length must be a multiple of n).
    pub fn from_data(n: usize, data: Vec<u64>, ntt: bool) -> Self {
        debug_assert_eq!(data.len() % n, 0);
        RnsPoly { n, ntt, data }
    }

    /// Residues of a signed integer polynomial on the given primes.
    pub fn from_signed(coeffs: &[i64], tables: &[&NttTable]) -> Self {
        let n = coeffs.len();
        let mut p = RnsPoly::zero(n, tables.len(), false);
        for (limb, t) in p.data.chunks_exact_mut(n).zip(tables) {
            let m = t.modulus();
            for (d, &c) in limb.iter_mut().zip(coeffs) {
                *d = m.from_i64(c);
            }
        }
        p
    }

    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }
    #[inline]
    pub fn limbs(&self) -> usize {
        self.data.len() / self.n
    }
    #[inline]
    pub fn is_ntt(&self) -> bool {
        self.ntt
    }
    pub fn set_ntt(&mut self, ntt: bool) {
        self.ntt = ntt;
    }
    #[inline]
    pub fn limb(&self, i: usize) -> &[u64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }
    #[inline]
    pub fn limb_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }
    pub fn limbs_iter(&self) -> std::slice::ChunksExact<'_, u64> {
        self.data.chunks_exact(self.n)
    }
    pub fn limbs_iter_mut(&mut self) -> std::slice::ChunksExactMut<'_, u64> {
        self.data.chunks_exact_mut(self.n)
    }
    pub fn data(&self) -> &[u64] {
        &self.data
    }
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    /// Keeps the first `limbs` limbs.
    pub fn truncate(&mut self, limbs: usize) {
        self.data.truncate(limbs * self.n);
    }

    /// A copy of the limbs selected by `idx`.
    pub fn select(&self, idx: impl IntoIterator<Item = usize>) -> RnsPoly {
        let mut data = Vec::new();
        for i in idx {
            data.extend_from_slice(self.limb(i));
        }
        RnsPoly {
            n: self.n,
            ntt: self.ntt,
            data,
        }
    }

    /// Appends the limbs of `other`.
    pub fn extend(&mut self, other: &RnsPoly) {
        debug_assert_eq!(self.ntt, other.ntt);
        self.data.extend_from_slice(&other.data);
    }

    /// Applies `f` to every limb with its table (in parallel on large rings).
    fn each_limb(&mut self, tables: &[&NttTable], f: impl Fn(&NttTable, &mut [u64]) + Sync) {
        if self.n >= PAR_LIMBS_FROM {
            self.data
                .par_chunks_exact_mut(self.n)
                .zip(tables.par_iter())
                .for_each(|(limb, t)| f(t, limb));
        } else {
            for (limb, t) in self.data.chunks_exact_mut(self.n).zip(tables) {
                f(t, limb);
            }
        }
    }

    pub fn forward(&mut self, tables: &[&NttTable]) {
        debug_assert!(!self.ntt);
        self.each_limb(tables, |t, limb| t.forward(limb));
        self.ntt = true;
    }

    pub fn inverse(&mut self, tables: &[&NttTable]) {
        debug_assert!(self.ntt);
        self.each_limb(tables, |t, limb| t.inverse(limb));
        self.ntt = false;
    }

    pub fn add_assign(&mut self, other: &RnsPoly, tables: &[&NttTable]) {
        debug_assert_eq!(self.ntt, other.ntt);
        for ((a, b), t) in self.limbs_iter_mut().zip(other.limbs_iter()).zip(tables) {
            let m = t.modulus();
            if simd::add_assign(a, b, m.value()) {
                continue;
            }
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.add(*x, y);
            }
        }
    }

    /// `self + other` on the limbs of `tables`, in one pass.
    pub fn add(&self, other: &RnsPoly, tables: &[&NttTable]) -> RnsPoly {
        debug_assert_eq!(self.ntt, other.ntt);
        let n = self.n;
        let limbs = tables.len().min(self.limbs()).min(other.limbs());
        let mut data: Vec<u64> = Vec::with_capacity(n * limbs);
        for (i, t) in tables.iter().enumerate().take(limbs) {
            let (a, b, m) = (self.limb(i), other.limb(i), t.modulus());
            let start = data.len();
            if simd::add_into(&mut data.spare_capacity_mut()[..n], a, b, m.value()) {
                // SAFETY: add_into initialised the n words after `start`.
                unsafe { data.set_len(start + n) };
            } else {
                data.extend(a.iter().zip(b).map(|(&x, &y)| m.add(x, y)));
            }
        }
        RnsPoly {
            n,
            ntt: self.ntt,
            data,
        }
    }

    pub fn sub_assign(&mut self, other: &RnsPoly, tables: &[&NttTable]) {
        debug_assert_eq!(self.ntt, other.ntt);
        for ((a, b), t) in self.limbs_iter_mut().zip(other.limbs_iter()).zip(tables) {
            let m = t.modulus();
            if simd::sub_assign(a, b, m.value()) {
                continue;
            }
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.sub(*x, y);
            }
        }
    }

    pub fn neg_assign(&mut self, tables: &[&NttTable]) {
        for (a, t) in self.limbs_iter_mut().zip(tables) {
            let m = t.modulus();
            for x in a.iter_mut() {
                *x = m.neg(*x);
            }
        }
    }

    /// Pointwise product (both in NTT form).
    pub fn mul(&self, other: &RnsPoly, tables: &[&NttTable]) -> RnsPoly {
        let mut out = RnsPoly::zero(self.n, self.limbs().min(other.limbs()), true);
        out.mul_acc(self, other, tables);
        out
    }

    /// `self += a * b` pointwise (all in NTT form).
    pub fn mul_acc(&mut self, a: &RnsPoly, b: &RnsPoly, tables: &[&NttTable]) {
        let n = self.n;
        for (i, (acc, t)) in self.data.chunks_exact_mut(n).zip(tables).enumerate() {
            t.mul_accumulate(acc, a.limb(i), b.limb(i));
        }
    }

    pub fn mul_assign(&mut self, other: &RnsPoly, tables: &[&NttTable]) {
        for ((a, b), t) in self.limbs_iter_mut().zip(other.limbs_iter()).zip(tables) {
            let m = t.modulus();
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.mul(*x, y);
            }
        }
    }

    /// Multiplies limb i by the reduced constant `consts[i]`.
    pub fn mul_scalar_per_limb(&mut self, consts: &[u64], tables: &[&NttTable]) {
        for ((a, &c), t) in self.limbs_iter_mut().zip(consts).zip(tables) {
            let m = t.modulus();
            let q = m.value();
            if q < simd::MAX_MODULUS_52 && simd::mul_const_assign(a, c, simd::shoup52(c, q), q) {
                continue;
            }
            let cs = m.shoup(c);
            for x in a.iter_mut() {
                *x = m.mul_shoup(*x, c, cs);
            }
        }
    }

    /// Applies an NTT-domain permutation to every limb: `out[i] = in[perm[i]]`.
    pub fn permuted(&self, perm: &[u32]) -> RnsPoly {
        debug_assert!(self.ntt);
        let mut data = Vec::with_capacity(self.data.len());
        for limb in self.limbs_iter() {
            data.extend(perm.iter().map(|&j| limb[j as usize]));
        }
        RnsPoly {
            n: self.n,
            ntt: true,
            data,
        }
    }
}
