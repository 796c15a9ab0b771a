//! Reading a CIFAR-style PNG into a normalised `[1, 3, H, W]` tensor (mean / std from the
//! model's metadata, RGB, in [0, 1] pixel units), and the CIFAR-10 class names.

use std::path::Path;

use passes::ir::Tensor;

/// CIFAR-10 class names, by label.
pub const CIFAR10: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Errors reading an image input.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is not a readable PNG: {msg}")]
    Png { path: String, msg: String },
    #[error("'{path}': {msg}")]
    Unsuitable { path: String, msg: String },
    #[error("bad mean/std metadata '{0}': expected 3 comma-separated floats")]
    Metadata(String),
}

/// Parses a comma-separated list of 3 floats (or 1, repeated), as in metadata `mean` / `std`.
pub fn parse_triple(s: &str) -> Result<[f64; 3], ImageError> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| ImageError::Metadata(s.to_string()))?;
    match v[..] {
        [a, b, c] => Ok([a, b, c]),
        [a] => Ok([a, a, a]),
        _ => Err(ImageError::Metadata(s.to_string())),
    }
}

/// Loads an RGB(A) PNG of size `hw` (`[H, W]`) as `[1, 3, H, W]`, `(p / 255 - mean) / std`.
pub fn load_png(
    path: &Path,
    hw: [usize; 2],
    mean: [f64; 3],
    std: [f64; 3],
) -> Result<Tensor, ImageError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: p.clone(),
        source,
    })?;
    decode_png(&bytes, &p, hw, mean, std)
}

/// [`load_png`] on the bytes of a file (`what` names it in errors). The size and colour
/// type are checked from the header before any pixel buffer is allocated.
pub fn decode_png(
    bytes: &[u8],
    what: &str,
    hw: [usize; 2],
    mean: [f64; 3],
    std: [f64; 3],
) -> Result<Tensor, ImageError> {
    let png_err = |e: png::DecodingError| ImageError::Png {
        path: what.to_string(),
        msg: e.to_string(),
    };
    let unsuitable = |msg: String| ImageError::Unsuitable {
        path: what.to_string(),
        msg,
    };
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(png_err)?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    if [h, w] != hw {
        return Err(unsuitable(format!(
            "image is {w}x{h}, the model expects {}x{}",
            hw[1], hw[0]
        )));
    }
    let chans = match reader.output_color_type().0 {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => {
            return Err(unsuitable(format!(
                "expected an RGB image (3 channels), got {other:?}"
            )))
        }
    };
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(png_err)?;
    if info.width as usize != w || info.height as usize != h || buf.len() < h * info.line_size {
        return Err(unsuitable("frame does not match the image header".into()));
    }
    let mut data = vec![0.0; 3 * h * w];
    for y in 0..h {
        let row = &buf[y * info.line_size..];
        for x in 0..w {
            for c in 0..3 {
                let v = row[x * chans + c] as f64 / 255.0;
                data[(c * h + y) * w + x] = (v - mean[c]) / std[c];
            }
        }
    }
    Tensor::new(vec![1, 3, h, w], data).map_err(|e| unsuitable(e.to_string()))
}

/// The image normalisation a program records for its input: for a 3-channel NCHW input,
/// the model's `mean` / `std` metadata (raw [0, 1] pixels when it has none); `None` for
/// other inputs.
pub fn normalization(
    metadata: &[(String, String)],
    graph: &passes::ir::Graph,
) -> Option<runtime::program::ImageNormalization> {
    let shape = &graph.node(*graph.inputs().first()?).shape;
    if shape.len() != 4 || shape[1] != 3 {
        return None;
    }
    let get = |k: &str| {
        metadata
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let (mean, std) = match (get("mean"), get("std")) {
        (Some(m), Some(s)) => (parse_triple(m).ok()?, parse_triple(s).ok()?),
        _ => ([0.0; 3], [1.0; 3]),
    };
    Some(runtime::program::ImageNormalization { mean, std })
}

/// Loads a PNG as the input tensor of a compiled program: checked against the program's
/// (1, 3, H, W) input and normalised with the normalisation it records.
pub fn load_for_program(
    path: &Path,
    input: &runtime::program::InputLayout,
) -> Result<Tensor, ImageError> {
    let unsuitable = |msg: String| ImageError::Unsuitable {
        path: path.display().to_string(),
        msg,
    };
    let norm = input.image.as_ref().ok_or_else(|| {
        unsuitable("this program's input is not an image: give a .pb tensor".into())
    })?;
    let s = &input.shape;
    if s.len() != 4 || s[1] != 3 {
        return Err(unsuitable(format!(
            "this program's input {s:?} is not a 3-channel NCHW image"
        )));
    }
    load_png(path, [s[2], s[3]], norm.mean, norm.std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lists() {
        assert_eq!(parse_triple("0.5, 0.25,1").unwrap(), [0.5, 0.25, 1.0]);
        assert_eq!(parse_triple("2").unwrap(), [2.0; 3]);
        assert!(parse_triple("1,2").is_err());
        assert!(parse_triple("a,b,c").is_err());
    }
}
