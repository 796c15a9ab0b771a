//! Dense row-major `f64` tensors: the value type of the IR (constants, weights) and of the
//! reference interpreter.

use serde::{Deserialize, Serialize};

use super::IrError;

/// A dense row-major tensor of `f64` with an explicit shape. A scalar has shape `[]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Tensor {
    /// Builds a tensor, checking that `data.len()` equals the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Result<Self, IrError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(IrError::Invalid(format!(
                "tensor of shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor filled with `value`.
    pub fn full(shape: Vec<usize>, value: f64) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![value; n],
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        Self::full(shape, 0.0)
    }

    /// A rank-0 tensor.
    pub fn scalar(v: f64) -> Self {
        Tensor {
            shape: vec![],
            data: vec![v],
        }
    }

    /// A rank-1 tensor.
    pub fn vector(v: Vec<f64>) -> Self {
        Tensor {
            shape: vec![v.len()],
            data: v,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same data under another shape with the same element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Self, IrError> {
        Tensor::new(shape, self.data.clone())
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    /// Row-major strides of `shape`.
    pub fn strides_of(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * shape[i + 1];
        }
        s
    }

    /// Element values as integers (for shape operands); fails on non-integral values.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, IrError> {
        self.data
            .iter()
            .map(|&x| {
                if x.fract() == 0.0 && x.is_finite() {
                    Ok(x as i64)
                } else {
                    Err(IrError::Invalid(format!(
                        "expected integer values, found {x}"
                    )))
                }
            })
            .collect()
    }

    /// Largest absolute difference to `other` (shapes must match).
    pub fn max_abs_diff(&self, other: &Tensor) -> Option<f64> {
        if self.shape != other.shape {
            return None;
        }
        Some(
            self.data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_checks() {
        assert_eq!(Tensor::strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(Tensor::strides_of(&[]), Vec::<usize>::new());
        assert!(Tensor::new(vec![2, 2], vec![1.0; 3]).is_err());
        assert_eq!(Tensor::scalar(2.0).len(), 1);
        assert!(Tensor::vector(vec![1.5]).to_i64_vec().is_err());
    }
}
