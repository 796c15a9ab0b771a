//! What every rewrite pass shares: the report of what it changed, its error type, and small
//! graph helpers (single-consumer tests, per-channel coefficient access).

use crate::ir::{Graph, IrError, NodeId};

/// Errors from a rewrite or analysis pass.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error("node '{node}': {msg}")]
    Node { node: String, msg: String },
}

impl PassError {
    pub fn node(g: &Graph, id: NodeId, msg: impl Into<String>) -> Self {
        PassError::Node {
            node: g.node(id).name.clone(),
            msg: msg.into(),
        }
    }
}

/// One change a pass made, for `fhec inspect --passes` and the pipeline log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    /// The node that holds the result (kept or created).
    pub node: String,
    /// Names of nodes absorbed into `node` (removed from the graph).
    pub absorbed: Vec<String>,
    pub what: String,
    /// True where the rewrite could not make the pattern free and it costs one level.
    pub pays_level: bool,
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PassReport {
    pub pass: String,
    pub changes: Vec<Change>,
}

impl PassReport {
    pub fn new(pass: &str) -> Self {
        PassReport {
            pass: pass.to_string(),
            changes: vec![],
        }
    }

    pub fn push(&mut self, node: &str, absorbed: Vec<String>, what: impl Into<String>) {
        self.changes.push(Change {
            node: node.to_string(),
            absorbed,
            what: what.into(),
            pays_level: false,
        });
    }

    pub fn push_cost(&mut self, node: &str, what: impl Into<String>) {
        self.changes.push(Change {
            node: node.to_string(),
            absorbed: vec![],
            what: what.into(),
            pays_level: true,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The single consumer of `id` when exactly one node reads it once and it is not a graph
/// output.
pub fn sole_consumer(g: &Graph, id: NodeId) -> Option<NodeId> {
    let c = g.consumers(id);
    if c.len() == 1 && !g.is_output(id) {
        Some(c[0].0)
    } else {
        None
    }
}

/// Coefficient `ch` of a per-channel vector of length 1 or C.
pub fn coef(v: &[f64], ch: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[ch]
    }
}

/// Channel count of a value: axis 1 for rank >= 2, else 1.
pub fn channels(shape: &[usize]) -> usize {
    if shape.len() >= 2 {
        shape[1]
    } else {
        1
    }
}

/// Replaces every use of `old` by its input `new` and removes `old`.
pub fn bypass(g: &mut Graph, old: NodeId, new: NodeId) {
    g.replace_uses(old, new);
    g.remove_node(old);
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Random small graphs and the interpreter equivalence check shared by the passes'
    //! property tests.
    use crate::interpret::run;
    use crate::ir::{Graph, Tensor};

    /// A tiny deterministic generator (the tests draw seeds from proptest).
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }
        /// Uniform in [lo, hi).
        pub fn f(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next() as f64 / (1u64 << 53) as f64)
        }
        pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
            (0..n).map(|_| self.f(lo, hi)).collect()
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub fn tensor(&mut self, shape: Vec<usize>, lo: f64, hi: f64) -> Tensor {
            let n = shape.iter().product();
            Tensor::new(shape, self.vec(n, lo, hi)).unwrap()
        }
    }

    /// Largest relative error between the outputs of `a` and `b` on `inputs`
    /// (relative to the largest output magnitude, floored at 1).
    pub fn rel_err(a: &Graph, b: &Graph, inputs: &[Tensor]) -> f64 {
        let oa = run(a, inputs).unwrap();
        let ob = run(b, inputs).unwrap();
        let mut worst: f64 = 0.0;
        for (x, y) in oa.iter().zip(&ob) {
            assert_eq!(x.shape(), y.shape());
            let m = x.data().iter().fold(1.0f64, |m, v| m.max(v.abs()));
            worst = worst.max(x.max_abs_diff(y).unwrap() / m);
        }
        worst
    }

    /// The property every pass test checks: `pass` leaves a valid graph computing the
    /// same function (relative error below 1e-9 on random inputs) and a second run changes
    /// nothing. Returns the first run's report for pass-specific checks.
    pub fn check_pass(
        g: &mut Graph,
        rng: &mut Rng,
        pass: impl Fn(&mut Graph) -> Result<crate::pass::PassReport, crate::pass::PassError>,
    ) -> Result<crate::pass::PassReport, proptest::test_runner::TestCaseError> {
        let before = g.clone();
        let rep = pass(g).unwrap();
        g.validate().unwrap();
        let inp = inputs(g, rng);
        let err = rel_err(&before, g, &inp);
        proptest::prop_assert!(err < 1e-9, "relative error {err:e}");
        let mut again = g.clone();
        let rep2 = pass(&mut again).unwrap();
        proptest::prop_assert!(rep2.is_empty(), "not idempotent: {:?}", rep2);
        Ok(rep)
    }

    /// Random inputs for every graph input.
    pub fn inputs(g: &Graph, rng: &mut Rng) -> Vec<Tensor> {
        g.inputs()
            .iter()
            .map(|&i| rng.tensor(g.node(i).shape.clone(), -1.0, 1.0))
            .collect()
    }
}
