//! One rule's matcher compiled and checked on its own (so an error names its rule), and the
//! pattern sets, keyword automaton and classifier slots the bundle is assembled from.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson;
use regex_automata::util::prefilter::Prefilter as PrefixFilter;
use regex_automata::util::syntax;
use regex_automata::MatchKind;

use crate::classifier::Model;
use crate::decode::DecoderSet;
use crate::detectors::DetectorKind;
use crate::gaps::GapCheck;
use crate::limits::{shown_name, Limits};
use crate::literals::Literals;
use crate::normalize::{normalize, Normalization};
use crate::pack::{ClassifierMatch, Matcher, Rule};
use crate::prefilter::{BuildError, Prefilter};
use crate::short_span::ShortSearch;

use super::{
    Fault, MAX_ALL_KEYWORDS, RULE_REGEX_SIZE, SPAN_DFA_MAX, SPAN_DFA_MIN, SPAN_DFA_PER_STATE,
};

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

    pub(super) fn entry_mut(&mut self) -> &mut SetEntry {
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
    pub filter: Arc<Prefilter>,
}

/// Patterns of one set while compiling.
#[derive(Default)]
pub(super) struct PatternsBuilder {
    pub(super) sources: Vec<String>,
    pub(super) slots: Vec<Slot>,
    /// Indices of the `Slot::Match` slots of each source, so adding a rule is not a scan of
    /// every pattern so far (quadratic in a large pack).
    matches: HashMap<String, Vec<usize>>,
}

impl PatternsBuilder {
    /// Identical patterns (two rules on one detector, say) share a set slot. `compiled` is the
    /// pattern's regex when the caller has already compiled it.
    pub(super) fn add(
        &mut self,
        source: String,
        compiled: Option<Arc<Regex>>,
        gaps: Option<Arc<GapCheck>>,
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
        entry.gaps = gaps;
        self.slots.push(Slot::Match(entry));
    }

    pub(super) fn push(&mut self, source: String, slot: Slot) {
        self.sources.push(source);
        self.slots.push(slot);
    }

    pub(super) fn build(self) -> Result<Option<PatternSet>, BuildError> {
        if self.sources.is_empty() {
            return Ok(None);
        }
        // Shared with a live bundle whose set holds exactly these patterns (see
        // [`super::shared`]).
        let filter = super::shared::PREFILTERS
            .get_or_build(super::shared::prefilter_key(&self.sources), || {
                Prefilter::build(&self.sources)
            })?;
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
    pub(super) span: OnceLock<Option<Arc<Regex>>>,
    /// For detector candidates: validated by `refine` before a rule counts as matched.
    pub detector: Option<DetectorKind>,
    /// Rules (indices into `CompiledPack::rules`) this pattern belongs to.
    pub rules: Vec<usize>,
    /// Whether every span is wanted (a rule redacts) or the first one decides. Each further
    /// span costs a scan of the rest of the text, so attack prompts stay cheap.
    pub all_spans: bool,
    /// For a rule that counts a wide class across a gap: says cheaply where it cannot match,
    /// so `span` need not search there (see [`crate::gaps`]).
    pub(super) gaps: Option<Arc<GapCheck>>,
    /// For a gapped rule, the same pattern as a bounded backtracker, for spans of up to
    /// [`crate::short_span::SHORT_SPAN`] bytes; built on first use, like `span`.
    short: OnceLock<Option<ShortSearch>>,
}

impl SetEntry {
    pub(super) fn new(source: String, detector: Option<DetectorKind>, rules: Vec<usize>) -> Self {
        SetEntry {
            source,
            span: OnceLock::new(),
            detector,
            rules,
            all_spans: false,
            gaps: None,
            short: OnceLock::new(),
        }
    }

    /// The pattern as written (normalized rule regex, or a built-in pattern).
    #[cfg(test)]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The backtracker that confirms a gapped rule's short spans (`None`: the span regex
    /// does it all; always for a rule without a gap check, see [`crate::short_span`]).
    pub fn short(&self) -> Option<&ShortSearch> {
        self.gaps.as_ref()?;
        self.short
            .get_or_init(|| ShortSearch::of(&self.source, RULE_REGEX_SIZE))
            .as_ref()
    }

    pub fn gaps(&self) -> Option<&GapCheck> {
        self.gaps.as_deref()
    }

    /// The span regex. Rule regexes are compiled (and validated) with the pack; detector
    /// candidates and decoder gates, which are built in and known to compile, on first use.
    /// `None` would mean a built-in pattern failed to compile: the slot then reports no spans
    /// rather than failing the scan (a unit test compiles every built-in pattern).
    pub fn span(&self) -> Option<&Regex> {
        self.span
            .get_or_init(|| shared_span_regex(&self.source, RULE_REGEX_SIZE).ok())
            .as_deref()
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
    pub automaton: Literals,
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

/// (model index, label index) of a `classifier` matcher.
pub(super) fn classifier_target(
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

pub(super) fn check_matcher(
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
pub(super) fn rule_regex(source: &str, limits: &Limits) -> Result<Arc<Regex>, Fault> {
    if source.len() > limits.max_regex_bytes {
        return Err(format!(
            "regex is {} bytes; the limit is {} (--max-regex-bytes)",
            source.len(),
            limits.max_regex_bytes
        )
        .into());
    }
    let re = shared_span_regex(source, limits.max_regex_compiled_bytes).map_err(|e| {
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

/// [`span_regex`], shared with every live bundle that holds the same pattern (see
/// [`super::shared`]).
fn shared_span_regex(source: &str, size_limit: usize) -> Result<Arc<Regex>, Box<meta::BuildError>> {
    let key = super::shared::regex_key(source, size_limit);
    super::shared::REGEXES.get_or_build(key, || span_regex(source, size_limit))
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
                .hybrid_cache_capacity(span_cache_capacity(source, size_limit)),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(source)
        .map_err(Box::new)
}

/// The lazy DFA cache a span regex gets (per thread and direction): [`SPAN_DFA_PER_STATE`] per
/// state of its NFA, within [`SPAN_DFA_MIN`]..=[`SPAN_DFA_MAX`]. A lazy DFA state is a set of
/// NFA states, so a regex with a large NFA (counted repetitions of wide classes) meets many
/// more of them on new text, and a cache too small for them is cleared over and over.
/// A pattern that does not compile gets the floor (building its regex then reports why).
pub(super) fn span_cache_capacity(source: &str, size_limit: usize) -> usize {
    let states = thompson::Compiler::new()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            thompson::Config::new()
                .utf8(false)
                .nfa_size_limit(Some(size_limit)),
        )
        .build(source)
        .map_or(0, |nfa| nfa.states().len());
    states
        .saturating_mul(SPAN_DFA_PER_STATE)
        .clamp(SPAN_DFA_MIN, SPAN_DFA_MAX)
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

type KeywordLists = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Keywords are normalized like the text they are matched against, so a keyword written with a
/// curly quote or a full-width letter still matches.
pub(super) fn keyword_bytes(
    k: &crate::pack::Keywords,
    n: &Normalization,
) -> Result<KeywordLists, Fault> {
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

    #[test]
    fn a_larger_nfa_gets_a_larger_lazy_cache_within_bounds() {
        let limit = RULE_REGEX_SIZE;
        // Most rules: a phrase; its DFA is small and the floor is plenty.
        let phrase = span_cache_capacity(r"(?i)\bignore\s+previous\s+instructions\b", limit);
        assert_eq!(phrase, SPAN_DFA_MIN);
        // A wide class counted up to 80 between two word lists: a large NFA, a larger cache.
        let counted = span_cache_capacity(
            r"(?i)\b(?:include|append|add|insert|put)\b[^\n]{0,80}?\b(?:in|to|into|with)\s+your\s+(?:summary|answer|response)|\b(?:canary|tracking)\s+token\b[^\n]{0,60}?\bin\s+(?:your|every)\s+(?:\w+\s+)?(?:summary|answer)",
            limit,
        );
        assert!(
            counted > SPAN_DFA_MIN && counted <= SPAN_DFA_MAX,
            "{counted}"
        );
        // However large the NFA, the cap holds.
        assert_eq!(span_cache_capacity(r"[^\n]{0,4000}x", limit), SPAN_DFA_MAX);
        // A pattern that does not compile gets the floor; building it reports the error.
        assert_eq!(span_cache_capacity(r"(", limit), SPAN_DFA_MIN);
    }
}
