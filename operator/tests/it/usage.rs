//! Usage aggregation (`pd_operator::usage`) against the mocked API server: the ledgers summed
//! into Tenant status, the quota grants written back, past periods' keys removed, the 80 % and
//! 100 % Events published once each (also across an operator restart), and nothing written
//! when nothing changed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ConfigMap;
use pd_operator::controller::Context;
use pd_operator::crd::Tenant;
use pd_operator::usage::aggregate;
use serde_json::{json, Value};

use crate::support::fixtures;
use crate::support::mock_api::{api_status, finish, lines, mock_client, Recorded};

/// 2026-11-30T10:00:00Z: period `2026-11`.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_032_800)
}

const CHAT: &str =
    "/api/v1/namespaces/acme-prod/configmaps/acme-chat-usage?&fieldManager=pd-operator-usage";
const BATCH: &str =
    "/api/v1/namespaces/acme-jobs/configmaps/acme-batch-usage?&fieldManager=pd-operator-usage";
const STATUS: &str =
    "/apis/promptdefenders.io/v1alpha1/tenants/acme/status?&force=true&fieldManager=pd-operator-usage";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/default/events?";

fn usage(period: &str, scans: u64, block: u64) -> String {
    json!({"period": period, "scans": scans, "bytes": scans * 100,
           "verdicts": {"allow": scans - block, "warn": 0, "block": block},
           "quotaExceeded": 0, "updatedAt": "2026-11-30T09:59:50.000Z"})
    .to_string()
}

fn ledger(ns: &str, policy: &str, data: Value) -> Arc<ConfigMap> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{policy}-usage"), "namespace": ns,
                "labels": {"promptdefenders.io/usage-ledger": "true",
                           "promptdefenders.io/tenant": "acme",
                           "promptdefenders.io/policy": policy}},
            "data": data,
        }))
        .unwrap(),
    )
}

fn tenant(quota: Option<Value>, status: Option<Value>) -> Value {
    let mut t = fixtures::tenant()
        .uid("tenant-uid")
        .generation(2)
        .set("/spec/namespaces", json!(["acme-prod", "acme-jobs"]));
    if let Some(q) = quota {
        t = t.set("/spec/quota", q);
    }
    if let Some(s) = status {
        t = t.status(s);
    }
    t.json()
}

/// One aggregation pass with a fresh Context (as after an operator restart) and every
/// request it made.
async fn pass(ledgers: &[Arc<ConfigMap>], tenant: Value) -> Vec<Recorded> {
    let answer = tenant.clone();
    let (client, server) = mock_client(move |r| {
        let p = r.path.split('?').next().unwrap_or_default().to_string();
        match r.method.as_str() {
            "PATCH" if p.ends_with("/status") => {
                let mut o = answer.clone();
                o["status"] = r.body["status"].clone();
                (200, o)
            }
            "PATCH" if p.contains("/configmaps/") => (
                200,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            ),
            "POST" if p.ends_with("/events") => (201, r.body.clone()),
            _ => (405, api_status(405, "MethodNotAllowed")),
        }
    });
    let ctx = Arc::new(Context::new(client));
    let t: Tenant = serde_json::from_value(tenant).unwrap();
    aggregate(&ctx, ledgers, &[Arc::new(t)], now())
        .await
        .expect("aggregate");
    finish(ctx, server).await
}

/// The ledgers of two policies in two namespaces: chat has two pods this month (50 +
/// `chat_b` scans) and, until a first pass removed it, one of October; batch one pod (10).
fn ledgers(
    chat_grant: Option<String>,
    batch_grant: Option<String>,
    chat_b: u64,
) -> Vec<Arc<ConfigMap>> {
    let mut chat = json!({
        "pod.acme-chat-scanner-a": usage("2026-11", 50, 5),
        "pod.acme-chat-scanner-b": usage("2026-11", chat_b, 0),
    });
    match chat_grant {
        Some(g) => chat["quota.json"] = g.into(),
        // Before the first pass: a key of last month is still there.
        None => chat["pod.acme-chat-scanner-old"] = usage("2026-10", 999, 0).into(),
    }
    let mut batch = json!({"pod.acme-batch-scanner-c": usage("2026-11", 10, 1)});
    if let Some(g) = batch_grant {
        batch["quota.json"] = g.into();
    }
    vec![
        ledger("acme-prod", "acme-chat", chat),
        ledger("acme-jobs", "acme-batch", batch),
    ]
}

fn quota() -> Value {
    json!({"scansPerMonth": 100, "burst": 20, "onExceeded": "block"})
}

/// The grant as the operator writes it (the scanner's `QuotaGrant`, fields in order).
fn grant(elsewhere: u64) -> String {
    format!(
        r#"{{"period":"2026-11","scansPerMonth":100,"burst":20,"onExceeded":"block","usedElsewhere":{elsewhere}}}"#
    )
}

#[tokio::test]
async fn ledgers_sum_into_status_grants_go_back_and_80_percent_is_announced_once() {
    let reqs = pass(&ledgers(None, None, 30), tenant(Some(quota()), None)).await;
    assert_eq!(
        lines(&reqs),
        [
            format!("PATCH {CHAT}"),
            format!("PATCH {BATCH}"),
            format!("PATCH {STATUS}"),
            EVENTS.to_string(),
        ]
    );
    // Each ledger: the grant with what the tenant's *other* policies used, and October's key
    // removed; a merge patch under the operator's usage field manager.
    assert_eq!(
        reqs[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        reqs[0].body,
        json!({"data": {"quota.json": grant(10), "pod.acme-chat-scanner-old": null}})
    );
    assert_eq!(reqs[1].body, json!({"data": {"quota.json": grant(80)}}));
    // Tenant status: server-side apply of `usage` and `quota` only.
    assert_eq!(
        reqs[2].content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let status = &reqs[2].body["status"];
    assert_eq!(
        status.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["quota", "usage"]
    );
    assert_eq!(
        status["usage"],
        json!({
            "period": "2026-11", "scans": 90, "bytes": 9000,
            "verdicts": {"allow": 84, "warn": 0, "block": 6}, "quotaExceeded": 0,
            "policies": {
                "acme-jobs/acme-batch": {"scans": 10, "bytes": 1000, "pods": 1},
                "acme-prod/acme-chat": {"scans": 80, "bytes": 8000, "pods": 2},
            },
            "updatedAt": "2026-11-30T10:00:00Z",
        })
    );
    assert_eq!(
        status["quota"],
        json!({"limit": 100, "used": 90, "percent": 90, "state": "Warning",
               "announced": "2026-11/80"})
    );
    let ev = &reqs[3].body;
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["reason"], "QuotaNearlyExhausted");
    assert_eq!(ev["regarding"]["kind"], "Tenant");
    assert_eq!(ev["regarding"]["name"], "acme");
    assert_eq!(ev["note"], "90 of 100 scans used in 2026-11 (90 %)");

    // The next pass (a restarted operator: a new Context) sees what it wrote: the grants
    // are current and the status differs only in `updatedAt`, so nothing is written and the
    // 80 % Event is not repeated.
    let written = status.clone();
    let reqs = pass(
        &ledgers(Some(grant(10)), Some(grant(80)), 30),
        tenant(Some(quota()), Some(written.clone())),
    )
    .await;
    assert_eq!(lines(&reqs), Vec::<String>::new());

    // Pod b counts on to 70: 130 of 100, past the burst as well. The batch policy's grant
    // (what chat used) moves, chat's (what batch used) does not; the status and one
    // QuotaExceeded Event.
    let reqs = pass(
        &ledgers(Some(grant(10)), Some(grant(80)), 70),
        tenant(Some(quota()), Some(written)),
    )
    .await;
    assert_eq!(
        lines(&reqs),
        [
            format!("PATCH {BATCH}"),
            format!("PATCH {STATUS}"),
            EVENTS.to_string(),
        ]
    );
    assert_eq!(reqs[0].body, json!({"data": {"quota.json": grant(120)}}));
    let status = reqs[1].body["status"].clone();
    assert_eq!(
        status["quota"],
        json!({"limit": 100, "used": 130, "percent": 130, "state": "Exceeded",
               "announced": "2026-11/100"})
    );
    assert_eq!(reqs[2].body["reason"], "QuotaExceeded");
    assert_eq!(
        reqs[2].body["note"],
        "130 of 100 scans used in 2026-11 (130 %); onExceeded block applies from 120 scans (scansPerMonth + burst)"
    );

    // Still exceeded, more traffic: status and grants move, no second Event.
    let reqs = pass(
        &ledgers(Some(grant(10)), Some(grant(120)), 71),
        tenant(Some(quota()), Some(status)),
    )
    .await;
    assert_eq!(
        lines(&reqs),
        [format!("PATCH {BATCH}"), format!("PATCH {STATUS}")]
    );
    assert_eq!(reqs[1].body["status"]["quota"]["announced"], "2026-11/100");
}

#[tokio::test]
async fn a_new_month_starts_from_zero_and_may_announce_again() {
    // Last month's status announced 100 %; this month's ledgers hold 85 scans.
    let old = json!({
        "usage": {"period": "2026-10", "scans": 500, "bytes": 1, "verdicts": {"allow": 500, "warn": 0, "block": 0},
                  "quotaExceeded": 0, "updatedAt": "2026-10-31T23:59:30Z"},
        "quota": {"limit": 100, "used": 500, "percent": 500, "state": "Exceeded", "announced": "2026-10/100"},
    });
    let reqs = pass(&ledgers(None, None, 25), tenant(Some(quota()), Some(old))).await;
    let status = &reqs[2].body["status"];
    assert_eq!(status["usage"]["period"], "2026-11");
    assert_eq!(status["quota"]["announced"], "2026-11/80");
    assert_eq!(reqs[3].body["reason"], "QuotaNearlyExhausted");
}

#[tokio::test]
async fn without_a_quota_usage_is_reported_and_a_stale_grant_removed() {
    let reqs = pass(&ledgers(Some(grant(10)), None, 30), tenant(None, None)).await;
    assert_eq!(
        lines(&reqs),
        [format!("PATCH {CHAT}"), format!("PATCH {STATUS}")]
    );
    assert_eq!(reqs[0].body, json!({"data": {"quota.json": null}}));
    let status = &reqs[1].body["status"];
    assert_eq!(status["usage"]["scans"], 90);
    assert!(status.get("quota").is_none(), "{status}");
}

#[tokio::test]
async fn a_tenant_never_metered_gets_no_write() {
    let reqs = pass(&[], tenant(Some(quota()), None)).await;
    assert_eq!(lines(&reqs), Vec::<String>::new());
}

/// The Tenant reconciler applies its own status fields only: it neither rewrites a status
/// because `usage`/`quota` are there nor sends them (it would take them over, under its own
/// field manager, with figures that go stale).
#[tokio::test]
async fn the_tenant_reconciler_leaves_usage_and_quota_to_the_aggregation() {
    async fn reconcile(t: Value) -> Vec<Recorded> {
        let answer = t.clone();
        let (client, server) = mock_client(move |r| {
            let p = r.path.split('?').next().unwrap_or_default().to_string();
            match r.method.as_str() {
                "GET" if p == "/apis/promptdefenders.io/v1alpha1/scanpolicies" => (
                    200,
                    json!({"apiVersion": "promptdefenders.io/v1alpha1", "kind": "ScanPolicyList",
                           "metadata": {}, "items": []}),
                ),
                "POST" if p.ends_with("/secrets") => (409, api_status(409, "AlreadyExists")),
                "PATCH" if p.ends_with("/status") => {
                    let mut o = answer.clone();
                    o["status"] = r.body["status"].clone();
                    (200, o)
                }
                "POST" if p.ends_with("/events") => (201, r.body.clone()),
                _ => (405, api_status(405, "MethodNotAllowed")),
            }
        });
        let ctx = Arc::new(Context::new(client));
        let t: Tenant = serde_json::from_value(t).unwrap();
        pd_operator::controller::reconcile_tenant(Arc::new(t), ctx.clone())
            .await
            .expect("reconcile");
        finish(ctx, server).await
    }
    let first = reconcile(tenant(Some(quota()), None)).await;
    let status_write = first
        .iter()
        .find(|r| r.path.contains("/tenants/acme/status"))
        .expect("status written");
    assert!(status_write.path.ends_with("fieldManager=pd-operator"));
    let mut status = status_write.body["status"].clone();
    assert!(
        status.get("usage").is_none() && status.get("quota").is_none(),
        "{status}"
    );
    status["usage"] = json!({"period": "2026-11", "scans": 5, "bytes": 50,
        "verdicts": {"allow": 5, "warn": 0, "block": 0}, "quotaExceeded": 0,
        "updatedAt": "2026-11-30T10:00:00Z"});
    status["quota"] = json!({"limit": 100, "used": 5, "percent": 5, "state": "Ok"});
    let second = reconcile(tenant(Some(quota()), Some(status))).await;
    assert!(
        !second.iter().any(|r| r.method == "PATCH"),
        "{:?}",
        lines(&second)
    );
}
