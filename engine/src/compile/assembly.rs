//! Assembly: resolved packs merged into one [`CompiledPack`](super::CompiledPack): rules in
//! policy order, their patterns grouped into prefiltered sets per scope, the keyword automaton,
//! the models, the bundle's identity.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use crate::classifier::ModelSpec;
use crate::decode::{decode_gate_parts, DecoderKind, DecoderLimits};
use crate::limits::{shown_name, Limits};
use crate::normalize::Normalization;
use crate::pack::{Action, MatchOn, Matcher, Rule, RuleId};
use crate::policy::Policy;
use crate::prefilter::BuildError;

use super::patterns::{
    check_matcher, classifier_target, keyword_bytes, one_line, rule_regex, PatternsBuilder,
};
use super::resolve::sha256_json;
use super::{
    over_budget, pack_names, rule_problem, ClassifierRule, CompileError, CompiledClassifier,
    CompiledPack, CompiledRule, KeywordEntry, KeywordRule, Keywords, PackRef, Problem,
    ResolvedPack, SetEntry, Slot,
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
/// Long on purpose: one pass over the merged rules fills the three pattern scopes, the keyword
/// automaton's entries and the classifier slots, all charged against one running compiled-size
/// budget and one problem list; cut into functions, each piece would take most of that state as
/// `&mut` arguments. In order: merge the packs, compile each rule into its scope, add the derived
/// slots (original-text copies, decoder gates), build the sets and the keyword automaton, and
/// name the bundle.
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
