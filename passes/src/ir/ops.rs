//! The operator set of the IR: one `Op` variant per tensor operation, with its parameters
//! (weights are stored inside the op, already constant), arity and parameter count.

use serde::{Deserialize, Serialize};

use super::Tensor;

/// A 2-D convolution over NCHW (`group == 1`, depthwise `group == C`, or any grouping).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// `[M, C / group, kh, kw]`.
    pub weight: Tensor,
    /// `[M]`, or none.
    pub bias: Option<Tensor>,
    /// `[sh, sw]`.
    pub strides: [usize; 2],
    /// ONNX order: `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub group: usize,
}

/// Inference batch normalisation along axis 1 (any rank >= 2):
/// `y = scale * (x - mean) / sqrt(var + epsilon) + bias`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    pub scale: Vec<f64>,
    pub bias: Vec<f64>,
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub epsilon: f64,
}

impl BatchNorm {
    /// The per-channel affine form `y = a1 * x + a0`, as `(a1, a0)`.
    pub fn affine(&self) -> (Vec<f64>, Vec<f64>) {
        let a1: Vec<f64> = self
            .scale
            .iter()
            .zip(&self.var)
            .map(|(g, v)| g / (v + self.epsilon).sqrt())
            .collect();
        let a0 = self
            .bias
            .iter()
            .zip(&self.mean)
            .zip(&a1)
            .map(|((b, m), a)| b - m * a)
            .collect();
        (a1, a0)
    }
}

/// Low-degree polynomials with per-channel coefficients. Every coefficient vector has
/// length 1 (shared by all channels) or C (the size of axis 1 of the input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Poly {
    /// One input: `c0 + c1 x + c2 x^2`.
    Quadratic {
        c0: Vec<f64>,
        c1: Vec<f64>,
        c2: Vec<f64>,
    },
    /// Two inputs a, b: `d0 + da a + db b + dab a b + da2 a^2 + db2 b^2`.
    Bivariate {
        d0: Vec<f64>,
        da: Vec<f64>,
        db: Vec<f64>,
        dab: Vec<f64>,
        da2: Vec<f64>,
        db2: Vec<f64>,
    },
}

impl Poly {
    /// Number of tensor inputs (1 or 2).
    pub fn arity(&self) -> usize {
        match self {
            Poly::Quadratic { .. } => 1,
            Poly::Bivariate { .. } => 2,
        }
    }

    /// All coefficient vectors, in declaration order.
    pub fn coefficients(&self) -> Vec<&Vec<f64>> {
        match self {
            Poly::Quadratic { c0, c1, c2 } => vec![c0, c1, c2],
            Poly::Bivariate {
                d0,
                da,
                db,
                dab,
                da2,
                db2,
            } => vec![d0, da, db, dab, da2, db2],
        }
    }

    /// Degree 0, 1 or 2 (a coefficient counts when any channel's value is non-zero).
    pub fn degree(&self) -> usize {
        let nz = |v: &Vec<f64>| v.iter().any(|&x| x != 0.0);
        match self {
            Poly::Quadratic { c1, c2, .. } => {
                if nz(c2) {
                    2
                } else if nz(c1) {
                    1
                } else {
                    0
                }
            }
            Poly::Bivariate {
                da,
                db,
                dab,
                da2,
                db2,
                ..
            } => {
                if nz(dab) || nz(da2) || nz(db2) {
                    2
                } else if nz(da) || nz(db) {
                    1
                } else {
                    0
                }
            }
        }
    }
}

/// 2-D average pooling over NCHW.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AveragePool {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// ONNX order: `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Divide by the full kernel size (true) or by the number of non-pad elements.
    pub count_include_pad: bool,
}

/// `alpha * A' * B' + beta * C` with `A'` = A or A^T, `B'` = B or B^T; B and C constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// Rank 2, as stored in the model (before `trans_b`).
    pub b: Tensor,
    /// Unidirectionally broadcastable to `[M, N]`.
    pub c: Option<Tensor>,
    pub alpha: f64,
    pub beta: f64,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// One axis of a `Slice`: output index `i` reads input index `start + i * step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceAxis {
    pub start: usize,
    pub step: isize,
    pub len: usize,
}

/// A tensor operation. Tensor inputs arrive on the node's ordered input edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A graph input with a fixed shape.
    Input {
        shape: Vec<usize>,
    },
    /// A constant tensor.
    Constant(Tensor),
    Identity,
    Conv(Conv),
    BatchNorm(BatchNorm),
    /// Elementwise with numpy broadcasting (two inputs).
    Add,
    Sub,
    Mul,
    Div,
    Poly(Poly),
    Relu,
    AveragePool(AveragePool),
    /// Mean over every axis after the first two, keeping them as size 1.
    GlobalAveragePool,
    /// Window sums (an `AveragePool` whose divisor was moved elsewhere by
    /// `redistribute_pool`); only pools with a constant divisor become one.
    SumPool(AveragePool),
    /// Sum over every axis after the first two (a `GlobalAveragePool` without divisor).
    GlobalSumPool,
    /// Mean over `axes` (sorted, distinct).
    ReduceMean {
        axes: Vec<usize>,
        keepdims: bool,
    },
    Gemm(Gemm),
    /// Numpy matmul (two inputs, batch dims broadcast, rank-1 operands promoted).
    MatMul,
    /// `[prod(d[..axis]), prod(d[axis..])]`.
    Flatten {
        axis: usize,
    },
    /// To a fully resolved shape.
    Reshape {
        shape: Vec<usize>,
    },
    /// Constant-mode padding: `(before, after)` per axis.
    Pad {
        pads: Vec<(usize, usize)>,
        value: f64,
    },
    /// One `SliceAxis` per input axis.
    Slice {
        axes: Vec<SliceAxis>,
    },
}

impl Op {
    /// Short type name (ONNX-like), e.g. `"Conv"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Constant(_) => "Constant",
            Op::Identity => "Identity",
            Op::Conv(_) => "Conv",
            Op::BatchNorm(_) => "BatchNormalization",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Poly(_) => "Poly",
            Op::Relu => "Relu",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::SumPool(_) => "SumPool",
            Op::GlobalSumPool => "GlobalSumPool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Gemm(_) => "Gemm",
            Op::MatMul => "MatMul",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Pad { .. } => "Pad",
            Op::Slice { .. } => "Slice",
        }
    }

    /// Number of tensor inputs (input edges) the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Input { .. } | Op::Constant(_) => 0,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::MatMul => 2,
            Op::Poly(p) => p.arity(),
            _ => 1,
        }
    }

    /// Number of stored parameters (weights, biases, coefficients, constant values).
    pub fn param_count(&self) -> usize {
        match self {
            Op::Constant(t) => t.len(),
            Op::Conv(c) => c.weight.len() + c.bias.as_ref().map_or(0, |b| b.len()),
            Op::BatchNorm(b) => b.scale.len() * 4,
            Op::Poly(p) => p.coefficients().iter().map(|c| c.len()).sum(),
            Op::Gemm(g) => g.b.len() + g.c.as_ref().map_or(0, |c| c.len()),
            _ => 0,
        }
    }

    /// True for the elementwise binary ops.
    pub fn is_binary_elementwise(&self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div)
    }
}
