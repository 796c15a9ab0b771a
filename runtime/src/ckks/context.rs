//! Everything precomputed from a parameter set: NTT plans of all primes, the order of the
//! NTT evaluation points (for Galois permutations), the special FFT, rescaling and
//! key-switching constants, basis converters for every level and digit, and CRT tables.
//!
//! Limb order convention: a polynomial at level l over Q holds the primes q_0..q_l; one
//! over QP holds q_0..q_l followed by all special primes p_0..p_(k-1).

use crate::ckks::fft::SpecialFft;
use crate::ckks::params::Params;
use crate::error::{Error, Result};
use crate::math::basis::BasisConverter;
use crate::math::crt::CrtReconstructor;
use crate::math::modulus::Modulus;
use crate::math::ntt::{galois_permutation, NttTable};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The ModUp converter of one digit at one level.
pub struct DigitConverter {
    /// Q-limb range of the digit.
    pub start: usize,
    pub end: usize,
    /// Converter from the digit's primes to the other primes of Q_l followed by P.
    pub conv: BasisConverter,
    /// For each output limb of `conv`, its index in the QP-limb order of level l.
    pub targets: Vec<usize>,
}

/// Precomputed state for one parameter set; shared by every CKKS object built on it.
pub struct Context {
    params: Params,
    tables: Vec<NttTable>,
    exponents: Vec<u32>,
    fft: SpecialFft,
    /// `rescale_inv[l][i]` = q_l^-1 mod q_i (i < l), with its Shoup constant.
    rescale_inv: Vec<Vec<(u64, u64)>>,
    /// P^-1 mod q_i with its Shoup constant.
    p_inv: Vec<(u64, u64)>,
    /// P mod q_i.
    p_mod_q: Vec<u64>,
    p_to_q: BasisConverter,
    modup: Vec<Vec<DigitConverter>>,
    crt: Vec<CrtReconstructor>,
    galois: RwLock<HashMap<u64, Arc<Vec<u32>>>>,
}

impl Context {
    pub fn new(params: Params) -> Result<Arc<Self>> {
        params.validate()?;
        let n = params.n();
        let tables = params
            .q()
            .iter()
            .chain(params.p())
            .map(|&x| NttTable::new(n, x))
            .collect::<Result<Vec<_>>>()?;
        let exponents = tables[0].root_exponents()?;
        for t in &tables[1..] {
            if t.root_exponents()? != exponents {
                return Err(Error::InvalidParams(
                    "NTT plans order their evaluation points differently".into(),
                ));
            }
        }
        let qm: Vec<Modulus> = params.q().iter().map(|&x| Modulus::new(x)).collect();
        let pm: Vec<Modulus> = params.p().iter().map(|&x| Modulus::new(x)).collect();
        let rescale_inv = (0..qm.len())
            .map(|l| {
                (0..l)
                    .map(|i| {
                        let v = qm[i].inv(qm[i].reduce_u64(qm[l].value()));
                        (v, qm[i].shoup(v))
                    })
                    .collect()
            })
            .collect();
        let p_mod_q: Vec<u64> = qm
            .iter()
            .map(|m| {
                pm.iter()
                    .fold(1u64, |acc, p| m.mul(acc, m.reduce_u64(p.value())))
            })
            .collect();
        let p_inv = qm
            .iter()
            .zip(&p_mod_q)
            .map(|(m, &pq)| {
                let v = m.inv(pq);
                (v, m.shoup(v))
            })
            .collect();
        let p_to_q = BasisConverter::new(&pm, &qm);
        let alpha = params.alpha();
        let modup = (0..qm.len())
            .map(|l| {
                (0..=l)
                    .step_by(alpha)
                    .map(|start| {
                        let end = (start + alpha).min(l + 1);
                        let mut targets: Vec<usize> =
                            (0..=l).filter(|&i| i < start || i >= end).collect();
                        targets.extend((0..pm.len()).map(|j| l + 1 + j));
                        let to: Vec<Modulus> = targets
                            .iter()
                            .map(|&t| if t <= l { qm[t] } else { pm[t - l - 1] })
                            .collect();
                        DigitConverter {
                            start,
                            end,
                            conv: BasisConverter::new(&qm[start..end], &to),
                            targets,
                        }
                    })
                    .collect()
            })
            .collect();
        let crt = (1..=qm.len())
            .map(|k| CrtReconstructor::new(&qm[..k]))
            .collect();
        Ok(Arc::new(Context {
            fft: SpecialFft::new(n),
            params,
            tables,
            exponents,
            rescale_inv,
            p_inv,
            p_mod_q,
            p_to_q,
            modup,
            crt,
            galois: RwLock::new(HashMap::new()),
        }))
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn n(&self) -> usize {
        self.params.n()
    }
    pub fn max_level(&self) -> usize {
        self.params.max_level()
    }
    pub fn special_count(&self) -> usize {
        self.params.p().len()
    }
    pub fn fft(&self) -> &SpecialFft {
        &self.fft
    }

    /// NTT tables of q_0..q_level.
    pub fn q_tables(&self, level: usize) -> Vec<&NttTable> {
        self.tables[..=level].iter().collect()
    }
    /// NTT tables of the special primes.
    pub fn p_tables(&self) -> Vec<&NttTable> {
        self.tables[self.params.q().len()..].iter().collect()
    }
    /// NTT tables of q_0..q_level followed by the special primes.
    pub fn qp_tables(&self, level: usize) -> Vec<&NttTable> {
        let mut t = self.q_tables(level);
        t.extend(self.p_tables());
        t
    }
    pub fn q_modulus(&self, i: usize) -> &Modulus {
        self.tables[i].modulus()
    }
    pub fn rescale_inv(&self, level: usize) -> &[(u64, u64)] {
        &self.rescale_inv[level]
    }
    pub fn p_inv_mod_q(&self) -> &[(u64, u64)] {
        &self.p_inv
    }
    pub fn p_mod_q(&self) -> &[u64] {
        &self.p_mod_q
    }
    pub fn p_to_q(&self) -> &BasisConverter {
        &self.p_to_q
    }
    pub fn digit_converters(&self, level: usize) -> &[DigitConverter] {
        &self.modup[level]
    }
    /// CRT tables for the first `k` primes of Q.
    pub fn crt(&self, k: usize) -> &CrtReconstructor {
        &self.crt[k - 1]
    }

    /// The NTT-domain permutation of X -> X^g (cached).
    pub fn galois_permutation(&self, g: u64) -> Arc<Vec<u32>> {
        if let Some(p) = self.galois.read().ok().and_then(|m| m.get(&g).cloned()) {
            return p;
        }
        let perm = Arc::new(galois_permutation(&self.exponents, g));
        if let Ok(mut m) = self.galois.write() {
            m.insert(g, perm.clone());
        }
        perm
    }

    /// Galois element of a left rotation by `steps` slots (negative: right).
    pub fn rotation_galois_element(&self, steps: i64) -> u64 {
        let two_n = 2 * self.n() as u64;
        let slots = self.params.slots() as i64;
        let k = steps.rem_euclid(slots) as u64;
        let m = Modulus::new(two_n);
        m.pow(5, k)
    }

    /// Galois element of complex conjugation.
    pub fn conjugation_galois_element(&self) -> u64 {
        2 * self.n() as u64 - 1
    }
}
