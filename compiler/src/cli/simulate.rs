//! `fhec simulate MODEL.fheprog (--cifar10-test [--limit N] [--offset K] [--data-dir D] |
//! --input X.png|X.pb ...) [--seed S] [--no-noise] [--json] [--threads T]
//! [--out results.jsonl [--resume]] [--check-full-width]`: runs the program's instruction
//! stream on plaintext slot vectors (`runtime::program::Simulator`) with the encrypted
//! run's rounding and the CKKS noise model (`--no-noise`: rounding only), next to the
//! exact f64 execution of the same program, and reports per input and in total: top-1 of
//! both, their agreement, the logit error in bits (log2(max(1, max|exact|) / max|sim -
//! exact|), over the inputs that do not wrap around) and values that would wrap around
//! under encryption (counted as wrong).
//!
//! Image k's noise is seeded from (S, k), so a run is reproducible, whatever the thread
//! count, and `--resume` (which skips the images already in `--out`) continues exactly
//! where an interrupted run stopped. `--check-full-width` first runs the first input on
//! every slot of every register as well and requires bit-identical outputs (the
//! liveness restriction changes nothing).

use compiler::members::combine;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use compiler::cifar::{default_dir, CifarTest};
use compiler::e2e::error_bits;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use runtime::program::simulate::image_seed;
use runtime::program::{Mode, Program, SimOptions, Simulator};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::files::INSECURE_FLAG;

#[derive(clap::Args)]
pub struct Args {
    /// The compiled program (.fheprog).
    program: PathBuf,
    /// Simulate the CIFAR-10 test set (from `models/setup.sh --data`).
    #[arg(long, conflicts_with = "input")]
    cifar10_test: bool,
    /// Only the first N test images (after --offset).
    #[arg(long)]
    limit: Option<usize>,
    /// Start at test image K.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Folder with x_test.npy and y_test.npy (default ~/.cache/fhec/cifar10_npy).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PNG images or TensorProto .pb inputs.
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Seed of the noise (image k uses a stream derived from (seed, k)).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rounding only, no noise model.
    #[arg(long)]
    no_noise: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Worker threads (images in parallel).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Append one JSON line per image to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the images already in --out and count them in the totals.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Check the first input at full width (every slot) too: outputs must be bit-identical.
    #[arg(long)]
    check_full_width: bool,
    /// Accept a program built with INSECURE test parameters.
    #[arg(long)]
    insecure_test_params: bool,
}

/// One simulated input.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<u8>,
    exact_top1: usize,
    sim_top1: usize,
    /// log2(max(1, max|exact|) / max|sim - exact|).
    #[serde(deserialize_with = "nan_if_null")]
    bits: f64,
    #[serde(deserialize_with = "nan_if_null")]
    max_abs_error: f64,
    /// Layer where a value would wrap around under encryption.
    #[serde(skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
    #[serde(deserialize_with = "nans_if_null")]
    exact: Vec<f64>,
    #[serde(deserialize_with = "nans_if_null")]
    sim: Vec<f64>,
    seconds: f64,
}

/// JSON writes non-finite numbers (a diverging image's logits) as null: read them back.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nans_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|x| x.unwrap_or(f64::NAN))
        .collect())
}

fn load(a: &Args) -> anyhow::Result<Program> {
    let path = &a.program;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let p = Program::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    if p.params.is_insecure_for_tests() {
        if !a.insecure_test_params {
            bail!(
                "{} uses INSECURE test parameters; refusing without {INSECURE_FLAG}",
                path.display()
            );
        }
        eprintln!(
            "WARNING: {} uses INSECURE test parameters ({INSECURE_FLAG})",
            path.display()
        );
    }
    Ok(p)
}

fn simulate_one(
    sim: &Simulator,
    (classes, members): (usize, usize),
    index: usize,
    label: Option<u8>,
    x: &[f64],
    mode: Mode,
    seed: u64,
) -> anyhow::Result<Record> {
    let t = Instant::now();
    let exact = sim.run(x, Mode::Exact, 0)?.output;
    let s = sim.run(x, mode, image_seed(seed, index as u64))?;
    let (err, bits) = error_bits(&s.output, &exact);
    Ok(Record {
        index,
        label,
        // An ensemble's class: its members' averaged softmax.
        exact_top1: super::top1(&combine(&exact, members, classes), classes),
        sim_top1: super::top1(&combine(&s.output, members, classes), classes),
        bits,
        max_abs_error: err,
        wrapped: s.wrapped,
        exact,
        sim: s.output,
        seconds: t.elapsed().as_secs_f64(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let p = load(&a)?;
    if p.input.shape.first().is_some_and(|&b| b > 1) {
        bail!(
            "{} takes a batch of {} inputs; simulate the program compiled without --batch \
             (the same per-image function)",
            a.program.display(),
            p.input.shape[0]
        );
    }
    let t0 = Instant::now();
    let sim = Simulator::new(&p, &SimOptions::default())
        .with_context(|| format!("preparing {}", a.program.display()))?;
    let prep_s = t0.elapsed().as_secs_f64();
    let mode = if a.no_noise {
        Mode::Rounded
    } else {
        Mode::Noisy
    };
    let classes = p.output.shape.last().copied().unwrap_or(1);
    let members = p.output.members.max(1) as usize;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.max(1))
        .build()?;

    // The inputs: (index, label, tensor) on demand.
    let set = if a.cifar10_test {
        let dir = a.data_dir.clone().unwrap_or_else(default_dir);
        Some(CifarTest::load(&dir)?)
    } else {
        if a.input.is_empty() {
            bail!("give --cifar10-test or --input X.png|X.pb ...");
        }
        None
    };
    let norm = p.input.image.clone();
    let get = |k: usize| -> anyhow::Result<(Option<u8>, Vec<f64>)> {
        match &set {
            Some(s) => {
                let n = norm
                    .as_ref()
                    .context("this program's input is not an image: --cifar10-test needs one")?;
                let x = s.image(k, n).context("image index out of range")?;
                Ok((Some(s.labels[k]), x))
            }
            None => {
                let path = &a.input[k];
                let is_png = path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("png"));
                let t = if is_png {
                    compiler::image::load_for_program(path, &p.input)?
                } else {
                    compiler::onnx::tensor::read_pb(path)
                        .with_context(|| format!("reading {}", path.display()))?
                };
                Ok((None, t.data().to_vec()))
            }
        }
    };
    let indices: Vec<usize> = match &set {
        Some(s) => {
            let end = a.limit.map_or(s.len(), |l| (a.offset + l).min(s.len()));
            (a.offset.min(end)..end).collect()
        }
        None => (0..a.input.len()).collect(),
    };
    if a.check_full_width {
        if let Some(&k) = indices.first() {
            let t = Instant::now();
            let full = Simulator::new(&p, &SimOptions { all_slots: true })?;
            let (_, x) = get(k)?;
            for m in [Mode::Exact, Mode::Rounded] {
                let live = sim.run(&x, m, 1)?;
                let wide = full.run(&x, m, 1)?;
                if live != wide {
                    bail!("full-width check failed ({m:?}): the liveness restriction changed the outputs");
                }
            }
            eprintln!(
                "full-width check: input {k} bit-identical in exact and rounded modes ({:.1} s; {:.1}x the work)",
                t.elapsed().as_secs_f64(),
                full.work() as f64 / sim.work().max(1) as f64
            );
        }
    }

    // Resume: the records already written.
    let mut done: BTreeMap<usize, Record> = BTreeMap::new();
    if let (true, Some(out)) = (a.resume, &a.out) {
        if out.exists() {
            let text = std::fs::read_to_string(out)
                .with_context(|| format!("reading {}", out.display()))?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Record>(line) {
                    Ok(r) => {
                        done.insert(r.index, r);
                    }
                    // A line cut by an interruption: only the last one may be.
                    Err(_) if n + 1 == text.lines().count() => {}
                    Err(e) => bail!("{} line {}: {e}", out.display(), n + 1),
                }
            }
        }
    }
    let todo: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|k| !done.contains_key(k))
        .collect();
    let mut file = match &a.out {
        Some(path) => {
            // Rewrite the file with the complete lines only, then append.
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("writing {}", path.display()))?;
            for r in done.values() {
                writeln!(f, "{}", serde_json::to_string(r)?)?;
            }
            Some(f)
        }
        None => None,
    };
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "simulate {elapsed_precise} [{bar:40}] {pos}/{len} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t_run = Instant::now();
    let chunk = (a.threads.max(1) * 8).max(8);
    for ks in todo.chunks(chunk) {
        let recs: Vec<Record> = pool.install(|| {
            ks.par_iter()
                .map(|&k| {
                    let (label, x) = get(k)?;
                    simulate_one(&sim, (classes, members), k, label, &x, mode, a.seed)
                })
                .collect::<anyhow::Result<_>>()
        })?;
        for r in recs {
            if let Some(f) = file.as_mut() {
                writeln!(f, "{}", serde_json::to_string(&r)?)?;
            }
            done.insert(r.index, r);
        }
        if let Some(f) = file.as_mut() {
            f.flush()?;
        }
        bar.inc(ks.len() as u64);
        let n = done.len().max(1);
        let right = done
            .values()
            .filter(|r| r.label.is_some_and(|l| l as usize == r.sim_top1) && r.wrapped.is_none())
            .count();
        if set.is_some() {
            bar.set_message(format!(
                "sim top-1 {:.2} %",
                100.0 * right as f64 / n as f64
            ));
        }
    }
    bar.finish_and_clear();
    let run_s = t_run.elapsed().as_secs_f64();

    let recs: Vec<&Record> = indices.iter().filter_map(|k| done.get(k)).collect();
    let n = recs.len();
    let wrapped = recs.iter().filter(|r| r.wrapped.is_some()).count();
    let agree = recs
        .iter()
        .filter(|r| r.sim_top1 == r.exact_top1 && r.wrapped.is_none())
        .count();
    let labelled = recs.iter().any(|r| r.label.is_some());
    let sim_right = recs
        .iter()
        .filter(|r| r.label.is_some_and(|l| l as usize == r.sim_top1) && r.wrapped.is_none())
        .count();
    let exact_right = recs
        .iter()
        .filter(|r| r.label.is_some_and(|l| l as usize == r.exact_top1))
        .count();
    // Precision over the images that do not wrap around (those have no meaningful output).
    let bits: Vec<f64> = recs
        .iter()
        .filter(|r| r.wrapped.is_none())
        .map(|r| r.bits)
        .collect();
    let worst = bits.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(bits.clone());
    let per_image = if todo.is_empty() {
        f64::NAN
    } else {
        run_s * a.threads.max(1) as f64 / todo.len() as f64
    };
    let pct = |x: usize| 100.0 * x as f64 / n.max(1) as f64;
    if a.json {
        let mut o = json!({
            "program": a.program.display().to_string(),
            "mode": if a.no_noise { "rounded" } else { "noisy" },
            "seed": a.seed, "images": n,
            "agreement": agree, "agreement_pct": pct(agree),
            "wrapped": wrapped,
            "worst_bits": worst, "median_bits": med,
            "prepare_seconds": prep_s, "run_seconds": run_s,
            "core_seconds_per_image": per_image,
            "log_n": p.params.log_n(), "threads": a.threads,
        });
        if labelled {
            o["sim_top1"] = json!(sim_right);
            o["sim_top1_pct"] = json!(pct(sim_right));
            o["exact_top1"] = json!(exact_right);
            o["exact_top1_pct"] = json!(pct(exact_right));
        }
        if set.is_none() {
            o["outputs"] = json!(recs
                .iter()
                .map(|r| json!({"input": a.input[r.index].display().to_string(),
                    "sim": r.sim, "exact": r.exact, "sim_top1": r.sim_top1,
                    "exact_top1": r.exact_top1, "bits": r.bits, "wrapped": r.wrapped}))
                .collect::<Vec<_>>());
        }
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    if set.is_none() {
        for r in &recs {
            println!("{}:", a.input[r.index].display());
            println!(
                "{:>6} {:>14} {:>14} {:>11}",
                "index", "simulated", "exact", "|diff|"
            );
            for (k, (s, e)) in r.sim.iter().zip(&r.exact).enumerate().take(64) {
                println!("{k:>6} {s:>14.6} {e:>14.6} {:>11.3e}", (s - e).abs());
            }
            println!(
                "top-1: simulated {}, exact {}; {:.1} bits{}",
                r.sim_top1,
                r.exact_top1,
                r.bits,
                r.wrapped
                    .as_ref()
                    .map(|w| format!("; WRAPS AROUND at {w}"))
                    .unwrap_or_default()
            );
        }
    }
    let mode_s = if a.no_noise {
        "rounding only"
    } else {
        "rounding + noise"
    };
    println!("{n} inputs simulated ({mode_s}, seed {}):", a.seed);
    if labelled {
        println!(
            "  top-1 simulated encrypted {:.2} % ({sim_right}/{n}), exact program {:.2} % ({exact_right}/{n})",
            pct(sim_right),
            pct(exact_right)
        );
    }
    println!(
        "  agreement simulated vs exact {:.2} % ({agree}/{n})",
        pct(agree)
    );
    println!(
        "  logit precision: worst {worst:.1} bits, median {med:.1} bits; {wrapped} wrap around"
    );
    println!(
        "  prepare {prep_s:.2} s; run {run_s:.1} s on {} thread(s): {:.1} ms per image per core",
        a.threads,
        per_image * 1e3
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_non_finite_values_read_back() {
        let r = Record {
            index: 7,
            label: Some(3),
            exact_top1: 0,
            sim_top1: 1,
            bits: f64::NAN,
            max_abs_error: f64::INFINITY,
            wrapped: Some("layer".into()),
            exact: vec![1.0, f64::INFINITY],
            sim: vec![f64::NAN, 2.0],
            seconds: 0.5,
        };
        let line = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!((back.index, back.label, back.sim_top1), (7, Some(3), 1));
        assert!(back.bits.is_nan() && back.max_abs_error.is_nan());
        assert_eq!(back.exact[0], 1.0);
        assert!(back.exact[1].is_nan() && back.sim[0].is_nan());
        assert_eq!(back.sim[1], 2.0);
    }
}
