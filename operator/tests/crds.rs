//! The checked-in CRDs under `crds/` must be exactly what the types generate.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (file, crd) in pd_operator::crd::crds() {
        let want = pd_operator::crd::crd_yaml(&crd).unwrap();
        let got = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            got == want,
            "crds/{file} is out of date with operator/src/crd.rs; regenerate with \
             `cargo run -p pd-operator -- crdgen` (from the repository root) and commit the result"
        );
    }
}

#[test]
fn samples_deserialize_into_the_types() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
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
    for f in ["baseline-rulepack.yaml", "acme-rulepack.yaml"] {
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
