//! In-cluster bundle source: a watch on the one ConfigMap the operator writes the bundle to.
//!
//! The mounted copy of that ConfigMap is refreshed only on kubelet's sync period (up to about
//! a minute, plus its cache TTL), so a rule fix would take that long to reach every pod. The
//! API server pushes the change instead, typically in well under a second. The file source
//! stays: it is what the pod starts from, and what takes over whenever this watch is not
//! synced (no token, API unreachable, RBAC missing), so a broken watch costs freshness, never
//! availability.
//!
//! The watch lists and watches with `fieldSelector=metadata.name=<name>`, which RBAC
//! authorizes as a request for that one name: the pod's Role grants `get, list, watch` on its
//! own ConfigMap only (`resourceNames`).

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::bundle::build_from_text;
use crate::limits::Limits;
use crate::serve::metrics::Metrics;
use crate::serve::reload::BundleState;

/// The ConfigMap key the operator writes the bundle under.
pub const DEFAULT_KEY: &str = "bundle.json";

/// Which ConfigMap to watch: `--configmap [NAMESPACE/]NAME` and `--configmap-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// `None`: the client's default namespace (in a pod: the pod's own, from the service
    /// account's `namespace` file).
    pub namespace: Option<String>,
    pub name: String,
    pub key: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("--configmap must be NAME or NAMESPACE/NAME (DNS labels), not {0:?}")]
pub struct ParseRefError(String);

impl ConfigMapRef {
    /// Parses `NAME` or `NAMESPACE/NAME`.
    pub fn parse(s: &str, key: &str) -> Result<Self, ParseRefError> {
        let err = || ParseRefError(s.to_string());
        let (namespace, name) = match s.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, s),
        };
        // ConfigMap names are DNS subdomains, namespaces DNS labels; both lower-case.
        let valid = |v: &str, dots: bool| {
            !v.is_empty()
                && v.len() <= 253
                && v.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
                })
        };
        if !valid(name, true) || namespace.is_some_and(|ns| !valid(ns, false)) || key.is_empty() {
            return Err(err());
        }
        Ok(ConfigMapRef {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            key: key.to_string(),
        })
    }
}

/// The API client of the pod's service account (or `KUBECONFIG`), unless `stop` changes
/// first (`None`): building one may wait on I/O, and shutdown must not. The error says why
/// there is no client; callers log it in their own terms and carry on without the API.
pub(crate) async fn client_unless_stopped(
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Result<Client, kube::Error>> {
    tokio::select! {
        c = Client::try_default() => Some(c),
        _ = stop.changed() => None,
    }
}

/// Watches the ConfigMap until `stop` resolves, installing every new, valid bundle it holds.
///
/// Never returns an error: without a client it logs why and leaves the files in charge; with
/// one, kube's watcher reconnects with backoff forever, and while it is down the files are.
pub async fn watch(
    target: ConfigMapRef,
    policy: Option<String>,
    limits: Limits,
    state: Arc<BundleState>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(client) = client_or_files(&target, &mut stop).await else {
        return;
    };
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={}", target.name))
        .any_semantic();
    let origin = PathBuf::from(format!(
        "configmap/{namespace}/{}[{}]",
        target.name, target.key
    ));
    tracing::info!(configmap = %format!("{namespace}/{}", target.name), key = %target.key, "watching the bundle ConfigMap");

    let mut follower = Follower {
        installer: Installer {
            key: target.key,
            origin,
            policy,
            limits,
            state,
            metrics,
            seen: None,
        },
        found_in_list: false,
        failing: false,
    };
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = stop.changed() => break,
        };
        let Some(event) = event else { break };
        follower.handle(event).await;
    }
    follower.installer.set_live(false);
}

/// The API client, or `None` when shutdown comes first or there is none — the latter logged
/// as an error, since the files then stay the only bundle source for the pod's lifetime.
async fn client_or_files(
    target: &ConfigMapRef,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Client> {
    match client_unless_stopped(stop).await? {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(
                error = %e,
                configmap = %target.name,
                "no Kubernetes API client (is the service account token mounted?); \
                 reloading from the mounted files only"
            );
            None
        }
    }
}

/// Follows the watch's events: installs what it lists or changes, and hands the bundle source
/// back to the files whenever the watch cannot vouch for being current.
struct Follower {
    installer: Installer,
    /// Whether the current (re)list found the ConfigMap: a list without it leaves the files
    /// in charge.
    found_in_list: bool,
    /// Whether the watch is in an outage, so that it is logged once, not on every retry.
    failing: bool,
}

impl Follower {
    async fn handle(&mut self, event: Result<Event<ConfigMap>, watcher::Error>) {
        let installer = &mut self.installer;
        match event {
            Ok(Event::Init) => self.found_in_list = false,
            Ok(Event::InitApply(cm)) => {
                self.found_in_list = true;
                installer.apply(&cm).await;
            }
            Ok(Event::InitDone) => {
                self.failing = false;
                if !self.found_in_list {
                    tracing::warn!(configmap = %installer.origin.display(), "the bundle ConfigMap does not exist; reloading from the mounted files");
                }
                installer.set_live(self.found_in_list);
            }
            Ok(Event::Apply(cm)) => {
                installer.apply(&cm).await;
                installer.set_live(true);
            }
            Ok(Event::Delete(_)) => {
                // The policy is being deleted (or the ConfigMap by hand): keep serving what we
                // have; the files, still mounted, decide from here.
                tracing::warn!(configmap = %installer.origin.display(), "the bundle ConfigMap was deleted; keeping the current bundle");
                installer.seen = None;
                installer.set_live(false);
            }
            Err(e) => {
                // Said once per outage (the first failure after start or after being synced),
                // so a watch that never connects (RBAC, NetworkPolicy) is visible in the log.
                if self.failing {
                    tracing::debug!(error = %e, "ConfigMap watch still failing");
                } else {
                    tracing::warn!(error = %e, "ConfigMap watch failing; reloading from the mounted files until it is back");
                    self.failing = true;
                }
                // The files may have loaded something meanwhile: after reconnecting, install
                // what the API holds even if the watch saw that text before.
                installer.seen = None;
                installer.metrics.bundle_watch_error();
                installer.set_live(false);
            }
        }
    }
}

/// Turns the watched ConfigMap's value into the served bundle.
struct Installer {
    key: String,
    /// Names the ConfigMap in errors, as a path names a file.
    origin: PathBuf,
    policy: Option<String>,
    limits: Limits,
    state: Arc<BundleState>,
    metrics: Arc<Metrics>,
    /// Digest of the text last compiled, so a relist of an unchanged ConfigMap costs nothing.
    seen: Option<[u8; 32]>,
}

impl Installer {
    /// Whether the watch is the bundle source (see [`BundleState::api_live`]).
    fn set_live(&self, live: bool) {
        if live && !self.state.api_live() {
            tracing::info!("ConfigMap watch synced; it is the bundle source now");
        }
        self.state.set_api_live(live);
        self.metrics.bundle_watch_up(live);
    }

    /// Compiles and installs the bundle `cm` holds, unless it is the text last seen.
    async fn apply(&mut self, cm: &ConfigMap) {
        let Some(text) = cm.data.as_ref().and_then(|d| d.get(&self.key)).cloned() else {
            self.seen = None;
            // The origin and key are the scanner's own flags.
            let message = format!(
                "{}: the ConfigMap has no key {:?}",
                self.origin.display(),
                self.key
            );
            self.state.reject(message.clone(), &message, &self.metrics);
            return;
        };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if self.seen == Some(digest) {
            return;
        }
        self.seen = Some(digest);
        let (state, metrics, origin, policy, limits) = (
            self.state.clone(),
            self.metrics.clone(),
            self.origin.clone(),
            self.policy.clone(),
            self.limits,
        );
        // Compile off the async workers, as the file reload does; requests keep being served.
        let _ = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let built = build_from_text(&text, &origin, policy.as_deref(), &limits);
            let installed = state.install(built, &metrics, true);
            metrics.bundle_built(started.elapsed());
            installed
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_namespaced_name() {
        assert_eq!(
            ConfigMapRef::parse("acme-chat-bundle", DEFAULT_KEY).unwrap(),
            ConfigMapRef {
                namespace: None,
                name: "acme-chat-bundle".into(),
                key: "bundle.json".into()
            }
        );
        let r = ConfigMapRef::parse("acme-prod/acme-chat-bundle", "b.json").unwrap();
        assert_eq!(r.namespace.as_deref(), Some("acme-prod"));
        assert_eq!(r.name, "acme-chat-bundle");
        assert_eq!(r.key, "b.json");
        for bad in ["", "/x", "ns/", "a/b/c", "Upper", "ns.dots/x", "x y"] {
            assert!(ConfigMapRef::parse(bad, DEFAULT_KEY).is_err(), "{bad:?}");
        }
        assert!(ConfigMapRef::parse("x", "").is_err());
    }
}
