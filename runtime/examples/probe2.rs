use runtime::ckks::*;
use std::time::Instant;
fn main() {
    runtime::sys::tune_allocator();
    let logn: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let op = std::env::args().nth(2).unwrap_or("mul_plain".into());
    let mut q = vec![60u32]; q.extend(std::iter::repeat_n(40, 20));
    let params = Params::new(logn, &q, &[50; 6], 3).unwrap();
    let ctx = Context::new(params).unwrap();
    let top = ctx.max_level();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let pk = kg.public_key(&sk).unwrap();
    let keys = kg.eval_keys(&sk, Some(top), &[(ctx.rotation_galois_element(1), top)]).unwrap();
    let enc = Encoder::new(&ctx);
    let ev = Evaluator::with_keys(&ctx, &keys).unwrap();
    let x = vec![0.5; ctx.params().slots()];
    let px = enc.encode(&x, 2f64.powi(40), top).unwrap();
    let cx = Encryptor::new(&ctx).encrypt_pk(&px, &pk).unwrap();
    let prod = ev.mul(&cx, &cx).unwrap();
    let reps: usize = std::env::args().nth(3).and_then(|a| a.parse().ok()).unwrap_or(20);
    let t0 = Instant::now();
    for _ in 0..reps {
        match op.as_str() {
            "mul_plain" => { std::hint::black_box(ev.mul_plain(&cx, &px).unwrap()); }
            "relin" => { std::hint::black_box(ev.relinearize(&prod).unwrap()); }
            "rescale" => { std::hint::black_box(ev.rescale(&cx).unwrap()); }
            "encode" => { std::hint::black_box(enc.encode(&x, 2f64.powi(40), top).unwrap()); }
            _ => {}
        }
    }
    eprintln!("{op}: {:.2} ms", t0.elapsed().as_secs_f64() / reps as f64 * 1e3);
}
