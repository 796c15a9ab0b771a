//! AVX-512 IFMA kernels for the modular loops outside the NTT (which tfhe-ntt already
//! vectorises): multiplication by a constant, subtract-then-multiply, and the dot products
//! of basis conversion. They work 8 lanes at a time with Shoup's method in radix 2^52, so
//! they need moduli below 2^50 (the primes the compiler picks); callers fall back to the
//! scalar code for larger primes or CPUs without IFMA.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Largest modulus the 52-bit kernels accept.
pub const MAX_MODULUS_52: u64 = 1 << 50;

/// Whether this CPU runs the plain AVX-512 kernels (checked once).
pub fn avx512() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether this CPU runs the IFMA kernels (checked once).
pub fn ifma() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512ifma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Shoup's constant for radix 2^52: floor(c * 2^52 / b), for c < b < 2^50.
pub fn shoup52(c: u64, b: u64) -> u64 {
    (((c as u128) << 52) / b as u128) as u64
}

/// One term of a basis-conversion dot product: source limb, which 52-bit half of it
/// (sources above 2^52 are split in two), constant and its Shoup constant.
#[derive(Clone, Copy, Debug)]
pub struct Term {
    pub src: usize,
    pub high: bool,
    pub c: u64,
    pub cs: u64,
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::*;

    const M52: u64 = (1 << 52) - 1;

    #[inline(always)]
    unsafe fn shoup_mul(v: __m512i, c: __m512i, cs: __m512i, b: __m512i) -> __m512i {
        let z = _mm512_setzero_si512();
        let m52 = _mm512_set1_epi64(M52 as i64);
        let qhat = _mm512_madd52hi_epu64(z, v, cs);
        let lo1 = _mm512_madd52lo_epu64(z, v, c);
        let lo2 = _mm512_madd52lo_epu64(z, qhat, b);
        let r = _mm512_and_si512(_mm512_sub_epi64(lo1, lo2), m52);
        _mm512_min_epu64(r, _mm512_sub_epi64(r, b))
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn mul_const(out: &mut [u64], x: &[u64], c: u64, cs: u64, b: u64) {
        let (vc, vcs, vb) = (
            _mm512_set1_epi64(c as i64),
            _mm512_set1_epi64(cs as i64),
            _mm512_set1_epi64(b as i64),
        );
        for (o, v) in out.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
            let v = _mm512_loadu_si512(v.as_ptr() as *const _);
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, shoup_mul(v, vc, vcs, vb));
        }
    }

    /// Writes a + b mod q to `out` (a.len() == b.len() words, possibly uninitialised).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn add_into(out: *mut u64, a: &[u64], b: &[u64], q: u64) {
        let vq = _mm512_set1_epi64(q as i64);
        for (k, (x, y)) in a.chunks_exact(8).zip(b.chunks_exact(8)).enumerate() {
            let x = _mm512_loadu_si512(x.as_ptr() as *const _);
            let y = _mm512_loadu_si512(y.as_ptr() as *const _);
            let s = _mm512_add_epi64(x, y);
            let s = _mm512_min_epu64(s, _mm512_sub_epi64(s, vq));
            _mm512_storeu_si512(out.add(8 * k) as *mut _, s);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn add_assign(a: &mut [u64], b: &[u64], q: u64) {
        let vq = _mm512_set1_epi64(q as i64);
        for (o, y) in a.chunks_exact_mut(8).zip(b.chunks_exact(8)) {
            let x = _mm512_loadu_si512(o.as_ptr() as *const _);
            let y = _mm512_loadu_si512(y.as_ptr() as *const _);
            let s = _mm512_add_epi64(x, y);
            let s = _mm512_min_epu64(s, _mm512_sub_epi64(s, vq));
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, s);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn sub_assign(a: &mut [u64], b: &[u64], q: u64) {
        let vq = _mm512_set1_epi64(q as i64);
        for (o, y) in a.chunks_exact_mut(8).zip(b.chunks_exact(8)) {
            let x = _mm512_loadu_si512(o.as_ptr() as *const _);
            let y = _mm512_loadu_si512(y.as_ptr() as *const _);
            let d = _mm512_sub_epi64(x, y);
            let d = _mm512_min_epu64(d, _mm512_add_epi64(d, vq));
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, d);
        }
    }

    /// out = ((x + h) mod ql) mod qi - (h mod qi), for ql <= 2 qi: the centred lift of a
    /// residue modulo ql into qi.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn center_lift(out: &mut [u64], x: &[u64], h: u64, ql: u64, qi: u64, h_mod_qi: u64) {
        let (vh, vql, vqi, vhm) = (
            _mm512_set1_epi64(h as i64),
            _mm512_set1_epi64(ql as i64),
            _mm512_set1_epi64(qi as i64),
            _mm512_set1_epi64(h_mod_qi as i64),
        );
        for (o, v) in out.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
            let v = _mm512_loadu_si512(v.as_ptr() as *const _);
            let y = _mm512_add_epi64(v, vh);
            let y = _mm512_min_epu64(y, _mm512_sub_epi64(y, vql));
            let y = _mm512_min_epu64(y, _mm512_sub_epi64(y, vqi));
            let d = _mm512_sub_epi64(y, vhm);
            let d = _mm512_min_epu64(d, _mm512_add_epi64(d, vqi));
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, d);
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn mul_const_assign(a: &mut [u64], c: u64, cs: u64, b: u64) {
        let (vc, vcs, vb) = (
            _mm512_set1_epi64(c as i64),
            _mm512_set1_epi64(cs as i64),
            _mm512_set1_epi64(b as i64),
        );
        for o in a.chunks_exact_mut(8) {
            let v = _mm512_loadu_si512(o.as_ptr() as *const _);
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, shoup_mul(v, vc, vcs, vb));
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn sub_mul_const(out: &mut [u64], x: &[u64], c: u64, cs: u64, b: u64) {
        let (vc, vcs, vb) = (
            _mm512_set1_epi64(c as i64),
            _mm512_set1_epi64(cs as i64),
            _mm512_set1_epi64(b as i64),
        );
        for (o, v) in out.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
            let a = _mm512_loadu_si512(o.as_ptr() as *const _);
            let v = _mm512_loadu_si512(v.as_ptr() as *const _);
            let d = _mm512_sub_epi64(a, v);
            let d = _mm512_min_epu64(d, _mm512_add_epi64(d, vb));
            _mm512_storeu_si512(o.as_mut_ptr() as *mut _, shoup_mul(d, vc, vcs, vb));
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn mac(acc: &mut [u64], srcs: &[&[u64]], consts: &[(u64, u64)], b: u64) {
        let vb = _mm512_set1_epi64(b as i64);
        let cv: Vec<(__m512i, __m512i)> = consts
            .iter()
            .map(|&(c, cs)| (_mm512_set1_epi64(c as i64), _mm512_set1_epi64(cs as i64)))
            .collect();
        let mut start = 0;
        while start < acc.len() {
            let mut a = _mm512_loadu_si512(acc.as_ptr().add(start) as *const _);
            for (src, &(c, cs)) in srcs.iter().zip(&cv) {
                let v = _mm512_loadu_si512(src.as_ptr().add(start) as *const _);
                a = _mm512_add_epi64(a, shoup_mul(v, c, cs, vb));
                a = _mm512_min_epu64(a, _mm512_sub_epi64(a, vb));
            }
            _mm512_storeu_si512(acc.as_mut_ptr().add(start) as *mut _, a);
            start += 8;
        }
    }

    /// acc += sum_t x_t * y_t[k >> shift_t]: with shift_t 0 y_t is read slot-wise,
    /// otherwise (shift_t at least 3) one broadcast per 8 slots. Products of inputs below
    /// 2^50 are below 2^100; their hi halves are below 2^48, so eight of them and the carry
    /// of the low sums stay below 2^52: one reduction per 8 products.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn smac(acc: &mut [u64], pairs: &[(&[u64], &[u64], u32)], b: u64) {
        let vb = _mm512_set1_epi64(b as i64);
        let m52 = _mm512_set1_epi64(M52 as i64);
        let z = _mm512_setzero_si512();
        let r = ((1u128 << 52) % b as u128) as u64;
        let (vr, vrs) = (
            _mm512_set1_epi64(r as i64),
            _mm512_set1_epi64(shoup52(r, b) as i64),
        );
        let (one, ones) = (
            _mm512_set1_epi64(1),
            _mm512_set1_epi64(shoup52(1, b) as i64),
        );
        for chunk in pairs.chunks(8) {
            let mut start = 0;
            while start < acc.len() {
                let mut lo = z;
                let mut hi = z;
                for &(x, y, shift) in chunk {
                    let vx = _mm512_loadu_si512(x.as_ptr().add(start) as *const _);
                    let vy = if shift == 0 {
                        _mm512_loadu_si512(y.as_ptr().add(start) as *const _)
                    } else {
                        let k = start.checked_shr(shift).unwrap_or(0);
                        _mm512_set1_epi64(*y.get_unchecked(k) as i64)
                    };
                    lo = _mm512_madd52lo_epu64(lo, vx, vy);
                    hi = _mm512_madd52hi_epu64(hi, vx, vy);
                }
                let h = _mm512_add_epi64(hi, _mm512_srli_epi64(lo, 52));
                let l = _mm512_and_si512(lo, m52);
                let t1 = shoup_mul(h, vr, vrs, vb);
                let t2 = shoup_mul(l, one, ones, vb);
                let mut a = _mm512_loadu_si512(acc.as_ptr().add(start) as *const _);
                a = _mm512_add_epi64(a, t1);
                a = _mm512_min_epu64(a, _mm512_sub_epi64(a, vb));
                a = _mm512_add_epi64(a, t2);
                a = _mm512_min_epu64(a, _mm512_sub_epi64(a, vb));
                _mm512_storeu_si512(acc.as_mut_ptr().add(start) as *mut _, a);
                start += 8;
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    pub unsafe fn dot(out: &mut [u64], y: &[u64], n: usize, terms: &[Term], b: u64) {
        let vb = _mm512_set1_epi64(b as i64);
        let m52 = _mm512_set1_epi64(M52 as i64);
        let consts: Vec<(__m512i, __m512i)> = terms
            .iter()
            .map(|t| {
                (
                    _mm512_set1_epi64(t.c as i64),
                    _mm512_set1_epi64(t.cs as i64),
                )
            })
            .collect();
        let mut start = 0;
        while start < out.len() {
            let mut acc = _mm512_setzero_si512();
            for (t, &(c, cs)) in terms.iter().zip(&consts) {
                let v = _mm512_loadu_si512(y.as_ptr().add(t.src * n + start) as *const _);
                let v = if t.high {
                    _mm512_srli_epi64(v, 52)
                } else {
                    _mm512_and_si512(v, m52)
                };
                acc = _mm512_add_epi64(acc, shoup_mul(v, c, cs, vb));
                acc = _mm512_min_epu64(acc, _mm512_sub_epi64(acc, vb));
            }
            _mm512_storeu_si512(out.as_mut_ptr().add(start) as *mut _, acc);
            start += 8;
        }
    }
}

/// out = x * c mod b (x reduced, b < 2^50, lengths multiples of 8). Returns false (and
/// does nothing) when the kernel cannot run.
pub fn mul_const(out: &mut [u64], x: &[u64], c: u64, cs: u64, b: u64) -> bool {
    if !(ifma() && b < MAX_MODULUS_52 && out.len().is_multiple_of(8) && out.len() == x.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU supports avx512f and avx512ifma (checked above); the slices have
    // equal lengths that are multiples of 8.
    unsafe {
        imp::mul_const(out, x, c, cs, b)
    };
    true
}

fn lanes_ok(len: usize, q: u64) -> bool {
    avx512() && len.is_multiple_of(8) && q < 1 << 62
}

/// out = a + b mod q (reduced inputs), writing every element of `out` (which may be
/// uninitialised). Returns false, writing nothing, when the kernel cannot run.
pub fn add_into(out: &mut [std::mem::MaybeUninit<u64>], a: &[u64], b: &[u64], q: u64) -> bool {
    if !(lanes_ok(out.len(), q) && a.len() == out.len() && b.len() == out.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: avx512f checked; `out` holds a.len() == b.len() words (a multiple of 8), and
    // raw stores into MaybeUninit memory are allowed.
    unsafe {
        imp::add_into(out.as_mut_ptr() as *mut u64, a, b, q)
    };
    true
}

/// a = a + b mod q.
pub fn add_assign(a: &mut [u64], b: &[u64], q: u64) -> bool {
    if !(lanes_ok(a.len(), q) && b.len() == a.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: avx512f checked; equal lengths, multiples of 8.
    unsafe {
        imp::add_assign(a, b, q)
    };
    true
}

/// a = a - b mod q.
pub fn sub_assign(a: &mut [u64], b: &[u64], q: u64) -> bool {
    if !(lanes_ok(a.len(), q) && b.len() == a.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: avx512f checked; equal lengths, multiples of 8.
    unsafe {
        imp::sub_assign(a, b, q)
    };
    true
}

/// The centred lift of residues modulo `ql` (h = floor(ql/2)) into `qi`, for ql <= 2 qi.
pub fn center_lift(out: &mut [u64], x: &[u64], h: u64, ql: u64, qi: u64, h_mod_qi: u64) -> bool {
    if !(lanes_ok(out.len(), ql.max(qi)) && x.len() == out.len() && ql <= 2 * qi) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: avx512f checked; equal lengths, multiples of 8.
    unsafe {
        imp::center_lift(out, x, h, ql, qi, h_mod_qi)
    };
    true
}

/// a = a * c mod b in place, under the same conditions as [`mul_const`].
pub fn mul_const_assign(a: &mut [u64], c: u64, cs: u64, b: u64) -> bool {
    if !(ifma() && b < MAX_MODULUS_52 && a.len().is_multiple_of(8)) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `mul_const`.
    unsafe {
        imp::mul_const_assign(a, c, cs, b)
    };
    true
}

/// acc += sum_t consts_t.0 * srcs_t mod b (fused multiply-accumulate of integer
/// scalars; consts_t.1 = shoup52(consts_t.0, b)); every slice of acc's length.
pub fn mac(acc: &mut [u64], srcs: &[&[u64]], consts: &[(u64, u64)], b: u64) -> bool {
    let ok = srcs.len() == consts.len() && srcs.iter().all(|s| s.len() == acc.len());
    if !(ifma() && b < MAX_MODULUS_52 && acc.len().is_multiple_of(8) && ok) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CPU features checked; all slices have acc's length, a multiple of 8.
    unsafe {
        imp::mac(acc, srcs, consts, b)
    };
    true
}

/// acc += sum_t x_t * y_t mod b slot-wise (fused, lazily reduced multiply-accumulate of
/// NTT-domain products: one reduction per 8 products), for b < 2^50 and every input
/// reduced mod b; every slice of acc's length, a multiple of 8.
pub fn pmac(acc: &mut [u64], pairs: &[(&[u64], &[u64])], b: u64) -> bool {
    let triples: Vec<(&[u64], &[u64], u32)> = pairs.iter().map(|&(x, y)| (x, y, 0)).collect();
    smac(acc, &triples, b)
}

/// acc += sum_t x_t * y_t[k >> shift_t] mod b at every slot k: block-constant plaintexts
/// with blocks of 2^shift_t slots, all lazily reduced together. A shift_t of 0 gives
/// slot-wise products (as `pmac`); otherwise it must be at least 3, and 64 or more with a
/// one-value y_t makes an integer scalar. For b below 2^50, acc's length a multiple of 8,
/// every x_t of acc's length and every y_t long enough; every input reduced mod b.
pub fn smac(acc: &mut [u64], pairs: &[(&[u64], &[u64], u32)], b: u64) -> bool {
    let len = acc.len();
    let ok = len.is_multiple_of(8)
        && pairs.iter().all(|&(x, y, shift)| {
            let last = if len == 0 {
                0
            } else {
                (len - 1).checked_shr(shift).unwrap_or(0)
            };
            (shift == 0 || shift >= 3) && x.len() == len && last < y.len()
        });
    if !(ifma() && b < MAX_MODULUS_52 && ok) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CPU features checked; every x_t has acc's length (a multiple of 8) and every
    // y_t index start >> shift_t is at most (len - 1) >> shift_t < y_t's length.
    unsafe {
        imp::smac(acc, pairs, b)
    };
    true
}

/// out = (out - x) * c mod b, under the same conditions as [`mul_const`].
pub fn sub_mul_const(out: &mut [u64], x: &[u64], c: u64, cs: u64, b: u64) -> bool {
    if !(ifma() && b < MAX_MODULUS_52 && out.len().is_multiple_of(8) && out.len() == x.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `mul_const`.
    unsafe {
        imp::sub_mul_const(out, x, c, cs, b)
    };
    true
}

/// out[k] = sum over terms of (half of y[src][k]) * c mod b, for b < 2^50, with y holding
/// source limbs of length n (n a multiple of 8, out of length n).
pub fn dot(out: &mut [u64], y: &[u64], n: usize, terms: &[Term], b: u64) -> bool {
    let fits = terms.iter().all(|t| (t.src + 1) * n <= y.len());
    if !(ifma() && b < MAX_MODULUS_52 && n.is_multiple_of(8) && out.len() == n && fits) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CPU features checked; every load stays inside `y` (checked by `fits`) and
    // every store inside `out`.
    unsafe {
        imp::dot(out, y, n, terms, b)
    };
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn pmac_matches_scalar() {
        let b = crate::math::primes::ntt_primes(49, 1 << 12, 1, &[]).unwrap()[0];
        let n = 64;
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) % b
        };
        for terms in [1usize, 3, 8, 9, 20] {
            let xs: Vec<Vec<u64>> = (0..terms)
                .map(|_| (0..n).map(|_| next()).collect())
                .collect();
            let ys: Vec<Vec<u64>> = (0..terms)
                .map(|_| (0..n).map(|_| next()).collect())
                .collect();
            let acc0: Vec<u64> = (0..n).map(|_| next()).collect();
            let mut acc = acc0.clone();
            let pairs: Vec<(&[u64], &[u64])> = xs
                .iter()
                .zip(&ys)
                .map(|(x, y)| (x.as_slice(), y.as_slice()))
                .collect();
            if !pmac(&mut acc, &pairs, b) {
                return; // no IFMA on this machine
            }
            for k in 0..n {
                let mut want = acc0[k] as u128;
                for t in 0..terms {
                    want = (want + xs[t][k] as u128 * ys[t][k] as u128) % b as u128;
                }
                assert_eq!(acc[k] as u128, want, "terms {terms} slot {k}");
            }
        }
    }

    #[test]
    fn smac_mixes_scalars_and_blocks() {
        let b = crate::math::primes::ntt_primes(49, 1 << 12, 1, &[]).unwrap()[0];
        let n = 256;
        let mut seed = 99u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) % b
        };
        // shifts: scalar (u32::MAX), blocks of 8, 16 and 64, ten pairs (two kernel passes).
        let shifts = [u32::MAX, 3, 4, 6, 3, 4, u32::MAX, 6, 3, 4];
        let xs: Vec<Vec<u64>> = shifts
            .iter()
            .map(|_| (0..n).map(|_| next()).collect())
            .collect();
        let ys: Vec<Vec<u64>> = shifts
            .iter()
            .map(|&s| {
                let len = if s >= 64 { 1 } else { n >> s };
                (0..len).map(|_| next()).collect()
            })
            .collect();
        let acc0: Vec<u64> = (0..n).map(|_| next()).collect();
        let mut acc = acc0.clone();
        let triples: Vec<(&[u64], &[u64], u32)> = xs
            .iter()
            .zip(&ys)
            .zip(&shifts)
            .map(|((x, y), &s)| (x.as_slice(), y.as_slice(), s))
            .collect();
        if !smac(&mut acc, &triples, b) {
            return; // no IFMA on this machine
        }
        for k in 0..n {
            let mut want = acc0[k] as u128;
            for (t, &s) in shifts.iter().enumerate() {
                let idx = k.checked_shr(s).unwrap_or(0);
                want = (want + xs[t][k] as u128 * ys[t][idx] as u128) % b as u128;
            }
            assert_eq!(acc[k] as u128, want, "slot {k}");
        }
        // A y too short is refused, not read out of bounds.
        let short: Vec<(&[u64], &[u64], u32)> = vec![(&xs[1], &ys[1][..1], 3)];
        assert!(!smac(&mut acc, &short, b));
    }

    use super::*;
    use crate::math::modulus::Modulus;
    use crate::math::primes::ntt_primes;

    #[test]
    fn kernels_match_scalar() {
        if !ifma() {
            return;
        }
        let n = 64;
        for bits in [30u32, 40, 49] {
            let b = ntt_primes(bits, 1 << 10, 1, &[]).unwrap()[0];
            let m = Modulus::new(b);
            let x: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9E3779B97F4A7C15) % b)
                .collect();
            let o0: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x2545F4914F6CDD1D) % b)
                .collect();
            let c = b / 3 + 7;
            let mut out = vec![0; n];
            assert!(mul_const(&mut out, &x, c, shoup52(c, b), b));
            assert!(out.iter().zip(&x).all(|(&o, &v)| o == m.mul(v, c)));
            let mut out = o0.clone();
            assert!(sub_mul_const(&mut out, &x, c, shoup52(c, b), b));
            for i in 0..n {
                assert_eq!(out[i], m.mul(m.sub(o0[i], x[i]), c));
            }
            // dot with a 60-bit source split into halves
            let big = ntt_primes(60, 1 << 10, 1, &[]).unwrap()[0];
            let y: Vec<u64> = x
                .iter()
                .copied()
                .chain(
                    o0.iter()
                        .map(|&v| ((v as u128 * 1000) % big as u128) as u64),
                )
                .collect();
            let (c1, c2) = (b - 5, 12345 % b);
            let c2h = m.mul(c2, m.reduce_u128(1u128 << 52));
            let terms = [
                Term {
                    src: 0,
                    high: false,
                    c: c1,
                    cs: shoup52(c1, b),
                },
                Term {
                    src: 1,
                    high: false,
                    c: c2,
                    cs: shoup52(c2, b),
                },
                Term {
                    src: 1,
                    high: true,
                    c: c2h,
                    cs: shoup52(c2h, b),
                },
            ];
            let mut out = vec![0; n];
            assert!(dot(&mut out, &y, n, &terms, b));
            for i in 0..n {
                let want = m.add(m.mul(x[i], c1), m.mul(m.reduce_u64(y[n + i]), c2));
                assert_eq!(out[i], want);
            }
        }
    }
}

#[cfg(test)]
mod add_tests {
    use super::*;
    use crate::math::modulus::Modulus;

    #[test]
    fn additive_kernels_match_scalar() {
        if !avx512() {
            return;
        }
        for (ql, qi) in [
            (1099511480321u64, 1099510824961u64),
            (1152921504606584833, 1152921504598720513),
        ] {
            let m = Modulus::new(qi);
            let n = 64;
            let a: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9E3779B97F4A7C15) % qi)
                .collect();
            let b: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x2545F4914F6CDD1D) % qi)
                .collect();
            let mut o = vec![0; n];
            let mut u = vec![std::mem::MaybeUninit::<u64>::uninit(); n];
            assert!(add_into(&mut u, &a, &b, qi));
            // SAFETY: add_into wrote all n elements.
            let sum: Vec<u64> = u.iter().map(|x| unsafe { x.assume_init() }).collect();
            assert!((0..n).all(|i| sum[i] == m.add(a[i], b[i])));
            let mut s = a.clone();
            assert!(sub_assign(&mut s, &b, qi));
            assert!((0..n).all(|i| s[i] == m.sub(a[i], b[i])));
            let x: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x1234567) % ql)
                .collect();
            let h = ql / 2;
            assert!(center_lift(&mut o, &x, h, ql, qi, m.reduce_u64(h)));
            for i in 0..n {
                let c = if x[i] > h {
                    x[i] as i128 - ql as i128
                } else {
                    x[i] as i128
                };
                assert_eq!(o[i], m.from_i128(c));
            }
        }
    }
}
