//! Fast (approximate) RNS basis conversion, the hot loop of hybrid key switching.
//!
//! Converting x, given by residues x_i modulo the primes a_i of A, to a prime b computes
//! sum_i [x_i * (A/a_i)^-1]_{a_i} * (A/a_i) mod b, which equals x + u*A for some
//! 0 <= u < len(A). [`BasisConverter::convert_centered`] (what key switching uses) removes
//! the u*A term with a floating-point estimate of u and returns the residue of x's
//! representative in (-A/2, A/2]: both errors have a non-zero mean, which key switching
//! would turn into noise concentrated on a few slots.
//!
//! The products are accumulated in 128 bits and reduced once per output with a two-word
//! Barrett reduction, so one output costs len(A) multiplications plus one reduction.

use crate::math::modulus::Modulus;
use crate::math::poly::PAR_LIMBS_FROM;
use crate::math::simd::{self, shoup52, Term, MAX_MODULUS_52};
use rayon::prelude::*;

/// Barrett constant floor(2^128 / b) for reducing full 128-bit accumulators.
#[derive(Clone, Copy, Debug)]
pub struct WideReducer {
    b: u64,
    m_hi: u64,
    m_lo: u64,
}

impl WideReducer {
    pub fn new(b: u64) -> Self {
        // floor(2^128 / b) = floor((2^128 - 1) / b) since b is not a power of two.
        let mu = u128::MAX / b as u128;
        WideReducer {
            b,
            m_hi: (mu >> 64) as u64,
            m_lo: mu as u64,
        }
    }

    /// x mod b for any 128-bit x.
    #[inline(always)]
    pub fn reduce(&self, x: u128) -> u64 {
        let (x1, x0) = ((x >> 64) as u64, x as u64);
        let mid = (x1 as u128 * self.m_lo as u128)
            .wrapping_add(x0 as u128 * self.m_hi as u128)
            .wrapping_add((x0 as u128 * self.m_lo as u128) >> 64);
        let q_est = x1.wrapping_mul(self.m_hi).wrapping_add((mid >> 64) as u64);
        let mut r = x0.wrapping_sub(q_est.wrapping_mul(self.b));
        while r >= self.b {
            r -= self.b;
        }
        r
    }
}

/// Precomputed tables for converting from basis `from` to basis `to`.
pub struct BasisConverter {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    hat_inv: Vec<(u64, u64)>,
    /// `hat_mod[j * from.len() + i]` = (A / a_i) mod b_j.
    hat_mod: Vec<u64>,
    reducers: Vec<WideReducer>,
    /// 52-bit Shoup constants of `hat_inv` (used when the source prime is below 2^50).
    hat_inv52: Vec<u64>,
    /// Per target prime below 2^50: the IFMA dot-product terms.
    terms: Vec<Option<Vec<Term>>>,
    /// Number of terms that can be summed in 128 bits before a reduction is needed.
    chunk: usize,
    /// A mod b_j, for the centred conversion's correction.
    a_mod: Vec<u64>,
}

impl BasisConverter {
    pub fn new(from: &[Modulus], to: &[Modulus]) -> Self {
        let hat_inv = from
            .iter()
            .enumerate()
            .map(|(i, ai)| {
                let mut h = 1u64;
                for (k, ak) in from.iter().enumerate() {
                    if k != i {
                        h = ai.mul(h, ai.reduce_u64(ak.value()));
                    }
                }
                let inv = ai.inv(h);
                (inv, ai.shoup(inv))
            })
            .collect();
        let mut hat_mod = Vec::with_capacity(from.len() * to.len());
        for bj in to {
            for i in 0..from.len() {
                let mut h = 1u64;
                for (k, ak) in from.iter().enumerate() {
                    if k != i {
                        h = bj.mul(h, bj.reduce_u64(ak.value()));
                    }
                }
                hat_mod.push(h);
            }
        }
        let max_a = from.iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        let max_b = to.iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        let chunk = (u128::MAX / (max_a * max_b)).clamp(1, 64) as usize;
        let hat_inv52 = from
            .iter()
            .zip(&hat_inv)
            .map(|(m, &(c, _))| {
                if m.value() < MAX_MODULUS_52 {
                    shoup52(c, m.value())
                } else {
                    0
                }
            })
            .collect();
        let terms = to
            .iter()
            .enumerate()
            .map(|(j, bj)| {
                let b = bj.value();
                if b >= MAX_MODULUS_52 {
                    return None;
                }
                let two52 = bj.reduce_u128(1u128 << 52);
                let mut t = Vec::new();
                for (i, ai) in from.iter().enumerate() {
                    let c = hat_mod[j * from.len() + i];
                    t.push(Term {
                        src: i,
                        high: false,
                        c,
                        cs: shoup52(c, b),
                    });
                    if ai.value() >= 1 << 52 {
                        let ch = bj.mul(c, two52);
                        t.push(Term {
                            src: i,
                            high: true,
                            c: ch,
                            cs: shoup52(ch, b),
                        });
                    }
                }
                Some(t)
            })
            .collect();
        let a_mod = to
            .iter()
            .map(|bj| {
                from.iter()
                    .fold(1u64, |h, ak| bj.mul(h, bj.reduce_u64(ak.value())))
            })
            .collect();
        BasisConverter {
            a_mod,
            hat_inv52,
            terms,
            from: from.to_vec(),
            to: to.to_vec(),
            hat_inv,
            hat_mod,
            reducers: to.iter().map(|m| WideReducer::new(m.value())).collect(),
            chunk,
        }
    }

    pub fn from_len(&self) -> usize {
        self.from.len()
    }

    pub fn to_len(&self) -> usize {
        self.to.len()
    }

    /// As [`convert`](Self::convert), but exact and centred: the output is the residue of
    /// the representative of x in (-A/2, A/2] (the u*A term is estimated per coefficient
    /// in floating point, u = round(sum_i y_i / a_i), and subtracted). Key switching needs
    /// it: the approximate form's u*A, and an uncentred x in [0, A), are errors with a
    /// non-zero mean, a near-constant polynomial that the decoding concentrates on a few
    /// slots (there it was ~2^20 slot units per key switch at N = 2^14, 60 times the
    /// zero-mean noise). A coefficient within ~2^-50 of the rounding boundary may come out
    /// as the other representative (off by A): as rare as it is harmless.
    pub fn convert_centered(&self, input: &[u64], output: &mut [u64], scratch: &mut Vec<u64>) {
        let k = self.from.len();
        let n = input.len() / k;
        self.convert(input, output, scratch);
        // `scratch` holds y_i = [x_i (A/a_i)^-1]_{a_i}; sum_i y_i (A/a_i) = x + u A with
        // u = floor(sum_i y_i / a_i), and the centred representative subtracts one more A
        // when the fractional part is above one half.
        let inv: Vec<f64> = self.from.iter().map(|m| 1.0 / m.value() as f64).collect();
        let mut u = vec![0u16; n];
        const CHUNK: usize = 2048;
        let fill = |(c, uc): (usize, &mut [u16])| {
            let base = c * CHUNK;
            let mut v = [0.5f64; CHUNK];
            for (i, &w) in inv.iter().enumerate() {
                let ys = &scratch[i * n + base..i * n + base + uc.len()];
                for (acc, &y) in v.iter_mut().zip(ys) {
                    *acc += y as f64 * w;
                }
            }
            for (o, &x) in uc.iter_mut().zip(&v) {
                *o = x as u16;
            }
        };
        if n >= PAR_LIMBS_FROM {
            u.par_chunks_mut(CHUNK).enumerate().for_each(fill);
        } else {
            u.chunks_mut(CHUNK).enumerate().for_each(fill);
        }
        let fix = |(j, out): (usize, &mut [u64])| {
            let b = &self.to[j];
            // u * A mod b_j for every u the sum can reach (0..=len(A)).
            let table: Vec<u64> = (0..=k as u64)
                .map(|t| b.mul(b.reduce_u64(t), self.a_mod[j]))
                .collect();
            let bv = b.value();
            // Branch-free o - t mod b (vectorisable).
            for (o, &uk) in out.iter_mut().zip(&u) {
                let t = table[uk as usize];
                let r = o.wrapping_sub(t);
                *o = r.wrapping_add(bv & 0u64.wrapping_sub((*o < t) as u64));
            }
        };
        if n >= PAR_LIMBS_FROM {
            output.par_chunks_exact_mut(n).enumerate().for_each(fix);
        } else {
            output.chunks_exact_mut(n).enumerate().for_each(fix);
        }
    }

    /// Converts `input` (from.len() limbs of length n, coefficient form, limb-major) into
    /// `output` (to.len() limbs of length n). `scratch` must hold from.len() * n words.
    pub fn convert(&self, input: &[u64], output: &mut [u64], scratch: &mut Vec<u64>) {
        let k = self.from.len();
        let n = input.len() / k;
        scratch.clear();
        scratch.resize(k * n, 0);
        for (i, (m, &(c, cs))) in self.from.iter().zip(&self.hat_inv).enumerate() {
            let src = &input[i * n..(i + 1) * n];
            let dst = &mut scratch[i * n..(i + 1) * n];
            if !simd::mul_const(dst, src, c, self.hat_inv52[i], m.value()) {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = m.mul_shoup(x, c, cs);
                }
            }
        }
        // Every output limb reads all of `scratch`: on large rings the limbs run in
        // parallel.
        let scratch: &[u64] = scratch;
        let limb = |(j, (out, red)): (usize, (&mut [u64], &WideReducer))| {
            if let Some(terms) = &self.terms[j] {
                if simd::dot(out, scratch, n, terms, self.to[j].value()) {
                    return;
                }
            }
            let coefs = &self.hat_mod[j * k..(j + 1) * k];
            if k <= self.chunk {
                convert_limb(scratch, coefs, out, red, n);
            } else {
                convert_limb_chunked(scratch, coefs, out, red, n, self.chunk);
            }
        };
        if n >= PAR_LIMBS_FROM {
            output
                .par_chunks_exact_mut(n)
                .zip(self.reducers.par_iter())
                .enumerate()
                .for_each(limb);
        } else {
            output
                .chunks_exact_mut(n)
                .zip(&self.reducers)
                .enumerate()
                .for_each(limb);
        }
    }
}

#[inline(always)]
fn convert_limb(y: &[u64], coefs: &[u64], out: &mut [u64], red: &WideReducer, n: usize) {
    match coefs.len() {
        1 => {
            for (o, &a) in out.iter_mut().zip(&y[..n]) {
                *o = red.reduce(a as u128 * coefs[0] as u128);
            }
        }
        _ => {
            for (idx, o) in out.iter_mut().enumerate() {
                let mut acc = 0u128;
                for (i, &c) in coefs.iter().enumerate() {
                    acc += y[i * n + idx] as u128 * c as u128;
                }
                *o = red.reduce(acc);
            }
        }
    }
}

fn convert_limb_chunked(
    y: &[u64],
    coefs: &[u64],
    out: &mut [u64],
    red: &WideReducer,
    n: usize,
    chunk: usize,
) {
    for (idx, o) in out.iter_mut().enumerate() {
        let mut r = 0u64;
        for (ci, cs) in coefs.chunks(chunk).enumerate() {
            let mut acc = r as u128;
            for (i, &c) in cs.iter().enumerate() {
                acc += y[(ci * chunk + i) * n + idx] as u128 * c as u128;
            }
            r = red.reduce(acc);
        }
        *o = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn wide_reduce_is_exact(x in any::<u128>(), bits in 20u32..62) {
            let b = ntt_primes(bits, 1 << 10, 1, &[]).unwrap()[0];
            prop_assert_eq!(WideReducer::new(b).reduce(x), (x % b as u128) as u64);
        }

        #[test]
        fn conversion_is_x_plus_small_multiple_of_a(xs in prop::collection::vec(any::<u64>(), 4)) {
            // CRT reconstruction: x from 3 residues, converted to a 4th prime, equals
            // x + u*A (mod b) for some 0 <= u < 3.
            let ps = ntt_primes(40, 1 << 10, 4, &[]).unwrap();
            let from: Vec<Modulus> = ps[..3].iter().map(|&p| Modulus::new(p)).collect();
            let to = [Modulus::new(ps[3])];
            let a: u128 = ps[..3].iter().map(|&p| p as u128).product::<u128>();
            let x = (xs[0] as u128 | ((xs[1] as u128) << 64)) % a;
            let input: Vec<u64> = from.iter().map(|m| (x % m.value() as u128) as u64).collect();
            let conv = BasisConverter::new(&from, &to);
            let mut out = vec![0u64; 1];
            conv.convert(&input, &mut out, &mut Vec::new());
            let b = ps[3] as u128;
            let ok = (0..3u128).any(|u| ((x % b) + (u * (a % b))) % b == out[0] as u128);
            prop_assert!(ok);
            // Centred and exact: the residue of x, or of x - A above A / 2.
            conv.convert_centered(&input, &mut out, &mut Vec::new());
            let want = if x > a / 2 { (x % b + b - a % b) % b } else { x % b };
            prop_assert_eq!(out[0] as u128, want);
        }
    }
}
