//! Operator health and Prometheus metrics, served on [`DEFAULT_ADDR`] (`/healthz`, `/readyz`,
//! `/metrics`). Labels are the reconciled kind only, a closed set of three, so cardinality
//! never depends on how many objects exist.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Operator health/metrics address (ARCHITECTURE: operator health/metrics on 8081).
pub const DEFAULT_ADDR: &str = "0.0.0.0:8081";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~16 s: a reconcile is a handful of API round trips plus compiling packs.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Where this replica is in its life; `/readyz` and `pd_operator_leader` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the leader Lease. Ready: a standby must pass its readiness probe, or a
    /// rolling update of the operator could never finish (the new pod cannot lead while the
    /// old one holds the Lease).
    Standby = 0,
    /// Leading (or running without election), controllers started, watch caches not yet
    /// filled: not ready, so nobody mistakes an operator that has seen nothing for a working one.
    Syncing = 1,
    /// Every controller's cache holds a full initial list.
    Ready = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Standby,
            1 => Phase::Syncing,
            _ => Phase::Ready,
        }
    }
}

/// `pd_reconcile_total`, `pd_reconcile_errors_total`, `pd_reconcile_duration_seconds` by kind,
/// `pd_operator_leader`, and the replica's [`Phase`].
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    leader: Gauge,
    phase: AtomicU8,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("pd_reconcile", "Reconciles by kind", reconciles.clone());
        let errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "pd_reconcile_errors",
            "Failed reconciles by kind (retried with backoff)",
            errors.clone(),
        );
        let duration = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "pd_reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "pd_operator_leader",
            "1 while this replica holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
            phase: AtomicU8::new(Phase::Standby as u8),
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.leader.set(i64::from(phase != Phase::Standby));
    }

    /// Records one reconcile of `kind`.
    pub fn observe(&self, kind: &str, took: Duration, ok: bool) {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        if !ok {
            self.errors.get_or_create(&labels).inc();
        }
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

async fn readyz(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    match m.phase() {
        Phase::Standby => (StatusCode::OK, "standby: waiting for the leader lease\n"),
        Phase::Syncing => (
            StatusCode::SERVICE_UNAVAILABLE,
            "syncing: the controllers' caches are not filled yet\n",
        ),
        Phase::Ready => (StatusCode::OK, "ok\n"),
    }
}

/// Serves `/healthz` (`ok` while the process runs), `/readyz` (by [`Phase`]) and `/metrics` on
/// `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics_state: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(metrics_state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let m = Arc::new(Metrics::new());
        m.observe("ScanPolicy", Duration::from_millis(3), true);
        m.observe("ScanPolicy", Duration::from_millis(3), false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, m.clone(), async {
            let _ = stopped.await;
        }));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let standby = get(addr, "/readyz").await;
        assert!(standby.starts_with("HTTP/1.1 200"), "{standby}");
        assert!(standby.contains("standby"), "{standby}");
        assert!(get(addr, "/metrics").await.contains("pd_operator_leader 0"));
        m.set_phase(Phase::Syncing);
        let syncing = get(addr, "/readyz").await;
        assert!(syncing.starts_with("HTTP/1.1 503"), "{syncing}");
        m.set_phase(Phase::Ready);
        let ready = get(addr, "/readyz").await;
        assert!(
            ready.starts_with("HTTP/1.1 200") && ready.ends_with("ok\n"),
            "{ready}"
        );
        let body = get(addr, "/metrics").await;
        assert!(body.contains("pd_operator_leader 1"), "{body}");
        assert!(
            body.contains("pd_reconcile_total{kind=\"ScanPolicy\"} 2"),
            "{body}"
        );
        assert!(body.contains("pd_reconcile_errors_total{kind=\"ScanPolicy\"} 1"));
        assert!(body.contains("pd_reconcile_duration_seconds_count{kind=\"ScanPolicy\"} 2"));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
