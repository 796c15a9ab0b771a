//! The graph IR of fhec, its f64 reference interpreter and the rewrite passes.

pub mod interpret;
pub mod ir;
