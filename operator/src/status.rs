//! Pure status computation: what the operator writes into `RulePack.status` and
//! `ScanPolicy.status`.
//!
//! Kept apart from the controller so the conditions a user sees (`kubectl wait
//! --for=condition=Ready rp/x`, Argo CD health) are decided by tested code that needs no API
//! server. The reconciler only adds `now` and writes the result.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use pd_scanner::compile::{compile, resolve, CompileError, PackSet};
use pd_scanner::policy::Policy;
use pd_scanner::testing::run_pack_tests;

use crate::builders::Names;
use crate::crd::{
    condition, set_condition, RuleError, RulePackStatus, ScanPolicyStatus, TestSummary,
};

/// Failing tests listed in status; the rest are counted only (status objects must stay small).
pub const MAX_LISTED_FAILURES: usize = 10;

/// Compiles pack `name` (with its `extends` chain, from `packs`), runs its tests, and updates
/// `previous` into the new status: `Compiled`, `TestsPassed` and `Ready` conditions, rule count,
/// content hash, errors by rule id and the test summary.
pub fn rulepack_status(
    packs: &PackSet,
    name: &str,
    generation: Option<i64>,
    previous: Option<&RulePackStatus>,
    now: &Time,
) -> RulePackStatus {
    let mut status = RulePackStatus {
        observed_generation: generation,
        conditions: previous.map(|p| p.conditions.clone()).unwrap_or_default(),
        ..RulePackStatus::default()
    };
    let set = |cs: &mut Vec<_>, t: &str, ok: bool, reason: &str, msg: String| {
        set_condition(cs, condition(t, ok, reason, msg, generation, now));
    };

    let mut policy = Policy::default_policy();
    policy.spec.rule_packs = vec![name.to_string()];
    let compiled = compile(packs, policy).and_then(|c| resolve(packs, name).map(|r| (c, r)));
    let (compiled, resolved) = match compiled {
        Ok(ok) => ok,
        Err(e) => {
            let errors: Vec<RuleError> = match &e {
                CompileError::Invalid(problems) => problems
                    .iter()
                    .map(|p| RuleError {
                        pack: p.pack.clone(),
                        rule: p.rule.clone(),
                        message: p.message.clone(),
                    })
                    .collect(),
                CompileError::Policy { message, .. } => vec![RuleError {
                    pack: name.to_string(),
                    rule: None,
                    message: message.clone(),
                }],
            };
            let msg = format!("{} problem(s); see status.errors", errors.len());
            set(
                &mut status.conditions,
                "Compiled",
                false,
                "CompileFailed",
                msg.clone(),
            );
            set(
                &mut status.conditions,
                "TestsPassed",
                false,
                "NotRun",
                "the pack does not compile".into(),
            );
            set(&mut status.conditions, "Ready", false, "CompileFailed", msg);
            status.errors = errors;
            return status;
        }
    };
    status.rule_count = Some(u32::try_from(resolved.rules.len()).unwrap_or(u32::MAX));
    status.content_hash = Some(resolved.content_hash());
    set(
        &mut status.conditions,
        "Compiled",
        true,
        "Compiled",
        format!("{} rules enabled", compiled.rule_count()),
    );

    let report = run_pack_tests(packs, name);
    let passed = u32::try_from(report.passed()).unwrap_or(u32::MAX);
    let failed = u32::try_from(report.failed()).unwrap_or(u32::MAX);
    let failures: Vec<String> = report
        .outcomes
        .iter()
        .filter(|o| !o.passed)
        .take(MAX_LISTED_FAILURES)
        .map(|o| format!("{}: {}", o.name, o.failures.join("; ")))
        .collect();
    if report.ok() {
        let msg = format!("{passed} tests passed");
        set(
            &mut status.conditions,
            "TestsPassed",
            true,
            "TestsPassed",
            msg,
        );
        set(
            &mut status.conditions,
            "Ready",
            true,
            "Ready",
            "compiled and tested".into(),
        );
    } else {
        let msg = format!("{failed} of {} tests failed", passed + failed);
        set(
            &mut status.conditions,
            "TestsPassed",
            false,
            "TestsFailed",
            msg.clone(),
        );
        set(&mut status.conditions, "Ready", false, "TestsFailed", msg);
    }
    status.tests = Some(TestSummary {
        passed,
        failed,
        failures,
    });
    status
}

/// `Ready` reason when a bound pack does not compile or fails its tests.
pub const REASON_PACKS_INVALID: &str = "RulePacksInvalid";
/// `Ready` reason when the policy's `tenantRef` names no Tenant.
pub const REASON_TENANT_NOT_FOUND: &str = "TenantNotFound";
/// `Ready` reason when the Tenant does not list the policy's namespace.
pub const REASON_NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";

/// Why the reconciler wrote no new bundle. `reason` is one of the `REASON_*` constants: only
/// [`REASON_PACKS_INVALID`] says anything about the packs, so only it sets `RulePacksReady`.
#[derive(Debug, Clone, Copy)]
pub struct Blocked<'a> {
    pub reason: &'a str,
    pub message: &'a str,
}

/// What the reconciler observed for one ScanPolicy, as plain data.
#[derive(Debug, Clone, Copy)]
pub struct PolicyObservation<'a> {
    pub generation: Option<i64>,
    /// `Ok(bundle hash)` when every bound pack compiled, passed its tests and the bundle was
    /// written; `Err` otherwise (the previous bundle keeps serving).
    pub bundle: Result<&'a str, Blocked<'a>>,
    /// The scanner Deployment as the API server reports it, if it exists yet.
    pub deployment: Option<&'a Deployment>,
}

/// `RulePacksReady`, `Progressing`, `Available` and `Ready` for a ScanPolicy. `Ready` needs
/// valid packs *and* a fully rolled-out, available Deployment of the current generation, which
/// is what a GitOps tool should wait for.
pub fn scanpolicy_status(
    names: &Names,
    obs: PolicyObservation<'_>,
    previous: Option<&ScanPolicyStatus>,
    now: &Time,
) -> ScanPolicyStatus {
    let g = obs.generation;
    let mut st = ScanPolicyStatus {
        observed_generation: g,
        conditions: previous.map(|p| p.conditions.clone()).unwrap_or_default(),
        // Keep reporting the bundle that is actually serving when a new one is rejected.
        active_bundle_hash: previous.and_then(|p| p.active_bundle_hash.clone()),
        endpoint: Some(names.endpoint()),
        ..ScanPolicyStatus::default()
    };
    let set = |cs: &mut Vec<_>, t: &str, ok: bool, reason: &str, msg: String| {
        set_condition(cs, condition(t, ok, reason, msg, g, now));
    };
    let packs_ok = match obs.bundle {
        Ok(hash) => {
            st.active_bundle_hash = Some(hash.to_string());
            set(
                &mut st.conditions,
                "RulePacksReady",
                true,
                "BundleWritten",
                format!("bundle {hash}"),
            );
            true
        }
        Err(blocked) => {
            st.last_error = Some(blocked.message.to_string());
            if blocked.reason == REASON_PACKS_INVALID {
                set(
                    &mut st.conditions,
                    "RulePacksReady",
                    false,
                    REASON_PACKS_INVALID,
                    blocked.message.to_string(),
                );
            }
            false
        }
    };
    let d_status = obs.deployment.and_then(|d| d.status.as_ref());
    let d_gen = obs.deployment.and_then(|d| d.metadata.generation);
    let ready = d_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = d_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let wanted = d_status.and_then(|s| s.replicas).unwrap_or(0);
    let observed = d_status.and_then(|s| s.observed_generation);
    st.ready_replicas = obs.deployment.map(|_| ready);
    let rolled_out = obs.deployment.is_some()
        && observed == d_gen
        && updated >= wanted
        && ready >= wanted
        && wanted > 0;
    let available = ready > 0;
    if obs.deployment.is_none() {
        set(
            &mut st.conditions,
            "Progressing",
            true,
            "Creating",
            "scanner Deployment not created yet".into(),
        );
    } else if rolled_out {
        set(
            &mut st.conditions,
            "Progressing",
            false,
            "RolledOut",
            format!("{ready}/{wanted} scanners ready"),
        );
    } else {
        set(
            &mut st.conditions,
            "Progressing",
            true,
            "RollingOut",
            format!("{updated}/{wanted} updated, {ready} ready"),
        );
    }
    if available {
        set(
            &mut st.conditions,
            "Available",
            true,
            "ScannersReady",
            format!("{ready} scanners ready"),
        );
    } else {
        set(
            &mut st.conditions,
            "Available",
            false,
            "NoReadyScanners",
            "no scanner is ready".into(),
        );
    }
    match (packs_ok, available && rolled_out) {
        (true, true) => set(
            &mut st.conditions,
            "Ready",
            true,
            "Ready",
            format!("serving at {}", names.endpoint()),
        ),
        (false, _) => set(
            &mut st.conditions,
            "Ready",
            false,
            match obs.bundle {
                Err(blocked) => blocked.reason,
                Ok(_) => REASON_PACKS_INVALID,
            },
            st.last_error.clone().unwrap_or_default(),
        ),
        (true, false) => set(
            &mut st.conditions,
            "Ready",
            false,
            "ScannersNotReady",
            "waiting for the scanner rollout".into(),
        ),
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use pd_scanner::pack::RulePackSpec;

    fn now() -> Time {
        serde_json::from_str("\"2026-11-23T12:00:00Z\"").unwrap()
    }

    fn packs(yaml: &str) -> PackSet {
        let spec: RulePackSpec = serde_yaml::from_str(yaml).unwrap();
        PackSet::from([("p".to_string(), spec)])
    }

    fn cond<'a>(s: &'a RulePackStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(c.observed_generation, s.observed_generation);
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn good_pack_is_ready() {
        let p = packs("version: '1'\nrules: [{id: r1, category: other, severity: high, weight: 80, regex: evil}]\ntests: [{input: 'so evil', expect: {verdict: block}}]");
        let s = rulepack_status(&p, "p", Some(3), None, &now());
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(cond(&s, "Compiled"), ("True", "Compiled"));
        assert_eq!(cond(&s, "TestsPassed"), ("True", "TestsPassed"));
        assert_eq!(cond(&s, "Ready"), ("True", "Ready"));
        assert_eq!(s.rule_count, Some(1));
        assert!(s.content_hash.as_deref().unwrap().starts_with("sha256:"));
        assert_eq!(s.tests.unwrap().passed, 1);
    }

    #[test]
    fn compile_errors_are_listed_by_rule() {
        let p = packs("version: '1'\nrules: [{id: good, category: other, severity: low, weight: 5, regex: ok}, {id: bad, category: other, severity: low, weight: 5, regex: '(x'}]");
        let s = rulepack_status(&p, "p", Some(1), None, &now());
        assert_eq!(cond(&s, "Compiled"), ("False", "CompileFailed"));
        assert_eq!(cond(&s, "TestsPassed"), ("False", "NotRun"));
        assert_eq!(cond(&s, "Ready"), ("False", "CompileFailed"));
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].rule.as_deref(), Some("bad"));
        assert!(s.rule_count.is_none());
    }

    #[test]
    fn failing_tests_make_the_pack_not_ready() {
        let p = packs("version: '1'\nrules: [{id: r1, category: other, severity: high, weight: 80, regex: evil}]\ntests: [{name: t1, input: 'nice', expect: {verdict: block}}]");
        let s = rulepack_status(&p, "p", Some(1), None, &now());
        assert_eq!(cond(&s, "Compiled"), ("True", "Compiled"));
        assert_eq!(cond(&s, "Ready"), ("False", "TestsFailed"));
        let t = s.tests.unwrap();
        assert_eq!((t.passed, t.failed), (0, 1));
        assert!(
            t.failures[0].starts_with("t1: expected verdict block"),
            "{t:?}"
        );
    }

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        ready: i32,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p-scanner", "generation": generation},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "updatedReplicas": updated, "readyReplicas": ready},
        }))
        .unwrap()
    }

    fn pcond<'a>(s: &'a ScanPolicyStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn policy_is_ready_only_when_packs_are_valid_and_rollout_done() {
        let names = Names::new("p", "ns", "t");
        let d = deployment(2, 2, 2, 2, 2);
        let obs = PolicyObservation {
            generation: Some(5),
            bundle: Ok("sha256:abc"),
            deployment: Some(&d),
        };
        let s = scanpolicy_status(&names, obs, None, &now());
        assert_eq!(s.observed_generation, Some(5));
        assert_eq!(pcond(&s, "RulePacksReady"), ("True", "BundleWritten"));
        assert_eq!(pcond(&s, "Progressing"), ("False", "RolledOut"));
        assert_eq!(pcond(&s, "Available"), ("True", "ScannersReady"));
        assert_eq!(pcond(&s, "Ready"), ("True", "Ready"));
        assert_eq!(s.active_bundle_hash.as_deref(), Some("sha256:abc"));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.endpoint.as_deref(), Some("http://p-scanner.ns.svc:8080"));

        // Mid-rollout: still available, not ready.
        let d = deployment(3, 3, 2, 1, 2);
        let obs = PolicyObservation {
            deployment: Some(&d),
            ..obs
        };
        let s2 = scanpolicy_status(&names, obs, Some(&s), &now());
        assert_eq!(pcond(&s2, "Progressing"), ("True", "RollingOut"));
        assert_eq!(pcond(&s2, "Available"), ("True", "ScannersReady"));
        assert_eq!(pcond(&s2, "Ready"), ("False", "ScannersNotReady"));

        // A rejected bundle: the old hash keeps being reported, the error is surfaced.
        let d = deployment(2, 2, 2, 2, 2);
        let obs = PolicyObservation {
            generation: Some(6),
            bundle: Err(Blocked {
                reason: REASON_PACKS_INVALID,
                message: "rule `x`: bad regex",
            }),
            deployment: Some(&d),
        };
        let s3 = scanpolicy_status(&names, obs, Some(&s), &now());
        assert_eq!(pcond(&s3, "Ready"), ("False", "RulePacksInvalid"));
        assert_eq!(s3.active_bundle_hash.as_deref(), Some("sha256:abc"));
        assert_eq!(s3.last_error.as_deref(), Some("rule `x`: bad regex"));

        // No Deployment yet.
        let obs = PolicyObservation {
            generation: Some(1),
            bundle: Ok("h"),
            deployment: None,
        };
        let s4 = scanpolicy_status(&names, obs, None, &now());
        assert_eq!(pcond(&s4, "Progressing"), ("True", "Creating"));
        assert_eq!(pcond(&s4, "Ready"), ("False", "ScannersNotReady"));
        assert_eq!(s4.ready_replicas, None);

        // The tenant disappeared: Ready says so, RulePacksReady keeps what it knew.
        let obs = PolicyObservation {
            generation: Some(6),
            bundle: Err(Blocked {
                reason: REASON_TENANT_NOT_FOUND,
                message: "tenant `acme` does not exist",
            }),
            deployment: Some(&d),
        };
        let s5 = scanpolicy_status(&names, obs, Some(&s), &now());
        assert_eq!(pcond(&s5, "Ready"), ("False", "TenantNotFound"));
        assert_eq!(pcond(&s5, "RulePacksReady"), ("True", "BundleWritten"));
        assert_eq!(
            s5.last_error.as_deref(),
            Some("tenant `acme` does not exist")
        );
        assert_eq!(s5.active_bundle_hash.as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn sample_packs_are_ready() {
        let loaded = pd_scanner::bundle::load_embedded().unwrap();
        let packs = pd_scanner::bundle::pack_set(&loaded);
        for name in ["baseline", "acme"] {
            let s = rulepack_status(&packs, name, Some(1), None, &now());
            assert_eq!(cond(&s, "Ready"), ("True", "Ready"), "{name}: {s:?}");
        }
    }
}
