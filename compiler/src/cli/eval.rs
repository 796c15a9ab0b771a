//! `fhec eval PROG.fheprog --eval server.evk --input x.ct -o out.ct` (server side): runs
//! the program on the encrypted input with evaluation keys only; it never reads a secret
//! key (a secret-key file given as `--eval` is refused by its file kind).

use super::files::{read, write_atomic, ProgramArg};
use anyhow::Context as _;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use runtime::codec;
use runtime::program::Executor;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    program: ProgramArg,
    /// The evaluation keys from `fhec keygen`.
    #[arg(long)]
    eval: PathBuf,
    #[arg(long)]
    input: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (program, ctx) = a.program.load()?;
    let keys = codec::eval_keys_from_file(read(&a.eval)?, &ctx)
        .with_context(|| format!("loading the evaluation keys {}", a.eval.display()))?;
    let mut inputs = codec::ciphertexts_from_bytes(&read(&a.input)?, &ctx)
        .with_context(|| format!("loading the input {}", a.input.display()))?;
    inputs.sort_by_key(|(r, _)| *r);
    let exec = Executor::new(&ctx, &program, &keys)?;
    let bar = ProgressBar::new(program.instrs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let out = exec.run(
        inputs.into_iter().map(|(_, c)| c).collect(),
        |done, _, layer| {
            bar.set_position(done as u64);
            bar.set_message(layer.to_string());
        },
    )?;
    bar.finish_and_clear();
    let cts: Vec<(u32, _)> = out.into_iter().collect();
    write_atomic(
        &a.output,
        &codec::ciphertexts_to_bytes(&cts, program.params.id())?,
        false,
    )?;
    eprintln!(
        "eval {:.2} s; wrote {}",
        t0.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(())
}
