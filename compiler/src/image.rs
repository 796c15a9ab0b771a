//! Reading a CIFAR-style PNG into a normalised `[1, 3, H, W]` tensor (mean / std from the
//! model's metadata, RGB, in [0, 1] pixel units).

use std::path::Path;

use anyhow::{bail, Context};
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

/// Parses a comma-separated list of 3 floats (metadata `mean` / `std`).
pub fn parse_triple(s: &str) -> anyhow::Result<[f64; 3]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad float list '{s}'"))?;
    match v[..] {
        [a, b, c] => Ok([a, b, c]),
        [a] => Ok([a, a, a]),
        _ => bail!("expected 3 comma-separated floats, got '{s}'"),
    }
}

/// Loads an RGB(A) PNG of size `hw` as `[1, 3, h, w]`, `(p / 255 - mean) / std`.
pub fn load_png(
    path: &Path,
    hw: [usize; 2],
    mean: [f64; 3],
    std: [f64; 3],
) -> anyhow::Result<Tensor> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .with_context(|| format!("{} is not a PNG", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("decoding {}", path.display()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let chans = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => bail!("{}: expected an RGB image, got {other:?}", path.display()),
    };
    if [h, w] != hw {
        bail!(
            "{}: image is {w}x{h}, the model expects {}x{}",
            path.display(),
            hw[1],
            hw[0]
        );
    }
    let mut data = vec![0.0; 3 * h * w];
    for y in 0..h {
        let row = &buf[y * info.line_size..];
        for x in 0..w {
            for c in 0..3 {
                let p = row[x * chans + c] as f64 / 255.0;
                data[(c * h + y) * w + x] = (p - mean[c]) / std[c];
            }
        }
    }
    Ok(Tensor::new(vec![1, 3, h, w], data)?)
}
