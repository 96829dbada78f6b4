//! `pd-operator run`: the three controllers on shared watches, leader election, the
//! health/metrics server and a graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use thiserror::Error;
use tokio::net::TcpListener;

use super::{
    error_policy, packs_extending, policies_of_tenant, policies_using_pack, policy_of_pod,
    reconcile_rulepack, reconcile_scanpolicy, reconcile_tenant, Context, Error, PolicyJanitor,
    Reads,
};
use crate::builders::Settings;
use crate::crd::{RulePack, ScanPolicy, Tenant};
use crate::leader::LeaderElector;
use crate::metrics::{Metrics, Phase};
use crate::shared::SharedWatch;

/// Label every child carries; the owned-object watches select on it so the operator does not
/// cache every ConfigMap and Deployment of the cluster.
const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=pd-operator";

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
