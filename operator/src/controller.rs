//! The controller (`pd-operator run`): reconcilers for ScanPolicy, RulePack and Tenant and the
//! `kube_runtime::Controller` wiring.
//!
//! The decisions live in pure code ([`crate::builders`], [`crate::status`]); this module only
//! reads what those need from the API server, applies the result server-side with the one field
//! manager [`FIELD_MANAGER`], and writes status through the status subresource. The reconcile
//! functions take a [`kube::Client`] inside [`Context`] so tests can hand them a client backed by
//! a mock API server (`tower-test`) and assert every request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use pd_engine::bundle::BundleError;
use pd_engine::compile::{CompileError, PackSet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::apiserver::ApiEndpoint;
use crate::builders::{
    build_children, hmac_secret, BuildError, Children, Names, Settings, FIELD_MANAGER,
};
use crate::crd::{
    condition, set_condition, RulePack, RulePackStatus, ScanPolicy, ScanPolicyStatus, Tenant,
    TenantStatus,
};
use crate::leader::LeaderElector;
use crate::metrics::{Metrics, Phase};
use crate::render::{check_pack_tests, RenderError};
use crate::shared::{SharedWatch, SyncedStore};
use crate::status::{
    check_policy_name, failure_status, rulepack_status, scanpolicy_status, set_progress, Blocked,
    PolicyObservation, Progress, REASON_API_ERROR, REASON_APPLY_FAILED, REASON_BUNDLE_REJECTED,
    REASON_IMAGE_NOT_ALLOWED, REASON_INVALID_NAME, REASON_NAMESPACE_NOT_ALLOWED,
    REASON_PACKS_INVALID, REASON_PROGRESS_DEADLINE, REASON_TENANT_NOT_FOUND,
};

/// Label every child carries; the owned-object watches select on it so the operator does not
/// cache every ConfigMap and Deployment of the cluster.
const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=pd-operator";
/// Periodic re-check of a healthy object. Changes arrive through watches; this only heals drift
/// nobody announced (a child edited by hand and not watched, a missed event).
const RESYNC: Duration = Duration::from_secs(300);
/// Longest time a policy whose desired state did not change goes without a full re-apply of its
/// children (drift made by hand is healed within this).
pub const FULL_REAPPLY: Duration = Duration::from_secs(600);
/// First retry after an error other than a conflict; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// First retry after a 409: another writer raced us, so a quick retry usually succeeds.
pub const CONFLICT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum Error {
    /// Any API failure: transport, 409 conflict, 5xx. Retried with backoff, never fatal.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The API server refused or failed the apply of one child; the policy's status names it
    /// (`ApplyFailed`) with the API's message.
    #[error("apply of {kind} `{name}`: {}", api_message(.source))]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} `{name}` has no {field}")]
    MissingField {
        kind: &'static str,
        name: String,
        field: &'static str,
    },
    #[error("tenant `{0}` does not exist")]
    MissingTenant(String),
    /// The policy's name cannot name its children ([`check_policy_name`]).
    #[error("{0}")]
    InvalidName(String),
    /// Writing the status itself failed (nothing left to report the failure to).
    #[error("status write: {0}")]
    Status(#[source] kube::Error),
    /// A bound pack does not compile or fails its tests. The policy's status says so; the
    /// bundle ConfigMap is not written, so the last good bundle keeps serving.
    #[error("rule pack `{pack}`{}: {message}", .rule.as_ref().map(|r| format!(", rule `{r}`")).unwrap_or_default())]
    InvalidPack {
        pack: String,
        rule: Option<String>,
        message: String,
    },
    /// The policy cannot be built for another reason (tenant mismatch, namespace not allowed).
    #[error(transparent)]
    Build(BuildError),
    #[error("cannot serialize: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking compile task panicked or was cancelled.
    #[error("compile task: {0}")]
    Blocking(String),
}

impl Error {
    /// True for a 409 from the API server.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) | Error::Apply { source: kube::Error::Api(s), .. } if s.is_conflict())
    }

    /// True when retrying the same request cannot succeed: the API server refused it (400,
    /// 403, 422, …) rather than failed it (409, 429, 5xx, transport). Such a policy is `Stalled`.
    pub fn is_permanent(&self) -> bool {
        let source = match self {
            Error::Kube(e) | Error::Apply { source: e, .. } => e,
            _ => return false,
        };
        matches!(source, kube::Error::Api(s) if (400..500).contains(&s.code) && ![404, 408, 409, 429].contains(&s.code))
    }
}

/// The API server's own words for a failure (its `Status.message`), else the error's text.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Bundle { policy, source } => invalid_pack(&policy, &source),
            other => Error::Build(other),
        }
    }
}

/// Names the first broken rule (status messages stay short; the RulePack's own status lists
/// all of them).
fn invalid_pack(policy: &str, source: &BundleError) -> Error {
    match source {
        BundleError::Compile(CompileError::Invalid(problems)) if !problems.is_empty() => {
            let first = &problems[0];
            let more = problems.len() - 1;
            Error::InvalidPack {
                pack: first.pack.clone(),
                rule: first.rule.clone(),
                message: if more > 0 {
                    format!("{} (and {more} more problem(s))", first.message)
                } else {
                    first.message.clone()
                },
            }
        }
        other => Error::InvalidPack {
            pack: policy.to_string(),
            rule: None,
            message: other.to_string(),
        },
    }
}

/// The stores a reconcile reads instead of the API server.
#[derive(Clone)]
pub struct Reads {
    pub tenants: SyncedStore<Tenant>,
    pub packs: SyncedStore<RulePack>,
}

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
    builds: std::sync::atomic::AtomicU64,
    /// The shared watches' stores ([`crate::shared`]) the reconcilers read Tenants and
    /// RulePacks from, once synced; unset (tests, or before `run` sets them) means the API.
    reads: std::sync::OnceLock<Reads>,
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
    fn record_failure(&self, key: String) -> u32 {
        // A poisoned lock only means another reconcile panicked mid-update of a counter;
        // the map is still usable.
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        let before = *n;
        *n = n.saturating_add(1);
        before
    }

    /// The children built for `key` from inputs hashing to `input`, if that was the last build.
    fn built(&self, key: &str, input: u64) -> Option<Children> {
        let map = self.built.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(h, _)| *h == input)
            .map(|(_, c)| c.clone())
    }

    fn remember_built(&self, key: String, input: u64, children: Children) {
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
    fn applied_recently(&self, key: &str, hash: u64) -> bool {
        let map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .is_some_and(|(h, at)| *h == hash && at.elapsed() < FULL_REAPPLY)
    }

    fn remember_applied(&self, key: String, hash: u64) {
        let mut map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, (hash, Instant::now()));
    }

    /// After any failure the next reconcile applies in full again.
    fn forget_applied(&self, key: &str) {
        let mut map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    fn clear_failures(&self, key: &str) {
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

/// Delay before retry number `previous_failures + 1`: 1 s (conflict) or 5 s (anything else),
/// doubling per consecutive failure, capped at [`BACKOFF_MAX`]. A conflict or a 5xx therefore
/// slows down instead of crash-looping.
pub fn backoff(error: &Error, previous_failures: u32) -> Duration {
    let base = if error.is_conflict() {
        CONFLICT_BACKOFF_BASE
    } else {
        BACKOFF_BASE
    };
    let factor = 1u32 << previous_failures.min(16);
    base.saturating_mul(factor).min(BACKOFF_MAX)
}

/// What the controllers do with a failed reconcile: log it and requeue with [`backoff`].
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = object_key(obj.as_ref());
    let previous = ctx.record_failure(key.clone());
    let delay = backoff(error, previous);
    tracing::warn!(object = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Server-side apply, forced: the operator is the only intended writer of these fields, so a
/// conflict with another manager is resolved in its favour.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn missing(kind: &'static str, name: &str, field: &'static str) -> Error {
    Error::MissingField {
        kind,
        name: name.to_string(),
        field,
    }
}

async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or_else(|| missing("child", "?", "metadata.name"))?;
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply {
            kind: K::kind(&()).into_owned(),
            name,
            source,
        })
}

/// Applies every child in [`Children::to_values`] order (identities and RBAC first, workload
/// last) and returns the Deployment as the API server reports it.
async fn apply_children(
    client: &Client,
    namespace: &str,
    c: &Children,
) -> Result<Deployment, Error> {
    apply(client, namespace, &c.service_account).await?;
    apply(client, namespace, &c.role).await?;
    apply(client, namespace, &c.role_binding).await?;
    apply(client, namespace, &c.config_map).await?;
    if let Some(ledger) = &c.usage_ledger {
        apply(client, namespace, ledger).await?;
    }
    apply(client, namespace, &c.service).await?;
    apply(client, namespace, &c.network_policy).await?;
    let deployment = apply(client, namespace, &c.deployment).await?;
    apply(client, namespace, &c.hpa).await?;
    apply(client, namespace, &c.pdb).await?;
    Ok(deployment)
}

/// A hash of everything [`desired`] reads: the policy's identity and spec, the tenant's name and
/// spec, the visible packs and the settings. Equal hashes build equal children.
fn input_hash(
    policy: &ScanPolicy,
    tenant: &Tenant,
    packs: &PackSet,
    settings: &Settings,
) -> Result<u64, Error> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = &policy.metadata;
    serde_json::to_string(&(&m.name, &m.namespace, &m.uid, &policy.spec))?.hash(&mut h);
    serde_json::to_string(&(&tenant.metadata.name, &tenant.spec))?.hash(&mut h);
    serde_json::to_string(packs)?.hash(&mut h);
    format!("{settings:?}").hash(&mut h);
    Ok(h.finish())
}

/// A hash of every child as it would be applied (bundle, settings and all): equal hashes mean
/// an apply would change nothing the operator owns.
fn desired_hash(children: &Children) -> Result<u64, Error> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&children.to_values()?)?.hash(&mut h);
    Ok(h.finish())
}

/// Status patch body for server-side apply of the status subresource. Apply (not merge) so a
/// field the operator stops setting (`lastError` after a fix) is removed, not left stale.
fn status_patch<K: Resource<DynamicType = ()>>(status: &impl Serialize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// The RulePacks visible from `namespace` by name: the shared namespace's (when configured)
/// overlaid by the namespace's own, so a local pack shadows a shared one of the same name.
async fn visible_packs(
    ctx: &Context,
    namespace: &str,
    shared: Option<&str>,
) -> Result<PackSet, Error> {
    let client = &ctx.client;
    let mut packs = PackSet::new();
    let mut namespaces = Vec::with_capacity(2);
    if let Some(shared) = shared.filter(|s| *s != namespace) {
        namespaces.push(shared);
    }
    namespaces.push(namespace);
    if let Some(store) = ctx.reads.get().and_then(|r| r.packs.get()) {
        for ns in namespaces {
            packs.extend(
                store
                    .state()
                    .iter()
                    .filter(|p| p.namespace().as_deref() == Some(ns))
                    .map(|p| (p.name_any(), p.spec.0.clone())),
            );
        }
        return Ok(packs);
    }
    for ns in namespaces {
        let api: Api<RulePack> = Api::namespaced(client.clone(), ns);
        let list = api.list(&ListParams::default()).await?;
        packs.extend(list.items.into_iter().map(|p| (p.name_any(), p.spec.0)));
    }
    Ok(packs)
}

/// Builds the children and runs the bound packs' tests; pack problems become
/// [`Error::InvalidPack`].
fn desired(
    policy: &ScanPolicy,
    tenant: &Tenant,
    packs: &PackSet,
    settings: &Settings,
) -> Result<Children, Error> {
    let children = build_children(policy, tenant, packs, settings)?;
    match check_pack_tests(policy, packs) {
        Ok(()) => Ok(children),
        Err(RenderError::PackTests { pack, failures }) => Err(Error::InvalidPack {
            pack,
            rule: None,
            message: format!("tests failed: {}", failures.join("; ").trim()),
        }),
        Err(RenderError::Build(e)) => Err(e.into()),
        Err(other) => Err(Error::InvalidPack {
            pack: policy.name_any(),
            rule: None,
            message: other.to_string(),
        }),
    }
}

/// Reconciles one ScanPolicy: reads its Tenant and the RulePacks of its namespace, applies every
/// child server-side when the bound packs compile and pass their tests, and writes the status.
/// An invalid pack writes nothing but the status (the last good bundle keeps serving) and is not
/// an error: the RulePack watch brings the policy back when the pack changes.
///
/// Every failure reaches the status: a refused or failed apply (or read) writes `Ready=False`
/// with a specific reason and the API's message plus a Warning Event before the error goes to
/// [`error_policy`]'s backoff, so `kubectl get sp` never shows a stale `Ready=True` over a
/// reconcile that keeps failing.
pub async fn reconcile_scanpolicy(
    policy: Arc<ScanPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match reconcile_scanpolicy_inner(&policy, &ctx).await {
        Ok(action) => Ok(action),
        Err(e) => {
            ctx.forget_applied(&object_key(policy.as_ref()));
            report_failure(&policy, &ctx, &e).await;
            Err(e)
        }
    }
}

/// Writes a failed reconcile into the policy's status and publishes a Warning Event (when the
/// message changed). Best effort: the API may be the thing that is failing; the error still
/// goes to the backoff either way.
async fn report_failure(policy: &ScanPolicy, ctx: &Context, e: &Error) {
    let reason = match e {
        Error::Apply { .. } => REASON_APPLY_FAILED,
        Error::Kube(_) => REASON_API_ERROR,
        // The status write itself failed, or the object cannot be named: nothing to write to.
        _ => return,
    };
    let (Some(name), Some(namespace)) = (policy.metadata.name.clone(), policy.namespace()) else {
        return;
    };
    let names = Names::new(&name, &namespace, &policy.spec.tenant_ref.name)
        .with_tls(policy.spec.tls.is_some());
    let message = e.to_string();
    let status = failure_status(
        &names,
        policy.metadata.generation,
        policy.status.as_ref(),
        reason,
        &message,
        e.is_permanent(),
        &now(),
    );
    if let Err(write) = Api::<ScanPolicy>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &name,
            &apply_params(),
            &Patch::Apply(status_patch::<ScanPolicy>(&status)),
        )
        .await
    {
        tracing::warn!(policy = %name, namespace = %namespace, error = %write, "cannot write the failure into status");
    }
    if policy.status.as_ref().and_then(|s| s.last_error.as_ref()) != Some(&message) {
        ctx.event(policy, true, reason, "Apply", message).await;
    }
}

/// The scanner pods of a policy, read when the scanners report what they serve
/// ([`Settings::scanners_report`]): one LIST by the selector labels, no network call to a pod.
async fn scanner_pods(
    client: &Client,
    names: &Names,
) -> Result<Vec<crate::status::PodServing>, Error> {
    let selector = crate::builders::selector_labels(names)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), &names.namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(pods
        .items
        .iter()
        .map(crate::status::PodServing::from_pod)
        .collect())
}

/// Whether the bundle ConfigMap still holds exactly the bundle the operator wrote. Checked even
/// when nothing changed on the operator's side: the bundle decides what every scanner enforces,
/// so a hand edit of it is undone at once rather than at the next full re-apply.
async fn bundle_intact(client: &Client, namespace: &str, c: &Children) -> Result<bool, Error> {
    let name = c.config_map.metadata.name.as_deref().unwrap_or_default();
    let found = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?;
    Ok(found.is_some_and(|cm| {
        cm.data == c.config_map.data
            && cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::builders::BUNDLE_HASH_ANNOTATION))
                == Some(&c.bundle_hash)
    }))
}

/// The Tenant `name`: from the shared store once synced, else one GET.
async fn read_tenant(ctx: &Context, name: &str) -> Result<Option<Tenant>, Error> {
    if let Some(store) = ctx.reads.get().and_then(|r| r.tenants.get()) {
        return Ok(store.get(&ObjectRef::new(name)).map(|t| t.as_ref().clone()));
    }
    Ok(Api::<Tenant>::all(ctx.client.clone()).get_opt(name).await?)
}

async fn reconcile_scanpolicy_inner(
    policy: &Arc<ScanPolicy>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let name = policy.name_any();
    let namespace = policy
        .namespace()
        .ok_or_else(|| missing("ScanPolicy", &name, "namespace"))?;
    // Owner references need the real uid; an object from the API server always has one.
    if policy.metadata.uid.is_none() {
        return Err(missing("ScanPolicy", &name, "metadata.uid"));
    }
    let client = &ctx.client;
    let settings = ctx.settings();
    let tenant_name = policy.spec.tenant_ref.name.clone();
    let names = Names::new(&name, &namespace, &tenant_name).with_tls(policy.spec.tls.is_some());
    let outcome = match check_policy_name(&name) {
        // Every child apply would be refused; say so before trying.
        Err(why) => Err(Error::InvalidName(why)),
        Ok(()) => match read_tenant(ctx, &tenant_name).await? {
            // The Tenant watch brings the policy back when the tenant appears.
            None => Err(Error::MissingTenant(tenant_name.clone())),
            Some(tenant) => {
                let packs =
                    visible_packs(ctx, &namespace, settings.shared_namespace.as_deref()).await?;
                let key = object_key(policy.as_ref());
                let input = input_hash(policy, &tenant, &packs, &settings)?;
                match ctx.built(&key, input) {
                    Some(children) => Ok(children),
                    None => {
                        // Compiling and running pack tests is CPU work: off the async runtime,
                        // so one large pack does not stall every other reconcile and watch.
                        let (p, s) = (policy.clone(), settings.clone());
                        ctx.builds
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let built =
                            tokio::task::spawn_blocking(move || desired(&p, &tenant, &packs, &s))
                                .await
                                .map_err(|e| Error::Blocking(e.to_string()))?;
                        if let Ok(children) = &built {
                            ctx.remember_built(key, input, children.clone());
                        }
                        built
                    }
                }
            }
        },
    };
    let mut pods = None;
    let (bundle, deployment) = match outcome {
        Ok(children) => {
            let key = object_key(policy.as_ref());
            let hash = desired_hash(&children)?;
            let unchanged = if ctx.applied_recently(&key, hash)
                && bundle_intact(client, &namespace, &children).await?
            {
                // Nothing to apply; the Deployment is still needed for status.
                Api::<Deployment>::namespaced(client.clone(), &namespace)
                    .get_opt(&names.scanner)
                    .await?
            } else {
                None
            };
            let d = match unchanged {
                Some(d) => d,
                None => {
                    let d = apply_children(client, &namespace, &children).await?;
                    ctx.remember_applied(key, hash);
                    tracing::info!(policy = %name, namespace = %namespace, bundle = %children.bundle_hash, "applied");
                    d
                }
            };
            if settings.scanners_report() {
                pods = Some(scanner_pods(client, &names).await?);
            }
            (Ok(children.bundle_hash), Some(d))
        }
        Err(e) => {
            // Problems the policy's author must fix: write nothing but the status (the last
            // good bundle keeps serving) and wait for the watched objects to change.
            let reason = match &e {
                Error::InvalidPack { .. } => REASON_PACKS_INVALID,
                Error::MissingTenant(_) => REASON_TENANT_NOT_FOUND,
                Error::InvalidName(_) => REASON_INVALID_NAME,
                Error::Build(BuildError::NamespaceNotAllowed { .. }) => {
                    REASON_NAMESPACE_NOT_ALLOWED
                }
                Error::Build(BuildError::ImageNotAllowed { .. }) => REASON_IMAGE_NOT_ALLOWED,
                _ => return Err(e),
            };
            tracing::warn!(policy = %name, namespace = %namespace, error = %e, reason, "no new bundle; the last good one keeps serving");
            let d = if reason == REASON_INVALID_NAME {
                None // no child can exist under an invalid name
            } else {
                Api::<Deployment>::namespaced(client.clone(), &namespace)
                    .get_opt(&names.scanner)
                    .await?
            };
            (Err((reason, e.to_string())), d)
        }
    };
    let obs = PolicyObservation {
        generation: policy.metadata.generation,
        bundle: match &bundle {
            Ok(hash) => Ok(hash.as_str()),
            Err((reason, message)) => Err(Blocked { reason, message }),
        },
        deployment: deployment.as_ref(),
        pods: pods.as_deref(),
    };
    let status = scanpolicy_status(&names, obs, policy.status.as_ref(), &now());
    // An unchanged status is not written again: the write would only wake every watcher.
    if policy.status.as_ref() != Some(&status) {
        Api::<ScanPolicy>::namespaced(client.clone(), &namespace)
            .patch_status(
                &name,
                &apply_params(),
                &Patch::Apply(status_patch::<ScanPolicy>(&status)),
            )
            .await
            .map_err(Error::Status)?;
    }
    // Events only on change, so a steady state does not spam `kubectl describe`.
    let previous = policy.status.as_ref();
    let ready_reason = |s: Option<&ScanPolicyStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.clone())
    };
    let now_reason = ready_reason(Some(&status));
    match &bundle {
        Ok(hash) if previous.and_then(|s| s.active_bundle_hash.as_ref()) != Some(hash) => {
            let note = format!("rolled out bundle {hash} to ConfigMap {}", names.bundle);
            ctx.event(policy.as_ref(), false, "BundleUpdated", "Apply", note)
                .await;
        }
        Err((reason, why)) if previous.and_then(|s| s.last_error.as_ref()) != Some(why) => {
            let note = format!("no new bundle, the last good one keeps serving: {why}");
            ctx.event(policy.as_ref(), true, reason, "Validate", note)
                .await;
        }
        _ => {}
    }
    // Rollout problems seen on the Deployment or the pods: once per change of reason.
    if let Some(reason) = now_reason
        .as_deref()
        .filter(|r| [REASON_PROGRESS_DEADLINE, REASON_BUNDLE_REJECTED].contains(r))
    {
        if ready_reason(previous).as_deref() != Some(reason) {
            let note = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.event(policy.as_ref(), true, reason, "Rollout", note)
                .await;
        }
    }
    ctx.clear_failures(&object_key(policy.as_ref()));
    Ok(Action::requeue(RESYNC))
}

/// Reconciles one RulePack: compiles it (with its `extends` chain from the same namespace), runs
/// its tests with the scanner engine, and writes `Compiled` / `TestsPassed` / `Ready`, rule count,
/// content hash and errors by rule into its status.
pub async fn reconcile_rulepack(pack: Arc<RulePack>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = pack.name_any();
    let namespace = pack
        .namespace()
        .ok_or_else(|| missing("RulePack", &name, "namespace"))?;
    let client = &ctx.client;
    let mut packs =
        visible_packs(&ctx, &namespace, ctx.settings().shared_namespace.as_deref()).await?;
    // The object being reconciled is the freshest copy of itself.
    packs.insert(name.clone(), pack.spec.0.clone());
    // Compile and tests are CPU work: off the async runtime.
    let (n, generation, previous) = (name.clone(), pack.metadata.generation, pack.status.clone());
    let status = tokio::task::spawn_blocking(move || {
        rulepack_status(&packs, &n, generation, previous.as_ref(), &now())
    })
    .await
    .map_err(|e| Error::Blocking(e.to_string()))?;
    // Unchanged: not written again (it would only wake the watchers).
    if pack.status.as_ref() != Some(&status) {
        Api::<RulePack>::namespaced(client.clone(), &namespace)
            .patch_status(
                &name,
                &apply_params(),
                &Patch::Apply(status_patch::<RulePack>(&status)),
            )
            .await?;
    }
    let ready = |s: Option<&RulePackStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True")
    };
    if ready(Some(&status)) == Some(false) && ready(pack.status.as_ref()) != Some(false) {
        let reason = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        let first = status
            .errors
            .first()
            .map(|e| match &e.rule {
                Some(r) => format!("rule `{r}`: {}", e.message),
                None => e.message.clone(),
            })
            .or_else(|| {
                status
                    .tests
                    .as_ref()
                    .and_then(|t| t.failures.first().cloned())
            })
            .unwrap_or_default();
        ctx.event(pack.as_ref(), true, &reason, "Validate", first)
            .await;
    }
    ctx.clear_failures(&object_key(pack.as_ref()));
    Ok(Action::requeue(RESYNC))
}

/// 32 random bytes from the thread-local CSPRNG (ChaCha, seeded from the OS), the HMAC key of
/// a tenant's audit input hashes and webhook signatures.
fn hmac_key() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

/// Creates the tenant's HMAC key Secret in `namespace` unless it exists. A create (POST), not an
/// apply: an existing key is never read or overwritten — rotating it would break the audit chain
/// and every webhook receiver — so a 409 AlreadyExists is success. Returns whether it created one.
async fn ensure_hmac_secret(
    client: &Client,
    tenant: &Tenant,
    namespace: &str,
) -> Result<bool, Error> {
    let (name, key) = hmac_secret(tenant);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "prompt-defenders".to_string(),
                ),
                ("promptdefenders.io/tenant".to_string(), tenant.name_any()),
            ])),
            // No owner reference on purpose: deleting a Tenant must not destroy the key that
            // verifies its past audit records.
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(key, ByteString(hmac_key()))])),
        ..Secret::default()
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&params, &secret)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How soon a Tenant with a listed namespace that does not exist (yet) is looked at again:
/// namespaces are not watched, and creating one is the usual next step after the Tenant.
pub const MISSING_NAMESPACE_RETRY: Duration = Duration::from_secs(30);

/// Reconciles one Tenant: counts the ScanPolicies that refer to it, makes sure its HMAC key
/// Secret exists in every namespace it lists (and nowhere else: a policy in an unlisted
/// namespace is refused, so it needs no key), and writes `policyCount` and `Ready`.
///
/// One namespace never stops the others: a listed namespace that does not exist is reported
/// (`Ready=False`, reason `NamespacesMissing`, naming them) and retried after
/// [`MISSING_NAMESPACE_RETRY`]; any other failure is reported (`SecretCreateFailed`) and retried
/// with backoff after every namespace was tried.
pub async fn reconcile_tenant(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = tenant.name_any();
    let client = &ctx.client;
    let policies = Api::<ScanPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mine = policies
        .items
        .iter()
        .filter(|p| p.spec.tenant_ref.name == name)
        .count();
    let namespaces: BTreeSet<String> = tenant.spec.namespaces.iter().cloned().collect();
    let mut missing = Vec::new();
    let mut failed: Option<Error> = None;
    for ns in &namespaces {
        match ensure_hmac_secret(client, &tenant, ns).await {
            Ok(true) => {
                tracing::info!(tenant = %name, namespace = %ns, "created the HMAC key Secret")
            }
            Ok(false) => {}
            Err(Error::Kube(kube::Error::Api(s))) if s.is_not_found() => missing.push(ns.clone()),
            Err(e) => {
                tracing::warn!(tenant = %name, namespace = %ns, error = %e, "cannot create the HMAC key Secret");
                failed.get_or_insert(e);
            }
        }
    }
    let generation = tenant.metadata.generation;
    let mut status = TenantStatus {
        observed_generation: generation,
        conditions: tenant
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        policy_count: u32::try_from(mine).unwrap_or(u32::MAX),
        missing_namespaces: missing.clone(),
        // Written by the usage aggregation under its own field manager (crate::usage); left
        // out of this apply so that one never takes them over with stale figures.
        usage: None,
        quota: None,
    };
    let present = namespaces.len() - missing.len();
    let (ready, reason, message, progress) = if let Some(e) = &failed {
        let permanent = e.is_permanent();
        (
            false,
            "SecretCreateFailed",
            format!("cannot create the HMAC key Secret: {e}"),
            if permanent {
                Progress::Stalled
            } else {
                Progress::Working
            },
        )
    } else if !missing.is_empty() {
        (
            false,
            "NamespacesMissing",
            format!(
                "listed namespace(s) do not exist: {}; retrying every {} s",
                missing.join(", "),
                MISSING_NAMESPACE_RETRY.as_secs()
            ),
            // Creating the namespace fixes it without touching the Tenant: keep waiting.
            Progress::Working,
        )
    } else if namespaces.is_empty() {
        (
            true,
            "NoNamespaces",
            format!(
                "{mine} policies; no namespace is listed, so no ScanPolicy can use this tenant"
            ),
            Progress::Done,
        )
    } else {
        (
            true,
            "Reconciled",
            format!("{mine} policies; HMAC key present in {present} namespace(s)"),
            Progress::Done,
        )
    };
    let now = now();
    set_condition(
        &mut status.conditions,
        condition("Ready", ready, reason, message.clone(), generation, &now),
    );
    set_progress(
        &mut status.conditions,
        progress,
        reason,
        &message,
        generation,
        &now,
    );
    let unchanged = tenant.status.as_ref().is_some_and(|s| {
        TenantStatus {
            usage: None,
            quota: None,
            ..s.clone()
        } == status
    });
    if !unchanged {
        Api::<Tenant>::all(client.clone())
            .patch_status(
                &name,
                &apply_params(),
                &Patch::Apply(status_patch::<Tenant>(&status)),
            )
            .await
            .map_err(Error::Status)?;
    }
    let was = tenant
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.reason.clone(), c.message.clone()));
    if !ready && was != Some((reason.to_string(), message.clone())) {
        ctx.event(tenant.as_ref(), true, reason, "Reconcile", message)
            .await;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    ctx.clear_failures(&object_key(tenant.as_ref()));
    if missing.is_empty() {
        Ok(Action::requeue(RESYNC))
    } else {
        Ok(Action::requeue(MISSING_NAMESPACE_RETRY))
    }
}

/// The ScanPolicies of `tenant` (its namespaces and clients shape their children).
pub fn policies_of_tenant(
    tenant: &Tenant,
    policies: &[Arc<ScanPolicy>],
) -> Vec<ObjectRef<ScanPolicy>> {
    let name = tenant.name_any();
    policies
        .iter()
        .filter(|p| p.spec.tenant_ref.name == name)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The ScanPolicy a scanner pod belongs to, from its `promptdefenders.io/policy` label.
pub fn policy_of_pod(pod: &Pod) -> Option<ObjectRef<ScanPolicy>> {
    let policy = pod.labels().get("promptdefenders.io/policy")?;
    Some(ObjectRef::new(policy).within(&pod.namespace()?))
}

/// Finds the pack `name` as seen from `namespace`: the namespace's own first, then the shared
/// namespace's (the same lookup order as [`visible_packs`]).
fn resolve<'a>(
    name: &str,
    packs: &'a [Arc<RulePack>],
    namespace: &str,
    shared: Option<&str>,
) -> Option<&'a RulePack> {
    let find = |ns: &str| {
        packs
            .iter()
            .find(|p| p.name_any() == name && p.namespace().as_deref() == Some(ns))
    };
    find(namespace)
        .or_else(|| shared.and_then(find))
        .map(AsRef::as_ref)
}

/// The packs (namespace, name) that `name`, seen from `namespace`, resolves through: itself
/// and its `extends` chain.
fn chain(
    name: &str,
    packs: &[Arc<RulePack>],
    namespace: &str,
    shared: Option<&str>,
) -> BTreeSet<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut next = Some(name.to_string());
    while let Some(n) = next.take() {
        let Some(found) = resolve(&n, packs, namespace, shared) else {
            break; // missing; the compiler reports it
        };
        let key = (found.namespace().unwrap_or_default(), n);
        if !seen.insert(key) {
            break; // a cycle; the compiler reports it
        }
        next = found.spec.0.extends.clone();
    }
    seen
}

/// The ScanPolicies that use `pack`: binding it directly, through an `extends` chain, or
/// binding every visible pack (empty `rulePacks`) — in its namespace, or in any namespace when
/// `pack` lives in the `shared` namespace. The RulePack watch of the ScanPolicy controller maps
/// a pack change through this, so every user re-reconciles.
pub fn policies_using_pack(
    pack: &RulePack,
    policies: &[Arc<ScanPolicy>],
    packs: &[Arc<RulePack>],
    shared: Option<&str>,
) -> Vec<ObjectRef<ScanPolicy>> {
    let name = pack.name_any();
    let Some(namespace) = pack.namespace() else {
        return Vec::new();
    };
    let key = (namespace.clone(), name);
    let is_shared = shared == Some(namespace.as_str());
    policies
        .iter()
        .filter_map(|p| Some((p, p.namespace()?)))
        .filter(|(_, ns)| *ns == namespace || is_shared)
        .filter(|(p, ns)| {
            if p.spec.rule_packs.is_empty() {
                // Every visible pack: this one unless a local pack shadows it.
                return resolve(&key.1, packs, ns, shared)
                    .is_some_and(|r| r.namespace().as_deref() == Some(key.0.as_str()));
            }
            p.spec
                .rule_packs
                .iter()
                .any(|b| chain(b, packs, ns, shared).contains(&key))
        })
        .map(|(p, _)| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The RulePacks whose `extends` chain includes `pack` (their status depends on it).
pub fn packs_extending(
    pack: &RulePack,
    packs: &[Arc<RulePack>],
    shared: Option<&str>,
) -> Vec<ObjectRef<RulePack>> {
    let name = pack.name_any();
    let Some(namespace) = pack.namespace() else {
        return Vec::new();
    };
    let key = (namespace.clone(), name);
    let is_shared = shared == Some(namespace.as_str());
    packs
        .iter()
        .filter_map(|p| Some((p, p.namespace()?)))
        .filter(|(_, ns)| *ns == namespace || is_shared)
        .map(|(p, ns)| (p, (ns, p.name_any())))
        // Not the pack itself: its own chain starts with it.
        .filter(|(_, this)| *this != key)
        .filter(|(_, (ns, name))| chain(name, packs, ns, shared).contains(&key))
        .map(|(p, _)| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The objects of `events` (a [`SharedWatch`] subscription) whose spec changed, that appeared
/// or that went away ([`crate::triggers::SpecChanges`]), as a controller trigger stream.
fn spec_changes<K>(
    events: impl futures::Stream<Item = watcher::Event<K>> + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut changes = crate::triggers::SpecChanges::<K>::default();
    events.flat_map(move |event| futures::stream::iter(changes.on_event(event).into_iter().map(Ok)))
}

/// Each controller reconciles at most `max_concurrent` objects at once (0: unbounded), so a
/// burst (the API server moving, a shared pack changing) cannot flood the API server or pin
/// every core with compiles.
fn controller_config(max_concurrent: u16) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(max_concurrent)
}

/// Wraps a reconcile function so every call is counted and timed in [`Metrics`].
fn instrumented<K, F, Fut>(
    kind: &'static str,
    metrics: Arc<Metrics>,
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> futures::future::BoxFuture<'static, Result<Action, Error>>
where
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
    K: Send + Sync + 'static,
{
    move |obj, ctx| {
        let metrics = metrics.clone();
        Box::pin(async move {
            let start = Instant::now();
            let result = reconcile(obj, ctx).await;
            metrics.observe(kind, start.elapsed(), result.is_ok());
            result
        })
    }
}

/// Runs the ScanPolicy, RulePack and Tenant controllers and the health/metrics server on
/// `listener` until SIGTERM/SIGINT, then lets in-flight reconciles finish
/// (`shutdown_on_signal`) and stops the server.
pub async fn run(
    client: Client,
    listener: TcpListener,
    elector: Option<LeaderElector>,
    settings: Settings,
    follow_api_server: bool,
    max_concurrent: u16,
    usage_interval: Duration,
) -> Result<(), RunError> {
    let shared_for_packs = settings.shared_namespace.clone();
    let shared_for_policies = settings.shared_namespace.clone();
    let ctx = Arc::new(Context::with_settings(client.clone(), settings));
    let metrics = Arc::new(Metrics::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Health and metrics answer while this replica waits to become leader.
    let server = tokio::spawn(crate::metrics::serve(listener, metrics.clone(), async {
        let _ = stopped.await;
    }));
    let stop_server = |stop: tokio::sync::oneshot::Sender<()>| async move {
        let _ = stop.send(());
        match server.await {
            Ok(served) => served.map_err(RunError::Server),
            Err(e) => Err(RunError::Server(std::io::Error::other(e))),
        }
    };

    // Lease lost → every controller shuts down gracefully, then `run` fails.
    let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
    let renewer = match &elector {
        None => None,
        Some(elector) => {
            tokio::select! {
                () = acquire(elector) => {}
                _ = shutdown_signal() => return stop_server(stop).await,
            }
            tracing::info!(identity = %elector.identity, lease = %elector.lease_name, "became leader");
            metrics.set_phase(Phase::Syncing);
            let elector = elector.clone();
            Some(tokio::spawn(async move {
                let lost = keep_renewing(&elector).await;
                let _ = lost_tx.send(true);
                lost
            }))
        }
    };
    if elector.is_none() {
        metrics.set_phase(Phase::Syncing);
    }
    let lease_lost = move || {
        let mut rx = lost_rx.clone();
        async move {
            let _ = rx.wait_for(|lost| *lost).await;
        }
    };
    let all = watcher::Config::default();
    let children = watcher::Config::default().labels(MANAGED_BY_SELECTOR);

    // One watch per custom-resource kind, shared by the store the reconcilers read and by every
    // trigger (`crate::shared`): a mapper or a reconcile that follows an event sees at least
    // that event's version. Subscriptions are taken before the watches start.
    let (pack_watch, drive_packs) = SharedWatch::new(
        watcher::watcher(Api::<RulePack>::all(client.clone()), all.clone()).default_backoff(),
    );
    let (policy_watch, drive_policies) = SharedWatch::new(
        watcher::watcher(Api::<ScanPolicy>::all(client.clone()), all.clone()).default_backoff(),
    );
    let (tenant_watch, drive_tenants) = SharedWatch::new(
        watcher::watcher(Api::<Tenant>::all(client.clone()), all.clone()).default_backoff(),
    );
    let (pack_store, policy_store, tenant_store) = (
        pack_watch.store(),
        policy_watch.store(),
        tenant_watch.store(),
    );
    ctx.read_from(Reads {
        tenants: tenant_store.clone(),
        packs: pack_store.clone(),
    });
    let caches = {
        let (a, b, c) = (
            pack_store.any().clone(),
            policy_store.any().clone(),
            tenant_store.any().clone(),
        );
        vec![
            async move { a.wait_until_ready().await }.boxed(),
            async move { b.wait_until_ready().await }.boxed(),
            async move { c.wait_until_ready().await }.boxed(),
        ]
    };

    // RulePacks: a pack's own spec changes, and those of the packs it extends.
    let store = pack_store.clone();
    let packs = Controller::for_stream(
        spec_changes(pack_watch.subscribe()),
        pack_store.any().clone(),
    )
    .with_config(controller_config(max_concurrent))
    .watches_stream(spec_changes(pack_watch.subscribe()), move |p| {
        let packs = crate::triggers::with_event_pack(store.any().state(), &p);
        packs_extending(&p, &packs, shared_for_packs.as_deref())
    })
    .shutdown_on_signal()
    .graceful_shutdown_on(lease_lost())
    .run(
        instrumented("RulePack", metrics.clone(), reconcile_rulepack),
        error_policy,
        ctx.clone(),
    )
    .for_each(|r| async move {
        if let Ok((obj, _)) = r {
            tracing::debug!(rulepack = %obj, "reconciled");
        }
    });

    // `--api-server-egress auto`: when the control plane moves, every scanner NetworkPolicy
    // must follow, or the scanners' ConfigMap watch falls back to kubelet's slower sync.
    let api_server_moved = if follow_api_server {
        let ctx = ctx.clone();
        crate::apiserver::changes(client.clone(), move |found| ctx.set_api_server(found)).boxed()
    } else {
        futures::stream::pending().boxed()
    };
    // ScanPolicies: their own spec changes (not their status writes), their children, and the
    // spec changes of the packs and tenants they use.
    let policies = Controller::for_stream(
        spec_changes(policy_watch.subscribe()),
        policy_store.any().clone(),
    )
    .with_config(controller_config(max_concurrent))
    // Not the usage ledgers: scanners write them every few seconds, and nothing in them
    // shapes a policy's children (crate::usage reads them on its own watch).
    .owns(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{MANAGED_BY_SELECTOR},!{}",
            pd_engine::usage::ledger::LEDGER_LABEL
        )),
    )
    .owns(Api::<Deployment>::all(client.clone()), children.clone())
    .owns(Api::<Service>::all(client.clone()), children.clone())
    .owns(Api::<NetworkPolicy>::all(client.clone()), children.clone())
    .owns(
        Api::<HorizontalPodAutoscaler>::all(client.clone()),
        children.clone(),
    )
    .owns(
        Api::<PodDisruptionBudget>::all(client.clone()),
        children.clone(),
    )
    .owns(Api::<ServiceAccount>::all(client.clone()), children.clone())
    .owns(Api::<Role>::all(client.clone()), children.clone())
    .owns(Api::<RoleBinding>::all(client.clone()), children.clone());
    // Scanners that report what they serve do it on their Pod: a reload must re-judge `Ready`.
    let policies = if ctx.settings().scanners_report() {
        policies.watches(Api::<Pod>::all(client.clone()), children, |pod| {
            policy_of_pod(&pod)
        })
    } else {
        policies
    };
    let (packs_for_map, policies_for_packs, policies_for_tenants) = (
        pack_store.clone(),
        policy_store.clone(),
        policy_store.clone(),
    );
    let policies = policies
        .watches_stream(spec_changes(pack_watch.subscribe()), move |p| {
            // The event's own version over the store (a deleted pack is no longer in it).
            let packs = crate::triggers::with_event_pack(packs_for_map.any().state(), &p);
            policies_using_pack(
                &p,
                &policies_for_packs.any().state(),
                &packs,
                shared_for_policies.as_deref(),
            )
        })
        .watches_stream(spec_changes(tenant_watch.subscribe()), move |t| {
            policies_of_tenant(&t, &policies_for_tenants.any().state())
        })
        .reconcile_all_on(api_server_moved)
        .shutdown_on_signal()
        .graceful_shutdown_on(lease_lost())
        .run(
            instrumented("ScanPolicy", metrics.clone(), reconcile_scanpolicy),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Ok((obj, _)) = r {
                tracing::debug!(scanpolicy = %obj, "reconciled");
            }
        });

    // Tenants: their own spec changes, and a policy appearing, going away or changing tenant
    // (`triggers::TenantTriggers`; not every policy status write).
    let mut seen = crate::triggers::TenantTriggers::default();
    let tenant_triggers = policy_watch.subscribe().flat_map(move |event| {
        futures::stream::iter(
            seen.on_event(event)
                .into_iter()
                .map(|t| ObjectRef::<Tenant>::new(&t)),
        )
    });
    let janitor_ctx = ctx.clone();
    let usage_ctx = ctx.clone();
    let tenants = Controller::for_stream(
        spec_changes(tenant_watch.subscribe()),
        tenant_store.any().clone(),
    )
    .with_config(controller_config(max_concurrent))
    .reconcile_on(tenant_triggers)
    .shutdown_on_signal()
    .graceful_shutdown_on(lease_lost())
    .run(
        instrumented("Tenant", metrics.clone(), reconcile_tenant),
        error_policy,
        ctx,
    )
    .for_each(|r| async move {
        if let Ok((obj, _)) = r {
            tracing::debug!(tenant = %obj, "reconciled");
        }
    });

    // Forget what the reconcilers remember about policies that are gone.
    let janitor = {
        let (events, ctx) = (policy_watch.subscribe(), janitor_ctx);
        let mut janitor = PolicyJanitor::default();
        tokio::spawn(events.for_each(move |event| {
            janitor.on_event(&ctx, &event);
            futures::future::ready(())
        }))
    };
    // Every subscription exists now: start the watches.
    let drivers = [
        tokio::spawn(drive_packs),
        tokio::spawn(drive_policies),
        tokio::spawn(drive_tenants),
    ];
    let synced = metrics;
    let readiness = tokio::spawn(async move {
        // Each store is ready after its watch's first full list; an error means the store's
        // writer stopped, which shutdown handles.
        if futures::future::try_join_all(caches).await.is_ok() {
            synced.set_phase(Phase::Ready);
            tracing::info!("caches synced; ready");
        }
    });
    // Usage: ledgers summed into Tenant status, quotas written back (crate::usage).
    let usage = {
        let tenants = tenant_store.clone();
        tokio::spawn(crate::usage::run(usage_ctx, usage_interval, move || {
            tenants.get().map(|s| s.state())
        }))
    };
    tracing::info!("pd-operator controllers started");
    futures::join!(packs, policies, tenants);
    usage.abort();
    janitor.abort();
    readiness.abort();
    for driver in drivers {
        driver.abort();
    }
    let lost = match renewer {
        Some(renewer) if renewer.is_finished() => Some(match renewer.await {
            Ok(reason) => reason,
            Err(e) => e.to_string(),
        }),
        Some(renewer) => {
            // Shut down by a signal: stop renewing and hand the Lease over at once.
            renewer.abort();
            if let Some(elector) = &elector {
                match elector.release(crate::leader::now()).await {
                    Ok(()) => tracing::info!("released the leader lease"),
                    Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
                }
            }
            None
        }
        None => None,
    };
    stop_server(stop).await?;
    if let Some(reason) = lost {
        return Err(RunError::LeadershipLost(reason));
    }
    tracing::info!("pd-operator stopped");
    Ok(())
}

/// Why [`run`] failed.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("health/metrics server: {0}")]
    Server(std::io::Error),
    /// The Lease could not be renewed or another replica holds it: the controllers were stopped;
    /// the process should exit non-zero so Kubernetes restarts it as a fresh candidate.
    #[error("lost leadership: {0}")]
    LeadershipLost(String),
}

/// Retries every `renew_every` until this replica holds the Lease (the caller races this
/// against the shutdown signal).
async fn acquire(elector: &LeaderElector) {
    let mut logged = false;
    loop {
        match elector.try_acquire_or_renew(crate::leader::now()).await {
            Ok(true) => return,
            Ok(false) if !logged => {
                tracing::info!(lease = %elector.lease_name, "another replica is leader; waiting");
                logged = true;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::time::sleep(elector.renew_every).await;
    }
}

/// Renews every `renew_every` while leader. Returns why leadership ended: the Lease was taken
/// (or a write conflicted), or renewals kept failing until less than one renew period of the
/// Lease was left (client-go's renew deadline).
async fn keep_renewing(elector: &LeaderElector) -> String {
    let deadline = elector.lease_duration.saturating_sub(elector.renew_every);
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(elector.renew_every).await;
        match elector.try_acquire_or_renew(crate::leader::now()).await {
            Ok(true) => last_renewed = Instant::now(),
            Ok(false) => {
                return format!("lease `{}` is held by another replica", elector.lease_name)
            }
            Err(e) if last_renewed.elapsed() >= deadline => {
                return format!("cannot renew lease `{}`: {e}", elector.lease_name)
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease; retrying"),
        }
    }
}

/// Ctrl+C or SIGTERM, while waiting for leadership (the controllers have their own handlers).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
