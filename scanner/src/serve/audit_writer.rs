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
    last_record, write_anchor, Anchor, AuditChain, AuditError, AuditFile, AuditRecord, Decision,
    Fsync,
};
use crate::serve::audit_rotate::{self, Rotation};
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
    /// Rotation and retention of `file` (see [`audit_rotate`]).
    pub rotation: Rotation,
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
    let (chain, rotation_state) = match (&config.file, &file) {
        (Some(p), Some(f)) if config.rotation.active() => resume_rotated(p, f, chain)?,
        _ => (chain, RotationState::default()),
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
        rotation: config.rotation,
        rotation_state,
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

/// Where the rotated log stands (see [`audit_rotate`]).
#[derive(Debug, Default)]
struct RotationState {
    /// UTC day (`YYYY-MM-DD`) of the active file's records; `None` while it has none.
    day: Option<String>,
    /// Event records to write before the next records: the `rotated:` header of a new active
    /// file, `retention_removed:` records.
    events: Vec<String>,
}

/// With rotation on: the chain and day of the active file. An empty active file next to
/// rotated ones (a crash between a rotation's rename and the new file's first record)
/// continues the newest rotated file's chain, starting with a `rotated:` record, instead of
/// starting a second chain at seq 1.
fn resume_rotated(
    active: &std::path::Path,
    file: &AuditFile,
    chain: AuditChain,
) -> Result<(AuditChain, RotationState), AuditError> {
    let io_err = |source| AuditError::Io {
        path: active.to_path_buf(),
        source,
    };
    if !file.is_empty() {
        let day = last_record(active)?.map(|r| r.ts.chars().take(10).collect());
        return Ok((
            chain,
            RotationState {
                day,
                events: Vec::new(),
            },
        ));
    }
    let newest = audit_rotate::rotated_files(active).map_err(io_err)?.pop();
    match newest {
        Some(prev) => match last_record(&prev)? {
            Some(last) => Ok((
                AuditChain::resume(&last),
                RotationState {
                    day: None,
                    events: vec![audit_rotate::rotated_event(&prev, last.seq)],
                },
            )),
            None => Ok((chain, RotationState::default())),
        },
        None => Ok((chain, RotationState::default())),
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
    rotation: Rotation,
    rotation_state: RotationState,
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
        self.sweep(SystemTime::now());
        if !self.rotation_state.events.is_empty() {
            self.commit(Vec::new(), None);
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
        let sync = self
            .file
            .as_ref()
            .and_then(AuditFile::sync_due)
            .map(tokio::time::Instant::from_std);
        match (sync, self.next_midnight()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// With daily rotation and records in the active file: just after the next UTC midnight,
    /// so an idle server rotates too.
    fn next_midnight(&self) -> Option<tokio::time::Instant> {
        if !self.rotation.daily() || self.rotation_state.day.is_none() {
            return None;
        }
        let since_epoch = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        let left = 86_400 - since_epoch % 86_400;
        Some(tokio::time::Instant::now() + Duration::from_secs(left) + Duration::from_millis(10))
    }

    /// Whether the active file must be rotated before records stamped `now` are written.
    fn rotation_due(&self, now: SystemTime) -> bool {
        let Some(file) = self.file.as_ref() else {
            return false;
        };
        let new_day = self.rotation.daily()
            && self
                .rotation_state
                .day
                .as_ref()
                .is_some_and(|d| *d != audit_rotate::utc_day(now));
        let full = self
            .rotation
            .max_bytes
            .is_some_and(|max| !file.is_empty() && file.len() >= max);
        new_day || full
    }

    /// Renames the active file to its rotated name, starts a new one and queues its
    /// `rotated:` record, then applies retention. On failure the old file stays active.
    fn rotate(&mut self, now: SystemTime) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let active = file.path().to_path_buf();
        if let Err(e) = file.sync_now() {
            tracing::error!(error = %e, "audit log not synced before rotation; not rotating");
            return;
        }
        let target = audit_rotate::rotated_name(&active, now);
        if let Err(e) = std::fs::rename(&active, &target) {
            tracing::error!(error = %e, file = %active.display(), "cannot rotate the audit log; writing on to it");
            return;
        }
        match AuditFile::open(&active, self.rotation_fsync()) {
            Ok((new, _)) => {
                self.file = Some(new);
                let last_seq = self.chain.next_seq().saturating_sub(1);
                self.rotation_state.day = None;
                self.rotation_state
                    .events
                    .insert(0, audit_rotate::rotated_event(&target, last_seq));
                tracing::info!(rotated = %target.display(), last_seq, "audit log rotated");
            }
            Err(e) => {
                // Keep writing to the renamed file: the chain stays whole, the name is off.
                tracing::error!(error = %e, file = %active.display(), "cannot start a new audit file after rotation; writing on to the rotated one");
                if let Some(f) = self.file.as_mut() {
                    f.set_path(target);
                }
                return;
            }
        }
        self.sweep(now);
    }

    /// Deletes rotated files past retention and queues a record for each.
    fn sweep(&mut self, now: SystemTime) {
        let (Some(days), Some(file)) = (self.rotation.retention_days, self.file.as_ref()) else {
            return;
        };
        let removed = audit_rotate::sweep(file.path(), now, days);
        self.rotation_state.events.extend(removed);
    }

    fn rotation_fsync(&self) -> Fsync {
        self.file
            .as_ref()
            .map(AuditFile::fsync)
            .unwrap_or(Fsync::Never)
    }

    fn on_timer(&mut self) {
        if self.health.up() && self.rotation_due(SystemTime::now()) {
            self.commit(Vec::new(), None);
        }
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
        let now = SystemTime::now();
        if self.rotation_due(now) {
            self.rotate(now);
        }
        let saved = self.chain.clone();
        let rotation_events = std::mem::take(&mut self.rotation_state.events);
        let sealed = self.seal(&rotation_events, event, group, now);
        if sealed.lines.is_empty() {
            return;
        }
        let written = self.write(&sealed.lines);
        self.note_written(written.in_file, rotation_events, sealed.last.as_ref(), now);
        let ok = match written.result {
            Ok(()) => {
                self.up();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, decisions = sealed.decisions, "audit records not written");
                if !written.in_file {
                    // Nothing kept them: the next records take their places in the chain.
                    self.chain = saved;
                }
                self.down(sealed.decisions);
                false
            }
        };
        for done in sealed.dones {
            let _ = done.send(ok);
        }
    }

    /// Seals the records of one commit in chain order: pending rotation records, `event`,
    /// the `write_failed:` record owed since the last failure, then the group's decisions.
    fn seal(
        &mut self,
        rotation_events: &[String],
        event: Option<String>,
        group: Vec<Pending>,
        now: SystemTime,
    ) -> Sealed {
        let mut sealed = Sealed {
            lines: Vec::new(),
            last: None,
            dones: Vec::with_capacity(group.len()),
            decisions: 0,
        };
        for e in rotation_events.iter().cloned() {
            sealed.push(self.chain.seal_event(e, now));
        }
        if let Some(e) = event {
            sealed.push(self.chain.seal_event(e, now));
        }
        if let Some(e) = self.write_failed_event() {
            sealed.push(self.chain.seal_event(e, now));
        }
        for p in group {
            sealed.decisions += p.decisions.len() as u64;
            for d in p.decisions {
                sealed.push(self.chain.seal(d, now));
            }
            sealed.dones.push(p.done);
        }
        sealed
    }

    /// The `write_failed:` record saying how many decisions went unrecorded and how they were
    /// answered, while there are any: the chain itself shows the gap.
    fn write_failed_event(&self) -> Option<String> {
        if self.unrecorded == 0 {
            return None;
        }
        let what = match self.failure {
            AuditFailure::Closed => "refused with 503 audit_unavailable",
            AuditFailure::Open => "answered without a record (--audit-failure open)",
        };
        Some(format!(
            "write_failed: records of {} decisions could not be written; they were {what}",
            self.unrecorded
        ))
    }

    /// Bookkeeping after a write, whatever its result: the active file's day, rotation records
    /// still owed (when the file did not take them), and the anchor of the file's last record.
    fn note_written(
        &mut self,
        in_file: bool,
        rotation_events: Vec<String>,
        last: Option<&Anchor>,
        now: SystemTime,
    ) {
        if in_file && self.rotation_state.day.is_none() {
            self.rotation_state.day = Some(audit_rotate::utc_day(now));
        }
        if !in_file && self.file.is_some() {
            // Not in the file: the rotation records are written with the next records.
            self.rotation_state.events = rotation_events;
        }
        if in_file {
            if let (Some(f), Some(a)) = (self.file.as_ref(), last) {
                if let Err(e) = write_anchor(&f.anchor_path(), a) {
                    tracing::warn!(error = %e, "audit anchor not updated");
                }
            }
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

/// The records of one commit, sealed and serialized, and the requests waiting on them.
struct Sealed {
    /// JSON Lines, in chain order.
    lines: Vec<u8>,
    /// The last record's anchor, written next to the file once it holds the lines.
    last: Option<Anchor>,
    dones: Vec<oneshot::Sender<bool>>,
    /// Decisions among the records (event records excluded): what a failure leaves unrecorded.
    decisions: u64,
}

impl Sealed {
    fn push(&mut self, r: AuditRecord) {
        // Serializing strings and integers cannot fail; see `record_hash`.
        if let Ok(mut l) = serde_json::to_vec(&r) {
            l.push(b'\n');
            self.lines.extend_from_slice(&l);
        }
        self.last = Some(Anchor {
            seq: r.seq,
            hash: r.hash,
        });
    }
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

    /// Daily rotation: records of a new UTC day go to a new file that starts with a `rotated:`
    /// record continuing the chain; the files verify as one set.
    #[test]
    fn a_new_day_rotates_to_a_new_file_that_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (file, chain) = AuditFile::open(&path, Fsync::Always).unwrap();
        let mut w = Writer {
            file: Some(file),
            stdout: false,
            chain,
            health: Arc::new(AuditHealth {
                up: AtomicBool::new(true),
            }),
            metrics: Arc::new(Metrics::new()),
            failure: AuditFailure::Closed,
            unrecorded: 0,
            rotation: Rotation {
                retention_days: Some(30),
                max_bytes: None,
            },
            rotation_state: RotationState::default(),
        };
        let (p, mut rx) = pending(vec![decision(1), decision(2)]);
        w.commit(vec![p], None);
        assert_eq!(rx.try_recv(), Ok(true));
        assert!(!w.rotation_due(SystemTime::now()), "same day: no rotation");
        assert!(
            w.next_timer().is_some(),
            "an idle server rotates at midnight"
        );
        // The file's records were written yesterday.
        w.rotation_state.day = Some("2000-01-01".into());
        assert!(w.rotation_due(SystemTime::now()));
        let (p, mut rx) = pending(vec![decision(3)]);
        w.commit(vec![p], None);
        assert_eq!(rx.try_recv(), Ok(true));

        let rotated = crate::serve::audit_rotate::rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 1);
        let old = std::fs::read_to_string(&rotated[0]).unwrap();
        assert_eq!(old.lines().count(), 2);
        let new = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = new
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{new}");
        assert_eq!(lines[0]["seq"], 3);
        assert!(lines[0]["event"]
            .as_str()
            .unwrap()
            .starts_with("rotated: continues from audit.jsonl."));
        assert_eq!(lines[1]["seq"], 4);
        let report = crate::serve::audit_rotate::verify_set(&path, None).unwrap();
        assert_eq!(
            (report.records, report.first_seq, report.last_seq),
            (4, 1, 4)
        );
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
            rotation: Rotation::default(),
            rotation_state: RotationState::default(),
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
