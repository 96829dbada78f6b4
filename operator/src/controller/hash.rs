//! Hashes that let a reconcile skip a rebuild (same inputs) or a re-apply (same children).

use pd_engine::compile::PackSet;

use super::Error;
use crate::builders::{Children, Settings};
use crate::crd::{ScanPolicy, Tenant};

/// A hash of everything [`desired`] reads: the policy's identity and spec, the tenant's name and
/// spec, the visible packs and the settings. Equal hashes build equal children.
pub(super) fn input_hash(
    policy: &ScanPolicy,
    tenant: &Tenant,
    packs: &PackSet,
    settings: &Settings,
) -> Result<u64, Error> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = &policy.metadata;
    serde_json::to_string(&(&m.name, &m.namespace, &m.uid, &policy.spec))?.hash(&mut h);
    serde_json::to_string(&(&tenant.metadata.name, &tenant.spec))?.hash(&mut h);
    serde_json::to_string(packs)?.hash(&mut h);
    format!("{settings:?}").hash(&mut h);
    Ok(h.finish())
}

/// A hash of every child as it would be applied (bundle, settings and all): equal hashes mean
/// an apply would change nothing the operator owns.
pub(super) fn desired_hash(children: &Children) -> Result<u64, Error> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&children.to_values()?)?.hash(&mut h);
    Ok(h.finish())
}
