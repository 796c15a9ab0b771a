//! What a program needs from the evaluation keys, derived from its instructions by
//! tracking the level of every register: the Galois keys (rotation steps) with the
//! highest level each is used at, and the level of the relinearisation key. It also finds
//! a level budget that runs out, naming the instruction's layer.

use crate::ckks::context::Context;
use crate::ckks::keys::EvalKeys;
use crate::error::{Error, Result};
use crate::program::format::Program;
use crate::program::instr::Instr;
use std::collections::BTreeMap;

/// Keys a program needs, each at the highest level it is used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyRequirements {
    /// Rotation step -> level.
    pub rotations: BTreeMap<i64, usize>,
    pub relin_level: Option<usize>,
}

impl KeyRequirements {
    /// Walks the program's levels. Errors name the layer whose rescale finds no prime left
    /// or whose operands disagree in level.
    pub fn of(program: &Program) -> Result<Self> {
        let mut level: Vec<Option<usize>> = vec![None; program.registers as usize];
        for l in level.iter_mut().take(program.input.cts as usize) {
            *l = Some(program.input.level as usize);
        }
        let mut req = KeyRequirements::default();
        let slots = program.params.slots() as i64;
        for (k, ins) in program.instrs.iter().enumerate() {
            let origin = &program.origins[k];
            let read = |r: u32, level: &Vec<Option<usize>>| {
                level[r as usize].ok_or_else(|| {
                    Error::Corrupt(format!(
                        "program: instruction {k} ({origin}) reads empty register {r}"
                    ))
                })
            };
            match ins {
                Instr::Linear(l) => {
                    let mut lv = None;
                    for &s in &l.srcs {
                        let v = read(s, &level)?;
                        if lv.is_some_and(|x| x != v) {
                            return Err(Error::LevelMismatch(format!(
                                "layer {origin}: inputs at different levels"
                            )));
                        }
                        lv = Some(v);
                    }
                    let lv = lv.unwrap_or(program.input.level as usize);
                    for &st in &l.steps {
                        let st = st.rem_euclid(slots);
                        if st != 0 {
                            let e = req.rotations.entry(st).or_insert(lv);
                            *e = (*e).max(lv);
                        }
                    }
                    for &d in &l.dsts {
                        level[d as usize] = Some(lv);
                    }
                }
                Instr::Dot(_) | Instr::DotMasked(_) => {
                    let (srcs, dst, _) = ins.plaintext_dot().unwrap_or((&[], 0, 1.0));
                    let &s0 = srcs.first().ok_or_else(|| {
                        Error::Corrupt(format!("layer {origin}: a product sum without inputs"))
                    })?;
                    let lv = read(s0, &level)?;
                    for &s in srcs {
                        if read(s, &level)? != lv {
                            return Err(Error::LevelMismatch(format!(
                                "layer {origin}: inputs at different levels"
                            )));
                        }
                    }
                    level[dst as usize] = Some(lv);
                }
                Instr::Add { dst, a, b } => {
                    let (la, lb) = (read(*a, &level)?, read(*b, &level)?);
                    if la != lb {
                        return Err(Error::LevelMismatch(format!(
                            "layer {origin}: adding levels {la} and {lb}"
                        )));
                    }
                    level[*dst as usize] = Some(la);
                }
                Instr::Square { reg } | Instr::SquareInto { src: reg, .. } => {
                    let lv = read(*reg, &level)?;
                    req.relin_level = Some(req.relin_level.map_or(lv, |x| x.max(lv)));
                    if let Instr::SquareInto { dst, .. } = ins {
                        level[*dst as usize] = Some(lv);
                    }
                }
                Instr::MulConst { reg, .. }
                | Instr::MulInt { reg, .. }
                | Instr::AddConst { reg, .. }
                | Instr::AddVec { reg, .. }
                | Instr::AddBlocks { reg, .. } => {
                    read(*reg, &level)?;
                }
                Instr::Rescale { reg } => {
                    let lv = read(*reg, &level)?;
                    if lv == 0 {
                        return Err(Error::BudgetExhausted {
                            layer: origin.clone(),
                        });
                    }
                    level[*reg as usize] = Some(lv - 1);
                }
                Instr::DropTo { reg, level: to } => {
                    let lv = read(*reg, &level)?;
                    if *to as usize > lv {
                        return Err(Error::LevelMismatch(format!(
                            "layer {origin}: cannot raise level {lv} to {to}"
                        )));
                    }
                    level[*reg as usize] = Some(*to as usize);
                }
                Instr::Rotate { dst, src, steps } => {
                    let lv = read(*src, &level)?;
                    let st = steps.rem_euclid(slots);
                    if st != 0 {
                        let e = req.rotations.entry(st).or_insert(lv);
                        *e = (*e).max(lv);
                    }
                    level[*dst as usize] = Some(lv);
                }
                Instr::Copy { dst, src } => {
                    level[*dst as usize] = Some(read(*src, &level)?);
                }
                Instr::Free { reg } => level[*reg as usize] = None,
            }
        }
        for &(_, reg, _) in &program.output.placement {
            if level[reg as usize].is_none() {
                return Err(Error::Corrupt(format!(
                    "program: output register {reg} is empty at the end"
                )));
            }
        }
        Ok(req)
    }

    /// The rotation steps as signed left rotations (a step above half the slots is the
    /// right rotation it stands for), ascending.
    pub fn signed_steps(&self, slots: usize) -> Vec<i64> {
        let slots = slots as i64;
        let mut v: Vec<i64> = self
            .rotations
            .keys()
            .map(|&s| if s > slots / 2 { s - slots } else { s })
            .collect();
        v.sort_unstable();
        v
    }

    /// Galois elements and levels to generate keys for.
    pub fn galois(&self, ctx: &Context) -> Vec<(u64, usize)> {
        self.rotations
            .iter()
            .map(|(&s, &l)| (ctx.rotation_galois_element(s), l))
            .collect()
    }

    /// Checks that a key bundle holds every key needed, at a sufficient level; the error
    /// lists what is missing.
    pub fn check(&self, ctx: &Context, keys: &EvalKeys) -> Result<()> {
        let mut missing = Vec::new();
        if let Some(l) = self.relin_level {
            match &keys.relin {
                Some(k) if k.level >= l => {}
                _ => missing.push(format!("relinearisation key at level {l}")),
            }
        }
        for (&s, &l) in &self.rotations {
            let g = ctx.rotation_galois_element(s);
            match keys.galois.get(&g) {
                Some(k) if k.level >= l => {}
                _ => missing.push(format!("rotation by {s} at level {l}")),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingKey(format!(
                "the evaluation keys lack {} key(s): {}",
                missing.len(),
                missing.join(", ")
            )))
        }
    }
}
