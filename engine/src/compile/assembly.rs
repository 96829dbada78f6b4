//! Assembly: resolved packs merged into one [`CompiledPack`](super::CompiledPack): rules in
//! policy order, their patterns grouped into prefiltered sets per scope, the keyword automaton,
//! the models, the bundle's identity.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use crate::classifier::ModelSpec;
use crate::decode::{decode_gate_parts, DecoderKind, DecoderLimits};
use crate::gaps::GapCheck;
use crate::limits::{shown_name, Limits};
use crate::normalize::Normalization;
use crate::pack::{Action, Keywords as KeywordMatcher, MatchOn, Matcher, Rule, RuleId};
use crate::policy::Policy;
use crate::prefilter::BuildError;

use super::patterns::{
    check_matcher, classifier_target, keyword_bytes, one_line, rule_regex, PatternsBuilder,
};
use super::resolve::sha256_json;
use super::{
    over_budget, pack_names, rule_problem, ClassifierRule, CompileError, CompiledClassifier,
    CompiledPack, CompiledRule, Fault, KeywordEntry, KeywordRule, Keywords, PackRef, PatternSet,
    Problem, ResolvedPack, SetEntry, Slot,
};

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
///
/// In order: merge the packs, compile each rule into its scope, add the derived slots
/// (original-text copies, decoder gates), build the sets and the keyword automaton, and name the
/// bundle. Problems are collected across all of it, so one run reports every broken rule.
pub fn compile_resolved_with(
    resolved: Vec<ResolvedPack>,
    policy: Policy,
    limits: &Limits,
) -> Result<CompiledPack, CompileError> {
    let mut problems = Vec::new();
    let Merged {
        normalization,
        decoders,
        decode_limits,
        rules,
    } = Merged::of(&resolved, &mut problems);
    check_rule_count(&resolved, rules.len(), limits)?;
    let classifiers = decode_models(&resolved, &mut problems);
    let mut assembly = Assembly::new(&resolved, limits, normalization, classifiers, problems);
    for &(rule, pack) in &rules {
        assembly.add_rule(rule, pack, &policy)?;
    }
    assembly.copy_original_into_primary();
    let decoders: Vec<DecoderKind> = decoders.into_iter().collect();
    assembly.add_decode_gates(&decoders, decode_limits.min_encoded_len);
    let built = assembly.build()?;
    let pack = bundle_ref(&resolved, &policy);
    Ok(CompiledPack {
        pack,
        policy,
        resolved,
        rules: built.rules,
        normalization,
        decoders,
        limits: decode_limits,
        primary: built.primary,
        original: built.original,
        decoded: built.decoded,
        keywords: built.keywords,
        classifiers: built.classifiers,
        bypass_prefilter: false,
    })
}

/// The bound packs taken together: the union of their normalization, decoders and decoder
/// limits, and their rules in policy order with each id once.
struct Merged<'p> {
    normalization: Normalization,
    decoders: BTreeSet<DecoderKind>,
    decode_limits: DecoderLimits,
    /// Each rule with the name of the pack that first defined it.
    rules: Vec<(&'p Rule, &'p str)>,
}

impl<'p> Merged<'p> {
    /// A rule id defined identically by two packs (both extend one base, say) is kept once; defined
    /// differently, it is a problem of the later pack, since neither definition can win silently.
    fn of(resolved: &'p [ResolvedPack], problems: &mut Vec<Problem>) -> Self {
        let mut normalization: Option<Normalization> = None;
        let mut decode_limits: Option<DecoderLimits> = None;
        let mut decoders = BTreeSet::new();
        let mut rules: Vec<(&Rule, &str)> = Vec::new();
        let mut by_id: HashMap<&RuleId, usize> = HashMap::new();
        for r in resolved {
            normalization =
                Some(normalization.map_or(r.normalization, |n| n.union(r.normalization)));
            decode_limits =
                Some(decode_limits.map_or(r.decoder_limits, |l| l.union(r.decoder_limits)));
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
        Merged {
            normalization: normalization.unwrap_or_default(),
            decoders,
            decode_limits: decode_limits.unwrap_or_default(),
            rules,
        }
    }
}

/// Refuses a bundle with more rules than `--max-bundle-rules` before any of them is compiled,
/// so an oversized bundle costs no regex compilation.
fn check_rule_count(
    resolved: &[ResolvedPack],
    count: usize,
    limits: &Limits,
) -> Result<(), CompileError> {
    if count > limits.max_bundle_rules {
        return Err(CompileError::pack(
            &pack_names(resolved),
            format!(
                "the bundle holds {count} rules; the limit is {} (--max-bundle-rules)",
                limits.max_bundle_rules
            ),
        ));
    }
    Ok(())
}

/// The bundle being compiled, rule by rule: the three pattern scopes, the keyword lists, the
/// classifier slots, one running compiled-size budget and one problem list. Kept together
/// because every rule may touch any of them.
struct Assembly<'a> {
    resolved: &'a [ResolvedPack],
    limits: &'a Limits,
    normalization: Normalization,
    /// Bytes of compiled automata the bundle keeps (rule regexes, the keyword automaton).
    compiled_bytes: usize,
    /// What the rules' gap checks may still take ([`super::GAP_CHECK_BUDGET`] at the start).
    gap_budget: usize,
    rules: Vec<CompiledRule>,
    primary: PatternsBuilder,
    original: PatternsBuilder,
    decoded: PatternsBuilder,
    keywords: KeywordsBuilder,
    classifiers: Vec<CompiledClassifier>,
    problems: Vec<Problem>,
}

/// What [`Assembly::build`] hands back for the [`CompiledPack`].
struct Built {
    rules: Vec<CompiledRule>,
    primary: Option<PatternSet>,
    original: Option<PatternSet>,
    decoded: Option<PatternSet>,
    keywords: Option<Keywords>,
    classifiers: Vec<CompiledClassifier>,
}

impl<'a> Assembly<'a> {
    fn new(
        resolved: &'a [ResolvedPack],
        limits: &'a Limits,
        normalization: Normalization,
        classifiers: Vec<CompiledClassifier>,
        problems: Vec<Problem>,
    ) -> Self {
        Assembly {
            resolved,
            limits,
            normalization,
            compiled_bytes: 0,
            gap_budget: super::GAP_CHECK_BUDGET,
            rules: Vec::new(),
            primary: PatternsBuilder::default(),
            original: PatternsBuilder::default(),
            decoded: PatternsBuilder::default(),
            keywords: KeywordsBuilder::default(),
            classifiers,
            problems,
        }
    }

    /// Compiles one rule into its scope. A broken rule becomes a problem and compiling goes on;
    /// only the compiled-size budget running out stops here, with every problem so far.
    fn add_rule(&mut self, rule: &Rule, pack: &str, policy: &Policy) -> Result<(), CompileError> {
        if !rule.enabled {
            // Still checked, so enabling it later cannot break the pack.
            if let Err(fault) =
                check_matcher(rule, &self.normalization, &self.classifiers, self.limits)
            {
                self.problems.push(rule_problem(pack, rule, fault));
            }
            return Ok(());
        }
        let index = self.rules.len();
        let action = rule
            .action
            .or_else(|| policy.spec.actions.get(&rule.category).copied());
        let redact = action == Some(Action::Redact);
        let mut detector = None;
        let added = match &rule.matcher {
            Matcher::Regex(source) => self.add_regex(source, rule.match_on, index, redact)?,
            Matcher::Detector(d) => {
                detector = Some(*d);
                let pattern = d.candidate_pattern().to_string();
                self.primary
                    .add(pattern, None, None, Some(*d), index, redact);
                Ok(())
            }
            Matcher::Keywords(k) => keyword_bytes(k, &self.normalization)
                .map(|(any, all)| self.keywords.add(index, k, any, all)),
            Matcher::Classifier(c) => {
                classifier_target(c, &self.classifiers).map(|(model, label)| {
                    self.classifiers[model].rules.push(ClassifierRule {
                        rule: index,
                        label,
                        threshold: c.threshold,
                    })
                })
            }
        };
        if let Err(fault) = added {
            self.problems.push(rule_problem(pack, rule, fault));
        }
        self.rules.push(CompiledRule {
            id: rule.id.clone(),
            category: rule.category,
            severity: rule.severity,
            weight: rule.weight,
            action,
            mitigation: rule.mitigation.clone(),
            detector,
            pack: pack.to_string(),
        });
        Ok(())
    }

    /// Compiles a rule's regex into the scope it matches on, charging its size to the budget.
    /// The outer `Err` is the budget running out (compiling stops); the inner one is a fault of
    /// this rule alone.
    fn add_regex(
        &mut self,
        source: &str,
        match_on: MatchOn,
        index: usize,
        redact: bool,
    ) -> Result<Result<(), Fault>, CompileError> {
        let re = match rule_regex(source, self.limits) {
            Ok(re) => re,
            Err(fault) => return Ok(Err(fault)),
        };
        self.charge(re.memory_usage())?;
        let gaps = crate::atoms::parse(source)
            .ok()
            .and_then(|hir| GapCheck::of(&hir, &mut self.gap_budget))
            .map(Arc::new);
        if let Some(g) = &gaps {
            self.charge(g.memory_usage())?;
        }
        let scope = match match_on {
            MatchOn::Normalized => &mut self.primary,
            MatchOn::Original => &mut self.original,
            MatchOn::Decoded => &mut self.decoded,
        };
        scope.add(source.to_string(), Some(re), gaps, None, index, redact);
        Ok(Ok(()))
    }

    /// Adds `bytes` of compiled automata to the running total; over `--max-bundle-compiled-bytes`
    /// the bundle is refused with every problem found so far.
    fn charge(&mut self, bytes: usize) -> Result<(), CompileError> {
        self.compiled_bytes = self.compiled_bytes.saturating_add(bytes);
        if self.compiled_bytes > self.limits.max_bundle_compiled_bytes {
            let mut problems = std::mem::take(&mut self.problems);
            problems.push(over_budget(self.resolved, self.compiled_bytes, self.limits));
            return Err(CompileError::Invalid(problems));
        }
        Ok(())
    }

    /// Every original-text pattern also joins the primary set, as a slot that counts only when
    /// normalization left the text unchanged: then one pass over the normalized text serves both.
    fn copy_original_into_primary(&mut self) {
        for (source, slot) in self.original.sources.iter().zip(&self.original.slots) {
            if let Slot::Match(e) = slot {
                let mut copy = SetEntry::new(source.clone(), e.detector, e.rules.clone());
                if let Some(re) = e.span.get() {
                    copy.span = OnceLock::from(re.clone());
                }
                copy.gaps = e.gaps.clone();
                self.primary
                    .push(source.clone(), Slot::OriginalIfIdentity(copy));
            }
        }
    }

    /// Each part of the gate is its own pattern, so the parts made of words get atoms and only
    /// the shapes (encoded runs) join the always-on DFA.
    fn add_decode_gates(&mut self, decoders: &[DecoderKind], min_encoded_len: u16) {
        for part in decode_gate_parts(decoders, min_encoded_len) {
            self.primary.push(
                part.pattern.clone(),
                Slot::DecodeGate(SetEntry::new(part.pattern, None, vec![]), part.kinds),
            );
        }
    }

    /// Builds the pattern sets and the keyword automaton, once no rule has a problem (building
    /// them for a broken bundle would only add noise to its errors), and charges them to the
    /// budget.
    fn build(mut self) -> Result<Built, CompileError> {
        if !self.problems.is_empty() {
            return Err(CompileError::Invalid(self.problems));
        }
        let names = pack_names(self.resolved);
        let [primary, original, decoded] = self.build_sets().map_err(|e| set_error(&names, e))?;
        // The sets' prefilters (atom automaton, residual and anchored DFAs) are the largest
        // automata a bundle holds.
        for set in [&primary, &original, &decoded].into_iter().flatten() {
            self.charge(set.filter.memory_usage())?;
        }
        let keywords = std::mem::take(&mut self.keywords).build(&names)?;
        if let Some(k) = &keywords {
            self.charge(k.automaton.memory_usage())?;
        }
        Ok(Built {
            rules: self.rules,
            primary,
            original,
            decoded,
            keywords,
            classifiers: self
                .classifiers
                .into_iter()
                .filter(|c| !c.rules.is_empty())
                .collect(),
        })
    }

    /// The primary, original-text and decoded-text sets, in that order (the order their
    /// errors have always been reported in).
    fn build_sets(&mut self) -> Result<[Option<PatternSet>; 3], BuildError> {
        Ok([
            std::mem::take(&mut self.primary).build()?,
            std::mem::take(&mut self.original).build()?,
            std::mem::take(&mut self.decoded).build()?,
        ])
    }
}

/// A pattern set that does not build is a fault of the bundle as a whole (the rules without
/// literals together), not of one rule.
fn set_error(names: &str, e: BuildError) -> CompileError {
    CompileError::pack(
        names,
        match e {
            BuildError::Regex(e) => format!(
                "the rules without literals do not compile together ({}); reduce their number or size",
                one_line(&e.to_string())
            ),
            BuildError::Atoms(e) => format!("literal prefilter: {e}"),
        },
    )
    .hiding_details("the prefilter of the bundle's patterns could not be built; reduce the number or size of the rules without literals")
}

/// The keyword rules' words, gathered for the one case-insensitive automaton of the bundle.
#[derive(Default)]
struct KeywordsBuilder {
    patterns: Vec<Vec<u8>>,
    entries: Vec<KeywordEntry>,
    rules: HashMap<usize, KeywordRule>,
}

impl KeywordsBuilder {
    /// Adds rule `index`'s words: each `any` word alone, each `all` word with its bit in the
    /// rule's mask, so a scan can tell when every `all` word has been seen.
    fn add(&mut self, index: usize, k: &KeywordMatcher, any: Vec<Vec<u8>>, all: Vec<Vec<u8>>) {
        let mut all_mask = 0u64;
        let words = any
            .into_iter()
            .map(|w| (w, None))
            .chain(all.into_iter().enumerate().map(|(i, w)| {
                all_mask |= 1 << i;
                (w, Some(i as u8))
            }));
        for (word, all_bit) in words {
            self.entries.push(KeywordEntry {
                rule: index,
                all_bit,
                exact: (!k.case_insensitive).then(|| word.clone().into_boxed_slice()),
                whole_word: k.whole_word,
            });
            self.patterns.push(word);
        }
        self.rules.insert(
            index,
            KeywordRule {
                has_any: !k.any.is_empty(),
                all_mask,
            },
        );
    }

    /// The automaton over every word, with the entries and rules it indexes; `None` when the
    /// bundle has no keyword rule (a scan then skips the keyword pass).
    fn build(self, names: &str) -> Result<Option<Keywords>, CompileError> {
        if self.patterns.is_empty() {
            return Ok(None);
        }
        let automaton = crate::literals::Literals::new(&self.patterns).map_err(|e| {
            CompileError::pack(names, format!("keyword automaton: {e}"))
                .hiding_details("the keyword automaton could not be built")
        })?;
        Ok(Some(Keywords {
            automaton,
            entries: self.entries,
            rules: self.rules,
        }))
    }
}

/// The bundle's identity: its packs' names, their versions, and a hash of everything compiled.
fn bundle_ref(resolved: &[ResolvedPack], policy: &Policy) -> PackRef {
    PackRef {
        name: pack_names(resolved),
        version: if resolved.len() == 1 {
            resolved[0].version.clone()
        } else {
            resolved
                .iter()
                .map(|r| format!("{}@{}", r.name, r.version))
                .collect::<Vec<_>>()
                .join("+")
        },
        hash: sha256_json(&(resolved, policy)),
    }
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
