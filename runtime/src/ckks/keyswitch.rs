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
use rayon::prelude::*;

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
    // The digits are independent: one task each (with dnum 2, one per core).
    let digits = ctx
        .digit_converters(level)
        .par_iter()
        .map(|dc| {
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            let mut d = RnsPoly::zero(n, width, true);
            for i in dc.start..dc.end {
                d.limb_mut(i).copy_from_slice(c.limb(i));
            }
            out.resize(dc.targets.len() * n, 0);
            // The digit's centred representative, exactly: a digit in [0, D_j) (or the
            // approximate conversion's u * D_j) has a non-zero mean, which the key error
            // turns into a near-constant polynomial that decoding piles onto a few slots.
            dc.conv.convert_centered(
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
    // Limb t of both accumulators reads limb t of every digit only: the limbs run in
    // parallel.
    let limb = |t: usize| -> (Vec<u64>, Vec<u64>) {
        let table = tables[t];
        let (mut a0, mut a1) = (vec![0u64; n], vec![0u64; n]);
        let mut tmp = vec![0u64; n];
        let key_idx = if t <= level {
            t
        } else {
            key.level + 1 + (t - level - 1)
        };
        for (d, kd) in dec.digits.iter().zip(&key.digits) {
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
            table.mul_accumulate(&mut a0, src, kd.b.limb(key_idx));
            table.mul_accumulate(&mut a1, src, kd.a.limb(key_idx));
        }
        (a0, a1)
    };
    let limbs: Vec<(Vec<u64>, Vec<u64>)> = (0..width).into_par_iter().map(limb).collect();
    let (mut d0, mut d1) = (Vec::with_capacity(width * n), Vec::with_capacity(width * n));
    for (a0, a1) in limbs {
        d0.extend_from_slice(&a0);
        d1.extend_from_slice(&a1);
    }
    Ok((
        RnsPoly::from_data(n, d0, true),
        RnsPoly::from_data(n, d1, true),
    ))
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
    // The centred remainder x mod P in (-P/2, P/2], exactly (a zero-mean rounding error:
    // the approximate conversion's u * P would be a biased one), so that
    // (x - remainder) / P is x / P rounded.
    let mut conv = vec![0u64; nq * n];
    ctx.p_to_q()
        .convert_centered(xp.data(), &mut conv, &mut Vec::new());
    let mut out = x;
    out.truncate(nq);
    let p_inv = ctx.p_inv_mod_q();
    let mut data = out.into_data();
    data.par_chunks_exact_mut(n)
        .zip(conv.par_chunks_exact_mut(n))
        .enumerate()
        .for_each(|(i, (limb, c))| {
            let t = q_tables[i];
            let m = t.modulus();
            t.forward(c);
            let (pi, pis) = p_inv[i];
            if !simd::sub_mul_const(limb, c, pi, simd::shoup52(pi, m.value()), m.value()) {
                for (o, &v) in limb.iter_mut().zip(c.iter()) {
                    *o = m.mul_shoup(m.sub(*o, v), pi, pis);
                }
            }
        });
    RnsPoly::from_data(n, data, true)
}

/// ModDown of both halves of a key-switching result, side by side.
pub fn mod_down_pair(ctx: &Context, a0: RnsPoly, a1: RnsPoly) -> (RnsPoly, RnsPoly) {
    rayon::join(|| mod_down(ctx, a0), || mod_down(ctx, a1))
}

/// Full key switch of `c` (NTT, Q_level): returns (u_0, u_1) over Q_level with
/// u_0 + u_1 s = c s' + small, for the key from s' to s.
pub fn key_switch(ctx: &Context, c: &RnsPoly, key: &SwitchingKey) -> Result<(RnsPoly, RnsPoly)> {
    let dec = decompose(ctx, c);
    let (a0, a1) = inner_product(ctx, &dec, key, None)?;
    Ok(mod_down_pair(ctx, a0, a1))
}
