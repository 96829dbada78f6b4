//! The Tenant reconciler: HMAC key Secrets in its namespaces, policy count and `Ready`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};

use super::apply::{apply_params, now, status_patch};
use super::{object_key, Context, Error, RESYNC};
use crate::builders::{hmac_secret, FIELD_MANAGER};
use crate::crd::{condition, set_condition, ScanPolicy, Tenant, TenantStatus};
use crate::status::{set_progress, Progress};

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
    let (missing, failed) = ensure_hmac_secrets(client, &tenant, &namespaces).await;
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
    let (ready, reason, message, progress) =
        readiness(failed.as_ref(), &missing, namespaces.len(), mine);
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

/// Makes sure the HMAC key Secret exists in each of `namespaces`, trying every one whatever
/// happens to the others. Returns the namespaces that do not exist and the first other failure.
async fn ensure_hmac_secrets(
    client: &Client,
    tenant: &Tenant,
    namespaces: &BTreeSet<String>,
) -> (Vec<String>, Option<Error>) {
    let name = tenant.name_any();
    let mut missing = Vec::new();
    let mut failed: Option<Error> = None;
    for ns in namespaces {
        match ensure_hmac_secret(client, tenant, ns).await {
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
    (missing, failed)
}

/// The Tenant's `Ready` (status, reason, message) and progress, from what the Secret pass found
/// in its `namespaces` listed namespaces and the number of policies (`mine`) that use it.
fn readiness(
    failed: Option<&Error>,
    missing: &[String],
    namespaces: usize,
    mine: usize,
) -> (bool, &'static str, String, Progress) {
    let present = namespaces - missing.len();
    if let Some(e) = failed {
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
    } else if namespaces == 0 {
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
    }
}
