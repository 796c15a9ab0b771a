//! Homomorphic evaluation (server side; it holds evaluation keys only): additions,
//! plaintext and scalar products, ciphertext products with relinearisation, rescaling,
//! level dropping, rotations (single and hoisted) and conjugation.
//!
//! Scales are tracked exactly as f64: a product multiplies them, a rescale divides by the
//! dropped prime. Binary operations require equal levels and scales (relative difference
//! below 1e-9): the compiler aligns them explicitly, the runtime never guesses.

use crate::ckks::context::Context;
use crate::ckks::keys::{EvalKeys, SwitchingKey};
use crate::ckks::keyswitch::{decompose, inner_product, key_switch, mod_down_pair, Decomposition};
use crate::ckks::plaintext::{Ciphertext, Plaintext};
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::simd;
use rayon::prelude::*;

/// Relative tolerance when comparing scales.
pub const SCALE_TOLERANCE: f64 = 1e-9;

pub struct Evaluator<'a> {
    ctx: &'a Context,
    keys: Option<&'a EvalKeys>,
}

pub(crate) fn scales_match(a: f64, b: f64) -> Result<()> {
    if ((a - b) / a).abs() > SCALE_TOLERANCE {
        return Err(Error::ScaleMismatch {
            a,
            b,
            log_a: a.log2(),
            log_b: b.log2(),
        });
    }
    Ok(())
}

impl<'a> Evaluator<'a> {
    /// An evaluator without keys (no relinearisation or rotation).
    pub fn new(ctx: &'a Context) -> Self {
        Evaluator { ctx, keys: None }
    }

    /// An evaluator holding an evaluation-key bundle (checked against the parameters).
    pub fn with_keys(ctx: &'a Context, keys: &'a EvalKeys) -> Result<Self> {
        if keys.params_id != ctx.params().id() {
            return Err(Error::KeySetMismatch(
                "the evaluation keys were made for another parameter set".into(),
            ));
        }
        Ok(Evaluator {
            ctx,
            keys: Some(keys),
        })
    }

    pub fn context(&self) -> &Context {
        self.ctx
    }

    fn check_keys(&self, ct: &Ciphertext) -> Result<&'a EvalKeys> {
        let keys = self
            .keys
            .ok_or_else(|| Error::MissingKey("this evaluator holds no evaluation keys".into()))?;
        if keys.key_set != ct.key_set {
            return Err(Error::KeySetMismatch(
                "the ciphertext and the evaluation keys come from different key sets".into(),
            ));
        }
        Ok(keys)
    }

    /// Same key set and level (products may mix scales).
    fn check_compatible(&self, a: &Ciphertext, b: &Ciphertext) -> Result<()> {
        if a.key_set != b.key_set {
            return Err(Error::KeySetMismatch(
                "operands were encrypted under different key sets".into(),
            ));
        }
        if a.level() != b.level() {
            return Err(Error::LevelMismatch(format!(
                "operands at levels {} and {}",
                a.level(),
                b.level()
            )));
        }
        Ok(())
    }

    /// Same key set, level and scale (sums).
    fn check_pair(&self, a: &Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check_compatible(a, b)?;
        scales_match(a.scale, b.scale)
    }

    fn fresh(&self, parts: Vec<RnsPoly>, scale: f64, key_set: [u8; 16]) -> Ciphertext {
        Ciphertext {
            parts,
            scale,
            key_set,
            seed: None,
        }
    }

    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check_pair(a, b)?;
        let tables = self.ctx.q_tables(a.level());
        if b.parts.len() > a.parts.len() {
            a.parts
                .resize(b.parts.len(), RnsPoly::zero(a.n(), a.level() + 1, true));
        }
        for (x, y) in a.parts.iter_mut().zip(&b.parts) {
            x.add_assign(y, &tables);
        }
        a.seed = None;
        Ok(())
    }

    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        if a.parts.len() != b.parts.len() {
            let mut out = a.clone();
            self.add_assign(&mut out, b)?;
            return Ok(out);
        }
        self.check_pair(a, b)?;
        let tables = self.ctx.q_tables(a.level());
        let parts = a
            .parts
            .iter()
            .zip(&b.parts)
            .map(|(x, y)| x.add(y, &tables))
            .collect();
        Ok(self.fresh(parts, a.scale, a.key_set))
    }

    pub fn sub_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<()> {
        let mut nb = b.clone();
        self.neg_assign(&mut nb);
        self.add_assign(a, &nb)
    }

    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        let mut out = a.clone();
        self.sub_assign(&mut out, b)?;
        Ok(out)
    }

    pub fn neg_assign(&self, a: &mut Ciphertext) {
        let tables = self.ctx.q_tables(a.level());
        for x in a.parts.iter_mut() {
            x.neg_assign(&tables);
        }
        a.seed = None;
    }

    fn check_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<()> {
        if pt.level() < ct.level() {
            return Err(Error::LevelMismatch(format!(
                "plaintext at level {} below ciphertext level {}",
                pt.level(),
                ct.level()
            )));
        }
        Ok(())
    }

    pub fn add_plain_assign(&self, ct: &mut Ciphertext, pt: &Plaintext) -> Result<()> {
        self.check_plain(ct, pt)?;
        scales_match(ct.scale, pt.scale)?;
        let level = ct.level();
        let tables = self.ctx.q_tables(level);
        ct.parts[0].add_assign(&pt.poly, &tables);
        ct.seed = None;
        Ok(())
    }

    pub fn mul_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(ct, pt)?;
        let tables = self.ctx.q_tables(ct.level());
        let parts = ct.parts.iter().map(|c| c.mul(&pt.poly, &tables)).collect();
        Ok(self.fresh(parts, ct.scale * pt.scale, ct.key_set))
    }

    /// Adds the real constant `value` (encoded at the ciphertext's scale) to every slot.
    pub fn add_const_assign(&self, ct: &mut Ciphertext, value: f64) -> Result<()> {
        let r = crate::ckks::encoder::Encoder::new(self.ctx).constant_residues(
            value,
            ct.scale,
            ct.level(),
        )?;
        for (i, limb) in ct.parts[0].limbs_iter_mut().enumerate() {
            let m = self.ctx.q_modulus(i);
            for x in limb.iter_mut() {
                *x = m.add(*x, r[i]);
            }
        }
        ct.seed = None;
        Ok(())
    }

    /// Multiplies by the integer `k` (scale unchanged).
    pub fn mul_int_assign(&self, ct: &mut Ciphertext, k: i64) {
        let consts: Vec<u64> = (0..=ct.level())
            .map(|i| self.ctx.q_modulus(i).from_i64(k))
            .collect();
        let tables = self.ctx.q_tables(ct.level());
        for x in ct.parts.iter_mut() {
            x.mul_scalar_per_limb(&consts, &tables);
        }
        ct.seed = None;
    }

    /// Multiplies by the real constant `value` encoded as round(value * scale); the
    /// ciphertext's scale is multiplied by `scale`.
    pub fn mul_const_assign(&self, ct: &mut Ciphertext, value: f64, scale: f64) -> Result<()> {
        let consts = crate::ckks::encoder::Encoder::new(self.ctx).constant_residues(
            value,
            scale,
            ct.level(),
        )?;
        let tables = self.ctx.q_tables(ct.level());
        for x in ct.parts.iter_mut() {
            x.mul_scalar_per_limb(&consts, &tables);
        }
        ct.scale *= scale;
        ct.seed = None;
        Ok(())
    }

    /// The tensor product (degree 2, not relinearised).
    pub fn mul(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check_compatible(a, b)?;
        if a.degree() != 1 || b.degree() != 1 {
            return Err(Error::NotLinear(a.degree().max(b.degree())));
        }
        let tables = self.ctx.q_tables(a.level());
        let (a0, a1, b0, b1) = (&a.parts[0], &a.parts[1], &b.parts[0], &b.parts[1]);
        let c0 = a0.mul(b0, &tables);
        let mut c1 = a0.mul(b1, &tables);
        c1.mul_acc(a1, b0, &tables);
        let c2 = a1.mul(b1, &tables);
        Ok(self.fresh(vec![c0, c1, c2], a.scale * b.scale, a.key_set))
    }

    /// Squares a ciphertext (one product fewer than `mul(a, a)`).
    pub fn square(&self, a: &Ciphertext) -> Result<Ciphertext> {
        if a.degree() != 1 {
            return Err(Error::NotLinear(a.degree()));
        }
        let tables = self.ctx.q_tables(a.level());
        let (a0, a1) = (&a.parts[0], &a.parts[1]);
        let c0 = a0.mul(a0, &tables);
        let mut c1 = a0.mul(a1, &tables);
        let c1c = c1.clone();
        c1.add_assign(&c1c, &tables);
        let c2 = a1.mul(a1, &tables);
        Ok(self.fresh(vec![c0, c1, c2], a.scale * a.scale, a.key_set))
    }

    /// Relinearises a degree-2 ciphertext.
    pub fn relinearize(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        if ct.degree() == 1 {
            return Ok(ct.clone());
        }
        if ct.degree() != 2 {
            return Err(Error::NotLinear(ct.degree()));
        }
        let keys = self.check_keys(ct)?;
        let rk = keys
            .relin
            .as_ref()
            .ok_or_else(|| Error::MissingKey("the relinearisation key".into()))?;
        let (u0, u1) = key_switch(self.ctx, &ct.parts[2], rk)?;
        let tables = self.ctx.q_tables(ct.level());
        let mut c0 = ct.parts[0].clone();
        let mut c1 = ct.parts[1].clone();
        c0.add_assign(&u0, &tables);
        c1.add_assign(&u1, &tables);
        Ok(self.fresh(vec![c0, c1], ct.scale, ct.key_set))
    }

    /// Product followed by relinearisation.
    pub fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.relinearize(&self.mul(a, b)?)
    }

    /// Divides by the last prime q_l (rounding): level - 1, scale / q_l.
    pub fn rescale_assign(&self, ct: &mut Ciphertext) -> Result<()> {
        let l = ct.level();
        if l == 0 {
            return Err(Error::LevelExhausted);
        }
        let n = ct.n();
        let last_t = self.ctx.q_tables(l)[l];
        let ql = last_t.modulus().value();
        let half = ql / 2;
        let inv = self.ctx.rescale_inv(l);
        let tables = self.ctx.q_tables(l - 1);
        let mut tmp = vec![0u64; n];
        for part in ct.parts.iter_mut() {
            let mut last = part.limb(l).to_vec();
            last_t.inverse(&mut last);
            part.truncate(l);
            for (i, limb) in part.limbs_iter_mut().enumerate() {
                let t = tables[i];
                let m = t.modulus();
                // centred lift of the last residue into q_i
                let half_mod = m.reduce_u64(half);
                // (x + half) mod q_l, lifted, minus half: rounds instead of flooring
                if !simd::center_lift(&mut tmp, &last, half, ql, m.value(), half_mod) {
                    for (o, &x) in tmp.iter_mut().zip(&last) {
                        let y = if x >= ql - half {
                            x - (ql - half)
                        } else {
                            x + half
                        };
                        *o = m.sub(m.reduce_u128(y as u128), half_mod);
                    }
                }
                t.forward(&mut tmp);
                let (c, cs) = inv[i];
                if !simd::sub_mul_const(limb, &tmp, c, simd::shoup52(c, m.value()), m.value()) {
                    for (o, &v) in limb.iter_mut().zip(&tmp) {
                        *o = m.mul_shoup(m.sub(*o, v), c, cs);
                    }
                }
            }
        }
        ct.scale /= ql as f64;
        ct.seed = None;
        Ok(())
    }

    pub fn rescale(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        let mut out = ct.clone();
        self.rescale_assign(&mut out)?;
        Ok(out)
    }

    /// Drops primes down to `level` (scale unchanged).
    pub fn drop_to_level_assign(&self, ct: &mut Ciphertext, level: usize) -> Result<()> {
        if level > ct.level() {
            return Err(Error::LevelMismatch(format!(
                "cannot raise a ciphertext from level {} to {level}",
                ct.level()
            )));
        }
        for p in ct.parts.iter_mut() {
            p.truncate(level + 1);
        }
        ct.seed = None;
        Ok(())
    }

    fn galois_key(&self, ct: &Ciphertext, g: u64, what: &str) -> Result<&'a SwitchingKey> {
        let keys = self.check_keys(ct)?;
        keys.galois
            .get(&g)
            .ok_or_else(|| Error::MissingKey(format!("the Galois key for {what} (element {g})")))
    }

    /// Applies X -> X^g with the given key.
    fn apply_galois(&self, ct: &Ciphertext, g: u64, key: &SwitchingKey) -> Result<Ciphertext> {
        if ct.degree() != 1 {
            return Err(Error::NotLinear(ct.degree()));
        }
        let perm = self.ctx.galois_permutation(g);
        let c1 = ct.parts[1].permuted(&perm);
        let (u0, u1) = key_switch(self.ctx, &c1, key)?;
        let tables = self.ctx.q_tables(ct.level());
        let mut c0 = ct.parts[0].permuted(&perm);
        c0.add_assign(&u0, &tables);
        Ok(self.fresh(vec![c0, u1], ct.scale, ct.key_set))
    }

    /// Rotates the slots left by `steps` (negative: right).
    pub fn rotate(&self, ct: &Ciphertext, steps: i64) -> Result<Ciphertext> {
        let g = self.ctx.rotation_galois_element(steps);
        if g == 1 {
            return Ok(ct.clone());
        }
        let key = self.galois_key(ct, g, &format!("rotation by {steps}"))?;
        self.apply_galois(ct, g, key)
    }

    /// Complex conjugation of every slot.
    pub fn conjugate(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        let g = self.ctx.conjugation_galois_element();
        let key = self.galois_key(ct, g, "conjugation")?;
        self.apply_galois(ct, g, key)
    }

    /// The decomposition of c_1 that every rotation of `ct` can share (hoisting).
    pub fn decompose_for_rotation(&self, ct: &Ciphertext) -> Result<Decomposition> {
        if ct.degree() != 1 {
            return Err(Error::NotLinear(ct.degree()));
        }
        Ok(decompose(self.ctx, &ct.parts[1]))
    }

    /// One rotation of `ct` from its shared decomposition `dec`.
    pub fn rotate_decomposed(
        &self,
        ct: &Ciphertext,
        dec: &Decomposition,
        steps: i64,
    ) -> Result<Ciphertext> {
        let g = self.ctx.rotation_galois_element(steps);
        if g == 1 {
            return Ok(ct.clone());
        }
        let key = self.galois_key(ct, g, &format!("rotation by {steps}"))?;
        let perm = self.ctx.galois_permutation(g);
        let (a0, a1) = inner_product(self.ctx, dec, key, Some(&perm))?;
        let tables = self.ctx.q_tables(ct.level());
        let mut c0 = ct.parts[0].permuted(&perm);
        let (u0, u1) = mod_down_pair(self.ctx, a0, a1);
        c0.add_assign(&u0, &tables);
        Ok(self.fresh(vec![c0, u1], ct.scale, ct.key_set))
    }

    /// `sum_i rot(ct_i, steps_i)` with one ModDown for the whole sum (double hoisting):
    /// each rotated c_1 is raised and multiplied by its key over Q * P, the products are
    /// summed there, and only the sum is divided by P. Terms must share level, scale and
    /// key set; a step of 0 adds its term as it is.
    pub fn rotate_sum(&self, terms: &[(&Ciphertext, i64)]) -> Result<Ciphertext> {
        let &(first, _) = terms
            .first()
            .ok_or_else(|| Error::Corrupt("an empty sum of rotations".into()))?;
        let level = first.level();
        let tables = self.ctx.q_tables(level);
        let qp_tables = self.ctx.qp_tables(level);
        let n = self.ctx.n();
        let mut c0 = RnsPoly::zero(n, level + 1, true);
        let mut c1 = RnsPoly::zero(n, level + 1, true);
        let mut raised: Option<(RnsPoly, RnsPoly)> = None;
        for &(ct, _) in terms {
            self.check_pair(first, ct)?;
            if ct.degree() != 1 {
                return Err(Error::NotLinear(ct.degree()));
            }
        }
        // The rotated terms two at a time (one per core; each holds a decomposition and a
        // product over Q * P, so the pairs bound the memory).
        for pair in terms.chunks(2) {
            let parts = pair
                .par_iter()
                .map(
                    |&(ct, steps)| -> Result<(RnsPoly, Option<(RnsPoly, RnsPoly)>)> {
                        let g = self.ctx.rotation_galois_element(steps);
                        if g == 1 {
                            return Ok((ct.parts[0].clone(), None));
                        }
                        let key = self.galois_key(ct, g, &format!("rotation by {steps}"))?;
                        let perm = self.ctx.galois_permutation(g);
                        let dec = decompose(self.ctx, &ct.parts[1].permuted(&perm));
                        let raised = inner_product(self.ctx, &dec, key, None)?;
                        Ok((ct.parts[0].permuted(&perm), Some(raised)))
                    },
                )
                .collect::<Result<Vec<_>>>()?;
            for (&(ct, _), (p0, r)) in pair.iter().zip(parts) {
                c0.add_assign(&p0, &tables);
                match (r, &mut raised) {
                    (None, _) => c1.add_assign(&ct.parts[1], &tables),
                    (Some(r), None) => raised = Some(r),
                    (Some((a0, a1)), Some((s0, s1))) => {
                        s0.add_assign(&a0, &qp_tables);
                        s1.add_assign(&a1, &qp_tables);
                    }
                }
            }
        }
        if let Some((a0, a1)) = raised {
            let (u0, u1) = mod_down_pair(self.ctx, a0, a1);
            c0.add_assign(&u0, &tables);
            c1.add_assign(&u1, &tables);
        }
        Ok(self.fresh(vec![c0, c1], first.scale, first.key_set))
    }

    /// Many rotations of one ciphertext sharing one decomposition of c_1.
    pub fn rotate_hoisted(&self, ct: &Ciphertext, steps: &[i64]) -> Result<Vec<Ciphertext>> {
        let dec = self.decompose_for_rotation(ct)?;
        steps
            .iter()
            .map(|&s| self.rotate_decomposed(ct, &dec, s))
            .collect()
    }
}
