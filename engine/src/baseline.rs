//! The bar the engine is measured against: a bare pass over a bundle's own rules with the same
//! crates and no engine around it — one `RegexSet` of every regex rule and one Aho–Corasick DFA
//! over every keyword, ASCII classes, no normalization, no decoders, no detectors' validation,
//! no scoring. It finds less than the engine (it is not a scanner), but it is the cost floor of
//! "run these rules over this text", so `pd-scanner eval --baseline` reports the engine's speed
//! as a share of it on the same texts in the same run.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::compile::CompiledPack;
use crate::pack::Matcher;

/// One `RegexSet` plus one Aho–Corasick automaton over a bundle's rules.
#[derive(Debug)]
pub struct BarePass {
    set: Option<RegexSet>,
    keywords: Option<AhoCorasick>,
}

impl BarePass {
    /// Built from the bundle's enabled regex and keyword rules.
    pub fn new(pack: &CompiledPack) -> Result<BarePass, String> {
        let mut regexes = Vec::new();
        let mut phrases = Vec::new();
        for r in pack.resolved.iter().flat_map(|p| &p.rules) {
            if !r.enabled {
                continue;
            }
            match &r.matcher {
                Matcher::Regex(s) => regexes.push(s.clone()),
                Matcher::Keywords(k) => phrases.extend(k.any.iter().chain(&k.all).cloned()),
                Matcher::Detector(_) | Matcher::Classifier(_) => {}
            }
        }
        let set = if regexes.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&regexes)
                    .unicode(false)
                    .size_limit(64 << 20)
                    .dfa_size_limit(128 << 20)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        let keywords = if phrases.is_empty() {
            None
        } else {
            // The crate's own overlapping iterator, as a user of it would write the pass.
            Some(
                AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::DFA))
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .build(&phrases)
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(BarePass { set, keywords })
    }

    /// Number of regex patterns that matched plus keyword occurrences: something the optimizer
    /// cannot discard.
    pub fn run(&self, text: &str) -> usize {
        let t = text.as_bytes();
        let mut n = 0;
        if let Some(set) = &self.set {
            n += set.matches(t).iter().count();
        }
        if let Some(ac) = &self.keywords {
            n += ac.find_overlapping_iter(t).count();
        }
        n
    }
}
