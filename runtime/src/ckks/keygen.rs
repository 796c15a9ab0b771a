//! Key generation (client side): the secret key, the public key, and switching keys
//! (relinearisation, Galois) generated at exactly the level where they will be used.

use crate::ckks::context::Context;
use crate::ckks::keys::{EvalKeys, KeyDigit, PublicKey, SecretKey, SwitchingKey};
use crate::ckks::plaintext::KeySetId;
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::sampling::Csprng;
use std::collections::BTreeMap;

/// Generates keys from a secret key, with randomness from the OS-seeded CSPRNG.
pub struct KeyGenerator<'a> {
    ctx: &'a Context,
    rng: Csprng,
}

impl<'a> KeyGenerator<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        KeyGenerator {
            ctx,
            rng: Csprng::from_os(),
        }
    }

    /// A fresh secret key with a fresh random key-set id.
    pub fn secret_key(&mut self) -> SecretKey {
        let n = self.ctx.n();
        let coeffs = self.rng.ternary(n);
        let tables = self.ctx.qp_tables(self.ctx.max_level());
        let mut ntt_qp = RnsPoly::from_signed(&coeffs, &tables);
        ntt_qp.forward(&tables);
        let mut key_set: KeySetId = [0; 16];
        key_set.copy_from_slice(&self.rng.seed32()[..16]);
        SecretKey {
            key_set,
            params_id: self.ctx.params().id(),
            coeffs,
            ntt_qp,
        }
    }

    fn check(&self, sk: &SecretKey) -> Result<()> {
        if sk.params_id != self.ctx.params().id() {
            return Err(Error::KeySetMismatch(
                "the secret key belongs to another parameter set".into(),
            ));
        }
        Ok(())
    }

    /// s restricted to q_0..q_level followed by P.
    fn secret_qp(&self, sk: &SecretKey, level: usize) -> RnsPoly {
        let nq = self.ctx.max_level() + 1;
        let k = self.ctx.special_count();
        sk.ntt_qp.select((0..=level).chain(nq..nq + k))
    }

    fn error_poly(&mut self, tables: &[&crate::math::ntt::NttTable]) -> RnsPoly {
        let e = self.rng.gaussian(self.ctx.n());
        let mut p = RnsPoly::from_signed(&e, tables);
        p.forward(tables);
        p
    }

    /// The public key over all of Q.
    pub fn public_key(&mut self, sk: &SecretKey) -> Result<PublicKey> {
        self.check(sk)?;
        let level = self.ctx.max_level();
        let tables = self.ctx.q_tables(level);
        let seed = self.rng.seed32();
        let a = Csprng::from_seed(seed).uniform_poly(self.ctx.n(), &tables);
        let s = sk.ntt_qp.select(0..=level);
        let mut b = self.error_poly(&tables);
        let as_ = a.mul(&s, &tables);
        b.sub_assign(&as_, &tables);
        Ok(PublicKey {
            key_set: sk.key_set,
            b,
            a,
            seed,
        })
    }

    /// A switching key from `s_prime` (NTT over Q_level * P) to s, for levels <= `level`.
    fn switching_key(
        &mut self,
        sk: &SecretKey,
        s_prime: &RnsPoly,
        level: usize,
    ) -> Result<SwitchingKey> {
        if level > self.ctx.max_level() {
            return Err(Error::LevelMismatch(format!(
                "key level {level} above the top level {}",
                self.ctx.max_level()
            )));
        }
        let tables = self.ctx.qp_tables(level);
        let s = self.secret_qp(sk, level);
        let alpha = self.ctx.params().alpha();
        let p_mod_q = self.ctx.p_mod_q();
        let mut digits = Vec::new();
        for start in (0..=level).step_by(alpha) {
            let end = (start + alpha).min(level + 1);
            let seed = self.rng.seed32();
            let a = Csprng::from_seed(seed).uniform_poly(self.ctx.n(), &tables);
            let mut b = self.error_poly(&tables);
            b.sub_assign(&a.mul(&s, &tables), &tables);
            for i in start..end {
                let m = tables[i].modulus();
                let (pq, sp) = (p_mod_q[i], s_prime.limb(i));
                let pqs = m.shoup(pq);
                for (x, &y) in b.limb_mut(i).iter_mut().zip(sp) {
                    *x = m.add(*x, m.mul_shoup(y, pq, pqs));
                }
            }
            digits.push(KeyDigit { b, a, seed });
        }
        Ok(SwitchingKey { level, digits })
    }

    /// The relinearisation key (s^2 -> s) for levels <= `level`.
    pub fn relin_key(&mut self, sk: &SecretKey, level: usize) -> Result<SwitchingKey> {
        self.check(sk)?;
        let tables = self.ctx.qp_tables(level);
        let s = self.secret_qp(sk, level);
        let s2 = s.mul(&s, &tables);
        self.switching_key(sk, &s2, level)
    }

    /// The Galois key of X -> X^g (sigma_g(s) -> s) for levels <= `level`.
    pub fn galois_key(&mut self, sk: &SecretKey, g: u64, level: usize) -> Result<SwitchingKey> {
        self.check(sk)?;
        if g.is_multiple_of(2) || g >= 2 * self.ctx.n() as u64 {
            return Err(Error::InvalidParams(format!(
                "{g} is not a Galois element of Z[X]/(X^N+1)"
            )));
        }
        let perm = self.ctx.galois_permutation(g);
        let s = self.secret_qp(sk, level);
        let sg = s.permuted(&perm);
        self.switching_key(sk, &sg, level)
    }

    /// A bundle of evaluation keys: relinearisation at `relin_level` (if any) and one Galois
    /// key per (element, level).
    pub fn eval_keys(
        &mut self,
        sk: &SecretKey,
        relin_level: Option<usize>,
        galois: &[(u64, usize)],
    ) -> Result<EvalKeys> {
        let relin = relin_level.map(|l| self.relin_key(sk, l)).transpose()?;
        let mut g = BTreeMap::new();
        for &(elt, level) in galois {
            g.insert(elt, self.galois_key(sk, elt, level)?);
        }
        Ok(EvalKeys {
            key_set: sk.key_set,
            params_id: self.ctx.params().id(),
            relin,
            galois: g,
        })
    }
}
