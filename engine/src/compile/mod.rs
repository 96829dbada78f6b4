//! Rule packs + policy → one immutable [`CompiledPack`].
//!
//! Compilation does all the expensive and fallible work once, so the scan path only runs
//! automata: `extends` chains are flattened and `overrides` applied ([`resolve`]), every regex is
//! compiled on its own (so an error names its rule), then the regexes and detector candidates of
//! each scope get a [`Prefilter`]: their required literals in one Aho–Corasick DFA, and the
//! patterns without any in one fully built DFA. All keywords go into one Aho–Corasick DFA. A
//! rule's own regex runs only when the prefilter says it can match, to confirm and find spans.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::classifier::Model;
use crate::decode::{DecoderKind, DecoderLimits};
use crate::detectors::DetectorKind;
use crate::limits::{shown_name, Limits};
use crate::normalize::Normalization;
use crate::pack::{Action, Category, Rule, RuleId, RulePackSpec, Severity};
use crate::policy::Policy;
use crate::prefilter::Residual;

mod assembly;
mod patterns;
mod resolve;
mod shared;

pub use assembly::{compile_resolved, compile_resolved_with};
pub(crate) use patterns::{
    ClassifierRule, CompiledClassifier, KeywordEntry, KeywordRule, Keywords, PatternSet, SetEntry,
    Slot,
};
pub use resolve::{policy_packs, resolve, resolve_with, ResolvedPack};

/// Longest regex source accepted by default, in bytes ([`Limits::max_regex_bytes`]). Rule packs
/// are data from users; a bound keeps a pathological pack from stalling the operator or a
/// scanner reload.
pub const MAX_REGEX_LEN: usize = crate::limits::DEFAULT_MAX_REGEX_BYTES;
/// Compiled size limit of a built-in pattern's span regex (rules use
/// [`Limits::max_regex_compiled_bytes`]).
const RULE_REGEX_SIZE: usize = crate::limits::DEFAULT_MAX_REGEX_COMPILED_BYTES;
/// Lazy DFA cache of one rule's regex, per thread and search direction: [`SPAN_DFA_PER_STATE`]
/// bytes per state of the regex's NFA, within these bounds. A full cache is cleared and
/// refilled rather than grown, so the caps bound the scanner's memory whatever the traffic.
/// Most regexes need far less than the floor; the few whose DFA is large (a wide class counted
/// up to 80, `[^\n]{0,80}?`, between two word lists) kept clearing a flat 256 KiB cache on
/// ordinary prompts and ran several times slower, so the cap follows the NFA's size.
const SPAN_DFA_MIN: usize = 256 << 10;
const SPAN_DFA_MAX: usize = 2 << 20;
const SPAN_DFA_PER_STATE: usize = 1 << 10;
/// What the gap checks of a bundle's rules may take in all ([`crate::gaps`]): fully built DFAs of
/// the pieces around each gap, shared by every thread. The sample bundle's 15 checks take
/// 4.2 MiB; rules past the budget are confirmed without a check.
const GAP_CHECK_BUDGET: usize = 6 << 20;
/// `extends` chains longer than this are almost certainly a mistake.
const MAX_EXTENDS_DEPTH: usize = 8;
/// Keywords a rule's `all` list may hold (tracked in a 64-bit set while scanning).
pub const MAX_ALL_KEYWORDS: usize = 64;

/// Rule packs by name, as the compiler sees them (the loader and the operator both build one).
pub type PackSet = BTreeMap<String, RulePackSpec>;

/// One problem found while compiling. `rule` is set when the problem belongs to a rule, so the
/// operator can report errors by rule id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub pack: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
    /// What error text for readers who may not see the sources (`/readyz`) shows instead of
    /// `message` when `message` quotes the source (a regex parser's words, a keyword, a name
    /// that was never validated). `None`: `message` holds nothing from the source but pack and
    /// rule ids (validated when read) and numbers.
    #[serde(skip)]
    pub summary: Option<String>,
}

impl Problem {
    fn new(pack: &str, rule: Option<&RuleId>, message: impl Into<String>) -> Self {
        Problem {
            pack: pack.to_string(),
            rule: rule.map(|r| r.to_string()),
            message: message.into(),
            summary: None,
        }
    }

    /// A problem whose message quotes the source; `summary` is shown publicly instead.
    fn hiding(
        pack: &str,
        rule: Option<&RuleId>,
        summary: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            summary: Some(summary.into()),
            ..Problem::new(pack, rule, message)
        }
    }

    /// The problem for readers who may not see the sources: pack, rule and what is wrong,
    /// nothing quoted from the source.
    pub fn public(&self) -> String {
        let message = self.summary.as_deref().unwrap_or(&self.message);
        match &self.rule {
            Some(rule) => format!("rule pack `{}`, rule `{rule}`: {message}", self.pack),
            None => format!("rule pack `{}`: {message}", self.pack),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(
                f,
                "rule pack `{}`, rule `{rule}`: {}",
                self.pack, self.message
            ),
            None => write!(f, "rule pack `{}`: {}", self.pack, self.message),
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CompileError {
    /// Every problem found; compilation checks all rules before giving up.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
    /// `summary`, when set, is `message` without what it quotes from the policy (see
    /// [`Problem::summary`]).
    #[error("policy `{policy}`: {message}")]
    Policy {
        policy: String,
        message: String,
        summary: Option<String>,
    },
}

fn display_problems(p: &[Problem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl CompileError {
    fn pack(pack: &str, message: impl Into<String>) -> Self {
        CompileError::Invalid(vec![Problem::new(pack, None, message)])
    }

    fn policy(policy: &Policy, message: impl Into<String>) -> Self {
        CompileError::Policy {
            policy: policy.name.clone(),
            message: message.into(),
            summary: None,
        }
    }

    /// One line per problem for readers who may not see the sources (see [`Problem::public`]).
    pub fn public_lines(&self) -> Vec<String> {
        match self {
            CompileError::Invalid(problems) => problems.iter().map(Problem::public).collect(),
            CompileError::Policy {
                policy,
                message,
                summary,
            } => vec![format!(
                "policy {}: {}",
                shown_name(policy),
                summary.as_deref().unwrap_or(message)
            )],
        }
    }
}

/// A regex rule the prefilter cannot skip. It is not an error: the rule works, but it runs on
/// every text, so its cost is paid by every scan. `runs_on` says how: a run test, a fully
/// built DFA (with its size), or a lazy DFA when that DFA would exceed the per-rule limit, whose
/// speed depends on the traffic (new text builds new states).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    pub pack: String,
    pub rule: String,
    pub runs_on: Residual,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule `{}` has no literal every match must contain, so it runs on every prompt",
            self.rule
        )?;
        match self.runs_on {
            Residual::Run => write!(f, " (a run test of one byte class, which skips most bytes)"),
            Residual::Dense(n) => write!(f, " (fully built DFA, {} KiB)", n.div_ceil(1024)),
            Residual::Lazy => write!(
                f,
                " on a lazy DFA: its DFA would exceed {} KiB, so its speed depends on the traffic; give it a word it must contain, or fewer counted repetitions",
                crate::prefilter::PATTERN_DFA_LIMIT / 1024
            ),
        }
    }
}

/// A rule ready for scanning: effective action resolved against the policy.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: RuleId,
    pub category: Category,
    pub severity: Severity,
    pub weight: u32,
    /// The rule's own action, else the policy's action for its category.
    pub action: Option<Action>,
    pub mitigation: Option<String>,
    /// Set for detector rules: gives the redaction placeholder.
    pub detector: Option<DetectorKind>,
    /// Pack that defined the rule.
    pub pack: String,
}

/// Identity of a compiled bundle, returned with every result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PackRef {
    /// Pack names joined with `+` when a policy binds several.
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` over the resolved packs and the policy.
    pub hash: String,
}

/// Packs + policy, compiled. Immutable and `Send + Sync`: one is shared by all request threads
/// and replaced whole on reload.
#[derive(Debug)]
pub struct CompiledPack {
    pub pack: PackRef,
    pub policy: Policy,
    pub resolved: Vec<ResolvedPack>,
    pub rules: Vec<CompiledRule>,
    pub(crate) normalization: Normalization,
    pub(crate) decoders: Vec<DecoderKind>,
    pub(crate) limits: DecoderLimits,
    /// Rules on the normalized text, detectors, the `matchOn: original` rules for unchanged
    /// text, and the decoder gate: one prefilter pass decides what else must run.
    pub(crate) primary: Option<PatternSet>,
    /// `matchOn: original` rules, for text that normalization changed.
    pub(crate) original: Option<PatternSet>,
    /// `matchOn: decoded` rules.
    pub(crate) decoded: Option<PatternSet>,
    pub(crate) keywords: Option<Keywords>,
    /// Models used by enabled rules; each runs once per scanned text (and decoded payload).
    pub(crate) classifiers: Vec<CompiledClassifier>,
    /// Runs every pattern instead of asking the prefilter: the reference path that tests and
    /// `eval --no-prefilter` compare the prefilter against. Verdicts must be identical.
    pub(crate) bypass_prefilter: bool,
}

impl CompiledPack {
    /// Compiles every per-rule span regex (and its short-span backtracker) now instead of on
    /// first match. Compilation leaves them lazy to stay fast; a server calls this after a
    /// reload, off the request path, so no request pays for it.
    pub fn warm_up(&self) {
        for set in [&self.primary, &self.original, &self.decoded]
            .into_iter()
            .flatten()
        {
            for slot in &set.slots {
                let _ = slot.entry().span();
                let _ = slot.entry().short();
            }
        }
    }

    /// This bundle with its prefilter and gap checks turned off: every rule's regex runs on
    /// every text. Only for checking that they change no result (it is much slower).
    pub fn without_prefilter(mut self) -> Self {
        self.bypass_prefilter = true;
        for set in [&mut self.primary, &mut self.original, &mut self.decoded]
            .into_iter()
            .flatten()
        {
            for slot in &mut set.slots {
                slot.entry_mut().gaps = None;
            }
        }
        self
    }

    /// Regex rules the prefilter cannot skip: they have no literal every match must contain,
    /// so they run on every text (see [`Lint`]).
    pub fn lints(&self) -> Vec<Lint> {
        let mut lints = Vec::new();
        for set in [&self.primary, &self.original, &self.decoded]
            .into_iter()
            .flatten()
        {
            for &(i, runs_on) in set.filter.residual_patterns() {
                let Some(Slot::Match(e)) = set.slots.get(i) else {
                    continue;
                };
                if e.detector.is_some() {
                    continue;
                }
                for r in e.rules.iter().filter_map(|&r| self.rules.get(r)) {
                    lints.push(Lint {
                        pack: r.pack.clone(),
                        rule: r.id.to_string(),
                        runs_on,
                    });
                }
            }
        }
        lints
    }

    /// Names of the packs this bundle uses: the bound packs and everything they extend.
    pub fn used_packs(&self) -> BTreeSet<&str> {
        self.resolved
            .iter()
            .flat_map(|r| r.chain.iter().map(String::as_str))
            .collect()
    }

    /// The models enabled `classifier` rules use.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.classifiers.iter().map(|c| &c.model)
    }

    /// Ids of the enabled `classifier` rules (the learned stage).
    pub fn classifier_rule_ids(&self) -> std::collections::HashSet<&str> {
        self.classifiers
            .iter()
            .flat_map(|c| &c.rules)
            .filter_map(|r| self.rules.get(r.rule))
            .map(|r| r.id.as_str())
            .collect()
    }

    /// Number of enabled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// Compiles the packs `policy` binds, under the default [`Limits`].
pub fn compile(packs: &PackSet, policy: Policy) -> Result<CompiledPack, CompileError> {
    compile_with(packs, policy, &Limits::default())
}

/// [`compile`] under `limits`.
pub fn compile_with(
    packs: &PackSet,
    policy: Policy,
    limits: &Limits,
) -> Result<CompiledPack, CompileError> {
    // Validation messages hold numbers and category names only.
    policy
        .spec
        .validate()
        .map_err(|message| CompileError::policy(&policy, message))?;
    let names = policy_packs(packs, &policy)?;
    if names.is_empty() {
        return Err(CompileError::policy(&policy, "binds no rule packs"));
    }
    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    for n in &names {
        match resolve_with(packs, n, limits) {
            Ok(r) => resolved.push(r),
            Err(CompileError::Invalid(p)) => problems.extend(p),
            Err(e) => return Err(e),
        }
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    compile_resolved_with(resolved, policy, limits)
}

/// Every compile check `pd-scanner test` makes on a source set, then the bundle `policy`
/// binds. `test` compiles each loaded pack alone; a server compiles only what its policy
/// binds, so without this a pack the policy leaves out — and with the default policy, every
/// pack in an `extends` cycle, since a pack that is extended is never bound — was never
/// checked, and a reload "succeeded" while a pack in it was broken (issue 12, finding 4).
///
/// Every loaded pack is resolved first (cycles, missing bases, id clashes, rule counts: cheap,
/// no regex compiled); then the bound packs are compiled together; then each pack the bundle
/// does not use is compiled alone, as `test` does. Problems of all packs are reported
/// together. A pack's embedded `tests` are not run: they are the author's and the operator's
/// gate, and a scanner has no use for their outcome.
pub fn compile_checked(
    packs: &PackSet,
    policy: Policy,
    limits: &Limits,
) -> Result<CompiledPack, CompileError> {
    let mut problems: Vec<Problem> = Vec::new();
    let add = |found: Vec<Problem>, problems: &mut Vec<Problem>| {
        for p in found {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    };
    for name in packs.keys() {
        match resolve_with(packs, name, limits) {
            Ok(_) => {}
            Err(CompileError::Invalid(p)) => add(p, &mut problems),
            Err(e) => return Err(e),
        }
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    let compiled = compile_with(packs, policy, limits)?;
    let used = compiled.used_packs();
    for name in packs.keys().filter(|n| !used.contains(n.as_str())) {
        let mut alone = Policy::default_policy();
        alone.spec.rule_packs = vec![name.clone()];
        match compile_with(packs, alone, limits) {
            Ok(_) => {}
            Err(CompileError::Invalid(p)) => add(p, &mut problems),
            Err(e) => return Err(e),
        }
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    Ok(compiled)
}

fn pack_names(resolved: &[ResolvedPack]) -> String {
    resolved
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Why a rule's matcher does not compile: `message` in full, and what public error text shows
/// instead when it quotes the rule (see [`Problem::summary`]).
struct Fault {
    message: String,
    summary: Option<String>,
}

impl From<String> for Fault {
    /// A message that quotes nothing from the rule.
    fn from(message: String) -> Self {
        Fault {
            message,
            summary: None,
        }
    }
}

impl Fault {
    fn hiding(summary: impl Into<String>, message: String) -> Self {
        Fault {
            message,
            summary: Some(summary.into()),
        }
    }
}

fn rule_problem(pack: &str, rule: &Rule, fault: Fault) -> Problem {
    Problem {
        summary: fault.summary,
        ..Problem::new(pack, Some(&rule.id), fault.message)
    }
}

/// The problem of a bundle whose compiled automata outgrew `limits`.
fn over_budget(resolved: &[ResolvedPack], bytes: usize, limits: &Limits) -> Problem {
    Problem::new(
        &pack_names(resolved),
        None,
        format!(
            "the compiled bundle exceeds {} bytes ({bytes} so far; --max-bundle-compiled-bytes): use fewer rules, or regexes with fewer counted repetitions",
            limits.max_bundle_compiled_bytes
        ),
    )
}

impl CompileError {
    /// This error with every problem's public text replaced by `summary`: for messages that
    /// carry a library's own words, which may quote a pattern.
    fn hiding_details(mut self, summary: &str) -> Self {
        if let CompileError::Invalid(problems) = &mut self {
            for p in problems {
                p.summary = Some(summary.to_string());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs(yaml: &[(&str, &str)]) -> PackSet {
        yaml.iter()
            .map(|(n, y)| (n.to_string(), serde_yaml::from_str(y).unwrap()))
            .collect()
    }

    const BASE: &str = r#"
version: "1"
decoders: [base64]
rules:
  - {id: a, category: prompt_injection, severity: high, weight: 60, regex: '(?i)\bignore previous\b'}
  - {id: b, category: jailbreak, severity: high, weight: 50, keywords: {any: [do anything now]}}
  - {id: c, category: pii, severity: medium, weight: 20, detector: email}
"#;

    fn err(r: Result<CompiledPack, CompileError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn compiles_and_hash_is_stable() {
        let p = packs(&[("base", BASE)]);
        let a = compile(&p, Policy::default_policy()).unwrap();
        let b = compile(&p, Policy::default_policy()).unwrap();
        assert_eq!(a.rule_count(), 3);
        assert_eq!(a.pack.hash, b.pack.hash);
        assert!(a.pack.hash.starts_with("sha256:") && a.pack.hash.len() == 71);
        assert_eq!(a.pack.version, "1");
        assert_eq!(
            a.rules[2].action,
            Some(Action::Redact),
            "pii defaults to redact"
        );
        let mut policy = Policy::default_policy();
        policy.spec.thresholds.block = 70;
        let c = compile(&p, policy).unwrap();
        assert_ne!(
            a.pack.hash, c.pack.hash,
            "policy is part of the bundle hash"
        );
    }

    #[test]
    fn the_sample_bundles_atom_automaton_is_walked_in_streams() {
        // It has no prefilter of its own (too many literals for one), so a long text is read
        // in interleaved streams; a prefilter would silently turn that off.
        let loaded = crate::bundle::load_embedded().unwrap();
        let policy = crate::bundle::select_policy(&loaded, None).unwrap();
        let p = compile(&crate::bundle::pack_set(&loaded), policy).unwrap();
        let filter = &p.primary.as_ref().unwrap().filter;
        assert!(filter.atoms_walk_in_streams(4096));
        assert!(!filter.atoms_walk_in_streams(100));
    }

    /// The regex of each rule, by pattern source, as the primary set holds it.
    fn span_regexes(p: &CompiledPack) -> Vec<(String, *const regex_automata::meta::Regex)> {
        let set = p.primary.as_ref().unwrap();
        set.slots
            .iter()
            .filter_map(|s| {
                let e = s.entry();
                let re = e.span.get()?.as_ref()?;
                Some((e.source().to_string(), std::sync::Arc::as_ptr(re)))
            })
            .collect()
    }

    #[test]
    fn a_recompiled_bundle_shares_the_live_bundles_regexes_and_prefilters() {
        // Patterns no other test uses, so no live bundle of another test holds them.
        let pack = |second: &str| {
            format!(
                r#"
version: "1"
rules:
  - {{id: a, category: prompt_injection, severity: high, weight: 60, regex: '(?i)\bshared regex one\b'}}
  - {{id: b, category: jailbreak, severity: high, weight: 60, regex: '(?i)\b{second}\b'}}
"#
            )
        };
        let p = packs(&[("base", &pack("shared regex two"))]);
        let serving = compile(&p, Policy::default_policy()).unwrap();
        let next = compile(&p, Policy::default_policy()).unwrap();
        let (a, b) = (span_regexes(&serving), span_regexes(&next));
        assert_eq!(a.len(), 2);
        assert_eq!(a, b, "every unchanged rule's regex is the serving one");
        let filter = |p: &CompiledPack| std::sync::Arc::as_ptr(&p.primary.as_ref().unwrap().filter);
        assert_eq!(
            filter(&serving),
            filter(&next),
            "an unchanged set shares its prefilter"
        );
        // A changed rule gets its own regex; the unchanged one is still shared.
        let changed = compile(
            &packs(&[("base", &pack("shared regex three"))]),
            Policy::default_policy(),
        )
        .unwrap();
        let c = span_regexes(&changed);
        assert_eq!(c.len(), 2);
        assert!(c.iter().any(|x| x.0.contains("one") && a.contains(x)));
        assert!(c.iter().any(|x| x.0.contains("three") && !a.contains(x)));
        assert_ne!(
            filter(&changed),
            filter(&serving),
            "a changed set gets its own"
        );
        // With no bundle holding it, a pattern is compiled afresh, and works.
        drop((serving, next));
        let again = compile(&p, Policy::default_policy()).unwrap();
        assert_eq!(span_regexes(&again).len(), 2);
        let h = crate::engine::InputHasher::new(b"test-key").unwrap();
        let r = again.scan("the shared regex two is here", &h);
        assert!(
            r.advisories.iter().any(|a| a.rule_id == "b"),
            "{:?}",
            r.advisories
        );
        let r = changed.scan("shared regex one, shared regex three", &h);
        assert_eq!(r.advisories.len(), 2, "{:?}", r.advisories);
    }

    #[test]
    fn extends_and_overrides() {
        let child = r#"
version: "2"
extends: base
overrides:
  - {id: a, weight: 10, severity: low}
  - {id: b, enabled: false}
rules:
  - {id: d, category: other, severity: low, weight: 5, keywords: {all: [foo, bar]}}
"#;
        let p = packs(&[("base", BASE), ("child", child)]);
        let r = resolve(&p, "child").unwrap();
        assert_eq!(r.chain, ["base", "child"]);
        assert_eq!(r.decoders, [DecoderKind::Base64], "decoders inherited");
        let a = r.rules.iter().find(|x| x.id.as_str() == "a").unwrap();
        assert_eq!((a.weight, a.severity), (10, Severity::Low));
        // The default policy binds leaves only: `child`, which brings `base` along.
        let c = compile(&p, Policy::default_policy()).unwrap();
        assert_eq!(c.pack.name, "child");
        let ids: Vec<_> = c.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"], "disabled rule b is not compiled in");
    }

    #[test]
    fn bad_packs_name_the_rule() {
        let bad = r#"
version: "1"
rules:
  - {id: ok, category: other, severity: low, weight: 5, regex: 'fine'}
  - {id: broken, category: other, severity: low, weight: 5, regex: '(unclosed'}
  - {id: empty, category: other, severity: low, weight: 5, regex: 'a*'}
  - {id: nokw, category: other, severity: low, weight: 5, keywords: {}}
"#;
        let e = err(compile(&packs(&[("p", bad)]), Policy::default_policy()));
        assert!(e.contains("rule `broken`: invalid regex"), "{e}");
        assert!(
            e.contains("rule `empty`: regex matches the empty string"),
            "{e}"
        );
        assert!(e.contains("rule `nokw`: keywords"), "{e}");
        assert!(!e.contains("`ok`"), "{e}");
    }

    #[test]
    fn huge_regex_is_rejected_with_a_reason() {
        let bad = r#"
version: "1"
rules:
  - {id: big, category: other, severity: low, weight: 5, regex: '(\w{1,1000}){1,1000}x'}
"#;
        let e = err(compile(&packs(&[("p", bad)]), Policy::default_policy()));
        assert!(e.contains("rule `big`") && e.contains("simplify"), "{e}");
    }

    #[test]
    fn structural_errors() {
        let dup = "version: '1'\nrules:\n- {id: a, category: other, severity: low, weight: 5, regex: x}\n- {id: a, category: other, severity: low, weight: 5, regex: y}\n";
        let e = err(compile(&packs(&[("p", dup)]), Policy::default_policy()));
        assert!(e.contains("rule `a`: duplicate rule id"), "{e}");

        let cyc_a = "version: '1'\nextends: b\nrules: []\n";
        let cyc_b = "version: '1'\nextends: a\nrules: []\n";
        let p = packs(&[("a", cyc_a), ("b", cyc_b)]);
        let e = resolve(&p, "a").unwrap_err().to_string();
        assert!(e.contains("cycle: a -> b -> a"), "{e}");

        let orphan = "version: '1'\nextends: nowhere\nrules: []\n";
        let e = resolve(&packs(&[("o", orphan)]), "o")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extends `nowhere`, which is not loaded"), "{e}");

        let shadow = "version: '1'\nextends: base\nrules:\n- {id: a, category: other, severity: low, weight: 5, regex: x}\noverrides:\n- {id: zz, enabled: false}\n";
        let e = resolve(&packs(&[("base", BASE), ("s", shadow)]), "s")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rule `a`: id is already defined by a base pack"),
            "{e}"
        );
        assert!(e.contains("rule `zz`: override of a rule"), "{e}");

        let empty = "version: '1'\nrules: []\n";
        let e = err(compile(&packs(&[("e", empty)]), Policy::default_policy()));
        assert!(e.contains("no rules"), "{e}");
    }

    #[test]
    fn policy_binding_errors() {
        let p = packs(&[("base", BASE)]);
        let mut policy = Policy::default_policy();
        policy.spec.rule_packs = vec!["nope".into()];
        let e = err(compile(&p, policy));
        assert!(
            e.contains("policy `default`: rule pack `nope` is not loaded"),
            "{e}"
        );
    }

    #[test]
    fn conflicting_rule_across_packs() {
        let other = "version: '1'\nrules:\n- {id: a, category: other, severity: low, weight: 5, regex: x}\n";
        let e = err(compile(
            &packs(&[("base", BASE), ("other", other)]),
            Policy::default_policy(),
        ));
        assert!(e.contains("rule `a`: also defined, differently"), "{e}");
    }
    const GOOD: &str =
        "version: '1'\nrules:\n- {id: g, category: other, severity: low, weight: 5, regex: x}\n";

    #[test]
    fn the_checked_compile_finds_what_pack_tests_find() {
        // The default policy binds packs no other pack extends: neither side of a cycle.
        let p = packs(&[
            ("a", "version: '1'\nextends: b\nrules: []\n"),
            ("b", "version: '1'\nextends: a\nrules: []\n"),
            ("good", GOOD),
        ]);
        assert!(compile(&p, Policy::default_policy()).is_ok());
        let e = compile_checked(&p, Policy::default_policy(), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle: a -> b -> a"), "{e}");
        let p = packs(&[
            ("s", "version: '1'\nextends: s\nrules: []\n"),
            ("good", GOOD),
        ]);
        let e = compile_checked(&p, Policy::default_policy(), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle: s -> s"), "{e}");
        // A pack the policy does not bind is compiled alone, as `pd-scanner test` does.
        let broken =
            "version: '1'\nrules:\n- {id: r, category: other, severity: low, weight: 5, regex: '('}\n";
        let p = packs(&[("good", GOOD), ("other", broken)]);
        let mut policy = Policy::default_policy();
        policy.spec.rule_packs = vec!["good".into()];
        assert!(compile(&p, policy.clone()).is_ok());
        let e = compile_checked(&p, policy.clone(), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rule pack `other`, rule `r`: invalid regex"),
            "{e}"
        );
        let p = packs(&[("good", GOOD)]);
        assert_eq!(
            compile_checked(&p, policy, &Limits::default())
                .unwrap()
                .rule_count(),
            1
        );
    }

    fn rules(n: usize, extends: Option<&str>, prefix: &str, regex: &str) -> String {
        let mut y = String::from("version: '1'\n");
        if let Some(b) = extends {
            y.push_str(&format!("extends: {b}\n"));
        }
        y.push_str("rules:\n");
        for i in 0..n {
            y.push_str(&format!(
                "- {{id: {prefix}{i}, category: other, severity: low, weight: 5, regex: '{regex}{i}'}}\n"
            ));
        }
        y
    }

    #[test]
    fn limits_refuse_oversized_packs_and_bundles() {
        let small = Limits {
            max_pack_rules: 5,
            max_bundle_rules: 5,
            ..Limits::default()
        };
        let e = err(compile_with(
            &packs(&[("p", &*rules(6, None, "r", "x"))]),
            Policy::default_policy(),
            &small,
        ));
        assert!(
            e.contains("rule pack `p`: the pack defines 6 rules; the limit is 5"),
            "{e}"
        );
        let chain = packs(&[
            ("base", &*rules(3, None, "b", "x")),
            ("child", &*rules(3, Some("base"), "c", "y")),
        ]);
        let e = err(compile_with(&chain, Policy::default_policy(), &small));
        assert!(e.contains("packs it extends define 6 rules"), "{e}");
        let two = packs(&[
            ("one", &*rules(3, None, "b", "x")),
            ("two", &*rules(3, None, "c", "y")),
        ]);
        let e = err(compile_with(&two, Policy::default_policy(), &small));
        assert!(
            e.contains("the bundle holds 6 rules; the limit is 5"),
            "{e}"
        );

        let long = Limits {
            max_regex_bytes: 3,
            ..Limits::default()
        };
        let e = err(compile_with(
            &packs(&[("p", &*rules(1, None, "r", "abc"))]),
            Policy::default_policy(),
            &long,
        ));
        assert!(e.contains("regex is 4 bytes; the limit is 3"), "{e}");

        // Counted repetitions multiply: 13 bytes of source, a million NFA states.
        let e = err(compile(
            &packs(&[("p", &*rules(1, None, "r", "b{1000}{1000}"))]),
            Policy::default_policy(),
        ));
        assert!(e.contains("compiles to more than 2097152 bytes"), "{e}");

        // Each regex is well within its own limit; together they are not.
        let budget = Limits {
            max_bundle_compiled_bytes: 1 << 20,
            ..Limits::default()
        };
        let wide = packs(&[("p", &*rules(20, None, "r", "x\\w{1000}y"))]);
        assert!(compile(&wide, Policy::default_policy()).is_ok());
        let e = err(compile_with(&wide, Policy::default_policy(), &budget));
        assert!(
            e.contains("the compiled bundle exceeds 1048576 bytes"),
            "{e}"
        );
    }

    #[test]
    fn public_problem_text_quotes_nothing_from_the_pack() {
        let p = packs(&[(
            "p",
            "version: '1'\nrules:\n- {id: r, category: other, severity: low, weight: 5, regex: '(secret-token'}\n",
        )]);
        let e = compile_checked(&p, Policy::default_policy(), &Limits::default()).unwrap_err();
        assert!(
            e.to_string().contains("secret-token"),
            "the full text has it: {e}"
        );
        let public = e.public_lines().join("\n");
        assert!(!public.contains("secret"), "{public}");
        assert!(
            public.contains("rule pack `p`, rule `r`: invalid regex"),
            "{public}"
        );
        let q = packs(&[("q", "version: '1'\nextends: 'Secret Base'\nrules: []\n")]);
        let e = compile_checked(&q, Policy::default_policy(), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("Secret Base"), "{e}");
        let public = e.public_lines().join("\n");
        assert!(!public.contains("Secret"), "{public}");
        assert!(
            public.contains("extends (a value that is not a valid name), which is not loaded"),
            "{public}"
        );
        let mut policy = Policy::default_policy();
        policy.spec.rule_packs = vec!["Secret Pack".into()];
        let e = compile(&p, policy).unwrap_err();
        assert!(!e.public_lines().join("").contains("Secret"), "{e:?}");
    }
}
