//! The bundle being served, and hot reload of its sources.
//!
//! Sources are polled (default every 250 ms): the fingerprint is a SHA-256 over the path and
//! bytes of every source file, read through symlinks — so kubelet's atomic ConfigMap update
//! (a new `..<timestamp>` directory and a swapped `..data` link) is seen like any edit, and no
//! platform file-watch API is needed. A changed fingerprint triggers a compile off the request
//! path (a blocking task); the result replaces the served bundle atomically. A bundle that does
//! not load or compile never replaces a good one: the old one keeps serving and the reason is
//! kept for `/readyz`, the log and `pd_bundle_reloads_total{result="rejected"}`.
//!
//! In a cluster the files are kubelet's copy of the policy's ConfigMap, refreshed only on
//! kubelet's sync period (up to about a minute). With `--configmap` the scanner also watches
//! that ConfigMap through the API ([`crate::serve::configmap`]); while that watch is synced the
//! polled files are tracked but not loaded, and when it drops they take over again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};

use crate::bundle::{build, BundleError};
use crate::compile::CompiledPack;
use crate::serve::metrics::Metrics;

/// What to load and how to choose the policy.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Files and directories (`-f`); empty means the default samples.
    pub paths: Vec<PathBuf>,
    pub policy: Option<String>,
}

/// The served bundle plus what readiness reports.
pub struct BundleState {
    current: ArcSwapOption<CompiledPack>,
    last_error: Mutex<Option<String>>,
    /// Set while the ConfigMap watch ([`crate::serve::configmap`]) is synced: the API is then
    /// the fresher source, and the files (kubelet's copy of the same ConfigMap, up to a minute
    /// behind) must not swap an older bundle back in.
    api_live: AtomicBool,
}

impl Default for BundleState {
    fn default() -> Self {
        Self::new()
    }
}

impl BundleState {
    pub fn new() -> Self {
        BundleState {
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            api_live: AtomicBool::new(false),
        }
    }

    /// The bundle for one request. Holding the `Arc` keeps it alive however many reloads
    /// happen meanwhile, so a request finishes on the bundle it started with.
    pub fn current(&self) -> Option<Arc<CompiledPack>> {
        self.current.load_full()
    }

    /// Why the last reload was rejected, if it was.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    /// Whether the ConfigMap watch is synced and the file sources are only being tracked.
    pub fn api_live(&self) -> bool {
        self.api_live.load(Ordering::Acquire)
    }

    pub(crate) fn set_api_live(&self, live: bool) {
        self.api_live.store(live, Ordering::Release);
    }

    /// Loads and compiles `sources` and swaps the result in; on failure keeps the old bundle.
    /// Returns whether the new bundle was installed.
    pub fn reload(&self, sources: &Sources, metrics: &Metrics) -> bool {
        self.install(
            build(&sources.paths, sources.policy.as_deref()),
            metrics,
            false,
        )
    }

    /// Installs a compiled bundle, or keeps the old one and records why. With `skip_same`, a
    /// bundle with the served hash is not swapped in again (nor counted as a reload): the
    /// watch delivers the ConfigMap's current state on every (re)connect.
    pub(crate) fn install(
        &self,
        built: Result<CompiledPack, BundleError>,
        metrics: &Metrics,
        skip_same: bool,
    ) -> bool {
        match built {
            Ok(pack) => {
                if skip_same
                    && self
                        .current()
                        .is_some_and(|c| c.pack.hash == pack.pack.hash)
                {
                    tracing::debug!(hash = %pack.pack.hash, "bundle unchanged");
                    self.set_error(None);
                    return false;
                }
                pack.warm_up();
                tracing::info!(
                    bundle = %pack.pack.name,
                    version = %pack.pack.version,
                    hash = %pack.pack.hash,
                    rules = pack.rule_count(),
                    policy = %pack.policy.name,
                    "bundle loaded"
                );
                metrics.bundle_loaded(&pack.pack);
                self.current.store(Some(Arc::new(pack)));
                self.set_error(None);
                true
            }
            Err(e) => {
                self.reject(e.to_string(), metrics);
                false
            }
        }
    }

    /// Keeps serving the current bundle and reports why the new one was refused.
    pub(crate) fn reject(&self, message: String, metrics: &Metrics) {
        let keeping = self
            .current()
            .map(|p| p.pack.hash.clone())
            .unwrap_or_else(|| "nothing".into());
        tracing::error!(error = %message, keeping = %keeping, "bundle rejected; the previous one keeps serving");
        metrics.bundle_rejected();
        self.set_error(Some(message));
    }
}

/// A digest of every source file's path and bytes. Unreadable files are part of the digest
/// (as an error marker) so that a file appearing or disappearing counts as a change.
pub fn fingerprint(paths: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    let defaults = [PathBuf::from(crate::bundle::DEFAULT_SAMPLES_DIR)];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    for p in paths {
        for file in source_files(p) {
            hash_file(&mut h, file.to_string_lossy().as_bytes(), &file);
        }
    }
    h.finalize().into()
}

/// Adds one file to a source fingerprint: its name, then its length and bytes, or a marker
/// when it cannot be read (so a file appearing or disappearing changes the digest).
pub(crate) fn hash_file(h: &mut Sha256, name: &[u8], path: &Path) {
    h.update(name);
    h.update([0]);
    match std::fs::read(path) {
        Ok(bytes) => {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        Err(_) => h.update(b"\xFFunreadable"),
    }
}

/// Takes `probe` (a fingerprint of some sources, computed off the async workers) every
/// `interval` until `stop` fires, and awaits `on_change` each time it differs from the last
/// one. `loaded` is the fingerprint of what is in force now, taken before it was loaded.
pub(crate) async fn poll_changes<P, C, F>(
    interval: Duration,
    loaded: [u8; 32],
    mut stop: tokio::sync::watch::Receiver<bool>,
    probe: P,
    mut on_change: C,
) where
    P: Fn() -> [u8; 32] + Clone + Send + 'static,
    C: FnMut() -> F,
    F: std::future::Future<Output = ()>,
{
    let mut last = loaded;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Ok(now) = tokio::task::spawn_blocking(probe.clone()).await else {
            continue;
        };
        if now == last {
            continue;
        }
        last = now;
        on_change().await;
    }
}

/// The files the loader would read under `path`, in the same order.
fn source_files(path: &Path) -> Vec<PathBuf> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            crate::load::dir_files(path).unwrap_or_else(|_| vec![path.to_path_buf()])
        }
        _ => vec![path.to_path_buf()],
    }
}

/// Polls the sources until `stop` resolves, reloading on change. `loaded` is the fingerprint
/// taken before the current bundle was loaded: taking it here instead would miss a change made
/// between that load and this task's first poll, forever.
pub async fn watch(
    state: Arc<BundleState>,
    sources: Sources,
    metrics: Arc<Metrics>,
    interval: Duration,
    loaded: [u8; 32],
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let paths = sources.paths.clone();
    let probe = move || fingerprint(&paths);
    poll_changes(interval, loaded, stop, probe, || {
        let (state, sources, metrics) = (state.clone(), sources.clone(), metrics.clone());
        async move {
            if state.api_live() {
                // The watch already delivered this (or something newer); see `api_live`.
                tracing::debug!("source files changed; the ConfigMap watch is authoritative");
                return;
            }
            // Compile off the async workers; requests keep being served meanwhile.
            let _ = tokio::task::spawn_blocking(move || state.reload(&sources, &metrics)).await;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK_V1: &str =
        "version: '1'\nrules:\n- {id: r, category: other, severity: low, weight: 70, regex: 'evil'}\n";
    const PACK_V2: &str =
        "version: '2'\nrules:\n- {id: r, category: other, severity: low, weight: 70, regex: 'evil'}\n";

    #[tokio::test]
    async fn a_change_before_the_first_poll_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("p.yaml");
        std::fs::write(&pack, PACK_V1).unwrap();
        let sources = Sources {
            paths: vec![dir.path().to_path_buf()],
            policy: None,
        };
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(BundleState::new());
        let loaded = fingerprint(&sources.paths);
        assert!(state.reload(&sources, &metrics));
        // The file changes after the load, before the watcher ever looks.
        std::fs::write(&pack, PACK_V2).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(watch(
            state.clone(),
            sources,
            metrics,
            Duration::from_millis(10),
            loaded,
            stop_rx,
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while state.current().map(|p| p.pack.version.clone()).as_deref() != Some("2") {
            assert!(std::time::Instant::now() < deadline, "change never loaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        watcher.await.unwrap();
    }
}
