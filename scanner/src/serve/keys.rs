//! Bearer API keys for the scan service.
//!
//! Only SHA-256 digests of tokens are kept in memory, so a heap dump or a stray `Debug` print
//! cannot leak a usable credential, and lookups are constant-time so response timing reveals
//! neither which key matched nor how much of a guess was right.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::serve::metrics::Metrics;
use crate::serve::reload::{hash_file, poll_changes, Act};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Shortest accepted token: anything shorter is guessable by brute force over the network.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest accepted token: bounds the work an unauthenticated request can make us hash.
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest key id; matches a DNS label so ids can double as Kubernetes Secret keys.
pub const MAX_ID_LEN: usize = 63;

/// Where [`KeyStore::from_pairs`] errors point, since those keys have no file.
const PAIRS_SOURCE: &str = "<inline keys>";

/// Why keys could not be loaded.
///
/// Messages name the file (and line where there is one) so an operator can fix the source,
/// but never contain a token, because these errors end up in logs.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read API keys from {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", location(path, *line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("no API keys found in {}", path.display())]
    Empty { path: PathBuf },
}

fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(n) => format!("{}:{n}", path.display()),
        None => path.display().to_string(),
    }
}

/// The set of API keys the service accepts.
pub struct KeyStore {
    /// `(id, SHA-256(token))`; ids and digests are unique.
    entries: Vec<(String, [u8; 32])>,
}

/// Keeps what is needed to report duplicates while building a store.
struct Builder {
    path: PathBuf,
    entries: Vec<(String, [u8; 32])>,
    /// Line each entry came from, parallel to `entries`, for duplicate messages.
    lines: Vec<Option<usize>>,
}

impl Builder {
    fn new(path: &Path) -> Self {
        Builder {
            path: path.to_path_buf(),
            entries: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn invalid(&self, line: Option<usize>, message: impl Into<String>) -> KeyError {
        KeyError::Invalid {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    fn add(&mut self, id: &str, token: &str, line: Option<usize>) -> Result<(), KeyError> {
        if !valid_id(id) {
            // The id is not echoed: a malformed line may really be a token pasted without an id.
            return Err(self.invalid(
                line,
                format!("invalid key id: must be 1..={MAX_ID_LEN} characters of [A-Za-z0-9._-]"),
            ));
        }
        if let Some(message) = token_problem(token) {
            return Err(self.invalid(line, format!("key '{id}': {message}")));
        }
        let digest = sha256(token);
        for (i, (other_id, other_digest)) in self.entries.iter().enumerate() {
            let first = match self.lines[i] {
                Some(n) => format!(" (first at line {n})"),
                None => String::new(),
            };
            if other_id == id {
                return Err(self.invalid(line, format!("duplicate key id '{id}'{first}")));
            }
            if other_digest == &digest {
                return Err(self.invalid(
                    line,
                    format!("key '{id}' has the same token as key '{other_id}'{first}"),
                ));
            }
        }
        self.entries.push((id.to_string(), digest));
        self.lines.push(line);
        Ok(())
    }

    fn finish(self) -> KeyStore {
        KeyStore {
            entries: self.entries,
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Describes what is wrong with a token without quoting any of it.
fn token_problem(token: &str) -> Option<String> {
    let len = token.len();
    if len < MIN_TOKEN_LEN {
        return Some(format!(
            "token is too short ({len} bytes, need at least {MIN_TOKEN_LEN})"
        ));
    }
    if len > MAX_TOKEN_LEN {
        return Some(format!(
            "token is too long ({len} bytes, at most {MAX_TOKEN_LEN})"
        ));
    }
    if let Some(pos) = token.bytes().position(|b| !b.is_ascii_graphic()) {
        return Some(format!(
            "token has a character that is not visible ASCII at byte {}",
            pos + 1
        ));
    }
    None
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl KeyStore {
    /// Loads keys from a file or a directory.
    ///
    /// A directory is what a mounted Kubernetes Secret looks like: every regular, non-hidden
    /// file is one key, its name the key id and its trimmed content the token. Symlinks are
    /// followed and names starting with `.` are skipped, because kubelet publishes the real
    /// files under `..<timestamp>/` and `..data` and exposes each key as a symlink into them.
    ///
    /// A file holds lines `id=token` or `id: token`; blank lines and `#` comments are ignored.
    ///
    /// An empty source is an error rather than a store that rejects everyone, since it is
    /// almost always a wrong mount or path.
    pub fn load(path: &Path) -> Result<KeyStore, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(io)?;
        let store = if meta.is_dir() {
            Self::load_dir(path)?
        } else {
            let text = fs::read_to_string(path).map_err(io)?;
            Self::parse_file(path, &text)?
        };
        if store.is_empty() {
            return Err(KeyError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(store)
    }

    fn load_dir(dir: &Path) -> Result<KeyStore, KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            let path = entry.path();
            // `fs::metadata` follows symlinks, which is how kubelet exposes each key.
            let meta = fs::metadata(&path).map_err(io(&path))?;
            if meta.is_file() {
                names.push((name, path));
            }
        }
        // Sorted so that which of two duplicates gets reported does not depend on readdir order.
        names.sort();
        let mut builder = Builder::new(dir);
        for (name, path) in names {
            let Some(id) = name.to_str() else {
                return Err(KeyError::Invalid {
                    path,
                    line: None,
                    message: "key file name is not valid UTF-8".into(),
                });
            };
            let content = fs::read(&path).map_err(io(&path))?;
            let Ok(text) = std::str::from_utf8(&content) else {
                return Err(KeyError::Invalid {
                    path,
                    line: None,
                    message: "token is not valid UTF-8".into(),
                });
            };
            builder.path.clone_from(&path);
            builder.add(id, text.trim(), None)?;
        }
        builder.path = dir.to_path_buf();
        Ok(builder.finish())
    }

    fn parse_file(path: &Path, text: &str) -> Result<KeyStore, KeyError> {
        let mut builder = Builder::new(path);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Ids cannot contain '=' or ':', so the first of either is the separator and
            // tokens remain free to contain both (base64 padding, URL-ish secrets).
            let Some(sep) = line.find(['=', ':']) else {
                return Err(builder.invalid(Some(i + 1), "expected `id=token` or `id: token`"));
            };
            let id = line[..sep].trim();
            let token = line[sep + 1..].trim();
            builder.add(id, token, Some(i + 1))?;
        }
        Ok(builder.finish())
    }

    /// Builds a store from `(id, token)` pairs, for tests and keys passed via the environment.
    ///
    /// Unlike [`KeyStore::load`], no pairs is allowed: the caller decides whether that is fatal.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<KeyStore, KeyError> {
        let mut builder = Builder::new(Path::new(PAIRS_SOURCE));
        for (id, token) in pairs {
            builder.add(&id, &token, None)?;
        }
        Ok(builder.finish())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store has no keys (every request would be rejected).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the id of the key whose token is `presented`.
    ///
    /// The presented token is hashed and compared against every stored digest with a
    /// constant-time comparison and no early exit, so timing reveals neither which key matched
    /// nor how many bytes of a guess were right. Hashing first also makes the comparison
    /// length-independent.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let digest = sha256(presented);
        let mut matched = Choice::from(0);
        let mut index = 0u64;
        for (i, (_, stored)) in self.entries.iter().enumerate() {
            let eq = digest.ct_eq(stored);
            index.conditional_assign(&(i as u64), eq);
            matched |= eq;
        }
        if bool::from(matched) {
            let i = usize::try_from(index).ok()?;
            self.entries.get(i).map(|(id, _)| id.as_str())
        } else {
            None
        }
    }

    /// Extracts the token from an `Authorization` header value `Bearer <token>`.
    ///
    /// The scheme is case-insensitive per RFC 7235; anything else (other schemes, no token,
    /// a token with inner whitespace) yields `None` so the caller answers 401.
    pub fn bearer(header: &str) -> Option<&str> {
        let header = header.trim();
        let (scheme, rest) = header.split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = rest.trim();
        if token.is_empty() || token.contains(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        Some(token)
    }
}

/// The key set being enforced, reloaded from its file or directory while serving, so a
/// rotated Kubernetes Secret takes effect without a restart: an added key is accepted and a
/// removed one refused from the next poll on.
///
/// A source that stops loading (unreadable, invalid, empty) keeps the previous set: an empty
/// or half-written Secret is far likelier to be a mistake than a wish to refuse everyone.
pub struct KeyRing {
    path: PathBuf,
    current: ArcSwap<KeyStore>,
    /// 1 for the set loaded at start, +1 for every reload that changed the set.
    version: AtomicU64,
}

impl KeyRing {
    /// Loads the initial set; an error here is fatal to `serve`.
    pub fn load(path: &Path) -> Result<KeyRing, KeyError> {
        Ok(KeyRing {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(KeyStore::load(path)?),
            version: AtomicU64::new(1),
        })
    }

    /// The id of the key whose token is `presented` ([`KeyStore::verify`]).
    pub fn verify(&self, presented: &str) -> Option<String> {
        self.current.load().verify(presented).map(str::to_string)
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.load().is_empty()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the source again; installs it if the set differs. Returns whether it changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let fresh = KeyStore::load(&self.path)?;
        let mut a = self.current.load().entries.clone();
        let mut b = fresh.entries.clone();
        a.sort();
        b.sort();
        if a == b {
            return Ok(false);
        }
        self.current.store(Arc::new(fresh));
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .field("version", &self.version())
            .field("keys", &*self.current.load())
            .finish()
    }
}

/// A digest of the key source: names and bytes of every key file (through symlinks, as
/// kubelet's `..data` swap needs), or the file's bytes. Unreadable parts count as content.
pub fn fingerprint(path: &Path) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut add = |name: &[u8], p: &Path| hash_file(&mut h, name, p);
    match fs::read_dir(path) {
        Ok(entries) => {
            let mut names: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n.as_encoded_bytes().first() != Some(&b'.'))
                .collect();
            names.sort();
            for n in names {
                add(n.as_encoded_bytes(), &path.join(&n));
            }
        }
        Err(_) => add(b"", path),
    }
    h.finalize().into()
}

/// Polls the key source every `interval` until `stop` fires, reloading on change. Errors are
/// logged with the file (never a token) and counted; the previous set stays in force.
pub async fn watch(
    ring: Arc<KeyRing>,
    metrics: Arc<Metrics>,
    interval: Duration,
    loaded: [u8; 32],
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let probed = ring.clone();
    let probe = move || fingerprint(probed.path());
    poll_changes(interval, loaded, Act::OnChange, stop, probe, || {
        let (ring, metrics) = (ring.clone(), metrics.clone());
        async move {
            let r = ring.clone();
            if let Ok(result) = tokio::task::spawn_blocking(move || r.reload()).await {
                report_reload(&ring, &metrics, result);
            }
            true
        }
    })
    .await
}

/// Logs and counts one reload of the key source.
fn report_reload(ring: &KeyRing, metrics: &Metrics, result: Result<bool, KeyError>) {
    match result {
        Ok(changed) => {
            metrics.key_reload(true);
            if changed {
                metrics.keys_loaded(ring.version(), ring.len());
                tracing::info!(
                    keys = ring.len(),
                    version = ring.version(),
                    path = %ring.path().display(),
                    "API keys reloaded"
                );
            }
        }
        Err(e) => {
            metrics.key_reload(false);
            tracing::error!(error = %e, version = ring.version(), "API keys not reloaded; the previous set stays in force");
        }
    }
}

/// Shows ids only: digests are not secrets per se but have no business in logs either.
impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field(
                "ids",
                &self.entries.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOK_A: &str = "tok-aaaaaaaaaaaaaaaaaaaa";
    const TOK_B: &str = "tok-bbbbbbbbbbbbbbbbbbbb=";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[cfg(unix)]
    #[test]
    fn loads_kubernetes_secret_dir_with_symlinks() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let real = d.join("..2026_01_01");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("client-a"), format!("{TOK_A}\n")).unwrap();
        fs::write(real.join("client-b"), format!("  {TOK_B}  \n")).unwrap();
        symlink("..2026_01_01", d.join("..data")).unwrap();
        symlink("..data/client-a", d.join("client-a")).unwrap();
        symlink("..data/client-b", d.join("client-b")).unwrap();
        // A hidden plain file must be ignored too.
        fs::write(d.join(".hidden"), "short").unwrap();

        let store = KeyStore::load(d).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.verify(TOK_A), Some("client-a"));
        assert_eq!(store.verify(TOK_B), Some("client-b"));
    }

    #[test]
    fn ring_reloads_added_and_removed_keys_and_keeps_the_set_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("client-a"), TOK_A).unwrap();
        let ring = KeyRing::load(d).unwrap();
        let fp = fingerprint(d);
        assert_eq!((ring.version(), ring.verify(TOK_B)), (1, None));
        assert!(!ring.reload().unwrap(), "unchanged set");
        fs::write(d.join("client-b"), TOK_B).unwrap();
        assert_ne!(fingerprint(d), fp);
        assert!(ring.reload().unwrap());
        assert_eq!(ring.verify(TOK_B).as_deref(), Some("client-b"));
        assert_eq!(ring.version(), 2);
        fs::remove_file(d.join("client-a")).unwrap();
        assert!(ring.reload().unwrap());
        assert_eq!((ring.verify(TOK_A), ring.version()), (None, 3));
        // An emptied source is refused; the last good set stays.
        fs::remove_file(d.join("client-b")).unwrap();
        assert!(matches!(ring.reload(), Err(KeyError::Empty { .. })));
        assert_eq!(ring.verify(TOK_B).as_deref(), Some("client-b"));
        assert!(!format!("{ring:?}").contains(TOK_B));
    }

    #[test]
    fn empty_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = KeyStore::load(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::Empty { .. }), "{err}");
    }

    #[test]
    fn dir_with_bad_token_names_the_file_not_the_token() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("client-a"), "secret-short").unwrap();
        let err = KeyStore::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("client-a"), "{err}");
        assert!(err.contains("too short"), "{err}");
        assert!(!err.contains("secret-short"), "{err}");
    }

    #[test]
    fn loads_file_format_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        let text =
            format!("# API keys\n\n  client-a = {TOK_A}\n# another\nclient.b: {TOK_B}\n   \n");
        fs::write(&path, text).unwrap();
        let store = KeyStore::load(&path).unwrap();
        assert_eq!(store.len(), 2);
        assert!(!store.is_empty());
        assert_eq!(store.verify(TOK_A), Some("client-a"));
        // Token keeps its '=' padding: only the first separator splits.
        assert_eq!(store.verify(TOK_B), Some("client.b"));
    }

    #[test]
    fn file_with_only_comments_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        fs::write(&path, "# nothing\n\n").unwrap();
        assert!(matches!(KeyStore::load(&path), Err(KeyError::Empty { .. })));
    }

    #[test]
    fn missing_path_is_io_error() {
        let err = KeyStore::load(Path::new("/nonexistent/pd-keys")).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/pd-keys"));
    }

    fn file_err(text: &str) -> (KeyError, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        fs::write(&path, text).unwrap();
        let err = KeyStore::load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("keys.txt"), "{msg}");
        (err, msg)
    }

    #[test]
    fn short_token_error_names_line_not_token() {
        let (err, msg) = file_err("# c\nok=abcdefghijklmnop\nshorty=hunter2secret\n");
        assert!(
            matches!(err, KeyError::Invalid { line: Some(3), .. }),
            "{msg}"
        );
        assert!(msg.contains("keys.txt:3"), "{msg}");
        assert!(!msg.contains("hunter2secret"), "{msg}");
    }

    #[test]
    fn duplicate_id_error() {
        let (err, msg) = file_err(&format!("a={TOK_A}\na={TOK_B}\n"));
        assert!(
            matches!(err, KeyError::Invalid { line: Some(2), .. }),
            "{msg}"
        );
        assert!(msg.contains("duplicate key id 'a'"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        assert!(!msg.contains(TOK_A) && !msg.contains(TOK_B), "{msg}");
    }

    #[test]
    fn duplicate_token_error() {
        let (err, msg) = file_err(&format!("a={TOK_A}\nb={TOK_A}\n"));
        assert!(
            matches!(err, KeyError::Invalid { line: Some(2), .. }),
            "{msg}"
        );
        assert!(msg.contains("same token"), "{msg}");
        assert!(!msg.contains(TOK_A), "{msg}");
    }

    #[test]
    fn bad_id_error() {
        let (err, msg) = file_err(&format!("bad id!={TOK_A}\n"));
        assert!(
            matches!(err, KeyError::Invalid { line: Some(1), .. }),
            "{msg}"
        );
        assert!(msg.contains("invalid key id"), "{msg}");
        assert!(!msg.contains(TOK_A), "{msg}");
        let long = "x".repeat(64);
        assert!(KeyStore::from_pairs(pairs(&[(&long, TOK_A)])).is_err());
        assert!(KeyStore::from_pairs(pairs(&[("", TOK_A)])).is_err());
        assert!(KeyStore::from_pairs(pairs(&[(&long[..63], TOK_A)])).is_ok());
    }

    #[test]
    fn line_without_separator_does_not_echo_it() {
        let (err, msg) = file_err(&format!("{TOK_A}\n").replace('-', "_"));
        assert!(
            matches!(err, KeyError::Invalid { line: Some(1), .. }),
            "{msg}"
        );
        assert!(!msg.contains("aaaaaaaa"), "{msg}");
    }

    #[test]
    fn token_charset_and_length_limits() {
        let ok = |t: &str| KeyStore::from_pairs(pairs(&[("k", t)])).is_ok();
        assert!(ok(&"a".repeat(16)));
        assert!(!ok(&"a".repeat(15)));
        assert!(ok(&"a".repeat(512)));
        assert!(!ok(&"a".repeat(513)));
        assert!(!ok("aaaaaaaa aaaaaaaa"));
        assert!(!ok("aaaaaaaaaaaaaaaaé"));
        let err = KeyStore::from_pairs(pairs(&[("k", "aaaaaaaa\taaaaaaaa")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("byte 9") && !err.contains("aaaaaaaa"), "{err}");
    }

    #[test]
    fn verify_right_wrong_and_prefix() {
        let store = KeyStore::from_pairs(pairs(&[("a", TOK_A), ("b", TOK_B)])).unwrap();
        assert_eq!(store.verify(TOK_A), Some("a"));
        assert_eq!(store.verify(TOK_B), Some("b"));
        assert_eq!(store.verify("tok-cccccccccccccccccccc"), None);
        assert_eq!(store.verify(&TOK_A[..TOK_A.len() - 1]), None);
        assert_eq!(store.verify(&format!("{TOK_A}x")), None);
        assert_eq!(store.verify(""), None);
        let empty = KeyStore::from_pairs(Vec::new()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.verify(TOK_A), None);
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(KeyStore::bearer("Bearer abc"), Some("abc"));
        assert_eq!(KeyStore::bearer("bearer abc"), Some("abc"));
        assert_eq!(KeyStore::bearer("BEARER   abc  "), Some("abc"));
        assert_eq!(KeyStore::bearer("Bearer\tabc"), Some("abc"));
        assert_eq!(KeyStore::bearer("Bearer"), None);
        assert_eq!(KeyStore::bearer("Bearer "), None);
        assert_eq!(KeyStore::bearer("Basic abc"), None);
        assert_eq!(KeyStore::bearer("Bearerabc"), None);
        assert_eq!(KeyStore::bearer("Bearer a b"), None);
        assert_eq!(KeyStore::bearer(""), None);
    }

    #[test]
    fn debug_shows_ids_only() {
        let store = KeyStore::from_pairs(pairs(&[("client-a", TOK_A)])).unwrap();
        let dbg = format!("{store:?}");
        assert!(dbg.contains("client-a"), "{dbg}");
        assert!(!dbg.contains(TOK_A), "{dbg}");
        assert!(!dbg.contains(&hex::encode(sha256(TOK_A))), "{dbg}");
    }

    proptest::proptest! {
        /// Any valid token is found by exactly its own id, and reaches it through a header.
        #[test]
        fn valid_tokens_verify_via_bearer(
            a in "[!-~]{16,64}",
            b in "[!-~]{16,64}",
        ) {
            proptest::prop_assume!(a != b);
            let store = KeyStore::from_pairs(pairs(&[("a", &a), ("b", &b)])).unwrap();
            let header = format!("Bearer {a}");
            proptest::prop_assert_eq!(KeyStore::bearer(&header), Some(a.as_str()));
            proptest::prop_assert_eq!(store.verify(&a), Some("a"));
            proptest::prop_assert_eq!(store.verify(&b), Some("b"));
            proptest::prop_assert_eq!(store.verify(&a[1..]), None);
        }
    }
}
