//! The ScanPolicy reconciler: build the children, apply them, write status and Events.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use pd_engine::compile::PackSet;

use super::apply::{apply_children, apply_params, now, status_patch};
use super::error::missing;
use super::hash::{desired_hash, input_hash};
use super::reads::{read_tenant, visible_packs};
use super::{object_key, Context, Error, RESYNC};
use crate::builders::{build_children, BuildError, Children, Names, Settings};
use crate::crd::{ScanPolicy, ScanPolicyStatus, Tenant};
use crate::render::{check_pack_tests, RenderError};
use crate::status::{
    check_policy_name, failure_status, scanpolicy_status, Blocked, PolicyObservation,
    REASON_API_ERROR, REASON_APPLY_FAILED, REASON_BUNDLE_REJECTED, REASON_IMAGE_NOT_ALLOWED,
    REASON_INVALID_NAME, REASON_NAMESPACE_NOT_ALLOWED, REASON_PACKS_INVALID,
    REASON_PROGRESS_DEADLINE, REASON_TENANT_NOT_FOUND,
};

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
/// [`error_policy`](super::error_policy)'s backoff, so `kubectl get sp` never shows a stale `Ready=True` over a
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

/// One reconcile of a ScanPolicy: build, roll out (or explain why not), write status, publish
/// what changed.
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
    let settings = ctx.settings();
    let names = Names::new(&name, &namespace, &policy.spec.tenant_ref.name)
        .with_tls(policy.spec.tls.is_some());
    let observed = match build(policy, ctx, &settings, &names).await? {
        Ok(children) => roll_out(policy, ctx, &settings, &names, &children).await?,
        Err(e) => hold_back(ctx, &names, e).await?,
    };
    let obs = PolicyObservation {
        generation: policy.metadata.generation,
        bundle: match &observed.bundle {
            Ok(hash) => Ok(hash.as_str()),
            Err((reason, message)) => Err(Blocked { reason, message }),
        },
        deployment: observed.deployment.as_ref(),
        pods: observed.pods.as_deref(),
    };
    let status = scanpolicy_status(&names, obs, policy.status.as_ref(), &now());
    // An unchanged status is not written again: the write would only wake every watcher.
    if policy.status.as_ref() != Some(&status) {
        Api::<ScanPolicy>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(
                &name,
                &apply_params(),
                &Patch::Apply(status_patch::<ScanPolicy>(&status)),
            )
            .await
            .map_err(Error::Status)?;
    }
    announce(policy, ctx, &names, &observed.bundle, &status).await;
    ctx.clear_failures(&object_key(policy.as_ref()));
    Ok(Action::requeue(RESYNC))
}

/// What one reconcile saw of a policy's rollout, for its status.
struct Observed {
    /// The bundle now rolled out, or why no new one was (reason, message).
    bundle: Result<String, (&'static str, String)>,
    deployment: Option<Deployment>,
    /// The scanner pods, when the scanners report what they serve.
    pods: Option<Vec<crate::status::PodServing>>,
}

/// The policy's children, built from its Tenant, the visible packs and the settings, or reused
/// when none of those changed since the last build. The outer error is a failed read (retried
/// with backoff); the inner one a problem the policy's author must fix (written to status).
async fn build(
    policy: &Arc<ScanPolicy>,
    ctx: &Context,
    settings: &Arc<Settings>,
    names: &Names,
) -> Result<Result<Children, Error>, Error> {
    if let Err(why) = check_policy_name(&names.policy) {
        // Every child apply would be refused; say so before trying.
        return Ok(Err(Error::InvalidName(why)));
    }
    let tenant_name = &policy.spec.tenant_ref.name;
    let Some(tenant) = read_tenant(ctx, tenant_name).await? else {
        // The Tenant watch brings the policy back when the tenant appears.
        return Ok(Err(Error::MissingTenant(tenant_name.clone())));
    };
    let packs = visible_packs(ctx, &names.namespace, settings.shared_namespace.as_deref()).await?;
    let key = object_key(policy.as_ref());
    let input = input_hash(policy, &tenant, &packs, settings)?;
    if let Some(children) = ctx.built(&key, input) {
        return Ok(Ok(children));
    }
    // Compiling and running pack tests is CPU work: off the async runtime, so one large pack
    // does not stall every other reconcile and watch.
    let (p, s) = (policy.clone(), settings.clone());
    ctx.builds
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let built = tokio::task::spawn_blocking(move || desired(&p, &tenant, &packs, &s))
        .await
        .map_err(|e| Error::Blocking(e.to_string()))?;
    if let Ok(children) = &built {
        ctx.remember_built(key, input, children.clone());
    }
    Ok(built)
}

/// Applies `children` unless the same ones were applied recently and the bundle is intact, and
/// reads what status needs: the Deployment and (when they report) the scanner pods.
async fn roll_out(
    policy: &ScanPolicy,
    ctx: &Context,
    settings: &Settings,
    names: &Names,
    children: &Children,
) -> Result<Observed, Error> {
    let (client, namespace) = (&ctx.client, &names.namespace);
    let key = object_key(policy);
    let hash = desired_hash(children)?;
    let unchanged =
        if ctx.applied_recently(&key, hash) && bundle_intact(client, namespace, children).await? {
            // Nothing to apply; the Deployment is still needed for status.
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .get_opt(&names.scanner)
                .await?
        } else {
            None
        };
    let deployment = match unchanged {
        Some(d) => d,
        None => {
            let d = apply_children(client, namespace, children).await?;
            ctx.remember_applied(key, hash);
            tracing::info!(policy = %names.policy, namespace = %namespace, bundle = %children.bundle_hash, "applied");
            d
        }
    };
    let pods = if settings.scanners_report() {
        Some(scanner_pods(client, names).await?)
    } else {
        None
    };
    Ok(Observed {
        bundle: Ok(children.bundle_hash.clone()),
        deployment: Some(deployment),
        pods,
    })
}

/// A problem the policy's author must fix: nothing but the status is written (the last good
/// bundle keeps serving) and the watched objects bring the policy back when they change. Any
/// other error is returned for the backoff.
async fn hold_back(ctx: &Context, names: &Names, e: Error) -> Result<Observed, Error> {
    let reason = match &e {
        Error::InvalidPack { .. } => REASON_PACKS_INVALID,
        Error::MissingTenant(_) => REASON_TENANT_NOT_FOUND,
        Error::InvalidName(_) => REASON_INVALID_NAME,
        Error::Build(BuildError::NamespaceNotAllowed { .. }) => REASON_NAMESPACE_NOT_ALLOWED,
        Error::Build(BuildError::ImageNotAllowed { .. }) => REASON_IMAGE_NOT_ALLOWED,
        _ => return Err(e),
    };
    tracing::warn!(policy = %names.policy, namespace = %names.namespace, error = %e, reason, "no new bundle; the last good one keeps serving");
    let deployment = if reason == REASON_INVALID_NAME {
        None // no child can exist under an invalid name
    } else {
        Api::<Deployment>::namespaced(ctx.client.clone(), &names.namespace)
            .get_opt(&names.scanner)
            .await?
    };
    Ok(Observed {
        bundle: Err((reason, e.to_string())),
        deployment,
        pods: None,
    })
}

/// Events for what changed since the previous status (only on change, so a steady state does
/// not spam `kubectl describe`): a new bundle, a new reason it was held back, a new rollout
/// problem seen on the Deployment or the pods.
async fn announce(
    policy: &ScanPolicy,
    ctx: &Context,
    names: &Names,
    bundle: &Result<String, (&'static str, String)>,
    status: &ScanPolicyStatus,
) {
    let previous = policy.status.as_ref();
    let ready_reason = |s: Option<&ScanPolicyStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.clone())
    };
    let now_reason = ready_reason(Some(status));
    match bundle {
        Ok(hash) if previous.and_then(|s| s.active_bundle_hash.as_ref()) != Some(hash) => {
            let note = format!("rolled out bundle {hash} to ConfigMap {}", names.bundle);
            ctx.event(policy, false, "BundleUpdated", "Apply", note)
                .await;
        }
        Err((reason, why)) if previous.and_then(|s| s.last_error.as_ref()) != Some(why) => {
            let note = format!("no new bundle, the last good one keeps serving: {why}");
            ctx.event(policy, true, reason, "Validate", note).await;
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
            ctx.event(policy, true, reason, "Rollout", note).await;
        }
    }
}
