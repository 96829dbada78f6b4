//! The delivery task of one webhook: batch, pace, sign, send, retry.
//!
//! Results are counted per event in `pd_webhook_events_total{webhook, result}`:
//! `delivered` (2xx), `rejected` (a 4xx other than 408/429: the receiver refused this body, so
//! sending it again cannot help), `failed` (retries exhausted, or the shutdown deadline
//! reached) and `no_key` (a signing key file is missing, e.g. its Secret does not exist yet:
//! nothing is sent unsigned). Each attempt is counted in `pd_webhook_attempts_total{webhook, outcome}` —
//! `success`, `client_error`, `server_error`, `timeout`, `connect_error`, `error` — which is
//! where an unreachable, misconfigured or hanging receiver shows up.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{payload, sign, Sink, WebhookError};

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Most of a response body read (then discarded) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The HTTP(S) client shared by all webhooks: rustls with the ring provider (as the scan API
/// and kube use) and the system's CA certificates (`SSL_CERT_FILE` overrides them).
pub fn client(need_roots: bool) -> Result<HttpClient, WebhookError> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::CaCertificates(e.to_string()))?;
    let tls = match builder.clone().with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) if need_roots => return Err(WebhookError::CaCertificates(e.to_string())),
        // Only http:// webhooks: no CA certificates needed.
        Err(_) => builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2)
        .build(https))
}

/// A token bucket: `burst` requests back to back, refilled at `rate` per second.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: u32) -> Self {
        Bucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// How long until a token is available (zero: now).
    fn wait(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// The deadline once shutdown started.
fn deadline(stop: &watch::Receiver<Option<Instant>>) -> Option<Instant> {
    *stop.borrow()
}

/// Resolves when shutdown starts (never again after that).
async fn stopping(stop: &mut watch::Receiver<Option<Instant>>) {
    if stop.borrow().is_some() || stop.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps `d`, cut short by shutdown; false when the shutdown deadline comes first.
async fn sleep_until_or_deadline(
    until: Instant,
    stop: &mut watch::Receiver<Option<Instant>>,
) -> bool {
    loop {
        match deadline(stop) {
            Some(d) if d < until => {
                tokio::time::sleep_until(d).await;
                return false;
            }
            Some(_) => {
                tokio::time::sleep_until(until).await;
                return true;
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => return true,
                    _ = stopping(stop) => {}
                }
            }
        }
    }
}

/// The loop of one webhook, until shutdown has flushed its queue or reached the deadline.
pub async fn run(sink: Arc<Sink>, client: HttpClient, mut stop: watch::Receiver<Option<Instant>>) {
    let spec = &sink.webhook.spec;
    let mut bucket = Bucket::new(spec.rate_per_second, spec.burst);
    let max = spec.batch.max_events;
    let max_delay = Duration::from_millis(spec.batch.max_delay_ms);
    loop {
        // 1. Wait for an event.
        if sink.len() == 0 {
            if deadline(&stop).is_some() {
                return;
            }
            tokio::select! {
                _ = sink.wake.notified() => {}
                _ = stopping(&mut stop) => {}
            }
            continue;
        }
        // 2. Let a batch fill, up to `max_delay` after its first event (not at shutdown).
        let window = Instant::now() + max_delay;
        while deadline(&stop).is_none() && sink.len() < max && Instant::now() < window {
            tokio::select! {
                _ = sink.wake.notified() => {}
                _ = tokio::time::sleep_until(window) => {}
                _ = stopping(&mut stop) => {}
            }
        }
        // 3. Wait for the rate limit.
        let wait = bucket.wait(Instant::now());
        if !wait.is_zero() && !sleep_until_or_deadline(Instant::now() + wait, &mut stop).await {
            return; // past the deadline: `Runner::finish` counts what is left as dropped
        }
        bucket.take();
        // 4. Send.
        let batch = sink.take(max);
        if !batch.is_empty() {
            deliver(&sink, &client, batch, &mut stop).await;
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Do not retry.
    Rejected(u16),
    /// Retry (with the outcome label).
    Retry(&'static str),
    /// The request could not be built: give up (already counted as an `error` attempt).
    Unsendable,
}

/// Sends one batch, retrying transient failures. The body and `X-PD-Event-Id` are fixed for
/// the delivery; each attempt gets a fresh timestamp and signature, so a retry minutes later
/// is still inside the receiver's replay window.
async fn deliver(
    sink: &Sink,
    client: &HttpClient,
    batch: Vec<Arc<payload::Event>>,
    stop: &mut watch::Receiver<Option<Instant>>,
) {
    let Some(delivery) = Delivery::prepare(sink, batch) else {
        return;
    };
    let retry = &sink.webhook.spec.retry;
    let mut attempt: u32 = 0;
    loop {
        let Some(limit) = delivery.time_limit(stop) else {
            delivery.abandon();
            return;
        };
        match delivery.attempt(client, limit).await {
            Attempt::Delivered => {
                delivery.count("delivered");
                return;
            }
            Attempt::Rejected(status) => {
                delivery.count("rejected");
                tracing::warn!(webhook = %delivery.name(), status, events = delivery.events, "webhook receiver refused the delivery (4xx): not retried");
                return;
            }
            Attempt::Unsendable => {
                delivery.count("failed");
                return;
            }
            Attempt::Retry(outcome) if attempt >= retry.max_retries => {
                delivery.count("failed");
                tracing::warn!(webhook = %delivery.name(), outcome, attempts = attempt + 1, events = delivery.events, "webhook delivery failed after retries");
                return;
            }
            Attempt::Retry(outcome) => {
                let backoff = backoff(attempt, retry.initial_backoff_ms, retry.max_backoff_ms);
                tracing::debug!(webhook = %delivery.name(), outcome, attempt = attempt + 1, backoff_ms = backoff.as_millis() as u64, "webhook delivery will be retried");
                if !sleep_until_or_deadline(Instant::now() + backoff, stop).await {
                    delivery.abandon();
                    return;
                }
                attempt += 1;
            }
        }
    }
}

/// One batch rendered for sending: what stays the same across its attempts.
struct Delivery<'a> {
    sink: &'a Sink,
    /// `X-PD-Event-Id`: the receiver's key for de-duplicating retries.
    id: String,
    body: Bytes,
    keys: Vec<Vec<u8>>,
    /// Events in the batch, the unit of `pd_webhook_events_total`.
    events: u64,
}

impl<'a> Delivery<'a> {
    /// Renders the batch (then drops it: only the body is kept across retries); `None`, with
    /// the events counted as `no_key`, when no signing key can be read — never sent unsigned.
    fn prepare(sink: &'a Sink, batch: Vec<Arc<payload::Event>>) -> Option<Self> {
        let w = &sink.webhook;
        let events = batch.len() as u64;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let body = Bytes::from(payload::render(
            w.spec.format,
            &w.name,
            &id,
            &batch,
            w.spec.link_template.as_deref(),
        ));
        drop(batch);
        let keys = sink.signing_keys();
        if keys.is_empty() {
            // Never unsigned: a webhook whose key file is missing refuses its events, counted.
            sink.metrics.webhook_events(&w.name, "no_key", events);
            tracing::warn!(webhook = %w.name, events, "no signing key (missing key file): events not delivered");
            return None;
        }
        Some(Delivery {
            sink,
            id,
            body,
            keys,
            events,
        })
    }

    fn name(&self) -> &str {
        &self.sink.webhook.name
    }

    /// Counts the batch's events under `result`.
    fn count(&self, result: &str) {
        self.sink
            .metrics
            .webhook_events(self.name(), result, self.events);
    }

    /// The shutdown deadline cut the delivery short: its events count as failed.
    fn abandon(&self) {
        self.count("failed");
        tracing::warn!(webhook = %self.name(), events = self.events, "shutdown deadline reached: delivery abandoned");
    }

    /// The time the next attempt may take: the configured timeout, shortened to the shutdown
    /// deadline; `None` once that deadline has passed.
    fn time_limit(&self, stop: &watch::Receiver<Option<Instant>>) -> Option<Duration> {
        let timeout = Duration::from_millis(self.sink.webhook.spec.timeout_ms);
        let now = Instant::now();
        match deadline(stop) {
            Some(d) if d <= now => None,
            Some(d) => Some(timeout.min(d - now)),
            None => Some(timeout),
        }
    }

    /// The POST of this attempt, signed over a fresh timestamp.
    fn request(&self) -> Result<hyper::Request<Full<Bytes>>, hyper::http::Error> {
        let timestamp = sign::unix_now().to_string();
        let signature = sign::header(&self.keys, &timestamp, &self.body);
        hyper::Request::post(self.sink.webhook.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("pd-scanner/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-pd-timestamp", &timestamp)
            .header("x-pd-signature", &signature)
            .header("x-pd-event-id", &self.id)
            .body(Full::new(self.body.clone()))
    }

    /// One attempt within `limit`, timed and counted in `pd_webhook_attempts_total`.
    async fn attempt(&self, client: &HttpClient, limit: Duration) -> Attempt {
        let metrics = &self.sink.metrics;
        let Ok(request) = self.request() else {
            // Not expected: the URI was validated and the header values are ASCII.
            metrics.webhook_attempt(self.name(), "error");
            return Attempt::Unsendable;
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, async {
            let response = client.request(request).await?;
            let status = response.status();
            // Read a little of the body so the connection can be reused; errors do not matter.
            let _ = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        })
        .await;
        metrics.webhook_delivery_seconds(started.elapsed().as_secs_f64());
        let (label, result) = classify(outcome);
        metrics.webhook_attempt(self.name(), label);
        result
    }
}

/// The outcome label of an attempt and what to do next: a 4xx other than 408/429 means the
/// receiver refused this body, so sending it again cannot help; anything else not 2xx may pass
/// on a retry.
fn classify(
    outcome: Result<
        Result<hyper::StatusCode, hyper_util::client::legacy::Error>,
        tokio::time::error::Elapsed,
    >,
) -> (&'static str, Attempt) {
    match outcome {
        Err(_) => ("timeout", Attempt::Retry("timeout")),
        Ok(Err(e)) => {
            let outcome = if e.is_connect() {
                "connect_error"
            } else {
                "error"
            };
            (outcome, Attempt::Retry(outcome))
        }
        Ok(Ok(status)) if status.is_success() => ("success", Attempt::Delivered),
        Ok(Ok(status)) if status.is_client_error() && status != 408 && status != 429 => {
            ("client_error", Attempt::Rejected(status.as_u16()))
        }
        Ok(Ok(status)) => {
            let outcome = if status.is_client_error() {
                "client_error"
            } else {
                "server_error"
            };
            (outcome, Attempt::Retry(outcome))
        }
    }
}

/// Full jitter: uniform in [0, min(max, initial × 2^attempt)] — retries of many scanners
/// spread out instead of arriving in waves.
fn backoff(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let cap = initial_ms
        .saturating_mul(1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX))
        .min(max_ms);
    Duration::from_millis(rand::random_range(0..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..40 {
            let b = backoff(attempt, 100, 5000);
            assert!(
                b <= Duration::from_millis(100u64.saturating_mul(1 << attempt.min(20)).min(5000))
            );
        }
        let samples: std::collections::HashSet<_> =
            (0..50).map(|_| backoff(5, 100, 5000)).collect();
        assert!(samples.len() > 1, "jitter");
    }

    #[tokio::test]
    async fn bucket_paces() {
        let mut b = Bucket::new(2.0, 1);
        assert_eq!(b.wait(Instant::now()), Duration::ZERO);
        b.take();
        let w = b.wait(Instant::now());
        assert!(
            w > Duration::from_millis(400) && w <= Duration::from_millis(500),
            "{w:?}"
        );
    }
}
