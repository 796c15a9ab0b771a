//! Encryption: with the public key (anyone may encrypt) or with the secret key, seeded
//! (the client's fresh ciphertexts: c_1 is expanded from a 32-byte seed, so the wire form
//! is half the size).

use crate::ckks::context::Context;
use crate::ckks::keys::{PublicKey, SecretKey};
use crate::ckks::plaintext::{Ciphertext, Plaintext};
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::sampling::Csprng;

pub struct Encryptor<'a> {
    ctx: &'a Context,
    rng: Csprng,
}

impl<'a> Encryptor<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        Encryptor {
            ctx,
            rng: Csprng::from_os(),
        }
    }

    fn small_ntt(&mut self, coeffs: &[i64], level: usize) -> RnsPoly {
        let tables = self.ctx.q_tables(level);
        let mut p = RnsPoly::from_signed(coeffs, &tables);
        p.forward(&tables);
        p
    }

    /// Public-key encryption: (b u + e_0 + m, a u + e_1).
    pub fn encrypt_pk(&mut self, pt: &Plaintext, pk: &PublicKey) -> Result<Ciphertext> {
        let level = pt.level();
        if pk.b.limbs() <= level {
            return Err(Error::LevelMismatch(
                "public key below the plaintext level".into(),
            ));
        }
        let n = self.ctx.n();
        let tables = self.ctx.q_tables(level);
        let u_coeffs = self.rng.ternary(n);
        let u = self.small_ntt(&u_coeffs, level);
        let e0 = self.rng.gaussian(n);
        let e1 = self.rng.gaussian(n);
        let mut c0 = self.small_ntt(&e0, level);
        let mut c1 = self.small_ntt(&e1, level);
        c0.add_assign(&pt.poly, &tables);
        c0.mul_acc(&pk.b, &u, &tables);
        c1.mul_acc(&pk.a, &u, &tables);
        Ok(Ciphertext {
            parts: vec![c0, c1],
            scale: pt.scale,
            key_set: pk.key_set,
            seed: None,
        })
    }

    /// Seeded symmetric encryption: (-a s + e + m, a) with a expanded from a fresh seed.
    pub fn encrypt_sk(&mut self, pt: &Plaintext, sk: &SecretKey) -> Result<Ciphertext> {
        if sk.params_id != self.ctx.params().id() {
            return Err(Error::KeySetMismatch(
                "the secret key belongs to another parameter set".into(),
            ));
        }
        let level = pt.level();
        let tables = self.ctx.q_tables(level);
        let seed = self.rng.seed32();
        let a = Csprng::from_seed(seed).uniform_poly(self.ctx.n(), &tables);
        let e = self.rng.gaussian(self.ctx.n());
        let mut c0 = self.small_ntt(&e, level);
        c0.add_assign(&pt.poly, &tables);
        let s = sk.ntt_qp.select(0..=level);
        c0.sub_assign(&a.mul(&s, &tables), &tables);
        Ok(Ciphertext {
            parts: vec![c0, a],
            scale: pt.scale,
            key_set: sk.key_set,
            seed: Some(seed),
        })
    }
}

/// Re-expands the c_1 of a seeded ciphertext (used when loading one).
pub fn expand_seed(ctx: &Context, seed: [u8; 32], level: usize) -> RnsPoly {
    Csprng::from_seed(seed).uniform_poly(ctx.n(), &ctx.q_tables(level))
}
