//! ONNX import: reads a model with tract-onnx's protobuf API (`proto_model_for_path`, not
//! tract's own graph), binds graph inputs used as constants, imports node by node (one
//! function per op in `ops/`, constant folding as it goes), then runs the polynomial
//! matcher. Produces a shape-checked `passes::ir::Graph`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use passes::ir::{Graph, Tensor};
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::type_proto;
use tract_onnx::pb::{ModelProto, ValueInfoProto};

pub mod attrs;
pub mod builder;
pub mod context;
mod error;
pub mod ops;
pub mod poly;
pub mod tensor;

use context::{Ctx, Value};
pub use error::ImportError;

/// How to import a model.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Fixed shapes for the graph inputs, in order (`None`: the declared shape).
    pub input_shapes: Vec<Option<Vec<usize>>>,
    /// Values of graph inputs, by name. Inputs that feed constant operands (weights, shape
    /// operands such as Reshape's shape) are bound to them; the others only take their shape.
    pub bindings: HashMap<String, Tensor>,
    /// Replace degree-2 Add/Sub/Mul/Div trees by `Poly` nodes.
    pub match_polynomials: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            input_shapes: vec![],
            bindings: HashMap::new(),
            match_polynomials: true,
        }
    }
}

/// A graph input of the ONNX model (initializers excluded).
#[derive(Clone, Debug, PartialEq)]
pub struct InputInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// Bound to a given value at import (it is then not an input of the IR graph).
    pub bound: bool,
}

/// The result of importing a model.
#[derive(Debug)]
pub struct Imported {
    pub graph: Graph,
    /// The model's graph inputs in order; the unbound ones are `graph.inputs()`.
    pub inputs: Vec<InputInfo>,
    /// Output tensor names, in the order of `graph.outputs()`.
    pub outputs: Vec<String>,
    /// `metadata_props` of the model (e.g. `mean`, `std`).
    pub metadata: Vec<(String, String)>,
    /// Number of `Poly` nodes the matcher created.
    pub polys: usize,
}

impl Imported {
    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads and decodes an ONNX file, telling a non-ONNX file apart from an I/O error.
pub fn load_model(path: &Path) -> Result<ModelProto, ImportError> {
    let p = path.display().to_string();
    std::fs::metadata(path).map_err(|source| ImportError::Io {
        path: p.clone(),
        source,
    })?;
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: p.clone(),
        source,
    })?;
    model_from_bytes(&bytes, &p)
}

/// Decodes an ONNX model from the bytes of a file (`what` names it in errors).
pub fn model_from_bytes(bytes: &[u8], what: &str) -> Result<ModelProto, ImportError> {
    let p = what.to_string();
    let model =
        <ModelProto as prost::Message>::decode(bytes).map_err(|e| ImportError::NotOnnx {
            path: p.clone(),
            reason: format!("{e:#}"),
        })?;
    let ok = model
        .graph
        .as_ref()
        .is_some_and(|g| !g.node.is_empty() || !g.output.is_empty())
        && model.ir_version > 0;
    if !ok {
        return Err(ImportError::NotOnnx {
            path: p,
            reason: "no graph or IR version found".into(),
        });
    }
    Ok(model)
}

/// The model's graph inputs, initializers excluded, in order.
pub fn graph_inputs(model: &ModelProto) -> Vec<&ValueInfoProto> {
    let Some(g) = model.graph.as_ref() else {
        return vec![];
    };
    let init: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|vi| !init.contains(vi.name.as_str()))
        .collect()
}

/// Loads and imports the model at `path`.
pub fn import_path(path: &Path, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let model = load_model(path)?;
    let dir = path.parent().and_then(|d| d.to_str());
    import_model(&model, dir, opts)
}

/// The declared dims of a value (`None` per symbolic or unknown dim), or `None` if no shape.
fn declared_dims(vi: &ValueInfoProto) -> Option<Vec<Option<usize>>> {
    let ty = vi.r#type.as_ref()?;
    let Some(type_proto::Value::TensorType(tt)) = &ty.value else {
        return None;
    };
    let shape = tt.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v > 0 => Some(*v as usize),
                _ => None,
            })
            .collect(),
    )
}

fn dims_text(vi: &ValueInfoProto) -> String {
    let ty = vi.r#type.as_ref().and_then(|t| t.value.as_ref());
    let Some(type_proto::Value::TensorType(tt)) = ty else {
        return "(no type)".into();
    };
    let Some(s) = &tt.shape else {
        return "(no shape)".into();
    };
    let parts: Vec<String> = s
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) => v.to_string(),
            Some(dimension::Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Imports a decoded model. `model_dir` locates external tensor data.
pub fn import_model(
    model: &ModelProto,
    model_dir: Option<&str>,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Model("the model has no graph".into()))?;
    // Unsupported ops first: the most useful message for a model we cannot handle.
    let mut entries = Vec::with_capacity(g.node.len());
    for node in &g.node {
        let e = ops::lookup(node).ok_or_else(|| ImportError::UnsupportedOp {
            op: if node.domain.is_empty() {
                node.op_type.clone()
            } else {
                format!("{}:{}", node.domain, node.op_type)
            },
            node: attrs::node_name(node),
            supported: ops::supported_list(),
        })?;
        entries.push(e);
    }
    let mut cx = Ctx::new();
    let init: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    for t in &g.initializer {
        let v = match opts.bindings.get(&t.name) {
            Some(b) => b.clone(),
            None => tensor::from_proto(t, model_dir)?,
        };
        cx.values.insert(t.name.clone(), Value::Const(v));
    }
    // Which tensors must be constant (weights, shape operands), and who needs them.
    let mut needed: HashMap<String, String> = HashMap::new();
    for (node, e) in g.node.iter().zip(&entries).rev() {
        let out_needed = node.output.iter().find_map(|o| needed.get(o).cloned());
        let why = |slot: usize| {
            format!(
                "input {slot} of {} node '{}'",
                node.op_type,
                attrs::node_name(node)
            )
        };
        for (slot, name) in node.input.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            if e.const_slots.contains(&slot) {
                needed.entry(name.clone()).or_insert_with(|| why(slot));
            } else if e.needs_data {
                if let Some(w) = &out_needed {
                    needed.entry(name.clone()).or_insert_with(|| w.clone());
                }
            }
        }
    }
    let mut inputs = vec![];
    let real: Vec<&ValueInfoProto> = g
        .input
        .iter()
        .filter(|vi| !init.contains(vi.name.as_str()))
        .collect();
    for (i, vi) in real.iter().enumerate() {
        let name = vi.name.clone();
        if let Some(why) = needed.get(&name) {
            let b = opts.bindings.get(&name).ok_or_else(|| {
                ImportError::Model(format!(
                    "graph input '{name}' is used as a constant ({why}); give its value \
                     (e.g. --input FILE.pb for every graph input, in order)"
                ))
            })?;
            inputs.push(InputInfo {
                name: name.clone(),
                shape: b.shape().to_vec(),
                bound: true,
            });
            cx.values.insert(name, Value::Const(b.clone()));
            continue;
        }
        let declared = declared_dims(vi);
        let shape = match opts.input_shapes.get(i).cloned().flatten() {
            Some(s) => {
                if let Some(d) = &declared {
                    let fits = d.len() == s.len()
                        && d.iter().zip(&s).all(|(a, b)| a.is_none_or(|a| a == *b));
                    if !fits {
                        return Err(ImportError::Model(format!(
                            "input '{name}' is declared as {}, the given shape {s:?} does not fit",
                            dims_text(vi)
                        )));
                    }
                }
                s
            }
            None => match (opts.bindings.get(&name), &declared) {
                (Some(b), _) => b.shape().to_vec(),
                (None, Some(d)) if d.iter().all(|x| x.is_some()) => {
                    d.iter().map(|x| x.unwrap_or(1)).collect()
                }
                (None, d) => {
                    let example = match d {
                        Some(d) if !d.is_empty() => d
                            .iter()
                            .map(|x| x.unwrap_or(1).to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        _ => "1,3,32,32".into(),
                    };
                    return Err(ImportError::DynamicShape {
                        name,
                        shape: dims_text(vi),
                        example,
                    });
                }
            },
        };
        let id = cx.graph.add_input(name.clone(), shape.clone());
        cx.values.insert(name.clone(), Value::Node(id));
        inputs.push(InputInfo {
            name,
            shape,
            bound: false,
        });
    }
    for (node, e) in g.node.iter().zip(&entries) {
        let v = (e.import)(&mut cx, node)?;
        if let Some(o) = node.output.first() {
            cx.values.insert(o.clone(), v);
        }
    }
    let mut outs = vec![];
    let mut names = vec![];
    for vo in &g.output {
        let v = cx.values.get(&vo.name).cloned().ok_or_else(|| {
            ImportError::Model(format!(
                "graph output '{}' is not produced by any node",
                vo.name
            ))
        })?;
        let id = match v {
            Value::Node(id) => id,
            Value::Const(t) => cx.graph.add_const(vo.name.clone(), t),
        };
        outs.push(id);
        names.push(vo.name.clone());
    }
    let mut graph = cx.graph;
    graph.set_outputs(outs);
    graph.remove_dead();
    let polys = if opts.match_polynomials {
        poly::match_polynomials(&mut graph)
    } else {
        0
    };
    graph
        .validate()
        .map_err(|e| ImportError::Model(format!("internal: invalid graph after import: {e}")))?;
    let metadata = model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    Ok(Imported {
        graph,
        inputs,
        outputs: names,
        metadata,
        polys,
    })
}

#[cfg(test)]
mod tests {
    use super::builder::{attr_i, attr_ints, attr_t, ModelBuilder};
    use super::*;
    use passes::interpret::run;
    use passes::ir::Op;

    fn seq(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::new(shape.to_vec(), (0..n).map(|i| i as f64).collect()).unwrap()
    }

    fn ops(g: &Graph) -> Vec<&'static str> {
        g.topo_order()
            .unwrap()
            .into_iter()
            .map(|i| g.node(i).op.kind())
            .collect()
    }

    #[test]
    fn shape_subgraphs_fold_away() {
        // torch's flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])), then a
        // Transpose'd, Cast constant and a ConstantOfShape added.
        let mut b = ModelBuilder::new(13);
        b.input("x", &[2, 3, 2, 2])
            .init_i64("zero", &[], &[0])
            .init_i64("axes0", &[1], &[0])
            .init_i64("minus1", &[1], &[-1])
            .node("Shape", &["x"], &["s"], vec![])
            .node("Gather", &["s", "zero"], &["n"], vec![attr_i("axis", 0)])
            .node("Unsqueeze", &["n", "axes0"], &["n1"], vec![])
            .node(
                "Concat",
                &["n1", "minus1"],
                &["shape"],
                vec![attr_i("axis", 0)],
            )
            .node("Reshape", &["x", "shape"], &["flat"], vec![])
            .node(
                "Constant",
                &[],
                &["k"],
                vec![attr_t(
                    "value",
                    super::tensor::to_proto(&seq(&[12, 1]), "k"),
                )],
            )
            .node(
                "Transpose",
                &["k"],
                &["kt"],
                vec![attr_ints("perm", &[1, 0])],
            )
            .node("Cast", &["kt"], &["kc"], vec![attr_i("to", 1)])
            .node("Mul", &["flat", "kc"], &["m"], vec![])
            .node("Shape", &["m"], &["ms"], vec![])
            .node(
                "ConstantOfShape",
                &["ms"],
                &["ones"],
                vec![attr_t(
                    "value",
                    super::tensor::to_proto(&Tensor::vector(vec![1.0]), "v"),
                )],
            )
            .node("Add", &["m", "ones"], &["y"], vec![])
            .output("y");
        let imp = import_model(&b.build(), None, &ImportOptions::default()).unwrap();
        assert_eq!(
            ops(&imp.graph),
            vec!["Input", "Reshape", "Constant", "Mul", "Constant", "Add"]
        );
        let out = run(&imp.graph, &[seq(&[2, 3, 2, 2])]).unwrap();
        assert_eq!(out[0].shape(), &[2, 12]);
        assert_eq!(out[0].data()[13], 13.0 * 1.0 + 1.0);
        assert_eq!(out[0].data()[23], 23.0 * 11.0 + 1.0);
    }

    #[test]
    fn graph_inputs_as_constant_operands_are_bound() {
        // Conv weight and Reshape shape come from graph inputs.
        let mut b = ModelBuilder::new(13);
        b.input("x", &[1, 1, 2, 2])
            .input("w", &[2, 1, 1, 1])
            .input_dims("shape", &[Some(2)])
            .node("Conv", &["x", "w"], &["c"], vec![])
            .node("Reshape", &["c", "shape"], &["y"], vec![])
            .output("y");
        let m = b.build();
        let e = import_model(&m, None, &ImportOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("'w'") && e.to_string().contains("Conv"),
            "{e}"
        );
        let mut opts = ImportOptions::default();
        opts.bindings.insert(
            "w".into(),
            Tensor::new(vec![2, 1, 1, 1], vec![1.0, -1.0]).unwrap(),
        );
        opts.bindings
            .insert("shape".into(), Tensor::vector(vec![1.0, -1.0]));
        opts.bindings.insert("x".into(), seq(&[1, 1, 2, 2]));
        let imp = import_model(&m, None, &opts).unwrap();
        assert_eq!(imp.graph.inputs().len(), 1);
        assert_eq!(
            imp.inputs.iter().map(|i| i.bound).collect::<Vec<_>>(),
            vec![false, true, true]
        );
        let out = run(&imp.graph, &[seq(&[1, 1, 2, 2])]).unwrap();
        assert_eq!(out[0].data(), &[0.0, 1.0, 2.0, 3.0, -0.0, -1.0, -2.0, -3.0]);
    }

    #[test]
    fn errors_are_clear() {
        let mut b = ModelBuilder::new(13);
        b.input("x", &[1, 4])
            .node("Softmax", &["x"], &["y"], vec![])
            .output("y");
        let e = import_model(&b.build(), None, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'Softmax'") && e.contains("y_node") && e.contains("Conv, "),
            "{e}"
        );

        let mut b = ModelBuilder::new(13);
        b.input_dims("x", &[None, Some(3), Some(32), Some(32)])
            .node("Relu", &["x"], &["y"], vec![])
            .output("y");
        let m = b.build();
        let e = import_model(&m, None, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--input-shape 1,3,32,32") && e.contains("[N, 3, 32, 32]"),
            "{e}"
        );
        let opts = ImportOptions {
            input_shapes: vec![Some(vec![4, 3, 32, 32])],
            ..Default::default()
        };
        assert_eq!(
            import_model(&m, None, &opts)
                .unwrap()
                .graph
                .node(passes::ir::NodeId::new(1))
                .shape,
            vec![4, 3, 32, 32]
        );
        let opts = ImportOptions {
            input_shapes: vec![Some(vec![4, 4, 32, 32])],
            ..Default::default()
        };
        assert!(import_model(&m, None, &opts).is_err());

        let dir = std::env::temp_dir().join(format!("fhec-import-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("not_onnx.onnx");
        std::fs::write(&p, b"hello, this is not a model\n").unwrap();
        let e = import_path(&p, &ImportOptions::default()).unwrap_err();
        assert!(matches!(e, ImportError::NotOnnx { .. }), "{e}");
        assert!(e.to_string().contains("not an ONNX model"));
        let e = import_path(&dir.join("missing.onnx"), &ImportOptions::default()).unwrap_err();
        assert!(matches!(e, ImportError::Io { .. }), "{e}");

        // Dilations other than 1 are refused by name.
        let mut b = ModelBuilder::new(13);
        b.input("x", &[1, 1, 5, 5])
            .init("w", &Tensor::full(vec![1, 1, 3, 3], 1.0))
            .node(
                "Conv",
                &["x", "w"],
                &["y"],
                vec![attr_ints("dilations", &[2, 2])],
            )
            .output("y");
        let e = import_model(&b.build(), None, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dilations") && e.contains("y_node"), "{e}");

        // A channel concatenation of computed tensors is refused by name, with the way out.
        let mut b = ModelBuilder::new(13);
        b.input("x", &[1, 2, 4, 4])
            .node("Mul", &["x", "x"], &["sq"], vec![])
            .node("Concat", &["x", "sq"], &["y"], vec![attr_i("axis", 1)])
            .output("y");
        let e = import_model(&b.build(), None, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Concat") && e.contains("y_node") && e.contains("computed tensors"),
            "{e}"
        );
    }

    #[test]
    fn identity_of_initializer_and_relu_kept() {
        let mut b = ModelBuilder::new(13);
        b.input("x", &[1, 2])
            .init("w", &Tensor::vector(vec![1.0, 2.0]))
            .node("Identity", &["w"], &["w2"], vec![])
            .node("Add", &["x", "w2"], &["a"], vec![])
            .node("Relu", &["a"], &["y"], vec![])
            .output("y");
        let imp = import_model(&b.build(), None, &ImportOptions::default()).unwrap();
        assert_eq!(ops(&imp.graph), vec!["Input", "Constant", "Add", "Relu"]);
        assert!(imp
            .graph
            .node_ids()
            .iter()
            .any(|&i| imp.graph.node(i).op == Op::Relu));
    }
}
