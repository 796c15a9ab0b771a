//! Ring arithmetic below CKKS: modular arithmetic, NTT-friendly primes, NTT plans,
//! RNS polynomials, basis conversion, CRT reconstruction, sampling and the sparse NTT of
//! periodic-slot plaintexts.

pub mod basis;
pub mod crt;
pub mod modulus;
pub mod ntt;
pub mod poly;
pub mod primes;
pub mod sampling;
pub mod simd;
pub mod sparse_ntt;
