//! File handling shared by the client/server verbs: loading a `.fheprog` (refusing
//! insecure parameters without the explicit opt-in) and writing outputs atomically
//! (temporary file + rename; secret keys with owner-only permissions).

use anyhow::{bail, Context as _};
use runtime::ckks::Context;
use runtime::program::Program;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The one loudly named opt-in for insecure test parameters.
pub const INSECURE_FLAG: &str = "--insecure-test-params";

/// The program argument every client/server verb takes, with the insecure opt-in.
#[derive(clap::Args)]
pub struct ProgramArg {
    /// The compiled program (.fheprog).
    pub program: std::path::PathBuf,
    /// Accept a program built with INSECURE test parameters.
    #[arg(long)]
    pub insecure_test_params: bool,
}

impl ProgramArg {
    pub fn load(&self) -> anyhow::Result<(Program, Arc<Context>)> {
        load_program(&self.program, self.insecure_test_params)
    }
}

/// Loads the client's secret key for `ctx`'s parameters (the file's bytes are wiped from
/// memory once decoded).
pub fn load_secret(path: &Path, ctx: &Context) -> anyhow::Result<runtime::ckks::SecretKey> {
    let bytes = Zeroizing::new(read(path)?);
    runtime::codec::secret_key_from_bytes(&bytes, ctx)
        .with_context(|| format!("loading the secret key {}", path.display()))
}

/// Loads and validates a program and builds its CKKS context.
pub fn load_program(path: &Path, insecure_ok: bool) -> anyhow::Result<(Program, Arc<Context>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let program =
        Program::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    if program.params.is_insecure_for_tests() {
        if !insecure_ok {
            bail!(
                "{} uses INSECURE test parameters (log QP = {:.0} bits at N = 2^{}, above the \
                 128-bit bound); refusing without {INSECURE_FLAG}",
                path.display(),
                program.params.log_qp(),
                program.params.log_n()
            );
        }
        eprintln!(
            "WARNING: {} uses INSECURE test parameters ({INSECURE_FLAG}); never use them for real data",
            path.display()
        );
    }
    let ctx = Context::new(program.params.clone())?;
    Ok((program, ctx))
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, synced, then
/// renamed over `path`): an interrupted write leaves the old file or none, never a
/// truncated one. `secret` files are created owner-only (0600) from the start.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let result = (|| -> anyhow::Result<()> {
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        // Make the rename itself durable (best effort: not every platform can sync a
        // directory).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a file with a readable error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let d = std::env::temp_dir().join(format!("fhec-write-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("out.bin");
        write_atomic(&p, b"first version", false).unwrap();
        write_atomic(&p, b"second", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")]);
        // A write that cannot complete (the target is a directory) leaves nothing behind.
        let sub = d.join("sub");
        std::fs::create_dir_all(sub.join("x")).unwrap();
        assert!(write_atomic(&sub, b"data", false).is_err());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }
}
