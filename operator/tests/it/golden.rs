//! Golden file: everything `render` produces for `config/samples/`. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p pd-operator --test it golden::` and review the diff.

use std::path::{Path, PathBuf};

#[test]
fn samples_render_to_the_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let children = pd_operator::render::render(
        &[root.join("../config/samples")],
        &pd_operator::builders::Settings::default(),
    )
    .unwrap();
    let yaml = pd_operator::render::to_yaml(&children).unwrap();
    let golden: PathBuf = root.join("tests/golden/acme-chat.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &yaml).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if want != yaml {
        let line = want
            .lines()
            .zip(yaml.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(yaml.lines().count()));
        panic!(
            "rendered objects differ from {} (first difference at line {}); if the change is \
             intended, run `UPDATE_GOLDEN=1 cargo test -p pd-operator --test it golden::`",
            golden.display(),
            line + 1
        );
    }
}

/// Golden file: the children a `tls` block changes (Service, NetworkPolicy, Deployment), for the
/// sample policy with mutual TLS from a cert-manager Secret. The bundle ConfigMap does not
/// depend on TLS and is pinned by the file above.
#[test]
fn a_tls_policy_renders_to_the_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let samples = root.join("../config/samples");
    let res = pd_operator::render::read_resources(std::slice::from_ref(&samples)).unwrap();
    let loaded = pd_engine::load::load_paths(std::slice::from_ref(&samples)).unwrap();
    let mut policy = res.policies[0].clone();
    policy.spec.tls = Some(pd_operator::crd::TlsSpec {
        secret_name: "acme-chat-scanner-tls".into(),
        require_client_cert: true,
        client_ca_secret_name: None,
    });
    let c = pd_operator::builders::build_children(
        &policy,
        &res.tenants[0],
        &pd_engine::bundle::pack_set(&loaded),
        &pd_operator::builders::Settings::default(),
    )
    .unwrap();
    let mut yaml = String::new();
    for v in [
        serde_json::to_value(&c.service).unwrap(),
        serde_json::to_value(&c.network_policy).unwrap(),
        serde_json::to_value(&c.deployment).unwrap(),
    ] {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&v).unwrap());
    }
    assert_golden(&root.join("tests/golden/acme-chat-tls.yaml"), &yaml);
}

/// Golden file: what a Tenant's `webhooks` change — the bundle ConfigMap's `webhooks.yaml`, the
/// scanner's egress on the webhook ports, and the Deployment's flags, key volumes and the hash
/// annotation that rolls the pods when the file changes.
#[test]
fn a_tenant_with_webhooks_renders_to_the_golden_file() {
    use pd_engine::pack::Severity;
    use pd_engine::verdict::Verdict;
    use pd_operator::crd::{SecretRef, Webhook, WebhookFormat};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let samples = root.join("../config/samples");
    let res = pd_operator::render::read_resources(std::slice::from_ref(&samples)).unwrap();
    let loaded = pd_engine::load::load_paths(std::slice::from_ref(&samples)).unwrap();
    let mut tenant = res.tenants[0].clone();
    tenant.spec.webhooks = vec![
        Webhook {
            name: Some("soc".into()),
            url: "https://siem.example.com/pd".into(),
            format: None,
            secret_ref: SecretRef {
                name: "acme-webhook".into(),
                key: None,
            },
            previous_secret_ref: Some(SecretRef {
                name: "acme-webhook-old".into(),
                key: Some("secret".into()),
            }),
            min_severity: Severity::High,
            verdicts: vec![Verdict::Block],
            link_template: Some("https://dash.example.com/e/{event_id}".into()),
            allow_insecure_http: false,
        },
        Webhook {
            name: None,
            url: "https://hooks.example.com:8443/services/T0/B0".into(),
            format: Some(WebhookFormat::Slack),
            secret_ref: SecretRef {
                name: "acme-slack".into(),
                key: Some("signing".into()),
            },
            previous_secret_ref: None,
            min_severity: Severity::Critical,
            verdicts: Vec::new(),
            link_template: None,
            allow_insecure_http: false,
        },
    ];
    let c = pd_operator::builders::build_children(
        &res.policies[0],
        &tenant,
        &pd_engine::bundle::pack_set(&loaded),
        &pd_operator::builders::Settings::default(),
    )
    .unwrap();
    let mut cm = serde_json::to_value(&c.config_map).unwrap();
    // The bundle itself is pinned by the samples' golden file.
    cm["data"]["bundle.json"] = serde_json::json!("<bundle>");
    let mut yaml = String::new();
    for v in [
        cm,
        serde_json::to_value(&c.network_policy).unwrap(),
        serde_json::to_value(&c.deployment).unwrap(),
    ] {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&v).unwrap());
    }
    assert_golden(&root.join("tests/golden/acme-chat-webhooks.yaml"), &yaml);
}

/// `yaml` equals the golden file (with `UPDATE_GOLDEN` set: becomes it).
/// Golden file: what usage metering changes when scanners reach the API server — the usage
/// ledger ConfigMap, the scanners' Role (get and patch on that one ConfigMap, by name) and the
/// Deployment's `--usage-ledger`/`--pod-name` flags. A Tenant's `quota` changes no child: it
/// reaches the scanners through the ledger (operator/tests/it/usage.rs).
#[test]
fn a_policy_with_api_access_renders_its_usage_ledger_to_the_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let samples = root.join("../config/samples");
    let res = pd_operator::render::read_resources(std::slice::from_ref(&samples)).unwrap();
    let loaded = pd_engine::load::load_paths(std::slice::from_ref(&samples)).unwrap();
    let settings = pd_operator::builders::Settings {
        api_server: vec![pd_operator::apiserver::ApiEndpoint {
            cidr: "10.96.0.1/32".into(),
            port: 443,
        }],
        ..pd_operator::builders::Settings::default()
    };
    let mut tenant = res.tenants[0].clone();
    tenant.spec.quota = Some(pd_operator::crd::Quota {
        scans_per_month: 1_000_000,
        burst: Some(50_000),
        on_exceeded: pd_engine::usage::ledger::OnExceeded::Block,
    });
    let packs = pd_engine::bundle::pack_set(&loaded);
    let c = pd_operator::builders::build_children(&res.policies[0], &tenant, &packs, &settings)
        .unwrap();
    let mut no_quota = res.tenants[0].clone();
    no_quota.spec.quota = None;
    let without_quota =
        pd_operator::builders::build_children(&res.policies[0], &no_quota, &packs, &settings)
            .unwrap();
    assert_eq!(c, without_quota, "a quota must not change any child");
    let mut yaml = String::new();
    for v in [
        serde_json::to_value(&c.role).unwrap(),
        serde_json::to_value(c.usage_ledger.as_ref().unwrap()).unwrap(),
        serde_json::to_value(&c.deployment).unwrap(),
    ] {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&v).unwrap());
    }
    assert_golden(&root.join("tests/golden/acme-chat-usage.yaml"), &yaml);
}

fn assert_golden(golden: &Path, yaml: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, yaml).unwrap();
        return;
    }
    let want = std::fs::read_to_string(golden).unwrap_or_default();
    assert!(
        want == yaml,
        "rendered objects differ from {}; if the change is intended, run \
         `UPDATE_GOLDEN=1 cargo test -p pd-operator --test it golden::`\n{yaml}",
        golden.display()
    );
}
