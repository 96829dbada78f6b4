//! Prometheus metrics of the scan service. Label values come from closed sets (verdicts, routes,
//! status codes) or from the loaded bundle (policy name, rule ids) — never from a request, so
//! cardinality stays bounded whatever clients send.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::compile::PackRef;
use crate::engine::ScanResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScanLabels {
    verdict: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    category: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BundleLabels {
    name: String,
    version: String,
    hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookResultLabels {
    webhook: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookAttemptLabels {
    webhook: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: String,
}

/// Every metric the service exports, registered once.
pub struct Metrics {
    registry: Registry,
    scans: Family<ScanLabels, Counter>,
    duration: Histogram,
    rule_hits: Family<RuleLabels, Counter>,
    bundle_info: Family<BundleLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    reload_failing: Gauge,
    bundle_build: Histogram,
    http: Family<HttpLabels, Counter>,
    rate_limited: Counter,
    audit_errors: Counter,
    watch_up: Gauge,
    watch_errors: Counter,
    connections: Gauge,
    connections_refused: Counter,
    auth_throttled: Counter,
    keys_version: Gauge,
    keys: Gauge,
    key_reloads: Family<ResultLabels, Counter>,
    audit_up: Gauge,
    audit_unsynced: Histogram,
    large_scans_waiting: Gauge,
    large_scans_refused: Counter,
    tls_reloads: Family<ResultLabels, Counter>,
    /// A family without labels, so the series is absent until a certificate is loaded (a 0
    /// would read as long expired to an expiry alert on a scanner without TLS).
    tls_not_after: Family<Vec<(String, String)>, Gauge>,
    tls_handshake_failures: Family<ReasonLabels, Counter>,
    // Webhook notifications (`serve::webhook`); labelled by webhook name (from the
    // `--webhooks` file, never the URL).
    webhook_events: Family<WebhookResultLabels, Counter>,
    webhook_attempts: Family<WebhookAttemptLabels, Counter>,
    webhook_delivery: Histogram,
    webhook_queue_depth: Family<WebhookLabels, Gauge>,
    webhook_dropped: Family<WebhookLabels, Counter>,
    /// Usage metering and quotas ([`crate::serve::usage`]).
    pub usage: crate::serve::usage::UsageMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family, in the order `/metrics` lists them.
    // Over 80 lines: one registration per family in `/metrics` order, which interleaves the groups.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let scans = Family::<ScanLabels, Counter>::default();
        registry.register("pd_scans", "Scans by verdict and policy", scans.clone());
        // 10 µs .. ~0.3 s
        let duration = Histogram::new(exponential_buckets(0.000_01, 2.0, 16));
        registry.register(
            "pd_scan_duration_seconds",
            "Time spent scanning one prompt (engine only)",
            duration.clone(),
        );
        let rule_hits = Family::<RuleLabels, Counter>::default();
        registry.register("pd_rule_hits", "Matches by rule", rule_hits.clone());
        let bundle_info = Family::<BundleLabels, Gauge>::default();
        registry.register(
            "pd_bundle_info",
            "The bundle being served (value 1)",
            bundle_info.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "pd_bundle_reloads",
            "Bundle (re)loads by result: loaded or rejected",
            reloads.clone(),
        );
        // 1 ms .. ~16 s
        let bundle_build = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "pd_bundle_build_seconds",
            "Time to compile and check each bundle the scanner was given, loaded or rejected (on a blocking thread; the previous bundle serves until it is done)",
            bundle_build.clone(),
        );
        let reload_failing = Gauge::default();
        registry.register(
            "pd_bundle_reload_failing",
            "1 while the newest bundle sources are refused (the previous bundle, if any, keeps serving; /readyz says why)",
            reload_failing.clone(),
        );
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "pd_http_requests",
            "HTTP requests by route and status",
            http.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "pd_rate_limited",
            "Requests refused by the per-key rate limit",
            rate_limited.clone(),
        );
        let audit_errors = Counter::default();
        registry.register(
            "pd_audit_write_errors",
            "Decisions whose audit records could not be written (or not in time)",
            audit_errors.clone(),
        );
        let watch_up = Gauge::default();
        registry.register(
            "pd_bundle_watch_up",
            "1 while the ConfigMap watch (--configmap) is synced and is the bundle source",
            watch_up.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "pd_bundle_watch_errors",
            "Errors of the ConfigMap watch (each is retried with backoff)",
            watch_errors.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "pd_http_connections",
            "Open client connections",
            connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "pd_http_connections_refused",
            "Connections refused because --http-max-connections were open",
            connections_refused.clone(),
        );
        let auth_throttled = Counter::default();
        registry.register(
            "pd_auth_throttled",
            "Requests refused unchecked because their peer sent too many bad API keys",
            auth_throttled.clone(),
        );
        let keys_version = Gauge::default();
        registry.register(
            "pd_api_keys_version",
            "Version of the API key set: 1 at start, +1 for every reload that changed it",
            keys_version.clone(),
        );
        let keys = Gauge::default();
        registry.register("pd_api_keys", "API keys accepted", keys.clone());
        let key_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "pd_api_key_reloads",
            "API key set reloads by result: loaded or rejected",
            key_reloads.clone(),
        );
        let audit_up = Gauge::default();
        registry.register(
            "pd_audit_up",
            "1 while audit records are being written; 0 when the last write failed or timed out, or auditing is off",
            audit_up.clone(),
        );
        // 1 ms .. ~65 s
        let audit_unsynced = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "pd_audit_unsynced_seconds",
            "At each interval fsync of the audit file, how long its oldest record had waited: the window a power failure could lose",
            audit_unsynced.clone(),
        );
        let large_scans_waiting = Gauge::default();
        registry.register(
            "pd_large_scans_waiting",
            "Large scans (over 16 KiB) waiting for one of the --large-scan-slots",
            large_scans_waiting.clone(),
        );
        let large_scans_refused = Counter::default();
        registry.register(
            "pd_large_scans_refused",
            "Large scans refused with 503 busy after waiting --large-scan-wait-ms for a slot",
            large_scans_refused.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "pd_tls_reloads",
            "TLS certificate reloads after a change of the files, by result: loaded or rejected (the previous certificate keeps serving)",
            tls_reloads.clone(),
        );
        let tls_not_after = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "pd_tls_cert_not_after_seconds",
            "notAfter of the TLS certificate being served, Unix seconds (absent without TLS)",
            tls_not_after.clone(),
        );
        let tls_handshake_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "pd_tls_handshake_failures",
            "TLS handshakes that did not complete, by reason: timeout, not_tls, client_certificate, protocol or io",
            tls_handshake_failures.clone(),
        );
        let webhook_events = Family::<WebhookResultLabels, Counter>::default();
        registry.register(
            "pd_webhook_events",
            "Webhook events by result: delivered (2xx), rejected (4xx, not retried) or failed (retries exhausted or shutdown deadline)",
            webhook_events.clone(),
        );
        let webhook_attempts = Family::<WebhookAttemptLabels, Counter>::default();
        registry.register(
            "pd_webhook_attempts",
            "Webhook HTTP attempts by outcome: success, client_error, server_error, timeout, connect_error or error",
            webhook_attempts.clone(),
        );
        // 1 ms .. ~33 s
        let webhook_delivery = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "pd_webhook_delivery_seconds",
            "Duration of one webhook HTTP attempt (connect, send, response)",
            webhook_delivery.clone(),
        );
        let webhook_queue_depth = Family::<WebhookLabels, Gauge>::default();
        registry.register(
            "pd_webhook_queue_depth",
            "Webhook events waiting in the in-memory queue",
            webhook_queue_depth.clone(),
        );
        let webhook_dropped = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "pd_webhook_dropped",
            "Webhook events dropped undelivered: the oldest when the queue was full, or what was queued at the shutdown deadline",
            webhook_dropped.clone(),
        );
        let usage = crate::serve::usage::UsageMetrics::register(&mut registry);
        Metrics {
            usage,
            registry,
            webhook_events,
            webhook_attempts,
            webhook_delivery,
            webhook_queue_depth,
            webhook_dropped,
            large_scans_waiting,
            large_scans_refused,
            tls_reloads,
            tls_not_after,
            tls_handshake_failures,
            audit_unsynced,
            connections,
            connections_refused,
            auth_throttled,
            keys_version,
            keys,
            key_reloads,
            audit_up,
            watch_up,
            watch_errors,
            scans,
            duration,
            rule_hits,
            bundle_info,
            reloads,
            reload_failing,
            bundle_build,
            http,
            rate_limited,
            audit_errors,
        }
    }

    pub fn scanned(&self, r: &ScanResult, engine_seconds: f64) {
        self.scans
            .get_or_create(&ScanLabels {
                verdict: r.verdict.as_str().to_string(),
                policy: r.policy.clone(),
            })
            .inc();
        self.duration.observe(engine_seconds);
        for a in &r.advisories {
            self.rule_hits
                .get_or_create(&RuleLabels {
                    rule: a.rule_id.clone(),
                    category: a.category.as_str().to_string(),
                    severity: a.severity.as_str().to_string(),
                })
                .inc();
        }
    }

    pub fn bundle_loaded(&self, pack: &PackRef) {
        self.bundle_info.clear();
        self.bundle_info
            .get_or_create(&BundleLabels {
                name: pack.name.clone(),
                version: pack.version.clone(),
                hash: pack.hash.clone(),
            })
            .set(1);
        self.reload("loaded");
        self.bundle_reload_failing(false);
    }

    pub fn bundle_rejected(&self) {
        self.reload("rejected");
        self.bundle_reload_failing(true);
    }

    /// How long one bundle took from its sources to loaded or rejected.
    pub fn bundle_built(&self, took: std::time::Duration) {
        self.bundle_build.observe(took.as_secs_f64());
    }

    /// Whether the newest sources are refused (`pd_bundle_reload_failing`).
    pub fn bundle_reload_failing(&self, failing: bool) {
        self.reload_failing.set(i64::from(failing));
    }

    fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn http(&self, route: &'static str, status: u16) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Decisions whose audit records could not be written.
    pub fn audit_errors(&self, decisions: usize) {
        self.audit_errors.inc_by(decisions as u64);
    }

    pub fn bundle_watch_up(&self, up: bool) {
        self.watch_up.set(i64::from(up));
    }

    pub fn bundle_watch_error(&self) {
        self.watch_errors.inc();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn auth_throttled(&self) {
        self.auth_throttled.inc();
    }

    /// A key set was installed: its version and size.
    pub fn keys_loaded(&self, version: u64, count: usize) {
        self.keys_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.keys.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn key_reload(&self, loaded: bool) {
        self.key_reloads
            .get_or_create(&ResultLabels {
                result: if loaded { "loaded" } else { "rejected" }.to_string(),
            })
            .inc();
    }

    pub fn audit_synced(&self, waited: std::time::Duration) {
        self.audit_unsynced.observe(waited.as_secs_f64());
    }

    pub fn audit_up(&self, up: bool) {
        self.audit_up.set(i64::from(up));
    }

    pub fn tls_reload(&self, loaded: bool) {
        self.tls_reloads
            .get_or_create(&ResultLabels {
                result: if loaded { "loaded" } else { "rejected" }.to_string(),
            })
            .inc();
    }

    /// The served certificate's `notAfter`, Unix seconds.
    pub fn tls_not_after(&self, unix_seconds: i64) {
        self.tls_not_after
            .get_or_create(&Vec::new())
            .set(unix_seconds);
    }

    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn large_scan_waiting(&self, delta: i64) {
        self.large_scans_waiting.inc_by(delta);
    }

    pub fn large_scan_refused(&self) {
        self.large_scans_refused.inc();
    }

    pub fn webhook_events(&self, webhook: &str, result: &str, n: u64) {
        self.webhook_events
            .get_or_create(&WebhookResultLabels {
                webhook: webhook.to_string(),
                result: result.to_string(),
            })
            .inc_by(n);
    }

    pub fn webhook_attempt(&self, webhook: &str, outcome: &str) {
        self.webhook_attempts
            .get_or_create(&WebhookAttemptLabels {
                webhook: webhook.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn webhook_delivery_seconds(&self, seconds: f64) {
        self.webhook_delivery.observe(seconds);
    }

    pub fn webhook_queue_depth(&self, webhook: &str, depth: usize) {
        self.webhook_queue_depth
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_string(),
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Creates the series at 0 too (`n` = 0), so alerts see it before the first drop.
    pub fn webhook_dropped(&self, webhook: &str, n: u64) {
        self.webhook_dropped
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_string(),
            })
            .inc_by(n);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
