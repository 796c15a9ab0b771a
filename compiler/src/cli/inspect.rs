//! `fhec inspect MODEL.onnx|P.fheprog [--log-n 15] [--json] [--passes] [--cluster
//! slice:K|full:K]`: run the rewrite passes (and the clustering), the level annotator and
//! the parameter selection, and show the result: one row per layer (op, level in and out,
//! scale, primes consumed, fused-from), totals, the parameter set, estimated key and
//! ciphertext sizes, and per conv layer of the lowered program its weight sharing:
//! distinct weights (K after clustering, per layer and per kernel column) and the
//! products that adding the rotated inputs sharing a weight first would save.

use std::path::PathBuf;

use anyhow::Context;
use compiler::onnx::{import_path, ImportOptions};
use compiler::pipeline::{plan_clustered, security_bits};
use passes::select_params::ParamRequest;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model, or a compiled .fheprog.
    model: PathBuf,
    /// Force the ring degree N = 2^LOG_N.
    #[arg(long)]
    log_n: Option<u32>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// List what each pass changed.
    #[arg(long)]
    passes: bool,
    /// Bits of output precision wanted (sets the smallest Delta).
    #[arg(long, default_value_t = 12)]
    precision_bits: u32,
    /// Fixed shape of a graph input, e.g. 1,3,32,32 (repeat once per input, in order).
    #[arg(long = "input-shape", value_parser = super::parse_shape)]
    input_shape: Vec<Vec<usize>>,
    /// Cluster the conv weights as `fhec compile --cluster` does (slice:K or full:K).
    #[arg(long)]
    cluster: Option<passes::cluster::ClusterSpec>,
}

/// Weight sharing of one layer's `Linear`s (convolutions): distinct weight values and the
/// products that adding the rotated inputs that share a weight first would save.
#[derive(serde::Serialize)]
struct Sharing {
    layer: String,
    /// Distinct non-zero weights in the layer, and the most in one kernel column.
    distinct: usize,
    per_column: usize,
    /// Non-zero (output, input, tap) products as the executor computes them.
    products: usize,
    /// Products when the terms sharing a weight are added first: per output, one per
    /// distinct weight over its unmasked taps, one per (masked tap, distinct weight).
    grouped: usize,
    /// Distinct (mask, weight) plaintexts the masked taps need.
    plaintexts: usize,
}

fn sharing(p: &runtime::program::Program) -> Vec<Sharing> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut rows: BTreeMap<usize, Sharing> = BTreeMap::new();
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    // Per layer: all distinct weights, and those of each kernel column.
    type Distinct = (BTreeSet<u64>, BTreeMap<usize, BTreeSet<u64>>);
    let mut values: BTreeMap<usize, Distinct> = BTreeMap::new();
    let mut plains: BTreeMap<usize, BTreeSet<(u32, u64)>> = BTreeMap::new();
    for (k, (ins, origin)) in p.instrs.iter().zip(&p.origins).enumerate() {
        let runtime::program::Instr::Linear(l) = ins else {
            continue;
        };
        if l.weight_scale <= 1.0 || l.steps.len() < 2 {
            continue; // a pool sum or a dense layer (clustering is for convolutions)
        }
        let idx = *first.entry(origin.as_str()).or_insert(k);
        let row = rows.entry(idx).or_insert_with(|| Sharing {
            layer: origin.clone(),
            distinct: 0,
            per_column: 0,
            products: 0,
            grouped: 0,
            plaintexts: 0,
        });
        let taps = l.steps.len();
        let side = (taps as f64).sqrt().round() as usize;
        let kw = if side * side == taps { side } else { 1 };
        let (all, cols) = values.entry(idx).or_default();
        let pl = plains.entry(idx).or_default();
        let nsrc = l.srcs.len();
        for o in 0..l.dsts.len() {
            let mut unmasked = BTreeSet::new();
            let mut masked: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
            for i in 0..nsrc {
                for t in 0..taps {
                    let w = l.weights[(o * nsrc + i) * taps + t];
                    if w == 0.0 {
                        continue;
                    }
                    row.products += 1;
                    all.insert(w.to_bits());
                    cols.entry(t % kw).or_default().insert(w.to_bits());
                    match l.masks[t] {
                        None => {
                            unmasked.insert(w.to_bits());
                        }
                        Some(m) => {
                            masked.entry(t).or_default().insert(w.to_bits());
                            pl.insert((m, w.to_bits()));
                        }
                    }
                }
            }
            row.grouped += unmasked.len() + masked.values().map(|v| v.len()).sum::<usize>();
        }
    }
    for (idx, row) in rows.iter_mut() {
        let (all, cols) = &values[idx];
        row.distinct = all.len();
        row.per_column = cols.values().map(|c| c.len()).max().unwrap_or(0);
        row.plaintexts = plains[idx].len();
    }
    rows.into_values().collect()
}

fn sharing_table(rows: &[Sharing]) -> String {
    let mut out = format!(
        "{:<40} {:>9} {:>10} {:>9} {:>9} {:>7} {:>11}\n",
        "conv layer", "distinct", "per column", "products", "grouped", "saved", "plaintexts"
    );
    let (mut tp, mut tg) = (0, 0);
    for r in rows {
        out += &format!(
            "{:<40} {:>9} {:>10} {:>9} {:>9} {:>6.1}% {:>11}\n",
            r.layer,
            r.distinct,
            r.per_column,
            r.products,
            r.grouped,
            100.0 * (r.products - r.grouped) as f64 / r.products.max(1) as f64,
            r.plaintexts
        );
        tp += r.products;
        tg += r.grouped;
    }
    out += &format!(
        "weight sharing: {tp} products as executed, {tg} if the rotated inputs sharing a weight \
         were added first ({:.1}% fewer); the executor multiplies each term by its integer or \
         cached plaintext weight\n",
        100.0 * (tp - tg) as f64 / tp.max(1) as f64
    );
    out
}

fn mib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// `inspect P.fheprog`: the compiled program's per-layer table, keys and parameters.
fn inspect_program(a: &Args) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let p = runtime::program::Program::from_bytes(&bytes)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let req = runtime::program::KeyRequirements::of(&p)?;
    if a.json {
        let (q, sp) = p.params.bit_sizes();
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for i in &p.instrs {
            *kinds.entry(i.name()).or_default() += 1;
        }
        let out = json!({
            "program": a.model.display().to_string(),
            "log_n": p.params.log_n(), "q_bits": q, "special_bits": sp,
            "dnum": p.params.dnum(), "log_qp": p.params.log_qp(),
            "security_bits": p.params.security_bits(),
            "instructions": kinds, "registers": p.registers,
            "rotation_keys": req.rotations.iter().map(|(s, l)| json!({"step": s, "level": l})).collect::<Vec<_>>(),
            "relin_level": req.relin_level,
            "input": {"shape": p.input.shape, "ciphertexts": p.input.cts, "level": p.input.level, "log_scale": p.input.scale.log2()},
            "output": {"shape": p.output.shape, "registers": p.output.placement.iter().map(|x| x.1).collect::<std::collections::BTreeSet<_>>().len()},
            "bytes": bytes.len(),
            "weight_sharing": sharing(&p),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print!("{}", super::compile::summary(&p)?);
    print!("{}", sharing_table(&sharing(&p)));
    let keys: Vec<String> = req
        .rotations
        .iter()
        .map(|(s, l)| format!("{s}@{l}"))
        .collect();
    println!("rotation keys (step@level): {}", keys.join(" "));
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.model.extension().is_some_and(|e| e == "fheprog") {
        return inspect_program(&a);
    }
    let opts = ImportOptions {
        input_shapes: a.input_shape.into_iter().map(Some).collect(),
        ..Default::default()
    };
    let imp =
        import_path(&a.model, &opts).with_context(|| format!("importing {}", a.model.display()))?;
    let req = ParamRequest {
        precision_bits: a.precision_bits,
        force_log_n: a.log_n,
        ..Default::default()
    };
    let p = plan_clustered(imp.graph, &req, a.cluster.as_ref())
        .with_context(|| format!("planning {}", a.model.display()))?;
    let g = &p.rewritten.graph;
    let ps = &p.params;
    let d = ps.log_delta;
    let sec = security_bits(ps);
    // The rotation keys the lowered program needs (the reference layout).
    let lowered = compiler::lower::params_for(ps, true)
        .map_err(anyhow::Error::from)
        .and_then(|params| {
            let prog = compiler::lower::lower(
                &p,
                params,
                None,
                &compiler::lower::reference::Reference,
                |_, _, _| {},
            )?;
            let req = runtime::program::KeyRequirements::of(&prog)?;
            Ok((req.signed_steps(prog.params.slots()), sharing(&prog)))
        });
    let layers: Vec<_> = p
        .plan
        .order
        .iter()
        .map(|id| {
            let n = g.node(*id);
            let l = &p.plan.nodes[id];
            (
                n,
                l,
                p.rewritten
                    .fused_from
                    .get(&n.name)
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    if a.json {
        let ls: Vec<_> = layers
            .iter()
            .map(|(n, l, f)| {
                json!({
                    "name": n.name, "op": n.op.kind(), "shape": n.shape,
                    "level_in": l.level_in, "level_out": l.level_out,
                    "depth_in": l.depth_in, "depth_out": l.depth_out,
                    "log_scale_out": l.scale_exp * d, "primes_used": l.primes_used,
                    "primes_consumed": l.primes_consumed,
                    "weight_log_scale": l.weight_scale_exp.map(|e| e * d),
                    "monic": l.monic, "fused_from": f, "notes": l.notes,
                    "pays_level": l.pays_level,
                })
            })
            .collect();
        let mut out = json!({
            "model": a.model.display().to_string(),
            "depth": p.plan.depth,
            "levels": p.plan.units,
            "activations": p.plan.activations,
            "paid_levels": p.plan.paid_levels,
            "log_n": ps.log_n,
            "log_scale": d,
            "primes": ps.primes,
            "special_primes": ps.special_primes,
            "dnum": ps.dnum,
            "log_q": ps.log_q,
            "log_qp": ps.log_qp,
            "max_log_qp": ps.max_log_qp,
            "security_bits": sec,
            "rotation_steps": lowered.as_ref().ok().map(|l| &l.0),
            "weight_sharing": lowered.as_ref().ok().map(|l| &l.1),
            "lowering_error": lowered.as_ref().err().map(|e| format!("{e:#}")),
            "prediction": ps.prediction,
            "considered": ps.considered,
            "layers": ls,
        });
        if a.passes {
            out["passes"] = serde_json::to_value(&p.rewritten.reports)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if a.passes {
        for r in &p.rewritten.reports {
            println!("pass {}: {} change(s)", r.pass, r.changes.len());
            for c in &r.changes {
                let abs = if c.absorbed.is_empty() {
                    String::new()
                } else {
                    format!(" [absorbed {}]", c.absorbed.join(", "))
                };
                let cost = if c.pays_level {
                    " (pays one level)"
                } else {
                    ""
                };
                println!("  {}: {}{abs}{cost}", c.node, c.what);
            }
        }
        println!();
    }
    let head = [
        "op",
        "name",
        "level",
        "depth",
        "scale",
        "primes",
        "fused from",
        "notes",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = layers
        .iter()
        .map(|(n, l, f)| {
            let mut op = n.op.kind().to_string();
            if l.monic == Some(true) {
                op.push_str(" (monic)");
            }
            [
                op,
                n.name.clone(),
                format!("{}->{}", l.level_in, l.level_out),
                format!("{}->{}", l.depth_in, l.depth_out),
                format!("2^{}", l.scale_exp * d),
                format!("{} (+{})", l.primes_used, l.primes_consumed),
                f.join(", "),
                l.notes.join("; "),
            ]
        })
        .collect();
    let mut w = [0usize; 8];
    for r in std::iter::once(&head).chain(&rows) {
        for (i, c) in r.iter().enumerate().take(7) {
            w[i] = w[i].max(c.len());
        }
    }
    for r in std::iter::once(&head).chain(&rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i < 7 {
                line.push_str(&format!("{c:<width$}  ", width = w[i]));
            } else {
                line.push_str(c);
            }
        }
        println!("{}", line.trim_end());
    }
    println!();
    println!(
        "depth {} ({} levels with parity), {} activations, {} towers + 1 base = {} primes, {} node(s) paying an extra level",
        p.plan.depth,
        p.plan.units,
        p.plan.activations,
        p.plan.towers,
        p.plan.primes(),
        p.plan.paid_levels
    );
    let bits: Vec<String> = ps.primes.iter().map(|b| b.to_string()).collect();
    println!(
        "parameters: N = 2^{}, Delta = 2^{}, Q primes (bits, base first) [{}], special [{}], dnum {}",
        ps.log_n,
        d,
        bits.join(", "),
        ps.special_primes
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        ps.dnum
    );
    println!(
        "log2 Q = {}, log2 QP = {} (128-bit bound {}), security: {}",
        ps.log_q,
        ps.log_qp,
        ps.max_log_qp,
        sec.map_or("below 128 bits".to_string(), |s| format!("{s} bits"))
    );
    let pr = &ps.prediction;
    println!(
        "sizes: ciphertext {}, one key-switching key {}, relin + {} rotation keys {}",
        mib(pr.ciphertext_bytes),
        mib(pr.key_bytes),
        pr.all_keys_bytes / pr.key_bytes.max(1) - 1,
        mib(pr.all_keys_bytes)
    );
    println!(
        "cost model: {} key switches, predicted {:.0} s on one core (per-channel layout)",
        pr.key_switches, pr.seconds
    );
    println!(
        "noise model: rescale noise leaves about {:.1} bits per activation at this N and Delta{}",
        pr.noise_precision_bits,
        if pr.noise_precision_bits < 8.0 {
            " (low: measure the end-to-end error before trusting the result)"
        } else {
            ""
        }
    );
    match &lowered {
        Ok((steps, share)) => {
            println!(
                "rotation keys of the lowered program ({}): {:?}",
                steps.len(),
                steps
            );
            print!("{}", sharing_table(share));
        }
        Err(e) => println!("lowering (reference layout): {e:#}"),
    }
    Ok(())
}
