//! The IR graph: a petgraph `StableDiGraph` of single-output tensor-op nodes. Edges run from
//! producer to consumer and carry the consumer's input slot, so operand order is explicit.
//! Node ids stay valid across removals, which is what rewrite passes need.

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};

use super::ops::Op;
use super::shape::infer_shape;
use super::{IrError, Tensor};

/// A node id; stable across removals of other nodes.
pub type NodeId = NodeIndex<u32>;

/// One operation and the value it produces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Name kept from the ONNX node (or the input / initializer name).
    pub name: String,
    pub op: Op,
    /// Inferred output shape.
    pub shape: Vec<usize>,
}

/// A dataflow graph of tensor ops with ordered graph inputs and outputs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Graph {
    g: StableDiGraph<Node, usize>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a graph input of a fixed shape (appended to the ordered input list).
    pub fn add_input(&mut self, name: impl Into<String>, shape: Vec<usize>) -> NodeId {
        let id = self.g.add_node(Node {
            name: name.into(),
            shape: shape.clone(),
            op: Op::Input { shape },
        });
        self.inputs.push(id);
        id
    }

    /// Adds a constant node.
    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> NodeId {
        let shape = t.shape().to_vec();
        self.g.add_node(Node {
            name: name.into(),
            op: Op::Constant(t),
            shape,
        })
    }

    /// Adds `op` over `inputs` (in slot order), inferring its output shape.
    /// Use `add_input` for graph inputs.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
    ) -> Result<NodeId, IrError> {
        let name = name.into();
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| {
                self.g
                    .node_weight(i)
                    .map(|n| &n.shape[..])
                    .ok_or(IrError::NoSuchNode(i.index()))
            })
            .collect::<Result<_, _>>()?;
        let shape = infer_shape(&op, &shapes).map_err(|e| e.at(&name))?;
        let id = self.g.add_node(Node { name, op, shape });
        for (slot, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, id, slot);
        }
        Ok(id)
    }

    /// Sets the ordered graph outputs.
    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    /// Ordered graph inputs.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// Ordered graph outputs.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// Removes `id` from the input list (the node itself stays until removed).
    pub fn drop_input(&mut self, id: NodeId) {
        self.inputs.retain(|&i| i != id);
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// Mutable access. After changing `op` in a way that changes shapes, call `infer_shapes`.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// All node ids (arbitrary order; see `topo_order`).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    /// The producers of `id`'s inputs, in slot order.
    pub fn inputs_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Every use of `id`'s value as `(consumer, slot)`; sorted, so a node that reads the
    /// value twice (e.g. `Mul(x, x)`) appears twice.
    pub fn consumers(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        let mut v: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        v.sort();
        v
    }

    /// True when `id` is one of the graph outputs.
    pub fn is_output(&self, id: NodeId) -> bool {
        self.outputs.contains(&id)
    }

    /// Rewires input `slot` of `node` to read from `src`. Shapes are not re-inferred.
    pub fn set_input(&mut self, node: NodeId, slot: usize, src: NodeId) {
        let old: Vec<_> = self
            .g
            .edges_directed(node, Direction::Incoming)
            .filter(|e| *e.weight() == slot)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        self.g.add_edge(src, node, slot);
    }

    /// Replaces all of `node`'s inputs by `inputs` (slot order).
    pub fn set_inputs(&mut self, node: NodeId, inputs: &[NodeId]) {
        let old: Vec<_> = self
            .g
            .edges_directed(node, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (slot, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, node, slot);
        }
    }

    /// Makes every consumer of `old` (and the graph outputs) read `new` instead.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        for (c, slot) in self.consumers(old) {
            if c != new {
                self.set_input(c, slot, new);
            }
        }
        for o in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Removes a node and its edges (and from the input / output lists).
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.inputs.retain(|&i| i != id);
        self.outputs.retain(|&i| i != id);
        self.g.remove_node(id)
    }

    /// Removes every node that no graph output depends on, except graph inputs.
    /// Returns how many were removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = std::collections::HashSet::new();
        let mut stack: Vec<NodeId> = self.outputs.clone();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        let dead: Vec<NodeId> = self
            .g
            .node_indices()
            .filter(|n| !live.contains(n) && !self.inputs.contains(n))
            .collect();
        for &n in &dead {
            self.g.remove_node(n);
        }
        dead.len()
    }

    /// Node ids in a topological order (producers first). Ties are broken by node id, so
    /// the order is deterministic.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, IrError> {
        let mut indeg: std::collections::HashMap<NodeId, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: std::collections::BTreeSet<NodeId> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target exists");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != self.g.node_count() {
            return Err(IrError::Cycle);
        }
        Ok(order)
    }

    /// Re-infers every node's shape in topological order (after a pass changed ops).
    pub fn infer_shapes(&mut self) -> Result<(), IrError> {
        for id in self.topo_order()? {
            let ins = self.inputs_of(id);
            let shapes: Vec<&[usize]> = ins.iter().map(|&i| &self.g[i].shape[..]).collect();
            let node = &self.g[id];
            let s = infer_shape(&node.op, &shapes).map_err(|e| e.at(&node.name))?;
            self.g[id].shape = s;
        }
        Ok(())
    }

    /// Checks the structural invariants: arity and contiguous slots, acyclicity, inputs and
    /// outputs present, and that stored shapes match inference.
    pub fn validate(&self) -> Result<(), IrError> {
        for id in self.g.node_indices() {
            let n = &self.g[id];
            let mut slots: Vec<usize> = self
                .g
                .edges_directed(id, Direction::Incoming)
                .map(|e| *e.weight())
                .collect();
            slots.sort();
            if slots != (0..n.op.arity()).collect::<Vec<_>>() {
                return Err(IrError::Invalid(format!(
                    "node '{}' ({}) has input slots {slots:?}, expected {}",
                    n.name,
                    n.op.kind(),
                    n.op.arity()
                )));
            }
        }
        for &i in self.inputs.iter().chain(&self.outputs) {
            if !self.g.contains_node(i) {
                return Err(IrError::NoSuchNode(i.index()));
            }
        }
        for id in self.topo_order()? {
            let shapes: Vec<&[usize]> = self
                .inputs_of(id)
                .iter()
                .map(|&i| &self.g[i].shape[..])
                .collect();
            let n = &self.g[id];
            let s = infer_shape(&n.op, &shapes).map_err(|e| e.at(&n.name))?;
            if s != n.shape {
                return Err(IrError::Invalid(format!(
                    "node '{}' stores shape {:?}, inference gives {s:?}",
                    n.name, n.shape
                )));
            }
        }
        Ok(())
    }

    /// Total parameter count over all nodes.
    pub fn param_count(&self) -> usize {
        self.g.node_weights().map(|n| n.op.param_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_rewrite_and_clean() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2]);
        let c = g.add_const("c", Tensor::vector(vec![1.0, 2.0]));
        let a = g.add_node("a", Op::Add, &[x, c]).unwrap();
        let m = g.add_node("m", Op::Mul, &[a, a]).unwrap();
        g.set_outputs(vec![m]);
        assert_eq!(g.inputs_of(a), vec![x, c]);
        assert_eq!(g.consumers(a), vec![(m, 0), (m, 1)]);
        assert_eq!(g.node(m).shape, vec![1, 2]);
        g.validate().unwrap();
        // Replace the Mul by a Relu over x: a and c become dead.
        let r = g.add_node("r", Op::Relu, &[x]).unwrap();
        g.replace_uses(m, r);
        assert_eq!(g.outputs(), &[r]);
        assert_eq!(g.remove_dead(), 3);
        assert_eq!(g.len(), 2);
        g.validate().unwrap();
        assert_eq!(g.topo_order().unwrap(), vec![x, r]);
    }

    #[test]
    fn shape_errors_name_the_node() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![2, 3]);
        let y = g.add_input("y", vec![4]);
        let e = g.add_node("bad_add", Op::Add, &[x, y]).unwrap_err();
        assert!(e.to_string().contains("bad_add"), "{e}");
    }
}
