//! Our ONNX importer + f64 interpreter against tract's own execution (`into_optimized`):
//! every committed model (`models/onnx/*.onnx`, `tests/data/*.onnx`, globbed at test time)
//! on random inputs, `<name>_input.pb` / `<name>_output.pb` pairs where they exist, and a
//! set of hand-built models covering the op set. Max abs error must stay below 1e-4 of the
//! reference output's range.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use compiler::onnx::builder::{attr_f, attr_i, attr_ints, attr_s, ModelBuilder};
use compiler::onnx::{import_model, load_model, tensor, ImportOptions};
use compiler::tract_onnx;
use compiler::tract_onnx::pb::tensor_shape_proto::dimension;
use compiler::tract_onnx::pb::{type_proto, ModelProto, ValueInfoProto};
use compiler::tract_onnx::prelude::{
    Datum, Framework, InferenceFact, InferenceModelExt, IntoRunnable, IntoTValue, TValue, TVec,
};
use passes::ir::Tensor;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Deterministic xorshift64* uniform numbers in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        v as f64 / (1u64 << 52) as f64 - 1.0
    }
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        // Round through f32 so both sides see the same input.
        Tensor::new(
            shape.to_vec(),
            (0..n).map(|_| self.next() as f32 as f64).collect(),
        )
        .unwrap()
    }
}

fn real_inputs(m: &ModelProto) -> Vec<ValueInfoProto> {
    let g = m.graph.as_ref().expect("graph");
    let inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|v| !inits.contains(&v.name.as_str()))
        .cloned()
        .collect()
}

/// Declared dims with symbolic ones chosen: batch 2 on axis 0, 1 elsewhere.
fn concrete_shape(vi: &ValueInfoProto) -> Vec<usize> {
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        panic!("input {} has no tensor type", vi.name)
    };
    let dims = &tt.shape.as_ref().expect("input shape").dim;
    dims.iter()
        .enumerate()
        .map(|(i, d)| match d.value {
            Some(dimension::Value::DimValue(v)) if v > 0 => v as usize,
            _ if i == 0 => 2,
            _ => 1,
        })
        .collect()
}

/// Runs tract; `ints[i]` marks INT64 inputs.
fn tract_run(path: &Path, inputs: &[Tensor], ints: &[bool]) -> Vec<Tensor> {
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .expect("tract loads the model");
    for (i, t) in inputs.iter().enumerate() {
        let dt = if ints[i] {
            i64::datum_type()
        } else {
            f32::datum_type()
        };
        let fact = InferenceFact::dt_shape(dt, t.shape());
        model = model.with_input_fact(i, fact).expect("input fact");
    }
    let plan = model
        .into_optimized()
        .expect("tract optimises")
        .into_runnable()
        .expect("runnable");
    let ins: TVec<TValue> = inputs
        .iter()
        .zip(ints)
        .map(|(t, &int)| {
            let tt = if int {
                let d: Vec<i64> = t.data().iter().map(|&x| x as i64).collect();
                tract_onnx::prelude::Tensor::from_shape(t.shape(), &d)
            } else {
                let d: Vec<f32> = t.data().iter().map(|&x| x as f32).collect();
                tract_onnx::prelude::Tensor::from_shape(t.shape(), &d)
            };
            tt.expect("tensor").into_tvalue()
        })
        .collect();
    let outs = plan.run(ins).expect("tract runs");
    outs.iter()
        .map(|o| {
            let o = o.cast_to::<f64>().expect("cast");
            let v = o.to_plain_array_view::<f64>().expect("view");
            Tensor::new(o.shape().to_vec(), v.iter().copied().collect()).unwrap()
        })
        .collect()
}

/// Our import + interpretation; `values` holds a tensor for every graph input.
fn ours(m: &ModelProto, dir: &Path, values: &HashMap<String, Tensor>) -> Vec<Tensor> {
    let opts = ImportOptions {
        bindings: values.clone(),
        ..Default::default()
    };
    let imp = import_model(m, dir.to_str(), &opts).unwrap_or_else(|e| panic!("import: {e}"));
    let ins: Vec<Tensor> = imp
        .graph
        .inputs()
        .iter()
        .map(|&i| values[&imp.graph.node(i).name].clone())
        .collect();
    passes::interpret::run(&imp.graph, &ins).unwrap_or_else(|e| panic!("interpret: {e}"))
}

/// Max abs error relative to the reference's range (or magnitude when it has one value).
/// A non-finite reference (a model that overflows) must be matched position by position.
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "output shapes differ");
    if want.data().iter().any(|v| !v.is_finite()) {
        eprintln!(
            "warning: the reference output is non-finite (the model overflows on this input)"
        );
        let same = got
            .data()
            .iter()
            .zip(want.data())
            .all(|(a, b)| a.is_finite() == b.is_finite());
        assert!(same, "non-finite outputs at different positions");
        let (g, w): (Vec<f64>, Vec<f64>) = got
            .data()
            .iter()
            .zip(want.data())
            .filter(|(a, _)| a.is_finite())
            .map(|(a, b)| (*a, *b))
            .unzip();
        if g.is_empty() {
            return 0.0;
        }
        return rel_err(&Tensor::vector(g), &Tensor::vector(w));
    }
    let (lo, hi) = want
        .data()
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let mag = want.data().iter().fold(0.0f64, |m, &v| m.max(v.abs()));
    let scale = if hi > lo {
        hi - lo
    } else if mag > 0.0 {
        mag
    } else {
        1.0
    };
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "non-finite output"
    );
    got.max_abs_diff(want).unwrap() / scale
}

/// Compares us with tract on random inputs; returns the worst relative error.
fn is_int64(vi: &ValueInfoProto) -> bool {
    matches!(vi.r#type.as_ref().and_then(|t| t.value.as_ref()),
        Some(type_proto::Value::TensorType(t)) if t.elem_type == 7)
}

/// Compares us with tract on random inputs; returns the worst relative error.
fn check_model(path: &Path, seed: u64) -> f64 {
    check_model_with(path, seed, &HashMap::new())
}

/// Like `check_model`, with given values for some inputs (e.g. shape operands).
fn check_model_with(path: &Path, seed: u64, fixed: &HashMap<String, Tensor>) -> f64 {
    let m = load_model(path).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(seed);
    let vis = real_inputs(&m);
    let ints: Vec<bool> = vis.iter().map(is_int64).collect();
    let inputs: Vec<(String, Tensor)> = vis
        .iter()
        .map(|vi| {
            let t = fixed.get(&vi.name).cloned();
            (
                vi.name.clone(),
                t.unwrap_or_else(|| rng.tensor(&concrete_shape(vi))),
            )
        })
        .collect();
    let values: HashMap<String, Tensor> = inputs.iter().cloned().collect();
    let got = ours(&m, path.parent().unwrap(), &values);
    let ts: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    let want = tract_run(path, &ts, &ints);
    assert_eq!(got.len(), want.len(), "output counts differ");
    got.iter()
        .zip(&want)
        .map(|(g, w)| rel_err(g, w))
        .fold(0.0, f64::max)
}

fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "onnx"));
    v.sort();
    v
}

#[test]
fn committed_models_match_tract() {
    let files: Vec<PathBuf> = [root().join("models/onnx"), root().join("tests/data")]
        .iter()
        .flat_map(|d| onnx_files(d))
        .collect();
    eprintln!("{} committed model(s)", files.len());
    let mut failures = vec![];
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let r = std::panic::catch_unwind(|| check_model(f, 0x9e37_79b9 + i as u64));
        match r {
            Ok(e) if e < 1e-4 => eprintln!("ok   {name}: rel err {e:.2e}"),
            Ok(e) => failures.push(format!("{name}: rel err {e:.2e}")),
            Err(p) => failures.push(format!(
                "{name}: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "panic".into())
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "models differing from tract:\n{}",
        failures.join("\n")
    );
}

/// `<stem>_input.pb` (or `_input_0.pb`, `_input_1.pb`, ...) and `<stem>_output.pb` next to or
/// under tests/data for a model: our output on the stored input matches the stored output.
#[test]
fn stored_input_output_pairs_match() {
    let data = root().join("tests/data");
    let models: Vec<PathBuf> = [root().join("models/onnx"), data.clone()]
        .iter()
        .flat_map(|d| onnx_files(d))
        .collect();
    let mut checked = 0;
    for m in models {
        let stem = m.file_stem().unwrap().to_string_lossy().to_string();
        let out = data.join(format!("{stem}_output.pb"));
        if !out.exists() {
            continue;
        }
        let proto = load_model(&m).unwrap();
        let names: Vec<String> = real_inputs(&proto).iter().map(|v| v.name.clone()).collect();
        let mut values = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            let single = data.join(format!("{stem}_input.pb"));
            let p = if names.len() == 1 && single.exists() {
                single
            } else {
                data.join(format!("{stem}_input_{i}.pb"))
            };
            values.insert(
                n.clone(),
                tensor::read_pb(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            );
        }
        let got = ours(&proto, m.parent().unwrap(), &values);
        let want = tensor::read_pb(&out).unwrap();
        let e = rel_err(&got[0], &want);
        eprintln!("pair {stem}: rel err {e:.2e}");
        assert!(e < 1e-4, "{stem}: stored output differs, rel err {e:.2e}");
        checked += 1;
    }
    eprintln!("{checked} stored pair(s) checked");
}

fn t(shape: &[usize], rng: &mut Rng) -> Tensor {
    rng.tensor(shape)
}

fn positive(shape: &[usize], rng: &mut Rng) -> Tensor {
    rng.tensor(shape).map(|x| 0.5 + x.abs())
}

/// Hand-built models covering every op, written to a temp dir and compared with tract.
fn synthetic_models() -> Vec<(&'static str, ModelBuilder)> {
    let mut r = Rng(7);
    let mut v = vec![];

    // Conv (SAME_UPPER, stride 2, bias) -> BN -> Relu -> depthwise Conv -> AveragePool x2
    // -> channel Pad -> ::2 Slice -> GlobalAveragePool -> Flatten -> Gemm(transB, alpha, beta).
    let mut b = ModelBuilder::new(13);
    b.input_dims("x", &[None, Some(3), Some(9), Some(9)])
        .init("w1", &t(&[4, 3, 3, 3], &mut r))
        .init("b1", &t(&[4], &mut r))
        .init("g", &positive(&[4], &mut r))
        .init("be", &t(&[4], &mut r))
        .init("mu", &t(&[4], &mut r))
        .init("var", &positive(&[4], &mut r))
        .init("wd", &t(&[4, 1, 3, 3], &mut r))
        .init_i64("pads", &[8], &[0, 2, 0, 0, 0, 2, 0, 0])
        .init_i64("st", &[2], &[0, 0])
        .init_i64("en", &[2], &[i64::MAX, i64::MAX])
        .init_i64("ax", &[2], &[2, 3])
        .init_i64("sp", &[2], &[2, 2])
        .init("fw", &t(&[5, 8], &mut r))
        .init("fb", &t(&[5], &mut r))
        .node(
            "Conv",
            &["x", "w1", "b1"],
            &["c1"],
            vec![
                attr_s("auto_pad", "SAME_UPPER"),
                attr_ints("strides", &[2, 2]),
                attr_ints("kernel_shape", &[3, 3]),
            ],
        )
        .node(
            "BatchNormalization",
            &["c1", "g", "be", "mu", "var"],
            &["bn"],
            vec![attr_f("epsilon", 1e-3)],
        )
        .node("Relu", &["bn"], &["r1"], vec![])
        .node(
            "Conv",
            &["r1", "wd"],
            &["c2"],
            vec![attr_i("group", 4), attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node(
            "AveragePool",
            &["c2"],
            &["p1"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        )
        .node(
            "AveragePool",
            &["p1"],
            &["p2"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("pads", &[0, 0, 1, 1]),
                attr_i("count_include_pad", 1),
            ],
        )
        .node("Pad", &["p2", "pads"], &["pd"], vec![])
        .node("Slice", &["pd", "st", "en", "ax", "sp"], &["sl"], vec![])
        .node("GlobalAveragePool", &["sl"], &["gap"], vec![])
        .node("Flatten", &["gap"], &["fl"], vec![])
        .node(
            "Gemm",
            &["fl", "fw", "fb"],
            &["y"],
            vec![
                attr_i("transB", 1),
                attr_f("alpha", 0.5),
                attr_f("beta", 2.0),
            ],
        )
        .output("y");
    v.push(("cnn_ops", b));

    // MatMul + bias -> rank-2 BN -> quadratic (Pow form) -> ReduceMean keepdims -> Sub.
    let mut b = ModelBuilder::new(13);
    b.input("x", &[3, 6])
        .init("w", &t(&[6, 5], &mut r))
        .init("bias", &t(&[5], &mut r))
        .init("g", &positive(&[5], &mut r))
        .init("be", &t(&[5], &mut r))
        .init("mu", &t(&[5], &mut r))
        .init("var", &positive(&[5], &mut r))
        .init("two", &Tensor::scalar(2.0))
        .init("c2", &Tensor::scalar(0.25))
        .init("c1", &t(&[5], &mut r))
        .init("c0", &Tensor::scalar(0.1))
        .node("MatMul", &["x", "w"], &["m"], vec![])
        .node("Add", &["m", "bias"], &["h0"], vec![])
        .node(
            "BatchNormalization",
            &["h0", "g", "be", "mu", "var"],
            &["h"],
            vec![],
        )
        .node("Pow", &["h", "two"], &["sq"], vec![])
        .node("Mul", &["sq", "c2"], &["q2"], vec![])
        .node("Mul", &["h", "c1"], &["q1"], vec![])
        .node("Add", &["q2", "q1"], &["q"], vec![])
        .node("Add", &["q", "c0"], &["p"], vec![])
        .node(
            "ReduceMean",
            &["p"],
            &["mean"],
            vec![attr_ints("axes", &[1]), attr_i("keepdims", 1)],
        )
        .node("Sub", &["p", "mean"], &["y"], vec![])
        .output("y");
    v.push(("mlp_poly", b));

    // Opset 18: ReduceMean with an axes input, keepdims 0, per-channel Horner polynomial,
    // and torch's Shape/Gather/Unsqueeze/Concat/Reshape flatten.
    let mut b = ModelBuilder::new(18);
    b.input_dims("x", &[None, Some(2), Some(4), Some(4)])
        .init("a", &t(&[2, 1, 1], &mut r))
        .init("c", &t(&[1, 2, 1, 1], &mut r))
        .init("d", &Tensor::scalar(0.3))
        .init_i64("axes", &[2], &[2, 3])
        .init_i64("zero", &[], &[0])
        .init_i64("ax0", &[1], &[0])
        .init_i64("m1", &[1], &[-1])
        .node("Mul", &["a", "x"], &["t1"], vec![])
        .node("Add", &["t1", "c"], &["t2"], vec![])
        .node("Mul", &["t2", "x"], &["t3"], vec![])
        .node("Add", &["t3", "d"], &["p"], vec![])
        .node("Shape", &["p"], &["s"], vec![])
        .node("Gather", &["s", "zero"], &["n"], vec![])
        .node("Unsqueeze", &["n", "ax0"], &["n1"], vec![])
        .node("Concat", &["n1", "m1"], &["shape"], vec![attr_i("axis", 0)])
        .node("Reshape", &["p", "shape"], &["flat"], vec![])
        .node(
            "ReduceMean",
            &["p", "axes"],
            &["rm"],
            vec![attr_i("keepdims", 0)],
        )
        .node("Div", &["rm", "d"], &["y2"], vec![])
        .node("Identity", &["flat"], &["y"], vec![])
        .output("y")
        .output("y2");
    v.push(("opset18_shapes", b));
    v
}

#[test]
fn synthetic_models_match_tract() {
    let dir = std::env::temp_dir().join(format!("fhec-synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (name, b)) in synthetic_models().into_iter().enumerate() {
        let p = dir.join(format!("{name}.onnx"));
        std::fs::write(&p, b.encode()).unwrap();
        let e = check_model(&p, 1000 + i as u64);
        eprintln!("{name}: rel err {e:.2e}");
        assert!(e < 1e-4, "{name}: rel err {e:.2e}");
    }
    // Weights and shape operands as graph inputs: Conv weight, Pad pads, Slice
    // starts/ends/axes/steps and Reshape's shape are given by the caller and bound. tract
    // wants them constant, so it runs the same graph with initializers instead.
    let mut rng = Rng(99);
    let (x, w) = (rng.tensor(&[1, 2, 6, 6]), rng.tensor(&[4, 2, 3, 3]));
    let ints: [(&str, Vec<i64>); 6] = [
        ("pads", vec![0, 2, 0, 0, 0, 2, 0, 0]),
        ("starts", vec![0, 5]),
        ("ends", vec![i64::MAX, i64::MIN]),
        ("axes", vec![2, -1]),
        ("steps", vec![2, -2]),
        ("shape", vec![1, -1]),
    ];
    let body = |b: &mut ModelBuilder| {
        b.node(
            "Conv",
            &["x", "w"],
            &["c"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        )
        .node("Pad", &["c", "pads"], &["p"], vec![])
        .node(
            "Slice",
            &["p", "starts", "ends", "axes", "steps"],
            &["s"],
            vec![],
        )
        .node("Reshape", &["s", "shape"], &["y"], vec![])
        .output("y");
    };
    let mut as_inputs = ModelBuilder::new(13);
    as_inputs
        .input("x", &[1, 2, 6, 6])
        .input("w", &[4, 2, 3, 3]);
    let mut as_inits = ModelBuilder::new(13);
    as_inits.input("x", &[1, 2, 6, 6]).init("w", &w);
    let mut values: HashMap<String, Tensor> = [("x".to_string(), x.clone()), ("w".to_string(), w)]
        .into_iter()
        .collect();
    for (name, v) in &ints {
        as_inputs.input_i64(name, &[v.len() as i64]);
        as_inits.init_i64(name, &[v.len() as i64], v);
        let f: Vec<f64> = v.iter().map(|&i| i as f64).collect();
        values.insert(name.to_string(), Tensor::vector(f));
    }
    body(&mut as_inputs);
    body(&mut as_inits);
    let p = dir.join("operand_inits.onnx");
    std::fs::write(&p, as_inits.encode()).unwrap();
    let got = ours(&as_inputs.build(), &dir, &values);
    let want = tract_run(&p, &[x], &[false]);
    assert_eq!(got[0].shape(), &[1, 72]);
    let e = rel_err(&got[0], &want[0]);
    eprintln!("operand_inputs: rel err {e:.2e}");
    assert!(e < 1e-4, "operand_inputs: rel err {e:.2e}");

    // The polynomial trees were matched.
    let m = load_model(&dir.join("mlp_poly.onnx")).unwrap();
    let imp = import_model(&m, None, &ImportOptions::default()).unwrap();
    assert_eq!(imp.polys, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
