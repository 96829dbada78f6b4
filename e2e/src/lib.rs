//! End-to-end tests of Prompt Defenders on a real cluster: the operator from the Helm chart, the
//! scanner Deployments it creates, NetworkPolicy enforcement, hot reload of rule packs, garbage
//! collection and autoscaling. `e2e/run.sh` builds the images, creates a kind cluster from
//! `kind-config.yaml`, installs everything and runs `tests/e2e/e2e.rs` with `PD_E2E=1`.
//!
//! # When the tests run
//!
//! The suite is part of the workspace, so `cargo test --workspace` compiles and runs it on
//! every laptop and in every CI job. It must never touch whatever cluster a developer's
//! kubeconfig happens to point at, and it must never go green in the e2e job without having
//! tested anything. Hence, explicitly:
//!
//! | `PD_E2E`             | what happens                                                          |
//! |----------------------|-----------------------------------------------------------------------|
//! | unset, empty, `0`    | every test prints one `SKIPPED e2e::<name>: …` line and passes; no    |
//! |                      | kubeconfig is read and no cluster is contacted                        |
//! | `1`                  | the cluster is required: no kubeconfig / in-cluster config, or an API |
//! |                      | server that does not answer within [`API_TIMEOUT`], fails every test  |
//! |                      | with a message saying so (run `e2e/run.sh`)                           |
//! | anything else        | fails: the value is a typo, not a decision                            |
//!
//! The tests only create namespaced objects with unique `e2e-…` names (plus the foreign client
//! namespace), label them `promptdefenders.io/e2e=true` and delete them when the test ends,
//! also when it panics ([`Cleanup`]). Set `PD_E2E_KEEP_ON_FAILURE=1` to keep a failed test's
//! policies and packs for inspection.

mod cleanup;
mod cluster;
pub mod fixtures;
mod probe;
mod resources;
mod wait;

pub use cleanup::Cleanup;
pub use cluster::{
    gate, setup, skip_line, ClientIdentity, Cluster, Gate, ScannerPod, API_TIMEOUT, SKIP_HINT,
};
pub use probe::{
    parse_output, sh_quote, Auth, HashReport, HashWait, ProbeOutput, ProbeSpec, Response,
    RunningProbe, Script, DEFAULT_CURL_IMAGE, SCANNER_PORT,
};
pub use resources::{
    child_resources, condition, describe_conditions, rulepack_resource, scanpolicy_resource,
    tenant_resource, E2E_LABEL,
};
pub use wait::{poll_until, Poll};

/// Why an end-to-end step failed. Messages are written for the person reading a CI log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("timed out after {}s waiting for {what}; last observed: {last}", .after.as_secs())]
    Timeout {
        what: String,
        after: std::time::Duration,
        last: String,
    },
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for a [`Error::Failed`].
pub fn failed(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

/// How long each kind of wait may take. Generous on purpose: CI runners are slow and shared,
/// and a flaky e2e suite is worse than a slow one.
pub mod timeouts {
    use std::time::Duration;

    /// A new ScanPolicy until `Ready=True` (operator reconcile + scanner rollout).
    pub const POLICY_READY: Duration = Duration::from_secs(240);
    /// A probe Pod from creation to completion, including a first image pull.
    pub const PROBE_POD: Duration = Duration::from_secs(180);
    /// The operator noticing a RulePack change and writing the ScanPolicy's status.
    pub const STATUS_UPDATE: Duration = Duration::from_secs(90);
    /// A changed ConfigMap reaching every scanner pod: kubelet's sync period (about a
    /// minute by default) plus the scanner's 250 ms poll.
    pub const BUNDLE_PROPAGATION: Duration = Duration::from_secs(240);
    /// Owner-reference garbage collection of a deleted policy's children and pods.
    pub const GARBAGE_COLLECTION: Duration = Duration::from_secs(180);
    /// metrics-server reporting CPU for a new scanner pod to the HPA.
    pub const HPA_METRICS: Duration = Duration::from_secs(300);
    /// The HPA scaling a Deployment up once the load is there.
    pub const HPA_SCALE_UP: Duration = Duration::from_secs(300);
    /// One HTTP request that should succeed.
    pub const REQUEST_SECS: u32 = 15;
    /// How often a request that should succeed is tried while no HTTP answer arrives: a
    /// fresh client Pod's first connection can be dropped while kindnet's NetworkPolicy
    /// engine does not know the Pod's IP yet (kube-network-policies issue 224). Requests that
    /// a NetworkPolicy should drop are tried once.
    pub const REQUEST_ATTEMPTS: u32 = 3;
    /// One HTTP request that a NetworkPolicy should drop: long enough that an answer would
    /// have arrived, short enough to keep the test quick.
    pub const REFUSED_REQUEST_SECS: u32 = 6;
}
