//! Conversion between ONNX `TensorProto`s and IR tensors (via `tract_onnx::tensor::load_tensor`),
//! and reading / writing serialized TensorProto `.pb` files.

use std::path::Path;

use passes::ir::Tensor;
use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::TensorProto;

use super::ImportError;

/// Element types we can turn into f64.
fn supported(dt: i32) -> bool {
    use DataType::*;
    [
        Float, Double, Float16, Int64, Int32, Int16, Int8, Uint8, Uint16, Uint32, Uint64, Bool,
    ]
    .iter()
    .any(|&d| d as i32 == dt)
}

/// Converts a TensorProto (inline or external data next to `model_dir`) into an f64 tensor.
pub fn from_proto(t: &TensorProto, model_dir: Option<&str>) -> Result<Tensor, ImportError> {
    let err = |msg: String| ImportError::Tensor {
        name: t.name.clone(),
        msg,
    };
    if !supported(t.data_type) {
        let dt = DataType::try_from(t.data_type)
            .map(|d| d.as_str_name())
            .unwrap_or("unknown");
        return Err(err(format!(
            "element type {dt} ({}) is not supported",
            t.data_type
        )));
    }
    // Dims are checked before tract sees them: it multiplies them unchecked (and panics
    // on a product that overflows even when a later dim is 0).
    // Every partial product is bounded (a later zero dim does not excuse an overflow).
    let limit = (isize::MAX as u64) / 16;
    let volume = t.dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d)
            .ok()
            .and_then(|d| acc.checked_mul(d))
            .filter(|&v| v <= limit)
    });
    if volume.is_none() {
        return Err(err(format!("dims {:?} are negative or too large", t.dims)));
    }
    let resolver = tract_onnx::data_resolver::default();
    let tt = tract_onnx::tensor::load_tensor(&*resolver, t, model_dir)
        .map_err(|e| err(format!("{e:#}")))?;
    let shape = tt.shape().to_vec();
    let tt = tt.cast_to::<f64>().map_err(|e| err(format!("{e:#}")))?;
    let view = tt
        .to_plain_array_view::<f64>()
        .map_err(|e| err(format!("{e:#}")))?;
    let data: Vec<f64> = view.iter().copied().collect();
    Tensor::new(shape, data).map_err(|e| err(e.to_string()))
}

/// Converts an f64 tensor into a FLOAT TensorProto (raw little-endian data).
pub fn to_proto(t: &Tensor, name: &str) -> TensorProto {
    let raw: Vec<u8> = t
        .data()
        .iter()
        .flat_map(|&x| (x as f32).to_le_bytes())
        .collect();
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: raw,
        name: name.to_string(),
        ..Default::default()
    }
}

/// Reads a serialized TensorProto (`.pb`) file.
pub fn read_pb(path: &Path) -> Result<Tensor, ImportError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: p.clone(),
        source,
    })?;
    decode_pb(&bytes, &p, path.parent().and_then(|d| d.to_str()))
}

/// [`read_pb`] on the bytes of a file (`what` names it in errors; `dir` locates external
/// data, none when `None`).
pub fn decode_pb(bytes: &[u8], what: &str, dir: Option<&str>) -> Result<Tensor, ImportError> {
    let proto = TensorProto::decode(bytes).map_err(|e| ImportError::Tensor {
        name: what.to_string(),
        msg: format!("not a TensorProto: {e}"),
    })?;
    from_proto(&proto, dir)
}

/// Writes `t` as a serialized FLOAT TensorProto, atomically (a temporary file in the same
/// folder, then a rename): an interrupted write never leaves a truncated tensor.
pub fn write_pb(path: &Path, t: &Tensor, name: &str) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&to_proto(t, name).encode_to_vec())?;
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_int_data() {
        let t = Tensor::new(vec![2, 2], vec![1.0, -2.5, 3.0, 0.25]).unwrap();
        assert_eq!(from_proto(&to_proto(&t, "t"), None).unwrap(), t);
        let p = TensorProto {
            dims: vec![3],
            data_type: DataType::Int64 as i32,
            int64_data: vec![1, -1, 7],
            ..Default::default()
        };
        assert_eq!(from_proto(&p, None).unwrap().data(), &[1.0, -1.0, 7.0]);
        let s = TensorProto {
            dims: vec![1],
            data_type: DataType::String as i32,
            ..Default::default()
        };
        assert!(from_proto(&s, None).is_err());
        let bad = TensorProto {
            dims: vec![4],
            data_type: 1,
            float_data: vec![1.0],
            ..Default::default()
        };
        assert!(from_proto(&bad, None).is_err());
        // Found by the fuzzer: a product that overflows before a zero dim.
        let huge = TensorProto {
            dims: vec![23, 1, 144115188075855871, 0],
            data_type: DataType::Double as i32,
            ..Default::default()
        };
        assert!(from_proto(&huge, None).is_err());
        let negative = TensorProto {
            dims: vec![-1],
            data_type: 1,
            ..Default::default()
        };
        assert!(from_proto(&negative, None).is_err());
    }
}
