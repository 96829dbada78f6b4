//! What the reconcilers share ([`Context`]) and remember between reconciles, and the janitor
//! that forgets it when a policy goes away.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};

use super::{Reads, FULL_REAPPLY};
use crate::apiserver::ApiEndpoint;
use crate::builders::{Children, Settings, FIELD_MANAGER};
use crate::crd::ScanPolicy;

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    /// Publishes Kubernetes Events (`kubectl describe` shows them); best effort.
    recorder: Recorder,
    /// Consecutive failures per object (`kind/namespace/name`), for [`error_policy`]'s backoff;
    /// cleared when the object reconciles successfully.
    failures: Mutex<HashMap<String, u32>>,
    /// Per policy (`kind/namespace/name`): the hash of the children last applied in full and
    /// when. A reconcile whose desired state hashes the same skips the nine applies (one GET of
    /// the Deployment for status instead) until [`FULL_REAPPLY`] has passed, which bounds how
    /// long hand-made drift of a child survives.
    applied: Mutex<HashMap<String, (u64, Instant)>>,
    /// Per policy: the hash of the inputs of the last successful build and the children built,
    /// so a reconcile whose Tenant, packs, spec and settings did not change compiles nothing.
    built: Mutex<HashMap<String, (u64, Children)>>,
    /// Builds actually run (compile and pack tests), for tests and metrics.
    pub(super) builds: std::sync::atomic::AtomicU64,
    /// The shared watches' stores ([`crate::shared`]) the reconcilers read Tenants and
    /// RulePacks from, once synced; unset (tests, or before `run` sets them) means the API.
    pub(super) reads: std::sync::OnceLock<Reads>,
    /// Scanner image and other cluster-wide choices for the children. Swapped, not locked:
    /// only the API server's addresses change at run time ([`Context::set_api_server`]).
    settings: ArcSwap<Settings>,
}

impl Context {
    /// A context with [`Settings::default`].
    pub fn new(client: Client) -> Self {
        Self::with_settings(client, Settings::default())
    }

    pub fn with_settings(client: Client, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            // The pod name, when the Deployment passes it down (downward API).
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            failures: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            built: Mutex::new(HashMap::new()),
            builds: std::sync::atomic::AtomicU64::new(0),
            reads: std::sync::OnceLock::new(),
            settings: ArcSwap::from_pointee(settings),
        }
    }

    /// Reads Tenants and RulePacks from these stores instead of the API server (once each is
    /// synced). Set once; a second call is ignored.
    pub fn read_from(&self, reads: Reads) {
        let _ = self.reads.set(reads);
    }

    /// The settings in effect now; a reconcile uses one snapshot throughout.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Stores newly discovered API server addresses; returns whether they changed (then every
    /// policy must be re-applied to update its scanners' egress).
    pub fn set_api_server(&self, found: Vec<ApiEndpoint>) -> bool {
        let current = self.settings.load_full();
        if current.api_server == found {
            return false;
        }
        let list: Vec<String> = found.iter().map(ToString::to_string).collect();
        tracing::info!(endpoints = %list.join(","), "the API server's addresses changed; re-applying every ScanPolicy");
        self.settings.store(Arc::new(Settings {
            api_server: found,
            ..(*current).clone()
        }));
        true
    }

    /// Counts one more failure of `key` and returns how many came before it.
    pub(super) fn record_failure(&self, key: String) -> u32 {
        // A poisoned lock only means another reconcile panicked mid-update of a counter;
        // the map is still usable.
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        let before = *n;
        *n = n.saturating_add(1);
        before
    }

    /// The children built for `key` from inputs hashing to `input`, if that was the last build.
    pub(super) fn built(&self, key: &str, input: u64) -> Option<Children> {
        let map = self.built.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(h, _)| *h == input)
            .map(|(_, c)| c.clone())
    }

    pub(super) fn remember_built(&self, key: String, input: u64, children: Children) {
        let mut map = self.built.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, (input, children));
    }

    /// Drops everything remembered about one object (`kind/namespace/name`): its last build
    /// (a policy's whole bundle, up to megabytes), its last full apply and its failure count.
    pub fn forget(&self, key: &str) {
        self.built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.forget_applied(key);
        self.clear_failures(key);
    }

    /// Keeps what is remembered only for these objects (after a relist: deletions missed
    /// while the watch was down send no Delete event).
    pub fn retain(&self, keys: &BTreeSet<String>) {
        self.built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keys.contains(k));
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keys.contains(k));
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keys.contains(k));
    }

    /// Objects with a remembered build, for tests and metrics.
    pub fn remembered_builds(&self) -> usize {
        self.built.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many times the children were built (compile and pack tests run) so far.
    pub fn builds(&self) -> u64 {
        self.builds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `hash` was applied in full for `key` less than [`FULL_REAPPLY`] ago.
    pub(super) fn applied_recently(&self, key: &str, hash: u64) -> bool {
        let map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .is_some_and(|(h, at)| *h == hash && at.elapsed() < FULL_REAPPLY)
    }

    pub(super) fn remember_applied(&self, key: String, hash: u64) {
        let mut map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, (hash, Instant::now()));
    }

    /// After any failure the next reconcile applies in full again.
    pub(super) fn forget_applied(&self, key: &str) {
        let mut map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    pub(super) fn clear_failures(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    /// Publishes an Event about `obj`. Best effort: a failed publish is logged and never fails
    /// the reconcile, since the status already carries the same facts.
    pub(crate) async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(object = %object_key(obj), error = %e, "cannot publish an event");
        }
    }

    /// Consecutive failures recorded for `key` (for tests and metrics).
    pub fn failures(&self, key: &str) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}

/// `kind/namespace/name`, the key of the failure counter.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Evicts the reconcilers' per-policy memory ([`Context`]'s builds, applies and failure counts)
/// when a ScanPolicy goes away. Without it a long-running operator kept the bundle of every
/// policy it had ever seen. Fed the policy watch's events: a Delete forgets that policy, and a
/// relist forgets every policy the new list no longer holds.
#[derive(Debug, Default)]
pub struct PolicyJanitor {
    relisting: Option<BTreeSet<String>>,
}

impl PolicyJanitor {
    pub fn on_event(&mut self, ctx: &Context, event: &watcher::Event<ScanPolicy>) {
        match event {
            watcher::Event::Delete(p) => ctx.forget(&object_key(p)),
            watcher::Event::Init => self.relisting = Some(BTreeSet::new()),
            watcher::Event::InitApply(p) => {
                if let Some(keys) = self.relisting.as_mut() {
                    keys.insert(object_key(p));
                }
            }
            watcher::Event::InitDone => {
                if let Some(keys) = self.relisting.take() {
                    ctx.retain(&keys);
                }
            }
            watcher::Event::Apply(_) => {}
        }
    }
}
