//! Audit rotation and retention (issue 16, item 4), with the real binary: `serve` rotates its
//! `--audit-file` by size, deletes rotated files past `--audit-retention-days` and records each
//! deletion in the chain; `audit verify` checks the files left as one chain, says what
//! retention removed, and still finds a file removed by hand, a gap in the middle, an edited
//! record and records cut from the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// Runs a server writing to `dir/audit.jsonl` with `extra` flags, sends `scans` scans, stops it.
fn serve_and_scan(dir: &Path, extra: &[&str], scans: usize) {
    let audit = dir.join("audit.jsonl");
    let mut args = vec![
        "--audit-file",
        audit.to_str().unwrap(),
        "--audit-fsync",
        "always",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(&args, None);
    for i in 0..scans {
        let body = serde_json::json!({ "prompt": format!("hello number {i}") }).to_string();
        assert_eq!(s.scan(KEY_A, &body).status, 200);
    }
    s.stop();
}

/// The rotated files of `dir/audit.jsonl`, oldest first.
fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("audit.jsonl.2") || n.starts_with("audit.jsonl.1")
        })
        .collect();
    v.sort();
    v
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `audit verify dir/audit.jsonl`: exit code and stdout.
fn verify(dir: &Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pd-scanner"))
        .args(["audit", "verify"])
        .arg(dir.join("audit.jsonl"))
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// A copy of `dir` to tamper with.
fn copy_dir(dir: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    to
}

fn broken(dir: &Path, expect: &str) {
    let (code, out) = verify(dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN") && out.contains(expect), "{out}");
}

#[test]
fn size_rotation_keeps_one_chain_that_verify_checks_across_files() {
    let dir = tempfile::tempdir().unwrap();
    // A record is a few hundred bytes: a new file every two or three records.
    serve_and_scan(dir.path(), &["--audit-rotate-bytes", "700"], 9);
    let files = rotated(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let mut all = Vec::new();
    for f in files.iter().chain([&dir.path().join("audit.jsonl")]) {
        all.extend(records(f));
    }
    for f in files
        .iter()
        .skip(1)
        .chain([&dir.path().join("audit.jsonl")])
    {
        let first = &records(f)[0];
        assert!(
            first["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("rotated: continues from audit.jsonl.")),
            "{} starts with {first}",
            f.display()
        );
    }
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    let decisions = all.iter().filter(|r| r["event"].is_null()).count();
    assert_eq!(decisions, 9);

    let (code, out) = verify(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "ok: {} records in {} files (seq 1..{})",
            all.len(),
            files.len() + 1,
            all.len()
        )),
        "{out}"
    );
    assert!(!out.contains("removed by retention"), "{out}");

    // A rotated file in the middle deleted: the next one does not link.
    let t = copy_dir(dir.path());
    std::fs::remove_file(t.path().join(files[1].file_name().unwrap())).unwrap();
    broken(t.path(), "expected seq");

    // The first file deleted by hand: no retention record accounts for it.
    let t = copy_dir(dir.path());
    std::fs::remove_file(t.path().join(files[0].file_name().unwrap())).unwrap();
    broken(t.path(), "no `retention_removed:` record accounts");

    // The last record of a rotated file cut: the next file does not link.
    let t = copy_dir(dir.path());
    let victim = t.path().join(files[1].file_name().unwrap());
    let text = std::fs::read_to_string(&victim).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&victim, format!("{}\n", kept[..kept.len() - 1].join("\n"))).unwrap();
    broken(t.path(), "expected seq");

    // A record edited in a rotated file.
    let t = copy_dir(dir.path());
    let victim = t.path().join(files[0].file_name().unwrap());
    let mut lines: Vec<serde_json::Value> = records(&victim);
    lines[1]["score"] = serde_json::json!(99);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&victim, text).unwrap();
    broken(t.path(), "does not match its hash");

    // Records cut from the end of the active file: the anchor says so.
    let t = copy_dir(dir.path());
    let active = t.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&active).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&active, format!("{}\n", kept[..kept.len() - 1].join("\n"))).unwrap();
    broken(t.path(), "records were cut from the end");
}

#[test]
fn retention_deletes_expired_files_records_it_and_verify_accepts_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    serve_and_scan(dir.path(), &["--audit-rotate-bytes", "700"], 9);
    let files = rotated(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    // Age the two oldest files: rotated in 2020, long past a 30-day retention.
    let old = [
        dir.path().join("audit.jsonl.20200101T000000.000Z"),
        dir.path().join("audit.jsonl.20200102T000000.000Z"),
    ];
    let last_seq_of_second = records(&files[1]).last().unwrap()["seq"].as_u64().unwrap();
    std::fs::rename(&files[0], &old[0]).unwrap();
    std::fs::rename(&files[1], &old[1]).unwrap();

    serve_and_scan(
        dir.path(),
        &[
            "--audit-rotate-bytes",
            "700",
            "--audit-retention-days",
            "30",
        ],
        1,
    );
    assert!(!old[0].exists() && !old[1].exists(), "expired files kept");
    assert!(files[2].exists(), "a file within retention was removed");
    let mut all = Vec::new();
    for f in rotated(dir.path())
        .iter()
        .chain([&dir.path().join("audit.jsonl")])
    {
        all.extend(records(f));
    }
    let removals: Vec<&str> = all
        .iter()
        .filter_map(|r| r["event"].as_str())
        .filter(|e| e.starts_with("retention_removed:"))
        .collect();
    assert_eq!(removals.len(), 2, "{removals:?}");
    assert!(
        removals[0].starts_with("retention_removed: audit.jsonl.20200101T000000.000Z last_seq ")
            && removals[1].starts_with(&format!(
                "retention_removed: audit.jsonl.20200102T000000.000Z last_seq {last_seq_of_second} "
            )),
        "{removals:?}"
    );

    let (code, out) = verify(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("(seq {}..", last_seq_of_second + 1))
            && out.contains(&format!(
                "records before seq {} were removed by retention (2 files",
                last_seq_of_second + 1
            )),
        "{out}"
    );

    // The first remaining file removed by hand as well: retention did not record that one.
    let t = copy_dir(dir.path());
    std::fs::remove_file(t.path().join(files[2].file_name().unwrap())).unwrap();
    broken(t.path(), "no `retention_removed:` record accounts");
}
