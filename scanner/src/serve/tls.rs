//! TLS and mutual TLS for the scan API (`--tls-cert`, `--tls-key`, `--client-ca`), with rustls.
//!
//! - **Versions.** TLS 1.3 and 1.2 only, with rustls's default cipher suites of the `ring`
//!   provider (AEAD, forward-secret); rustls has no code for anything older, so a TLS 1.1
//!   ClientHello is refused in the handshake. ALPN offers `http/1.1`, the one protocol the
//!   server speaks, so an `h2`-only client fails the handshake instead of mid-stream.
//! - **Hot reload.** The certificate chain, the key and the client CA bundle are polled with the
//!   rule sources' loop ([`poll_changes`]), read through symlinks, so cert-manager rotating a
//!   mounted Secret (kubelet swaps its `..data` link) is seen like any edit. A changed set of
//!   files is loaded into a new rustls configuration that only *new* handshakes use; open
//!   connections keep the session they negotiated. A set that does not load (a key that does
//!   not match the certificate, half-written files, a malformed PEM) never replaces the one in
//!   force: the reason is logged, `pd_tls_reloads_total{result="rejected"}` counts it, and the
//!   next change is tried again.
//! - **Client certificates.** With `--client-ca`, every handshake must present a certificate
//!   chain that verifies to one of those CAs (rustls's WebPKI client verifier); a client
//!   without one is refused in the handshake, before any HTTP. This authenticates the
//!   *connection*; API keys still authenticate each request, and both are required.
//! - **Secrets.** Key bytes are only ever handed to rustls. Errors name files and say what is
//!   wrong in fixed words; they never quote a file's content (a malformed key file's lines are
//!   key material).
//!
//! The handshake itself runs in [`accept`], under the connection cap and within the header
//! timeout (see [`crate::serve::server`]).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::serve::metrics::Metrics;
use crate::serve::reload::{hash_file, poll_changes, Act};

/// Largest PEM file read. Real chains and CA bundles are a few KiB; the bound keeps a wrong
/// path (a log file, a device) from being read into memory.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The one application protocol the server speaks.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// First byte of every TLS record that starts a handshake (content type 22).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a client speaking plain HTTP to the TLS port is told before the connection closes.
const TLS_REQUIRED: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 82\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"tls_required\",\"message\":\"this port serves HTTPS; use https://\"}}";

/// Files of the TLS configuration (`--tls-cert`, `--tls-key`, `--client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (cert-manager's `tls.crt`).
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`tls.key`).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to (`ca.crt`); `None`: no client
    /// authentication.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be loaded. Messages never contain file content.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {} is larger than {MAX_PEM_BYTES} bytes", path.display())]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("{what} {}: {problem}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        problem: &'static str,
    },
    #[error("certificate {} with key {}: {source}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client CA {}: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
    #[error("TLS settings: {0}")]
    Config(#[source] rustls::Error),
}

/// The configuration new handshakes use, swapped whole on reload.
pub struct TlsState {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsState {
    /// Loads the files; a failure here is a startup error (there is nothing to fall back on).
    pub fn load(files: TlsFiles, metrics: &Metrics) -> Result<TlsState, TlsError> {
        let loaded = load(&files)?;
        loaded.report(&files, metrics, "TLS certificate loaded");
        Ok(TlsState {
            files,
            current: ArcSwap::new(loaded.config),
        })
    }

    /// The files this state watches.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the configuration in force now; a handshake started with it finishes
    /// with it whatever reloads happen meanwhile.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Loads the files again and installs the result for new handshakes; on failure keeps the
    /// configuration in force. Returns whether a new one was installed.
    pub fn reload(&self, metrics: &Metrics) -> bool {
        match load(&self.files) {
            Ok(loaded) => {
                loaded.report(&self.files, metrics, "TLS certificate reloaded");
                self.current.store(loaded.config);
                metrics.tls_reload(true);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload rejected; the previous certificate keeps serving");
                metrics.tls_reload(false);
                false
            }
        }
    }
}

/// A loaded configuration and what is reported about it.
struct Loaded {
    config: Arc<ServerConfig>,
    /// `notAfter` of the leaf certificate, Unix seconds.
    not_after: Option<i64>,
    chain_len: usize,
}

impl Loaded {
    fn report(&self, files: &TlsFiles, metrics: &Metrics, message: &'static str) {
        if let Some(t) = self.not_after {
            metrics.tls_not_after(t);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            if t <= now {
                tracing::warn!(cert = %files.cert.display(), not_after = t, "the TLS certificate has expired; clients will refuse it");
            }
        }
        tracing::info!(
            cert = %files.cert.display(),
            chain = self.chain_len,
            not_after = self.not_after,
            client_auth = files.client_ca.is_some(),
            "{message}"
        );
    }
}

/// Reads one PEM file, bounded by [`MAX_PEM_BYTES`].
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// A fixed description of a PEM problem: the parser's own messages can quote lines of the file.
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::NoItemsFound => "no PEM section of the expected kind",
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        _ => "not a readable PEM file",
    }
}

/// Every certificate in a PEM file, in file order; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(what, path)?;
    let problem = |problem| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(problem("no CERTIFICATE section"));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "private key";
    let bytes = read_pem(WHAT, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        what: WHAT,
        path: path.to_path_buf(),
        problem: match e {
            pem::Error::NoItemsFound => "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section",
            other => pem_problem(&other),
        },
    })
}

/// Builds the server configuration from the files.
fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("certificate", &files.cert)?;
    let key = private_key(&files.key)?;
    let chain_len = chain.len();
    // The leaf is checked to parse and to match the key here, so a mismatched pair (one file
    // rotated, the other not yet) is refused before it could fail every handshake.
    let certified =
        CertifiedKey::from_der(chain, key, &provider).map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let not_after = certified.cert.first().and_then(|c| not_after(c));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("client CA", path)? {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
        chain_len,
    })
}

/// A digest of the TLS files' bytes (through symlinks), for change detection. Only the digest
/// is kept, never the key bytes.
pub fn fingerprint(files: &TlsFiles) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_file(&mut h, b"cert", &files.cert);
    hash_file(&mut h, b"key", &files.key);
    if let Some(ca) = &files.client_ca {
        hash_file(&mut h, b"client-ca", ca);
    }
    h.finalize().into()
}

/// Polls the TLS files until `stop` fires, reloading on change. `loaded` is the fingerprint
/// taken before the configuration in force was loaded (see [`crate::serve::reload::watch`]).
pub async fn watch(
    state: Arc<TlsState>,
    metrics: Arc<Metrics>,
    interval: Duration,
    loaded: [u8; 32],
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let files = state.files.clone();
    let probe = move || fingerprint(&files);
    // On the first change, like the API keys: a certificate set caught half written is
    // refused by its own checks (the key must match the certificate) and tried again at the
    // next change, while the one in force keeps serving.
    poll_changes(interval, loaded, Act::OnChange, stop, probe, || {
        let (state, metrics) = (state.clone(), metrics.clone());
        async move {
            let _ = tokio::task::spawn_blocking(move || state.reload(&metrics)).await;
            true
        }
    })
    .await
}

/// Why a handshake did not complete: a closed set, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not finished within the header timeout (or stalled).
    Timeout,
    /// The client spoke something else first (typically plain HTTP; it is told so).
    NotTls,
    /// No client certificate, or one that does not verify against `--client-ca`.
    ClientCertificate,
    /// No common version, cipher suite or ALPN protocol, or a malformed TLS message.
    Protocol,
    /// The connection closed or failed during the handshake.
    Io,
}

impl HandshakeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::ClientCertificate => "client_certificate",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Io => "io",
        }
    }

    /// Classifies what tokio-rustls returned: rustls's own errors come as `InvalidData`.
    fn of(e: &io::Error) -> HandshakeFailure {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)) => {
                HandshakeFailure::ClientCertificate
            }
            Some(_) => HandshakeFailure::Protocol,
            None => HandshakeFailure::Io,
        }
    }
}

/// Completes the server side of a handshake on `stream` with `acceptor`'s configuration. The
/// caller bounds it in time ([`HandshakeFailure::Timeout`] is the caller's).
///
/// A client whose first byte cannot start a TLS record gets a plain-text JSON 400 saying the
/// port wants HTTPS (when it looks like HTTP) and is closed, rather than a TLS alert it cannot
/// read. A failure is handed to `failed` while the connection is still open, so whatever it
/// records (the failure counter) is there by the time the client sees the close.
pub async fn accept(
    mut stream: TcpStream,
    acceptor: TlsAcceptor,
    failed: impl FnOnce(HandshakeFailure, &str),
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => {
            failed(HandshakeFailure::Io, "closed before sending a ClientHello");
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            failed(HandshakeFailure::Io, &e.to_string());
            return None;
        }
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        // Counted before the reply: the reply ends with a shutdown, and a client that reads
        // to that end may ask for the count at once.
        failed(
            HandshakeFailure::NotTls,
            "the first bytes are not a TLS handshake",
        );
        if first[0].is_ascii_alphabetic() {
            tell_plaintext_client(&mut stream).await;
        }
        return None;
    }
    match acceptor.accept(stream).into_fallible().await {
        Ok(session) => Some(session),
        // The alert is sent; `stream` closes when dropped, after `failed`.
        Err((e, _stream)) => {
            failed(HandshakeFailure::of(&e), &e.to_string());
            None
        }
    }
}

/// Reads a plain-text request head (bounded) so that closing does not reset the connection
/// under the reply, then answers [`TLS_REQUIRED`] and closes.
async fn tell_plaintext_client(stream: &mut TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < 8 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(TLS_REQUIRED).await;
    let _ = stream.shutdown().await;
}

/// `notAfter` of a DER X.509 certificate as Unix seconds, or `None` when it cannot be read.
///
/// Only the outer structure is walked — Certificate → TBSCertificate → (version, serial,
/// signature algorithm, issuer) → Validity — and only for the expiry metric: the certificate
/// has already been parsed by rustls's WebPKI code before this runs, and nothing here decides
/// whether it is trusted.
pub fn not_after(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xA0;
    let (tag, cert, _) = der_tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = der_tlv(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        let (_, _, after) = der_tlv(rest)?;
        rest = after;
    }
    let (tag, validity, _) = der_tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after) = der_tlv(validity)?; // notBefore
    let (tag, time, _) = der_tlv(after)?;
    der_time(tag, time)
}

/// One DER tag-length-value: (tag, content, what follows). Single-byte tags and definite
/// lengths of up to four bytes, as X.509 uses.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// An X.509 `Time`: UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, as Unix seconds.
fn der_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| num(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(not_after: (i32, u8, u8)) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_not_after_of_generated_certificates() {
        for (date, want) in [
            ((2049, 12, 31), 2_524_521_600),
            ((2050, 1, 1), 2_524_608_000), // GeneralizedTime from 2050 on
            ((2030, 2, 28), 1_898_467_200),
        ] {
            let (pem, _) = self_signed(date);
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(not_after(&der), Some(want), "{date:?}");
        }
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01]), None);
    }

    #[test]
    fn the_plain_http_reply_is_well_formed_json() {
        let text = std::str::from_utf8(TLS_REQUIRED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "tls_required");
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"700101000000"), None);
        assert_eq!(der_time(0x18, b"19700101000000Z"), Some(0));
        assert_eq!(der_time(0x18, b"1970010100000+Z"), None);
    }

    #[test]
    fn errors_name_files_but_never_quote_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed((2040, 1, 1));
        let (_, other_key) = self_signed((2040, 1, 1));
        let cert = write(dir.path(), "tls.crt", &cert);
        let good_key = write(dir.path(), "tls.key", &key);
        let files = |key: &Path| TlsFiles {
            cert: cert.clone(),
            key: key.to_path_buf(),
            client_ca: None,
        };
        assert!(load(&files(&good_key)).is_ok());

        let mismatched = write(dir.path(), "other.key", &other_key);
        let e = load(&files(&mismatched)).err().unwrap().to_string();
        assert!(e.contains("other.key"), "{e}");

        // A key file whose BEGIN line is damaged: the message must not echo its lines.
        let secret_line = key.lines().nth(1).unwrap();
        let damaged = key.replacen("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY", 1);
        let damaged = write(dir.path(), "damaged.key", &damaged);
        let e = load(&files(&damaged)).err().unwrap().to_string();
        assert!(e.contains("damaged.key"), "{e}");
        assert!(!e.contains(&secret_line[..16]), "{e}");

        let empty = write(dir.path(), "empty.key", "");
        let e = load(&files(&empty)).err().unwrap().to_string();
        assert!(e.contains("no PRIVATE KEY"), "{e}");

        let e = load(&TlsFiles {
            cert: cert.clone(),
            key: good_key.clone(),
            client_ca: Some(dir.path().join("missing-ca.crt")),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("client CA") && e.contains("missing-ca.crt"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_reload_keeps_the_configuration_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed((2040, 1, 1));
        let files = TlsFiles {
            cert: write(dir.path(), "tls.crt", &cert),
            key: write(dir.path(), "tls.key", &key),
            client_ca: None,
        };
        let metrics = Metrics::new();
        let state = TlsState::load(files.clone(), &metrics).unwrap();
        let before = state.current.load_full();
        std::fs::write(&files.key, "not a key").unwrap();
        assert!(!state.reload(&metrics));
        assert!(Arc::ptr_eq(&before, &state.current.load_full()));
        assert!(metrics
            .encode()
            .contains("pd_tls_reloads_total{result=\"rejected\"} 1"));
        std::fs::write(&files.key, &key).unwrap();
        assert!(state.reload(&metrics));
        assert!(!Arc::ptr_eq(&before, &state.current.load_full()));
    }
}
