//! Backward slot liveness of a [`Program`]: for every instruction, the slots of the value
//! it writes that can reach a chosen set of (register, slot) seeds (the program's
//! outputs, or one ensemble member's), following rotations and skipping slots a mask
//! zeroes. Every instruction but a rotation acts slot by slot, so a slot outside these
//! sets never influences a seed.
//!
//! Used by the simulator (only live slots are computed) and by [`confined`], which proves
//! that the seeds depend only on an allowed set of slots (ensemble members packed in
//! disjoint slot periods do not read each other).

use crate::program::format::Program;
use crate::program::instr::{Instr, Reg};

/// A set of slots.
#[derive(Clone)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub(crate) fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    pub(crate) fn full(n: usize) -> Self {
        let mut b = Bits::new(n);
        for p in 0..n {
            b.set(p);
        }
        b
    }
    pub(crate) fn set(&mut self, p: usize) {
        self.0[p / 64] |= 1 << (p % 64);
    }
    pub(crate) fn or(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    pub(crate) fn list(&self) -> Vec<u32> {
        let mut v = vec![];
        for (w, &x) in self.0.iter().enumerate() {
            let mut x = x;
            while x != 0 {
                let b = x.trailing_zeros() as usize;
                v.push((w * 64 + b) as u32);
                x &= x - 1;
            }
        }
        v
    }
}

/// Backward liveness from `seeds`: the live set written by each instruction (in program
/// order) and, per register, what is live at the program's start (the inputs).
/// `all_slots`: every slot of every value instead (no restriction).
pub(crate) fn backward(
    program: &Program,
    mask_values: &[Vec<f64>],
    seeds: &[(Reg, u32)],
    all_slots: bool,
) -> (Vec<Bits>, Vec<Option<Bits>>) {
    let slots = program.params.slots();
    let nregs = program.registers as usize;
    // Backward: the slots of every value that can reach an output slot.
    let mut live: Vec<Option<Bits>> = vec![None; nregs];
    let all = Bits::full(slots);
    let take = |live: &mut Vec<Option<Bits>>, r: Reg| {
        if all_slots {
            live[r as usize] = None;
            return all.clone();
        }
        live[r as usize].take().unwrap_or_else(|| Bits::new(slots))
    };
    let add = |live: &mut Vec<Option<Bits>>, r: Reg, b: &Bits| match &mut live[r as usize] {
        Some(x) => x.or(b),
        none => *none = Some(b.clone()),
    };
    for &(reg, slot) in seeds {
        let mut b = Bits::new(slots);
        b.set(slot as usize);
        add(&mut live, reg, &b);
    }
    let rotated = |b: &Bits, step: i64, mask: Option<&Vec<f64>>| {
        let mut o = Bits::new(slots);
        for p in b.list() {
            if mask.is_none_or(|m| m[p as usize] != 0.0) {
                o.set((p as i64 + step).rem_euclid(slots as i64) as usize);
            }
        }
        o
    };
    let mut lives: Vec<Bits> = Vec::with_capacity(program.instrs.len());
    for ins in program.instrs.iter().rev() {
        let b = match ins {
            Instr::Linear(l) => {
                let mut u = Bits::new(slots);
                for &d in &l.dsts {
                    u.or(&take(&mut live, d));
                }
                for (t, &st) in l.steps.iter().enumerate() {
                    let r = rotated(&u, st, l.masks[t].map(|m| &mask_values[m as usize]));
                    for &s in &l.srcs {
                        add(&mut live, s, &r);
                    }
                }
                u
            }
            Instr::Dot(_) | Instr::DotMasked(_) => {
                let (srcs, dst, _) = ins.plaintext_dot().unwrap_or((&[], 0, 1.0));
                let u = take(&mut live, dst);
                for &s in srcs {
                    add(&mut live, s, &u);
                }
                u
            }
            Instr::Add { dst, a, b } => {
                let u = take(&mut live, *dst);
                add(&mut live, *a, &u);
                add(&mut live, *b, &u);
                u
            }
            Instr::SquareInto { dst, src } | Instr::Copy { dst, src } => {
                let u = take(&mut live, *dst);
                add(&mut live, *src, &u);
                u
            }
            Instr::Rotate { dst, src, steps } => {
                let u = take(&mut live, *dst);
                add(&mut live, *src, &rotated(&u, *steps, None));
                u
            }
            Instr::Square { reg }
            | Instr::MulConst { reg, .. }
            | Instr::MulInt { reg, .. }
            | Instr::AddConst { reg, .. }
            | Instr::AddVec { reg, .. }
            | Instr::AddBlocks { reg, .. }
            | Instr::Rescale { reg }
            | Instr::DropTo { reg, .. } => {
                let u = take(&mut live, *reg);
                add(&mut live, *reg, &u);
                u
            }
            Instr::Free { reg } => {
                live[*reg as usize] = None;
                Bits::new(slots)
            }
        };
        lives.push(b);
    }
    lives.reverse();
    (lives, live)
}

/// The first instruction (index, slot) whose value at a slot outside `allowed` can reach
/// one of `seeds`, or the input register and slot that can (index `instrs.len()`); `None`
/// when the seeds depend only on allowed slots.
pub fn confined(
    program: &Program,
    seeds: &[(Reg, u32)],
    allowed: &dyn Fn(u32) -> bool,
) -> Option<(usize, u32)> {
    let slots = program.params.slots();
    let masks: Vec<Vec<f64>> = program.masks.iter().map(|m| m.to_values(slots)).collect();
    let (lives, regs) = backward(program, &masks, seeds, false);
    for (k, b) in lives.iter().enumerate() {
        if let Some(&p) = b.list().iter().find(|&&p| !allowed(p)) {
            return Some((k, p));
        }
    }
    for b in regs.iter().flatten() {
        if let Some(&p) = b.list().iter().find(|&&p| !allowed(p)) {
            return Some((program.instrs.len(), p));
        }
    }
    None
}
