//! Plaintext simulation of a [`Program`]: its instruction stream executed on real slot
//! vectors (f64), with the deterministic rounding of the encrypted run and, optionally, a
//! CKKS noise model, so that the accuracy of an encrypted model can be measured on a whole
//! test set without encrypting it.
//!
//! Semantics (those of [`crate::program::Executor`] and the evaluator, slot by slot):
//! `Linear` computes `sum_i sum_t w * mask_t (.) rot(src_i, step_t)` (+ bias), a left
//! rotation reads slot `(p + step) mod slots`, `Rescale` divides the scale by the real
//! prime and leaves the value, `DropTo` changes the level only. Levels and scales are
//! tracked per register exactly as the executor tracks them, once, when the simulator is
//! built, so that a program the executor would refuse (a level budget that runs out,
//! operands whose scales or levels differ, weights that do not fit 62 bits) is refused
//! here with the same error.
//!
//! Three modes ([`Mode`]):
//! - `Exact`: the program's function in f64 (no rounding, no noise).
//! - `Rounded`: the deterministic rounding of the encrypted run: an unmasked `Linear` tap
//!   multiplies by the integer round(w * weight_scale), so by round(w ws) / ws; `MulConst`
//!   by round(v s) / s; `AddConst` and an unmasked bias add round(v scale) / scale.
//! - `Noisy`: `Rounded` plus Gaussian noise with the variance the scheme has, per real
//!   slot, in value units (coefficient variance v at scale s gives (N/2) v / s^2): fresh
//!   encryption (sigma 3.2 error + encoding rounding), every rescale (r0 + r1 s, r uniform
//!   in [-1/2, 1/2], s ternary: v = 1/12 + N/18), every key switch of a rotation or
//!   relinearisation (ModUp digits times the key error over P, from the real primes and
//!   dnum, plus the ModDown rounding), and the coefficient rounding of every encoded
//!   plaintext (masked taps on their 2P-coefficient support, `Dot` vectors, masked
//!   biases), multiplied by the values they multiply. The noise of the rotations feeding
//!   a `Linear` is drawn per output from its exact per-slot variance (independent across
//!   outputs, which share it in the encrypted run); masked-tap encoding noise is drawn
//!   as if every weight were non-zero (an upper bound). Noise comes from a seeded
//!   generator: one seed, one result.
//!
//! Speed: a backward liveness pass finds, for every instruction, the slots that can reach
//! an output slot; only those are computed (exact by construction: a slot outside the set
//! never influences an output). `SimOptions::all_slots` turns this off (every slot of
//! every register), which tests use to show that the outputs are bit-identical. A `Linear`
//! gathers each rotated, masked input once over its live slots and multiplies the
//! (slots x inputs*taps) matrix by the weight matrix with one GEMM.
//!
//! Values whose magnitude at their scale exceeds half the modulus of their level would
//! wrap around under encryption: the first layer where that happens is reported
//! ([`SimOutput::wrapped`]), the simulation itself continues in f64.

use crate::ckks::evaluator::scales_match;
use crate::error::{Error, Result};
use crate::program::executor::{annotate, empty};
use crate::program::format::Program;
use crate::program::instr::{Instr, Reg};
use crate::program::liveness::{backward, Bits};
use crate::program::requirements::KeyRequirements;

/// Variance of the rounded Gaussian error (sigma 3.2, tails cut at 6 sigma).
const ERROR_VAR: f64 = 3.2 * 3.2 + 1.0 / 12.0;

/// What the simulation includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The program's function in f64.
    Exact,
    /// The encrypted run's deterministic rounding, no noise.
    Rounded,
    /// Rounding and the CKKS noise model.
    Noisy,
}

/// Options of [`Simulator::new`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SimOptions {
    /// Compute every slot of every register (no liveness restriction).
    pub all_slots: bool,
}

/// The result of one simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOutput {
    /// The flattened output tensor (as `OutputLayout::gather` gives it).
    pub output: Vec<f64>,
    /// The first layer where a value exceeds half the modulus at its level (an encrypted
    /// run would decrypt garbage there), if any.
    pub wrapped: Option<String>,
}

/// Per-slot noise variances of the scheme (value units are applied by the caller).
#[derive(Clone, Debug)]
struct NoiseModel {
    n: f64,
    /// log2 of each Q prime.
    log_q: Vec<f64>,
    log_p: f64,
    alpha: usize,
}

impl NoiseModel {
    fn new(program: &Program) -> Self {
        let p = &program.params;
        NoiseModel {
            n: p.n() as f64,
            log_q: p.q().iter().map(|&q| (q as f64).log2()).collect(),
            log_p: p.log_p(),
            alpha: p.alpha(),
        }
    }

    /// Slot variance (real part, value units) of iid coefficient noise of variance `v`
    /// at `scale`.
    fn slot(&self, v: f64, scale: f64) -> f64 {
        self.n / 2.0 * v / (scale * scale)
    }

    /// Rounding by a division (rescale, ModDown): r0 + r1 s.
    fn rounding_coeff(&self) -> f64 {
        1.0 / 12.0 + self.n * (1.0 / 12.0) * (2.0 / 3.0)
    }

    fn fresh(&self, scale: f64) -> f64 {
        self.slot(ERROR_VAR + 1.0 / 12.0, scale)
    }

    fn rescale(&self, scale_after: f64) -> f64 {
        self.slot(self.rounding_coeff(), scale_after)
    }

    /// One hybrid key switch at `level` of a ciphertext at `scale`: sum over digits of
    /// the ModUp digit (fast basis conversion, E[d^2] = Q_j^2 (a/12 + a^2/4)) times the
    /// key error, divided by P, plus the ModDown rounding.
    fn key_switch(&self, level: usize, scale: f64) -> f64 {
        let mut digits = 0.0;
        let top = (level + 1).min(self.log_q.len());
        for chunk in self.log_q[..top].chunks(self.alpha.max(1)) {
            let a = chunk.len() as f64;
            let log_qj: f64 = chunk.iter().sum();
            digits += (2.0 * (log_qj - self.log_p)).exp2() * (a / 12.0 + a * a / 4.0);
        }
        self.slot(self.n * ERROR_VAR * digits + self.rounding_coeff(), scale)
    }

    /// Coefficient rounding of a plaintext with `support` non-zero coefficients encoded
    /// at `scale` (its slot error, to be multiplied by the value it multiplies).
    fn encoding(&self, support: f64, scale: f64) -> f64 {
        support / 2.0 * (1.0 / 12.0) / (scale * scale)
    }

    /// Largest |value| at `scale` and `level` that decrypts without wrapping around.
    fn bound(&self, level: usize, scale: f64) -> f64 {
        let log_q: f64 = self.log_q[..=level.min(self.log_q.len() - 1)].iter().sum();
        (log_q - 1.0 - scale.log2()).exp2()
    }
}

/// A `Linear` prepared for simulation.
#[derive(Clone, Debug)]
struct LinearStep {
    srcs: Vec<Reg>,
    dsts: Vec<Reg>,
    /// Slots computed (sorted).
    live: Vec<u32>,
    taps: usize,
    /// Distinct non-zero rotation steps and, per step, the source slot of each live slot.
    rot_index: Vec<Vec<u32>>,
    /// Per tap: index into `rot_index` (None: step 0).
    tap_rot: Vec<Option<usize>>,
    /// Per tap: the mask on the live slots (None: unmasked).
    tap_mask: Vec<Option<Vec<f64>>>,
    /// Per tap: the encoding variance of its masked plaintexts (0 for unmasked taps).
    tap_enc_var: Vec<f64>,
    /// Weights as a (inputs * taps) x outputs matrix, column o at o * K: exact, rounded.
    w_exact: Vec<f64>,
    w_round: Vec<f64>,
    /// Bias per output (exact, rounded) and its mask on the live slots.
    bias_exact: Option<Vec<f64>>,
    bias_round: Option<Vec<f64>>,
    bias_mask: Option<Vec<f64>>,
    bias_var: f64,
    /// Per output and live slot: the variance of the rotations' key-switching noise that
    /// reaches it (output o at o * live.len()).
    ks_var: Vec<f64>,
}

#[derive(Clone, Debug)]
struct DotTerm {
    src: Reg,
    /// (position in `live`, value) of the vector's non-zero entries on the live slots.
    entries: Vec<(u32, f64)>,
}

#[derive(Clone, Debug)]
enum Op {
    Linear(Box<LinearStep>),
    Dot {
        dst: Reg,
        terms: Vec<DotTerm>,
        enc_var: f64,
    },
    Add {
        dst: Reg,
        a: Reg,
        b: Reg,
    },
    Square {
        dst: Reg,
        src: Reg,
        var: f64,
    },
    Scale {
        reg: Reg,
        exact: f64,
        round: f64,
    },
    Shift {
        reg: Reg,
        exact: f64,
        round: f64,
    },
    /// r += a plaintext slot vector (its values on the live slots) with its encoding noise.
    AddVec {
        reg: Reg,
        values: Vec<f64>,
        var: f64,
    },
    Rescale {
        reg: Reg,
        var: f64,
    },
    Rotate {
        dst: Reg,
        src: Reg,
        index: Vec<u32>,
        var: f64,
    },
    Copy {
        dst: Reg,
        src: Reg,
    },
    Free {
        reg: Reg,
    },
    Nop,
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    /// Slots computed (for element-wise ops).
    live: Vec<u32>,
    /// Wrap-around bound of the value written (infinite: not checked).
    bound: f64,
    origin: usize,
}

/// A program prepared for fast plaintext simulation.
#[derive(Clone, Debug)]
pub struct Simulator {
    slots: usize,
    registers: usize,
    steps: Vec<Step>,
    origins: Vec<String>,
    input: crate::program::format::InputLayout,
    output: crate::program::format::OutputLayout,
    /// Live slots of each input register and the fresh-encryption variance.
    input_live: Vec<Vec<u32>>,
    fresh_var: f64,
    input_bound: f64,
    /// Slots computed per run (a measure of the work).
    work: u64,
}

/// round(v * s) / s, refused where the evaluator refuses the constant.
fn rounded_const(v: f64, s: f64) -> Result<f64> {
    let c = (v * s).round();
    if !c.is_finite() || c.abs() >= 2f64.powi(126) {
        return Err(Error::OutOfRange(format!(
            "constant {v} at scale 2^{:.1} is too large",
            s.log2()
        )));
    }
    Ok(c / s)
}

/// Non-zero polynomial coefficients of a mask: 2P for a mask periodic with a power-of-two
/// period P dividing the slots (its polynomial lives on X^(N / 2P)), N otherwise.
fn mask_support(values: &[f64]) -> usize {
    let slots = values.len();
    let mut period = 1;
    while period < slots {
        if (period..slots).all(|p| values[p] == values[p % period]) {
            return 2 * period;
        }
        period *= 2;
    }
    2 * slots
}

impl Simulator {
    /// Prepares `program`: level and scale tracking (the executor's errors), liveness,
    /// rounded weights and noise variances.
    pub fn new(program: &Program, opts: &SimOptions) -> Result<Self> {
        program.validate()?;
        // The executor checks the key requirements first: the same errors, in the same
        // order (an exhausted level budget names its layer).
        KeyRequirements::of(program)?;
        let slots = program.params.slots();
        let nm = NoiseModel::new(program);
        let nregs = program.registers as usize;
        let mask_values: Vec<Vec<f64>> = program.masks.iter().map(|m| m.to_values(slots)).collect();
        let mask_supports: Vec<usize> = mask_values.iter().map(|v| mask_support(v)).collect();
        let q = program.params.q();

        // Forward: levels and scales, as the executor tracks them.
        let mut state: Vec<Option<(usize, f64)>> = vec![None; nregs];
        for s in state.iter_mut().take(program.input.cts as usize) {
            *s = Some((program.input.level as usize, program.input.scale));
        }
        // Per instruction: (level, scale) of the value it writes, and of its input.
        let mut at: Vec<((usize, f64), (usize, f64))> = Vec::with_capacity(program.instrs.len());
        for (k, ins) in program.instrs.iter().enumerate() {
            let origin = &program.origins[k];
            let get = |r: Reg, st: &[Option<(usize, f64)>]| st[r as usize].ok_or_else(|| empty(r));
            let res: Result<((usize, f64), (usize, f64))> = (|| {
                Ok(match ins {
                    Instr::Linear(l) => {
                        let first = *l
                            .srcs
                            .first()
                            .ok_or_else(|| Error::Corrupt("Linear without inputs".into()))?;
                        let (lv, sc) = get(first, &state)?;
                        for &s in &l.srcs {
                            let (l2, s2) = get(s, &state)?;
                            if l2 != lv || ((s2 - sc) / sc).abs() > 1e-9 {
                                return Err(Error::LevelMismatch(
                                    "Linear inputs differ in level or scale".into(),
                                ));
                            }
                        }
                        for w in &l.weights {
                            if (w * l.weight_scale).round().abs() >= 2f64.powi(62) {
                                return Err(Error::OutOfRange(format!(
                                    "weight {w} at scale 2^{:.1} does not fit 62 bits",
                                    l.weight_scale.log2()
                                )));
                            }
                        }
                        let out = (lv, sc * l.weight_scale);
                        for &d in &l.dsts {
                            state[d as usize] = Some(out);
                        }
                        (out, (lv, sc))
                    }
                    Instr::Dot(_) | Instr::DotMasked(_) => {
                        let (srcs, dst, scale) = ins.plaintext_dot().unwrap_or((&[], 0, 1.0));
                        let &s0 = srcs.first().ok_or_else(|| empty(dst))?;
                        let (lv, sc) = get(s0, &state)?;
                        for &s in srcs {
                            let (l2, s2) = get(s, &state)?;
                            if l2 != lv {
                                return Err(Error::LevelMismatch(format!(
                                    "operands at levels {lv} and {l2}"
                                )));
                            }
                            scales_match(sc * scale, s2 * scale)?;
                        }
                        let out = (lv, sc * scale);
                        state[dst as usize] = Some(out);
                        (out, (lv, sc))
                    }
                    Instr::Add { dst, a, b } => {
                        let (la, sa) = get(*a, &state)?;
                        let (lb, sb) = get(*b, &state)?;
                        if la != lb {
                            return Err(Error::LevelMismatch(format!(
                                "operands at levels {la} and {lb}"
                            )));
                        }
                        scales_match(sa, sb)?;
                        state[*dst as usize] = Some((la, sa));
                        ((la, sa), (la, sa))
                    }
                    Instr::Square { reg } | Instr::SquareInto { src: reg, .. } => {
                        let (lv, sc) = get(*reg, &state)?;
                        let dst = match ins {
                            Instr::SquareInto { dst, .. } => *dst,
                            _ => *reg,
                        };
                        state[dst as usize] = Some((lv, sc * sc));
                        ((lv, sc * sc), (lv, sc))
                    }
                    Instr::MulConst { reg, value, scale } => {
                        let (lv, sc) = get(*reg, &state)?;
                        rounded_const(*value, *scale)?;
                        state[*reg as usize] = Some((lv, sc * scale));
                        ((lv, sc * scale), (lv, sc))
                    }
                    Instr::MulInt { reg, .. } => {
                        let s = get(*reg, &state)?;
                        (s, s)
                    }
                    Instr::AddConst { reg, value } => {
                        let s = get(*reg, &state)?;
                        rounded_const(*value, s.1)?;
                        (s, s)
                    }
                    Instr::AddVec { reg, .. } | Instr::AddBlocks { reg, .. } => {
                        let s = get(*reg, &state)?;
                        (s, s)
                    }
                    Instr::Rescale { reg } => {
                        let (lv, sc) = get(*reg, &state)?;
                        if lv == 0 {
                            return Err(Error::LevelExhausted);
                        }
                        let out = (lv - 1, sc / q[lv] as f64);
                        state[*reg as usize] = Some(out);
                        (out, (lv, sc))
                    }
                    Instr::DropTo { reg, level } => {
                        let (lv, sc) = get(*reg, &state)?;
                        if *level as usize > lv {
                            return Err(Error::LevelMismatch(format!(
                                "cannot raise a ciphertext from level {lv} to {level}"
                            )));
                        }
                        let out = (*level as usize, sc);
                        state[*reg as usize] = Some(out);
                        (out, (lv, sc))
                    }
                    Instr::Rotate { dst, src, .. } | Instr::Copy { dst, src } => {
                        let s = get(*src, &state)?;
                        state[*dst as usize] = Some(s);
                        (s, s)
                    }
                    Instr::Free { reg } => {
                        state[*reg as usize] = None;
                        ((0, 1.0), (0, 1.0))
                    }
                })
            })();
            at.push(res.map_err(|e| annotate(e, origin))?);
        }
        for &(_, reg, _) in &program.output.placement {
            if state[reg as usize].is_none() {
                return Err(Error::Corrupt(format!("output register {reg} is empty")));
            }
        }

        // Backward: the slots of every value that can reach an output slot.
        let seeds: Vec<(Reg, u32)> = program
            .output
            .placement
            .iter()
            .map(|&(_, r, s)| (r, s))
            .collect();
        let (lives, live) = backward(program, &mask_values, &seeds, opts.all_slots);
        let input_live: Vec<Vec<u32>> = (0..program.input.cts)
            .map(|r| {
                if opts.all_slots {
                    (0..slots as u32).collect()
                } else {
                    live[r as usize]
                        .as_ref()
                        .map(Bits::list)
                        .unwrap_or_default()
                }
            })
            .collect();

        // The steps.
        let mut steps = Vec::with_capacity(program.instrs.len());
        let mut work = 0u64;
        for (k, ins) in program.instrs.iter().enumerate() {
            let ((lv, sc), (lv_in, sc_in)) = at[k];
            let lst = lives[k].list();
            let bound = nm.bound(lv, sc);
            let inf = f64::INFINITY;
            let (op, bound) = match ins {
                Instr::Linear(l) => {
                    let taps = l.steps.len();
                    let nsrc = l.srcs.len();
                    let kk = nsrc * taps;
                    let mut rot_steps: Vec<i64> = vec![];
                    let tap_rot: Vec<Option<usize>> = l
                        .steps
                        .iter()
                        .map(|&s| {
                            let s = s.rem_euclid(slots as i64);
                            (s != 0).then(|| match rot_steps.iter().position(|&x| x == s) {
                                Some(i) => i,
                                None => {
                                    rot_steps.push(s);
                                    rot_steps.len() - 1
                                }
                            })
                        })
                        .collect();
                    let rot_index: Vec<Vec<u32>> = rot_steps
                        .iter()
                        .map(|&s| {
                            lst.iter()
                                .map(|&p| ((p as i64 + s) % slots as i64) as u32)
                                .collect()
                        })
                        .collect();
                    let tap_mask: Vec<Option<Vec<f64>>> = l
                        .masks
                        .iter()
                        .map(|m| {
                            m.map(|m| {
                                let v = &mask_values[m as usize];
                                lst.iter().map(|&p| v[p as usize]).collect()
                            })
                        })
                        .collect();
                    let tap_enc_var: Vec<f64> = l
                        .masks
                        .iter()
                        .map(|m| match m {
                            Some(m) => {
                                nm.encoding(mask_supports[*m as usize] as f64, l.weight_scale)
                            }
                            None => 0.0,
                        })
                        .collect();
                    let w_exact = l.weights.clone();
                    let w_round: Vec<f64> = l
                        .weights
                        .iter()
                        .enumerate()
                        .map(|(j, &w)| match l.masks[j % taps] {
                            None => (w * l.weight_scale).round() / l.weight_scale,
                            Some(_) => w,
                        })
                        .collect();
                    let out_scale = sc;
                    let (bias_exact, bias_round, bias_mask, bias_var) = match &l.bias {
                        None => (None, None, None, 0.0),
                        Some(b) => match l.bias_mask {
                            None => (
                                Some(b.clone()),
                                Some(
                                    b.iter()
                                        .map(|&x| rounded_const(x, out_scale))
                                        .collect::<Result<Vec<_>>>()
                                        .map_err(|e| annotate(e, &program.origins[k]))?,
                                ),
                                None,
                                0.0,
                            ),
                            Some(m) => {
                                let v = &mask_values[m as usize];
                                (
                                    Some(b.clone()),
                                    Some(b.clone()),
                                    Some(lst.iter().map(|&p| v[p as usize]).collect()),
                                    nm.slot(1.0 / 12.0, out_scale),
                                )
                            }
                        },
                    };
                    // Key-switching noise of the rotated inputs, per output and slot.
                    let ks = nm.key_switch(lv_in, sc_in);
                    let nl = lst.len();
                    let mut ks_var = vec![0.0; l.dsts.len() * nl];
                    for o in 0..l.dsts.len() {
                        for t in 0..taps {
                            if tap_rot[t].is_none() {
                                continue;
                            }
                            let w2: f64 = (0..nsrc)
                                .map(|i| w_round[o * kk + i * taps + t].powi(2))
                                .sum();
                            if w2 == 0.0 {
                                continue;
                            }
                            let row = &mut ks_var[o * nl..(o + 1) * nl];
                            match &tap_mask[t] {
                                None => row.iter_mut().for_each(|x| *x += w2 * ks),
                                Some(m) => {
                                    for (x, &mv) in row.iter_mut().zip(m) {
                                        *x += w2 * ks * mv * mv;
                                    }
                                }
                            }
                        }
                    }
                    work += (nl * kk * l.dsts.len()) as u64;
                    (
                        Op::Linear(Box::new(LinearStep {
                            srcs: l.srcs.clone(),
                            dsts: l.dsts.clone(),
                            live: lst.clone(),
                            taps,
                            rot_index,
                            tap_rot,
                            tap_mask,
                            tap_enc_var,
                            w_exact,
                            w_round,
                            bias_exact,
                            bias_round,
                            bias_mask,
                            bias_var,
                            ks_var,
                        })),
                        bound,
                    )
                }
                Instr::DotMasked(d) => {
                    let terms = d
                        .srcs
                        .iter()
                        .zip(program.dot_masked_values(d))
                        .map(|(&s, v)| DotTerm {
                            src: s,
                            entries: lst
                                .iter()
                                .enumerate()
                                .filter_map(|(k, &p)| {
                                    let x = v[p as usize];
                                    (x != 0.0).then_some((k as u32, x))
                                })
                                .collect(),
                        })
                        .collect();
                    (
                        Op::Dot {
                            dst: d.dst,
                            terms,
                            enc_var: nm.encoding(nm.n, d.scale),
                        },
                        bound,
                    )
                }
                Instr::Dot(d) => {
                    let pos: std::collections::HashMap<u32, u32> = lst
                        .iter()
                        .enumerate()
                        .map(|(i, &p)| (p, i as u32))
                        .collect();
                    let terms = d
                        .srcs
                        .iter()
                        .zip(&d.vectors)
                        .map(|(&s, &v)| DotTerm {
                            src: s,
                            entries: program.vectors[v as usize]
                                .entries
                                .iter()
                                .filter(|e| e.1 != 0.0)
                                .filter_map(|&(p, x)| pos.get(&p).map(|&i| (i, x)))
                                .collect(),
                        })
                        .collect();
                    (
                        Op::Dot {
                            dst: d.dst,
                            terms,
                            enc_var: nm.encoding(nm.n, d.scale),
                        },
                        bound,
                    )
                }
                Instr::Add { dst, a, b } => (
                    Op::Add {
                        dst: *dst,
                        a: *a,
                        b: *b,
                    },
                    bound,
                ),
                Instr::Square { reg } => (
                    Op::Square {
                        dst: *reg,
                        src: *reg,
                        var: nm.key_switch(lv, sc),
                    },
                    bound,
                ),
                Instr::SquareInto { dst, src } => (
                    Op::Square {
                        dst: *dst,
                        src: *src,
                        var: nm.key_switch(lv, sc),
                    },
                    bound,
                ),
                Instr::MulConst { reg, value, scale } => (
                    Op::Scale {
                        reg: *reg,
                        exact: *value,
                        round: rounded_const(*value, *scale)?,
                    },
                    bound,
                ),
                Instr::MulInt { reg, k } => (
                    Op::Scale {
                        reg: *reg,
                        exact: *k as f64,
                        round: *k as f64,
                    },
                    bound,
                ),
                Instr::AddConst { reg, value } => (
                    Op::Shift {
                        reg: *reg,
                        exact: *value,
                        round: rounded_const(*value, sc)?,
                    },
                    bound,
                ),
                Instr::AddVec { reg, vector } => {
                    let v = program.vectors[*vector as usize].to_values(slots);
                    (
                        Op::AddVec {
                            reg: *reg,
                            values: lst.iter().map(|&p| v[p as usize]).collect(),
                            var: nm.slot(1.0 / 12.0, sc),
                        },
                        bound,
                    )
                }
                Instr::AddBlocks { reg, block, values } => {
                    let v = crate::program::instr::block_values(*block, values, slots);
                    (
                        Op::AddVec {
                            reg: *reg,
                            values: lst.iter().map(|&p| v[p as usize]).collect(),
                            var: nm.slot(1.0 / 12.0, sc),
                        },
                        bound,
                    )
                }
                Instr::Rescale { reg } => (
                    Op::Rescale {
                        reg: *reg,
                        var: nm.rescale(sc),
                    },
                    // Checked before the division, at the level it leaves.
                    nm.bound(lv_in, sc_in),
                ),
                Instr::DropTo { .. } => (Op::Nop, inf),
                Instr::Rotate { dst, src, steps } => (
                    Op::Rotate {
                        dst: *dst,
                        src: *src,
                        index: lst
                            .iter()
                            .map(|&p| (p as i64 + steps).rem_euclid(slots as i64) as u32)
                            .collect(),
                        var: nm.key_switch(lv, sc),
                    },
                    inf,
                ),
                Instr::Copy { dst, src } => (
                    Op::Copy {
                        dst: *dst,
                        src: *src,
                    },
                    inf,
                ),
                Instr::Free { reg } => (Op::Free { reg: *reg }, inf),
            };
            if !matches!(op, Op::Linear(_)) {
                work += lst.len() as u64;
            }
            steps.push(Step {
                op,
                live: if matches!(ins, Instr::Linear(_)) {
                    vec![]
                } else {
                    lst
                },
                bound,
                origin: k,
            });
        }
        Ok(Simulator {
            slots,
            registers: nregs,
            steps,
            origins: program.origins.clone(),
            input: program.input.clone(),
            output: program.output.clone(),
            input_live,
            fresh_var: nm.fresh(program.input.scale),
            input_bound: nm.bound(program.input.level as usize, program.input.scale),
            work,
        })
    }

    /// Slot products and element operations one run computes (a measure of its cost).
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Runs the program on the flattened input tensor `input`.
    pub fn run(&self, input: &[f64], mode: Mode, seed: u64) -> Result<SimOutput> {
        let packed = self.input.pack(input, self.slots)?;
        let mut rng = Gauss::new(seed);
        let noisy = mode == Mode::Noisy;
        let round = mode != Mode::Exact;
        let mut regs: Vec<Option<Vec<f64>>> = vec![None; self.registers];
        let mut pool: Vec<Vec<f64>> = vec![];
        let mut wrapped: Option<String> = None;
        let check = |v: &[f64], live: &[u32], bound: f64, origin: usize, w: &mut Option<String>| {
            if w.is_none() && bound.is_finite() {
                let m = live.iter().fold(0f64, |m, &p| m.max(v[p as usize].abs()));
                if m.is_nan() || m > bound {
                    *w = Some(self.origins[origin].clone());
                }
            }
        };
        for (r, mut v) in packed.into_iter().enumerate() {
            if noisy {
                let sd = self.fresh_var.sqrt();
                for &p in &self.input_live[r] {
                    v[p as usize] += sd * rng.next();
                }
            }
            if wrapped.is_none()
                && self.input_live[r]
                    .iter()
                    .any(|&p| v[p as usize].abs() > self.input_bound)
            {
                wrapped = Some("<input>".into());
            }
            regs[r] = Some(v);
        }
        let slots = self.slots;
        let alloc = |pool: &mut Vec<Vec<f64>>| pool.pop().unwrap_or_else(|| vec![0.0; slots]);
        for st in &self.steps {
            let live = &st.live;
            match &st.op {
                Op::Linear(l) => {
                    let outs = self.linear(l, &regs, round, noisy, &mut rng, &mut pool)?;
                    for (&d, v) in l.dsts.iter().zip(outs) {
                        check(&v, &l.live, st.bound, st.origin, &mut wrapped);
                        if let Some(old) = regs[d as usize].replace(v) {
                            pool.push(old);
                        }
                    }
                }
                Op::Dot {
                    dst,
                    terms,
                    enc_var,
                } => {
                    let mut acc = vec![0.0; live.len()];
                    let mut var = vec![0.0; live.len()];
                    for t in terms {
                        let x = regs[t.src as usize].as_ref().ok_or_else(|| empty(t.src))?;
                        for &(i, c) in &t.entries {
                            let xv = x[live[i as usize] as usize];
                            acc[i as usize] += c * xv;
                            var[i as usize] += xv * xv * enc_var;
                        }
                    }
                    let mut out = alloc(&mut pool);
                    for (i, &p) in live.iter().enumerate() {
                        let n = if noisy {
                            var[i].sqrt() * rng.next()
                        } else {
                            0.0
                        };
                        out[p as usize] = acc[i] + n;
                    }
                    check(&out, live, st.bound, st.origin, &mut wrapped);
                    if let Some(old) = regs[*dst as usize].replace(out) {
                        pool.push(old);
                    }
                }
                Op::Add { dst, a, b } => {
                    let mut out = alloc(&mut pool);
                    {
                        let x = regs[*a as usize].as_ref().ok_or_else(|| empty(*a))?;
                        let y = regs[*b as usize].as_ref().ok_or_else(|| empty(*b))?;
                        for &p in live {
                            out[p as usize] = x[p as usize] + y[p as usize];
                        }
                    }
                    check(&out, live, st.bound, st.origin, &mut wrapped);
                    if let Some(old) = regs[*dst as usize].replace(out) {
                        pool.push(old);
                    }
                }
                Op::Square { dst, src, var } => {
                    let sd = var.sqrt();
                    if dst == src {
                        let x = regs[*dst as usize].as_mut().ok_or_else(|| empty(*dst))?;
                        for &p in live {
                            let n = if noisy { sd * rng.next() } else { 0.0 };
                            x[p as usize] = x[p as usize] * x[p as usize] + n;
                        }
                        check(x, live, st.bound, st.origin, &mut wrapped);
                    } else {
                        let mut out = alloc(&mut pool);
                        let x = regs[*src as usize].as_ref().ok_or_else(|| empty(*src))?;
                        for &p in live {
                            let n = if noisy { sd * rng.next() } else { 0.0 };
                            out[p as usize] = x[p as usize] * x[p as usize] + n;
                        }
                        check(&out, live, st.bound, st.origin, &mut wrapped);
                        if let Some(old) = regs[*dst as usize].replace(out) {
                            pool.push(old);
                        }
                    }
                }
                Op::Scale {
                    reg,
                    exact,
                    round: r,
                } => {
                    let c = if round { *r } else { *exact };
                    let x = regs[*reg as usize].as_mut().ok_or_else(|| empty(*reg))?;
                    for &p in live {
                        x[p as usize] *= c;
                    }
                    check(x, live, st.bound, st.origin, &mut wrapped);
                }
                Op::Shift {
                    reg,
                    exact,
                    round: r,
                } => {
                    let c = if round { *r } else { *exact };
                    let x = regs[*reg as usize].as_mut().ok_or_else(|| empty(*reg))?;
                    for &p in live {
                        x[p as usize] += c;
                    }
                    check(x, live, st.bound, st.origin, &mut wrapped);
                }
                Op::AddVec { reg, values, var } => {
                    let sd = var.sqrt();
                    let x = regs[*reg as usize].as_mut().ok_or_else(|| empty(*reg))?;
                    for (&p, &v) in live.iter().zip(values) {
                        let n = if noisy { sd * rng.next() } else { 0.0 };
                        x[p as usize] += v + n;
                    }
                    check(x, live, st.bound, st.origin, &mut wrapped);
                }
                Op::Rescale { reg, var } => {
                    let x = regs[*reg as usize].as_mut().ok_or_else(|| empty(*reg))?;
                    check(x, live, st.bound, st.origin, &mut wrapped);
                    if noisy {
                        let sd = var.sqrt();
                        for &p in live {
                            x[p as usize] += sd * rng.next();
                        }
                    }
                }
                Op::Rotate {
                    dst,
                    src,
                    index,
                    var,
                } => {
                    let mut out = alloc(&mut pool);
                    let sd = var.sqrt();
                    let x = regs[*src as usize].as_ref().ok_or_else(|| empty(*src))?;
                    for (&p, &q) in live.iter().zip(index) {
                        let n = if noisy { sd * rng.next() } else { 0.0 };
                        out[p as usize] = x[q as usize] + n;
                    }
                    if let Some(old) = regs[*dst as usize].replace(out) {
                        pool.push(old);
                    }
                }
                Op::Copy { dst, src } => {
                    let mut out = alloc(&mut pool);
                    let x = regs[*src as usize].as_ref().ok_or_else(|| empty(*src))?;
                    for &p in live {
                        out[p as usize] = x[p as usize];
                    }
                    if let Some(old) = regs[*dst as usize].replace(out) {
                        pool.push(old);
                    }
                }
                Op::Free { reg } => {
                    if let Some(old) = regs[*reg as usize].take() {
                        pool.push(old);
                    }
                }
                Op::Nop => {}
            }
        }
        let total: usize = self.output.shape.iter().product();
        let mut output = vec![0.0; total];
        for &(idx, reg, slot) in &self.output.placement {
            let v = regs[reg as usize].as_ref().ok_or_else(|| empty(reg))?;
            output[idx as usize] = v[slot as usize];
        }
        Ok(SimOutput { output, wrapped })
    }

    fn linear(
        &self,
        l: &LinearStep,
        regs: &[Option<Vec<f64>>],
        round: bool,
        noisy: bool,
        rng: &mut Gauss,
        pool: &mut Vec<Vec<f64>>,
    ) -> Result<Vec<Vec<f64>>> {
        let nl = l.live.len();
        let taps = l.taps;
        let kk = l.srcs.len() * taps;
        let nout = l.dsts.len();
        // The gathered inputs: column i * taps + t holds mask_t (.) rot(src_i, step_t).
        let mut g = vec![0.0; kk * nl];
        let mut enc_var = vec![0.0; if noisy { nl } else { 0 }];
        let mut rot = vec![0.0; l.rot_index.len() * nl];
        let mut direct = vec![0.0; nl];
        for (i, &s) in l.srcs.iter().enumerate() {
            let x = regs[s as usize].as_ref().ok_or_else(|| empty(s))?;
            for (r, idx) in l.rot_index.iter().enumerate() {
                for (o, &q) in rot[r * nl..(r + 1) * nl].iter_mut().zip(idx) {
                    *o = x[q as usize];
                }
            }
            for (o, &p) in direct.iter_mut().zip(&l.live) {
                *o = x[p as usize];
            }
            for t in 0..taps {
                let src = match l.tap_rot[t] {
                    Some(r) => &rot[r * nl..(r + 1) * nl],
                    None => &direct[..],
                };
                let col = &mut g[(i * taps + t) * nl..(i * taps + t + 1) * nl];
                match &l.tap_mask[t] {
                    None => col.copy_from_slice(src),
                    Some(m) => {
                        for ((c, &v), &mv) in col.iter_mut().zip(src).zip(m) {
                            *c = v * mv;
                        }
                        if noisy {
                            let ev = l.tap_enc_var[t];
                            for (e, &v) in enc_var.iter_mut().zip(src) {
                                *e += v * v * ev;
                            }
                        }
                    }
                }
            }
        }
        let w = if round { &l.w_round } else { &l.w_exact };
        let mut c = vec![0.0; nl * nout];
        if nl > 0 && kk > 0 && nout > 0 {
            // SAFETY: `g` is nl x kk column-major (column stride nl), `w` is kk x nout
            // column-major (column stride kk, `weights[(o * srcs + i) * taps + t]`), `c` is
            // nl x nout column-major; all three hold exactly those many elements.
            unsafe {
                matrixmultiply::dgemm(
                    nl,
                    kk,
                    nout,
                    1.0,
                    g.as_ptr(),
                    1,
                    nl as isize,
                    w.as_ptr(),
                    1,
                    kk as isize,
                    0.0,
                    c.as_mut_ptr(),
                    1,
                    nl as isize,
                );
            }
        }
        let bias = if round { &l.bias_round } else { &l.bias_exact };
        let mut outs = Vec::with_capacity(nout);
        for o in 0..nout {
            let mut out = pool.pop().unwrap_or_else(|| vec![0.0; self.slots]);
            let col = &c[o * nl..(o + 1) * nl];
            let b = bias.as_ref().map_or(0.0, |b| b[o]);
            for (k, (&p, &v)) in l.live.iter().zip(col).enumerate() {
                let bm = l.bias_mask.as_ref().map_or(1.0, |m| m[k]);
                let mut y = v + b * bm;
                if noisy {
                    let var = l.ks_var[o * nl + k] + enc_var[k] + l.bias_var;
                    y += var.sqrt() * rng.next();
                }
                out[p as usize] = y;
            }
            outs.push(out);
        }
        Ok(outs)
    }
}

/// Standard normal samples from xoshiro256++ (seeded through SplitMix64) by Box-Muller.
struct Gauss {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Gauss {
    fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Gauss {
            s: [next(), next(), next(), next()],
            spare: None,
        }
    }

    fn u64(&mut self) -> u64 {
        let s = &mut self.s;
        let r = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }

    fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn next(&mut self) -> f64 {
        if let Some(x) = self.spare.take() {
            return x;
        }
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// A per-image seed from a run seed and an image index (independent streams).
pub fn image_seed(seed: u64, index: u64) -> u64 {
    let mut g = Gauss::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    g.u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::{Context, Decryptor, Encoder, Encryptor, KeyGenerator, Params};
    use crate::program::format::{InputLayout, OutputLayout, SlotMask};
    use crate::program::instr::Linear;
    use crate::program::Executor;

    /// A small program touching every instruction kind: a masked 3-tap Linear with a bias
    /// over two inputs, rescales, a square, constants, a rotation, an add, a Dot.
    fn program(levels: usize) -> Program {
        let mut q = vec![50];
        q.extend(vec![40; levels]);
        let params = Params::insecure_for_tests(11, &q, &[60], q.len()).unwrap();
        let slots = params.slots() as u32;
        let delta = 2f64.powi(40);
        let mask = SlotMask::from_slots((0..slots).filter(|p| p % 64 < 30).collect());
        let top = levels;
        let qs: Vec<f64> = params.q().iter().map(|&x| x as f64).collect();
        // The constant's scale that lands both branches on the same scale at the Add.
        let c = if levels >= 6 {
            delta.powi(3) / (qs[top] * qs[top - 1])
        } else {
            delta
        };
        let instrs = vec![
            Instr::Linear(Linear {
                srcs: vec![0, 1],
                dsts: vec![2, 3],
                steps: vec![0, 1, -3],
                masks: vec![None, Some(0), Some(0)],
                weights: vec![
                    0.5, -0.25, 0.125, 0.3, 0.2, -0.1, 0.7, 0.1, 0.05, -0.4, 0.33, 0.2,
                ],
                weight_scale: delta,
                bias: Some(vec![0.1, -0.2]),
                bias_mask: None,
            }),
            Instr::Rescale { reg: 2 },
            Instr::Rescale { reg: 2 },
            Instr::Rescale { reg: 3 },
            Instr::Square { reg: 2 },
            Instr::Rescale { reg: 2 },
            Instr::MulConst {
                reg: 3,
                value: 0.75,
                scale: c,
            },
            Instr::Rescale { reg: 3 },
            Instr::Rescale { reg: 3 },
            Instr::AddConst { reg: 2, value: 0.5 },
            Instr::AddVec { reg: 2, vector: 0 },
            Instr::Rotate {
                dst: 4,
                src: 3,
                steps: 2,
            },
            Instr::Free { reg: 3 },
            Instr::Add { dst: 2, a: 2, b: 4 },
            Instr::Dot(crate::program::instr::Dot {
                srcs: vec![2],
                dst: 5,
                vectors: vec![0],
                scale: delta,
            }),
            Instr::Rescale { reg: 5 },
        ];
        let origins = instrs.iter().map(|i| i.name().to_string()).collect();
        Program {
            params,
            masks: vec![mask],
            vectors: vec![crate::program::SlotVector {
                entries: (0..40).map(|p| (p, 1.0 - p as f64 / 50.0)).collect(),
            }],
            input: InputLayout {
                shape: vec![2, 40],
                image: None,
                cts: 2,
                placement: (0..80).map(|k| (k, k / 40, k % 40)).collect(),
                scale: delta * delta,
                level: top as u32,
            },
            output: OutputLayout {
                shape: vec![2, 8],
                placement: (0..16)
                    .map(|k| (k, if k < 8 { 2 } else { 5 }, 4 * (k % 8)))
                    .collect(),
                members: 1,
            },
            registers: 6,
            instrs,
            origins,
        }
    }

    /// One unmasked Linear with integer weights at the scale 2^6 and a constant at 2^6:
    /// the rounding is visible.
    fn coarse_program() -> Program {
        let params = Params::insecure_for_tests(11, &[55, 40], &[60], 2).unwrap();
        let instrs = vec![
            Instr::Linear(Linear {
                srcs: vec![0],
                dsts: vec![1],
                steps: vec![0, 1],
                masks: vec![None, None],
                weights: vec![0.3001, -0.2],
                weight_scale: 64.0,
                bias: None,
                bias_mask: None,
            }),
            Instr::MulConst {
                reg: 1,
                value: 0.7,
                scale: 64.0,
            },
        ];
        Program {
            params,
            masks: vec![],
            vectors: vec![],
            input: InputLayout {
                shape: vec![40],
                image: None,
                cts: 1,
                placement: (0..40).map(|k| (k, 0, k)).collect(),
                scale: 2f64.powi(40),
                level: 0,
            },
            output: OutputLayout {
                shape: vec![8],
                placement: (0..8).map(|k| (k, 1, k)).collect(),
                members: 1,
            },
            registers: 2,
            instrs,
            origins: vec!["lin".into(), "c".into()],
        }
    }

    fn input() -> Vec<f64> {
        (0..80)
            .map(|k| ((k * 37 % 23) as f64 / 23.0) - 0.5)
            .collect()
    }

    /// The hand-computed function of `program` (exact mode).
    fn by_hand(x: &[f64]) -> Vec<f64> {
        let s = 1024usize;
        let mut a = vec![vec![0.0; s]; 2];
        for k in 0..80 {
            a[k / 40][k % 40] = x[k];
        }
        let m = |p: usize| if p % 64 < 30 { 1.0 } else { 0.0 };
        let w = [
            0.5, -0.25, 0.125, 0.3, 0.2, -0.1, 0.7, 0.1, 0.05, -0.4, 0.33, 0.2,
        ];
        let lin = |o: usize, p: usize| {
            let mut y = [0.1, -0.2][o];
            for (i, ai) in a.iter().enumerate() {
                let b = (o * 2 + i) * 3;
                y += w[b] * ai[p];
                y += w[b + 1] * m(p) * ai[(p + 1) % s];
                y += w[b + 2] * m(p) * ai[(p + s - 3) % s];
            }
            y
        };
        let vec = |p: usize| if p < 40 { 1.0 - p as f64 / 50.0 } else { 0.0 };
        let r2 = |p: usize| lin(0, p).powi(2) + 0.5 + vec(p);
        let r3 = |p: usize| lin(1, p) * 0.75;
        let sum = |p: usize| r2(p) + r3((p + 2) % s);
        let mut out: Vec<f64> = (0..8).map(|k| sum(4 * k)).collect();
        out.extend((0..8).map(|k| vec(4 * k) * sum(4 * k)));
        out
    }

    fn encrypted(p: &Program, x: &[f64]) -> Vec<f64> {
        let ctx = Context::new(p.params.clone()).unwrap();
        let req = KeyRequirements::of(p).unwrap();
        let mut kg = KeyGenerator::new(&ctx);
        let sk = kg.secret_key();
        let keys = kg
            .eval_keys(&sk, req.relin_level, &req.galois(&ctx))
            .unwrap();
        let enc = Encoder::new(&ctx);
        let mut e = Encryptor::new(&ctx);
        let cts = p
            .input
            .pack(x, ctx.params().slots())
            .unwrap()
            .iter()
            .map(|v| {
                let pt = enc
                    .encode(v, p.input.scale, p.input.level as usize)
                    .unwrap();
                e.encrypt_sk(&pt, &sk).unwrap()
            })
            .collect();
        let out = Executor::new(&ctx, p, &keys)
            .unwrap()
            .run(cts, |_, _, _| {})
            .unwrap();
        let dec = Decryptor::new(&ctx, &sk);
        let slots = out
            .iter()
            .map(|(r, ct)| (*r, dec.decrypt(ct).unwrap()))
            .collect();
        p.output.gather(&slots).unwrap()
    }

    #[test]
    fn exact_mode_is_the_programs_function() {
        let p = program(6);
        let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
        let got = sim.run(&input(), Mode::Exact, 0).unwrap();
        let want = by_hand(&input());
        for (g, w) in got.output.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        assert_eq!(got.wrapped, None);
    }

    #[test]
    fn live_slots_give_the_full_width_result_bit_for_bit() {
        let p = program(6);
        let live = Simulator::new(&p, &SimOptions::default()).unwrap();
        let full = Simulator::new(&p, &SimOptions { all_slots: true }).unwrap();
        assert!(
            live.work() * 4 < full.work(),
            "{} vs {}",
            live.work(),
            full.work()
        );
        for mode in [Mode::Exact, Mode::Rounded] {
            let a = live.run(&input(), mode, 1).unwrap();
            let b = full.run(&input(), mode, 1).unwrap();
            assert_eq!(a, b, "{mode:?}");
        }
    }

    #[test]
    fn rounding_is_the_encrypted_runs() {
        let p = coarse_program();
        let x: Vec<f64> = input()[..40].to_vec();
        let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
        let exact = sim.run(&x, Mode::Exact, 0).unwrap().output;
        let rounded = sim.run(&x, Mode::Rounded, 0).unwrap().output;
        let want: Vec<f64> = (0..8)
            .map(|k| (19.0 / 64.0 * x[k] - 13.0 / 64.0 * x[k + 1]) * 45.0 / 64.0)
            .collect();
        for (r, w) in rounded.iter().zip(&want) {
            assert!((r - w).abs() < 1e-12, "{r} vs {w}");
        }
        assert!(exact
            .iter()
            .zip(&rounded)
            .any(|(a, b)| (a - b).abs() > 1e-3));
        // The encrypted run follows the rounded one, not the exact one.
        let enc = encrypted(&p, &x);
        let d_round = enc
            .iter()
            .zip(&rounded)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        let d_exact = enc
            .iter()
            .zip(&exact)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(d_round < 1e-5 && d_exact > 1e-3, "{d_round} {d_exact}");
    }

    #[test]
    fn noise_is_seeded_and_the_size_of_the_encrypted_runs() {
        let p = program(6);
        let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
        let x = input();
        let a = sim.run(&x, Mode::Noisy, 7).unwrap();
        assert_eq!(a, sim.run(&x, Mode::Noisy, 7).unwrap());
        assert_ne!(a, sim.run(&x, Mode::Noisy, 8).unwrap());
        let rounded = sim.run(&x, Mode::Rounded, 0).unwrap().output;
        let rms = |v: &[Vec<f64>]| {
            let s: f64 = v
                .iter()
                .flat_map(|o| o.iter().zip(&rounded).map(|(a, b)| (a - b).powi(2)))
                .sum();
            (s / (v.len() * rounded.len()) as f64).sqrt()
        };
        let sim_runs: Vec<Vec<f64>> = (0..40)
            .map(|s| sim.run(&x, Mode::Noisy, s).unwrap().output)
            .collect();
        let enc_runs: Vec<Vec<f64>> = (0..4).map(|_| encrypted(&p, &x)).collect();
        let (s, e) = (rms(&sim_runs), rms(&enc_runs));
        eprintln!("rms noise: simulated {s:e}, encrypted {e:e}");
        assert!(s > 0.0 && e > 0.0);
        assert!(
            s / e < 2.0 && e / s < 2.0,
            "simulated {s:e}, encrypted {e:e}"
        );
    }

    #[test]
    fn refuses_what_the_executor_refuses() {
        // Too few levels: the key requirements' error names the layer.
        let p = program(3);
        let err = Simulator::new(&p, &SimOptions::default()).unwrap_err();
        assert!(matches!(err, Error::BudgetExhausted { .. }), "{err}");
        // Adding values at different scales.
        let mut p = program(6);
        p.instrs[6] = Instr::MulConst {
            reg: 3,
            value: 0.75,
            scale: 2f64.powi(41),
        };
        let err = Simulator::new(&p, &SimOptions::default()).unwrap_err();
        assert!(err.to_string().contains("scale mismatch"), "{err}");
        // A wrong input size.
        let sim = Simulator::new(&program(6), &SimOptions::default()).unwrap();
        assert!(sim.run(&[0.0; 3], Mode::Exact, 0).is_err());
    }

    #[test]
    fn a_linear_without_inputs_is_an_error_not_a_panic() {
        let mut p = coarse_program();
        if let Instr::Linear(l) = &mut p.instrs[0] {
            l.srcs.clear();
            l.weights.clear();
        }
        p.validate().unwrap();
        assert!(Simulator::new(&p, &SimOptions::default()).is_err());
        let ctx = Context::new(p.params.clone()).unwrap();
        let mut kg = KeyGenerator::new(&ctx);
        let sk = kg.secret_key();
        let req = KeyRequirements::of(&p).unwrap();
        let keys = kg
            .eval_keys(&sk, req.relin_level, &req.galois(&ctx))
            .unwrap();
        let enc = Encoder::new(&ctx);
        let pt = enc.encode(&[0.5; 40], p.input.scale, 0).unwrap();
        let ct = Encryptor::new(&ctx).encrypt_sk(&pt, &sk).unwrap();
        let run = Executor::new(&ctx, &p, &keys)
            .unwrap()
            .run(vec![ct], |_, _, _| {});
        assert!(matches!(run, Err(Error::Corrupt(_))), "{run:?}");
    }

    #[test]
    fn wrap_around_is_reported() {
        let p = program(6);
        let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
        let x: Vec<f64> = input().iter().map(|v| v * 1e20).collect();
        let out = sim.run(&x, Mode::Exact, 0).unwrap();
        assert!(out.wrapped.is_some());
    }

    #[test]
    fn rescale_noise_matches_the_encrypted_one() {
        // Values at one slot in every 64 or at consecutive slots, base prime smaller or not.
        for (bits, slot_stride) in [
            (vec![35u32, 50], 1u32),
            (vec![35, 50], 64),
            (vec![50, 50, 50], 1),
        ] {
            let top = bits.len() - 1;
            let params = Params::insecure_for_tests(13, &bits, &[50], bits.len()).unwrap();
            let p = Program {
                params,
                masks: vec![],
                vectors: vec![],
                input: InputLayout {
                    shape: vec![16],
                    image: None,
                    cts: 1,
                    placement: (0..16).map(|k| (k, 0, k * slot_stride)).collect(),
                    scale: 2f64.powi(75),
                    level: top as u32,
                },
                output: OutputLayout {
                    shape: vec![16],
                    placement: (0..16).map(|k| (k, 0, k * slot_stride)).collect(),
                    members: 1,
                },
                registers: 1,
                instrs: vec![Instr::Rescale { reg: 0 }],
                origins: vec!["r".into()],
            };
            let x: Vec<f64> = (0..16).map(|k| k as f64 / 16.0).collect();
            let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
            let sims: Vec<Vec<f64>> = (0..64)
                .map(|s| sim.run(&x, Mode::Noisy, s).unwrap().output)
                .collect();
            let reals: Vec<Vec<f64>> = (0..8).map(|_| encrypted(&p, &x)).collect();
            let rms = |v: &[Vec<f64>]| {
                (v.iter()
                    .flat_map(|o| o.iter().zip(&x).map(|(a, b)| (a - b).powi(2)))
                    .sum::<f64>()
                    / (v.len() * 16) as f64)
                    .sqrt()
            };
            let (s, r) = (rms(&sims), rms(&reals));
            assert!(
                s / r < 1.5 && r / s < 1.5,
                "{bits:?} stride {slot_stride}: sim {s:e} real {r:e}"
            );
        }
    }

    #[test]
    fn mask_supports() {
        let mut v = vec![0.0; 64];
        assert_eq!(mask_support(&v), 2);
        for p in (0..64).step_by(8) {
            v[p] = 1.0;
        }
        assert_eq!(mask_support(&v), 16);
        v[1] = 1.0;
        assert_eq!(mask_support(&v), 128);
    }
}
