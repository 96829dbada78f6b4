//! Signed webhook notifications of scan decisions (`serve --webhooks FILE`).
//!
//! Decisions at or above a webhook's threshold are offered to it after their audit record is
//! written. Offering never waits: each webhook has a bounded in-memory queue, and when it is
//! full the oldest event is dropped and counted (`pd_webhook_dropped_total`), so a dead, slow or
//! rate-limited receiver can never slow a scan. One delivery task per webhook takes batches off
//! its queue, paces them with a token bucket, signs them ([`sign`]) and retries transient
//! failures with exponential backoff and full jitter ([`deliver`]). On shutdown the queues are
//! flushed within the shutdown deadline; what is left then is dropped and counted.
//!
//! The webhooks file is read once at start (a change needs a restart — the operator rolls the
//! Deployment); the signing key files are re-read before every delivery, so a rotated Secret
//! takes effect without one.

pub mod deliver;
pub mod payload;
pub mod sign;

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::compile::CompiledPack;
use crate::engine::ScanResult;
use crate::pack::Severity;
use crate::serve::metrics::Metrics;
use crate::verdict::Verdict;
use payload::Event;

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `pd.findings.v1` (see `scanner/webhook-event.schema.json`).
    #[default]
    Json,
    /// A Slack incoming-webhook message.
    Slack,
    /// A Microsoft Teams message with an Adaptive Card.
    Teams,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Teams => "teams",
        }
    }
}

/// Batching of one webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchSpec {
    /// Most events in one request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Longest an event waits for others to share its request, in milliseconds (0: send at
    /// once).
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            max_events: default_max_events(),
            max_delay_ms: default_max_delay_ms(),
        }
    }
}

/// Retries of one delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySpec {
    /// Retries after the first attempt (5xx, 408, 429, timeouts, connection errors).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The backoff before retry n is uniformly random in [0, min(max, initial × 2^n)].
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            max_retries: default_max_retries(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

fn default_max_events() -> usize {
    20
}
fn default_max_delay_ms() -> u64 {
    1000
}
fn default_max_retries() -> u32 {
    5
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_rate() -> f64 {
    1.0
}
fn default_burst() -> u32 {
    1
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_queue_capacity() -> usize {
    1000
}

/// One webhook as written in the `--webhooks` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Names the webhook in metrics and logs (the URL never appears there: chat webhook URLs
    /// are credentials). Default: `webhook-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub format: Format,
    /// Notify decisions with a rule of at least this severity.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Notify decisions with one of these verdicts (in audit mode: the verdict enforcement
    /// would have reached). With `minSeverity` too, both must hold.
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
    /// Signing key files: the current key, then optionally the previous one during a rollover.
    pub key_files: Vec<PathBuf>,
    #[serde(default)]
    pub batch: BatchSpec,
    /// Requests per second to this URL (token bucket).
    #[serde(default = "default_rate")]
    pub rate_per_second: f64,
    /// Requests that may go back to back.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Dashboard link per event: `{event_id}`, `{input_hash}`, `{tenant}`, `{policy}`,
    /// `{bundle_hash}` are replaced.
    #[serde(default)]
    pub link_template: Option<String>,
    /// Allow `http://` (default: HTTPS only).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Longest one attempt may take (connect, send, response), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetrySpec,
    /// Events waiting for delivery; when full the oldest is dropped (and counted).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

/// A `--webhooks` file that cannot be used. Messages name the webhook, a key file's path or the
/// URL's scheme — never the URL itself (it may carry a token) nor a key.
#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("webhooks file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("webhooks file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("webhook {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("webhook {name}: signing key file {path}: {message}")]
    Key {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error("webhook HTTPS client: cannot load the system's CA certificates ({0}); set SSL_CERT_FILE to a PEM bundle")]
    CaCertificates(String),
}

/// A validated webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    pub uri: hyper::Uri,
    pub spec: WebhookSpec,
}

impl Webhook {
    /// Whether a decision crosses this webhook's threshold.
    pub fn matches(&self, r: &ScanResult) -> bool {
        let severity = self
            .spec
            .min_severity
            .is_none_or(|min| r.advisories.iter().any(|a| a.severity >= min));
        let verdict =
            self.spec.verdicts.is_empty() || self.spec.verdicts.contains(&r.effective_verdict());
        severity && verdict
    }
}

/// Reads a signing key file: its bytes, surrounding whitespace trimmed (a mounted Secret's
/// value, often with a trailing newline). Empty is an error: an empty HMAC key signs nothing.
pub fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let key = bytes.trim_ascii();
    if key.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(key.to_vec())
}

/// Whether a signing key file does not exist. Such a webhook is configured but refuses to
/// deliver (its events are counted as `no_key` in `pd_webhook_events_total`) until the file
/// appears, which it notices at the next delivery: a missing Secret stops that webhook, never
/// the scanner.
pub fn key_missing(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads and checks the `--webhooks` file: every problem is reported at start, before the
/// scanner listens, rather than discovered at the first finding.
pub fn load(path: &Path) -> Result<Vec<Webhook>, WebhookError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebhookError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |message: String| WebhookError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
    // A list of webhooks, or `{webhooks: [...]}`; each entry parsed on its own so an error
    // says which one.
    let list = match doc {
        serde_yaml::Value::Sequence(l) => l,
        serde_yaml::Value::Mapping(mut m) => match m.remove("webhooks") {
            Some(serde_yaml::Value::Sequence(l)) if m.is_empty() => l,
            _ => {
                return Err(parse_error(
                    "expected a list of webhooks, or `webhooks:` with one".into(),
                ))
            }
        },
        serde_yaml::Value::Null => Vec::new(),
        _ => {
            return Err(parse_error(
                "expected a list of webhooks, or `webhooks:` with one".into(),
            ))
        }
    };
    let specs = list
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_yaml::from_value::<WebhookSpec>(v)
                .map_err(|e| parse_error(format!("webhook #{i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = HashSet::new();
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let w = validate(i, spec)?;
            if !names.insert(w.name.clone()) {
                return Err(WebhookError::Invalid {
                    name: w.name,
                    message: "two webhooks have this name".into(),
                });
            }
            Ok(w)
        })
        .collect()
}

fn validate(index: usize, spec: WebhookSpec) -> Result<Webhook, WebhookError> {
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("webhook-{index}"));
    let invalid = |message: String| WebhookError::Invalid {
        name: name.clone(),
        message,
    };
    if !valid_name(&name) {
        return Err(invalid(
            "name must be 1-63 characters of letters, digits, '-', '_' and '.'".into(),
        ));
    }
    let uri: hyper::Uri = spec
        .url
        .parse()
        .map_err(|_| invalid("url is not a valid absolute URL".into()))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if spec.allow_insecure_http => {}
        Some("http") => {
            return Err(invalid(
                "url is http://: signed payloads would cross the network in clear text; use https:// or set allowInsecureHttp: true".into(),
            ))
        }
        _ => return Err(invalid("url must start with https:// (or http://)".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("url has no host".into()));
    }
    if spec.min_severity.is_none() && spec.verdicts.is_empty() {
        return Err(invalid(
            "set minSeverity and/or verdicts: which decisions to notify".into(),
        ));
    }
    if spec.key_files.is_empty() || spec.key_files.len() > 2 {
        return Err(invalid(
            "keyFiles takes one signing key file, or two (current, previous) during a rollover"
                .into(),
        ));
    }
    for path in &spec.key_files {
        // A key file that does not exist (yet) is not fatal: in a cluster it is an optional
        // Secret volume whose Secret may be created after the pod; only this webhook waits
        // for it (see [`key_missing`]). A file that exists must hold a key.
        if key_missing(path) {
            continue;
        }
        read_key(path).map_err(|message| WebhookError::Key {
            name: name.clone(),
            path: path.clone(),
            message,
        })?;
    }
    if !(spec.rate_per_second.is_finite() && spec.rate_per_second > 0.0) {
        return Err(invalid("ratePerSecond must be a positive number".into()));
    }
    if spec.burst == 0 {
        return Err(invalid("burst must be at least 1".into()));
    }
    if spec.batch.max_events == 0 || spec.batch.max_events > 1000 {
        return Err(invalid("batch.maxEvents must be 1..=1000".into()));
    }
    if spec.queue_capacity == 0 {
        return Err(invalid("queueCapacity must be at least 1".into()));
    }
    if spec.timeout_ms == 0 {
        return Err(invalid("timeoutMs must be at least 1".into()));
    }
    if let Some(t) = &spec.link_template {
        check_template(t).map_err(invalid)?;
    }
    Ok(Webhook { name, uri, spec })
}

/// A link template may use only the known placeholders, so a typo is an error at start rather
/// than a literal `{typo}` in every notification.
fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("linkTemplate has an unclosed '{'".into());
        };
        let name = &after[..close];
        if !payload::LINK_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "linkTemplate: unknown placeholder {{{name}}} (known: {})",
                payload::LINK_PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// One webhook's queue and what its delivery task needs.
pub struct Sink {
    pub webhook: Webhook,
    queue: Mutex<VecDeque<Arc<Event>>>,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
    /// The signing keys last read; kept when a re-read fails.
    keys: Mutex<Vec<Vec<u8>>>,
}

impl Sink {
    /// Appends without waiting; drops (and counts) the oldest event when full.
    fn offer(&self, event: Arc<Event>) {
        let depth = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= self.webhook.spec.queue_capacity {
                q.pop_front();
                self.metrics.webhook_dropped(&self.webhook.name, 1);
            }
            q.push_back(event);
            q.len()
        };
        self.metrics.webhook_queue_depth(&self.webhook.name, depth);
        self.wake.notify_one();
    }

    fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn take(&self, max: usize) -> Vec<Arc<Event>> {
        let (batch, depth) = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(max);
            (q.drain(..n).collect::<Vec<_>>(), q.len())
        };
        self.metrics.webhook_queue_depth(&self.webhook.name, depth);
        batch
    }

    /// Drops everything still queued (shutdown past the deadline), counted.
    fn abandon(&self) {
        let n = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len();
            q.clear();
            n
        };
        if n > 0 {
            self.metrics.webhook_dropped(&self.webhook.name, n as u64);
            tracing::warn!(webhook = %self.webhook.name, events = n, "shutdown deadline reached: undelivered webhook events dropped");
        }
        self.metrics.webhook_queue_depth(&self.webhook.name, 0);
    }

    /// The current signing keys: re-read from the files (tiny, and read once per delivery,
    /// not per event), falling back to the last good set so a Secret mid-update never stops
    /// deliveries. Never logged.
    fn signing_keys(&self) -> Vec<Vec<u8>> {
        let read: Result<Vec<Vec<u8>>, String> = self
            .webhook
            .spec
            .key_files
            .iter()
            .map(|p| read_key(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(k) => *keys = k,
            Err(e) => {
                tracing::warn!(webhook = %self.webhook.name, error = %e, "cannot re-read a signing key file; signing with the last keys read");
            }
        }
        keys.clone()
    }
}

/// The handle the HTTP handlers offer decisions to.
pub struct Dispatcher {
    sinks: Vec<Arc<Sink>>,
    pod: String,
}

impl Dispatcher {
    /// Offers the decisions of one request: an event is built only for decisions that some
    /// webhook wants, and shared by all of them. Never waits.
    pub fn offer<'a>(
        &self,
        pack: &CompiledPack,
        results: impl IntoIterator<Item = &'a ScanResult>,
    ) {
        for r in results {
            let mut event: Option<Arc<Event>> = None;
            for sink in &self.sinks {
                if sink.webhook.matches(r) {
                    let e = event
                        .get_or_insert_with(|| Arc::new(Event::from_result(pack, r, &self.pod)))
                        .clone();
                    sink.offer(e);
                }
            }
        }
    }
}

/// The delivery tasks; [`Runner::finish`] flushes them at shutdown.
pub struct Runner {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sinks: Vec<Arc<Sink>>,
    stop: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
}

/// Starts one delivery task per webhook. `pod` names the scanner in the payloads.
pub fn start(
    webhooks: Vec<Webhook>,
    metrics: Arc<Metrics>,
    pod: String,
) -> Result<(Arc<Dispatcher>, Runner), WebhookError> {
    let client = deliver::client(webhooks.iter().any(|w| w.uri.scheme_str() == Some("https")))?;
    let (stop, stop_rx) = tokio::sync::watch::channel(None);
    let mut sinks = Vec::new();
    let mut tasks = Vec::new();
    for webhook in webhooks {
        let missing: Vec<&PathBuf> = webhook
            .spec
            .key_files
            .iter()
            .filter(|p| key_missing(p))
            .collect();
        let keys = if missing.is_empty() {
            webhook
                .spec
                .key_files
                .iter()
                .map(|p| read_key(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| WebhookError::Key {
                    name: webhook.name.clone(),
                    path: webhook.spec.key_files.first().cloned().unwrap_or_default(),
                    message,
                })?
        } else {
            tracing::error!(webhook = %webhook.name, missing = ?missing, "signing key file missing (is the Secret created?); this webhook delivers nothing until it appears");
            Vec::new()
        };
        metrics.webhook_queue_depth(&webhook.name, 0);
        metrics.webhook_dropped(&webhook.name, 0);
        tracing::info!(webhook = %webhook.name, format = webhook.spec.format.as_str(), host = webhook.uri.host().unwrap_or(""), keys = keys.len(), "webhook configured");
        let sink = Arc::new(Sink {
            webhook,
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            metrics: metrics.clone(),
            keys: Mutex::new(keys),
        });
        tasks.push(tokio::spawn(deliver::run(
            sink.clone(),
            client.clone(),
            stop_rx.clone(),
        )));
        sinks.push(sink);
    }
    let pod = if pod.is_empty() {
        "unknown".to_string()
    } else {
        pod
    };
    Ok((
        Arc::new(Dispatcher {
            sinks: sinks.clone(),
            pod,
        }),
        Runner { tasks, sinks, stop },
    ))
}

impl Runner {
    /// Delivers what is queued (no batching delay, rate limits still apply) until `grace`
    /// has passed; then drops and counts the rest. Call after the last request was answered.
    pub async fn finish(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let _ = self.stop.send(Some(deadline));
        for t in self.tasks {
            let abort = t.abort_handle();
            // The tasks watch the deadline themselves; the margin only covers a task stuck
            // past it.
            if tokio::time::timeout_at(deadline + Duration::from_millis(100), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for s in &self.sinks {
            s.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn load_text(text: &str) -> Result<Vec<Webhook>, WebhookError> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "k", "secret\n");
        let text = text.replace("KEY", &dir.path().join("k").display().to_string());
        load(&write(dir.path(), "w.yaml", &text))
    }

    #[test]
    fn yaml_list_or_wrapped_with_defaults() {
        let ws = load_text("- url: https://a.example/x\n  minSeverity: high\n  keyFiles: [KEY]\n")
            .unwrap();
        assert_eq!(ws[0].name, "webhook-0");
        assert_eq!(ws[0].spec.format, Format::Json);
        assert_eq!(ws[0].spec.batch.max_events, 20);
        let ws = load_text(
            "webhooks:\n- name: s\n  url: https://hooks.slack.example/T/B/x\n  format: slack\n  verdicts: [block]\n  keyFiles: [KEY]\n",
        )
        .unwrap();
        assert_eq!(ws[0].spec.format, Format::Slack);
        assert!(load_text("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_webhook_not_the_url() {
        let e = load_text(
            "- name: a\n  url: http://h.example/TOKEN\n  verdicts: [block]\n  keyFiles: [KEY]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("webhook a") && e.contains("allowInsecureHttp"),
            "{e}"
        );
        assert!(!e.contains("TOKEN"), "{e}");
        let e = load_text("- name: a\n  url: https://h.example/\n  verdicts: [block]\n  keyFiles: [KEY]\n- name: a\n  url: https://h.example/\n  verdicts: [block]\n  keyFiles: [KEY]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("two webhooks"), "{e}");
        let e = load_text(
            "- url: https://h.example/\n  verdicts: [block]\n  keyFiles: [KEY, KEY, KEY]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("keyFiles"), "{e}");
        let e = load_text("- url: https://h.example/\n  verdicts: [block]\n  keyFiles: [KEY]\n  ratePerSecond: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ratePerSecond"), "{e}");
    }

    #[test]
    fn link_templates_are_checked_and_encoded() {
        assert!(check_template("https://d/{event_id}/{input_hash}").is_ok());
        assert!(check_template("https://d/{prompt}").is_err());
        assert!(check_template("https://d/{event_id").is_err());
        let (pack, r) = scanned("an evil plan, mail a@example.com");
        let e = Event::from_result(&pack, &r, "pod-1");
        let link = e.link("https://d/?h={input_hash}");
        assert!(link.starts_with("https://d/?h=hmac-sha256%3A"), "{link}");
    }

    fn scanned(text: &str) -> (CompiledPack, ScanResult) {
        let mut set = crate::compile::PackSet::new();
        set.insert(
            "p".into(),
            serde_yaml::from_str("version: '1'\nrules:\n- {id: bad, category: jailbreak, severity: high, weight: 70, keywords: {any: [evil]}}\n- {id: email, category: pii, severity: medium, weight: 20, detector: email}\n").unwrap(),
        );
        let pack = crate::compile::compile(&set, crate::policy::Policy::default_policy()).unwrap();
        let r = pack.scan(text, &crate::engine::InputHasher::new(b"k").unwrap());
        (pack, r)
    }

    #[test]
    fn thresholds_and_identifiers_only() {
        let ws = load_text("- {name: sev, url: 'https://h.example/', minSeverity: high, keyFiles: [KEY]}\n- {name: both, url: 'https://h.example/', minSeverity: critical, verdicts: [block], keyFiles: [KEY]}\n- {name: mild, url: 'https://h.example/', verdicts: [allow], keyFiles: [KEY]}\n").unwrap();
        let (pack, r) = scanned("an evil plan, mail a@example.com");
        assert!(ws[0].matches(&r));
        assert!(!ws[1].matches(&r), "no critical rule");
        assert_eq!(ws[2].matches(&r), r.effective_verdict() == Verdict::Allow);
        let e = Event::from_result(&pack, &r, "pod-1");
        assert_eq!(e.categories, ["jailbreak", "pii"]);
        assert_eq!(e.severities, ["medium", "high"]);
        assert_eq!(e.max_severity, Some("high"));
        for format in [Format::Json, Format::Slack, Format::Teams] {
            let body = payload::render(
                format,
                "w",
                "d",
                &[Arc::new(e.clone())],
                Some("https://d/{event_id}"),
            );
            let text = String::from_utf8(body).unwrap();
            assert!(
                !text.contains("evil plan") && !text.contains("a@example.com"),
                "{text}"
            );
        }
    }
}
