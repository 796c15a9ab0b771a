//! `fhec interpret MODEL.onnx --input X [--input Y ...] [--output OUT.pb] [--json]`: run the
//! imported IR with the f64 reference interpreter on PNG images or TensorProto `.pb` files.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use compiler::onnx::{graph_inputs, import_model, load_model, tensor, ImportOptions};
use passes::ir::Tensor;
use serde_json::json;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::type_proto;

use compiler::image::{load_png, parse_triple, CIFAR10};

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// A CIFAR PNG or a TensorProto .pb, once per graph input, in order.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Write the (first) output tensor as a TensorProto .pb.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print `{"output": [...], "shape": [...], "top1": i}` on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = load_model(&a.model)?;
    let real = graph_inputs(&model);
    if real.len() != a.input.len() {
        let names: Vec<&str> = real.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "the model has {} graph input(s) {names:?}; {} --input given",
            real.len(),
            a.input.len()
        );
    }
    let meta = |k: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.value.clone())
    };
    let mut bindings = HashMap::new();
    for (vi, path) in real.iter().zip(&a.input) {
        let is_png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let t = if is_png {
            let hw = declared_hw(vi).unwrap_or([32, 32]);
            let (mean, std) = match (meta("mean"), meta("std")) {
                (Some(m), Some(s)) => (parse_triple(&m)?, parse_triple(&s)?),
                _ => {
                    eprintln!(
                        "warning: the model has no mean/std metadata; using raw [0, 1] pixels"
                    );
                    ([0.0; 3], [1.0; 3])
                }
            };
            load_png(path, hw, mean, std)?
        } else {
            tensor::read_pb(path).with_context(|| format!("reading {}", path.display()))?
        };
        bindings.insert(vi.name.clone(), t);
    }
    let dir = a.model.parent().and_then(|d| d.to_str());
    let opts = ImportOptions {
        bindings: bindings.clone(),
        ..Default::default()
    };
    let imp = import_model(&model, dir, &opts)
        .with_context(|| format!("importing {}", a.model.display()))?;
    let ins: Vec<Tensor> = imp
        .graph
        .inputs()
        .iter()
        .map(|&id| bindings[&imp.graph.node(id).name].clone())
        .collect();
    eprintln!("running {} nodes ({} Poly) ...", imp.graph.len(), imp.polys);
    let outs = passes::interpret::run(&imp.graph, &ins)?;
    if let [x] = ins.as_slice() {
        // Plaintext is exact either way; say what encryption would make of these values.
        let ranges = compiler::ranges::check(&imp.graph, x, &Default::default())?;
        if let Some(m) = ranges.saturation_message() {
            eprintln!("warning: under encryption, {m}");
        }
        if let Some(m) = ranges.fit_message() {
            eprintln!("note: {m}");
        }
    }
    if outs.len() > 1 {
        eprintln!(
            "warning: the model has {} outputs; showing the first",
            outs.len()
        );
    }
    let out = outs
        .into_iter()
        .next()
        .context("the model has no outputs")?;
    if let Some(p) = &a.output {
        tensor::write_pb(p, &out, &imp.outputs[0])?;
        eprintln!("wrote {}", p.display());
    }
    let row = out
        .shape()
        .last()
        .copied()
        .unwrap_or(1)
        .max(1)
        .min(out.len());
    let top1 = super::top1(out.data(), row);
    if a.json {
        println!(
            "{}",
            json!({"output": out.data(), "shape": out.shape(), "top1": top1})
        );
        return Ok(());
    }
    println!("output shape {:?}", out.shape());
    for (i, v) in out.data().iter().enumerate() {
        let class = if row == 10 { CIFAR10[i % 10] } else { "" };
        println!("{i:4} {class:>10} {v:12.6}");
    }
    let class = if row == 10 {
        format!(" ({})", CIFAR10[top1])
    } else {
        String::new()
    };
    println!("top-1: {top1}{class}");
    Ok(())
}

/// `[H, W]` of a declared NCHW input, when fixed.
fn declared_hw(vi: &tract_onnx::pb::ValueInfoProto) -> Option<[usize; 2]> {
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let d = &tt.shape.as_ref()?.dim;
    let v = |i: usize| match d.get(i)?.value {
        Some(dimension::Value::DimValue(x)) if x > 0 => Some(x as usize),
        _ => None,
    };
    if d.len() == 4 {
        Some([v(2)?, v(3)?])
    } else {
        None
    }
}
