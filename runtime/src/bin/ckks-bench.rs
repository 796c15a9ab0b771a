//! Per-operation CKKS benchmark, one JSON line per op in the format of the peers' bench
//! (`../shared/bench/peer_ops.py`), so `compare.py` can pair them:
//!
//!   cargo run --release -p runtime --bin ckks-bench -- 13 14 15 16
//!
//! Parameters for 2^logn: one 60-bit prime + L 40-bit primes (L = 5, 8, 14, 20 for
//! 2^13..2^16), scale 2^40, fresh ciphertexts at the top level, single thread; hybrid key
//! switching with 3 digits and special primes of at most 50 bits covering the largest
//! digit. The 2^13 and 2^14 sets exceed the 128-bit bound (as the peers' do: they switch
//! the check off), so they are built through `Params::insecure_for_tests` and labelled.

use runtime::ckks::{Context, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Params};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    std::hint::black_box(f());
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (c0, w0) = (cpu_seconds(), Instant::now());
        std::hint::black_box(f());
        wall.push(w0.elapsed().as_secs_f64() * 1e3);
        cpu.push((cpu_seconds() - c0) * 1e3);
    }
    (median(cpu), median(wall))
}

/// The benchmark's parameter set for 2^logn.
pub fn bench_params(logn: u32) -> Result<(Params, usize), runtime::Error> {
    let levels = match logn {
        13 => 5,
        14 => 8,
        15 => 14,
        _ => 20,
    };
    let mut q = vec![60u32];
    q.extend(std::iter::repeat_n(40, levels));
    let dnum = 3.min(q.len());
    let alpha = q.len().div_ceil(dnum);
    let digit_bits: u32 = q[..alpha].iter().sum();
    let k = digit_bits.div_ceil(50);
    let p = vec![digit_bits.div_ceil(k as u32); k as usize];
    let params = if runtime::ckks::security::max_log_qp_128(logn)
        .is_some_and(|lim| q.iter().chain(&p).sum::<u32>() <= lim)
    {
        Params::new(logn, &q, &p, dnum)?
    } else {
        Params::insecure_for_tests(logn, &q, &p, dnum)?
    };
    Ok((params, levels))
}

fn run(logn: u32) -> Result<(), runtime::Error> {
    let (params, levels) = bench_params(logn)?;
    let reps = match logn {
        13 => 30,
        14 => 20,
        15 => 10,
        _ => 7,
    };
    let security = if params.is_insecure_for_tests() {
        "\"insecure_for_tests\""
    } else {
        "128"
    };
    let ctx = Context::new(params)?;
    let top = ctx.max_level();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let pk = kg.public_key(&sk)?;
    let g1 = ctx.rotation_galois_element(1);
    let keys = kg.eval_keys(&sk, Some(top), &[(g1, top)])?;
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::new(&ctx);
    let dec = Decryptor::new(&ctx, &sk);
    let ev = Evaluator::with_keys(&ctx, &keys)?;
    let slots = ctx.params().slots();
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let x: Vec<f64> = (0..slots).map(|_| rnd()).collect();
    let y: Vec<f64> = (0..slots).map(|_| rnd()).collect();
    let scale = 2f64.powi(40);
    let px = enc.encode(&x, scale, top)?;
    let py = enc.encode(&y, scale, top)?;
    let cx = encryptor.encrypt_pk(&px, &pk)?;
    let cy = encryptor.encrypt_pk(&py, &pk)?;
    let prod = ev.mul(&cx, &cy)?;
    let lin = ev.relinearize(&prod)?;

    let results: Vec<(&str, (f64, f64))> = vec![
        ("encode", time(reps, || enc.encode(&x, scale, top))),
        ("encrypt", time(reps, || encryptor.encrypt_pk(&px, &pk))),
        ("add", time(reps, || ev.add(&cx, &cy))),
        ("mul_plain", time(reps, || ev.mul_plain(&cx, &py))),
        ("mul", time(reps, || ev.mul(&cx, &cy))),
        ("relin", time(reps, || ev.relinearize(&prod))),
        ("rescale", time(reps, || ev.rescale(&lin))),
        ("rotate", time(reps, || ev.rotate(&cx, 1))),
        ("decrypt", time(reps, || dec.decrypt(&cx))),
    ];
    for (op, (cpu, wall)) in results {
        println!(
            "{{\"lib\":\"ours\",\"logn\":{logn},\"levels\":{levels},\"op\":\"{op}\",\"cpu_ms\":{cpu:.4},\"wall_ms\":{wall:.4},\"reps\":{reps},\"security\":{security}}}"
        );
    }
    let rot = ev.rotate(&ev.rescale(&lin)?, 1)?;
    let got = dec.decrypt(&rot)?;
    let err = (0..slots)
        .map(|i| (got[i] - x[(i + 1) % slots] * y[(i + 1) % slots]).abs())
        .fold(0f64, f64::max);
    println!(
        "{{\"lib\":\"ours\",\"logn\":{logn},\"levels\":{levels},\"op\":\"max_abs_error\",\"value\":{err:e},\"security\":{security}}}"
    );
    Ok(())
}

fn main() {
    runtime::sys::tune_allocator();
    let logns: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let logns = if logns.is_empty() {
        vec![14, 16]
    } else {
        logns
    };
    for logn in logns {
        if let Err(e) = run(logn) {
            eprintln!("ckks-bench: 2^{logn}: {e}");
            std::process::exit(1);
        }
    }
}
