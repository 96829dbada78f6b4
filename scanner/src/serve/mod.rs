//! `pd-scanner serve`: the scan API every scanner pod runs, equally usable standalone.
//!
//! Threads of control: the HTTP server (tokio, [`server`]), reload tasks polling the rule
//! sources and the API keys, and one audit writer thread ([`audit_writer`]) that owns the hash
//! chain (records are sealed in the order they are written, so the chain never forks).
//! Shutdown (SIGTERM, SIGINT, SIGHUP) stops accepting, lets in-flight requests finish within
//! the shutdown deadline, then lets the writer write what is queued, within the same deadline
//! (and, side by side, the webhook delivery tasks of [`webhook`] deliver theirs).
//!
//! [`run`] serves on [`Listeners`] its caller bound and stops when the future it is given
//! resolves: the binary (`cli/serve.rs`) binds its flags' addresses and passes
//! [`shutdown_signal`]; the service tests bind `127.0.0.1:0` and stop it through a channel.

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
use tokio::net::TcpListener;

use crate::engine::InputHasher;
use audit_writer::AuditConfig;
use keys::KeyRing;
use metrics::Metrics;
use ratelimit::{RateLimit, RateLimiter};
use reload::{BundleState, Sources};
use server::HttpLimits;

/// Everything `serve` is configured with (flags and `PD_*` variables), except the addresses:
/// [`run`] is given bound [`Listeners`].
#[derive(Debug, Clone)]
pub struct ServeConfig {
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

/// The sockets the service answers on, bound by the caller before [`run`]: the binary binds
/// the addresses of its flags, a test binds `127.0.0.1:0` and reads the port back, so the
/// service runs in any tokio runtime.
#[derive(Debug)]
pub struct Listeners {
    /// The scan API (HTTPS when `ServeConfig::tls` is set).
    pub api: TcpListener,
    /// `/healthz`, `/readyz` and `/metrics` — and nothing else — over plain HTTP
    /// (`--health-listen`): probes and scrapers that cannot present a client certificate.
    pub health: Option<TcpListener>,
}

impl Listeners {
    /// Binds the API address and, when given, the health address; an error names the
    /// address that could not be bound.
    pub async fn bind(api: SocketAddr, health: Option<SocketAddr>) -> Result<Self, ServeError> {
        let api = bind(api).await?;
        let health = match health {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Listeners { api, health })
    }
}

/// A hot-reloaded source as startup loaded it, with the fingerprint of its files taken just
/// before loading (what the source's watch task compares against first).
type Loaded<T> = (Arc<T>, [u8; 32]);

/// What startup loaded: the handlers' shared state, plus what the background tasks and the
/// shutdown sequence take over from it.
struct Started {
    state: Arc<http::AppState>,
    /// The rule sources' fingerprint, taken before the first load.
    sources_fingerprint: [u8; 32],
    /// The key files' fingerprint, taken before they were loaded (`None` with `--no-auth`).
    keys_fingerprint: Option<[u8; 32]>,
    /// The TLS configuration and its files' fingerprint.
    tls: Option<Loaded<tls::TlsState>>,
    audit_writer: Option<audit_writer::AuditWriter>,
    webhook_runner: Option<webhook::Runner>,
}

/// Serves the scan API on `listeners` until `shutdown` resolves, then stops accepting, lets
/// requests in progress finish within the shutdown deadline, stops the reload tasks, and
/// returns once the queued audit records and webhook deliveries are written (each within the
/// same deadline).
///
/// The caller binds the sockets and decides what shutdown is (the binary: SIGTERM, SIGHUP or
/// Ctrl-C, see [`shutdown_signal`]; a test: a channel), as in mini-redis's
/// `server::run(listener, shutdown)`: the service tests run it in their own runtime. Startup
/// errors (keys, HMAC key, audit file, TLS files, webhooks) are returned before anything is
/// served; a bundle that does not load is not a startup error (the service answers not-ready
/// and keeps watching its sources).
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let started = start(&config).await?;
    log_listening(&listeners, &config, started.tls.is_some())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = spawn_background(&config, &started, stop_rx);
    let Started {
        state,
        tls,
        audit_writer,
        webhook_runner,
        ..
    } = started;
    serve_until(
        listeners,
        state.clone(),
        config.http,
        tls.map(|(tls, _)| tls),
        shutdown,
    )
    .await;
    tracing::info!("connections closed; stopping");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // The last holder of the audit sink: dropping it lets the writer see the end of its queue.
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

/// Loads the keys, the HMAC key and the bundle, starts the audit writer and the webhook
/// deliveries, then loads the TLS files; the first error stops startup.
async fn start(config: &ServeConfig) -> Result<Started, ServeError> {
    config.rate.validate()?;
    let metrics = Arc::new(Metrics::new());
    let keys = load_keys(config, &metrics)?;
    let hasher = load_or_create_hmac_key(&config.hmac_key_file)?;
    let bundle = Arc::new(BundleState::new());
    let sources_fingerprint = load_bundle(&bundle, &config.sources, &metrics).await?;
    let (audit, audit_writer) = if config.audit.stdout || config.audit.file.is_some() {
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
    let (keys, keys_fingerprint) = keys.unzip();
    let state = Arc::new(http::AppState {
        usage: Arc::new(usage::Usage::new(metrics.usage.clone())),
        webhooks,
        bundle,
        metrics: metrics.clone(),
        keys,
        limiter: RateLimiter::new(config.rate),
        auth_failures: RateLimiter::new(http::AUTH_FAILURE_LIMIT),
        hasher,
        max_prompt_bytes: config.max_prompt_bytes,
        max_batch: config.max_batch,
        body_timeout: config.http.body_timeout,
        audit,
        large_scans: http::LargeScans::new(config.large_scan_slots, config.large_scan_wait),
    });
    let tls = load_tls(config, &metrics).await?;
    Ok(Started {
        state,
        sources_fingerprint,
        keys_fingerprint,
        tls,
        audit_writer,
        webhook_runner,
    })
}

/// The API key ring and its files' fingerprint; `None` with `--no-auth` (said loudly).
fn load_keys(
    config: &ServeConfig,
    metrics: &Metrics,
) -> Result<Option<Loaded<KeyRing>>, ServeError> {
    if config.no_auth {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED (--no-auth): anyone who can reach this port can scan"
        );
        return Ok(None);
    }
    let path = match &config.keys {
        Some(p) => p.clone(),
        None => create_local_key(&config.hmac_key_file)?,
    };
    // Fingerprint before loading, as for the rule sources: a change in between is seen.
    let fingerprint = keys::fingerprint(&path);
    let ring = Arc::new(KeyRing::load(&path)?);
    tracing::info!(keys = ring.len(), path = %path.display(), "API keys loaded");
    metrics.keys_loaded(ring.version(), ring.len());
    Ok(Some((ring, fingerprint)))
}

/// Loads the first bundle into `bundle` and returns the sources' fingerprint taken before it.
async fn load_bundle(
    bundle: &Arc<BundleState>,
    sources: &Sources,
    metrics: &Arc<Metrics>,
) -> Result<[u8; 32], ServeError> {
    // Fingerprint before the first load: a change landing between the two is then seen by the
    // first poll (at worst one redundant reload), never mistaken for the loaded state.
    let fingerprint = {
        let paths = sources.paths.clone();
        tokio::task::spawn_blocking(move || reload::fingerprint(&paths))
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e)))?
    };
    let (bundle, sources, metrics) = (bundle.clone(), sources.clone(), metrics.clone());
    // A bad initial bundle is not fatal: the server reports not-ready and keeps watching.
    let _ = tokio::task::spawn_blocking(move || bundle.reload(&sources, &metrics)).await;
    Ok(fingerprint)
}

/// The TLS configuration (`--tls-*`) and its files' fingerprint, taken before loading them,
/// as for the other sources.
async fn load_tls(
    config: &ServeConfig,
    metrics: &Arc<Metrics>,
) -> Result<Option<Loaded<tls::TlsState>>, ServeError> {
    let Some(files) = config.tls.clone() else {
        return Ok(None);
    };
    let metrics = metrics.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let fingerprint = tls::fingerprint(&files);
        tls::TlsState::load(files, &metrics).map(|s| (Arc::new(s), fingerprint))
    })
    .await
    .map_err(|e| ServeError::Server(std::io::Error::other(e)))??;
    Ok(Some(loaded))
}

/// Logs the bound addresses once startup succeeded: the health listener first, then the API
/// (whose "listening" line is what launchers wait for).
fn log_listening(listeners: &Listeners, config: &ServeConfig, tls: bool) -> Result<(), ServeError> {
    let addr = listeners.api.local_addr().map_err(ServeError::Server)?;
    if let Some(health) = &listeners.health {
        let bound = health.local_addr().map_err(ServeError::Server)?;
        tracing::info!(addr = %bound, "health and metrics endpoints listening (plain HTTP)");
    }
    let client_auth = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    tracing::info!(addr = %addr, tls, client_auth, "listening");
    Ok(())
}

/// Starts the tasks that run beside the server until `stop`: reloading the rule sources, the
/// keys and the TLS files, sweeping rate-limit buckets, and the optional ConfigMap watch, Pod
/// report and usage ledger.
fn spawn_background(
    config: &ServeConfig,
    started: &Started,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let state = &started.state;
    let (bundle, metrics) = (&state.bundle, &state.metrics);
    let mut tasks = vec![tokio::spawn(reload::watch(
        bundle.clone(),
        config.sources.clone(),
        metrics.clone(),
        config.reload_interval,
        started.sources_fingerprint,
        stop.clone(),
    ))];
    if let (Some(ring), Some(fingerprint)) = (&state.keys, started.keys_fingerprint) {
        let watch = keys::watch(
            ring.clone(),
            metrics.clone(),
            config.reload_interval,
            fingerprint,
            stop.clone(),
        );
        tasks.push(tokio::spawn(watch));
    }
    tasks.push(tokio::spawn(sweep(state.clone(), stop.clone())));
    if let Some(target) = config.configmap.clone() {
        let watch = configmap::watch(
            target,
            config.sources.policy.clone(),
            config.sources.limits,
            bundle.clone(),
            metrics.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(watch));
    }
    if let Some(pod) = config.report_pod.clone() {
        tasks.push(tokio::spawn(podreport::run(
            pod,
            bundle.clone(),
            stop.clone(),
        )));
    }
    if let Some(name) = config.usage_ledger.clone() {
        let target = usage::flush::LedgerTarget {
            name,
            pod: config.pod_name.clone(),
            interval: config.usage_flush_interval,
            final_timeout: config.http.shutdown_timeout,
        };
        let flush = usage::flush::run(target, state.usage.clone(), bundle.clone(), stop.clone());
        tasks.push(tokio::spawn(flush));
    }
    if let Some((tls, fingerprint)) = &started.tls {
        let watch = tls::watch(
            tls.clone(),
            metrics.clone(),
            config.reload_interval,
            *fingerprint,
            stop.clone(),
        );
        tasks.push(tokio::spawn(watch));
    }
    tasks
}

/// Runs the API server (and the health server) until `shutdown` resolves, then until both
/// have drained their connections within the deadline.
async fn serve_until(
    listeners: Listeners,
    state: Arc<http::AppState>,
    limits: HttpLimits,
    tls: Option<Arc<tls::TlsState>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // One shutdown signal, fanned out to the listeners.
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = down_rx.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    };
    let health_server = listeners.health.map(|listener| {
        tokio::spawn(server::serve(
            listener,
            http::health_router(state.clone()),
            limits,
            state.metrics.clone(),
            None,
            stopped(),
        ))
    });
    let api = server::serve(
        listeners.api,
        http::router(state.clone()),
        limits,
        state.metrics.clone(),
        tls,
        stopped(),
    );
    drop(state);
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
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
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
