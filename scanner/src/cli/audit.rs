//! `pd-scanner audit verify`: check an audit log's hash chain, rotated files included.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;

use pd_scanner::serve::{audit, audit_rotate};

use super::Result;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's hash chain; reports the first broken or missing record, and
    /// records cut from the end when the log's anchor file is there.
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
        /// The anchor `serve` keeps beside the log (default: FILE.anchor, when it exists).
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
}

pub fn audit_verify(file: &Path, anchor: Option<&Path>) -> Result<u8> {
    let rotated = audit_rotate::rotated_files(file).unwrap_or_default();
    // Opened before the anchor is read, so a missing log is reported as such.
    let single = if rotated.is_empty() {
        Some(File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?)
    } else {
        None
    };
    let anchor_file = anchor
        .map(Path::to_path_buf)
        .unwrap_or_else(|| audit::anchor_path(file));
    let anchored = match audit::read_anchor(&anchor_file) {
        Ok(a) => a,
        Err(e) => {
            outln!("BROKEN: {}: {e}", anchor_file.display())?;
            return Ok(1);
        }
    };
    if anchored.is_none() && anchor.is_some() {
        return Err(format!("no anchor file {}", anchor_file.display()).into());
    }
    let verified = match single {
        Some(f) => verify_one(f, anchored.as_ref()),
        None => verify_rotated(file, anchored.as_ref()),
    };
    match verified {
        Ok(true) => {
            match anchored {
                Some(a) => outln!("anchor {}: seq {} present", anchor_file.display(), a.seq)?,
                None => outln!(
                    "no anchor ({} missing): records cut from the end cannot be detected",
                    anchor_file.display()
                )?,
            }
            Ok(0)
        }
        Ok(false) => Ok(1),
        Err(e) => Err(e),
    }
}

/// One file: prints the report or `BROKEN`; true when the chain holds.
fn verify_one(f: File, anchored: Option<&audit::Anchor>) -> Result<bool> {
    match audit::verify_anchored(BufReader::new(f), anchored) {
        Ok(report) => {
            outln!(
                "ok: {} records, chain intact; last hash {}",
                report.records,
                report.last_hash.as_deref().unwrap_or("-")
            )?;
            Ok(true)
        }
        Err(e) => {
            outln!("BROKEN: {e}")?;
            Ok(false)
        }
    }
}

/// A rotated log: the rotated files and the active one as one chain.
fn verify_rotated(file: &Path, anchored: Option<&audit::Anchor>) -> Result<bool> {
    match audit_rotate::verify_set(file, anchored) {
        Ok(report) => {
            outln!(
                "ok: {} records in {} files (seq {}..{}), chain intact; last hash {}",
                report.records,
                report.files.len(),
                report.first_seq,
                report.last_seq,
                report.last_hash.as_deref().unwrap_or("-")
            )?;
            for f in &report.files {
                outln!("  {}", f.display())?;
            }
            if report.first_seq > 1 {
                outln!(
                    "records before seq {} were removed by retention ({} files, each recorded in the chain)",
                    report.first_seq,
                    report.removed_files
                )?;
            }
            Ok(true)
        }
        Err(e) => {
            outln!("BROKEN: {e}")?;
            Ok(false)
        }
    }
}
