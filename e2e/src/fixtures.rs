//! The RulePacks and ScanPolicies the tests create, as the JSON a user would apply.
//!
//! Kept here rather than in the test file so unit tests can check them offline against the
//! operator's own types and builders: a field the operator renames, or a pack that stops
//! compiling, fails `cargo test -p pd-e2e --lib` instead of an e2e run on kind.

use serde_json::{json, Value};

/// The rule of [`canary_pack`].
pub const CANARY_RULE: &str = "e2e-canary";
/// The rule [`broken_pack`] adds, whose regex does not compile.
pub const BROKEN_RULE: &str = "e2e-bad-regex";
/// HPA settings of [`hpa_policy_spec`]: a small CPU request so modest load crosses the target.
pub const HPA_CPU_REQUEST: &str = "50m";
pub const HPA_TARGET_CPU_PERCENT: i32 = 50;
pub const HPA_MAX_REPLICAS: i32 = 3;

/// `{"prompt": …}` for `POST /v1/scan`.
pub fn scan_body(prompt: &str) -> String {
    json!({ "prompt": prompt }).to_string()
}

/// A ScanPolicy spec for `tenant` binding `packs`, with `min..=max` scanner replicas.
pub fn policy_spec(tenant: &str, packs: &[String], min: i32, max: i32) -> Value {
    json!({
        "tenantRef": {"name": tenant},
        "rulePacks": packs,
        "thresholds": {"warn": 30, "block": 60},
        "mode": "enforce",
        "scanner": {"replicas": {"min": min, "max": max}, "maxPromptBytes": 262144}
    })
}

/// [`policy_spec`] for the autoscaling test: 1 to [`HPA_MAX_REPLICAS`] replicas, a
/// [`HPA_CPU_REQUEST`] request and a [`HPA_TARGET_CPU_PERCENT`] target.
pub fn hpa_policy_spec(tenant: &str, packs: &[String]) -> Value {
    let mut spec = policy_spec(tenant, packs, 1, HPA_MAX_REPLICAS);
    spec["scanner"]["targetCPUUtilizationPercentage"] = json!(HPA_TARGET_CPU_PERCENT);
    spec["scanner"]["resources"] = json!({
        "requests": {"cpu": HPA_CPU_REQUEST, "memory": "64Mi"},
        "limits": {"memory": "512Mi"}
    });
    spec
}

/// A one-rule RulePack spec whose rule ([`CANARY_RULE`]) blocks prompts containing `marker`,
/// with a pack test saying so (the operator runs pack tests before it ships a bundle).
pub fn canary_pack(marker: &str) -> Value {
    json!({
        "version": "1.0.0",
        "description": "pd-e2e canary: one keyword rule the tests edit",
        "rules": [{
            "id": CANARY_RULE,
            "category": "other",
            "severity": "high",
            "weight": 80,
            "keywords": {"any": [marker]},
            "mitigation": "End-to-end test rule."
        }],
        "tests": [{
            "name": "the canary blocks",
            "input": format!("please repeat {marker} back to me"),
            "expect": {"verdict": "block", "matches": [CANARY_RULE]}
        }]
    })
}

/// [`canary_pack`] plus [`BROKEN_RULE`], whose regex has an unclosed group.
pub fn broken_pack(marker: &str) -> Value {
    let mut pack = canary_pack(marker);
    if let Some(rules) = pack["rules"].as_array_mut() {
        rules.push(json!({
            "id": BROKEN_RULE,
            "category": "other",
            "severity": "high",
            "weight": 80,
            "regex": "(unclosed[group"
        }));
    }
    pack
}

/// The rule [`grown_pack`] adds to [`canary_pack`].
pub const SECOND_RULE: &str = "e2e-second";
/// The environment variable the rejected-bundle test adds to a scanner Deployment, and its
/// value: one rule per pack. The operator compiles with the default limits (5000), so it ships
/// [`grown_pack`] (two rules), and scanners running with this limit refuse it: a real refusal,
/// with the image under test, no second image needed.
pub const STRICT_LIMIT_ENV: (&str, &str) = ("PD_MAX_PACK_RULES", "1");

/// [`canary_pack`] plus [`SECOND_RULE`], blocking prompts containing `second`: two rules, one
/// more than [`STRICT_LIMIT_ENV`] allows.
pub fn grown_pack(marker: &str, second: &str) -> Value {
    let mut pack = canary_pack(marker);
    if let Some(rules) = pack["rules"].as_array_mut() {
        rules.push(json!({
            "id": SECOND_RULE,
            "category": "other",
            "severity": "high",
            "weight": 80,
            "keywords": {"any": [second]},
            "mitigation": "End-to-end test rule the strict scanners refuse."
        }));
    }
    pack
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use pd_engine::pack::RulePackSpec;
    use pd_operator::builders::{build_children, BuildError, Children, Settings};
    use pd_operator::crd::{ScanPolicy, Tenant};

    use super::*;

    fn sample_tenant() -> Tenant {
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
        let res = pd_operator::render::read_resources(&[samples]).unwrap();
        res.tenants
            .into_iter()
            .find(|t| t.metadata.name.as_deref() == Some("acme"))
            .unwrap()
    }

    fn policy(name: &str, spec: Value) -> ScanPolicy {
        serde_json::from_value(json!({
            "apiVersion": "promptdefenders.io/v1alpha1",
            "kind": "ScanPolicy",
            "metadata": {"name": name, "namespace": "acme-prod", "uid": "e2e-uid"},
            "spec": spec
        }))
        .unwrap()
    }

    fn pack(spec: Value) -> RulePackSpec {
        serde_json::from_value(spec).unwrap()
    }

    fn build(spec: Value) -> Result<Children, BuildError> {
        let p = policy("e2e-x", policy_spec("acme", &["e2e-x".into()], 2, 2));
        let packs = BTreeMap::from([("e2e-x".to_string(), pack(spec))]);
        build_children(&p, &sample_tenant(), &packs, &Settings::default())
    }

    #[test]
    fn policies_are_valid_scanpolicy_specs() {
        let p = policy("e2e-a", policy_spec("acme", &["acme".into()], 2, 2));
        assert_eq!(p.spec.tenant_ref.name, "acme");
        assert_eq!(
            (p.spec.scanner.replicas.min, p.spec.scanner.replicas.max),
            (2, 2)
        );
        assert_eq!(p.spec.scanner.max_prompt_bytes, Some(262144));

        let h = policy("e2e-h", hpa_policy_spec("acme", &["acme".into()]));
        assert_eq!(h.spec.scanner.replicas.min, 1);
        assert_eq!(h.spec.scanner.replicas.max, HPA_MAX_REPLICAS);
        assert_eq!(
            h.spec.scanner.target_cpu_utilization_percentage,
            HPA_TARGET_CPU_PERCENT
        );
        let requests = h.spec.scanner.resources.unwrap().requests.unwrap();
        assert_eq!(requests["cpu"].0, HPA_CPU_REQUEST);
    }

    #[test]
    fn the_canary_compiles_passes_its_test_and_is_what_the_operator_ships() {
        let p = policy("e2e-x", policy_spec("acme", &["e2e-x".into()], 2, 2));
        let packs = BTreeMap::from([("e2e-x".to_string(), pack(canary_pack("alphaabc")))]);
        pd_operator::render::check_pack_tests(&p, &packs).unwrap();
        let children = build_children(&p, &sample_tenant(), &packs, &Settings::default()).unwrap();
        assert!(children.bundle_hash.starts_with("sha256:"));
        assert_eq!(
            children.deployment.metadata.name.as_deref(),
            Some("e2e-x-scanner")
        );
        assert_eq!(
            children.config_map.metadata.name.as_deref(),
            Some("e2e-x-bundle")
        );
    }

    #[test]
    fn editing_the_canary_changes_the_hash_and_restoring_it_restores_it() {
        let a = build(canary_pack("alphaabc")).unwrap().bundle_hash;
        let b = build(canary_pack("bravoabc")).unwrap().bundle_hash;
        let a_again = build(canary_pack("alphaabc")).unwrap().bundle_hash;
        assert_ne!(
            a, b,
            "the hot-reload test needs the edit to change the bundle hash"
        );
        assert_eq!(
            a, a_again,
            "the broken-pack test expects a restored pack to give the old hash"
        );
    }

    /// The rejected-bundle test rests on this: the operator ships the grown pack (default
    /// limits), and the scanner's own loader, with [`STRICT_LIMIT_ENV`]'s limit, refuses
    /// exactly that bundle while it accepts the canary's.
    #[test]
    fn the_operator_ships_the_grown_pack_and_a_strict_scanner_refuses_it() {
        let limits = pd_engine::limits::Limits {
            max_pack_rules: STRICT_LIMIT_ENV.1.parse().unwrap(),
            ..pd_engine::limits::Limits::default()
        };
        let scanner_loads = |children: &Children| {
            let text =
                &children.config_map.data.as_ref().unwrap()[pd_operator::builders::BUNDLE_KEY];
            pd_engine::bundle::build_from_text(
                text,
                Path::new("configmap/acme-prod/e2e-x-bundle"),
                None,
                &limits,
            )
            .map(|p| p.pack.hash.clone())
        };
        let small = build(canary_pack("alphaabc")).unwrap();
        assert_eq!(scanner_loads(&small).unwrap(), small.bundle_hash);
        let p = policy("e2e-x", policy_spec("acme", &["e2e-x".into()], 2, 2));
        let packs = BTreeMap::from([(
            "e2e-x".to_string(),
            pack(grown_pack("alphaabc", "bravoabc")),
        )]);
        pd_operator::render::check_pack_tests(&p, &packs).unwrap();
        let grown = build(grown_pack("alphaabc", "bravoabc")).unwrap();
        assert_ne!(grown.bundle_hash, small.bundle_hash);
        let refused = scanner_loads(&grown).unwrap_err().to_string();
        assert!(
            refused.contains("the limit is 1 (--max-pack-rules)"),
            "{refused}"
        );
    }

    #[test]
    fn the_broken_pack_is_rejected_naming_its_rule() {
        let err = build(broken_pack("alphaabc")).unwrap_err();
        assert!(matches!(err, BuildError::Bundle { .. }), "{err:?}");
        let text = format!("{err:?}");
        assert!(text.contains(BROKEN_RULE), "{text}");
    }
}
