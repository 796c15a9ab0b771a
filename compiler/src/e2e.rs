//! One-process compile + client + server round trip (what `fhec run` and the end-to-end
//! tests do): compile an imported graph to a program, then keygen, encrypt, evaluate and
//! decrypt on one input, timing every step. The secret key never leaves this module's
//! client half; the evaluation uses the evaluation-key bundle only.

use std::time::Instant;

use passes::ir::Graph;
use passes::select_params::ParamRequest;
use runtime::ckks::{Context, Decryptor, Encoder, Encryptor, KeyGenerator};
use runtime::program::{Executor, ImageNormalization, KeyRequirements, Program};

use crate::lower::{self, layout::Layout, LowerError};
use crate::pipeline::{self, PipelineError, Planned};

/// Errors of the round trip.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
}

/// A compiled model.
pub struct Compiled {
    pub planned: Planned,
    pub program: Program,
}

/// Options of `compile`.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    pub request: ParamRequest,
    pub insecure_test_params: bool,
    pub image: Option<ImageNormalization>,
    /// Cluster the conv weights (`slice:K` / `full:K`) after the rewrite passes.
    pub cluster: Option<passes::cluster::ClusterSpec>,
    /// Inputs per run (batch mode: each in its own slot period).
    pub batch: lower::BatchSize,
}

/// Most towers a compile adds to the level plan's when the lowering runs out of primes.
pub const MAX_EXTRA_TOWERS: u32 = 4;

/// Runs `attempt` with `opts`, and again with one more tower each time its lowering runs
/// out of primes (up to [`MAX_EXTRA_TOWERS`]). The level plan pairs two plaintext products
/// in one prime wherever they follow each other; the lowering's weight scales do so only
/// for a product followed by an activation, so a chain of linear layers (conv -> conv,
/// Gemm -> Gemm, conv -> pool -> Gemm) can need a prime more than planned. The program
/// then keeps the extra prime (its parameters say so); the level plan is not changed.
fn with_spare_towers<T>(
    opts: &CompileOptions,
    mut attempt: impl FnMut(&CompileOptions) -> Result<T, E2eError>,
) -> Result<T, E2eError> {
    let mut o = opts.clone();
    loop {
        match attempt(&o) {
            Err(E2eError::Lower(LowerError::Exhausted { .. }))
                if o.request.extra_towers < opts.request.extra_towers + MAX_EXTRA_TOWERS =>
            {
                o.request.extra_towers += 1;
            }
            r => return r,
        }
    }
}

/// Passes, levels, parameters and lowering in the given layout.
pub fn compile(
    graph: Graph,
    opts: &CompileOptions,
    layout: &dyn Layout,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Compiled, E2eError> {
    let mut rewritten = pipeline::rewrite(graph)?;
    if let Some(spec) = &opts.cluster {
        let rep = passes::cluster::run(&mut rewritten.graph, spec).map_err(PipelineError::from)?;
        rewritten.reports.push(rep);
    }
    with_spare_towers(opts, |o| {
        let planned = pipeline::plan_rewritten(rewritten.clone(), &o.request)?;
        let params = lower::params_for(&planned.params, o.insecure_test_params)?;
        let program = lower::lower_batched(
            &planned,
            params,
            o.image.clone(),
            layout,
            o.batch,
            &mut progress,
        )?;
        Ok(Compiled { planned, program })
    })
}

/// Which ciphertext layout to lower to (`fhec compile --layout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayoutChoice {
    /// One channel per ciphertext (design brief 1.5).
    #[default]
    Reference,
    /// A whole tensor per ciphertext, channels interleaved (`lower::packed`).
    Packed,
    /// Whichever the cost model (`lower::cost`) finds cheaper among those that lower.
    Auto,
}

impl std::str::FromStr for LayoutChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(LayoutChoice::Reference),
            "packed" => Ok(LayoutChoice::Packed),
            "auto" => Ok(LayoutChoice::Auto),
            _ => Err(format!(
                "unknown layout '{s}': the layouts are 'reference', 'packed' and 'auto'"
            )),
        }
    }
}

/// A compiled model, the layout taken and the cost estimates compared.
pub type LayoutCompiled = (
    Compiled,
    &'static str,
    Vec<(&'static str, lower::cost::Cost)>,
);

/// The packed layout's compile: its channel groups come from the rewritten graph, and the
/// level plan gets the units its downsampling masks cost.
fn compile_packed(
    graph: Graph,
    opts: &CompileOptions,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Compiled, E2eError> {
    with_spare_towers(opts, |o| {
        compile_packed_once(graph.clone(), o, &mut progress)
    })
}

fn compile_packed_once(
    graph: Graph,
    opts: &CompileOptions,
    progress: impl FnMut(usize, usize, &str),
) -> Result<Compiled, E2eError> {
    let mut rewritten = pipeline::rewrite(graph)?;
    if let Some(spec) = &opts.cluster {
        let rep = passes::cluster::run(&mut rewritten.graph, spec).map_err(PipelineError::from)?;
        rewritten.reports.push(rep);
    }
    let layout = lower::packed::Packed::for_graph(&rewritten.graph);
    let mut req = opts.request.clone();
    req.min_log_n = req.min_log_n.max(layout.min_log_n());
    let extra = &lower::packed::Packed::extra_units;
    let planned = pipeline::plan_rewritten_for(rewritten.clone(), &req, extra)?;
    // The parameter selector's own cost model describes the reference layout's workload
    // (hoisted rotations per channel); the packed program's key switches are mostly single
    // rotations, for which fewer, larger digits are cheaper and their keys smaller. So
    // every digit count that fits is lowered and weighed by `lower::cost` (measured on
    // ResNet-20: dnum 3 vs the selector's 8, same eval time, keys 0.9 vs 1.9 GiB).
    let mut best = planned;
    if req.force_dnum.is_none() {
        let chain = best.params.primes.len() as u32;
        let mut best_cost = f64::INFINITY;
        for d in 1..=chain {
            let mut r = req.clone();
            r.force_dnum = Some(d);
            r.force_log_n = Some(best.params.log_n);
            let Ok(p) = pipeline::plan_rewritten_for(rewritten.clone(), &r, extra) else {
                continue;
            };
            if p.params.dnum != d {
                continue;
            }
            let Ok(params) = lower::params_for(&p.params, opts.insecure_test_params) else {
                continue;
            };
            let Ok(program) = lower::lower_batched(
                &p,
                params,
                opts.image.clone(),
                &layout,
                opts.batch,
                |_, _, _| {},
            ) else {
                continue;
            };
            let c = lower::cost::estimate(&program).ntts;
            if c < best_cost {
                best_cost = c;
                best = p;
            }
        }
    }
    let planned = best;
    let params = lower::params_for(&planned.params, opts.insecure_test_params)?;
    let program = lower::lower_batched(
        &planned,
        params,
        opts.image.clone(),
        &layout,
        opts.batch,
        progress,
    )?;
    Ok(Compiled { planned, program })
}

/// Compiles in the chosen layout; `Auto` lowers both and keeps the one with the lower
/// estimated cost (the packed layout only where it lowers: unsupported ops fall back).
/// Returns the layout taken and the estimates compared.
pub fn compile_with(
    graph: Graph,
    opts: &CompileOptions,
    choice: LayoutChoice,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<LayoutCompiled, E2eError> {
    use lower::reference::Reference;
    match choice {
        LayoutChoice::Reference => {
            let c = compile(graph, opts, &Reference, progress)?;
            let e = lower::cost::estimate(&c.program);
            Ok((c, "reference", vec![("reference", e)]))
        }
        LayoutChoice::Packed => {
            let c = compile_packed(graph, opts, progress)?;
            let e = lower::cost::estimate(&c.program);
            Ok((c, "packed", vec![("packed", e)]))
        }
        LayoutChoice::Auto => {
            let r = compile(graph.clone(), opts, &Reference, &mut progress)?;
            let er = lower::cost::estimate(&r.program);
            match compile_packed(graph, opts, &mut progress) {
                Ok(p) => {
                    let ep = lower::cost::estimate(&p.program);
                    let both = vec![("reference", er.clone()), ("packed", ep.clone())];
                    if ep.ntts < er.ntts {
                        Ok((p, "packed", both))
                    } else {
                        Ok((r, "reference", both))
                    }
                }
                // The packed layout's own limits (ops it does not pack, a level plan
                // its masks outgrow, parameters its slot count rules out): the reference
                // layout's program stands.
                Err(E2eError::Lower(LowerError::Unsupported { .. }))
                | Err(E2eError::Lower(LowerError::Layout { .. }))
                | Err(E2eError::Lower(LowerError::Exhausted { .. }))
                | Err(E2eError::Pipeline(PipelineError::Params(_))) => {
                    Ok((r, "reference", vec![("reference", er)]))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// An ensemble of models of one architecture (`graphs.len()` members, a power of two) in
/// one program (`lower::ensemble`): each is planned and lowered as a single-input program
/// with the same parameters (the ring grows until N/2 slots hold one input period per
/// member), then the programs are merged. `progress` sees (member, done, total, layer).
pub fn compile_ensemble(
    graphs: Vec<Graph>,
    opts: &CompileOptions,
    layout: &dyn Layout,
    mut progress: impl FnMut(usize, usize, usize, &str),
) -> Result<Compiled, E2eError> {
    let members = graphs.len();
    if opts.batch != lower::BatchSize::One {
        return Err(LowerError::Ensemble("an ensemble runs one input (no --batch)".into()).into());
    }
    let mut request = opts.request.clone();
    let extra = members.max(1).next_power_of_two().trailing_zeros();
    let mut rewritten = vec![];
    for g in graphs {
        request.min_log_n = request.min_log_n.max(pipeline::min_log_n(&g) + extra);
        rewritten.push(pipeline::rewrite(g)?);
    }
    // Joint clustering: k-means over the members' corresponding weights as M-vectors.
    if let Some(spec) = &opts.cluster {
        let mut gs: Vec<Graph> = rewritten
            .iter_mut()
            .map(|r| std::mem::take(&mut r.graph))
            .collect();
        let reports = passes::cluster_joint::run(&mut gs, spec).map_err(PipelineError::from);
        for (r, g) in rewritten.iter_mut().zip(gs) {
            r.graph = g;
        }
        for (r, rep) in rewritten.iter_mut().zip(reports?) {
            r.reports.push(rep);
        }
    }
    let plan_all = |rw: &[pipeline::Rewritten], req: &ParamRequest| {
        rw.iter()
            .map(|r| pipeline::plan_rewritten(r.clone(), req))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut planned = plan_all(&rewritten, &request)?;
    // One parameter set for all: the largest ring any member asked for.
    let top = planned.iter().map(|p| p.params.log_n).max().unwrap_or(0);
    if planned.iter().any(|p| p.params.log_n != top) {
        request.force_log_n = Some(top);
        planned = plan_all(&rewritten, &request)?;
    }
    let first = &planned[0].params;
    if let Some(m) = planned.iter().position(|p| {
        (
            p.params.log_delta,
            &p.params.primes,
            &p.params.special_primes,
            p.params.dnum,
        ) != (
            first.log_delta,
            &first.primes,
            &first.special_primes,
            first.dnum,
        )
    }) {
        return Err(LowerError::Ensemble(format!(
            "member {m} needs other CKKS parameters than member 0 (a different depth?): an \
             ensemble needs models of one architecture"
        ))
        .into());
    }
    let params = lower::params_for(first, opts.insecure_test_params)?;
    let mut programs = vec![];
    for (m, p) in planned.iter().enumerate() {
        programs.push(lower::lower_batched(
            p,
            params.clone(),
            opts.image.clone(),
            layout,
            lower::BatchSize::One,
            |d, t, l| progress(m, d, t, l),
        )?);
    }
    let program = lower::ensemble::merge(&programs)?;
    let planned = planned.swap_remove(0);
    Ok(Compiled { planned, program })
}

/// Timings (seconds) and sizes of one encrypted run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunStats {
    pub keygen_s: f64,
    pub encrypt_s: f64,
    pub eval_s: f64,
    pub decrypt_s: f64,
    pub eval_key_bytes: u64,
    pub rotation_keys: usize,
    /// Evaluation seconds per layer (instructions grouped by their origin), in order.
    pub layer_s: Vec<(String, f64)>,
}

/// The client's keys for one program (made once, used for many inputs).
pub struct Session {
    ctx: std::sync::Arc<Context>,
    sk: runtime::ckks::SecretKey,
    keys: runtime::ckks::EvalKeys,
    pub keygen_s: f64,
    pub eval_key_bytes: u64,
    /// Overrides the executor's masked-plaintext cache budget (tests force the streamed
    /// paths with `Some(0)`; results do not depend on it).
    pub mask_cache_bytes: Option<usize>,
}

impl Session {
    /// Client: a secret key and the evaluation keys the program needs.
    pub fn new(program: &Program) -> Result<Self, E2eError> {
        let ctx = Context::new(program.params.clone())?;
        let t = Instant::now();
        let req = KeyRequirements::of(program)?;
        let mut kg = KeyGenerator::new(&ctx);
        let sk = kg.secret_key();
        let keys = kg.eval_keys(&sk, req.relin_level, &req.galois(&ctx))?;
        let keygen_s = t.elapsed().as_secs_f64();
        let eval_key_bytes = runtime::codec::eval_keys_len(&keys)?;
        Ok(Session {
            ctx,
            sk,
            keys,
            keygen_s,
            eval_key_bytes,
            mask_cache_bytes: None,
        })
    }

    /// Encrypts `input` (the flattened input tensor), runs the program with the
    /// evaluation keys only, decrypts the output.
    pub fn run(
        &self,
        program: &Program,
        input: &[f64],
        mut progress: impl FnMut(usize, usize, &str),
    ) -> Result<(Vec<f64>, RunStats), E2eError> {
        let ctx = &self.ctx;
        let mut st = RunStats {
            keygen_s: self.keygen_s,
            eval_key_bytes: self.eval_key_bytes,
            rotation_keys: self.keys.galois.len(),
            ..Default::default()
        };
        // Client: encrypt.
        let t = Instant::now();
        let packed = program.input.pack(input, ctx.params().slots())?;
        let enc = Encoder::new(ctx);
        let mut encryptor = Encryptor::new(ctx);
        let cts = packed
            .iter()
            .map(|v| {
                let pt = enc.encode(v, program.input.scale, program.input.level as usize)?;
                encryptor.encrypt_sk(&pt, &self.sk)
            })
            .collect::<runtime::Result<Vec<_>>>()?;
        st.encrypt_s = t.elapsed().as_secs_f64();
        // Server: evaluation keys only.
        let t = Instant::now();
        let mut last = Instant::now();
        let mut layer_s: Vec<(String, f64)> = vec![];
        let mut exec = Executor::new(ctx, program, &self.keys)?;
        if let Some(bytes) = self.mask_cache_bytes {
            exec = exec.with_mask_cache_bytes(bytes);
        }
        let out = exec.run(cts, |done, total, layer| {
            let dt = last.elapsed().as_secs_f64();
            last = Instant::now();
            match layer_s.last_mut() {
                Some((name, s)) if name == layer => *s += dt,
                _ => layer_s.push((layer.to_string(), dt)),
            }
            progress(done, total, layer)
        })?;
        st.eval_s = t.elapsed().as_secs_f64();
        st.layer_s = layer_s;
        // Client: decrypt.
        let t = Instant::now();
        let dec = Decryptor::new(ctx, &self.sk);
        let mut slots = std::collections::BTreeMap::new();
        for (r, ct) in &out {
            slots.insert(*r, dec.decrypt(ct)?);
        }
        let y = program.output.gather(&slots)?;
        st.decrypt_s = t.elapsed().as_secs_f64();
        Ok((y, st))
    }
}

/// Keygen, encrypt, evaluate and decrypt one input.
pub fn run_encrypted(
    program: &Program,
    input: &[f64],
    progress: impl FnMut(usize, usize, &str),
) -> Result<(Vec<f64>, RunStats), E2eError> {
    Session::new(program)?.run(program, input, progress)
}

/// Index of the largest value among the first `row` values (the top-1 class of a
/// `[1, classes]` output; `row` is clamped to the output's length).
pub fn top1(out: &[f64], row: usize) -> usize {
    let row = row.clamp(1, out.len().max(1)).min(out.len());
    out[..row]
        .iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Peak resident memory of this process so far (VmHWM), in bytes, where the OS says.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Largest |a - b| and the bits of precision it leaves relative to the largest |b|
/// (at least 1): log2(max(1, max|b|) / max|a - b|).
pub fn error_bits(a: &[f64], b: &[f64]) -> (f64, f64) {
    let err = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f64, f64::max);
    let range = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    (err, (range / err.max(f64::MIN_POSITIVE)).log2())
}
