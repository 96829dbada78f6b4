//! Resolution: a pack's `extends` chain flattened and its `overrides` applied ([`resolve`]),
//! and the packs a policy binds ([`policy_packs`]). Cheap checks only; no regex is compiled here.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::classifier::ModelSpec;
use crate::decode::{DecoderKind, DecoderLimits};
use crate::limits::{shown_name, Limits};
use crate::normalize::Normalization;
use crate::pack::{Rule, RuleId, RuleOverride, RulePackSpec};
use crate::policy::Policy;

use super::{CompileError, PackSet, Problem, MAX_EXTENDS_DEPTH};

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

pub(super) fn sha256_json<T: Serialize>(value: &T) -> String {
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
///
/// Walks the `extends` chain, checks its rule counts, then merges along it from the root base
/// (the order the pack format documents `extends` and `overrides` in). The merge keeps one problem
/// list for the whole chain, so every problem of every pack is reported in one go.
pub fn resolve_with(
    packs: &PackSet,
    name: &str,
    limits: &Limits,
) -> Result<ResolvedPack, CompileError> {
    let (chain, specs) = extends_chain(packs, name)?;
    check_rule_counts(name, &chain, &specs, limits)?;
    let mut merge = Merge::default();
    for (pack_name, spec) in chain.iter().zip(&specs) {
        merge.add_pack(pack_name, spec);
    }
    merge.finish(name, chain, &specs)
}

/// The names and specs of `name` and every pack it extends, root base first. Stops at the first
/// break in the chain (a cycle, too deep, a base not loaded): nothing past it can be looked at.
fn extends_chain<'p>(
    packs: &'p PackSet,
    name: &str,
) -> Result<(Vec<String>, Vec<&'p RulePackSpec>), CompileError> {
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
    Ok((chain, specs))
}

/// Each pack's own rule count against `--max-pack-rules`, then (only if those pass, so one cause
/// is not reported twice) the chain's total against `--max-bundle-rules`.
fn check_rule_counts(
    name: &str,
    chain: &[String],
    specs: &[&RulePackSpec],
    limits: &Limits,
) -> Result<(), CompileError> {
    let mut problems = Vec::new();
    for (pack_name, spec) in chain.iter().zip(specs) {
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
    Ok(())
}

/// The chain merged so far: a later pack's settings replace an earlier one's, its models replace
/// models of the same name, its overrides change inherited rules and its rules are appended.
#[derive(Default)]
struct Merge {
    rules: Vec<Rule>,
    /// Index in `rules` of each rule id seen so far; below a pack's first own rule, inherited.
    ids: HashMap<RuleId, usize>,
    normalization: Normalization,
    decoders: Vec<DecoderKind>,
    decoder_limits: DecoderLimits,
    models: Vec<ModelSpec>,
    problems: Vec<Problem>,
}

impl Merge {
    /// Merges the next pack of the chain; its problems are noted and merging goes on.
    fn add_pack(&mut self, pack_name: &str, spec: &RulePackSpec) {
        if let Some(n) = spec.normalization {
            self.normalization = n;
        }
        self.add_models(pack_name, &spec.models);
        if let Some(d) = &spec.decoders {
            self.decoders = d.clone();
        }
        if let Some(l) = spec.decoder_limits {
            if let Err(e) = l.validate() {
                self.problems
                    .push(Problem::new(pack_name, None, format!("decoderLimits: {e}")));
            }
            self.decoder_limits = l;
        }
        if spec.extends.is_none() && !spec.overrides.is_empty() {
            self.problems.push(Problem::new(
                pack_name,
                None,
                "`overrides` needs `extends`: there are no inherited rules to change",
            ));
        }
        let inherited = self.rules.len();
        for o in &spec.overrides {
            self.apply_override(pack_name, o, inherited);
        }
        self.add_rules(pack_name, &spec.rules, inherited);
    }

    /// A pack's models replace the chain's models of the same name. Each is decoded here so the
    /// error names the pack that defines it.
    fn add_models(&mut self, pack_name: &str, models: &[ModelSpec]) {
        for (i, m) in models.iter().enumerate() {
            if models[..i].iter().any(|o| o.name == m.name) {
                self.problems.push(Problem::hiding(
                    pack_name,
                    None,
                    format!("model {} is defined twice", shown_name(&m.name)),
                    format!("model `{}` is defined twice", m.name),
                ));
            }
            if let Err(e) = m.decode() {
                self.problems.push(Problem::hiding(
                    pack_name,
                    None,
                    format!("model {} does not decode", shown_name(&m.name)),
                    e.to_string(),
                ));
            }
            self.models.retain(|o| o.name != m.name);
            self.models.push(m.clone());
        }
    }

    /// Changes an inherited rule (one of the first `inherited`); a pack cannot override its own
    /// rules, nor rules no base defines.
    fn apply_override(&mut self, pack_name: &str, o: &RuleOverride, inherited: usize) {
        let Some(&i) = self.ids.get(&o.id).filter(|&&i| i < inherited) else {
            self.problems.push(Problem::new(
                pack_name,
                Some(&o.id),
                "override of a rule the base packs do not define",
            ));
            return;
        };
        let r = &mut self.rules[i];
        if let Some(v) = o.enabled {
            r.enabled = v;
        }
        if let Some(v) = o.severity {
            r.severity = v;
        }
        if let Some(v) = o.weight {
            if v > 100 {
                self.problems.push(Problem::new(
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

    /// Appends a pack's own rules. An id already taken is refused, with a hint to use
    /// `overrides` when a base pack took it.
    fn add_rules(&mut self, pack_name: &str, rules: &[Rule], inherited: usize) {
        for rule in rules {
            if let Some(&i) = self.ids.get(&rule.id) {
                let msg = if i < inherited {
                    "id is already defined by a base pack; change it with `overrides` instead"
                } else {
                    "duplicate rule id"
                };
                self.problems
                    .push(Problem::new(pack_name, Some(&rule.id), msg));
                continue;
            }
            self.ids.insert(rule.id.clone(), self.rules.len());
            self.rules.push(rule.clone());
        }
    }

    /// The resolved pack, or every problem found along the chain. A chain with no rules at all
    /// is refused too (only when nothing else is wrong, as it is often a consequence).
    fn finish(
        mut self,
        name: &str,
        chain: Vec<String>,
        specs: &[&RulePackSpec],
    ) -> Result<ResolvedPack, CompileError> {
        self.decoders.sort();
        self.decoders.dedup();
        if self.rules.is_empty() && self.problems.is_empty() {
            self.problems
                .push(Problem::new(name, None, "the pack has no rules"));
        }
        if !self.problems.is_empty() {
            return Err(CompileError::Invalid(self.problems));
        }
        Ok(ResolvedPack {
            name: name.to_string(),
            version: specs.last().map(|s| s.version.clone()).unwrap_or_default(),
            chain,
            normalization: self.normalization,
            decoders: self.decoders,
            decoder_limits: self.decoder_limits,
            rules: self.rules,
            models: self.models,
        })
    }
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
