//! Typed access to ONNX node attributes, with errors that name the node.

use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

use super::ImportError;

/// The display name of a node: its ONNX name, or its first output when unnamed.
pub fn node_name(node: &NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output
            .first()
            .cloned()
            .unwrap_or_else(|| node.op_type.clone())
    }
}

/// An error about `node`.
pub fn node_err(node: &NodeProto, msg: impl Into<String>) -> ImportError {
    ImportError::Node {
        node: node_name(node),
        op: node.op_type.clone(),
        msg: msg.into(),
    }
}

pub fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

pub fn float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

pub fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn floats(node: &NodeProto, name: &str) -> Option<Vec<f32>> {
    attr(node, name).map(|a| a.floats.clone())
}

pub fn string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

pub fn tensor<'a>(node: &'a NodeProto, name: &str) -> Option<&'a TensorProto> {
    attr(node, name).and_then(|a| a.t.as_ref())
}

/// A list of non-negative integers (strides, kernel sizes, pads).
pub fn usizes(node: &NodeProto, name: &str) -> Result<Option<Vec<usize>>, ImportError> {
    match ints(node, name) {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|&x| {
                usize::try_from(x)
                    .map_err(|_| node_err(node, format!("attribute {name} has negative value {x}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Normalises a possibly negative axis for a tensor of rank `rank`.
pub fn axis(node: &NodeProto, a: i64, rank: usize) -> Result<usize, ImportError> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if v < 0 || v >= r {
        return Err(node_err(
            node,
            format!("axis {a} out of range for rank {rank}"),
        ));
    }
    Ok(v as usize)
}
