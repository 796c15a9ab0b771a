//! Decryption (client side): c_0 + c_1 s (+ c_2 s^2) on only the primes the value needs,
//! then decoding.

use crate::ckks::context::Context;
use crate::ckks::encoder::Encoder;
use crate::ckks::fft::C64;
use crate::ckks::keys::SecretKey;
use crate::ckks::plaintext::Ciphertext;
use crate::error::{Error, Result};

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
