//! `fhec decrypt PROG.fheprog --secret client.sk --input out.ct [--json]` (client side):
//! decrypts the program's output ciphertexts and gathers the output tensor by the
//! program's output layout; `--json` prints `{"output", "shape", "top1"}` like
//! `fhec interpret --json`. `--flood-bits B` adds fresh Gaussian noise of deviation 2^B
//! (in units of the output scale's coefficients) before decoding, for results that are
//! shared with the server (see docs/SECURITY.md).

use super::files::{load_secret, read, ProgramArg};
use anyhow::Context as _;
use clap::Parser;
use runtime::ckks::decryptor::flood_slot_std;
use runtime::ckks::Decryptor;
use runtime::codec;
use runtime::math::sampling::Csprng;
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
    /// Noise flooding: add Gaussian noise of standard deviation 2^B (on the message
    /// coefficients, CSPRNG) before decoding. Use it when decrypted results go back to
    /// the server or to anyone else; it costs precision (stated on stderr).
    #[arg(long, value_name = "B")]
    flood_bits: Option<f64>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (program, ctx) = a.program.load()?;
    let sk = load_secret(&a.secret, &ctx)?;
    let cts = codec::ciphertexts_from_bytes(&read(&a.input)?, &ctx)
        .with_context(|| format!("loading {}", a.input.display()))?;
    let dec = Decryptor::new(&ctx, &sk);
    let mut rng = Csprng::from_os();
    let decrypted = cts
        .iter()
        .map(|(r, c)| {
            Ok((
                *r,
                match a.flood_bits {
                    Some(b) => dec.decrypt_flooded(c, b, &mut rng)?,
                    None => dec.decrypt(c)?,
                },
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    if let (Some(b), Some((_, c))) = (a.flood_bits, cts.first()) {
        let std = flood_slot_std(ctx.n(), b, c.scale);
        eprintln!(
            "flooding: Gaussian noise 2^{b} on the coefficients, deviation {std:.3e} per output \
             value (|change| < {:.3e} with overwhelming probability)",
            8.0 * std
        );
    }
    let out = program.output.gather(&decrypted)?;
    let shape = &program.output.shape;
    let members = program.output.members.max(1) as usize;
    let classes = shape.last().copied().unwrap_or(1);
    if members > 1 {
        // An ensemble: per-member top-1, then the averaged softmax.
        let probs = compiler::members::combine(&out, members, classes);
        let member_top1: Vec<usize> = out
            .chunks(out.len() / members)
            .map(|part| compiler::e2e::top1(part, classes))
            .collect();
        let top1 = compiler::e2e::top1(&probs, classes);
        if a.json {
            println!(
                "{}",
                json!({"output": out, "shape": shape, "members": members,
                       "probabilities": probs, "member_top1": member_top1, "top1": top1})
            );
        } else {
            for (m, part) in out.chunks(out.len() / members).enumerate() {
                for (i, v) in part.iter().enumerate() {
                    println!("member {m} {i:4} {v:12.6}");
                }
            }
            for (i, p) in probs.iter().enumerate() {
                println!("averaged softmax {i:4} {p:10.6}");
            }
            println!("members' top-1: {member_top1:?}");
            println!("top-1: {top1}");
        }
        return Ok(());
    }
    // One input: a number; a batch (B, classes) with B > 1: one class per input.
    let batch = if shape.len() >= 2 { shape[0] } else { 1 };
    let tops = compiler::inputs::top1_rows(&out, shape, batch);
    let top1 = if batch > 1 {
        json!(tops)
    } else {
        json!(tops.first().copied().unwrap_or(0))
    };
    if a.json {
        println!("{}", json!({"output": out, "shape": shape, "top1": top1}));
    } else {
        for (i, v) in out.iter().enumerate() {
            println!("{i:4} {v:12.6}");
        }
        println!("top-1: {top1}");
    }
    Ok(())
}
