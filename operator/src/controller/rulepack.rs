//! The RulePack reconciler: compile and test one pack, write its status.

use std::sync::Arc;

use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::apply::{apply_params, now, status_patch};
use super::error::missing;
use super::reads::visible_packs;
use super::{object_key, Context, Error, RESYNC};
use crate::crd::{RulePack, RulePackStatus};
use crate::status::rulepack_status;

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
