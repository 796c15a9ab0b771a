//! A small builder for ONNX `ModelProto`s in Rust: used by the tests (hand-built graphs for
//! the matcher, folding, errors and comparisons against tract) and handy for tools.

use passes::ir::Tensor;
use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

use super::tensor::to_proto;

/// Builds a single-graph ONNX model node by node.
pub struct ModelBuilder {
    graph: GraphProto,
    opset: i64,
    metadata: Vec<StringStringEntryProto>,
}

fn value_info(name: &str, dims: Option<&[Option<i64>]>) -> ValueInfoProto {
    let shape = dims.map(|d| TensorShapeProto {
        dim: d
            .iter()
            .map(|x| Dimension {
                value: Some(match x {
                    Some(v) => dimension::Value::DimValue(*v),
                    None => dimension::Value::DimParam("N".into()),
                }),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl ModelBuilder {
    pub fn new(opset: i64) -> Self {
        ModelBuilder {
            graph: GraphProto {
                name: "g".into(),
                ..Default::default()
            },
            opset,
            metadata: vec![],
        }
    }

    /// A FLOAT graph input with fixed dims.
    pub fn input(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        let d: Vec<Option<i64>> = dims.iter().map(|&x| Some(x)).collect();
        self.graph.input.push(value_info(name, Some(&d)));
        self
    }

    /// A FLOAT graph input with some symbolic (`None`) dims.
    pub fn input_dims(&mut self, name: &str, dims: &[Option<i64>]) -> &mut Self {
        self.graph.input.push(value_info(name, Some(dims)));
        self
    }

    /// An INT64 graph input with fixed dims (e.g. a shape operand).
    pub fn input_i64(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        let d: Vec<Option<i64>> = dims.iter().map(|&x| Some(x)).collect();
        let mut vi = value_info(name, Some(&d));
        if let Some(type_proto::Value::TensorType(t)) =
            vi.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = DataType::Int64 as i32;
        }
        self.graph.input.push(vi);
        self
    }

    /// A FLOAT initializer.
    pub fn init(&mut self, name: &str, t: &Tensor) -> &mut Self {
        self.graph.initializer.push(to_proto(t, name));
        self
    }

    /// An INT64 initializer.
    pub fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> &mut Self {
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        self
    }

    /// A node of the default domain, named after its first output.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> &mut Self {
        self.graph.node.push(NodeProto {
            name: format!("{}_node", outputs.first().copied().unwrap_or(op)),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }

    /// A graph output.
    pub fn output(&mut self, name: &str) -> &mut Self {
        self.graph.output.push(value_info(name, None));
        self
    }

    pub fn meta(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    pub fn build(&self) -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "fhec-builder".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            graph: Some(self.graph.clone()),
            metadata_props: self.metadata.clone(),
            ..Default::default()
        }
    }

    /// The serialized model.
    pub fn encode(&self) -> Vec<u8> {
        self.build().encode_to_vec()
    }
}

pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..Default::default()
    }
}
