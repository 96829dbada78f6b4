//! `pd-scanner serve`: the scan API every scanner pod runs, equally usable standalone.
//!
//! Threads of control: the axum server (tokio), a reload task polling the sources, and one
//! audit writer thread that owns the hash chain (records are sealed in the order they are
//! written, so the chain never forks). Shutdown (SIGTERM, SIGINT) stops accepting, lets
//! in-flight requests finish, then closes the audit channel; the writer drains and syncs it.

pub mod audit;
pub mod configmap;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod podreport;
pub mod ratelimit;
pub mod reload;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::engine::InputHasher;
use audit::{AuditChain, AuditFile, Decision, Fsync};
use keys::KeyStore;
use metrics::Metrics;
use ratelimit::{RateLimit, RateLimiter};
use reload::{BundleState, Sources};

/// Everything `serve` is configured with (flags and `PD_*` variables).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub sources: Sources,
    /// Bearer keys (file or Secret directory); required unless `no_auth`.
    pub keys: Option<PathBuf>,
    pub no_auth: bool,
    pub rate: RateLimit,
    pub max_prompt_bytes: usize,
    pub max_batch: usize,
    pub reload_interval: Duration,
    /// HMAC key file; created with a random key when it does not exist.
    pub hmac_key_file: PathBuf,
    pub audit_stdout: bool,
    pub audit_file: Option<PathBuf>,
    pub audit_fsync: Fsync,
    /// Also watch this ConfigMap through the API (in-cluster: sub-second reloads).
    pub configmap: Option<configmap::ConfigMapRef>,
    /// Report the served bundle on this Pod ([`podreport`]).
    pub report_pod: Option<String>,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("API keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error(
        "no API keys configured: pass --keys PATH, or --no-auth to serve without authentication"
    )]
    NoKeys,
    #[error("rate limit: {0}")]
    Rate(#[from] ratelimit::RateLimitError),
    #[error("key file {path}: {message}")]
    HmacKey { path: PathBuf, message: String },
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Server(std::io::Error),
}

/// Reads the HMAC key, creating a random one (mode 0600) when the file does not exist, so
/// input hashes stay comparable across restarts of a standalone scanner.
pub fn load_or_create_hmac_key(path: &PathBuf) -> Result<InputHasher, ServeError> {
    let err = |message: String| ServeError::HmacKey {
        path: path.clone(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => InputHasher::new(bytes.trim_ascii()).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let key = hex::encode(rand::random::<[u8; 32]>());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(path).map_err(|e| err(e.to_string()))?;
            f.write_all(key.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| err(e.to_string()))?;
            tracing::warn!(path = %path.display(), "no HMAC key found; generated a new random key");
            InputHasher::new(key.as_bytes()).map_err(err)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Standalone convenience without giving up authentication: with no `--keys`, a random key
/// `local=<token>` is kept in `keys` next to the HMAC key file (mode 0600, created once). The
/// log names the file, never the token.
fn create_local_key(hmac_key_file: &std::path::Path) -> Result<PathBuf, ServeError> {
    let dir = hmac_key_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("keys");
    if path.exists() {
        return Ok(path);
    }
    let err = |e: std::io::Error| ServeError::HmacKey {
        path: path.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    let mut f = options.open(&path).map_err(err)?;
    f.write_all(format!("local={token}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(err)?;
    tracing::warn!(path = %path.display(), "no --keys given: generated a local API key (id `local`) in this file");
    Ok(path)
}

/// Runs until `shutdown` resolves. `on_listening` gets the bound address (tests bind port 0).
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.rate.validate()?;
    let keys = if config.no_auth {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (--no-auth): anyone who can reach this port can scan"
        );
        None
    } else {
        let path = match &config.keys {
            Some(p) => p.clone(),
            None => create_local_key(&config.hmac_key_file)?,
        };
        let store = KeyStore::load(&path)?;
        tracing::info!(keys = store.len(), path = %path.display(), "API keys loaded");
        Some(store)
    };
    let hasher = load_or_create_hmac_key(&config.hmac_key_file)?;
    let metrics = Arc::new(Metrics::new());
    let bundle = Arc::new(BundleState::new());
    // Fingerprint before the first load: a change landing between the two is then seen by the
    // first poll (at worst one redundant reload), never mistaken for the loaded state.
    let loaded_fingerprint = {
        let paths = config.sources.paths.clone();
        tokio::task::spawn_blocking(move || reload::fingerprint(&paths))
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e)))?
    };
    {
        let (bundle, sources, metrics) = (bundle.clone(), config.sources.clone(), metrics.clone());
        // A bad initial bundle is not fatal: the server reports not-ready and keeps watching.
        let _ = tokio::task::spawn_blocking(move || bundle.reload(&sources, &metrics)).await;
    }

    // The audit writer owns the chain; sealing happens in write order.
    let (audit_tx, audit_thread) = if config.audit_stdout || config.audit_file.is_some() {
        let mut file = match &config.audit_file {
            Some(p) => Some(AuditFile::open(p, config.audit_fsync)?),
            None => None,
        };
        let mut chain = file
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_else(AuditChain::new);
        let stdout = config.audit_stdout;
        let (tx, rx) = std::sync::mpsc::channel::<Decision>();
        let metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("pd-audit".into())
            .spawn(move || {
                let out = std::io::stdout();
                while let Ok(d) = rx.recv() {
                    let record = chain.seal(d, std::time::SystemTime::now());
                    if stdout {
                        let line = serde_json::to_string(&record).unwrap_or_default();
                        if writeln!(out.lock(), "{line}").is_err() {
                            metrics.audit_error();
                        }
                    }
                    if let Some((f, _)) = file.as_mut() {
                        if let Err(e) = f.append(&record) {
                            metrics.audit_error();
                            tracing::error!(error = %e, "audit record not written");
                        }
                    }
                }
                if let Some((f, _)) = file.as_mut() {
                    if let Err(e) = f.flush() {
                        tracing::error!(error = %e, "audit log not synced at shutdown");
                    }
                }
            })
            .map_err(ServeError::Server)?;
        (Some(tx), Some(thread))
    } else {
        (None, None)
    };

    let state = Arc::new(http::AppState {
        bundle: bundle.clone(),
        metrics: metrics.clone(),
        keys,
        limiter: RateLimiter::new(config.rate),
        hasher,
        max_prompt_bytes: config.max_prompt_bytes,
        max_batch: config.max_batch,
        audit: audit_tx,
    });
    let app = http::router(state.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(addr = %addr, "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(reload::watch(
        bundle.clone(),
        config.sources.clone(),
        metrics.clone(),
        config.reload_interval,
        loaded_fingerprint,
        stop_rx.clone(),
    ));
    let configmap_watch = config.configmap.clone().map(|target| {
        tokio::spawn(configmap::watch(
            target,
            config.sources.policy.clone(),
            bundle.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ))
    });
    let pod_report = config
        .report_pod
        .clone()
        .map(|pod| tokio::spawn(podreport::run(pod, bundle.clone(), stop_rx.clone())));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Server)?;
    tracing::info!("draining finished; stopping");
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    if let Some(w) = configmap_watch {
        let _ = w.await;
    }
    if let Some(r) = pod_report {
        let _ = r.await;
    }
    // Dropping the last sender ends the writer loop after it has written every record.
    drop(state);
    if let Some(t) = audit_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}
