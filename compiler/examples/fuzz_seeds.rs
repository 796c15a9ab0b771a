//! Writes the initial fuzz corpus (`compiler::fuzzing::seeds`) under a folder, one
//! sub-folder per target: `cargo run --release -p compiler --example fuzz_seeds -- fuzz/seeds`.

fn main() -> std::io::Result<()> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or("fuzz/seeds".into()));
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    for (target, name, bytes) in compiler::fuzzing::seeds(&data)? {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
