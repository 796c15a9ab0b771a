//! The instruction set of `.fheprog`. Instructions name ciphertext registers; every one of
//! them is a fixed CKKS operation except [`Linear`], the layout-level building block of
//! convolutions, pooling and dense layers: a weighted sum of rotated, optionally masked
//! inputs, evaluated with hoisted rotations and fused multiply-accumulate.

use serde::{Deserialize, Serialize};

/// A ciphertext register.
pub type Reg = u32;

/// `dst[o] = sum_i sum_t weights[(o * srcs + i) * taps + t] * (mask_t (.) rot(src_i, step_t))`
/// (+ `bias[o]` on the slots of `bias_mask`), with every product encoded at
/// `weight_scale`: a tap without a mask multiplies by the integer round(w * weight_scale),
/// a masked tap by the plaintext w * mask_t encoded at that scale (one per distinct weight
/// value and mask, cached). Output scale = input scale * weight_scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub srcs: Vec<Reg>,
    pub dsts: Vec<Reg>,
    /// Rotation step of each tap (left rotation; 0 for none).
    pub steps: Vec<i64>,
    /// Mask (index into `Program::masks`) of each tap, or none.
    pub masks: Vec<Option<u32>>,
    pub weights: Vec<f64>,
    pub weight_scale: f64,
    pub bias: Option<Vec<f64>>,
    pub bias_mask: Option<u32>,
}

impl Linear {
    /// The (input, step) terms when the Linear is a plain sum of rotations
    /// `dst = sum_i rot(src_i, steps_i)`: one output, input i read by tap i alone with
    /// weight 1 at scale 1, no masks, no bias. The executor evaluates it with one ModDown
    /// for the whole sum (`Evaluator::rotate_sum`).
    pub fn rotation_sum(&self) -> Option<Vec<(Reg, i64)>> {
        let k = self.srcs.len();
        if self.dsts.len() != 1 || k < 2 || self.steps.len() != k || self.weights.len() != k * k {
            return None;
        }
        if self.bias.is_some() || self.weight_scale != 1.0 || self.masks.iter().any(|m| m.is_some())
        {
            return None;
        }
        let identity = (0..k).all(|i| (0..k).all(|t| self.weights[i * k + t] == f64::from(i == t)));
        identity.then(|| {
            self.srcs
                .iter()
                .copied()
                .zip(self.steps.iter().copied())
                .collect()
        })
    }
}

/// `dst = sum_i vectors[i] (.) src_i`: slot-wise products with plaintext vectors
/// (`Program::vectors`) encoded at `scale`, summed (a dense layer's per-output partial
/// products before the rotate-and-sum). Output scale = input scale * `scale`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dot {
    pub srcs: Vec<Reg>,
    pub dst: Reg,
    pub vectors: Vec<u32>,
    pub scale: f64,
}

/// `dst = sum_i v_i (.) src_i` with `v_i[s] = pattern_i[s mod period] * mask_i[s]`:
/// plaintext vectors built at run time from a repeating pattern (`Program::vectors`, its
/// entries in slots `0..period`) and an optional 0/1 mask (`Program::masks`), encoded at
/// `scale`. The packed layout's convolution diagonals (channel weights repeating per pixel
/// times a pixel-validity mask) without storing N/2 values per diagonal.
/// Output scale = input scale * `scale`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DotMasked {
    pub srcs: Vec<Reg>,
    pub dst: Reg,
    pub patterns: Vec<u32>,
    pub masks: Vec<Option<u32>>,
    /// A power of two dividing the slot count.
    pub period: u32,
    pub scale: f64,
}

/// One step of a program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Instr {
    Linear(Linear),
    Dot(Dot),
    /// dst = a + b (levels and scales must match).
    Add {
        dst: Reg,
        a: Reg,
        b: Reg,
    },
    /// r = r * r, relinearised.
    Square {
        reg: Reg,
    },
    /// dst = src * src relinearised, keeping src.
    SquareInto {
        dst: Reg,
        src: Reg,
    },
    /// r = r * round(value * scale); the scale is multiplied by `scale`.
    MulConst {
        reg: Reg,
        value: f64,
        scale: f64,
    },
    /// r = r * k (integer, scale unchanged).
    MulInt {
        reg: Reg,
        k: i64,
    },
    /// r = r + value on every slot.
    AddConst {
        reg: Reg,
        value: f64,
    },
    /// r = r rescaled by its last prime.
    Rescale {
        reg: Reg,
    },
    /// r = r with primes dropped down to `level`.
    DropTo {
        reg: Reg,
        level: u32,
    },
    /// dst = rot(src, steps).
    Rotate {
        dst: Reg,
        src: Reg,
        steps: i64,
    },
    /// dst = src.
    Copy {
        dst: Reg,
        src: Reg,
    },
    /// Frees a register (streaming: memory is the live registers only).
    Free {
        reg: Reg,
    },
    // New variants go last: the wire form numbers variants in order, so programs written
    // before them still load.
    /// r = r + the plaintext slot vector `Program::vectors[vector]`, encoded at r's scale
    /// (per-slot constants: a bias or polynomial coefficient per feature sharing r).
    AddVec {
        reg: Reg,
        vector: u32,
    },
    /// r = r + `values[(slot / block) % values.len()]` on every slot, encoded at r's scale:
    /// a constant per block of `block` slots, cycling through `values` (an ensemble's
    /// per-member constant, member m owning the blocks m, m + M, m + 2M, ...).
    AddBlocks {
        reg: Reg,
        block: u32,
        values: Vec<f64>,
    },
    DotMasked(DotMasked),
}

/// The slot vector of [`Instr::AddBlocks`]: `values[(slot / block) % values.len()]`.
pub fn block_values(block: u32, values: &[f64], slots: usize) -> Vec<f64> {
    let b = block.max(1) as usize;
    (0..slots)
        .map(|s| {
            values
                .get((s / b) % values.len().max(1))
                .copied()
                .unwrap_or(0.0)
        })
        .collect()
}

impl Instr {
    /// The inputs, output and plaintext scale of a sum of slot-wise plaintext products
    /// (`Dot`, `DotMasked`), which liveness and level checks treat alike.
    pub fn plaintext_dot(&self) -> Option<(&[Reg], Reg, f64)> {
        match self {
            Instr::Dot(d) => Some((&d.srcs, d.dst, d.scale)),
            Instr::DotMasked(d) => Some((&d.srcs, d.dst, d.scale)),
            _ => None,
        }
    }

    /// Registers read by the instruction.
    pub fn reads(&self) -> Vec<Reg> {
        match self {
            Instr::Linear(l) => l.srcs.clone(),
            Instr::Dot(d) => d.srcs.clone(),
            Instr::DotMasked(d) => d.srcs.clone(),
            Instr::Add { a, b, .. } => vec![*a, *b],
            Instr::Square { reg }
            | Instr::MulConst { reg, .. }
            | Instr::MulInt { reg, .. }
            | Instr::AddConst { reg, .. }
            | Instr::AddVec { reg, .. }
            | Instr::AddBlocks { reg, .. }
            | Instr::Rescale { reg }
            | Instr::DropTo { reg, .. } => vec![*reg],
            Instr::SquareInto { src, .. } | Instr::Rotate { src, .. } | Instr::Copy { src, .. } => {
                vec![*src]
            }
            Instr::Free { .. } => vec![],
        }
    }

    /// Registers written by the instruction.
    pub fn writes(&self) -> Vec<Reg> {
        match self {
            Instr::Linear(l) => l.dsts.clone(),
            Instr::Dot(d) => vec![d.dst],
            Instr::DotMasked(d) => vec![d.dst],
            Instr::Add { dst, .. }
            | Instr::SquareInto { dst, .. }
            | Instr::Rotate { dst, .. }
            | Instr::Copy { dst, .. } => vec![*dst],
            Instr::Square { reg }
            | Instr::MulConst { reg, .. }
            | Instr::MulInt { reg, .. }
            | Instr::AddConst { reg, .. }
            | Instr::AddVec { reg, .. }
            | Instr::AddBlocks { reg, .. }
            | Instr::Rescale { reg }
            | Instr::DropTo { reg, .. } => vec![*reg],
            Instr::Free { .. } => vec![],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Instr::Linear(_) => "Linear",
            Instr::Dot(_) => "Dot",
            Instr::DotMasked(_) => "DotMasked",
            Instr::Add { .. } => "Add",
            Instr::Square { .. } => "Square",
            Instr::SquareInto { .. } => "SquareInto",
            Instr::MulConst { .. } => "MulConst",
            Instr::MulInt { .. } => "MulInt",
            Instr::AddConst { .. } => "AddConst",
            Instr::AddVec { .. } => "AddVec",
            Instr::AddBlocks { .. } => "AddBlocks",
            Instr::Rescale { .. } => "Rescale",
            Instr::DropTo { .. } => "DropTo",
            Instr::Rotate { .. } => "Rotate",
            Instr::Copy { .. } => "Copy",
            Instr::Free { .. } => "Free",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(k: usize, weights: Vec<f64>) -> Linear {
        Linear {
            srcs: (0..k as u32).collect(),
            dsts: vec![9],
            steps: (0..k as i64).map(|s| 3 * s).collect(),
            masks: vec![None; k],
            weights,
            weight_scale: 1.0,
            bias: None,
            bias_mask: None,
        }
    }

    #[test]
    fn only_identity_weights_at_scale_one_are_a_rotation_sum() {
        let id = |k: usize| -> Vec<f64> { (0..k * k).map(|j| f64::from(j / k == j % k)).collect() };
        assert_eq!(
            sum_of(3, id(3)).rotation_sum(),
            Some(vec![(0, 0), (1, 3), (2, 6)])
        );
        let mut w = id(3);
        w[1] = 1.0;
        assert_eq!(sum_of(3, w).rotation_sum(), None);
        let mut l = sum_of(3, id(3));
        l.weight_scale = 2.0;
        assert_eq!(l.rotation_sum(), None);
        let mut l = sum_of(3, id(3));
        l.masks[2] = Some(0);
        assert_eq!(l.rotation_sum(), None);
        let mut l = sum_of(3, id(3));
        l.bias = Some(vec![1.0]);
        assert_eq!(l.rotation_sum(), None);
        let mut l = sum_of(2, id(2));
        l.dsts = vec![7, 8];
        assert_eq!(l.rotation_sum(), None);
        assert_eq!(sum_of(1, id(1)).rotation_sum(), None);
    }
}
