//! The CIFAR-10 test set as `models/setup.sh --data` leaves it: `x_test.npy` (uint8,
//! shape (N, 32, 32, 3), HWC, RGB) and `y_test.npy` (int64 or uint8 labels, shape (N,)) in
//! `~/.cache/fhec/cifar10_npy/`, read with a small `.npy` reader of our own (format
//! versions 1-3, C order, little-endian `u1` / `i8` / `i4` only; anything else is an
//! error, never a panic). Images become the program's input tensor exactly as
//! [`crate::image`] makes one from a PNG: NCHW, `(p / 255 - mean) / std` per channel.

use std::path::{Path, PathBuf};

use runtime::program::ImageNormalization;

/// Errors reading the test set.
#[derive(Debug, thiserror::Error)]
pub enum CifarError {
    #[error(
        "the CIFAR-10 test set is not in {dir}: missing {file} (run `models/setup.sh --data` \
         to fetch it, or give --data-dir)"
    )]
    Missing { dir: String, file: String },
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is not a supported .npy file: {msg}")]
    Npy { path: String, msg: String },
    #[error("{0}")]
    Mismatch(String),
}

/// Element data of a `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    U8(Vec<u8>),
    I64(Vec<i64>),
}

/// A parsed `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// The value of `key` in the header dictionary (`'key': value`), as text.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let start = header.find(&pat)? + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

/// Parses a `.npy` file's bytes.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("no .npy magic".into());
    }
    let (hlen, off) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("format version {v}")),
    };
    let end = off
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(&bytes[off..end]).map_err(|_| "header is not text")?;
    let descr = header_field(header, "descr").ok_or("no 'descr' in the header")?;
    let fortran = header_field(header, "fortran_order").ok_or("no 'fortran_order'")?;
    if fortran != "False" {
        return Err("Fortran order is not supported".into());
    }
    let shape_s = header_field(header, "shape").ok_or("no 'shape' in the header")?;
    let shape: Vec<usize> = shape_s
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_s}"))
        })
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let body = &bytes[end..];
    let need = |size: usize| -> Result<&[u8], String> {
        let n = count.checked_mul(size).ok_or("shape too large")?;
        body.get(..n)
            .ok_or_else(|| format!("{} data bytes, the shape needs {n}", body.len()))
    };
    let data = match descr.trim_matches('\'') {
        "|u1" | "<u1" => NpyData::U8(need(1)?.to_vec()),
        "<i8" => NpyData::I64(
            need(8)?
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "<i4" => NpyData::I64(
            need(4)?
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64)
                .collect(),
        ),
        d => return Err(format!("element type {d} (expected |u1, <i8 or <i4)")),
    };
    Ok(NpyArray { shape, data })
}

fn read_npy(path: &Path) -> Result<NpyArray, CifarError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CifarError::Io {
        path: p.clone(),
        source,
    })?;
    parse_npy(&bytes).map_err(|msg| CifarError::Npy { path: p, msg })
}

/// A version-1.0 `.npy` file as numpy writes it (`descr` such as `|u1` or `<i8`, `shape`
/// in Python tuple syntax, `body` the raw little-endian data): test fixtures of
/// [`parse_npy`] and of `fhec simulate`.
pub fn npy_bytes(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b.extend(body);
    b
}

/// The default folder: `~/.cache/fhec/cifar10_npy`.
pub fn default_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/fhec/cifar10_npy")
}

/// The CIFAR-10 test set: images HWC uint8 and labels.
pub struct CifarTest {
    pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub h: usize,
    pub w: usize,
}

impl CifarTest {
    /// Loads `x_test.npy` and `y_test.npy` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CifarError> {
        for f in ["x_test.npy", "y_test.npy"] {
            if !dir.join(f).is_file() {
                return Err(CifarError::Missing {
                    dir: dir.display().to_string(),
                    file: f.into(),
                });
            }
        }
        let x = read_npy(&dir.join("x_test.npy"))?;
        let y = read_npy(&dir.join("y_test.npy"))?;
        let (n, h, w) = match (&x.shape[..], &x.data) {
            ([n, h, w, 3], NpyData::U8(_)) => (*n, *h, *w),
            _ => {
                return Err(CifarError::Mismatch(format!(
                    "x_test.npy has shape {:?}; expected uint8 (N, H, W, 3)",
                    x.shape
                )))
            }
        };
        let labels: Vec<u8> = match (&y.shape[..], y.data) {
            ([m], NpyData::U8(v)) if *m == n => v,
            ([m], NpyData::I64(v)) if *m == n => v
                .into_iter()
                .map(|l| u8::try_from(l).ok().filter(|&l| l < 10))
                .collect::<Option<_>>()
                .ok_or_else(|| CifarError::Mismatch("a label outside 0..10".into()))?,
            _ => {
                return Err(CifarError::Mismatch(format!(
                    "y_test.npy has shape {:?}; expected ({n},)",
                    y.shape
                )))
            }
        };
        let NpyData::U8(pixels) = x.data else {
            return Err(CifarError::Mismatch("x_test.npy is not uint8".into()));
        };
        Ok(CifarTest {
            pixels,
            labels,
            h,
            w,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `k` as a flattened `[1, 3, H, W]` tensor, normalised as `image::decode_png`
    /// does. `None` when `k` is out of range.
    pub fn image(&self, k: usize, norm: &ImageNormalization) -> Option<Vec<f64>> {
        let (h, w) = (self.h, self.w);
        let px = self.pixels.get(k * h * w * 3..(k + 1) * h * w * 3)?;
        let mut data = vec![0.0; 3 * h * w];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = px[(y * w + x) * 3 + c] as f64 / 255.0;
                    data[(c * h + y) * w + x] = (v - norm.mean[c]) / norm.std[c];
                }
            }
        }
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_numpy_writes() {
        let a = parse_npy(&npy_bytes("|u1", "(2, 3)", &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::U8(vec![1, 2, 3, 4, 5, 6]));
        let body: Vec<u8> = [7i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let a = parse_npy(&npy_bytes("<i8", "(2,)", &body)).unwrap();
        assert_eq!(a.shape, vec![2]);
        assert_eq!(a.data, NpyData::I64(vec![7, -1]));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse_npy(b"not numpy").is_err());
        assert!(parse_npy(&npy_bytes("<f4", "(1,)", &[0; 4])).is_err());
        assert!(parse_npy(&npy_bytes("|u1", "(4,)", &[0; 3])).is_err());
        let mut b = npy_bytes("|u1", "(1,)", &[0]);
        b[8] = 0xff; // header length beyond the file
        assert!(parse_npy(&b).is_err());
        let f = npy_bytes("|u1", "(1,)", &[0]).replace_fortran();
        assert!(parse_npy(&f).is_err());
    }

    trait Fortran {
        fn replace_fortran(self) -> Vec<u8>;
    }
    impl Fortran for Vec<u8> {
        fn replace_fortran(self) -> Vec<u8> {
            let s = String::from_utf8_lossy(&self).replace("False", "True ");
            let mut v = self[..10].to_vec();
            v.extend(&s.as_bytes()[10..]);
            v
        }
    }

    #[test]
    fn missing_data_names_the_setup_step() {
        let dir = std::env::temp_dir().join("fhec-no-cifar-here");
        let err = CifarTest::load(&dir).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("models/setup.sh --data")));
    }

    /// The committed PNGs are test images 0..19 (models/data.py checks it); where the
    /// test set is on this machine, its images normalise exactly as the PNGs do.
    #[test]
    fn images_match_the_committed_pngs() {
        let Ok(set) = CifarTest::load(&default_dir()) else {
            eprintln!("CIFAR-10 test set not present: skipped");
            return;
        };
        let norm = ImageNormalization {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        };
        let png =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/cifar10/cifar10_00_3.png");
        let t = crate::image::load_png(&png, [32, 32], norm.mean, norm.std).unwrap();
        assert_eq!(set.image(0, &norm).unwrap(), t.data());
        assert_eq!(set.labels[0], 3);
        assert!(set.image(set.len(), &norm).is_none());
    }
}
