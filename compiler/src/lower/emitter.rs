//! The instruction emitter of the lowering: allocates ciphertext registers, appends
//! instructions with the layer they come from, and tracks every register's CKKS level and
//! exact scale exactly as the runtime will (a rescale divides by the actual prime), so the
//! layouts can choose weight scales that land every product on an exact target scale and
//! align the addends of every Add bit for bit. Registers are reference counted by the
//! values that hold them and freed (a `Free` instruction) when the last one dies.
//!
//! Preconditions: the parameter set is final (its primes decide the scales). Guarantees:
//! every emitted instruction is valid for the tracked state (levels match, scales match
//! to 1e-9 at every Add, no rescale below level 0: that is an `Exhausted` error naming the
//! layer).

use std::collections::HashMap;

use runtime::ckks::Params;
use runtime::program::{Instr, Linear, Reg, SlotMask, SlotVector};

use super::error::LowerError;

/// Level and exact scale of a register.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtState {
    pub level: usize,
    pub scale: f64,
}

/// Relative tolerance under which two scales are the same (the runtime's add tolerance
/// is 1e-9).
const SAME_SCALE: f64 = 1e-12;

pub fn same_scale(a: f64, b: f64) -> bool {
    ((a - b) / b).abs() < SAME_SCALE
}

pub struct Emitter {
    q: Vec<u64>,
    /// Delta: the scale every product is brought back to.
    pub delta: f64,
    instrs: Vec<Instr>,
    origins: Vec<String>,
    origin: String,
    state: Vec<Option<CtState>>,
    refs: Vec<usize>,
    free: Vec<Reg>,
    masks: Vec<SlotMask>,
    mask_ids: HashMap<Vec<(u32, u32)>, u32>,
    vectors: Vec<SlotVector>,
    pub slots: usize,
    /// The smallest power-of-two slot period the program works in so far (batch mode).
    period: usize,
    /// Whether a layout may spread one input's values over the whole ring (a single-input
    /// program); batch mode turns it off so that every value stays in its period.
    pub spread: bool,
}

/// What the emitter produced.
pub struct Emitted {
    pub instrs: Vec<Instr>,
    pub origins: Vec<String>,
    pub registers: u32,
    pub masks: Vec<SlotMask>,
    pub vectors: Vec<SlotVector>,
    /// Every value of one input lives in slots `0..period` and every mask repeats with
    /// this period (a power of two; `slots` when the program cannot be batched).
    pub period: usize,
}

impl Emitter {
    pub fn new(params: &Params, delta: f64) -> Self {
        Emitter {
            q: params.q().to_vec(),
            delta,
            instrs: vec![],
            origins: vec![],
            origin: String::new(),
            state: vec![],
            refs: vec![],
            free: vec![],
            masks: vec![],
            mask_ids: HashMap::new(),
            vectors: vec![],
            slots: params.slots(),
            period: 1,
            spread: true,
        }
    }

    /// Records that the program needs a slot period of at least `p` (rounded up to a
    /// power of two): the layout's values of one input stay in slots `0..p` and its masks
    /// repeat every `p` slots. Batch mode places input `b` at slot offset `b * period`.
    pub fn need_period(&mut self, p: usize) {
        self.period = self
            .period
            .max(p.max(1).next_power_of_two())
            .min(self.slots);
    }

    /// Names the layer the following instructions belong to.
    pub fn set_origin(&mut self, name: &str) {
        self.origin = name.to_string();
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The level of a fresh ciphertext (all primes).
    pub fn top_level(&self) -> usize {
        self.q.len() - 1
    }

    /// Frees every register that no value holds, except `keep` (the temporaries of the
    /// op just lowered).
    pub fn sweep(&mut self, keep: &[Reg]) {
        for r in 0..self.state.len() {
            let reg = r as Reg;
            if self.state[r].is_some() && self.refs[r] == 0 && !keep.contains(&reg) {
                self.push(Instr::Free { reg });
                self.state[r] = None;
                self.free.push(reg);
            }
        }
    }

    /// The prime a rescale at `level` divides by.
    pub fn prime(&self, level: usize) -> f64 {
        self.q[level] as f64
    }

    pub fn state(&self, r: Reg) -> CtState {
        self.state[r as usize].expect("register holds a ciphertext")
    }

    fn push(&mut self, ins: Instr) {
        self.instrs.push(ins);
        self.origins.push(self.origin.clone());
    }

    /// A fresh register holding a ciphertext in `st` (the caller emits what writes it).
    pub fn alloc(&mut self, st: CtState) -> Reg {
        let r = match self.free.pop() {
            Some(r) => r,
            None => {
                self.state.push(None);
                self.refs.push(0);
                (self.state.len() - 1) as Reg
            }
        };
        self.state[r as usize] = Some(st);
        r
    }

    /// One more value holds `r`.
    pub fn retain(&mut self, r: Reg) {
        self.refs[r as usize] += 1;
    }

    /// One value holding `r` died; the register is freed with the last.
    pub fn release(&mut self, r: Reg) {
        let c = &mut self.refs[r as usize];
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.push(Instr::Free { reg: r });
            self.state[r as usize] = None;
            self.free.push(r);
        }
    }

    pub fn refs(&self, r: Reg) -> usize {
        self.refs[r as usize]
    }

    /// A register with `r`'s ciphertext that may be modified: `r` itself when `steal` and
    /// no live value but the dying one holds it, else a copy.
    pub fn owned(&mut self, r: Reg, steal: bool) -> Reg {
        if steal && self.refs[r as usize] <= 1 {
            return r;
        }
        let st = self.state(r);
        let d = self.alloc(st);
        self.push(Instr::Copy { dst: d, src: r });
        d
    }

    pub fn rescale(&mut self, r: Reg) -> Result<(), LowerError> {
        let st = self.state(r);
        if st.level == 0 {
            return Err(LowerError::Exhausted {
                layer: self.origin.clone(),
            });
        }
        self.push(Instr::Rescale { reg: r });
        self.state[r as usize] = Some(CtState {
            level: st.level - 1,
            scale: st.scale / self.prime(st.level),
        });
        Ok(())
    }

    pub fn drop_to(&mut self, r: Reg, level: usize) {
        let st = self.state(r);
        if level < st.level {
            self.push(Instr::DropTo {
                reg: r,
                level: level as u32,
            });
            self.state[r as usize] = Some(CtState { level, ..st });
        }
    }

    /// r *= round(value * scale); the scale is multiplied by `scale`.
    pub fn mul_const(&mut self, r: Reg, value: f64, scale: f64) {
        let st = self.state(r);
        self.push(Instr::MulConst {
            reg: r,
            value,
            scale,
        });
        self.state[r as usize] = Some(CtState {
            scale: st.scale * scale,
            ..st
        });
    }

    pub fn mul_int(&mut self, r: Reg, k: i64) {
        self.push(Instr::MulInt { reg: r, k });
    }

    pub fn add_const(&mut self, r: Reg, value: f64) {
        if value != 0.0 {
            self.push(Instr::AddConst { reg: r, value });
        }
    }

    /// r += the slot vector `v` encoded at r's scale (nothing when every entry is zero).
    pub fn add_vec(&mut self, r: Reg, mut v: SlotVector) {
        v.entries.sort_by_key(|e| e.0);
        if v.entries.iter().any(|e| e.1 != 0.0) {
            self.vectors.push(v);
            let vector = (self.vectors.len() - 1) as u32;
            self.push(Instr::AddVec { reg: r, vector });
        }
    }

    /// A new register with src * src (relinearised).
    pub fn square_into(&mut self, src: Reg) -> Reg {
        let st = self.state(src);
        let d = self.alloc(CtState {
            scale: st.scale * st.scale,
            ..st
        });
        self.push(Instr::SquareInto { dst: d, src });
        d
    }

    /// dst = a + b (levels and scales must already agree).
    pub fn add(&mut self, dst: Reg, a: Reg, b: Reg) -> Result<(), LowerError> {
        let (x, y) = (self.state(a), self.state(b));
        if x.level != y.level || !same_scale(x.scale, y.scale) {
            return Err(LowerError::Internal(format!(
                "layer {}: unaligned add (level {} scale 2^{:.4} vs level {} scale 2^{:.4})",
                self.origin,
                x.level,
                x.scale.log2(),
                y.level,
                y.scale.log2()
            )));
        }
        self.push(Instr::Add { dst, a, b });
        self.state[dst as usize] = Some(x);
        Ok(())
    }

    /// A new register with rot(src, steps).
    pub fn rotate(&mut self, src: Reg, steps: i64) -> Reg {
        let st = self.state(src);
        let d = self.alloc(st);
        self.push(Instr::Rotate { dst: d, src, steps });
        d
    }

    /// Index of a 0/1 mask (deduplicated).
    pub fn mask(&mut self, m: SlotMask) -> u32 {
        if let Some(&i) = self.mask_ids.get(&m.ranges) {
            return i;
        }
        let i = self.masks.len() as u32;
        self.mask_ids.insert(m.ranges.clone(), i);
        self.masks.push(m);
        i
    }

    /// Emits a `Linear` over `l.srcs` writing fresh registers (its `dsts` are ignored).
    pub fn linear(&mut self, mut l: Linear, outputs: usize) -> Result<Vec<Reg>, LowerError> {
        let st = self.uniform(&l.srcs)?;
        let out = CtState {
            scale: st.scale * l.weight_scale,
            ..st
        };
        l.dsts = (0..outputs).map(|_| self.alloc(out)).collect();
        let dsts = l.dsts.clone();
        self.push(Instr::Linear(l));
        Ok(dsts)
    }

    /// dst = sum_i vectors[i] (.) srcs[i], the vectors encoded at `scale`.
    pub fn dot(
        &mut self,
        srcs: Vec<Reg>,
        vectors: Vec<SlotVector>,
        scale: f64,
    ) -> Result<Reg, LowerError> {
        let st = self.uniform(&srcs)?;
        let ids = self.push_vectors(vectors);
        let dst = self.alloc(CtState {
            scale: st.scale * scale,
            ..st
        });
        self.push(Instr::Dot(runtime::program::Dot {
            srcs,
            dst,
            vectors: ids,
            scale,
        }));
        Ok(dst)
    }

    /// dst = sum_i (patterns[i] repeated every `period` slots, times masks[i]) (.) srcs[i],
    /// the vectors encoded at `scale` (`Instr::DotMasked`).
    pub fn dot_masked(
        &mut self,
        srcs: Vec<Reg>,
        patterns: Vec<SlotVector>,
        masks: Vec<Option<u32>>,
        period: usize,
        scale: f64,
    ) -> Result<Reg, LowerError> {
        let st = self.uniform(&srcs)?;
        let ids = self.push_vectors(patterns);
        let dst = self.alloc(CtState {
            scale: st.scale * scale,
            ..st
        });
        self.push(Instr::DotMasked(runtime::program::DotMasked {
            srcs,
            dst,
            patterns: ids,
            masks,
            period: period as u32,
            scale,
        }));
        Ok(dst)
    }

    /// Appends slot vectors (entries sorted) to the program's table; their indices.
    fn push_vectors(&mut self, vs: Vec<SlotVector>) -> Vec<u32> {
        vs.into_iter()
            .map(|mut v| {
                v.entries.sort_by_key(|e| e.0);
                self.vectors.push(v);
                (self.vectors.len() - 1) as u32
            })
            .collect()
    }

    /// The common state of `regs` (an internal error if they differ).
    pub fn uniform(&self, regs: &[Reg]) -> Result<CtState, LowerError> {
        let first = regs
            .first()
            .map(|&r| self.state(r))
            .ok_or_else(|| LowerError::Internal(format!("layer {}: no inputs", self.origin)))?;
        for &r in regs {
            let s = self.state(r);
            if s.level != first.level || !same_scale(s.scale, first.scale) {
                return Err(LowerError::Internal(format!(
                    "layer {}: inputs differ in level or scale",
                    self.origin
                )));
            }
        }
        Ok(first)
    }

    /// The weight scale of a product of an input at `st`: Delta * q_level / scale, so that
    /// the rescale a consumer does later lands on exactly Delta. At level 0 (no prime left
    /// to rescale) a fresh input takes weights at Delta and the product stays at
    /// ~Delta^2 (the base prime holds it). `None` when the input must be rescaled first
    /// (the scale would fall below Delta / 16) or nothing fits.
    pub fn product_scale(&self, st: CtState) -> Option<f64> {
        if st.level == 0 {
            return (st.scale <= 2.0 * self.delta).then_some(self.delta);
        }
        let w = self.delta * self.prime(st.level) / st.scale;
        (w >= self.delta / 16.0).then_some(w)
    }

    pub fn finish(self) -> Emitted {
        Emitted {
            registers: self.state.len() as u32,
            instrs: self.instrs,
            origins: self.origins,
            masks: self.masks,
            vectors: self.vectors,
            period: self.period,
        }
    }
}
