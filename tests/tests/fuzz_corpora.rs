//! CI's share of the fuzz campaign: every committed corpus file under `fuzz/corpus/<target>`
//! (and every reproducer under `fuzz/regressions/<target>`) goes through the same entry
//! point its libFuzzer target calls (`compiler::fuzzing`), on the stable toolchain; a panic
//! fails the test. The seeds the campaign starts from are replayed too.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn committed_corpora_replay_without_panics() {
    let mut total = 0;
    for target in compiler::fuzzing::TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "no committed corpus for fuzz target {target} (run fuzz/run_campaign.sh)"
        );
        let regressions = files(&fuzz_dir().join("regressions").join(target));
        for f in corpus.iter().chain(&regressions) {
            let data = std::fs::read(f).unwrap();
            let _ = compiler::fuzzing::run_target(target, &data);
        }
        eprintln!(
            "{target}: {} corpus files, {} regressions",
            corpus.len(),
            regressions.len()
        );
        total += corpus.len();
    }
    assert!(total > 0);
}

#[test]
fn seeds_replay_and_valid_seeds_load() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
    let seeds = compiler::fuzzing::seeds(&data).unwrap();
    for target in compiler::fuzzing::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| *t == target),
            "no seed for {target}"
        );
    }
    for (target, name, bytes) in &seeds {
        assert!(
            compiler::fuzzing::run_target(target, bytes),
            "valid seed {target}/{name} does not load"
        );
    }
}
