use runtime::math::ntt::NttTable;
use runtime::math::primes::ntt_primes;
use runtime::math::modulus::Modulus;
use std::time::Instant;
fn main() {
    let n = 1 << 16;
    for bits in [40u32, 50, 60] {
        let q = ntt_primes(bits, n, 1, &[]).unwrap()[0];
        let t = NttTable::new(n, q).unwrap();
        let m = Modulus::new(q);
        let a: Vec<u64> = (0..n as u64).map(|i| (i * 7919) % q).collect();
        let b: Vec<u64> = (0..n as u64).map(|i| (i * 104729 + 1) % q).collect();
        let mut acc = vec![0u64; n];
        let reps = 200;
        let t0 = Instant::now();
        for _ in 0..reps { t.mul_accumulate(&mut acc, &a, &b); }
        let mulacc = t0.elapsed().as_secs_f64() / reps as f64 * 1e6;
        let t0 = Instant::now();
        for _ in 0..reps { for (x, (&y, &z)) in acc.iter_mut().zip(a.iter().zip(&b)) { *x = m.mul(y, z); } }
        let scalar = t0.elapsed().as_secs_f64() / reps as f64 * 1e6;
        let mut c = a.clone();
        let t0 = Instant::now();
        for _ in 0..reps { t.forward(&mut c); }
        let fwd = t0.elapsed().as_secs_f64() / reps as f64 * 1e6;
        let t0 = Instant::now();
        for _ in 0..reps { t.inverse(&mut c); }
        let inv = t0.elapsed().as_secs_f64() / reps as f64 * 1e6;
        let t0 = Instant::now();
        for _ in 0..reps { for (x, &y) in acc.iter_mut().zip(&a) { *x = m.add(*x, y); } }
        let add = t0.elapsed().as_secs_f64() / reps as f64 * 1e6;
        println!("{bits}-bit N=2^16: mul_acc {mulacc:.0} us, scalar mul {scalar:.0} us, fwd {fwd:.0} us, inv {inv:.0} us, add {add:.0} us");
    }
}
