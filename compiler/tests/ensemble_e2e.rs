//! Ensembles (`lower::ensemble`): M differently weighted models of one architecture in one
//! program. Each member's outputs must be its own model's: checked against the f64
//! interpreter of every member's graph, under encryption (128-bit parameters chosen by
//! the cost model) with an explicit error bound in bits, and in the exact simulator (which
//! executes the merged instruction stream slot by slot, so cross-talk between members
//! would show as a wrong result).

use std::path::{Path, PathBuf};

use compiler::e2e::{compile_ensemble, error_bits, CompileOptions, Session};
use compiler::lower::reference::Reference;
use compiler::onnx::{import_path, tensor, ImportOptions};
use passes::ir::{Graph, Op, Tensor};
use runtime::program::{Mode, SimOptions, Simulator};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

/// The same architecture with other weights: every learned value scaled by a factor
/// between 0.8 and 1.2 that depends on the member and the value's position.
fn member(g: &Graph, m: usize) -> Graph {
    let mut g = g.clone();
    let f = |k: usize| 1.0 + 0.2 * ((k * 7 + m * 13) as f64 * 0.37 + m as f64).sin();
    let scale = |t: &mut Tensor| {
        for (k, x) in t.data_mut().iter_mut().enumerate() {
            *x *= f(k);
        }
    };
    for id in g.node_ids() {
        match &mut g.node_mut(id).op {
            Op::Constant(t) => scale(t),
            Op::Conv(c) => {
                scale(&mut c.weight);
                if let Some(b) = &mut c.bias {
                    scale(b);
                }
            }
            Op::Gemm(gm) => {
                scale(&mut gm.b);
                if let Some(c) = &mut gm.c {
                    scale(c);
                }
            }
            Op::BatchNorm(bn) => {
                for (k, x) in bn.scale.iter_mut().chain(bn.bias.iter_mut()).enumerate() {
                    *x *= f(k);
                }
            }
            _ => {}
        }
    }
    g
}

/// Compiles `members` members of `model` as one ensemble; returns the program, every
/// member's interpreter output on the stored input, and that input.
fn ensemble(model: &str, members: usize) -> (runtime::program::Program, Vec<Vec<f64>>, Tensor) {
    let imp = import_path(&data(&format!("{model}.onnx")), &ImportOptions::default()).unwrap();
    let input = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
    let graphs: Vec<Graph> = (0..members).map(|m| member(&imp.graph, m)).collect();
    let wants = graphs
        .iter()
        .map(|g| {
            passes::interpret::run(g, std::slice::from_ref(&input)).unwrap()[0]
                .data()
                .to_vec()
        })
        .collect();
    let c = compile_ensemble(
        graphs,
        &CompileOptions::default(),
        &Reference,
        |_, _, _, _| {},
    )
    .unwrap();
    (c.program, wants, input)
}

#[test]
fn members_keep_their_own_outputs_in_the_simulator() {
    for model in [
        "tiny_conv",
        "tiny_conv_bn_act",
        "tiny_strided",
        "tiny_residual_1x1",
        "tiny_gemm_head",
    ] {
        for members in [2, 4] {
            let (p, wants, input) = ensemble(model, members);
            assert_eq!(p.output.members as usize, members);
            let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
            let got = sim.run(input.data(), Mode::Exact, 0).unwrap().output;
            let per = got.len() / members;
            for (m, want) in wants.iter().enumerate() {
                let (_, bits) = error_bits(&got[m * per..(m + 1) * per], want);
                assert!(
                    bits > 30.0,
                    "{model} x{members}: member {m} at {bits:.1} bits"
                );
            }
            // The members differ, so a program that ignored them would fail above.
            let (_, same) = error_bits(&wants[0], &wants[1]);
            assert!(same < 20.0, "{model}: members too alike ({same:.1} bits)");
        }
    }
}

#[test]
fn encrypted_ensemble_matches_each_member() {
    for (model, min_bits) in [("tiny_conv", 11.0), ("tiny_residual_1x1", 5.5)] {
        let (p, wants, input) = ensemble(model, 2);
        let session = Session::new(&p).unwrap();
        let (got, _) = session.run(&p, input.data(), |_, _, _| {}).unwrap();
        let per = got.len() / 2;
        for (m, want) in wants.iter().enumerate() {
            let (_, bits) = error_bits(&got[m * per..(m + 1) * per], want);
            eprintln!("{model}: member {m} {bits:.1} bits");
            assert!(
                bits >= min_bits - 0.5,
                "{model}: member {m} at {bits:.1} bits"
            );
        }
    }
}

#[test]
fn models_of_other_architectures_are_refused() {
    let a = import_path(&data("tiny_conv.onnx"), &ImportOptions::default()).unwrap();
    let b = import_path(&data("tiny_strided.onnx"), &ImportOptions::default()).unwrap();
    let e = compile_ensemble(
        vec![a.graph.clone(), b.graph],
        &CompileOptions::default(),
        &Reference,
        |_, _, _, _| {},
    );
    let msg = e
        .err()
        .expect("different architectures must fail")
        .to_string();
    assert!(msg.contains("ensemble"), "{msg}");
    let three = compile_ensemble(
        vec![a.graph.clone(), a.graph.clone(), a.graph],
        &CompileOptions::default(),
        &Reference,
        |_, _, _, _| {},
    );
    let msg = three.err().expect("3 members must fail").to_string();
    assert!(msg.contains("power of two"), "{msg}");
}

/// `--cluster` on an ensemble clusters the members jointly (k-means on M-vectors of
/// corresponding weights): the merged program computes each member's jointly clustered
/// graph, and each member's conv weights take at most K values per kernel column.
#[test]
fn joint_clustering_is_what_the_ensemble_computes() {
    let spec: passes::cluster::ClusterSpec = "slice:3".parse().unwrap();
    for model in ["tiny_conv", "tiny_residual_1x1"] {
        let imp = import_path(&data(&format!("{model}.onnx")), &ImportOptions::default()).unwrap();
        let input = tensor::read_pb(&data(&format!("{model}_input.pb"))).unwrap();
        let graphs: Vec<Graph> = (0..2).map(|m| member(&imp.graph, m)).collect();
        let mut clustered: Vec<Graph> = graphs
            .iter()
            .map(|g| compiler::pipeline::rewrite(g.clone()).unwrap().graph)
            .collect();
        passes::cluster_joint::run(&mut clustered, &spec).unwrap();
        for g in &clustered {
            for id in g.node_ids() {
                if let Op::Conv(c) = &g.node(id).op {
                    let kw = c.weight.shape()[3];
                    for col in 0..kw {
                        let mut v: Vec<f64> = c
                            .weight
                            .data()
                            .iter()
                            .skip(col)
                            .step_by(kw)
                            .copied()
                            .collect();
                        v.sort_by(f64::total_cmp);
                        v.dedup();
                        assert!(v.len() <= 3, "{model}: {} values in column {col}", v.len());
                    }
                }
            }
        }
        let opts = CompileOptions {
            cluster: Some(spec),
            ..Default::default()
        };
        let c = compile_ensemble(graphs.clone(), &opts, &Reference, |_, _, _, _| {}).unwrap();
        let sim = Simulator::new(&c.program, &SimOptions::default()).unwrap();
        let got = sim.run(input.data(), Mode::Exact, 0).unwrap().output;
        let per = got.len() / 2;
        for (m, g) in clustered.iter().enumerate() {
            let want = passes::interpret::run(g, std::slice::from_ref(&input)).unwrap();
            let (_, bits) = error_bits(&got[m * per..(m + 1) * per], want[0].data());
            assert!(bits > 30.0, "{model}: member {m} at {bits:.1} bits");
            // Clustering changed the member (its unclustered output differs).
            let plain = passes::interpret::run(&graphs[m], std::slice::from_ref(&input)).unwrap();
            let (_, close) = error_bits(plain[0].data(), want[0].data());
            assert!(close < 30.0, "{model}: clustering changed nothing");
        }
    }
}
