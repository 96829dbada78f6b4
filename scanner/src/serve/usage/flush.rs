//! Writes this pod's totals to the usage ledger every flush interval and once more on
//! shutdown, and takes the ledger the API answers with into [`Usage`].
//!
//! Requests per flush: one PATCH (the answer is the whole ConfigMap, so reading the siblings'
//! totals and the grant costs nothing extra), plus one GET before the first write of a
//! container, to continue from what an earlier container of the same pod stored. The pod's Role
//! allows `get` and `patch` on the ledger alone (`resourceNames`); the operator creates it.
//!
//! Never fails: without a client, or while the API or the ledger is missing, scans are still
//! counted locally (and in Prometheus) and the next flush writes them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;

use super::ledger::{pod_key, PodUsage};
use super::Usage;
use crate::serve::configmap::client_unless_stopped;
use crate::serve::reload::BundleState;

/// The field manager of the scanners' ledger writes (`managedFields` shows who wrote a key).
pub const FIELD_MANAGER: &str = "pd-scanner";

/// Where and how often to flush: `--usage-ledger`, `--usage-flush-interval-ms`.
#[derive(Debug, Clone)]
pub struct LedgerTarget {
    /// The ConfigMap, in the client's namespace (the pod's own).
    pub name: String,
    /// This pod's name: its key in the ledger.
    pub pod: String,
    pub interval: Duration,
    /// Longest the final flush on shutdown may take.
    pub final_timeout: Duration,
}

/// Flushes until `stop` changes, then once more (within `final_timeout`).
pub async fn run(
    target: LedgerTarget,
    usage: Arc<Usage>,
    bundle: Arc<BundleState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(client) = client_unless_stopped(&mut stop).await else {
        return;
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, ledger = %target.name, "no Kubernetes API client; usage is not written to the ledger and quotas are not enforced");
            return;
        }
    };
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut failing = false;
    loop {
        let ok = flush(&api, &target, &usage, &bundle).await;
        match (ok, failing) {
            (Err(e), false) => {
                tracing::warn!(error = %e, ledger = %target.name, "cannot write usage to the ledger; counting locally until it can");
                failing = true;
            }
            (Err(e), true) => tracing::debug!(error = %e, "usage ledger still failing"),
            (Ok(()), true) => {
                tracing::info!(ledger = %target.name, "usage ledger writable again");
                failing = false;
            }
            (Ok(()), false) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(target.interval) => {}
            _ = stop.changed() => break,
        }
    }
    match tokio::time::timeout(target.final_timeout, flush(&api, &target, &usage, &bundle)).await {
        Ok(Ok(())) => tracing::info!(ledger = %target.name, "final usage written"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, ledger = %target.name, "final usage write failed")
        }
        Err(_) => tracing::warn!(ledger = %target.name, "final usage write timed out"),
    }
}

/// One flush: read this pod's stored key first if not done yet, write the totals, take in
/// the answer.
async fn flush(
    api: &Api<ConfigMap>,
    target: &LedgerTarget,
    usage: &Usage,
    bundle: &BundleState,
) -> Result<(), kube::Error> {
    let key = pod_key(&target.pod);
    let result = async {
        if !usage.adopted() {
            let cm = api.get(&target.name).await?;
            let stored = cm
                .data
                .as_ref()
                .and_then(|d| d.get(&key))
                .and_then(|v| serde_json::from_str::<PodUsage>(v).ok());
            usage.adopt(stored.as_ref());
        }
        let own = usage.snapshot();
        let value = serde_json::to_string(&own).unwrap_or_default();
        let patch = serde_json::json!({"data": {key.clone(): value}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        api.patch(&target.name, &params, &Patch::Merge(patch)).await
    }
    .await;
    usage.metrics().ledger_write(result.is_ok());
    let cm = result?;
    let pack = bundle.current();
    usage.observe(&cm.data.unwrap_or_default(), &target.pod, pack.as_deref());
    Ok(())
}
