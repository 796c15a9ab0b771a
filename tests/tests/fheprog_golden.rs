//! `.fheprog` golden tests: every tiny model and ResNet-20 compile deterministically
//! (two compilations give the same bytes), the file round-trips to the same program, and
//! the derived key set is the one the layout implies (the 3x3 taps of an 8-wide image:
//! +-1, +-7, +-8, +-9).

use std::path::Path;

use compiler::e2e::{compile, CompileOptions};
use compiler::lower::reference::Reference;
use compiler::onnx::{import_path, ImportOptions};
use runtime::program::{KeyRequirements, Program};

fn bytes_of(path: &Path) -> Vec<u8> {
    let imp = import_path(path, &ImportOptions::default()).unwrap();
    let c = compile(
        imp.graph,
        &CompileOptions::default(),
        &Reference,
        |_, _, _| {},
    )
    .unwrap();
    c.program.to_bytes().unwrap()
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn tiny_models_compile_deterministically_and_round_trip() {
    for name in [
        "tiny_conv",
        "tiny_conv_bn_act",
        "tiny_strided",
        "tiny_residual_1x1",
        "tiny_gemm_head",
        "tiny_mlp",
        "tiny_lola",
    ] {
        let path = root().join(format!("tests/data/{name}.onnx"));
        let a = bytes_of(&path);
        let b = bytes_of(&path);
        assert_eq!(a, b, "{name}: two compilations differ");
        let p = Program::from_bytes(&a).unwrap();
        assert_eq!(
            p.to_bytes().unwrap(),
            a,
            "{name}: round trip changed the bytes"
        );
        assert!(p.params.security_bits().unwrap_or(0) >= 128, "{name}");
    }
}

#[test]
fn tiny_conv_key_set_is_the_3x3_taps() {
    let a = bytes_of(&root().join("tests/data/tiny_conv.onnx"));
    let p = Program::from_bytes(&a).unwrap();
    let req = KeyRequirements::of(&p).unwrap();
    let steps = req.signed_steps(p.params.slots());
    assert_eq!(steps, vec![-9, -8, -7, -1, 1, 7, 8, 9]);
    // One conv, no activation: no relinearisation key.
    assert_eq!(req.relin_level, None);
}

#[test]
fn resnet20_program_round_trips_and_needs_28_rotation_keys() {
    let a = bytes_of(&root().join("models/onnx/resnet20_quad_random.onnx"));
    let p = Program::from_bytes(&a).unwrap();
    assert_eq!(p.to_bytes().unwrap(), a);
    let req = KeyRequirements::of(&p).unwrap();
    assert_eq!(req.rotations.len(), 28);
    assert!(req.relin_level.is_some());
    // Every bit flip in the body is caught by the checksum.
    let mut bad = a.clone();
    let k = bad.len() / 2;
    bad[k] ^= 1;
    assert!(Program::from_bytes(&bad).is_err());
}

/// Both exporters of the same trained weights (torch.onnx's TorchScript path flattens to
/// (1, 64), its dynamo path reshapes to (64)) lower to the same instructions.
#[test]
fn resnet20_dynamo_export_lowers_like_the_torchscript_one() {
    let a = Program::from_bytes(&bytes_of(&root().join("models/onnx/resnet20_quad.onnx"))).unwrap();
    let b = Program::from_bytes(&bytes_of(
        &root().join("models/onnx/resnet20_quad_dynamo.onnx"),
    ))
    .unwrap();
    assert_eq!(a.instrs.len(), b.instrs.len());
    assert_eq!(a.masks, b.masks);
    assert_eq!(a.output.placement, b.output.placement);
    let kinds = |p: &Program| p.instrs.iter().map(|i| i.name()).collect::<Vec<_>>();
    assert_eq!(kinds(&a), kinds(&b));
}
