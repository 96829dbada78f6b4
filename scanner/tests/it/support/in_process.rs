//! `serve::run` inside the test's own tokio runtime, on a listener bound to `127.0.0.1:0`,
//! stopped through a channel instead of a signal: the service without a process around it.
//! What only a process shows (signals, exit codes, logs) stays with [`super::Server`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pd_scanner::limits::Limits;
use pd_scanner::serve::audit::Fsync;
use pd_scanner::serve::audit_rotate::Rotation;
use pd_scanner::serve::audit_writer::{AuditConfig, AuditFailure};
use pd_scanner::serve::ratelimit::RateLimit;
use pd_scanner::serve::reload::Sources;
use pd_scanner::serve::server::HttpLimits;
use pd_scanner::serve::{Listeners, ServeConfig, ServeError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{samples, KEY_A, KEY_B};

/// The configuration `pd-scanner serve` has with its default flags, serving the sample packs
/// with the test keys of `dir/keys` and the HMAC key `dir/hmac.key`; no audit, no TLS.
pub fn config(dir: &Path) -> ServeConfig {
    ServeConfig {
        sources: Sources {
            paths: vec![samples()],
            policy: None,
            limits: Limits::default(),
        },
        keys: Some(dir.join("keys")),
        no_auth: false,
        rate: RateLimit {
            per_second: 1000.0,
            burst: 2000,
        },
        max_prompt_bytes: 256 * 1024,
        max_batch: 64,
        reload_interval: Duration::from_millis(100),
        hmac_key_file: dir.join("hmac.key"),
        audit: AuditConfig {
            file: None,
            stdout: false,
            fsync: Fsync::Interval(Duration::from_millis(1000)),
            failure: AuditFailure::Closed,
            timeout: Duration::from_secs(5),
            rotation: Rotation::default(),
        },
        http: HttpLimits::default(),
        large_scan_slots: 2,
        large_scan_wait: Duration::from_secs(2),
        configmap: None,
        report_pod: None,
        tls: None,
        webhooks: Vec::new(),
        pod_name: "in-process".to_string(),
        usage_ledger: None,
        usage_flush_interval: Duration::from_secs(15),
    }
}

/// A service running in this test's runtime.
pub struct Service {
    /// The bound API address, `127.0.0.1:PORT`.
    pub addr: String,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), ServeError>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl super::Endpoint for Service {
    fn addr(&self) -> &str {
        &self.addr
    }
}

impl Service {
    /// Binds `127.0.0.1:0` and runs `serve::run` on it with [`config`] as `configure` leaves
    /// it. Requests may be sent at once: the socket is bound before `run` starts, so a
    /// connection waits in the backlog until startup is done.
    pub fn start(configure: impl FnOnce(&mut ServeConfig)) -> Service {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys"),
            format!("# test keys\nclient-a={KEY_A}\nclient-b={KEY_B}\n"),
        )
        .unwrap();
        let mut config = config(dir.path());
        configure(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = runtime.block_on(Listeners::bind(loopback, None)).unwrap();
        let addr = listeners.api.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let served = runtime.spawn(pd_scanner::serve::run(config, listeners, shutdown));
        Service {
            addr,
            dir,
            stop: Some(stop),
            served: Some(served),
            runtime: Some(runtime),
        }
    }

    /// Resolves the shutdown future `run` was given (what a signal does for the binary).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether `run` has returned.
    pub fn has_returned(&self) -> bool {
        self.served.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for `run` to return and gives its result. The 30 s are a liveness bound (a
    /// shutdown that never ends fails the test), not a speed target.
    pub fn wait(mut self) -> Result<(), ServeError> {
        let served = self.served.take().expect("run is awaited once");
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the service");
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), served).await })
            .expect("serve::run did not return within 30 s of its shutdown")
            .expect("serve::run panicked")
    }

    /// [`Service::begin_shutdown`], then [`Service::wait`].
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.begin_shutdown();
        self.wait()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.begin_shutdown();
        // A failed test must not hang on scans still running on the blocking pool.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
