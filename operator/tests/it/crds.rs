//! The checked-in CRDs must be exactly what the types generate, in both places they are kept:
//! `crds/` (for `kubectl apply -f crds/`) and the Helm chart's `charts/prompt-defenders/crds/`.
//! The chart's copies of the sample RulePacks (baseline, learned) must equal `config/samples/`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Directories `pd-operator crdgen` writes by default (relative to the repository root).
const CRD_DIRS: [&str; 2] = ["crds", "charts/prompt-defenders/crds"];

#[test]
fn checked_in_crds_match_the_types() {
    for dir in CRD_DIRS {
        for (file, crd) in pd_operator::crd::crds() {
            let want = pd_operator::crd::crd_yaml(&crd).unwrap();
            let got = std::fs::read_to_string(repo().join(dir).join(file)).unwrap_or_default();
            assert!(
                got == want,
                "{dir}/{file} is out of date with operator/src/crd/; regenerate both copies \
                 with `cargo run -p pd-operator -- crdgen` (from the repository root) and commit \
                 the result"
            );
        }
    }
}

#[test]
fn the_chart_installs_exactly_the_generated_crds() {
    // No stray or missing file in the chart's crds/ (Helm installs every file there).
    let mut want: Vec<String> = pd_operator::crd::crds()
        .into_iter()
        .map(|(f, _)| f.to_string())
        .collect();
    want.sort();
    for dir in CRD_DIRS {
        let mut got: Vec<String> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, want, "{dir}");
    }
}

#[test]
fn crdgen_writes_both_copies_by_default() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pd-operator"))
        .arg("crdgen")
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in CRD_DIRS {
        for (file, crd) in pd_operator::crd::crds() {
            let got = std::fs::read_to_string(root.path().join(dir).join(file)).unwrap();
            assert_eq!(
                got,
                pd_operator::crd::crd_yaml(&crd).unwrap(),
                "{dir}/{file}"
            );
        }
    }
}

#[test]
fn the_chart_sample_rulepacks_are_the_samples() {
    // `samples.baselineRulePack.enabled` installs charts/prompt-defenders/files/ (Helm cannot
    // read outside the chart); config/samples/ stays the source of truth. The baseline pack
    // extends the learned pack, so both are copied.
    for f in ["baseline-rulepack.yaml", "learned-rulepack.yaml"] {
        let sample = std::fs::read(repo().join("config/samples").join(f)).unwrap();
        let chart =
            std::fs::read(repo().join("charts/prompt-defenders/files").join(f)).unwrap_or_default();
        assert!(
            chart == sample,
            "charts/prompt-defenders/files/{f} differs from config/samples/{f}; copy the sample over it"
        );
    }
}

#[test]
fn samples_deserialize_into_the_types() {
    let samples = repo().join("config/samples");
    let read = |f: &str| std::fs::read_to_string(samples.join(f)).unwrap();
    let tenant: pd_operator::crd::Tenant = serde_yaml::from_str(&read("tenant.yaml")).unwrap();
    assert_eq!(tenant.spec.api_keys_secret_ref.name, "acme-scanner-keys");
    assert_eq!(tenant.spec.clients.len(), 1);
    let policy: pd_operator::crd::ScanPolicy =
        serde_yaml::from_str(&read("scanpolicy.yaml")).unwrap();
    assert_eq!(policy.spec.tenant_ref.name, "acme");
    assert_eq!(policy.spec.scanner.replicas.min, 2);
    assert_eq!(policy.spec.scanner.replicas.max, 6);
    assert_eq!(policy.spec.scanner.max_prompt_bytes, Some(262144));
    for f in [
        "learned-rulepack.yaml",
        "baseline-rulepack.yaml",
        "acme-rulepack.yaml",
    ] {
        let pack: pd_operator::crd::RulePack = serde_yaml::from_str(&read(f)).unwrap();
        assert!(!pack.spec.0.rules.is_empty(), "{f}");
    }
}

#[test]
fn typos_in_deployment_fields_are_rejected() {
    let e = serde_yaml::from_str::<pd_operator::crd::ScanPolicySpec>(
        "{tenantRef: {name: a}, scanner: {replicas: {min: 1}, maxPromtBytes: 5}}",
    )
    .unwrap_err();
    assert!(e.to_string().contains("maxPromtBytes"), "{e}");
}
