//! Ensembles (design brief 1.5): M programs lowered from models of one architecture become
//! one program in which member m owns the slot periods m, m + M, m + 2M, ... of every
//! ciphertext. The input is already replicated in every period (single-input programs
//! are), so all members run on the same rotations, relinearisations and rescales; only
//! the values that differ between members change:
//! - a `Linear` tap whose weights differ becomes M taps with the same rotation, each with
//!   the tap's mask cut to one member's periods (all of these masks repeat with period
//!   M P, so their plaintexts stay sparse); differing biases become an `AddBlocks`;
//! - a differing `MulConst` becomes a one-input `Linear` with the M member masks;
//! - a differing `AddConst` becomes an `AddBlocks` (one constant per member);
//! - differing `AddVec` / `Dot` vectors are spliced period by period.
//!
//! Preconditions: the programs share parameters, registers, input packing, masks and
//! instruction stream up to these values (models of one architecture lowered with the same
//! parameters), and everything in them repeats with the input's period P (checked).
//! Guarantees: member m's outputs sit at the same slots shifted into period m, and are
//! proven by backward slot liveness ([`runtime::program::liveness::confined`]) to depend
//! only on member m's periods, where the merged program applies exactly member m's
//! values: each member computes what its own program computes. Checked end to end (the
//! simulator, and encrypted runs) in `compiler/tests/ensemble_e2e.rs`.

use std::collections::HashMap;

use runtime::program::liveness::confined;
use runtime::program::{Dot, Instr, Linear, OutputLayout, Program, SlotMask, SlotVector};

use super::error::LowerError;

fn err(why: impl Into<String>) -> LowerError {
    LowerError::Ensemble(why.into())
}

/// The replication period of the input: the distance between the copies of its first
/// value (`None`: it is placed once).
pub fn input_period(p: &Program) -> Option<u32> {
    let first = p.input.placement.iter().find(|e| e.0 == 0)?;
    let mut copies: Vec<u32> = p
        .input
        .placement
        .iter()
        .filter(|e| e.0 == 0 && e.1 == first.1)
        .map(|e| e.2)
        .collect();
    copies.sort_unstable();
    copies.windows(2).map(|w| w[1] - w[0]).min()
}

fn periodic(values: &[f64], period: usize) -> bool {
    (period..values.len()).all(|s| values[s] == values[s % period])
}

struct Merger<'a> {
    progs: &'a [Program],
    slots: usize,
    period: usize,
    members: usize,
    masks: Vec<SlotMask>,
    vectors: Vec<SlotVector>,
    /// (mask or None for all slots, member) -> merged mask index.
    cut: HashMap<(Option<u32>, usize), u32>,
}

impl Merger<'_> {
    fn member_of(&self, slot: usize) -> usize {
        (slot / self.period) % self.members
    }

    /// `mask` (or every slot) restricted to member m's periods, as a mask index.
    fn cut_mask(&mut self, mask: Option<u32>, m: usize) -> u32 {
        if let Some(&k) = self.cut.get(&(mask, m)) {
            return k;
        }
        let values = match mask {
            Some(k) => self.progs[0].masks[k as usize].to_values(self.slots),
            None => vec![1.0; self.slots],
        };
        let slots: Vec<u32> = (0..self.slots)
            .filter(|&s| values[s] != 0.0 && self.member_of(s) == m)
            .map(|s| s as u32)
            .collect();
        let mk = SlotMask::from_slots(slots);
        let k = match self.masks.iter().position(|x| *x == mk) {
            Some(k) => k as u32,
            None => {
                self.masks.push(mk);
                (self.masks.len() - 1) as u32
            }
        };
        self.cut.insert((mask, m), k);
        k
    }

    /// Member m's values of vector `idx[m]` on member m's periods, spliced into one vector.
    fn splice(&mut self, idx: &[u32]) -> u32 {
        let values: Vec<Vec<f64>> = idx
            .iter()
            .zip(self.progs)
            .map(|(&v, p)| p.vectors[v as usize].to_values(self.slots))
            .collect();
        let entries = (0..self.slots)
            .filter_map(|s| {
                let v = values[self.member_of(s)][s];
                (v != 0.0).then_some((s as u32, v))
            })
            .collect();
        self.vectors.push(SlotVector { entries });
        (self.vectors.len() - 1) as u32
    }

    fn linear(&mut self, ls: &[&Linear], out: &mut Vec<Instr>) -> Result<(), String> {
        let l0 = ls[0];
        let same_shape = ls.iter().all(|l| {
            l.srcs == l0.srcs
                && l.dsts == l0.dsts
                && l.steps == l0.steps
                && l.masks == l0.masks
                && l.weight_scale == l0.weight_scale
                && l.bias_mask == l0.bias_mask
                && l.bias.is_some() == l0.bias.is_some()
                && l.weights.len() == l0.weights.len()
        });
        if !same_shape {
            return Err("Linear instructions differ in shape".into());
        }
        let taps = l0.steps.len();
        let groups = l0.weights.len() / taps.max(1);
        let (mut steps, mut masks, mut cols) = (vec![], vec![], vec![]);
        for t in 0..taps {
            let shared = ls
                .iter()
                .all(|l| (0..groups).all(|g| l.weights[g * taps + t] == l0.weights[g * taps + t]));
            if shared {
                steps.push(l0.steps[t]);
                masks.push(l0.masks[t]);
                cols.push((t, None));
            } else {
                for m in 0..self.members {
                    steps.push(l0.steps[t]);
                    masks.push(Some(self.cut_mask(l0.masks[t], m)));
                    cols.push((t, Some(m)));
                }
            }
        }
        let mut weights = Vec::with_capacity(groups * cols.len());
        for g in 0..groups {
            for &(t, m) in &cols {
                weights.push(ls[m.unwrap_or(0)].weights[g * taps + t]);
            }
        }
        let bias_differs = ls.iter().any(|l| l.bias != l0.bias);
        if bias_differs && l0.bias_mask.is_some() {
            return Err("masked biases differ between members".into());
        }
        out.push(Instr::Linear(Linear {
            srcs: l0.srcs.clone(),
            dsts: l0.dsts.clone(),
            steps,
            masks,
            weights,
            weight_scale: l0.weight_scale,
            bias: if bias_differs { None } else { l0.bias.clone() },
            bias_mask: l0.bias_mask,
        }));
        if bias_differs {
            for (o, &d) in l0.dsts.iter().enumerate() {
                out.push(Instr::AddBlocks {
                    reg: d,
                    block: self.period as u32,
                    values: ls
                        .iter()
                        .map(|l| l.bias.as_ref().map_or(0.0, |b| b[o]))
                        .collect(),
                });
            }
        }
        Ok(())
    }

    /// The merged form of instruction k (one or more instructions).
    fn instr(&mut self, k: usize) -> Result<Vec<Instr>, String> {
        let all: Vec<&Instr> = self.progs.iter().map(|p| &p.instrs[k]).collect();
        let i0 = all[0];
        let vec_idx = |i: &Instr| -> Vec<u32> {
            match i {
                Instr::AddVec { vector, .. } => vec![*vector],
                Instr::Dot(d) => d.vectors.clone(),
                Instr::DotMasked(d) => d.patterns.clone(),
                _ => vec![],
            }
        };
        let same_vectors = |m: &Merger| {
            let v0 = vec_idx(i0);
            self.progs.iter().zip(&all).all(|(p, i)| {
                let v = vec_idx(i);
                v.len() == v0.len()
                    && v.iter()
                        .zip(&v0)
                        .all(|(&a, &b)| p.vectors[a as usize] == m.progs[0].vectors[b as usize])
            })
        };
        if all.iter().all(|i| *i == i0) && same_vectors(self) {
            return Ok(vec![i0.clone()]);
        }
        let mut out = vec![];
        match i0 {
            Instr::Linear(_) => {
                let ls: Vec<&Linear> = all
                    .iter()
                    .map(|i| match i {
                        Instr::Linear(l) => Ok(l),
                        _ => Err("instruction kinds differ".to_string()),
                    })
                    .collect::<Result<_, _>>()?;
                self.linear(&ls, &mut out)?;
            }
            Instr::MulConst { reg, scale, .. } => {
                let mut weights = vec![];
                for i in &all {
                    match i {
                        Instr::MulConst {
                            reg: r,
                            value,
                            scale: s,
                        } if r == reg && s == scale => weights.push(*value),
                        _ => return Err("constant products differ in register or scale".into()),
                    }
                }
                let masks = (0..self.members)
                    .map(|m| Some(self.cut_mask(None, m)))
                    .collect();
                out.push(Instr::Linear(Linear {
                    srcs: vec![*reg],
                    dsts: vec![*reg],
                    steps: vec![0; self.members],
                    masks,
                    weights,
                    weight_scale: *scale,
                    bias: None,
                    bias_mask: None,
                }));
            }
            Instr::AddConst { reg, .. } => {
                let mut values = vec![];
                for i in &all {
                    match i {
                        Instr::AddConst { reg: r, value } if r == reg => values.push(*value),
                        _ => return Err("constant additions differ in register".into()),
                    }
                }
                out.push(Instr::AddBlocks {
                    reg: *reg,
                    block: self.period as u32,
                    values,
                });
            }
            Instr::AddVec { reg, .. } => {
                let mut idx = vec![];
                for i in &all {
                    match i {
                        Instr::AddVec { reg: r, vector } if r == reg => idx.push(*vector),
                        _ => return Err("vector additions differ in register".into()),
                    }
                }
                let vector = self.splice(&idx);
                out.push(Instr::AddVec { reg: *reg, vector });
            }
            Instr::Dot(d0) => {
                let mut ds = vec![];
                for i in &all {
                    match i {
                        Instr::Dot(d)
                            if d.srcs == d0.srcs && d.dst == d0.dst && d.scale == d0.scale =>
                        {
                            ds.push(d)
                        }
                        _ => return Err("slot-vector products differ in shape".into()),
                    }
                }
                let vectors = (0..d0.vectors.len())
                    .map(|j| {
                        let idx: Vec<u32> = ds.iter().map(|d| d.vectors[j]).collect();
                        self.splice(&idx)
                    })
                    .collect();
                out.push(Instr::Dot(Dot {
                    srcs: d0.srcs.clone(),
                    dst: d0.dst,
                    vectors,
                    scale: d0.scale,
                }));
            }
            other => {
                return Err(format!(
                    "the members' {} instructions differ (only weights and constants may)",
                    other.name()
                ))
            }
        }
        Ok(out)
    }
}

/// Merges the programs of M models (M a power of two) into one ensemble program.
pub fn merge(progs: &[Program]) -> Result<Program, LowerError> {
    let members = progs.len();
    let Some(p0) = progs.first() else {
        return Err(err("no members"));
    };
    if members == 1 {
        return Ok(p0.clone());
    }
    if !members.is_power_of_two() {
        return Err(err(format!(
            "{members} members: an ensemble packs a power of two (2, 4, 8, ...)"
        )));
    }
    for (m, p) in progs.iter().enumerate().skip(1) {
        let what = if p.params != p0.params {
            Some("parameters")
        } else if p.registers != p0.registers || p.instrs.len() != p0.instrs.len() {
            Some("instruction streams (registers or length)")
        } else if p.input != p0.input {
            Some("input packing")
        } else if p.masks != p0.masks {
            Some("masks")
        } else if p.output != p0.output {
            Some("output layout")
        } else {
            None
        };
        if let Some(w) = what {
            return Err(err(format!(
                "member {m} differs from member 0 in its {w}: an ensemble needs models of one \
                 architecture"
            )));
        }
    }
    if p0.output.members != 1 || p0.input.shape.first().copied().unwrap_or(1) != 1 {
        return Err(err(
            "members must be single-input, single-model programs (no batch mode)",
        ));
    }
    let slots = p0.params.slots();
    let period = match input_period(p0) {
        Some(pd) if pd.is_power_of_two() && slots % pd as usize == 0 => pd as usize,
        _ => {
            return Err(err(
                "the input is not replicated with a power-of-two period, so there are no free \
                 periods to hold other members",
            ))
        }
    };
    if slots / period < members {
        return Err(err(format!(
            "{members} members need {members} slot periods of {period}, but N/2 = {slots} slots \
             hold {}: raise --log-n",
            slots / period
        )));
    }
    for p in progs {
        for (k, m) in p.masks.iter().enumerate() {
            if !periodic(&m.to_values(slots), period) {
                return Err(err(format!(
                    "mask {k} does not repeat with the input's period {period}"
                )));
            }
        }
        for (k, v) in p.vectors.iter().enumerate() {
            if !periodic(&v.to_values(slots), period) {
                return Err(err(format!(
                    "slot vector {k} does not repeat with the input's period {period}"
                )));
            }
        }
    }
    let mut mg = Merger {
        progs,
        slots,
        period,
        members,
        masks: p0.masks.clone(),
        vectors: p0.vectors.clone(),
        cut: HashMap::new(),
    };
    let (mut instrs, mut origins) = (vec![], vec![]);
    for k in 0..p0.instrs.len() {
        let merged = mg
            .instr(k)
            .map_err(|why| err(format!("layer '{}': {why}", p0.origins[k])))?;
        for i in merged {
            instrs.push(i);
            origins.push(p0.origins[k].clone());
        }
    }
    // Member m's outputs: the same slots, moved into one of its periods.
    let total: usize = p0.output.shape.iter().product();
    let mut placement = vec![];
    for m in 0..members {
        for &(idx, reg, slot) in &p0.output.placement {
            let s = slot as usize % period + m * period;
            placement.push((idx + (m * total) as u32, reg, s as u32));
        }
    }
    let mut shape = p0.output.shape.clone();
    if let Some(d) = shape.first_mut() {
        *d *= members;
    } else {
        shape = vec![members];
    }
    let prog = Program {
        params: p0.params.clone(),
        masks: mg.masks,
        vectors: mg.vectors,
        input: p0.input.clone(),
        output: OutputLayout {
            shape,
            placement,
            members: members as u32,
        },
        registers: p0.registers,
        instrs,
        origins,
    };
    prog.validate()?;
    for m in 0..members {
        let seeds: Vec<(u32, u32)> = prog
            .output
            .placement
            .iter()
            .skip(m * total)
            .take(total)
            .map(|&(_, r, s)| (r, s))
            .collect();
        let own = |s: u32| (s as usize / period) % members == m;
        if let Some((k, slot)) = confined(&prog, &seeds, &own) {
            let layer = prog.origins.get(k).map_or("the input", |s| s.as_str());
            return Err(err(format!(
                "member {m}'s outputs read slot {slot} of another member at layer '{layer}': \
                 this model's lowering crosses slot periods, so its members cannot share \
                 ciphertexts"
            )));
        }
    }
    Ok(prog)
}
