//! Entry points of the fuzz targets (`fuzz/fuzz_targets/*.rs`, cargo-fuzz) and of the
//! stable test that replays their committed corpora (`tests/tests/fuzz_corpora.rs`): one
//! function per parser of outside data, each taking arbitrary bytes and required never to
//! panic, hang or allocate beyond what the input's size justifies. Errors are the expected
//! outcome and are dropped.
//!
//! The `fhec` container ends in a BLAKE3 checksum, which a mutating fuzzer cannot forge, so
//! each container target has two modes chosen by the first byte: even = the rest is a
//! whole file (header, length and checksum checks), odd = the rest is a body that the
//! harness seals with a valid header and checksum, which reaches the body decoders and
//! their validation. [`seeds`] builds the initial corpus in both modes. Every entry point
//! returns whether its input parsed (the replay test checks that valid seeds do).

use std::sync::{Arc, OnceLock};

use runtime::ckks::{Context, Decryptor, Encoder, Encryptor, KeyGenerator, Params, SecretKey};
use runtime::codec::{self, FileKind, Header};
use runtime::program::{InputLayout, Instr, KeyRequirements, Linear, OutputLayout, Program};

/// The fuzz targets, by corpus directory name.
pub const TARGETS: [&str; 7] = [
    "fheprog",
    "eval_keys",
    "secret_key",
    "ciphertext",
    "onnx",
    "tensor_pb",
    "png",
];

/// Runs target `name` on `data` (for the corpus replay test); true when the input parsed.
pub fn run_target(name: &str, data: &[u8]) -> bool {
    match name {
        "fheprog" => fheprog(data),
        "eval_keys" => eval_keys(data),
        "secret_key" => secret_key(data),
        "ciphertext" => ciphertext(data),
        "onnx" => onnx(data),
        "tensor_pb" => tensor_pb(data),
        "png" => png(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The fixed client state the key and ciphertext targets load against: a tiny insecure
/// parameter set (N = 2^10, two Q primes, one P prime) and one secret key.
struct Fixture {
    ctx: Arc<Context>,
    sk: SecretKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let params = Params::insecure_for_tests(10, &[40, 30], &[40], 2)
            .expect("the fuzz parameter set is valid");
        let ctx = Context::new(params).expect("the fuzz context builds");
        let sk = KeyGenerator::new(&ctx).secret_key();
        Fixture { ctx, sk }
    })
}

/// `data` as file bytes: itself (mode byte even) or its tail sealed as a `kind` body for
/// the fixture's parameters and key set (mode byte odd).
fn as_file(data: &[u8], kind: FileKind) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode % 2 == 0 {
        return Some(rest.to_vec());
    }
    let f = fixture();
    let header = Header {
        kind,
        key_set: f.sk.key_set,
        params_id: f.ctx.params().id(),
    };
    Some(codec::seal(&header, rest))
}

/// `.fheprog`: load and validate, then derive the key requirements and pack / gather
/// through the layouts, as keygen, encrypt and decrypt do.
pub fn fheprog(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        // A sealed body: the header must carry the fingerprint of the body's own
        // parameters, which the harness computes when the body decodes at all.
        let params_id = postcard::from_bytes::<Program>(rest)
            .map(|p| p.params.id())
            .unwrap_or([0; 32]);
        let header = Header {
            kind: FileKind::Program,
            key_set: [0; 16],
            params_id,
        };
        codec::seal(&header, rest)
    };
    let Ok(program) = Program::from_bytes(&bytes) else {
        return false;
    };
    let _ = KeyRequirements::of(&program);
    let slots = program.params.slots();
    let total: usize = program.input.shape.iter().product();
    if total <= 1 << 16 {
        let _ = program.input.pack(&vec![0.0; total], slots);
    }
    let mut regs: Vec<u32> = program.output.placement.iter().map(|p| p.1).collect();
    regs.sort_unstable();
    regs.dedup();
    if regs.len() <= 16 {
        let decrypted = regs
            .into_iter()
            .map(|r| (r, vec![0.0; slots]))
            .collect::<std::collections::BTreeMap<_, _>>();
        let _ = program.output.gather(&decrypted);
    }
    true
}

/// Evaluation-key bundles, loaded for the fixture's parameters.
pub fn eval_keys(data: &[u8]) -> bool {
    as_file(data, FileKind::EvalKeys)
        .is_some_and(|bytes| codec::eval_keys_from_bytes(&bytes, &fixture().ctx).is_ok())
}

/// Secret-key files, loaded for the fixture's parameters.
pub fn secret_key(data: &[u8]) -> bool {
    as_file(data, FileKind::SecretKey)
        .is_some_and(|bytes| codec::secret_key_from_bytes(&bytes, &fixture().ctx).is_ok())
}

/// Ciphertext files, loaded and (when they load) decrypted with the fixture's key.
pub fn ciphertext(data: &[u8]) -> bool {
    let Some(bytes) = as_file(data, FileKind::Ciphertext) else {
        return false;
    };
    let f = fixture();
    let Ok(cts) = codec::ciphertexts_from_bytes(&bytes, &f.ctx) else {
        return false;
    };
    let dec = Decryptor::new(&f.ctx, &f.sk);
    for (_, ct) in &cts {
        let _ = dec.decrypt(ct);
    }
    true
}

/// ONNX models: protobuf decoding, then the importer (no external data).
pub fn onnx(data: &[u8]) -> bool {
    crate::onnx::model_from_bytes(data, "fuzz input")
        .is_ok_and(|model| crate::onnx::import_model(&model, None, &Default::default()).is_ok())
}

/// Serialized TensorProto inputs (no external data).
pub fn tensor_pb(data: &[u8]) -> bool {
    crate::onnx::tensor::decode_pb(data, "fuzz input", None).is_ok()
}

/// PNG inputs, for a 32x32 (mode byte even) or an 8x8 model (odd).
pub fn png(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let hw = if mode % 2 == 0 { [32, 32] } else { [8, 8] };
    crate::image::decode_png(rest, "fuzz input", hw, [0.5; 3], [0.25; 3]).is_ok()
}

/// A small valid program at the fixture's parameters: a two-tap masked linear layer with a
/// bias, a rescale, a square into a new register (most fields of the format in use).
fn seed_program() -> Program {
    let len = 8u32;
    let params = fixture().ctx.params().clone();
    Program {
        params,
        masks: vec![runtime::program::SlotMask::from_slots((0..len).collect())],
        vectors: vec![runtime::program::SlotVector {
            entries: (0..len).map(|k| (k, 0.5)).collect(),
        }],
        input: InputLayout {
            shape: vec![1, len as usize],
            image: None,
            cts: 1,
            placement: (0..len).map(|k| (k, 0, k)).collect(),
            scale: 2f64.powi(30),
            level: 1,
        },
        output: OutputLayout {
            shape: vec![1, len as usize],
            placement: (0..len).map(|k| (k, 2, k)).collect(),
            members: 1,
        },
        registers: 3,
        instrs: vec![
            Instr::Linear(Linear {
                srcs: vec![0],
                dsts: vec![1],
                steps: vec![0, 1],
                masks: vec![None, Some(0)],
                weights: vec![0.5, -0.25],
                weight_scale: 2f64.powi(30),
                bias: Some(vec![0.125]),
                bias_mask: Some(0),
            }),
            Instr::Rescale { reg: 1 },
            Instr::SquareInto { dst: 2, src: 1 },
        ],
        origins: ["lin", "lin", "act"].map(String::from).to_vec(),
    }
}

/// The initial corpus: (target, file name, bytes). Container targets get one whole file
/// (mode 0) and one bare body (mode 1); the model, tensor and image targets the committed
/// tiny files under `tests/data` (read from `data_dir`).
pub fn seeds(data_dir: &std::path::Path) -> std::io::Result<Vec<(&'static str, String, Vec<u8>)>> {
    let f = fixture();
    let ctx = &f.ctx;
    let mut out = Vec::new();
    let mut push = |target: &'static str, name: &str, mode: u8, file: Vec<u8>| {
        let body = if mode % 2 == 1 {
            // Strip header and checksum: the harness seals the body itself.
            file[64..file.len() - 32].to_vec()
        } else {
            file
        };
        let mut v = vec![mode];
        v.extend(body);
        out.push((target, format!("{name}-mode{mode}"), v));
    };
    let program = seed_program();
    let prog = program.to_bytes().expect("seed program encodes");
    push("fheprog", "masked-linear-square", 0, prog.clone());
    push("fheprog", "masked-linear-square", 1, prog);

    let sk_bytes = codec::secret_key_to_bytes(&f.sk).expect("secret key encodes");
    push("secret_key", "n1024", 0, sk_bytes.clone());
    push("secret_key", "n1024", 1, sk_bytes);

    let req = KeyRequirements::of(&program).expect("seed program walks");
    let mut kg = KeyGenerator::new(ctx);
    let keys = kg
        .eval_keys(&f.sk, req.relin_level, &req.galois(ctx))
        .expect("seed keys");
    let evk = codec::eval_keys_to_bytes(&keys).expect("keys encode");
    push("eval_keys", "relin-rot1", 0, evk.clone());
    push("eval_keys", "relin-rot1", 1, evk);

    let pt = Encoder::new(ctx)
        .encode(&[0.5, -0.25, 0.125], 2f64.powi(30), 1)
        .expect("seed plaintext");
    let ct = Encryptor::new(ctx)
        .encrypt_sk(&pt, &f.sk)
        .expect("seed ciphertext");
    let ct_bytes = codec::ciphertext_to_bytes(&ct, ctx.params().id()).expect("ct encodes");
    push("ciphertext", "seeded-level1", 0, ct_bytes.clone());
    push("ciphertext", "seeded-level1", 1, ct_bytes);

    for name in [
        "tiny_conv",
        "tiny_gemm_head",
        "tiny_residual_1x1",
        "tiny_strided",
    ] {
        let model = std::fs::read(data_dir.join(format!("{name}.onnx")))?;
        out.push(("onnx", name.to_string(), model));
        let pb = std::fs::read(data_dir.join(format!("{name}_input.pb")))?;
        out.push(("tensor_pb", format!("{name}_input"), pb));
    }
    let png = std::fs::read(data_dir.join("cifar10/cifar10_00_3.png"))?;
    let mut v = vec![0u8];
    v.extend(png);
    out.push(("png", "cifar10_00_3".to_string(), v));
    Ok(out)
}
