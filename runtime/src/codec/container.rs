//! The container every file of fhec uses: a fixed header (magic, file kind, format
//! version, key-set id, parameter fingerprint, body length), a postcard body, and a
//! BLAKE3 checksum over header and body. Decoding checks, in order, the length, the magic,
//! the kind, the version, the declared body length against the real one and the checksum,
//! before anything in the body is interpreted, so truncated, bit-flipped or foreign input
//! is an error, never a panic or a huge allocation.

use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};

/// File magic.
pub const MAGIC: [u8; 4] = *b"FHEC";
/// Format version written by this build (and the only one it reads). 2: outputs name their
/// ensemble members, `AddBlocks`.
pub const FORMAT_VERSION: u16 = 2;
const HEADER_LEN: usize = 4 + 1 + 2 + 1 + 16 + 32 + 8;
const CHECKSUM_LEN: usize = 32;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    Params = 1,
    SecretKey = 2,
    EvalKeys = 3,
    Ciphertext = 4,
    Program = 5,
    PublicKey = 6,
}

impl FileKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => FileKind::Params,
            2 => FileKind::SecretKey,
            3 => FileKind::EvalKeys,
            4 => FileKind::Ciphertext,
            5 => FileKind::Program,
            6 => FileKind::PublicKey,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Params => "parameter set",
            FileKind::SecretKey => "secret key",
            FileKind::EvalKeys => "evaluation keys",
            FileKind::Ciphertext => "ciphertext",
            FileKind::Program => "fhec program",
            FileKind::PublicKey => "public key",
        }
    }
}

/// The header fields a caller checks after decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: FileKind,
    pub key_set: [u8; 16],
    pub params_id: [u8; 32],
}

/// Serialises `body` into a complete file: one buffer of the exact final size, the body
/// written straight after the header (no intermediate copy: key bundles are large, and a
/// secret key's bytes exist once, in the caller's buffer).
pub fn encode<T: Serialize>(header: &Header, body: &T) -> Result<Vec<u8>> {
    let cannot = |e: postcard::Error| {
        Error::Corrupt(format!("cannot serialise {}: {e}", header.kind.name()))
    };
    let len = body_len(body).map_err(cannot)?;
    let mut out = Vec::with_capacity(HEADER_LEN + len + CHECKSUM_LEN);
    write_header(&mut out, header, len);
    let mut out = postcard::to_extend(body, out).map_err(cannot)?;
    if out.len() != HEADER_LEN + len {
        return Err(Error::Corrupt(format!(
            "{}: serialised size changed while writing",
            header.kind.name()
        )));
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// The size in bytes of the file [`encode`] would write, without writing it.
pub fn encoded_len<T: Serialize>(body: &T) -> Result<usize> {
    let len = body_len(body).map_err(|e| Error::Corrupt(format!("cannot measure a body: {e}")))?;
    Ok(HEADER_LEN + len + CHECKSUM_LEN)
}

fn body_len<T: Serialize>(body: &T) -> postcard::Result<usize> {
    postcard::serialize_with_flavor(body, postcard::ser_flavors::Size::default())
}

fn write_header(out: &mut Vec<u8>, header: &Header, body_len: usize) {
    out.extend_from_slice(&MAGIC);
    out.push(header.kind as u8);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&header.key_set);
    out.extend_from_slice(&header.params_id);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
}

/// Wraps an already serialised body in the header and checksum (what [`encode`] does
/// after serialising; the fuzz harness uses it to reach the body decoders past the
/// checksum).
pub fn seal(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    write_header(&mut out, header, body.len());
    out.extend_from_slice(body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Checks and deserialises a file of the expected kind.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], expected: FileKind) -> Result<(Header, T)> {
    let what = expected.name();
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN || bytes[..4] != MAGIC {
        if bytes.len() >= 4 && bytes[..4] != MAGIC {
            return Err(Error::Corrupt(format!(
                "not an fhec file (expected a {what})"
            )));
        }
        return Err(Error::Corrupt(format!(
            "{what} file is truncated ({} bytes)",
            bytes.len()
        )));
    }
    let kind = FileKind::from_u8(bytes[4]);
    if kind != Some(expected) {
        return Err(Error::WrongKind {
            expected: what.into(),
            found: kind.map_or_else(|| format!("unknown kind {}", bytes[4]), |k| k.name().into()),
        });
    }
    let version = u16::from_le_bytes([bytes[5], bytes[6]]);
    if version != FORMAT_VERSION {
        return Err(Error::Version {
            what: what.into(),
            found: version as u32,
            expected: FORMAT_VERSION as u32,
        });
    }
    let mut key_set = [0u8; 16];
    key_set.copy_from_slice(&bytes[8..24]);
    let mut params_id = [0u8; 32];
    params_id.copy_from_slice(&bytes[24..56]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[56..64]);
    let body_len = u64::from_le_bytes(len);
    let actual = (bytes.len() - HEADER_LEN - CHECKSUM_LEN) as u64;
    if body_len != actual {
        return Err(Error::Corrupt(format!(
            "{what} file is truncated or padded: body of {actual} bytes, header says {body_len}"
        )));
    }
    let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(content).as_bytes() != sum {
        return Err(Error::Corrupt(format!(
            "{what} file fails its checksum (corrupted)"
        )));
    }
    let body: T = postcard::from_bytes(&content[HEADER_LEN..])
        .map_err(|e| Error::Corrupt(format!("{what} body does not decode: {e}")))?;
    Ok((
        Header {
            kind: expected,
            key_set,
            params_id,
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let h = Header {
            kind: FileKind::Params,
            key_set: [3; 16],
            params_id: [9; 32],
        };
        encode(&h, &vec![1u64, 2, 3]).unwrap()
    }

    #[test]
    fn round_trip() {
        let (h, v): (Header, Vec<u64>) = decode(&sample(), FileKind::Params).unwrap();
        assert_eq!(v, vec![1, 2, 3]);
        assert_eq!(h.key_set, [3; 16]);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(decode::<Vec<u64>>(&bytes[..cut], FileKind::Params).is_err());
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    decode::<Vec<u64>>(&b, FileKind::Params).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn kind_and_version_errors_are_named() {
        let bytes = sample();
        assert!(matches!(
            decode::<Vec<u64>>(&bytes, FileKind::Ciphertext),
            Err(Error::WrongKind { .. })
        ));
        let mut b = bytes.clone();
        b[5] = 7;
        assert!(matches!(
            decode::<Vec<u64>>(&b, FileKind::Params),
            Err(Error::Version { found: 7, .. })
        ));
        assert!(matches!(
            decode::<Vec<u64>>(
                b"PK\x03\x04 not ours at all, a zip file header",
                FileKind::Params
            ),
            Err(Error::Corrupt(_))
        ));
    }
}
