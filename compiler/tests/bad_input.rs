//! The bad-input table of the `fhec` CLI (issue 9): for every kind of bad input a verb may
//! meet, one test that runs the binary and checks that it exits non-zero with exactly one
//! `error:` line naming the problem, never panics, and leaves no output that looks valid
//! (no output file, nothing on stdout). The programs are hand-built at INSECURE test
//! parameters (N = 2^11) so that every case runs in well under a second; the ONNX cases
//! go through `fhec compile`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use compiler::onnx::builder::{attr_i, ModelBuilder};
use compiler::onnx::tensor;
use passes::ir::Tensor;
use runtime::program::Program;

mod support;

const INS: &str = "--insecure-test-params";
const LEN: usize = 8;

fn program(q_bits: &[u32], input_shape: &[usize], image: bool, squares: usize) -> Program {
    support::two_tap_program(q_bits, input_shape, image, squares, LEN)
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .output()
        .expect("fhec runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) {
    let r = run(args);
    assert!(
        r.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
}

/// Runs `args`, expecting a refusal whose one error line contains every `needles` entry;
/// `output` (if any) must not exist afterwards. Returns the error line.
fn refused(args: &[&str], needles: &[&str], output: Option<&Path>) -> String {
    if let Some(o) = output {
        let _ = std::fs::remove_file(o);
    }
    let r = run(args);
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(!r.status.success(), "{args:?} succeeded: {err}");
    assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{args:?} panicked: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: want one error line in: {err}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("error: ") || l.starts_with("WARNING: ")),
        "{args:?}: stray output on stderr: {err}"
    );
    let line = errors[0].to_string();
    for n in needles {
        assert!(line.contains(n), "{args:?}: expected '{n}' in: {line}");
    }
    assert!(
        r.stdout.is_empty(),
        "{args:?}: printed output: {}",
        String::from_utf8_lossy(&r.stdout)
    );
    if let Some(o) = output {
        assert!(!o.exists(), "{args:?} left {}", o.display());
    }
    eprintln!("{:?} -> {line}", &args[..2.min(args.len())]);
    line
}

/// Programs, keys and ciphertexts every case starts from, made once per test binary.
struct Fixture {
    dir: PathBuf,
    /// Program A (vector input) and B (another program: other primes).
    prog_a: PathBuf,
    prog_b: PathBuf,
    /// A's program with a 3x4x4 image input.
    prog_img: PathBuf,
    sk_a: PathBuf,
    evk_a: PathBuf,
    /// A second key set for program A.
    sk_a2: PathBuf,
    evk_a2: PathBuf,
    evk_b: PathBuf,
    sk_img: PathBuf,
    /// A's input encrypted under sk_a, under sk_a2, and B's input under B's key.
    ct_a: PathBuf,
    ct_a2: PathBuf,
    ct_b: PathBuf,
    /// A's evaluated output.
    out_a: PathBuf,
    input: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fhec-bad-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n);
        let f = Fixture {
            prog_a: p("a.fheprog"),
            prog_b: p("b.fheprog"),
            prog_img: p("img.fheprog"),
            sk_a: p("a.sk"),
            evk_a: p("a.evk"),
            sk_a2: p("a2.sk"),
            evk_a2: p("a2.evk"),
            evk_b: p("b.evk"),
            sk_img: p("img.sk"),
            ct_a: p("a.ct"),
            ct_a2: p("a2.ct"),
            ct_b: p("b.ct"),
            out_a: p("a.out.ct"),
            input: p("x.pb"),
            dir: dir.clone(),
        };
        let write = |path: &Path, prog: Program| {
            std::fs::write(path, prog.to_bytes().unwrap()).unwrap();
        };
        write(&f.prog_a, program(&[60, 40, 40], &[LEN], false, 1));
        write(&f.prog_b, program(&[59, 40, 40], &[LEN], false, 1));
        write(&f.prog_img, program(&[60, 40, 40], &[1, 3, 4, 4], true, 1));
        let x: Vec<f64> = (0..LEN).map(|j| (j as f64 * 0.7).cos()).collect();
        tensor::write_pb(&f.input, &Tensor::new(vec![LEN], x).unwrap(), "x").unwrap();
        let keygen = |prog: &Path, sk: &Path, evk: &Path| {
            ok(&["keygen", s(prog), "--secret", s(sk), "--eval", s(evk), INS]);
        };
        keygen(&f.prog_a, &f.sk_a, &f.evk_a);
        keygen(&f.prog_a, &f.sk_a2, &f.evk_a2);
        let sk_b = p("b.sk");
        keygen(&f.prog_b, &sk_b, &f.evk_b);
        keygen(&f.prog_img, &f.sk_img, &p("img.evk"));
        let encrypt = |prog: &Path, sk: &Path, ct: &Path| {
            ok(&[
                "encrypt",
                s(prog),
                "--secret",
                s(sk),
                "--input",
                s(&f.input),
                "-o",
                s(ct),
                INS,
            ]);
        };
        encrypt(&f.prog_a, &f.sk_a, &f.ct_a);
        encrypt(&f.prog_a, &f.sk_a2, &f.ct_a2);
        encrypt(&f.prog_b, &sk_b, &f.ct_b);
        ok(&[
            "eval",
            s(&f.prog_a),
            "--eval",
            s(&f.evk_a),
            "--input",
            s(&f.ct_a),
            "-o",
            s(&f.out_a),
            INS,
        ]);
        f
    })
}

/// A scratch directory for one case.
fn case_dir(name: &str) -> PathBuf {
    let d = fixture().dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The three corruptions of a file: cut in half, one bit flipped in the body, and the
/// format version field changed to 99; each with the words its error must contain.
fn corruptions(bytes: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut flipped = bytes.to_vec();
    let mid = 64 + (bytes.len() - 96) / 2;
    flipped[mid] ^= 0x10;
    let mut version = bytes.to_vec();
    version[5] = 99;
    vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        ("bit-flipped", flipped, "checksum"),
        ("version", version, "version 99"),
    ]
}

fn eval_args<'a>(prog: &'a Path, evk: &'a Path, ct: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "eval",
        s(prog),
        "--eval",
        s(evk),
        "--input",
        s(ct),
        "-o",
        s(out),
        INS,
    ]
}

#[test]
fn corrupted_program() {
    let f = fixture();
    let d = case_dir("prog");
    let out = d.join("o.ct");
    for (what, bytes, needle) in corruptions(&std::fs::read(&f.prog_a).unwrap()) {
        let p = d.join(format!("{what}.fheprog"));
        std::fs::write(&p, bytes).unwrap();
        let line = refused(
            &eval_args(&p, &f.evk_a, &f.ct_a, &out),
            &[needle],
            Some(&out),
        );
        assert!(line.contains("fhec program"), "{line}");
        refused(
            &[
                "decrypt",
                s(&p),
                "--secret",
                s(&f.sk_a),
                "--input",
                s(&f.out_a),
                INS,
            ],
            &[needle, "fhec program"],
            None,
        );
    }
}

#[test]
fn corrupted_eval_keys() {
    let f = fixture();
    let d = case_dir("evk");
    let out = d.join("o.ct");
    for (what, bytes, needle) in corruptions(&std::fs::read(&f.evk_a).unwrap()) {
        let p = d.join(format!("{what}.evk"));
        std::fs::write(&p, bytes).unwrap();
        refused(
            &eval_args(&f.prog_a, &p, &f.ct_a, &out),
            &[needle, "evaluation keys"],
            Some(&out),
        );
    }
}

#[test]
fn corrupted_secret_key() {
    let f = fixture();
    let d = case_dir("sk");
    let out = d.join("x.ct");
    for (what, bytes, needle) in corruptions(&std::fs::read(&f.sk_a).unwrap()) {
        let p = d.join(format!("{what}.sk"));
        std::fs::write(&p, bytes).unwrap();
        refused(
            &[
                "decrypt",
                s(&f.prog_a),
                "--secret",
                s(&p),
                "--input",
                s(&f.out_a),
                INS,
            ],
            &[needle, "secret key"],
            None,
        );
        refused(
            &[
                "encrypt",
                s(&f.prog_a),
                "--secret",
                s(&p),
                "--input",
                s(&f.input),
                "-o",
                s(&out),
                INS,
            ],
            &[needle, "secret key"],
            Some(&out),
        );
    }
}

#[test]
fn corrupted_ciphertext() {
    let f = fixture();
    let d = case_dir("ct");
    let out = d.join("o.ct");
    for (what, bytes, needle) in corruptions(&std::fs::read(&f.ct_a).unwrap()) {
        let p = d.join(format!("{what}.ct"));
        std::fs::write(&p, bytes).unwrap();
        refused(
            &eval_args(&f.prog_a, &f.evk_a, &p, &out),
            &[needle, "ciphertext"],
            Some(&out),
        );
    }
    for (what, bytes, needle) in corruptions(&std::fs::read(&f.out_a).unwrap()) {
        let p = d.join(format!("out-{what}.ct"));
        std::fs::write(&p, bytes).unwrap();
        refused(
            &[
                "decrypt",
                s(&f.prog_a),
                "--secret",
                s(&f.sk_a),
                "--input",
                s(&p),
                INS,
            ],
            &[needle, "ciphertext"],
            None,
        );
    }
}

#[test]
fn another_key_set() {
    let f = fixture();
    let d = case_dir("keyset");
    let out = d.join("o.ct");
    // Input encrypted under key set 2, evaluation keys of key set 1.
    refused(
        &eval_args(&f.prog_a, &f.evk_a, &f.ct_a2, &out),
        &["key set"],
        Some(&out),
    );
    // Evaluation keys of key set 2 for an input of key set 1.
    refused(
        &eval_args(&f.prog_a, &f.evk_a2, &f.ct_a, &out),
        &["key set"],
        Some(&out),
    );
    // An output of key set 1 decrypted with the secret key of key set 2.
    refused(
        &[
            "decrypt",
            s(&f.prog_a),
            "--secret",
            s(&f.sk_a2),
            "--input",
            s(&f.out_a),
            INS,
        ],
        &["another key set"],
        None,
    );
}

#[test]
fn another_program() {
    let f = fixture();
    let d = case_dir("program");
    let out = d.join("o.ct");
    refused(
        &eval_args(&f.prog_a, &f.evk_b, &f.ct_a, &out),
        &["evaluation keys", "another parameter set"],
        Some(&out),
    );
    refused(
        &eval_args(&f.prog_a, &f.evk_a, &f.ct_b, &out),
        &["ciphertext", "another parameter set"],
        Some(&out),
    );
    refused(
        &[
            "decrypt",
            s(&f.prog_b),
            "--secret",
            s(&f.sk_a),
            "--input",
            s(&f.ct_b),
            INS,
        ],
        &["secret key", "another parameter set"],
        None,
    );
}

#[test]
fn secret_key_and_eval_keys_swapped() {
    let f = fixture();
    let d = case_dir("swapped");
    let out = d.join("o.ct");
    refused(
        &eval_args(&f.prog_a, &f.sk_a, &f.ct_a, &out),
        &["expected evaluation keys, found secret key"],
        Some(&out),
    );
    refused(
        &[
            "decrypt",
            s(&f.prog_a),
            "--secret",
            s(&f.evk_a),
            "--input",
            s(&f.out_a),
            INS,
        ],
        &["expected secret key, found evaluation keys"],
        None,
    );
    refused(
        &[
            "encrypt",
            s(&f.prog_a),
            "--secret",
            s(&f.evk_a),
            "--input",
            s(&f.input),
            "-o",
            s(&out),
            INS,
        ],
        &["expected secret key, found evaluation keys"],
        Some(&out),
    );
    // A ciphertext where a key belongs and a key where the input belongs.
    refused(
        &eval_args(&f.prog_a, &f.ct_a, &f.ct_a, &out),
        &["expected evaluation keys, found ciphertext"],
        Some(&out),
    );
    refused(
        &eval_args(&f.prog_a, &f.evk_a, &f.sk_a, &out),
        &["expected ciphertext, found secret key"],
        Some(&out),
    );
}

fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType) {
    let chans = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        _ => unreachable!(),
    };
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = (0..w * h * chans).map(|i| (i * 7 % 251) as u8).collect();
    enc.write_header().unwrap().write_image_data(&data).unwrap();
}

#[test]
fn bad_images() {
    let f = fixture();
    let d = case_dir("images");
    let out = d.join("x.ct");
    let encrypt = |img: &Path| {
        vec![
            "encrypt".to_string(),
            s(&f.prog_img).into(),
            "--secret".into(),
            s(&f.sk_img).into(),
            "--image".into(),
            s(img).into(),
            "-o".into(),
            s(&out).into(),
            INS.into(),
        ]
    };
    let refs = |v: &[String]| v.iter().map(String::from).collect::<Vec<_>>();
    let good = d.join("good.png");
    write_png(&good, 4, 4, png::ColorType::Rgb);
    let a = refs(&encrypt(&good));
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let big = d.join("big.png");
    write_png(&big, 8, 4, png::ColorType::Rgb);
    let a = refs(&encrypt(&big));
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["image is 8x4, the model expects 4x4"],
        Some(&out),
    );
    let gray = d.join("gray.png");
    write_png(&gray, 4, 4, png::ColorType::Grayscale);
    let a = refs(&encrypt(&gray));
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["expected an RGB image (3 channels), got Grayscale"],
        Some(&out),
    );
    let text = d.join("notes.png");
    std::fs::write(&text, "this is not an image\n").unwrap();
    let a = refs(&encrypt(&text));
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["is not a readable PNG"],
        Some(&out),
    );
    // A .pb tensor of the wrong length for a vector program, and a file that is no tensor.
    let wrong = d.join("wrong.pb");
    tensor::write_pb(&wrong, &Tensor::new(vec![3], vec![1.0; 3]).unwrap(), "x").unwrap();
    let args = [
        "encrypt",
        s(&f.prog_a),
        "--secret",
        s(&f.sk_a),
        "--input",
        s(&wrong),
        "-o",
        s(&out),
        INS,
    ];
    refused(&args, &["shape [8] (8 values), 3 given"], Some(&out));
    let args = [
        "encrypt",
        s(&f.prog_a),
        "--secret",
        s(&f.sk_a),
        "--input",
        s(&text),
        "-o",
        s(&out),
        INS,
    ];
    refused(&args, &["not a TensorProto"], Some(&out));
}

/// x [1, 2, 4, 4] -> Conv 1x1 -> `op` -> y.
fn model_with(dir: &Path, name: &str, op: &str, shape_param: bool) -> PathBuf {
    let w = Tensor::new(vec![2, 2, 1, 1], vec![0.5, -0.25, 0.125, 1.0]).unwrap();
    let mut b = ModelBuilder::new(13);
    if shape_param {
        b.input_dims("x", &[None, Some(2), Some(4), Some(4)]);
    } else {
        b.input("x", &[1, 2, 4, 4]);
    }
    b.init("w", &w)
        .node("Conv", &["x", "w"], &["c"], vec![])
        .node(op, &["c"], &["y"], vec![attr_i("axis", 1)])
        .output("y");
    let p = dir.join(format!("{name}.onnx"));
    std::fs::write(&p, b.encode()).unwrap();
    p
}

#[test]
fn bad_models() {
    let d = case_dir("models");
    let out = d.join("m.fheprog");
    let m = model_with(&d, "softmax", "Softmax", false);
    refused(
        &["compile", s(&m), "-o", s(&out)],
        &["unsupported ONNX op 'Softmax'", "node 'y_node'"],
        Some(&out),
    );
    let m = model_with(&d, "dynamic", "Flatten", true);
    refused(
        &["compile", s(&m), "-o", s(&out)],
        &["dynamic or unknown shape", "--input-shape"],
        Some(&out),
    );
    let not = d.join("not.onnx");
    std::fs::write(&not, b"\x08\x07garbage that is no protobuf \xff\xff\xff").unwrap();
    refused(
        &["compile", s(&not), "-o", s(&out)],
        &["is not an ONNX model"],
        Some(&out),
    );
}

#[test]
fn level_budget_exhausted() {
    let d = case_dir("budget");
    // Compiling: N = 2^10 holds 27 bits at 128-bit security, far too few for a square.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");
    let out = d.join("m.fheprog");
    let model = format!("{data}tiny_conv_bn_act.onnx");
    refused(
        &["compile", &model, "-o", s(&out), "--log-n", "10"],
        &["layer"],
        Some(&out),
    );
    // A program whose squares need more rescales than its two primes allow.
    let p = d.join("deep.fheprog");
    std::fs::write(
        &p,
        program(&[60, 40, 40], &[LEN], false, 3).to_bytes().unwrap(),
    )
    .unwrap();
    let (sk, evk) = (d.join("c.sk"), d.join("s.evk"));
    refused(
        &["keygen", s(&p), "--secret", s(&sk), "--eval", s(&evk), INS],
        &["level budget exhausted at layer act1"],
        Some(&sk),
    );
    assert!(!evk.exists());
}

#[test]
fn insecure_parameters_need_the_opt_in() {
    let f = fixture();
    let d = case_dir("insecure");
    let (sk, evk, ct) = (d.join("c.sk"), d.join("s.evk"), d.join("x.ct"));
    let need = ["INSECURE test parameters", "--insecure-test-params"];
    refused(
        &[
            "keygen",
            s(&f.prog_a),
            "--secret",
            s(&sk),
            "--eval",
            s(&evk),
        ],
        &need,
        Some(&sk),
    );
    refused(
        &[
            "encrypt",
            s(&f.prog_a),
            "--secret",
            s(&f.sk_a),
            "--input",
            s(&f.input),
            "-o",
            s(&ct),
        ],
        &need,
        Some(&ct),
    );
    let mut args = eval_args(&f.prog_a, &f.evk_a, &f.ct_a, &ct);
    args.pop();
    refused(&args, &need, Some(&ct));
    refused(
        &[
            "decrypt",
            s(&f.prog_a),
            "--secret",
            s(&f.sk_a),
            "--input",
            s(&f.out_a),
        ],
        &need,
        None,
    );
}
