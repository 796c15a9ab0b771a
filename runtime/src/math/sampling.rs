//! Randomness: a ChaCha20 CSPRNG seeded from the operating system (or from a 32-byte seed
//! for the expandable "a" parts of seeded ciphertexts and keys), and the distributions
//! CKKS needs: uniform ternary secrets, rounded Gaussian errors (sigma = 3.2, tails cut
//! at 6 sigma) and uniform residues.

use crate::math::ntt::NttTable;
use crate::math::poly::RnsPoly;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Standard deviation of the error distribution.
pub const SIGMA: f64 = 3.2;

/// The cryptographic random number generator used everywhere in the runtime.
pub struct Csprng(ChaCha20Rng);

impl Csprng {
    /// A generator seeded from the operating system's entropy source.
    pub fn from_os() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's entropy source failed");
        Csprng(ChaCha20Rng::from_seed(seed))
    }

    /// A deterministic generator (public seeds of expandable polynomials).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Csprng(ChaCha20Rng::from_seed(seed))
    }

    pub fn seed32(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform ternary coefficients in {-1, 0, 1}.
    pub fn ternary(&mut self, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut w = self.0.next_u64();
            for _ in 0..32 {
                let v = (w & 3) as i64;
                w >>= 2;
                if v < 3 && out.len() < n {
                    out.push(v - 1);
                }
            }
        }
        out
    }

    /// Rounded Gaussian coefficients of standard deviation [`SIGMA`], |e| <= 6 sigma.
    pub fn gaussian(&mut self, n: usize) -> Vec<i64> {
        let bound = (6.0 * SIGMA) as i64;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            let r = (-2.0 * u1.ln()).sqrt() * SIGMA;
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            for z in [r * c, r * s] {
                let v = z.round() as i64;
                if v.abs() <= bound && out.len() < n {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Rounded Gaussian integers of standard deviation `sigma` (noise flooding; no tail
    /// cut). Box-Muller on 53-bit uniforms: exact to the integer for `sigma` <= 2^52.
    pub fn gaussian_wide(&mut self, n: usize, sigma: f64) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            let r = (-2.0 * u1.ln()).sqrt() * sigma;
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            for z in [r * c, r * s] {
                if out.len() < n {
                    out.push(z.round() as i64);
                }
            }
        }
        out
    }

    /// A uniformly random polynomial on the given primes (the NTT image of a uniform
    /// polynomial is uniform, so it is marked as NTT form).
    pub fn uniform_poly(&mut self, n: usize, tables: &[&NttTable]) -> RnsPoly {
        let mut p = RnsPoly::zero(n, tables.len(), true);
        for (limb, t) in p.limbs_iter_mut().zip(tables) {
            let q = t.modulus().value();
            let mask = u64::MAX >> q.leading_zeros();
            for x in limb.iter_mut() {
                *x = loop {
                    let v = self.0.next_u64() & mask;
                    if v < q {
                        break v;
                    }
                };
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_have_the_right_moments() {
        let mut r = Csprng::from_os();
        let t = r.ternary(30000);
        assert!(t.iter().all(|v| (-1..=1).contains(v)));
        let ones = t.iter().filter(|&&v| v != 0).count() as f64 / 30000.0;
        assert!((ones - 2.0 / 3.0).abs() < 0.02, "{ones}");
        let g = r.gaussian(30000);
        let var = g.iter().map(|&v| (v * v) as f64).sum::<f64>() / 30000.0;
        assert!((var.sqrt() - SIGMA).abs() < 0.15, "{}", var.sqrt());
    }

    #[test]
    fn wide_gaussian_has_the_stated_deviation() {
        let mut r = Csprng::from_os();
        let sigma = 2f64.powi(20);
        let g = r.gaussian_wide(20000, sigma);
        let var = g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 20000.0;
        assert!(
            (var.sqrt() / sigma - 1.0).abs() < 0.03,
            "{}",
            var.sqrt() / sigma
        );
        assert!(g.iter().all(|&v| (v as f64).abs() < 7.0 * sigma));
    }

    #[test]
    fn seeded_generators_repeat_and_os_ones_differ() {
        let a = Csprng::from_seed([7; 32]).next_u64();
        assert_eq!(a, Csprng::from_seed([7; 32]).next_u64());
        assert_ne!(Csprng::from_os().seed32(), Csprng::from_os().seed32());
    }
}
