//! End-to-end benchmark: one model compiled once (128-bit parameters chosen by the cost
//! model), keys made once, then every committed CIFAR-10 test image encrypted, evaluated
//! and decrypted, each checked against the f64 interpreter. One JSON line per image, then
//! a summary line (top-1 agreement, worst logit error in bits, seconds per image, key
//! sizes, peak RSS).
//!
//! `cargo run --release -p compiler --bin e2e-bench -- [MODEL.onnx] [--images N]
//! [--cluster slice:K] [--batch N|max] [--layout reference|packed|auto] [--member OTHER.onnx ...]`
//! With `--member` (repeatable), MODEL and the others run as one ensemble program: the
//! error is over every member's logits, top-1 that of the averaged softmaxes.
//! `FHEC_PROFILE=1` prints the evaluation seconds per instruction kind to stderr.
//! With `--batch`, the images go through in groups of the batch size, one encrypted run
//! per group; per-image seconds are the group's divided by its size.
//! (default `models/onnx/resnet20_quad.onnx`, all 20 images of `tests/data/cifar10/`).

use std::path::{Path, PathBuf};

use compiler::e2e::{compile_ensemble, error_bits, peak_rss_bytes, top1, CompileOptions, Session};
use compiler::lower::reference::Reference;
use compiler::onnx::{import_path, ImportOptions};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    runtime::sys::tune_allocator();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut model = root.join("models/onnx/resnet20_quad.onnx");
    let mut limit = usize::MAX;
    let mut cluster = None;
    let mut batch = compiler::lower::BatchSize::One;
    let mut others: Vec<PathBuf> = vec![];
    let mut layout = compiler::e2e::LayoutChoice::Reference;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--cluster" {
            let v = args.next().unwrap_or_default();
            cluster = Some(v.parse().map_err(|e: String| anyhow::anyhow!(e))?);
        } else if a == "--batch" {
            let v = args.next().unwrap_or_default();
            batch = v.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        } else if a == "--layout" {
            let v = args.next().unwrap_or_default();
            layout = v.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        } else if a == "--member" {
            others.push(PathBuf::from(args.next().unwrap_or_default()));
        } else if a == "--images" {
            limit = args.next().and_then(|v| v.parse().ok()).unwrap_or(limit);
        } else {
            model = PathBuf::from(a);
        }
    }
    let imp = import_path(&model, &ImportOptions::default())?;
    let image = compiler::image::normalization(&imp.metadata, &imp.graph)
        .ok_or_else(|| anyhow::anyhow!("{} does not take a 3-channel image", model.display()))?;
    let mut originals = vec![imp.graph.clone()];
    for o in &others {
        originals.push(import_path(o, &ImportOptions::default())?.graph);
    }
    let t = std::time::Instant::now();
    let opts = CompileOptions {
        image: Some(image.clone()),
        cluster,
        batch,
        ..Default::default()
    };
    let c = if others.is_empty() {
        let (c, name, costs) = compiler::e2e::compile_with(imp.graph, &opts, layout, |_, _, _| {})?;
        eprintln!("layout {name}; cost model {costs:?}");
        c
    } else {
        compile_ensemble(originals.clone(), &opts, &Reference, |_, _, _, _| {})?
    };
    let compile_s = t.elapsed().as_secs_f64();
    let p = &c.program;
    let session = Session::new(p)?;
    let profile = std::env::var_os("FHEC_PROFILE").is_some();
    let mut by_kind: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/data/cifar10"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    pngs.sort();
    pngs.truncate(limit);
    let (mut agree, mut worst_bits, mut worst_err, mut eval_total) = (0, f64::INFINITY, 0f64, 0.0);
    let per_run = p.input.shape[0].max(1);
    let classes = p.output.shape.last().copied().unwrap_or(1);
    let members = p.output.members.max(1) as usize;
    for group in pngs.chunks(per_run) {
        let mut named = vec![];
        let mut wants = vec![];
        for png in group {
            let x = compiler::image::load_for_program(png, &p.input)?;
            let mut want = vec![];
            for g in &originals {
                want.extend_from_slice(
                    passes::interpret::run(g, std::slice::from_ref(&x))?[0].data(),
                );
            }
            wants.push(want);
            named.push((png.display().to_string(), x));
        }
        let inputs = compiler::inputs::stack(named, &p.input.shape)?;
        // FHEC_PROFILE=1: seconds per instruction kind (to stderr at the end).
        let mut last = std::time::Instant::now();
        let (got_all, st) = session.run(p, inputs.tensor.data(), |done, _, _| {
            if profile {
                let dt = last.elapsed().as_secs_f64();
                last = std::time::Instant::now();
                if let Some(i) = p.instrs.get(done.saturating_sub(1)) {
                    *by_kind.entry(i.name()).or_insert(0.0) += dt;
                }
            }
        })?;
        eval_total += st.eval_s;
        for (k, (png, want)) in group.iter().zip(&wants).enumerate() {
            let w = classes * members;
            let got = &got_all[k * w..(k + 1) * w];
            let (err, bits) = error_bits(got, want);
            let (got, want) = (
                compiler::members::combine(got, members, classes),
                compiler::members::combine(want, members, classes),
            );
            let same = top1(&got, got.len()) == top1(&want, want.len());
            agree += usize::from(same);
            worst_bits = worst_bits.min(bits);
            worst_err = worst_err.max(err);
            println!(
                "{}",
                json!({
                    "image": png.file_name().unwrap().to_string_lossy(),
                    "fhe_top1": top1(&got, got.len()), "plain_top1": top1(&want, want.len()), "agree": same,
                    "max_abs_error": err, "precision_bits": bits,
                    "batch": per_run, "group_size": group.len(),
                    "encrypt_seconds": st.encrypt_s / group.len() as f64,
                    "eval_seconds": st.eval_s / group.len() as f64,
                    "group_eval_seconds": st.eval_s,
                    "decrypt_seconds": st.decrypt_s / group.len() as f64,
                })
            );
        }
    }
    let n = pngs.len().max(1);
    if profile {
        eprintln!("profile (seconds per instruction kind, all images): {by_kind:?}");
    }
    println!(
        "{}",
        json!({
            "summary": model.display().to_string(), "images": pngs.len(),
            "members": members, "top1_agreement": agree, "worst_precision_bits": worst_bits,
            "worst_abs_error": worst_err, "eval_seconds_per_image": eval_total / n as f64, "batch": per_run,
            "compile_seconds": compile_s, "keygen_seconds": session.keygen_s,
            "eval_key_bytes": session.eval_key_bytes, "peak_rss_bytes": peak_rss_bytes(),
            "log_n": p.params.log_n(), "primes": p.params.q().len(),
            "log_qp": p.params.log_qp(), "security_bits": p.params.security_bits(),
        })
    );
    Ok(())
}
