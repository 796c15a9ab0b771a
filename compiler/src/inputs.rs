//! Client inputs of a program: PNG images (normalised as the model was trained) or ONNX
//! TensorProto files, one per input of a batch, stacked along axis 0 into the tensor the
//! program's input layout packs. A batch-B program takes 1..=B inputs: missing ones are
//! zero inputs (their outputs are meaningless and dropped by `Inputs::given`); more than B
//! is an error, as is any input whose shape is not the model's.

use std::path::{Path, PathBuf};

use passes::ir::Tensor;
use runtime::program::InputLayout;

use crate::image::ImageError;
use crate::onnx::ImportError;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Tensor(#[from] ImportError),
    #[error("{path}: {msg}")]
    Shape { path: String, msg: String },
    #[error("no input given")]
    Empty,
    #[error("{given} inputs given, but the program evaluates at most {batch} per run (compile with --batch {given} or more)")]
    TooMany { given: usize, batch: usize },
}

/// The stacked input tensor and the single inputs it holds.
pub struct Inputs {
    /// Shape = the program's input shape (batch padded with zeros).
    pub tensor: Tensor,
    /// Each given input, batch dimension 1.
    pub items: Vec<Tensor>,
}

impl Inputs {
    pub fn given(&self) -> usize {
        self.items.len()
    }
}

fn is_png(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Where one input comes from.
pub enum Source {
    Png(PathBuf),
    Tensor(PathBuf),
}

impl Source {
    /// A PNG by its extension, else a TensorProto.
    pub fn by_extension(p: &Path) -> Self {
        if is_png(p) {
            Source::Png(p.to_path_buf())
        } else {
            Source::Tensor(p.to_path_buf())
        }
    }
}

/// Loads every path (PNG or `.pb`, by extension) for the program's input layout.
pub fn load(paths: &[PathBuf], layout: &InputLayout) -> Result<Inputs, InputError> {
    let sources: Vec<Source> = paths.iter().map(|p| Source::by_extension(p)).collect();
    load_sources(&sources, layout)
}

/// Loads every source for the program's input layout.
pub fn load_sources(sources: &[Source], layout: &InputLayout) -> Result<Inputs, InputError> {
    let mut items = vec![];
    for src in sources {
        let (p, t) = match src {
            Source::Png(p) => (p, crate::image::load_for_program(p, layout)?),
            Source::Tensor(p) => (p, crate::onnx::tensor::read_pb(p)?),
        };
        items.push((p.display().to_string(), t));
    }
    stack(items, &layout.shape)
}

/// Stacks named single inputs (each of shape `(1, rest...)`, or a tensor of shape
/// `(k, rest...)` that is split) into `shape = (B, rest...)`.
pub fn stack(mut named: Vec<(String, Tensor)>, shape: &[usize]) -> Result<Inputs, InputError> {
    if shape.len() < 2 {
        // No batch axis: the one input goes through as given (the input layout checks
        // its size).
        return match named.len() {
            0 => Err(InputError::Empty),
            1 => {
                let t = named.remove(0).1;
                Ok(Inputs {
                    tensor: t.clone(),
                    items: vec![t],
                })
            }
            given => Err(InputError::TooMany { given, batch: 1 }),
        };
    }
    let (batch, rest) = (shape[0], &shape[1..]);
    let one: usize = rest.iter().product();
    let mut items = vec![];
    for (path, t) in named {
        let s = t.shape();
        if s.len() != shape.len() || &s[1..] != rest || s[0] == 0 {
            let mut want = vec![1];
            want.extend_from_slice(rest);
            return Err(InputError::Shape {
                path,
                msg: format!("the input has shape {s:?}, the model takes {want:?}"),
            });
        }
        for k in 0..s[0] {
            let mut sh = vec![1];
            sh.extend_from_slice(rest);
            let data = t.data()[k * one..(k + 1) * one].to_vec();
            items.push(Tensor::new(sh, data).map_err(|e| InputError::Shape {
                path: path.clone(),
                msg: e.to_string(),
            })?);
        }
    }
    if items.is_empty() {
        return Err(InputError::Empty);
    }
    if items.len() > batch {
        return Err(InputError::TooMany {
            given: items.len(),
            batch,
        });
    }
    let mut data = Vec::with_capacity(batch * one);
    for t in &items {
        data.extend_from_slice(t.data());
    }
    data.resize(batch * one, 0.0);
    let tensor = Tensor::new(shape.to_vec(), data).map_err(|e| InputError::Shape {
        path: "input".into(),
        msg: e.to_string(),
    })?;
    Ok(Inputs { tensor, items })
}

/// The top-1 class of each of the first `rows` rows of a `(B, classes)` output.
pub fn top1_rows(out: &[f64], shape: &[usize], rows: usize) -> Vec<usize> {
    let classes = shape.last().copied().unwrap_or(1).max(1);
    out.chunks(classes)
        .take(rows)
        .map(|row| crate::e2e::top1(row, classes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: f64) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape.to_vec(), vec![v; n]).unwrap()
    }

    #[test]
    fn stacks_and_pads() {
        let x = stack(
            vec![("a".into(), t(&[1, 2], 1.0)), ("b".into(), t(&[2, 2], 2.0))],
            &[4, 2],
        )
        .unwrap();
        assert_eq!(x.given(), 3);
        assert_eq!(x.tensor.data(), &[1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn refuses_bad_batches() {
        let too_many = stack(vec![("a".into(), t(&[3, 2], 1.0))], &[2, 2]);
        assert!(matches!(
            too_many,
            Err(InputError::TooMany { given: 3, batch: 2 })
        ));
        let wrong = stack(vec![("a".into(), t(&[1, 3], 1.0))], &[2, 2]);
        assert!(matches!(wrong, Err(InputError::Shape { .. })));
        assert!(matches!(stack(vec![], &[2, 2]), Err(InputError::Empty)));
    }

    #[test]
    fn rows() {
        assert_eq!(
            top1_rows(&[0.0, 1.0, 5.0, 2.0, 0.0, 0.0], &[3, 2], 2),
            vec![1, 0]
        );
    }
}
