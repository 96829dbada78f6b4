//! `pd-scanner`: scan prompts, test rule packs, evaluate them on a labelled corpus.
//!
//! Exit codes are part of the interface, so scripts and CI can branch on them:
//! `scan` exits 0 allow, 1 warn, 2 block; `test` exits 0 when every test passes, 1 otherwise;
//! 3 means an operational error (unreadable or invalid pack, bad input); 64 a usage error;
//! 141 (128 + SIGPIPE, what a shell reports for `yes | head`) that standard output was closed
//! before everything was written, which is said nowhere else: the reader wanted no more.

use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pd_scanner::bundle::{build, load_sources_with, pack_set, select_policy};
use pd_scanner::classifier::train::{LabelDef, TrainOptions};
use pd_scanner::compile::compile_checked;
use pd_scanner::engine::InputHasher;
use pd_scanner::eval::{evaluate, read_corpus, read_texts, Fields};
use pd_scanner::limits::Limits;
use pd_scanner::pack::RulePackSpec;
use pd_scanner::serve::configmap::ConfigMapRef;
use pd_scanner::testing::run_pack_tests_told;

/// Static musl builds (the container images) use mimalloc: musl's allocator costs throughput.
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_ERROR: u8 = 3;
const EXIT_USAGE: u8 = 64;
/// Standard output was closed early (see the module documentation).
const EXIT_BROKEN_PIPE: u8 = 141;

/// `println!` that returns the write error instead of panicking on it (a closed pipe: `scan
/// … | head`), so `main` can end quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

#[derive(Debug, Parser)]
#[command(name = "pd-scanner", version, about = "Prompt Defenders scanner", long_about = None)]
struct Cli {
    /// Rule packs and policies: YAML/JSON files or directories (RulePack / ScanPolicy resources
    /// or bare packs). Default: `config/samples/` when it exists, else the built-in samples.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "PD_FILES",
        value_delimiter = ','
    )]
    files: Vec<PathBuf>,
    /// ScanPolicy to apply when several are loaded (`default` = all packs, default thresholds).
    #[arg(long, global = true, env = "PD_POLICY")]
    policy: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(subcommand)]
    command: Command,
}

/// Bounds on the rule-pack sources, for every command that reads them (see SECURITY.md,
/// "Limits, and why"). Defaults: `pd_scanner::limits::Limits::default()`.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Largest rule-pack file (or ConfigMap value), in bytes; checked before it is read.
    #[arg(long, global = true, env = "PD_MAX_PACK_BYTES", default_value_t = Limits::default().max_file_bytes)]
    max_pack_bytes: u64,
    /// Most rules one pack may define.
    #[arg(long, global = true, env = "PD_MAX_PACK_RULES", default_value_t = Limits::default().max_pack_rules)]
    max_pack_rules: usize,
    /// Most rules a compiled bundle may hold.
    #[arg(long, global = true, env = "PD_MAX_BUNDLE_RULES", default_value_t = Limits::default().max_bundle_rules)]
    max_bundle_rules: usize,
    /// Longest regex source, in bytes.
    #[arg(long, global = true, env = "PD_MAX_REGEX_BYTES", default_value_t = Limits::default().max_regex_bytes)]
    max_regex_bytes: usize,
    /// Compiled size limit of one regex, in bytes.
    #[arg(long, global = true, env = "PD_MAX_REGEX_COMPILED_BYTES", default_value_t = Limits::default().max_regex_compiled_bytes)]
    max_regex_compiled_bytes: usize,
    /// Compiled size limit of a bundle's regexes and keyword automaton, in bytes.
    #[arg(long, global = true, env = "PD_MAX_BUNDLE_COMPILED_BYTES", default_value_t = Limits::default().max_bundle_compiled_bytes)]
    max_bundle_compiled_bytes: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_pack_bytes,
            max_pack_rules: self.max_pack_rules,
            max_bundle_rules: self.max_bundle_rules,
            max_regex_bytes: self.max_regex_bytes,
            max_regex_compiled_bytes: self.max_regex_compiled_bytes,
            max_bundle_compiled_bytes: self.max_bundle_compiled_bytes,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan one prompt and print the result as JSON (exit 0 allow, 1 warn, 2 block).
    Scan(ScanArgs),
    /// Run the tests embedded in every loaded rule pack.
    Test(TestArgs),
    /// Measure detection on a labelled JSON Lines corpus.
    Eval(EvalArgs),
    /// Print the JSON schema of the rule-pack format.
    Schema,
    /// Serve the scan API (HTTP) with hot reload, audit records and metrics.
    Serve(Box<ServeArgs>),
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the OpenAPI document of the scan API.
    Openapi,
    /// Webhook signature tools (the receiving side of `serve --webhooks`).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Print the policy's compiled-and-checked bundle (`ScanBundle` JSON): one file a scanner
    /// can serve with `-f`.
    Bundle,
    /// Train the learned stage on labelled JSON Lines and write it as a rule pack (a model plus
    /// one `classifier` rule per label). Deterministic for a given seed and input.
    Train(TrainArgs),
    /// Print distinct synthetic prompts as JSON Lines (`text`, `label`), deterministic for a
    /// seed: input for `eval --warm-up` and load runs that must not repeat texts.
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Labelled JSON Lines (`text`, `label`, `category`, `source`); repeat for several files.
    #[arg(long, short = 'i', required = true)]
    input: Vec<PathBuf>,
    /// Where to write the RulePack YAML.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Name of the generated RulePack.
    #[arg(long, default_value = "learned")]
    pack_name: String,
    /// Name of the model (rules refer to it).
    #[arg(long, default_value = "prompt-attacks")]
    model_name: String,
    /// Model and pack version (default: the date).
    #[arg(long)]
    model_version: Option<String>,
    /// Training date written into the manifest (default: today, UTC).
    #[arg(long)]
    date: Option<String>,
    /// `NAME=CATEGORY[,CATEGORY...]`: a label and the attack categories it learns; repeat.
    #[arg(long = "label", default_values_t = [
        "jailbreak".to_string(),
        "injection=prompt_injection,exfiltration".to_string(),
        "code-injection=code_injection".to_string(),
    ])]
    labels: Vec<String>,
    /// Weight tables have 2^bits rows (2^bits × labels bytes, at most 192 KiB).
    #[arg(long, default_value_t = TrainOptions::default().bits)]
    bits: u8,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    l2: f64,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    learning_rate: f64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Folds of the grouped (by `--group-field`) cross-validation that picks the thresholds.
    #[arg(long, default_value_t = TrainOptions::default().folds)]
    folds: usize,
    /// Benign false-positive rate allowed, out of fold, summed over the labels.
    #[arg(long, default_value_t = TrainOptions::default().target_fpr)]
    target_fpr: f64,
    /// Weight of the generated rules (60 blocks on its own under the default thresholds).
    #[arg(long, default_value_t = 60)]
    weight: u32,
    #[arg(long, default_value = "source")]
    group_field: String,
    /// Attack categories that are negatives for every label (repeat; default: pii, secrets).
    #[arg(long = "negative-category", default_values_t = TrainOptions::default().negative_categories)]
    negative_categories: Vec<String>,
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// Number of prompts.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seed; different seeds give disjoint sets in practice (checked by `eval --warm-up`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of prompts with an attack technique spliced in (labelled `attack`).
    #[arg(long, default_value_t = 0.0)]
    attacks: f64,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
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

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Check a delivery read from stdin (the exact body bytes) against its X-PD-Timestamp and
    /// X-PD-Signature headers: exit 0 when valid and fresh, 1 otherwise.
    Verify {
        /// File holding the signing key (as mounted from the Secret).
        #[arg(long)]
        key_file: PathBuf,
        /// The X-PD-Timestamp header (Unix seconds).
        #[arg(long)]
        timestamp: String,
        /// The X-PD-Signature header (`sha256=<hex>[,sha256=<hex>]`).
        #[arg(long)]
        signature: String,
        /// Largest accepted distance between the timestamp and now, in seconds.
        #[arg(long, default_value_t = 300)]
        tolerance_secs: u64,
    },
    /// Sign a body read from stdin as the scanner does, and print the two headers.
    Sign {
        /// Signing key files: current, then optionally previous (both signatures are printed).
        #[arg(long = "key-file", required = true)]
        key_files: Vec<PathBuf>,
        /// Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
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

#[derive(Debug, Args)]
struct ScanArgs {
    /// The prompt (several words are joined with spaces). Omit it or pass `-` to read stdin.
    text: Vec<String>,
    /// File holding the HMAC key for `input_hash` (default: $PD_HMAC_KEY, else a random key for
    /// this run only).
    #[arg(long, env = "PD_HMAC_KEY_FILE")]
    hmac_key_file: Option<PathBuf>,
    /// Largest prompt accepted, in bytes.
    #[arg(long, env = "PD_MAX_PROMPT_BYTES", default_value_t = 256 * 1024)]
    max_bytes: usize,
    /// Pretty-print the JSON.
    #[arg(long)]
    pretty: bool,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// List passing tests too.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// JSON Lines corpus, one record per line.
    #[arg(long, short = 'i')]
    input: PathBuf,
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Values: attack/benign, 1/0, true/false.
    #[arg(long, default_value = "label")]
    label_field: String,
    #[arg(long, default_value = "category")]
    category_field: String,
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Write per-item results (id, label, verdict, score, rules) as JSON Lines.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// List up to N misclassified items (id, rules, start of the text).
    #[arg(long, default_value_t = 0)]
    show_errors: usize,
    /// JSON Lines texts (same text field; labels not needed) to scan, untimed, before the
    /// timed pass over `--input`, so the figures describe a running scanner meeting new text.
    /// Must share no text with `--input`.
    #[arg(long)]
    warm_up: Option<PathBuf>,
    /// Run every rule on every text (no prefilter): slower, and the results must be identical;
    /// a check that the prefilter changes nothing on your corpus.
    #[arg(long)]
    no_prefilter: bool,
    /// Cross-source evaluation: retrain this model (named in a loaded pack) without each fold
    /// of `--input` before scanning that fold, so figures are for text it never saw.
    #[arg(long)]
    retrain: Option<String>,
    /// Folds for `--retrain`; records of one `--group-field` value stay in one fold.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long, default_value = "source")]
    group_field: String,
    /// Extra labelled JSON Lines always in the training data of `--retrain`, never scanned.
    #[arg(long)]
    train: Vec<PathBuf>,
    /// Also time the bare baseline (one RegexSet of the bundle's regex rules + one
    /// Aho–Corasick DFA of its keywords, in a fresh process state warmed on the same warm-up
    /// texts) on the same texts, and print the engine's throughput as a share of it.
    #[arg(long)]
    baseline: bool,
}

/// `--configmap`, checked while parsing so a typo is a usage error (exit 64).
fn parse_configmap(s: &str) -> std::result::Result<ConfigMapRef, String> {
    ConfigMapRef::parse(s, pd_scanner::serve::configmap::DEFAULT_KEY).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if broken_pipe(&*e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("pd-scanner: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Whether `e` (or an error it wraps) is a write to a closed pipe.
fn broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let kind = e
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                e.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        if kind == Some(std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        next = e.source();
    }
    false
}

fn run(cli: Cli) -> Result<u8> {
    let limits = cli.limits.limits();
    match cli.command {
        Command::Scan(args) => scan(&cli.files, cli.policy.as_deref(), &limits, args),
        Command::Test(args) => test(&cli.files, cli.policy.as_deref(), &limits, args),
        Command::Eval(args) => eval(&cli.files, cli.policy.as_deref(), &limits, args),
        Command::Serve(args) => serve(cli.files, cli.policy, limits, *args),
        Command::Audit(AuditCommand::Verify { file, anchor }) => {
            audit_verify(&file, anchor.as_deref())
        }
        Command::Webhook(cmd) => webhook(cmd),
        Command::Synth(args) => synth(&args),
        Command::Train(args) => train(&args),
        Command::Bundle => {
            let loaded = load_sources_with(&cli.files, &limits)?;
            let doc =
                pd_scanner::bundle::bundle_document_with(&loaded, cli.policy.as_deref(), &limits)?;
            outln!("{}", serde_json::to_string_pretty(&doc)?)?;
            Ok(0)
        }
        Command::Openapi => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&pd_scanner::serve::http::openapi_document())?
            )?;
            Ok(0)
        }
        Command::Schema => {
            let schema = schemars::schema_for!(RulePackSpec);
            outln!("{}", serde_json::to_string_pretty(&schema)?)?;
            Ok(0)
        }
    }
}

fn serve(
    files: Vec<PathBuf>,
    policy: Option<String>,
    limits: Limits,
    args: ServeArgs,
) -> Result<u8> {
    use pd_scanner::serve::audit_writer::{AuditConfig, AuditFailure};
    use pd_scanner::serve::server::HttpLimits;
    use pd_scanner::serve::{audit::Fsync, ratelimit::RateLimit, reload::Sources, ServeConfig};
    use std::time::Duration;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let audit_fsync = match args.audit_fsync.as_str() {
        "always" => Fsync::Always,
        "never" => Fsync::Never,
        ms => Fsync::Interval(std::time::Duration::from_millis(ms.parse().map_err(
            |_| format!("--audit-fsync must be always, never or milliseconds, not {ms:?}"),
        )?)),
    };
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
            return Ok(EXIT_USAGE);
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
        return Ok(EXIT_USAGE);
    }
    let config = ServeConfig {
        usage_ledger: args.usage_ledger,
        usage_flush_interval: Duration::from_millis(args.usage_flush_interval_ms.max(10)),
        webhooks,
        pod_name,
        tls,
        health_listen: args.health_listen,
        configmap,
        report_pod: args.report_pod,
        listen: args.listen,
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
        reload_interval: std::time::Duration::from_millis(args.reload_interval_ms.max(10)),
        hmac_key_file: args.hmac_key_file,
        audit: AuditConfig {
            file: args.audit_file,
            stdout: args.audit_stdout,
            fsync: audit_fsync,
            failure: if args.audit_failure == "open" {
                AuditFailure::Open
            } else {
                AuditFailure::Closed
            },
            timeout: Duration::from_millis(args.audit_timeout_ms.max(1)),
            rotation: pd_scanner::serve::audit_rotate::Rotation {
                retention_days: args.audit_retention_days,
                max_bytes: args.audit_rotate_bytes,
            },
        },
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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Signal handlers go in before anything else runs (see `shutdown_signal`).
    let shutdown = {
        let _in_runtime = runtime.enter();
        pd_scanner::serve::shutdown_signal()
    };
    let served = runtime.block_on(pd_scanner::serve::run(config, shutdown));
    // Scans still running on the blocking pool (their connections were dropped at the
    // deadline) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    served?;
    Ok(0)
}

/// `pd-scanner webhook verify|sign`.
fn webhook(cmd: WebhookCommand) -> Result<u8> {
    use pd_scanner::serve::webhook::{read_key, sign};
    let read_key =
        |p: &PathBuf| read_key(p).map_err(|e| format!("signing key file {}: {e}", p.display()));
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    match cmd {
        WebhookCommand::Verify {
            key_file,
            timestamp,
            signature,
            tolerance_secs,
        } => {
            let key = read_key(&key_file)?;
            match sign::verify(
                &key,
                &timestamp,
                &signature,
                &body,
                sign::unix_now(),
                tolerance_secs,
            ) {
                Ok(()) => {
                    println!("OK: the signature matches and the timestamp is fresh");
                    Ok(0)
                }
                Err(e) => {
                    println!("INVALID: {e}");
                    Ok(1)
                }
            }
        }
        WebhookCommand::Sign {
            key_files,
            timestamp,
        } => {
            let keys = key_files
                .iter()
                .map(read_key)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let ts = timestamp.unwrap_or_else(sign::unix_now).to_string();
            println!("X-PD-Timestamp: {ts}");
            println!("X-PD-Signature: {}", sign::header(&keys, &ts, &body));
            Ok(0)
        }
    }
}

fn audit_verify(file: &std::path::Path, anchor: Option<&std::path::Path>) -> Result<u8> {
    use pd_scanner::serve::audit;
    let rotated = pd_scanner::serve::audit_rotate::rotated_files(file).unwrap_or_default();
    if !rotated.is_empty() {
        return audit_verify_set(file, anchor);
    }
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let anchor_file = anchor
        .map(std::path::Path::to_path_buf)
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
    match audit::verify_anchored(BufReader::new(f), anchored.as_ref()) {
        Ok(report) => {
            outln!(
                "ok: {} records, chain intact; last hash {}",
                report.records,
                report.last_hash.as_deref().unwrap_or("-")
            )?;
            match anchored {
                Some(a) => outln!("anchor {}: seq {} present", anchor_file.display(), a.seq)?,
                None => outln!(
                    "no anchor ({} missing): records cut from the end cannot be detected",
                    anchor_file.display()
                )?,
            }
            Ok(0)
        }
        Err(e) => {
            outln!("BROKEN: {e}")?;
            Ok(1)
        }
    }
}

/// `audit verify` of a rotated log: the rotated files and the active one as one chain.
fn audit_verify_set(file: &std::path::Path, anchor: Option<&std::path::Path>) -> Result<u8> {
    use pd_scanner::serve::{audit, audit_rotate};
    let anchor_file = anchor
        .map(std::path::Path::to_path_buf)
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
    match audit_rotate::verify_set(file, anchored.as_ref()) {
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
            match anchored {
                Some(a) => outln!("anchor {}: seq {} present", anchor_file.display(), a.seq)?,
                None => outln!(
                    "no anchor ({} missing): records cut from the end cannot be detected",
                    anchor_file.display()
                )?,
            }
            Ok(0)
        }
        Err(e) => {
            outln!("BROKEN: {e}")?;
            Ok(1)
        }
    }
}

fn hasher(key_file: Option<&PathBuf>) -> Result<InputHasher> {
    if let Some(path) = key_file {
        let key = std::fs::read(path)
            .map_err(|e| format!("cannot read HMAC key file {}: {e}", path.display()))?;
        let key = key.trim_ascii();
        return Ok(InputHasher::new(key).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    match std::env::var("PD_HMAC_KEY") {
        Ok(k) if !k.is_empty() => Ok(InputHasher::new(k.as_bytes())?),
        _ => Ok(InputHasher::ephemeral()),
    }
}

fn scan(files: &[PathBuf], policy: Option<&str>, limits: &Limits, args: ScanArgs) -> Result<u8> {
    let text = if args.text.is_empty() || args.text == ["-"] {
        if std::io::stdin().is_terminal() {
            eprintln!("pd-scanner: reading the prompt from standard input; end it with Ctrl-D (or pass it as arguments)");
        }
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(args.max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading stdin: {e}"))?;
        if bytes.len() > args.max_bytes {
            return Err(format!(
                "the prompt is over the {}-byte limit (--max-bytes)",
                args.max_bytes
            )
            .into());
        }
        String::from_utf8(bytes).map_err(|e| {
            format!(
                "the prompt on stdin is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?
    } else {
        args.text.join(" ")
    };
    if text.len() > args.max_bytes {
        return Err(format!(
            "the prompt is over the {}-byte limit (--max-bytes)",
            args.max_bytes
        )
        .into());
    }
    if text.trim().is_empty() {
        eprintln!("pd-scanner: error: no prompt to scan: pass it as arguments, or pipe it on standard input");
        return Ok(EXIT_USAGE);
    }
    let hasher = hasher(args.hmac_key_file.as_ref())?;
    let (loaded, pack) = pd_scanner::bundle::build_loaded(files, policy, limits)?;
    note_unbound_packs(&loaded, &pack);
    let result = pack.scan(&text, &hasher);
    let json = if args.pretty {
        serde_json::to_string_pretty(&result)?
    } else {
        serde_json::to_string(&result)?
    };
    outln!("{json}")?;
    Ok(result.verdict.exit_code())
}

/// Says on stderr which loaded packs the policy does not use: `-f config/samples/ -f mine.yaml`
/// selects the samples' policy, which binds only its own packs, and a scan that silently ignores
/// the pack a user just wrote looks like a pack that matches nothing. `test` says it too: its
/// "N passed" is about each pack alone, not about what the policy would serve.
fn note_unbound_packs(loaded: &pd_scanner::load::Loaded, pack: &pd_scanner::compile::CompiledPack) {
    let bound = pack.used_packs();
    let unbound: Vec<&str> = loaded
        .packs
        .keys()
        .map(String::as_str)
        .filter(|n| !bound.contains(n))
        .collect();
    if !unbound.is_empty() {
        eprintln!(
            "pd-scanner: note: policy `{}` does not use the loaded pack(s) {}; it binds {}. Use --policy default (every pack no other pack extends) or add them to the policy's rulePacks.",
            pack.policy.name,
            unbound.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            pack.resolved.iter().map(|r| format!("`{}`", r.name)).collect::<Vec<_>>().join(", ")
        );
    }
}

fn test(files: &[PathBuf], policy: Option<&str>, limits: &Limits, args: TestArgs) -> Result<u8> {
    let loaded = load_sources_with(files, limits)?;
    let packs = pack_set(&loaded);
    let tell = |e: &pd_scanner::compile::CompileError| pd_scanner::bundle::explain(e, &loaded);
    let reports: Vec<_> = packs
        .keys()
        .map(|n| run_pack_tests_told(&packs, n, limits, &tell))
        .collect();
    let ok = reports.iter().all(|r| r.ok());
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reports)?)?;
        return Ok(u8::from(!ok));
    }
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for r in &reports {
        if let Some(e) = &r.error {
            writeln!(out, "FAIL pack {}: does not compile\n{e}", r.pack)?;
            failed += 1;
            continue;
        }
        let tests = packs.get(&r.pack).map(|s| &s.tests[..]).unwrap_or_default();
        writeln!(
            out,
            "{} pack {} — {} passed, {} failed  {}",
            if r.ok() { "ok  " } else { "FAIL" },
            r.pack,
            r.passed(),
            r.failed(),
            r.hash.as_deref().unwrap_or_default()
        )?;
        for lint in &r.lints {
            writeln!(out, "  note: {lint}")?;
        }
        for (o, t) in r.outcomes.iter().zip(tests) {
            if o.passed && !args.verbose {
                continue;
            }
            writeln!(
                out,
                "  {} {} {:?} -> {} (score {}, rules [{}])",
                if o.passed { "ok  " } else { "FAIL" },
                o.name,
                excerpt(&t.input, 70),
                o.verdict,
                o.score,
                o.matched.join(", ")
            )?;
            for f in &o.failures {
                writeln!(out, "       {f}")?;
            }
        }
        passed += r.passed();
        failed += r.failed();
    }
    if packs.len() > 1 || loaded.policies.is_empty() || policy.is_some() {
        // Also check that what will be served compiles, not just each pack alone: the check
        // `serve` makes on every load.
        let policy = select_policy(&loaded, policy)?;
        match compile_checked(&packs, policy.clone(), limits) {
            Ok(compiled) => note_unbound_packs(&loaded, &compiled),
            Err(e) => {
                // A pack that failed above fails the policy with the very same text: say it
                // once, the report above already counts it.
                let text = tell(&e);
                if !reports
                    .iter()
                    .any(|r| r.error.as_deref() == Some(text.as_str()))
                {
                    writeln!(out, "FAIL policy {}: {text}", policy.name)?;
                    failed += 1;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(u8::from(!ok || failed > 0))
}

fn eval(files: &[PathBuf], policy: Option<&str>, limits: &Limits, args: EvalArgs) -> Result<u8> {
    let open = |path: &PathBuf| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let fields = Fields {
        text: args.text_field,
        label: args.label_field,
        category: args.category_field,
        id: args.id_field,
        group: args.group_field,
    };
    let records = read_corpus(open(&args.input)?, &fields)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let warm_up = match &args.warm_up {
        Some(path) => {
            read_texts(open(path)?, &fields.text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let (report, items) = if let Some(model) = &args.retrain {
        if args.warm_up.is_some() || args.baseline || args.no_prefilter {
            return Err(
                "--retrain measures detection only; drop --warm-up, --baseline and --no-prefilter"
                    .into(),
            );
        }
        let loaded = load_sources_with(files, limits)?;
        let policy = select_policy(&loaded, policy)?;
        let mut extra = Vec::new();
        for path in &args.train {
            let r = read_corpus(open(path)?, &fields)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            extra.extend(r.iter().map(pd_scanner::crossval::example));
        }
        let out = pd_scanner::crossval::cross_source(
            &pack_set(&loaded),
            &policy,
            model,
            &records,
            &extra,
            args.folds,
            &TrainOptions::default(),
        )?;
        if !args.json {
            outln!(
                "cross-source: model `{model}` retrained {} times, each time without one fold of {} (grouped by `{}`), plus {} records always in training; rules unchanged; policy {}",
                args.folds.max(2),
                args.input.display(),
                fields.group,
                extra.len(),
                policy.name
            )?;
        }
        out
    } else {
        let mut pack = build(files, policy, limits)?;
        if args.no_prefilter {
            pack = pack.without_prefilter();
        }
        // Span regexes compile on first use; a serving scanner compiles them before a bundle
        // goes live, so the timed pass should not pay for that either.
        pack.warm_up();
        let out = evaluate(&pack, &records, &warm_up).map_err(|e| match &args.warm_up {
            Some(w) => format!("{} (warm-up {}): {e}", args.input.display(), w.display()),
            None => format!("{}: {e}", args.input.display()),
        })?;
        if !args.json {
            outln!(
                "bundle {} {} ({} rules), policy {}",
                pack.pack.name,
                pack.pack.hash,
                pack.rule_count(),
                pack.policy.name
            )?;
        }
        if args.baseline {
            let bare = pd_scanner::baseline::BarePass::new(&pack)?;
            let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
            let b = pd_scanner::eval::time_bare_pass(&bare, &texts, &warm_up);
            outln!(
                "bare baseline    {:.0} items/s, {:.2} MB/s; p50 {:.1} us, p99 {:.1} us, max {:.1} us (same texts, same warm-up)",
                b.items_per_second, b.megabytes_per_second, b.p50_us, b.p99_us, b.max_us
            )?;
            if b.items_per_second > 0.0 {
                outln!(
                    "engine / bare    {:.0}%",
                    100.0 * out.0.speed.items_per_second / b.items_per_second
                )?;
            }
        }
        out
    };
    if let Some(path) = &args.out {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        );
        for i in &items {
            serde_json::to_writer(&mut w, i)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(std::io::stdout().lock(), "{report}")?;
    }
    if args.show_errors > 0 {
        let wrong = records
            .iter()
            .zip(&items)
            .filter(|(_, i)| i.attack != i.detected());
        for (r, i) in wrong.take(args.show_errors) {
            let text = r.text.as_str();
            outln!(
                "{} line {} {} [{}] score {} {:?}",
                if i.attack { "FN" } else { "FP" },
                i.line,
                i.category.as_deref().unwrap_or_default(),
                i.rules.join(","),
                i.score,
                excerpt(text, 160)
            )?;
        }
    }
    Ok(0)
}

fn train(args: &TrainArgs) -> Result<u8> {
    let labels = args
        .labels
        .iter()
        .map(|l| LabelDef::parse(l))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let fields = Fields {
        group: args.group_field.clone(),
        ..Fields::default()
    };
    let mut examples = Vec::new();
    for path in &args.input {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let records = read_corpus(BufReader::new(file), &fields)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        examples.extend(records.iter().map(pd_scanner::crossval::example));
    }
    let date = args.date.clone().unwrap_or_else(today);
    let version = args.model_version.clone().unwrap_or_else(|| date.clone());
    let options = TrainOptions {
        bits: args.bits,
        epochs: args.epochs,
        l2: args.l2,
        learning_rate: args.learning_rate,
        seed: args.seed,
        folds: args.folds,
        target_fpr: args.target_fpr,
        negative_categories: args.negative_categories.clone(),
        ..TrainOptions::default()
    };
    let trained = pd_scanner::classifier::train::train(
        &args.model_name,
        &version,
        &date,
        &examples,
        &labels,
        &options,
    )?;
    let yaml = pd_scanner::classifier::pack::generated_pack(
        &args.pack_name,
        &trained,
        &labels,
        args.weight,
        &format!(
            "pd-scanner train {}",
            std::env::args().skip(2).collect::<Vec<_>>().join(" ")
        ),
    )?;
    std::fs::write(&args.out, yaml)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    let m = &trained.manifest;
    eprintln!(
        "trained `{}` on {} records ({} attacks, {} benign) → {}",
        args.model_name,
        m.records,
        m.attacks,
        m.benign,
        args.out.display()
    );
    if let Some(cv) = &m.cross_validation {
        for l in &cv.labels {
            eprintln!(
                "  {:<12} threshold {:.3}: out-of-fold recall {:.3}, false-positive rate {:.4} ({} folds by {})",
                l.label, l.threshold, l.recall, l.false_positive_rate, cv.folds, cv.group_by
            );
        }
    }
    Ok(0)
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the system clock (civil-from-days).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn synth(args: &SynthArgs) -> Result<u8> {
    if !(0.0..=1.0).contains(&args.attacks) {
        return Err("--attacks must be between 0 and 1".into());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (text, attack) in pd_scanner::synth::labelled(args.seed, args.attacks).take(args.count) {
        let label = if attack { "attack" } else { "benign" };
        serde_json::to_writer(&mut out, &serde_json::json!({"text": text, "label": label}))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(0)
}

fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut e: String = s.chars().take(max).collect();
    e.push('…');
    e
}
