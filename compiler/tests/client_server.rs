//! The client/server verbs end to end on a small hand-built program (a two-tap linear
//! layer and a square): keygen -> encrypt -> eval -> decrypt through the `fhec` binary,
//! checked against f64, plus the refusals: insecure parameters without the opt-in, a
//! secret key given as evaluation keys, keys of another key set, a truncated program.

use compiler::onnx::tensor;
use passes::ir::Tensor;
use runtime::program::Program;

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;

const LEN: usize = 8;

fn program() -> Program {
    support::two_tap_program(&[60, 40, 40], &[LEN], false, 1, LEN)
}

fn fhec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("fhec runs")
}

/// Runs fhec expecting failure with `needle` in its error output.
fn fails_with(args: &[&str], needle: &str) {
    let r = fhec(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains(needle),
        "expected '{needle}' in: {err}"
    );
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("fhec-client-server-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn keygen_encrypt_eval_decrypt_matches_f64() {
    let d = tmpdir();
    let prog = d.join("p.fheprog");
    std::fs::write(&prog, program().to_bytes().unwrap()).unwrap();
    let x: Vec<f64> = (0..LEN).map(|j| (j as f64 * 0.7).cos()).collect();
    let input = d.join("x.pb");
    tensor::write_pb(&input, &Tensor::new(vec![LEN], x.clone()).unwrap(), "x").unwrap();
    let (sk, evk, ct, out) = (
        d.join("c.sk"),
        d.join("s.evk"),
        d.join("x.ct"),
        d.join("o.ct"),
    );
    let ins = "--insecure-test-params";

    // Insecure parameters are refused without the opt-in.
    fails_with(
        &["keygen", s(&prog), "--secret", s(&sk), "--eval", s(&evk)],
        "INSECURE",
    );

    let ok = |r: std::process::Output| {
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        r
    };
    ok(fhec(&[
        "keygen",
        s(&prog),
        "--secret",
        s(&sk),
        "--eval",
        s(&evk),
        ins,
    ]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sk).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret key readable by others: {mode:o}");
    }
    ok(fhec(&[
        "encrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--input",
        s(&input),
        "-o",
        s(&ct),
        ins,
    ]));
    let mut eval = support::eval_args(s(&prog), s(&evk), s(&ct), s(&out));
    eval.push(ins);
    ok(fhec(&eval));
    let mut decrypt = support::decrypt_json_args(s(&prog), s(&sk), s(&out));
    decrypt.push(ins);
    let r = ok(fhec(&decrypt));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let got: Vec<f64> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for j in 0..LEN {
        let next = if j + 1 < LEN { x[j + 1] } else { 0.0 };
        let want = (0.5 * x[j] - 0.25 * next).powi(2);
        assert!(
            (got[j] - want).abs() < 1e-6,
            "slot {j}: {} vs {want}",
            got[j]
        );
    }
    assert_eq!(v["shape"], serde_json::json!([LEN]));

    // The server refuses a secret key where evaluation keys belong.
    let eval_with = |keys: &Path| -> Vec<String> {
        [
            "eval",
            s(&prog),
            "--eval",
            s(keys),
            "--input",
            s(&ct),
            "-o",
            s(&out),
            ins,
        ]
        .map(String::from)
        .to_vec()
    };
    fails_with(&refs(&eval_with(&sk)), "secret key");
    // Keys of another key set.
    let (sk2, evk2) = (d.join("c2.sk"), d.join("s2.evk"));
    ok(fhec(&[
        "keygen",
        s(&prog),
        "--secret",
        s(&sk2),
        "--eval",
        s(&evk2),
        ins,
    ]));
    fails_with(&refs(&eval_with(&evk2)), "key set");
    // An image for a program whose input is not an image.
    let png = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/cifar10/cifar10_00_3.png"
    );
    let enc_image = [
        "encrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--image",
        png,
        "-o",
        s(&ct),
        ins,
    ];
    fails_with(&enc_image, "not an image");
    // A truncated program.
    let bytes = std::fs::read(&prog).unwrap();
    std::fs::write(&prog, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&refs(&eval_with(&evk)), "truncated");
    let _ = std::fs::remove_dir_all(&d);
}

/// From ONNX: `fhec compile` (128-bit parameters), then the client and server verbs, and
/// `fhec run --json`, all against the f64 interpreter's output on the same input.
#[test]
fn compile_then_client_server_matches_interpreter() {
    let d = std::env::temp_dir().join(format!("fhec-compiled-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");
    let model = format!("{data}tiny_gemm_head.onnx");
    let input = format!("{data}tiny_gemm_head_input.pb");
    let prog = d.join("m.fheprog");
    let (sk, evk, ct, out) = (
        d.join("c.sk"),
        d.join("s.evk"),
        d.join("x.ct"),
        d.join("o.ct"),
    );
    let ok = |r: std::process::Output| {
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        r
    };
    ok(fhec(&["compile", &model, "-o", s(&prog)]));
    ok(fhec(&[
        "keygen",
        s(&prog),
        "--secret",
        s(&sk),
        "--eval",
        s(&evk),
    ]));
    ok(fhec(&[
        "encrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--input",
        &input,
        "-o",
        s(&ct),
    ]));
    ok(fhec(&[
        "eval",
        s(&prog),
        "--eval",
        s(&evk),
        "--input",
        s(&ct),
        "-o",
        s(&out),
    ]));
    let dec = ok(fhec(&[
        "decrypt",
        s(&prog),
        "--secret",
        s(&sk),
        "--input",
        s(&out),
        "--json",
    ]));
    let plain = ok(fhec(&["interpret", &model, "--input", &input, "--json"]));
    let a: serde_json::Value = serde_json::from_slice(&dec.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(a["shape"], b["shape"]);
    assert_eq!(a["top1"], b["top1"]);
    let vals = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (x, y) = (vals(&a["output"]), vals(&b["output"]));
    let (err, bits) = compiler::e2e::error_bits(&x, &y);
    assert!(
        bits >= 10.0,
        "decrypted vs interpreted: error {err:e} ({bits:.1} bits)"
    );

    let run = ok(fhec(&["run", &model, "--input", &input, "--json"]));
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(r["precision_bits"].as_f64().unwrap() >= 10.0, "{r}");
    assert_eq!(r["fhe_top1"], r["plain_top1"]);
    assert_eq!(vals(&r["plain_output"]).len(), y.len());
    for k in [
        "eval_seconds",
        "total_seconds",
        "peak_rss_bytes",
        "eval_key_bytes",
        "max_abs_error",
    ] {
        assert!(r[k].as_f64().is_some(), "missing {k} in {r}");
    }
    // An image of the wrong size for this 8x8 model.
    let png = format!("{data}cifar10/cifar10_00_3.png");
    fails_with(
        &[
            "encrypt",
            s(&prog),
            "--secret",
            s(&sk),
            "--image",
            &png,
            "-o",
            s(&ct),
        ],
        "32x32",
    );
    // A program of another format version (checked before the checksum).
    let mut bytes = std::fs::read(&prog).unwrap();
    bytes[5] = 99;
    let other = d.join("v99.fheprog");
    std::fs::write(&other, &bytes).unwrap();
    fails_with(
        &[
            "eval",
            s(&other),
            "--eval",
            s(&evk),
            "--input",
            s(&ct),
            "-o",
            s(&out),
        ],
        "version 99",
    );
    // A compiled program with 128-bit parameters needs no opt-in, and the server still
    // refuses the client's secret key.
    fails_with(
        &[
            "eval",
            s(&prog),
            "--eval",
            s(&sk),
            "--input",
            s(&ct),
            "-o",
            s(&out),
        ],
        "secret key",
    );
    let _ = std::fs::remove_dir_all(&d);
}
