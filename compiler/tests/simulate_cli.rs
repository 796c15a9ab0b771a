//! `fhec simulate` end to end on a hand-built image program and a fake CIFAR-10 test set
//! written as `.npy` files: totals, a resumed run giving the records of an uninterrupted
//! one, the insecure opt-in, and the error naming the setup step when the data is missing.

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::ckks::Params;

fn fhec(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A program on a (1, 3, 32, 32) image (two taps, one square) and 6 fake test images.
fn setup(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("fhec-sim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut p = support::two_tap_program(&[60, 40, 40], &[1, 3, 32, 32], true, 1, 10);
    p.params = Params::insecure_for_tests(13, &[60, 40, 40], &[60], 3).unwrap();
    let prog = dir.join("p.fheprog");
    std::fs::write(&prog, p.to_bytes().unwrap()).unwrap();
    let pixels: Vec<u8> = (0..6 * 32 * 32 * 3).map(|k| (k * 7 % 251) as u8).collect();
    std::fs::write(
        dir.join("x_test.npy"),
        compiler::cifar::npy_bytes("|u1", "(6, 32, 32, 3)", &pixels),
    )
    .unwrap();
    let labels: Vec<u8> = [3i64, 1, 4, 1, 5, 9]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(
        dir.join("y_test.npy"),
        compiler::cifar::npy_bytes("<i8", "(6,)", &labels),
    )
    .unwrap();
    (dir, prog)
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

#[test]
fn cifar_run_resumes_to_the_same_records() {
    let (dir, prog) = setup("resume");
    let (d, p) = (dir.to_str().unwrap(), prog.to_str().unwrap());
    let base = [
        "simulate",
        p,
        "--cifar10-test",
        "--data-dir",
        d,
        "--insecure-test-params",
        "--json",
    ];
    let full = dir.join("full.jsonl");
    let mut args = base.to_vec();
    args.extend(["--out", full.to_str().unwrap()]);
    let (ok, out, err) = fhec(&args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 6);
    assert_eq!(v["agreement"], 6);
    assert!(v["median_bits"].as_f64().unwrap() > 10.0, "{v}");
    assert!(v["sim_top1"].as_u64().unwrap() <= 6);

    // Interrupted after 2 images (and a cut line), then resumed.
    let part = dir.join("part.jsonl");
    let mut a2 = base.to_vec();
    a2.extend(["--out", part.to_str().unwrap(), "--limit", "2"]);
    assert!(fhec(&a2).0);
    let mut text = std::fs::read_to_string(&part).unwrap();
    text.push_str("{\"index\": 2, \"lab");
    std::fs::write(&part, text).unwrap();
    let mut a3 = base.to_vec();
    a3.extend(["--out", part.to_str().unwrap(), "--resume"]);
    let (ok, out, err) = fhec(&a3);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 6);
    assert_eq!(records(&part), records(&full));
}

#[test]
fn refusals() {
    let (dir, prog) = setup("refuse");
    let p = prog.to_str().unwrap();
    let d = dir.to_str().unwrap();
    let (ok, _, err) = fhec(&["simulate", p, "--cifar10-test", "--data-dir", d]);
    assert!(!ok && err.contains("--insecure-test-params"), "{err}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = fhec(&[
        "simulate",
        p,
        "--cifar10-test",
        "--insecure-test-params",
        "--data-dir",
        empty.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("models/setup.sh --data"), "{err}");
    let (ok, _, err) = fhec(&["simulate", p, "--insecure-test-params"]);
    assert!(!ok && err.contains("--cifar10-test"), "{err}");
}
