//! Watch mappers: which ScanPolicies or RulePacks a change of another object must wake.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::crd::{RulePack, ScanPolicy, Tenant};

/// The ScanPolicies of `tenant` (its namespaces and clients shape their children).
pub fn policies_of_tenant(
    tenant: &Tenant,
    policies: &[Arc<ScanPolicy>],
) -> Vec<ObjectRef<ScanPolicy>> {
    let name = tenant.name_any();
    policies
        .iter()
        .filter(|p| p.spec.tenant_ref.name == name)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The ScanPolicy a scanner pod belongs to, from its `promptdefenders.io/policy` label.
pub fn policy_of_pod(pod: &Pod) -> Option<ObjectRef<ScanPolicy>> {
    let policy = pod.labels().get("promptdefenders.io/policy")?;
    Some(ObjectRef::new(policy).within(&pod.namespace()?))
}

/// Finds the pack `name` as seen from `namespace`: the namespace's own first, then the shared
/// namespace's (the same lookup order as [`visible_packs`]).
fn resolve<'a>(
    name: &str,
    packs: &'a [Arc<RulePack>],
    namespace: &str,
    shared: Option<&str>,
) -> Option<&'a RulePack> {
    let find = |ns: &str| {
        packs
            .iter()
            .find(|p| p.name_any() == name && p.namespace().as_deref() == Some(ns))
    };
    find(namespace)
        .or_else(|| shared.and_then(find))
        .map(AsRef::as_ref)
}

/// The packs (namespace, name) that `name`, seen from `namespace`, resolves through: itself
/// and its `extends` chain.
fn chain(
    name: &str,
    packs: &[Arc<RulePack>],
    namespace: &str,
    shared: Option<&str>,
) -> BTreeSet<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut next = Some(name.to_string());
    while let Some(n) = next.take() {
        let Some(found) = resolve(&n, packs, namespace, shared) else {
            break; // missing; the compiler reports it
        };
        let key = (found.namespace().unwrap_or_default(), n);
        if !seen.insert(key) {
            break; // a cycle; the compiler reports it
        }
        next = found.spec.0.extends.clone();
    }
    seen
}

/// The ScanPolicies that use `pack`: binding it directly, through an `extends` chain, or
/// binding every visible pack (empty `rulePacks`) — in its namespace, or in any namespace when
/// `pack` lives in the `shared` namespace. The RulePack watch of the ScanPolicy controller maps
/// a pack change through this, so every user re-reconciles.
pub fn policies_using_pack(
    pack: &RulePack,
    policies: &[Arc<ScanPolicy>],
    packs: &[Arc<RulePack>],
    shared: Option<&str>,
) -> Vec<ObjectRef<ScanPolicy>> {
    let name = pack.name_any();
    let Some(namespace) = pack.namespace() else {
        return Vec::new();
    };
    let key = (namespace.clone(), name);
    let is_shared = shared == Some(namespace.as_str());
    policies
        .iter()
        .filter_map(|p| Some((p, p.namespace()?)))
        .filter(|(_, ns)| *ns == namespace || is_shared)
        .filter(|(p, ns)| {
            if p.spec.rule_packs.is_empty() {
                // Every visible pack: this one unless a local pack shadows it.
                return resolve(&key.1, packs, ns, shared)
                    .is_some_and(|r| r.namespace().as_deref() == Some(key.0.as_str()));
            }
            p.spec
                .rule_packs
                .iter()
                .any(|b| chain(b, packs, ns, shared).contains(&key))
        })
        .map(|(p, _)| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The RulePacks whose `extends` chain includes `pack` (their status depends on it).
pub fn packs_extending(
    pack: &RulePack,
    packs: &[Arc<RulePack>],
    shared: Option<&str>,
) -> Vec<ObjectRef<RulePack>> {
    let name = pack.name_any();
    let Some(namespace) = pack.namespace() else {
        return Vec::new();
    };
    let key = (namespace.clone(), name);
    let is_shared = shared == Some(namespace.as_str());
    packs
        .iter()
        .filter_map(|p| Some((p, p.namespace()?)))
        .filter(|(_, ns)| *ns == namespace || is_shared)
        .map(|(p, ns)| (p, (ns, p.name_any())))
        // Not the pack itself: its own chain starts with it.
        .filter(|(_, this)| *this != key)
        .filter(|(_, (ns, name))| chain(name, packs, ns, shared).contains(&key))
        .map(|(p, _)| ObjectRef::from_obj(p.as_ref()))
        .collect()
}
