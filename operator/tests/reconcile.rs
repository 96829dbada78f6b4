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

mod mock_api;
use mock_api::{api_status, mock_client, Recorded};

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

fn tenant() -> Value {
    json!({
        "apiVersion": "promptdefenders.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "uid": "tenant-uid"},
        "spec": {"namespaces": ["acme-prod"], "apiKeysSecretRef": {"name": "acme-scanner-keys"},
                 "clients": [{"podSelector": {"matchLabels": {"app": "chat"}}}]}
    })
}

fn policy() -> ScanPolicy {
    serde_json::from_value(json!({
        "apiVersion": "promptdefenders.io/v1alpha1", "kind": "ScanPolicy",
        "metadata": {"name": "acme-chat", "namespace": "acme-prod", "uid": "policy-uid-42",
                     "generation": 3, "resourceVersion": "7"},
        "spec": {"tenantRef": {"name": "acme"}, "rulePacks": ["acme"],
                 "thresholds": {"warn": 30, "block": 60}}
    }))
    .expect("policy fixture")
}

fn pack(name: &str, extends: Option<&str>, regex: &str, rule: &str) -> Value {
    let mut spec = json!({
        "version": "1",
        "rules": [{"id": rule, "category": "other", "severity": "high", "weight": 80, "regex": regex}],
        "tests": [{"name": "blocks evil", "input": "so evil", "expect": {"verdict": "block"}}]
    });
    if let Some(e) = extends {
        spec["extends"] = json!(e);
        spec["tests"] = json!([]);
    }
    json!({
        "apiVersion": "promptdefenders.io/v1alpha1", "kind": "RulePack",
        "metadata": {"name": name, "namespace": "acme-prod", "uid": format!("{name}-uid"),
                     "generation": 2},
        "spec": spec
    })
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

async fn requests(
    ctx: Arc<Context>,
    server: tokio::task::JoinHandle<Vec<Recorded>>,
) -> Vec<Recorded> {
    drop(ctx);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("mock server still has clients")
        .expect("mock server panicked")
}

fn lines(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
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
    let reqs = requests(ctx, server).await;

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
    let reqs = requests(ctx, server).await;

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
    let reqs = requests(ctx, server).await;
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
    let reqs = requests(ctx, server).await;
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
    assert!(matches!(err, Error::Kube(_)));
    // The apply sequence stops at the failing ConfigMap; no status write.
    let mut want = reads();
    want.extend(children_paths().into_iter().take(4));
    assert_eq!(reqs, want);
    assert_eq!(actions, secs(&[1, 2, 4]));
    assert_eq!(failures, 3);
}

#[tokio::test]
async fn server_error_requeues_with_backoff() {
    let (err, actions, _, reqs) = failing_apply(500, "InternalError", 8).await;
    assert!(!err.is_conflict());
    assert!(err.to_string().contains("mock InternalError"), "{err}");
    assert_eq!(reqs.len(), 6);
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
    let reqs = requests(ctx, server).await;
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
    let reqs = requests(ctx, server).await;
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
    let reqs = requests(ctx, server).await;
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
    let reqs = requests(ctx, server).await;
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
    let reqs = requests(ctx, server).await;
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

/// Tenant reconcile with the Secret create answered by `secret_code`: two policies of `acme`
/// (one in a namespace the tenant does not list) and one of another tenant.
async fn tenant_reconcile(secret_code: u16) -> Vec<Recorded> {
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
    let t: Tenant = serde_json::from_value(object.clone()).expect("tenant");
    let (client, server) = mock_client(move |r| {
        let p = r.path.split('?').next().unwrap_or_default();
        match r.method.as_str() {
            "GET" if p == "/apis/promptdefenders.io/v1alpha1/scanpolicies" => (200, list.clone()),
            "POST" if secret_code == 201 => (201, r.body.clone()),
            "POST" => (secret_code, api_status(secret_code, "AlreadyExists")),
            "PATCH" if p.ends_with("/status") => {
                let mut o = object.clone();
                o["status"] = r.body["status"].clone();
                (200, o)
            }
            _ => (405, api_status(405, "MethodNotAllowed")),
        }
    });
    let ctx = Arc::new(Context::new(client));
    let action = reconcile_tenant(Arc::new(t), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let reqs = requests(ctx, server).await;
    assert_eq!(
        lines(&reqs),
        [
            "GET /apis/promptdefenders.io/v1alpha1/scanpolicies?".to_string(),
            "POST /api/v1/namespaces/acme-dev/secrets?&fieldManager=pd-operator".into(),
            "POST /api/v1/namespaces/acme-prod/secrets?&fieldManager=pd-operator".into(),
            format!("PATCH /apis/promptdefenders.io/v1alpha1/tenants/acme/status{SSA}"),
        ]
    );
    let s = &reqs[3].body["status"];
    assert_eq!(reqs[3].content_type.as_deref(), Some(APPLY_YAML));
    assert_eq!(s["policyCount"], 2);
    assert_eq!(s["observedGeneration"], 5);
    assert_eq!(condition(s, "Ready")["status"], "True");
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
        requests(ctx, server).await
    };
    // The policy as the API server now has it: with the status just written.
    let mut p = policy();
    p.status = Some(serde_json::from_value(first[11].body["status"].clone()).expect("status"));
    let (client, server) = mock_client(move |r| default_response(r, &packs, &object));
    let ctx = Arc::new(Context::new(client));
    reconcile_scanpolicy(Arc::new(p), ctx.clone())
        .await
        .expect("second reconcile");
    let reqs = requests(ctx, server).await;
    assert_eq!(lines(&reqs), lines(&first[..12]), "same applies, no event");
    // Conditions did not flip, so their transition times are kept.
    assert_eq!(
        reqs[11].body["status"]["conditions"],
        first[11].body["status"]["conditions"]
    );
}
