//! `fhec decrypt --flood-bits B` through the binary: flooding changes the low bits of every
//! output value (and differently on each run: fresh CSPRNG noise), stays within 8 of the
//! deviations it states on stderr, and a size that cannot fit is refused.

use std::path::Path;
use std::process::Command;

use compiler::onnx::tensor;
use passes::ir::Tensor;
use runtime::program::Program;

mod support;

const LEN: usize = 64;
const INS: &str = "--insecure-test-params";

fn program() -> Program {
    support::two_tap_program(&[60, 40], &[LEN], false, 0, LEN)
}

fn fhec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("fhec runs")
}

fn ok(args: &[&str]) -> std::process::Output {
    let r = fhec(args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    r
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn values(r: &std::process::Output) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn flooding_moves_low_bits_within_the_stated_bound() {
    let d = std::env::temp_dir().join(format!("fhec-flood-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let prog = d.join("p.fheprog");
    std::fs::write(&prog, program().to_bytes().unwrap()).unwrap();
    let x: Vec<f64> = (0..LEN).map(|j| (j as f64 * 0.3).sin()).collect();
    let input = d.join("x.pb");
    tensor::write_pb(&input, &Tensor::new(vec![LEN], x).unwrap(), "x").unwrap();
    let (sk, evk, ct, out) = (
        d.join("c.sk"),
        d.join("s.evk"),
        d.join("x.ct"),
        d.join("o.ct"),
    );
    ok(&[
        "keygen",
        s(&prog),
        "--secret",
        s(&sk),
        "--eval",
        s(&evk),
        INS,
    ]);
    ok(&[
        "encrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--input",
        s(&input),
        "-o",
        s(&ct),
        INS,
    ]);
    let mut eval = support::eval_args(s(&prog), s(&evk), s(&ct), s(&out));
    eval.push(INS);
    ok(&eval);
    let dec = [
        "decrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--input",
        s(&out),
        "--json",
        INS,
    ];
    let plain = values(&ok(&dec));
    let mut flood_args = dec.to_vec();
    flood_args.extend(["--flood-bits", "16"]);
    let r1 = ok(&flood_args);
    let r2 = ok(&flood_args);
    let err = String::from_utf8_lossy(&r1.stderr);
    let stated: f64 = err
        .split("deviation ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no stated deviation in: {err}"));
    // 2^16 * sqrt(1024) / 2^40 at N = 2^11 and output scale ~2^40.
    let want = 2f64.powi(16) * 32.0 / 2f64.powi(40);
    assert!(
        (stated / want - 1.0).abs() < 0.01,
        "stated {stated}, want ~{want}"
    );
    let (f1, f2) = (values(&r1), values(&r2));
    for ((a, b), c) in plain.iter().zip(&f1).zip(&f2) {
        assert!((b - a).abs() <= 8.0 * stated, "{b} vs {a}: beyond 8 sigma");
        assert!((c - a).abs() <= 8.0 * stated);
    }
    let moved = plain.iter().zip(&f1).filter(|(a, b)| a != b).count();
    assert!(moved >= LEN - 1, "only {moved} of {LEN} values changed");
    assert_ne!(f1, f2, "two floodings drew the same noise");

    let mut too_big = dec.to_vec();
    too_big.extend(["--flood-bits", "60"]);
    let r = fhec(&too_big);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && e.contains("flooding noise"), "{e}");
    assert!(r.stdout.is_empty() && !e.contains("panicked"));
    let _ = std::fs::remove_dir_all(&d);
}
