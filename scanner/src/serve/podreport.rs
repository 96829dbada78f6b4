//! `--report-pod NAME`: the scanner writes what it serves on its own Pod, so the operator can
//! tell "the bundle is written" from "the bundle is live" without calling any pod.
//!
//! Two annotations, merged onto the Pod whenever they change:
//! - `promptdefenders.io/serving-bundle-hash`: the hash of the bundle being served;
//! - `promptdefenders.io/bundle-error`: why the newest bundle was refused (removed once one
//!   loads), so the operator can name the pods that refuse a bundle.
//!
//! Why annotations on the Pod: the operator already watches these pods (for readiness), so it
//! learns about a reload from the same watch, with no extra call per reconcile and no network
//! path from the operator to every scanner. The Pod goes away with the container, so a stale
//! report never outlives it.
//!
//! The served state is read from [`BundleState`] every [`CHECK_EVERY`]: two atomic reads, and a
//! PATCH only when something changed. A change notification would need hooks in the reload
//! paths; a reload is rare and the report is not latency-critical beyond a second or two.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::serve::configmap::client_unless_stopped;
use crate::serve::reload::BundleState;

/// Annotation with the served bundle's hash (read by `pd-operator`).
pub const SERVING_ANNOTATION: &str = "promptdefenders.io/serving-bundle-hash";
/// Annotation with the reason the newest bundle was refused.
pub const ERROR_ANNOTATION: &str = "promptdefenders.io/bundle-error";
/// How often the served state is compared with the last report.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest error text written (annotations share a 256 KiB budget per object).
pub const MAX_ERROR_CHARS: usize = 300;

/// What the Pod should say now: the served hash and the refusal, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub serving: Option<String>,
    pub error: Option<String>,
}

impl Report {
    /// The report for the current state of `state`.
    pub fn of(state: &BundleState) -> Self {
        Report {
            serving: state.current().map(|c| c.pack.hash.clone()),
            error: state
                .last_error()
                .map(|e| e.chars().take(MAX_ERROR_CHARS).collect()),
        }
    }

    /// JSON merge patch of the Pod's annotations; `null` removes an annotation.
    pub fn patch(&self) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"annotations": {
                SERVING_ANNOTATION: self.serving,
                ERROR_ANNOTATION: self.error,
            }}
        })
    }
}

/// Reports on Pod `pod` (the client's namespace, i.e. the pod's own) until `stop` changes.
/// Never fails: without a client or on an API error it logs and tries again at the next change
/// or check, so reporting can never stop the scanner from serving.
pub async fn run(
    pod: String,
    state: Arc<BundleState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(client) = client_unless_stopped(&mut stop).await else {
        return;
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, pod = %pod, "no Kubernetes API client; not reporting the served bundle");
            return;
        }
    };
    let api: Api<Pod> = Api::default_namespaced(client);
    let mut reported: Option<Report> = None;
    loop {
        let now = Report::of(&state);
        if reported.as_ref() != Some(&now) {
            match api
                .patch(&pod, &PatchParams::default(), &Patch::Merge(now.patch()))
                .await
            {
                Ok(_) => {
                    tracing::debug!(pod = %pod, serving = ?now.serving, "reported the served bundle");
                    reported = Some(now);
                }
                Err(e) => {
                    tracing::warn!(pod = %pod, error = %e, "cannot report the served bundle on the Pod")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_sets_and_removes_the_annotations() {
        let r = Report {
            serving: Some("sha256:abc".into()),
            error: None,
        };
        assert_eq!(
            r.patch(),
            serde_json::json!({"metadata": {"annotations": {
                "promptdefenders.io/serving-bundle-hash": "sha256:abc",
                "promptdefenders.io/bundle-error": null,
            }}})
        );
    }

    #[test]
    fn an_empty_state_reports_nothing_served() {
        let state = BundleState::new();
        assert_eq!(Report::of(&state), Report::default());
    }
}
