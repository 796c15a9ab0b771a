//! End-to-end checks of every CKKS operation against the same computation on plaintext
//! vectors, each with an explicit error bound in bits, at small ring degrees.

use super::*;
use crate::error::Error;
use proptest::prelude::*;
use std::sync::Arc;

pub(crate) struct Setup {
    pub ctx: Arc<Context>,
    pub sk: SecretKey,
    pub pk: PublicKey,
    pub keys: EvalKeys,
}

pub(crate) fn setup(
    log_n: u32,
    q_bits: &[u32],
    p_bits: &[u32],
    dnum: usize,
    rots: &[i64],
) -> Setup {
    let params = Params::insecure_for_tests(log_n, q_bits, p_bits, dnum).unwrap();
    let ctx = Context::new(params).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let pk = kg.public_key(&sk).unwrap();
    let top = ctx.max_level();
    let mut galois: Vec<(u64, usize)> = rots
        .iter()
        .map(|&r| (ctx.rotation_galois_element(r), top))
        .collect();
    galois.push((ctx.conjugation_galois_element(), top));
    let keys = kg.eval_keys(&sk, Some(top), &galois).unwrap();
    Setup { ctx, sk, pk, keys }
}

impl Setup {
    /// Encoder, encryptor, decryptor and evaluator (with the bundle) on this setup.
    fn tools(&self) -> (Encoder<'_>, Encryptor<'_>, Decryptor<'_>, Evaluator<'_>) {
        let ctx = &self.ctx;
        (
            Encoder::new(ctx),
            Encryptor::new(ctx),
            Decryptor::new(ctx, &self.sk),
            Evaluator::with_keys(ctx, &self.keys).unwrap(),
        )
    }
}

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

#[track_caller]
fn assert_bits(got: &[f64], want: &[f64], min: f64) {
    let b = bits(got, want);
    assert!(
        b > min,
        "{b:.2} bits of precision, expected more than {min}"
    );
}

/// Bits of precision: -log2(max abs error).
fn bits(got: &[f64], want: &[f64]) -> f64 {
    let e = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f64, f64::max);
    -e.max(1e-300).log2()
}

fn standard() -> Setup {
    // N = 2^12, a 60-bit base prime, three 40-bit primes, one digit per prime, one
    // 60-bit special prime.
    setup(
        12,
        &[60, 40, 40, 40],
        &[60],
        4,
        &[1, 2, 3, -1, 5, 100, 2047],
    )
}

fn hybrid() -> Setup {
    // Two digits of two primes each, two 50-bit special primes.
    setup(
        12,
        &[50, 40, 40, 40],
        &[50, 50],
        2,
        &[1, 2, 3, -1, 5, 100, 2047],
    )
}

#[test]
fn encrypt_decrypt_pk_and_sk() {
    let s = standard();
    let enc = Encoder::new(&s.ctx);
    let x = values(s.ctx.params().slots(), 1);
    let pt = enc.encode(&x, 2f64.powi(40), 3).unwrap();
    assert_bits(&enc.decode(&pt), &x, 32.0);
    let mut e = Encryptor::new(&s.ctx);
    let d = Decryptor::new(&s.ctx, &s.sk);
    let c_pk = e.encrypt_pk(&pt, &s.pk).unwrap();
    let c_sk = e.encrypt_sk(&pt, &s.sk).unwrap();
    assert_bits(&d.decrypt(&c_pk).unwrap(), &x, 22.0);
    assert_bits(&d.decrypt(&c_sk).unwrap(), &x, 28.0);
    // Encrypting directly at a lower level.
    let low = enc.encode(&x, 2f64.powi(30), 1).unwrap();
    let c = e.encrypt_pk(&low, &s.pk).unwrap();
    assert_eq!(c.level(), 1);
    assert_bits(&d.decrypt(&c).unwrap(), &x, 12.0);
}

#[test]
fn additive_and_scalar_operations() {
    let s = standard();
    let ctx = &s.ctx;
    let (enc, mut e, d, ev) = s.tools();
    let n = ctx.params().slots();
    let (x, y) = (values(n, 2), values(n, 3));
    let delta = 2f64.powi(40);
    let cx = e
        .encrypt_pk(&enc.encode(&x, delta, 3).unwrap(), &s.pk)
        .unwrap();
    let cy = e
        .encrypt_pk(&enc.encode(&y, delta, 3).unwrap(), &s.pk)
        .unwrap();
    let zip = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
        x.iter().zip(&y).map(|(a, b)| f(*a, *b)).collect()
    };

    assert_bits(
        &d.decrypt(&ev.add(&cx, &cy).unwrap()).unwrap(),
        &zip(&|a, b| a + b),
        22.0,
    );
    assert_bits(
        &d.decrypt(&ev.sub(&cx, &cy).unwrap()).unwrap(),
        &zip(&|a, b| a - b),
        22.0,
    );
    let mut neg = cx.clone();
    ev.neg_assign(&mut neg);
    assert_bits(&d.decrypt(&neg).unwrap(), &zip(&|a, _| -a), 22.0);

    let mut c = cx.clone();
    ev.add_plain_assign(&mut c, &enc.encode(&y, delta, 3).unwrap())
        .unwrap();
    assert_bits(&d.decrypt(&c).unwrap(), &zip(&|a, b| a + b), 22.0);

    let mut c = ev
        .mul_plain(&cx, &enc.encode(&y, delta, 3).unwrap())
        .unwrap();
    ev.rescale_assign(&mut c).unwrap();
    assert_eq!(c.level(), 2);
    assert_bits(&d.decrypt(&c).unwrap(), &zip(&|a, b| a * b), 21.0);

    let mut c = cx.clone();
    ev.add_const_assign(&mut c, 0.375).unwrap();
    assert_bits(&d.decrypt(&c).unwrap(), &zip(&|a, _| a + 0.375), 22.0);

    let mut c = cx.clone();
    ev.mul_int_assign(&mut c, -3);
    assert_bits(&d.decrypt(&c).unwrap(), &zip(&|a, _| -3.0 * a), 20.0);

    let mut c = cx.clone();
    ev.mul_const_assign(&mut c, 0.2333984375, 2f64.powi(30))
        .unwrap();
    ev.rescale_assign(&mut c).unwrap();
    assert_bits(
        &d.decrypt(&c).unwrap(),
        &zip(&|a, _| 0.2333984375 * a),
        16.0,
    );

    let mut c = cx.clone();
    ev.drop_to_level_assign(&mut c, 1).unwrap();
    assert_eq!(c.level(), 1);
    assert_bits(&d.decrypt(&c).unwrap(), &x, 22.0);

    // Mismatches are errors, not wrong answers.
    assert!(matches!(ev.add(&c, &cy), Err(Error::LevelMismatch(_))));
    let mut scaled = cx.clone();
    ev.mul_const_assign(&mut scaled, 1.0, 2.0).unwrap();
    assert!(matches!(
        ev.add(&scaled, &cy),
        Err(Error::ScaleMismatch { .. })
    ));
}

#[test]
fn mul_relin_rescale_keeps_25_bits_at_delta_2_40() {
    let s = standard();
    let ctx = &s.ctx;
    let (enc, mut e, d, ev) = s.tools();
    let n = ctx.params().slots();
    let (x, y) = (values(n, 4), values(n, 5));
    let delta = 2f64.powi(40);
    let cx = e
        .encrypt_sk(&enc.encode(&x, delta, 3).unwrap(), &s.sk)
        .unwrap();
    let cy = e
        .encrypt_sk(&enc.encode(&y, delta, 3).unwrap(), &s.sk)
        .unwrap();
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let prod = ev.mul(&cx, &cy).unwrap();
    assert_eq!(prod.degree(), 2);
    // A degree-2 ciphertext decrypts too (c0 + c1 s + c2 s^2).
    let mut r2 = prod.clone();
    ev.rescale_assign(&mut r2).unwrap();
    // (rescaling before relinearising multiplies the rounding error by s^2: fewer bits)
    assert_bits(&d.decrypt(&r2).unwrap(), &want, 19.0);
    let mut c = ev.relinearize(&prod).unwrap();
    ev.rescale_assign(&mut c).unwrap();
    let b = bits(&d.decrypt(&c).unwrap(), &want);
    assert!(b > 25.0, "{b} bits");
    let sq = ev.relinearize(&ev.square(&cx).unwrap()).unwrap();
    let want_sq: Vec<f64> = x.iter().map(|a| a * a).collect();
    let mut sq = sq;
    ev.rescale_assign(&mut sq).unwrap();
    assert_bits(&d.decrypt(&sq).unwrap(), &want_sq, 25.0);
}

#[test]
fn rotations_conjugation_and_hoisting() {
    for s in [standard(), hybrid()] {
        rotations_with(s);
    }
}

fn rotations_with(s: Setup) {
    let ctx = &s.ctx;
    let (enc, mut e, d, ev) = s.tools();
    let n = ctx.params().slots();
    let x = values(n, 6);
    let delta = 2f64.powi(40);
    let cx = e
        .encrypt_pk(&enc.encode(&x, delta, 3).unwrap(), &s.pk)
        .unwrap();
    let steps = [1i64, 2, 3, -1, 5, 100, 2047];
    let hoisted = ev.rotate_hoisted(&cx, &steps).unwrap();
    for (&k, h) in steps.iter().zip(&hoisted) {
        let want: Vec<f64> = (0..n)
            .map(|i| x[(i as i64 + k).rem_euclid(n as i64) as usize])
            .collect();
        let r = ev.rotate(&cx, k).unwrap();
        assert_bits(&d.decrypt(&r).unwrap(), &want, 19.0);
        assert_bits(&d.decrypt(h).unwrap(), &want, 19.0);
    }
    // Conjugation on complex slots.
    let z: Vec<C64> = (0..n).map(|i| C64::new(x[i], x[(i + 1) % n])).collect();
    let cz = e
        .encrypt_pk(&enc.encode_complex(&z, delta, 3).unwrap(), &s.pk)
        .unwrap();
    let got = d.decrypt_complex(&ev.conjugate(&cz).unwrap()).unwrap();
    let err = got
        .iter()
        .zip(&z)
        .map(|(g, w)| (*g - w.conj()).abs())
        .fold(0f64, f64::max);
    assert!(err < 2f64.powi(-19), "{err}");
    // A missing key is named.
    assert!(matches!(ev.rotate(&cx, 7), Err(Error::MissingKey(_))));
}

/// A sum of rotations with one ModDown equals the sum of separate rotations (to the
/// precision of one rotation), for several inputs, a zero step and a repeated step; a
/// missing key is named and terms at other levels are refused.
#[test]
fn rotation_sums_share_one_mod_down() {
    for s in [standard(), hybrid()] {
        let ctx = &s.ctx;
        let (enc, mut e, d, ev) = s.tools();
        let n = ctx.params().slots();
        let delta = 2f64.powi(40);
        let xs: Vec<Vec<f64>> = (0..4).map(|k| values(n, 20 + k)).collect();
        let cts: Vec<_> = xs
            .iter()
            .map(|x| {
                e.encrypt_pk(&enc.encode(x, delta, 3).unwrap(), &s.pk)
                    .unwrap()
            })
            .collect();
        let steps = [1i64, 0, 100, 1];
        let terms: Vec<_> = cts.iter().zip(steps).collect();
        let sum = ev.rotate_sum(&terms).unwrap();
        let want: Vec<f64> = (0..n)
            .map(|i| {
                xs.iter()
                    .zip(steps)
                    .map(|(x, k)| x[(i as i64 + k).rem_euclid(n as i64) as usize])
                    .sum()
            })
            .collect();
        assert_bits(&d.decrypt(&sum).unwrap(), &want, 19.0);
        assert!(matches!(
            ev.rotate_sum(&[(&cts[0], 7)]),
            Err(Error::MissingKey(_))
        ));
        let mut low = cts[1].clone();
        ev.rescale_assign(&mut low).unwrap();
        assert!(ev.rotate_sum(&[(&cts[0], 1), (&low, 2)]).is_err());
        assert!(ev.rotate_sum(&[]).is_err());
    }
}

/// A vector repeating every P slots encodes to r(X^(N/2P)) with r the P-slot encoding of
/// one period: the same coefficients as the full FFT of the repeated vector.
#[test]
fn periodic_vectors_encode_through_one_period() {
    let s = standard();
    let enc = Encoder::new(&s.ctx);
    let slots = s.ctx.params().slots();
    for p in [1usize, 4, 32, 512] {
        let one: Vec<C64> = values(p, 30 + p as u64)
            .into_iter()
            .map(|x| C64::new(x, 0.0))
            .collect();
        let full: Vec<C64> = (0..slots).map(|j| one[j % p]).collect();
        let want = enc.coefficients(&full).unwrap();
        let fft = crate::ckks::fft::SpecialFft::new(2 * p);
        let r = enc.periodic_coefficients(&fft, &one).unwrap();
        let stride = slots / p;
        for (k, w) in want.iter().enumerate() {
            let got = if k % stride == 0 { r[k / stride] } else { 0.0 };
            assert!(
                (got - w).abs() < 1e-9,
                "period {p}, coefficient {k}: {got} vs {w}"
            );
        }
    }
    let fft = crate::ckks::fft::SpecialFft::new(8);
    assert!(enc
        .periodic_coefficients(&fft, &[C64::default(); 3])
        .is_err());
}

#[test]
fn wrong_key_set_is_refused() {
    let a = standard();
    let b = standard();
    let enc = Encoder::new(&a.ctx);
    let mut e = Encryptor::new(&a.ctx);
    let pt = enc.encode(&[0.5], 2f64.powi(40), 3).unwrap();
    let ct = e.encrypt_pk(&pt, &a.pk).unwrap();
    // b's keys were generated on a context with equal parameters but another secret.
    let ev = Evaluator::with_keys(&a.ctx, &b.keys).unwrap();
    assert!(matches!(ev.rotate(&ct, 1), Err(Error::KeySetMismatch(_))));
    assert!(matches!(
        Decryptor::new(&a.ctx, &b.sk).decrypt(&ct),
        Err(Error::KeySetMismatch(_))
    ));
}

#[test]
fn rescale_at_level_zero_is_an_error() {
    let s = setup(10, &[50], &[50], 1, &[]);
    let enc = Encoder::new(&s.ctx);
    let ct = Encryptor::new(&s.ctx)
        .encrypt_pk(&enc.encode(&[1.0], 2f64.powi(20), 0).unwrap(), &s.pk)
        .unwrap();
    let ev = Evaluator::with_keys(&s.ctx, &s.keys).unwrap();
    assert!(matches!(ev.rescale(&ct), Err(Error::LevelExhausted)));
}

/// The depth the compiler needs: 20 towers of ~2 log2(Delta) bits, each absorbing a
/// square (Delta^2) and a scalar product at a compensating scale (~Delta), so 40
/// multiplications, with the scale kept exactly at Delta after every rescale.
fn depth_chain(log_delta: i32, tower_bits: u32, base_bits: u32, min_bits: f64) {
    let mut q = vec![base_bits];
    q.extend(std::iter::repeat_n(tower_bits, 20));
    let s = setup(12, &q, &[tower_bits + 1], 21, &[]);
    let ctx = &s.ctx;
    let enc = Encoder::new(ctx);
    let d = Decryptor::new(ctx, &s.sk);
    let ev = Evaluator::with_keys(ctx, &s.keys).unwrap();
    let n = ctx.params().slots();
    let delta = 2f64.powi(log_delta);
    let mut want = values(n, 7);
    let mut ct = Encryptor::new(ctx)
        .encrypt_sk(&enc.encode(&want, delta, 20).unwrap(), &s.sk)
        .unwrap();
    for step in 0..20 {
        let level = ct.level();
        let q_l = ctx.q_modulus(level).value() as f64;
        let mut sq = ev.relinearize(&ev.square(&ct).unwrap()).unwrap();
        // Compensating scale: after the rescale the scale is Delta again, exactly.
        let c_scale = q_l * delta / sq.scale;
        ev.mul_const_assign(&mut sq, 0.5, c_scale).unwrap();
        ev.add_const_assign(&mut sq, 0.25).unwrap();
        ev.rescale_assign(&mut sq).unwrap();
        assert!(
            (sq.scale / delta - 1.0).abs() < 1e-9,
            "step {step}: scale drifted"
        );
        for w in want.iter_mut() {
            *w = 0.5 * *w * *w + 0.25;
        }
        ct = sq;
    }
    assert_eq!(ct.level(), 0);
    let b = bits(&d.decrypt(&ct).unwrap(), &want);
    assert!(
        b >= min_bits,
        "depth chain at Delta = 2^{log_delta}: {b:.1} bits"
    );
}

// Bounds from the noise model of ckks-selfcheck: each rescale adds rounding noise of
// sigma = sqrt(N) sqrt(2N/3) / sqrt(12) / Delta per slot (9.2e-4 at N = 2^12, Delta =
// 2^20); y -> y^2/2 + 1/4 contracts errors by 3/4, so sigma_total <= 4 sigma, and the
// max over 2048 slots stays below 6 sigma_total: 5.5 bits at 2^20, 11.5 bits at 2^26.
#[test]
fn depth_chain_40_multiplications_delta_2_20() {
    depth_chain(20, 40, 30, 5.5);
}

#[test]
fn depth_chain_40_multiplications_delta_2_26() {
    depth_chain(26, 52, 40, 11.5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn encode_decode_round_trip(seed in any::<u64>(), log_scale in 20i32..50, level in 0usize..4) {
        let params = Params::insecure_for_tests(10, &[60, 40, 40, 40], &[60], 4).unwrap();
        let ctx = Context::new(params).unwrap();
        let enc = Encoder::new(&ctx);
        let x = values(ctx.params().slots(), seed);
        let pt = enc.encode(&x, 2f64.powi(log_scale), level).unwrap();
        prop_assert!(bits(&enc.decode(&pt), &x) > (log_scale as f64 - 12.0).min(40.0));
    }
}

#[test]
fn rotation_composition() {
    // rot a then rot b == rot (a + b), for several pairs.
    let s = setup(11, &[60, 40], &[60], 2, &[1, 3, 4, 7, 10, -3]);
    let ctx = &s.ctx;
    let enc = Encoder::new(ctx);
    let d = Decryptor::new(ctx, &s.sk);
    let ev = Evaluator::with_keys(ctx, &s.keys).unwrap();
    let x = values(ctx.params().slots(), 8);
    let ct = Encryptor::new(ctx)
        .encrypt_pk(&enc.encode(&x, 2f64.powi(40), 1).unwrap(), &s.pk)
        .unwrap();
    for (a, b, c) in [(1i64, 3i64, 4i64), (3, 7, 10), (7, -3, 4), (4, -3, 1)] {
        let ab = ev.rotate(&ev.rotate(&ct, a).unwrap(), b).unwrap();
        let direct = ev.rotate(&ct, c).unwrap();
        assert_bits(&d.decrypt(&ab).unwrap(), &d.decrypt(&direct).unwrap(), 20.0);
    }
}
