//! Which watch events start which reconciles (`pd_operator::triggers`), as pure tests.

use std::sync::Arc;

use kube::runtime::watcher::Event;
use pd_operator::controller::policies_using_pack;
use pd_operator::crd::Tenant;
use pd_operator::crd::{RulePack, ScanPolicy};
use pd_operator::triggers::{with_event_pack, SpecChanges, TenantTriggers};
use serde_json::json;

use crate::support::fixtures;

fn policy(name: &str, tenant: &str, generation: i64, ready: bool) -> ScanPolicy {
    fixtures::policy(name)
        .generation(generation)
        .set("/spec/tenantRef/name", tenant)
        .status(
            json!({"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
            "reason": "R", "message": "", "lastTransitionTime": "2026-11-30T00:00:00Z"}]}),
        )
        .build()
}

fn pack(ns: &str, name: &str) -> RulePack {
    fixtures::pack(name).namespace(ns).build()
}

/// Issue 13, problem 5: every ScanPolicy status write started a Tenant reconcile (a LIST plus
/// one Secret POST per namespace). Now only a policy appearing, disappearing or changing tenant
/// does.
#[test]
fn status_writes_do_not_trigger_tenant_reconciles() {
    let mut t = TenantTriggers::default();
    assert_eq!(t.on_event(Event::Init), Vec::<String>::new());
    assert_eq!(
        t.on_event(Event::InitApply(policy("a", "acme", 1, false))),
        ["acme"]
    );
    assert!(t.on_event(Event::InitDone).is_empty());
    // Status writes (and spec changes that keep the tenant): nothing.
    assert!(t
        .on_event(Event::Apply(policy("a", "acme", 1, true)))
        .is_empty());
    assert!(t
        .on_event(Event::Apply(policy("a", "acme", 2, true)))
        .is_empty());
    // A new policy, a move to another tenant (both recounted), a delete.
    assert_eq!(
        t.on_event(Event::Apply(policy("b", "acme", 1, false))),
        ["acme"]
    );
    assert_eq!(
        t.on_event(Event::Apply(policy("b", "globex", 2, false))),
        ["acme", "globex"]
    );
    assert_eq!(
        t.on_event(Event::Delete(policy("b", "globex", 2, false))),
        ["globex"]
    );
    // A relist after a watch outage: `a` was deleted meanwhile, no Delete event comes.
    assert!(t.on_event(Event::Init).is_empty());
    assert_eq!(
        t.on_event(Event::InitApply(policy("c", "initech", 1, false))),
        ["initech"]
    );
    assert_eq!(t.on_event(Event::InitDone), ["acme"]);
    // ... and `c`, already known, is quiet afterwards.
    assert!(t
        .on_event(Event::Apply(policy("c", "initech", 1, true)))
        .is_empty());
}

/// Issue 13, problem 4: the RulePack → ScanPolicy mapping used the RulePack controller's store,
/// fed by another watch: a pack created a moment ago was not in it yet, so the policy binding
/// it waited for the 300 s resync. The event's own object is now laid over the store.
#[test]
fn a_pack_missing_from_the_other_watch_store_still_reaches_its_policies() {
    let policies = vec![Arc::new(policy("a", "acme", 1, false))];
    let created = pack("acme-prod", "acme");
    let store: Vec<Arc<RulePack>> = vec![]; // the other watch has not seen it yet
    let old = policies_using_pack(&created, &policies, &store, None);
    assert!(old.is_empty(), "the race: {old:?}");
    let packs = with_event_pack(store, &created);
    let now = policies_using_pack(&created, &policies, &packs, None);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].name, "a");
}

/// Issue 13, problem 4: removing a local pack that shadowed a shared one must reach the
/// policies that used the local one, even when the store already dropped it.
#[test]
fn removing_a_shadowing_pack_reaches_its_policies() {
    let mut p = policy("b-all", "acme", 1, false);
    p.metadata.namespace = Some("team-b".into());
    p.spec.rule_packs.clear(); // every visible pack
    let policies = vec![Arc::new(p)];
    let shared = Arc::new(pack("pd-system", "baseline"));
    let deleted = pack("team-b", "baseline");
    // The store no longer has the local pack, only the shared one.
    let store = vec![shared];
    assert!(policies_using_pack(&deleted, &policies, &store, Some("pd-system")).is_empty());
    let packs = with_event_pack(store, &deleted);
    let users = policies_using_pack(&deleted, &policies, &packs, Some("pd-system"));
    assert_eq!(users.len(), 1);
}

fn tenant(generation: i64, policies: u32) -> Tenant {
    fixtures::tenant()
        .generation(generation)
        .set("/spec/apiKeysSecretRef/name", "k")
        .status(json!({"policyCount": policies}))
        .build()
}

/// Issue 13, problem 5: a Tenant status write reconciled every policy of the tenant. Only its
/// spec changes, creation and deletion do now.
#[test]
fn tenant_status_writes_do_not_reconcile_its_policies() {
    let mut c = SpecChanges::<Tenant>::default();
    assert_eq!(c.on_event(Event::Apply(tenant(1, 0))).len(), 1);
    assert!(
        c.on_event(Event::Apply(tenant(1, 3))).is_empty(),
        "status only"
    );
    assert_eq!(
        c.on_event(Event::Apply(tenant(2, 3))).len(),
        1,
        "spec changed"
    );
    assert_eq!(c.on_event(Event::Delete(tenant(2, 3))).len(), 1);
    // Re-created, then deleted while the watch was down.
    assert_eq!(c.on_event(Event::Apply(tenant(1, 0))).len(), 1);
    assert!(c.on_event(Event::Init).is_empty());
    assert_eq!(c.on_event(Event::InitDone).len(), 1);
}
