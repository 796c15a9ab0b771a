//! Batch mode through the `fhec` verbs: `compile --batch 4`, then keygen, encrypt of two
//! inputs (the other two batch entries are zero), eval, decrypt: the first two output rows
//! match the interpreter on each input, and a third input too many is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use compiler::onnx::{import_path, tensor, ImportOptions};
use passes::ir::Tensor;

mod support;

fn fhec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("fhec runs")
}

fn ok(args: &[&str]) -> String {
    let r = fhec(args);
    assert!(
        r.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

#[test]
fn batch_of_four_with_two_inputs() {
    let d = std::env::temp_dir().join(format!("fhec-batch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let model = data("tiny_conv.onnx");
    let x0 = tensor::read_pb(&data("tiny_conv_input.pb")).unwrap();
    let x1 = Tensor::new(
        x0.shape().to_vec(),
        x0.data().iter().rev().map(|v| -0.5 * v).collect(),
    )
    .unwrap();
    let (p0, p1) = (d.join("x0.pb"), d.join("x1.pb"));
    tensor::write_pb(&p0, &x0, "x").unwrap();
    tensor::write_pb(&p1, &x1, "x").unwrap();
    let prog = d.join("b.fheprog");
    let summary = fhec(&["compile", s(&model), "-o", s(&prog), "--batch", "4"]);
    assert!(summary.status.success());
    let err = String::from_utf8_lossy(&summary.stderr).to_string()
        + &String::from_utf8_lossy(&summary.stdout);
    assert!(err.contains("batch mode: 4 inputs per run"), "{err}");
    let (sk, evk, ct, out) = (
        d.join("c.sk"),
        d.join("s.evk"),
        d.join("x.ct"),
        d.join("o.ct"),
    );
    ok(&["keygen", s(&prog), "--secret", s(&sk), "--eval", s(&evk)]);
    ok(&[
        "encrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--input",
        s(&p0),
        "--input",
        s(&p1),
        "-o",
        s(&ct),
    ]);
    ok(&support::eval_args(s(&prog), s(&evk), s(&ct), s(&out)));
    let json = ok(&support::decrypt_json_args(s(&prog), s(&sk), s(&out)));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
    assert_eq!(shape[0], 4);
    assert_eq!(v["top1"].as_array().map(|a| a.len()), Some(4));
    let got: Vec<f64> = serde_json::from_value(v["output"].clone()).unwrap();
    let per = got.len() / 4;
    let g = import_path(&model, &ImportOptions::default())
        .unwrap()
        .graph;
    for (k, x) in [&x0, &x1].into_iter().enumerate() {
        let want = passes::interpret::run(&g, std::slice::from_ref(x)).unwrap();
        let want = want[0].data();
        let range = want.iter().fold(1f64, |m, v| m.max(v.abs()));
        let err = got[k * per..(k + 1) * per]
            .iter()
            .zip(want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-3 * range, "input {k}: error {err:.3e}");
    }
    // A fifth input does not fit a batch of four.
    let five: Vec<&str> = ["encrypt", s(&prog), "--secret", s(&sk)]
        .into_iter()
        .chain((0..5).flat_map(|_| ["--input", s(&p0)]))
        .chain(["-o", s(&ct)])
        .collect();
    let r = fhec(&five);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && e.contains("5 inputs given") && e.contains("at most 4"),
        "{e}"
    );
}
