//! Rotation and retention of the audit file (`--audit-retention-days`, `--audit-rotate-bytes`),
//! without breaking the hash chain.
//!
//! The active file keeps its name (`--audit-file`). At the first write of a new UTC day (with a
//! retention set), or once it has reached `--audit-rotate-bytes`, it is renamed to
//! `<file>.<YYYYMMDDTHHMMSS.mmmZ>` (the rotation time, UTC; sorting the names sorts the files)
//! and a new active file is started. The chain simply continues: the new file's first record
//! is a `rotated:` event record whose `prev` is the last hash of the file before it, and whose
//! `seq` follows on.
//!
//! Retention: rotated files whose rotation time is more than N days ago hold only records older
//! than N days; they are deleted at start and at every rotation, so a record is kept between N
//! and N + 1 days. Each deletion is itself recorded in the chain, as a `retention_removed:`
//! event record naming the file and the last `seq` it held.
//!
//! [`verify_set`] checks the files in order as one chain. The first remaining file may start in
//! the middle of the chain only with a `rotated:` record, and only where a `retention_removed:`
//! record says the records before it were removed: a file deleted by hand at the start, a file
//! missing in the middle (the next file does not link), records cut from a rotated file (the
//! next file does not link) or from the active one (the anchor) are all still reported.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::serve::audit::{
    last_record, rfc3339_millis, verify_from, Anchor, AuditError, AuditRecord, ChainPoint,
    VerifyError,
};

/// Event text a new active file starts with.
pub const ROTATED_EVENT: &str = "rotated:";
/// Event text recording the deletion of a rotated file by retention.
pub const RETENTION_EVENT: &str = "retention_removed:";

/// When the active file is rotated and how long rotated files are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Delete rotated files older than this many days; also rotates daily (UTC), so that
    /// files age by day. `None`: keep every file.
    pub retention_days: Option<u32>,
    /// Rotate once the active file holds this many bytes (`None`: no size limit).
    pub max_bytes: Option<u64>,
}

impl Rotation {
    /// Whether the file is rotated at each new UTC day.
    pub fn daily(&self) -> bool {
        self.retention_days.is_some()
    }

    /// Whether any rotation is configured.
    pub fn active(&self) -> bool {
        self.daily() || self.max_bytes.is_some()
    }
}

/// `YYYY-MM-DD` of `t` in UTC: a file is rotated when the day of its records is not today's.
pub fn utc_day(t: SystemTime) -> String {
    rfc3339_millis(t)[..10].to_string()
}

/// The rotation stamp of `t`: `YYYYMMDDTHHMMSS.mmmZ` (fixed width, so names sort by time).
fn stamp(t: SystemTime) -> String {
    rfc3339_millis(t).replace(['-', ':'], "")
}

/// Whether `suffix` (after `<file>.`) is a rotation stamp, optionally with `-N` (two
/// rotations in the same millisecond).
fn is_stamp(suffix: &str) -> bool {
    let (base, n) = suffix.split_once('-').unwrap_or((suffix, "0"));
    let b = base.as_bytes();
    b.len() == 20
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'Z'
        && !n.is_empty()
        && n.bytes().all(|c| c.is_ascii_digit())
}

/// The file name of `path`, for events and reports.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A free name to rotate `active` to at `now`.
pub fn rotated_name(active: &Path, now: SystemTime) -> PathBuf {
    let base = format!("{}.{}", active.display(), stamp(now));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// The rotated files of `active`, oldest first.
pub fn rotated_files(active: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = match active.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{}.", file_name(active));
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = name.strip_prefix(&prefix) {
            if is_stamp(suffix) {
                found.push((suffix.to_string(), entry.path()));
            }
        }
    }
    // By stamp; `…Z` sorts before `…Z-1`, the later rotation in the same millisecond.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Deletes the rotated files of `active` rotated more than `days` days before `now`, oldest
/// first, and returns one `retention_removed:` event text per deleted file for the chain. A
/// file whose last record cannot be read is kept (and logged): deleting it would leave a start
/// of the chain that no record accounts for.
pub fn sweep(active: &Path, now: SystemTime, days: u32) -> Vec<String> {
    let cutoff = now
        .checked_sub(Duration::from_secs(u64::from(days) * 86_400))
        .map(stamp)
        .unwrap_or_default();
    let files = match rotated_files(active) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, file = %active.display(), "cannot list rotated audit files for retention");
            return Vec::new();
        }
    };
    let prefix = format!("{}.", file_name(active));
    let mut events = Vec::new();
    for path in files {
        let name = file_name(&path);
        let rotated_at = name.strip_prefix(&prefix).unwrap_or_default();
        if rotated_at.get(..20).unwrap_or_default() >= cutoff.as_str() {
            break;
        }
        let last = match last_record(&path) {
            Ok(Some(r)) => r.seq.to_string(),
            Ok(None) => "none (empty file)".to_string(),
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "expired audit file kept: its last record is unreadable");
                continue;
            }
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), last_seq = %last, days, "audit file removed by retention");
                events.push(format!(
                    "{RETENTION_EVENT} {name} last_seq {last} (rotated more than {days} days ago)"
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "cannot remove expired audit file")
            }
        }
    }
    events
}

/// The text of the `rotated:` record a new active file starts with.
pub fn rotated_event(previous: &Path, last_seq: u64) -> String {
    format!(
        "{ROTATED_EVENT} continues from {} (last seq {last_seq})",
        file_name(previous)
    )
}

/// The `last_seq` a `retention_removed:` record names, if it is one.
fn removed_up_to(record: &AuditRecord) -> Option<u64> {
    let rest = record.event.as_deref()?.strip_prefix(RETENTION_EVENT)?;
    rest.split_whitespace()
        .skip_while(|w| *w != "last_seq")
        .nth(1)?
        .parse()
        .ok()
}

/// Result of [`verify_set`].
#[derive(Debug, PartialEq, Eq)]
pub struct SetReport {
    /// The files checked, oldest first (the active file last).
    pub files: Vec<PathBuf>,
    pub records: u64,
    /// `seq` of the first record kept; above 1 when earlier files were removed by retention.
    pub first_seq: u64,
    /// `seq` of the last record.
    pub last_seq: u64,
    pub last_hash: Option<String>,
    /// Files the chain records as removed by retention.
    pub removed_files: u64,
}

/// Why a rotated set does not verify.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{}: {source}", file.display())]
    In {
        file: PathBuf,
        #[source]
        source: VerifyError,
    },
    #[error("{}: starts at seq {seq} without a `rotated:` record: the records before it were removed or the file was cut at its start", file.display())]
    StartsMidChain { file: PathBuf, seq: u64 },
    #[error("the chain starts at seq {first_seq}, but no `retention_removed:` record accounts for the records before it (files removed by hand?)")]
    UnrecordedRemoval { first_seq: u64 },
    #[error("the log ends at seq {last_seq} but its anchor records seq {anchor_seq}: records were cut from the end")]
    TruncatedTail { last_seq: u64, anchor_seq: u64 },
    #[error("cannot read {}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Checks the rotated files of `active` and `active` itself as one chain (see the module docs),
/// and with an anchor that the chain reaches the anchored record.
pub fn verify_set(active: &Path, anchor: Option<&Anchor>) -> Result<SetReport, SetError> {
    let io_err = |file: &Path| {
        let file = file.to_path_buf();
        move |source| SetError::Io { file, source }
    };
    let mut files = rotated_files(active).map_err(io_err(active))?;
    files.push(active.to_path_buf());

    // Where the chain starts: the genesis, or a `rotated:` record after files removed by retention.
    let first = files
        .iter()
        .find_map(|f| first_record(f).transpose())
        .transpose()?;
    let start = match &first {
        Some((_, r)) if r.seq == 1 => ChainPoint::genesis(),
        Some((_, r))
            if r.event
                .as_deref()
                .is_some_and(|e| e.starts_with(ROTATED_EVENT)) =>
        {
            ChainPoint {
                next_seq: r.seq,
                prev: r.prev.clone(),
            }
        }
        Some((file, r)) => {
            return Err(SetError::StartsMidChain {
                file: file.clone(),
                seq: r.seq,
            })
        }
        None => ChainPoint::genesis(),
    };
    let first_seq = start.next_seq;

    let mut point = start;
    let mut records = 0u64;
    let mut removed: Vec<u64> = Vec::new();
    for file in &files {
        let f = File::open(file).map_err(io_err(file))?;
        let (next, n) = verify_from(BufReader::new(f), point, |line, record| {
            if let Some(a) = anchor.filter(|a| a.seq == record.seq && a.hash != record.hash) {
                return Err(VerifyError::AnchorMismatch { line, seq: a.seq });
            }
            if let Some(up_to) = removed_up_to(record) {
                removed.push(up_to);
            }
            Ok(())
        })
        .map_err(|source| SetError::In {
            file: file.clone(),
            source,
        })?;
        point = next;
        records += n;
    }
    if first_seq > 1 && !removed.contains(&(first_seq - 1)) {
        return Err(SetError::UnrecordedRemoval { first_seq });
    }
    let last_seq = point.next_seq.saturating_sub(1);
    if let Some(a) = anchor {
        if a.seq > last_seq {
            return Err(SetError::TruncatedTail {
                last_seq,
                anchor_seq: a.seq,
            });
        }
    }
    Ok(SetReport {
        files,
        records,
        first_seq,
        last_seq,
        last_hash: (records > 0).then_some(point.prev),
        removed_files: removed.len() as u64,
    })
}

/// The first record of `file` (`None` when it is empty), with the file's path.
fn first_record(file: &Path) -> Result<Option<(PathBuf, AuditRecord)>, SetError> {
    let f = File::open(file).map_err(|source| SetError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    let mut line = Vec::new();
    BufReader::new(f)
        .read_until(b'\n', &mut line)
        .map_err(|source| SetError::Io {
            file: file.to_path_buf(),
            source,
        })?;
    if line.is_empty() {
        return Ok(None);
    }
    let record = serde_json::from_slice(&line).map_err(|e| SetError::In {
        file: file.to_path_buf(),
        source: VerifyError::Parse {
            line: 1,
            message: e.to_string(),
        },
    })?;
    Ok(Some((file.to_path_buf(), record)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn stamps_sort_by_time_and_are_recognised() {
        let a = stamp(UNIX_EPOCH + Duration::from_millis(1_764_460_800_123));
        assert_eq!(a, "20251130T000000.123Z");
        assert!(is_stamp(&a));
        assert!(is_stamp(&format!("{a}-2")));
        for bad in [
            "anchor",
            "tmp",
            "20251130T000000Z",
            "20251130T000000.123Z-",
            "",
        ] {
            assert!(!is_stamp(bad), "{bad}");
        }
        let b = stamp(UNIX_EPOCH + Duration::from_millis(1_764_547_200_000));
        assert!(a < b);
    }

    #[test]
    fn utc_day_is_the_date() {
        assert_eq!(
            utc_day(UNIX_EPOCH + Duration::from_secs(1_764_547_199)),
            "2025-11-30"
        );
        assert_eq!(
            utc_day(UNIX_EPOCH + Duration::from_secs(1_764_547_200)),
            "2025-12-01"
        );
    }
}
