//! The set-up every kind test starts with, in one place: the cluster (or the `SKIPPED` line),
//! the sample policy Ready, its tenant's client identity, and the test's own policies.

use kube::api::DynamicObject;
use pd_e2e::fixtures::policy_spec;
use pd_e2e::{setup, timeouts, ClientIdentity, Cluster};
use serde_json::Value;

use super::must;

/// A kind test's starting point. Keep it alive for the whole test: the [`Cluster`] deletes what
/// the test created when it is dropped.
pub struct Setup {
    pub c: Cluster,
    /// The sample ScanPolicy (`acme-chat`), Ready.
    pub sample: DynamicObject,
    /// The sample policy's tenant: its client namespace, labels and API key.
    pub id: ClientIdentity,
}

impl Setup {
    /// The cluster with the sample policy Ready, or `None` after [`setup`] printed the test's
    /// `SKIPPED e2e::<test>` line (no `PD_E2E=1`).
    pub async fn new(test: &'static str) -> Option<Setup> {
        let c = setup(test).await?;
        must(c.sample_policy().await, "finding the sample policy");
        let sample = must(
            c.wait_policy_ready(&c.policy, timeouts::POLICY_READY).await,
            "waiting for the sample policy",
        );
        let id = must(
            c.client_identity(&sample).await,
            "reading the tenant's client selector and API keys",
        );
        Some(Setup { c, sample, id })
    }

    /// The sample policy's packs, for tests that only need "a working policy".
    pub fn sample_packs(&self) -> Vec<String> {
        self.sample.data["spec"]["rulePacks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates RulePack `name` from `pack` and a ScanPolicy `name` of the sample tenant on that
    /// pack alone (2 replicas), and waits until the policy is Ready.
    pub async fn policy_on_own_pack(&self, name: &str, pack: Value) -> DynamicObject {
        must(
            self.c.create_rulepack(name, pack).await,
            "creating the RulePack",
        );
        let spec = policy_spec(
            &self.id.tenant,
            std::slice::from_ref(&name.to_string()),
            2,
            2,
        );
        self.ready_policy(name, spec).await
    }

    /// Creates ScanPolicy `name` with `spec` and waits until it is Ready.
    pub async fn ready_policy(&self, name: &str, spec: Value) -> DynamicObject {
        must(
            self.c.create_policy(name, spec).await,
            "creating the ScanPolicy",
        );
        must(
            self.c.wait_policy_ready(name, timeouts::POLICY_READY).await,
            "waiting for the new policy",
        )
    }
}
