//! Checks one plaintext run of a model against the value ranges its parameters were
//! chosen for, naming the layer that leaves them (`fhec run` refuses to encrypt when a
//! value would wrap around; `fhec interpret` says so).
//!
//! Two ranges (`passes::select_params::ParamRequest`):
//! - `output_range`: every value must stay within it. The base prime holds the output at
//!   Delta with this much headroom, and every higher level holds at least as much, so
//!   within it nothing wraps around modulo Q; beyond it the decryption can be garbage.
//! - `activation_range`: the polynomial replaces ReLU on [-r, r] and the noise model
//!   assumes inputs within it. Leaving it is not an error (the encryption follows the
//!   polynomial), but the result no longer approximates ReLU and precision is lower.

use passes::interpret::InterpretError;
use passes::ir::{Graph, Tensor};
use passes::ranges::ranges;
use passes::select_params::ParamRequest;

/// What one run showed.
#[derive(Clone, Debug, Default)]
pub struct RangeFindings {
    /// The first layer (topological order) whose output leaves `output_range`, with the
    /// largest |value| it reached.
    pub saturated: Option<(String, &'static str, f64)>,
    /// Activation layers whose input leaves `activation_range`: (layer, largest |input|).
    pub outside_fit: Vec<(String, f64)>,
    pub output_range: f64,
    pub activation_range: f64,
}

impl RangeFindings {
    /// One line on the saturated layer, if any.
    pub fn saturation_message(&self) -> Option<String> {
        self.saturated.as_ref().map(|(layer, op, v)| {
            format!(
                "layer '{layer}' ({op}) reaches |x| = {}, beyond the +-{} the parameters hold: \
                 the encrypted result would wrap around and decrypt to garbage",
                num(*v),
                self.output_range
            )
        })
    }

    /// One line on the activation inputs outside the fitted range, if any.
    pub fn fit_message(&self) -> Option<String> {
        let (layer, v) = self.outside_fit.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some(format!(
            "activation inputs leave [-{r}, {r}] (the range the polynomial was fitted on and \
             the parameters assume) in {} layer(s), most at '{layer}' (|x| = {}); the \
             encrypted result follows the polynomial, with less precision than predicted",
            self.outside_fit.len(),
            num(*v),
            r = self.activation_range
        ))
    }
}

/// 3 decimals, or scientific notation for large values.
fn num(v: f64) -> String {
    if v.abs() < 1e4 {
        format!("{v:.3}")
    } else {
        format!("{v:.3e}")
    }
}

/// Runs `graph` on `input` in f64 and compares its values with `request`'s ranges.
pub fn check(
    graph: &Graph,
    input: &Tensor,
    request: &ParamRequest,
) -> Result<RangeFindings, InterpretError> {
    let mut f = RangeFindings {
        output_range: request.output_range,
        activation_range: request.activation_range,
        ..Default::default()
    };
    for r in ranges(graph, std::slice::from_ref(input))? {
        if f.saturated.is_none() && r.max_abs > request.output_range {
            f.saturated = Some((r.node.clone(), r.op, r.max_abs));
        }
        if let Some(m) = r.poly_input_max {
            if m > request.activation_range {
                f.outside_fit.push((r.node, m));
            }
        }
    }
    Ok(f)
}
