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
use crate::decode::{decode_gate_parts, DecoderKind, DecoderLimits, DecoderSet};
use crate::detectors::DetectorKind;
use crate::limits::{shown_name, Limits};
use crate::normalize::{normalize, Normalization};
use crate::pack::{
    Action, Category, ClassifierMatch, MatchOn, Matcher, Rule, RuleId, RulePackSpec, Severity,
};
use crate::policy::Policy;
use crate::prefilter::{BuildError, Prefilter};

/// Longest regex source accepted by default, in bytes ([`Limits::max_regex_bytes`]). Rule packs
/// are data from users; a bound keeps a pathological pack from stalling the operator or a
/// scanner reload.
pub const MAX_REGEX_LEN: usize = crate::limits::DEFAULT_MAX_REGEX_BYTES;
/// Compiled size limit of a built-in pattern's span regex (rules use
/// [`Limits::max_regex_compiled_bytes`]).
const RULE_REGEX_SIZE: usize = crate::limits::DEFAULT_MAX_REGEX_COMPILED_BYTES;
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

/// Flattens `name`'s `extends` chain under the default [`Limits`]. Errors: unknown pack,
/// cycle, over-deep chain, an own rule reusing an inherited id, an override of an id that is
/// not inherited, overrides without `extends`, too many rules.
pub fn resolve(packs: &PackSet, name: &str) -> Result<ResolvedPack, CompileError> {
    resolve_with(packs, name, &Limits::default())
}

/// [`resolve`] under `limits`. Rule counts are checked before any rule is looked at, so an
/// oversized pack costs no more than counting.
pub fn resolve_with(
    packs: &PackSet,
    name: &str,
    limits: &Limits,
) -> Result<ResolvedPack, CompileError> {
    let mut chain = vec![name.to_string()];
    let mut spec = packs
        .get(name)
        .ok_or_else(|| CompileError::pack(name, "no rule pack with this name is loaded"))?;
    let mut specs = vec![spec];
    while let Some(base) = &spec.extends {
        if chain.iter().any(|c| c == base) {
            // Every name in the chain is a loaded pack's, so validated.
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
            let pack = chain.last().map(String::as_str).unwrap_or(name);
            CompileError::Invalid(vec![Problem::hiding(
                pack,
                None,
                format!("extends {}, which is not loaded", shown_name(base)),
                format!("extends `{base}`, which is not loaded"),
            )])
        })?;
        chain.push(base.clone());
        specs.push(spec);
    }
    chain.reverse();
    specs.reverse();

    let mut problems = Vec::new();
    for (pack_name, spec) in chain.iter().zip(&specs) {
        if spec.rules.len() > limits.max_pack_rules {
            problems.push(Problem::new(
                pack_name,
                None,
                format!(
                    "the pack defines {} rules; the limit is {} (--max-pack-rules)",
                    spec.rules.len(),
                    limits.max_pack_rules
                ),
            ));
        }
    }
    let total: usize = specs.iter().map(|s| s.rules.len()).sum();
    if problems.is_empty() && total > limits.max_bundle_rules {
        problems.push(Problem::new(
            name,
            None,
            format!(
                "the pack and the packs it extends define {total} rules; the limit for a bundle is {} (--max-bundle-rules)",
                limits.max_bundle_rules
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }

    let mut rules: Vec<Rule> = Vec::new();
    // Rule ids seen so far, and whether each was inherited (defined by an earlier pack).
    let mut ids: HashMap<RuleId, usize> = HashMap::new();
    let mut normalization = Normalization::default();
    let mut decoders = Vec::new();
    let mut limits_decode = DecoderLimits::default();
    let mut models: Vec<ModelSpec> = Vec::new();
    for (pack_name, spec) in chain.iter().zip(&specs) {
        if let Some(n) = spec.normalization {
            normalization = n;
        }
        for (i, m) in spec.models.iter().enumerate() {
            if spec.models[..i].iter().any(|o| o.name == m.name) {
                problems.push(Problem::hiding(
                    pack_name,
                    None,
                    format!("model {} is defined twice", shown_name(&m.name)),
                    format!("model `{}` is defined twice", m.name),
                ));
            }
            // Checked here so the error names the pack that defines the model.
            if let Err(e) = m.decode() {
                problems.push(Problem::hiding(
                    pack_name,
                    None,
                    format!("model {} does not decode", shown_name(&m.name)),
                    e.to_string(),
                ));
            }
            models.retain(|o| o.name != m.name);
            models.push(m.clone());
        }
        if let Some(d) = &spec.decoders {
            decoders = d.clone();
        }
        if let Some(l) = spec.decoder_limits {
            if let Err(e) = l.validate() {
                problems.push(Problem::new(pack_name, None, format!("decoderLimits: {e}")));
            }
            limits_decode = l;
        }
        if spec.extends.is_none() && !spec.overrides.is_empty() {
            problems.push(Problem::new(
                pack_name,
                None,
                "`overrides` needs `extends`: there are no inherited rules to change",
            ));
        }
        let inherited = rules.len();
        for o in &spec.overrides {
            match ids.get(&o.id).filter(|&&i| i < inherited) {
                None => problems.push(Problem::new(
                    pack_name,
                    Some(&o.id),
                    "override of a rule the base packs do not define",
                )),
                Some(&i) => {
                    let r = &mut rules[i];
                    if let Some(v) = o.enabled {
                        r.enabled = v;
                    }
                    if let Some(v) = o.severity {
                        r.severity = v;
                    }
                    if let Some(v) = o.weight {
                        if v > 100 {
                            problems.push(Problem::new(
                                pack_name,
                                Some(&o.id),
                                format!("weight {v} is over 100"),
                            ));
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
            if let Some(&i) = ids.get(&rule.id) {
                let msg = if i < inherited {
                    "id is already defined by a base pack; change it with `overrides` instead"
                } else {
                    "duplicate rule id"
                };
                problems.push(Problem::new(pack_name, Some(&rule.id), msg));
                continue;
            }
            ids.insert(rule.id.clone(), rules.len());
            rules.push(rule.clone());
        }
    }
    decoders.sort();
    decoders.dedup();
    if rules.is_empty() && problems.is_empty() {
        problems.push(Problem::new(name, None, "the pack has no rules"));
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
        decoder_limits: limits_decode,
        rules,
        models,
    })
}

/// The packs a policy binds: its `rulePacks`, or when empty every pack no other pack extends.
pub fn policy_packs(packs: &PackSet, policy: &Policy) -> Result<Vec<String>, CompileError> {
    let policy_err = |summary: String, message: String| CompileError::Policy {
        policy: policy.name.clone(),
        message,
        summary: Some(summary),
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
            let loaded = packs.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(policy_err(
                format!(
                    "rule pack {} is not loaded (loaded: {loaded})",
                    shown_name(n)
                ),
                format!("rule pack `{n}` is not loaded (loaded: {loaded})"),
            ));
        }
        if names.contains(n) {
            // Loaded, so a validated name.
            return Err(policy_err(
                format!("rule pack `{n}` is listed twice"),
                format!("rule pack `{n}` is listed twice"),
            ));
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
    /// Some of these decoders could find a payload (valid on unchanged text): run them.
    DecodeGate(SetEntry, DecoderSet),
}

impl Slot {
    pub(crate) fn entry(&self) -> &SetEntry {
        match self {
            Slot::Match(e) | Slot::OriginalIfIdentity(e) | Slot::DecodeGate(e, _) => e,
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
    /// Indices of the `Slot::Match` slots of each source, so adding a rule is not a scan of
    /// every pattern so far (quadratic in a large pack).
    matches: HashMap<String, Vec<usize>>,
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
        let same = self.matches.entry(source.clone()).or_default();
        for &i in same.iter() {
            if let Some(Slot::Match(e)) = self.slots.get_mut(i) {
                if e.detector == detector {
                    e.rules.push(rule);
                    e.all_spans |= all_spans;
                    return;
                }
            }
        }
        same.push(self.slots.len());
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
            .get_or_init(|| span_regex(&self.source, RULE_REGEX_SIZE).ok())
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

/// Compiles already-resolved packs (several packs are merged: the union of their normalization
/// and decoders, and of their rules — an id defined differently by two packs is an error),
/// under the default [`Limits`].
pub fn compile_resolved(
    resolved: Vec<ResolvedPack>,
    policy: Policy,
) -> Result<CompiledPack, CompileError> {
    compile_resolved_with(resolved, policy, &Limits::default())
}

/// [`compile_resolved`] under `limits`: the bundle's rule count is checked before anything is
/// compiled, and its compiled size after every regex, so a bundle over budget stops there.
pub fn compile_resolved_with(
    resolved: Vec<ResolvedPack>,
    policy: Policy,
    limits: &Limits,
) -> Result<CompiledPack, CompileError> {
    let mut normalization: Option<Normalization> = None;
    let mut decoders = BTreeSet::new();
    let mut decode_limits: Option<DecoderLimits> = None;
    let mut rules: Vec<(&Rule, &str)> = Vec::new();
    let mut by_id: HashMap<&RuleId, usize> = HashMap::new();
    let mut problems = Vec::new();
    for r in &resolved {
        normalization = Some(normalization.map_or(r.normalization, |n| n.union(r.normalization)));
        decode_limits = Some(decode_limits.map_or(r.decoder_limits, |l| l.union(r.decoder_limits)));
        decoders.extend(r.decoders.iter().copied());
        for rule in &r.rules {
            match by_id.get(&rule.id).map(|&i| rules[i]) {
                Some((x, _)) if x == rule => {}
                Some((_, other)) => problems.push(Problem::new(
                    &r.name,
                    Some(&rule.id),
                    format!("also defined, differently, by pack `{other}`"),
                )),
                None => {
                    by_id.insert(&rule.id, rules.len());
                    rules.push((rule, &r.name));
                }
            }
        }
    }
    if rules.len() > limits.max_bundle_rules {
        return Err(CompileError::pack(
            &pack_names(&resolved),
            format!(
                "the bundle holds {} rules; the limit is {} (--max-bundle-rules)",
                rules.len(),
                limits.max_bundle_rules
            ),
        ));
    }
    let normalization = normalization.unwrap_or_default();
    let decode_limits = decode_limits.unwrap_or_default();
    // Bytes of compiled automata the bundle keeps (rule regexes, the keyword automaton).
    let mut compiled_bytes = 0usize;
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
            if let Err(fault) = check_matcher(rule, &normalization, &classifiers, limits) {
                problems.push(rule_problem(pack, rule, fault));
            }
            continue;
        }
        let index = compiled_rules.len();
        let action = rule
            .action
            .or_else(|| policy.spec.actions.get(&rule.category).copied());
        let mut detector = None;
        match &rule.matcher {
            Matcher::Regex(source) => match rule_regex(source, limits) {
                Ok(re) => {
                    compiled_bytes = compiled_bytes.saturating_add(re.memory_usage());
                    if compiled_bytes > limits.max_bundle_compiled_bytes {
                        problems.push(over_budget(&resolved, compiled_bytes, limits));
                        return Err(CompileError::Invalid(problems));
                    }
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
                Err(fault) => problems.push(rule_problem(pack, rule, fault)),
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
                Err(fault) => problems.push(rule_problem(pack, rule, fault)),
            },
            Matcher::Classifier(c) => match classifier_target(c, &classifiers) {
                Ok((model, label)) => classifiers[model].rules.push(ClassifierRule {
                    rule: index,
                    label,
                    threshold: c.threshold,
                }),
                Err(fault) => problems.push(rule_problem(pack, rule, fault)),
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
    for part in decode_gate_parts(&decoders, decode_limits.min_encoded_len) {
        primary_patterns.push(
            part.pattern.clone(),
            Slot::DecodeGate(SetEntry::new(part.pattern, None, vec![]), part.kinds),
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
        .hiding_details("the prefilter of the bundle's patterns could not be built; reduce the number or size of the rules without literals")
    })?;
    let keywords = if kw_patterns.is_empty() {
        None
    } else {
        let automaton =
            crate::prefilter::case_insensitive_automaton(&kw_patterns).map_err(|e| {
                CompileError::pack(&pack_names(&resolved), format!("keyword automaton: {e}"))
                    .hiding_details("the keyword automaton could not be built")
            })?;
        compiled_bytes = compiled_bytes.saturating_add(automaton.memory_usage());
        if compiled_bytes > limits.max_bundle_compiled_bytes {
            return Err(CompileError::Invalid(vec![over_budget(
                &resolved,
                compiled_bytes,
                limits,
            )]));
        }
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
        limits: decode_limits,
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
                    problems.push(Problem::hiding(
                        &r.name,
                        None,
                        format!(
                            "model {} is also defined, differently, by pack `{other}`",
                            shown_name(&m.name)
                        ),
                        format!(
                            "model `{}` is also defined, differently, by pack `{other}`",
                            m.name
                        ),
                    ));
                    continue;
                }
                None => seen.push((m, &r.name)),
            }
            match m.decode() {
                Ok(model) => out.push(CompiledClassifier {
                    model,
                    rules: Vec::new(),
                }),
                Err(e) => problems.push(Problem::hiding(
                    &r.name,
                    None,
                    format!("model {} does not decode", shown_name(&m.name)),
                    e.to_string(),
                )),
            }
        }
    }
    out
}

/// (model index, label index) of a `classifier` matcher.
fn classifier_target(
    c: &ClassifierMatch,
    classifiers: &[CompiledClassifier],
) -> Result<(usize, usize), Fault> {
    let (i, found) = classifiers
        .iter()
        .enumerate()
        .find(|(_, x)| x.model.name == c.model)
        .ok_or_else(|| {
            let why = "is not defined by this pack or a pack it extends (or it failed to load)";
            Fault::hiding(
                format!("classifier model {} {why}", shown_name(&c.model)),
                format!("classifier model `{}` {why}", c.model),
            )
        })?;
    let label = found.model.label_index(&c.label).ok_or_else(|| {
        Fault::hiding(
            format!(
                "model {} has no label {}",
                shown_name(&c.model),
                shown_name(&c.label)
            ),
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
            ),
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

fn check_matcher(
    rule: &Rule,
    normalization: &Normalization,
    classifiers: &[CompiledClassifier],
    limits: &Limits,
) -> Result<(), Fault> {
    match &rule.matcher {
        Matcher::Regex(s) => rule_regex(s, limits).map(|_| ()),
        Matcher::Keywords(k) => keyword_bytes(k, normalization).map(|_| ()),
        Matcher::Detector(_) => Ok(()),
        Matcher::Classifier(c) => classifier_target(c, classifiers).map(|_| ()),
    }
}

/// Compiles one rule regex the way the set will: bytes, ASCII classes (`\w`, `\b`, `\d`, `\s`
/// are ASCII; text is normalized first), UTF-8 literals still match. Rejects patterns that match
/// the empty string, which would fire on every prompt.
fn rule_regex(source: &str, limits: &Limits) -> Result<Regex, Fault> {
    if source.len() > limits.max_regex_bytes {
        return Err(format!(
            "regex is {} bytes; the limit is {} (--max-regex-bytes)",
            source.len(),
            limits.max_regex_bytes
        )
        .into());
    }
    let re = span_regex(source, limits.max_regex_compiled_bytes).map_err(|e| {
        match (e.size_limit(), e.syntax_error()) {
            (Some(n), _) => format!(
                "regex compiles to more than {n} bytes (--max-regex-compiled-bytes); simplify it (counted repetitions multiply: {{1,1000}} is costly, b{{1000}}{{1000}} a million states)"
            )
            .into(),
            // The parser's message quotes the pattern.
            (None, Some(e)) => Fault::hiding(
                "invalid regex (a syntax error; `pd-scanner test` shows where)",
                format!("invalid regex: {}", one_line(&e.to_string())),
            ),
            (None, None) => Fault::hiding(
                "invalid regex",
                format!("invalid regex: {}", one_line(&e.to_string())),
            ),
        }
    })?;
    if re.is_match(b"") {
        return Err(
            "regex matches the empty string, so it would match every prompt"
                .to_string()
                .into(),
        );
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
fn span_regex(source: &str, size_limit: usize) -> Result<Regex, Box<meta::BuildError>> {
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
                .nfa_size_limit(Some(size_limit))
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
fn keyword_bytes(k: &crate::pack::Keywords, n: &Normalization) -> Result<KeywordLists, Fault> {
    if k.any.is_empty() && k.all.is_empty() {
        return Err(Fault::from("keywords: set `any` and/or `all`".to_string()));
    }
    if k.all.len() > MAX_ALL_KEYWORDS {
        return Err(format!(
            "keywords.all has {} entries; the limit is {MAX_ALL_KEYWORDS}",
            k.all.len()
        )
        .into());
    }
    let norm = |w: &String| -> Result<Vec<u8>, Fault> {
        let t = normalize(w, n).text().trim().to_string();
        if t.is_empty() {
            return Err(Fault::hiding(
                "a keyword is empty after normalization",
                format!("keyword {w:?} is empty after normalization"),
            ));
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
