//! A cheap "can this rule match here at all?" check for rules that count a wide class across a
//! gap, such as `\bgrandma\b.{0,250}?(?:steps\s+to|…)`.
//!
//! The lazy DFA that confirms such a rule tracks, inside the gap, how far each started match
//! has come; on every new text it builds new states for that, which made these rules the
//! costliest confirmations on new text (tens to hundreds of microseconds each), and most of
//! those confirmations end without a match: long prompts hold the rule's words, but in the
//! wrong order or too far apart.
//!
//! The check splits the rule where it crosses a gap, the way Hyperscan handles bounded
//! repeats. For each gap it finds every position where the piece before the gap can end and
//! every position where the piece after it can start, with small fully built DFAs that hold no
//! count, and asks whether some end and some later start lie within the gap's bounds with only
//! the gap's bytes between them. Every match of the rule crosses each of its gaps that way, so
//! when a gap cannot be crossed the rule cannot match, and its regex is not run. When the check
//! passes, the regex runs as before and finds the same matches: the check only ever skips a
//! search that would have found nothing.
//!
//! A rule is checked branch by branch: the alternatives of its top-level alternation, with an
//! alternation inside a sequence distributed over it. A branch passes when each gap of its
//! sequence can be crossed; a match of a branch without a gap is looked for directly (in the
//! same DFA as the pieces after gaps, or, when that does not fit, in a DFA of those branches
//! alone, or in a regex of them when neither fits). A rule gets no check (and is confirmed as
//! before) when no branch has a gap, when a gap is left only inside a repetition, or when a
//! DFA does not fit the budget.
//!
//! One DFA per direction serves every gap of a rule, so a check costs at most two passes over
//! the text, and usually one: the pieces after the gaps are looked for first, being usually
//! the rarer words, and without them the pass for the pieces before is skipped. When the rule's
//! own prefix prefilter is fast, the passes start at its first hit: a regex that skips to a
//! rare literal costs almost nothing on a text without it, and the check must not cost more.

use std::ops::Range;
use std::sync::Arc;

use regex_automata::dfa::{dense, Automaton, OverlappingState, StartKind};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::prefilter::Prefilter as PrefixFilter;
use regex_automata::{meta, Input, MatchKind, Span};
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::dfa_cache::{self, Dfa};
use crate::dfa_walk::match_starts;
use crate::gate::ByteSet;

/// A counted repetition is a gap when it may repeat at least this often…
const MIN_GAP: u32 = 8;
/// …a class of at least this many bytes: narrower classes (`\d{1,6}`) end the lazy DFA's
/// threads quickly and cost little.
const MIN_GAP_CLASS: usize = 128;
/// The largest DFA over one rule's pieces (one per direction). The pieces are word lists and
/// short shapes; when they do not fit, one holds a large class or a gap of its own, and the
/// rule goes unchecked.
const PIECE_DFA_LIMIT: usize = 1 << 20;
/// Compiled size limit of the gapless branches' regex (a rule regex's own default).
const GAPLESS_NFA_LIMIT: usize = crate::limits::DEFAULT_MAX_REGEX_COMPILED_BYTES;
/// Branches a rule is split into at most (see [`branches_of`]).
const MAX_BRANCHES: usize = 32;
/// Determinization work allowed for one piece (the builder stops there).
const DETERMINIZE_LIMIT: usize = 1 << 20;

/// The check of one rule. See the module docs.
#[derive(Debug)]
pub struct GapCheck {
    /// Forward DFA over the pieces before gaps, reporting every position where each ends.
    ends: Arc<Dfa>,
    /// Reverse DFA over the pieces after gaps, reporting every position where each starts,
    /// and, from pattern [`Self::gapless_from`] on, the branches without a gap in their
    /// sequence when they fit (a match of those is a match of the rule).
    starts: Arc<Dfa>,
    gapless_from: u32,
    /// The gapless branches that did not fit `starts`, searched on their own.
    gapless: Option<Gapless>,
    /// The rule's own prefix prefilter, when `regex-automata` judges it fast (a `memchr` or
    /// SIMD search for a few literals every match starts with): no match starts before its
    /// first hit, so the check's passes start there, or do not run at all.
    prefix: Option<PrefixFilter>,
    branches: Vec<Vec<Gap>>,
}

/// Where a rule's gapless branches go, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Placement {
    /// In the reverse DFA of the pieces after the gaps.
    Joined,
    /// In a forward DFA of their own ([`Gapless::Dfa`]).
    Alone,
    /// In a regex ([`Gapless::Regex`]). Only tests start here; a rule gets there when neither
    /// DFA fits.
    #[cfg(test)]
    Regex,
}

/// The gapless branches of a rule whose reverse DFA could not hold them with the pieces after
/// its gaps. They are searched wherever no gap can be crossed, so on the rule's every check of
/// a text that does not match (for a long text, in each of its windows).
#[derive(Debug)]
enum Gapless {
    /// A fully built forward DFA of the branches alone, searched until its first match. The
    /// sample bundle's one such rule (`pii-postal-address`) has one of 405 KiB, where the
    /// reverse DFA with the pieces after its gaps did not fit 1 MiB.
    Dfa(Arc<Dfa>),
    /// When that does not fit either: one regex. Its lazy DFA counts nothing wide, so it stays
    /// small on new text, but it builds states on each. The address rule's checks searched
    /// with it (in every window of a long prompt) took 189 µs of one 2,085-byte dev prompt's
    /// scan, timed in a scratch build; with the DFA that scan is 1.82 M instructions instead
    /// of 2.84 M.
    Regex(meta::Regex),
}

impl Gapless {
    fn is_match(&self, t: &[u8], window: Range<usize>) -> bool {
        let input = Input::new(t).range(window);
        match self {
            // No quit bytes are configured, so the search cannot fail; if it did, the branches
            // may match.
            Gapless::Dfa(dfa) => dfa
                .try_search_fwd(&input.earliest(true))
                .map_or(true, |m| m.is_some()),
            Gapless::Regex(re) => re.is_match(input),
        }
    }

    fn memory_usage(&self) -> usize {
        match self {
            Gapless::Dfa(dfa) => dfa.memory_usage(),
            Gapless::Regex(re) => re.memory_usage(),
        }
    }
}

/// One gap of a branch: the pieces on either side of it (patterns of `ends` and `starts`).
#[derive(Debug)]
struct Gap {
    before: u32,
    after: u32,
    /// The bytes the gap may hold.
    class: ByteSet,
    min: usize,
    max: usize,
}

/// Pieces of one direction, each once.
#[derive(Default, Clone)]
struct Pieces {
    hirs: Vec<Hir>,
    keys: Vec<String>,
}

impl Pieces {
    /// Adds `h` even when it is already there (its pattern id must be the next one).
    fn add(&mut self, h: Hir) {
        self.keys.push(h.to_string());
        self.hirs.push(h);
    }

    fn id(&mut self, h: Hir) -> u32 {
        let key = h.to_string();
        let at = self.keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            self.keys.push(key);
            self.hirs.push(h);
            self.keys.len() - 1
        });
        at as u32
    }
}

/// A match position a DFA reported: (pattern, offset).
type Hit = (u32, usize);

impl GapCheck {
    /// The check of a rule regex (parsed as the engine compiles it, see
    /// [`crate::atoms::parse`]), or `None` when the rule has no gap or its check does not fit
    /// `budget`, which is charged with the DFAs' memory.
    pub fn of(hir: &Hir, budget: &mut usize) -> Option<GapCheck> {
        GapCheck::placing(hir, budget, Placement::Joined)
    }

    /// [`GapCheck::of`], trying the gapless branches' placements from `first` on (the tests
    /// start past [`Placement::Joined`] to reach the others with small rules).
    fn placing(hir: &Hir, budget: &mut usize, first: Placement) -> Option<GapCheck> {
        if !contains_gap(hir) {
            return None;
        }
        let mut ends = Pieces::default();
        let mut starts = Pieces::default();
        let mut branches = Vec::new();
        let mut gapless = Vec::new();
        for seq in branches_of(hir) {
            let mut gaps = Vec::new();
            for (at, part) in seq.iter().enumerate() {
                let Some((class, min, max)) = as_gap(part) else {
                    continue;
                };
                let before = gapless_suffix(&Hir::concat(seq[..at].to_vec()));
                let after = gapless_prefix(&Hir::concat(seq[at + 1..].to_vec()));
                // A piece that matches the empty string ends (or starts) everywhere: no help.
                if before.properties().minimum_len() == Some(0)
                    || after.properties().minimum_len() == Some(0)
                {
                    continue;
                }
                gaps.push(Gap {
                    before: ends.id(before),
                    after: starts.id(after),
                    class,
                    min,
                    max,
                });
            }
            if gaps.is_empty() {
                // A gap left inside a repetition (or beside a piece that matches the empty
                // string): looking for this branch whole would cost what the rule's regex does.
                if seq.iter().any(contains_gap) {
                    return None;
                }
                gapless.push(Hir::concat(seq));
            } else {
                branches.push(gaps);
            }
        }
        if branches.is_empty() {
            return None;
        }
        let mut left = *budget;
        let gapless_from = starts.hirs.len() as u32;
        let mut with_gapless = starts.clone();
        for h in &gapless {
            with_gapless.add(h.clone());
        }
        let joined = if gapless.is_empty() || first > Placement::Joined {
            None
        } else {
            pieces_dfa(&with_gapless, true, &mut left)
        };
        let (starts, gapless) = match joined {
            Some(dfa) => (dfa, None),
            None => {
                let alone = if gapless.is_empty() {
                    None
                } else {
                    let mut pieces = Pieces::default();
                    for h in &gapless {
                        pieces.add(h.clone());
                    }
                    let alone = if first > Placement::Alone {
                        None
                    } else {
                        pieces_dfa(&pieces, false, &mut left)
                    };
                    match alone {
                        Some(dfa) => Some(Gapless::Dfa(dfa)),
                        None => {
                            let re = gapless_regex(Hir::alternation(gapless))?;
                            left = left.checked_sub(re.memory_usage())?;
                            Some(Gapless::Regex(re))
                        }
                    }
                };
                (pieces_dfa(&starts, true, &mut left)?, alone)
            }
        };
        let ends = pieces_dfa(&ends, false, &mut left)?;
        *budget = left;
        Some(GapCheck {
            ends,
            starts,
            gapless_from,
            gapless,
            prefix: PrefixFilter::from_hir_prefix(MatchKind::LeftmostFirst, hir)
                .filter(PrefixFilter::is_fast),
            branches,
        })
    }

    /// Whether the rule may match inside `window` of `t` (look-around at the window's edges
    /// sees the whole text). `false` means it cannot.
    pub fn may_match(&self, t: &[u8], window: Range<usize>) -> bool {
        let window = match &self.prefix {
            Some(p) => match p.find(t, Span::from(window.clone())) {
                Some(first) => first.start..window.end,
                None => return false,
            },
            None => window,
        };
        // Starts first: the words after a gap are usually the rarer ones, and without them
        // there is nothing to look for before.
        let Some(mut starts) = match_starts(&self.starts, t, window.clone()) else {
            return true;
        };
        if starts.iter().any(|&(p, _)| p >= self.gapless_from) {
            return true;
        }
        starts.reverse();
        let crossed = match starts.last() {
            // Every crossing ends at or before the last start.
            Some(&(_, last)) => match end_hits(&self.ends, t, window.start..last) {
                None => return true,
                Some(ends) => self
                    .branches
                    .iter()
                    .any(|gaps| gaps.iter().all(|g| g.crossable(t, &ends, &starts))),
            },
            None => false,
        };
        crossed || self.gapless.as_ref().is_some_and(|g| g.is_match(t, window))
    }

    /// Memory held by the check's automata (the gapless regex's lazy DFA caches are not
    /// counted: they are bounded per thread like every rule regex's).
    pub fn memory_usage(&self) -> usize {
        self.ends.memory_usage()
            + self.starts.memory_usage()
            + self.gapless.as_ref().map_or(0, Gapless::memory_usage)
            + self.prefix.as_ref().map_or(0, |p| p.memory_usage())
    }
}

impl Gap {
    /// Whether some end of the piece before and some start of the piece after lie `min..=max`
    /// bytes apart, in order, with only the gap's bytes between them. `ends` and `starts` are
    /// in ascending order of position.
    fn crossable(&self, t: &[u8], ends: &[Hit], starts: &[Hit]) -> bool {
        let mut ends = ends
            .iter()
            .filter(|&&(p, _)| p == self.before)
            .map(|&(_, i)| i)
            .peekable();
        let Some(&first) = ends.peek() else {
            return false;
        };
        // Every byte from `run_start` up to `scanned` is in the class.
        let mut run_start = first;
        let mut scanned = first;
        for j in starts
            .iter()
            .filter(|&&(p, _)| p == self.after)
            .map(|&(_, j)| j)
        {
            while scanned < j {
                if !self.class.contains(t[scanned]) {
                    run_start = scanned + 1;
                }
                scanned += 1;
            }
            let Some(hi) = j.checked_sub(self.min) else {
                continue;
            };
            let lo = run_start.max(j.saturating_sub(self.max));
            while ends.next_if(|&i| i < lo).is_some() {}
            if ends.peek().is_some_and(|&i| i <= hi) {
                return true;
            }
        }
        false
    }
}

/// Every (pattern, end) a forward DFA reports in `window`, in search order; `None` when the
/// search fails (then nothing can be concluded). (The reverse pass is [`match_starts`].)
fn end_hits(dfa: &Dfa, t: &[u8], window: Range<usize>) -> Option<Vec<Hit>> {
    let input = Input::new(t).range(window);
    let mut state = OverlappingState::start();
    let mut found = Vec::new();
    loop {
        dfa.try_search_overlapping_fwd(&input, &mut state).ok()?;
        match state.get_match() {
            Some(m) => found.push((m.pattern().as_u32(), m.offset())),
            None => return Some(found),
        }
    }
}

/// The regex of the gapless branches, compiled as rule regexes are.
fn gapless_regex(h: Hir) -> Option<meta::Regex> {
    meta::Regex::builder()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(false)
                .nfa_size_limit(Some(GAPLESS_NFA_LIMIT)),
        )
        .build_from_hir(&h)
        .ok()
}

/// One fully built DFA over `pieces` that reports every match end of each (every start,
/// `reverse`).
fn pieces_dfa(pieces: &Pieces, reverse: bool, budget: &mut usize) -> Option<Arc<Dfa>> {
    let limit = PIECE_DFA_LIMIT.min(*budget);
    if limit == 0 {
        return None;
    }
    let mut key = vec![if reverse {
        "gap pieces, reverse"
    } else {
        "gap pieces"
    }];
    key.extend(pieces.keys.iter().map(String::as_str));
    let dfa = dfa_cache::get_or_build(&key, limit, || {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .shrink(true)
                    .which_captures(WhichCaptures::None)
                    .reverse(reverse),
            )
            .build_many_from_hir(&pieces.hirs)
            .ok()?;
        dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Unanchored)
                    .byte_classes(true)
                    // A reverse search of a range that starts past 0 can read before the range
                    // when a state is accelerated (regex-automata 0.4.19 looks for the state's
                    // bytes in the whole text before the current position, then panics).
                    .accelerate(!reverse)
                    .dfa_size_limit(Some(limit))
                    .determinize_size_limit(Some(DETERMINIZE_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .ok()
    })?;
    *budget = budget.checked_sub(dfa.memory_usage())?;
    Some(dfa)
}

/// The branches of `h` as sequences: the alternatives of its top-level alternation, with each
/// alternation inside a sequence that holds a gap distributed over it (`a(?:b.{0,9}c|d)` is
/// `a b .{0,9} c` or `a d`), up to [`MAX_BRANCHES`]; past that, the rest stay as they are.
fn branches_of(h: &Hir) -> Vec<Vec<Hir>> {
    let mut done = Vec::new();
    let mut todo = vec![sequence(h)];
    while let Some(seq) = todo.pop() {
        let split = seq
            .iter()
            .position(|p| as_gap(p).is_none() && contains_gap(p) && alternatives(p).is_some());
        let room = MAX_BRANCHES.saturating_sub(done.len() + todo.len());
        match split.and_then(|at| Some((at, alternatives(&seq[at])?))) {
            Some((at, alts)) if alts.len() <= room => {
                for alt in alts {
                    let mut expanded = seq[..at].to_vec();
                    expanded.extend(sequence(alt));
                    expanded.extend_from_slice(&seq[at + 1..]);
                    todo.push(expanded);
                }
            }
            _ => done.push(seq),
        }
    }
    done
}

/// The alternatives of an alternation (through capture groups).
fn alternatives(h: &Hir) -> Option<&[Hir]> {
    match h.kind() {
        HirKind::Capture(c) => alternatives(&c.sub),
        HirKind::Alternation(alts) => Some(alts),
        _ => None,
    }
}

/// `h` as a sequence: the parts of a concatenation, with nested concatenations and capture
/// groups around them flattened.
fn sequence(h: &Hir) -> Vec<Hir> {
    match h.kind() {
        HirKind::Capture(c) => sequence(&c.sub),
        HirKind::Concat(parts) => parts.iter().flat_map(sequence).collect(),
        _ => vec![h.clone()],
    }
}

/// `(class, min, max)` when `h` is a gap: a wide class counted at least [`MIN_GAP`] times.
/// Only byte classes and ASCII classes, so that the count is a count of bytes.
fn as_gap(h: &Hir) -> Option<(ByteSet, usize, usize)> {
    let HirKind::Repetition(r) = h.kind() else {
        return None;
    };
    let max = r.max?;
    let ascii_or_bytes = match r.sub.kind() {
        HirKind::Class(Class::Bytes(_)) => true,
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().all(|r| r.end() <= '\x7f'),
        _ => false,
    };
    if !ascii_or_bytes || max < MIN_GAP {
        return None;
    }
    let class = ByteSet::of_hir(&r.sub);
    (class.len() >= MIN_GAP_CLASS).then_some((class, r.min as usize, max as usize))
}

/// Whether `h` counts a wide class across a gap anywhere (the rules [`GapCheck`] is for). Such a
/// rule's DFA tracks the count, so its fully built DFA is large, and trying to build it costs
/// determinization work up to whatever limit it is given.
pub(crate) fn contains_gap(h: &Hir) -> bool {
    if as_gap(h).is_some() {
        return true;
    }
    match h.kind() {
        HirKind::Capture(c) => contains_gap(&c.sub),
        HirKind::Repetition(r) => contains_gap(&r.sub),
        HirKind::Concat(xs) | HirKind::Alternation(xs) => xs.iter().any(contains_gap),
        _ => false,
    }
}

/// A pattern that matches a suffix of every match of `h` (ending where it ends), without a gap:
/// the parts of `h` after its last gap.
fn gapless_suffix(h: &Hir) -> Hir {
    gapless_end(h, true)
}

/// A pattern that matches a prefix of every match of `h` (starting where it starts), without a
/// gap: the parts of `h` before its first gap.
fn gapless_prefix(h: &Hir) -> Hir {
    gapless_end(h, false)
}

fn gapless_end(h: &Hir, suffix: bool) -> Hir {
    if !contains_gap(h) {
        return h.clone();
    }
    match h.kind() {
        HirKind::Capture(c) => gapless_end(&c.sub, suffix),
        HirKind::Alternation(alts) => {
            Hir::alternation(alts.iter().map(|a| gapless_end(a, suffix)).collect())
        }
        HirKind::Concat(parts) => {
            let mut kept = Vec::new();
            let ordered: Box<dyn Iterator<Item = &Hir>> = if suffix {
                Box::new(parts.iter().rev())
            } else {
                Box::new(parts.iter())
            };
            for p in ordered {
                if !contains_gap(p) {
                    kept.push(p.clone());
                    continue;
                }
                if as_gap(p).is_none() {
                    kept.push(gapless_end(p, suffix));
                }
                break;
            }
            if suffix {
                kept.reverse();
            }
            Hir::concat(kept)
        }
        // A gap, or a repetition holding one: the empty string ends and starts every match.
        _ => Hir::empty(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::atoms::parse;
    use crate::prefilter::tests::{noise, pattern};
    use proptest::prelude::*;
    use regex_automata::util::syntax;

    /// A random rule with a gap between two random patterns, sometimes as one branch of an
    /// alternation, and a text it matches.
    pub(crate) fn gapped() -> impl Strategy<Value = (String, String)> {
        let gap = (
            prop::sample::select(vec![".", "[^\\n]", "(?s:.)", "[^<>]"]),
            0usize..4,
            8usize..40,
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(class, min, max, fill, lazy)| {
                let lazy = if lazy { "?" } else { "" };
                let filled = min + fill.index(max - min + 1);
                (format!("{class}{{{min},{max}}}{lazy}"), "-".repeat(filled))
            });
        (pattern(), gap, pattern(), prop::option::of(pattern())).prop_map(
            |((a, ta), (gap, fill), (b, tb), other)| {
                let re = format!("(?:{a}){gap}(?:{b})");
                let text = format!("{ta}{fill}{tb}");
                match other {
                    Some((c, _)) => (format!("(?:{c})|{re}"), text),
                    None => (re, text),
                }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// A rule's gapless branch, searched on its own (a DFA, or a regex), is found wherever
        /// the rule's regex finds a match: on the whole text and on a window that is the match.
        #[test]
        fn gapless_branches_on_their_own_never_rule_out_a_match(
            (gapless, sample) in pattern(),
            (gapped, _) in gapped(),
            before in noise(),
            after in noise(),
            regex in any::<bool>(),
        ) {
            let re = format!("(?:{gapless})|{gapped}");
            let text = format!("{before}{sample}{after}");
            let mut budget = 4 << 20;
            let first = if regex { Placement::Regex } else { Placement::Alone };
            let Some(check) = parse(&re)
                .ok()
                .and_then(|h| GapCheck::placing(&h, &mut budget, first))
            else {
                return Ok(());
            };
            never_rules_out(&check, &re, &text)?;
        }

        /// Wherever the rule's regex finds a match, the check says it may match: on the whole
        /// text and on a window that is exactly the match.
        #[test]
        fn a_check_never_rules_out_a_match(
            (re, sample) in gapped(),
            before in noise(),
            after in noise(),
        ) {
            let text = format!("{before}{sample}{after}");
            let mut budget = 4 << 20;
            let Some(check) = parse(&re).ok().and_then(|h| GapCheck::of(&h, &mut budget)) else {
                return Ok(());
            };
            never_rules_out(&check, &re, &text)?;
        }
    }

    /// Wherever `re` (the rule `check` was built from) matches `text`, the check says it may:
    /// on the whole text and on a window that is exactly the match.
    fn never_rules_out(check: &GapCheck, re: &str, text: &str) -> Result<(), TestCaseError> {
        let t = text.as_bytes();
        let regex = meta::Regex::builder()
            .configure(meta::Config::new().utf8_empty(false))
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(re)
            .unwrap();
        let mut found = false;
        for m in regex.find_iter(t) {
            found = true;
            prop_assert!(
                check.may_match(t, m.range()),
                "{re:?} at {:?} of {text:?}",
                m.range()
            );
        }
        if found {
            prop_assert!(check.may_match(t, 0..t.len()), "{re:?} on {text:?}");
        }
        Ok(())
    }

    fn check(source: &str) -> GapCheck {
        let mut budget = 4 << 20;
        GapCheck::of(&parse(source).unwrap(), &mut budget).expect("a check")
    }

    fn may(c: &GapCheck, t: &str) -> bool {
        c.may_match(t.as_bytes(), 0..t.len())
    }

    /// The regex of the embedded sample packs' rule `id`.
    fn sample_rule(id: &str) -> String {
        let loaded = crate::bundle::load_embedded().expect("embedded samples load");
        loaded
            .packs
            .values()
            .flat_map(|p| &p.spec.rules)
            .find(|r| r.id.as_str() == id)
            .and_then(|r| match &r.matcher {
                crate::pack::Matcher::Regex(re) => Some(re.clone()),
                _ => None,
            })
            .expect("a regex rule of the sample packs")
    }

    #[test]
    fn gapless_branches_that_do_not_fit_with_the_pieces_get_a_dfa_of_their_own() {
        // Three gapless branches (a street address after `address:`, a German one, a Japanese
        // one) beside gapped ones.
        let c = check(&sample_rule("pii-postal-address"));
        assert!(
            matches!(c.gapless, Some(Gapless::Dfa(_))),
            "{:?}",
            c.gapless
        );
        // Each gapless branch is found by it (no gap of the rule can be crossed in these).
        for t in [
            "Please note my address: 221 Baker Street, thanks.",
            "Ich wohne jetzt in der Hauptstrasse 12, 10115 Berlin.",
            "\u{6771}\u{4eac}\u{90fd} 1\u{4e01}\u{76ee}2\u{756a}3\u{53f7}",
        ] {
            assert!(may(&c, t), "{t}");
        }
        for t in [
            "My address is unknown and I never moved.",
            "Send it to me when it is ready, 12 times over.",
        ] {
            assert!(!may(&c, t), "{t}");
        }
    }

    #[test]
    fn a_gap_is_crossed_only_in_order_within_its_bounds_and_class() {
        let c = check(r"(?i)\bgrandma\b.{0,20}?\bkeys\b");
        assert!(may(&c, "my grandma read me keys"));
        assert!(may(&c, "GRANDMA keys"));
        // Wrong order, too far, a newline in the gap, no boundary.
        assert!(!may(&c, "keys for my grandma"));
        assert!(!may(&c, "grandma said that she would read the keys"));
        assert!(!may(&c, "grandma\nkeys"));
        assert!(!may(&c, "grandmas keys"));
        // The nearest end and start need not be the pair that works.
        assert!(may(&c, "grandma keys grandma\nkeys"));
        assert!(may(&c, "grandma xxxxxxxxxxxxxxxxxxxxxxx grandma, keys"));
    }

    #[test]
    fn a_window_past_the_start_of_the_text_is_searched_within_itself() {
        // Found by the property test below: an accelerated reverse DFA read before the window.
        let c = check(r"(?:ignore).{0,8}(?:(?:ignore)(?:(?:(?i:prompt)){1,}))");
        let t = "the ignore--ignorePrompt";
        assert!(c.may_match(t.as_bytes(), 4..t.len()));
        assert!(!c.may_match(t.as_bytes(), 5..t.len()));
    }

    #[test]
    fn pieces_after_gaps_that_start_at_one_place_are_both_seen_there() {
        // The pieces after the gaps, `yz` and `y`, start at the same byte, and only the branch
        // of one of them crosses its gap (by exactly its minimum). The reverse search this
        // check used reported the second pattern of such a place one byte early, which made
        // that branch's gap one byte too short: the rule was skipped where it matched.
        for (rule, text) in [
            (r"x[^\n]{8}yz|w[^\n]{8}y", "w12345678yz"),
            (r"x[^\n]{8}y|w[^\n]{8}yz", "x12345678yz"),
            (r"x[^\n]{8}yz|w[^\n]{8}y", "x12345678yz"),
            (r"x[^\n]{8}y|w[^\n]{8}yz", "w12345678yz"),
        ] {
            let c = check(rule);
            assert!(regex::bytes::Regex::new(rule)
                .unwrap()
                .is_match(text.as_bytes()));
            assert!(may(&c, text), "{rule} on {text}");
        }
    }

    #[test]
    fn a_minimum_count_is_kept() {
        let c = check(r"ab[^\n]{5,30}cd");
        assert!(!may(&c, "ab1234cd"));
        assert!(may(&c, "ab12345cd"));
        assert!(may(&c, "ab1234cd ab12345cd"));
    }

    #[test]
    fn every_branch_is_checked_and_a_branch_without_a_gap_is_looked_for_whole() {
        let c = check(r"\bfoo\b.{0,40}\bbar\b|\bbaz\s+\d{3}\b");
        assert!(may(&c, "foo and bar"));
        assert!(may(&c, "baz 123"));
        assert!(!may(&c, "bar and foo, baz 12"));
    }

    #[test]
    fn rules_without_a_usable_gap_get_no_check() {
        let mut budget = 4 << 20;
        for s in [
            r"\bignore\s+previous\b",
            r"\d{1,6}\s+street",
            r"x.*y",
            // Its only gap is inside a repetition; the other branch has one of its own.
            r"(?:a.{0,20}b)+|c.{0,20}d",
        ] {
            assert!(
                GapCheck::of(&parse(s).unwrap(), &mut budget).is_none(),
                "{s}"
            );
        }
    }

    #[test]
    fn a_check_that_does_not_fit_the_budget_is_not_built() {
        let mut budget = 16;
        assert!(GapCheck::of(&parse(r"a.{0,20}b").unwrap(), &mut budget).is_none());
        assert_eq!(budget, 16);
    }

    #[test]
    fn nested_gaps_keep_their_outer_pieces() {
        // After the outer gap comes an alternation whose first branch has a gap of its own: the
        // piece after the outer gap is `\d` or `zz`.
        let c = check(r"\bhome\b[^\n]{0,30}(?:\d[^\n]{0,20}\bend\b|zz)");
        assert!(may(&c, "home is 7 then end"));
        assert!(may(&c, "home zz"));
        assert!(!may(&c, "home is far away"));
    }
}
