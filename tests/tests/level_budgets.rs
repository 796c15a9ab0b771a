//! Golden level budgets and 128-bit parameter sets of the committed models, after the
//! rewrite passes (`compiler::pipeline`): depth and prime-chain length per model, every
//! activation monic, no paid level, log2(QP) within the 128-bit bound, primes <= 50 bits,
//! the special modulus covering the largest key-switching digit; and the pipeline's
//! rewrite checked against the f64 interpreter on a random input.
//!
//! Budgets do not depend on weights: the `_quad_random` exports are used (the trained
//! `_quad` ones are checked too when present).

use std::path::PathBuf;

use compiler::onnx::{import_path, ImportOptions};
use compiler::pipeline::{check_equivalence, plan, rewrite, security_bits, Planned};
use passes::ir::Tensor;
use passes::select_params::ParamRequest;

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("models/onnx")
        .join(name)
}

fn planned(name: &str, log_n: Option<u32>) -> Planned {
    let imp = import_path(&model(name), &ImportOptions::default()).unwrap();
    let req = ParamRequest {
        force_log_n: log_n,
        ..Default::default()
    };
    plan(imp.graph, &req).unwrap()
}

fn check(name: &str, depth: u32, primes: u32) -> Planned {
    let p = planned(name, None);
    assert_eq!(p.plan.depth, depth, "{name}: depth");
    assert_eq!(p.plan.primes(), primes, "{name}: primes");
    assert_eq!(p.plan.primes(), p.plan.activations as u32 + 2, "{name}");
    assert_eq!(p.plan.paid_levels, 0, "{name}: no node pays a level");
    for n in p.plan.nodes.values() {
        assert_ne!(n.monic, Some(false), "{name}: every activation is monic");
    }
    let ps = &p.params;
    assert_eq!(ps.primes.len() as u32, primes);
    assert!(
        ps.log_qp <= ps.max_log_qp,
        "{name}: {} > {}",
        ps.log_qp,
        ps.max_log_qp
    );
    assert_eq!(security_bits(ps).map(|s| s >= 128), Some(true));
    assert!(ps.primes.iter().chain(&ps.special_primes).all(|&b| b <= 50));
    let alpha = ps.primes.len().div_ceil(ps.dnum as usize);
    let max_digit: u32 = ps
        .primes
        .chunks(alpha)
        .map(|c| c.iter().sum())
        .max()
        .unwrap();
    assert!(
        ps.special_primes.iter().sum::<u32>() >= max_digit,
        "{name}: P >= digit"
    );
    assert_eq!(ps.log_qp, ps.log_q + ps.special_primes.iter().sum::<u32>());
    p
}

#[test]
fn resnet20_depth_39_and_21_primes() {
    let p = check("resnet20_quad_random.onnx", 39, 21);
    assert!(p.params.log_delta >= 20);
}

#[test]
fn resnet20_default_meets_the_noise_floor() {
    // At N = 2^15 only Delta = 2^20 fits, which leaves ~3.5 bits per activation (the
    // trained model kept 2.8 bits on its logits there); the default takes N = 2^16 with a
    // larger Delta (measured: 7.6 bits) and says so in its prediction.
    let p = planned("resnet20_quad_random.onnx", None);
    let ps = &p.params;
    assert_eq!(ps.log_n, 16);
    assert!(ps.prediction.noise_precision_bits >= ParamRequest::default().min_noise_bits);
    assert!(ps.log_delta > 20);
    let at15 = planned("resnet20_quad_random.onnx", Some(15));
    assert!(at15.params.prediction.noise_precision_bits < 6.0);
}

#[test]
fn resnet20_dynamo_export_has_the_same_budget() {
    // opset 18: ReduceMean instead of GlobalAveragePool, Reshape instead of Flatten.
    check("resnet20_quad_random_dynamo.onnx", 39, 21);
}

#[test]
fn resnet20_forced_to_2_15_fits_881_bits() {
    let p = planned("resnet20_quad_random.onnx", Some(15));
    let ps = &p.params;
    assert_eq!(ps.log_n, 15);
    assert!(ps.log_qp <= 881, "{}", ps.log_qp);
    // The only way 21 primes fit: Delta = 2^20, 40-bit towers, ~30-bit base, one 40-bit
    // special prime (dnum = 21).
    assert_eq!(ps.log_delta, 20);
    assert_eq!(ps.primes[0], 30);
    assert!(ps.primes[1..].iter().all(|&b| b == 40));
    assert_eq!(ps.special_primes, vec![40]);
    assert_eq!(ps.dnum, 21);
}

#[test]
fn resnet20_too_small_ring_names_the_layer() {
    let imp = import_path(
        &model("resnet20_quad_random.onnx"),
        &ImportOptions::default(),
    )
    .unwrap();
    let req = ParamRequest {
        force_log_n: Some(14),
        ..Default::default()
    };
    let e = plan(imp.graph, &req).unwrap_err().to_string();
    assert!(e.contains("runs out at layer '/layer2/"), "{e}");
    assert!(e.contains("bound is 438"), "{e}");
}

#[test]
fn resnet32_depth_63_and_33_primes() {
    let p = check("resnet32_quad_random.onnx", 63, 33);
    // 33 primes do not fit 881 bits with a useful Delta: N = 2^16.
    assert_eq!(p.params.log_n, 16);
}

#[test]
fn resnet18_19_primes() {
    check("resnet18_quad_random.onnx", 35, 19);
}

#[test]
fn vgg16_17_primes() {
    check("vgg16_quad_random.onnx", 31, 17);
}

#[test]
fn trained_quad_models_have_the_same_budgets() {
    for (name, depth, primes) in [
        ("resnet20_quad.onnx", 39, 21),
        ("resnet32_quad.onnx", 63, 33),
    ] {
        if model(name).exists() {
            check(name, depth, primes);
        }
    }
}

#[test]
fn rewrite_matches_the_interpreter_on_resnet20() {
    for name in [
        "resnet20_quad_random.onnx",
        "resnet20_quad_random_dynamo.onnx",
        "resnet20_quad.onnx",
    ] {
        if !model(name).exists() {
            continue;
        }
        let imp = import_path(&model(name), &ImportOptions::default()).unwrap();
        let before = imp.graph.clone();
        let after = rewrite(imp.graph).unwrap().graph;
        let mut s = 0x9e3779b97f4a7c15u64;
        let x: Vec<f64> = (0..3 * 32 * 32)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect();
        let x = Tensor::new(vec![1, 3, 32, 32], x).unwrap();
        let err = check_equivalence(&before, &after, &[x]).unwrap();
        assert!(err < 1e-9, "{name}: relative error {err}");
    }
}
