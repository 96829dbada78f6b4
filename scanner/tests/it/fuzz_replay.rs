//! Replays the fuzz targets' seed corpora (`fuzz/corpus/<target>/`, including the inputs of
//! every crash found so far) through the same harnesses the libFuzzer targets run
//! (`pd_scanner::fuzzing`), so `cargo test` keeps them passing without a fuzzing toolchain.
//! Time-bounded fuzzing itself runs in the GitHub workflow (docs/src/contributing/overview.md, "Fuzzing").

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    files
}

fn replay(target: &str, harness: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn pack_corpus() {
    replay("pack", pd_scanner::fuzzing::pack);
}

#[test]
fn scan_corpus() {
    replay("scan", pd_scanner::fuzzing::scan);
}

#[test]
fn http_corpus() {
    replay("http", pd_scanner::fuzzing::http);
}
