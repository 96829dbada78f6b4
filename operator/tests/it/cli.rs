//! The real `pd-operator` binary: `render` and `crdgen`.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pd-operator"))
}

fn samples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

/// `render ARGS -f config/samples/` with `env`, however it ends.
fn render_samples_output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    bin()
        .arg("render")
        .args(args)
        .arg("-f")
        .arg(samples())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `render ARGS -f config/samples/` with `env`; the YAML it printed, which it must have.
fn render_samples(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = render_samples_output(args, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn render_prints_every_child_kind() {
    let text = render_samples(&[], &[]);
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            assert_eq!(v["metadata"]["namespace"].as_str(), Some("acme-prod"));
            format!(
                "{}/{}",
                v["apiVersion"].as_str().unwrap(),
                v["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "v1/ServiceAccount",
            "rbac.authorization.k8s.io/v1/Role",
            "rbac.authorization.k8s.io/v1/RoleBinding",
            "v1/ConfigMap",
            "v1/Service",
            "networking.k8s.io/v1/NetworkPolicy",
            "apps/v1/Deployment",
            "autoscaling/v2/HorizontalPodAutoscaler",
            "policy/v1/PodDisruptionBudget",
        ]
    );
}

const TENANT: &str = "apiVersion: promptdefenders.io/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec:\n  namespaces: [n]\n  apiKeysSecretRef: {name: keys}\n";
const POLICY: &str = "apiVersion: promptdefenders.io/v1alpha1\nkind: ScanPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  tenantRef: {name: t}\n  rulePacks: [bad]\n";

fn render_with_pack(pack: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        format!("{TENANT}---\n{POLICY}---\n{pack}"),
    )
    .unwrap();
    bin()
        .arg("render")
        .arg("-f")
        .arg(dir.path())
        .output()
        .unwrap()
}

#[test]
fn invalid_pack_fails_naming_the_rule() {
    let out = render_with_pack(
        "apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {name: bad, namespace: n}\nspec:\n  version: '1'\n  rules:\n  - {id: ok-rule, category: other, severity: low, weight: 5, regex: 'fine'}\n  - {id: broken-rule, category: other, severity: low, weight: 5, regex: '(unclosed'}\n",
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stdout.is_empty(),
        "nothing is rendered for an invalid pack"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken-rule"), "{err}");
    assert!(!err.contains("ok-rule"), "{err}");
}

#[test]
fn pack_failing_its_tests_fails_naming_the_test() {
    let out = render_with_pack(
        "apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {name: bad, namespace: n}\nspec:\n  version: '1'\n  rules:\n  - {id: r1, category: other, severity: high, weight: 80, regex: 'evil'}\n  tests:\n  - {name: must-block, input: 'harmless', expect: {verdict: block}}\n",
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must-block") && err.contains("bad"), "{err}");
}

#[test]
fn missing_tenant_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        format!("{POLICY}---\napiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {{name: bad}}\nspec: {{version: '1', rules: [{{id: a, category: other, severity: low, weight: 5, regex: x}}]}}\n"),
    )
    .unwrap();
    let out = bin()
        .arg("render")
        .arg("-f")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant `t`"));
}

#[test]
fn crdgen_writes_the_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("crdgen")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in ["tenants.yaml", "rulepacks.yaml", "scanpolicies.yaml"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(text.contains("kind: CustomResourceDefinition"), "{f}");
    }
}

#[test]
fn render_takes_the_operator_settings_from_flags_and_environment() {
    let text = render_samples(
        &["--scanner-image", "registry.local/pd-scanner:dev"],
        &[("PD_MONITORING_NAMESPACE", "observability")],
    );
    assert!(
        text.contains("image: registry.local/pd-scanner:dev"),
        "{text}"
    );
    assert!(
        text.contains("kubernetes.io/metadata.name: observability"),
        "{text}"
    );
    assert!(!text.contains("kubernetes.io/metadata.name: monitoring"));
}

#[test]
fn render_api_server_egress_given_or_refused_without_a_cluster() {
    let text = render_samples(
        &[],
        &[(
            "PD_API_SERVER_EGRESS",
            "10.96.0.1/32:443,172.18.0.2/32:6443",
        )],
    );
    for want in [
        "automountServiceAccountToken: true",
        "- --configmap\n        - acme-chat-bundle",
        "cidr: 10.96.0.1/32",
        "cidr: 172.18.0.2/32",
        "port: 6443",
    ] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }

    // `auto` needs a cluster to read; render has none and says what to do instead.
    let out = render_samples_output(&["--api-server-egress", "auto"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("render runs without a cluster"), "{err}");

    // A malformed value is a usage error naming the expected form.
    let out = render_samples_output(&["--api-server-egress", "10.0.0.1:443"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CIDR:PORT"), "{err}");
}

/// Serving reports are on by default (issue 13: "Ready means serving"), and can be turned off
/// by flag or environment; without API egress they cannot take effect either way.
#[test]
fn serving_reports_are_on_by_default_and_can_be_turned_off() {
    let egress = ("PD_API_SERVER_EGRESS", "10.96.0.1/32:443");
    assert!(render_samples(&[], &[egress]).contains("- --report-pod"));
    assert!(render_samples(&["--scanner-reports-serving"], &[egress]).contains("- --report-pod"));
    for (args, env) in [
        (&["--scanner-reports-serving=false"][..], vec![egress]),
        (
            &[][..],
            vec![egress, ("PD_SCANNER_REPORTS_SERVING", "false")],
        ),
        (&[][..], vec![]),
    ] {
        let text = render_samples(args, &env);
        assert!(!text.contains("--report-pod"), "{args:?} {env:?}");
    }
}

/// Usage errors exit 64 like `pd-scanner`'s (clap's own default is 2); help exits 0.
#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    for args in [
        &["frobnicate"][..],
        &["render"],
        &["render", "--no-such-flag", "-f", "x"],
        &["run", "--max-concurrent-reconciles", "many"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    for args in [&["--help"][..], &["render", "--help"], &["--version"]] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

/// `render --help` offers only the egress forms `render` accepts; `run --help` keeps `auto`.
#[test]
fn render_help_does_not_offer_auto() {
    let help = |cmd: &str| {
        let out = bin().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let render = help("render");
    assert!(
        render.contains("--api-server-egress <off|CIDR:PORT,...>"),
        "{render}"
    );
    assert!(render.contains("`auto` is for `run`"), "{render}");
    let run = help("run");
    assert!(
        run.contains("--api-server-egress <off|auto|CIDR:PORT,...>"),
        "{run}"
    );
}
