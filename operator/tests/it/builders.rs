//! Focused checks on the desired-state builders, from the sample configuration.

use std::collections::BTreeMap;
use std::path::Path;

use pd_engine::pack::RulePackSpec;
use pd_operator::apiserver::ApiEndpoint;
use pd_operator::builders::{
    build_children, BuildError, Children, Settings, BUNDLE_HASH_ANNOTATION,
};
use pd_operator::crd::{ScanPolicy, Tenant};

struct Inputs {
    tenant: Tenant,
    policy: ScanPolicy,
    packs: BTreeMap<String, RulePackSpec>,
}

fn inputs() -> Inputs {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
    let loaded = pd_engine::load::load_paths(std::slice::from_ref(&samples)).unwrap();
    let res = pd_operator::render::read_resources(&[samples]).unwrap();
    Inputs {
        tenant: res.tenants[0].clone(),
        policy: res.policies[0].clone(),
        packs: pd_engine::bundle::pack_set(&loaded),
    }
}

fn children(i: &Inputs) -> Children {
    build_children(&i.policy, &i.tenant, &i.packs, &Settings::default()).unwrap()
}

fn all_metas(c: &Children) -> Vec<(String, serde_json::Value)> {
    c.to_values()
        .unwrap()
        .into_iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_string(),
                v["metadata"].clone(),
            )
        })
        .collect()
}

#[test]
fn every_child_is_owned_by_the_policy_as_controller() {
    let mut i = inputs();
    i.policy.metadata.uid = Some("1234-uid".into());
    let c = children(&i);
    let metas = all_metas(&c);
    assert_eq!(metas.len(), 9);
    for (kind, m) in metas {
        let refs = m["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), 1, "{kind}");
        let r = &refs[0];
        assert_eq!(r["apiVersion"], "promptdefenders.io/v1alpha1", "{kind}");
        assert_eq!(r["kind"], "ScanPolicy", "{kind}");
        assert_eq!(r["name"], "acme-chat", "{kind}");
        assert_eq!(r["uid"], "1234-uid", "{kind}");
        assert_eq!(r["controller"], true, "{kind}");
        assert_eq!(m["namespace"], "acme-prod", "{kind}");
    }
}

/// The usage ledger outlives its policy (a deleted and recreated ScanPolicy must not hand its
/// tenant a fresh month of quota): owned by the Tenant, not as controller, not blocking.
#[test]
fn the_usage_ledger_is_owned_by_the_tenant() {
    let mut i = inputs();
    i.policy.metadata.uid = Some("1234-uid".into());
    i.tenant.metadata.uid = Some("tenant-uid".into());
    let settings = Settings {
        api_server: vec![ApiEndpoint {
            cidr: "10.96.0.1/32".into(),
            port: 443,
        }],
        ..Settings::default()
    };
    let c = build_children(&i.policy, &i.tenant, &i.packs, &settings).unwrap();
    let ledger = serde_json::to_value(c.usage_ledger.unwrap()).unwrap();
    assert_eq!(
        ledger["metadata"]["ownerReferences"],
        serde_json::json!([{"apiVersion": "promptdefenders.io/v1alpha1", "kind": "Tenant",
                            "name": "acme", "uid": "tenant-uid"}])
    );
    assert_eq!(ledger["metadata"]["namespace"], "acme-prod");
}

#[test]
fn every_child_carries_the_convention_labels() {
    let c = children(&inputs());
    let want = serde_json::json!({
        "app.kubernetes.io/name": "pd-scanner",
        "app.kubernetes.io/instance": "acme-chat",
        "app.kubernetes.io/component": "scanner",
        "app.kubernetes.io/part-of": "prompt-defenders",
        "app.kubernetes.io/managed-by": "pd-operator",
        "promptdefenders.io/tenant": "acme",
        "promptdefenders.io/policy": "acme-chat",
    });
    for (kind, m) in all_metas(&c) {
        assert_eq!(m["labels"], want, "{kind}");
    }
    let pod = c
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap();
    assert_eq!(serde_json::to_value(&pod.labels).unwrap(), want);
}

#[test]
fn scanner_runs_under_the_restricted_pod_security_standard() {
    let c = children(&inputs());
    let pod = c.deployment.spec.unwrap().template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    // The scanner never calls the API: no token in the pod.
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.containers.len(), 1);
    let sc = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert!(sc.privileged.is_none());
    // Anything writable is an emptyDir.
    let volumes = pod.volumes.unwrap();
    let tmp = volumes.iter().find(|v| v.name == "tmp").unwrap();
    assert!(tmp.empty_dir.is_some());
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    for m in &mounts {
        assert_eq!(m.read_only, Some(m.name != "tmp"), "{}", m.name);
    }
}

#[test]
fn container_serves_the_bundle_with_the_tenant_secrets() {
    let c = children(&inputs());
    let pod = c.deployment.spec.clone().unwrap().template.spec.unwrap();
    let ct = &pod.containers[0];
    let args = ct.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with("serve -f /etc/pd/bundle --keys /etc/pd/keys --hmac-key-file /etc/pd/hmac/key --listen 0.0.0.0:8080 --log-format json"),
        "{args}"
    );
    assert!(args.contains(" --audit-stdout"), "{args}");
    assert!(args.contains("--max-prompt-bytes 262144"), "{args}");
    assert!(args.contains("--rate-limit 200 --rate-burst 400"), "{args}");
    let volumes = pod.volumes.unwrap();
    let by_name = |n: &str| volumes.iter().find(|v| v.name == n).unwrap().clone();
    assert_eq!(
        by_name("bundle").config_map.unwrap().name,
        "acme-chat-bundle"
    );
    assert_eq!(
        by_name("keys").secret.unwrap().secret_name.as_deref(),
        Some("acme-scanner-keys")
    );
    let hmac = by_name("hmac").secret.unwrap();
    assert_eq!(
        hmac.secret_name.as_deref(),
        Some("acme-hmac"),
        "default HMAC secret name"
    );
    assert_eq!(hmac.items.unwrap()[0].path, "key");
    let http = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.clone().unwrap().http_get.unwrap().path.unwrap()
    };
    assert_eq!(http(&ct.liveness_probe), "/healthz");
    assert_eq!(http(&ct.readiness_probe), "/readyz");
    assert_eq!(ct.ports.clone().unwrap()[0].container_port, 8080);
    let res = ct.resources.clone().unwrap();
    assert!(
        res.requests.unwrap().contains_key("cpu"),
        "HPA needs a CPU request"
    );
    let ann = c
        .deployment
        .spec
        .as_ref()
        .map(|s| s.template.metadata.clone().unwrap().annotations.unwrap())
        .unwrap();
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8080");
    assert!(
        !ann.contains_key(BUNDLE_HASH_ANNOTATION),
        "hot reload must not need a restart"
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("acme-chat-scanner")
    );
}

#[test]
fn deployment_leaves_replicas_to_the_hpa() {
    let c = children(&inputs());
    assert_eq!(c.deployment.spec.unwrap().replicas, None);
    let hpa = c.hpa.spec.unwrap();
    assert_eq!(hpa.min_replicas, Some(2));
    assert_eq!(hpa.max_replicas, 6);
    assert_eq!(hpa.scale_target_ref.kind, "Deployment");
    assert_eq!(hpa.scale_target_ref.name, "acme-chat-scanner");
    let metric = &hpa.metrics.unwrap()[0];
    assert_eq!(
        metric.resource.as_ref().unwrap().target.average_utilization,
        Some(70)
    );
}

#[test]
fn hpa_follows_the_policy_replicas() {
    let mut i = inputs();
    i.policy.spec.scanner.replicas.min = 3;
    i.policy.spec.scanner.replicas.max = 9;
    i.policy.spec.scanner.target_cpu_utilization_percentage = 55;
    let hpa = children(&i).hpa.spec.unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 9));
    assert_eq!(
        hpa.metrics.unwrap()[0]
            .resource
            .as_ref()
            .unwrap()
            .target
            .average_utilization,
        Some(55)
    );
}

#[test]
fn network_policy_admits_only_tenant_clients_and_monitoring() {
    let c = children(&inputs());
    let np = serde_json::to_value(c.network_policy.spec.unwrap()).unwrap();
    assert_eq!(np["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    assert_eq!(
        np["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "acme-chat"
    );
    let ingress = np["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2);
    assert_eq!(
        ingress[0]["from"],
        serde_json::json!([{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "acme-prod"}},
            "podSelector": {"matchLabels": {"promptdefenders.io/client": "true"}},
        }])
    );
    assert_eq!(
        ingress[1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    for rule in ingress {
        assert_eq!(
            rule["ports"],
            serde_json::json!([{"port": 8080, "protocol": "TCP"}])
        );
    }
    let egress = np["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 1, "egress is DNS only");
    let ports: Vec<_> = egress[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ports, [Some(53), Some(53)]);
}

#[test]
fn network_policy_without_clients_admits_only_monitoring() {
    let mut i = inputs();
    i.tenant.spec.clients.clear();
    let np = children(&i).network_policy.spec.unwrap();
    let ingress = np.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    let peer = &ingress[0].from.as_ref().unwrap()[0];
    assert!(peer.pod_selector.is_none());
}

#[test]
fn role_reads_only_its_own_config_map() {
    let c = children(&inputs());
    let rules = c.role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(r.api_groups, Some(vec![String::new()]));
    assert_eq!(r.resources, Some(vec!["configmaps".to_string()]));
    assert_eq!(r.resource_names, Some(vec!["acme-chat-bundle".to_string()]));
    // list/watch are asked with fieldSelector=metadata.name, which resourceNames authorizes.
    assert_eq!(r.verbs, ["get", "list", "watch"]);
    let rb = c.role_binding;
    assert_eq!(rb.role_ref.name, "acme-chat-scanner");
    let s = &rb.subjects.unwrap()[0];
    assert_eq!(
        (s.kind.as_str(), s.name.as_str()),
        ("ServiceAccount", "acme-chat-scanner")
    );
    assert_eq!(s.namespace.as_deref(), Some("acme-prod"));
}

#[test]
fn config_map_carries_the_bundle_and_its_hash() {
    let i = inputs();
    let c = children(&i);
    let cm = &c.config_map;
    assert_eq!(cm.metadata.name.as_deref(), Some("acme-chat-bundle"));
    let hash = &cm.metadata.annotations.as_ref().unwrap()[BUNDLE_HASH_ANNOTATION];
    assert!(hash.starts_with("sha256:"), "{hash}");
    assert_eq!(hash, &c.bundle_hash);
    let text = &cm.data.as_ref().unwrap()["bundle.json"];
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        doc,
        pd_operator::builders::bundle(&i.policy, &i.packs).unwrap()
    );
    assert_eq!(doc["kind"], "ScanBundle");
    let packs: Vec<_> = doc["spec"]["packs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(packs, ["acme", "baseline", "learned"]);
    // The scanner reads it back as a bundle and compiles it to the same hash.
    let mut loaded = pd_engine::load::Loaded::default();
    pd_engine::load::load_str(text, Path::new("bundle.json"), &mut loaded).unwrap();
    let compiled = pd_engine::compile::compile(
        &pd_engine::bundle::pack_set(&loaded),
        loaded.policies[0].0.clone(),
    )
    .unwrap();
    assert_eq!(&compiled.pack.hash, hash);
    assert_eq!(compiled.policy.spec.thresholds.block, 60);
}

#[test]
fn bundle_hash_changes_with_the_packs() {
    let mut i = inputs();
    let before = children(&i).bundle_hash;
    i.packs.get_mut("acme").unwrap().rules[0].weight = 31;
    assert_ne!(children(&i).bundle_hash, before);
}

#[test]
fn service_and_pdb_select_the_scanner_pods() {
    let c = children(&inputs());
    let svc = c.service.spec.unwrap();
    assert_eq!(svc.ports.unwrap()[0].port, 8080);
    let sel = svc.selector.unwrap();
    assert_eq!(sel["app.kubernetes.io/instance"], "acme-chat");
    let pdb = c.pdb.spec.unwrap();
    assert_eq!(pdb.selector.unwrap().match_labels.unwrap(), sel);
    let dep_sel = c.deployment.spec.unwrap().selector.match_labels.unwrap();
    assert_eq!(dep_sel, sel);
}

#[test]
fn invalid_inputs_are_errors() {
    let mut i = inputs();
    i.policy.metadata.namespace = Some("elsewhere".into());
    assert!(matches!(
        build_children(&i.policy, &i.tenant, &i.packs, &Settings::default()),
        Err(BuildError::NamespaceNotAllowed { .. })
    ));
    let mut i = inputs();
    i.policy.spec.tenant_ref.name = "other".into();
    assert!(matches!(
        build_children(&i.policy, &i.tenant, &i.packs, &Settings::default()),
        Err(BuildError::WrongTenant { .. })
    ));
    let mut i = inputs();
    i.packs.remove("baseline");
    let e = build_children(&i.policy, &i.tenant, &i.packs, &Settings::default()).unwrap_err();
    assert!(e.to_string().contains("baseline"), "{e}");
}

#[test]
fn api_server_egress_turns_on_the_configmap_watch_with_exactly_that_egress() {
    let i = inputs();
    let off = children(&i);
    let settings = Settings {
        api_server: vec![
            ApiEndpoint {
                cidr: "10.96.0.1/32".into(),
                port: 443,
            },
            ApiEndpoint {
                cidr: "172.18.0.2/32".into(),
                port: 6443,
            },
            ApiEndpoint {
                cidr: "172.18.0.3/32".into(),
                port: 6443,
            },
        ],
        // Egress alone: serving reports (on by default) would add `patch` on pods to the Role.
        report_serving: false,
        ..Settings::default()
    };
    let on = build_children(&i.policy, &i.tenant, &i.packs, &settings).unwrap();

    let pod = |c: &Children| c.deployment.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(pod(&off).automount_service_account_token, Some(false));
    assert_eq!(pod(&on).automount_service_account_token, Some(true));
    let args = |c: &Children| pod(c).containers[0].args.clone().unwrap().join(" ");
    assert!(!args(&off).contains("--configmap"), "{}", args(&off));
    assert!(
        args(&on).contains(" --configmap acme-chat-bundle"),
        "{}",
        args(&on)
    );

    let ingress = |c: &Children| c.network_policy.spec.clone().unwrap().ingress;
    assert_eq!(ingress(&on), ingress(&off));
    let np = serde_json::to_value(on.network_policy.spec.clone().unwrap()).unwrap();
    assert_eq!(
        np["egress"],
        serde_json::json!([
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
             "ports": [{"protocol": "TCP", "port": 443}]},
            {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}, {"ipBlock": {"cidr": "172.18.0.3/32"}}],
             "ports": [{"protocol": "TCP", "port": 6443}]},
        ])
    );
    // Same bundle either way; with API access the scanners also keep their usage ledger
    // (docs/src/usage.md): the operator creates it, their Role may get and patch it alone.
    assert_eq!(on.bundle_hash, off.bundle_hash);
    assert!(off.usage_ledger.is_none());
    assert!(!args(&off).contains("--usage-ledger"), "{}", args(&off));
    assert!(
        args(&on).contains(" --usage-ledger acme-chat-usage --pod-name $(POD_NAME)"),
        "{}",
        args(&on)
    );
    let ledger = on.usage_ledger.as_ref().unwrap();
    assert_eq!(ledger.metadata.name.as_deref(), Some("acme-chat-usage"));
    assert_eq!(
        ledger.data, None,
        "the operator's apply must never own a data key"
    );
    assert_eq!(
        ledger.metadata.labels.as_ref().unwrap()["promptdefenders.io/usage-ledger"],
        "true"
    );
    let rules = |c: &Children| serde_json::to_value(c.role.rules.clone().unwrap()).unwrap();
    let mut want = rules(&off);
    want.as_array_mut().unwrap().push(serde_json::json!(
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["acme-chat-usage"],
         "verbs": ["get", "patch"]}
    ));
    assert_eq!(rules(&on), want);
    // The ledger is applied right after the bundle, before the workload that writes it.
    let kinds: Vec<String> = on
        .to_values()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{}/{}",
                v["kind"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds[3..5],
        ["ConfigMap/acme-chat-bundle", "ConfigMap/acme-chat-usage"]
    );
}

/// Issue 13, problem 7: a Tenant with `namespaces: []` could be bound from any namespace. Now
/// an empty list allows none.
#[test]
fn a_tenant_without_namespaces_allows_none() {
    let mut i = inputs();
    i.tenant.spec.namespaces.clear();
    let e = build_children(&i.policy, &i.tenant, &i.packs, &Settings::default()).unwrap_err();
    assert!(matches!(e, BuildError::NamespaceNotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("allowed: none"), "{e}");
}

/// Issue 13, problem 7: `scanner.image` took any value. With an allow-list only listed
/// prefixes pass; the operator's own default image always does.
#[test]
fn scanner_images_outside_the_allow_list_are_refused() {
    let settings = Settings {
        image_allowlist: vec!["ghcr.io/prompt-defenders/".into()],
        ..Settings::default()
    };
    let mut i = inputs();
    i.policy.spec.scanner.image = Some("evil.example/pd-scanner:1".into());
    let e = build_children(&i.policy, &i.tenant, &i.packs, &settings).unwrap_err();
    assert!(matches!(e, BuildError::ImageNotAllowed { .. }), "{e}");
    i.policy.spec.scanner.image = Some("ghcr.io/prompt-defenders/pd-scanner:0.2.0".into());
    assert!(build_children(&i.policy, &i.tenant, &i.packs, &settings).is_ok());
    i.policy.spec.scanner.image = None;
    assert!(build_children(&i.policy, &i.tenant, &i.packs, &settings).is_ok());
    // No list: any image (the previous behaviour, for clusters that do not set one).
    i.policy.spec.scanner.image = Some("evil.example/pd-scanner:1".into());
    assert!(build_children(&i.policy, &i.tenant, &i.packs, &Settings::default()).is_ok());
}

/// Issue 13, problem 8: `render` printed `ownerReferences[].uid: ''`, which the API server
/// rejects. A policy without a uid now renders without owner references.
#[test]
fn render_leaves_out_owner_references_without_a_uid() {
    let i = inputs();
    assert!(i.policy.metadata.uid.is_none());
    for v in children(&i).to_values().unwrap() {
        assert!(v["metadata"].get("ownerReferences").is_none(), "{v}");
    }
}

/// With serving reports on, scanners get their pod name and may patch pods (their own: see
/// docs/src/operator.md for the admission policy that narrows this).
#[test]
fn reporting_scanners_get_their_pod_name_and_patch_on_pods() {
    let settings = Settings {
        api_server: vec![pd_operator::apiserver::ApiEndpoint {
            cidr: "10.96.0.1/32".into(),
            port: 443,
        }],
        report_serving: true,
        ..Settings::default()
    };
    let i = inputs();
    let c = build_children(&i.policy, &i.tenant, &i.packs, &settings).unwrap();
    let pod = c.deployment.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    let at = args.iter().position(|a| a == "--report-pod").unwrap();
    assert_eq!(args[at + 1], "$(POD_NAME)");
    let env = container.env.clone().unwrap();
    assert_eq!(env[0].name, "POD_NAME");
    let rules = c.role.rules.unwrap();
    assert!(rules.iter().any(
        |r| r.resources.as_deref() == Some(&["pods".to_string()][..]) && r.verbs == ["patch"]
    ));
    // Without API access there is no token to report with: nothing changes.
    let off = children(&i);
    assert!(!off
        .deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
        .contains(&"--report-pod".to_string()));
}

fn with_tls(require_client_cert: bool, client_ca: Option<&str>) -> Children {
    let mut i = inputs();
    i.policy.spec.tls = Some(pd_operator::crd::TlsSpec {
        secret_name: "chat-tls".into(),
        require_client_cert,
        client_ca_secret_name: client_ca.map(str::to_string),
    });
    children(&i)
}

#[test]
fn tls_mounts_the_secret_serves_https_and_keeps_probes_and_metrics_on_plain_http() {
    let c = with_tls(false, None);
    let pod = serde_json::to_value(c.deployment.spec.clone().unwrap().template).unwrap();
    let ct = &pod["spec"]["containers"][0];
    let args: Vec<&str> = ct["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let args = args.join(" ");
    assert!(
        args.ends_with(
            "--tls-cert /etc/pd/tls/tls.crt --tls-key /etc/pd/tls/tls.key --health-listen 0.0.0.0:8081"
        ),
        "{args}"
    );
    assert!(!args.contains("--client-ca"), "{args}");
    assert_eq!(
        ct["ports"],
        serde_json::json!([
            {"name": "https", "containerPort": 8080, "protocol": "TCP"},
            {"name": "http", "containerPort": 8081, "protocol": "TCP"},
        ])
    );
    // Probes use the plain port named `http`: the health listener.
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(ct[probe]["httpGet"]["port"], "http", "{probe}");
        assert!(ct[probe]["httpGet"].get("scheme").is_none(), "{probe}");
    }
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "8081");
    let mounts = ct["volumeMounts"].as_array().unwrap();
    assert!(mounts.contains(&serde_json::json!(
        {"name": "tls", "mountPath": "/etc/pd/tls", "readOnly": true}
    )));
    let tls = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    // Projected (kubelet updates it in place on renewal), group-readable only, explicit keys.
    assert_eq!(
        tls["projected"],
        serde_json::json!({
            "defaultMode": 0o440,
            "sources": [{"secret": {"name": "chat-tls", "optional": false, "items": [
                {"key": "tls.crt", "path": "tls.crt"},
                {"key": "tls.key", "path": "tls.key"},
            ]}}],
        })
    );

    let svc = serde_json::to_value(c.service.spec.unwrap()).unwrap();
    assert_eq!(
        svc["ports"],
        serde_json::json!([{
            "name": "https", "appProtocol": "https", "port": 8080,
            "targetPort": "https", "protocol": "TCP",
        }])
    );
    // Clients reach the API port; monitoring only the plain metrics port.
    let np = serde_json::to_value(c.network_policy.spec.unwrap()).unwrap();
    let ports: Vec<_> = np["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ports"][0]["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [8080, 8081]);
}

#[test]
fn client_certificates_come_from_the_secrets_ca_or_a_ca_secret_of_their_own() {
    let args = |c: &Children| {
        c.deployment
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .args
            .clone()
            .unwrap()
            .join(" ")
    };
    let sources = |c: &Children| {
        let pod = c.deployment.spec.clone().unwrap().template.spec.unwrap();
        let v = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tls")
            .unwrap();
        serde_json::to_value(v.projected.unwrap().sources.unwrap()).unwrap()
    };

    // cert-manager's ca.crt of the same Secret.
    let same = with_tls(true, None);
    assert!(
        args(&same).contains("--client-ca /etc/pd/tls/client-ca.crt"),
        "{}",
        args(&same)
    );
    assert_eq!(
        sources(&same),
        serde_json::json!([{"secret": {"name": "chat-tls", "optional": false, "items": [
            {"key": "tls.crt", "path": "tls.crt"},
            {"key": "tls.key", "path": "tls.key"},
            {"key": "ca.crt", "path": "client-ca.crt"},
        ]}}])
    );

    // A separate CA Secret.
    let separate = with_tls(true, Some("clients-ca"));
    assert!(args(&separate).contains("--client-ca /etc/pd/tls/client-ca.crt"));
    assert_eq!(
        sources(&separate)[1],
        serde_json::json!({"secret": {"name": "clients-ca", "optional": false, "items": [
            {"key": "ca.crt", "path": "client-ca.crt"},
        ]}})
    );
    assert_eq!(
        sources(&separate)[0]["secret"]["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn the_endpoint_scheme_follows_tls() {
    use pd_operator::builders::Names;
    assert_eq!(
        Names::new("p", "ns", "t").endpoint(),
        "http://p-scanner.ns.svc:8080"
    );
    assert_eq!(
        Names::new("p", "ns", "t").with_tls(true).endpoint(),
        "https://p-scanner.ns.svc:8080"
    );
}
