//! Finding and reading the files of a rule-pack source set: which files, whether they may be
//! read, what their metadata says, and their bytes, read once.
//!
//! Everything that reads pack files goes through here (the CLI, `serve`'s first load and every
//! hot reload), so the same rules hold everywhere:
//!
//! - A directory is read one level deep, in name order, skipping hidden entries (kubelet's
//!   `..data` and `..<timestamp>` folders of a mounted ConfigMap are hidden; the visible names
//!   are symlinks into them) and names without a `.yaml`, `.yml` or `.json` extension.
//! - A symlink is followed only when its target lies inside the directory holding the link
//!   (for a directory source: that directory; for a named file: its parent). kubelet's links
//!   stay inside the volume; a link to `/etc/shadow` is refused by name, before its target is
//!   opened, so nothing of it can reach an error message.
//! - A file's size is checked on its metadata before it is read, and the read itself stops one
//!   byte past the limit (the file may grow in between).
//! - A file is read through its resolved path, and its metadata is taken again after reading:
//!   a file that changed meanwhile is reported as [`LoadError::Changing`], never used half-read.
//!
//! [`fingerprint`] is the cheap half, for polling: paths and metadata (size, modification and
//! change times, inode), no contents.

use std::fs::{self, File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::limits::Limits;
use crate::load::LoadError;

/// File extensions read from directories.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// A file whose modification time is this close to the moment it was read may still be
/// rewritten without its metadata changing (file-system timestamps are coarse: a jiffy on
/// Linux, 2 s on FAT), so a watcher must read it again before trusting its metadata.
pub const RECENT: Duration = Duration::from_secs(2);

/// One file of a source set, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as named (the `-f` argument, or the directory joined with the entry's name):
    /// what errors show.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// A source set read at one moment: every file's bytes, each checked not to have changed
/// while it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What was asked for (for "no rule packs found in …").
    pub requested: Vec<PathBuf>,
    pub files: Vec<SourceFile>,
    /// Some file was modified within [`RECENT`] of being read (see there).
    pub recent: bool,
}

impl Snapshot {
    /// SHA-256 over every file's path, length and bytes: equal digests mean the same sources.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for f in &self.files {
            h.update(f.path.as_os_str().as_encoded_bytes());
            h.update([0]);
            h.update((f.bytes.len() as u64).to_le_bytes());
            h.update(&f.bytes);
        }
        h.finalize().into()
    }
}

/// A file to read: as named, and the file it resolves to.
#[derive(Debug, Clone)]
struct Listed {
    path: PathBuf,
    real: PathBuf,
}

/// The files `paths` name, in the order they are loaded. Named files must exist; directory
/// entries that are not regular files (or are dangling links) are skipped, as they always
/// were: only a file can be a source.
fn list(paths: &[PathBuf]) -> Result<Vec<Listed>, LoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(io(path))?;
        if meta.is_dir() {
            let dir = fs::canonicalize(path).map_err(io(path))?;
            let mut entries = Vec::new();
            for entry in fs::read_dir(path).map_err(io(path))? {
                let entry = entry.map_err(io(path))?;
                let name = entry.file_name();
                if name.as_encoded_bytes().first() == Some(&b'.') {
                    continue;
                }
                let entry_path = entry.path();
                let wanted = entry_path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e));
                if wanted {
                    entries.push(entry_path);
                }
            }
            entries.sort();
            for entry in entries {
                // Unresolvable (a dangling link) or not a file: not a source.
                let Ok(real) = fs::canonicalize(&entry) else {
                    continue;
                };
                if !fs::metadata(&real).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                files.push(contained(entry, real, &dir)?);
            }
        } else {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = fs::canonicalize(parent).map_err(io(path))?;
            let real = fs::canonicalize(path).map_err(io(path))?;
            files.push(contained(path.clone(), real, &dir)?);
        }
    }
    Ok(files)
}

/// `path` resolving to `real`, if `real` lies inside `dir` (both resolved).
fn contained(path: PathBuf, real: PathBuf, dir: &Path) -> Result<Listed, LoadError> {
    if real.starts_with(dir) {
        Ok(Listed { path, real })
    } else {
        Err(LoadError::OutsideSource {
            path,
            target: real,
            dir: dir.to_path_buf(),
        })
    }
}

/// What a file's metadata says about its contents: two equal stamps taken apart mean no write
/// was seen in between (up to the timestamp granularity; see [`RECENT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified_ns: i128,
    changed_ns: i128,
    inode: u64,
    device: u64,
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stamp {
                len: m.len(),
                modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                changed_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
                inode: m.ino(),
                device: m.dev(),
            }
        }
        #[cfg(not(unix))]
        {
            let modified_ns = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Stamp {
                len: m.len(),
                modified_ns,
                changed_ns: 0,
                inode: 0,
                device: 0,
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(56);
        b.extend(self.len.to_le_bytes());
        b.extend(self.modified_ns.to_le_bytes());
        b.extend(self.changed_ns.to_le_bytes());
        b.extend(self.inode.to_le_bytes());
        b.extend(self.device.to_le_bytes());
        b
    }
}

/// A digest of the source set's file list and every file's metadata, without reading any
/// contents: what a watcher polls. A listing error (a missing path, a link leaving its
/// directory) is part of the digest, so it appearing or going away counts as a change.
pub fn fingerprint(paths: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    match list(paths) {
        Ok(files) => {
            for f in files {
                h.update(f.path.as_os_str().as_encoded_bytes());
                h.update([0]);
                h.update(f.real.as_os_str().as_encoded_bytes());
                h.update([0]);
                match fs::metadata(&f.real) {
                    Ok(m) => h.update(Stamp::of(&m).bytes()),
                    Err(_) => h.update(b"\xFFunreadable"),
                }
            }
        }
        Err(e) => {
            h.update(b"\xFFerror");
            h.update(e.to_string().as_bytes());
        }
    }
    h.finalize().into()
}

/// Reads every file of `paths` (see the module documentation for the rules).
pub fn read(paths: &[PathBuf], limits: &Limits) -> Result<Snapshot, LoadError> {
    let now = SystemTime::now();
    let mut snapshot = Snapshot {
        requested: paths.to_vec(),
        ..Snapshot::default()
    };
    for f in list(paths)? {
        let io = |source| LoadError::Io {
            path: f.path.clone(),
            source,
        };
        let before = fs::metadata(&f.real).map_err(io)?;
        let too_large = |size: u64| LoadError::TooLarge {
            path: f.path.clone(),
            size,
            limit: limits.max_file_bytes,
        };
        if before.len() > limits.max_file_bytes {
            return Err(too_large(before.len()));
        }
        let mut bytes = Vec::with_capacity(before.len() as usize);
        File::open(&f.real)
            .and_then(|file| {
                file.take(limits.max_file_bytes.saturating_add(1))
                    .read_to_end(&mut bytes)
            })
            .map_err(io)?;
        if bytes.len() as u64 > limits.max_file_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        let after = fs::metadata(&f.real).map_err(io)?;
        if Stamp::of(&before) != Stamp::of(&after) || bytes.len() as u64 != after.len() {
            return Err(LoadError::Changing { path: f.path });
        }
        snapshot.recent |= after.modified().ok().is_none_or(|m| m + RECENT > now);
        snapshot.files.push(SourceFile {
            path: f.path,
            bytes,
        });
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_skip_hidden_and_foreign_entries_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["b.yaml", "a.json", "c.yml", "notes.txt", ".hidden.yaml"] {
            fs::write(d.join(name), "x: 1\n").unwrap();
        }
        fs::create_dir(d.join("sub.yaml")).unwrap();
        let s = read(&[d.to_path_buf()], &Limits::default()).unwrap();
        let names: Vec<_> = s
            .files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json", "b.yaml", "c.yml"]);
        assert!(s.recent, "just written");
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_directory_are_followed_and_links_out_are_refused() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.yaml"), "root: x\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("..2026_01_01")).unwrap();
        fs::write(d.join("..2026_01_01/p.yaml"), "version: '1'\n").unwrap();
        symlink("..2026_01_01", d.join("..data")).unwrap();
        symlink("..data/p.yaml", d.join("p.yaml")).unwrap();
        let s = read(&[d.to_path_buf()], &Limits::default()).unwrap();
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.files[0].path, d.join("p.yaml"));
        assert_eq!(s.files[0].bytes, b"version: '1'\n");

        symlink(outside.path().join("secret.yaml"), d.join("q.yaml")).unwrap();
        let e = read(&[d.to_path_buf()], &Limits::default()).unwrap_err();
        assert!(matches!(e, LoadError::OutsideSource { .. }), "{e}");
        assert!(e.public().contains("q.yaml"), "{}", e.public());
        assert!(!e.public().contains("secret"), "{}", e.public());
        // A named file follows the same rule, relative to its own directory.
        let e = read(&[d.join("q.yaml")], &Limits::default()).unwrap_err();
        assert!(matches!(e, LoadError::OutsideSource { .. }), "{e}");
        // A dangling link is not a source (as a directory named x.yaml is not).
        fs::remove_file(d.join("q.yaml")).unwrap();
        symlink(d.join("gone.yaml"), d.join("r.yaml")).unwrap();
        assert_eq!(
            read(&[d.to_path_buf()], &Limits::default())
                .unwrap()
                .files
                .len(),
            1
        );
    }

    #[test]
    fn size_is_checked_before_reading_and_the_fingerprint_reads_no_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        fs::write(&p, vec![b'#'; 100]).unwrap();
        let limits = Limits {
            max_file_bytes: 99,
            ..Limits::default()
        };
        let e = read(std::slice::from_ref(&p), &limits).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::TooLarge {
                    size: 100,
                    limit: 99,
                    ..
                }
            ),
            "{e}"
        );
        let before = fingerprint(std::slice::from_ref(&p));
        assert_eq!(before, fingerprint(std::slice::from_ref(&p)));
        fs::write(&p, vec![b'#'; 101]).unwrap();
        assert_ne!(before, fingerprint(std::slice::from_ref(&p)));
        let missing = fingerprint(&[dir.path().join("missing.yaml")]);
        assert_ne!(missing, fingerprint(&[p]));
    }
}
