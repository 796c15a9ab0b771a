//! End to end under encryption: every tiny test model is compiled (passes, levels,
//! 128-bit parameters chosen by the cost model, lowering), run encrypted on its stored
//! input, and checked against the f64 interpreter on the original graph, with an explicit
//! error bound in bits.

use std::path::{Path, PathBuf};

use compiler::e2e::{compile, error_bits, CompileOptions, Session};
use compiler::lower::reference::Reference;
use compiler::onnx::{import_path, tensor, ImportOptions};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

/// Compiles and runs `model` encrypted and checks the precision against the f64
/// interpreter: `min_bits` of log2(max(1, max|y|) / max|y_enc - y|). Models with an
/// activation rescale its input to Delta, where the rescale noise is ~2^-9 of the value
/// before the square doubles it: at N = 2^13, Delta = 2^20 they measure 6.4 .. 8.6 bits
/// over repeated runs (the encryption noise is fresh each time), so their bound is the
/// 6-sigma noise model's 5.5 bits; models without one keep ~12 bits (bounds ~1 bit under).
fn check(model: &str, min_bits: f64) {
    check_with_cache(model, min_bits, None)
}

/// As `check`, with the executor's masked-plaintext cache budget overridden (`Some(0)`:
/// every masked tap encoded where used, through the periodic-mask sparse NTT and the
/// cache-tiled accumulation, as in full-size layers).
fn check_with_cache(model: &str, min_bits: f64, cache: Option<usize>) {
    let path = data(&format!("{model}.onnx"));
    let input = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
    let imp = import_path(&path, &ImportOptions::default()).unwrap();
    let want = passes::interpret::run(&imp.graph, std::slice::from_ref(&input)).unwrap();
    let c = compile(
        imp.graph,
        &CompileOptions::default(),
        &Reference,
        |_, _, _| {},
    )
    .unwrap();
    assert!(c.program.params.security_bits().unwrap_or(0) >= 128);
    let mut session = Session::new(&c.program).unwrap();
    session.mask_cache_bytes = cache;
    let (got, st) = session.run(&c.program, input.data(), |_, _, _| {}).unwrap();
    let (err, bits) = error_bits(&got, want[0].data());
    eprintln!(
        "{model} (cache {cache:?}): N = 2^{}, {} primes, max error {err:.3e}, {bits:.1} bits, eval {:.3} s, {} rotation keys",
        c.program.params.log_n(),
        c.program.params.q().len(),
        st.eval_s,
        st.rotation_keys
    );
    assert!(
        bits >= min_bits,
        "{model}: {bits:.1} bits of precision, want >= {min_bits}"
    );
    // The bound `fhec inspect` prints ("rescale noise leaves about B bits per activation",
    // a 6-sigma model) holds for the whole network's output too.
    let predicted = c.planned.params.prediction.noise_precision_bits;
    assert!(
        bits >= predicted,
        "{model}: {bits:.1} bits measured, below the predicted {predicted:.1}"
    );
}

#[test]
fn streamed_masked_taps() {
    for (model, bits) in [
        ("tiny_conv", 11.0),
        ("tiny_conv_bn_act", 5.5),
        ("tiny_strided", 5.5),
        ("tiny_residual_1x1", 5.5),
    ] {
        check_with_cache(model, bits, Some(0));
    }
}

#[test]
fn tiny_conv() {
    check("tiny_conv", 11.0);
}

#[test]
fn tiny_conv_bn_act() {
    check("tiny_conv_bn_act", 5.5);
}

#[test]
fn tiny_strided() {
    check("tiny_strided", 5.5);
}

#[test]
fn tiny_residual_1x1() {
    check("tiny_residual_1x1", 5.5);
}

#[test]
fn tiny_gemm_head() {
    check("tiny_gemm_head", 11.0);
}

/// A pre-activation residual (the stem conv's raw output, scaled by 0.5, as the skip),
/// `x.mean((2, 3))` (ReduceMean without keepdims) and a Gemm fed through the pool by a
/// conv: 9.7 .. 11.3 bits over 6 runs.
#[test]
fn tiny_preact_mean() {
    check("tiny_preact_mean", 8.5);
}

/// Plaintext products without an activation between them (conv -> BN -> conv, conv ->
/// mean -> Gemm -> Gemm): the plan pairs them in one prime, the lowering spends one each,
/// and the compile adds the towers it needs (an output left above the base prime's scale
/// used to wrap: 1.3 bits). 12.4 .. 13.4 bits over 5 runs.
#[test]
fn tiny_linear_chain() {
    check("tiny_linear_chain", 11.0);
}

#[test]
fn tiny_mlp() {
    check("tiny_mlp", 12.0);
}

#[test]
fn tiny_lola() {
    check("tiny_lola", 9.0);
}

/// Orion's MLP example (784 -> 128 -> 128 -> 10, BN, x * x): dense layers by the diagonal
/// method on the repeated input.
#[test]
fn orion_mlp() {
    check("orion_mlp", 9.0);
}

/// A parameter set with fewer primes than the plan needs: the lowering names the layer
/// where the budget runs out instead of emitting a program that fails later.
#[test]
fn exhausted_budget_names_the_layer() {
    let imp = import_path(&data("tiny_residual_1x1.onnx"), &ImportOptions::default()).unwrap();
    let planned = compiler::pipeline::plan(imp.graph, &Default::default()).unwrap();
    let params = runtime::ckks::Params::insecure_for_tests(13, &[50], &[50], 1).unwrap();
    let Err(e) = compiler::lower::lower(&planned, params, None, &Reference, |_, _, _| {}) else {
        panic!("one prime cannot hold this model");
    };
    let msg = e.to_string();
    assert!(msg.contains("level budget exhausted at layer '/"), "{msg}");
}

/// Batch mode: as many inputs as the slots hold go through one encrypted run of the same
/// instructions (each input in its own slot period), and every one of them meets the
/// single-input bound against the interpreter, less half a bit and more for the largest
/// batches (the worst of B noise draws instead of one).
#[test]
fn batched_inputs_share_one_run() {
    use compiler::lower::BatchSize;
    for (model, min_bits) in [
        ("tiny_conv", 11.0),
        ("tiny_strided", 5.5),
        ("tiny_residual_1x1", 5.5),
        ("tiny_gemm_head", 11.0),
        ("tiny_mlp", 12.0),
        ("tiny_lola", 9.0),
        ("orion_mlp", 9.0),
    ] {
        let path = data(&format!("{model}.onnx"));
        let input = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
        let imp = import_path(&path, &ImportOptions::default()).unwrap();
        let two = CompileOptions {
            batch: BatchSize::Exactly(2),
            ..Default::default()
        };
        let pair = compile(imp.graph.clone(), &two, &Reference, |_, _, _| {}).unwrap();
        let opts = CompileOptions {
            batch: BatchSize::Max,
            ..Default::default()
        };
        let c = compile(imp.graph.clone(), &opts, &Reference, |_, _, _| {}).unwrap();
        let b = c.program.input.shape[0];
        assert!(b >= 2, "{model}: a batch of {b}");
        // The same instructions and masks for 2 inputs as for the most that fit: the cost
        // of a run does not depend on how many inputs share it.
        assert_eq!(c.program.instrs, pair.program.instrs, "{model}");
        assert_eq!(c.program.masks, pair.program.masks, "{model}");
        // Distinct inputs: permutations of the stored one, scaled down.
        let n = input.data().len();
        let mut named = vec![];
        let mut wants = vec![];
        for k in 0..b {
            let f = 1.0 - 0.5 * k as f64 / b as f64;
            let data: Vec<f64> = (0..n)
                .map(|i| input.data()[(i * 7 + k * 13) % n] * f)
                .collect();
            let x = passes::ir::Tensor::new(input.shape().to_vec(), data).unwrap();
            wants.push(passes::interpret::run(&imp.graph, std::slice::from_ref(&x)).unwrap());
            named.push((format!("input {k}"), x));
        }
        let stacked = compiler::inputs::stack(named, &c.program.input.shape).unwrap();
        let session = Session::new(&c.program).unwrap();
        let (got, _) = session
            .run(&c.program, stacked.tensor.data(), |_, _, _| {})
            .unwrap();
        let per = got.len() / b;
        let mut worst = f64::INFINITY;
        for (k, want) in wants.iter().enumerate() {
            let (_, bits) = error_bits(&got[k * per..(k + 1) * per], want[0].data());
            worst = worst.min(bits);
        }
        eprintln!("{model}: batch of {b}, worst {worst:.1} bits");
        // The worst of B noise draws sits lower than one draw the larger B is: half a bit
        // up to 64 inputs, half a bit more per factor 2 beyond (tiny_mlp, B = 256, gave
        // 11.2 to 12.0 bits over 10 runs against its single-input 12).
        let extra = (b as f64 / 64.0).log2().max(0.0) * 0.5;
        let bound = min_bits - 0.5 - extra;
        assert!(worst >= bound, "{model}: {worst:.1} bits in a batch of {b}");
    }
}

/// Dense layers whose outputs share ciphertexts (grouped rotate-and-sum) followed by a
/// quadratic with its own coefficients per feature and a second dense layer: the per-slot
/// constants (`AddVec`, slot-vector products) against the interpreter, single input and
/// batch.
#[test]
fn grouped_dense_outputs_with_per_feature_polynomials() {
    use compiler::onnx::builder::{attr_i, ModelBuilder};
    let (k, h, o) = (48usize, 12usize, 5usize);
    let val = |i: usize, s: f64| (i as f64 * 0.37 + s).sin() * 0.5;
    let t = |shape: Vec<usize>, s: f64| {
        let n: usize = shape.iter().product();
        passes::ir::Tensor::new(shape, (0..n).map(|i| val(i, s)).collect()).unwrap()
    };
    let mut b = ModelBuilder::new(13);
    b.input("x", &[1, k as i64])
        .init("w1", &t(vec![h, k], 0.1))
        .init("b1", &t(vec![h], 0.2))
        .init("a", &t(vec![h], 0.3).map(|v| 0.6 + v))
        .init("c", &t(vec![h], 0.4))
        .init("d", &t(vec![h], 0.5))
        .init("w2", &t(vec![o, h], 0.6))
        .init("b2", &t(vec![o], 0.7))
        .node(
            "Gemm",
            &["x", "w1", "b1"],
            &["y"],
            vec![attr_i("transB", 1)],
        )
        .node("Mul", &["y", "a"], &["ya"], vec![])
        .node("Mul", &["ya", "y"], &["yay"], vec![])
        .node("Mul", &["y", "c"], &["yc"], vec![])
        .node("Add", &["yay", "yc"], &["p1"], vec![])
        .node("Add", &["p1", "d"], &["p"], vec![])
        .node(
            "Gemm",
            &["p", "w2", "b2"],
            &["z"],
            vec![attr_i("transB", 1)],
        )
        .output("z");
    let dir = std::env::temp_dir().join(format!("fhec-grouped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grouped.onnx");
    std::fs::write(&path, b.encode()).unwrap();
    let imp = import_path(&path, &ImportOptions::default()).unwrap();
    assert_eq!(imp.polys, 1, "the quadratic is matched");
    let x = t(vec![1, k], 0.9);
    let want = passes::interpret::run(&imp.graph, std::slice::from_ref(&x)).unwrap();
    let c = compile(
        imp.graph.clone(),
        &CompileOptions::default(),
        &Reference,
        |_, _, _| {},
    )
    .unwrap();
    let p = &c.program;
    assert!(
        p.instrs
            .iter()
            .any(|i| matches!(i, runtime::program::Instr::AddVec { .. })),
        "per-feature constants on shared ciphertexts"
    );
    let (got, _) = Session::new(p)
        .unwrap()
        .run(p, x.data(), |_, _, _| {})
        .unwrap();
    let (err, bits) = error_bits(&got, want[0].data());
    eprintln!("grouped: {err:.3e}, {bits:.1} bits");
    assert!(bits >= 10.0, "{bits:.1} bits");
}
