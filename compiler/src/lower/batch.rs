//! Batch mode: several inputs evaluated by one run of a program, each in its own slot
//! period. The lowering records the period P its layout works in (`Emitter::need_period`:
//! every value of one input lies in slots `0..P`, every mask repeats every P slots, every
//! rotate-and-sum stays inside `0..P`); a valid output slot only ever reads valid slots of
//! the same input, so input `b` placed at slot offset `b * P` is computed by exactly the
//! same instructions as input 0, at no extra cost.
//!
//! Rewrites: the input layout (shape `(B, ...)`, placement replicated at the offsets), the
//! output layout (likewise) and the `Dot` vectors (their entries replicated). Precondition:
//! a program lowered for batch 1 with its period. Guarantees: the batched program
//! validates, and every mask is checked to repeat with the period (an internal error
//! otherwise, never a silently wrong batch).

use runtime::program::Program;

use super::error::LowerError;

/// How many inputs one run evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchSize {
    /// One input (the default).
    #[default]
    One,
    /// Exactly this many inputs.
    Exactly(usize),
    /// As many as the slots hold.
    Max,
}

impl std::str::FromStr for BatchSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "max" => Ok(BatchSize::Max),
            _ => match s.parse::<usize>() {
                Ok(0) | Err(_) => Err(format!(
                    "batch size '{s}': expected a positive integer or 'max'"
                )),
                Ok(1) => Ok(BatchSize::One),
                Ok(n) => Ok(BatchSize::Exactly(n)),
            },
        }
    }
}

/// The number of inputs a program built for slot period `period` holds at most.
pub fn capacity(program: &Program, period: usize) -> usize {
    program.params.slots() / period.max(1)
}

/// Turns a batch-1 program with slot period `period` into one that evaluates `batch`
/// inputs side by side.
pub fn replicate(program: &mut Program, period: usize, size: BatchSize) -> Result<(), LowerError> {
    let slots = program.params.slots();
    let cap = capacity(program, period);
    let batch = match size {
        BatchSize::One => return Ok(()),
        BatchSize::Max => cap,
        BatchSize::Exactly(n) => n,
    };
    if batch > cap {
        return Err(LowerError::Batch(format!(
            "a batch of {batch} does not fit: each input needs {period} of the {slots} slots, \
             so at most {cap} fit"
        )));
    }
    if batch <= 1 {
        return Ok(());
    }
    for (k, m) in program.masks.iter().enumerate() {
        let v = m.to_values(slots);
        if (period..slots).any(|s| v[s] != v[s % period]) {
            return Err(LowerError::Internal(format!(
                "mask {k} does not repeat every {period} slots: the program cannot be batched"
            )));
        }
    }
    for (k, vec) in program.vectors.iter_mut().enumerate() {
        if vec.entries.iter().any(|e| e.0 as usize >= period) {
            return Err(LowerError::Internal(format!(
                "vector {k} has entries beyond the period of {period} slots"
            )));
        }
        let one = std::mem::take(&mut vec.entries);
        vec.entries = (0..batch)
            .flat_map(|b| one.iter().map(move |&(s, w)| (s + (b * period) as u32, w)))
            .collect();
    }
    let input_numel: usize = program.input.shape.iter().product();
    let output_numel: usize = program.output.shape.iter().product();
    for shape in [&program.input.shape, &program.output.shape] {
        if shape.first() != Some(&1) {
            return Err(LowerError::Batch(format!(
                "the model's tensors must have batch dimension 1 to be batched, not {shape:?}"
            )));
        }
    }
    let spread = |placement: &[(u32, u32, u32)], numel: usize| -> Result<_, LowerError> {
        let mut out = Vec::with_capacity(placement.len() * batch);
        for b in 0..batch {
            for &(idx, reg, slot) in placement {
                if slot as usize >= period {
                    return Err(LowerError::Internal(format!(
                        "slot {slot} lies beyond the period of {period} slots"
                    )));
                }
                out.push((idx + (b * numel) as u32, reg, slot + (b * period) as u32));
            }
        }
        Ok(out)
    };
    program.input.placement = spread(&program.input.placement, input_numel)?;
    program.output.placement = spread(&program.output.placement, output_numel)?;
    program.input.shape[0] = batch;
    program.output.shape[0] = batch;
    program
        .validate()
        .map_err(|e| LowerError::Internal(format!("the batched program is invalid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!("max".parse::<BatchSize>(), Ok(BatchSize::Max));
        assert_eq!("1".parse::<BatchSize>(), Ok(BatchSize::One));
        assert_eq!("16".parse::<BatchSize>(), Ok(BatchSize::Exactly(16)));
        assert!("0".parse::<BatchSize>().is_err());
        assert!("x".parse::<BatchSize>().is_err());
    }
}
