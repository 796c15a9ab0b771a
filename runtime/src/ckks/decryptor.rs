//! Decryption (client side): c_0 + c_1 s (+ c_2 s^2) on only the primes the value needs,
//! then decoding.

use crate::ckks::context::Context;
use crate::ckks::encoder::Encoder;
use crate::ckks::fft::C64;
use crate::ckks::keys::SecretKey;
use crate::ckks::plaintext::Ciphertext;
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::sampling::Csprng;

/// Standard deviation that flooding with 2^`flood_bits` adds to each real slot value of
/// a ciphertext at `scale` in ring degree `n`: 2^bits * sqrt(n / 2) / scale (each slot
/// is a sum of the n coefficients times roots of unity, divided by the scale).
pub fn flood_slot_std(n: usize, flood_bits: f64, scale: f64) -> f64 {
    flood_bits.exp2() * (n as f64 / 2.0).sqrt() / scale
}

pub struct Decryptor<'a> {
    ctx: &'a Context,
    sk: &'a SecretKey,
}

impl<'a> Decryptor<'a> {
    pub fn new(ctx: &'a Context, sk: &'a SecretKey) -> Self {
        Decryptor { ctx, sk }
    }

    /// Decrypts and decodes to N/2 complex slot values.
    pub fn decrypt_complex(&self, ct: &Ciphertext) -> Result<Vec<C64>> {
        self.decrypt_with(ct, None)
    }

    /// Decrypts with noise flooding: before decoding, fresh rounded Gaussian noise of
    /// standard deviation 2^`flood_bits` (in the units of the ciphertext's scale, i.e. on
    /// the message polynomial's coefficients) from `rng` is added, so that the decrypted
    /// values no longer reveal the scheme's own noise (which depends on the secret key) to
    /// whoever sees them. Each real slot value moves by a Gaussian of deviation
    /// [`flood_slot_std`]. `flood_bits` must lie in 0..=52 and leave room in the modulus.
    pub fn decrypt_flooded(
        &self,
        ct: &Ciphertext,
        flood_bits: f64,
        rng: &mut Csprng,
    ) -> Result<Vec<f64>> {
        if !(0.0..=52.0).contains(&flood_bits) {
            return Err(Error::OutOfRange(format!(
                "flooding noise of 2^{flood_bits} bits: give 0..=52 bits"
            )));
        }
        Ok(self
            .decrypt_with(ct, Some((flood_bits, rng)))?
            .into_iter()
            .map(|c| c.re)
            .collect())
    }

    fn decrypt_with(&self, ct: &Ciphertext, flood: Option<(f64, &mut Csprng)>) -> Result<Vec<C64>> {
        if ct.key_set != self.sk.key_set {
            return Err(Error::KeySetMismatch(
                "the ciphertext was encrypted under another key set".into(),
            ));
        }
        let enc = Encoder::new(self.ctx);
        let k = enc.limbs_needed(ct.scale, ct.level() + 1);
        let tables = self.ctx.q_tables(k - 1);
        let s = self.sk.ntt_qp.select(0..k);
        let mut m = ct.parts[0].select(0..k);
        let mut s_pow = s.clone();
        for (i, c) in ct.parts.iter().enumerate().skip(1) {
            if i > 1 {
                s_pow = s_pow.mul(&s, &tables);
            }
            m.mul_acc(&c.select(0..k), &s_pow, &tables);
        }
        m.inverse(&tables);
        if let Some((bits, rng)) = flood {
            let log_q: f64 = (0..k).map(|i| self.ctx.q_modulus(i).log2()).sum();
            let log_msg = ct.scale.log2() + 1.0;
            if bits + 4.0 > log_q - 1.0 || log_msg > log_q - 1.0 {
                return Err(Error::OutOfRange(format!(
                    "flooding noise of 2^{bits} does not fit the ciphertext's modulus                      ({log_q:.0} bits left at level {}, scale 2^{:.1})",
                    ct.level(),
                    ct.scale.log2()
                )));
            }
            let e = rng.gaussian_wide(self.ctx.n(), bits.exp2());
            m.add_assign(&RnsPoly::from_signed(&e, &tables), &tables);
        }
        Ok(enc.decode_coeffs(&m, ct.scale))
    }

    /// Decrypts to the real parts of the slots.
    pub fn decrypt(&self, ct: &Ciphertext) -> Result<Vec<f64>> {
        Ok(self
            .decrypt_complex(ct)?
            .into_iter()
            .map(|c| c.re)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::{Encoder, Encryptor, KeyGenerator, Params};

    /// Flooding moves every value (the low bits change) but stays within 8 of the stated
    /// deviations, and the measured deviation is the stated one.
    #[test]
    fn flooding_changes_low_bits_within_the_stated_bound() {
        let params = Params::insecure_for_tests(12, &[60, 40], &[60], 2).unwrap();
        let ctx = Context::new(params).unwrap();
        let sk = KeyGenerator::new(&ctx).secret_key();
        let values: Vec<f64> = (0..ctx.n() / 2).map(|j| (j as f64 * 0.01).sin()).collect();
        let scale = 2f64.powi(40);
        let pt = Encoder::new(&ctx).encode(&values, scale, 1).unwrap();
        let ct = Encryptor::new(&ctx).encrypt_sk(&pt, &sk).unwrap();
        let dec = Decryptor::new(&ctx, &sk);
        let plain = dec.decrypt(&ct).unwrap();
        let bits = 20.0;
        let std = flood_slot_std(ctx.n(), bits, scale);
        let mut rng = Csprng::from_os();
        let flooded = dec.decrypt_flooded(&ct, bits, &mut rng).unwrap();
        let diffs: Vec<f64> = plain.iter().zip(&flooded).map(|(a, b)| b - a).collect();
        assert!(diffs.iter().all(|d| d.abs() <= 8.0 * std), "beyond 8 sigma");
        let moved = diffs.iter().filter(|d| d.abs() > std / 1000.0).count();
        assert!(moved > diffs.len() * 99 / 100, "only {moved} values moved");
        let measured = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt() / std;
        assert!(
            (measured - 1.0).abs() < 0.1,
            "deviation {measured} of the stated"
        );
        // Still the right values to the precision flooding leaves.
        for (a, v) in flooded.iter().zip(&values) {
            assert!((a - v).abs() <= 8.0 * std + 1e-6);
        }
        assert!(dec.decrypt_flooded(&ct, 53.0, &mut rng).is_err());
        assert!(dec.decrypt_flooded(&ct, -1.0, &mut rng).is_err());
    }
}
