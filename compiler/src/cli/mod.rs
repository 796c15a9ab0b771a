//! Argument parsing (clap derive) and dispatch to the verbs; shared option helpers.

use clap::{Parser, Subcommand};

mod graph;
mod inspect;
mod interpret;

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
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Graph(a) => graph::run(a),
        Cmd::Interpret(a) => interpret::run(a),
        Cmd::Inspect(a) => inspect::run(a),
    }
}

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
