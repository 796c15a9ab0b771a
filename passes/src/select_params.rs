//! `select_params`: chooses the CKKS parameter set for a level plan (an analysis; the graph
//! is not changed): ring degree N = 2^log_n, scale Delta, the prime chain (base prime, one
//! ~2 log2(Delta)-bit tower per two levels), special primes and the number of key-switching
//! digits `dnum`, under the 128-bit bound on log2(QP) that the caller supplies (this crate
//! knows no CKKS internals; the compiler passes `runtime::ckks::security::max_log_qp_128`).
//!
//! Constraints: every prime <= 50 bits (the runtime's AVX-512 IFMA path); Delta >=
//! 2^(precision + range bits + margin); the base prime holds the output at its final scale
//! plus the output range; the special modulus P is at least as large as the largest
//! key-switching digit; log2(QP) = log2(Q) + log2(P) <= the bound (special primes count).
//!
//! Choice: for each admissible N and dnum, the largest Delta that fits; among those, the
//! lowest predicted time of a cost model of the program (its key switches: 3x3 conv = 8
//! hoisted rotations per input-channel ciphertext, one relinearisation per activation
//! ciphertext; its plaintext products and rescales; each at the level it runs at) plus a
//! key-memory term. Not simply the smallest N: a larger ring can allow fewer, larger digits
//! and cheaper key switches. The prediction is recorded in the result. `force_log_n` pins N.
//! When no N fits, the error names the first layer whose primes exceed what fits and the
//! log2(QP) the whole program would need.

use serde::Serialize;

use crate::assign_levels::LevelPlan;
use crate::ir::{Graph, Op};
use crate::pass::channels;

/// The 128-bit security table: largest log2(QP) per log2(N).
pub type SecurityTable<'a> = &'a dyn Fn(u32) -> Option<u32>;

/// Largest prime the parameter sets use (bits).
pub const MAX_PRIME_BITS: u32 = 50;

/// What the user asks of the parameters.
#[derive(Clone, Debug)]
pub struct ParamRequest {
    /// Bits of precision wanted in the decrypted outputs.
    pub precision_bits: u32,
    /// Largest absolute value of an activation input (the quadratic's fitted range).
    pub activation_range: f64,
    /// Largest absolute value of an output (logit).
    pub output_range: f64,
    pub force_log_n: Option<u32>,
    /// Smallest log_n to consider (slots needed by the layout).
    pub min_log_n: u32,
    /// Sets whose rescale noise leaves fewer bits per activation than this
    /// ([`noise_precision_bits`]) are taken only when no set reaches it (then the most
    /// precise one). Calibrated end to end: the trained ResNet-20 kept 2.8 bits on its
    /// logits at a predicted 3.5 (N = 2^15, Delta = 2^20).
    pub min_noise_bits: f64,
    /// Pins the number of key-switching digits (when a set with it fits).
    pub force_dnum: Option<u32>,
    /// Towers beyond the level plan's (the lowering asks for them where its weight scales
    /// spend more primes than the plan foresaw).
    pub extra_towers: u32,
}

impl Default for ParamRequest {
    fn default() -> Self {
        ParamRequest {
            precision_bits: 12,
            activation_range: 2.0,
            output_range: 256.0,
            force_log_n: None,
            min_log_n: 11,
            min_noise_bits: 6.0,
            force_dnum: None,
            extra_towers: 0,
        }
    }
}

/// What the program does, for the cost model.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Workload {
    /// Rotations, grouped by the ciphertext they rotate (hoisting shares one decomposition).
    pub rotations: u64,
    pub hoisted_groups: u64,
    pub relinearisations: u64,
    pub plaintext_products: u64,
    pub rescales: u64,
    /// Distinct rotation steps (one Galois key each) in the per-channel layout.
    pub rotation_keys: u64,
    /// (ops weighted by the primes alive when they run) for each kind, see `cost`.
    #[serde(skip)]
    pub per_level: Vec<LevelOps>,
}

/// Operation counts at one level (number of Q primes alive).
#[derive(Clone, Debug, Default)]
pub struct LevelOps {
    pub primes: u32,
    pub hoisted_groups: u64,
    pub rotations: u64,
    pub relins: u64,
    pub pt_products: u64,
    pub rescales: u64,
}

/// The model's prediction for a parameter set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Prediction {
    /// Seconds on one core (calibrated on tfhe-ntt: ~0.4 ns per butterfly, N/2 log2 N per
    /// NTT; 2^15 forward NTT ~100 us).
    pub seconds: f64,
    pub key_switches: u64,
    /// Bytes of one key-switching key, and of all keys (relinearisation + rotations).
    pub key_bytes: u64,
    pub all_keys_bytes: u64,
    /// Bytes of a fresh ciphertext.
    pub ciphertext_bytes: u64,
    /// Bits of precision per activation that the rescale noise leaves (a model, checked
    /// by runtime's ckks-selfcheck): each rescale adds r_0 + r_1 s with r uniform in
    /// [-1/2, 1/2] and s ternary, sigma = sqrt(N) sqrt(2N/3) / sqrt(12) per slot, so at
    /// 6 sigma and values up to the activation range the error is
    /// 2^(log2 N - 2.08 + 2.58 + range bits - log2 Delta).
    pub noise_precision_bits: f64,
}

/// Bits of precision a value in [-range, range] keeps at scale 2^log_delta and ring
/// degree 2^log_n after one rescale (see [`Prediction::noise_precision_bits`]).
pub fn noise_precision_bits(log_n: u32, log_delta: u32, range: f64) -> f64 {
    let n = (1u64 << log_n) as f64;
    let sigma = n.sqrt() * (2.0 * n / 3.0).sqrt() / 12f64.sqrt();
    log_delta as f64 - (6.0 * sigma).log2() - range.max(1.0).log2()
}

/// A chosen parameter set.
#[derive(Clone, Debug, Serialize)]
pub struct ParamSet {
    pub log_n: u32,
    pub log_delta: u32,
    /// Bit sizes of Q's primes, base first.
    pub primes: Vec<u32>,
    pub special_primes: Vec<u32>,
    pub dnum: u32,
    pub log_q: u32,
    pub log_qp: u32,
    /// The 128-bit bound at this N.
    pub max_log_qp: u32,
    pub prediction: Prediction,
    /// Other sets the model compared (log_n, dnum, log_delta, predicted seconds).
    pub considered: Vec<(u32, u32, u32, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error(
        "no 128-bit parameter set fits at N = 2^{log_n}: the prime budget runs out at layer \
         '{layer}' ({fit} of {need} towers fit with Delta = 2^{log_delta}); the program \
         needs log2(QP) = {need_log_qp} bits, the bound is {bound}"
    )]
    DoesNotFit {
        log_n: u32,
        layer: String,
        fit: u32,
        need: u32,
        log_delta: u32,
        need_log_qp: u32,
        bound: u32,
    },
    #[error("N = 2^{0} is not in the security table")]
    UnknownRing(u32),
    #[error("the precision target needs Delta = 2^{0}, but towers of 2 log2(Delta) bits must stay <= {MAX_PRIME_BITS} bits")]
    Precision(u32),
    #[error(
        "the precision target needs Delta = 2^{log_delta}: the output, left at Delta^{final_scale_exp} \
         with {output_bits} bits of range, would need a {base_bits}-bit base prime (at most \
         {MAX_PRIME_BITS}); ask for at most {max_precision_bits} bits of precision"
    )]
    OutputPrecision {
        log_delta: u32,
        final_scale_exp: u32,
        output_bits: u32,
        base_bits: u32,
        max_precision_bits: i64,
    },
}

fn log2_ceil(x: usize) -> u64 {
    (x.max(1) as f64).log2().ceil() as u64
}

/// Counts the program's operations in the per-channel layout (one ciphertext per channel,
/// pixel (i, j) at slot i W + j, no repacking after strides), each at its level.
pub fn workload(g: &Graph, plan: &LevelPlan) -> Workload {
    let mut w = Workload::default();
    let chain = plan.primes();
    let mut steps = std::collections::BTreeSet::new();
    let mut gap: std::collections::HashMap<_, i64> = std::collections::HashMap::new();
    let width = g
        .inputs()
        .first()
        .map(|&i| *g.node(i).shape.last().unwrap_or(&1) as i64)
        .unwrap_or(1);
    let mut levels: std::collections::BTreeMap<u32, LevelOps> = Default::default();
    for &id in &plan.order {
        let n = g.node(id);
        let nl = &plan.nodes[&id];
        let ins = g.inputs_of(id);
        let gin = ins.first().and_then(|i| gap.get(i)).copied().unwrap_or(1);
        let primes = chain - nl.primes_used.saturating_sub(nl.primes_consumed);
        let lv = levels.entry(primes).or_insert_with(|| LevelOps {
            primes,
            ..Default::default()
        });
        let cin = ins
            .first()
            .map(|&i| channels(&g.node(i).shape))
            .unwrap_or(1) as u64;
        let cout = channels(&n.shape) as u64;
        let mut gout = gin;
        match &n.op {
            Op::Conv(c) => {
                let ws = c.weight.shape();
                let (kh, kw) = (ws[2] as i64, ws[3] as i64);
                let r = (kh * kw - 1) as u64;
                if r > 0 {
                    lv.rotations += r * cin;
                    lv.hoisted_groups += cin;
                    for dy in 0..kh {
                        for dx in 0..kw {
                            let s = ((dy - c.pads[0] as i64) * width + dx - c.pads[1] as i64) * gin;
                            if s != 0 {
                                steps.insert(s);
                            }
                        }
                    }
                }
                lv.pt_products += cout * (ws[1] as u64) * (kh * kw) as u64;
                gout = gin * c.strides[0] as i64;
            }
            Op::SumPool(p) | Op::AveragePool(p) => {
                let r = 2 * log2_ceil(p.kernel[0]);
                lv.rotations += r * cout;
                lv.hoisted_groups += cout;
                for i in 0..log2_ceil(p.kernel[0]) {
                    steps.insert(gin << i);
                    steps.insert((gin << i) * width);
                }
                gout = gin * p.strides[0] as i64;
            }
            Op::GlobalSumPool | Op::GlobalAveragePool => {
                let s = &g.node(ins[0]).shape;
                let (h, wd) = (s[2], s[3]);
                lv.rotations += (log2_ceil(h) + log2_ceil(wd)) * cout;
                lv.hoisted_groups += cout;
                for i in 0..log2_ceil(wd) {
                    steps.insert(gin << i);
                }
                for i in 0..log2_ceil(h) {
                    steps.insert((gin << i) * width);
                }
            }
            Op::Gemm(gm) => {
                let k = g.node(ins[0]).shape[1] as u64;
                let nout = n.shape[1] as u64;
                lv.pt_products += k * nout;
                let _ = gm;
            }
            Op::Poly(_) if nl.monic.is_some() => {
                lv.relins += cout;
                lv.pt_products += cout;
            }
            Op::Poly(_) | Op::Mul | Op::Div | Op::BatchNorm(_) => lv.pt_products += cout,
            _ => {}
        }
        if nl.primes_consumed > 0 {
            lv.rescales += cout * nl.primes_consumed as u64;
        }
        gap.insert(id, gout);
    }
    w.rotation_keys = steps.len() as u64;
    for l in levels.into_values() {
        w.rotations += l.rotations;
        w.hoisted_groups += l.hoisted_groups;
        w.relinearisations += l.relins;
        w.plaintext_products += l.pt_products;
        w.rescales += l.rescales;
        w.per_level.push(l);
    }
    w
}

/// Predicted cost of `w` at one parameter set, in N log2 N "butterfly units".
fn cost(w: &Workload, log_n: u32, chain: u32, alpha: u32, k: u32) -> f64 {
    let n = (1u64 << log_n) as f64;
    let ntt = n * log_n as f64 / 2.0;
    let mut total = 0.0;
    for l in &w.per_level {
        let q = l.primes.min(chain) as f64;
        let digits = (q / alpha as f64).ceil();
        let ext = q + k as f64;
        // ModUp: INTT of the input, per digit a basis extension (alpha x ext mults per
        // coefficient) and NTTs over the new primes.
        let mod_up = q * ntt + digits * (alpha as f64 * ext * n + ext * ntt);
        // Inner product with the key (2 x digits x ext) and ModDown (2 x (k INTT + q NTT)).
        let inner = 2.0 * digits * ext * n;
        let mod_down = 2.0 * (k as f64 * ntt + k as f64 * q * n + q * ntt);
        let ks_one = inner + mod_down;
        total += l.hoisted_groups as f64 * mod_up + l.rotations as f64 * ks_one;
        total += l.relins as f64 * (mod_up + ks_one + 4.0 * q * n);
        total += l.pt_products as f64 * 2.0 * q * n;
        total += l.rescales as f64 * 2.0 * (ntt + q * (ntt + n));
    }
    total
}

/// Chooses the parameter set (see the module doc).
pub fn select(
    g: &Graph,
    plan: &LevelPlan,
    req: &ParamRequest,
    table: SecurityTable,
) -> Result<ParamSet, ParamError> {
    let w = workload(g, plan);
    let range_bits = |x: f64| x.max(1.0).log2().ceil() as u32;
    let min_delta = req.precision_bits + range_bits(req.activation_range) + 7;
    let max_delta = MAX_PRIME_BITS / 2;
    if min_delta > max_delta {
        return Err(ParamError::Precision(min_delta));
    }
    if chain_bits(plan, min_delta, req).is_none() {
        let output_bits = range_bits(req.output_range);
        let fse = plan.final_scale_exp.max(1);
        let d_max = (MAX_PRIME_BITS.saturating_sub(output_bits + 2) / fse) as i64;
        return Err(ParamError::OutputPrecision {
            log_delta: min_delta,
            final_scale_exp: plan.final_scale_exp,
            output_bits,
            base_bits: plan.final_scale_exp * min_delta + output_bits + 2,
            max_precision_bits: d_max - range_bits(req.activation_range) as i64 - 7,
        });
    }
    let towers = plan.towers;
    let chain = towers + 1;
    let candidates: Vec<u32> = match req.force_log_n {
        Some(l) => {
            table(l).ok_or(ParamError::UnknownRing(l))?;
            vec![l]
        }
        None => (req.min_log_n..=17)
            .filter(|&l| table(l).is_some())
            .collect(),
    };
    let mut best: Option<(f64, ParamSet)> = None;
    let mut considered = vec![];
    for &log_n in &candidates {
        let bound = table(log_n).unwrap();
        for dnum in 1..=chain {
            let alpha = chain.div_ceil(dnum);
            if chain.div_ceil(alpha) != dnum {
                continue; // same digits as a smaller dnum
            }
            if req.force_dnum.is_some_and(|f| f != dnum) {
                continue;
            }
            let fit = (min_delta..=max_delta).rev().find_map(|d| {
                let sizes = chain_bits(plan, d, req)?;
                let (special, qp) = special_for(&sizes, alpha);
                (qp <= bound).then_some((d, sizes, special, qp))
            });
            let Some((d, sizes, special, qp)) = fit else {
                continue;
            };
            let k = special.len() as u32;
            let units = cost(&w, log_n, chain, alpha, k);
            let n = 1u64 << log_n;
            let key_bytes = 2 * dnum as u64 * (chain + k) as u64 * n * 8;
            let keys = w.rotation_keys + 1;
            let seconds = units * 0.4e-9;
            // Key memory beyond 16 GiB is charged as if it were time (swap, cache misses).
            let mem_penalty = ((key_bytes * keys) as f64 / (16u64 << 30) as f64 - 1.0).max(0.0);
            let score = seconds * (1.0 + mem_penalty);
            considered.push((log_n, dnum, d, seconds));
            let set = ParamSet {
                log_n,
                log_delta: d,
                log_q: sizes.iter().sum(),
                primes: sizes,
                special_primes: special,
                dnum,
                log_qp: qp,
                max_log_qp: bound,
                prediction: Prediction {
                    seconds,
                    key_switches: w.rotations + w.relinearisations,
                    key_bytes,
                    all_keys_bytes: key_bytes * keys,
                    ciphertext_bytes: 2 * chain as u64 * n * 8,
                    noise_precision_bits: noise_precision_bits(log_n, d, req.activation_range),
                },
                considered: vec![],
            };
            let bits = set.prediction.noise_precision_bits;
            let ok = bits >= req.min_noise_bits;
            let better = match &best {
                None => true,
                Some((s, b)) => {
                    let b_bits = b.prediction.noise_precision_bits;
                    let b_ok = b_bits >= req.min_noise_bits;
                    if ok != b_ok {
                        ok
                    } else if !ok {
                        bits > b_bits + 1e-9 || (bits >= b_bits - 1e-9 && score < *s)
                    } else {
                        score < *s * 0.999 || (score <= *s * 1.001 && d > b.log_delta)
                    }
                }
            };
            if better {
                best = Some((score, set));
            }
        }
    }
    match best {
        Some((_, mut set)) => {
            set.considered = considered;
            Ok(set)
        }
        None => Err(no_fit(
            g,
            plan,
            req,
            min_delta,
            *candidates.last().unwrap_or(&17),
            table,
        )),
    }
}

/// Q's prime sizes for Delta = 2^d: base first, then the towers.
fn chain_bits(plan: &LevelPlan, d: u32, req: &ParamRequest) -> Option<Vec<u32>> {
    let base = plan.final_scale_exp * d + (req.output_range.max(1.0).log2().ceil() as u32) + 2;
    if base > MAX_PRIME_BITS {
        return None;
    }
    let mut v = vec![base.max(d + 2)];
    v.extend(std::iter::repeat_n(2 * d, plan.towers as usize));
    Some(v)
}

/// Special primes for digits of `alpha` primes, and the resulting log2(QP).
fn special_for(sizes: &[u32], alpha: u32) -> (Vec<u32>, u32) {
    let max_digit: u32 = sizes
        .chunks(alpha as usize)
        .map(|c| c.iter().sum::<u32>())
        .max()
        .unwrap_or(0);
    let k = max_digit.div_ceil(MAX_PRIME_BITS);
    let each = max_digit.div_ceil(k);
    let special = vec![each; k as usize];
    let qp = sizes.iter().sum::<u32>() + each * k;
    (special, qp)
}

fn no_fit(
    g: &Graph,
    plan: &LevelPlan,
    req: &ParamRequest,
    d: u32,
    log_n: u32,
    table: SecurityTable,
) -> ParamError {
    let bound = table(log_n).unwrap_or(0);
    let sizes = chain_bits(plan, d, req).unwrap_or_else(|| vec![MAX_PRIME_BITS]);
    let tower = 2 * d;
    // With one prime per digit: QP = base + t * tower + tower (one special prime).
    let fit = (bound.saturating_sub(sizes[0] + tower) / tower).min(plan.towers);
    let layer = plan
        .order
        .iter()
        .find(|i| plan.nodes[i].primes_used > fit)
        .map(|&i| g.node(i).name.clone())
        .unwrap_or_else(|| "<input>".into());
    let (_, need) = special_for(&sizes, 1);
    ParamError::DoesNotFit {
        log_n,
        layer,
        fit,
        need: plan.towers,
        log_delta: d,
        need_log_qp: need,
        bound,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn noise_model_matches_the_runtime_self_check() {
        // ckks-selfcheck measures 4.9 bits (max error over 16384 slots, values < 1) at
        // N = 2^15, Delta = 2^20; the 6-sigma model must not promise more.
        let b = noise_precision_bits(15, 20, 1.0);
        assert!((4.0..5.0).contains(&b), "{b}");
        assert!(noise_precision_bits(16, 20, 1.0) < b);
        assert!(noise_precision_bits(15, 21, 1.0) > b);
        assert!(noise_precision_bits(15, 20, 4.0) < b - 1.9);
    }
    use super::*;

    fn table(l: u32) -> Option<u32> {
        [27, 54, 109, 218, 438, 881, 1747, 3523]
            .get(l.checked_sub(10)? as usize)
            .copied()
    }

    fn plan(towers: u32) -> LevelPlan {
        LevelPlan {
            towers,
            final_scale_exp: 1,
            units: 2 * towers,
            depth: 2 * towers - 1,
            ..Default::default()
        }
    }

    #[test]
    fn twenty_one_primes_at_2_15_need_delta_20() {
        let g = Graph::new();
        let req = ParamRequest {
            force_log_n: Some(15),
            ..Default::default()
        };
        let p = select(&g, &plan(20), &req, &table).unwrap();
        assert_eq!(p.log_delta, 20);
        assert_eq!(p.primes.len(), 21);
        assert_eq!(p.primes[0], 30);
        assert!(p.primes[1..].iter().all(|&b| b == 40));
        assert_eq!(p.special_primes, vec![40]);
        assert_eq!(p.dnum, 21);
        assert!(p.log_qp <= 881, "{}", p.log_qp);
    }

    #[test]
    fn every_prime_at_most_50_bits_and_p_covers_digits() {
        let g = Graph::new();
        for towers in [8, 16, 20, 32, 40] {
            let p = select(&g, &plan(towers), &ParamRequest::default(), &table).unwrap();
            assert!(p.primes.iter().chain(&p.special_primes).all(|&b| b <= 50));
            let alpha = (towers + 1).div_ceil(p.dnum) as usize;
            let max_digit: u32 = p
                .primes
                .chunks(alpha)
                .map(|c| c.iter().sum())
                .max()
                .unwrap();
            assert!(p.special_primes.iter().sum::<u32>() >= max_digit);
            assert!(p.log_qp <= table(p.log_n).unwrap());
        }
    }

    #[test]
    fn too_deep_names_the_layer() {
        let g = Graph::new();
        let req = ParamRequest {
            force_log_n: Some(13),
            ..Default::default()
        };
        let e = select(&g, &plan(20), &req, &table).unwrap_err();
        assert!(
            matches!(e, ParamError::DoesNotFit { bound: 218, .. }),
            "{e}"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn table(l: u32) -> Option<u32> {
        [27, 54, 109, 218, 438, 881, 1747, 3523]
            .get(l.checked_sub(10)? as usize)
            .copied()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the depth, a chosen set respects every constraint, and a failure is
        /// only reported when even N = 2^17 cannot hold the chain.
        #[test]
        fn chosen_sets_respect_the_constraints(towers in 0u32..70, e in 1u32..3, prec in 6u32..16) {
            let plan = LevelPlan { towers, final_scale_exp: e, units: 2 * towers, ..Default::default() };
            let req = ParamRequest { precision_bits: prec, ..Default::default() };
            match select(&Graph::new(), &plan, &req, &table) {
                Ok(p) => {
                    prop_assert_eq!(p.primes.len() as u32, towers + 1);
                    prop_assert!(p.log_qp <= table(p.log_n).unwrap());
                    prop_assert!(p.primes.iter().chain(&p.special_primes).all(|&b| b <= MAX_PRIME_BITS));
                    prop_assert!(p.log_delta >= prec + 1 + 7);
                    let alpha = p.primes.len().div_ceil(p.dnum as usize);
                    let digit: u32 = p.primes.chunks(alpha).map(|c| c.iter().sum()).max().unwrap();
                    prop_assert!(p.special_primes.iter().sum::<u32>() >= digit);
                    prop_assert!(p.primes[1..].iter().all(|&b| b == 2 * p.log_delta));
                }
                Err(ParamError::DoesNotFit { .. }) => {
                    let d = prec + 1 + 7;
                    let base = e * d + 10;
                    prop_assert!(base <= MAX_PRIME_BITS && base + (towers + 1) * 2 * d > 3523);
                }
                Err(ParamError::OutputPrecision { base_bits, max_precision_bits, .. }) => {
                    prop_assert_eq!(base_bits, e * (prec + 1 + 7) + 10);
                    prop_assert!(base_bits > MAX_PRIME_BITS);
                    prop_assert!(max_precision_bits < prec as i64);
                    // The precision it names does fit the base prime.
                    let d = (max_precision_bits + 8).max(0) as u32;
                    prop_assert!(e * d + 10 <= MAX_PRIME_BITS);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
