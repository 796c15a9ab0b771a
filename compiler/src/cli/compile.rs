//! `fhec compile MODEL.onnx -o MODEL.fheprog [--log-n N] [--precision-bits B]
//! [--layout auto|reference|packed] [--insecure-test-params]`: import, rewrite passes, level plan,
//! parameter selection and lowering; writes the checksummed program and prints a summary
//! (per layer: instructions, rotations, masked taps; totals: keys and sizes).
//! `fhec compile A.onnx B.onnx ... --ensemble -o E.fheprog`: the models (a power of two,
//! one architecture) as one ensemble program (`lower::ensemble`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use compiler::e2e::{compile_with, CompileOptions, LayoutChoice};
use compiler::lower::reference::Reference;
use compiler::onnx::{import_path, ImportOptions};
use indicatif::{ProgressBar, ProgressStyle};
use passes::select_params::ParamRequest;
use runtime::program::{Instr, KeyRequirements, Program};

use super::files::write_atomic;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model (several with --ensemble).
    #[arg(required = true, num_args = 1..)]
    pub models: Vec<PathBuf>,
    /// Compile the models as one ensemble: member m in slot periods m, m + M, ...; the
    /// client averages the members' softmaxes.
    #[arg(long)]
    pub ensemble: bool,
    /// The program to write.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub opts: CompileArgs,
}

/// Options shared by `compile` and `run`.
#[derive(clap::Args, Clone)]
pub struct CompileArgs {
    /// Force the ring degree N = 2^LOG_N.
    #[arg(long)]
    pub log_n: Option<u32>,
    /// Force the number of key-switching digits (default: the cost model's choice).
    #[arg(long)]
    pub dnum: Option<u32>,
    /// Bits of output precision wanted (sets the smallest Delta).
    #[arg(long, default_value_t = 12)]
    pub precision_bits: u32,
    /// Ciphertext layout: `reference` (one channel per ciphertext), `packed` (a whole
    /// tensor per ciphertext, stride-1 convolutions only so far) or `auto` (the one the
    /// cost model finds cheaper among those that lower).
    #[arg(long, default_value = "auto")]
    pub layout: compiler::e2e::LayoutChoice,
    /// Build INSECURE test parameters (no 128-bit check; every verb refuses the program
    /// unless given this flag too).
    #[arg(long)]
    pub insecure_test_params: bool,
    /// Cluster the conv weights after the rewrite passes: slice:K (per layer per kernel
    /// column) or full:K (one codebook), K in 2..=1024.
    #[arg(long)]
    pub cluster: Option<passes::cluster::ClusterSpec>,
    /// Inputs evaluated per run (batch mode): N, or `max` for as many as the slots hold.
    /// Each input gets its own slot period; the run costs the same as for one input.
    #[arg(long, default_value = "1")]
    pub batch: compiler::lower::BatchSize,
    /// Fixed shape of the graph input, e.g. 1,3,32,32.
    #[arg(long = "input-shape", value_parser = super::parse_shape)]
    pub input_shape: Option<Vec<usize>>,
}

impl CompileArgs {
    /// The import options these flags ask for.
    fn import_options(&self) -> anyhow::Result<ImportOptions> {
        Ok(ImportOptions {
            input_shapes: vec![self.input_shape.clone()],
            ..Default::default()
        })
    }

    /// The compile options these flags ask for, with the model's input normalisation.
    fn compile_options(
        &self,
        image: Option<runtime::program::ImageNormalization>,
    ) -> CompileOptions {
        CompileOptions {
            request: ParamRequest {
                precision_bits: self.precision_bits,
                force_log_n: self.log_n,
                force_dnum: self.dnum,
                ..Default::default()
            },
            insecure_test_params: self.insecure_test_params,
            image,
            cluster: self.cluster,
            batch: self.batch,
        }
    }
}

/// Imports and compiles `model` with a progress bar.
pub fn build(
    model: &std::path::Path,
    a: &CompileArgs,
) -> anyhow::Result<(compiler::e2e::Compiled, passes::ir::Graph)> {
    let opts = a.import_options()?;
    let imp =
        import_path(model, &opts).with_context(|| format!("importing {}", model.display()))?;
    let image = compiler::image::normalization(&imp.metadata, &imp.graph);
    let copts = a.compile_options(image);
    let bar = ProgressBar::new(imp.graph.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("lowering [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let original = imp.graph.clone();
    let (c, layout, costs) = compile_with(imp.graph, &copts, a.layout, |done, total, layer| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(layer.to_string());
    })
    .with_context(|| format!("compiling {}", model.display()))?;
    bar.finish_and_clear();
    let est: Vec<String> = costs
        .iter()
        .map(|(n, e)| format!("{n} {:.3e} NTTs, {} key switches", e.ntts, e.key_switches))
        .collect();
    eprintln!("layout: {layout} (cost model: {})", est.join("; "));
    Ok((c, original))
}

/// Imports and compiles `models` as one ensemble program, with a progress bar.
pub fn build_ensemble(
    models: &[PathBuf],
    a: &CompileArgs,
) -> anyhow::Result<compiler::e2e::Compiled> {
    if a.layout == LayoutChoice::Packed {
        anyhow::bail!("ensembles are lowered in the reference layout (--layout reference or auto)");
    }
    let opts = a.import_options()?;
    let mut graphs = vec![];
    let mut image = None;
    for (m, model) in models.iter().enumerate() {
        let imp =
            import_path(model, &opts).with_context(|| format!("importing {}", model.display()))?;
        let norm = compiler::image::normalization(&imp.metadata, &imp.graph);
        if m == 0 {
            image = norm;
        } else if norm != image {
            anyhow::bail!(
                "{} normalises its input image differently from {}: ensemble members share one input",
                model.display(),
                models[0].display()
            );
        }
        graphs.push(imp.graph);
    }
    let copts = a.compile_options(image);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("lowering member {prefix} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let c = compiler::e2e::compile_ensemble(graphs, &copts, &Reference, |m, done, total, layer| {
        bar.set_prefix(m.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(layer.to_string());
    })
    .context("compiling the ensemble")?;
    bar.finish_and_clear();
    Ok(c)
}

/// The summary table of a program: per layer instruction counts, rotations, masked taps.
pub fn summary(p: &Program) -> anyhow::Result<String> {
    let mut rows: BTreeMap<usize, (String, usize, usize, usize, usize)> = BTreeMap::new();
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for (k, (ins, origin)) in p.instrs.iter().zip(&p.origins).enumerate() {
        if matches!(ins, Instr::Free { .. }) {
            continue;
        }
        let idx = *first.entry(origin.clone()).or_insert(k);
        let row = rows.entry(idx).or_insert((origin.clone(), 0, 0, 0, 0));
        row.1 += 1;
        match ins {
            Instr::Linear(l) if l.rotation_sum().is_some() => {
                row.2 += l.steps.iter().filter(|&&s| s != 0).count();
            }
            Instr::Linear(l) => {
                let distinct: std::collections::BTreeSet<i64> =
                    l.steps.iter().copied().filter(|&s| s != 0).collect();
                row.2 += distinct.len() * l.srcs.len();
                row.3 +=
                    l.masks.iter().filter(|m| m.is_some()).count() * l.srcs.len() * l.dsts.len();
                row.4 += l.weights.len();
            }
            Instr::Rotate { .. } => row.2 += 1,
            Instr::Dot(d) => row.4 += d.srcs.len(),
            Instr::DotMasked(d) => row.4 += d.srcs.len(),
            _ => {}
        }
    }
    let mut out = format!(
        "{:<40} {:>6} {:>9} {:>12} {:>10}\n",
        "layer", "instrs", "rotations", "masked taps", "products"
    );
    let (mut ti, mut tr) = (0, 0);
    for (name, n, r, m, w) in rows.values() {
        out += &format!("{name:<40} {n:>6} {r:>9} {m:>12} {w:>10}\n");
        ti += n;
        tr += r;
    }
    let req = KeyRequirements::of(p)?;
    let (q, sp) = p.params.bit_sizes();
    if let Some(&b) = p
        .input
        .shape
        .first()
        .filter(|&&b| b > 1 && p.input.shape.len() > 1)
    {
        let one = (p.input.shape.iter().product::<usize>() / b) as u32;
        let slot_of = |idx: u32| p.input.placement.iter().find(|e| e.0 == idx).map(|e| e.2);
        let offset = match (slot_of(0), slot_of(one)) {
            (Some(a), Some(c)) => format!("slot offset b x {}", c.saturating_sub(a)),
            _ => "its own slot period".into(),
        };
        out += &format!("\nbatch mode: {b} inputs per run, input b at {offset}\n");
    }
    if p.output.members > 1 {
        out += &format!(
            "\nensemble: {} members, member m in slot periods m, m + {}, ...; the client averages their softmaxes\n",
            p.output.members, p.output.members
        );
    }
    out += &format!(
        "\n{ti} instructions, {tr} rotations, {} registers; {} rotation keys, relinearisation key at level {}\n",
        p.registers,
        req.rotations.len(),
        req.relin_level.map_or("-".into(), |l| l.to_string())
    );
    out += &format!(
        "parameters: N = 2^{}, Q primes {q:?}, special {sp:?}, dnum {}, log QP {:.0}, {}\n",
        p.params.log_n(),
        p.params.dnum(),
        p.params.log_qp(),
        match p.params.security_bits() {
            Some(b) => format!("{b}-bit secure"),
            None => "INSECURE (test parameters)".into(),
        }
    );
    Ok(out)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let c = if a.ensemble {
        build_ensemble(&a.models, &a.opts)?
    } else if let [model] = a.models.as_slice() {
        build(model, &a.opts)?.0
    } else {
        anyhow::bail!(
            "{} models given: compile one model, or several with --ensemble",
            a.models.len()
        );
    };
    let bytes = c.program.to_bytes()?;
    write_atomic(&a.output, &bytes, false)?;
    eprint!("{}", summary(&c.program)?);
    eprintln!(
        "wrote {} ({:.1} MiB)",
        a.output.display(),
        bytes.len() as f64 / (1 << 20) as f64
    );
    Ok(())
}
