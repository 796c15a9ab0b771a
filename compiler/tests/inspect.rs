//! `fhec inspect`: the JSON object's fields and the readable table, on a committed model.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fhec(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn json_has_the_documented_fields() {
    let (ok, out, err) = fhec(&[
        "inspect",
        "models/onnx/resnet20_quad_random.onnx",
        "--log-n",
        "15",
        "--json",
        "--passes",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["depth"], 39);
    assert_eq!(v["log_n"], 15);
    assert_eq!(v["log_scale"], 20);
    assert_eq!(v["primes"].as_array().unwrap().len(), 21);
    assert_eq!(v["special_primes"], serde_json::json!([40]));
    assert!(v["log_qp"].as_u64().unwrap() <= 881);
    assert_eq!(v["security_bits"], 128);
    // The lowered program's rotation keys: the 3x3 taps at pitches 1, 2, 4 (rows of 32)
    // and the global pool's rotate-and-add.
    let steps: Vec<i64> = v["rotation_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    for s in [1, -1, 32, -32, 33, -33, 2, 64, 4, 128] {
        assert!(steps.contains(&s), "no rotation by {s} in {steps:?}");
    }
    let layers = v["layers"].as_array().unwrap();
    let conv = layers.iter().find(|l| l["op"] == "Conv").unwrap();
    for k in ["name", "op", "level_in", "level_out", "log_scale_out"] {
        assert!(!conv[k].is_null(), "{k}");
    }
    assert!(layers.iter().all(|l| l["op"] != "BatchNormalization"));
    assert!(v["passes"].as_array().unwrap().len() >= 7);
}

#[test]
fn table_and_relu_error() {
    let (ok, out, err) = fhec(&["inspect", "models/onnx/resnet20_quad_random.onnx"]);
    assert!(ok, "{err}");
    assert!(out.contains("depth 39"), "{out}");
    assert!(out.contains("21 primes"), "{out}");
    assert!(out.contains("security: 128 bits"), "{out}");
    let (ok, _, err) = fhec(&["inspect", "models/onnx/resnet20_relu.onnx"]);
    assert!(!ok);
    assert!(err.contains("Relu"), "{err}");
}

/// With `--cluster slice:4` every conv layer has at most 4 distinct weights per kernel
/// column, and sharing them would save products; unclustered, the random weights share
/// nothing.
#[test]
fn weight_sharing_shows_k_per_layer() {
    let model = "models/onnx/resnet20_quad_random.onnx";
    let layers = |extra: &[&str]| {
        let mut args = vec!["inspect", model, "--json"];
        args.extend_from_slice(extra);
        let (ok, out, err) = fhec(&args);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["weight_sharing"].as_array().unwrap().clone()
    };
    let clustered = layers(&["--cluster", "slice:4"]);
    assert_eq!(clustered.len(), 19, "ResNet-20 has 19 3x3 convolutions");
    for l in &clustered {
        assert!(l["per_column"].as_u64().unwrap() <= 4, "{l}");
        assert!(l["grouped"].as_u64() < l["products"].as_u64(), "{l}");
    }
    let plain = layers(&[]);
    let saved: u64 = plain
        .iter()
        .map(|l| l["products"].as_u64().unwrap() - l["grouped"].as_u64().unwrap())
        .sum();
    let total: u64 = plain.iter().map(|l| l["products"].as_u64().unwrap()).sum();
    assert!(saved * 100 < total, "{saved} of {total}");
}
