//! Reconcilers against a mocked API server (testing tier 2, `mock_api`). Every request the
//! reconciler sends is recorded, so the tests pin method, path and query (server-side apply with the
//! `pd-operator` field manager), content type and the important parts of each body.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use pd_operator::builders::Settings;
use pd_operator::controller::{
    error_policy, packs_extending, policies_using_pack, reconcile_rulepack, reconcile_scanpolicy,
    reconcile_tenant, Context, Error,
};
use pd_operator::crd::{RulePack, ScanPolicy, Tenant};
use serde_json::{json, Value};

use crate::support::fixtures;
use crate::support::kstatus::{kstatus, with_status};
use crate::support::mock_api::{api_status, finish, lines, mock_client, Recorded, TIMEOUT};

const SSA: &str = "?&force=true&fieldManager=pd-operator";
const APPLY_YAML: &str = "application/apply-patch+yaml";
const GROUP_NS: &str = "/apis/promptdefenders.io/v1alpha1/namespaces/acme-prod";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/acme-prod/events?";

/// Asserts an Event (events.k8s.io/v1) about `kind`/`name`.
fn assert_event(r: &Recorded, type_: &str, reason: &str, kind: &str, name: &str) -> String {
    let b = &r.body;
    assert_eq!(b["type"], type_, "{b}");
    assert_eq!(b["reason"], reason, "{b}");
    assert_eq!(b["reportingController"], "pd-operator", "{b}");
    assert_eq!(b["regarding"]["kind"], kind, "{b}");
    assert_eq!(b["regarding"]["name"], name, "{b}");
    b["note"].as_str().unwrap_or_default().to_string()
}

/// Tenant `acme` whose clients are the `app: chat` pods.
fn tenant() -> Value {
    fixtures::tenant()
        .uid("tenant-uid")
        .set(
            "/spec/clients",
            json!([{"podSelector": {"matchLabels": {"app": "chat"}}}]),
        )
        .json()
}

/// ScanPolicy `acme-chat` (generation 3) with thresholds 30/60.
fn policy() -> ScanPolicy {
    fixtures::policy("acme-chat")
        .uid("policy-uid-42")
        .generation(3)
        .set("/metadata/resourceVersion", "7")
        .set("/spec/thresholds", json!({"warn": 30, "block": 60}))
        .build()
}

/// RulePack `name` (generation 2) with one rule `rule` matching `regex` and a test that expects
/// `so evil` to be blocked, or, when it `extends` another pack, no tests of its own.
fn pack(name: &str, extends: Option<&str>, regex: &str, rule: &str) -> Value {
    let rules = json!([{"id": rule, "category": "other", "severity": "high", "weight": 80, "regex": regex}]);
    let pack = fixtures::pack(name)
        .uid(&format!("{name}-uid"))
        .generation(2)
        .set("/spec/rules", rules);
    match extends {
        Some(e) => pack.set("/spec/extends", e).set("/spec/tests", json!([])),
        None => pack.set(
            "/spec/tests",
            json!([{"name": "blocks evil", "input": "so evil", "expect": {"verdict": "block"}}]),
        ),
    }
    .json()
}

fn pack_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "promptdefenders.io/v1alpha1", "kind": "RulePackList",
           "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Answers like an API server that accepts every apply: the applied object comes back (the
/// Deployment fully rolled out), status applies come back merged into the fixture `object`.
fn default_response(r: &Recorded, packs: &Value, object: &Value) -> (u16, Value) {
    let p = r.path.split('?').next().unwrap_or_default();
    match r.method.as_str() {
        "GET" if p == "/apis/promptdefenders.io/v1alpha1/tenants/acme" => (200, tenant()),
        "GET" if p == format!("{GROUP_NS}/rulepacks") => (200, packs.clone()),
        "GET" => (404, api_status(404, "NotFound")),
        "PATCH" if p.ends_with("/status") => {
            let mut o = object.clone();
            o["status"] = r.body["status"].clone();
            (200, o)
        }
        "PATCH" if p.ends_with("/deployments/acme-chat-scanner") => {
            let mut d = r.body.clone();
            d["metadata"]["generation"] = json!(1);
            d["status"] = json!({"observedGeneration": 1, "replicas": 2,
                                 "updatedReplicas": 2, "readyReplicas": 2});
            (200, d)
        }
        "PATCH" => (200, r.body.clone()),
        "POST" if p.ends_with("/events") => (201, r.body.clone()),
        _ => (405, api_status(405, "MethodNotAllowed")),
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no condition {type_} in {status}"))
}

fn children_paths() -> Vec<String> {
    let core = "/api/v1/namespaces/acme-prod";
    let ns = |api: &str| format!("/apis/{api}/namespaces/acme-prod");
    vec![
        format!("PATCH {core}/serviceaccounts/acme-chat-scanner{SSA}"),
        format!(
            "PATCH {}/roles/acme-chat-scanner{SSA}",
            ns("rbac.authorization.k8s.io/v1")
        ),
        format!(
            "PATCH {}/rolebindings/acme-chat-scanner{SSA}",
            ns("rbac.authorization.k8s.io/v1")
        ),
        format!("PATCH {core}/configmaps/acme-chat-bundle{SSA}"),
        format!("PATCH {core}/services/acme-chat-scanner{SSA}"),
        format!(
            "PATCH {}/networkpolicies/acme-chat-scanner{SSA}",
            ns("networking.k8s.io/v1")
        ),
        format!("PATCH {}/deployments/acme-chat-scanner{SSA}", ns("apps/v1")),
        format!(
            "PATCH {}/horizontalpodautoscalers/acme-chat-scanner{SSA}",
            ns("autoscaling/v2")
        ),
        format!(
            "PATCH {}/poddisruptionbudgets/acme-chat-scanner{SSA}",
            ns("policy/v1")
        ),
    ]
}

fn reads() -> Vec<String> {
    vec![
        "GET /apis/promptdefenders.io/v1alpha1/tenants/acme".to_string(),
        format!("GET {GROUP_NS}/rulepacks?"),
    ]
}

#[tokio::test]
async fn happy_path_applies_every_child_then_reports_ready() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    let action = reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let reqs = finish(ctx, server).await;

    let mut want = reads();
    want.extend(children_paths());
    want.push(format!(
        "PATCH {GROUP_NS}/scanpolicies/acme-chat/status{SSA}"
    ));
    want.push(EVENTS.into());
    assert_eq!(lines(&reqs), want);

    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(r.content_type.as_deref(), Some(APPLY_YAML), "{}", r.path);
    }
    for r in &reqs[2..11] {
        let owners = &r.body["metadata"]["ownerReferences"];
        assert_eq!(
            owners,
            &json!([{"apiVersion": "promptdefenders.io/v1alpha1", "kind": "ScanPolicy",
                     "name": "acme-chat", "uid": "policy-uid-42",
                     "controller": true, "blockOwnerDeletion": true}]),
            "{}",
            r.path
        );
        assert_eq!(
            r.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "pd-operator"
        );
    }
    let cm = &reqs[5].body;
    assert_eq!(cm["kind"], "ConfigMap");
    let hash = cm["metadata"]["annotations"]["promptdefenders.io/bundle-hash"]
        .as_str()
        .expect("bundle hash");
    let bundle: Value =
        serde_json::from_str(cm["data"]["bundle.json"].as_str().expect("bundle.json"))
            .expect("bundle JSON");
    assert!(bundle.to_string().contains("r-evil"));

    let status = &reqs[11].body;
    assert_eq!(status["apiVersion"], "promptdefenders.io/v1alpha1");
    assert_eq!(status["kind"], "ScanPolicy");
    let s = &status["status"];
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["activeBundleHash"], hash);
    assert_eq!(s["readyReplicas"], 2);
    assert_eq!(condition(s, "RulePacksReady")["status"], "True");
    assert_eq!(condition(s, "Ready")["status"], "True");
    assert_eq!(condition(s, "Ready")["observedGeneration"], 3);

    let note = assert_event(
        &reqs[12],
        "Normal",
        "BundleUpdated",
        "ScanPolicy",
        "acme-chat",
    );
    assert!(note.contains(hash), "{note}");
    assert_eq!(reqs[12].body["regarding"]["uid"], "policy-uid-42");
}

#[tokio::test]
async fn invalid_pack_never_reaches_the_configmap() {
    // `acme` extends `baseline`, whose rule `bad-rule` does not compile.
    let packs = pack_list(vec![
        pack("acme", Some("baseline"), "evil", "r-evil"),
        pack("baseline", None, "(unclosed", "bad-rule"),
    ]);
    let mut object = serde_json::to_value(policy()).expect("policy json");
    object["status"] = json!({"activeBundleHash": "sha256:lastgood", "observedGeneration": 2});
    let mut p: ScanPolicy = serde_json::from_value(object.clone()).expect("policy");
    p.metadata.generation = Some(4);
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("an invalid pack is reported in status, not a reconcile error");
    let reqs = finish(ctx, server).await;

    let mut want = reads();
    want.push("GET /apis/apps/v1/namespaces/acme-prod/deployments/acme-chat-scanner".into());
    want.push(format!(
        "PATCH {GROUP_NS}/scanpolicies/acme-chat/status{SSA}"
    ));
    want.push(EVENTS.into());
    assert_eq!(lines(&reqs), want);
    let note = assert_event(
        &reqs[4],
        "Warning",
        "RulePacksInvalid",
        "ScanPolicy",
        "acme-chat",
    );
    assert!(note.contains("bad-rule"), "{note}");
    assert!(!reqs.iter().any(|r| r.path.contains("configmaps")));

    let s = &reqs[3].body["status"];
    assert_eq!(reqs[3].content_type.as_deref(), Some(APPLY_YAML));
    assert_eq!(s["observedGeneration"], 4);
    assert_eq!(s["activeBundleHash"], "sha256:lastgood");
    let packs_ready = condition(s, "RulePacksReady");
    assert_eq!(packs_ready["status"], "False");
    assert_eq!(packs_ready["reason"], "RulePacksInvalid");
    let msg = packs_ready["message"].as_str().expect("message");
    // The scanner reports the problem under the resolved (bound) pack, naming the rule.
    assert!(msg.contains("rule `bad-rule`: invalid regex"), "{msg}");
    assert_eq!(condition(s, "Ready")["status"], "False");
    assert!(s["lastError"]
        .as_str()
        .expect("lastError")
        .contains("bad-rule"));
}

#[tokio::test]
async fn failing_pack_tests_are_reported_too() {
    // Compiles, but its test expects a block on input the rule does not match.
    let packs = pack_list(vec![pack("acme", None, "nomatch", "r-nomatch")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("reconcile");
    let reqs = finish(ctx, server).await;
    assert!(!reqs.iter().any(|r| r.path.contains("configmaps")));
    let s = &reqs
        .iter()
        .find(|r| r.path.contains("/status"))
        .expect("status patch")
        .body["status"];
    let msg = condition(s, "RulePacksReady")["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("rule pack `acme`") && msg.contains("blocks evil"),
        "{msg}"
    );
}

/// Reconciles with the ConfigMap apply answered by `code`, then runs `error_policy` `retries`
/// times as the controller would after each failure. Returns the error, the requeue actions,
/// the failure count the context kept, and the requests.
async fn failing_apply(
    code: u16,
    reason: &'static str,
    retries: usize,
) -> (Error, Vec<Action>, u32, Vec<String>) {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let (client, server) = mock_client(move |r| {
        if r.path.contains("/configmaps/") {
            (code, api_status(code, reason))
        } else {
            default_response(r, &packs, &object)
        }
    });
    let ctx = Arc::new(Context::new(client));
    let p = Arc::new(policy());
    let err = reconcile_scanpolicy(p.clone(), ctx.clone())
        .await
        .expect_err("the apply failed");
    let actions = (0..retries)
        .map(|_| error_policy(p.clone(), &err, ctx.clone()))
        .collect();
    let failures = ctx.failures("ScanPolicy/acme-prod/acme-chat");
    let reqs = finish(ctx, server).await;
    (err, actions, failures, lines(&reqs))
}

fn secs(s: &[u64]) -> Vec<Action> {
    s.iter()
        .map(|&s| Action::requeue(Duration::from_secs(s)))
        .collect()
}

#[tokio::test]
async fn conflict_requeues_quickly_with_backoff_and_stops_applying() {
    let (err, actions, failures, reqs) = failing_apply(409, "Conflict", 3).await;
    assert!(err.is_conflict(), "{err}");
    assert!(matches!(err, Error::Apply { .. }));
    // The apply sequence stops at the failing ConfigMap; the failure goes into status.
    let mut want = reads();
    want.extend(children_paths().into_iter().take(4));
    want.push(format!(
        "PATCH {GROUP_NS}/scanpolicies/acme-chat/status{SSA}"
    ));
    want.push(EVENTS.into());
    assert_eq!(reqs, want);
    assert_eq!(actions, secs(&[1, 2, 4]));
    assert_eq!(failures, 3);
}

#[tokio::test]
async fn server_error_requeues_with_backoff() {
    let (err, actions, _, reqs) = failing_apply(500, "InternalError", 8).await;
    assert!(!err.is_conflict());
    assert!(err.to_string().contains("mock InternalError"), "{err}");
    assert_eq!(reqs.len(), 8);
    assert_eq!(actions, secs(&[5, 10, 20, 40, 80, 160, 300, 300]));
}

#[tokio::test]
async fn missing_tenant_is_reported_in_status_without_child_writes() {
    let packs = pack_list(vec![]);
    let mut object = serde_json::to_value(policy()).expect("policy json");
    object["spec"]["tenantRef"]["name"] = json!("nobody");
    object["status"] = json!({"activeBundleHash": "sha256:lastgood", "observedGeneration": 2});
    let p: ScanPolicy = serde_json::from_value(object.clone()).expect("policy");
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    let action = reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("a missing tenant is the author's problem: status, not a retry loop");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let reqs = finish(ctx, server).await;
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/tenants/nobody".to_string(),
            "GET /apis/apps/v1/namespaces/acme-prod/deployments/acme-chat-scanner".into(),
            format!("PATCH {GROUP_NS}/scanpolicies/acme-chat/status{SSA}"),
            EVENTS.into(),
        ]
    );
    let s = &reqs[2].body["status"];
    let ready = condition(s, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "TenantNotFound");
    assert!(ready["message"]
        .as_str()
        .expect("message")
        .contains("`nobody`"));
    assert_eq!(s["activeBundleHash"], "sha256:lastgood");
    assert_eq!(s["observedGeneration"], 3);
    let note = assert_event(
        &reqs[3],
        "Warning",
        "TenantNotFound",
        "ScanPolicy",
        "acme-chat",
    );
    assert!(note.contains("`nobody` does not exist"), "{note}");
}

#[tokio::test]
async fn namespace_the_tenant_does_not_allow_is_reported_in_status() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let mut object = serde_json::to_value(policy()).expect("policy json");
    object["metadata"]["namespace"] = json!("elsewhere");
    let p: ScanPolicy = serde_json::from_value(object.clone()).expect("policy");
    let (client, server) = mock_client(move |r| {
        // The policy lives in `elsewhere`; answer its RulePack list like the default one.
        let p = r.path.split('?').next().unwrap_or_default();
        if r.method == "GET"
            && p == "/apis/promptdefenders.io/v1alpha1/namespaces/elsewhere/rulepacks"
        {
            return (200, packs.clone());
        }
        default_response(r, &packs, &object)
    });
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("reported in status");
    let reqs = finish(ctx, server).await;
    let ns = "/apis/promptdefenders.io/v1alpha1/namespaces/elsewhere";
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/tenants/acme".to_string(),
            format!("GET {ns}/rulepacks?"),
            "GET /apis/apps/v1/namespaces/elsewhere/deployments/acme-chat-scanner".into(),
            format!("PATCH {ns}/scanpolicies/acme-chat/status{SSA}"),
            "POST /apis/events.k8s.io/v1/namespaces/elsewhere/events?".into(),
        ]
    );
    let s = &reqs[3].body["status"];
    let ready = condition(s, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "NamespaceNotAllowed");
    let msg = ready["message"].as_str().expect("message");
    assert!(
        msg.contains("does not allow namespace `elsewhere`"),
        "{msg}"
    );
    assert!(!reqs
        .iter()
        .any(|r| r.method == "PATCH" && !r.path.contains("/status")));
}

#[tokio::test]
async fn rulepack_reconcile_patches_status() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = pack("acme", None, "evil", "r-evil");
    let rp: RulePack = serde_json::from_value(object.clone()).expect("pack");
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    reconcile_rulepack(Arc::new(rp), ctx.clone())
        .await
        .expect("reconcile");
    let reqs = finish(ctx, server).await;
    assert_eq!(
        lines(&reqs),
        [
            format!("GET {GROUP_NS}/rulepacks?"),
            format!("PATCH {GROUP_NS}/rulepacks/acme/status{SSA}"),
        ]
    );
    let r = &reqs[1];
    assert_eq!(r.content_type.as_deref(), Some(APPLY_YAML));
    assert_eq!(r.body["kind"], "RulePack");
    let s = &r.body["status"];
    assert_eq!(s["observedGeneration"], 2);
    assert_eq!(s["ruleCount"], 1);
    assert!(s["contentHash"]
        .as_str()
        .expect("hash")
        .starts_with("sha256:"));
    assert_eq!(s["tests"]["passed"], 1);
    for t in ["Compiled", "TestsPassed", "Ready"] {
        assert_eq!(condition(s, t)["status"], "True", "{t}");
        assert_eq!(condition(s, t)["observedGeneration"], 2, "{t}");
    }
}

#[tokio::test]
async fn rulepack_with_bad_rule_reports_it() {
    let packs = pack_list(vec![pack("acme", None, "(unclosed", "bad-rule")]);
    let object = pack("acme", None, "(unclosed", "bad-rule");
    let rp: RulePack = serde_json::from_value(object.clone()).expect("pack");
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    reconcile_rulepack(Arc::new(rp), ctx.clone())
        .await
        .expect("reconcile");
    let reqs = finish(ctx, server).await;
    let s = &reqs[1].body["status"];
    assert_eq!(condition(s, "Compiled")["status"], "False");
    assert_eq!(condition(s, "Ready")["reason"], "CompileFailed");
    assert_eq!(s["errors"][0]["rule"], "bad-rule");
    assert_eq!(lines(&reqs[2..]), [EVENTS]);
    let note = assert_event(&reqs[2], "Warning", "CompileFailed", "RulePack", "acme");
    assert!(note.starts_with("rule `bad-rule`"), "{note}");
}

#[test]
fn a_pack_change_maps_to_every_policy_using_it() {
    let packs: Vec<Arc<RulePack>> = [
        pack("baseline", None, "x", "r1"),
        pack("acme", Some("baseline"), "x", "r2"),
        pack("other", None, "x", "r3"),
    ]
    .into_iter()
    .map(|v| Arc::new(serde_json::from_value(v).expect("pack")))
    .collect();
    let mk = |name: &str, ns: &str, bound: &[&str]| {
        let mut p = policy();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some(ns.into());
        p.spec.rule_packs = bound.iter().map(|s| s.to_string()).collect();
        Arc::new(p)
    };
    let policies = vec![
        mk("direct", "acme-prod", &["acme"]),
        mk("all", "acme-prod", &[]),
        mk("unrelated", "acme-prod", &["other"]),
        mk("elsewhere", "other-ns", &["acme"]),
    ];
    let names = |pack: &Arc<RulePack>| {
        policies_using_pack(pack, &policies, &packs, None)
            .into_iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
    };
    // `baseline` reaches `direct` through acme's `extends`.
    assert_eq!(names(&packs[0]), ["direct", "all"]);
    assert_eq!(names(&packs[1]), ["direct", "all"]);
    assert_eq!(names(&packs[2]), ["all", "unrelated"]);
}

fn pack_in(ns: &str, name: &str, extends: Option<&str>) -> Arc<RulePack> {
    let mut v = pack(name, extends, "x", "r");
    v["metadata"]["namespace"] = json!(ns);
    Arc::new(serde_json::from_value(v).expect("pack"))
}

#[test]
fn shared_namespace_packs_reach_policies_everywhere_unless_shadowed() {
    let shared = Some("pd-system");
    let packs = vec![
        pack_in("pd-system", "baseline", None),
        pack_in("team-a", "acme", Some("baseline")),
        // team-b has its own `baseline`, which shadows the shared one.
        pack_in("team-b", "baseline", None),
        pack_in("team-b", "bob", Some("baseline")),
    ];
    let mk = |name: &str, ns: &str, bound: &[&str]| {
        let mut p = policy();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some(ns.into());
        p.spec.rule_packs = bound.iter().map(|s| s.to_string()).collect();
        Arc::new(p)
    };
    let policies = vec![
        mk("a-chat", "team-a", &["acme"]),
        mk("a-direct", "team-a", &["baseline"]),
        mk("a-all", "team-a", &[]),
        mk("b-chat", "team-b", &["bob"]),
        mk("b-all", "team-b", &[]),
    ];
    let users = |pack: &Arc<RulePack>, shared: Option<&str>| {
        policies_using_pack(pack, &policies, &packs, shared)
            .into_iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(users(&packs[0], shared), ["a-chat", "a-direct", "a-all"]);
    assert_eq!(users(&packs[2], shared), ["b-chat", "b-all"]);
    // Without a shared namespace the pack in pd-system reaches nobody else.
    assert!(users(&packs[0], None).is_empty());
    let extending = |pack: &Arc<RulePack>| {
        packs_extending(pack, &packs, shared)
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(extending(&packs[0]), ["team-a/acme"]);
    assert_eq!(extending(&packs[2]), ["team-b/bob"]);
}

#[tokio::test]
async fn scanpolicy_reads_the_shared_namespace_before_its_own() {
    // The bound pack `acme` extends `baseline`, which only the shared namespace has.
    let local = pack_list(vec![pack("acme", Some("baseline"), "evil", "r-evil")]);
    let mut base = pack("baseline", None, "evil", "r-base");
    base["metadata"]["namespace"] = json!("pd-system");
    let shared = pack_list(vec![base]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let (client, server) = mock_client(move |r| {
        let p = r.path.split('?').next().unwrap_or_default();
        if r.method == "GET"
            && p == "/apis/promptdefenders.io/v1alpha1/namespaces/pd-system/rulepacks"
        {
            return (200, shared.clone());
        }
        default_response(r, &local, &object)
    });
    let settings = Settings {
        shared_namespace: Some("pd-system".into()),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::with_settings(client, settings));
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("reconcile");
    let reqs = finish(ctx, server).await;
    let l = lines(&reqs);
    assert_eq!(
        l[..3],
        [
            "GET /apis/promptdefenders.io/v1alpha1/tenants/acme".to_string(),
            "GET /apis/promptdefenders.io/v1alpha1/namespaces/pd-system/rulepacks?".into(),
            format!("GET {GROUP_NS}/rulepacks?"),
        ]
    );
    let cm = reqs
        .iter()
        .find(|r| r.path.contains("/configmaps/acme-chat-bundle"))
        .expect("bundle applied");
    let bundle = cm.body["data"]["bundle.json"].as_str().expect("bundle");
    assert!(
        bundle.contains("r-base") && bundle.contains("r-evil"),
        "{bundle}"
    );
}

/// Tenant `acme` listing `namespaces`, reconciled with each Secret create answered by
/// `secret(namespace)`: two policies of `acme` (one in a namespace the tenant does not list)
/// and one of another tenant. Returns the action and the requests.
async fn tenant_reconcile_with(
    namespaces: &[&str],
    secret: impl Fn(&str) -> u16 + Send + 'static,
) -> (Result<Action, Error>, Vec<Recorded>) {
    let mk = |name: &str, ns: &str, tenant: &str| {
        let mut p = serde_json::to_value(policy()).expect("policy json");
        p["metadata"]["name"] = json!(name);
        p["metadata"]["namespace"] = json!(ns);
        p["spec"]["tenantRef"]["name"] = json!(tenant);
        p
    };
    let list = json!({"apiVersion": "promptdefenders.io/v1alpha1", "kind": "ScanPolicyList",
        "metadata": {}, "items": [mk("a", "acme-prod", "acme"), mk("b", "acme-dev", "acme"),
                                  mk("c", "acme-prod", "globex")]});
    let mut object = tenant();
    object["metadata"]["generation"] = json!(5);
    object["spec"]["namespaces"] = json!(namespaces);
    let t: Tenant = serde_json::from_value(object.clone()).expect("tenant");
    let (client, server) = mock_client(move |r| {
        let p = r.path.split('?').next().unwrap_or_default();
        match r.method.as_str() {
            "GET" if p == "/apis/promptdefenders.io/v1alpha1/scanpolicies" => (200, list.clone()),
            "POST" if p.ends_with("/secrets") => {
                let ns = p.split('/').nth(4).unwrap_or_default();
                match secret(ns) {
                    201 => (201, r.body.clone()),
                    409 => (409, api_status(409, "AlreadyExists")),
                    404 => (404, api_status(404, "NotFound")),
                    code => (code, api_status(code, "InternalError")),
                }
            }
            "PATCH" if p.ends_with("/status") => {
                let mut o = object.clone();
                o["status"] = r.body["status"].clone();
                (200, o)
            }
            "POST" if p.ends_with("/events") => (201, r.body.clone()),
            _ => (405, api_status(405, "MethodNotAllowed")),
        }
    });
    let ctx = Arc::new(Context::new(client));
    let action = reconcile_tenant(Arc::new(t), ctx.clone()).await;
    (action, finish(ctx, server).await)
}

const SECRETS: &str = "/secrets?&fieldManager=pd-operator";

/// Tenant reconcile with the Secret create answered by `secret_code` in both listed namespaces.
async fn tenant_reconcile(secret_code: u16) -> Vec<Recorded> {
    let (action, reqs) =
        tenant_reconcile_with(&["acme-prod", "acme-staging"], move |_| secret_code).await;
    assert_eq!(
        action.expect("reconcile"),
        Action::requeue(Duration::from_secs(300))
    );
    // Only the listed namespaces get a key: `b` lives in acme-dev, which the tenant does not
    // list, so it is refused (NamespaceNotAllowed) and needs no key there.
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/scanpolicies?".to_string(),
            format!("POST /api/v1/namespaces/acme-prod{SECRETS}"),
            format!("POST /api/v1/namespaces/acme-staging{SECRETS}"),
            format!("PATCH /apis/promptdefenders.io/v1alpha1/tenants/acme/status{SSA}"),
        ]
    );
    let s = &reqs[3].body["status"];
    assert_eq!(reqs[3].content_type.as_deref(), Some(APPLY_YAML));
    assert_eq!(s["policyCount"], 2);
    assert_eq!(s["observedGeneration"], 5);
    assert_eq!(condition(s, "Ready")["status"], "True");
    assert_eq!(condition(s, "Stalled")["status"], "False");
    assert_eq!(condition(s, "Reconciling")["status"], "False");
    reqs
}

#[tokio::test]
async fn tenant_gets_a_fresh_hmac_key_per_namespace() {
    let reqs = tenant_reconcile(201).await;
    let keys: Vec<&str> = reqs[1..3]
        .iter()
        .map(|r| {
            let b = &r.body;
            assert_eq!(b["metadata"]["name"], "acme-hmac");
            assert!(b["metadata"].get("ownerReferences").is_none());
            assert_eq!(b["type"], "Opaque");
            b["data"]["key"].as_str().expect("base64 key")
        })
        .collect();
    // 32 bytes are 44 base64 characters; each namespace gets its own random key.
    assert!(keys.iter().all(|k| k.len() == 44), "{keys:?}");
    assert_ne!(keys[0], keys[1]);
}

#[tokio::test]
async fn existing_hmac_key_is_never_overwritten() {
    // 409 AlreadyExists on create is success; `tenant_reconcile` asserts that no PUT or PATCH
    // touches a Secret afterwards.
    tenant_reconcile(409).await;
}

/// Issue 13, problem 6: a listed namespace that does not exist used to abort the loop (later
/// namespaces skipped, no status). Now every namespace is tried, the missing one is named in
/// status, and the tenant is retried soon.
#[tokio::test]
async fn tenant_missing_namespace_is_reported_and_never_aborts_the_others() {
    let (action, reqs) = tenant_reconcile_with(&["acme-dev", "acme-prod", "acme-test"], |ns| {
        if ns == "acme-dev" {
            404
        } else {
            201
        }
    })
    .await;
    assert_eq!(
        action.expect("a missing namespace is reported, not an error"),
        Action::requeue(Duration::from_secs(30))
    );
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/scanpolicies?".to_string(),
            format!("POST /api/v1/namespaces/acme-dev{SECRETS}"),
            format!("POST /api/v1/namespaces/acme-prod{SECRETS}"),
            format!("POST /api/v1/namespaces/acme-test{SECRETS}"),
            format!("PATCH /apis/promptdefenders.io/v1alpha1/tenants/acme/status{SSA}"),
            "POST /apis/events.k8s.io/v1/namespaces/default/events?".into(),
        ]
    );
    let s = &reqs[4].body["status"];
    assert_eq!(s["missingNamespaces"], json!(["acme-dev"]));
    let ready = condition(s, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "NamespacesMissing");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("acme-dev"),
        "{ready}"
    );
    // Creating the namespace fixes it: kstatus InProgress, not Failed.
    assert_eq!(condition(s, "Reconciling")["status"], "True");
    assert_eq!(condition(s, "Stalled")["status"], "False");
    assert_event(&reqs[5], "Warning", "NamespacesMissing", "Tenant", "acme");
}

/// Issue 13, problem 7: `namespaces: []` used to mean "any namespace", and the operator then
/// created the tenant's HMAC Secret wherever a policy named the tenant. Now it means none.
#[tokio::test]
async fn tenant_without_namespaces_gets_no_secret_anywhere() {
    let (action, reqs) = tenant_reconcile_with(&[], |_| 201).await;
    action.expect("reconcile");
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/scanpolicies?".to_string(),
            format!("PATCH /apis/promptdefenders.io/v1alpha1/tenants/acme/status{SSA}"),
        ]
    );
    let ready = condition(&reqs[1].body["status"], "Ready");
    assert_eq!(ready["reason"], "NoNamespaces");
}

#[tokio::test]
async fn steady_state_reapplies_without_new_events() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let first = {
        let (packs, object) = (packs.clone(), object.clone());
        let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
        let ctx = Arc::new(Context::new(client));
        reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
            .await
            .expect("first reconcile");
        finish(ctx, server).await
    };
    // The policy as the API server now has it: with the status just written.
    let mut p = policy();
    p.status = Some(serde_json::from_value(first[11].body["status"].clone()).expect("status"));
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("second reconcile");
    let reqs = finish(ctx, server).await;
    // A fresh operator (no memory of what it applied): the same applies; the status it
    // computes equals the one written, so it is not written again, and no event.
    assert_eq!(
        lines(&reqs),
        lines(&first[..11]),
        "same applies, no status, no event"
    );
}

/// An API server that remembers the last applied bundle ConfigMap and rolled-out Deployment and
/// answers GETs of them (as a real one would), everything else by `rest`.
fn steady_state_server(
    rest: impl Fn(&Recorded) -> (u16, Value) + Send + 'static,
) -> impl Fn(&Recorded) -> (u16, Value) + Send + 'static {
    let cm = std::sync::Mutex::new(None::<Value>);
    move |r| {
        let path = r.path.split('?').next().unwrap_or_default();
        if r.method == "PATCH" && path.ends_with("/configmaps/acme-chat-bundle") {
            *cm.lock().expect("cm") = Some(r.body.clone());
        }
        if r.method == "GET" && path.ends_with("/configmaps/acme-chat-bundle") {
            return match cm.lock().expect("cm").clone() {
                Some(c) => (200, c),
                None => (404, api_status(404, "NotFound")),
            };
        }
        if r.method == "GET" && path.ends_with("/deployments/acme-chat-scanner") {
            let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "acme-chat-scanner", "namespace": "acme-prod", "generation": 1}});
            d["status"] = json!({"observedGeneration": 1, "replicas": 2,
                                 "updatedReplicas": 2, "readyReplicas": 2});
            return (200, d);
        }
        rest(r)
    }
}

/// Issue 13, problem 5: every policy reconcile re-applied all nine children and rewrote its
/// status. Counted on the mocked API server: a steady-state reconcile (nothing changed since
/// the last one) went from 12 requests (2 reads, 9 applies, 1 status write) to 4 (2 reads, a
/// GET of the bundle ConfigMap to check it was not edited, a GET of the Deployment for status).
#[tokio::test]
async fn steady_state_reconcile_skips_unchanged_applies_and_status() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let (p2, o2) = (packs.clone(), object.clone());
    let (client, server) = mock_client(steady_state_server(move |r| default_response(r, &p2, &o2)));
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("first reconcile");
    // The watch then delivers the policy with the status just written.
    let mut p = policy();
    let status: Value = {
        // The first reconcile's status write is the 12th request; re-run it to read the body.
        let (_, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
            default_response(r, &packs, &object)
        })
        .await;
        status_write(&reqs).body["status"].clone()
    };
    p.status = Some(serde_json::from_value(status).expect("status"));
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("steady-state reconcile");
    // Same Tenant, packs and spec: nothing was compiled the second time.
    assert_eq!(ctx.builds(), 1);
    let reqs = finish(ctx, server).await;
    let (first, second) = reqs.split_at(13);
    assert_eq!(first.len(), 13, "first: 2 reads, 9 applies, status, event");
    assert_eq!(
        lines(second),
        [
            "GET /apis/promptdefenders.io/v1alpha1/tenants/acme".to_string(),
            format!("GET {GROUP_NS}/rulepacks?"),
            "GET /api/v1/namespaces/acme-prod/configmaps/acme-chat-bundle".into(),
            "GET /apis/apps/v1/namespaces/acme-prod/deployments/acme-chat-scanner".into(),
        ]
    );
    eprintln!(
        "API requests per steady-state ScanPolicy reconcile: before 12, after {}",
        second.len()
    );
}

#[tokio::test]
async fn a_deleted_policy_is_forgotten_and_a_relist_forgets_the_ones_it_missed() {
    use kube::runtime::watcher::Event;
    use pd_operator::controller::PolicyJanitor;
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let (p2, o2) = (packs.clone(), object.clone());
    let (client, _server) =
        mock_client(steady_state_server(move |r| default_response(r, &p2, &o2)));
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("first reconcile");
    assert_eq!(ctx.remembered_builds(), 1);
    let mut janitor = PolicyJanitor::default();
    // Other policies' events touch nothing of this one.
    let mut other = policy();
    other.metadata.name = Some("other".into());
    janitor.on_event(&ctx, &Event::Delete(other.clone()));
    janitor.on_event(&ctx, &Event::Apply(policy()));
    assert_eq!(ctx.remembered_builds(), 1);
    // Deleted: its bundle is no longer held, and a new policy of that name is built afresh.
    janitor.on_event(&ctx, &Event::Delete(policy()));
    assert_eq!(ctx.remembered_builds(), 0);
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("reconcile after re-create");
    assert_eq!((ctx.builds(), ctx.remembered_builds()), (2, 1));
    // A relist that still holds it keeps it; one that no longer does forgets it (the Delete
    // happened while the watch was down).
    for event in [Event::Init, Event::InitApply(policy()), Event::InitDone] {
        janitor.on_event(&ctx, &event);
    }
    assert_eq!(ctx.remembered_builds(), 1);
    for event in [Event::Init, Event::InitApply(other), Event::InitDone] {
        janitor.on_event(&ctx, &event);
    }
    assert_eq!(ctx.remembered_builds(), 0);
}

/// Reconciles `p` once against `respond` (settings `settings`); returns the outcome and the
/// requests.
async fn reconcile_once(
    p: ScanPolicy,
    settings: Settings,
    respond: impl Fn(&Recorded) -> (u16, Value) + Send + 'static,
) -> (Result<Action, Error>, Vec<Recorded>) {
    let (client, server) = mock_client(respond);
    let ctx = Arc::new(Context::with_settings(client, settings));
    let result = reconcile_scanpolicy(Arc::new(p), ctx.clone()).await;
    (result, finish(ctx, server).await)
}

fn status_write(reqs: &[Recorded]) -> &Recorded {
    reqs.iter()
        .find(|r| {
            r.method == "PATCH" && r.path.contains("/scanpolicies/") && r.path.contains("/status")
        })
        .expect("a status write")
}

/// Issue 13, problem 2: a refused apply (422 from the API server) used to return an error
/// with no condition and no event. Now `Ready=False`, reason `ApplyFailed` with the API's
/// message, `Stalled` (retrying the same request cannot help) and a Warning Event.
#[tokio::test]
async fn refused_apply_reaches_status_and_events() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let obj = object.clone();
    let (result, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
        if r.method == "PATCH" && r.path.contains("/services/") {
            let mut st = api_status(422, "Invalid");
            st["message"] =
                json!("Service \"acme-chat-scanner\" is invalid: metadata.name: Invalid value");
            (422, st)
        } else {
            default_response(r, &packs, &obj)
        }
    })
    .await;
    let err = result.expect_err("the apply was refused");
    assert!(err.is_permanent(), "{err}");
    let l = lines(&reqs);
    assert_eq!(
        l[l.len() - 2..],
        [
            format!("PATCH {GROUP_NS}/scanpolicies/acme-chat/status{SSA}"),
            EVENTS.to_string()
        ]
    );
    let s = &status_write(&reqs).body["status"];
    let ready = condition(s, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ApplyFailed");
    let msg = ready["message"].as_str().expect("message");
    assert!(
        msg.contains("Service `acme-chat-scanner`") && msg.contains("is invalid"),
        "{msg}"
    );
    assert_eq!(condition(s, "Stalled")["status"], "True");
    assert_eq!(condition(s, "Reconciling")["status"], "False");
    assert_eq!(s["lastError"], ready["message"]);
    let note = assert_event(
        reqs.last().expect("event"),
        "Warning",
        "ApplyFailed",
        "ScanPolicy",
        "acme-chat",
    );
    assert!(note.contains("is invalid"), "{note}");
    assert_eq!(
        kstatus(&with_status(&object, &status_write(&reqs).body)),
        "Failed"
    );
}

/// A failed (not refused) apply: retried with backoff, so kstatus says InProgress.
#[tokio::test]
async fn failed_apply_is_reconciling_while_retried() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let obj = object.clone();
    let (result, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
        if r.method == "PATCH" && r.path.contains("/configmaps/") {
            (500, api_status(500, "InternalError"))
        } else {
            default_response(r, &packs, &obj)
        }
    })
    .await;
    assert!(!result.expect_err("failed").is_permanent());
    let w = status_write(&reqs);
    assert_eq!(
        condition(&w.body["status"], "Ready")["reason"],
        "ApplyFailed"
    );
    assert_eq!(
        condition(&w.body["status"], "Reconciling")["status"],
        "True"
    );
    assert_eq!(kstatus(&with_status(&object, &w.body)), "InProgress");
}

/// Issue 13, problem 2: a name whose children's names the API server refuses (`acme.chat`
/// makes an invalid Service name; 57 characters make a 65-character one) is reported up front,
/// `InvalidName`, and nothing is applied.
#[tokio::test]
async fn invalid_policy_names_are_reported_before_any_apply() {
    for name in ["acme.chat", &"a".repeat(57)] {
        let mut p = policy();
        p.metadata.name = Some(name.to_string());
        let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
        let mut object = serde_json::to_value(&p).expect("policy json");
        object["metadata"]["name"] = json!(name);
        let obj = object.clone();
        let (result, reqs) = reconcile_once(p, Settings::default(), move |r| {
            default_response(r, &packs, &obj)
        })
        .await;
        result.expect("reported in status, not retried");
        assert_eq!(
            lines(&reqs),
            [
                format!("PATCH {GROUP_NS}/scanpolicies/{name}/status{SSA}"),
                EVENTS.to_string()
            ],
            "{name}"
        );
        let s = &reqs[0].body["status"];
        assert_eq!(condition(s, "Ready")["reason"], "InvalidName", "{name}");
        assert_eq!(condition(s, "Stalled")["status"], "True", "{name}");
        assert_eq!(kstatus(&with_status(&object, &reqs[0].body)), "Failed");
        assert_event(&reqs[1], "Warning", "InvalidName", "ScanPolicy", name);
    }
}

/// Issue 13, problem 2: a Deployment stuck at `ProgressDeadlineExceeded` used to show
/// `ScannersNotReady` (Progressing forever in Argo CD). Now `Ready=False` with that reason,
/// `Stalled=True`, and a Warning Event.
#[tokio::test]
async fn progress_deadline_exceeded_is_stalled() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let obj = object.clone();
    let (result, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
        let (code, mut body) = default_response(r, &packs, &obj);
        if r.path.contains("/deployments/acme-chat-scanner") {
            body["status"] = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                "readyReplicas": 0, "conditions": [{"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"acme-chat-scanner-5d9\" has timed out progressing."}]});
        }
        (code, body)
    })
    .await;
    result.expect("reconcile");
    let w = status_write(&reqs);
    let s = &w.body["status"];
    let ready = condition(s, "Ready");
    assert_eq!(ready["reason"], "ProgressDeadlineExceeded");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{ready}"
    );
    assert_eq!(condition(s, "Progressing")["status"], "False");
    assert_eq!(condition(s, "Stalled")["status"], "True");
    assert_eq!(kstatus(&with_status(&object, &w.body)), "Failed");
    let events: Vec<&Recorded> = reqs.iter().filter(|r| r.path.contains("/events")).collect();
    assert!(events
        .iter()
        .any(|e| e.body["reason"] == "ProgressDeadlineExceeded"));
}

/// Issue 13, problem 3: kstatus (Flux `wait: true`) called a policy whose tenant is missing, or
/// whose packs are invalid, Current. Now Failed; a rollout in progress is InProgress; a policy
/// that is Ready is Current.
#[tokio::test]
async fn kstatus_judges_blocked_rolling_and_ready_policies() {
    // Blocked: the tenant does not exist.
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let mut object = serde_json::to_value(policy()).expect("policy json");
    object["spec"]["tenantRef"]["name"] = json!("nobody");
    let p: ScanPolicy = serde_json::from_value(object.clone()).expect("policy");
    let (o, pk) = (object.clone(), packs.clone());
    let (_, reqs) = reconcile_once(p, Settings::default(), move |r| {
        default_response(r, &pk, &o)
    })
    .await;
    assert_eq!(
        kstatus(&with_status(&object, &status_write(&reqs).body)),
        "Failed"
    );

    // Blocked: a bound pack fails to compile.
    let bad = pack_list(vec![pack("acme", None, "(unclosed", "bad-rule")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let o = object.clone();
    let (_, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
        default_response(r, &bad, &o)
    })
    .await;
    assert_eq!(
        kstatus(&with_status(&object, &status_write(&reqs).body)),
        "Failed"
    );

    // Rolling out: 1 of 2 ready.
    let (o, pk) = (object.clone(), packs.clone());
    let (_, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
        let (code, mut body) = default_response(r, &pk, &o);
        if r.path.contains("/deployments/acme-chat-scanner") {
            body["status"]["readyReplicas"] = json!(1);
        }
        (code, body)
    })
    .await;
    let w = status_write(&reqs);
    assert_eq!(condition(&w.body["status"], "Ready")["status"], "False");
    assert_eq!(kstatus(&with_status(&object, &w.body)), "InProgress");

    // Ready.
    let o = object.clone();
    let (_, reqs) = reconcile_once(policy(), Settings::default(), move |r| {
        default_response(r, &packs, &o)
    })
    .await;
    let w = status_write(&reqs);
    assert_eq!(condition(&w.body["status"], "Ready")["status"], "True");
    assert_eq!(kstatus(&with_status(&object, &w.body)), "Current");
}

fn reporting() -> Settings {
    Settings {
        api_server: vec![pd_operator::apiserver::ApiEndpoint {
            cidr: "10.96.0.1/32".into(),
            port: 443,
        }],
        report_serving: true,
        ..Settings::default()
    }
}

fn scanner_pod(name: &str, ready: bool, serving: Option<&str>, error: Option<&str>) -> Value {
    let mut ann = serde_json::Map::new();
    if let Some(h) = serving {
        ann.insert("promptdefenders.io/serving-bundle-hash".into(), json!(h));
    }
    if let Some(e) = error {
        ann.insert("promptdefenders.io/bundle-error".into(), json!(e));
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "acme-prod", "annotations": ann},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// Reconciles with scanners reporting (`pods` as the pod LIST answer); returns the status
/// apply's body and the requests.
async fn with_pods(pods: impl Fn(&str) -> Vec<Value> + Send + 'static) -> (Value, Vec<Recorded>) {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let hash = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (o, h) = (object.clone(), hash.clone());
    let (result, reqs) = reconcile_once(policy(), reporting(), move |r| {
        if r.path.contains("/configmaps/acme-chat-bundle") {
            let found = r.body["metadata"]["annotations"]["promptdefenders.io/bundle-hash"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *h.lock().expect("hash") = found;
        }
        if r.method == "GET" && r.path.starts_with("/api/v1/namespaces/acme-prod/pods") {
            let desired = h.lock().expect("hash").clone();
            return (
                200,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                                "items": pods(&desired)}),
            );
        }
        default_response(r, &packs, &o)
    })
    .await;
    result.expect("reconcile");
    let body = status_write(&reqs).body.clone();
    (with_status(&object, &body), reqs)
}

/// Issue 13, problem 1: a new bundle with an unchanged, rolled-out Deployment used to be
/// `Ready=True` at once. Now `Ready` waits until every ready pod serves the new hash, read from
/// the pods' annotations with one LIST (no call to any pod).
#[tokio::test]
async fn ready_waits_until_every_ready_pod_serves_the_new_bundle() {
    let (obj, reqs) = with_pods(|desired| {
        vec![
            scanner_pod("p-1", true, Some(desired), None),
            scanner_pod("p-2", true, Some("sha256:old"), None),
        ]
    })
    .await;
    assert!(lines(&reqs).contains(
        &"GET /api/v1/namespaces/acme-prod/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dacme-chat%2Capp.kubernetes.io%2Fname%3Dpd-scanner".to_string()
    ), "{:#?}", lines(&reqs));
    let s = &obj["status"];
    assert_eq!(condition(s, "Ready")["status"], "False");
    assert_eq!(condition(s, "Ready")["reason"], "BundleNotServed");
    assert_eq!(s["servingPods"], 1);
    assert!(s["servingBundleHash"].is_null(), "{s}");
    assert!(
        s["serving"]
            .as_str()
            .unwrap_or_default()
            .starts_with("1/2 pods on sha256:"),
        "{s}"
    );
    assert_eq!(kstatus(&obj), "InProgress");

    // Every ready pod on the new hash (a pod that is not ready does not count).
    let (obj, _) = with_pods(|desired| {
        vec![
            scanner_pod("p-1", true, Some(desired), None),
            scanner_pod("p-2", true, Some(desired), None),
            scanner_pod("p-3", false, Some("sha256:old"), None),
        ]
    })
    .await;
    let s = &obj["status"];
    assert_eq!(condition(s, "Ready")["status"], "True", "{s}");
    assert_eq!(s["servingBundleHash"], s["activeBundleHash"]);
    assert_eq!(s["servingPods"], 2);
    assert_eq!(kstatus(&obj), "Current");
}

/// Issue 13, problem 1: a scanner that refuses the bundle (e.g. an older `scanner.image`) kept
/// answering `/readyz` 200 on the old one, and status never said so. Now `BundleRejected`
/// names the pods and the reason, and the policy is Stalled.
#[tokio::test]
async fn a_scanner_refusing_the_bundle_is_named() {
    let (obj, reqs) = with_pods(|_| {
        vec![
            scanner_pod(
                "p-2",
                true,
                Some("sha256:old"),
                Some("unknown field `newThing`"),
            ),
            scanner_pod(
                "p-1",
                true,
                Some("sha256:old"),
                Some("unknown field `newThing`"),
            ),
        ]
    })
    .await;
    let s = &obj["status"];
    let ready = condition(s, "Ready");
    assert_eq!(ready["reason"], "BundleRejected");
    let msg = ready["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("p-1, p-2") && msg.contains("newThing") && msg.contains("sha256:old"),
        "{msg}"
    );
    assert_eq!(s["servingBundleHash"], "sha256:old");
    assert_eq!(kstatus(&obj), "Failed");
    assert!(reqs
        .iter()
        .any(|r| r.path.contains("/events") && r.body["reason"] == "BundleRejected"));
}

// ── Faults mid-reconcile: the operator converges, says what is happening at every step, and
// never replaces a working bundle because of a transient error. ─────────────────────────────

fn policy_with_good_bundle() -> (ScanPolicy, Value) {
    let mut object = serde_json::to_value(policy()).expect("policy json");
    object["status"] = json!({"activeBundleHash": "sha256:lastgood", "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                        "observedGeneration": 3, "lastTransitionTime": "2026-11-30T00:00:00Z"}]});
    (
        serde_json::from_value(object.clone()).expect("policy"),
        object,
    )
}

#[tokio::test]
async fn a_transient_read_error_never_touches_the_serving_bundle() {
    let (p, object) = policy_with_good_bundle();
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let o = object.clone();
    let (result, reqs) = reconcile_once(p, Settings::default(), move |r| {
        if r.method == "GET" && r.path.contains("/rulepacks") {
            (503, api_status(503, "ServiceUnavailable"))
        } else {
            default_response(r, &packs, &o)
        }
    })
    .await;
    let err = result.expect_err("retried with backoff");
    assert!(!err.is_permanent());
    assert!(!reqs.iter().any(|r| r.path.contains("/configmaps/")));
    let w = status_write(&reqs);
    let s = &w.body["status"];
    assert_eq!(s["activeBundleHash"], "sha256:lastgood");
    assert_eq!(condition(s, "Ready")["reason"], "APIError");
    assert_eq!(condition(s, "Reconciling")["status"], "True");
    assert_eq!(kstatus(&with_status(&object, &w.body)), "InProgress");
}

#[tokio::test]
async fn converges_after_a_conflict() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (o, f) = (object.clone(), failed_once.clone());
    let (client, server) = mock_client(move |r| {
        if r.path.contains("/configmaps/") && !f.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return (409, api_status(409, "Conflict"));
        }
        default_response(r, &packs, &o)
    });
    let ctx = Arc::new(Context::new(client));
    let err = reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect_err("conflict");
    assert!(err.is_conflict());
    // The controller retries (after 1 s) with the policy as it now is: status ApplyFailed.
    let mut p = policy();
    let first_status = {
        let mut st = serde_json::to_value(policy()).expect("json");
        st["status"] = json!({"lastError": err.to_string()});
        st
    };
    p.status = serde_json::from_value(first_status["status"].clone()).expect("status");
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("second attempt succeeds");
    let reqs = finish(ctx, server).await;
    let writes: Vec<&Recorded> = reqs
        .iter()
        .filter(|r| r.path.contains("/scanpolicies/acme-chat/status"))
        .collect();
    assert_eq!(writes.len(), 2);
    let (a, b) = (&writes[0].body["status"], &writes[1].body["status"]);
    assert_eq!(condition(a, "Ready")["reason"], "ApplyFailed");
    assert_eq!(condition(a, "Reconciling")["status"], "True");
    assert_eq!(condition(b, "Ready")["status"], "True");
    assert_eq!(condition(b, "Reconciling")["status"], "False");
    assert!(b.get("lastError").is_none(), "{b}");
    // The first attempt stopped at the ConfigMap; the second applied everything.
    assert_eq!(
        reqs.iter()
            .filter(|r| r.method == "PATCH" && r.path.contains("/configmaps/"))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_rulepack_deleted_while_in_use_keeps_the_last_good_bundle() {
    let (p, object) = policy_with_good_bundle();
    let packs = pack_list(vec![]); // `acme` is gone
    let o = object.clone();
    let (result, reqs) = reconcile_once(p, Settings::default(), move |r| {
        default_response(r, &packs, &o)
    })
    .await;
    result.expect("reported in status");
    assert!(!reqs.iter().any(|r| r.path.contains("/configmaps/")));
    let w = status_write(&reqs);
    let s = &w.body["status"];
    assert_eq!(s["activeBundleHash"], "sha256:lastgood");
    let ready = condition(s, "Ready");
    assert_eq!(ready["reason"], "RulePacksInvalid");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("acme"),
        "{ready}"
    );
    assert_eq!(kstatus(&with_status(&object, &w.body)), "Failed");
}

#[tokio::test]
async fn a_namespace_created_later_gets_its_hmac_secret() {
    // The namespace does not exist yet.
    let (first, reqs) = tenant_reconcile_with(&["acme-prod"], |_| 404).await;
    assert_eq!(
        first.expect("reported"),
        Action::requeue(Duration::from_secs(30))
    );
    let s = &reqs
        .iter()
        .find(|r| r.path.contains("/status"))
        .expect("status")
        .body["status"];
    assert_eq!(condition(s, "Ready")["reason"], "NamespacesMissing");
    // The namespace appears; the retry creates the Secret and the tenant turns Ready.
    let (second, reqs) = tenant_reconcile_with(&["acme-prod"], |_| 201).await;
    assert_eq!(
        second.expect("reconcile"),
        Action::requeue(Duration::from_secs(300))
    );
    let s = &reqs
        .iter()
        .find(|r| r.path.contains("/status"))
        .expect("status")
        .body["status"];
    assert_eq!(condition(s, "Ready")["status"], "True");
    assert!(s.get("missingNamespaces").is_none(), "{s}");
}

/// Issue 13, problem 5: an unchanged Tenant status is not written again.
#[tokio::test]
async fn unchanged_tenant_status_is_not_rewritten() {
    let (_, reqs) = tenant_reconcile_with(&["acme-prod"], |_| 409).await;
    let status = reqs
        .iter()
        .find(|r| r.path.contains("/status"))
        .expect("first status write")
        .body["status"]
        .clone();
    let mut object = tenant();
    object["metadata"]["generation"] = json!(5);
    object["status"] = status;
    let t: Tenant = serde_json::from_value(object).expect("tenant");
    let mut other = serde_json::to_value(policy()).expect("policy");
    other["metadata"]["name"] = json!("b");
    other["metadata"]["namespace"] = json!("acme-dev");
    let items = vec![serde_json::to_value(policy()).expect("policy"), other];
    let list = json!({"apiVersion": "promptdefenders.io/v1alpha1", "kind": "ScanPolicyList",
                      "metadata": {}, "items": items});
    let (client, server) = mock_client(move |r| match r.method.as_str() {
        "GET" => (200, list.clone()),
        "POST" => (409, api_status(409, "AlreadyExists")),
        _ => (405, api_status(405, "MethodNotAllowed")),
    });
    let ctx = Arc::new(Context::new(client));
    reconcile_tenant(Arc::new(t), ctx.clone())
        .await
        .expect("reconcile");
    let reqs = finish(ctx, server).await;
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/scanpolicies?".to_string(),
            format!("POST /api/v1/namespaces/acme-prod{SECRETS}"),
        ]
    );
}

/// Issue 13, problem 5: with the shared watches' stores, a reconcile reads the Tenant and the
/// RulePacks from memory: a steady-state reconcile is two requests (the bundle ConfigMap, the
/// Deployment), down from 12.
#[tokio::test]
async fn with_shared_stores_a_steady_state_reconcile_is_two_requests() {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use pd_operator::controller::Reads;
    use pd_operator::shared::SyncedStore;

    let mut tenants: Writer<Tenant> = Writer::default();
    tenants.apply_watcher_event(&Event::Apply(
        serde_json::from_value(tenant()).expect("tenant"),
    ));
    let mut packs: Writer<RulePack> = Writer::default();
    packs.apply_watcher_event(&Event::Apply(
        serde_json::from_value(pack("acme", None, "evil", "r-evil")).expect("pack"),
    ));
    let reads = Reads {
        tenants: SyncedStore::synced(tenants.as_reader()),
        packs: SyncedStore::synced(packs.as_reader()),
    };
    let list = pack_list(vec![]); // would make the build fail if it were read
    let object = serde_json::to_value(policy()).expect("policy json");
    let o = object.clone();
    let (client, server) =
        mock_client(steady_state_server(move |r| default_response(r, &list, &o)));
    let ctx = Arc::new(Context::new(client));
    ctx.read_from(reads);
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("first reconcile");
    let (_, first) = reconcile_once(policy(), Settings::default(), {
        let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
        move |r| default_response(r, &packs, &object)
    })
    .await;
    let mut p = policy();
    p.status =
        Some(serde_json::from_value(status_write(&first).body["status"].clone()).expect("status"));
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("steady state");
    let reqs = finish(ctx, server).await;
    let l = lines(&reqs);
    // First: no Tenant GET, no RulePack LIST; 9 applies, the status, the event.
    assert!(
        !l.iter()
            .any(|r| r.contains("/tenants/") || r.contains("/rulepacks")),
        "{l:#?}"
    );
    assert_eq!(l.len(), 9 + 1 + 1 + 2, "{l:#?}");
    assert_eq!(
        l[l.len() - 2..],
        [
            "GET /api/v1/namespaces/acme-prod/configmaps/acme-chat-bundle".to_string(),
            "GET /apis/apps/v1/namespaces/acme-prod/deployments/acme-chat-scanner".into(),
        ]
    );
    eprintln!("API requests per steady-state ScanPolicy reconcile with shared stores: 2 (was 12)");
}

/// A hand edit of the bundle ConfigMap is undone at once, not at the next full re-apply.
#[tokio::test]
async fn an_edited_bundle_is_reapplied_at_once() {
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let object = serde_json::to_value(policy()).expect("policy json");
    let edited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p2, o2, e2) = (packs.clone(), object.clone(), edited.clone());
    let inner = steady_state_server(move |r| default_response(r, &p2, &o2));
    let (client, server) = mock_client(move |r| {
        let path = r.path.split('?').next().unwrap_or_default();
        if r.method == "GET"
            && path.ends_with("/configmaps/acme-chat-bundle")
            && e2.load(std::sync::atomic::Ordering::SeqCst)
        {
            let (code, mut cm) = inner(r);
            cm["data"]["bundle.json"] = json!("{\"edited\": true}");
            return (code, cm);
        }
        inner(r)
    });
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("first");
    edited.store(true, std::sync::atomic::Ordering::SeqCst);
    reconcile_scanpolicy(Arc::new(policy()), ctx.clone())
        .await
        .expect("second");
    let reqs = finish(ctx, server).await;
    let cm_applies = reqs
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/configmaps/acme-chat-bundle"))
        .count();
    assert_eq!(cm_applies, 2, "the edited bundle was re-applied");
}

/// A timeout mid-reconcile (the Deployment apply): retried with backoff, reported as
/// `ApplyFailed` while `Reconciling`, and the bundle already written stays.
#[tokio::test]
async fn a_timeout_mid_apply_is_reported_and_retried() {
    let (p, object) = policy_with_good_bundle();
    let packs = pack_list(vec![pack("acme", None, "evil", "r-evil")]);
    let o = object.clone();
    let (result, reqs) = reconcile_once(p, Settings::default(), move |r| {
        if r.method == "PATCH" && r.path.contains("/deployments/") {
            (TIMEOUT, Value::Null)
        } else {
            default_response(r, &packs, &o)
        }
    })
    .await;
    let err = result.expect_err("a timeout is an error");
    assert!(!err.is_permanent(), "{err}");
    let w = status_write(&reqs);
    let s = &w.body["status"];
    let ready = condition(s, "Ready");
    assert_eq!(ready["reason"], "ApplyFailed");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Deployment `acme-chat-scanner`"),
        "{ready}"
    );
    assert_eq!(condition(s, "Reconciling")["status"], "True");
    assert_eq!(condition(s, "Stalled")["status"], "False");
    assert_eq!(kstatus(&with_status(&object, &w.body)), "InProgress");
}
