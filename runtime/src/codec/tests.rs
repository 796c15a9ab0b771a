//! Round trips of every object through its file form, and refusal of foreign files.

use super::*;
use crate::ckks::tests::setup;
use crate::ckks::{Decryptor, Encoder, Encryptor, Evaluator};
use crate::error::Error;

#[test]
fn keys_and_ciphertexts_round_trip() {
    let s = setup(11, &[50, 40, 40], &[50], 3, &[1, -2]);
    let ctx = &s.ctx;
    let p = params_from_bytes(&params_to_bytes(ctx.params()).unwrap()).unwrap();
    assert_eq!(&p, ctx.params());

    let sk = secret_key_from_bytes(&secret_key_to_bytes(&s.sk).unwrap(), ctx).unwrap();
    let evk = eval_keys_to_bytes(&s.keys).unwrap();
    // The size is known without writing the file.
    assert_eq!(eval_keys_len(&s.keys).unwrap(), evk.len() as u64);
    let keys = eval_keys_from_bytes(&evk, ctx).unwrap();
    assert_eq!(keys, s.keys);
    let pk_bytes = public_key_to_bytes(&s.pk, ctx.params().id()).unwrap();
    let pk = public_key_from_bytes(&pk_bytes, ctx).unwrap();
    assert_eq!(pk, s.pk);

    let enc = Encoder::new(ctx);
    let x: Vec<f64> = (0..ctx.params().slots())
        .map(|i| (i as f64 * 0.01).sin())
        .collect();
    let pt = enc.encode(&x, 2f64.powi(35), 2).unwrap();
    let fresh = Encryptor::new(ctx).encrypt_sk(&pt, &sk).unwrap();
    let fresh_bytes = ciphertext_to_bytes(&fresh, ctx.params().id()).unwrap();
    let evaluated = Evaluator::with_keys(ctx, &keys)
        .unwrap()
        .rotate(&fresh, 1)
        .unwrap();
    let eval_bytes = ciphertext_to_bytes(&evaluated, ctx.params().id()).unwrap();
    // The seeded fresh ciphertext is about half the size of an evaluated one.
    assert!(
        fresh_bytes.len() * 10 < eval_bytes.len() * 6,
        "{} vs {}",
        fresh_bytes.len(),
        eval_bytes.len()
    );
    let back = ciphertext_from_bytes(&fresh_bytes, ctx).unwrap();
    assert_eq!(back, fresh);
    let rot = ciphertext_from_bytes(&eval_bytes, ctx).unwrap();
    let got = Decryptor::new(ctx, &s.sk).decrypt(&rot).unwrap();
    let n = x.len();
    assert!((0..n).all(|i| (got[i] - x[(i + 1) % n]).abs() < 1e-4));
}

#[test]
fn foreign_and_corrupt_files_are_refused() {
    let a = setup(10, &[50, 40], &[50], 2, &[1]);
    let b = setup(10, &[50, 45], &[50], 2, &[1]);
    let ka = eval_keys_to_bytes(&a.keys).unwrap();
    // Keys of another parameter set.
    assert!(matches!(
        eval_keys_from_bytes(&ka, &b.ctx),
        Err(Error::KeySetMismatch(_))
    ));
    // A secret key where evaluation keys are expected, and the reverse.
    let ska = secret_key_to_bytes(&a.sk).unwrap();
    assert!(matches!(
        eval_keys_from_bytes(&ska, &a.ctx),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        secret_key_from_bytes(&ka, &a.ctx),
        Err(Error::WrongKind { .. })
    ));
    // Truncation and bit flips.
    assert!(eval_keys_from_bytes(&ka[..ka.len() - 1], &a.ctx).is_err());
    let mut flipped = ka.clone();
    flipped[ka.len() / 2] ^= 0x10;
    assert!(matches!(
        eval_keys_from_bytes(&flipped, &a.ctx),
        Err(Error::Corrupt(_))
    ));
}

/// The secret key never travels with the evaluation keys: no 32-byte run of its encoded
/// coefficients appears in the bundle, the two files differ in kind, and the key's Debug
/// form shows nothing of it.
#[test]
fn eval_bundle_holds_no_secret_key_material() {
    let s = setup(11, &[50, 40, 40], &[50], 3, &[1, -2]);
    let sk_file = secret_key_to_bytes(&s.sk).unwrap();
    let evk_file = eval_keys_to_bytes(&s.keys).unwrap();
    // Header (64 bytes) + a length varint, then the N ternary coefficients.
    let coeffs = &sk_file[66..sk_file.len() - 32];
    assert_eq!(coeffs.len(), s.ctx.n());
    for window in coeffs.chunks_exact(32) {
        assert!(
            !evk_file.windows(32).any(|w| w == window),
            "secret-key bytes inside the evaluation keys"
        );
    }
    assert_ne!(sk_file[4], evk_file[4]);
    assert!(matches!(
        eval_keys_from_bytes(&sk_file, &s.ctx),
        Err(Error::WrongKind { .. })
    ));
    assert_eq!(format!("{:?}", s.sk), "SecretKey(<redacted>)");
}
