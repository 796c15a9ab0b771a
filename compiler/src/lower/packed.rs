//! The packed layout (issue 8, beyond the paper's one-channel-per-ciphertext layout): a
//! whole (C, H, W) tensor lives in ONE ciphertext, channels interleaved per pixel
//! ([`ChannelPacked`]: slot `(i w + j) 2cp + c`, the channel group doubled so that a
//! rotation by d < cp reads channel (c + d) mod cp of the same pixel).
//!
//! A stride-1 "same" convolution is `y = sum_t valid_t (.) rot_{s_t}(w_t)` over its taps t
//! (pixel shift s_t = (dy w + dx) 2cp, validity mask valid_t: the pixels whose neighbour is
//! inside the image), where the channel mixing `w_t = sum_d D_{t,d} (.) rot_d(x)` runs in
//! baby-step giant-step form: `w_t = sum_g rot_{gB}(sum_b E_{t,g,b} (.) rot_b(x))`. The
//! diagonals D and E depend on the channel offset only (they repeat every 2cp slots), so
//! the rotation keys are the B - 1 baby steps, the giant steps plus column shifts
//! gB + dx 2cp, the row shifts and the upper-half refill (-cp): a few dozen keys for any
//! channel count. Per conv: B - 1 hoisted rotations, then per kernel row ONE sum of
//! rotations over its (tap, giant step) products (`rotate_sum`: every term raised and
//! switched, one ModDown for the sum) and one more over the rows' row shifts: ~9 cp / B
//! key switches but four ModDowns, against C_in x 8 hoisted rotations in the reference
//! layout; 9 cp diagonal products against C_in x C_out x 9.
//!
//! Levels: the validity masks are folded into the diagonals (each product's plaintext is
//! the channel weights times the pixel validity, built at run time by `Instr::DotMasked`
//! from one pixel's pattern and one mask per tap), so a conv costs what it costs in the
//! reference layout: one plaintext product.
//!
//! Rewrites nothing (a lowering). Preconditions: every 4-D tensor has H W a power of two
//! and H W 2cp <= N/2 slots; convolutions have stride 1, group 1 and "same" padding (others
//! are clear `Unsupported` errors: compile them with the reference layout). After the
//! global pool the value is a repeated feature vector and the reference layout's dense
//! lowering (diagonal method) takes over. Guarantees: every value is uniform (one
//! register), checked against the interpreter by `compiler/tests/packed_layout.rs`.

use std::collections::HashMap;

use passes::ir::{AveragePool, Conv, Gemm, Graph, Op, Poly, SliceAxis};
use runtime::program::{Linear, Reg, SlotMask, SlotVector};

use super::emitter::Emitter;
use super::error::LowerError;
use super::layout::{ChannelPacked, Features, InputPacking, Layout, Value};
use super::reference::{add_aligned, freshen, freshen_and_rotate, Reference};

const NAME: &str = "packed";

/// The packed layout, with the channel group of every spatial size of one graph.
pub struct Packed {
    groups: HashMap<(usize, usize), usize>,
}

/// Baby steps of a channel group: 8 up to 16 channels (the first stage runs at the top
/// level, where every key is largest), 16 beyond (the deeper stages' keys are small, and
/// 16 babies turn 9 (cp/8 - 1) giant rotations per conv into 9 (cp/16 - 1): 34 -> 24
/// rotations per 32-channel conv, 70 -> 42 per 64-channel one).
fn babies_for(cp: usize) -> usize {
    if cp <= 16 {
        cp.min(8)
    } else {
        16
    }
}

fn layout_err(em: &Emitter, why: impl Into<String>) -> LowerError {
    LowerError::Layout {
        layer: em.origin().to_string(),
        why: why.into(),
    }
}

fn unsupported(em: &Emitter, op: &str, why: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        layer: em.origin().to_string(),
        op: op.to_string(),
        layout: NAME,
        why: why.into(),
    }
}

fn exhausted(em: &Emitter) -> LowerError {
    LowerError::Exhausted {
        layer: em.origin().to_string(),
    }
}

fn packed<'a>(em: &Emitter, x: &'a Value) -> Result<&'a ChannelPacked, LowerError> {
    match x {
        Value::Packed(p) => Ok(p),
        _ => Err(layout_err(em, "expects a packed NCHW tensor")),
    }
}

fn per(v: &[f64], c: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[c]
    }
}

impl Packed {
    /// The channel group of each spatial size: the smallest power of two that holds every
    /// channel count of a 4-D tensor of that size in `g` (so a conv's input and output
    /// share one pixel pitch).
    pub fn for_graph(g: &Graph) -> Packed {
        let mut groups: HashMap<(usize, usize), usize> = HashMap::new();
        for id in g.node_ids() {
            let n = g.node(id);
            if matches!(n.op, Op::Constant(_)) {
                continue;
            }
            if let [_, c, h, w] = n.shape[..] {
                let e = groups.entry((h, w)).or_insert(1);
                *e = (*e).max(c.max(1).next_power_of_two());
            }
        }
        Packed { groups }
    }

    /// The level units this layout spends beyond the level plan's rules (made for the
    /// reference layout): a prime (two units) per downsampling, i.e. per stride-2
    /// convolution and per subsampled axis of a Slice (`assign_levels::run_with_extra`).
    pub fn extra_units(op: &Op) -> u32 {
        match op {
            Op::Conv(c) if c.strides != [1, 1] => 2,
            Op::Slice { axes } => 2 * axes.iter().skip(2).filter(|a| a.step > 1).count() as u32,
            _ => 0,
        }
    }

    /// The smallest ring (log2 N) whose N/2 slots hold one copy of every tensor.
    pub fn min_log_n(&self) -> u32 {
        let most = self
            .groups
            .iter()
            .map(|(&(h, w), &cp)| (h * w).next_power_of_two() * 2 * cp)
            .max()
            .unwrap_or(1);
        most.trailing_zeros() + 1
    }

    fn group_of(&self, c: usize, h: usize, w: usize) -> usize {
        self.groups
            .get(&(h, w))
            .copied()
            .unwrap_or(1)
            .max(c.max(1).next_power_of_two())
    }
}

/// The slot vector that repeats `pattern` (one channel group, 2cp offsets) over the ring.
fn group_vector(slots: usize, pattern: &[f64]) -> SlotVector {
    let g = pattern.len();
    let mut entries = vec![];
    for base in (0..slots).step_by(g) {
        for (k, &v) in pattern.iter().enumerate() {
            if v != 0.0 {
                entries.push(((base + k) as u32, v));
            }
        }
    }
    SlotVector { entries }
}

/// A per-channel constant (length 1 or C) on both halves of every channel group.
fn channel_pattern(p: &ChannelPacked, v: &[f64]) -> Vec<f64> {
    let mut pat = vec![0.0; p.group()];
    for c in 0..p.c {
        pat[c] = per(v, c);
        pat[c + p.cp] = per(v, c);
    }
    pat
}

fn uniform(v: &[f64], c: usize) -> bool {
    v.len() == 1 || (0..c).all(|k| v[k] == v[0])
}

/// `r * v` per channel at `scale`: a constant multiply when every channel has the same
/// value, else a slot-vector product (a new register).
fn scaled(
    em: &mut Emitter,
    p: &ChannelPacked,
    r: Reg,
    v: &[f64],
    scale: f64,
    steal: bool,
) -> Result<Reg, LowerError> {
    if uniform(v, p.c) {
        let r = em.owned(r, steal);
        em.mul_const(r, per(v, 0), scale);
        Ok(r)
    } else {
        let pat = channel_pattern(p, v);
        em.dot(vec![r], vec![group_vector(em.slots, &pat)], scale)
    }
}

/// `r += v` per channel (on both halves of every group; nothing where v is zero).
fn add_channels(em: &mut Emitter, p: &ChannelPacked, r: Reg, v: &[f64]) {
    if uniform(v, p.c) && p.c == p.cp {
        em.add_const(r, per(v, 0));
    } else {
        let pat = channel_pattern(p, v);
        let sv = group_vector(em.slots, &pat);
        em.add_vec(r, sv);
    }
}

/// `x + rot(x, k1) + rot(x, 2 k1) + ...` (n terms, n a power of two) by log2 n doublings.
fn sum_shifts(em: &mut Emitter, x: Reg, n: usize, step: i64) -> Result<Reg, LowerError> {
    let mut k = 1;
    while k < n {
        let t = em.rotate(x, step * k as i64);
        em.add(x, x, t)?;
        em.release(t);
        k *= 2;
    }
    Ok(x)
}

/// `acc += r` (taking `r`; the first term becomes the accumulator).
fn accumulate(em: &mut Emitter, acc: &mut Option<Reg>, r: Reg) -> Result<(), LowerError> {
    match *acc {
        None => *acc = Some(r),
        Some(a) => {
            em.add(a, a, r)?;
            em.release(r);
        }
    }
    Ok(())
}

/// `rot(r, step)`, taking `r` (itself when the step is 0).
fn rotated(em: &mut Emitter, r: Reg, step: i64) -> Reg {
    if step == 0 {
        return r;
    }
    let t = em.rotate(r, step);
    em.release(r);
    t
}

/// `sum_i rot(r_i, s_i)`, taking the registers (uniform level and scale): one `Linear`
/// of identity weights at scale 1, which the executor evaluates with one ModDown for the
/// whole sum (`Linear::rotation_sum`); the term itself when there is one.
fn rotate_sum(em: &mut Emitter, terms: Vec<(Reg, i64)>) -> Result<Reg, LowerError> {
    let k = terms.len();
    match k {
        0 => Err(layout_err(em, "an empty sum of rotations")),
        1 => Ok(rotated(em, terms[0].0, terms[0].1)),
        _ => {
            let l = Linear {
                srcs: terms.iter().map(|t| t.0).collect(),
                dsts: vec![],
                steps: terms.iter().map(|t| t.1).collect(),
                masks: vec![None; k],
                weights: (0..k)
                    .flat_map(|i| (0..k).map(move |t| f64::from(i == t)))
                    .collect(),
                weight_scale: 1.0,
                bias: None,
                bias_mask: None,
            };
            let sum = em.linear(l, 1)?[0];
            let mut regs: Vec<Reg> = terms.iter().map(|t| t.0).collect();
            regs.sort_unstable();
            regs.dedup();
            for r in regs {
                em.release(r);
            }
            Ok(sum)
        }
    }
}

/// The rotations of `x` by `steps` from one decomposition (a one-hot `Linear` at weight
/// scale 1, which the executor runs as a plain fan-out); `[x]` for the single step 0.
fn fan_out(em: &mut Emitter, x: Reg, steps: Vec<i64>) -> Result<Vec<Reg>, LowerError> {
    if steps == [0] {
        return Ok(vec![x]);
    }
    let k = steps.len();
    let l = Linear {
        srcs: vec![x],
        dsts: vec![],
        steps,
        masks: vec![None; k],
        weights: (0..k)
            .flat_map(|o| (0..k).map(move |t| if o == t { 1.0 } else { 0.0 }))
            .collect(),
        weight_scale: 1.0,
        bias: None,
        bias_mask: None,
    };
    em.linear(l, k)
}

/// The stride-1 "same" convolution of `p` for output channels `o0 .. o0 + n` (n <= cp),
/// at channel offsets 0..n of every pixel's lower half (upper half zero, no bias), at the
/// input's scale times the weight scale (not rescaled).
/// The baby steps of a packed conv's input: rot(x, b) for b < B from one decomposition,
/// with the weight scale of the products that read them (shared by every output chunk of
/// a strided conv).
struct Babies {
    x0: Reg,
    regs: Vec<Reg>,
    wsc: f64,
}

impl Babies {
    fn of(em: &mut Emitter, p: &ChannelPacked) -> Result<Babies, LowerError> {
        let steps: Vec<i64> = (0..babies_for(p.cp) as i64).collect();
        let (x0, regs) =
            freshen_and_rotate(em, p.reg, &steps, &|em, x, s| fan_out(em, x, s.to_vec()))?;
        let st = em.state(x0);
        let wsc = em.product_scale(st).ok_or_else(|| exhausted(em))?;
        Ok(Babies { x0, regs, wsc })
    }

    fn release(self, em: &mut Emitter, p: &ChannelPacked) {
        for &b in &self.regs {
            if b != self.x0 {
                em.release(b);
            }
        }
        if self.x0 != p.reg {
            em.release(self.x0);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_same(
    em: &mut Emitter,
    p: &ChannelPacked,
    babies: &Babies,
    weight: &dyn Fn(usize, usize, usize, usize) -> f64,
    o0: usize,
    co: usize,
    [kh, kw]: [usize; 2],
    [top, left]: [usize; 2],
) -> Result<Reg, LowerError> {
    let cp = p.cp;
    let g = 2 * cp;
    let (h, w) = (p.h, p.w);
    let weight = |o: usize, i: usize, ky: usize, kx: usize| weight(o0 + o, i, ky, kx);
    let bsz = babies.regs.len();
    let giants = cp / bsz;
    let wsc = babies.wsc;
    // Per tap t: w_t = sum_g rot_{gB}(sum_b E_{t,g,b} (.) rot_b(x)), each product's
    // plaintext also zero where the output pixel's neighbour is outside the image (the
    // validity mask moved into w_t's coordinates), then y = sum_t rot_{s_t}(w_t). One
    // plaintext product per diagonal: the same level cost as the reference layout.
    let slots = em.slots;
    // Per kernel row, every (tap, giant step) product rotated by its giant step plus its
    // column shift in one sum of rotations (one ModDown); then the rows' sums by their
    // row shifts (keys: gB + dx 2cp and +-w 2cp, whatever the tap).
    let mut row_sums: Vec<(Reg, i64)> = vec![];
    for ky in 0..kh {
        let mut row_terms: Vec<(Reg, i64)> = vec![];
        for kx in 0..kw {
            let dy = ky as i64 - top as i64;
            let dx = kx as i64 - left as i64;
            let step = (dy * w as i64 + dx) * g as i64;
            // Output slots whose pixel has its (dy, dx) neighbour inside the image.
            let valid: Option<Vec<usize>> = (dy != 0 || dx != 0).then(|| {
                let mut v = vec![];
                for m in 0..slots / p.period() {
                    for i in 0..h as i64 {
                        for j in 0..w as i64 {
                            let (ii, jj) = (i + dy, j + dx);
                            if ii >= 0 && ii < h as i64 && jj >= 0 && jj < w as i64 {
                                let base = m * p.period() + p.slot(0, i as usize, j as usize);
                                v.extend(base..base + g);
                            }
                        }
                    }
                }
                v
            });
            // D_d at offset k (< cp): W[k][(k + d) mod cp].
            let diag = |d: usize, k: usize| -> f64 {
                if k >= cp {
                    return 0.0;
                }
                let i = (k + d) % cp;
                if k < co && i < p.c {
                    weight(k, i, ky, kx)
                } else {
                    0.0
                }
            };
            for gi in 0..giants {
                let shift = gi * bsz;
                // The validity mask in z's coordinates: valid shifted by s_t + gB.
                let mask = valid.as_ref().map(|v| {
                    let off = (step + shift as i64).rem_euclid(slots as i64) as usize;
                    let sl: Vec<u32> = v.iter().map(|&s| ((s + off) % slots) as u32).collect();
                    em.mask(SlotMask::from_slots(sl))
                });
                let mut srcs = vec![];
                let mut pats = vec![];
                for (b, &rb) in babies.regs.iter().enumerate() {
                    // E_{g,b}[k] = D_{gB + b}[(k - gB) mod 2cp].
                    let entries: Vec<(u32, f64)> = (0..g)
                        .map(|k| (k as u32, diag(shift + b, (k + g - shift) % g)))
                        .filter(|e| e.1 != 0.0)
                        .collect();
                    if !entries.is_empty() {
                        srcs.push(rb);
                        pats.push(SlotVector { entries });
                    }
                }
                if srcs.is_empty() {
                    continue;
                }
                let n = srcs.len();
                let z = em.dot_masked(srcs, pats, vec![mask; n], g, wsc)?;
                row_terms.push((z, shift as i64 + dx * g as i64));
            }
        }
        if row_terms.is_empty() {
            continue;
        }
        let dy = ky as i64 - top as i64;
        row_sums.push((rotate_sum(em, row_terms)?, dy * (w * g) as i64));
    }
    if row_sums.is_empty() {
        return Err(layout_err(em, "every weight of the convolution is zero"));
    }
    rotate_sum(em, row_sums)
}

/// Moves the pixels (2i', 2j') of `p` (channels 0..C of each lower half; the rest must be
/// masked away) to pixel (i', j') of the downsampled layout with channel group `cp_out`,
/// at channel offset `off`: Z = sum_u rot_{shift(u)}(M_u (.) Y), the shifts depending on
/// the output row only when cp_out = 2 cp (then one per row, in baby-step giant-step form:
/// the masks are rotated instead of the rows), else on the output column only. One
/// plaintext product (a level); the result's upper halves and extra copies are empty
/// (`refill`).
fn downsample(
    em: &mut Emitter,
    p: &ChannelPacked,
    [sh, sw]: [usize; 2],
    cp_out: usize,
    off: usize,
) -> Result<Reg, LowerError> {
    let (g_in, g_out) = (p.group() as i64, 2 * cp_out as i64);
    let (h2, w2) = (p.h / sh, p.w / sw);
    if p.c + off > cp_out {
        return Err(layout_err(
            em,
            "the downsampled channels exceed the channel group",
        ));
    }
    // shift(i', j') = src - dst = i' a + j' b - off.
    let a = sh as i64 * p.w as i64 * g_in - w2 as i64 * g_out;
    let b = sw as i64 * g_in - g_out;
    let (n, unit, by_row) = match (a, b) {
        (0, 0) => (1, 0, true),
        (a, 0) => (h2, a, true),
        (0, b) => (w2, b, false),
        _ => {
            return Err(unsupported(
                em,
                "Conv",
                "downsampling into this channel group moves rows and columns apart",
            ))
        }
    };
    let slots = em.slots;
    let reps = slots / p.period();
    // M_u: the source slots of output row (or column) u, all copies.
    let mask_of = |u: usize, rot: i64| -> SlotMask {
        let mut v = vec![];
        for m in 0..reps {
            for i in 0..h2 {
                for j in 0..w2 {
                    if (if by_row { i } else { j }) != u && n > 1 {
                        continue;
                    }
                    let base = m * p.period() + p.slot(0, sh * i, sw * j);
                    for c in 0..p.c {
                        let s = (base + c) as i64 - rot;
                        v.push(s.rem_euclid(slots as i64) as u32);
                    }
                }
            }
        }
        SlotMask::from_slots(v)
    };
    // The baby rotations run before the rescale (at ~Delta^3 the key-switching noise
    // vanishes against the scale), then each is rescaled for the mask product.
    let y = p.reg;
    let bsz = (n as f64).sqrt().ceil().max(1.0) as usize;
    let bsz = bsz.next_power_of_two().min(n.next_power_of_two());
    let copies = fan_out(em, y, (0..bsz as i64).map(|v| v * unit).collect())?;
    let babies: Vec<Reg> = copies
        .iter()
        .map(|&r| freshen(em, r, r != y, false))
        .collect::<Result<_, _>>()?;
    let st = em.uniform(&babies)?;
    let msc = em.product_scale(st).ok_or_else(|| exhausted(em))?;
    let one = SlotVector {
        entries: vec![(0, 1.0)],
    };
    let mut giant_terms: Vec<(Reg, i64)> = vec![];
    for gi in 0..n.div_ceil(bsz) {
        let mut srcs = vec![];
        let mut masks = vec![];
        for (v, &rb) in babies.iter().enumerate() {
            let u = gi * bsz + v;
            if u >= n {
                break;
            }
            srcs.push(rb);
            masks.push(Some(em.mask(mask_of(u, v as i64 * unit))));
        }
        let k = srcs.len();
        let t = em.dot_masked(srcs, vec![one.clone(); k], masks, 1, msc)?;
        giant_terms.push((t, (gi * bsz) as i64 * unit - off as i64));
    }
    for &r in &babies {
        if r != y {
            em.release(r);
        }
    }
    if giant_terms.is_empty() {
        return Err(layout_err(em, "nothing to downsample"));
    }
    // The giant steps and the move to channel offset `off` in one sum of rotations.
    rotate_sum(em, giant_terms)
}

/// Fills what the diagonals and the downsampling leave empty: the upper half of every
/// channel group (a copy of the lower half) and, after a downsampling from copies of
/// `from_period` slots, the copies the smaller tensor now has room for.
fn refill(
    em: &mut Emitter,
    p: &ChannelPacked,
    from_period: Option<usize>,
) -> Result<(), LowerError> {
    let up = em.rotate(p.reg, -(p.cp as i64));
    em.add(p.reg, p.reg, up)?;
    em.release(up);
    if let Some(mut have) = from_period {
        let want = p.period();
        while have > want {
            // Copies at offsets multiple of `have` exist: add the ones at have / 2.
            have /= 2;
            let r = em.rotate(p.reg, -(have as i64));
            em.add(p.reg, p.reg, r)?;
            em.release(r);
        }
    }
    Ok(())
}

impl Layout for Packed {
    fn name(&self) -> &'static str {
        NAME
    }

    fn input(
        &self,
        em: &mut Emitter,
        shape: &[usize],
    ) -> Result<(Value, InputPacking), LowerError> {
        let &[1, c, h, w] = shape else {
            return Err(unsupported(
                em,
                "Input",
                format!("input of shape {shape:?} (the packed layout takes (1, C, H, W))"),
            ));
        };
        if !em.spread {
            return Err(unsupported(
                em,
                "Input",
                "batch mode (several inputs per run) uses the reference layout",
            ));
        }
        let cp = self.group_of(c, h, w);
        let v = ChannelPacked {
            reg: 0,
            c,
            h,
            w,
            cp,
        };
        let period = v.period();
        if !(h * w).is_power_of_two() || period > em.slots {
            return Err(unsupported(
                em,
                "Input",
                format!(
                    "a {c}x{h}x{w} tensor packs into {} slots per copy (H W must be a power \
                     of two and H W 2cp <= {} slots)",
                    h * w * 2 * cp,
                    em.slots
                ),
            ));
        }
        em.need_period(em.slots);
        let level = em.top_level();
        let scale = if level > 0 {
            em.delta * em.delta
        } else {
            em.delta
        };
        let r = em.alloc(super::emitter::CtState { level, scale });
        let mut placement = vec![];
        for m in 0..em.slots / period {
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        let idx = ((ch * h + i) * w + j) as u32;
                        let s = m * period + v.slot(ch, i, j);
                        placement.push((idx, r, s as u32));
                        placement.push((idx, r, (s + cp) as u32));
                    }
                }
            }
        }
        Ok((
            Value::Packed(ChannelPacked { reg: r, ..v }),
            InputPacking { placement, cts: 1 },
        ))
    }

    fn conv(&self, em: &mut Emitter, x: &Value, conv: &Conv) -> Result<Value, LowerError> {
        let p = packed(em, x)?.clone();
        let ws = conv.weight.shape();
        let (co, cig, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        if conv.group != 1 {
            return Err(unsupported(
                em,
                "Conv",
                "grouped convolutions are not packed yet",
            ));
        }
        if cig != p.c {
            return Err(layout_err(em, "weight and input channel counts disagree"));
        }
        let [top, left, bottom, right] = conv.pads;
        let wt = conv.weight.data();
        let weight =
            |o: usize, i: usize, ky: usize, kx: usize| wt[((o * cig + i) * kh + ky) * kw + kx];
        let out_hw = |n: usize, k: usize, a: usize, b: usize, s: usize| {
            (n + a + b).checked_sub(k).map(|v| v / s + 1)
        };
        let (oh, ow) = (
            out_hw(p.h, kh, top, bottom, conv.strides[0]),
            out_hw(p.w, kw, left, right, conv.strides[1]),
        );
        match conv.strides {
            [1, 1] => {
                if top + bottom + 1 != kh || left + right + 1 != kw {
                    return Err(unsupported(
                        em,
                        "Conv",
                        "only size-preserving ('same') stride-1 convolutions are packed",
                    ));
                }
                if co > p.cp {
                    return Err(layout_err(
                        em,
                        "more output channels than the channel group",
                    ));
                }
                let babies = Babies::of(em, &p)?;
                let y = conv_same(em, &p, &babies, &weight, 0, co, [kh, kw], [top, left]);
                babies.release(em, &p);
                let y = y?;
                let out = ChannelPacked {
                    reg: y,
                    c: co,
                    ..p.clone()
                };
                refill(em, &out, None)?;
                if let Some(b) = &conv.bias {
                    add_channels(em, &out, y, b.data());
                }
                Ok(Value::Packed(out))
            }
            [2, 2] => {
                // The stride-1 convolution (its padding completed to "same") at the even
                // pixels, in chunks of at most cp output channels, each downsampled into
                // the output layout at its channel offset.
                let (h2, w2) = (p.h / 2, p.w / 2);
                if oh != Some(h2)
                    || ow != Some(w2)
                    || p.h % 2 != 0
                    || p.w % 2 != 0
                    || top >= kh
                    || left >= kw
                {
                    return Err(unsupported(
                        em,
                        "Conv",
                        "a stride-2 convolution that does not halve the image",
                    ));
                }
                let cp_out = self.group_of(co, h2, w2);
                let mut z: Option<Reg> = None;
                let babies = Babies::of(em, &p)?;
                let mut k0 = 0;
                while k0 < co {
                    let n = p.cp.min(co - k0);
                    let y = conv_same(em, &p, &babies, &weight, k0, n, [kh, kw], [top, left])?;
                    let part = ChannelPacked {
                        reg: y,
                        c: n,
                        ..p.clone()
                    };
                    let d = downsample(em, &part, [2, 2], cp_out, k0)?;
                    em.release(y);
                    accumulate(em, &mut z, d)?;
                    k0 += n;
                }
                babies.release(em, &p);
                let z = z.ok_or_else(|| layout_err(em, "a convolution without outputs"))?;
                let out = ChannelPacked {
                    reg: z,
                    c: co,
                    h: h2,
                    w: w2,
                    cp: cp_out,
                };
                refill(em, &out, Some(p.period()))?;
                if let Some(b) = &conv.bias {
                    add_channels(em, &out, z, b.data());
                }
                Ok(Value::Packed(out))
            }
            _ => Err(unsupported(
                em,
                "Conv",
                "strides other than 1 and 2 are not packed yet (use --layout reference)",
            )),
        }
    }

    fn sum_pool(
        &self,
        em: &mut Emitter,
        _x: &Value,
        _p: &AveragePool,
    ) -> Result<Value, LowerError> {
        Err(unsupported(
            em,
            "AveragePool",
            "windowed pools are not packed yet",
        ))
    }

    fn global_sum_pool(&self, em: &mut Emitter, x: &Value) -> Result<Value, LowerError> {
        let p = packed(em, x)?.clone();
        let r = em.owned(p.reg, false);
        let r = sum_shifts(em, r, p.h * p.w, p.group() as i64)?;
        // Every slot now holds its channel's sum: channel c at slot c, repeated every cp.
        Ok(Value::Features(Features {
            items: (0..p.c).map(|c| Some((r, c as u32))).collect(),
            period: Some(p.cp as u32),
        }))
    }

    fn gemm(&self, em: &mut Emitter, x: &Value, g: &Gemm) -> Result<Value, LowerError> {
        match x {
            Value::Packed(_) => Err(unsupported(em, "Gemm", "a Gemm on an unpooled tensor")),
            _ => Reference.gemm(em, x, g),
        }
    }

    fn affine(
        &self,
        em: &mut Emitter,
        x: &Value,
        mul: &[f64],
        add: &[f64],
        steal: bool,
    ) -> Result<Value, LowerError> {
        let p = match x {
            Value::Packed(p) => p.clone(),
            _ => return Reference.affine(em, x, mul, add, steal),
        };
        let r = if mul.iter().all(|&m| m == 1.0) {
            em.owned(p.reg, steal)
        } else {
            let f = freshen(em, p.reg, steal, false)?;
            let st = em.state(f);
            let wsc = em.product_scale(st).ok_or_else(|| exhausted(em))?;
            let owned = steal || f != p.reg;
            let y = scaled(em, &p, f, mul, wsc, owned)?;
            if f != p.reg && f != y {
                em.release(f);
            }
            y
        };
        add_channels(em, &p, r, add);
        Ok(Value::Packed(ChannelPacked { reg: r, ..p }))
    }

    fn poly(
        &self,
        em: &mut Emitter,
        x: &Value,
        poly: &Poly,
        steal: bool,
    ) -> Result<Value, LowerError> {
        let p = match x {
            Value::Packed(p) => p.clone(),
            _ => return Reference.poly(em, x, poly, steal),
        };
        let (c0, c1, c2) = match poly {
            Poly::Quadratic { c0, c1, c2 } => (c0, c1, c2),
            Poly::Bivariate { .. } => {
                return Err(unsupported(
                    em,
                    "Poly",
                    "bivariate polynomials are not lowered yet",
                ))
            }
        };
        if c2.iter().all(|&v| v == 0.0) {
            return self.affine(em, x, c1, c0, steal);
        }
        let monic = c2.iter().all(|&v| v == 1.0);
        let xr = freshen(em, p.reg, steal, true)?;
        let s = em.state(xr).scale;
        let d = em.delta;
        let mut y = em.square_into(xr);
        if !monic {
            let y2 = scaled(em, &p, y, c2, d, true)?;
            if y2 != y {
                em.release(y);
            }
            y = y2;
        }
        if c1.iter().any(|&v| v != 0.0) {
            let own = steal || xr != p.reg;
            let t = scaled(em, &p, xr, c1, if monic { s } else { s * d }, own)?;
            em.add(y, y, t)?;
            if t != p.reg {
                em.release(t);
            }
            if xr != p.reg && xr != t {
                em.release(xr);
            }
        } else if xr != p.reg {
            em.release(xr);
        }
        add_channels(em, &p, y, c0);
        Ok(Value::Packed(ChannelPacked { reg: y, ..p }))
    }

    fn add(
        &self,
        em: &mut Emitter,
        a: &Value,
        b: &Value,
        sign: i64,
        steal: (bool, bool),
    ) -> Result<Value, LowerError> {
        match (a, b) {
            (Value::Packed(x), Value::Packed(y)) => {
                if (x.c, x.h, x.w, x.cp) != (y.c, y.h, y.w, y.cp) {
                    return Err(layout_err(em, "the addends are packed differently"));
                }
                let (sa, sb) = (em.state(x.reg), em.state(y.reg));
                let target =
                    if sa.level < sb.level || (sa.level == sb.level && sa.scale >= sb.scale) {
                        sa
                    } else {
                        sb
                    };
                let r = add_aligned(em, Some(x.reg), Some(y.reg), sign, steal, target)?
                    .ok_or_else(|| layout_err(em, "both addends are zero"))?;
                Ok(Value::Packed(ChannelPacked {
                    reg: r,
                    ..x.clone()
                }))
            }
            (Value::Packed(_), _) | (_, Value::Packed(_)) => {
                Err(layout_err(em, "adding a packed tensor to a flat one"))
            }
            _ => Reference.add(em, a, b, sign, steal),
        }
    }

    fn reshape(&self, em: &mut Emitter, x: &Value, shape: &[usize]) -> Result<Value, LowerError> {
        match x {
            Value::Packed(_) => Err(unsupported(
                em,
                "Reshape",
                "flattening an unpooled packed tensor",
            )),
            _ => Reference.reshape(em, x, shape),
        }
    }

    fn slice(&self, em: &mut Emitter, x: &Value, axes: &[SliceAxis]) -> Result<Value, LowerError> {
        let p = match x {
            Value::Packed(p) => p.clone(),
            _ => return Reference.slice(em, x, axes),
        };
        let dims = [1, p.c, p.h, p.w];
        if axes.len() != 4 {
            return Err(layout_err(em, "a slice of a rank-4 tensor needs four axes"));
        }
        let full = |k: usize| axes[k].start == 0 && axes[k].step == 1 && axes[k].len == dims[k];
        let half = |k: usize| {
            axes[k].start == 0
                && axes[k].step == 2
                && axes[k].len == dims[k] / 2
                && dims[k] % 2 == 0
        };
        if !full(0) || !full(1) {
            return Err(unsupported(
                em,
                "Slice",
                "only spatial subsampling by 2 from the first pixel is packed",
            ));
        }
        let mut factor = [1, 1];
        for k in [2, 3] {
            if half(k) {
                factor[k - 2] = 2;
            } else if !full(k) {
                return Err(unsupported(
                    em,
                    "Slice",
                    "only spatial subsampling by 2 from the first pixel is packed",
                ));
            }
        }
        if factor == [1, 1] {
            return Ok(x.clone());
        }
        let (h2, w2) = (p.h / factor[0], p.w / factor[1]);
        let cp_out = self.group_of(p.c, h2, w2);
        let z = downsample(em, &p, factor, cp_out, 0)?;
        let out = ChannelPacked {
            reg: z,
            c: p.c,
            h: h2,
            w: w2,
            cp: cp_out,
        };
        refill(em, &out, Some(p.period()))?;
        Ok(Value::Packed(out))
    }

    fn pad(
        &self,
        em: &mut Emitter,
        x: &Value,
        pads: &[(usize, usize)],
    ) -> Result<Value, LowerError> {
        let p = match x {
            Value::Packed(p) => p.clone(),
            _ => return Reference.pad(em, x, pads),
        };
        if pads.len() != 4 || pads.iter().enumerate().any(|(k, &q)| k != 1 && q != (0, 0)) {
            return Err(unsupported(
                em,
                "Pad",
                "only channel padding (spatial zero padding belongs in the Conv)",
            ));
        }
        let (b, e) = pads[1];
        let c = p.c + b + e;
        if c > p.cp {
            return Err(layout_err(
                em,
                "the padded channels exceed the channel group",
            ));
        }
        // Channel c moves to c + b in both halves of every group (the slots it leaves hold
        // the previous pixel's zero channels cp - b .. cp of the upper half).
        let r = if b == 0 {
            em.owned(p.reg, false)
        } else {
            em.rotate(p.reg, -(b as i64))
        };
        Ok(Value::Packed(ChannelPacked { reg: r, c, ..p }))
    }

    fn output(&self, em: &mut Emitter, x: &Value) -> Result<Vec<(u32, Reg, u32)>, LowerError> {
        match x {
            Value::Packed(p) => {
                let mut out = vec![];
                for c in 0..p.c {
                    for i in 0..p.h {
                        for j in 0..p.w {
                            out.push((
                                ((c * p.h + i) * p.w + j) as u32,
                                p.reg,
                                p.slot(c, i, j) as u32,
                            ));
                        }
                    }
                }
                Ok(out)
            }
            _ => Reference.output(em, x),
        }
    }
}
