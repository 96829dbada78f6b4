//! The audit writer: no decision is answered before its record is written.
//!
//! Handlers hand their decisions to one writer thread (which owns the hash chain, so records
//! are sealed in write order and the chain never forks) through a bounded queue, and wait for
//! the writer's answer before responding:
//!
//! - `--audit-fsync always`: the answer comes after the records are written *and* fsynced.
//!   Records waiting together are written and synced together (group commit), so the cost is
//!   one fsync per group, not per record.
//! - an interval, or `never`: the answer comes after the records are written to the file (the
//!   OS has them; a crash of the process loses nothing). Only a power failure or kernel crash
//!   can lose the records written in the last interval (`never`: whatever the OS had not
//!   flushed yet). The writer fsyncs on a timer, so the interval holds on an idle server too;
//!   `pd_audit_unsynced_seconds` records, at each fsync, how long the oldest record had waited:
//!   the window actually exposed.
//! - stdout: the answer comes after the lines were written to stdout.
//!
//! A failed write cuts the file back to its last complete record and rolls the chain back,
//! so the next write starts on a clean line. By default (`--audit-failure closed`) the
//! decisions are then refused (503 `audit_unavailable`) and `/readyz` reports not ready until a
//! write succeeds again; the writer retries every second with an event record that says how
//! many decisions were not recorded. With `--audit-failure open` they are answered anyway.
//!
//! Back-pressure is bounded: a handler waits at most `--audit-timeout-ms` for the queue and the
//! writer together, then fails as above; the queue holds at most [`QUEUE_REQUESTS`] requests.
//! Shutdown stops the writer after it has written what is queued; [`AuditWriter::finish`] waits
//! for that only until a deadline, since a blocked sink (a stdout nobody reads) can hang a
//! write forever — and nothing lost then was ever answered.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use crate::serve::audit::{
    write_anchor, Anchor, AuditChain, AuditError, AuditFile, AuditRecord, Decision, Fsync,
};
use crate::serve::metrics::Metrics;

/// Requests (each with its decisions) that may wait for the writer.
pub const QUEUE_REQUESTS: usize = 256;
/// Most decisions written (and synced) as one group.
const MAX_GROUP: usize = 4096;
/// How often a failing sink is retried while no decisions arrive.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// What happens to a decision whose record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFailure {
    /// Refuse it (503 `audit_unavailable`) and report not ready: nothing unaudited leaves.
    Closed,
    /// Answer it anyway, counting it in `pd_audit_write_errors_total`.
    Open,
}

/// How decisions are audited (`--audit-*` flags).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub file: Option<PathBuf>,
    pub stdout: bool,
    pub fsync: Fsync,
    pub failure: AuditFailure,
    /// Longest a request waits for its records to be written.
    pub timeout: Duration,
}

/// The audit log could not take the records of a request.
#[derive(Debug, thiserror::Error)]
#[error("audit records could not be written")]
pub struct AuditUnavailable;

struct Pending {
    decisions: Vec<Decision>,
    done: oneshot::Sender<bool>,
}

/// Whether the last write succeeded; shared by the writer, the handlers and `/readyz`.
#[derive(Debug)]
pub struct AuditHealth {
    up: AtomicBool,
}

impl AuditHealth {
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// The handlers' side: submit decisions and wait for them to be written.
pub struct AuditSink {
    tx: mpsc::Sender<Pending>,
    health: Arc<AuditHealth>,
    failure: AuditFailure,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl AuditSink {
    /// Records `decisions` and returns once they are durable per `--audit-fsync`. `Err` means
    /// the caller must not answer them (fail closed); with `--audit-failure open` this never
    /// fails.
    pub async fn record(&self, decisions: Vec<Decision>) -> Result<(), AuditUnavailable> {
        if decisions.is_empty() {
            return Ok(());
        }
        let n = decisions.len();
        let (done, written) = oneshot::channel();
        let pending = Pending { decisions, done };
        if self.failure == AuditFailure::Open && !self.health.up() {
            // Availability first: do not wait on a sink known to be failing (the writer
            // counts what it then fails to write).
            if self.tx.try_send(pending).is_err() {
                self.metrics.audit_errors(n);
            }
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let written = match tokio::time::timeout_at(deadline, self.tx.send(pending)).await {
            Ok(Ok(())) => match tokio::time::timeout_at(deadline, written).await {
                Ok(Ok(ok)) => ok,
                // Timed out or the writer is gone: never counted by the writer.
                _ => {
                    self.stalled(n);
                    false
                }
            },
            _ => {
                self.stalled(n);
                false
            }
        };
        if written {
            return Ok(());
        }
        match self.failure {
            AuditFailure::Open => Ok(()),
            AuditFailure::Closed => Err(AuditUnavailable),
        }
    }

    /// The writer did not take or write records in time (a blocked sink): counted, and the
    /// log reported down until the writer next succeeds.
    fn stalled(&self, decisions: usize) {
        self.metrics.audit_errors(decisions);
        self.health.up.store(false, Ordering::Release);
        self.metrics.audit_up(false);
    }

    /// Whether decisions can be answered now: false while writes fail and the failure mode is
    /// closed (`/readyz` reports not ready then).
    pub fn ready(&self) -> bool {
        self.failure == AuditFailure::Open || self.health.up()
    }
}

/// The writer thread, as shutdown sees it.
pub struct AuditWriter {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

/// Opens the file (repairing a torn tail, see [`AuditFile::open`]) and starts the writer:
/// the handlers get the sink, shutdown the writer.
pub fn start(
    config: &AuditConfig,
    metrics: Arc<Metrics>,
) -> Result<(AuditSink, AuditWriter), AuditError> {
    let (file, chain) = match &config.file {
        Some(p) => {
            let (f, c) = AuditFile::open(p, config.fsync)?;
            (Some(f), c)
        }
        None => (None, AuditChain::new()),
    };
    let health = Arc::new(AuditHealth {
        up: AtomicBool::new(true),
    });
    metrics.audit_up(true);
    let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
    let (stop, stop_rx) = watch::channel(false);
    let mut writer = Writer {
        file,
        stdout: config.stdout,
        chain,
        health: health.clone(),
        metrics: metrics.clone(),
        failure: config.failure,
        unrecorded: 0,
    };
    let thread = std::thread::Builder::new()
        .name("pd-audit".into())
        .spawn(move || writer.run(rx, stop_rx))
        .map_err(|source| AuditError::Io {
            path: config.file.clone().unwrap_or_else(|| PathBuf::from("-")),
            source,
        })?;
    let sink = AuditSink {
        tx,
        health,
        failure: config.failure,
        timeout: config.timeout,
        metrics,
    };
    Ok((sink, AuditWriter { stop, thread }))
}

impl AuditWriter {
    /// Tells the writer to write what is queued and stop, and waits for it until `deadline`.
    /// Returns whether it finished.
    pub async fn finish(self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let waited = tokio::time::timeout(deadline, async {
            while !thread.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::error!(
                deadline_ms = deadline.as_millis() as u64,
                "the audit writer did not finish before the shutdown deadline (a blocked sink?); exiting without it — no decision it held was answered"
            );
            return false;
        }
        let _ = thread.join();
        true
    }
}

struct Writer {
    file: Option<AuditFile>,
    stdout: bool,
    chain: AuditChain,
    health: Arc<AuditHealth>,
    metrics: Arc<Metrics>,
    failure: AuditFailure,
    /// Decisions whose records failed since the last successful write.
    unrecorded: u64,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Pending>, mut stop: watch::Receiver<bool>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "audit writer cannot start; every decision will fail to be recorded");
                return;
            }
        };
        if let Some(t) = self.file.as_ref().and_then(|f| f.recovered()).cloned() {
            let event = format!(
                "torn_tail_truncated: {} bytes after line {} were cut at start (a write cut short by a crash)",
                t.bytes, t.after_line
            );
            self.commit(Vec::new(), Some(event));
        }
        rt.block_on(async {
            loop {
                let timer = self.next_timer();
                let next = tokio::select! {
                    biased;
                    m = rx.recv() => m,
                    _ = stop.wait_for(|s| *s) => None,
                    _ = sleep_until(timer), if timer.is_some() => {
                        self.on_timer();
                        continue;
                    }
                };
                let Some(first) = next else { break };
                let mut group = vec![first];
                let mut n = group[0].decisions.len();
                while n < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(p) => {
                            n += p.decisions.len();
                            group.push(p);
                        }
                        Err(_) => break,
                    }
                }
                self.commit(group, None);
            }
        });
        // Shutdown: what is queued is written; nothing new is taken.
        rx.close();
        let mut rest = Vec::new();
        while let Ok(p) = rx.try_recv() {
            rest.push(p);
        }
        if !rest.is_empty() {
            self.commit(rest, None);
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.sync_now() {
                tracing::error!(error = %e, "audit log not synced at shutdown");
            }
        }
    }

    fn next_timer(&self) -> Option<tokio::time::Instant> {
        if !self.health.up() {
            return Some(tokio::time::Instant::now() + RETRY_EVERY);
        }
        self.file
            .as_ref()
            .and_then(AuditFile::sync_due)
            .map(tokio::time::Instant::from_std)
    }

    fn on_timer(&mut self) {
        if !self.health.up() {
            if self.unrecorded > 0 {
                // Retry with only the event record saying what was not recorded.
                self.commit(Vec::new(), None);
            } else if self.file.as_mut().is_none_or(|f| f.sync_now().is_ok()) {
                self.up();
            }
            return;
        }
        if let Some(f) = self.file.as_mut() {
            match f.sync_now() {
                Ok(waited) => {
                    if let Some(w) = waited {
                        self.metrics.audit_synced(w);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit log fsync failed");
                    self.down(0);
                }
            }
        }
    }

    /// Seals and writes a group (plus an event record first, if there is something to say)
    /// and tells every waiting request how it went.
    fn commit(&mut self, group: Vec<Pending>, event: Option<String>) {
        let saved = self.chain.clone();
        let now = SystemTime::now();
        let mut lines = Vec::new();
        let mut last = None;
        let mut push = |r: AuditRecord, lines: &mut Vec<u8>| {
            // Serializing strings and integers cannot fail; see `record_hash`.
            if let Ok(mut l) = serde_json::to_vec(&r) {
                l.push(b'\n');
                lines.extend_from_slice(&l);
            }
            last = Some(Anchor {
                seq: r.seq,
                hash: r.hash,
            });
        };
        if let Some(e) = event {
            push(self.chain.seal_event(e, now), &mut lines);
        }
        if self.unrecorded > 0 {
            let what = match self.failure {
                AuditFailure::Closed => "refused with 503 audit_unavailable",
                AuditFailure::Open => "answered without a record (--audit-failure open)",
            };
            let e = format!(
                "write_failed: records of {} decisions could not be written; they were {what}",
                self.unrecorded
            );
            push(self.chain.seal_event(e, now), &mut lines);
        }
        let mut dones = Vec::with_capacity(group.len());
        let mut n = 0u64;
        for p in group {
            n += p.decisions.len() as u64;
            for d in p.decisions {
                push(self.chain.seal(d, now), &mut lines);
            }
            dones.push(p.done);
        }
        if lines.is_empty() {
            return;
        }
        let written = self.write(&lines);
        if written.in_file {
            if let (Some(f), Some(a)) = (self.file.as_ref(), last.as_ref()) {
                if let Err(e) = write_anchor(&f.anchor_path(), a) {
                    tracing::warn!(error = %e, "audit anchor not updated");
                }
            }
        }
        let ok = match written.result {
            Ok(()) => {
                self.up();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, decisions = n, "audit records not written");
                if !written.in_file {
                    // Nothing kept them: the next records take their places in the chain.
                    self.chain = saved;
                }
                self.down(n);
                false
            }
        };
        for done in dones {
            let _ = done.send(ok);
        }
    }

    /// Writes to every sink; the records count as written only if all took them. The file
    /// goes first: a failed append is cut back, so it either has the records or not at all.
    fn write(&mut self, lines: &[u8]) -> Written {
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.append_lines(lines) {
                return Written {
                    in_file: false,
                    result: Err(e),
                };
            }
        }
        let in_file = self.file.is_some();
        if self.stdout {
            let mut out = std::io::stdout().lock();
            if let Err(source) = out.write_all(lines).and_then(|_| out.flush()) {
                return Written {
                    in_file,
                    result: Err(AuditError::Io {
                        path: PathBuf::from("<stdout>"),
                        source,
                    }),
                };
            }
        }
        Written {
            in_file,
            result: Ok(()),
        }
    }

    fn up(&mut self) {
        if !self.health.up() {
            tracing::info!(
                unrecorded = self.unrecorded,
                "audit records are being written again"
            );
        }
        self.unrecorded = 0;
        self.health.up.store(true, Ordering::Release);
        self.metrics.audit_up(true);
    }

    fn down(&mut self, decisions: u64) {
        self.unrecorded += decisions;
        self.metrics.audit_errors(decisions as usize);
        self.health.up.store(false, Ordering::Release);
        self.metrics.audit_up(false);
    }
}

/// What [`Writer::write`] did: whether the file has the records (then the chain keeps them,
/// even if another sink failed), and whether every sink took them.
struct Written {
    in_file: bool,
    result: Result<(), AuditError>,
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::audit::verify;

    fn decision(n: u32) -> Decision {
        Decision {
            tenant: None,
            policy: "p".into(),
            input_hash: format!("hmac-sha256:{n:064}"),
            verdict: "allow".into(),
            evaluated_verdict: None,
            score: n,
            rules: Vec::new(),
            pack_hash: "sha256:0".into(),
            latency_us: 1,
        }
    }

    fn pending(ds: Vec<Decision>) -> (Pending, oneshot::Receiver<bool>) {
        let (done, rx) = oneshot::channel();
        (
            Pending {
                decisions: ds,
                done,
            },
            rx,
        )
    }

    /// A full disk (/dev/full) that frees up: refused while failing, then the first write is
    /// an event record counting what was not recorded, and the chain is whole.
    #[cfg(unix)]
    #[test]
    fn a_failing_sink_refuses_then_recovers_with_an_event_record() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.jsonl");
        std::os::unix::fs::symlink("/dev/full", &full).unwrap();
        let (file, chain) = AuditFile::open(&full, Fsync::Always).unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(AuditHealth {
            up: AtomicBool::new(true),
        });
        let mut w = Writer {
            file: Some(file),
            stdout: false,
            chain,
            health: health.clone(),
            metrics,
            failure: AuditFailure::Closed,
            unrecorded: 0,
        };
        let (p, mut rx) = pending(vec![decision(1), decision(2)]);
        w.commit(vec![p], None);
        assert_eq!(rx.try_recv(), Ok(false));
        assert!(!health.up());
        assert_eq!(w.unrecorded, 2);
        assert!(w.next_timer().is_some(), "a failing sink is retried");

        // Space is back.
        let real = dir.path().join("audit.jsonl");
        std::fs::write(&real, "").unwrap();
        if let Some(f) = w.file.as_mut() {
            f.reopen_for_test(&real).unwrap();
        }
        w.on_timer();
        assert!(health.up());
        let (p, mut rx) = pending(vec![decision(3)]);
        w.commit(vec![p], None);
        assert_eq!(rx.try_recv(), Ok(true));

        let text = std::fs::read_to_string(&real).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["seq"], 1, "the failed records left no gap");
        assert!(lines[0]["event"]
            .as_str()
            .unwrap()
            .starts_with("write_failed: records of 2 decisions"));
        assert_eq!(lines[1]["score"], 3);
        assert_eq!(verify(text.as_bytes()).unwrap().records, 2);
    }
}
