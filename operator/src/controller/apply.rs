//! Writes: server-side apply of the children and of status, under the one field manager.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::missing;
use super::Error;
use crate::builders::{Children, FIELD_MANAGER};

pub(super) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Server-side apply, forced: the operator is the only intended writer of these fields, so a
/// conflict with another manager is resolved in its favour.
pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

pub(super) async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> Result<K, Error>
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
pub(super) async fn apply_children(
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

/// Status patch body for server-side apply of the status subresource. Apply (not merge) so a
/// field the operator stops setting (`lastError` after a fix) is removed, not left stale.
pub(super) fn status_patch<K: Resource<DynamicType = ()>>(
    status: &impl Serialize,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}
