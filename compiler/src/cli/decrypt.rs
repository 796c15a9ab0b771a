//! `fhec decrypt PROG.fheprog --secret client.sk --input out.ct [--json]` (client side):
//! decrypts the program's output ciphertexts and gathers the output tensor by the
//! program's output layout; `--json` prints `{"output", "shape", "top1"}` like
//! `fhec interpret --json`.

use super::files::{load_secret, read, ProgramArg};
use anyhow::Context as _;
use clap::Parser;
use runtime::ckks::Decryptor;
use runtime::codec;
use serde_json::json;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    program: ProgramArg,
    #[arg(long)]
    secret: PathBuf,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (program, ctx) = a.program.load()?;
    let sk = load_secret(&a.secret, &ctx)?;
    let cts = codec::ciphertexts_from_bytes(&read(&a.input)?, &ctx)
        .with_context(|| format!("loading {}", a.input.display()))?;
    let dec = Decryptor::new(&ctx, &sk);
    let decrypted = cts
        .iter()
        .map(|(r, c)| Ok((*r, dec.decrypt(c)?)))
        .collect::<anyhow::Result<_>>()?;
    let out = program.output.gather(&decrypted)?;
    let top1 = super::top1(&out, program.output.shape.last().copied().unwrap_or(1));
    if a.json {
        println!(
            "{}",
            json!({"output": out, "shape": program.output.shape, "top1": top1})
        );
    } else {
        for (i, v) in out.iter().enumerate() {
            println!("{i:4} {v:12.6}");
        }
        println!("top-1: {top1}");
    }
    Ok(())
}
