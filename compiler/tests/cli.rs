//! The `fhec` binary end to end: `graph` (table and JSON), `interpret` (TensorProto input,
//! PNG input with mean/std metadata, `--json`, `--output`), and its error messages for an
//! unsupported op, a non-ONNX file and a dynamic input shape.

use std::path::{Path, PathBuf};
use std::process::Command;

use compiler::onnx::builder::{attr_i, ModelBuilder};
use compiler::onnx::tensor::{read_pb, write_pb};
use passes::ir::Tensor;

fn fhec(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("run fhec");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!("fhec-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// x [1, 3, 2, 2] -> Conv 1x1 to 10 channels -> GlobalAveragePool -> Flatten: 10 logits.
fn small_model(dir: &Path) -> PathBuf {
    let w = Tensor::new(
        vec![10, 3, 1, 1],
        (0..30).map(|i| (i as f64 - 15.0) / 8.0).collect(),
    )
    .unwrap();
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, 3, 2, 2])
        .init("w", &w)
        .node("Conv", &["x", "w"], &["c"], vec![])
        .node("GlobalAveragePool", &["c"], &["g"], vec![])
        .node("Flatten", &["g"], &["y"], vec![attr_i("axis", 1)])
        .output("y")
        .meta("mean", "0.5,0.5,0.5")
        .meta("std", "0.25,0.25,0.25");
    let p = dir.join("small.onnx");
    std::fs::write(&p, b.encode()).unwrap();
    p
}

#[test]
fn graph_and_interpret() {
    let d = tmp();
    let m = small_model(&d);
    let ms = m.to_str().unwrap();
    let (ok, out, err) = fhec(&["graph", ms]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Conv")
            && out.contains("c_node")
            && out.contains("[1, 10, 1, 1]")
            && out.contains("30"),
        "{out}"
    );
    let (ok, out, _) = fhec(&["graph", ms, "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nodes"][1]["op"], "Conv");
    assert_eq!(v["nodes"][1]["params"], 30);

    // x = 1 everywhere: logit k = sum_c w[k, c].
    let x = Tensor::full(vec![1, 3, 2, 2], 1.0);
    let xp = d.join("x.pb");
    write_pb(&xp, &x, "x").unwrap();
    let op = d.join("out.pb");
    let (ok, out, err) = fhec(&[
        "interpret",
        ms,
        "--input",
        xp.to_str().unwrap(),
        "--json",
        "--output",
        op.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 3);
    assert_eq!(v["shape"], serde_json::json!([1, 10]));
    assert_eq!(v["top1"], 9);
    let logits: Vec<f64> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!((logits[0] - (-15.0 - 14.0 - 13.0) / 8.0).abs() < 1e-12);
    assert_eq!(read_pb(&op).unwrap().shape(), &[1, 10]);

    // A 2x2 RGB PNG, white: (1 - 0.5) / 0.25 = 2 per pixel, so logits double.
    let png = d.join("white.png");
    {
        let f = std::fs::File::create(&png).unwrap();
        let mut e = png::Encoder::new(std::io::BufWriter::new(f), 2, 2);
        e.set_color(png::ColorType::Rgb);
        e.set_depth(png::BitDepth::Eight);
        e.write_header()
            .unwrap()
            .write_image_data(&[255; 12])
            .unwrap();
    }
    let (ok, out, err) = fhec(&["interpret", ms, "--input", png.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("top-1: 9 (truck)"), "{out}");
    assert!(out.contains("-10.500000"), "{out}");
}

#[test]
fn errors_are_reported_not_panicked() {
    let d = tmp();
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, 4])
        .node("LSTM", &["x"], &["y"], vec![])
        .output("y");
    let p = d.join("lstm.onnx");
    std::fs::write(&p, b.encode()).unwrap();
    let (ok, _, err) = fhec(&["graph", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("unsupported ONNX op 'LSTM' (node 'y_node')") && err.contains("Conv"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let p = d.join("junk.onnx");
    std::fs::write(&p, [0xffu8; 64]).unwrap();
    let (ok, _, err) = fhec(&["graph", p.to_str().unwrap()]);
    assert!(!ok && err.contains("is not an ONNX model"), "{err}");

    let mut b = ModelBuilder::new(13);
    b.input_dims("x", &[None, Some(3), Some(32), Some(32)])
        .node("Relu", &["x"], &["y"], vec![])
        .output("y");
    let p = d.join("dyn.onnx");
    std::fs::write(&p, b.encode()).unwrap();
    let (ok, _, err) = fhec(&["graph", p.to_str().unwrap()]);
    assert!(!ok && err.contains("--input-shape 1,3,32,32"), "{err}");
    let (ok, out, err) = fhec(&["graph", p.to_str().unwrap(), "--input-shape", "2,3,32,32"]);
    assert!(ok && out.contains("[2, 3, 32, 32]"), "{err}");
}
