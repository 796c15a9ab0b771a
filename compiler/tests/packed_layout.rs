//! The packed layout (`lower::packed`): a whole tensor per ciphertext, channels
//! interleaved per pixel. Its programs must compute the model: checked against the f64
//! interpreter in the exact simulator (which executes the instruction stream slot by slot,
//! so a wrong rotation, diagonal or validity mask shows as a wrong result) and under
//! encryption with an explicit error bound in bits; ops it does not pack are clear errors
//! naming the layer, and `auto` keeps the layout the cost model finds cheaper.

use std::path::{Path, PathBuf};

use compiler::e2e::{compile_with, error_bits, CompileOptions, LayoutChoice, Session};
use compiler::lower::LowerError;
use compiler::onnx::{import_path, tensor, ImportOptions};
use passes::ir::Tensor;
use runtime::program::{Mode, SimOptions, Simulator};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

fn load(model: &str) -> (passes::ir::Graph, Tensor, Vec<f64>) {
    let imp = import_path(&data(&format!("{model}.onnx")), &ImportOptions::default()).unwrap();
    let input = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
    let want = passes::interpret::run(&imp.graph, std::slice::from_ref(&input)).unwrap()[0]
        .data()
        .to_vec();
    (imp.graph, input, want)
}

/// Models whose every op the packed layout lowers (stride-1 "same" and stride-2 convs).
const PACKABLE: [&str; 7] = [
    "tiny_conv",
    "tiny_conv_bn_act",
    "tiny_residual_1x1",
    "tiny_gemm_head",
    "tiny_strided",
    "tiny_preact_mean",
    "tiny_linear_chain",
];

#[test]
fn packed_programs_compute_the_model_in_the_exact_simulator() {
    for model in PACKABLE {
        let (g, input, want) = load(model);
        let (c, name, _) = compile_with(
            g,
            &CompileOptions::default(),
            LayoutChoice::Packed,
            |_, _, _| {},
        )
        .unwrap();
        assert_eq!(name, "packed");
        // One input ciphertext: the whole tensor.
        assert_eq!(c.program.input.cts, 1, "{model}");
        let sim = Simulator::new(&c.program, &SimOptions::default()).unwrap();
        let got = sim.run(input.data(), Mode::Exact, 0).unwrap().output;
        let (_, bits) = error_bits(&got, &want);
        assert!(bits > 30.0, "{model}: {bits:.1} bits");
    }
}

#[test]
fn packed_programs_compute_the_model_under_encryption() {
    // Bounds: one bit under the lowest of 8 runs (5.4..6.2 and 10.5..12.2 bits measured;
    // the reference layout's bounds in lower_e2e.rs are 5.5 and 11): a wrong diagonal or
    // mask gives ~0 bits.
    for (model, min_bits) in [
        ("tiny_conv_bn_act", 4.4),
        ("tiny_gemm_head", 9.5),
        ("tiny_strided", 4.4),
        // Its Gemm reads a conv through the pool and ends the level plan at level 0
        // (6.4 .. 9.3 bits over 7 runs).
        ("tiny_preact_mean", 5.3),
        // Linear layers in a row: 6.6 .. 9.2 bits over 5 runs.
        ("tiny_linear_chain", 5.5),
    ] {
        let (g, input, want) = load(model);
        let (c, _, _) = compile_with(
            g,
            &CompileOptions::default(),
            LayoutChoice::Packed,
            |_, _, _| {},
        )
        .unwrap();
        let session = Session::new(&c.program).unwrap();
        let (got, _) = session.run(&c.program, input.data(), |_, _, _| {}).unwrap();
        let (_, bits) = error_bits(&got, &want);
        eprintln!("{model}: packed, encrypted, {bits:.1} bits");
        assert!(bits >= min_bits, "{model}: {bits:.1} bits");
    }
}

#[test]
fn unpackable_models_are_refused_by_name_and_auto_falls_back() {
    // Orion's LoLA: a 28x28 image (784 pixels, not a power of two).
    let (g, _, _) = load("tiny_lola");
    let e = compile_with(
        g.clone(),
        &CompileOptions::default(),
        LayoutChoice::Packed,
        |_, _, _| {},
    )
    .err()
    .expect("a 28x28 image is not packed");
    match &e {
        compiler::e2e::E2eError::Lower(LowerError::Unsupported {
            op, layout, why, ..
        }) => {
            assert_eq!(*layout, "packed");
            assert_eq!(op, "Input", "{e}");
            assert!(why.contains("power of two"), "{e}");
        }
        other => panic!("unexpected error {other}"),
    }
    let (_, name, costs) = compile_with(
        g,
        &CompileOptions::default(),
        LayoutChoice::Auto,
        |_, _, _| {},
    )
    .unwrap();
    assert_eq!(name, "reference");
    assert_eq!(costs.len(), 1);
}

#[test]
fn auto_takes_the_cheaper_estimate_and_packing_saves_key_switches() {
    let (g, input, want) = load("tiny_gemm_head");
    let (c, name, costs) = compile_with(
        g,
        &CompileOptions::default(),
        LayoutChoice::Auto,
        |_, _, _| {},
    )
    .unwrap();
    assert_eq!(costs.len(), 2);
    let (r, p) = (&costs[0].1, &costs[1].1);
    let cheaper = if p.ntts < r.ntts {
        "packed"
    } else {
        "reference"
    };
    assert_eq!(name, cheaper);
    // 3 input channels x 8 taps hoisted in the reference layout's conv; the packed one
    // has 3 baby steps (one decomposition) and 8 tap rotations.
    assert!(
        p.key_switches < r.key_switches,
        "packed {} vs reference {} key switches",
        p.key_switches,
        r.key_switches
    );
    let sim = Simulator::new(&c.program, &SimOptions::default()).unwrap();
    let got = sim.run(input.data(), Mode::Exact, 0).unwrap().output;
    assert!(error_bits(&got, &want).1 > 30.0);
}

/// The trained ResNet-20 (strided convs, option-A shortcuts: Slice + Pad) lowers packed at
/// 128-bit N = 2^16 with two primes more than the reference layout (the two downsamplings
/// on the critical path), and its program computes the model: the exact simulation equals
/// the interpreter on a committed CIFAR-10 image. `auto` takes it (the cost model's
/// estimate is lower).
#[test]
fn resnet20_lowers_packed_and_computes_the_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/onnx/resnet20_quad.onnx");
    let png = data("cifar10/cifar10_00_3.png");
    let imp = import_path(&model, &ImportOptions::default()).unwrap();
    let opts = CompileOptions {
        image: compiler::image::normalization(&imp.metadata, &imp.graph),
        ..Default::default()
    };
    let (c, name, costs) =
        compile_with(imp.graph.clone(), &opts, LayoutChoice::Auto, |_, _, _| {}).unwrap();
    assert_eq!(name, "packed", "{costs:?}");
    let p = &c.program;
    assert_eq!(p.params.log_n(), 16);
    assert_eq!(p.params.q().len(), 23, "reference: 21 primes");
    assert!(p.params.security_bits().unwrap_or(0) >= 128);
    let keys = runtime::program::KeyRequirements::of(p).unwrap();
    assert!(
        keys.rotations.len() <= 56,
        "{} rotation keys",
        keys.rotations.len()
    );
    let x = compiler::image::load_for_program(&png, &p.input).unwrap();
    let sim = Simulator::new(p, &SimOptions::default()).unwrap();
    let got = sim.run(x.data(), Mode::Exact, 0).unwrap().output;
    let want = passes::interpret::run(&imp.graph, std::slice::from_ref(&x)).unwrap();
    let (_, bits) = error_bits(&got, want[0].data());
    assert!(
        bits > 30.0,
        "exact packed program vs interpreter: {bits:.1} bits"
    );
}
