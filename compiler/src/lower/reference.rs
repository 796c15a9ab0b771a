//! The reference layout (design brief 1.5): one ciphertext per channel, pixel (i, j) of
//! the input at slot i * W + j; a stride s multiplies the row and column pitch by s
//! (gapped grids), so nothing is ever repacked. Convolutions and sum pools are `Linear`
//! instructions over hoisted rotations: tap (kh, kw) rotates by (kh - pad_top) * row +
//! (kw - pad_left) * col, and a tap that reads outside the image for some output pixel
//! carries a 0/1 mask of the output pixels whose read is valid, folded with the weight
//! into one plaintext at the weight scale (the paper's choice). With every invalid read
//! masked, no layer relies on slots outside the image being zero, so biases and the
//! activations' constants are added everywhere for free. Global pools are rotate-and-add;
//! a dense layer over one value per ciphertext is an integer multiply-accumulate, over
//! many slots per ciphertext a plaintext product + rotate-and-sum.
//!
//! Scales: every product (weights, masks, constants) is encoded at the scale that brings
//! the result back to exactly Delta after one rescale (`Emitter::product_scale`), so a
//! conv input at Delta^2 (an activation's output) uses weights at ~Delta and an input at
//! Delta (the image, a conv output) weights at ~Delta^2: one prime per activation + conv
//! pair (tower reuse). A monic activation x*x + c1 x + c0 takes its input at Delta and
//! leaves Delta^2 without a rescale. Addends are aligned by dropping primes, and scales by
//! a constant multiply by 1 at the compensating scale on the shallower branch.

use passes::ir::{AveragePool, Conv, Gemm, Poly, SliceAxis};
use runtime::program::{Linear, Reg, SlotMask, SlotVector};

use super::emitter::{same_scale, CtState, Emitter};
use super::error::LowerError;
use super::layout::{Features, InputPacking, Layout, Spatial, Value};

pub struct Reference;

const NAME: &str = "reference";

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

fn spatial<'a>(em: &Emitter, x: &'a Value) -> Result<&'a Spatial, LowerError> {
    match x {
        Value::Spatial(s) => Ok(s),
        Value::Features(_) => Err(layout_err(em, "expects an NCHW tensor, got a flat one")),
        Value::Packed(_) => Err(layout_err(em, "a packed tensor in the reference layout")),
    }
}

fn per(v: &[f64], c: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[c]
    }
}

/// Brings a register to a scale a product can start from (at most ~Delta^2): values at
/// Delta^3 are rescaled, values at ~Delta^2 that must be fresh (`need_fresh`) are
/// multiplied by 1 at the scale that makes the rescale land on exactly Delta.
pub(super) fn freshen(
    em: &mut Emitter,
    r: Reg,
    steal: bool,
    need_fresh: bool,
) -> Result<Reg, LowerError> {
    let st = em.state(r);
    let d = em.delta;
    let high = st.scale > d * d.sqrt();
    if !(high && need_fresh) && em.product_scale(st).is_some() {
        return Ok(r);
    }
    if st.level == 0 {
        return Err(LowerError::Exhausted {
            layer: em.origin().to_string(),
        });
    }
    let r = em.owned(r, steal);
    let after = st.scale / em.prime(st.level);
    if after < d / 16.0 {
        let t = d * em.prime(st.level) / st.scale;
        em.mul_const(r, 1.0, t);
    }
    em.rescale(r)?;
    Ok(r)
}

/// A hoisted fan-out of rotations: `(em, x, steps)` -> the registers rot(x, steps[i]).
pub(super) type RotateFanOut = dyn Fn(&mut Emitter, Reg, &[i64]) -> Result<Vec<Reg>, LowerError>;

/// `x` freshened for a plaintext product, and its rotations by `steps` (`rotate`: one
/// hoisted fan-out), each ready for one too. A value that must be rescaled first (at
/// ~Delta^3) is rotated before the rescale and every copy rescaled after: key switching
/// adds noise of a fixed size whatever the scale (at N = 2^14 about 2^19: a value at
/// Delta = 2^20 keeps ~1 bit, one at 2^40 ~21), so rotating the rescaled value loses it.
pub(super) fn freshen_and_rotate(
    em: &mut Emitter,
    x: Reg,
    steps: &[i64],
    rotate: &RotateFanOut,
) -> Result<(Reg, Vec<Reg>), LowerError> {
    if em.product_scale(em.state(x)).is_some() {
        let copies = rotate(em, x, steps)?;
        return Ok((x, copies));
    }
    let copies = rotate(em, x, steps)?;
    let x0 = freshen(em, x, false, false)?;
    let copies = copies
        .into_iter()
        .map(|c| {
            if c == x {
                Ok(x0)
            } else {
                freshen(em, c, true, false)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((x0, copies))
}

/// Freshens every register of a uniform value the same way.
fn freshen_all(
    em: &mut Emitter,
    regs: &[Reg],
    steal: bool,
    need_fresh: bool,
) -> Result<Vec<Reg>, LowerError> {
    regs.iter()
        .map(|&r| freshen(em, r, steal, need_fresh))
        .collect()
}

/// Brings `r` to exactly `t` (level and scale): a drop, a constant multiply by 1 at the
/// compensating scale (with a rescale when `r` has a prime to spare), or an error.
pub(super) fn align_to(
    em: &mut Emitter,
    r: Reg,
    t: CtState,
    steal: bool,
) -> Result<Reg, LowerError> {
    let st = em.state(r);
    if st.level == t.level && same_scale(st.scale, t.scale) {
        return Ok(r);
    }
    let d = em.delta;
    let r2 = em.owned(r, steal);
    if same_scale(st.scale, t.scale) && st.level > t.level {
        em.drop_to(r2, t.level);
        return Ok(r2);
    }
    let ratio = t.scale / st.scale;
    if st.level >= t.level && ratio >= d / 16.0 {
        em.mul_const(r2, 1.0, ratio);
        em.drop_to(r2, t.level);
        return Ok(r2);
    }
    if st.level > t.level {
        let k = t.scale * em.prime(st.level) / st.scale;
        if k >= d / 16.0 {
            em.mul_const(r2, 1.0, k);
            em.rescale(r2)?;
            em.drop_to(r2, t.level);
            return Ok(r2);
        }
    }
    Err(layout_err(
        em,
        format!(
            "cannot align addends: level {} scale 2^{:.2} vs level {} scale 2^{:.2}",
            st.level,
            st.scale.log2(),
            t.level,
            t.scale.log2()
        ),
    ))
}

/// y = W x + b where feature `cols[r][t]` sits at slot t of register r, every register
/// repeated every `pin` slots (Halevi-Shoup diagonals, hybrid for rectangular W,
/// baby-step giant-step). With P_out = next power of two >= n and W'_r[j][t] = W[j][feature
/// at (r, t)] (zero where no feature is), z = sum_r sum_{i < min(pin, P_out)} d_{r,i} (.)
/// rot(x_r, i) with d_{r,i}[s] = W'_r[s mod P_out][(s + i) mod pin], then the pin / P_out
/// blocks of z are folded by rotate-and-add: y_j lands at every slot = j mod P_out, so the
/// output is again a repeated vector (period P_out). Precondition: pin and `pout` (the
/// power of two >= n) divide the slot count.
fn diagonal_gemm(
    em: &mut Emitter,
    cols: &[(Reg, Vec<Option<usize>>)],
    pin: usize,
    pout: usize,
    n: usize,
    wt: &dyn Fn(usize, usize) -> f64,
    bias: &[f64],
) -> Result<Value, LowerError> {
    let slots = em.slots;
    let diagonals = pin.min(pout);
    let regs: Vec<Reg> = cols.iter().map(|c| c.0).collect();
    let g = ((diagonals as f64).sqrt().ceil() as usize)
        .next_power_of_two()
        .min(diagonals);
    let giants = diagonals.div_ceil(g);
    // Baby steps rot(x_r, a), a < g: one hoisted Linear per register (before the rescale
    // when the input needs one).
    let steps: Vec<i64> = (1..g as i64).collect();
    let mut xs = vec![];
    let mut baby: Vec<Vec<Reg>> = vec![];
    for &r in &regs {
        let (x, copies) = freshen_and_rotate(em, r, &steps, &|em, x, s| rotated_copies(em, x, s))?;
        xs.push(x);
        baby.push(std::iter::once(x).chain(copies).collect());
    }
    let st = em.uniform(&xs)?;
    let ws = em.product_scale(st).ok_or_else(|| LowerError::Exhausted {
        layer: em.origin().to_string(),
    })?;
    // rot(d_{r,i}, -shift) as a slot vector.
    let diag = |r: usize, i: usize, shift: usize| SlotVector {
        entries: (0..slots)
            .filter_map(|s| {
                let t = (s + slots - shift % slots) % slots;
                let row = t % pout;
                let feat = cols[r].1[(t + i) % pin]?;
                let v = if row < n { wt(row, feat) } else { 0.0 };
                (v != 0.0).then_some((s as u32, v))
            })
            .collect(),
    };
    let mut acc: Option<Reg> = None;
    for b in 0..giants {
        let mut srcs = vec![];
        let mut vecs = vec![];
        for (r, bs) in baby.iter().enumerate() {
            for (a, &src) in bs.iter().enumerate() {
                let i = a + g * b;
                if i >= diagonals {
                    break;
                }
                let v = diag(r, i, g * b);
                if !v.entries.is_empty() {
                    srcs.push(src);
                    vecs.push(v);
                }
            }
        }
        if srcs.is_empty() {
            continue;
        }
        let inner = em.dot(srcs, vecs, ws)?;
        // Rotations before the rescale, at ~Delta^3 (negligible key-switching noise).
        let term = if b == 0 {
            inner
        } else {
            let t = em.rotate(inner, (g * b) as i64);
            em.release(inner);
            t
        };
        acc = Some(match acc {
            None => term,
            Some(a) => {
                em.add(a, a, term)?;
                em.release(term);
                a
            }
        });
    }
    let y = match acc {
        Some(a) => a,
        None => em.dot(vec![xs[0]], vec![SlotVector { entries: vec![] }], ws)?,
    };
    let mut step = pout;
    while step < pin {
        let t = em.rotate(y, step as i64);
        em.add(y, y, t)?;
        em.release(t);
        step *= 2;
    }
    let entries = (0..slots)
        .filter_map(|s| {
            let j = s % pout;
            (j < n && bias[j] != 0.0).then(|| (s as u32, bias[j]))
        })
        .collect();
    em.add_vec(y, SlotVector { entries });
    // Rescaled here while a prime is left; at level 0 the base prime holds the ~Delta^2
    // product (as the per-channel Gemm leaves its outputs): a Gemm fed by a linear layer
    // (conv -> pool -> Gemm) ends the level plan there.
    let y = if em.state(y).level > 0 {
        freshen(em, y, true, true)?
    } else {
        y
    };
    for (bs, (&x, &r)) in baby.iter().zip(xs.iter().zip(&regs)) {
        for &b in &bs[1..] {
            em.release(b);
        }
        if x != r {
            em.release(x);
        }
    }
    Ok(Value::Features(Features {
        items: (0..n).map(|j| Some((y, j as u32))).collect(),
        period: Some(pout as u32),
    }))
}

/// rot(src, steps[j]) for every j, as one `Linear` with unit weights (one hoisted
/// decomposition of `src` for all of them); the copies keep src's scale.
fn rotated_copies(em: &mut Emitter, src: Reg, steps: &[i64]) -> Result<Vec<Reg>, LowerError> {
    let k = steps.len();
    if k == 0 {
        return Ok(vec![]);
    }
    let weights = (0..k)
        .flat_map(|o| (0..k).map(move |t| if o == t { 1.0 } else { 0.0 }))
        .collect();
    let l = Linear {
        srcs: vec![src],
        dsts: vec![],
        steps: steps.to_vec(),
        masks: vec![None; k],
        weights,
        weight_scale: 1.0,
        bias: None,
        bias_mask: None,
    };
    em.linear(l, k)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Rotate-and-add: a register whose slot p holds sum_{k < n} x[p + k * d] (x owned).
fn sum_shifts(em: &mut Emitter, x: Reg, n: usize, d: i64) -> Result<Reg, LowerError> {
    if n <= 1 {
        return Ok(x);
    }
    if n.is_multiple_of(2) {
        let y = sum_shifts(em, x, n / 2, d)?;
        let t = em.rotate(y, (n / 2) as i64 * d);
        em.add(y, y, t)?;
        em.release(t);
        Ok(y)
    } else {
        // x is needed again after the recursion: keep a copy of it.
        let keep = em.owned(x, false);
        let y = sum_shifts(em, x, n - 1, d)?;
        let t = em.rotate(keep, (n - 1) as i64 * d);
        em.release(keep);
        em.add(y, y, t)?;
        em.release(t);
        Ok(y)
    }
}

/// Output geometry and taps of a windowed op (conv or pool) in this layout.
struct Window {
    out: Spatial,
    /// Per tap (kh, kw) in row-major kernel order: rotation step and mask.
    taps: Vec<(i64, Option<SlotMask>)>,
    /// The period the masks repeat with (`mask_period`).
    period: usize,
}

fn window(
    em: &Emitter,
    s: &Spatial,
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
) -> Result<Window, LowerError> {
    let [kh, kw] = kernel;
    let [sh, sw] = strides;
    let [pt, pl, pb, pr] = pads;
    if s.h + pt + pb < kh || s.w + pl + pr < kw || sh == 0 || sw == 0 {
        return Err(layout_err(em, "window larger than the padded input"));
    }
    let ho = (s.h + pt + pb - kh) / sh + 1;
    let wo = (s.w + pl + pr - kw) / sw + 1;
    let out = Spatial {
        chans: vec![],
        h: ho,
        w: wo,
        origin: s.origin,
        row: s.row * sh as i64,
        col: s.col * sw as i64,
        period: None,
    };
    let slots = em.slots as i64;
    let period = mask_period(s, &out, em.slots);
    // Masks repeating with a divisor of the input's period keep the ring periodic.
    let out = Spatial {
        period: s.period.filter(|&p| p as usize >= period),
        ..out
    };
    let mut taps = vec![];
    for a in 0..kh {
        for b in 0..kw {
            let step = (a as i64 - pt as i64) * s.row + (b as i64 - pl as i64) * s.col;
            let mut valid = vec![];
            let mut all = true;
            for i in 0..ho {
                let y = (i * sh + a) as i64 - pt as i64;
                for j in 0..wo {
                    let x = (j * sw + b) as i64 - pl as i64;
                    if (0..s.h as i64).contains(&y) && (0..s.w as i64).contains(&x) {
                        let p = out.slot(i, j);
                        if !(0..slots).contains(&p) {
                            return Err(layout_err(em, "the image does not fit the slots"));
                        }
                        valid.push(p as u32);
                    } else {
                        all = false;
                    }
                }
            }
            let mask = (!all).then(|| SlotMask::from_slots(replicate(valid, period, em.slots)));
            taps.push((step, mask));
        }
    }
    Ok(Window { out, taps, period })
}

/// The period with which a window's masks are replicated over the slots (`slots` when
/// they are not): the smallest power of two P with room for both grids. A valid output
/// slot reads only valid input slots (every other read is masked), and both grids lie in
/// `0..P`, so the copies of a mask in the other periods never feed the first period: they
/// select slots whose values are zero, garbage no later mask selects, or (in batch mode)
/// the same computation on another input. A P-periodic mask encodes to a polynomial with
/// non-zero coefficients only at multiples of N / (2P), which the runtime encodes with a
/// small NTT instead of a full one.
fn mask_period(s: &Spatial, out: &Spatial, slots: usize) -> usize {
    let extent = |g: &Spatial| {
        if g.h == 0 || g.w == 0 {
            0
        } else {
            g.slot(g.h - 1, g.w - 1).max(g.origin) + 1
        }
    };
    if s.origin < 0 || out.origin < 0 || s.row < 0 || s.col < 0 {
        return slots;
    }
    let need = extent(s).max(extent(out)).max(1) as usize;
    need.next_power_of_two().min(slots)
}

/// `valid` (slots of the first period) repeated every `period` slots.
fn replicate(valid: Vec<u32>, period: usize, slots: usize) -> Vec<u32> {
    if period >= slots {
        return valid;
    }
    (0..slots / period)
        .flat_map(|k| valid.iter().map(move |&p| p + (k * period) as u32))
        .collect()
}

impl Reference {
    /// One `Linear` per group over the non-zero input channels; `weight(o, i_local, tap)`;
    /// then a rescale to Delta unless `unit_weights` (pool sums at scale 1, no masks).
    #[allow(clippy::too_many_arguments)]
    fn windowed(
        &self,
        em: &mut Emitter,
        s: &Spatial,
        win: Window,
        groups: usize,
        outputs: usize,
        weight: &dyn Fn(usize, usize, usize) -> f64,
        bias: Option<&[f64]>,
        unit_weights: bool,
    ) -> Result<Value, LowerError> {
        let cin = s.chans.len();
        if groups == 0 || !cin.is_multiple_of(groups) || !outputs.is_multiple_of(groups) {
            return Err(layout_err(
                em,
                "channel count not divisible by the group count",
            ));
        }
        let (gi, go) = (cin / groups, outputs / groups);
        em.need_period(win.period);
        let regs: Vec<Reg> = s.chans.iter().flatten().copied().collect();
        if regs.is_empty() {
            return Err(layout_err(em, "every input channel is zero"));
        }
        let masked = win.taps.iter().any(|t| t.1.is_some());
        let no_scale = unit_weights && !masked;
        let fresh = freshen_all(em, &regs, false, false)?;
        let map: std::collections::HashMap<Reg, Reg> =
            regs.iter().copied().zip(fresh.iter().copied()).collect();
        let st = em.uniform(&fresh)?;
        let ws = if no_scale {
            1.0
        } else {
            em.product_scale(st).ok_or_else(|| LowerError::Exhausted {
                layer: em.origin().to_string(),
            })?
        };
        let steps: Vec<i64> = win.taps.iter().map(|t| t.0).collect();
        let masks: Vec<Option<u32>> = win
            .taps
            .iter()
            .map(|t| t.1.clone().map(|m| em.mask(m)))
            .collect();
        let taps = steps.len();
        let mut chans = vec![None; outputs];
        for g in 0..groups {
            let srcs: Vec<(usize, Reg)> = (0..gi)
                .filter_map(|i| s.chans[g * gi + i].map(|r| (i, map[&r])))
                .collect();
            if srcs.is_empty() {
                continue;
            }
            let mut weights = Vec::with_capacity(go * srcs.len() * taps);
            for o in 0..go {
                for &(i, _) in &srcs {
                    for t in 0..taps {
                        weights.push(weight(g * go + o, i, t));
                    }
                }
            }
            let l = Linear {
                srcs: srcs.iter().map(|x| x.1).collect(),
                dsts: vec![],
                steps: steps.clone(),
                masks: masks.clone(),
                weights,
                weight_scale: ws,
                bias: bias.map(|b| b[g * go..(g + 1) * go].to_vec()),
                bias_mask: None,
            };
            let dsts = em.linear(l, go)?;
            // Left unrescaled: the consumer rescales (to exactly Delta) when it multiplies.
            for (o, d) in dsts.into_iter().enumerate() {
                chans[g * go + o] = Some(d);
            }
        }
        for (&r, &f) in regs.iter().zip(&fresh) {
            if r != f {
                em.release(f);
            }
        }
        if chans.iter().any(|c| c.is_none()) {
            return Err(layout_err(em, "a group has only zero input channels"));
        }
        Ok(Value::Spatial(Spatial { chans, ..win.out }))
    }
}

impl Layout for Reference {
    fn name(&self) -> &'static str {
        NAME
    }

    fn input(
        &self,
        em: &mut Emitter,
        shape: &[usize],
    ) -> Result<(Value, InputPacking), LowerError> {
        // Encrypted at Delta^2 when a prime is left to rescale by (the first product
        // then takes weights at ~Delta: the same tower), so that the rotations of the
        // first layer run at a scale where key-switching noise is negligible.
        let level = em.top_level();
        let scale = if level > 0 {
            em.delta * em.delta
        } else {
            em.delta
        };
        let st = CtState { level, scale };
        match shape {
            [1, c, h, w] => {
                if h * w > em.slots {
                    return Err(layout_err(
                        em,
                        format!(
                            "a {h}x{w} channel needs {} slots, the ring has {}",
                            h * w,
                            em.slots
                        ),
                    ));
                }
                // A single-input program gets the image in every period of the ring (free
                // for the client): every window keeps the ring periodic, and a flattened
                // contiguous image feeds the diagonal method of a dense layer.
                let p = (h * w).max(1).next_power_of_two();
                let (period, copies) = if em.spread {
                    em.need_period(em.slots);
                    (Some(p as u32), em.slots / p)
                } else {
                    em.need_period(h * w);
                    (None, 1)
                };
                let mut chans = vec![];
                let mut placement = vec![];
                for ch in 0..*c {
                    let r = em.alloc(st);
                    chans.push(Some(r));
                    for m in 0..copies {
                        for i in 0..*h {
                            for j in 0..*w {
                                let idx = ((ch * h + i) * w + j) as u32;
                                placement.push((idx, r, (m * p + i * w + j) as u32));
                            }
                        }
                    }
                }
                let v = Spatial {
                    chans,
                    h: *h,
                    w: *w,
                    origin: 0,
                    row: *w as i64,
                    col: 1,
                    period,
                };
                Ok((
                    Value::Spatial(v),
                    InputPacking {
                        placement,
                        cts: *c as u32,
                    },
                ))
            }
            [1, f] => {
                if *f > em.slots {
                    return Err(layout_err(
                        em,
                        format!("{f} features exceed {} slots", em.slots),
                    ));
                }
                let r = em.alloc(st);
                let items = (0..*f).map(|k| Some((r, k as u32))).collect();
                // A single-input program gets the features repeated over the whole ring
                // (free for the client), so that dense layers use the diagonal method.
                let (period, copies) = if em.spread {
                    let p = f.max(&1).next_power_of_two();
                    em.need_period(em.slots);
                    (Some(p as u32), em.slots / p)
                } else {
                    em.need_period(*f);
                    (None, 1)
                };
                let p = period.unwrap_or(0);
                let placement = (0..copies as u32)
                    .flat_map(|m| (0..*f as u32).map(move |k| (k, r, k + m * p)))
                    .collect();
                Ok((
                    Value::Features(Features { items, period }),
                    InputPacking { placement, cts: 1 },
                ))
            }
            _ => Err(layout_err(
                em,
                format!("input of shape {shape:?}: expected (1, C, H, W) or (1, F)"),
            )),
        }
    }

    fn conv(&self, em: &mut Emitter, x: &Value, conv: &Conv) -> Result<Value, LowerError> {
        let s = spatial(em, x)?;
        let ws = conv.weight.shape();
        let (co, ci_g, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        if ci_g * conv.group != s.chans.len() {
            return Err(layout_err(em, "weight and input channel counts disagree"));
        }
        let win = window(em, s, [kh, kw], conv.strides, conv.pads)?;
        let w = conv.weight.data();
        let weight = |o: usize, i: usize, t: usize| w[((o * ci_g + i) * kh * kw) + t];
        let bias = conv.bias.as_ref().map(|b| b.data().to_vec());
        self.windowed(em, s, win, conv.group, co, &weight, bias.as_deref(), false)
    }

    fn sum_pool(&self, em: &mut Emitter, x: &Value, p: &AveragePool) -> Result<Value, LowerError> {
        let s = spatial(em, x)?;
        let win = window(em, s, p.kernel, p.strides, p.pads)?;
        let c = s.chans.len();
        self.windowed(em, s, win, c, c, &|_, _, _| 1.0, None, true)
    }

    fn global_sum_pool(&self, em: &mut Emitter, x: &Value) -> Result<Value, LowerError> {
        let s = spatial(em, x)?;
        let mut chans = vec![];
        for c in &s.chans {
            chans.push(match c {
                None => None,
                Some(r) => {
                    let r = em.owned(*r, false);
                    let r = sum_shifts(em, r, s.w, s.col)?;
                    Some(sum_shifts(em, r, s.h, s.row)?)
                }
            });
        }
        Ok(Value::Spatial(Spatial {
            chans,
            h: 1,
            w: 1,
            ..s.clone()
        }))
    }

    fn gemm(&self, em: &mut Emitter, x: &Value, g: &Gemm) -> Result<Value, LowerError> {
        let items = match x {
            Value::Features(f) => f.items.clone(),
            Value::Spatial(s) if s.h == 1 && s.w == 1 => s
                .chans
                .iter()
                .map(|c| c.map(|r| (r, s.origin as u32)))
                .collect(),
            _ => return Err(layout_err(em, "Gemm expects a flat (1, K) input")),
        };
        if g.trans_a {
            return Err(unsupported(em, "Gemm", "transA = 1 on a (1, K) input"));
        }
        let bs = g.b.shape();
        let (k, n) = if g.trans_b {
            (bs[1], bs[0])
        } else {
            (bs[0], bs[1])
        };
        if k != items.len() {
            return Err(layout_err(em, "Gemm weight and input sizes disagree"));
        }
        let b = g.b.data();
        let wt = |o: usize, kk: usize| {
            g.alpha
                * if g.trans_b {
                    b[o * k + kk]
                } else {
                    b[kk * n + o]
                }
        };
        let bias: Vec<f64> = match &g.c {
            None => vec![0.0; n],
            Some(c) => {
                let d = c.data();
                (0..n)
                    .map(|o| g.beta * if d.len() == 1 { d[0] } else { d[o] })
                    .collect()
            }
        };
        let present: Vec<(usize, Reg, u32)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| it.map(|(r, s)| (i, r, s)))
            .collect();
        if present.is_empty() {
            return Err(layout_err(em, "every Gemm input is zero"));
        }
        let regs: Vec<Reg> = {
            let mut v: Vec<Reg> = present.iter().map(|x| x.1).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let slot0 = present[0].2;
        let one_per_reg = regs.len() == present.len() && present.iter().all(|x| x.2 == slot0);
        // Features repeated every P slots (each register's features at distinct slots of
        // the first period): the diagonal method (baby-step giant-step), about
        // 2 sqrt(min(P, P_out)) rotations per input register in all.
        let period = match x {
            Value::Features(f) => f.period,
            Value::Spatial(s) => s.period,
            Value::Packed(_) => None,
        };
        if let Some(pin) = period.map(|p| p as usize) {
            let mut cols: Vec<(Reg, Vec<Option<usize>>)> = vec![];
            let mut fits = !one_per_reg && present.len() == k;
            for &(i, r, s) in &present {
                if s as usize >= pin {
                    fits = false;
                    break;
                }
                let e = match cols.iter().position(|c| c.0 == r) {
                    Some(p) => p,
                    None => {
                        cols.push((r, vec![None; pin]));
                        cols.len() - 1
                    }
                };
                if cols[e].1[s as usize].replace(i).is_some() {
                    fits = false;
                    break;
                }
            }
            let pout = n.max(1).next_power_of_two();
            if fits && pout <= em.slots && pin <= em.slots && em.slots.is_multiple_of(pin) {
                return diagonal_gemm(em, &cols, pin, pout, n, &wt, &bias);
            }
        }
        let fresh = freshen_all(em, &regs, false, false)?;
        let map: std::collections::HashMap<Reg, Reg> =
            regs.iter().copied().zip(fresh.iter().copied()).collect();
        let st = em.uniform(&fresh)?;
        let ws = em.product_scale(st).ok_or_else(|| LowerError::Exhausted {
            layer: em.origin().to_string(),
        })?;
        let mut out = vec![];
        if one_per_reg {
            // One value per ciphertext, all at one slot: an integer multiply-accumulate.
            let mut weights = vec![];
            for o in 0..n {
                for &(i, _, _) in &present {
                    weights.push(wt(o, i));
                }
            }
            let l = Linear {
                srcs: present.iter().map(|x| map[&x.1]).collect(),
                dsts: vec![],
                steps: vec![0],
                masks: vec![None],
                weights,
                weight_scale: ws,
                bias: Some(bias),
                bias_mask: None,
            };
            for d in em.linear(l, n)? {
                out.push(Some((d, slot0)));
            }
        } else {
            // Many values per ciphertext: plaintext products, rotate-and-sum to the
            // smallest slot, then the bias. The feature slots are lo + k * stride; the
            // sum reads one block of `n_sum * stride` slots. When the ring has room (a
            // single-input program), `group` outputs share one product and one
            // rotate-and-sum: output j of a group reads the inputs rotated by j blocks
            // (hoisted once for all groups) and lands at lo + j * block.
            let lo = present.iter().map(|x| x.2).min().unwrap();
            let hi = present.iter().map(|x| x.2).max().unwrap();
            let stride = present.iter().fold(0u32, |g, x| gcd(g, x.2 - lo)).max(1) as usize;
            let n_sum = ((hi - lo) as usize / stride + 1).next_power_of_two();
            let block = n_sum * stride;
            let room = if em.spread {
                (em.slots - lo as usize) / block
            } else {
                1
            };
            let group = room.clamp(1, n.max(1));
            em.need_period(lo as usize + group * block);
            // shifted[j][ri]: input register regs[ri] rotated right by j blocks.
            let mut shifted: Vec<Vec<Reg>> = vec![regs.iter().map(|r| map[r]).collect()];
            if group > 1 {
                let steps: Vec<i64> = (1..group).map(|j| -((j * block) as i64)).collect();
                let k = steps.len();
                let mut per_j: Vec<Vec<Reg>> = vec![vec![]; k];
                for &r in &regs {
                    // Output j - 1 = rot(r, -j * block).
                    for (j, d) in rotated_copies(em, map[&r], &steps)?.into_iter().enumerate() {
                        per_j[j].push(d);
                    }
                }
                shifted.extend(per_j);
            }
            let outputs: Vec<usize> = (0..n).collect();
            for chunk in outputs.chunks(group) {
                let mut srcs = vec![];
                let mut vecs = vec![];
                for (j, &o) in chunk.iter().enumerate() {
                    let off = (j * block) as u32;
                    for (ri, &r) in regs.iter().enumerate() {
                        let mut entries: Vec<(u32, f64)> = present
                            .iter()
                            .filter(|x| x.1 == r)
                            .map(|x| (x.2 + off, wt(o, x.0)))
                            .filter(|e| e.1 != 0.0)
                            .collect();
                        entries.sort_by_key(|e| e.0);
                        if !entries.is_empty() {
                            srcs.push(shifted[j][ri]);
                            vecs.push(SlotVector { entries });
                        }
                    }
                }
                let d = if srcs.is_empty() {
                    // All-zero rows: any input times zero.
                    let src = vec![fresh[0]];
                    em.dot(src, vec![SlotVector { entries: vec![] }], ws)?
                } else {
                    em.dot(srcs, vecs, ws)?
                };
                // Rotate before the rescale: at ~Delta^3 the key-switching noise vanishes
                // against the scale (at Delta it would cost several bits).
                let mut step = n_sum / 2;
                while step >= 1 {
                    let t = em.rotate(d, (step * stride) as i64);
                    em.add(d, d, t)?;
                    em.release(t);
                    step /= 2;
                }
                if chunk.len() == 1 {
                    em.add_const(d, bias[chunk[0]]);
                } else {
                    let entries = chunk
                        .iter()
                        .enumerate()
                        .map(|(j, &o)| (lo + (j * block) as u32, bias[o]))
                        .collect();
                    em.add_vec(d, SlotVector { entries });
                }
                let d = freshen(em, d, true, true)?;
                for j in 0..chunk.len() {
                    out.push(Some((d, lo + (j * block) as u32)));
                }
            }
            for copies in &shifted[1..] {
                for &c in copies {
                    em.release(c);
                }
            }
        }
        for (&r, &f) in regs.iter().zip(&fresh) {
            if r != f {
                em.release(f);
            }
        }
        Ok(Value::Features(Features {
            items: out,
            period: None,
        }))
    }

    fn affine(
        &self,
        em: &mut Emitter,
        x: &Value,
        mul: &[f64],
        add: &[f64],
        steal: bool,
    ) -> Result<Value, LowerError> {
        let scaled = mul.iter().any(|&m| m != 1.0);
        let f = |em: &mut Emitter, r: Reg, c: usize| -> Result<Reg, LowerError> {
            let mut r = em.owned(r, steal);
            if scaled {
                r = freshen(em, r, true, false)?;
                let st = em.state(r);
                let ws = em.product_scale(st).ok_or_else(|| LowerError::Exhausted {
                    layer: em.origin().to_string(),
                })?;
                em.mul_const(r, per(mul, c), ws);
                em.add_const(r, per(add, c));
            } else {
                em.add_const(r, per(add, c));
            }
            Ok(r)
        };
        // Features sharing a ciphertext with their own constants: a slot-vector product and
        // a slot-vector add (zero on every other slot).
        let fv = |em: &mut Emitter, r: Reg, feats: &[(u32, usize)]| -> Result<Reg, LowerError> {
            let vector = |v: &[f64]| SlotVector {
                entries: feats.iter().map(|&(s, c)| (s, per(v, c))).collect(),
            };
            let r = if scaled {
                let x = freshen(em, r, false, false)?;
                let st = em.state(x);
                let ws = em.product_scale(st).ok_or_else(|| LowerError::Exhausted {
                    layer: em.origin().to_string(),
                })?;
                let y = em.dot(vec![x], vec![vector(mul)], ws)?;
                if x != r {
                    em.release(x);
                }
                y
            } else {
                em.owned(r, steal)
            };
            em.add_vec(r, vector(add));
            Ok(r)
        };
        map_channels(em, x, &[mul, add], f, fv)
    }

    fn poly(
        &self,
        em: &mut Emitter,
        x: &Value,
        p: &Poly,
        steal: bool,
    ) -> Result<Value, LowerError> {
        let (c0, c1, c2) = match p {
            Poly::Quadratic { c0, c1, c2 } => (c0, c1, c2),
            Poly::Bivariate { .. } => {
                return Err(unsupported(
                    em,
                    "Poly",
                    "bivariate polynomials are not lowered yet (no committed model has one)",
                ))
            }
        };
        if c2.iter().all(|&v| v == 0.0) {
            return self.affine(em, x, c1, c0, steal);
        }
        let monic = c2.iter().all(|&v| v == 1.0);
        let linear = c1.iter().any(|&v| v != 0.0);
        let f = |em: &mut Emitter, r: Reg, c: usize| -> Result<Reg, LowerError> {
            let xr = freshen(em, r, steal, true)?;
            let s = em.state(xr).scale;
            let y = em.square_into(xr);
            let d = em.delta;
            if !monic {
                em.mul_const(y, per(c2, c), d);
            }
            if linear {
                let xo = em.owned(xr, steal || xr != r);
                em.mul_const(xo, per(c1, c), if monic { s } else { s * d });
                em.add(y, y, xo)?;
                if xo != r {
                    em.release(xo);
                }
            } else if xr != r {
                em.release(xr);
            }
            em.add_const(y, per(c0, c));
            Ok(y)
        };
        // Features sharing a ciphertext with their own coefficients: slot-vector products
        // for c2 and c1, a slot-vector add for c0.
        let fv = |em: &mut Emitter, r: Reg, feats: &[(u32, usize)]| -> Result<Reg, LowerError> {
            let vector = |v: &[f64]| SlotVector {
                entries: feats.iter().map(|&(s, c)| (s, per(v, c))).collect(),
            };
            let xr = freshen(em, r, steal, true)?;
            let s = em.state(xr).scale;
            let mut y = em.square_into(xr);
            let d = em.delta;
            if !monic {
                let y2 = em.dot(vec![y], vec![vector(c2)], d)?;
                em.release(y);
                y = y2;
            }
            if linear {
                let t = em.dot(vec![xr], vec![vector(c1)], if monic { s } else { s * d })?;
                em.add(y, y, t)?;
                em.release(t);
            }
            if xr != r {
                em.release(xr);
            }
            em.add_vec(y, vector(c0));
            Ok(y)
        };
        map_channels(em, x, &[c0, c1, c2], f, fv)
    }

    fn add(
        &self,
        em: &mut Emitter,
        a: &Value,
        b: &Value,
        sign: i64,
        steal: (bool, bool),
    ) -> Result<Value, LowerError> {
        let ra = a.regs();
        let rb = b.regs();
        let sa = ra.first().map(|&r| em.state(r));
        let sb = rb.first().map(|&r| em.state(r));
        let target = match (sa, sb) {
            (Some(x), Some(y)) => {
                if x.level < y.level || (x.level == y.level && x.scale >= y.scale) {
                    x
                } else {
                    y
                }
            }
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return Err(layout_err(em, "both addends are zero")),
        };
        let pair = |em: &mut Emitter, x: Option<Reg>, y: Option<Reg>| {
            add_aligned(em, x, y, sign, steal, target)
        };
        match (a, b) {
            (Value::Spatial(x), Value::Spatial(y)) => {
                if (x.h, x.w, x.origin, x.row, x.col) != (y.h, y.w, y.origin, y.row, y.col)
                    || x.chans.len() != y.chans.len()
                {
                    return Err(layout_err(
                        em,
                        "the addends are laid out differently (this layout does not repack)",
                    ));
                }
                let mut chans = vec![];
                for (p, q) in x.chans.iter().zip(&y.chans) {
                    chans.push(pair(em, *p, *q)?);
                }
                Ok(Value::Spatial(Spatial { chans, ..x.clone() }))
            }
            (Value::Features(x), Value::Features(y)) => {
                if x.items.len() != y.items.len() {
                    return Err(layout_err(em, "addends of different lengths"));
                }
                let mut items = vec![];
                for (p, q) in x.items.iter().zip(&y.items) {
                    if let (Some(p), Some(q)) = (p, q) {
                        if p.1 != q.1 {
                            return Err(layout_err(em, "addends at different slots"));
                        }
                    }
                    let slot = p.or(*q).map(|v| v.1);
                    let r = pair(em, p.map(|v| v.0), q.map(|v| v.0))?;
                    items.push(r.zip(slot));
                }
                let period = if x.period == y.period { x.period } else { None };
                Ok(Value::Features(Features { items, period }))
            }
            _ => Err(layout_err(em, "adding an NCHW tensor to a flat one")),
        }
    }

    fn reshape(&self, em: &mut Emitter, x: &Value, shape: &[usize]) -> Result<Value, LowerError> {
        let numel: usize = shape.iter().product();
        match (x, shape) {
            // Flattened with or without the batch axis (exporters differ: torch.onnx's
            // dynamo path reshapes (1, C, 1, 1) to (C)).
            (Value::Spatial(s), [1, f] | [f]) if *f == s.chans.len() * s.h * s.w => {
                let mut items = vec![];
                for c in &s.chans {
                    for i in 0..s.h {
                        for j in 0..s.w {
                            items.push(c.map(|r| (r, s.slot(i, j) as u32)));
                        }
                    }
                }
                Ok(Value::Features(Features {
                    items,
                    period: s.period,
                }))
            }
            (Value::Spatial(s), [1, c, h, w]) if (*c, *h, *w) == (s.chans.len(), s.h, s.w) => {
                Ok(x.clone())
            }
            (Value::Features(f), [1, n] | [n]) if *n == f.items.len() => Ok(x.clone()),
            (Value::Features(f), [1, c, 1, 1]) if *c == f.items.len() => {
                let slot = f.items.iter().flatten().map(|v| v.1).next().unwrap_or(0);
                let regs: Vec<Reg> = f.items.iter().flatten().map(|v| v.0).collect();
                let distinct = {
                    let mut r = regs.clone();
                    r.sort_unstable();
                    r.dedup();
                    r.len() == regs.len()
                };
                if !distinct || f.items.iter().flatten().any(|v| v.1 != slot) {
                    return Err(layout_err(
                        em,
                        "reshape to NCHW of values sharing a ciphertext",
                    ));
                }
                Ok(Value::Spatial(Spatial {
                    chans: f.items.iter().map(|v| v.map(|v| v.0)).collect(),
                    h: 1,
                    w: 1,
                    origin: slot as i64,
                    row: 1,
                    col: 1,
                    period: f.period,
                }))
            }
            _ => Err(unsupported(
                em,
                "Reshape",
                format!("to {shape:?} ({numel} values) from this layout"),
            )),
        }
    }

    fn slice(&self, em: &mut Emitter, x: &Value, axes: &[SliceAxis]) -> Result<Value, LowerError> {
        let mut v = x.clone();
        for (axis, a) in axes.iter().enumerate() {
            if a.step < 1 {
                return Err(unsupported(em, "Slice", "negative steps"));
            }
            let step = a.step as usize;
            let pick = |n: usize| -> Vec<usize> {
                (0..a.len)
                    .map(|k| a.start + k * step)
                    .filter(|&i| i < n)
                    .collect()
            };
            if matches!(v, Value::Packed(_)) {
                return Err(layout_err(em, "a packed tensor in the reference layout"));
            }
            match &mut v {
                Value::Spatial(s) => match axis {
                    0 => {
                        if a.start != 0 || a.len != 1 {
                            return Err(unsupported(em, "Slice", "slicing the batch axis"));
                        }
                    }
                    1 => {
                        let idx = pick(s.chans.len());
                        s.chans = idx.iter().map(|&i| s.chans[i]).collect();
                    }
                    2 => {
                        s.origin += a.start as i64 * s.row;
                        s.row *= step as i64;
                        s.h = a.len;
                    }
                    3 => {
                        s.origin += a.start as i64 * s.col;
                        s.col *= step as i64;
                        s.w = a.len;
                    }
                    _ => return Err(unsupported(em, "Slice", "axis beyond 3")),
                },
                Value::Features(f) => match axis {
                    0 => {}
                    1 => {
                        let idx = pick(f.items.len());
                        f.items = idx.iter().map(|&i| f.items[i]).collect();
                    }
                    _ => return Err(unsupported(em, "Slice", "axis beyond 1 of a flat tensor")),
                },
                Value::Packed(_) => unreachable!("refused above"),
            }
        }
        Ok(v)
    }

    fn pad(
        &self,
        em: &mut Emitter,
        x: &Value,
        pads: &[(usize, usize)],
    ) -> Result<Value, LowerError> {
        let mut v = x.clone();
        for (axis, &(b, e)) in pads.iter().enumerate() {
            if b == 0 && e == 0 {
                continue;
            }
            match (&mut v, axis) {
                (Value::Spatial(s), 1) => {
                    let mut c = vec![None; b];
                    c.extend(s.chans.iter().copied());
                    c.extend(std::iter::repeat_n(None, e));
                    s.chans = c;
                }
                (Value::Features(f), 1) => {
                    let mut c = vec![None; b];
                    c.extend(f.items.iter().copied());
                    c.extend(std::iter::repeat_n(None, e));
                    f.items = c;
                }
                _ => {
                    return Err(unsupported(
                        em,
                        "Pad",
                        "only channel padding (spatial zero padding belongs in the Conv)",
                    ))
                }
            }
        }
        Ok(v)
    }

    fn output(&self, em: &mut Emitter, x: &Value) -> Result<Vec<(u32, Reg, u32)>, LowerError> {
        let mut out = vec![];
        let zero = || layout_err(em, "an output value is identically zero");
        match x {
            Value::Packed(_) => {
                return Err(layout_err(em, "a packed tensor in the reference layout"))
            }
            Value::Features(f) => {
                for (k, it) in f.items.iter().enumerate() {
                    let (r, s) = it.ok_or_else(zero)?;
                    out.push((k as u32, r, s));
                }
            }
            Value::Spatial(s) => {
                for (c, r) in s.chans.iter().enumerate() {
                    let r = r.ok_or_else(zero)?;
                    for i in 0..s.h {
                        for j in 0..s.w {
                            out.push((((c * s.h + i) * s.w + j) as u32, r, s.slot(i, j) as u32));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `x + sign * y` for two registers (either may be absent: identically zero), both first
/// brought to `target` (level and scale); `steal` says which input may be modified in place.
pub(super) fn add_aligned(
    em: &mut Emitter,
    x: Option<Reg>,
    y: Option<Reg>,
    sign: i64,
    steal: (bool, bool),
    target: CtState,
) -> Result<Option<Reg>, LowerError> {
    let xa = x.map(|r| align_to(em, r, target, steal.0)).transpose()?;
    let mut yb = y.map(|r| align_to(em, r, target, steal.1)).transpose()?;
    if sign != 1 {
        if let Some(r) = yb {
            let r2 = em.owned(r, steal.1 || Some(r) != y);
            em.mul_int(r2, sign);
            yb = Some(r2);
        }
    }
    Ok(match (xa, yb) {
        (Some(p), Some(q)) => {
            let dst = if Some(p) != x || (steal.0 && em.refs(p) <= 1) {
                p
            } else {
                em.owned(p, false)
            };
            em.add(dst, dst, q)?;
            if Some(q) != y {
                em.release(q);
            }
            Some(dst)
        }
        (Some(p), None) => Some(p),
        (None, Some(q)) => Some(q),
        (None, None) => None,
    })
}

/// Applies `f` to every non-zero channel of a uniform value, once per register (`f(em, reg,
/// channel)`); features that share a ciphertext but not their coefficients (`coeffs`, per
/// channel) go through `fv(em, reg, [(slot, feature)])`, which uses slot-vector constants.
fn map_channels(
    em: &mut Emitter,
    x: &Value,
    coeffs: &[&[f64]],
    mut f: impl FnMut(&mut Emitter, Reg, usize) -> Result<Reg, LowerError>,
    mut fv: impl FnMut(&mut Emitter, Reg, &[(u32, usize)]) -> Result<Reg, LowerError>,
) -> Result<Value, LowerError> {
    match x {
        Value::Spatial(s) => {
            let mut chans = vec![];
            for (c, r) in s.chans.iter().enumerate() {
                chans.push(match r {
                    Some(r) => Some(f(em, *r, c)?),
                    None => {
                        return Err(layout_err(
                            em,
                            "an elementwise op on an identically zero channel",
                        ))
                    }
                });
            }
            Ok(Value::Spatial(Spatial { chans, ..s.clone() }))
        }
        Value::Features(fe) => {
            // The features of each register, in order: (slot, feature index).
            let mut by_reg: Vec<(Reg, Vec<(u32, usize)>)> = vec![];
            for (c, it) in fe.items.iter().enumerate() {
                let Some((r, s)) = *it else {
                    return Err(layout_err(
                        em,
                        "an elementwise op on an identically zero feature",
                    ));
                };
                // A replicated value keeps its copies: constants go on every one.
                let copies: Vec<u32> = match fe.period {
                    Some(p) => (0..em.slots as u32 / p).map(|m| s + m * p).collect(),
                    None => vec![s],
                };
                for s in copies {
                    match by_reg.iter_mut().find(|e| e.0 == r) {
                        Some(e) => e.1.push((s, c)),
                        None => by_reg.push((r, vec![(s, c)])),
                    }
                }
            }
            let mut done: std::collections::HashMap<Reg, Reg> = Default::default();
            for (r, feats) in &by_reg {
                let c0 = feats[0].1;
                let uniform = feats
                    .iter()
                    .all(|&(_, c)| coeffs.iter().all(|v| per(v, c0) == per(v, c)));
                let out = if uniform {
                    f(em, *r, c0)?
                } else {
                    fv(em, *r, feats)?
                };
                done.insert(*r, out);
            }
            let items = fe
                .items
                .iter()
                .map(|it| it.map(|(r, s)| (done[&r], s)))
                .collect();
            Ok(Value::Features(Features {
                items,
                period: fe.period,
            }))
        }
        Value::Packed(_) => Err(layout_err(em, "a packed tensor in the reference layout")),
    }
}
