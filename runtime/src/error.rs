//! The runtime's error type: every user-reachable failure of the CKKS core, the codecs
//! and the executor is one of these variants, never a panic.

use thiserror::Error;

/// Errors of the CKKS runtime.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error(
        "parameters are not 128-bit secure: log2(QP) = {log_qp:.1} bits exceeds the \
         HomomorphicEncryption.org limit of {limit} bits for N = 2^{log_n} (ternary secret); \
         insecure parameters exist only through Params::insecure_for_tests"
    )]
    Insecure { log_n: u32, log_qp: f64, limit: u32 },
    #[error("ring degree 2^{0} is outside the supported range 2^10..2^17")]
    UnsupportedRingDegree(u32),
    #[error(
        "could not find {count} distinct NTT-friendly primes of {bits} bits for N = 2^{log_n}"
    )]
    NoPrimes { bits: u32, count: usize, log_n: u32 },
    #[error("too many values: {got} given, at most {max} slots")]
    TooManySlots { got: usize, max: usize },
    #[error("level mismatch: {0}")]
    LevelMismatch(String),
    #[error("scale mismatch: {a} (2^{log_a:.3}) vs {b} (2^{log_b:.3})")]
    ScaleMismatch {
        a: f64,
        b: f64,
        log_a: f64,
        log_b: f64,
    },
    #[error("level budget exhausted: cannot rescale a ciphertext already at level 0")]
    LevelExhausted,
    #[error("level budget exhausted at layer {layer}: no prime left to rescale")]
    BudgetExhausted { layer: String },
    #[error(
        "ciphertext has degree {0}; this operation needs a degree-1 ciphertext (relinearise first)"
    )]
    NotLinear(usize),
    #[error("missing evaluation key: {0}")]
    MissingKey(String),
    #[error("key set mismatch: {0}")]
    KeySetMismatch(String),
    #[error("value out of range: {0}")]
    OutOfRange(String),
    #[error("corrupt or truncated data: {0}")]
    Corrupt(String),
    #[error("unsupported format version {found} of {what} (this build reads version {expected})")]
    Version {
        what: String,
        found: u32,
        expected: u32,
    },
    #[error("wrong file kind: expected {expected}, found {found}")]
    WrongKind { expected: String, found: String },
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result alias of the runtime.
pub type Result<T> = std::result::Result<T, Error>;
