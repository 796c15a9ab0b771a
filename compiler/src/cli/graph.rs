//! `fhec graph MODEL.onnx [--json] [--input-shape ...]`: import and list the IR nodes.

use std::path::PathBuf;

use anyhow::Context;
use std::collections::HashMap;

use compiler::onnx::{graph_inputs, import_model, load_model, tensor, ImportOptions};
use passes::ir::Op;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Fixed shape of a graph input, e.g. 1,3,32,32 (repeat once per input, in order).
    #[arg(long = "input-shape", value_parser = super::parse_shape)]
    input_shape: Vec<Vec<usize>>,
    /// Values for graph inputs (TensorProto .pb, in input order), needed when weights or
    /// shape operands are graph inputs.
    #[arg(long)]
    input: Vec<PathBuf>,
    /// Keep degree-2 Add/Mul trees as they are instead of matching them into Poly nodes.
    #[arg(long)]
    no_poly: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = load_model(&a.model)?;
    let mut bindings = HashMap::new();
    for (vi, p) in graph_inputs(&model).iter().zip(&a.input) {
        let t = tensor::read_pb(p).with_context(|| format!("reading {}", p.display()))?;
        bindings.insert(vi.name.clone(), t);
    }
    let opts = ImportOptions {
        input_shapes: a.input_shape.into_iter().map(Some).collect(),
        bindings,
        match_polynomials: !a.no_poly,
    };
    let dir = a.model.parent().and_then(|d| d.to_str());
    let imp = import_model(&model, dir, &opts)
        .with_context(|| format!("importing {}", a.model.display()))?;
    let g = &imp.graph;
    let order = g.topo_order()?;
    if a.json {
        let nodes: Vec<_> = order
            .iter()
            .map(|&id| {
                let n = g.node(id);
                let mut row = json!({"op": n.op.kind(), "name": n.name, "shape": n.shape, "params": n.op.param_count()});
                if let Op::Poly(p) = &n.op {
                    row["coefficients"] = json!(p.coefficients());
                }
                row
            })
            .collect();
        let out = json!({
            "nodes": nodes,
            "inputs": g.inputs().iter().map(|&i| g.node(i).name.clone()).collect::<Vec<_>>(),
            "outputs": imp.outputs,
            "params": g.param_count(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows: Vec<[String; 4]> = order
        .iter()
        .map(|&id| {
            let n = g.node(id);
            [
                n.op.kind().to_string(),
                n.name.clone(),
                format!("{:?}", n.shape),
                n.op.param_count().to_string(),
            ]
        })
        .collect();
    let head = ["op", "name", "output shape", "params"].map(String::from);
    let mut w = [0usize; 4];
    for r in std::iter::once(&head).chain(&rows) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    for r in std::iter::once(&head).chain(&rows) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    }
    println!(
        "{} nodes, {} parameters, {} Poly node(s) matched",
        rows.len(),
        g.param_count(),
        imp.polys
    );
    Ok(())
}
