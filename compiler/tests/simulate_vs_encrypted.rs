//! The simulator's noise model checked against real encrypted runs: every tiny test model
//! is compiled (128-bit parameters chosen by the cost model, N = 2^13 or less), run
//! encrypted several times (fresh keys and encryption noise each time) and simulated: the real
//! outputs lie within the simulator's predicted noise of its rounding-only run (allowing
//! for the per-key spread of the noise), and the
//! simulated noise's standard deviation is within a factor of 2 of the measured one.
//! The exact simulation also reproduces the f64 interpreter on the compiled graph.

use std::path::{Path, PathBuf};

use compiler::e2e::{compile, CompileOptions, Session};
use compiler::lower::reference::Reference;
use compiler::onnx::{import_path, tensor, ImportOptions};
use runtime::program::{Mode, SimOptions, Simulator};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

/// Root mean square of `runs` around `center`, over runs and outputs.
fn rms(runs: &[Vec<f64>], center: &[f64]) -> f64 {
    let s: f64 = runs
        .iter()
        .flat_map(|r| r.iter().zip(center).map(|(a, b)| (a - b).powi(2)))
        .sum();
    (s / (runs.len() * center.len()) as f64).sqrt()
}

fn check(model: &str, real_runs: usize) {
    let input = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
    let imp = import_path(&data(&format!("{model}.onnx")), &ImportOptions::default()).unwrap();
    let c = compile(
        imp.graph,
        &CompileOptions::default(),
        &Reference,
        |_, _, _| {},
    )
    .unwrap();
    let p = &c.program;
    let x = input.data();
    let sim = Simulator::new(p, &SimOptions::default()).unwrap();

    // Exact mode is the compiled graph's function.
    let exact = sim.run(x, Mode::Exact, 0).unwrap().output;
    let want =
        passes::interpret::run(&c.planned.rewritten.graph, std::slice::from_ref(&input)).unwrap();
    let scale = want[0].data().iter().fold(1f64, |m, v| m.max(v.abs()));
    for (e, w) in exact.iter().zip(want[0].data()) {
        assert!(
            (e - w).abs() <= 1e-9 * scale,
            "{model}: exact {e} vs interpreter {w}"
        );
    }

    let rounded = sim.run(x, Mode::Rounded, 0).unwrap().output;
    let sims: Vec<Vec<f64>> = (0..64)
        .map(|s| sim.run(x, Mode::Noisy, s).unwrap().output)
        .collect();
    // A fresh key set for every run: the simulator models the noise in expectation over
    // the secret key too. (For one key, the rescale noise r0 + r1 s at slot j has the
    // variance (N/2)(1 + |s(zeta_j)|^2)/12 / scale^2, and |s(zeta_j)|^2 is exponentially
    // distributed over keys with mean 2N/3: a model reading all its outputs at slot 0
    // sees one draw of it per key, measured here between 0.4x and 2.8x the mean's std.)
    let reals: Vec<Vec<f64>> = (0..real_runs)
        .map(|_| Session::new(p).unwrap().run(p, x, |_, _, _| {}).unwrap().0)
        .collect();
    let (s_sim, s_real) = (rms(&sims, &rounded), rms(&reals, &rounded));
    eprintln!(
        "{model}: N = 2^{}, noise std simulated {s_sim:.3e}, measured {s_real:.3e} (ratio {:.2}); \
         rounding vs exact {:.3e}",
        p.params.log_n(),
        s_sim / s_real,
        rms(std::slice::from_ref(&rounded), &exact)
    );
    assert!(s_sim > 0.0 && s_real > 0.0);
    assert!(
        s_sim / s_real < 2.0 && s_real / s_sim < 2.0,
        "{model}: simulated noise std {s_sim:e}, measured {s_real:e}"
    );
    // Every real output within t predicted standard deviations of the rounded simulation.
    // For one key, the noise variance at slot j is scaled by |s(zeta_j)|^2 / (2N/3), about
    // exponentially distributed over keys and slots: a Gaussian whose variance is scaled by
    // Exp(1) is Laplace, P(|x| > t sd) = exp(-sqrt(2) t). Over `count` outputs, t =
    // (ln(count) + 14) / sqrt(2) bounds the largest with probability 1 - 1e-6.
    let n = sims.len() as f64;
    let count = (rounded.len() * reals.len()) as f64;
    let t = (count.ln() + 14.0) / std::f64::consts::SQRT_2;
    for (j, &r) in rounded.iter().enumerate() {
        let sd = (sims.iter().map(|s| (s[j] - r).powi(2)).sum::<f64>() / n).sqrt();
        for real in &reals {
            assert!(
                (real[j] - r).abs() <= t * sd.max(s_sim / 4.0),
                "{model} output {j}: real {} vs simulated {r} (predicted std {sd:e}, bound {t:.1} std)",
                real[j]
            );
        }
    }
}

#[test]
fn conv_without_activation() {
    check("tiny_conv", 4);
}

#[test]
fn conv_bn_activation() {
    check("tiny_conv_bn_act", 4);
}

#[test]
fn strided() {
    check("tiny_strided", 4);
}

#[test]
fn residual() {
    check("tiny_residual_1x1", 4);
}

#[test]
fn dense_heads() {
    // Outputs at one slot each: more key sets to average the per-key factor over.
    check("tiny_gemm_head", 8);
    check("tiny_mlp", 8);
    check("tiny_lola", 8);
}

/// Exact simulation of a clustered program is the clustered graph's function (the
/// accuracy tables' "exact program" column), here on the trained ResNet-20 at slice:16
/// on a committed CIFAR-10 image.
#[test]
fn clustered_program_is_the_clustered_graph() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/onnx/resnet20_quad.onnx");
    let png = data("cifar10/cifar10_00_3.png");
    let imp = import_path(&model, &ImportOptions::default()).unwrap();
    let opts = CompileOptions {
        cluster: Some("slice:16".parse().unwrap()),
        image: compiler::image::normalization(&imp.metadata, &imp.graph),
        ..Default::default()
    };
    let c = compile(imp.graph, &opts, &Reference, |_, _, _| {}).unwrap();
    let x = compiler::image::load_for_program(&png, &c.program.input).unwrap();
    let sim = Simulator::new(&c.program, &SimOptions::default()).unwrap();
    let got = sim.run(x.data(), Mode::Exact, 0).unwrap().output;
    let want =
        passes::interpret::run(&c.planned.rewritten.graph, std::slice::from_ref(&x)).unwrap();
    for (g, w) in got.iter().zip(want[0].data()) {
        assert!(
            (g - w).abs() < 1e-9,
            "exact simulation {g} vs clustered graph {w}"
        );
    }
}
