//! `fhec run MODEL.onnx --input IMG.png | X.pb [--input ...] [--batch N] [--output OUT.pb]
//! [--json]`: compile, then
//! keygen, encrypt, evaluate (with the evaluation keys only) and decrypt in one process;
//! prints the encrypted and the plaintext (f64 interpreter) outputs side by side with the
//! error in bits, the time of every step and the peak RSS.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use compiler::e2e::{error_bits, peak_rss_bytes, run_encrypted};
use compiler::onnx::tensor;
use indicatif::{ProgressBar, ProgressStyle};
use passes::ir::Tensor;
use serde_json::json;

use super::compile::{build, summary, CompileArgs};
use super::files::INSECURE_FLAG;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// A PNG image (for a 3-channel image model) or a TensorProto .pb; repeat it with
    /// `--batch N` to evaluate up to N inputs in one encrypted run.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Write the decrypted output as a TensorProto .pb.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print one JSON object (outputs, error, timings, memory) on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    opts: CompileArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let (c, original) = build(&a.model, &a.opts)?;
    let compile_s = t0.elapsed().as_secs_f64();
    let p = &c.program;
    if p.params.is_insecure_for_tests() {
        eprintln!(
            "WARNING: INSECURE test parameters ({INSECURE_FLAG}); never use them for real data"
        );
    }
    let inputs = compiler::inputs::load(&a.input, &p.input)?;
    // Refuse before encrypting when a value would wrap around; say when activation inputs
    // leave the polynomial's range. The plaintext reference runs per input.
    let mut want = vec![];
    for x in &inputs.items {
        let ranges = compiler::ranges::check(&original, x, &Default::default())?;
        if let Some(m) = ranges.saturation_message() {
            bail!("{m}");
        }
        if let Some(m) = ranges.fit_message() {
            eprintln!("note: {m}");
        }
        let y = passes::interpret::run(&original, std::slice::from_ref(x))
            .context("running the plaintext reference")?;
        want.extend_from_slice(y[0].data());
    }
    let bar = ProgressBar::new(p.instrs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("eval {elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut got, st) = run_encrypted(p, inputs.tensor.data(), |done, _, layer| {
        bar.set_position(done as u64);
        bar.set_message(layer.to_string());
    })?;
    bar.finish_and_clear();
    // The outputs of the given inputs (a batch's zero inputs dropped).
    let out_shape = &p.output.shape;
    let batched = out_shape.len() >= 2 && out_shape[0] > 1;
    if batched && want.len() < got.len() {
        got.truncate(want.len());
    }
    if got.len() != want.len() {
        bail!(
            "the program's output has {} values, the model's {}",
            got.len(),
            want.len()
        );
    }
    let (err, bits) = error_bits(&got, &want);
    let rss = peak_rss_bytes().unwrap_or(0);
    let rows = inputs.given();
    let mut given_shape = out_shape.clone();
    if batched {
        given_shape[0] = rows;
    }
    let tops_enc = compiler::inputs::top1_rows(&got, &given_shape, rows);
    let tops_plain = compiler::inputs::top1_rows(&want, &given_shape, rows);
    let (top_enc, top_plain) = if batched {
        (json!(tops_enc), json!(tops_plain))
    } else {
        (json!(tops_enc[0]), json!(tops_plain[0]))
    };
    if let Some(path) = &a.output {
        let t = Tensor::new(given_shape.clone(), got.clone())?;
        tensor::write_pb(path, &t, "output")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!(
            "{}",
            json!({
                "fhe_output": got, "plain_output": want, "shape": given_shape,
                "inputs": rows, "batch": if batched { out_shape[0] } else { 1 },
                "fhe_top1": top_enc, "plain_top1": top_plain,
                "max_abs_error": err, "precision_bits": bits,
                "eval_seconds": st.eval_s, "total_seconds": t0.elapsed().as_secs_f64(),
                "compile_seconds": compile_s, "keygen_seconds": st.keygen_s,
                "encrypt_seconds": st.encrypt_s, "decrypt_seconds": st.decrypt_s,
                "peak_rss_bytes": rss, "eval_key_bytes": st.eval_key_bytes,
                "rotation_keys": st.rotation_keys,
                "log_n": p.params.log_n(), "primes": p.params.q().len(),
                "layer_seconds": st.layer_s,
            })
        );
        return Ok(());
    }
    eprint!("{}", summary(p)?);
    let mut slow = st.layer_s.clone();
    slow.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("slowest layers under encryption:");
    for (name, s) in slow.iter().take(8) {
        eprintln!("  {name:<40} {s:>8.2} s");
    }
    println!(
        "{:>6} {:>14} {:>14} {:>11}",
        "index", "encrypted", "plaintext", "|diff|"
    );
    for (k, (g, w)) in got.iter().zip(&want).enumerate().take(64) {
        println!("{k:>6} {g:>14.6} {w:>14.6} {:>11.3e}", (g - w).abs());
    }
    if got.len() > 64 {
        println!("   ... ({} values)", got.len());
    }
    println!(
        "max |encrypted - plaintext| = {err:.3e}: {bits:.1} bits of precision relative to max(1, max |plaintext|)"
    );
    println!("top-1: encrypted {top_enc}, plaintext {top_plain}");
    if batched {
        let agree = tops_enc
            .iter()
            .zip(&tops_plain)
            .filter(|(a, b)| a == b)
            .count();
        println!(
            "batch: {rows} inputs in one run of a batch-{} program, top-1 agreement {agree}/{rows}, eval {:.2} s per input",
            out_shape[0],
            st.eval_s / rows as f64
        );
    }
    println!(
        "time: compile {compile_s:.2} s, keygen {:.2} s, encrypt {:.2} s, eval {:.2} s, decrypt {:.3} s; \
         evaluation keys {:.1} MiB ({} rotation keys); peak RSS {:.2} GiB",
        st.keygen_s,
        st.encrypt_s,
        st.eval_s,
        st.decrypt_s,
        st.eval_key_bytes as f64 / (1 << 20) as f64,
        st.rotation_keys,
        rss as f64 / (1u64 << 30) as f64
    );
    Ok(())
}
