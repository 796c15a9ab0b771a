//! Random small graphs for the passes' property tests: CNNs built from the residual
//! patterns of the committed models (identity shortcut, option-A Slice + channel Pad, 1x1
//! conv shortcut, chains, a skip over two blocks, a scalar-scaled skip), average pools
//! and MLP heads (spatial means as GlobalAveragePool or ReduceMean).

use crate::ir::{AveragePool, BatchNorm, Conv, Gemm, Graph, NodeId, Op, Poly, SliceAxis, Tensor};
use crate::pass::testutil::Rng;

pub struct Net<'a> {
    pub g: Graph,
    pub rng: &'a mut Rng,
    n: usize,
}

impl<'a> Net<'a> {
    pub fn new(rng: &'a mut Rng) -> Self {
        Net {
            g: Graph::new(),
            rng,
            n: 0,
        }
    }
    fn name(&mut self, p: &str) -> String {
        self.n += 1;
        format!("{p}{}", self.n)
    }
    pub fn conv(&mut self, x: NodeId, cout: usize, k: usize, stride: usize, bias: bool) -> NodeId {
        let cin = self.g.node(x).shape[1];
        let fan = (cin * k * k) as f64;
        let w = self
            .rng
            .tensor(vec![cout, cin, k, k], -1.0 / fan.sqrt(), 1.0 / fan.sqrt());
        let b = bias.then(|| Tensor::vector(self.rng.vec(cout, -0.2, 0.2)));
        let p = k / 2;
        let n = self.name("conv");
        self.g
            .add_node(
                n,
                Op::Conv(Conv {
                    weight: w,
                    bias: b,
                    strides: [stride, stride],
                    pads: [p, p, p, p],
                    group: 1,
                }),
                &[x],
            )
            .unwrap()
    }
    pub fn bn(&mut self, x: NodeId) -> NodeId {
        let c = self.g.node(x).shape[1];
        let op = Op::BatchNorm(BatchNorm {
            scale: self.rng.vec(c, 0.5, 1.5),
            bias: self.rng.vec(c, -0.3, 0.3),
            mean: self.rng.vec(c, -0.3, 0.3),
            var: self.rng.vec(c, 0.5, 1.5),
            epsilon: 1e-5,
        });
        let n = self.name("bn");
        self.g.add_node(n, op, &[x]).unwrap()
    }
    pub fn poly(&mut self, x: NodeId) -> NodeId {
        let c = self.g.node(x).shape[1];
        let len = if self.rng.below(2) == 0 { 1 } else { c };
        let op = Op::Poly(Poly::Quadratic {
            c0: self.rng.vec(len, -0.3, 0.3),
            c1: self.rng.vec(len, 0.2, 0.8),
            c2: self.rng.vec(len, 0.1, 0.4),
        });
        let n = self.name("act");
        self.g.add_node(n, op, &[x]).unwrap()
    }
    pub fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        let n = self.name("add");
        self.g.add_node(n, Op::Add, &[a, b]).unwrap()
    }
    pub fn op(&mut self, op: Op, x: &[NodeId]) -> NodeId {
        let n = self.name(op.kind());
        self.g.add_node(n, op, x).unwrap()
    }
    pub fn cbp(&mut self, x: NodeId, c: usize, stride: usize) -> NodeId {
        let h = self.conv(x, c, 3, stride, false);
        let h = self.bn(h);
        self.poly(h)
    }
    /// A basic block; `shortcut`: 0 identity, 1 option A, 2 1x1 conv + BN.
    pub fn block(&mut self, x: NodeId, shortcut: usize) -> NodeId {
        let c = self.g.node(x).shape[1];
        let hw = self.g.node(x).shape[2];
        let shortcut = if hw < 2 || hw % 2 == 1 { 0 } else { shortcut };
        let (cout, stride) = if shortcut == 0 { (c, 1) } else { (2 * c, 2) };
        let h = self.cbp(x, cout, stride);
        let h = self.conv(h, cout, 3, 1, false);
        let h = self.bn(h);
        let skip = match shortcut {
            0 => x,
            1 => {
                let s = self.g.node(x).shape.clone();
                let axes = s
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if i >= 2 {
                            SliceAxis {
                                start: 0,
                                step: 2,
                                len: d.div_ceil(2),
                            }
                        } else {
                            SliceAxis {
                                start: 0,
                                step: 1,
                                len: d,
                            }
                        }
                    })
                    .collect();
                let sl = self.op(Op::Slice { axes }, &[x]);
                let q = c / 2;
                self.op(
                    Op::Pad {
                        pads: vec![(0, 0), (q, c - q), (0, 0), (0, 0)],
                        value: 0.0,
                    },
                    &[sl],
                )
            }
            _ => {
                let s = self.conv(x, cout, 1, 2, false);
                self.bn(s)
            }
        };
        let a = if self.rng.below(2) == 0 {
            self.add(h, skip)
        } else {
            self.add(skip, h)
        };
        self.poly(a)
    }
    pub fn head(&mut self, x: NodeId, classes: usize) -> NodeId {
        // The spatial mean as exporters write it: GlobalAveragePool, ReduceMean over the
        // spatial axes with or without keepdims (the latter already [N, C]), or none.
        let spatial: Vec<usize> = (2..self.g.node(x).shape.len()).collect();
        let f = match self.rng.below(4) {
            0 => {
                let p = self.op(Op::GlobalAveragePool, &[x]);
                self.op(Op::Flatten { axis: 1 }, &[p])
            }
            1 => {
                let axes = spatial;
                let p = self.op(
                    Op::ReduceMean {
                        axes,
                        keepdims: true,
                    },
                    &[x],
                );
                self.op(Op::Flatten { axis: 1 }, &[p])
            }
            2 => {
                let axes = spatial;
                self.op(
                    Op::ReduceMean {
                        axes,
                        keepdims: false,
                    },
                    &[x],
                )
            }
            _ => self.op(Op::Flatten { axis: 1 }, &[x]),
        };
        let k = self.g.node(f).shape[1];
        let b = self.rng.tensor(vec![k, classes], -0.5, 0.5);
        let c = Some(Tensor::vector(self.rng.vec(classes, -0.1, 0.1)));
        self.op(
            Op::Gemm(Gemm {
                b,
                c,
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false,
            }),
            &[f],
        )
    }
}

/// A random small CNN: stem, 1-3 blocks of random kinds (some with an extra skip over two
/// blocks), maybe an average pool, a linear head.
pub fn random_net(rng: &mut Rng) -> Graph {
    let mut n = Net::new(rng);
    let c = 2 + n.rng.below(2);
    let hw = [4, 6, 8][n.rng.below(3)];
    let x = n.g.add_input("x", vec![1, c, hw, hw]);
    let mut h = n.cbp(x, c, 1);
    let blocks = 1 + n.rng.below(3);
    let mut i = 0;
    while i < blocks {
        match n.rng.below(7) {
            0 => h = n.block(h, 0),
            1 => h = n.block(h, 1),
            2 => h = n.block(h, 2),
            3 => {
                // A skip over two blocks: x -> block -> block, + x, poly.
                let x0 = h;
                let h1 = n.block(h, 0);
                let h2 = n.block(h1, 0);
                let a = n.add(h2, x0);
                h = n.poly(a);
                i += 1;
            }
            4 if n.g.node(h).shape[2].is_multiple_of(2) => {
                h = n.op(
                    Op::AveragePool(AveragePool {
                        kernel: [2, 2],
                        strides: [2, 2],
                        pads: [0; 4],
                        count_include_pad: true,
                    }),
                    &[h],
                );
            }
            5 => {
                // A scaled skip, as `f(x) + 0.5 * x` exports: a rank-0 constant operand.
                let k = n.rng.vec(1, 0.25, 1.5)[0];
                let name = n.name("k");
                let kc = n.g.add_const(name, Tensor::scalar(k));
                let skip = n.op(Op::Mul, &[h, kc]);
                let c = n.g.node(h).shape[1];
                let f = n.cbp(h, c, 1);
                let a = n.add(f, skip);
                h = n.poly(a);
            }
            _ => h = n.cbp(h, n.g.node(h).shape[1], 1),
        }
        i += 1;
    }
    let out = n.head(h, 3);
    n.g.set_outputs(vec![out]);
    n.g
}

/// A random MLP: Gemm or MatMul + Add layers, 1-D BatchNorms, quadratic activations.
pub fn random_mlp(rng: &mut Rng) -> Graph {
    let mut n = Net::new(rng);
    let mut k = 2 + n.rng.below(4);
    let x = n.g.add_input("x", vec![1 + n.rng.below(2), k]);
    let mut h = x;
    for layer in 0..1 + n.rng.below(3) {
        let m = 2 + n.rng.below(4);
        if n.rng.below(2) == 0 {
            let b = n.rng.tensor(vec![k, m], -0.7, 0.7);
            let bc = n.g.add_const(format!("B{layer}"), b);
            h = n.op(Op::MatMul, &[h, bc]);
            let bias = n.rng.tensor(vec![m], -0.2, 0.2);
            let cc = n.g.add_const(format!("bias{layer}"), bias);
            h = n.op(Op::Add, &[h, cc]);
        } else {
            let tb = n.rng.below(2) == 0;
            let b = n
                .rng
                .tensor(if tb { vec![m, k] } else { vec![k, m] }, -0.7, 0.7);
            let alpha = n.rng.f(0.5, 1.5);
            let beta = n.rng.f(0.5, 1.5);
            let c = Some(Tensor::vector(n.rng.vec(m, -0.2, 0.2)));
            h = n.op(
                Op::Gemm(Gemm {
                    b,
                    c,
                    alpha,
                    beta,
                    trans_a: false,
                    trans_b: tb,
                }),
                &[h],
            );
        }
        if n.rng.below(3) > 0 {
            h = n.bn(h);
        }
        h = n.poly(h);
        k = m;
    }
    n.g.set_outputs(vec![h]);
    n.g
}
