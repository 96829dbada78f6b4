//! `pd-scanner serve`: the scan API over HTTP(S), with hot reload, audit records and metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use pd_scanner::limits::Limits;
use pd_scanner::serve::audit::Fsync;
use pd_scanner::serve::audit_rotate::Rotation;
use pd_scanner::serve::audit_writer::{AuditConfig, AuditFailure};
use pd_scanner::serve::configmap::ConfigMapRef;
use pd_scanner::serve::ratelimit::RateLimit;
use pd_scanner::serve::reload::Sources;
use pd_scanner::serve::server::HttpLimits;
use pd_scanner::serve::{Listeners, ServeConfig};

use super::{Result, EXIT_USAGE};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: `HOST:PORT` (a name is resolved once), `PORT` (on 127.0.0.1) or
    /// `:PORT` (every interface).
    #[arg(long, env = "PD_LISTEN", default_value = "127.0.0.1:8080", value_parser = pd_scanner::listen::parse_listen)]
    listen: std::net::SocketAddr,
    /// API keys: a file of `id=token` lines, or a directory with one file per key (a mounted
    /// Secret). Without it, a random key `local` is generated once into `keys` beside the HMAC
    /// key file.
    #[arg(long, env = "PD_KEYS")]
    keys: Option<PathBuf>,
    /// Serve without authentication (logged loudly). Only for local use.
    #[arg(long, env = "PD_NO_AUTH")]
    no_auth: bool,
    /// Sustained requests per second per key.
    #[arg(long, env = "PD_RATE_LIMIT", default_value_t = 1000.0)]
    rate_limit: f64,
    /// Requests a key may make back to back.
    #[arg(long, env = "PD_RATE_BURST", default_value_t = 2000)]
    rate_burst: u32,
    /// Largest prompt accepted, in bytes.
    #[arg(long, env = "PD_MAX_PROMPT_BYTES", default_value_t = 256 * 1024)]
    max_prompt_bytes: usize,
    /// Most items in one batch request.
    #[arg(long, env = "PD_MAX_BATCH", default_value_t = 64)]
    max_batch: usize,
    /// How often sources are checked for changes, in milliseconds.
    #[arg(long, env = "PD_RELOAD_INTERVAL_MS", default_value_t = 250)]
    reload_interval_ms: u64,
    /// HMAC key for input hashes; created with a random key when missing.
    #[arg(long, env = "PD_HMAC_KEY_FILE", default_value = ".pd-scanner/hmac.key")]
    hmac_key_file: PathBuf,
    /// Write audit records to stdout (logs go to stderr).
    #[arg(long, env = "PD_AUDIT_STDOUT")]
    audit_stdout: bool,
    /// Append audit records to this file.
    #[arg(long, env = "PD_AUDIT_FILE")]
    audit_file: Option<PathBuf>,
    /// When to fsync the audit file: always, never, or an interval in milliseconds. A request
    /// is answered once its record is written (always: written and fsynced).
    #[arg(long, env = "PD_AUDIT_FSYNC", default_value = "1000")]
    audit_fsync: String,
    /// When audit records cannot be written: `closed` refuses the decisions (503
    /// audit_unavailable, /readyz not ready); `open` answers them anyway.
    #[arg(long, env = "PD_AUDIT_FAILURE", default_value = "closed", value_parser = ["closed", "open"])]
    audit_failure: String,
    /// Longest a request waits for its audit records to be written, in milliseconds.
    #[arg(long, env = "PD_AUDIT_TIMEOUT_MS", default_value_t = 5000)]
    audit_timeout_ms: u64,
    /// Rotate the audit file daily (UTC) and delete rotated files after this many days; each
    /// deletion is recorded in the chain, which `audit verify` still checks across the files
    /// left. Applies to --audit-file only: records on stdout are kept by whatever collects them.
    #[arg(long, env = "PD_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    audit_retention_days: Option<u32>,
    /// Also rotate the audit file once it holds this many bytes.
    #[arg(long, env = "PD_AUDIT_ROTATE_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    audit_rotate_bytes: Option<u64>,
    /// A request's header block must arrive within this many milliseconds (counted from when
    /// the connection waits for it, so also the longest keep-alive idle time).
    #[arg(long, env = "PD_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// A request's body must arrive completely within this many milliseconds.
    #[arg(long, env = "PD_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    http_body_timeout_ms: u64,
    /// A connection on which no byte moves either way for this many milliseconds is closed.
    #[arg(long, env = "PD_HTTP_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    http_idle_timeout_ms: u64,
    /// Open connections beyond this are answered 503 and closed at once. Keep it below the
    /// process's file-descriptor limit.
    #[arg(long, env = "PD_HTTP_MAX_CONNECTIONS", default_value_t = 512)]
    http_max_connections: usize,
    /// Prompts over 16 KiB (batches: their total) scanned at once; others wait for a slot.
    /// Each running scan holds its own working memory, so this bounds the server's memory
    /// whatever clients send. Default: the number of CPUs.
    #[arg(long, env = "PD_LARGE_SCAN_SLOTS")]
    large_scan_slots: Option<usize>,
    /// Longest a large scan waits for a slot, in milliseconds; then 503 `busy`.
    #[arg(long, env = "PD_LARGE_SCAN_WAIT_MS", default_value_t = 2_000)]
    large_scan_wait_ms: u64,
    /// On SIGTERM/SIGHUP/Ctrl-C, requests in progress get this many milliseconds to finish
    /// (and the audit writer as long again to write what is queued); then the process exits.
    #[arg(long, env = "PD_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    shutdown_timeout_ms: u64,
    /// Also watch this ConfigMap ([NAMESPACE/]NAME) through the Kubernetes API and load each
    /// new bundle it holds at once, instead of waiting for kubelet to refresh the mounted copy.
    /// Needs a service-account token (or KUBECONFIG) allowed to get/list/watch it; while the
    /// watch is down the `-f` files are the source.
    #[arg(long, env = "PD_CONFIGMAP", value_name = "[NAMESPACE/]NAME", value_parser = parse_configmap)]
    configmap: Option<ConfigMapRef>,
    /// The ConfigMap key holding the bundle.
    #[arg(long, env = "PD_CONFIGMAP_KEY", default_value = pd_scanner::serve::configmap::DEFAULT_KEY, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    configmap_key: String,
    /// Write the served bundle's hash (and why a bundle was refused) as annotations on this Pod
    /// of the client's namespace, for pd-operator's status. Needs a token allowed to patch it.
    #[arg(long, env = "PD_REPORT_POD", value_name = "POD")]
    report_pod: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Reloaded when
    /// the file changes (checked every --reload-interval-ms): new handshakes use the new
    /// certificate, open connections keep theirs, and a pair that does not load is refused
    /// while the previous one keeps serving. TLS 1.2 and 1.3 only.
    #[arg(long, env = "PD_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); reloaded with it.
    #[arg(long, env = "PD_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by one of these PEM CA certificates in every TLS
    /// handshake (mutual TLS); reloaded with the certificate. API keys are still required.
    #[arg(long, env = "PD_CLIENT_CA", value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Also serve /healthz, /readyz and /metrics (nothing else) over plain HTTP on this
    /// address: for probes and scrapers that cannot present a client certificate.
    #[arg(long, env = "PD_HEALTH_LISTEN", value_name = "ADDR")]
    health_listen: Option<std::net::SocketAddr>,
    /// Signed webhook notifications of decisions: a YAML/JSON list of webhooks (url, format,
    /// minSeverity and/or verdicts, keyFiles, batch, ratePerSecond, ...; see
    /// docs/src/notifications.md). Read and checked at start; the key files are re-read per delivery.
    #[arg(long, env = "PD_WEBHOOKS", value_name = "FILE")]
    webhooks: Option<PathBuf>,
    /// Names this scanner (`scanner_pod`) in webhook payloads. Default: --report-pod, else
    /// $HOSTNAME (the Pod name in a cluster).
    #[arg(long, env = "PD_POD_NAME")]
    pod_name: Option<String>,
    /// Usage metering and quotas: write this pod's scan totals for the month (UTC) under its
    /// pod name (--pod-name) to this ConfigMap of the client's namespace, and enforce the
    /// tenant quota pd-operator writes there (docs/src/usage.md). Needs a token allowed to get
    /// and patch it.
    #[arg(long, env = "PD_USAGE_LEDGER", value_name = "CONFIGMAP")]
    usage_ledger: Option<String>,
    /// How often the totals are written to --usage-ledger (and the quota read back), in
    /// milliseconds; also once on shutdown.
    #[arg(long, env = "PD_USAGE_FLUSH_INTERVAL_MS", default_value_t = 15_000)]
    usage_flush_interval_ms: u64,
    /// Log format.
    #[arg(long, env = "PD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// `--configmap`, checked while parsing so a typo is a usage error (exit 64).
fn parse_configmap(s: &str) -> std::result::Result<ConfigMapRef, String> {
    ConfigMapRef::parse(s, pd_scanner::serve::configmap::DEFAULT_KEY).map_err(|e| e.to_string())
}

/// Builds the configuration from the flags, binds the listeners and serves until SIGTERM,
/// SIGHUP or Ctrl-C. Exit 0 after a graceful stop, 64 for flags that do not go together.
pub fn serve(
    files: Vec<PathBuf>,
    policy: Option<String>,
    limits: Limits,
    args: ServeArgs,
) -> Result<u8> {
    init_logging(&args.log_format);
    let (listen, health_listen) = (args.listen, args.health_listen);
    match config(files, policy, limits, args)? {
        Some(config) => run(config, listen, health_listen),
        None => Ok(EXIT_USAGE),
    }
}

/// Logs go to stderr (audit records may be on stdout), filtered by `PD_LOG`.
fn init_logging(format: &str) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The service's configuration from the flags; `None` after printing why two flags do not go
/// together (a usage error).
fn config(
    files: Vec<PathBuf>,
    policy: Option<String>,
    limits: Limits,
    args: ServeArgs,
) -> Result<Option<ServeConfig>> {
    let audit = audit_config(&args)?;
    let configmap = args.configmap.map(|c| ConfigMapRef {
        key: args.configmap_key,
        ..c
    });
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(pd_scanner::serve::tls::TlsFiles {
            cert,
            key,
            client_ca: args.client_ca,
        }),
        // clap's `requires` makes these unreachable; kept exhaustive rather than assumed.
        (None, None) => None,
        _ => {
            eprintln!("pd-scanner: error: --tls-cert and --tls-key go together");
            return Ok(None);
        }
    };
    let webhooks = match &args.webhooks {
        Some(path) => pd_scanner::serve::webhook::load(path)?,
        None => Vec::new(),
    };
    let pod_name = args
        .pod_name
        .clone()
        .or_else(|| args.report_pod.clone())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    if args.usage_ledger.is_some() && pod_name.is_empty() {
        eprintln!("pd-scanner: error: --usage-ledger needs --pod-name (or $HOSTNAME): it names this pod's key");
        return Ok(None);
    }
    Ok(Some(ServeConfig {
        usage_ledger: args.usage_ledger,
        usage_flush_interval: Duration::from_millis(args.usage_flush_interval_ms.max(10)),
        webhooks,
        pod_name,
        tls,
        configmap,
        report_pod: args.report_pod,
        sources: Sources {
            paths: files,
            policy,
            limits,
        },
        keys: args.keys,
        no_auth: args.no_auth,
        rate: RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst,
        },
        max_prompt_bytes: args.max_prompt_bytes,
        max_batch: args.max_batch,
        reload_interval: Duration::from_millis(args.reload_interval_ms.max(10)),
        hmac_key_file: args.hmac_key_file,
        audit,
        large_scan_slots: args.large_scan_slots.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        large_scan_wait: Duration::from_millis(args.large_scan_wait_ms),
        http: HttpLimits {
            header_timeout: Duration::from_millis(args.http_header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(args.http_body_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(args.http_idle_timeout_ms.max(1)),
            max_connections: args.http_max_connections.max(1),
            shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        },
    }))
}

/// The `--audit-*` flags.
fn audit_config(args: &ServeArgs) -> Result<AuditConfig> {
    let fsync = match args.audit_fsync.as_str() {
        "always" => Fsync::Always,
        "never" => Fsync::Never,
        ms => Fsync::Interval(Duration::from_millis(ms.parse().map_err(|_| {
            format!("--audit-fsync must be always, never or milliseconds, not {ms:?}")
        })?)),
    };
    Ok(AuditConfig {
        file: args.audit_file.clone(),
        stdout: args.audit_stdout,
        fsync,
        failure: if args.audit_failure == "open" {
            AuditFailure::Open
        } else {
            AuditFailure::Closed
        },
        timeout: Duration::from_millis(args.audit_timeout_ms.max(1)),
        rotation: Rotation {
            retention_days: args.audit_retention_days,
            max_bytes: args.audit_rotate_bytes,
        },
    })
}

/// Binds the listeners and serves on a multi-threaded runtime until a shutdown signal.
fn run(config: ServeConfig, listen: SocketAddr, health_listen: Option<SocketAddr>) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Signal handlers go in before anything else runs (see `shutdown_signal`).
    let shutdown = {
        let _in_runtime = runtime.enter();
        pd_scanner::serve::shutdown_signal()
    };
    let served = runtime.block_on(async move {
        let listeners = Listeners::bind(listen, health_listen).await?;
        pd_scanner::serve::run(config, listeners, shutdown).await
    });
    // Scans still running on the blocking pool (their connections were dropped at the
    // deadline) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    served?;
    Ok(0)
}
