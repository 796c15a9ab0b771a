//! Shared by the CLI integration tests: a small hand-built program at insecure test
//! parameters (compiled fast, run fast).

use runtime::ckks::Params;
use runtime::program::{ImageNormalization, InputLayout, Instr, Linear, OutputLayout, Program};

/// A two-tap linear layer (0.5 x[k] - 0.25 x[k+1]) and `squares` square + rescale pairs on
/// an input of `input_shape`; the first `out_len` slots are the output. More squares than
/// the chain of `q_bits` holds make a program whose level budget runs out.
#[allow(dead_code)]
pub fn two_tap_program(
    q_bits: &[u32],
    input_shape: &[usize],
    image: bool,
    squares: usize,
    out_len: usize,
) -> Program {
    let params = Params::insecure_for_tests(11, q_bits, &[60], q_bits.len()).unwrap();
    let total: usize = input_shape.iter().product();
    let mut instrs = vec![
        Instr::Linear(Linear {
            srcs: vec![0],
            dsts: vec![1],
            steps: vec![0, 1],
            masks: vec![None, None],
            weights: vec![0.5, -0.25],
            weight_scale: 2f64.powi(40),
            bias: None,
            bias_mask: None,
        }),
        Instr::Rescale { reg: 1 },
    ];
    let mut origins = vec!["lin".to_string(), "lin".to_string()];
    for k in 0..squares {
        instrs.push(Instr::Square { reg: 1 });
        instrs.push(Instr::Rescale { reg: 1 });
        origins.extend([format!("act{k}"), format!("act{k}")]);
    }
    Program {
        params,
        masks: vec![],
        vectors: vec![],
        input: InputLayout {
            shape: input_shape.to_vec(),
            image: image.then_some(ImageNormalization {
                mean: [0.5; 3],
                std: [0.25; 3],
            }),
            cts: 1,
            placement: (0..total as u32).map(|k| (k, 0, k)).collect(),
            scale: 2f64.powi(40),
            level: q_bits.len() as u32 - 1,
        },
        output: OutputLayout {
            shape: vec![out_len],
            placement: (0..out_len as u32).map(|k| (k, 1, k)).collect(),
            members: 1,
        },
        registers: 2,
        instrs,
        origins,
    }
}

/// `fhec eval PROG --eval EVK --input CT -o OUT` as an argument list (+ `extra`).
#[allow(dead_code)]
pub fn eval_args<'a>(prog: &'a str, evk: &'a str, ct: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["eval", prog, "--eval", evk, "--input", ct, "-o", out]
}

/// `fhec decrypt PROG --secret SK --input CT --json` as an argument list.
#[allow(dead_code)]
pub fn decrypt_json_args<'a>(prog: &'a str, sk: &'a str, ct: &'a str) -> Vec<&'a str> {
    vec!["decrypt", prog, "--secret", sk, "--input", ct, "--json"]
}
