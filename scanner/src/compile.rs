//! Rule packs + policy → one immutable [`CompiledPack`].
//!
//! Compilation does all the expensive and fallible work once, so the scan path only runs
//! automata: `extends` chains are flattened and `overrides` applied ([`resolve`]), every regex is
//! compiled on its own (so an error names its rule), then the regexes and detector candidates of
//! each scope get a [`Prefilter`]: their required literals in one Aho–Corasick DFA, and the
//! patterns without any in one fully built DFA. All keywords go into one Aho–Corasick DFA. A
//! rule's own regex runs only when the prefilter says it can match, to confirm and find spans.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex_automata::meta::{self, Regex};
use regex_automata::util::prefilter::Prefilter as PrefixFilter;
use regex_automata::util::syntax;
use regex_automata::MatchKind;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::classifier::{Model, ModelSpec};
use crate::decode::{decode_gate_parts, DecoderKind, DecoderLimits};
use crate::detectors::DetectorKind;
use crate::normalize::{normalize, Normalization};
use crate::pack::{
    Action, Category, ClassifierMatch, MatchOn, Matcher, Rule, RuleId, RulePackSpec, Severity,
};
use crate::policy::Policy;
use crate::prefilter::{BuildError, Prefilter};

/// Longest regex source accepted, in bytes. Rule packs are data from users; a bound keeps a
/// pathological pack from stalling the operator or a scanner reload.
pub const MAX_REGEX_LEN: usize = 4096;
/// Compiled size limit of one rule's regex.
const RULE_REGEX_SIZE: usize = 2 << 20;
/// Lazy DFA cache of one rule's regex, per thread. A rule's regex runs only on texts that
/// contain its atoms, and a full cache is cleared and refilled rather than grown, so this bounds
/// the scanner's memory whatever the traffic: about 100 regexes × this × threads at worst.
const SPAN_DFA_SIZE: usize = 256 << 10;
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
    #[error("policy `{policy}`: {message}")]
    Policy { policy: String, message: String },
}

fn display_problems(p: &[Problem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl CompileError {
    fn pack(pack: &str, message: impl Into<String>) -> Self {
        CompileError::Invalid(vec![Problem {
            pack: pack.to_string(),
            rule: None,
            message: message.into(),
        }])
    }
}

/// A pack with its `extends` chain flattened and overrides applied. Serialized, it is the
/// canonical form whose SHA-256 is the pack's content hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedPack {
    pub name: String,
    pub version: String,
    /// Pack names from the root base to this pack.
    pub chain: Vec<String>,
    pub normalization: Normalization,
    pub decoders: Vec<DecoderKind>,
    pub decoder_limits: DecoderLimits,
    pub rules: Vec<Rule>,
    /// Models along the chain; a later pack's model replaces an earlier one of the same name.
    /// Left out of the canonical form when empty, so packs without models keep their hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelSpec>,
}

impl ResolvedPack {
    /// `sha256:<hex>` of the canonical JSON form.
    pub fn content_hash(&self) -> String {
        sha256_json(self)
    }
}

fn sha256_json<T: Serialize>(value: &T) -> String {
    // Serializing plain structs, Vecs and BTreeMaps cannot fail; an empty hash would still be a
    // stable (if useless) identifier, never a panic.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Flattens `name`'s `extends` chain. Errors: unknown pack, cycle, over-deep chain, an own rule
/// reusing an inherited id, an override of an id that is not inherited, overrides without
/// `extends`.
pub fn resolve(packs: &PackSet, name: &str) -> Result<ResolvedPack, CompileError> {
    let mut chain = vec![name.to_string()];
    let mut spec = packs
        .get(name)
        .ok_or_else(|| CompileError::pack(name, "no rule pack with this name is loaded"))?;
    let mut specs = vec![spec];
    while let Some(base) = &spec.extends {
        if chain.iter().any(|c| c == base) {
            chain.push(base.clone());
            return Err(CompileError::pack(
                name,
                format!("`extends` forms a cycle: {}", chain.join(" -> ")),
            ));
        }
        if chain.len() > MAX_EXTENDS_DEPTH {
            return Err(CompileError::pack(
                name,
                format!("`extends` chain is deeper than {MAX_EXTENDS_DEPTH}"),
            ));
        }
        spec = packs.get(base).ok_or_else(|| {
            CompileError::pack(
                chain.last().map(String::as_str).unwrap_or(name),
                format!("extends `{base}`, which is not loaded"),
            )
        })?;
        chain.push(base.clone());
        specs.push(spec);
    }
    chain.reverse();
    specs.reverse();

    let mut rules: Vec<Rule> = Vec::new();
    let mut normalization = Normalization::default();
    let mut decoders = Vec::new();
    let mut limits = DecoderLimits::default();
    let mut models: Vec<ModelSpec> = Vec::new();
    let mut problems = Vec::new();
    for (pack_name, spec) in chain.iter().zip(&specs) {
        let problem = |rule: Option<&RuleId>, message: String| Problem {
            pack: pack_name.clone(),
            rule: rule.map(|r| r.to_string()),
            message,
        };
        if let Some(n) = spec.normalization {
            normalization = n;
        }
        for (i, m) in spec.models.iter().enumerate() {
            if spec.models[..i].iter().any(|o| o.name == m.name) {
                problems.push(problem(
                    None,
                    format!("model `{}` is defined twice", m.name),
                ));
            }
            // Checked here so the error names the pack that defines the model.
            if let Err(e) = m.decode() {
                problems.push(problem(None, e.to_string()));
            }
            models.retain(|o| o.name != m.name);
            models.push(m.clone());
        }
        if let Some(d) = &spec.decoders {
            decoders = d.clone();
        }
        if let Some(l) = spec.decoder_limits {
            if let Err(e) = l.validate() {
                problems.push(problem(None, format!("decoderLimits: {e}")));
            }
            limits = l;
        }
        if spec.extends.is_none() && !spec.overrides.is_empty() {
            problems.push(problem(
                None,
                "`overrides` needs `extends`: there are no inherited rules to change".into(),
            ));
        }
        let inherited = rules.len();
        for o in &spec.overrides {
            match rules[..inherited].iter_mut().find(|r| r.id == o.id) {
                None => problems.push(problem(
                    Some(&o.id),
                    "override of a rule the base packs do not define".into(),
                )),
                Some(r) => {
                    if let Some(v) = o.enabled {
                        r.enabled = v;
                    }
                    if let Some(v) = o.severity {
                        r.severity = v;
                    }
                    if let Some(v) = o.weight {
                        if v > 100 {
                            problems.push(problem(Some(&o.id), format!("weight {v} is over 100")));
                        }
                        r.weight = v;
                    }
                    if let Some(v) = o.action {
                        r.action = Some(v);
                    }
                    if let Some(v) = &o.mitigation {
                        r.mitigation = Some(v.clone());
                    }
                }
            }
        }
        for rule in &spec.rules {
            if rules.iter().any(|r| r.id == rule.id) {
                let msg = if rules[..inherited].iter().any(|r| r.id == rule.id) {
                    "id is already defined by a base pack; change it with `overrides` instead"
                } else {
                    "duplicate rule id"
                };
                problems.push(problem(Some(&rule.id), msg.into()));
                continue;
            }
            rules.push(rule.clone());
        }
    }
    decoders.sort();
    decoders.dedup();
    if rules.is_empty() && problems.is_empty() {
        problems.push(Problem {
            pack: name.to_string(),
            rule: None,
            message: "the pack has no rules".into(),
        });
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    Ok(ResolvedPack {
        name: name.to_string(),
        version: specs.last().map(|s| s.version.clone()).unwrap_or_default(),
        chain,
        normalization,
        decoders,
        decoder_limits: limits,
        rules,
        models,
    })
}

/// The packs a policy binds: its `rulePacks`, or when empty every pack no other pack extends.
pub fn policy_packs(packs: &PackSet, policy: &Policy) -> Result<Vec<String>, CompileError> {
    let policy_err = |message: String| CompileError::Policy {
        policy: policy.name.clone(),
        message,
    };
    if policy.spec.rule_packs.is_empty() {
        let extended: BTreeSet<&str> = packs
            .values()
            .filter_map(|s| s.extends.as_deref())
            .collect();
        return Ok(packs
            .keys()
            .filter(|n| !extended.contains(n.as_str()))
            .cloned()
            .collect());
    }
    let mut names = Vec::new();
    for n in &policy.spec.rule_packs {
        if !packs.contains_key(n) {
            return Err(policy_err(format!(
                "rule pack `{n}` is not loaded (loaded: {})",
                packs.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if names.contains(n) {
            return Err(policy_err(format!("rule pack `{n}` is listed twice")));
        }
        names.push(n.clone());
    }
    Ok(names)
}

/// A regex rule the prefilter cannot skip. It is not an error: the rule works, but it runs on
/// every text, so its cost is paid by every scan. `dfa_bytes` is the size of the fully built
/// DFA it runs on; `None` means that DFA would exceed the per-rule limit and the rule runs on a
/// lazy DFA, whose speed depends on the traffic (new text builds new states).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    pub pack: String,
    pub rule: String,
    pub dfa_bytes: Option<usize>,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule `{}` has no literal every match must contain, so it runs on every prompt",
            self.rule
        )?;
        match self.dfa_bytes {
            Some(n) => write!(f, " (fully built DFA, {} KiB)", n.div_ceil(1024)),
            None => write!(
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

/// What one pattern of a [`PatternSet`] stands for.
#[derive(Debug)]
pub(crate) enum Slot {
    /// A rule pattern (or detector candidate) on the set's own text.
    Match(SetEntry),
    /// A `matchOn: original` rule, folded into the primary set: valid only when normalization
    /// left the text unchanged (then original and normalized text are the same bytes), which is
    /// the common case and saves a pass. Otherwise the separate original set runs.
    OriginalIfIdentity(SetEntry),
    /// Some decoder could find a payload (valid on unchanged text): run the decoders.
    DecodeGate(SetEntry),
}

impl Slot {
    pub(crate) fn entry(&self) -> &SetEntry {
        match self {
            Slot::Match(e) | Slot::OriginalIfIdentity(e) | Slot::DecodeGate(e) => e,
        }
    }
}

/// The patterns of one scope, what each stands for, and the prefilter that says which of them
/// can match a text.
#[derive(Debug)]
pub(crate) struct PatternSet {
    pub slots: Vec<Slot>,
    pub filter: Prefilter,
}

/// Patterns of one set while compiling.
#[derive(Default)]
struct PatternsBuilder {
    sources: Vec<String>,
    slots: Vec<Slot>,
}

impl PatternsBuilder {
    /// Identical patterns (two rules on one detector, say) share a set slot. `compiled` is the
    /// pattern's regex when the caller has already compiled it.
    fn add(
        &mut self,
        source: String,
        compiled: Option<Regex>,
        detector: Option<DetectorKind>,
        rule: usize,
        all_spans: bool,
    ) {
        for (i, s) in self.sources.iter().enumerate() {
            if *s == source {
                if let Slot::Match(e) = &mut self.slots[i] {
                    if e.detector == detector {
                        e.rules.push(rule);
                        e.all_spans |= all_spans;
                        return;
                    }
                }
            }
        }
        self.sources.push(source.clone());
        let mut entry = SetEntry::new(source, detector, vec![rule]);
        entry.all_spans = all_spans;
        if let Some(re) = compiled {
            entry.span = OnceLock::from(Some(re));
        }
        self.slots.push(Slot::Match(entry));
    }

    fn push(&mut self, source: String, slot: Slot) {
        self.sources.push(source);
        self.slots.push(slot);
    }

    fn build(self) -> Result<Option<PatternSet>, BuildError> {
        if self.sources.is_empty() {
            return Ok(None);
        }
        let filter = Prefilter::build(&self.sources)?;
        Ok(Some(PatternSet {
            slots: self.slots,
            filter,
        }))
    }
}

/// One pattern of a `RegexSet`.
#[derive(Debug)]
pub(crate) struct SetEntry {
    source: String,
    /// The same pattern compiled alone, to find spans once the set reports it. Compiled on
    /// first use: most rules never match most prompts, and compiling every rule up front would
    /// double the bundle's compile time (the set has already validated the pattern).
    span: OnceLock<Option<Regex>>,
    /// For detector candidates: validated by `refine` before a rule counts as matched.
    pub detector: Option<DetectorKind>,
    /// Rules (indices into `CompiledPack::rules`) this pattern belongs to.
    pub rules: Vec<usize>,
    /// Whether every span is wanted (a rule redacts) or the first one decides. Each further
    /// span costs a scan of the rest of the text, so attack prompts stay cheap.
    pub all_spans: bool,
}

impl SetEntry {
    fn new(source: String, detector: Option<DetectorKind>, rules: Vec<usize>) -> Self {
        SetEntry {
            source,
            span: OnceLock::new(),
            detector,
            rules,
            all_spans: false,
        }
    }

    /// The span regex. Rule regexes are compiled (and validated) with the pack; detector
    /// candidates and decoder gates, which are built in and known to compile, on first use.
    /// `None` would mean a built-in pattern failed to compile: the slot then reports no spans
    /// rather than failing the scan (a unit test compiles every built-in pattern).
    pub fn span(&self) -> Option<&Regex> {
        self.span
            .get_or_init(|| span_regex(&self.source).ok())
            .as_ref()
    }
}

/// One keyword of the shared automaton.
#[derive(Debug)]
pub(crate) struct KeywordEntry {
    pub rule: usize,
    /// `None` for an `any` keyword; `Some(bit)` for the `all` keyword at that position.
    pub all_bit: Option<u8>,
    /// The normalized keyword bytes when the rule is case-sensitive (the automaton itself is
    /// case-insensitive).
    pub exact: Option<Box<[u8]>>,
    pub whole_word: bool,
}

/// What a keyword rule needs to be satisfied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeywordRule {
    pub has_any: bool,
    /// Bits that must all be seen (`all` list); 0 when the rule has no `all` list.
    pub all_mask: u64,
}

#[derive(Debug)]
pub(crate) struct Keywords {
    pub automaton: AhoCorasick,
    pub entries: Vec<KeywordEntry>,
    pub rules: HashMap<usize, KeywordRule>,
}

/// A model some enabled rule uses, and those rules.
#[derive(Debug)]
pub(crate) struct CompiledClassifier {
    pub model: Model,
    pub rules: Vec<ClassifierRule>,
}

/// A `classifier` rule: fires when `label` reaches `threshold`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassifierRule {
    pub rule: usize,
    pub label: usize,
    pub threshold: f64,
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
    /// Compiles every per-rule span regex now instead of on first match. Compilation leaves
    /// them lazy to stay fast; a server calls this after a reload, off the request path, so no
    /// request pays for it.
    pub fn warm_up(&self) {
        for set in [&self.primary, &self.original, &self.decoded]
            .into_iter()
            .flatten()
        {
            for slot in &set.slots {
                let _ = slot.entry().span();
            }
        }
    }

    /// This bundle with its prefilter turned off: every rule's regex runs on every text. Only
    /// for checking that the prefilter changes no result (it is much slower).
    pub fn without_prefilter(mut self) -> Self {
        self.bypass_prefilter = true;
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
            for &(i, size) in set.filter.residual_patterns() {
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
                        dfa_bytes: size,
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

/// Compiles the packs `policy` binds.
pub fn compile(packs: &PackSet, policy: Policy) -> Result<CompiledPack, CompileError> {
    policy
        .spec
        .validate()
        .map_err(|message| CompileError::Policy {
            policy: policy.name.clone(),
            message,
        })?;
    let names = policy_packs(packs, &policy)?;
    if names.is_empty() {
        return Err(CompileError::Policy {
            policy: policy.name.clone(),
            message: "binds no rule packs".into(),
        });
    }
    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    for n in &names {
        match resolve(packs, n) {
            Ok(r) => resolved.push(r),
            Err(CompileError::Invalid(p)) => problems.extend(p),
            Err(e) => return Err(e),
        }
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    compile_resolved(resolved, policy)
}

/// Compiles already-resolved packs (several packs are merged: the union of their normalization
/// and decoders, and of their rules — an id defined differently by two packs is an error).
pub fn compile_resolved(
    resolved: Vec<ResolvedPack>,
    policy: Policy,
) -> Result<CompiledPack, CompileError> {
    let mut normalization: Option<Normalization> = None;
    let mut decoders = BTreeSet::new();
    let mut limits: Option<DecoderLimits> = None;
    let mut rules: Vec<(&Rule, &str)> = Vec::new();
    let mut problems = Vec::new();
    for r in &resolved {
        normalization = Some(normalization.map_or(r.normalization, |n| n.union(r.normalization)));
        limits = Some(limits.map_or(r.decoder_limits, |l| l.union(r.decoder_limits)));
        decoders.extend(r.decoders.iter().copied());
        for rule in &r.rules {
            match rules.iter().find(|(x, _)| x.id == rule.id) {
                Some((x, _)) if *x == rule => {}
                Some((_, other)) => problems.push(Problem {
                    pack: r.name.clone(),
                    rule: Some(rule.id.to_string()),
                    message: format!("also defined, differently, by pack `{other}`"),
                }),
                None => rules.push((rule, &r.name)),
            }
        }
    }
    let normalization = normalization.unwrap_or_default();
    let limits = limits.unwrap_or_default();
    let mut classifiers = decode_models(&resolved, &mut problems);

    let mut compiled_rules = Vec::new();
    let mut primary_patterns = PatternsBuilder::default();
    let mut original_patterns = PatternsBuilder::default();
    let mut decoded_patterns = PatternsBuilder::default();
    let mut kw_patterns: Vec<Vec<u8>> = Vec::new();
    let mut kw_entries: Vec<KeywordEntry> = Vec::new();
    let mut kw_rules = HashMap::new();
    for &(rule, pack) in &rules {
        if !rule.enabled {
            // Still checked, so enabling it later cannot break the pack.
            if let Err(message) = check_matcher(rule, &normalization, &classifiers) {
                problems.push(rule_problem(pack, rule, message));
            }
            continue;
        }
        let index = compiled_rules.len();
        let action = rule
            .action
            .or_else(|| policy.spec.actions.get(&rule.category).copied());
        let mut detector = None;
        match &rule.matcher {
            Matcher::Regex(source) => match rule_regex(source) {
                Ok(re) => {
                    let scope = match rule.match_on {
                        MatchOn::Normalized => &mut primary_patterns,
                        MatchOn::Original => &mut original_patterns,
                        MatchOn::Decoded => &mut decoded_patterns,
                    };
                    scope.add(
                        source.clone(),
                        Some(re),
                        None,
                        index,
                        action == Some(Action::Redact),
                    );
                }
                Err(message) => problems.push(rule_problem(pack, rule, message)),
            },
            Matcher::Detector(d) => {
                detector = Some(*d);
                primary_patterns.add(
                    d.candidate_pattern().to_string(),
                    None,
                    Some(*d),
                    index,
                    action == Some(Action::Redact),
                );
            }
            Matcher::Keywords(k) => match keyword_bytes(k, &normalization) {
                Ok((any, all)) => {
                    let mut all_mask = 0u64;
                    let words =
                        any.into_iter()
                            .map(|w| (w, None))
                            .chain(all.into_iter().enumerate().map(|(i, w)| {
                                all_mask |= 1 << i;
                                (w, Some(i as u8))
                            }));
                    for (word, all_bit) in words {
                        kw_entries.push(KeywordEntry {
                            rule: index,
                            all_bit,
                            exact: (!k.case_insensitive).then(|| word.clone().into_boxed_slice()),
                            whole_word: k.whole_word,
                        });
                        kw_patterns.push(word);
                    }
                    kw_rules.insert(
                        index,
                        KeywordRule {
                            has_any: !k.any.is_empty(),
                            all_mask,
                        },
                    );
                }
                Err(message) => problems.push(rule_problem(pack, rule, message)),
            },
            Matcher::Classifier(c) => match classifier_target(c, &classifiers) {
                Ok((model, label)) => classifiers[model].rules.push(ClassifierRule {
                    rule: index,
                    label,
                    threshold: c.threshold,
                }),
                Err(message) => problems.push(rule_problem(pack, rule, message)),
            },
        }
        compiled_rules.push(CompiledRule {
            id: rule.id.clone(),
            category: rule.category,
            severity: rule.severity,
            weight: rule.weight,
            action,
            mitigation: rule.mitigation.clone(),
            detector,
            pack: pack.to_string(),
        });
    }

    for (source, slot) in original_patterns
        .sources
        .iter()
        .zip(&original_patterns.slots)
    {
        if let Slot::Match(e) = slot {
            let mut copy = SetEntry::new(source.clone(), e.detector, e.rules.clone());
            if let Some(re) = e.span.get() {
                copy.span = OnceLock::from(re.clone());
            }
            primary_patterns.push(source.clone(), Slot::OriginalIfIdentity(copy));
        }
    }
    let decoders: Vec<DecoderKind> = decoders.into_iter().collect();
    // Each part of the gate is its own pattern, so the parts made of words get atoms and only
    // the shapes (encoded runs) join the always-on DFA.
    for part in decode_gate_parts(&decoders, limits.min_encoded_len) {
        primary_patterns.push(
            part.clone(),
            Slot::DecodeGate(SetEntry::new(part, None, vec![])),
        );
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    let sets = (|| {
        Ok::<_, BuildError>((
            primary_patterns.build()?,
            original_patterns.build()?,
            decoded_patterns.build()?,
        ))
    })();
    let (primary, original, decoded) = sets.map_err(|e| {
        CompileError::pack(
            &pack_names(&resolved),
            match e {
                BuildError::Regex(e) => format!(
                    "the rules without literals do not compile together ({}); reduce their number or size",
                    one_line(&e.to_string())
                ),
                BuildError::Atoms(e) => format!("literal prefilter: {e}"),
            },
        )
    })?;
    let keywords = if kw_patterns.is_empty() {
        None
    } else {
        let automaton =
            crate::prefilter::case_insensitive_automaton(&kw_patterns).map_err(|e| {
                CompileError::pack(&pack_names(&resolved), format!("keyword automaton: {e}"))
            })?;
        Some(Keywords {
            automaton,
            entries: kw_entries,
            rules: kw_rules,
        })
    };

    let pack = PackRef {
        name: pack_names(&resolved),
        version: if resolved.len() == 1 {
            resolved[0].version.clone()
        } else {
            resolved
                .iter()
                .map(|r| format!("{}@{}", r.name, r.version))
                .collect::<Vec<_>>()
                .join("+")
        },
        hash: sha256_json(&(&resolved, &policy)),
    };
    Ok(CompiledPack {
        pack,
        policy,
        resolved,
        rules: compiled_rules,
        normalization,
        decoders,
        limits,
        primary,
        original,
        decoded,
        keywords,
        classifiers: classifiers
            .into_iter()
            .filter(|c| !c.rules.is_empty())
            .collect(),
        bypass_prefilter: false,
    })
}

/// Decodes every model of the bound packs. Two packs may both carry a model of one name only
/// if it is the same model (a policy binding two packs that extend one base, say).
fn decode_models(
    resolved: &[ResolvedPack],
    problems: &mut Vec<Problem>,
) -> Vec<CompiledClassifier> {
    let mut seen: Vec<(&ModelSpec, &str)> = Vec::new();
    let mut out = Vec::new();
    for r in resolved {
        for m in &r.models {
            match seen.iter().find(|(x, _)| x.name == m.name) {
                Some((x, _)) if *x == m => continue,
                Some((_, other)) => {
                    problems.push(Problem {
                        pack: r.name.clone(),
                        rule: None,
                        message: format!(
                            "model `{}` is also defined, differently, by pack `{other}`",
                            m.name
                        ),
                    });
                    continue;
                }
                None => seen.push((m, &r.name)),
            }
            match m.decode() {
                Ok(model) => out.push(CompiledClassifier {
                    model,
                    rules: Vec::new(),
                }),
                Err(e) => problems.push(Problem {
                    pack: r.name.clone(),
                    rule: None,
                    message: e.to_string(),
                }),
            }
        }
    }
    out
}

/// (model index, label index) of a `classifier` matcher.
fn classifier_target(
    c: &ClassifierMatch,
    classifiers: &[CompiledClassifier],
) -> Result<(usize, usize), String> {
    let (i, found) = classifiers
        .iter()
        .enumerate()
        .find(|(_, x)| x.model.name == c.model)
        .ok_or_else(|| {
            format!(
                "classifier model `{}` is not defined by this pack or a pack it extends (or it failed to load)",
                c.model
            )
        })?;
    let label = found.model.label_index(&c.label).ok_or_else(|| {
        format!(
            "model `{}` has no label `{}` (labels: {})",
            c.model,
            c.label,
            found
                .model
                .labels
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    Ok((i, label))
}

fn pack_names(resolved: &[ResolvedPack]) -> String {
    resolved
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

fn rule_problem(pack: &str, rule: &Rule, message: String) -> Problem {
    Problem {
        pack: pack.to_string(),
        rule: Some(rule.id.to_string()),
        message,
    }
}

fn check_matcher(
    rule: &Rule,
    normalization: &Normalization,
    classifiers: &[CompiledClassifier],
) -> Result<(), String> {
    match &rule.matcher {
        Matcher::Regex(s) => rule_regex(s).map(|_| ()),
        Matcher::Keywords(k) => keyword_bytes(k, normalization).map(|_| ()),
        Matcher::Detector(_) => Ok(()),
        Matcher::Classifier(c) => classifier_target(c, classifiers).map(|_| ()),
    }
}

/// Compiles one rule regex the way the set will: bytes, ASCII classes (`\w`, `\b`, `\d`, `\s`
/// are ASCII; text is normalized first), UTF-8 literals still match. Rejects patterns that match
/// the empty string, which would fire on every prompt.
fn rule_regex(source: &str) -> Result<Regex, String> {
    if source.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regex is {} bytes; the limit is {MAX_REGEX_LEN}",
            source.len()
        ));
    }
    let re = span_regex(source).map_err(|e| match (e.size_limit(), e.syntax_error()) {
        (Some(n), _) => format!(
            "regex compiles to more than {n} bytes; simplify it (bounded repeats like {{1,1000}} are costly)"
        ),
        (None, Some(e)) => format!("invalid regex: {}", one_line(&e.to_string())),
        (None, None) => format!("invalid regex: {}", one_line(&e.to_string())),
    })?;
    if re.is_match(b"") {
        return Err("regex matches the empty string, so it would match every prompt".into());
    }
    Ok(re)
}

/// The regex a slot runs to confirm a candidate and find its spans: what
/// `regex::bytes::RegexBuilder` builds with `unicode(false)` (leftmost-first, no UTF-8
/// requirement), as the `regex-automata` type itself, because only that one can search a window
/// of the text while its look-around (`\b`, `^`) still sees the bytes around the window.
///
/// A rule whose atoms the prefilter finds keeps the regex's own prefix prefilter only when
/// `regex-automata` judges it fast. A slow one is a large set of short case-folded prefixes
/// (`(?i)\b(?:ignore|disregard|…)` starts with dozens of three-letter variants) that fires every
/// few bytes of prose; on a long prompt such a rule ran at a fifth of its DFA's own speed. Such
/// a rule runs only in the windows around its atoms anyway. Patterns without atoms keep it:
/// there a prefix such as a digit is what keeps a counted repetition from overwhelming the lazy
/// DFA. Matches are the same either way.
fn span_regex(source: &str) -> Result<Regex, Box<meta::BuildError>> {
    let slow_prefilter = crate::atoms::atoms(source).is_some()
        && crate::atoms::parse(source)
            .ok()
            .and_then(|h| PrefixFilter::from_hir_prefix(MatchKind::LeftmostFirst, &h))
            .is_some_and(|p| !p.is_fast());
    Regex::builder()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(false)
                .auto_prefilter(!slow_prefilter)
                .nfa_size_limit(Some(RULE_REGEX_SIZE))
                .hybrid_cache_capacity(SPAN_DFA_SIZE),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(source)
        .map_err(Box::new)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

type KeywordLists = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Keywords are normalized like the text they are matched against, so a keyword written with a
/// curly quote or a full-width letter still matches.
fn keyword_bytes(k: &crate::pack::Keywords, n: &Normalization) -> Result<KeywordLists, String> {
    if k.any.is_empty() && k.all.is_empty() {
        return Err("keywords: set `any` and/or `all`".into());
    }
    if k.all.len() > MAX_ALL_KEYWORDS {
        return Err(format!(
            "keywords.all has {} entries; the limit is {MAX_ALL_KEYWORDS}",
            k.all.len()
        ));
    }
    let norm = |w: &String| -> Result<Vec<u8>, String> {
        let t = normalize(w, n).text().trim().to_string();
        if t.is_empty() {
            return Err(format!("keyword {w:?} is empty after normalization"));
        }
        Ok(t.into_bytes())
    };
    let any = k.any.iter().map(norm).collect::<Result<Vec<_>, _>>()?;
    let all = k.all.iter().map(norm).collect::<Result<Vec<_>, _>>()?;
    Ok((any, all))
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
}
