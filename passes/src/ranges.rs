//! Value ranges of one plaintext run: the largest |value| every node produces and, for
//! every polynomial activation, the largest |input| it is applied to. A checker (reads
//! only): callers compare them with the ranges the parameters were chosen for
//! (`ParamRequest::activation_range` for activation inputs, `output_range` for what the
//! lowest level can hold) and name the layer that leaves them.

use crate::interpret::{run_all, InterpretError};
use crate::ir::{Graph, Op, Tensor};

/// One node's observed range.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRange {
    pub node: String,
    pub op: &'static str,
    /// Largest |value| of the node's output (infinite when some value is not finite).
    pub max_abs: f64,
    /// For a polynomial activation: the largest |input|.
    pub poly_input_max: Option<f64>,
}

fn max_abs(t: &Tensor) -> f64 {
    t.data().iter().fold(0f64, |m, v| {
        if v.is_finite() {
            m.max(v.abs())
        } else {
            f64::INFINITY
        }
    })
}

/// Ranges of every node, in topological order, for one input.
pub fn ranges(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<NodeRange>, InterpretError> {
    let values = run_all(graph, inputs)?;
    let order = graph.topo_order()?;
    Ok(order
        .into_iter()
        .filter_map(|id| {
            let node = graph.node(id);
            let v = values.get(&id)?;
            let poly_input_max = matches!(node.op, Op::Poly(_)).then(|| {
                graph
                    .inputs_of(id)
                    .iter()
                    .filter_map(|i| values.get(i))
                    .map(max_abs)
                    .fold(0f64, f64::max)
            });
            Some(NodeRange {
                node: node.name.clone(),
                op: node.op.kind(),
                max_abs: max_abs(v),
                poly_input_max,
            })
        })
        .collect())
}
