//! Encoding and decoding by the canonical embedding: up to N/2 complex (or real) slot
//! values become an integer polynomial round(scale * m(X)) at any level and any scale,
//! and back. Decoding reconstructs only as many primes as the value needs (CRT of the
//! first k primes with Q_k > 2^64 * scale, all primes otherwise).

use crate::ckks::context::Context;
use crate::ckks::fft::{SpecialFft, C64};
use crate::ckks::plaintext::Plaintext;
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;

/// Encoder bound to a context.
pub struct Encoder<'a> {
    ctx: &'a Context,
}

impl<'a> Encoder<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        Encoder { ctx }
    }

    /// Encodes real slot values (zero-padded to N/2) at `scale` and `level`.
    pub fn encode(&self, values: &[f64], scale: f64, level: usize) -> Result<Plaintext> {
        let v: Vec<C64> = values.iter().map(|&x| C64::new(x, 0.0)).collect();
        self.encode_complex(&v, scale, level)
    }

    /// Encodes complex slot values (zero-padded to N/2) at `scale` and `level`.
    pub fn encode_complex(&self, values: &[C64], scale: f64, level: usize) -> Result<Plaintext> {
        let coeffs = self.coefficients(values)?;
        self.encode_coefficients(&coeffs, 1.0, scale, level)
    }

    /// The real polynomial (unscaled, unrounded) whose slots are `values`: the inverse
    /// canonical embedding alone. Encoding many multiples of one slot pattern (a mask
    /// times each weight) then needs one FFT, not one per multiple.
    pub fn coefficients(&self, values: &[C64]) -> Result<Vec<f64>> {
        let slots = self.ctx.params().slots();
        if values.len() > slots {
            return Err(Error::TooManySlots {
                got: values.len(),
                max: slots,
            });
        }
        let mut v = vec![C64::default(); slots];
        v[..values.len()].copy_from_slice(values);
        self.ctx.fft().inverse(&mut v);
        let mut coeffs = vec![0f64; 2 * slots];
        for (j, c) in v.iter().enumerate() {
            coeffs[j] = c.re;
            coeffs[j + slots] = c.im;
        }
        Ok(coeffs)
    }

    /// The polynomial of a slot vector that repeats `values` (P of them, a power of two
    /// dividing N/2) over all N/2 slots, as the P-slot encoding r of the ring of degree 2P
    /// (`fft` = `SpecialFft::new(2 P)`): the full polynomial is r(X^(N / 2P)), non-zero
    /// only at multiples of N / 2P (its roots zeta^(d 5^j) are the small ring's, and 5^j
    /// mod 4P repeats every P slots). One FFT of P points instead of N/2.
    pub fn periodic_coefficients(&self, fft: &SpecialFft, values: &[C64]) -> Result<Vec<f64>> {
        let p = values.len();
        let slots = self.ctx.params().slots();
        if fft.slots() != p || !p.is_power_of_two() || !slots.is_multiple_of(p) {
            return Err(Error::InvalidParams(format!(
                "a period of {p} slots (FFT of {} slots) does not divide {slots} slots",
                fft.slots()
            )));
        }
        let mut v = values.to_vec();
        fft.inverse(&mut v);
        let mut r = vec![0f64; 2 * p];
        for (j, c) in v.iter().enumerate() {
            r[j] = c.re;
            r[j + p] = c.im;
        }
        Ok(r)
    }

    /// Encodes `factor` times the polynomial `coeffs` (from [`Self::coefficients`]) at
    /// `scale` and `level`: round(factor * scale * coeffs).
    pub fn encode_coefficients(
        &self,
        coeffs: &[f64],
        factor: f64,
        scale: f64,
        level: usize,
    ) -> Result<Plaintext> {
        if level > self.ctx.max_level() {
            return Err(Error::LevelMismatch(format!(
                "cannot encode at level {level}: the top level is {}",
                self.ctx.max_level()
            )));
        }
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(Error::OutOfRange(format!(
                "scale {scale} must be finite and >= 1"
            )));
        }
        if coeffs.len() != self.ctx.n() {
            return Err(Error::OutOfRange(format!(
                "{} coefficients given for ring degree {}",
                coeffs.len(),
                self.ctx.n()
            )));
        }
        let f = factor * scale;
        // Round to nearest with the 1.5 * 2^52 trick (plain adds, vectorised) while the
        // products stay below 2^51; `round` otherwise.
        const MAGIC: f64 = 6755399441055744.0;
        let small = coeffs.iter().all(|c| (c * f).abs() < 2f64.powi(51));
        let rounded: Vec<f64> = if small {
            coeffs.iter().map(|c| (c * f + MAGIC) - MAGIC).collect()
        } else {
            coeffs.iter().map(|c| (c * f).round()).collect()
        };
        let poly = self.poly_from_rounded(&rounded, level)?;
        Ok(Plaintext { poly, scale })
    }

    /// RNS residues (NTT form) of integer-valued f64 coefficients.
    fn poly_from_rounded(&self, coeffs: &[f64], level: usize) -> Result<RnsPoly> {
        let tables = self.ctx.q_tables(level);
        let n = coeffs.len();
        let max = coeffs.iter().fold(0f64, |m, c| m.max(c.abs()));
        if !max.is_finite() || max >= 2f64.powi(126) {
            return Err(Error::OutOfRange(format!(
                "encoded coefficient magnitude {max:e} exceeds 2^126 (value times scale too large)"
            )));
        }
        let mut p = RnsPoly::zero(n, tables.len(), false);
        let min_q = tables
            .iter()
            .map(|t| t.modulus().value())
            .min()
            .unwrap_or(0);
        if max < min_q as f64 {
            // Every coefficient is already below every prime (masks times weights, small
            // constants): a sign fix-up, no reduction.
            for (limb, t) in p.limbs_iter_mut().zip(&tables) {
                let q = t.modulus().value() as i64;
                for (d, &c) in limb.iter_mut().zip(coeffs) {
                    let v = c as i64;
                    *d = (v + ((v >> 63) & q)) as u64;
                }
            }
        } else if max < 2f64.powi(62) {
            for (limb, t) in p.limbs_iter_mut().zip(&tables) {
                let m = t.modulus();
                for (d, &c) in limb.iter_mut().zip(coeffs) {
                    *d = m.from_i64(c as i64);
                }
            }
        } else {
            for (limb, t) in p.limbs_iter_mut().zip(&tables) {
                let m = t.modulus();
                for (d, &c) in limb.iter_mut().zip(coeffs) {
                    *d = m.from_i128(c as i128);
                }
            }
        }
        p.forward(&tables);
        Ok(p)
    }

    /// The constant `value * scale`, rounded, as residues per prime of q_0..q_level.
    pub fn constant_residues(&self, value: f64, scale: f64, level: usize) -> Result<Vec<u64>> {
        let c = (value * scale).round();
        if !c.is_finite() || c.abs() >= 2f64.powi(126) {
            return Err(Error::OutOfRange(format!(
                "constant {value} at scale 2^{:.1} is too large",
                scale.log2()
            )));
        }
        Ok((0..=level)
            .map(|i| self.ctx.q_modulus(i).from_i128(c as i128))
            .collect())
    }

    /// Decodes a coefficient-form polynomial's first `k` limbs into slot values.
    pub(crate) fn decode_coeffs(&self, poly: &RnsPoly, scale: f64) -> Vec<C64> {
        let n = poly.n();
        let k = poly.limbs();
        let crt = self.ctx.crt(k);
        let mut residues = vec![0u64; k];
        let mut scratch = Vec::new();
        let slots = n / 2;
        let mut v = vec![C64::default(); slots];
        let inv = 1.0 / scale;
        for j in 0..n {
            for (i, r) in residues.iter_mut().enumerate() {
                *r = poly.limb(i)[j];
            }
            let x = crt.centered(&residues, &mut scratch) * inv;
            if j < slots {
                v[j].re = x;
            } else {
                v[j - slots].im = x;
            }
        }
        self.ctx.fft().forward(&mut v);
        v
    }

    /// How many leading primes a value at `scale` needs for exact reconstruction.
    pub(crate) fn limbs_needed(&self, scale: f64, available: usize) -> usize {
        let need = scale.log2() + 64.0;
        let mut bits = 0.0;
        for i in 0..available {
            bits += self.ctx.q_modulus(i).log2();
            if bits >= need {
                return i + 1;
            }
        }
        available
    }

    /// Decodes a plaintext into its N/2 complex slot values.
    pub fn decode_complex(&self, pt: &Plaintext) -> Vec<C64> {
        let k = self.limbs_needed(pt.scale, pt.poly.limbs());
        let mut p = pt.poly.select(0..k);
        p.inverse(&self.ctx.q_tables(k - 1));
        self.decode_coeffs(&p, pt.scale)
    }

    /// Decodes a plaintext into the real parts of its slots.
    pub fn decode(&self, pt: &Plaintext) -> Vec<f64> {
        self.decode_complex(pt).into_iter().map(|c| c.re).collect()
    }
}
