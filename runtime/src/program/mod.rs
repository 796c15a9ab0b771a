//! The `.fheprog` program: a parameter set, the client's input packing, an instruction
//! list over ciphertext registers, and where each output value sits; its key
//! requirements (derived from the instructions, never written by hand); and the executor
//! that runs it on the server with evaluation keys only.

pub mod executor;
pub mod format;
pub mod instr;
mod linear_tiled;
pub mod liveness;
pub mod requirements;
pub mod simulate;

pub use executor::Executor;
pub use format::{ImageNormalization, InputLayout, OutputLayout, Program, SlotMask, SlotVector};
pub use instr::{Dot, DotMasked, Instr, Linear, Reg};
pub use requirements::KeyRequirements;
pub use simulate::{Mode, SimOptions, SimOutput, Simulator};

#[cfg(test)]
mod tests;
