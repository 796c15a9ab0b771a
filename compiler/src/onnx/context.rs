//! The importer's working state: the IR graph being built, the value (constant or node) of
//! every ONNX tensor name, and helpers the per-op import functions share.

use std::collections::HashMap;

use passes::interpret::eval_op;
use passes::ir::{Graph, IrError, NodeId, Op, Tensor};
use tract_onnx::pb::NodeProto;

use super::attrs::{node_err, node_name};
use super::ImportError;

/// What an ONNX tensor name stands for during import.
#[derive(Clone, Debug)]
pub enum Value {
    /// Known at import time (initializer, bound input, folded subgraph).
    Const(Tensor),
    /// Produced by an IR node.
    Node(NodeId),
}

/// The state shared by the per-op import functions.
pub struct Ctx {
    pub graph: Graph,
    pub values: HashMap<String, Value>,
    /// Constant values already materialised as `Constant` nodes, by tensor name.
    const_nodes: HashMap<String, NodeId>,
}

impl Ctx {
    pub fn new() -> Self {
        Ctx {
            graph: Graph::new(),
            values: HashMap::new(),
            const_nodes: HashMap::new(),
        }
    }

    /// Input `slot` of `node`, if present (absent or empty name = optional input left out).
    pub fn input_name<'a>(&self, node: &'a NodeProto, slot: usize) -> Option<&'a str> {
        node.input
            .get(slot)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }

    fn lookup(&self, node: &NodeProto, name: &str) -> Result<&Value, ImportError> {
        self.values
            .get(name)
            .ok_or_else(|| node_err(node, format!("input '{name}' is not produced by any node")))
    }

    /// The value of input `slot`; an error if the (required) input is missing.
    pub fn value(&self, node: &NodeProto, slot: usize) -> Result<Value, ImportError> {
        let name = self
            .input_name(node, slot)
            .ok_or_else(|| node_err(node, format!("missing input {slot}")))?;
        Ok(self.lookup(node, name)?.clone())
    }

    /// The (fixed) shape of input `slot`.
    pub fn shape(&self, node: &NodeProto, slot: usize) -> Result<Vec<usize>, ImportError> {
        Ok(match self.value(node, slot)? {
            Value::Const(t) => t.shape().to_vec(),
            Value::Node(id) => self.graph.node(id).shape.clone(),
        })
    }

    /// Input `slot` as a constant; `what` names its role for the error message.
    pub fn constant(
        &self,
        node: &NodeProto,
        slot: usize,
        what: &str,
    ) -> Result<Tensor, ImportError> {
        match self.value(node, slot)? {
            Value::Const(t) => Ok(t),
            Value::Node(_) => Err(node_err(
                node,
                format!(
                    "the {what} (input {slot}, '{}') must be a constant: an initializer, a value \
                     given for a graph input, or computable from shapes",
                    node.input[slot]
                ),
            )),
        }
    }

    /// Like `constant`, but `None` when the optional input is absent.
    pub fn opt_constant(
        &self,
        node: &NodeProto,
        slot: usize,
        what: &str,
    ) -> Result<Option<Tensor>, ImportError> {
        match self.input_name(node, slot) {
            None => Ok(None),
            Some(_) => self.constant(node, slot, what).map(Some),
        }
    }

    /// Input `slot` as an IR node, materialising a constant as a `Constant` node.
    pub fn node_input(&mut self, node: &NodeProto, slot: usize) -> Result<NodeId, ImportError> {
        let name = self
            .input_name(node, slot)
            .ok_or_else(|| node_err(node, format!("missing input {slot}")))?
            .to_string();
        match self.lookup(node, &name)?.clone() {
            Value::Node(id) => Ok(id),
            Value::Const(t) => {
                if let Some(&id) = self.const_nodes.get(&name) {
                    return Ok(id);
                }
                let id = self.graph.add_const(name.clone(), t);
                self.const_nodes.insert(name, id);
                Ok(id)
            }
        }
    }

    /// Emits `op` over the given input slots of `node`: evaluated right away when every
    /// input is constant (constant folding), otherwise added to the graph.
    pub fn emit(
        &mut self,
        node: &NodeProto,
        op: Op,
        slots: &[usize],
    ) -> Result<Value, ImportError> {
        let vals: Vec<Value> = slots
            .iter()
            .map(|&s| self.value(node, s))
            .collect::<Result<_, _>>()?;
        if vals.iter().all(|v| matches!(v, Value::Const(_))) {
            let ts: Vec<&Tensor> = vals
                .iter()
                .map(|v| match v {
                    Value::Const(t) => t,
                    Value::Node(_) => unreachable!("all inputs are constants"),
                })
                .collect();
            return eval_op(&op, &ts)
                .map(Value::Const)
                .map_err(|source| ImportError::Ir {
                    node: node_name(node),
                    op: node.op_type.clone(),
                    source,
                });
        }
        let ids: Vec<NodeId> = slots
            .iter()
            .map(|&s| self.node_input(node, s))
            .collect::<Result<_, _>>()?;
        self.add(node, op, &ids)
    }

    /// Adds `op` over IR nodes `ids`, named after `node`.
    pub fn add(&mut self, node: &NodeProto, op: Op, ids: &[NodeId]) -> Result<Value, ImportError> {
        self.graph
            .add_node(node_name(node), op, ids)
            .map(Value::Node)
            .map_err(|e| {
                let source = match e {
                    IrError::At { source, .. } => *source,
                    e => e,
                };
                ImportError::Ir {
                    node: node_name(node),
                    op: node.op_type.clone(),
                    source,
                }
            })
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Self::new()
    }
}
