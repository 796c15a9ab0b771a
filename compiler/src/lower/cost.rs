//! The cost model that chooses between layouts: an estimate of a lowered program's
//! evaluation time in units of one forward NTT of one prime at the program's ring degree,
//! from its instruction stream (each instruction at the level it runs at, tracked from the
//! input level through every Rescale and DropTo).
//!
//! Unit costs (ring degree N, level l so l + 1 primes alive, K special primes, `beta`
//! key-switching digits alive): a key switch is `2 beta (l + 1 + K) + 2 (l + 1)` NTTs
//! (ModUp of every digit, ModDown of both parts); a rotation sharing a hoisted
//! decomposition costs half of one; a sum of rotations (`Linear::rotation_sum`) a key
//! switch per rotated term less its ModDown, plus one ModDown; a plaintext multiply-accumulate `4 (l + 1) / log2 N`
//! (a pointwise pass over both parts, against N/2 log2 N butterflies per NTT); a plaintext
//! encoded where it is used `l + 3` (one FFT and l + 1 NTTs); a rescale `2 (l + 1)`.
//! Reads the program only; a model, so it is used to compare layouts, not to predict
//! seconds (those are measured: docs/BENCHMARKS.md).

use runtime::program::{Instr, Program};

/// The estimate, with the counts it comes from.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Total, in NTT-of-one-prime units.
    pub ntts: f64,
    pub key_switches: u64,
    pub hoisted_rotations: u64,
    pub plaintext_macs: u64,
    pub encodes: u64,
    pub rescales: u64,
}

/// Estimates the evaluation cost of `p`.
pub fn estimate(p: &Program) -> Cost {
    let log_n = p.params.log_n() as f64;
    let k = p.params.p().len() as f64;
    let alpha = p.params.alpha().max(1) as f64;
    let mut level: Vec<usize> = vec![p.input.level as usize; p.registers as usize];
    let mut c = Cost::default();
    let ks = |l: usize| {
        let primes = (l + 1) as f64;
        2.0 * (primes / alpha).ceil() * (primes + k) + 2.0 * primes
    };
    let mac = |l: usize| 4.0 * (l + 1) as f64 / log_n;
    for ins in &p.instrs {
        let src = ins.reads().first().map(|&r| level[r as usize]).unwrap_or(0);
        match ins {
            Instr::Linear(l) if l.rotation_sum().is_some() => {
                // Each rotated term raised and switched over Q P, one ModDown for the sum.
                let rotated = l.steps.iter().filter(|&&s| s != 0).count();
                if rotated > 0 {
                    let mod_down = 2.0 * (src + 1) as f64;
                    c.ntts += (ks(src) - mod_down) * rotated as f64 + mod_down;
                    c.key_switches += rotated as u64;
                }
            }
            Instr::Linear(l) => {
                let mut steps: Vec<i64> = l.steps.iter().copied().filter(|&s| s != 0).collect();
                steps.sort_unstable();
                steps.dedup();
                if !steps.is_empty() {
                    let per_src = ks(src) + 0.5 * ks(src) * (steps.len() - 1) as f64;
                    c.ntts += per_src * l.srcs.len() as f64;
                    c.key_switches += l.srcs.len() as u64;
                    c.hoisted_rotations += (l.srcs.len() * (steps.len() - 1)) as u64;
                }
                let macs = l.weights.iter().filter(|&&w| w != 0.0).count() as u64;
                c.plaintext_macs += macs;
                c.ntts += macs as f64 * mac(src);
            }
            Instr::DotMasked(d) => {
                let n = d.srcs.len() as u64;
                c.plaintext_macs += n;
                c.encodes += n;
                c.ntts += n as f64 * (mac(src) + (src + 3) as f64);
            }
            Instr::Dot(d) => {
                let n = d.srcs.len() as u64;
                c.plaintext_macs += n;
                c.encodes += n;
                c.ntts += n as f64 * (mac(src) + (src + 3) as f64);
            }
            Instr::Rotate { .. } | Instr::Square { .. } | Instr::SquareInto { .. } => {
                c.key_switches += 1;
                c.ntts += ks(src);
            }
            Instr::Rescale { .. } => {
                c.rescales += 1;
                c.ntts += 2.0 * (src + 1) as f64;
            }
            Instr::AddVec { .. } | Instr::AddBlocks { .. } => {
                c.encodes += 1;
                c.ntts += (src + 3) as f64;
            }
            _ => {}
        }
        let out = match ins {
            Instr::Rescale { .. } => src.saturating_sub(1),
            Instr::DropTo { level: l, .. } => *l as usize,
            _ => src,
        };
        for w in ins.writes() {
            level[w as usize] = out;
        }
    }
    c
}
