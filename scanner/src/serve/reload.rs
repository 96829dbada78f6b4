//! The bundle being served, and hot reload of its sources.
//!
//! Sources are polled (default every 250 ms) by their metadata only: the file list and each
//! file's size, modification and change times and inode, through symlinks — so kubelet's
//! atomic ConfigMap update (a new `..<timestamp>` directory and a swapped `..data` link) is
//! seen like any edit, no platform file-watch API is needed, and an idle scanner reads no
//! bytes (hashing a large pack every poll cost a fifth of a core). A source set is loaded only
//! once its metadata has held still across two consecutive polls, so a file still being
//! written — in place, in several writes — is never loaded half-way; that costs one poll
//! interval of latency (a change is live 1–2 intervals after the last write). The files are
//! then read once, each checked not to have changed while it was read, and compiled from
//! those bytes with every check `pd-scanner test` makes, under the configured [`Limits`].
//!
//! The compile runs off the request path (a blocking task) and reuses every regex and prefilter
//! the serving bundle holds unchanged (`pd_bundle_build_seconds` times it); the result replaces
//! the served bundle atomically. A source set that does not read, load or compile never
//! replaces a good bundle: the old one keeps serving and the reason is kept for `/readyz`
//! (bounded, and quoting nothing from any file), the log (in full) and
//! `pd_bundle_reloads_total{result="rejected"}` / `pd_bundle_reload_failing`.
//!
//! Metadata can miss a write that lands within the file system's timestamp granularity of the
//! previous one with the same length, so while a file was modified within
//! [`crate::sources::RECENT`] of being read the watcher reads it again on every stable poll
//! (comparing a digest of the bytes; nothing is compiled again unless they differ).
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

use crate::bundle::{build_snapshot, read_sources, Refused};
use crate::compile::CompiledPack;
use crate::limits::{bounded_lines, bounded_lines_of, Limits};
use crate::load::{LoadError, Loaded};
use crate::serve::metrics::Metrics;

/// What to load and how to choose the policy.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Files and directories (`-f`); empty means the default samples.
    pub paths: Vec<PathBuf>,
    pub policy: Option<String>,
    pub limits: Limits,
}

/// The served bundle plus what readiness reports.
pub struct BundleState {
    current: ArcSwapOption<CompiledPack>,
    /// Why the newest source set was refused, for readers who may not see the sources.
    last_error: Mutex<Option<String>>,
    /// Set while the ConfigMap watch ([`crate::serve::configmap`]) is synced: the API is then
    /// the fresher source, and the files (kubelet's copy of the same ConfigMap, up to a minute
    /// behind) must not swap an older bundle back in.
    api_live: AtomicBool,
    /// Digest of the last source set read from the files and compiled (installed or refused),
    /// so re-reading unchanged files compiles nothing.
    attempted: Mutex<Option<[u8; 32]>>,
    /// Loaded packs the served policy does not use ([`unused_packs`]), for `/readyz`: `-f
    /// config/samples/ -f mine.yaml` serves the samples' policy, which ignores `mine`, and a
    /// scanner that silently never applies the pack just written looks like a pack that
    /// matches nothing. Empty for a ConfigMap bundle (it holds only what its policy uses).
    unused: Mutex<Vec<String>>,
}

impl Default for BundleState {
    fn default() -> Self {
        Self::new()
    }
}

/// What one [`BundleState::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// A new bundle was installed.
    pub installed: bool,
    /// The files' metadata can be trusted to show the next change: no file changed while it
    /// was read, and none was modified within [`crate::sources::RECENT`] of being read.
    pub settled: bool,
}

/// Most problem lines the log gets for one refusal (`/readyz` gets fewer).
const MAX_LOGGED_PROBLEMS: usize = 100;

impl BundleState {
    pub fn new() -> Self {
        BundleState {
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            api_live: AtomicBool::new(false),
            attempted: Mutex::new(None),
            unused: Mutex::new(Vec::new()),
        }
    }

    /// The bundle for one request. Holding the `Arc` keeps it alive however many reloads
    /// happen meanwhile, so a request finishes on the bundle it started with.
    pub fn current(&self) -> Option<Arc<CompiledPack>> {
        self.current.load_full()
    }

    /// Why the last reload was rejected, if it was: at most a few problems, each naming its
    /// file and line, nothing quoted from any file (see [`bounded_lines`]).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The loaded packs the served policy does not use (see [`unused_packs`]).
    pub fn unused_packs(&self) -> Vec<String> {
        self.unused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_unused(&self, unused: Vec<String>) {
        *self.unused.lock().unwrap_or_else(|e| e.into_inner()) = unused;
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    fn attempted(&self) -> std::sync::MutexGuard<'_, Option<[u8; 32]>> {
        self.attempted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the ConfigMap watch is synced and the file sources are only being tracked.
    pub fn api_live(&self) -> bool {
        self.api_live.load(Ordering::Acquire)
    }

    pub(crate) fn set_api_live(&self, live: bool) {
        self.api_live.store(live, Ordering::Release);
    }

    /// Reads, loads and compiles `sources` and swaps the result in; on failure keeps the old
    /// bundle. A set identical to the last one tried is not compiled again; a file caught
    /// changing is neither loaded nor reported (the watcher tries again once it holds still).
    pub fn reload(&self, sources: &Sources, metrics: &Metrics) -> Reloaded {
        let snapshot = match read_sources(&sources.paths, &sources.limits) {
            Ok(s) => s,
            Err(LoadError::Changing { path }) => {
                tracing::debug!(path = %path.display(), "source changed while being read; waiting for it to hold still");
                return Reloaded {
                    installed: false,
                    settled: false,
                };
            }
            Err(e) => {
                // Whatever is read next is compiled, even if it matches the last attempt.
                *self.attempted() = None;
                self.refuse(e.public(), &e.to_string(), metrics);
                return Reloaded {
                    installed: false,
                    settled: true,
                };
            }
        };
        let settled = !snapshot.recent;
        let digest = snapshot.digest();
        if self.attempted().replace(digest) == Some(digest) {
            return Reloaded {
                installed: false,
                settled,
            };
        }
        let started = std::time::Instant::now();
        let built = build_snapshot(&snapshot, sources.policy.as_deref(), &sources.limits);
        let unused = built
            .as_ref()
            .map(|(loaded, pack)| unused_packs(loaded, pack))
            .unwrap_or_default();
        let installed = self.install(built.map(|(_, pack)| pack), metrics, false);
        metrics.bundle_built(started.elapsed());
        if installed && !unused.is_empty() {
            if let Some(pack) = self.current() {
                tracing::warn!(policy = %pack.policy.name, unused = ?unused, "{}", unused_packs_warning(&pack, &unused));
            }
            self.set_unused(unused);
        }
        Reloaded { installed, settled }
    }

    /// Installs a compiled bundle, or keeps the old one and records why. With `skip_same`, a
    /// bundle with the served hash is not swapped in again (nor counted as a reload): the
    /// watch delivers the ConfigMap's current state on every (re)connect.
    pub(crate) fn install(
        &self,
        built: Result<CompiledPack, Box<Refused>>,
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
                    metrics.bundle_reload_failing(false);
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
                self.set_unused(Vec::new());
                true
            }
            Err(refused) => {
                self.reject(
                    bounded_lines(&refused.public),
                    &bounded_lines_of(&refused.detail, MAX_LOGGED_PROBLEMS, usize::MAX),
                    metrics,
                );
                false
            }
        }
    }

    /// Keeps serving the current bundle and reports why the new one was refused: `public` on
    /// `/readyz` and the Pod annotation (it must quote nothing from the sources), `detail` in
    /// the log.
    pub(crate) fn reject(&self, public: String, detail: &str, metrics: &Metrics) {
        let keeping = self
            .current()
            .map(|p| p.pack.hash.clone())
            .unwrap_or_else(|| "nothing".into());
        tracing::error!(error = %detail, keeping = %keeping, "bundle rejected; the previous one keeps serving");
        metrics.bundle_rejected();
        self.set_error(Some(public));
    }

    /// [`BundleState::reject`] for one error of the loader.
    fn refuse(&self, public: String, detail: &str, metrics: &Metrics) {
        self.reject(bounded_lines(&[public]), detail, metrics);
    }
}

/// Names of the loaded packs `pack`'s policy does not use (neither binds nor extends), in
/// name order. `pd-scanner scan` and `test` name them on stderr, `serve` in its log and on
/// `/readyz`.
pub fn unused_packs(loaded: &Loaded, pack: &CompiledPack) -> Vec<String> {
    let used = pack.used_packs();
    loaded
        .packs
        .keys()
        .filter(|n| !used.contains(n.as_str()))
        .cloned()
        .collect()
}

/// What to say about [`unused_packs`]: the policy in use, what it binds and how to choose
/// another.
pub fn unused_packs_warning(pack: &CompiledPack, unused: &[String]) -> String {
    let quoted = |names: &mut dyn Iterator<Item = &str>| {
        names
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "policy `{}` does not use the loaded pack(s) {}; it binds {}. Use --policy default \
         (every pack no other pack extends) or add them to the policy's rulePacks.",
        pack.policy.name,
        quoted(&mut unused.iter().map(String::as_str)),
        quoted(&mut pack.resolved.iter().map(|r| r.name.as_str())),
    )
}

/// A digest of the source set's file list and metadata ([`crate::sources::fingerprint`]; no
/// contents are read). With no paths: the default samples directory.
pub fn fingerprint(paths: &[PathBuf]) -> [u8; 32] {
    let defaults = [PathBuf::from(crate::bundle::DEFAULT_SAMPLES_DIR)];
    let paths = if paths.is_empty() {
        &defaults[..]
    } else {
        paths
    };
    crate::sources::fingerprint(paths)
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

/// When [`poll_changes`] acts on a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// At the first poll that sees it differ from the last one acted on.
    OnChange,
    /// Once it has held still for two consecutive polls, so a source in the middle of being
    /// written is never acted on (it changes between polls until its writer is done); and
    /// again at every stable poll until `on_change` says it is settled. The state in force at
    /// the start is offered once too.
    WhenStill,
}

/// Takes `probe` (a fingerprint of some sources, computed off the async workers) every
/// `interval` until `stop` fires, and awaits `on_change` when `act` says so; `on_change`
/// returns whether the state it saw is settled (only [`Act::WhenStill`] offers an unsettled
/// one again). `loaded` is the fingerprint of what is in force now, taken before it was
/// loaded.
pub(crate) async fn poll_changes<P, C, F>(
    interval: Duration,
    loaded: [u8; 32],
    act: Act,
    mut stop: tokio::sync::watch::Receiver<bool>,
    probe: P,
    mut on_change: C,
) where
    P: Fn() -> [u8; 32] + Clone + Send + 'static,
    C: FnMut() -> F,
    F: std::future::Future<Output = bool>,
{
    let mut previous = loaded;
    let mut settled = (act == Act::OnChange).then_some(loaded);
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
        let moving = now != previous;
        previous = now;
        if (moving && act == Act::WhenStill) || settled == Some(now) {
            continue;
        }
        if on_change().await || act == Act::OnChange {
            settled = Some(now);
        }
    }
}

/// Polls the sources until `stop` resolves, reloading on change. `loaded` is the fingerprint
/// taken before the current bundle was loaded: taking it here instead would miss a change made
/// between that load and this task's first poll, forever. That first load is re-checked at
/// the first stable poll (its files are typically fresh; see the module documentation).
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
    poll_changes(interval, loaded, Act::WhenStill, stop, probe, || {
        let (state, sources, metrics) = (state.clone(), sources.clone(), metrics.clone());
        async move {
            if state.api_live() {
                // The watch already delivered this (or something newer); see `api_live`.
                tracing::debug!("source files changed; the ConfigMap watch is authoritative");
                return true;
            }
            // Compile off the async workers; requests keep being served meanwhile.
            tokio::task::spawn_blocking(move || state.reload(&sources, &metrics).settled)
                .await
                .unwrap_or(false)
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
            limits: Limits::default(),
        };
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(BundleState::new());
        let loaded = fingerprint(&sources.paths);
        assert!(state.reload(&sources, &metrics).installed);
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
    #[tokio::test]
    async fn only_a_fingerprint_seen_on_two_polls_in_a_row_is_acted_on() {
        use std::sync::atomic::AtomicUsize;
        // What the probe returns at each poll; 0 is in force at the start (and offered once,
        // settled: it is the first offer).
        let seq = Arc::new(vec![0u8, 0, 1, 2, 2, 2, 3, 4, 4, 4, 4]);
        let next = Arc::new(AtomicUsize::new(0));
        let probe = {
            let (seq, next) = (seq.clone(), next.clone());
            move || {
                let k = next.fetch_add(1, Ordering::SeqCst).min(seq.len() - 1);
                [seq[k]; 32]
            }
        };
        let acted = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let poller = {
            let (seq, next, acted) = (seq.clone(), next.clone(), acted.clone());
            tokio::spawn(poll_changes(
                Duration::from_millis(1),
                [0; 32],
                Act::WhenStill,
                stop_rx,
                probe,
                move || {
                    let k = (next.load(Ordering::SeqCst) - 1).min(seq.len() - 1);
                    let mut acted = acted.lock().unwrap();
                    acted.push(seq[k]);
                    // The first offer of 2 is not settled: it is offered again.
                    let settled = acted.len() != 2;
                    std::future::ready(settled)
                },
            ))
        };
        while next.load(Ordering::SeqCst) < seq.len() + 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop_tx.send(true).unwrap();
        poller.await.unwrap();
        assert_eq!(*acted.lock().unwrap(), [0, 2, 2, 4]);
    }
}
