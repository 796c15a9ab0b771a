//! The program container: parameters, masks, input and output layouts, instructions, and
//! (de)serialisation through the checksummed, versioned file container.

use crate::ckks::params::Params;
use crate::codec::container::{decode, encode, FileKind, Header};
use crate::error::{Error, Result};
use crate::program::instr::{Instr, Reg};
use serde::{Deserialize, Serialize};

/// A 0/1 slot pattern, stored as sorted half-open ranges of ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMask {
    pub ranges: Vec<(u32, u32)>,
}

impl SlotMask {
    /// The mask as slot values (length `slots`).
    pub fn to_values(&self, slots: usize) -> Vec<f64> {
        let mut v = vec![0.0; slots];
        for &(a, b) in &self.ranges {
            for x in v.iter_mut().take((b as usize).min(slots)).skip(a as usize) {
                *x = 1.0;
            }
        }
        v
    }

    /// The mask with ones at the given slots.
    pub fn from_slots(mut slots: Vec<u32>) -> Self {
        slots.sort_unstable();
        slots.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for s in slots {
            match ranges.last_mut() {
                Some(r) if r.1 == s => r.1 = s + 1,
                _ => ranges.push((s, s + 1)),
            }
        }
        SlotMask { ranges }
    }
}

/// A sparse slot vector (a dense layer's weights laid out on the slots of its input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotVector {
    /// (slot, value), slots strictly increasing.
    pub entries: Vec<(u32, f64)>,
}

impl SlotVector {
    pub fn to_values(&self, slots: usize) -> Vec<f64> {
        let mut v = vec![0.0; slots];
        for &(s, x) in &self.entries {
            if let Some(y) = v.get_mut(s as usize) {
                *y = x;
            }
        }
        v
    }
}

/// How an RGB image becomes the input tensor: pixels scaled to [0, 1], then
/// (p - mean) / std per channel, as the model was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageNormalization {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// How the client packs its input tensor: value `index` of the flattened tensor goes to
/// slot `slot` of input ciphertext `ct` (registers 0..cts), at `scale` and `level`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputLayout {
    pub shape: Vec<usize>,
    /// Set when the input is an NCHW image the client may give as a PNG.
    pub image: Option<ImageNormalization>,
    pub cts: u32,
    /// (tensor index, ciphertext, slot)
    pub placement: Vec<(u32, u32, u32)>,
    pub scale: f64,
    pub level: u32,
}

impl InputLayout {
    /// The slot vectors of each input ciphertext for a flattened input tensor (client
    /// side); errors if the tensor has the wrong number of values.
    pub fn pack(&self, tensor: &[f64], slots: usize) -> Result<Vec<Vec<f64>>> {
        let total: usize = self.shape.iter().product();
        if tensor.len() != total {
            return Err(Error::OutOfRange(format!(
                "the program takes an input of shape {:?} ({total} values), {} given",
                self.shape,
                tensor.len()
            )));
        }
        let mut cts = vec![vec![0.0; slots]; self.cts as usize];
        for &(idx, ct, slot) in &self.placement {
            cts[ct as usize][slot as usize] = tensor[idx as usize];
        }
        Ok(cts)
    }
}

impl OutputLayout {
    /// The flattened output tensor from the decrypted slot vectors of the output
    /// registers (client side).
    pub fn gather(
        &self,
        decrypted: &std::collections::BTreeMap<Reg, Vec<f64>>,
    ) -> Result<Vec<f64>> {
        let total: usize = self.shape.iter().product();
        let mut out = vec![0.0; total];
        for &(idx, reg, slot) in &self.placement {
            let v = decrypted
                .get(&reg)
                .ok_or_else(|| Error::Corrupt(format!("output register {reg} was not returned")))?;
            out[idx as usize] = *v
                .get(slot as usize)
                .ok_or_else(|| Error::Corrupt(format!("output slot {slot} out of range")))?;
        }
        Ok(out)
    }
}

/// Where each value of the output tensor sits: (tensor index, register, slot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputLayout {
    pub shape: Vec<usize>,
    pub placement: Vec<(u32, Reg, u32)>,
    /// Ensemble members (1: a single model). With M > 1 the output tensor is M models'
    /// outputs one after another (leading axis M times the model's); the client applies a
    /// softmax to each member's rows and averages them.
    pub members: u32,
}

/// A compiled program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub params: Params,
    pub masks: Vec<SlotMask>,
    /// Plaintext slot vectors of `Dot` instructions.
    pub vectors: Vec<SlotVector>,
    pub input: InputLayout,
    pub output: OutputLayout,
    pub registers: u32,
    pub instrs: Vec<Instr>,
    /// Human-readable origin of each instruction (layer name), same length as `instrs`.
    pub origins: Vec<String>,
}

impl Program {
    /// The plaintext slot vectors of every term of a `DotMasked` (`slots` values each),
    /// each distinct mask expanded once (the terms of one tap share theirs).
    pub fn dot_masked_values(&self, d: &crate::program::DotMasked) -> Vec<Vec<f64>> {
        let slots = self.params.slots();
        let period = (d.period as usize).max(1);
        let mut masks: std::collections::HashMap<u32, Vec<f64>> = Default::default();
        for m in d.masks.iter().flatten() {
            masks
                .entry(*m)
                .or_insert_with(|| self.masks[*m as usize].to_values(slots));
        }
        d.patterns
            .iter()
            .zip(&d.masks)
            .map(|(&pi, m)| {
                let pat = self.vectors[pi as usize].to_values(period);
                let mut v: Vec<f64> = (0..slots).map(|s| pat[s % period]).collect();
                if let Some(mv) = m.and_then(|m| masks.get(&m)) {
                    for (x, m) in v.iter_mut().zip(mv) {
                        *x *= m;
                    }
                }
                v
            })
            .collect()
    }

    /// Structural checks: registers in range, masks exist, layouts in the slot range.
    pub fn validate(&self) -> Result<()> {
        self.params.validate()?;
        let bad = |m: String| Err(Error::Corrupt(format!("program: {m}")));
        let slots = self.params.slots() as u32;
        if self.origins.len() != self.instrs.len() {
            return bad("origins and instructions differ in length".into());
        }
        if self.input.cts > self.registers {
            return bad("more input ciphertexts than registers".into());
        }
        // Bounds that keep every allocation proportional to the file's size: each input
        // ciphertext carries at least one value, each register is an input or written by
        // an instruction, each output value has a placement.
        if self.input.cts as usize > self.input.placement.len().max(1) {
            return bad("more input ciphertexts than input values".into());
        }
        let writes: usize = self.instrs.iter().map(|i| i.writes().len()).sum();
        if self.registers as usize > self.input.cts as usize + writes {
            return bad(format!(
                "{} registers, but only {} can ever hold a value",
                self.registers,
                self.input.cts as usize + writes
            ));
        }
        if self.input.level as usize > self.params.max_level() {
            return bad("input level above the top level".into());
        }
        let volume = |shape: &[usize]| {
            shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&t| t <= u32::MAX as usize)
        };
        let Some(total) = volume(&self.input.shape) else {
            return bad(format!("input shape {:?} is too large", self.input.shape));
        };
        for &(idx, ct, slot) in &self.input.placement {
            if idx as usize >= total || ct >= self.input.cts || slot >= slots {
                return bad("input placement out of range".into());
            }
        }
        let total = match volume(&self.output.shape) {
            Some(t) if t <= self.output.placement.len() => t,
            _ => {
                return bad(format!(
                    "output shape {:?} has more values than placements ({})",
                    self.output.shape,
                    self.output.placement.len()
                ))
            }
        };
        for &(idx, reg, slot) in &self.output.placement {
            if idx as usize >= total || reg >= self.registers || slot >= slots {
                return bad("output placement out of range".into());
            }
        }
        let members = self.output.members as usize;
        if members == 0 || self.output.shape.first().is_none_or(|&d| d % members != 0) {
            return bad(format!(
                "output of {members} ensemble members, but its shape {:?} does not split into them",
                self.output.shape
            ));
        }
        for m in &self.masks {
            if m.ranges.iter().any(|&(a, b)| a >= b || b > slots) {
                return bad("mask range out of the slot range".into());
            }
        }
        for v in &self.vectors {
            let sorted = v.entries.windows(2).all(|w| w[0].0 < w[1].0);
            let finite = v.entries.iter().all(|e| e.1.is_finite());
            if !sorted || !finite || v.entries.last().is_some_and(|e| e.0 >= slots) {
                return bad("slot vector out of range, unsorted or not finite".into());
            }
        }
        for (k, ins) in self.instrs.iter().enumerate() {
            let regs = ins.reads().into_iter().chain(ins.writes());
            if regs.into_iter().any(|r| r >= self.registers) {
                return bad(format!("instruction {k} names a register out of range"));
            }
            if let Instr::AddBlocks { block, values, .. } = ins {
                if *block == 0
                    || values.is_empty()
                    || values.len() > slots as usize
                    || values.iter().any(|v| !v.is_finite())
                {
                    return bad(format!(
                        "instruction {k}: AddBlocks needs a non-zero block and 1..=slots finite values"
                    ));
                }
            }
            if let Instr::AddVec { vector, .. } = ins {
                if *vector >= self.vectors.len() as u32 {
                    return bad(format!("instruction {k}: AddVec names an unknown vector"));
                }
            }
            if let Instr::Dot(d) = ins {
                let nv = self.vectors.len() as u32;
                if d.srcs.len() != d.vectors.len() || d.vectors.iter().any(|&v| v >= nv) {
                    return bad(format!("instruction {k}: Dot names unknown vectors"));
                }
                if d.srcs.is_empty() || !(d.scale.is_finite() && d.scale >= 1.0) {
                    return bad(format!("instruction {k}: Dot has no inputs or a bad scale"));
                }
            }
            if let Instr::DotMasked(d) = ins {
                let (nv, nm) = (self.vectors.len() as u32, self.masks.len() as u32);
                let period = d.period as usize;
                if d.srcs.len() != d.patterns.len()
                    || d.srcs.len() != d.masks.len()
                    || d.patterns.iter().any(|&v| v >= nv)
                    || d.masks.iter().flatten().any(|&m| m >= nm)
                {
                    return bad(format!(
                        "instruction {k}: DotMasked names unknown vectors or masks"
                    ));
                }
                if !period.is_power_of_two()
                    || period > slots as usize
                    || d.patterns.iter().any(|&v| {
                        self.vectors[v as usize]
                            .entries
                            .iter()
                            .any(|e| e.0 as usize >= period)
                    })
                {
                    return bad(format!(
                        "instruction {k}: DotMasked patterns must lie in one period (a power of two <= the slots)"
                    ));
                }
                if d.srcs.is_empty() || !(d.scale.is_finite() && d.scale >= 1.0) {
                    return bad(format!(
                        "instruction {k}: DotMasked has no inputs or a bad scale"
                    ));
                }
            }
            if let Instr::Linear(l) = ins {
                let want = l.srcs.len() * l.dsts.len() * l.steps.len();
                if l.masks.len() != l.steps.len() || l.weights.len() != want {
                    return bad(format!("instruction {k}: Linear has inconsistent sizes"));
                }
                let nm = self.masks.len() as u32;
                if l.masks
                    .iter()
                    .flatten()
                    .chain(&l.bias_mask)
                    .any(|&m| m >= nm)
                {
                    return bad(format!("instruction {k}: unknown mask"));
                }
                if l.bias.as_ref().is_some_and(|b| b.len() != l.dsts.len()) {
                    return bad(format!("instruction {k}: bias length"));
                }
                if !(l.weight_scale.is_finite() && l.weight_scale >= 1.0) {
                    return bad(format!("instruction {k}: weight scale"));
                }
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let h = Header {
            kind: FileKind::Program,
            key_set: [0; 16],
            params_id: self.params.id(),
        };
        encode(&h, self)
    }

    /// Loads and validates a program (version, checksum, structure, security).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (h, p): (_, Program) = decode(bytes, FileKind::Program)?;
        if h.params_id != p.params.id() {
            return Err(Error::Corrupt(
                "program header and parameters disagree".into(),
            ));
        }
        p.validate()?;
        Ok(p)
    }
}
