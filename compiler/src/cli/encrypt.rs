//! `fhec encrypt PROG.fheprog --secret client.sk --input X.pb -o x.ct` (client side):
//! packs the input tensor by the program's input layout and encrypts it (seeded
//! symmetric encryption: half-size ciphertexts).

use super::files::{load_secret, write_atomic, ProgramArg};
use anyhow::bail;
use clap::Parser;
use compiler::onnx::tensor;
use runtime::ckks::{Encoder, Encryptor};
use runtime::codec;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    #[command(flatten)]
    program: ProgramArg,
    #[arg(long)]
    secret: PathBuf,
    /// The input tensor as a serialized ONNX TensorProto.
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    input: Option<PathBuf>,
    /// An RGB PNG, normalised as the model was trained (image models only).
    #[arg(long)]
    image: Option<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (program, ctx) = a.program.load()?;
    let sk = load_secret(&a.secret, &ctx)?;
    let t = match (&a.input, &a.image) {
        (Some(p), _) => tensor::read_pb(p)?,
        (None, Some(png)) => compiler::image::load_for_program(png, &program.input)?,
        (None, None) => bail!("give --input X.pb or --image IMG.png"),
    };
    let packed = program.input.pack(t.data(), ctx.params().slots())?;
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
