//! Which watch events start which reconciles, as pure code.
//!
//! Two problems live here (issue 13):
//! - **amplification**: every ScanPolicy status write used to start a Tenant reconcile (a
//!   cluster-wide LIST plus one Secret POST per namespace). A Tenant only depends on which
//!   policies name it, so [`TenantTriggers`] passes on a policy event only when that changes:
//!   a policy appears, disappears (also while the watch was down), or moves to another tenant
//!   (then both tenants are recounted).
//! - **trigger race**: a RulePack event was mapped to policies through the RulePack
//!   controller's store, which is fed by a *different* watch and may not hold the event's
//!   version yet (a pack just created, deleted, or a local pack removed that shadowed a shared
//!   one), so a policy could wait for the 300 s resync. [`with_event_pack`] lays the event's
//!   own object over the store before mapping, so the pack that changed is always seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube::runtime::watcher::Event;
use kube::ResourceExt;

use crate::crd::{RulePack, ScanPolicy};

/// Remembers which tenant each ScanPolicy names, to turn the ScanPolicy watch into the set of
/// Tenants to recount.
#[derive(Debug, Default)]
pub struct TenantTriggers {
    /// (namespace, name) → tenant, as of the last event.
    seen: HashMap<(String, String), String>,
    /// During a relist: what the new list holds so far.
    relisting: Option<HashMap<(String, String), String>>,
}

fn key(p: &ScanPolicy) -> (String, String) {
    (p.namespace().unwrap_or_default(), p.name_any())
}

impl TenantTriggers {
    /// The tenants whose reconcile `event` calls for (sorted, no duplicates).
    pub fn on_event(&mut self, event: Event<ScanPolicy>) -> Vec<String> {
        let mut out = BTreeSet::new();
        match event {
            Event::Apply(p) => self.apply(&p, &mut out),
            Event::Delete(p) => {
                self.seen.remove(&key(&p));
                out.insert(p.spec.tenant_ref.name.clone());
            }
            Event::Init => self.relisting = Some(HashMap::new()),
            Event::InitApply(p) => {
                if let Some(next) = self.relisting.as_mut() {
                    next.insert(key(&p), p.spec.tenant_ref.name.clone());
                }
                self.apply(&p, &mut out);
            }
            Event::InitDone => {
                if let Some(next) = self.relisting.take() {
                    // Deleted while the watch was down: no Delete event will come for these.
                    for (k, tenant) in &self.seen {
                        if !next.contains_key(k) {
                            out.insert(tenant.clone());
                        }
                    }
                    self.seen = next;
                }
            }
        }
        out.into_iter().collect()
    }

    fn apply(&mut self, p: &ScanPolicy, out: &mut BTreeSet<String>) {
        let tenant = p.spec.tenant_ref.name.clone();
        match self.seen.insert(key(p), tenant.clone()) {
            // Same tenant: a status write or an unrelated spec change; nothing to recount.
            Some(old) if old == tenant => {}
            Some(old) => {
                out.insert(old);
                out.insert(tenant);
            }
            None => {
                out.insert(tenant);
            }
        }
    }
}

/// Passes on a watch event only when the object's spec changed (`metadata.generation`), it
/// appeared, or it disappeared (also during a watch outage): what a dependant reconciles on.
/// Status writes bump no generation, so they pass nothing on. Used for the Tenant watch of the
/// ScanPolicy controller: a Tenant status write used to reconcile every policy of the tenant.
#[derive(Debug)]
pub struct SpecChanges<K> {
    seen: HashMap<(String, String), Option<i64>>,
    relisting: Option<HashMap<(String, String), Option<i64>>>,
    /// Last known version of each object, to hand out for those deleted during an outage.
    last: HashMap<(String, String), K>,
}

impl<K> Default for SpecChanges<K> {
    fn default() -> Self {
        SpecChanges {
            seen: HashMap::new(),
            relisting: None,
            last: HashMap::new(),
        }
    }
}

impl<K: kube::Resource + Clone> SpecChanges<K> {
    /// The objects whose dependants must reconcile after `event`.
    pub fn on_event(&mut self, event: Event<K>) -> Vec<K> {
        let k = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Event::Apply(o) => self.apply(o),
            Event::Delete(o) => {
                self.seen.remove(&k(&o));
                self.last.remove(&k(&o));
                vec![o]
            }
            Event::Init => {
                self.relisting = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                if let Some(next) = self.relisting.as_mut() {
                    next.insert(k(&o), o.meta().generation);
                }
                self.apply(o)
            }
            Event::InitDone => {
                let Some(next) = self.relisting.take() else {
                    return Vec::new();
                };
                let gone: Vec<K> = self
                    .seen
                    .keys()
                    .filter(|key| !next.contains_key(*key))
                    .filter_map(|key| self.last.remove(key))
                    .collect();
                self.seen = next;
                gone
            }
        }
    }

    fn apply(&mut self, o: K) -> Vec<K> {
        let key = (o.namespace().unwrap_or_default(), o.name_any());
        let generation = o.meta().generation;
        self.last.insert(key.clone(), o.clone());
        match self.seen.insert(key, generation) {
            Some(old) if old == generation => Vec::new(),
            _ => vec![o],
        }
    }
}

/// `store` with `pack` (the object of the event being mapped) in place of the store's copy of
/// it, or added when the store does not have it yet. A deleted pack is kept in the view on
/// purpose: the policies that used it are the ones that must reconcile.
pub fn with_event_pack(store: Vec<Arc<RulePack>>, pack: &RulePack) -> Vec<Arc<RulePack>> {
    let k = (pack.namespace(), pack.name_any());
    let mut out: Vec<Arc<RulePack>> = store
        .into_iter()
        .filter(|p| (p.namespace(), p.name_any()) != k)
        .collect();
    out.push(Arc::new(pack.clone()));
    out
}
