//! The rules `kstatus` (sigs.k8s.io/cli-utils/pkg/kstatus) applies to a custom resource, which
//! is how Flux (`wait: true`, health checks without `healthCheckExprs`) and `kpt live status`
//! judge one. A custom resource has no type-specific rules, so only the generic ones apply, in
//! this order: a deletion timestamp means Terminating; a `status.observedGeneration` that is
//! present and differs from `metadata.generation` means InProgress; the first condition that is
//! `Reconciling=True` (InProgress) or `Stalled=True` (Failed); otherwise Current — whatever
//! `Ready` says.

use serde_json::Value;

/// kstatus's verdict on `obj` (a custom resource as JSON).
pub fn kstatus(obj: &Value) -> &'static str {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating";
    }
    let observed = &obj["status"]["observedGeneration"];
    if !observed.is_null() && observed != &obj["metadata"]["generation"] {
        return "InProgress";
    }
    for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "Reconciling" && c["status"] == "True" {
            return "InProgress";
        }
        if c["type"] == "Stalled" && c["status"] == "True" {
            return "Failed";
        }
    }
    "Current"
}

/// `object` with the status from a recorded status apply.
pub fn with_status(object: &Value, status_apply: &Value) -> Value {
    let mut o = object.clone();
    o["status"] = status_apply["status"].clone();
    o
}
