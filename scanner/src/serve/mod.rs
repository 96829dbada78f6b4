//! `pd-scanner serve`: the scan API every scanner pod runs, equally usable standalone.
//!
//! Threads of control: the HTTP server (tokio, [`server`]), reload tasks polling the rule
//! sources and the API keys, and one audit writer thread ([`audit_writer`]) that owns the hash
//! chain (records are sealed in the order they are written, so the chain never forks).
//! Shutdown (SIGTERM, SIGINT, SIGHUP) stops accepting, lets in-flight requests finish within
//! the shutdown deadline, then lets the writer write what is queued, within the same deadline
//! (and, side by side, the webhook delivery tasks of [`webhook`] deliver theirs).

pub mod audit;
pub mod audit_rotate;
pub mod audit_writer;
pub mod configmap;
pub mod conn_io;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod podreport;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod tls;
pub mod usage;
pub mod webhook;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::engine::InputHasher;
use audit_writer::AuditConfig;
use keys::KeyRing;
use metrics::Metrics;
use ratelimit::{RateLimit, RateLimiter};
use reload::{BundleState, Sources};
use server::HttpLimits;

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
    pub audit: AuditConfig,
    /// Connection limits and timeouts.
    pub http: HttpLimits,
    /// Large scans at once (`--large-scan-slots`) and how long one waits for a slot.
    pub large_scan_slots: usize,
    pub large_scan_wait: Duration,
    /// Also watch this ConfigMap through the API (in-cluster: sub-second reloads).
    pub configmap: Option<configmap::ConfigMapRef>,
    /// Report the served bundle on this Pod ([`podreport`]).
    pub report_pod: Option<String>,
    /// Serve the API over TLS with these files (hot-reloaded), optionally requiring client
    /// certificates ([`tls`]).
    pub tls: Option<tls::TlsFiles>,
    /// Also serve `/healthz`, `/readyz` and `/metrics` — and nothing else — over plain HTTP
    /// here: probes and scrapers that cannot present a client certificate.
    pub health_listen: Option<SocketAddr>,
    /// Signed webhook notifications of decisions ([`webhook`]), validated at start.
    pub webhooks: Vec<webhook::Webhook>,
    /// Names this scanner in webhook payloads and its key in the usage ledger (the Pod name
    /// in a cluster).
    pub pod_name: String,
    /// Write this pod's usage to this ConfigMap and enforce the quota the operator writes
    /// there ([`usage`]).
    pub usage_ledger: Option<String>,
    /// How often the usage is written to the ledger.
    pub usage_flush_interval: Duration,
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
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
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

/// How often idle rate-limit buckets (per key, per peer) are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Runs until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.rate.validate()?;
    let metrics = Arc::new(Metrics::new());
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
        // Fingerprint before loading, as for the rule sources: a change in between is seen.
        let fingerprint = keys::fingerprint(&path);
        let ring = Arc::new(KeyRing::load(&path)?);
        tracing::info!(keys = ring.len(), path = %path.display(), "API keys loaded");
        metrics.keys_loaded(ring.version(), ring.len());
        Some((ring, fingerprint))
    };
    let hasher = load_or_create_hmac_key(&config.hmac_key_file)?;
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

    let (audit_sink, audit_writer) = if config.audit.stdout || config.audit.file.is_some() {
        let (sink, writer) = audit_writer::start(&config.audit, metrics.clone())?;
        (Some(sink), Some(writer))
    } else {
        (None, None)
    };

    let (webhooks, webhook_runner) = if config.webhooks.is_empty() {
        (None, None)
    } else {
        let (dispatcher, runner) = webhook::start(
            config.webhooks.clone(),
            metrics.clone(),
            config.pod_name.clone(),
        )?;
        (Some(dispatcher), Some(runner))
    };

    let usage = Arc::new(usage::Usage::new(metrics.usage.clone()));
    let state = Arc::new(http::AppState {
        usage: usage.clone(),
        webhooks,
        bundle: bundle.clone(),
        metrics: metrics.clone(),
        keys: keys.as_ref().map(|(ring, _)| ring.clone()),
        limiter: RateLimiter::new(config.rate),
        auth_failures: RateLimiter::new(http::AUTH_FAILURE_LIMIT),
        hasher,
        max_prompt_bytes: config.max_prompt_bytes,
        max_batch: config.max_batch,
        body_timeout: config.http.body_timeout,
        audit: audit_sink,
        large_scans: http::LargeScans::new(config.large_scan_slots, config.large_scan_wait),
    });
    let app = http::router(state.clone());
    // Fingerprint before loading, as for the other sources.
    let tls = match config.tls.clone() {
        None => None,
        Some(files) => {
            let metrics = metrics.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let fingerprint = tls::fingerprint(&files);
                tls::TlsState::load(files, &metrics).map(|s| (Arc::new(s), fingerprint))
            })
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e)))??;
            Some(loaded)
        }
    };
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    // The health listener is bound before "listening" is logged, so a failure to bind it is a
    // startup error rather than a half-started server.
    let health = match config.health_listen {
        Some(a) => {
            let listener = bind(a).await?;
            let bound = listener.local_addr().map_err(ServeError::Server)?;
            tracing::info!(addr = %bound, "health and metrics endpoints listening (plain HTTP)");
            Some(listener)
        }
        None => None,
    };
    tracing::info!(addr = %addr, tls = tls.is_some(), client_auth = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(reload::watch(
        bundle.clone(),
        config.sources.clone(),
        metrics.clone(),
        config.reload_interval,
        loaded_fingerprint,
        stop_rx.clone(),
    ))];
    if let Some((ring, fingerprint)) = keys {
        tasks.push(tokio::spawn(keys::watch(
            ring,
            metrics.clone(),
            config.reload_interval,
            fingerprint,
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(sweep(state.clone(), stop_rx.clone())));
    if let Some(target) = config.configmap.clone() {
        tasks.push(tokio::spawn(configmap::watch(
            target,
            config.sources.policy.clone(),
            config.sources.limits,
            bundle.clone(),
            metrics.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(pod) = config.report_pod.clone() {
        tasks.push(tokio::spawn(podreport::run(
            pod,
            bundle.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(name) = config.usage_ledger.clone() {
        tasks.push(tokio::spawn(usage::flush::run(
            usage::flush::LedgerTarget {
                name,
                pod: config.pod_name.clone(),
                interval: config.usage_flush_interval,
                final_timeout: config.http.shutdown_timeout,
            },
            usage.clone(),
            bundle.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some((state, fingerprint)) = &tls {
        tasks.push(tokio::spawn(tls::watch(
            state.clone(),
            metrics.clone(),
            config.reload_interval,
            *fingerprint,
            stop_rx.clone(),
        )));
    }
    // One shutdown signal, fanned out to the listeners.
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = down_rx.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    };
    let health_server = health.map(|listener| {
        tokio::spawn(server::serve(
            listener,
            http::health_router(state.clone()),
            config.http,
            metrics.clone(),
            None,
            stopped(),
        ))
    });
    let api = server::serve(
        listener,
        app,
        config.http,
        metrics.clone(),
        tls.map(|(state, _)| state),
        stopped(),
    );
    tokio::pin!(api);
    tokio::select! {
        _ = shutdown => {
            let _ = down_tx.send(true);
            api.await;
        }
        // Not expected (the loop runs until shutdown); stop the rest the same way.
        _ = &mut api => {
            let _ = down_tx.send(true);
        }
    }
    if let Some(h) = health_server {
        let _ = h.await;
    }
    tracing::info!("connections closed; stopping");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(state);
    // The audit writer and the webhook queues are flushed side by side, each within the
    // shutdown deadline.
    let audit_done = async {
        if let Some(writer) = audit_writer {
            writer.finish(config.http.shutdown_timeout).await;
        }
    };
    let webhooks_done = async {
        if let Some(runner) = webhook_runner {
            runner.finish(config.http.shutdown_timeout).await;
        }
    };
    tokio::join!(audit_done, webhooks_done);
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// Drops idle, full rate-limit buckets now and then, so per-peer buckets (`--no-auth`, failed
/// authentications) cannot grow without bound.
async fn sweep(state: Arc<http::AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = std::time::Instant::now();
        state.limiter.sweep(now, SWEEP_EVERY);
        state.auth_failures.sweep(now, SWEEP_EVERY);
    }
}

/// Resolves on SIGTERM, SIGHUP or Ctrl-C. SIGHUP (a closed terminal, or a supervisor's
/// "reload") is a graceful stop like SIGTERM, never an instant kill: the sources and keys are
/// already reloaded by polling, so there is nothing else for it to mean.
///
/// The handlers are installed when this is called, not when the future is first polled, so
/// a signal arriving while the bundle is still loading is not fatal. Call it inside the
/// runtime (`Runtime::enter`).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (term, hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::hangup()).ok(),
        )
    };
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let other = async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => "SIGTERM",
                _ = wait(hup) => "SIGHUP",
            }
        };
        #[cfg(not(unix))]
        let other = std::future::pending::<&str>();
        let signal = tokio::select! {
            _ = ctrl_c => "SIGINT",
            s = other => s,
        };
        tracing::info!(signal, "shutdown signal received");
    }
}
