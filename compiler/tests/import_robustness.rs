//! Bad input never panics: structural mutations of small models (attributes set to odd
//! values, inputs dropped, initializers reshaped) must give an `ImportError` or a valid
//! graph the interpreter can run (or refuse) without panicking.

use std::panic::{catch_unwind, AssertUnwindSafe};

use compiler::onnx::builder::{attr_f, attr_i, attr_ints, attr_s, ModelBuilder};
use compiler::onnx::{import_model, ImportOptions};
use compiler::tract_onnx::pb::{ModelProto, TensorProto};
use passes::ir::Tensor;

fn base_models() -> Vec<ModelProto> {
    let w = |s: &[usize]| Tensor::full(s.to_vec(), 0.5);
    let mut a = ModelBuilder::new(13);
    a.input("x", &[1, 2, 5, 5])
        .init("w", &w(&[4, 2, 3, 3]))
        .init("b", &w(&[4]))
        .init("g", &w(&[4]))
        .init("two", &Tensor::scalar(2.0))
        .init_i64("pads", &[8], &[0, 1, 0, 0, 0, 1, 0, 0])
        .init_i64("st", &[2], &[0, 0])
        .init_i64("en", &[2], &[9, 9])
        .init_i64("ax", &[2], &[2, 3])
        .init_i64("sp", &[2], &[2, 2])
        .init_i64("shape", &[2], &[1, -1])
        .init("fw", &w(&[3, 6]))
        .node(
            "Conv",
            &["x", "w", "b"],
            &["c"],
            vec![
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", &[1, 1]),
                attr_i("group", 1),
            ],
        )
        .node(
            "BatchNormalization",
            &["c", "g", "b", "b", "g"],
            &["bn"],
            vec![attr_f("epsilon", 1e-5)],
        )
        .node("Pow", &["bn", "two"], &["sq"], vec![])
        .node(
            "AveragePool",
            &["sq"],
            &["ap"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
                attr_i("count_include_pad", 0),
            ],
        )
        .node(
            "Pad",
            &["ap", "pads"],
            &["pd"],
            vec![attr_s("mode", "constant")],
        )
        .node("Slice", &["pd", "st", "en", "ax", "sp"], &["sl"], vec![])
        .node("GlobalAveragePool", &["sl"], &["gap"], vec![])
        .node("Reshape", &["gap", "shape"], &["r"], vec![])
        .node(
            "Gemm",
            &["r", "fw"],
            &["y"],
            vec![attr_i("transB", 1), attr_f("alpha", 1.0)],
        )
        .output("y");
    let mut b = ModelBuilder::new(18);
    b.input("x", &[2, 3])
        .init("m", &w(&[3, 3]))
        .init_i64("axes", &[1], &[1])
        .init_i64("idx", &[1], &[0])
        .node("MatMul", &["x", "m"], &["mm"], vec![])
        .node("Shape", &["mm"], &["s"], vec![attr_i("start", 0)])
        .node("Gather", &["s", "idx"], &["g0"], vec![attr_i("axis", 0)])
        .node("Concat", &["g0", "idx"], &["cc"], vec![attr_i("axis", 0)])
        .node(
            "ReduceMean",
            &["mm", "axes"],
            &["rm"],
            vec![attr_i("keepdims", 1)],
        )
        .node("Flatten", &["rm"], &["f"], vec![attr_i("axis", 1)])
        .node("Unsqueeze", &["f", "idx"], &["u"], vec![])
        .node("Squeeze", &["u", "idx"], &["q"], vec![])
        .node(
            "Transpose",
            &["m"],
            &["mt"],
            vec![attr_ints("perm", &[1, 0])],
        )
        .node("Cast", &["cc"], &["ccf"], vec![attr_i("to", 1)])
        .node("ConstantOfShape", &["cc"], &["z"], vec![])
        .node("Add", &["q", "z"], &["y"], vec![])
        .output("y")
        .output("mt")
        .output("ccf");
    vec![a.build(), b.build()]
}

/// Every single mutation of every node.
fn mutations(m: &ModelProto) -> Vec<ModelProto> {
    let mut out = vec![];
    let g = m.graph.as_ref().unwrap();
    for (ni, node) in g.node.iter().enumerate() {
        let mut with = |f: &dyn Fn(&mut compiler::tract_onnx::pb::NodeProto)| {
            let mut m2 = m.clone();
            f(&mut m2.graph.as_mut().unwrap().node[ni]);
            out.push(m2);
        };
        for (ai, a) in node.attribute.iter().enumerate() {
            for v in [-1i64, 0, 7] {
                with(&|n| n.attribute[ai].i = v);
                with(&|n| n.attribute[ai].ints = vec![v]);
                with(&|n| n.attribute[ai].ints = vec![v; 4]);
            }
            with(&|n| n.attribute[ai].f = f32::NAN);
            with(&|n| n.attribute[ai].s = b"SAME_LOWER".to_vec());
            let _ = a;
        }
        with(&|n| n.attribute.push(attr_s("auto_pad", "SAME_UPPER")));
        with(&|n| n.attribute.push(attr_ints("dilations", &[1, 1])));
        for i in 0..node.input.len() {
            with(&|n| {
                n.input.remove(i);
            });
            with(&|n| n.input[i] = String::new());
            with(&|n| n.input[i] = "x".into());
        }
    }
    for (ti, _) in g.initializer.iter().enumerate() {
        for dims in [vec![], vec![0], vec![1, 1, 1, 1, 1], vec![3, 7]] {
            let mut m2 = m.clone();
            let t: &mut TensorProto = &mut m2.graph.as_mut().unwrap().initializer[ti];
            let n: i64 = dims.iter().product();
            t.dims = dims.clone();
            t.raw_data.clear();
            t.int64_data = vec![1; n as usize];
            t.float_data = vec![1.0; n as usize];
            out.push(m2);
        }
    }
    out
}

#[test]
fn mutated_models_never_panic() {
    let mut count = 0;
    let mut errors = 0;
    for base in base_models() {
        let ok = import_model(&base, None, &ImportOptions::default()).expect("base model imports");
        assert!(ok.graph.len() > 2);
        for m in mutations(&base) {
            count += 1;
            let r = catch_unwind(AssertUnwindSafe(|| {
                match import_model(&m, None, &ImportOptions::default()) {
                    Err(_) => false,
                    Ok(imp) => {
                        let ins: Vec<Tensor> = imp
                            .graph
                            .inputs()
                            .iter()
                            .map(|&i| Tensor::full(imp.graph.node(i).shape.clone(), 0.25))
                            .collect();
                        let _ = passes::interpret::run(&imp.graph, &ins);
                        true
                    }
                }
            }));
            match r {
                Ok(true) => {}
                Ok(false) => errors += 1,
                Err(_) => panic!(
                    "panic on mutated model:\n{:#?}",
                    m.graph.as_ref().unwrap().node
                ),
            }
        }
    }
    eprintln!("{count} mutated models, {errors} rejected with an error");
    assert!(errors > count / 4);
}
