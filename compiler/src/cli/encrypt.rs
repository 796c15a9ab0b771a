//! `fhec encrypt PROG.fheprog --secret client.sk --input X.pb -o x.ct` (client side):
//! packs the input tensor by the program's input layout and encrypts it (seeded
//! symmetric encryption: half-size ciphertexts).

use super::files::{load_secret, write_atomic, ProgramArg};
use anyhow::bail;
use clap::Parser;
use runtime::ckks::{Encoder, Encryptor};
use runtime::codec;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    program: ProgramArg,
    #[arg(long)]
    secret: PathBuf,
    /// The input tensor as a serialized ONNX TensorProto (repeat, or give a tensor with a
    /// larger batch dimension, for a batch program).
    #[arg(long, required_unless_present = "image")]
    input: Vec<PathBuf>,
    /// An RGB PNG, normalised as the model was trained (image models only; repeat for a
    /// batch program).
    #[arg(long)]
    image: Vec<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (program, ctx) = a.program.load()?;
    let sk = load_secret(&a.secret, &ctx)?;
    use compiler::inputs::Source;
    let sources: Vec<Source> = (a.input.iter().cloned().map(Source::Tensor))
        .chain(a.image.iter().cloned().map(Source::Png))
        .collect();
    if sources.is_empty() {
        bail!("give --input X.pb or --image IMG.png");
    }
    let inputs = compiler::inputs::load_sources(&sources, &program.input)?;
    let shape = &program.input.shape;
    let batch = if shape.len() >= 2 { shape[0] } else { 1 };
    if inputs.given() < batch {
        eprintln!(
            "note: {} of the program's {batch} batch inputs given; the rest are zero",
            inputs.given()
        );
    }
    let packed = program
        .input
        .pack(inputs.tensor.data(), ctx.params().slots())?;
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::new(&ctx);
    let level = program.input.level as usize;
    let cts = packed
        .iter()
        .enumerate()
        .map(|(r, v)| {
            let pt = enc.encode(v, program.input.scale, level)?;
            Ok((r as u32, encryptor.encrypt_sk(&pt, &sk)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bytes = codec::ciphertexts_to_bytes(&cts, program.params.id())?;
    write_atomic(&a.output, &bytes, false)?;
    eprintln!(
        "wrote {} ({} ciphertexts, {:.1} KiB)",
        a.output.display(),
        cts.len(),
        bytes.len() as f64 / 1024.0
    );
    Ok(())
}
