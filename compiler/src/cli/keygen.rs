//! `fhec keygen PROG.fheprog --secret client.sk --eval server.evk` (client side): a fresh
//! secret key and exactly the evaluation keys the program needs (derived from it), each
//! generated at the level where it is used.

use super::files::{write_atomic, ProgramArg};
use clap::Parser;
use runtime::ckks::KeyGenerator;
use runtime::codec;
use runtime::program::KeyRequirements;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    program: ProgramArg,
    /// Where to write the secret key (stays on the client).
    #[arg(long)]
    secret: PathBuf,
    /// Where to write the evaluation keys (sent to the server).
    #[arg(long)]
    eval: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (program, ctx) = a.program.load()?;
    let req = KeyRequirements::of(&program)?;
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let keys = kg.eval_keys(&sk, req.relin_level, &req.galois(&ctx))?;
    // The serialised key is wiped from memory once written.
    let sk_bytes = zeroize::Zeroizing::new(codec::secret_key_to_bytes(&sk)?);
    write_atomic(&a.secret, &sk_bytes, true)?;
    let evk = codec::eval_keys_to_bytes(&keys)?;
    write_atomic(&a.eval, &evk, false)?;
    eprintln!(
        "wrote {} (secret, keep it) and {} ({:.1} MiB: {} rotation keys, relinearisation {})",
        a.secret.display(),
        a.eval.display(),
        evk.len() as f64 / (1 << 20) as f64,
        keys.galois.len(),
        if keys.relin.is_some() { "yes" } else { "no" }
    );
    Ok(())
}
