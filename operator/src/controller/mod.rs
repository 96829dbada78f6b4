//! The controller (`pd-operator run`): reconcilers for ScanPolicy, RulePack and Tenant and the
//! `kube_runtime::Controller` wiring.
//!
//! The decisions live in pure code ([`crate::builders`], [`crate::status`]); this module only
//! reads what those need from the API server, applies the result server-side with the one field
//! manager [`crate::builders::FIELD_MANAGER`], and writes status through the status
//! subresource. The reconcile functions take a [`kube::Client`] inside [`Context`] so tests can
//! hand them a client backed by a mock API server (`tower-test`) and assert every request.
//!
//! Layout: `error` (the one error type), `context` (what the reconcilers share and remember),
//! `reads` (Tenants and RulePacks from the shared stores or the API), `apply` (server-side
//! apply of children and status), `hash` (when a rebuild or re-apply can be skipped),
//! `backoff` (retry delays), one module per kind's reconciler (`scanpolicy`, `rulepack`,
//! `tenant`), `mappers` (which watch event wakes which object) and `run` (the wiring,
//! leader election and shutdown).

use std::time::Duration;

mod apply;
mod backoff;
mod context;
mod error;
mod hash;
mod mappers;
mod reads;
mod rulepack;
mod run;
mod scanpolicy;
mod tenant;

pub use backoff::{backoff, error_policy, BACKOFF_BASE, BACKOFF_MAX, CONFLICT_BACKOFF_BASE};
pub use context::{object_key, Context, PolicyJanitor};
pub use error::Error;
pub use mappers::{packs_extending, policies_of_tenant, policies_using_pack, policy_of_pod};
pub use reads::Reads;
pub use rulepack::reconcile_rulepack;
pub use run::{run, RunError};
pub use scanpolicy::reconcile_scanpolicy;
pub use tenant::{reconcile_tenant, MISSING_NAMESPACE_RETRY};

/// Periodic re-check of a healthy object. Changes arrive through watches; this only heals drift
/// nobody announced (a child edited by hand and not watched, a missed event).
const RESYNC: Duration = Duration::from_secs(300);
/// Longest time a policy whose desired state did not change goes without a full re-apply of its
/// children (drift made by hand is healed within this).
pub const FULL_REAPPLY: Duration = Duration::from_secs(600);
