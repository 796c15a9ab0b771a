//! A hand-built program (a two-channel 1-D convolution with a masked tap and a masked
//! bias, a square, scalar steps, rescales) executed encrypted and checked against the same
//! computation in f64; key requirements, level-budget errors and the file round trip.

use super::*;
use crate::ckks::{Context, Decryptor, Encoder, Encryptor, KeyGenerator, Params};
use crate::error::Error;

const LEN: usize = 16;

fn program() -> Program {
    let params = Params::insecure_for_tests(11, &[60, 40, 40, 40], &[60], 4).unwrap();
    let valid = SlotMask::from_slots((0..LEN as u32).collect());
    let steps = vec![-1i64, 0, 1];
    let weights: Vec<f64> = (0..2 * 2 * 3)
        .map(|k| ((k * 7 % 11) as f64 - 5.0) / 8.0)
        .collect();
    let lin = Linear {
        srcs: vec![0, 1],
        dsts: vec![2, 3],
        steps,
        masks: vec![Some(0), None, Some(0)],
        weights,
        weight_scale: 2f64.powi(40),
        bias: Some(vec![0.25, -0.5]),
        bias_mask: Some(0),
    };
    let instrs = vec![
        Instr::Linear(lin),
        Instr::Free { reg: 0 },
        Instr::Free { reg: 1 },
        Instr::Rescale { reg: 2 },
        Instr::Rescale { reg: 3 },
        Instr::Square { reg: 2 },
        Instr::Rescale { reg: 2 },
        Instr::DropTo { reg: 3, level: 1 },
        Instr::MulConst {
            reg: 3,
            value: 1.0,
            scale: 1.0,
        },
        Instr::AddConst { reg: 2, value: 0.5 },
        Instr::Rotate {
            dst: 4,
            src: 3,
            steps: 2,
        },
    ];
    let origins = vec![
        "conv",
        "free",
        "free",
        "conv.rescale",
        "conv.rescale",
        "act",
        "act.rescale",
        "align",
        "align",
        "act.c0",
        "shift",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let placement = (0..2 * LEN as u32)
        .map(|k| (k, k / LEN as u32, k % LEN as u32))
        .collect();
    Program {
        params,
        masks: vec![valid],
        vectors: vec![],
        input: InputLayout {
            shape: vec![2, LEN],
            image: None,
            cts: 2,
            placement,
            scale: 2f64.powi(40),
            level: 3,
        },
        output: OutputLayout {
            shape: vec![3, LEN],
            placement: (0..3 * LEN as u32)
                .map(|k| (k, [2, 3, 4][(k / LEN as u32) as usize], k % LEN as u32))
                .collect(),
            members: 1,
        },
        registers: 5,
        instrs,
        origins,
    }
}

fn reference(x: &[Vec<f64>], p: &Program) -> Vec<f64> {
    let Instr::Linear(l) = &p.instrs[0] else {
        unreachable!()
    };
    let get = |v: &Vec<f64>, j: i64| {
        if (0..LEN as i64).contains(&j) {
            v[j as usize]
        } else {
            0.0
        }
    };
    let mut conv = vec![vec![0.0; LEN]; 2];
    for (o, out) in conv.iter_mut().enumerate() {
        for (j, y) in out.iter_mut().enumerate() {
            for (i, xi) in x.iter().enumerate() {
                for (t, &s) in l.steps.iter().enumerate() {
                    *y += l.weights[(o * 2 + i) * 3 + t] * get(xi, j as i64 + s);
                }
            }
            *y += l.bias.as_ref().unwrap()[o];
        }
    }
    let mut out: Vec<f64> = conv[0].iter().map(|v| v * v + 0.5).collect();
    out.extend(&conv[1]);
    // rotation by 2 of channel 1: slots 14, 15 pull in zeros from outside the signal
    out.extend((0..LEN).map(|j| if j + 2 < LEN { conv[1][j + 2] } else { 0.0 }));
    out
}

#[test]
fn program_runs_encrypted_and_matches_f64() {
    let p = program();
    p.validate().unwrap();
    let req = KeyRequirements::of(&p).unwrap();
    assert_eq!(req.relin_level, Some(2));
    assert_eq!(req.rotations.len(), 3, "{:?}", req.rotations);
    run_and_check(&p, None);
}

/// The masked taps encoded where used (no cache) give the same result, both with the
/// full encoding and, for a mask replicated with a period (a sparse polynomial), with the
/// small-NTT encoding.
#[test]
fn streamed_and_sparse_masked_taps_match_f64() {
    let p = program();
    run_and_check(&p, Some(0));
    let mut periodic = p.clone();
    let slots = periodic.params.slots() as u32;
    periodic.masks[0] = SlotMask::from_slots(
        (0..slots / 32)
            .flat_map(|k| (0..LEN as u32).map(move |j| 32 * k + j))
            .collect(),
    );
    run_and_check(&periodic, Some(0));
    run_and_check(&periodic, None);
}

fn run_and_check(p: &Program, cache: Option<usize>) {
    let req = KeyRequirements::of(p).unwrap();
    let ctx = Context::new(p.params.clone()).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let keys = kg
        .eval_keys(&sk, req.relin_level, &req.galois(&ctx))
        .unwrap();
    let mut exec = Executor::new(&ctx, p, &keys).unwrap();
    if let Some(bytes) = cache {
        exec = exec.with_mask_cache_bytes(bytes);
    }

    let x: Vec<Vec<f64>> = (0..2)
        .map(|c| {
            (0..LEN)
                .map(|j| ((j * 3 + c * 5) as f64 * 0.37).sin())
                .collect()
        })
        .collect();
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::new(&ctx);
    let inputs = x
        .iter()
        .map(|v| {
            encryptor
                .encrypt_sk(&enc.encode(v, p.input.scale, 3).unwrap(), &sk)
                .unwrap()
        })
        .collect();
    let mut steps = 0;
    let out = exec.run(inputs, |_, _, _| steps += 1).unwrap();
    assert_eq!(steps, p.instrs.len());
    let dec = Decryptor::new(&ctx, &sk);
    let want = reference(&x, p);
    let decrypted = out
        .iter()
        .map(|(&r, ct)| (r, dec.decrypt(ct).unwrap()))
        .collect();
    let got = p.output.gather(&decrypted).unwrap();
    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() < 1e-6,
            "output {idx}: {g} vs {w} (cache {cache:?})"
        );
    }
}

#[test]
fn missing_keys_and_budget_errors_are_named() {
    let p = program();
    let ctx = Context::new(p.params.clone()).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let req = KeyRequirements::of(&p).unwrap();
    let partial = kg
        .eval_keys(&sk, req.relin_level, &req.galois(&ctx)[..1])
        .unwrap();
    match Executor::new(&ctx, &p, &partial) {
        Err(Error::MissingKey(m)) => assert!(m.contains("rotation by"), "{m}"),
        other => panic!("expected MissingKey, got {:?}", other.err()),
    }
    let mut deep = p.clone();
    for _ in 0..3 {
        deep.instrs.push(Instr::Rescale { reg: 2 });
        deep.origins.push("too-deep".into());
    }
    match KeyRequirements::of(&deep) {
        Err(Error::BudgetExhausted { layer }) => assert_eq!(layer, "too-deep"),
        other => panic!("expected a budget error, got {other:?}"),
    }
}

#[test]
fn program_file_round_trip_and_corruption() {
    let p = program();
    let bytes = p.to_bytes().unwrap();
    assert_eq!(Program::from_bytes(&bytes).unwrap(), p);
    assert!(Program::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 4;
    assert!(Program::from_bytes(&flipped).is_err());
    let mut version = bytes.clone();
    version[5] = 99;
    assert!(matches!(
        Program::from_bytes(&version),
        Err(Error::Version { .. })
    ));
}

/// A mask repeated every P slots encodes to a polynomial with non-zero coefficients only at
/// multiples of N / (2P): the property the sparse path relies on.
#[test]
fn periodic_mask_polynomial_is_sparse() {
    let params = Params::insecure_for_tests(11, &[60, 40], &[60], 2).unwrap();
    let ctx = Context::new(params).unwrap();
    let slots = ctx.params().slots();
    let enc = Encoder::new(&ctx);
    for period in [32usize, 128] {
        let v: Vec<crate::ckks::C64> = (0..slots)
            .map(|j| crate::ckks::C64::new(if j % period < 11 { 1.0 } else { 0.0 }, 0.0))
            .collect();
        let c = enc.coefficients(&v).unwrap();
        let d = crate::math::sparse_ntt::sparsity_stride(&c, 1e-12);
        assert_eq!(d, ctx.n() / (2 * period), "period {period}");
    }
    // Not periodic: dense.
    let v: Vec<crate::ckks::C64> = (0..slots)
        .map(|j| crate::ckks::C64::new(if j < 11 { 1.0 } else { 0.0 }, 0.0))
        .collect();
    let c = enc.coefficients(&v).unwrap();
    assert_eq!(crate::math::sparse_ntt::sparsity_stride(&c, 1e-12), 1);
}

/// `DotMasked`: a repeating pattern times an optional mask, per input, summed; checked
/// encrypted and in the exact simulator against the same sums in f64, and refused when a
/// pattern leaves its period or names a missing mask.
#[test]
fn dot_masked_builds_its_plaintexts_from_pattern_and_mask() {
    let params = Params::insecure_for_tests(11, &[60, 40], &[60], 2).unwrap();
    let slots = params.slots();
    let period = 8usize;
    let mask = SlotMask::from_slots((0..slots as u32).filter(|s| s % 3 != 0).collect());
    let pattern = |k: usize| SlotVector {
        entries: (0..period as u32)
            .filter(|&j| !(j as usize + k).is_multiple_of(4))
            .map(|j| (j, (j as f64 + 1.0) * if k == 0 { 0.5 } else { -0.25 }))
            .collect(),
    };
    let d = DotMasked {
        srcs: vec![0, 1],
        dst: 2,
        patterns: vec![0, 1],
        masks: vec![Some(0), None],
        period: period as u32,
        scale: 2f64.powi(40),
    };
    let p = Program {
        params: params.clone(),
        masks: vec![mask],
        vectors: vec![pattern(0), pattern(1)],
        input: InputLayout {
            shape: vec![2, slots],
            image: None,
            cts: 2,
            placement: (0..2 * slots as u32)
                .map(|k| (k, k / slots as u32, k % slots as u32))
                .collect(),
            scale: 2f64.powi(40),
            level: 1,
        },
        output: OutputLayout {
            shape: vec![slots],
            placement: (0..slots as u32).map(|k| (k, 2, k)).collect(),
            members: 1,
        },
        registers: 3,
        instrs: vec![Instr::DotMasked(d.clone()), Instr::Rescale { reg: 2 }],
        origins: vec!["dot".into(), "dot.rescale".into()],
    };
    p.validate().unwrap();
    let x: Vec<f64> = (0..2 * slots).map(|k| (k as f64 * 0.37).sin()).collect();
    let want: Vec<f64> = (0..slots)
        .map(|s| {
            let v0 = p.vectors[0].to_values(period)[s % period] * f64::from(s % 3 != 0);
            let v1 = p.vectors[1].to_values(period)[s % period];
            v0 * x[s] + v1 * x[slots + s]
        })
        .collect();
    // Exact simulator.
    let sim = Simulator::new(&p, &SimOptions::default()).unwrap();
    let got = sim.run(&x, Mode::Exact, 0).unwrap().output;
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-9, "simulated {g} vs {w}");
    }
    // Encrypted.
    let ctx = Context::new(params).unwrap();
    let mut kg = KeyGenerator::new(&ctx);
    let sk = kg.secret_key();
    let keys = kg.eval_keys(&sk, None, &[]).unwrap();
    let exec = Executor::new(&ctx, &p, &keys).unwrap();
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::new(&ctx);
    let inputs = (0..2)
        .map(|c| {
            let pt = enc
                .encode(&x[c * slots..(c + 1) * slots], p.input.scale, 1)
                .unwrap();
            encryptor.encrypt_sk(&pt, &sk).unwrap()
        })
        .collect();
    let out = exec.run(inputs, |_, _, _| {}).unwrap();
    let dec = Decryptor::new(&ctx, &sk);
    let decrypted = out
        .iter()
        .map(|(&r, ct)| (r, dec.decrypt(ct).unwrap()))
        .collect();
    let got = p.output.gather(&decrypted).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "encrypted {g} vs {w}");
    }
    // Malformed: a pattern entry beyond the period, a missing mask.
    let mut bad = p.clone();
    bad.vectors[1].entries.push((period as u32, 1.0));
    assert!(bad.validate().unwrap_err().to_string().contains("period"));
    let mut bad = p.clone();
    if let Instr::DotMasked(d) = &mut bad.instrs[0] {
        d.masks[1] = Some(5);
    }
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("DotMasked"));
}
