//! Pure status computation: what the operator writes into `RulePack.status`.
//!
//! Kept apart from the controller so the conditions a user sees (`kubectl wait
//! --for=condition=Ready rp/x`, Argo CD health) are decided by tested code that needs no API
//! server. The reconciler only adds `now` and writes the result.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use pd_scanner::compile::{compile, resolve, CompileError, PackSet};
use pd_scanner::policy::Policy;
use pd_scanner::testing::run_pack_tests;

use crate::crd::{condition, set_condition, RuleError, RulePackStatus, TestSummary};

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
