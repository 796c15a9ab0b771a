//! `fhec compile A.onnx B.onnx --ensemble` through the client/server verbs: keygen,
//! encrypt, eval, decrypt. The decrypted members' outputs must be each model's own
//! (against `fhec interpret`, bound in bits), and the printed probabilities the average of
//! their softmaxes.

use std::path::{Path, PathBuf};
use std::process::Command;

use compiler::onnx::builder::{attr_i, attr_ints, ModelBuilder};
use compiler::onnx::tensor::write_pb;
use passes::ir::Tensor;
use serde_json::Value;

fn fhec(args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("run fhec");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// x [1, 3, 4, 4] -> Conv 3x3 (pad 1) to 10 channels -> x*x -> GlobalAveragePool ->
/// Flatten: 10 logits; `m` picks the weights.
fn model(dir: &Path, m: usize) -> PathBuf {
    let w = Tensor::new(
        vec![10, 3, 3, 3],
        (0..270)
            .map(|i| ((i * (7 + 4 * m)) % 23) as f64 / 23.0 - 0.5)
            .collect(),
    )
    .unwrap();
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, 3, 4, 4])
        .init("w", &w)
        .node(
            "Conv",
            &["x", "w"],
            &["c"],
            vec![
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("kernel_shape", &[3, 3]),
            ],
        )
        .node("Mul", &["c", "c"], &["q"], vec![])
        .node("GlobalAveragePool", &["q"], &["g"], vec![])
        .node("Flatten", &["g"], &["y"], vec![attr_i("axis", 1)])
        .output("y");
    let p = dir.join(format!("m{m}.onnx"));
    std::fs::write(&p, b.encode()).unwrap();
    p
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn ensemble_runs_through_the_client_server_verbs() {
    let d = std::env::temp_dir().join(format!("fhec-ens-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (a, b) = (s(&model(&d, 0)), s(&model(&d, 1)));
    let x = Tensor::new(
        vec![1, 3, 4, 4],
        (0..48)
            .map(|i| ((i * 5) % 11) as f64 / 11.0 - 0.4)
            .collect(),
    )
    .unwrap();
    let input = d.join("x.pb");
    write_pb(&input, &x, "x").unwrap();
    let (prog, sk, evk, ct, out) = (
        d.join("e.fheprog"),
        d.join("c.sk"),
        d.join("s.evk"),
        d.join("x.ct"),
        d.join("o.ct"),
    );
    fhec(&["compile", &a, &b, "--ensemble", "-o", &s(&prog)]);
    fhec(&["keygen", &s(&prog), "--secret", &s(&sk), "--eval", &s(&evk)]);
    fhec(&[
        "encrypt",
        &s(&prog),
        "--secret",
        &s(&sk),
        "--input",
        &s(&input),
        "-o",
        &s(&ct),
    ]);
    fhec(&[
        "eval",
        &s(&prog),
        "--eval",
        &s(&evk),
        "--input",
        &s(&ct),
        "-o",
        &s(&out),
    ]);
    let dec = fhec(&[
        "decrypt",
        &s(&prog),
        "--secret",
        &s(&sk),
        "--input",
        &s(&out),
        "--json",
    ]);
    assert_eq!(dec["members"], 2);
    let got = floats(&dec["output"]);
    assert_eq!(got.len(), 20);
    let mut plain = vec![];
    for (m, path) in [&a, &b].into_iter().enumerate() {
        let p = fhec(&["interpret", path, "--input", &s(&input), "--json"]);
        let want = floats(&p["output"]);
        let (err, bits) = compiler::e2e::error_bits(&got[m * 10..(m + 1) * 10], &want);
        // One activation: the 6-sigma noise bound of `lower_e2e` (5.5 bits; measured 8.8-10).
        assert!(bits >= 5.5, "member {m}: error {err:e} ({bits:.1} bits)");
        assert_eq!(dec["member_top1"][m], p["top1"], "member {m}");
        plain.extend(want);
    }
    // Members that disagree, so the averaging is exercised.
    let (_, same) = compiler::e2e::error_bits(&plain[..10], &plain[10..]);
    assert!(same < 4.0, "the two models are too alike");
    let probs = floats(&dec["probabilities"]);
    let want = compiler::members::combine(&plain, 2, 10);
    for (p, w) in probs.iter().zip(&want) {
        assert!((p - w).abs() < 1e-2, "{probs:?} vs {want:?}");
    }
    assert_eq!(dec["top1"], compiler::e2e::top1(&want, 10));
}
