//! NTT-friendly primes: deterministic Miller-Rabin for 64-bit integers and generation of
//! distinct primes q = 1 (mod 2N) of a requested bit size, largest first.

use crate::error::{Error, Result};

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((a as u128 * b as u128) % m as u128) as u64
}

fn pow_mod(mut b: u64, mut e: u64, m: u64) -> u64 {
    let mut r = 1u64 % m;
    b %= m;
    while e > 0 {
        if e & 1 == 1 {
            r = mul_mod(r, b, m);
        }
        b = mul_mod(b, b, m);
        e >>= 1;
    }
    r
}

/// Deterministic primality test for all 64-bit integers.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let (mut d, mut s) = (n - 1, 0);
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// `count` distinct primes of exactly `bits` bits with q = 1 mod 2n, largest first,
/// skipping any prime in `exclude`.
pub fn ntt_primes(bits: u32, n: usize, count: usize, exclude: &[u64]) -> Result<Vec<u64>> {
    let log_n = n.trailing_zeros();
    let fail = Error::NoPrimes { bits, count, log_n };
    if !(17..=61).contains(&bits) {
        return Err(fail);
    }
    let step = 2 * n as u64;
    let top = 1u64 << bits;
    let low = 1u64 << (bits - 1);
    // Largest candidate below 2^bits that is 1 mod 2n.
    let mut cand = (top - 1) / step * step + 1;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        if cand <= low {
            return Err(fail);
        }
        if is_prime(cand) && !exclude.contains(&cand) {
            out.push(cand);
        }
        cand -= step;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_ntt_friendly_and_distinct() {
        let n = 1 << 12;
        let ps = ntt_primes(40, n, 5, &[]).unwrap();
        for (i, &p) in ps.iter().enumerate() {
            assert!(is_prime(p));
            assert_eq!(p % (2 * n as u64), 1);
            assert_eq!(64 - p.leading_zeros(), 40);
            assert!(!ps[..i].contains(&p));
        }
        let more = ntt_primes(40, n, 2, &ps).unwrap();
        assert!(more.iter().all(|p| !ps.contains(p)));
    }

    #[test]
    fn miller_rabin_known_values() {
        assert!(is_prime(1_152_921_504_606_584_833)); // 2^60 - 2^14 + 1
        assert!(!is_prime(1_000_000_007 * 998_244_353));
        assert!(is_prime(18_446_744_073_709_551_557)); // largest 64-bit prime
        assert!(!is_prime(3_215_031_751)); // strong pseudoprime to bases 2,3,5,7
    }
}
