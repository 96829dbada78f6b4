//! Prompt Defenders operator library: the custom resource types ([`crd`]), the pure
//! desired-state builders that turn a ScanPolicy into the objects a scanner needs
//! ([`builders`]), and the offline `render` used for GitOps previews and golden tests
//! ([`render`]). Everything but [`controller`] and [`metrics`] is pure so it can be tested
//! without an API server; the controller applies these objects and is tested against a mocked
//! API server; [`metrics`] serves the operator's health and Prometheus metrics;
//! [`leader`] elects one active replica through a `coordination.k8s.io/v1` Lease;
//! [`apiserver`] finds where scanners may reach the API for their ConfigMap watch;
//! [`triggers`] decides which watch events start which reconciles; [`shared`] runs one watch
//! per kind for the stores the reconcilers read and the triggers alike; [`usage`] sums the
//! scanners' usage ledgers into Tenant status and writes quotas back.

pub mod apiserver;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod shared;
pub mod status;
pub mod triggers;
pub mod usage;
