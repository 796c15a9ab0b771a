//! Hybrid key switching (GHS with dnum digits): decompose a polynomial into its digits,
//! raise each to Q_l * P (ModUp, by fast basis conversion), take the inner product with a
//! switching key, and divide by P back to Q_l (ModDown).
//!
//! The decomposition is kept separate from the inner product so that many rotations of
//! one ciphertext share one decomposition (hoisting): a Galois automorphism acts on the
//! decomposed digits as the same NTT-domain permutation on every limb.

use crate::ckks::context::Context;
use crate::ckks::keys::SwitchingKey;
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::simd;

/// The digits of a polynomial at level `level`, each over Q_level * P in NTT form.
pub struct Decomposition {
    pub level: usize,
    pub digits: Vec<RnsPoly>,
}

/// ModUp of every digit of `c` (NTT form over Q_level).
pub fn decompose(ctx: &Context, c: &RnsPoly) -> Decomposition {
    let level = c.limbs() - 1;
    let n = ctx.n();
    let q_tables = ctx.q_tables(level);
    let qp_tables = ctx.qp_tables(level);
    let width = level + 1 + ctx.special_count();
    let mut coeff = c.clone();
    coeff.inverse(&q_tables);
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let digits = ctx
        .digit_converters(level)
        .iter()
        .map(|dc| {
            let mut d = RnsPoly::zero(n, width, true);
            for i in dc.start..dc.end {
                d.limb_mut(i).copy_from_slice(c.limb(i));
            }
            out.resize(dc.targets.len() * n, 0);
            dc.conv.convert(
                &coeff.data()[dc.start * n..dc.end * n],
                &mut out,
                &mut scratch,
            );
            for (src, &t) in out.chunks_exact(n).zip(&dc.targets) {
                let limb = d.limb_mut(t);
                limb.copy_from_slice(src);
                qp_tables[t].forward(limb);
            }
            d
        })
        .collect();
    Decomposition { level, digits }
}

/// Sum over digits of (digit_j permuted by `perm`) * key_j, over Q_level * P.
pub fn inner_product(
    ctx: &Context,
    dec: &Decomposition,
    key: &SwitchingKey,
    perm: Option<&[u32]>,
) -> Result<(RnsPoly, RnsPoly)> {
    let level = dec.level;
    if key.level < level {
        return Err(Error::MissingKey(format!(
            "a switching key for level {level} (the key given stops at level {})",
            key.level
        )));
    }
    if key.digits.len() < dec.digits.len() {
        return Err(Error::Corrupt("switching key has too few digits".into()));
    }
    let n = ctx.n();
    let tables = ctx.qp_tables(level);
    let width = tables.len();
    let mut acc0 = RnsPoly::zero(n, width, true);
    let mut acc1 = RnsPoly::zero(n, width, true);
    let mut tmp = vec![0u64; n];
    for (d, kd) in dec.digits.iter().zip(&key.digits) {
        for (t, table) in tables.iter().enumerate() {
            let key_idx = if t <= level {
                t
            } else {
                key.level + 1 + (t - level - 1)
            };
            let src: &[u64] = match perm {
                Some(p) => {
                    let limb = d.limb(t);
                    for (o, &j) in tmp.iter_mut().zip(p) {
                        *o = limb[j as usize];
                    }
                    &tmp
                }
                None => d.limb(t),
            };
            table.mul_accumulate(acc0.limb_mut(t), src, kd.b.limb(key_idx));
            table.mul_accumulate(acc1.limb_mut(t), src, kd.a.limb(key_idx));
        }
    }
    Ok((acc0, acc1))
}

/// Divides a polynomial over Q_level * P (NTT form) by P, rounding, back to Q_level.
pub fn mod_down(ctx: &Context, x: RnsPoly) -> RnsPoly {
    let k = ctx.special_count();
    let nq = x.limbs() - k;
    let n = ctx.n();
    let q_tables = ctx.q_tables(nq - 1);
    let p_tables = ctx.p_tables();
    let mut xp = x.select(nq..nq + k);
    xp.inverse(&p_tables);
    // Convert x + floor(P/2) and subtract floor(P/2) after: a rounded, centred division.
    for ((limb, &h), t) in xp.limbs_iter_mut().zip(ctx.p_half_mod_p()).zip(&p_tables) {
        let m = t.modulus();
        for v in limb.iter_mut() {
            *v = m.add(*v, h);
        }
    }
    let mut conv = vec![0u64; nq * n];
    ctx.p_to_q().convert(xp.data(), &mut conv, &mut Vec::new());
    let mut out = x;
    out.truncate(nq);
    let p_inv = ctx.p_inv_mod_q();
    let half_q = ctx.p_half_mod_q();
    for (i, (limb, c)) in out
        .limbs_iter_mut()
        .zip(conv.chunks_exact_mut(n))
        .enumerate()
    {
        let t = q_tables[i];
        let m = t.modulus();
        for v in c.iter_mut() {
            *v = m.sub(*v, half_q[i]);
        }
        t.forward(c);
        let (pi, pis) = p_inv[i];
        if !simd::sub_mul_const(limb, c, pi, simd::shoup52(pi, m.value()), m.value()) {
            for (o, &v) in limb.iter_mut().zip(c.iter()) {
                *o = m.mul_shoup(m.sub(*o, v), pi, pis);
            }
        }
    }
    out
}

/// Full key switch of `c` (NTT, Q_level): returns (u_0, u_1) over Q_level with
/// u_0 + u_1 s = c s' + small, for the key from s' to s.
pub fn key_switch(ctx: &Context, c: &RnsPoly, key: &SwitchingKey) -> Result<(RnsPoly, RnsPoly)> {
    let dec = decompose(ctx, c);
    let (a0, a1) = inner_product(ctx, &dec, key, None)?;
    Ok((mod_down(ctx, a0), mod_down(ctx, a1)))
}
