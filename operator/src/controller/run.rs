//! `pd-operator run`: the three controllers on shared watches, leader election, the
//! health/metrics server and a graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
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
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

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
    let shared_namespace = settings.shared_namespace.clone();
    let ctx = Arc::new(Context::with_settings(client.clone(), settings));
    let metrics = Arc::new(Metrics::new());
    // Health and metrics answer while this replica waits to become leader.
    let server = HealthServer::start(listener, metrics.clone());
    let Some(leadership) = Leadership::acquire(elector, &metrics).await else {
        return server.stop().await;
    };
    let (watches, drivers) = Watches::new(&client);
    ctx.read_from(Reads {
        tenants: watches.tenants.store(),
        packs: watches.packs.store(),
    });
    let wiring = Wiring {
        client: &client,
        ctx: &ctx,
        metrics: &metrics,
        watches: &watches,
        leadership: &leadership,
        config: controller_config(max_concurrent),
        shared_namespace,
    };
    let packs = wiring.rulepacks();
    let policies = wiring.scanpolicies(follow_api_server);
    let tenants = wiring.tenants();
    // Every subscription exists now: the watches may start.
    let background = wiring.background(drivers, usage_interval);
    tracing::info!("pd-operator controllers started");
    futures::join!(packs, policies, tenants);
    for task in background {
        task.abort();
    }
    let lost = leadership.step_down().await;
    server.stop().await?;
    if let Some(reason) = lost {
        return Err(RunError::LeadershipLost(reason));
    }
    tracing::info!("pd-operator stopped");
    Ok(())
}

/// The health/metrics server ([`crate::metrics::serve`]), up from the start of [`run`] to its end.
struct HealthServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl HealthServer {
    fn start(listener: TcpListener, metrics: Arc<Metrics>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::metrics::serve(listener, metrics, async {
            let _ = stopped.await;
        }));
        HealthServer { stop, task }
    }

    async fn stop(self) -> Result<(), RunError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(served) => served.map_err(RunError::Server),
            Err(e) => Err(RunError::Server(std::io::Error::other(e))),
        }
    }
}

/// This replica's hold on the Lease while the controllers run (always held without an elector).
/// Lease lost → every controller shuts down gracefully ([`Leadership::lost`]), then `run` fails.
struct Leadership {
    elector: Option<LeaderElector>,
    /// Renews the Lease; ends with the reason leadership was lost.
    renewer: Option<JoinHandle<String>>,
    lost: watch::Receiver<bool>,
    /// Without an elector nobody ever reports a loss, but the channel must stay open (a closed
    /// one would read as lost).
    _never_lost: Option<watch::Sender<bool>>,
}

impl Leadership {
    /// Waits until this replica leads (at once without an elector); `None` when a shutdown
    /// signal came first.
    async fn acquire(elector: Option<LeaderElector>, metrics: &Metrics) -> Option<Leadership> {
        let (lost_tx, lost) = watch::channel(false);
        let (renewer, never_lost) = match &elector {
            None => (None, Some(lost_tx)),
            Some(elector) => {
                tokio::select! {
                    () = acquire(elector) => {}
                    _ = shutdown_signal() => return None,
                }
                tracing::info!(identity = %elector.identity, lease = %elector.lease_name, "became leader");
                let elector = elector.clone();
                let renewer = tokio::spawn(async move {
                    let lost = keep_renewing(&elector).await;
                    let _ = lost_tx.send(true);
                    lost
                });
                (Some(renewer), None)
            }
        };
        metrics.set_phase(Phase::Syncing);
        Some(Leadership {
            elector,
            renewer,
            lost,
            _never_lost: never_lost,
        })
    }

    /// Completes when the Lease is lost (a controller's `graceful_shutdown_on`).
    fn lost(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.lost.clone();
        async move {
            let _ = rx.wait_for(|lost| *lost).await;
        }
    }

    /// Once the controllers stopped: why leadership was lost, or `None` after a shutdown signal
    /// (then the Lease is handed over at once).
    async fn step_down(self) -> Option<String> {
        match self.renewer {
            Some(renewer) if renewer.is_finished() => Some(match renewer.await {
                Ok(reason) => reason,
                Err(e) => e.to_string(),
            }),
            Some(renewer) => {
                // Shut down by a signal: stop renewing and hand the Lease over at once.
                renewer.abort();
                if let Some(elector) = &self.elector {
                    match elector.release(crate::leader::now()).await {
                        Ok(()) => tracing::info!("released the leader lease"),
                        Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
                    }
                }
                None
            }
            None => None,
        }
    }
}

/// One watch per custom-resource kind, shared by the store the reconcilers read and by every
/// trigger (`crate::shared`): a mapper or a reconcile that follows an event sees at least
/// that event's version.
struct Watches {
    packs: SharedWatch<RulePack>,
    policies: SharedWatch<ScanPolicy>,
    tenants: SharedWatch<Tenant>,
}

/// The futures that drive the [`Watches`]; started only once every subscription is taken.
struct Drivers(Vec<BoxFuture<'static, ()>>);

impl Watches {
    fn new(client: &Client) -> (Self, Drivers) {
        let all = watcher::Config::default();
        let (packs, drive_packs) = SharedWatch::new(
            watcher::watcher(Api::<RulePack>::all(client.clone()), all.clone()).default_backoff(),
        );
        let (policies, drive_policies) = SharedWatch::new(
            watcher::watcher(Api::<ScanPolicy>::all(client.clone()), all.clone()).default_backoff(),
        );
        let (tenants, drive_tenants) = SharedWatch::new(
            watcher::watcher(Api::<Tenant>::all(client.clone()), all).default_backoff(),
        );
        let drivers = vec![
            drive_packs.boxed(),
            drive_policies.boxed(),
            drive_tenants.boxed(),
        ];
        (
            Watches {
                packs,
                policies,
                tenants,
            },
            Drivers(drivers),
        )
    }

    /// Completes once each store holds its watch's first full list (`false`: a store's writer
    /// stopped, which shutdown handles).
    fn synced(&self) -> impl Future<Output = bool> + Send + 'static {
        let (a, b, c) = (
            self.packs.store().any().clone(),
            self.policies.store().any().clone(),
            self.tenants.store().any().clone(),
        );
        async move {
            futures::future::try_join3(
                a.wait_until_ready(),
                b.wait_until_ready(),
                c.wait_until_ready(),
            )
            .await
            .is_ok()
        }
    }
}

/// What the three controllers and the background tasks are built from.
struct Wiring<'a> {
    client: &'a Client,
    ctx: &'a Arc<Context>,
    metrics: &'a Arc<Metrics>,
    watches: &'a Watches,
    leadership: &'a Leadership,
    config: kube::runtime::controller::Config,
    shared_namespace: Option<String>,
}

impl Wiring<'_> {
    /// RulePacks: a pack's own spec changes, and those of the packs it extends.
    fn rulepacks(&self) -> impl Future<Output = ()> {
        let packs = &self.watches.packs;
        let (store, shared) = (packs.store(), self.shared_namespace.clone());
        Controller::for_stream(spec_changes(packs.subscribe()), store.any().clone())
            .with_config(self.config.clone())
            .watches_stream(spec_changes(packs.subscribe()), move |p| {
                let packs = crate::triggers::with_event_pack(store.any().state(), &p);
                packs_extending(&p, &packs, shared.as_deref())
            })
            .shutdown_on_signal()
            .graceful_shutdown_on(self.leadership.lost())
            .run(
                instrumented("RulePack", self.metrics.clone(), reconcile_rulepack),
                error_policy,
                self.ctx.clone(),
            )
            .for_each(|r| async move {
                if let Ok((obj, _)) = r {
                    tracing::debug!(rulepack = %obj, "reconciled");
                }
            })
    }

    /// ScanPolicies: their own spec changes (not their status writes), their children, and the
    /// spec changes of the packs and tenants they use.
    fn scanpolicies(&self, follow_api_server: bool) -> impl Future<Output = ()> {
        let (packs, policies) = (self.watches.packs.store(), self.watches.policies.store());
        let policies_for_tenants = policies.clone();
        let shared = self.shared_namespace.clone();
        self.scanpolicy_children()
            .watches_stream(spec_changes(self.watches.packs.subscribe()), move |p| {
                // The event's own version over the store (a deleted pack is no longer in it).
                let packs = crate::triggers::with_event_pack(packs.any().state(), &p);
                policies_using_pack(&p, &policies.any().state(), &packs, shared.as_deref())
            })
            .watches_stream(spec_changes(self.watches.tenants.subscribe()), move |t| {
                policies_of_tenant(&t, &policies_for_tenants.any().state())
            })
            .reconcile_all_on(self.api_server_moved(follow_api_server))
            .shutdown_on_signal()
            .graceful_shutdown_on(self.leadership.lost())
            .run(
                instrumented("ScanPolicy", self.metrics.clone(), reconcile_scanpolicy),
                error_policy,
                self.ctx.clone(),
            )
            .for_each(|r| async move {
                if let Ok((obj, _)) = r {
                    tracing::debug!(scanpolicy = %obj, "reconciled");
                }
            })
    }

    /// The ScanPolicy controller on its own spec changes and its children (and, when scanners
    /// report what they serve, their pods).
    fn scanpolicy_children(&self) -> Controller<ScanPolicy> {
        let client = self.client;
        let children = watcher::Config::default().labels(MANAGED_BY_SELECTOR);
        let policies = &self.watches.policies;
        let controller = Controller::for_stream(
            spec_changes(policies.subscribe()),
            policies.store().any().clone(),
        )
        .with_config(self.config.clone())
        // Not the usage ledgers: scanners write them every few seconds, and nothing in
        // them shapes a policy's children (crate::usage reads them on its own watch).
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
        if self.ctx.settings().scanners_report() {
            controller.watches(Api::<Pod>::all(client.clone()), children, |pod| {
                policy_of_pod(&pod)
            })
        } else {
            controller
        }
    }

    /// `--api-server-egress auto`: when the control plane moves, every scanner NetworkPolicy
    /// must follow, or the scanners' ConfigMap watch falls back to kubelet's slower sync.
    fn api_server_moved(&self, follow: bool) -> BoxStream<'static, ()> {
        if follow {
            let ctx = self.ctx.clone();
            crate::apiserver::changes(self.client.clone(), move |found| ctx.set_api_server(found))
                .boxed()
        } else {
            futures::stream::pending().boxed()
        }
    }

    /// Tenants: their own spec changes, and a policy appearing, going away or changing tenant
    /// (`triggers::TenantTriggers`; not every policy status write).
    fn tenants(&self) -> impl Future<Output = ()> {
        let mut seen = crate::triggers::TenantTriggers::default();
        let triggers = self.watches.policies.subscribe().flat_map(move |event| {
            futures::stream::iter(
                seen.on_event(event)
                    .into_iter()
                    .map(|t| ObjectRef::<Tenant>::new(&t)),
            )
        });
        let tenants = &self.watches.tenants;
        Controller::for_stream(
            spec_changes(tenants.subscribe()),
            tenants.store().any().clone(),
        )
        .with_config(self.config.clone())
        .reconcile_on(triggers)
        .shutdown_on_signal()
        .graceful_shutdown_on(self.leadership.lost())
        .run(
            instrumented("Tenant", self.metrics.clone(), reconcile_tenant),
            error_policy,
            self.ctx.clone(),
        )
        .for_each(|r| async move {
            if let Ok((obj, _)) = r {
                tracing::debug!(tenant = %obj, "reconciled");
            }
        })
    }

    /// Starts what runs beside the controllers, the watches last (every subscription exists
    /// by then): the policy janitor, the readiness flip and the usage aggregation. The caller
    /// aborts the returned tasks once the controllers stopped.
    fn background(&self, drivers: Drivers, usage_interval: Duration) -> Vec<JoinHandle<()>> {
        // Forget what the reconcilers remember about policies that are gone.
        let janitor = {
            let (events, ctx) = (self.watches.policies.subscribe(), self.ctx.clone());
            let mut janitor = PolicyJanitor::default();
            tokio::spawn(events.for_each(move |event| {
                janitor.on_event(&ctx, &event);
                futures::future::ready(())
            }))
        };
        let mut tasks: Vec<JoinHandle<()>> = drivers.0.into_iter().map(tokio::spawn).collect();
        let (synced, metrics) = (self.watches.synced(), self.metrics.clone());
        let readiness = tokio::spawn(async move {
            if synced.await {
                metrics.set_phase(Phase::Ready);
                tracing::info!("caches synced; ready");
            }
        });
        // Usage: ledgers summed into Tenant status, quotas written back (crate::usage).
        let usage = {
            let tenants = self.watches.tenants.store();
            tokio::spawn(crate::usage::run(
                self.ctx.clone(),
                usage_interval,
                move || tenants.get().map(|s| s.state()),
            ))
        };
        tasks.extend([janitor, readiness, usage]);
        tasks
    }
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
