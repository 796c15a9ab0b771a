//! Argument parsing (clap derive) and dispatch to the verbs; shared option helpers.

use clap::{Parser, Subcommand};

pub(crate) mod compile;
mod decrypt;
mod encrypt;
mod eval;
mod files;
mod graph;
mod inspect;
mod interpret;
mod keygen;
mod run;
mod simulate;

/// fhec: compile ONNX CNNs to leveled RNS-CKKS programs.
#[derive(Parser)]
#[command(name = "fhec", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Import a model and list its IR nodes: op, name, output shape, parameter count.
    Graph(graph::Args),
    /// Run a model on given inputs with the f64 reference interpreter.
    Interpret(interpret::Args),
    /// Run the passes, assign levels and choose parameters; show per-layer levels.
    Inspect(inspect::Args),
    /// Compile a model to a .fheprog (passes, levels, parameters, lowering).
    Compile(compile::Args),
    /// Compile, then keygen, encrypt, evaluate and decrypt in one process, next to the
    /// plaintext reference.
    Run(run::Args),
    /// Client: make a secret key and the evaluation keys a program needs.
    Keygen(keygen::Args),
    /// Client: encrypt an input for a program.
    Encrypt(encrypt::Args),
    /// Server: run a program on an encrypted input with evaluation keys only.
    Eval(eval::Args),
    /// Client: decrypt a program's encrypted output.
    Decrypt(decrypt::Args),
    /// Run a .fheprog on plaintext slots with the encrypted run's rounding and a CKKS
    /// noise model (accuracy on the CIFAR-10 test set without encrypting it).
    Simulate(simulate::Args),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Graph(a) => graph::run(a),
        Cmd::Interpret(a) => interpret::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Compile(a) => compile::run(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Keygen(a) => keygen::run(a),
        Cmd::Encrypt(a) => encrypt::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Decrypt(a) => decrypt::run(a),
        Cmd::Simulate(a) => simulate::run(a),
    }
}

pub use compiler::e2e::top1;

/// Parses `1,3,32,32` (also `1x3x32x32`).
pub fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    s.split([',', 'x'])
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad dimension '{d}' in shape '{s}'"))
        })
        .collect()
}
