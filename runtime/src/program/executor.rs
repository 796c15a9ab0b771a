//! Runs a [`Program`] on encrypted inputs with evaluation keys only (the server side).
//!
//! Before anything runs, the key bundle is checked against the parameters and against the
//! program's derived [`KeyRequirements`]. `Linear` streams its inputs: for each input it
//! computes all rotations from one hoisted decomposition, adds their contributions to
//! every output (in parallel over outputs) with a fused, lazily reduced multiply-
//! accumulate of integer weights, and drops them, so memory is the outputs plus one
//! input's rotations.

use crate::ckks::context::Context;
use crate::ckks::encoder::Encoder;
use crate::ckks::evaluator::Evaluator;
use crate::ckks::fft::{SpecialFft, C64};
use crate::ckks::keys::EvalKeys;
use crate::ckks::plaintext::{Ciphertext, Plaintext};
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::simd;
use crate::math::sparse_ntt::{sparsity_stride, SparseNtt, MIN_INNER};
use crate::program::format::Program;
use crate::program::instr::{Instr, Linear, Reg};
use crate::program::linear_tiled::{self, TapWeight};
use crate::program::requirements::KeyRequirements;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Masked-tap plaintexts of one `Linear` are cached (shared by all outputs) up to this
/// many bytes; larger layers encode each where it is used.
const MASKED_CACHE_BYTES: usize = 1 << 30;

/// Masks whose polynomial is sparse with at least this stride take the sparse-NTT path.
const MIN_SPARSE_STRIDE: usize = 4;

/// A mask's slot values and their smallest power-of-two period.
type MaskPeriod = std::sync::Arc<(Vec<f64>, usize)>;

/// A program bound to its context and evaluation keys.
pub struct Executor<'a> {
    ctx: &'a Context,
    program: &'a Program,
    keys: &'a EvalKeys,
    mask_cache_bytes: usize,
    /// Sparse-NTT plans per stride, for every Q prime (built once: a plan costs far more
    /// than a transform).
    sparse_ntts: std::sync::Mutex<HashMap<usize, std::sync::Arc<Vec<SparseNtt>>>>,
    /// Canonical-embedding FFTs of the smaller rings, per slot count.
    small_ffts: std::sync::Mutex<HashMap<usize, std::sync::Arc<SpecialFft>>>,
    /// Slot values and period of each mask a `DotMasked` reads.
    mask_periods: std::sync::Mutex<HashMap<u32, MaskPeriod>>,
}

impl<'a> Executor<'a> {
    /// Checks parameters and keys before anything runs.
    pub fn new(ctx: &'a Context, program: &'a Program, keys: &'a EvalKeys) -> Result<Self> {
        if ctx.params() != &program.params {
            return Err(Error::InvalidParams(
                "the context was built for other parameters than the program's".into(),
            ));
        }
        if keys.params_id != program.params.id() {
            return Err(Error::KeySetMismatch(
                "the evaluation keys were generated for another program's parameters".into(),
            ));
        }
        KeyRequirements::of(program)?.check(ctx, keys)?;
        Ok(Executor {
            ctx,
            program,
            keys,
            mask_cache_bytes: MASKED_CACHE_BYTES,
            sparse_ntts: Default::default(),
            small_ffts: Default::default(),
            mask_periods: Default::default(),
        })
    }

    /// The sparse-NTT plans of stride `d` for every Q prime (cached).
    fn sparse_plans(&self, d: usize) -> Result<std::sync::Arc<Vec<SparseNtt>>> {
        let mut cache = self
            .sparse_ntts
            .lock()
            .map_err(|_| Error::Corrupt("sparse-NTT cache poisoned".into()))?;
        if let Some(v) = cache.get(&d) {
            return Ok(v.clone());
        }
        let v = self
            .ctx
            .q_tables(self.ctx.max_level())
            .iter()
            .map(|t| SparseNtt::new(t, d))
            .collect::<Result<Vec<_>>>()?;
        let v = std::sync::Arc::new(v);
        cache.insert(d, v.clone());
        Ok(v)
    }

    /// The canonical-embedding FFT of a ring of degree 2 `p` (`p` slots; cached), for
    /// vectors that repeat every `p` slots (`Encoder::periodic_coefficients`).
    fn small_fft(&self, p: usize) -> Result<std::sync::Arc<SpecialFft>> {
        let mut cache = self
            .small_ffts
            .lock()
            .map_err(|_| Error::Corrupt("FFT cache poisoned".into()))?;
        Ok(cache
            .entry(p)
            .or_insert_with(|| std::sync::Arc::new(SpecialFft::new(2 * p)))
            .clone())
    }

    /// The slot values of mask `m` and their smallest power-of-two period (cached: the
    /// packed layout's tap masks serve every conv of a stage, and every image).
    fn mask_with_period(&self, m: u32) -> Result<MaskPeriod> {
        let mut cache = self
            .mask_periods
            .lock()
            .map_err(|_| Error::Corrupt("mask cache poisoned".into()))?;
        if let Some(v) = cache.get(&m) {
            return Ok(v.clone());
        }
        let slots = self.ctx.params().slots();
        let mask = self
            .program
            .masks
            .get(m as usize)
            .ok_or_else(|| Error::Corrupt(format!("mask {m} out of range")))?;
        let v = mask.to_values(slots);
        let p = vector_period(&v, slots);
        let entry = std::sync::Arc::new((v, p));
        cache.insert(m, entry.clone());
        Ok(entry)
    }

    /// Sets the byte budget under which a `Linear`'s masked-tap plaintexts are cached
    /// (shared by all outputs) instead of encoded where used. The result does not depend
    /// on it: both paths encode the same plaintexts.
    pub fn with_mask_cache_bytes(mut self, bytes: usize) -> Self {
        self.mask_cache_bytes = bytes;
        self
    }

    /// Runs the program; `progress(done, total, layer)` is called after each instruction.
    /// Returns the ciphertexts of the registers the output layout reads.
    pub fn run(
        &self,
        inputs: Vec<Ciphertext>,
        mut progress: impl FnMut(usize, usize, &str),
    ) -> Result<BTreeMap<Reg, Ciphertext>> {
        let p = self.program;
        if inputs.len() != p.input.cts as usize {
            return Err(Error::LevelMismatch(format!(
                "the program takes {} input ciphertexts, {} given",
                p.input.cts,
                inputs.len()
            )));
        }
        for ct in &inputs {
            if ct.key_set != self.keys.key_set {
                return Err(Error::KeySetMismatch(
                    "the input was encrypted under another key set than the evaluation keys".into(),
                ));
            }
            if ct.level() != p.input.level as usize || ct.degree() != 1 {
                return Err(Error::LevelMismatch(format!(
                    "input ciphertext at level {} (degree {}), the program expects level {}",
                    ct.level(),
                    ct.degree(),
                    p.input.level
                )));
            }
        }
        let ev = Evaluator::with_keys(self.ctx, self.keys)?;
        let mut regs: Vec<Option<Ciphertext>> = vec![None; p.registers as usize];
        for (r, ct) in inputs.into_iter().enumerate() {
            regs[r] = Some(ct);
        }
        let total = p.instrs.len();
        for (k, ins) in p.instrs.iter().enumerate() {
            let origin = &p.origins[k];
            self.step(&ev, ins, &mut regs)
                .map_err(|e| annotate(e, origin))?;
            progress(k + 1, total, origin);
        }
        let mut out = BTreeMap::new();
        for &(_, reg, _) in &p.output.placement {
            if let std::collections::btree_map::Entry::Vacant(v) = out.entry(reg) {
                let ct = regs[reg as usize]
                    .clone()
                    .ok_or_else(|| Error::Corrupt(format!("output register {reg} is empty")))?;
                v.insert(ct);
            }
        }
        Ok(out)
    }

    fn step(&self, ev: &Evaluator, ins: &Instr, regs: &mut [Option<Ciphertext>]) -> Result<()> {
        let take = |regs: &mut [Option<Ciphertext>], r: Reg| {
            regs[r as usize]
                .take()
                .ok_or_else(|| Error::Corrupt(format!("register {r} is empty")))
        };
        let get = |regs: &'_ [Option<Ciphertext>], r: Reg| -> Result<Ciphertext> {
            regs[r as usize]
                .clone()
                .ok_or_else(|| Error::Corrupt(format!("register {r} is empty")))
        };
        match ins {
            Instr::Linear(l) => self.linear(ev, l, regs)?,
            Instr::Dot(d) => {
                let enc = Encoder::new(self.ctx);
                let slots = self.ctx.params().slots();
                let terms = d
                    .srcs
                    .par_iter()
                    .zip(&d.vectors)
                    .map(|(&s, &v)| {
                        let x = regs[s as usize].as_ref().ok_or_else(|| empty(s))?;
                        let values = self.program.vectors[v as usize].to_values(slots);
                        let pt = enc.encode(&values, d.scale, x.level())?;
                        ev.mul_plain(x, &pt)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut it = terms.into_iter();
                let mut acc = it.next().ok_or_else(|| empty(d.dst))?;
                for t in it {
                    ev.add_assign(&mut acc, &t)?;
                }
                regs[d.dst as usize] = Some(acc);
            }
            Instr::DotMasked(d) => {
                let enc = Encoder::new(self.ctx);
                let &s0 = d.srcs.first().ok_or_else(|| empty(d.dst))?;
                let level = regs[s0 as usize].as_ref().ok_or_else(|| empty(s0))?.level();
                let tables = self.ctx.q_tables(level);
                // Each term's plaintext from the period of its vector (pattern x mask):
                // a repeating vector's polynomial is sparse, so one FFT of one period and
                // the sparse encoding (a small NTT per prime) serve; a vector that repeats
                // only over the whole ring takes the full FFT and encoding.
                let slots = self.ctx.params().slots();
                let period = (d.period as usize).max(1);
                let mut masks: HashMap<u32, MaskPeriod> = HashMap::new();
                for &m in d.masks.iter().flatten() {
                    if let std::collections::hash_map::Entry::Vacant(e) = masks.entry(m) {
                        e.insert(self.mask_with_period(m)?);
                    }
                }
                // The sparse NTT's smallest inner ring: periods of at least MIN_INNER / 2.
                let smallest = MIN_INNER / 2;
                let coeffs = (0..d.srcs.len())
                    .into_par_iter()
                    .map(|t| {
                        let pat = self.program.vectors[d.patterns[t] as usize].to_values(period);
                        let mask = d.masks[t].map(|m| &masks[&m]);
                        let p = period.max(mask.map_or(1, |m| m.1)).max(smallest).min(slots);
                        let v: Vec<f64> = (0..p)
                            .map(|s| pat[s % period] * mask.map_or(1.0, |m| m.0[s]))
                            .collect();
                        let p = vector_period(&v, p).max(smallest).min(p);
                        let c: Vec<C64> = v[..p].iter().map(|&x| C64::new(x, 0.0)).collect();
                        if p == slots {
                            return Ok((enc.coefficients(&c)?, 1));
                        }
                        let r = enc.periodic_coefficients(&*self.small_fft(p)?, &c)?;
                        Ok((r, slots / p))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut sparse: HashMap<usize, std::sync::Arc<Vec<SparseNtt>>> = HashMap::new();
                for (_, st) in &coeffs {
                    if *st >= MIN_SPARSE_STRIDE && !sparse.contains_key(st) {
                        sparse.insert(*st, self.sparse_plans(*st)?);
                    }
                }
                let n = self.ctx.n();
                let pts = coeffs
                    .par_iter()
                    .map(|(c, st)| {
                        Ok(match sparse.get(st) {
                            Some(ntts) => {
                                let ints = round_support(c, 1.0, d.scale)?;
                                let mut poly = RnsPoly::zero(n, level + 1, true);
                                for (j, (t, sp)) in tables.iter().zip(ntts.iter()).enumerate() {
                                    let m = t.modulus();
                                    let mut r: Vec<u64> =
                                        ints.iter().map(|&v| m.from_i64(v)).collect();
                                    sp.forward_into(&mut r, poly.limb_mut(j));
                                }
                                poly
                            }
                            None if *st == 1 => {
                                enc.encode_coefficients(c, 1.0, d.scale, level)?.poly
                            }
                            None => {
                                let mut full = vec![0f64; n];
                                for (k, &x) in c.iter().enumerate() {
                                    full[k * st] = x;
                                }
                                enc.encode_coefficients(&full, 1.0, d.scale, level)?.poly
                            }
                        })
                    })
                    .collect::<Result<Vec<RnsPoly>>>()?;
                // One fused, lazily reduced multiply-accumulate per (part, prime): no
                // product ciphertexts.
                let xs: Vec<&Ciphertext> = d
                    .srcs
                    .iter()
                    .map(|&s| regs[s as usize].as_ref().ok_or_else(|| empty(s)))
                    .collect::<Result<_>>()?;
                let first = xs[0];
                for x in &xs {
                    if x.level() != level
                        || x.parts.len() != 2
                        || ((x.scale - first.scale) / first.scale).abs() > 1e-9
                    {
                        return Err(Error::LevelMismatch(
                            "DotMasked inputs differ in level, scale or degree".into(),
                        ));
                    }
                }
                let mut parts = [
                    RnsPoly::zero(n, level + 1, true),
                    RnsPoly::zero(n, level + 1, true),
                ];
                for (part, acc) in parts.iter_mut().enumerate() {
                    let limbs: Vec<&mut [u64]> = acc.limbs_iter_mut().collect();
                    limbs.into_par_iter().enumerate().for_each(|(j, acc_limb)| {
                        let t_j = &tables[j];
                        let q = t_j.modulus().value();
                        let pairs: Vec<(&[u64], &[u64])> = xs
                            .iter()
                            .zip(&pts)
                            .map(|(x, pt)| (x.parts[part].limb(j), pt.limb(j)))
                            .collect();
                        if !simd::pmac(acc_limb, &pairs, q) {
                            for (x, y) in pairs {
                                t_j.mul_accumulate(acc_limb, x, y);
                            }
                        }
                    });
                }
                let [c0, c1] = parts;
                regs[d.dst as usize] = Some(Ciphertext {
                    parts: vec![c0, c1],
                    scale: first.scale * d.scale,
                    key_set: first.key_set,
                    seed: None,
                });
            }
            Instr::Add { dst, a, b } => {
                let x = regs[*a as usize].as_ref().ok_or_else(|| empty(*a))?;
                let y = regs[*b as usize].as_ref().ok_or_else(|| empty(*b))?;
                let s = ev.add(x, y)?;
                regs[*dst as usize] = Some(s);
            }
            Instr::Square { reg } => {
                let x = take(regs, *reg)?;
                regs[*reg as usize] = Some(ev.relinearize(&ev.square(&x)?)?);
            }
            Instr::SquareInto { dst, src } => {
                let x = regs[*src as usize].as_ref().ok_or_else(|| empty(*src))?;
                let s = ev.relinearize(&ev.square(x)?)?;
                regs[*dst as usize] = Some(s);
            }
            Instr::MulConst { reg, value, scale } => {
                let mut x = take(regs, *reg)?;
                ev.mul_const_assign(&mut x, *value, *scale)?;
                regs[*reg as usize] = Some(x);
            }
            Instr::MulInt { reg, k } => {
                let mut x = take(regs, *reg)?;
                ev.mul_int_assign(&mut x, *k);
                regs[*reg as usize] = Some(x);
            }
            Instr::AddConst { reg, value } => {
                let mut x = take(regs, *reg)?;
                ev.add_const_assign(&mut x, *value)?;
                regs[*reg as usize] = Some(x);
            }
            Instr::AddVec { reg, vector } => {
                let mut x = take(regs, *reg)?;
                let slots = self.ctx.params().slots();
                let values = self.program.vectors[*vector as usize].to_values(slots);
                let pt = Encoder::new(self.ctx).encode(&values, x.scale, x.level())?;
                ev.add_plain_assign(&mut x, &pt)?;
                regs[*reg as usize] = Some(x);
            }
            Instr::AddBlocks { reg, block, values } => {
                let mut x = take(regs, *reg)?;
                let slots = self.ctx.params().slots();
                let v = crate::program::instr::block_values(*block, values, slots);
                let pt = Encoder::new(self.ctx).encode(&v, x.scale, x.level())?;
                ev.add_plain_assign(&mut x, &pt)?;
                regs[*reg as usize] = Some(x);
            }
            Instr::Rescale { reg } => {
                let mut x = take(regs, *reg)?;
                ev.rescale_assign(&mut x)?;
                regs[*reg as usize] = Some(x);
            }
            Instr::DropTo { reg, level } => {
                let mut x = take(regs, *reg)?;
                ev.drop_to_level_assign(&mut x, *level as usize)?;
                regs[*reg as usize] = Some(x);
            }
            Instr::Rotate { dst, src, steps } => {
                let x = regs[*src as usize].as_ref().ok_or_else(|| empty(*src))?;
                let r = ev.rotate(x, *steps)?;
                regs[*dst as usize] = Some(r);
            }
            Instr::Copy { dst, src } => regs[*dst as usize] = Some(get(regs, *src)?),
            Instr::Free { reg } => regs[*reg as usize] = None,
        }
        Ok(())
    }

    fn linear(&self, ev: &Evaluator, l: &Linear, regs: &mut [Option<Ciphertext>]) -> Result<()> {
        let ctx = self.ctx;
        // A Linear without inputs passes `Program::validate` (no weights either): refuse it.
        let &s0 = l
            .srcs
            .first()
            .ok_or_else(|| Error::Corrupt("Linear without inputs".into()))?;
        let first = regs[s0 as usize].as_ref().ok_or_else(|| empty(s0))?;
        // A sum of rotations (`Linear::rotation_sum`: the packed layout's giant steps and
        // tap shifts): one ModDown for the whole sum instead of one per rotation (the same
        // sum, with one key-switching rounding instead of one per term).
        if let Some(terms) = l.rotation_sum() {
            let cts = terms
                .iter()
                .map(|&(r, st)| Ok((regs[r as usize].as_ref().ok_or_else(|| empty(r))?, st)))
                .collect::<Result<Vec<_>>>()?;
            let sum = ev.rotate_sum(&cts)?;
            regs[l.dsts[0] as usize] = Some(sum);
            return Ok(());
        }
        // A fan-out of rotations (one input, every output one unmasked tap of weight 1 at
        // scale 1, no bias: the packed layout's baby steps): the rotated copies themselves,
        // bit-identical to multiplying each by the integer 1 and accumulating.
        if let Some(taps) = fan_out(l) {
            let mut src = first.clone();
            src.seed = None;
            let dec = ev.decompose_for_rotation(&src)?;
            let outs = taps
                .par_iter()
                .map(|&t| match l.steps[t] {
                    0 => Ok(src.clone()),
                    st => ev.rotate_decomposed(&src, &dec, st),
                })
                .collect::<Result<Vec<_>>>()?;
            for (&d, ct) in l.dsts.iter().zip(outs) {
                regs[d as usize] = Some(ct);
            }
            return Ok(());
        }
        let (level, in_scale, key_set) = (first.level(), first.scale, first.key_set);
        let n = ctx.n();
        let tables = ctx.q_tables(level);
        let taps = l.steps.len();
        let nsrc = l.srcs.len();
        let enc = Encoder::new(ctx);
        let slots = ctx.params().slots();
        // Masked products: the plaintext w * mask at the weight scale. The distinct
        // (mask, weight) pairs are encoded once and shared by all outputs when they fit the
        // cache budget (clustered weights); otherwise each is encoded where it is used,
        // so memory stays bounded for any layer.
        let mut mask_coeffs: HashMap<u32, Vec<f64>> = HashMap::new();
        let mut distinct: Vec<(u32, u64)> = vec![];
        for (t, m) in l.masks.iter().enumerate() {
            if let Some(m) = m {
                if !mask_coeffs.contains_key(m) {
                    let v = self.program.masks[*m as usize].to_values(slots);
                    let v: Vec<_> = v
                        .into_iter()
                        .map(|x| crate::ckks::C64::new(x, 0.0))
                        .collect();
                    mask_coeffs.insert(*m, enc.coefficients(&v)?);
                }
                for o in 0..l.dsts.len() {
                    for i in 0..nsrc {
                        let w = l.weights[(o * nsrc + i) * taps + t];
                        if w != 0.0 {
                            distinct.push((*m, w.to_bits()));
                        }
                    }
                }
            }
        }
        distinct.sort_unstable();
        distinct.dedup();
        let pt_bytes = (level + 1) * n * 8;
        // Masked taps whose mask is periodic in the slots (the compiler replicates masks
        // with a period) have sparse polynomials: round only their support and transform
        // it with a small NTT (exactly the full encoding).
        let sparse: HashMap<u32, (Vec<f64>, usize)> = {
            mask_coeffs
                .iter()
                .filter_map(|(&mk, c)| {
                    let wmax = l
                        .masks
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| **m == Some(mk))
                        .flat_map(|(t, _)| l.weights.iter().skip(t).step_by(taps))
                        .fold(0f64, |a, w| a.max(w.abs()));
                    // Off-support products below 1/4 round to zero, as in the full encoding.
                    let tol = 0.25 / (wmax * l.weight_scale).max(1.0);
                    let d = sparsity_stride(c, tol);
                    (d >= MIN_SPARSE_STRIDE)
                        .then(|| (mk, (c.iter().step_by(d).copied().collect(), d)))
                })
                .collect()
        };
        // Plans for every Q prime, cached per stride; this level uses the first ones.
        let mut sparse_ntts: HashMap<usize, std::sync::Arc<Vec<SparseNtt>>> = HashMap::new();
        for (_, d) in sparse.values() {
            if !sparse_ntts.contains_key(d) {
                sparse_ntts.insert(*d, self.sparse_plans(*d)?);
            }
        }
        // Every masked tap sparse and blocked: the cache-tiled accumulation, faster than
        // cached full plaintexts too (measured: ResNet-20 with slice:16 clustering).
        let tiled = l.masks.iter().any(|m| m.is_some())
            && l.masks.iter().flatten().all(|mk| {
                sparse.get(mk).is_some_and(|(_, d)| {
                    d.is_multiple_of(8) && sparse_ntts[d].iter().all(|s| s.is_blocked())
                })
            });
        let cached = !tiled && distinct.len().saturating_mul(pt_bytes) <= self.mask_cache_bytes;
        let plain: HashMap<(u32, u64), Plaintext> = if cached {
            distinct
                .par_iter()
                .map(|&(m, wb)| {
                    let pt = enc.encode_coefficients(
                        &mask_coeffs[&m],
                        f64::from_bits(wb),
                        l.weight_scale,
                        level,
                    )?;
                    Ok(((m, wb), pt))
                })
                .collect::<Result<_>>()?
        } else {
            HashMap::new()
        };
        let int_weights: Vec<i64> = l
            .weights
            .iter()
            .map(|w| {
                let k = (w * l.weight_scale).round();
                if k.abs() < 2f64.powi(62) {
                    Ok(k as i64)
                } else {
                    Err(Error::OutOfRange(format!(
                        "weight {w} at scale 2^{:.1} does not fit 62 bits",
                        l.weight_scale.log2()
                    )))
                }
            })
            .collect::<Result<_>>()?;
        let mut acc: Vec<[RnsPoly; 2]> = (0..l.dsts.len())
            .map(|_| {
                [
                    RnsPoly::zero(n, level + 1, true),
                    RnsPoly::zero(n, level + 1, true),
                ]
            })
            .collect();
        // Distinct non-zero rotation steps: the same for every input.
        let nonzero: Vec<i64> = {
            let mut v: Vec<i64> = l.steps.iter().copied().filter(|&x| x != 0).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for (i, &s) in l.srcs.iter().enumerate() {
            let src = regs[s as usize].as_ref().ok_or_else(|| empty(s))?;
            if src.level() != level || ((src.scale - in_scale) / in_scale).abs() > 1e-9 {
                return Err(Error::LevelMismatch(
                    "Linear inputs differ in level or scale".into(),
                ));
            }
            // One shared decomposition; the rotations themselves run in parallel.
            let dec = ev.decompose_for_rotation(src)?;
            let rotated_list = nonzero
                .par_iter()
                .map(|&st| ev.rotate_decomposed(src, &dec, st))
                .collect::<Result<Vec<_>>>()?;
            drop(dec);
            let rotated: Vec<&Ciphertext> = l
                .steps
                .iter()
                .map(|st| match nonzero.binary_search(st) {
                    Ok(k) => &rotated_list[k],
                    Err(_) => src,
                })
                .collect();
            if tiled {
                let weights: Vec<Vec<(usize, TapWeight)>> = (0..l.dsts.len())
                    .into_par_iter()
                    .map(|o| {
                        let base = (o * nsrc + i) * taps;
                        (0..taps)
                            .filter_map(|t| {
                                let w = l.weights[base + t];
                                match l.masks[t] {
                                    None => (int_weights[base + t] != 0).then(|| {
                                        Ok((t, TapWeight::Integer(int_weights[base + t])))
                                    }),
                                    Some(mk) => (w != 0.0).then(|| {
                                        let (support, d) = &sparse[&mk];
                                        Ok((
                                            t,
                                            TapWeight::Sparse {
                                                stride: *d,
                                                ints: round_support(support, w, l.weight_scale)?,
                                            },
                                        ))
                                    }),
                                }
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<_>>()?;
                linear_tiled::accumulate(&mut acc, &rotated, &tables, &weights, &sparse_ntts);
                continue;
            }
            acc.par_iter_mut()
                .enumerate()
                .map(|(o, a)| -> Result<()> {
                    let base = (o * nsrc + i) * taps;
                    for (j, t_j) in tables.iter().enumerate() {
                        let m = t_j.modulus();
                        let q = m.value();
                        // Residues of the unmasked integer weights, shared by both parts.
                        let (unmasked, consts): (Vec<usize>, Vec<(u64, u64)>) = (0..taps)
                            .filter(|&t| l.masks[t].is_none() && int_weights[base + t] != 0)
                            .map(|t| {
                                let c = m.from_i64(int_weights[base + t]);
                                (t, (c, simd::shoup52(c, q)))
                            })
                            .unzip();
                        for (part, a_part) in a.iter_mut().enumerate() {
                            let srcs: Vec<&[u64]> = unmasked
                                .iter()
                                .map(|&t| rotated[t].parts[part].limb(j))
                                .collect();
                            let acc_limb = a_part.limb_mut(j);
                            if !simd::mac(acc_limb, &srcs, &consts, q) {
                                for (src, &(c, _)) in srcs.iter().zip(&consts) {
                                    let cs = m.shoup(c);
                                    for (x, &y) in acc_limb.iter_mut().zip(src.iter()) {
                                        *x = m.add(*x, m.mul_shoup(y, c, cs));
                                    }
                                }
                            }
                            // Masked taps with cached plaintexts: one fused, lazily
                            // reduced multiply-accumulate.
                            let pairs: Vec<(&[u64], &[u64])> = rotated
                                .iter()
                                .enumerate()
                                .filter_map(|(t, r)| {
                                    let mk = l.masks[t]?;
                                    let w = l.weights[base + t];
                                    if w == 0.0 {
                                        return None;
                                    }
                                    let pt = plain.get(&(mk, w.to_bits()))?;
                                    Some((r.parts[part].limb(j), pt.poly.limb(j)))
                                })
                                .collect();
                            if !simd::pmac(acc_limb, &pairs, q) {
                                for (x, y) in pairs {
                                    t_j.mul_accumulate(acc_limb, x, y);
                                }
                            }
                        }
                    }
                    if !cached {
                        // Streamed (some mask not periodic, so not tiled): encode the masked
                        // taps of this (output, input) once, use them for both parts on
                        // every limb, drop them.
                        let pts: Vec<(usize, Plaintext)> = (0..taps)
                            .filter_map(|t| {
                                let mk = l.masks[t]?;
                                let w = l.weights[base + t];
                                (w != 0.0).then(|| {
                                    enc.encode_coefficients(
                                        &mask_coeffs[&mk],
                                        w,
                                        l.weight_scale,
                                        level,
                                    )
                                    .map(|pt| (t, pt))
                                })
                            })
                            .collect::<Result<_>>()?;
                        for (j, t_j) in tables.iter().enumerate() {
                            let q = t_j.modulus().value();
                            for (part, a_part) in a.iter_mut().enumerate() {
                                let pairs: Vec<(&[u64], &[u64])> = pts
                                    .iter()
                                    .map(|(t, pt)| {
                                        (rotated[*t].parts[part].limb(j), pt.poly.limb(j))
                                    })
                                    .collect();
                                let acc_limb = a_part.limb_mut(j);
                                if !simd::pmac(acc_limb, &pairs, q) {
                                    for (x, y) in pairs {
                                        t_j.mul_accumulate(acc_limb, x, y);
                                    }
                                }
                            }
                        }
                    }
                    Ok(())
                })
                .collect::<Result<()>>()?;
        }
        let out_scale = in_scale * l.weight_scale;
        for (o, (a, &d)) in acc.into_iter().zip(&l.dsts).enumerate() {
            let [c0, c1] = a;
            let mut ct = Ciphertext {
                parts: vec![c0, c1],
                scale: out_scale,
                key_set,
                seed: None,
            };
            if let Some(bias) = &l.bias {
                match l.bias_mask {
                    None => ev.add_const_assign(&mut ct, bias[o])?,
                    Some(mk) => {
                        let mv = self.program.masks[mk as usize].to_values(slots);
                        let v: Vec<f64> = mv.iter().map(|x| x * bias[o]).collect();
                        ev.add_plain_assign(&mut ct, &enc.encode(&v, out_scale, level)?)?;
                    }
                }
            }
            regs[d as usize] = Some(ct);
        }
        Ok(())
    }
}

/// The smallest power-of-two period (at most `p`, which must be one) of `v`'s first `p`
/// values.
fn vector_period(v: &[f64], p: usize) -> usize {
    let mut p = p;
    while p > 1 && v[..p / 2] == v[p / 2..p] {
        p /= 2;
    }
    p
}

/// The tap of each output when `l` is a fan-out of rotations (see `Executor::linear`).
fn fan_out(l: &Linear) -> Option<Vec<usize>> {
    if l.srcs.len() != 1 || l.bias.is_some() || l.weight_scale != 1.0 {
        return None;
    }
    if l.masks.iter().any(|m| m.is_some()) {
        return None;
    }
    let taps = l.steps.len();
    (0..l.dsts.len())
        .map(|o| {
            let row = &l.weights[o * taps..(o + 1) * taps];
            let mut nz = row.iter().enumerate().filter(|(_, &w)| w != 0.0);
            let one = |w: f64| w == 1.0;
            match (nz.next(), nz.next()) {
                (Some((t, &w)), None) => one(w).then_some(t),
                _ => None,
            }
        })
        .collect()
}

/// round(w * scale * c) for the support coefficients c of a sparse mask.
fn round_support(support: &[f64], w: f64, scale: f64) -> Result<Vec<i64>> {
    let f = w * scale;
    support
        .iter()
        .map(|c| {
            let v = (c * f).round();
            if v.abs() < 2f64.powi(62) {
                Ok(v as i64)
            } else {
                Err(Error::OutOfRange(format!(
                    "masked weight {w} at scale 2^{:.1} does not fit 62 bits",
                    scale.log2()
                )))
            }
        })
        .collect()
}

pub(crate) fn empty(r: Reg) -> Error {
    Error::Corrupt(format!("register {r} is empty"))
}

/// Names the layer in level and scale errors.
pub(crate) fn annotate(e: Error, origin: &str) -> Error {
    match e {
        Error::LevelExhausted => Error::LevelMismatch(format!(
            "level budget exhausted at layer {origin}: no prime left to rescale"
        )),
        Error::ScaleMismatch { a, b, log_a, log_b } => Error::LevelMismatch(format!(
            "layer {origin}: scale mismatch 2^{log_a:.3} vs 2^{log_b:.3} ({a} vs {b})"
        )),
        other => other,
    }
}
