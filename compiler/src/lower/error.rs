//! Errors of the lowering.

/// Why a planned graph could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("layer '{layer}' ({op}) cannot be lowered in the {layout} layout: {why}")]
    Unsupported {
        layer: String,
        op: String,
        layout: &'static str,
        why: String,
    },
    #[error("level budget exhausted at layer '{layer}': no prime left to rescale")]
    Exhausted { layer: String },
    #[error("layer '{layer}': {why}")]
    Layout { layer: String, why: String },
    #[error("parameters: {0}")]
    Params(#[from] runtime::Error),
    #[error("batch mode: {0}")]
    Batch(String),
    #[error("ensemble: {0}")]
    Ensemble(String),
    #[error("internal lowering error: {0}")]
    Internal(String),
}
