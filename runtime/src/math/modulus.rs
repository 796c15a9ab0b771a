//! One word-sized prime modulus with its Barrett constants, and scalar modular arithmetic
//! on it (add, sub, mul, pow, inverse, Shoup multiplication by a constant).
//!
//! All values are kept reduced in `[0, q)`. Moduli are below 2^62 so that sums of two
//! reduced values never overflow and Barrett's estimate needs at most two corrections.

use serde::{Deserialize, Serialize};

/// A prime modulus `q < 2^62` with precomputed reduction constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modulus {
    q: u64,
    bits: u32,
    /// floor(2^(2*bits) / q), below 2^(bits+1).
    barrett: u64,
}

impl Modulus {
    /// Builds the constants for `q` (2 <= q < 2^62).
    pub fn new(q: u64) -> Self {
        debug_assert!((2..1u64 << 62).contains(&q));
        let bits = 64 - q.leading_zeros();
        let barrett = ((1u128 << (2 * bits)) / q as u128) as u64;
        Modulus { q, bits, barrett }
    }

    #[inline(always)]
    pub fn value(&self) -> u64 {
        self.q
    }

    #[inline(always)]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// log2(q) as a real number.
    pub fn log2(&self) -> f64 {
        (self.q as f64).log2()
    }

    #[inline(always)]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.q {
            s - self.q
        } else {
            s
        }
    }

    #[inline(always)]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.q - b
        }
    }

    #[inline(always)]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 {
            0
        } else {
            self.q - a
        }
    }

    /// Reduces any `x < 2^(2 bits)`, in particular a product of two reduced values.
    #[inline(always)]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let hi = (x >> (self.bits - 1)) as u64;
        let est = ((hi as u128 * self.barrett as u128) >> (self.bits + 1)) as u64;
        let mut r = (x - est as u128 * self.q as u128) as u64;
        if r >= self.q {
            r -= self.q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    /// Reduces an arbitrary u128 (slower, for accumulators that may exceed q^2).
    #[inline(always)]
    pub fn reduce_wide(&self, x: u128) -> u64 {
        (x % self.q as u128) as u64
    }

    /// Reduces any u64 (Barrett is exact for x < 2^(2 bits), which covers every u64 once
    /// q has 32 bits or more).
    #[inline(always)]
    pub fn reduce_u64(&self, x: u64) -> u64 {
        if x < self.q {
            x
        } else if self.bits >= 32 {
            self.reduce_u128(x as u128)
        } else {
            x % self.q
        }
    }

    /// The residue of a signed integer.
    #[inline(always)]
    pub fn from_i64(&self, x: i64) -> u64 {
        if x >= 0 {
            self.reduce_u64(x as u64)
        } else {
            self.neg(self.reduce_u64(x.unsigned_abs()))
        }
    }

    /// The residue of a signed 128-bit integer.
    pub fn from_i128(&self, x: i128) -> u64 {
        let r = (x.unsigned_abs() % self.q as u128) as u64;
        if x >= 0 {
            r
        } else {
            self.neg(r)
        }
    }

    /// The centred representative of `a` in (-q/2, q/2].
    #[inline(always)]
    pub fn center(&self, a: u64) -> i64 {
        if a > self.q / 2 {
            a as i64 - self.q as i64
        } else {
            a as i64
        }
    }

    #[inline(always)]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(a as u128 * b as u128)
    }

    pub fn pow(&self, mut base: u64, mut exp: u64) -> u64 {
        let mut acc = 1 % self.q;
        base %= self.q;
        while exp > 0 {
            if exp & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            exp >>= 1;
        }
        acc
    }

    /// The inverse of `a` modulo the prime q (a must be non-zero mod q).
    pub fn inv(&self, a: u64) -> u64 {
        self.pow(a, self.q - 2)
    }

    /// Shoup's precomputation for multiplying by the constant `w`: floor(w * 2^64 / q).
    #[inline(always)]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.q as u128) as u64
    }

    /// `a * w mod q` with `w_shoup = self.shoup(w)`.
    #[inline(always)]
    pub fn mul_shoup(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let est = ((a as u128 * w_shoup as u128) >> 64) as u64;
        let r = a.wrapping_mul(w).wrapping_sub(est.wrapping_mul(self.q));
        if r >= self.q {
            r - self.q
        } else {
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mul_matches_u128(a in any::<u64>(), b in any::<u64>(), bits in 20u32..62) {
            let q = crate::math::primes::ntt_primes(bits, 1 << 10, 1, &[]).unwrap()[0];
            let m = Modulus::new(q);
            let (a, b) = (a % q, b % q);
            let want = ((a as u128 * b as u128) % q as u128) as u64;
            prop_assert_eq!(m.mul(a, b), want);
            prop_assert_eq!(m.mul_shoup(a, b, m.shoup(b)), want);
            prop_assert_eq!(m.mul(m.inv(a.max(1)), a.max(1)), 1);
        }
    }
}
