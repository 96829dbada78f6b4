//! Running the `tests` embedded in rule packs — the preview sandbox authors use before
//! publishing, and the gate the operator applies before a pack may reach a scanner.
//!
//! Each pack's tests run against that pack alone (with its `extends` chain) under the default
//! policy, so a pack's tests mean the same thing wherever it is later bound.

use serde::Serialize;

use crate::compile::{compile_with, CompileError, CompiledPack, PackSet};
use crate::engine::InputHasher;
use crate::limits::Limits;
use crate::pack::RulePackSpec;
use crate::policy::Policy;
use crate::verdict::Verdict;

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    /// The test's `name`, or `#<index>` (1-based).
    pub name: String,
    pub passed: bool,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
    pub verdict: Verdict,
    pub score: u32,
    pub matched: Vec<String>,
}

/// All tests of one pack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackReport {
    pub pack: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Set when the pack did not compile; then no test ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub outcomes: Vec<TestOutcome>,
    /// The pack's own regex rules that run on every prompt because the prefilter has no literal
    /// to skip them by (not failures; see `compile::Lint`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lints: Vec<String>,
}

impl PackReport {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }

    pub fn ok(&self) -> bool {
        self.error.is_none() && self.failed() == 0
    }
}

/// Compiles `name` alone and runs its tests, under the default [`Limits`].
pub fn run_pack_tests(packs: &PackSet, name: &str) -> PackReport {
    run_pack_tests_with(packs, name, &Limits::default())
}

/// [`run_pack_tests`] under `limits`.
pub fn run_pack_tests_with(packs: &PackSet, name: &str, limits: &Limits) -> PackReport {
    run_pack_tests_told(packs, name, limits, &CompileError::to_string)
}

/// [`run_pack_tests_with`], with `tell` writing a compile error into the report: `pd-scanner
/// test` names the file each pack came from (`bundle::explain`), which the pack set no longer
/// knows.
pub fn run_pack_tests_told(
    packs: &PackSet,
    name: &str,
    limits: &Limits,
    tell: &dyn Fn(&CompileError) -> String,
) -> PackReport {
    let mut policy = Policy::default_policy();
    policy.spec.rule_packs = vec![name.to_string()];
    let compiled = match compile_with(packs, policy, limits) {
        Ok(c) => c,
        Err(e) => {
            return PackReport {
                pack: name.to_string(),
                hash: None,
                error: Some(tell(&e)),
                outcomes: Vec::new(),
                lints: Vec::new(),
            }
        }
    };
    let Some(spec) = packs.get(name) else {
        return PackReport {
            pack: name.to_string(),
            hash: None,
            error: Some("no rule pack with this name is loaded".into()),
            outcomes: Vec::new(),
            lints: Vec::new(),
        };
    };
    test_compiled(&compiled, spec, name)
}

/// Runs the tests of pack `name` (`spec`) against `compiled`, which must be that pack alone
/// under the default policy, as [`run_pack_tests`] compiles it. For callers that have just
/// compiled it anyway (the operator's RulePack status): compiling costs more than the tests.
pub fn test_compiled(compiled: &CompiledPack, spec: &RulePackSpec, name: &str) -> PackReport {
    // Ids of every rule the pack can see, enabled or not, so a typo in a test is caught.
    let known: Vec<&str> = compiled
        .resolved
        .iter()
        .flat_map(|r| r.rules.iter().map(|x| x.id.as_str()))
        .collect();
    let hasher = InputHasher::ephemeral();
    let outcomes = spec
        .tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let result = compiled.scan(&t.input, &hasher);
            let matched: Vec<String> = result.rule_ids().map(str::to_string).collect();
            let mut failures = Vec::new();
            if t.expect.is_empty() {
                failures.push("`expect` is empty: set verdict, matches or notMatches".to_string());
            }
            let verdict = result.effective_verdict();
            if let Some(v) = t.expect.verdict {
                if v != verdict {
                    failures.push(format!(
                        "expected verdict {v}, got {verdict} (score {})",
                        result.score
                    ));
                }
            }
            for id in t.expect.matches.iter().chain(&t.expect.not_matches) {
                if !known.contains(&id.as_str()) {
                    failures.push(format!(
                        "refers to rule `{id}`, which the pack does not have"
                    ));
                }
            }
            for id in &t.expect.matches {
                if !matched.iter().any(|m| m == id.as_str()) {
                    failures.push(format!("expected rule `{id}` to match; it did not"));
                }
            }
            for id in &t.expect.not_matches {
                if matched.iter().any(|m| m == id.as_str()) {
                    failures.push(format!("expected rule `{id}` not to match; it did"));
                }
            }
            TestOutcome {
                name: t.name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
                passed: failures.is_empty(),
                failures,
                verdict,
                score: result.score,
                matched,
            }
        })
        .collect();
    // Inherited rules are the base pack's to answer for.
    let lints = compiled
        .lints()
        .into_iter()
        .filter(|l| spec.rules.iter().any(|r| r.id.as_str() == l.rule))
        .map(|l| l.to_string())
        .collect();
    PackReport {
        pack: name.to_string(),
        hash: compiled.resolved.first().map(|r| r.content_hash()),
        error: None,
        outcomes,
        lints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK: &str = r#"
version: "1"
rules:
  - {id: pi, category: prompt_injection, severity: high, weight: 60, regex: '(?i)\bignore previous\b'}
tests:
  - {name: blocks, input: "ignore previous", expect: {verdict: block, matches: [pi]}}
  - {input: "hello", expect: {verdict: allow, notMatches: [pi]}}
  - {name: wrong, input: "hello", expect: {verdict: block, matches: [pi, nosuch]}}
  - {name: empty, input: "x", expect: {}}
"#;

    #[test]
    fn reports_passes_and_explains_failures() {
        let mut packs = PackSet::new();
        packs.insert("p".into(), serde_yaml::from_str(PACK).unwrap());
        let r = run_pack_tests(&packs, "p");
        assert_eq!((r.passed(), r.failed()), (2, 2));
        assert!(!r.ok());
        let wrong = &r.outcomes[2];
        assert_eq!(wrong.name, "wrong");
        assert!(wrong.failures[0].contains("expected verdict block, got allow"));
        assert!(wrong
            .failures
            .iter()
            .any(|f| f.contains("`nosuch`, which the pack does not have")));
        assert!(wrong
            .failures
            .iter()
            .any(|f| f.contains("expected rule `pi` to match")));
        assert!(r.outcomes[3].failures[0].contains("`expect` is empty"));
        assert_eq!(r.outcomes[1].name, "#2");
        assert!(r.lints.is_empty(), "`ignore previous` has literals");
    }

    #[test]
    fn rules_without_literals_are_linted_with_their_cost() {
        let mut packs = PackSet::new();
        packs.insert(
            "p".into(),
            serde_yaml::from_str(
                "version: '1'\nrules:\n- {id: ssn, category: pii, severity: low, weight: 1, regex: '\\b[0-9]{3}-[0-9]{2}-[0-9]{4}\\b'}\n- {id: big, category: pii, severity: low, weight: 1, regex: '\\b[0-9](?:[ -]?[0-9]){12,18}\\b'}\n- {id: word, category: other, severity: low, weight: 1, regex: 'secret\\s+plan'}\n- {id: run, category: other, severity: low, weight: 1, regex: '[A-Za-z0-9]{40,}'}\n",
            )
            .unwrap(),
        );
        let r = run_pack_tests(&packs, "p");
        assert_eq!(r.lints.len(), 3, "{:?}", r.lints);
        assert!(r.lints[0].starts_with("rule `ssn` has no literal") && r.lints[0].contains("KiB)"));
        assert!(r.lints[1].starts_with("rule `big`") && r.lints[1].contains("lazy DFA"));
        assert!(r.lints[2].starts_with("rule `run`") && r.lints[2].contains("run test"));
        // Another pack extending this one does not repeat them.
        packs.insert(
            "child".into(),
            serde_yaml::from_str("version: '1'\nextends: p\nrules:\n- {id: x, category: other, severity: low, weight: 1, regex: 'hello world'}\n").unwrap(),
        );
        assert!(run_pack_tests(&packs, "child").lints.is_empty());
    }

    #[test]
    fn a_pack_that_does_not_compile_reports_why() {
        let mut packs = PackSet::new();
        packs.insert(
            "p".into(),
            serde_yaml::from_str("version: '1'\nrules:\n- {id: x, category: other, severity: low, weight: 1, regex: '('}\n").unwrap(),
        );
        let r = run_pack_tests(&packs, "p");
        assert!(r.error.unwrap().contains("rule `x`: invalid regex"));
    }
}
