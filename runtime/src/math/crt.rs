//! CRT reconstruction of RNS coefficients to centred real numbers (Garner's mixed-radix
//! algorithm), used when decrypting.
//!
//! The mixed-radix digits are exact, the sign is decided exactly by comparing them with
//! those of floor(Q/2), and only the final evaluation of the digits is done in f64.

use crate::math::modulus::Modulus;

/// Tables for reconstructing from a fixed list of primes.
pub struct CrtReconstructor {
    moduli: Vec<Modulus>,
    /// `inv[i][j]` = q_j^-1 mod q_i for j < i.
    inv: Vec<Vec<u64>>,
    half_digits: Vec<u64>,
}

impl CrtReconstructor {
    pub fn new(moduli: &[Modulus]) -> Self {
        let inv: Vec<Vec<u64>> = moduli
            .iter()
            .enumerate()
            .map(|(i, mi)| {
                (0..i)
                    .map(|j| mi.inv(mi.reduce_u64(moduli[j].value())))
                    .collect()
            })
            .collect();
        let mut r = CrtReconstructor {
            moduli: moduli.to_vec(),
            inv,
            half_digits: Vec::new(),
        };
        // floor(Q/2) = (Q-1)/2 = -1/2 mod every q_i, i.e. residue (q_i - 1)/2.
        let half: Vec<u64> = moduli.iter().map(|m| (m.value() - 1) / 2).collect();
        let mut digits = vec![0u64; moduli.len()];
        r.digits(&half, &mut digits);
        r.half_digits = digits;
        r
    }

    #[allow(clippy::needless_range_loop)]
    fn digits(&self, residues: &[u64], out: &mut [u64]) {
        for i in 0..self.moduli.len() {
            let m = &self.moduli[i];
            let mut v = residues[i];
            for j in 0..i {
                v = m.mul(m.sub(v, m.reduce_u64(out[j])), self.inv[i][j]);
            }
            out[i] = v;
        }
    }

    fn evaluate(&self, digits: &[u64]) -> f64 {
        let k = digits.len();
        let mut acc = digits[k - 1] as f64;
        for i in (0..k - 1).rev() {
            acc = acc * self.moduli[i].value() as f64 + digits[i] as f64;
        }
        acc
    }

    /// The centred value (in (-Q/2, Q/2]) of the integer with the given residues.
    pub fn centered(&self, residues: &[u64], scratch: &mut Vec<u64>) -> f64 {
        let k = self.moduli.len();
        scratch.resize(k, 0);
        self.digits(residues, scratch);
        let mut above_half = false;
        for i in (0..k).rev() {
            if scratch[i] != self.half_digits[i] {
                above_half = scratch[i] > self.half_digits[i];
                break;
            }
        }
        if !above_half {
            return self.evaluate(scratch);
        }
        let neg: Vec<u64> = residues
            .iter()
            .zip(&self.moduli)
            .map(|(&r, m)| m.neg(r))
            .collect();
        self.digits(&neg, scratch);
        -self.evaluate(scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_primes;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn crt_reconstructs_signed_values(x in any::<i64>(), y in any::<i32>()) {
            let ps = ntt_primes(40, 1 << 10, 3, &[]).unwrap();
            let moduli: Vec<Modulus> = ps.iter().map(|&p| Modulus::new(p)).collect();
            let crt = CrtReconstructor::new(&moduli);
            let v = x as i128 * y as i128;
            let residues: Vec<u64> = moduli.iter().map(|m| m.from_i128(v)).collect();
            let got = crt.centered(&residues, &mut Vec::new());
            prop_assert!((got - v as f64).abs() <= (v as f64).abs() * 1e-15 + 1e-9);
        }
    }
}
