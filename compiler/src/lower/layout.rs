//! The layout interface: how tensor values live in ciphertext slots, and how each IR op is
//! lowered for that placement. The reference layout (`reference.rs`, design brief 1.5) is
//! one implementation; a packed layout is another implementation of the same trait.
//!
//! Every value a layout returns is uniform: all its registers share one level and one
//! exact scale (the emitter checks it before every `Linear`, `Dot` and `Add`).

use passes::ir::{AveragePool, Conv, Gemm, Poly, SliceAxis};
use runtime::program::Reg;

use super::emitter::Emitter;
use super::error::LowerError;

/// A rank-4 tensor (1, C, H, W): channel `c` in register `chans[c]` (`None`: identically
/// zero), pixel (i, j) at slot `origin + i * row + j * col`.
#[derive(Clone, Debug, PartialEq)]
pub struct Spatial {
    pub chans: Vec<Option<Reg>>,
    pub h: usize,
    pub w: usize,
    pub origin: i64,
    pub row: i64,
    pub col: i64,
    /// `Some(P)`: the whole ring repeats with period P (a single-input program's input is
    /// placed in every period; windows whose masks repeat with a divisor of P keep it).
    pub period: Option<u32>,
}

impl Spatial {
    pub fn slot(&self, i: usize, j: usize) -> i64 {
        self.origin + i as i64 * self.row + j as i64 * self.col
    }
}

/// A rank-2 tensor (1, F): feature `k` at (register, slot) `items[k]` (`None`: zero).
/// With `period = Some(P)` every item is also at slot + m P for every m (the whole ring
/// repeats with period P), which the diagonal method of dense layers needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub items: Vec<Option<(Reg, u32)>>,
    pub period: Option<u32>,
}

/// A rank-4 tensor (1, C, H, W) in one ciphertext (the packed layout, `packed.rs`):
/// channel `c` of pixel (i, j) at slot `(i * w + j) * 2 cp + c` and again at `+ cp` (the
/// channel group is doubled, so a rotation by d < cp reads channel (c + d) mod cp);
/// channels C..cp are zero; the pattern repeats every `h * w * 2 cp` slots over the ring.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelPacked {
    pub reg: Reg,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Channel group: a power of two >= C (slots per pixel: 2 cp).
    pub cp: usize,
}

impl ChannelPacked {
    /// Slots per pixel.
    pub fn group(&self) -> usize {
        2 * self.cp
    }
    /// Slots of one copy of the tensor (a power of two).
    pub fn period(&self) -> usize {
        self.h * self.w * self.group()
    }
    /// The first slot of channel `c` of pixel (i, j).
    pub fn slot(&self, c: usize, i: usize, j: usize) -> usize {
        (i * self.w + j) * self.group() + c
    }
}

/// An encrypted value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Spatial(Spatial),
    Features(Features),
    Packed(ChannelPacked),
}

impl Value {
    /// The distinct registers the value holds.
    pub fn regs(&self) -> Vec<Reg> {
        let mut v: Vec<Reg> = match self {
            Value::Spatial(s) => s.chans.iter().flatten().copied().collect(),
            Value::Features(f) => f.items.iter().flatten().map(|x| x.0).collect(),
            Value::Packed(p) => vec![p.reg],
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// How the client packs the input: (tensor index, ciphertext, slot) and the number of
/// input ciphertexts (registers 0..cts).
pub struct InputPacking {
    pub placement: Vec<(u32, u32, u32)>,
    pub cts: u32,
}

/// A ciphertext layout: one method per op kind of the rewritten IR.
///
/// `steal` tells a method that its input value dies with this op (no later consumer), so
/// its registers may be modified in place (`Emitter::owned`).
pub trait Layout {
    fn name(&self) -> &'static str;
    /// Places the graph input (allocating registers 0..cts in order).
    fn input(&self, em: &mut Emitter, shape: &[usize])
        -> Result<(Value, InputPacking), LowerError>;
    fn conv(&self, em: &mut Emitter, x: &Value, conv: &Conv) -> Result<Value, LowerError>;
    fn sum_pool(&self, em: &mut Emitter, x: &Value, p: &AveragePool) -> Result<Value, LowerError>;
    fn global_sum_pool(&self, em: &mut Emitter, x: &Value) -> Result<Value, LowerError>;
    fn gemm(&self, em: &mut Emitter, x: &Value, g: &Gemm) -> Result<Value, LowerError>;
    /// x * c per channel (c of length 1 or C): a constant Mul, Div (c = 1/d) or BN.
    fn affine(
        &self,
        em: &mut Emitter,
        x: &Value,
        mul: &[f64],
        add: &[f64],
        steal: bool,
    ) -> Result<Value, LowerError>;
    fn poly(&self, em: &mut Emitter, x: &Value, p: &Poly, steal: bool)
        -> Result<Value, LowerError>;
    /// a + sign * b.
    fn add(
        &self,
        em: &mut Emitter,
        a: &Value,
        b: &Value,
        sign: i64,
        steal: (bool, bool),
    ) -> Result<Value, LowerError>;
    /// A reshape or flatten to `shape` (same element order).
    fn reshape(&self, em: &mut Emitter, x: &Value, shape: &[usize]) -> Result<Value, LowerError>;
    fn slice(&self, em: &mut Emitter, x: &Value, axes: &[SliceAxis]) -> Result<Value, LowerError>;
    fn pad(
        &self,
        em: &mut Emitter,
        x: &Value,
        pads: &[(usize, usize)],
    ) -> Result<Value, LowerError>;
    /// Where each output value sits: (tensor index, register, slot).
    fn output(&self, em: &mut Emitter, x: &Value) -> Result<Vec<(u32, Reg, u32)>, LowerError>;
}
