//! Which patterns of a set can match a text, without running them.
//!
//! The old engine ran every rule of a bundle as one big `RegexSet`. Its lazy DFA is fast on
//! text it has seen and slow on text it has not: with ~100 complex patterns in one union, every
//! new prompt makes it build new states, so real traffic (always new text) ran at a tenth of
//! the speed of a benchmark that repeated its input, and each thread's state cache grew toward
//! its cap.
//!
//! Now a set is split by what its patterns must contain ([`crate::atoms`]):
//! - patterns with atoms are found through one ASCII case-insensitive Aho–Corasick DFA over all
//!   atoms; a pattern whose atoms do not occur cannot match and is never run, and one whose
//!   atoms occur is a *candidate* the caller confirms with the pattern's own regex;
//! - patterns without atoms (character-class shapes: card numbers, IP addresses, encoded runs)
//!   are the *residual* ones, compiled ahead of time into fully built DFAs, so their cost per
//!   byte is a table lookup whatever text came before. They report exact matches, not
//!   candidates. A residual pattern whose DFA would not fit [`PATTERN_DFA_LIMIT`] falls back to
//!   a lazy DFA with a bounded cache (and [`Prefilter::lazy_patterns`] says which, for the
//!   pack lint).
//!
//! Both automata are immutable after compilation: scanning allocates only the candidate bit
//! set, and memory no longer grows with the variety of the traffic.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind as AcMatchKind};
use regex_automata::dfa::{dense, Automaton};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{meta, Input, MatchKind, PatternSet as MatchedSet};

use crate::atoms;

/// Memory the fully built residual DFAs of one pattern set may take. The sample bundle's
/// residual DFAs need well under 1 MiB; a pack that needs more is served by a lazy fallback and
/// told so by the lint.
pub const RESIDUAL_DFA_BUDGET: usize = 4 << 20;
/// Largest fully built DFA of one residual pattern.
pub const PATTERN_DFA_LIMIT: usize = 1 << 20;
/// Working memory determinization may use for one DFA; also bounds its build time.
const DETERMINIZE_LIMIT: usize = 4 << 20;
/// Residual DFAs at most this large are merged into one union.
const SMALL_DFA: usize = 16 << 10;
/// Lazy DFA cache of the fallback set (only packs whose shapes do not fit the budget use it).
const LAZY_DFA_SIZE: usize = 2 << 20;
/// Compiled-size limit of the fallback set.
const LAZY_SET_SIZE: usize = 16 << 20;

/// The patterns of one set that may match a text.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Patterns to confirm (their atoms occur) or already known to match.
    maybe: Vec<u64>,
    /// Patterns the residual DFA found to match: no confirmation needed.
    sure: Vec<u64>,
}

impl Candidates {
    fn new(len: usize) -> Self {
        let words = len.div_ceil(64);
        Candidates {
            maybe: vec![0; words],
            sure: vec![0; words],
        }
    }

    fn mark(bits: &mut [u64], i: usize) {
        if let Some(w) = bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Whether the residual DFA already proved that pattern `i` matches.
    pub fn is_sure(&self, i: usize) -> bool {
        self.sure
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.maybe.iter().all(|w| *w == 0)
    }

    /// Every pattern a candidate, none sure: what running without a prefilter means.
    pub(crate) fn all(len: usize) -> Self {
        let mut c = Candidates::new(len);
        for i in 0..len {
            Candidates::mark(&mut c.maybe, i);
        }
        c
    }

    /// Candidate pattern indices, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.maybe.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + bit)
            })
        })
    }
}

/// One use of an atom's bytes: the boundaries to check and the patterns it stands for.
#[derive(Debug)]
struct AtomUse {
    atom: atoms::Atom,
    patterns: Vec<usize>,
}

/// Which part of a text a residual automaton must search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Gate {
    /// All of it.
    Always,
    /// Every pattern needs an ASCII digit: a text without one skips the pass.
    Digit,
    /// Every pattern needs a digit and matches at most this many bytes: only the windows of
    /// that reach around the text's digits are searched (prose has few digits, so a card or
    /// phone number shape costs almost nothing on it).
    DigitWindow(usize),
}

impl Gate {
    fn of(source: &str) -> Gate {
        let Ok(hir) = atoms::parse(source) else {
            return Gate::Always;
        };
        if !atoms::hir_needs_digit(&hir) {
            return Gate::Always;
        }
        match hir.properties().maximum_len() {
            Some(len) => Gate::DigitWindow(len.max(1)),
            None => Gate::Digit,
        }
    }

    /// The least restrictive gate of a group.
    fn join(self, other: Gate) -> Gate {
        match (self, other) {
            (Gate::DigitWindow(a), Gate::DigitWindow(b)) => Gate::DigitWindow(a.max(b)),
            (a, b) => a.min(b),
        }
    }

    /// A coarse key for grouping small automata: same key, same kind of gate.
    fn key(self) -> u8 {
        match self {
            Gate::Always => 0,
            Gate::Digit => 1,
            Gate::DigitWindow(_) => 2,
        }
    }
}

/// The ranges of `t` a gate asks to search; empty when the text can be skipped.
fn gated_ranges(gate: Gate, t: &[u8], digits: &[usize]) -> Vec<Range<usize>> {
    match gate {
        Gate::Always => std::iter::once(0..t.len()).collect(),
        Gate::Digit if digits.is_empty() => Vec::new(),
        Gate::Digit => std::iter::once(0..t.len()).collect(),
        Gate::DigitWindow(len) => {
            // A match of at most `len` bytes that holds the digit at `d` lies in
            // [d + 1 - len, d + len); overlapping or touching windows merge.
            let mut out: Vec<Range<usize>> = Vec::new();
            for &d in digits {
                let w = (d + 1).saturating_sub(len)..(d + len).min(t.len());
                match out.last_mut() {
                    Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                    _ => out.push(w),
                }
            }
            out
        }
    }
}

/// An automaton over some residual patterns.
#[derive(Debug)]
enum Shapes {
    /// Fully built ahead of time.
    Dense(Box<dense::DFA<Vec<u32>>>),
    /// Did not fit [`PATTERN_DFA_LIMIT`]: a lazy DFA with a bounded cache.
    Lazy(meta::Regex),
}

/// Residual patterns searched together.
#[derive(Debug)]
struct ResidualDfa {
    shapes: Shapes,
    /// Pattern index in the set, by the automaton's own pattern id.
    patterns: Vec<usize>,
    gate: Gate,
}

impl ResidualDfa {
    fn pattern_len(&self) -> usize {
        self.patterns.len()
    }

    /// Adds the patterns that match inside `range` (look-around sees the whole text).
    fn which(&self, t: &[u8], range: Range<usize>, found: &mut MatchedSet) -> bool {
        let input = Input::new(t).range(range);
        match &self.shapes {
            Shapes::Dense(dfa) => dfa.try_which_overlapping_matches(&input, found).is_ok(),
            Shapes::Lazy(re) => {
                re.which_overlapping_matches(&input, found);
                true
            }
        }
    }
}

/// The prefilter of one pattern set.
#[derive(Debug)]
pub struct Prefilter {
    len: usize,
    atoms: Option<AhoCorasick>,
    /// For each automaton pattern (distinct atom bytes): the boundary checks it is used with,
    /// and the patterns each check belongs to.
    atom_patterns: Vec<Vec<AtomUse>>,
    residual: Vec<ResidualDfa>,
    /// Patterns without atoms, in order, with the size of the DFA each needs alone (`None`:
    /// too large, runs lazily).
    residual_patterns: Vec<(usize, Option<usize>)>,
}

/// Why a set's prefilter could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// A residual pattern does not compile even for the lazy set (its own error).
    Regex(String),
    /// The atom automaton could not be built (more atoms than the crate supports).
    Atoms(String),
}

impl Prefilter {
    /// Builds the prefilter of `sources` (patterns already validated one by one).
    pub fn build(sources: &[String]) -> Result<Prefilter, BuildError> {
        let mut atom_list: Vec<Vec<u8>> = Vec::new();
        let mut atom_patterns: Vec<Vec<AtomUse>> = Vec::new();
        let mut residual_patterns = Vec::new();
        for (i, src) in sources.iter().enumerate() {
            match atoms::atoms(src) {
                Some(list) => {
                    for a in list {
                        let j = match atom_list.iter().position(|x| *x == a.bytes) {
                            Some(j) => j,
                            None => {
                                atom_list.push(a.bytes.clone());
                                atom_patterns.push(Vec::new());
                                atom_list.len() - 1
                            }
                        };
                        let uses = &mut atom_patterns[j];
                        match uses.iter_mut().find(|u| u.atom == a) {
                            Some(u) => u.patterns.push(i),
                            None => uses.push(AtomUse {
                                atom: a,
                                patterns: vec![i],
                            }),
                        }
                    }
                }
                None => residual_patterns.push(i),
            }
        }
        let atoms = if atom_list.is_empty() {
            None
        } else {
            Some(
                case_insensitive_automaton(&atom_list)
                    .map_err(|e| BuildError::Atoms(e.to_string()))?,
            )
        };
        let (mut residual, lazy, sizes) = residual_dfas(sources, &residual_patterns);
        // The lazy ones, grouped by gate like the small DFAs.
        let mut groups: Vec<(Gate, Vec<usize>)> = Vec::new();
        for &p in &lazy {
            let g = Gate::of(&sources[p]);
            match groups.iter_mut().find(|(k, _)| k.key() == g.key()) {
                Some((k, members)) => {
                    *k = k.join(g);
                    members.push(p);
                }
                None => groups.push((g, vec![p])),
            }
        }
        for (gate, members) in groups {
            let pats: Vec<&str> = members.iter().map(|&i| sources[i].as_str()).collect();
            let re = meta::Regex::builder()
                .configure(
                    meta::Config::new()
                        .match_kind(MatchKind::All)
                        .nfa_size_limit(Some(LAZY_SET_SIZE))
                        .hybrid_cache_capacity(LAZY_DFA_SIZE),
                )
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .build_many(&pats)
                .map_err(|e| BuildError::Regex(e.to_string()))?;
            residual.push(ResidualDfa {
                shapes: Shapes::Lazy(re),
                patterns: members,
                gate,
            });
        }
        Ok(Prefilter {
            len: sources.len(),
            atoms,
            atom_patterns,
            residual,
            residual_patterns: sizes,
        })
    }

    /// The patterns that may match `t`.
    pub fn candidates(&self, t: &[u8]) -> Candidates {
        let mut c = Candidates::new(self.len);
        if let Some(ac) = &self.atoms {
            for m in ac.find_overlapping_iter(t) {
                let Some(uses) = self.atom_patterns.get(m.pattern().as_usize()) else {
                    continue;
                };
                for u in uses {
                    if u.atom.boundaries_hold(t, m.start(), m.end()) {
                        for &p in &u.patterns {
                            Candidates::mark(&mut c.maybe, p);
                        }
                    }
                }
            }
        }
        // Digit positions, found once and only if some gate asks for them.
        let mut digits: Option<Vec<usize>> = None;
        for r in &self.residual {
            let digits: &[usize] = if r.gate == Gate::Always {
                &[]
            } else {
                digits.get_or_insert_with(|| {
                    t.iter()
                        .enumerate()
                        .filter(|(_, b)| b.is_ascii_digit())
                        .map(|(i, _)| i)
                        .collect()
                })
            };
            let mut found = MatchedSet::new(r.pattern_len());
            let mut ok = true;
            for range in gated_ranges(r.gate, t, digits) {
                ok &= r.which(t, range, &mut found);
            }
            // No quit bytes are configured and every look-around is ASCII, so a search cannot
            // fail; if one ever did, every pattern of the group becomes a candidate to confirm,
            // which is slower but still exact.
            for (i, &p) in r.patterns.iter().enumerate() {
                let hit = regex_automata::PatternID::new(i).is_ok_and(|id| found.contains(id));
                if hit {
                    Candidates::mark(&mut c.maybe, p);
                    Candidates::mark(&mut c.sure, p);
                } else if !ok {
                    Candidates::mark(&mut c.maybe, p);
                }
            }
        }
        c
    }

    /// The candidates for `t`, or every pattern when `bypass` (the reference path the tests
    /// compare the prefilter against).
    pub(crate) fn select(&self, t: &[u8], bypass: bool) -> Candidates {
        if bypass {
            Candidates::all(self.len)
        } else {
            self.candidates(t)
        }
    }

    /// Patterns with no usable atom (they run on every text), each with the size of the fully
    /// built DFA it needs alone, or `None` when that exceeds [`PATTERN_DFA_LIMIT`] and it runs
    /// on a lazy DFA instead.
    pub fn residual_patterns(&self) -> &[(usize, Option<usize>)] {
        &self.residual_patterns
    }

    /// Residual patterns that did not fit the DFA budget and run on a lazy DFA.
    pub fn lazy_patterns(&self) -> Vec<usize> {
        self.residual_patterns
            .iter()
            .filter(|(_, size)| size.is_none())
            .map(|&(p, _)| p)
            .collect()
    }

    /// Bytes held by the fully built residual DFAs and the atom automaton.
    pub fn memory_usage(&self) -> usize {
        self.residual
            .iter()
            .map(|r| match &r.shapes {
                Shapes::Dense(d) => d.memory_usage(),
                Shapes::Lazy(_) => 0,
            })
            .sum::<usize>()
            + self.atoms.as_ref().map_or(0, AhoCorasick::memory_usage)
    }
}

/// An ASCII case-insensitive Aho–Corasick automaton reporting every occurrence (overlapping
/// search): a DFA, which scans 2–3× faster than the default, or the contiguous NFA when very
/// many patterns exceed the DFA's limits.
pub(crate) fn case_insensitive_automaton<P: AsRef<[u8]>>(
    patterns: &[P],
) -> Result<AhoCorasick, aho_corasick::BuildError> {
    let build = |kind| {
        AhoCorasick::builder()
            .kind(kind)
            .match_kind(AcMatchKind::Standard)
            .ascii_case_insensitive(true)
            .build(patterns)
    };
    build(Some(AhoCorasickKind::DFA)).or_else(|_| build(None))
}

/// Builds fully built DFAs over the residual patterns: one per pattern, except that the small
/// ones share a single union (one pass instead of many). A pattern whose DFA would exceed
/// [`PATTERN_DFA_LIMIT`], or the whole set's [`RESIDUAL_DFA_BUDGET`], is returned for the lazy
/// fallback. Counted repetitions in unanchored patterns (`[0-9]{13,19}` anywhere in the text)
/// are what make a DFA explode; those are the patterns that end up lazy.
type ResidualSplit = (Vec<ResidualDfa>, Vec<usize>, Vec<(usize, Option<usize>)>);

fn residual_dfas(sources: &[String], patterns: &[usize]) -> ResidualSplit {
    let mut built: Vec<ResidualDfa> = Vec::new();
    // Small DFAs are merged, by kind of gate so each union keeps its skip.
    let mut small: Vec<(Gate, Vec<usize>)> = Vec::new();
    let mut lazy = Vec::new();
    let mut sizes = Vec::new();
    let mut used = 0usize;
    for &p in patterns {
        let budget = PATTERN_DFA_LIMIT.min(RESIDUAL_DFA_BUDGET.saturating_sub(used));
        let dfa = dense_dfa(sources, &[p], budget);
        sizes.push((p, dfa.as_ref().map(|d| d.memory_usage())));
        let gate = Gate::of(&sources[p]);
        match dfa {
            Some(dfa) if dfa.memory_usage() <= SMALL_DFA => {
                match small.iter_mut().find(|(g, _)| g.key() == gate.key()) {
                    Some((g, members)) => {
                        *g = g.join(gate);
                        members.push(p);
                    }
                    None => small.push((gate, vec![p])),
                }
            }
            Some(dfa) => {
                used += dfa.memory_usage();
                built.push(ResidualDfa {
                    shapes: Shapes::Dense(Box::new(dfa)),
                    patterns: vec![p],
                    gate,
                });
            }
            None => lazy.push(p),
        }
    }
    for (gate, group) in small {
        let budget = PATTERN_DFA_LIMIT.min(RESIDUAL_DFA_BUDGET.saturating_sub(used));
        match dense_dfa(sources, &group, budget) {
            Some(dfa) => {
                used += dfa.memory_usage();
                built.push(ResidualDfa {
                    shapes: Shapes::Dense(Box::new(dfa)),
                    patterns: group,
                    gate,
                });
            }
            // Each fits alone (they were just built); together they do not: keep them apart.
            None => {
                for p in group {
                    match dense_dfa(sources, &[p], PATTERN_DFA_LIMIT) {
                        Some(dfa) => built.push(ResidualDfa {
                            shapes: Shapes::Dense(Box::new(dfa)),
                            patterns: vec![p],
                            gate: Gate::of(&sources[p]),
                        }),
                        None => lazy.push(p),
                    }
                }
            }
        }
    }
    lazy.sort_unstable();
    (built, lazy, sizes)
}

fn dense_dfa(sources: &[String], group: &[usize], budget: usize) -> Option<dense::DFA<Vec<u32>>> {
    if budget == 0 {
        return None;
    }
    let pats: Vec<&str> = group.iter().map(|&i| sources[i].as_str()).collect();
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .byte_classes(true)
                .dfa_size_limit(Some(budget))
                .determinize_size_limit(Some(DETERMINIZE_LIMIT)),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false).shrink(true))
        .build_many(&pats)
        .ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn set(sources: &[&str]) -> Prefilter {
        let s: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        Prefilter::build(&s).unwrap()
    }

    fn cands(p: &Prefilter, t: &str) -> Vec<usize> {
        p.candidates(t.as_bytes()).iter().collect()
    }

    #[test]
    fn atoms_select_candidates_and_residual_is_exact() {
        let p = set(&[
            r"(?i)\bignore\s+previous\s+instructions\b",
            r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
            r"(?i)system\s+prompt",
        ]);
        assert_eq!(p.residual_patterns().len(), 1);
        assert_eq!(p.residual_patterns()[0].0, 1);
        assert!(p.residual_patterns()[0].1.is_some_and(|n| n > 0));
        assert!(p.lazy_patterns().is_empty());
        assert!(cands(&p, "hello there").is_empty());
        // Atom present but the phrase is not: a candidate to confirm.
        let c = p.candidates(b"read the INSTRUCTIONS for the team");
        assert_eq!(c.iter().collect::<Vec<_>>(), [0]);
        assert!(!c.is_sure(0));
        // The residual DFA is exact: it reports only real matches, as sure.
        let c = p.candidates(b"ssn 078-05-1120 and 12-34");
        assert_eq!(c.iter().collect::<Vec<_>>(), [1]);
        assert!(c.is_sure(1));
        assert!(cands(&p, "ssn 078-05-112").is_empty());
    }

    #[test]
    fn digit_windows_cover_every_possible_match() {
        let t = b"ab 12 cdefghij 3 k";
        let digits: Vec<usize> = (0..t.len()).filter(|&i| t[i].is_ascii_digit()).collect();
        assert_eq!(
            gated_ranges(Gate::DigitWindow(3), t, &digits),
            [1..7, 13..18]
        );
        let whole = gated_ranges(Gate::DigitWindow(40), t, &digits);
        assert_eq!((whole.len(), whole.first()), (1, Some(&(0..18))));
        assert!(gated_ranges(Gate::Digit, b"none", &[]).is_empty());
        assert!(gated_ranges(Gate::DigitWindow(5), b"none", &[]).is_empty());
        assert_eq!(
            gated_ranges(Gate::Always, b"none", &[]).first(),
            Some(&(0..4))
        );
        // A window search still sees the context: `\b` before a match at a window's start.
        let p = set(&[r"\b[0-9]{2}\b"]);
        assert!(cands(&p, "x 12 y").contains(&0));
        assert!(cands(&p, "x a12 y").is_empty());
        assert!(cands(&p, "x 123 y").is_empty());
    }

    #[test]
    fn many_patterns_cross_word_boundaries() {
        let sources: Vec<String> = (0..130).map(|i| format!("token{i:03}x")).collect();
        let p = Prefilter::build(&sources).unwrap();
        assert_eq!(cands(&p, "a TOKEN129X and token000x"), [0, 129]);
    }

    #[test]
    fn over_budget_residuals_fall_back_to_lazy() {
        // Large counted repetitions of a class blow up a DFA; the set must still work.
        let big = r"[a-q][^u-z]{13}x";
        let p = set(&[big, r"\d{3}"]);
        assert!(p.memory_usage() <= RESIDUAL_DFA_BUDGET + (1 << 20));
        let t = format!("{}x", "ab".repeat(7));
        let c = p.candidates(t.as_bytes());
        assert!(c.iter().any(|i| i == 0));
        assert!(cands(&p, "123").contains(&1));
    }

    use proptest::prelude::*;
    use regex::bytes::RegexSetBuilder;

    /// A random pattern together with a string it matches: words (some case-folded), small
    /// classes, whitespace runs, optional parts, alternations, counted repetitions and word
    /// boundaries — the constructs the atom analysis reasons about.
    pub(crate) fn pattern() -> impl Strategy<Value = (String, String)> {
        let leaf = prop_oneof![
            prop::sample::select(vec![
                "ignore",
                "previous",
                "sk-",
                "AKIA",
                "@",
                "ab",
                "x",
                "the",
                "é",
                "[",
                "::",
                "instructions",
                "0x",
                "rm",
                "%",
            ])
            .prop_map(|w| (regex::escape(w), w.to_string())),
            prop::sample::select(vec!["Ignore", "SYSTEM", "Prompt"])
                .prop_map(|w| (format!("(?i:{})", w.to_lowercase()), w.to_string())),
            (0u8..10).prop_map(|d| ("[0-9]".to_string(), d.to_string())),
            Just((r"\s+".to_string(), "  ".to_string())),
            Just((r"[A-Za-z]{2,4}".to_string(), "Qz".to_string())),
            Just((r"\b".to_string(), String::new())),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(|parts| {
                    let re = parts.iter().map(|(r, _)| format!("(?:{r})")).collect();
                    let text = parts.iter().map(|(_, t)| t.as_str()).collect();
                    (re, text)
                }),
                (
                    prop::collection::vec(inner.clone(), 2..4),
                    any::<prop::sample::Index>()
                )
                    .prop_map(|(alts, pick)| {
                        let re = alts
                            .iter()
                            .map(|(r, _)| format!("(?:{r})"))
                            .collect::<Vec<_>>();
                        let chosen = alts[pick.index(alts.len())].1.clone();
                        (re.join("|"), chosen)
                    }),
                inner.clone().prop_map(|(r, t)| (format!("(?:{r})?"), t)),
                (inner.clone(), 1u32..4)
                    .prop_map(|((r, t), n)| { (format!("(?:{r}){{{n},}}"), t.repeat(n as usize)) }),
                (inner, 1u32..3)
                    .prop_map(|((r, t), n)| { (format!("(?:{r}){{{n}}}"), t.repeat(n as usize)) }),
            ]
        })
    }

    pub(crate) fn noise() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "ignore",
                "IGNORE",
                "previous",
                " ",
                "\n",
                "sk-",
                "akia",
                "4",
                "x",
                "é",
                "the",
                "Qz",
                "[",
                ":",
                "%",
                "0X",
                "rm -rf",
                "@",
                "instructions",
                "ab",
                "!",
            ]),
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Soundness: every pattern that matches a text is a candidate, and a pattern
        /// reported as sure really matches. (The prefilter decides which rules run; if it
        /// missed one, a verdict would change.)
        #[test]
        fn prefilter_never_loses_a_match(
            pats in prop::collection::vec(pattern(), 1..6),
            before in noise(),
            after in noise(),
            which in any::<prop::sample::Index>(),
            other in noise(),
        ) {
            let sources: Vec<String> = pats.iter().map(|(r, _)| r.clone()).collect();
            let Ok(reference) = RegexSetBuilder::new(&sources).unicode(false).build() else {
                return Ok(());
            };
            let p = Prefilter::build(&sources).unwrap();
            let planted = format!("{before}{}{after}", pats[which.index(pats.len())].1);
            for text in [planted, other] {
                let c = p.candidates(text.as_bytes());
                let cands: Vec<usize> = c.iter().collect();
                for m in reference.matches(text.as_bytes()).iter() {
                    prop_assert!(cands.contains(&m), "pattern {} ({:?}) matches {:?} but is not a candidate", m, sources[m], text);
                }
                for &i in &cands {
                    if c.is_sure(i) {
                        prop_assert!(reference.matches(text.as_bytes()).matched(i), "pattern {} reported sure on {:?}", i, text);
                    }
                }
            }
        }
    }
}
