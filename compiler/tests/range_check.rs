//! Values that leave the ranges the parameters were chosen for: `fhec run` names the
//! layer and refuses before encrypting (exit 1, one error line, no output file);
//! `fhec interpret` warns; the library reports activation inputs outside the fitted range.

use std::path::{Path, PathBuf};
use std::process::Command;

use compiler::onnx::{import_path, tensor, ImportOptions};
use passes::ir::Tensor;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

fn scaled_input(dir: &Path, model: &str, factor: f64) -> PathBuf {
    let x = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
    let y = Tensor::new(
        x.shape().to_vec(),
        x.data().iter().map(|v| v * factor).collect(),
    )
    .unwrap();
    let path = dir.join(format!("{model}_x{factor}.pb"));
    tensor::write_pb(&path, &y, "x").unwrap();
    path
}

#[test]
fn run_refuses_a_saturating_input_and_names_the_layer() {
    let dir = std::env::temp_dir().join(format!("fhec-range-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = scaled_input(&dir, "tiny_conv_bn_act", 1e4);
    let out = dir.join("out.pb");
    let r = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args([
            "run",
            data("tiny_conv_bn_act.onnx").to_str().unwrap(),
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("layer '") && errors[0].contains("wrap around"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
    // interpret computes it (plaintext is exact) but warns.
    let r = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args([
            "interpret",
            data("tiny_conv_bn_act.onnx").to_str().unwrap(),
            "--input",
        ])
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("warning: under encryption, layer '"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn activation_inputs_outside_the_fitted_range_are_reported() {
    let imp = import_path(&data("tiny_conv_bn_act.onnx"), &ImportOptions::default()).unwrap();
    let x = tensor::read_pb(&data("tiny_conv_bn_act_input.pb")).unwrap();
    let req = passes::select_params::ParamRequest::default();
    let f = compiler::ranges::check(&imp.graph, &x, &req).unwrap();
    assert!(f.saturated.is_none());
    // Scaled by 50, the activation input leaves [-2, 2] but nothing saturates.
    let big = Tensor::new(
        x.shape().to_vec(),
        x.data().iter().map(|v| v * 50.0).collect(),
    )
    .unwrap();
    let g = compiler::ranges::check(&imp.graph, &big, &req).unwrap();
    let m = g.fit_message().expect("outside the fitted range");
    assert!(m.contains("most at '"), "{m}");
    assert!(g.outside_fit.iter().all(|(_, v)| *v > req.activation_range));
}
