//! CKKS self-check at the compiler's 128-bit ResNet-20 parameter set (N = 2^15, a 30-bit
//! base prime, twenty 40-bit towers, one 40-bit special prime, Delta = 2^20): a chain of
//! 20 levels, each a square plus a scalar product at a compensating scale (40
//! multiplications), decrypted and compared with the same computation in f64.
//!
//!   cargo run --release -p runtime --bin ckks-selfcheck
//!
//! Noise model: every rescale adds the rounding error r_0 + r_1 s (r uniform in
//! [-1/2, 1/2], s ternary), of standard deviation sqrt(N) * sqrt(2N/3) / sqrt(12) per slot,
//! i.e. 2^-7.1 at Delta = 2^20, N = 2^15; the map y -> y^2/4 + 1/2 contracts errors by
//! at most 3/8 per level, so the final error has sigma <= 1.6 times that. The check fails
//! (non-zero exit) if the max error over all slots exceeds 6 sigma of the model.

use runtime::ckks::{Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Params};
use std::time::Instant;

fn main() -> Result<(), runtime::Error> {
    runtime::sys::tune_allocator();
    let mut q = vec![30u32];
    q.extend(std::iter::repeat_n(40, 20));
    let params = Params::new(15, &q, &[40], 21)?;
    println!(
        "parameters: N = 2^15, log QP = {:.1} (128-bit limit 881), security {:?} bits",
        params.log_qp(),
        params.security_bits()
    );
    let t0 = Instant::now();
    let ctx = Context::new(params)?;
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let keys = kg.eval_keys(&sk, Some(ctx.max_level()), &[])?;
    println!(
        "keygen: {:.2} s, relinearisation key {:.1} MiB (seeded)",
        t0.elapsed().as_secs_f64(),
        keys.seeded_bytes() as f64 / (1 << 20) as f64
    );
    let enc = Encoder::new(&ctx);
    let ev = Evaluator::with_keys(&ctx, &keys)?;
    let slots = ctx.params().slots();
    let delta = 2f64.powi(20);
    let mut want: Vec<f64> = (0..slots).map(|i| ((i as f64) * 0.37).sin()).collect();
    let mut ct =
        Encryptor::new(&ctx).encrypt_sk(&enc.encode(&want, delta, ctx.max_level())?, &sk)?;
    let t1 = Instant::now();
    while ct.level() > 0 {
        let q_l = ctx.q_modulus(ct.level()).value() as f64;
        let mut sq = ev.relinearize(&ev.square(&ct)?)?;
        let c_scale = q_l * delta / sq.scale;
        ev.mul_const_assign(&mut sq, 0.25, c_scale)?;
        ev.add_const_assign(&mut sq, 0.5)?;
        ev.rescale_assign(&mut sq)?;
        ct = sq;
        for w in want.iter_mut() {
            *w = 0.25 * *w * *w + 0.5;
        }
    }
    let got = Decryptor::new(&ctx, &sk).decrypt(&ct)?;
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f64, f64::max);
    let bits = -err.log2();
    println!(
        "20 levels (40 multiplications) in {:.2} s: max error {err:.3e} = {bits:.1} bits of precision",
        t1.elapsed().as_secs_f64()
    );
    let n = ctx.n() as f64;
    let sigma = n.sqrt() * (2.0 * n / 3.0).sqrt() / 12f64.sqrt() / delta / (1.0 - 0.375);
    let bound = 6.0 * sigma;
    println!(
        "noise model: sigma {sigma:.2e}, bound 6 sigma = {bound:.3e} ({:.1} bits)",
        -bound.log2()
    );
    if err > bound {
        eprintln!("self-check FAILED: error above the noise model's bound");
        std::process::exit(1);
    }
    println!("self-check passed");
    Ok(())
}
