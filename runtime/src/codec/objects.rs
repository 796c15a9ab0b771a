//! Wire forms of parameters, keys and ciphertexts, and their validation on load.
//!
//! Uniform "a" parts are never stored: keys and fresh symmetric ciphertexts keep only their
//! 32-byte seed, and the loader re-expands them. Every loaded polynomial is checked for its
//! shape (ring degree, number of limbs) and for reduced residues, so a file that passes its
//! checksum but was written by a foreign tool is still refused with a named error.

use crate::ckks::context::Context;
use crate::ckks::encryptor::expand_seed;
use crate::ckks::keys::{EvalKeys, KeyDigit, PublicKey, SecretKey, SwitchingKey};
use crate::ckks::params::Params;
use crate::ckks::plaintext::Ciphertext;
use crate::codec::container::{decode, encode, encoded_len, FileKind, Header};
use crate::error::{Error, Result};
use crate::math::poly::RnsPoly;
use crate::math::sampling::Csprng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

#[derive(Serialize, Deserialize)]
struct SecretKeyWire {
    coeffs: Vec<i8>,
}

#[derive(Serialize, Deserialize)]
struct SwitchingKeyWire {
    level: u32,
    digits: Vec<(Vec<u64>, [u8; 32])>,
}

#[derive(Serialize, Deserialize)]
struct EvalKeysWire {
    relin: Option<SwitchingKeyWire>,
    galois: Vec<(u64, SwitchingKeyWire)>,
}

/// The same wire form, borrowing the keys' residues (serialising makes no copy of them).
#[derive(Serialize)]
struct SwitchingKeyWireRef<'a> {
    level: u32,
    digits: Vec<(&'a [u64], [u8; 32])>,
}

#[derive(Serialize)]
struct EvalKeysWireRef<'a> {
    relin: Option<SwitchingKeyWireRef<'a>>,
    galois: Vec<(u64, SwitchingKeyWireRef<'a>)>,
}

#[derive(Serialize, Deserialize)]
struct CiphertextWire {
    scale: f64,
    level: u32,
    degree: u8,
    /// All parts, or only c_0 when `seed` is set.
    parts: Vec<Vec<u64>>,
    seed: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct PublicKeyWire {
    b: Vec<u64>,
    seed: [u8; 32],
}

fn check_params(ctx: &Context, header: &Header) -> Result<()> {
    if header.params_id != ctx.params().id() {
        return Err(Error::KeySetMismatch(format!(
            "the {} file was made for another parameter set (another program or another \
             compilation of it)",
            header.kind.name()
        )));
    }
    Ok(())
}

/// Rebuilds a polynomial from wire data over the given limb moduli, checking its shape.
fn poly_from_wire(
    ctx: &Context,
    data: Vec<u64>,
    limb_moduli: &[u64],
    what: &str,
) -> Result<RnsPoly> {
    let n = ctx.n();
    if data.len() != n * limb_moduli.len() {
        return Err(Error::Corrupt(format!(
            "{what}: {} coefficients, expected {} ({} limbs of {n})",
            data.len(),
            n * limb_moduli.len(),
            limb_moduli.len()
        )));
    }
    for (limb, &q) in data.chunks_exact(n).zip(limb_moduli) {
        if limb.iter().any(|&x| x >= q) {
            return Err(Error::Corrupt(format!(
                "{what}: residue not reduced modulo its prime"
            )));
        }
    }
    Ok(RnsPoly::from_data(n, data, true))
}

fn q_moduli(ctx: &Context, level: usize) -> Vec<u64> {
    ctx.params().q()[..=level].to_vec()
}

fn qp_moduli(ctx: &Context, level: usize) -> Vec<u64> {
    let mut m = q_moduli(ctx, level);
    m.extend_from_slice(ctx.params().p());
    m
}

pub fn params_to_bytes(p: &Params) -> Result<Vec<u8>> {
    let h = Header {
        kind: FileKind::Params,
        key_set: [0; 16],
        params_id: p.id(),
    };
    encode(&h, p)
}

/// Loads parameters, re-running every structural and security check.
pub fn params_from_bytes(bytes: &[u8]) -> Result<Params> {
    let (_, p): (_, Params) = decode(bytes, FileKind::Params)?;
    p.validate()?;
    Ok(p)
}

pub fn secret_key_to_bytes(sk: &SecretKey) -> Result<Vec<u8>> {
    let mut wire = SecretKeyWire {
        coeffs: sk.coeffs.iter().map(|&c| c as i8).collect(),
    };
    let h = Header {
        kind: FileKind::SecretKey,
        key_set: sk.key_set,
        params_id: sk.params_id,
    };
    let out = encode(&h, &wire);
    wire.coeffs.zeroize();
    out
}

pub fn secret_key_from_bytes(bytes: &[u8], ctx: &Context) -> Result<SecretKey> {
    let (h, mut wire): (_, SecretKeyWire) = decode(bytes, FileKind::SecretKey)?;
    check_params(ctx, &h)?;
    if wire.coeffs.len() != ctx.n() || wire.coeffs.iter().any(|c| !(-1..=1).contains(c)) {
        wire.coeffs.zeroize();
        return Err(Error::Corrupt(
            "secret key is not a ternary polynomial of degree N".into(),
        ));
    }
    let coeffs: Vec<i64> = wire.coeffs.iter().map(|&c| c as i64).collect();
    wire.coeffs.zeroize();
    let tables = ctx.qp_tables(ctx.max_level());
    let mut ntt_qp = RnsPoly::from_signed(&coeffs, &tables);
    ntt_qp.forward(&tables);
    Ok(SecretKey {
        key_set: h.key_set,
        params_id: h.params_id,
        coeffs,
        ntt_qp,
    })
}

fn switching_key_from_wire(ctx: &Context, w: SwitchingKeyWire, what: &str) -> Result<SwitchingKey> {
    let level = w.level as usize;
    if level > ctx.max_level() {
        return Err(Error::Corrupt(format!(
            "{what}: level {level} above the top level"
        )));
    }
    let expected_digits = (level + 1).div_ceil(ctx.params().alpha());
    if w.digits.len() != expected_digits {
        return Err(Error::Corrupt(format!(
            "{what}: {} digits, expected {expected_digits}",
            w.digits.len()
        )));
    }
    let moduli = qp_moduli(ctx, level);
    let tables = ctx.qp_tables(level);
    let digits = w
        .digits
        .into_iter()
        .map(|(b, seed)| {
            let b = poly_from_wire(ctx, b, &moduli, what)?;
            let a = Csprng::from_seed(seed).uniform_poly(ctx.n(), &tables);
            Ok(KeyDigit { b, a, seed })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SwitchingKey { level, digits })
}

fn switching_key_wire(k: &SwitchingKey) -> SwitchingKeyWireRef<'_> {
    SwitchingKeyWireRef {
        level: k.level as u32,
        digits: k.digits.iter().map(|d| (d.b.data(), d.seed)).collect(),
    }
}

fn eval_keys_wire(k: &EvalKeys) -> EvalKeysWireRef<'_> {
    let key = switching_key_wire;
    EvalKeysWireRef {
        relin: k.relin.as_ref().map(key),
        galois: k.galois.iter().map(|(&g, sk)| (g, key(sk))).collect(),
    }
}

pub fn eval_keys_to_bytes(k: &EvalKeys) -> Result<Vec<u8>> {
    let h = Header {
        kind: FileKind::EvalKeys,
        key_set: k.key_set,
        params_id: k.params_id,
    };
    encode(&h, &eval_keys_wire(k))
}

/// The size of the file [`eval_keys_to_bytes`] writes, computed without writing it.
pub fn eval_keys_len(k: &EvalKeys) -> Result<u64> {
    Ok(encoded_len(&eval_keys_wire(k))? as u64)
}

pub fn eval_keys_from_bytes(bytes: &[u8], ctx: &Context) -> Result<EvalKeys> {
    let (h, wire): (_, EvalKeysWire) = decode(bytes, FileKind::EvalKeys)?;
    eval_keys_from_wire(h, wire, ctx)
}

/// As [`eval_keys_from_bytes`], taking the file's bytes and freeing them once decoded,
/// before the keys' uniform parts are expanded from their seeds (the server's peak memory
/// is then the keys, not the keys plus the file).
pub fn eval_keys_from_file(bytes: Vec<u8>, ctx: &Context) -> Result<EvalKeys> {
    let (h, wire): (_, EvalKeysWire) = decode(&bytes, FileKind::EvalKeys)?;
    drop(bytes);
    eval_keys_from_wire(h, wire, ctx)
}

fn eval_keys_from_wire(h: Header, wire: EvalKeysWire, ctx: &Context) -> Result<EvalKeys> {
    check_params(ctx, &h)?;
    let relin = wire
        .relin
        .map(|w| switching_key_from_wire(ctx, w, "relinearisation key"))
        .transpose()?;
    let two_n = 2 * ctx.n() as u64;
    let mut galois = std::collections::BTreeMap::new();
    for (g, w) in wire.galois {
        if g % 2 == 0 || g >= two_n {
            return Err(Error::Corrupt(format!("{g} is not a Galois element")));
        }
        galois.insert(g, switching_key_from_wire(ctx, w, "Galois key")?);
    }
    Ok(EvalKeys {
        key_set: h.key_set,
        params_id: h.params_id,
        relin,
        galois,
    })
}

pub fn public_key_to_bytes(pk: &PublicKey, params_id: [u8; 32]) -> Result<Vec<u8>> {
    let h = Header {
        kind: FileKind::PublicKey,
        key_set: pk.key_set,
        params_id,
    };
    encode(
        &h,
        &PublicKeyWire {
            b: pk.b.data().to_vec(),
            seed: pk.seed,
        },
    )
}

pub fn public_key_from_bytes(bytes: &[u8], ctx: &Context) -> Result<PublicKey> {
    let (h, w): (_, PublicKeyWire) = decode(bytes, FileKind::PublicKey)?;
    check_params(ctx, &h)?;
    let level = ctx.max_level();
    let b = poly_from_wire(ctx, w.b, &q_moduli(ctx, level), "public key")?;
    let a = Csprng::from_seed(w.seed).uniform_poly(ctx.n(), &ctx.q_tables(level));
    Ok(PublicKey {
        key_set: h.key_set,
        b,
        a,
        seed: w.seed,
    })
}

fn ciphertext_to_wire(ct: &Ciphertext) -> CiphertextWire {
    let parts = match ct.seed {
        Some(_) => vec![ct.parts[0].data().to_vec()],
        None => ct.parts.iter().map(|p| p.data().to_vec()).collect(),
    };
    CiphertextWire {
        scale: ct.scale,
        level: ct.level() as u32,
        degree: ct.degree() as u8,
        parts,
        seed: ct.seed,
    }
}

fn ciphertext_from_wire(ctx: &Context, key_set: [u8; 16], w: CiphertextWire) -> Result<Ciphertext> {
    let level = w.level as usize;
    if level > ctx.max_level() {
        return Err(Error::Corrupt(format!(
            "ciphertext level {level} above the top level"
        )));
    }
    if !(w.scale.is_finite() && w.scale >= 1.0) {
        return Err(Error::Corrupt(format!(
            "ciphertext scale {} is invalid",
            w.scale
        )));
    }
    if !(1..=2).contains(&w.degree) {
        return Err(Error::Corrupt(format!(
            "ciphertext degree {} is invalid",
            w.degree
        )));
    }
    let stored = if w.seed.is_some() {
        1
    } else {
        w.degree as usize + 1
    };
    if w.parts.len() != stored || (w.seed.is_some() && w.degree != 1) {
        return Err(Error::Corrupt(
            "ciphertext has the wrong number of parts".into(),
        ));
    }
    let moduli = q_moduli(ctx, level);
    let mut parts = w
        .parts
        .into_iter()
        .map(|d| poly_from_wire(ctx, d, &moduli, "ciphertext"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(seed) = w.seed {
        parts.push(expand_seed(ctx, seed, level));
    }
    Ok(Ciphertext {
        parts,
        scale: w.scale,
        key_set,
        seed: w.seed,
    })
}

/// A file of ciphertexts tagged with register numbers (a program's inputs or outputs),
/// all under one key set.
pub fn ciphertexts_to_bytes(cts: &[(u32, Ciphertext)], params_id: [u8; 32]) -> Result<Vec<u8>> {
    let key_set = cts.first().map_or([0; 16], |(_, c)| c.key_set);
    if cts.iter().any(|(_, c)| c.key_set != key_set) {
        return Err(Error::KeySetMismatch(
            "ciphertexts of several key sets in one file".into(),
        ));
    }
    let wire: Vec<(u32, CiphertextWire)> = cts
        .iter()
        .map(|(r, c)| (*r, ciphertext_to_wire(c)))
        .collect();
    let h = Header {
        kind: FileKind::Ciphertext,
        key_set,
        params_id,
    };
    encode(&h, &wire)
}

pub fn ciphertexts_from_bytes(bytes: &[u8], ctx: &Context) -> Result<Vec<(u32, Ciphertext)>> {
    let (h, wire): (_, Vec<(u32, CiphertextWire)>) = decode(bytes, FileKind::Ciphertext)?;
    check_params(ctx, &h)?;
    wire.into_iter()
        .map(|(r, w)| Ok((r, ciphertext_from_wire(ctx, h.key_set, w)?)))
        .collect()
}

/// One ciphertext as a file (a bundle of one, register 0).
pub fn ciphertext_to_bytes(ct: &Ciphertext, params_id: [u8; 32]) -> Result<Vec<u8>> {
    ciphertexts_to_bytes(&[(0, ct.clone())], params_id)
}

pub fn ciphertext_from_bytes(bytes: &[u8], ctx: &Context) -> Result<Ciphertext> {
    let mut v = ciphertexts_from_bytes(bytes, ctx)?;
    if v.len() != 1 {
        return Err(Error::Corrupt(format!(
            "expected one ciphertext, the file holds {}",
            v.len()
        )));
    }
    Ok(v.remove(0).1)
}
