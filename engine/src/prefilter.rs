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
//!   ASCII atoms (and a second, small one over the atoms with other bytes, walked only over
//!   texts that have such a byte; see `AtomAutomata`); a pattern whose atoms do not occur
//!   cannot match and is never run, and one whose atoms occur is a *candidate* the caller
//!   confirms with the pattern's own regex;
//! - patterns without atoms (character-class shapes: card numbers, IP addresses, encoded runs)
//!   are the *residual* ones, compiled ahead of time into fully built DFAs, so their cost per
//!   byte is a table lookup whatever text came before. They report exact matches, not
//!   candidates. A residual pattern whose DFA would not fit [`PATTERN_DFA_LIMIT`] falls back to
//!   a lazy DFA with a bounded cache (and [`Prefilter::lazy_patterns`] says which, for the
//!   pack lint). Residual DFAs that search the whole text share unions where those fit, and
//!   a pattern that is one byte class repeated is a skipping run test ([`ByteRun`]) instead
//!   of a DFA (see `residual_dfas`).
//!
//! Both automata are immutable after compilation: scanning allocates only the candidate bit
//! set and a match set per group width, and memory no longer grows with the variety of the
//! traffic.

use std::ops::Range;
use std::sync::Arc;

use regex_automata::dfa::{dense, Automaton, OverlappingState, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{meta, Anchored, Input, MatchKind, PatternID, PatternSet as MatchedSet};
use serde::Serialize;

use crate::atoms;
use crate::byte_run::ByteRun;
use crate::dfa_cache;
use crate::dfa_walk;
use crate::gate::{Gate, GateSpec};
use crate::literals::Literals;
use crate::reach::Reach;

/// Memory the fully built residual DFAs of one pattern set may take, unions and their parts
/// included. The sample bundle's take about 1.9 MiB; a pack that needs more is served by a
/// lazy fallback and told so by the lint.
pub const RESIDUAL_DFA_BUDGET: usize = 4 << 20;
/// Largest fully built DFA of one residual pattern.
pub const PATTERN_DFA_LIMIT: usize = 1 << 20;
/// Working memory determinization may use for one DFA; also bounds its build time.
const DETERMINIZE_LIMIT: usize = 4 << 20;
/// A windowed residual DFA at most this large may share a union (one that runs on every text,
/// or one of windowed DFAs that look for the same bytes); a larger one keeps its own search.
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
    /// Where in the text each bounded candidate can match, by pattern (empty: anywhere).
    windows: Vec<Vec<Range<usize>>>,
    /// Bounded candidates with too many windows: confirmed on the whole text.
    whole: Vec<u64>,
    /// Atom occurrences of each unbounded candidate, turned into windows by its [`Reach`].
    occurrences: Vec<Vec<(usize, usize)>>,
    /// Patterns with anchors ([`atoms::anchors`]): where each can start is known.
    anchored: Vec<u64>,
    /// `(pattern, position)` of every place an anchored pattern can start, sorted once the
    /// automaton has run. (32 bits each: half the memory and sorting of `usize` pairs; a text
    /// past 4 GiB keeps none.)
    starts: Vec<(u32, u32)>,
    /// How many starts this scan may keep ([`starts_cap`]).
    max_starts: usize,
    /// More than `max_starts` starts: none are kept, and anchored patterns are searched as if
    /// they had none.
    too_many_starts: bool,
}

impl Candidates {
    fn new(len: usize) -> Self {
        let words = len.div_ceil(64);
        Candidates {
            maybe: vec![0; words],
            sure: vec![0; words],
            windows: Vec::new(),
            whole: Vec::new(),
            occurrences: Vec::new(),
            anchored: Vec::new(),
            starts: Vec::new(),
            max_starts: 0,
            too_many_starts: false,
        }
    }

    /// Records that anchored pattern `p` can start at `at`.
    fn add_start(&mut self, p: usize, at: usize) {
        if self.too_many_starts {
            return;
        }
        match (u32::try_from(p), u32::try_from(at)) {
            (Ok(p), Ok(at)) if self.starts.len() < self.max_starts => self.starts.push((p, at)),
            _ => {
                self.starts = Vec::new();
                self.too_many_starts = true;
            }
        }
    }

    /// Orders the starts by pattern, then position, without repeats. They arrive in order of
    /// the atom occurrences' ends, so each pattern's are nearly always in order already: a
    /// counting pass by pattern, then a sort of any pattern's run that is not.
    fn settle_starts(&mut self, patterns: usize) {
        if !self.starts.is_sorted() {
            let mut next = vec![0usize; patterns + 1];
            for &(p, _) in &self.starts {
                if let Some(n) = next.get_mut(p as usize + 1) {
                    *n += 1;
                }
            }
            for i in 1..next.len() {
                next[i] += next[i - 1];
            }
            let mut by_pattern = vec![(0, 0); self.starts.len()];
            for &(p, at) in &self.starts {
                if let Some(n) = next.get_mut(p as usize) {
                    if let Some(slot) = by_pattern.get_mut(*n) {
                        *slot = (p, at);
                    }
                    *n += 1;
                }
            }
            for run in by_pattern.chunk_by_mut(|a, b| a.0 == b.0) {
                if !run.is_sorted() {
                    run.sort_unstable();
                }
            }
            self.starts = by_pattern;
        }
        self.starts.dedup();
    }

    /// Withdraws every anchored candidate with no start: none of its matches can begin
    /// anywhere in the text.
    fn drop_unstarted(&mut self) {
        if self.too_many_starts {
            return;
        }
        let unstarted: Vec<usize> = self
            .iter()
            .filter(|&i| {
                bit(&self.anchored, i) && self.starts(i).is_some_and(|s| s.list.is_empty())
            })
            .collect();
        for i in unstarted {
            self.drop_candidate(i);
        }
    }

    /// Where candidate `i` can start, ascending: every match of it starts at one of these
    /// (none: it cannot match). `None` when that is not known (a pattern without anchors, or
    /// a text with too many starts): it is searched everywhere its windows allow.
    pub fn starts(&self, i: usize) -> Option<Starts<'_>> {
        if self.too_many_starts || !bit(&self.anchored, i) {
            return None;
        }
        let from = self.starts.partition_point(|&(p, _)| (p as usize) < i);
        let to = self.starts.partition_point(|&(p, _)| p as usize <= i);
        self.starts
            .get(from..to)
            .map(|list| Starts { list, dfa: None })
    }

    fn prepare_windows(&mut self, patterns: usize) {
        if self.windows.is_empty() {
            self.windows = vec![Vec::new(); patterns];
            self.whole = vec![0; patterns.div_ceil(64)];
            self.occurrences = vec![Vec::new(); patterns];
        }
    }

    /// Records an atom occurrence of unbounded pattern `p`.
    fn add_occurrence(&mut self, p: usize, start: usize, end: usize, patterns: usize) {
        self.prepare_windows(patterns);
        if bit(&self.whole, p) {
            return;
        }
        let Some(list) = self.occurrences.get_mut(p) else {
            return;
        };
        if list.len() >= MAX_OCCURRENCES {
            *list = Vec::new();
            Candidates::mark(&mut self.whole, p);
        } else {
            list.push((start, end));
        }
    }

    /// Turns the occurrences of each unbounded candidate into its windows.
    ///
    /// Not for an anchored pattern whose starts are known: they bound each of its searches
    /// already, and the walks cost more than the windows would save. (Its occurrences are kept
    /// until the starts are known: on a text with too many, the windows bound the search.)
    fn reach_windows(&mut self, t: &[u8], confirm: &[Confirm]) {
        for (p, occ) in self.occurrences.iter_mut().enumerate() {
            if occ.is_empty() {
                continue;
            }
            if !self.too_many_starts && bit(&self.anchored, p) {
                *occ = Vec::new();
                continue;
            }
            let windows = match confirm.get(p) {
                Some(Confirm::Reach(r)) => r.windows(t, occ),
                _ => None,
            };
            match (windows, self.windows.get_mut(p)) {
                (Some(w), Some(slot)) => *slot = w,
                _ => Candidates::mark(&mut self.whole, p),
            }
            *occ = Vec::new();
        }
    }

    /// Adds `w`, a range holding every match of pattern `p` around one atom occurrence.
    /// Occurrences arrive in order of their end, so a window starts at or after the previous
    /// one (when it does not, [`Candidates::settle_windows`] sorts).
    fn add_window(&mut self, p: usize, w: Range<usize>, patterns: usize) {
        self.prepare_windows(patterns);
        if bit(&self.whole, p) {
            return;
        }
        let Some(list) = self.windows.get_mut(p) else {
            return;
        };
        let full = list.len() >= MAX_WINDOWS;
        match list.last_mut() {
            Some(last) if w.start >= last.start && w.start <= last.end => {
                last.end = last.end.max(w.end)
            }
            _ if full => {
                *list = Vec::new();
                Candidates::mark(&mut self.whole, p);
            }
            _ => list.push(w),
        }
    }

    /// Sorts and merges any window list that arrived out of order.
    fn settle_windows(&mut self) {
        for list in &mut self.windows {
            if list.windows(2).all(|w| w[0].end < w[1].start) {
                continue;
            }
            list.sort_unstable_by_key(|w| w.start);
            let mut merged: Vec<Range<usize>> = Vec::with_capacity(list.len());
            for w in list.drain(..) {
                match merged.last_mut() {
                    Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                    _ => merged.push(w),
                }
            }
            *list = merged;
        }
    }

    /// The ranges of the text that hold every match of candidate `i`, in order and disjoint,
    /// or `None` when it must be searched everywhere. Look-around at a range's edges still
    /// sees the text outside it (search with [`find_in`]).
    pub fn windows(&self, i: usize) -> Option<&[Range<usize>]> {
        if bit(&self.whole, i) {
            return None;
        }
        self.windows
            .get(i)
            .filter(|w| !w.is_empty())
            .map(Vec::as_slice)
    }

    /// Withdraws candidate `p` (its factors are missing), with anything kept for its windows.
    fn drop_candidate(&mut self, p: usize) {
        if let Some(w) = self.maybe.get_mut(p / 64) {
            *w &= !(1 << (p % 64));
        }
        if let Some(w) = self.windows.get_mut(p) {
            *w = Vec::new();
        }
        if let Some(o) = self.occurrences.get_mut(p) {
            *o = Vec::new();
        }
    }

    /// Marks the patterns of a residual automaton (by its pattern ids) that its search
    /// `found`. No quit bytes are configured and every look-around is ASCII, so a search cannot
    /// fail; if one ever did (`None`), every pattern becomes a candidate to confirm, which is
    /// slower but still exact.
    fn mark_residual(&mut self, patterns: &[usize], found: Option<&MatchedSet>) {
        for (i, &p) in patterns.iter().enumerate() {
            match found {
                Some(f) if PatternID::new(i).is_ok_and(|id| f.contains(id)) => {
                    Candidates::mark(&mut self.maybe, p);
                    Candidates::mark(&mut self.sure, p);
                }
                Some(_) => {}
                None => Candidates::mark(&mut self.maybe, p),
            }
        }
    }

    fn mark(bits: &mut [u64], i: usize) {
        if let Some(w) = bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Whether the residual DFA already proved that pattern `i` matches.
    pub fn is_sure(&self, i: usize) -> bool {
        bit(&self.sure, i)
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

fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// Where one anchored candidate can start (see [`Candidates::starts`]), and what searches
/// from there.
#[derive(Debug, Clone, Copy)]
pub struct Starts<'a> {
    list: &'a [(u32, u32)],
    /// The pattern's [`AnchoredDfa`], if it has one (else its regex searches).
    dfa: Option<&'a AnchoredDfa>,
}

impl<'a> Starts<'a> {
    /// The positions, ascending and distinct.
    pub fn positions(self) -> impl Iterator<Item = usize> + 'a {
        self.list.iter().map(|&(_, at)| at as usize)
    }

    /// The same starts, searched from by `dfa` ([`Prefilter::anchored_dfa`]).
    pub fn searched_by(self, dfa: Option<&'a AnchoredDfa>) -> Self {
        Starts { dfa, ..self }
    }
}

/// Starts a scan keeps, all patterns together, at least; beyond [`starts_cap`], anchored
/// patterns are searched as if they had no anchors, which bounds what a hostile text can make a
/// scan hold.
const MIN_STARTS: usize = 4096;
/// Text bytes per start kept beyond [`MIN_STARTS`]: 8 bytes per start, so at most two bytes per
/// text byte (512 KiB for a 256 KiB prompt).
///
/// Why the cap grows with the text: a long benign text has starts in proportion to its length
/// (a common word that opens a rule), and losing them all made every anchored candidate search
/// unanchored, two of them over the whole of a 256 KiB prose text (33.6-34.9 -> 42.0-44.1 MB/s
/// with this cap; len/16 gave 38.4).
const TEXT_BYTES_PER_START: usize = 4;

/// How many starts a scan of `len` bytes keeps.
fn starts_cap(len: usize) -> usize {
    MIN_STARTS.max(len / TEXT_BYTES_PER_START)
}

/// Texts shorter than this are confirmed whole: a window would cover most of them anyway.
const MIN_WINDOWED_TEXT: usize = 2048;
/// Atom occurrences kept per unbounded pattern; beyond, it is confirmed on the whole text. With
/// [`MAX_WINDOWS`] this bounds what a scan holds for windows: 16 bytes per occurrence or window,
/// at most about 1.6 MB for a hundred candidate rules on a hostile text.
const MAX_OCCURRENCES: usize = 1024;
/// Windows kept per pattern; a pattern whose atoms occur more often, spread out, is confirmed
/// on the whole text (one pass), which bounds the memory a hostile text can make a scan use.
const MAX_WINDOWS: usize = 1024;

/// The matches of `re` in `t`, as `re.find_iter(t)` reports them, searching only `windows`
/// when given (ranges that hold every match, from [`Candidates::windows`]): a match lies
/// entirely inside one window, and windows are disjoint and in order, so the matches come out
/// the same and in the same order. Look-around at a window's edge sees the whole text.
pub fn find_in<'a>(
    re: &'a meta::Regex,
    t: &'a [u8],
    windows: Option<&'a [Range<usize>]>,
) -> impl Iterator<Item = regex_automata::Match> + 'a {
    let (whole, listed) = match windows {
        Some(w) => (None, w),
        None => (Some(0..t.len()), &[][..]),
    };
    whole
        .into_iter()
        .chain(listed.iter().cloned())
        .flat_map(move |w| re.find_iter(Input::new(t).range(w)))
}

/// The matches of `re` in `t` (in `windows` of it, or all of it) that start at `starts`, in
/// order, as [`find_in`] reports them when every match starts at one of `starts`: at each
/// start not inside the previous match, an anchored search, which follows only the paths a
/// match from there takes and needs no reverse pass to find where the match began. The search
/// runs the starts' [`AnchoredDfa`] when they have one, else `re`'s lazy DFA, which builds no
/// states for the text around the start but does for each new path from it.
pub fn find_anchored<'a>(
    re: &'a meta::Regex,
    t: &'a [u8],
    windows: Option<&'a [Range<usize>]>,
    starts: Starts<'a>,
) -> impl Iterator<Item = regex_automata::Match> + 'a {
    let whole = std::slice::from_ref(&ALL);
    let windows = windows.unwrap_or(whole);
    let mut w = 0;
    let mut next = 0;
    starts.positions().filter_map(move |at| {
        // The window holding `at`, if any (windows and starts both ascend).
        while windows.get(w).is_some_and(|r| r.end.min(t.len()) <= at) {
            w += 1;
        }
        let window = windows.get(w)?;
        if at < window.start || at < next {
            return None;
        }
        let end = window.end.min(t.len());
        let input = Input::new(t).range(at..end).anchored(Anchored::Yes);
        // The DFA has no quit bytes (ASCII word boundaries), so it cannot fail; were it to,
        // the regex answers instead.
        let m = match starts.dfa.map(|d| d.try_search_fwd(&input)) {
            Some(Ok(Some(end))) => regex_automata::Match::new(end.pattern(), at..end.offset()),
            Some(Ok(None)) => return None,
            _ => re.search(&input)?,
        };
        next = m.end().max(at + 1);
        Some(m)
    })
}

/// The matches of `re` in `t` (in `windows` of it, or all of it), as [`find_in`] reports
/// them, searched from `starts` when those are known (see [`find_anchored`]).
pub fn find<'a>(
    re: &'a meta::Regex,
    t: &'a [u8],
    windows: Option<&'a [Range<usize>]>,
    starts: Option<Starts<'a>>,
) -> impl Iterator<Item = regex_automata::Match> + 'a {
    let (mut anchored, mut everywhere) = match starts {
        Some(s) => (Some(find_anchored(re, t, windows, s)), None),
        None => (None, Some(find_in(re, t, windows))),
    };
    std::iter::from_fn(move || match (&mut anchored, &mut everywhere) {
        (Some(a), _) => a.next(),
        (_, Some(e)) => e.next(),
        (None, None) => None,
    })
}

/// A window over any text: [`find_anchored`] without windows.
const ALL: Range<usize> = 0..usize::MAX;

/// Where a candidate with atoms is confirmed on a long text.
#[derive(Debug)]
enum Confirm {
    /// Everywhere (no atoms, or no useful reach).
    Whole,
    /// Matches are at most this long: in the windows of that reach around each occurrence.
    Bounded(usize),
    /// Unbounded matches: in the windows the reach walk finds around each occurrence.
    Reach(Reach),
}

impl Confirm {
    fn of(source: &str) -> Confirm {
        let Ok(hir) = atoms::parse(source) else {
            return Confirm::Whole;
        };
        match hir.properties().maximum_len() {
            Some(len) => Confirm::Bounded(len),
            None => Reach::of(&hir).map_or(Confirm::Whole, Confirm::Reach),
        }
    }
}

/// One use of an atom's bytes: the boundaries to check, the patterns it stands for, and the
/// factors it is an atom of (see [`Requirements`]).
#[derive(Debug)]
struct AtomUse {
    atom: atoms::Atom,
    patterns: Vec<usize>,
    /// `(branch slot, factor bit)` of every factor this atom belongs to.
    factors: Vec<(usize, u32)>,
    /// `(pattern, offset)` of every pattern this atom anchors: such a pattern can start
    /// `offset` bytes before each occurrence ([`atoms::Anchor`]).
    anchors: Vec<(usize, usize)>,
}

const _: () = assert!(atoms::MAX_FACTORS <= u32::BITS as usize);

/// The factors of the patterns whose branches need more than one atom
/// ([`atoms::requirements`]): a candidate none of whose branches has an atom of every factor
/// in the text cannot match, and is dropped before any search.
#[derive(Debug, Default)]
struct Requirements {
    /// Patterns with factors, each with its branches' slots.
    patterns: Vec<(usize, Range<usize>)>,
    /// For each branch slot: the bits of all its factors (at most [`atoms::MAX_FACTORS`]).
    full: Vec<u32>,
}

impl Requirements {
    /// Unmarks the candidates that `seen` (factor bits by branch slot) shows cannot match.
    fn drop_unmet(&self, seen: &[u32], c: &mut Candidates) {
        for (p, slots) in &self.patterns {
            if !bit(&c.maybe, *p) {
                continue;
            }
            let met = slots
                .clone()
                .any(|s| matches!((seen.get(s), self.full.get(s)), (Some(a), Some(f)) if a == f));
            if !met {
                c.drop_candidate(*p);
            }
        }
    }
}

/// An automaton over some residual patterns.
#[derive(Debug)]
enum Shapes {
    /// One pattern that is a byte class repeated: a skipping run test, no automaton.
    Run(ByteRun),
    /// One pattern, fully built ahead of time.
    Dense(Arc<dense::DFA<Vec<u32>>>),
    /// Several patterns: their union, and each pattern's own DFA (in pattern id order) for
    /// texts on which the union cannot stop early (see [`union_which`]).
    Union {
        all: Arc<dense::DFA<Vec<u32>>>,
        parts: Vec<Arc<dense::DFA<Vec<u32>>>>,
    },
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

    /// The one DFA this group's pass runs, unless it is a run test or lazy.
    fn whole_text_dfa(&self) -> Option<&dense::DFA<Vec<u32>>> {
        match &self.shapes {
            Shapes::Dense(dfa) | Shapes::Union { all: dfa, .. } => Some(dfa),
            Shapes::Run(_) | Shapes::Lazy(_) => None,
        }
    }

    /// Adds the patterns that match inside `range` (look-around sees the whole text).
    fn which(&self, t: &[u8], range: Range<usize>, found: &mut MatchedSet) -> bool {
        let input = Input::new(t).range(range.clone());
        match &self.shapes {
            // No look-around: the run lies inside the range.
            Shapes::Run(run) => {
                if t.get(range).is_some_and(|r| run.is_in(r)) {
                    found.insert(PatternID::ZERO);
                }
                true
            }
            // One pattern: whether it matches at all, which the DFA's plain forward search
            // answers at the first match end, in its faster non-overlapping loop.
            Shapes::Dense(dfa) => match dfa.try_search_fwd(&input.earliest(true)) {
                Ok(Some(m)) => {
                    found.insert(m.pattern());
                    true
                }
                Ok(None) => true,
                Err(_) => false,
            },
            Shapes::Union { all, parts } => union_which(all, parts, &input, found),
            Shapes::Lazy(re) => {
                re.which_overlapping_matches(&input, found);
                true
            }
        }
    }
}

/// Matches of patterns already found a union may report, one per this many bytes searched
/// (plus [`UNION_REPEATS_MIN`]), before its patterns not found yet are searched alone instead
/// (in [`union_which`], and for a union walked with another, see `dfa_walk::which_all`).
/// A reported match costs about as much as a dozen bytes of the pass (measured here: 20 ns
/// against 1.7 ns per byte), so at this rate the reports at most about double the union's
/// pass. A member matching once a word (`base64` for the leetspeak gate) stays well under it,
/// where falling back would cost a whole pass for each member not found; a member matching at
/// every byte (a run of digits) reaches it within the first sixteenth of the text.
const UNION_REPEATS_PER_BYTES: usize = 16;
const UNION_REPEATS_MIN: usize = 32;

/// The repeated matches a union may report over `len` bytes (see [`UNION_REPEATS_PER_BYTES`]).
fn union_repeats(len: usize) -> usize {
    UNION_REPEATS_MIN + len / UNION_REPEATS_PER_BYTES
}

/// Adds the patterns of a union that match `input`.
///
/// The union's overlapping search reports every match, and it can only stop once every
/// pattern has matched. A single pattern's search stops at its first match. On text where one
/// pattern matches at almost every byte (a run of digits for the IP and phone shapes) and
/// another never does, the union would report a match per byte to the end of the text, several
/// times slower than the separate searches it replaced. So the union stops after as many
/// repeated matches (of patterns it has already found) as one per [`UNION_REPEATS_PER_BYTES`]
/// bytes, and the patterns not found yet run alone, each stopping at its first match: at worst
/// the cost of the separate searches, plus a bounded prefix.
fn union_which(
    all: &dense::DFA<Vec<u32>>,
    parts: &[Arc<dense::DFA<Vec<u32>>>],
    input: &Input<'_>,
    found: &mut MatchedSet,
) -> bool {
    let limit = union_repeats(input.get_span().len());
    let mut repeats = 0;
    let mut state = OverlappingState::start();
    loop {
        if all.try_search_overlapping_fwd(input, &mut state).is_err() {
            return false;
        }
        let Some(m) = state.get_match() else {
            return true;
        };
        if !found.insert(m.pattern()) {
            repeats += 1;
            if repeats > limit {
                break;
            }
        }
        if found.len() == parts.len() {
            return true;
        }
    }
    search_parts(parts, input, found)
}

/// Adds the patterns of a union not in `found` yet that match `input`, each searched alone by
/// its own DFA (`parts`, in pattern id order), stopping at its first match.
fn search_parts(
    parts: &[Arc<dense::DFA<Vec<u32>>>],
    input: &Input<'_>,
    found: &mut MatchedSet,
) -> bool {
    let single = input.clone().earliest(true);
    for (i, part) in parts.iter().enumerate() {
        let Ok(id) = PatternID::new(i) else {
            return false;
        };
        if found.contains(id) {
            continue;
        }
        match part.try_search_fwd(&single) {
            Ok(Some(_)) => {
                found.insert(id);
            }
            Ok(None) => {}
            Err(_) => return false,
        }
    }
    true
}

/// The prefilter of one pattern set.
#[derive(Debug)]
pub struct Prefilter {
    len: usize,
    atoms: Option<AtomAutomata>,
    /// For each distinct atom (the ASCII ones first, see [`AtomAutomata`]): the boundary
    /// checks it is used with, and the patterns each check belongs to.
    atom_patterns: Vec<Vec<AtomUse>>,
    /// How each pattern with atoms is confirmed on a long text.
    confirm: Vec<Confirm>,
    requirements: Requirements,
    /// Patterns with anchors, as bits.
    anchored: Vec<u64>,
    /// By pattern: its [`AnchoredDfa`], for an anchored pattern whose DFA fits.
    anchored_dfas: Vec<Option<Arc<AnchoredDfa>>>,
    residual: Vec<ResidualDfa>,
    /// Patterns without atoms, in order, with how each runs.
    residual_patterns: Vec<(usize, Residual)>,
}

/// The automata over a set's atoms. Atoms with a byte past ASCII (the samples' non-English
/// phrases) have an automaton of their own, walked only over texts that hold such a byte:
/// they can occur nowhere else. In one automaton with the others they doubled its transition
/// table (each distinct byte they use is a column of every state's row; 6.6 against 3.2 MiB
/// for the sample bundle), and the walk of every text, ASCII or not, is bound by the latency
/// of that table's loads.
#[derive(Debug)]
struct AtomAutomata {
    /// Over the atoms of ASCII bytes, which are the first `ascii_len` entries of the uses.
    ascii: Option<Literals>,
    /// Over the other atoms: automaton pattern `i` is entry `ascii_len + i` of the uses.
    other: Option<Literals>,
    ascii_len: usize,
}

impl AtomAutomata {
    /// Calls `f` with the index (into the uses) and position of every atom occurrence in
    /// `t`: the ASCII atoms' in text order, then the others' in text order.
    #[inline(always)]
    fn for_each(&self, t: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        if let Some(ascii) = &self.ascii {
            ascii.for_each(t, |m| f(m.literal, m.start, m.end));
        }
        if let Some(other) = &self.other {
            if !t.is_ascii() {
                other.for_each(t, |m| f(self.ascii_len + m.literal, m.start, m.end));
            }
        }
    }

    fn memory_usage(&self) -> usize {
        [&self.ascii, &self.other]
            .into_iter()
            .flatten()
            .map(Literals::memory_usage)
            .sum()
    }
}

/// The atoms of a set's patterns, each distinct byte string once (one automaton pattern), with
/// every use of it: patterns sharing an atom share its occurrences.
#[derive(Default)]
struct AtomIndex {
    /// Distinct atom bytes, in the order first seen: the automaton's patterns.
    bytes: Vec<Vec<u8>>,
    /// For each entry of `bytes`: its uses, one per distinct boundary check.
    uses: Vec<Vec<AtomUse>>,
}

/// Atoms of at most this many bytes are searched with the white space at their edges (see
/// [`padded`]). Two bytes take nearly all the gain: on the sample bundle, scan instructions
/// on the development corpus 379.4 -> 364.4 M at 2 bytes (363.1 M at 4), on 256 KiB of prose
/// -5.6 % either way, while the ASCII atom automaton grows 3.04 -> 3.20 MB (4.25 MB at 4).
const PADDED_ATOM_LEN: usize = 2;

/// The literals the automaton searches for `atom`, each as an atom with how many bytes were
/// put before it. A short atom with white space at an edge (`\ba\s`, `\sor\b`) is searched as
/// six literals, one per white-space byte on that side (`a `, `a\t`, …), and the edge is no
/// longer checked: that byte is part of every match (see [`atoms::Edge::Space`]). Searched
/// bare, such an atom occurs inside most words (`a` in every `a` of the text) and each
/// occurrence was reported, looked up and checked to be thrown away: on the development
/// corpus the atom `a` alone made 27 % of all occurrences, and 95 % of them failed their
/// edges.
fn padded(atom: atoms::Atom) -> Vec<(atoms::Atom, usize)> {
    use atoms::Edge;
    let short = atom.bytes.len() <= PADDED_ATOM_LEN;
    let (after, before) = (atom.after == Edge::Space, atom.before == Edge::Space);
    let mut out = vec![(atom, 0)];
    if short && after {
        out = with_each_space(out, |a, space| {
            a.bytes.push(space);
            a.after = Edge::Any;
            0
        });
    }
    if short && before {
        out = with_each_space(out, |a, space| {
            a.bytes.insert(0, space);
            a.before = Edge::Any;
            1
        });
    }
    out
}

/// Each atom of `list` six times, `pad` giving each copy one white-space byte and saying how
/// many bytes it put before the atom.
fn with_each_space(
    list: Vec<(atoms::Atom, usize)>,
    pad: impl Fn(&mut atoms::Atom, u8) -> usize,
) -> Vec<(atoms::Atom, usize)> {
    list.into_iter()
        .flat_map(|(a, shift)| {
            atoms::SPACE.map(|space| {
                let mut a = a.clone();
                let put = pad(&mut a, space);
                (a, shift + put)
            })
        })
        .collect()
}

impl AtomIndex {
    /// Notes that `pattern` is found through `atom`.
    fn add(&mut self, pattern: usize, atom: atoms::Atom) {
        for (atom, _) in padded(atom) {
            self.use_of(atom).patterns.push(pattern);
        }
    }

    /// Notes that `pattern` can start `anchor.offset` bytes before each occurrence of its atom.
    fn add_anchor(&mut self, pattern: usize, anchor: atoms::Anchor) {
        for (atom, shift) in padded(anchor.atom.clone()) {
            // White space before the atom is part of the match, so the match starts at or
            // before it; were it not, the anchor is kept as it was.
            let (atom, offset) = match anchor.offset.checked_sub(shift) {
                Some(offset) => (atom, offset),
                None => (anchor.atom.clone(), anchor.offset),
            };
            let anchors = &mut self.use_of(atom).anchors;
            if !anchors.contains(&(pattern, offset)) {
                anchors.push((pattern, offset));
            }
        }
    }

    /// Notes that `atom` is an atom of factor `bit` of branch slot `slot`.
    fn add_factor(&mut self, slot: usize, bit: u32, atom: atoms::Atom) {
        for (atom, _) in padded(atom) {
            let factors = &mut self.use_of(atom).factors;
            if !factors.contains(&(slot, bit)) {
                factors.push((slot, bit));
            }
        }
    }

    /// The use of `atom`'s bytes with its boundary checks, added if new.
    fn use_of(&mut self, atom: atoms::Atom) -> &mut AtomUse {
        let j = match self.bytes.iter().position(|x| *x == atom.bytes) {
            Some(j) => j,
            None => {
                self.bytes.push(atom.bytes.clone());
                self.uses.push(Vec::new());
                self.bytes.len() - 1
            }
        };
        let uses = &mut self.uses[j];
        let k = match uses.iter().position(|u| u.atom == atom) {
            Some(k) => k,
            None => {
                uses.push(AtomUse {
                    atom,
                    patterns: Vec::new(),
                    factors: Vec::new(),
                    anchors: Vec::new(),
                });
                uses.len() - 1
            }
        };
        &mut uses[k]
    }

    /// The automata over every atom, and the uses in the order they number them (ASCII
    /// atoms first); `None` when no pattern has atoms.
    fn automata(self) -> Result<(Option<AtomAutomata>, Vec<Vec<AtomUse>>), BuildError> {
        if self.bytes.is_empty() {
            return Ok((None, self.uses));
        }
        let (ascii, other): (Vec<_>, Vec<_>) = self
            .bytes
            .into_iter()
            .zip(self.uses)
            .partition(|(b, _)| b.is_ascii());
        let build = |atoms: &[(Vec<u8>, Vec<AtomUse>)]| {
            if atoms.is_empty() {
                return Ok(None);
            }
            let bytes: Vec<&[u8]> = atoms.iter().map(|(b, _)| b.as_slice()).collect();
            Literals::new(&bytes)
                .map(Some)
                .map_err(|e| BuildError::Atoms(e.to_string()))
        };
        let automata = AtomAutomata {
            ascii: build(&ascii)?,
            other: build(&other)?,
            ascii_len: ascii.len(),
        };
        let uses = ascii.into_iter().chain(other).map(|(_, u)| u).collect();
        Ok((Some(automata), uses))
    }
}

/// The residual patterns too large for a DFA of their own (`lazy`), grouped by gate like the
/// small DFAs, so one lazy search serves every pattern a gate lets through.
fn lazy_groups(sources: &[String], lazy: &[usize]) -> Vec<(GateSpec, Vec<usize>)> {
    let mut groups: Vec<(GateSpec, Vec<usize>)> = Vec::new();
    for &p in lazy {
        let g = GateSpec::of(&sources[p]);
        match groups.iter_mut().find(|(k, _)| k.shares_pass_with(g)) {
            Some((k, members)) => {
                *k = k.join(g);
                members.push(p);
            }
            None => groups.push((g, vec![p])),
        }
    }
    groups
}

/// One group of lazy patterns as a lazy DFA with a bounded cache, so a set too large to build
/// ahead of time still costs bounded memory.
fn lazy_residual(
    sources: &[String],
    gate: GateSpec,
    members: Vec<usize>,
) -> Result<ResidualDfa, BuildError> {
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
    Ok(ResidualDfa {
        shapes: Shapes::Lazy(re),
        patterns: members,
        gate: gate.build(),
    })
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
        let mut index = AtomIndex::default();
        let mut residual_patterns = Vec::new();
        let mut confirm: Vec<Confirm> = Vec::with_capacity(sources.len());
        let mut requirements = Requirements::default();
        let mut anchored = vec![0; sources.len().div_ceil(64)];
        let mut anchored_dfas = vec![None; sources.len()];
        let mut dfa_budget = ANCHORED_DFA_BUDGET;
        for (i, src) in sources.iter().enumerate() {
            match atoms::atoms(src) {
                Some(list) => {
                    for a in list {
                        index.add(i, a);
                    }
                    confirm.push(Confirm::of(src));
                    if let Some(anchors) = atoms::anchors(src) {
                        Candidates::mark(&mut anchored, i);
                        for a in anchors {
                            index.add_anchor(i, a);
                        }
                        if let Some(slot) = anchored_dfas.get_mut(i) {
                            *slot = anchored_dfa(src, &mut dfa_budget);
                        }
                    }
                    if let Some(branches) = atoms::requirements(src) {
                        let first = requirements.full.len();
                        for factors in branches {
                            let slot = requirements.full.len();
                            let mut full = 0;
                            for (bit, factor) in (0u32..).zip(factors) {
                                full |= 1 << bit;
                                for a in factor {
                                    index.add_factor(slot, bit, a);
                                }
                            }
                            requirements.full.push(full);
                        }
                        requirements
                            .patterns
                            .push((i, first..requirements.full.len()));
                    }
                }
                None => {
                    confirm.push(Confirm::Whole);
                    residual_patterns.push(i);
                }
            }
        }
        let (atoms, atom_patterns) = index.automata()?;
        let (mut residual, lazy, sizes) = residual_dfas(sources, &residual_patterns);
        for (gate, members) in lazy_groups(sources, &lazy) {
            residual.push(lazy_residual(sources, gate, members)?);
        }
        Ok(Prefilter {
            len: sources.len(),
            atoms,
            atom_patterns,
            confirm,
            requirements,
            anchored,
            anchored_dfas,
            residual,
            residual_patterns: sizes,
        })
    }

    /// Whether the atom automaton reads a text of `len` bytes in interleaved streams (see
    /// [`Literals`]).
    #[cfg(test)]
    pub(crate) fn atoms_walk_in_streams(&self, len: usize) -> bool {
        self.atoms
            .as_ref()
            .and_then(|a| a.ascii.as_ref())
            .is_some_and(|a| a.walks_in_streams(len))
    }

    /// The fully built DFA that confirms anchored pattern `i` from its starts (see
    /// [`find_anchored`]), if it has one.
    pub fn anchored_dfa(&self, i: usize) -> Option<&AnchoredDfa> {
        self.anchored_dfas.get(i)?.as_deref()
    }

    /// The patterns that may match `t`.
    pub fn candidates(&self, t: &[u8]) -> Candidates {
        let mut c = Candidates::new(self.len);
        if let Some(ac) = &self.atoms {
            c.anchored.clone_from(&self.anchored);
            c.max_starts = starts_cap(t.len());
            // Room for one start per 16 bytes (the development corpus holds one per 15–20),
            // rather than growing from empty on every text; none when no pattern has anchors.
            if self.anchored.iter().any(|&w| w != 0) {
                c.starts.reserve((t.len() / 16).min(c.max_starts));
            }
            let windowed = t.len() >= MIN_WINDOWED_TEXT;
            // Factor bits seen, by branch slot.
            let mut seen = vec![0u32; self.requirements.full.len()];
            ac.for_each(t, |literal, start, end| {
                let Some(uses) = self.atom_patterns.get(literal) else {
                    return;
                };
                for u in uses {
                    if u.atom.boundaries_hold(t, start, end) {
                        for &(p, offset) in &u.anchors {
                            if let Some(at) = start.checked_sub(offset) {
                                c.add_start(p, at);
                            }
                        }
                        for &(slot, bit) in &u.factors {
                            if let Some(s) = seen.get_mut(slot) {
                                *s |= 1 << bit;
                            }
                        }
                        for &p in &u.patterns {
                            Candidates::mark(&mut c.maybe, p);
                            match self.confirm.get(p) {
                                Some(Confirm::Bounded(len)) if windowed => {
                                    // A match of at most `len` bytes holding this occurrence.
                                    let w = end.saturating_sub(*len)..(start + len).min(t.len());
                                    c.add_window(p, w, self.len);
                                }
                                Some(Confirm::Reach(_)) if windowed => {
                                    c.add_occurrence(p, start, end, self.len)
                                }
                                _ => {}
                            }
                        }
                    }
                }
            });
            self.requirements.drop_unmet(&seen, &mut c);
            c.settle_starts(self.len);
            c.drop_unstarted();
            c.settle_windows();
            c.reach_windows(t, &self.confirm);
        }
        // The DFAs that search the whole of this text walk it together (see `dfa_walk`); with
        // only one, its own search below is faster.
        let mut whole: Vec<(usize, &dense::DFA<Vec<u32>>)> = Vec::new();
        for (k, r) in self.residual.iter().enumerate() {
            if let (Some(dfa), Some(true)) = (r.whole_text_dfa(), r.gate.searches_whole(t)) {
                whole.push((k, dfa));
            }
        }
        if whole.len() > 1 {
            self.walk_together(&whole, t, &mut c);
        } else {
            whole.clear();
        }
        // One match set per group width: an automaton's overlapping search stops as soon as its
        // set is full, so a set wider than the group would make it read to the end.
        let mut sets: Vec<MatchedSet> = Vec::new();
        for (k, r) in self.residual.iter().enumerate() {
            if whole.iter().any(|&(w, _)| w == k) {
                continue;
            }
            let i = match sets.iter().position(|s| s.capacity() == r.pattern_len()) {
                Some(i) => i,
                None => {
                    sets.push(MatchedSet::new(r.pattern_len()));
                    sets.len() - 1
                }
            };
            let found = &mut sets[i];
            found.clear();
            let mut ok = true;
            for range in r.gate.ranges(t) {
                ok &= r.which(t, range, found);
                if found.len() == r.pattern_len() {
                    break;
                }
            }
            c.mark_residual(&r.patterns, ok.then_some(&*found));
        }
        c
    }

    /// Marks the patterns the residual DFAs `which` (`(index into residual, its DFA)`, each
    /// searching the whole text) find in `t`, walking them in one loop. A union whose walk
    /// stopped on repeated matches (see [`UNION_REPEATS_PER_BYTES`]) has its patterns not found
    /// yet searched alone, as [`union_which`] does.
    fn walk_together(
        &self,
        which: &[(usize, &dense::DFA<Vec<u32>>)],
        t: &[u8],
        c: &mut Candidates,
    ) {
        let dfas: Vec<_> = which.iter().map(|&(_, dfa)| dfa).collect();
        let mut walked = dfa_walk::which_all(&dfas, t, union_repeats(t.len()))
            .ok()
            .map(Vec::into_iter);
        for &(k, _) in which {
            let Some(r) = self.residual.get(k) else {
                continue;
            };
            let found = walked.as_mut().and_then(Iterator::next).and_then(|mut w| {
                let ok = w.complete
                    || match &r.shapes {
                        Shapes::Union { parts, .. } => {
                            search_parts(parts, &Input::new(t), &mut w.patterns)
                        }
                        _ => r.which(t, 0..t.len(), &mut w.patterns),
                    };
                ok.then_some(w.patterns)
            });
            c.mark_residual(&r.patterns, found.as_ref());
        }
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

    /// Patterns with no usable atom (they run on every text), each with how it runs.
    pub fn residual_patterns(&self) -> &[(usize, Residual)] {
        &self.residual_patterns
    }

    /// Residual patterns that did not fit the DFA budget and run on a lazy DFA.
    pub fn lazy_patterns(&self) -> Vec<usize> {
        self.residual_patterns
            .iter()
            .filter(|(_, how)| *how == Residual::Lazy)
            .map(|&(p, _)| p)
            .collect()
    }

    /// Bytes held by the fully built residual DFAs, the anchored DFAs and the atom automaton.
    pub fn memory_usage(&self) -> usize {
        let anchored: usize = self
            .anchored_dfas
            .iter()
            .flatten()
            .map(|d| d.memory_usage())
            .sum();
        anchored
            + self
                .residual
                .iter()
                .map(|r| match &r.shapes {
                    Shapes::Dense(d) => d.memory_usage(),
                    Shapes::Union { all, parts } => {
                        all.memory_usage() + parts.iter().map(|d| d.memory_usage()).sum::<usize>()
                    }
                    Shapes::Run(_) | Shapes::Lazy(_) => 0,
                })
                .sum::<usize>()
            + self.atoms.as_ref().map_or(0, AtomAutomata::memory_usage)
    }
}

/// How a residual pattern (one without atoms, searched on every text) runs; the pack lint
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Residual {
    /// A byte class repeated ([`ByteRun`]): a run test that skips most of the text.
    Run,
    /// A fully built DFA, of this many bytes alone (it may share a union with others).
    Dense(usize),
    /// Its DFA would exceed [`PATTERN_DFA_LIMIT`]: a lazy DFA, whose speed depends on the
    /// traffic.
    Lazy,
}

/// The residual searches of a set, the patterns left for the lazy fallback, and how each
/// residual pattern runs.
type ResidualSplit = (Vec<ResidualDfa>, Vec<usize>, Vec<(usize, Residual)>);

type Dfa = Arc<dense::DFA<Vec<u32>>>;

/// Residual DFAs searched together: one pass over the text (or over the gate's windows) for
/// several patterns.
struct Group {
    gate: GateSpec,
    members: Vec<usize>,
    /// Each member's own DFA, in member order.
    parts: Vec<Dfa>,
    /// The union, once there are two members.
    union: Option<Dfa>,
    /// A union with one more pattern did not fit: no more are tried (see [`join_a_pass`]).
    closed: bool,
}

impl Group {
    fn new(gate: GateSpec, p: usize, dfa: Dfa) -> Group {
        Group {
            gate,
            members: vec![p],
            parts: vec![dfa],
            union: None,
            closed: false,
        }
    }

    /// The DFA one pass of this group runs.
    fn pass(&self) -> &Dfa {
        match &self.union {
            Some(u) => u,
            None => &self.parts[0],
        }
    }

    fn into_residual(self) -> ResidualDfa {
        let shapes = match self.union {
            Some(all) => Shapes::Union {
                all,
                parts: self.parts,
            },
            None => Shapes::Dense(self.parts[0].clone()),
        };
        ResidualDfa {
            shapes,
            patterns: self.members,
            gate: self.gate.build(),
        }
    }
}

/// Plans the residual searches of a set.
///
/// - A pattern that is one byte class repeated becomes a [`ByteRun`] test.
/// - Every other pattern's DFA is built alone first; one that would exceed
///   [`PATTERN_DFA_LIMIT`], or the set's [`RESIDUAL_DFA_BUDGET`], is returned for the lazy
///   fallback. Counted repetitions in unanchored patterns (`[0-9]{13,19}` anywhere in the
///   text) are what make a DFA explode.
/// - The DFAs that search the whole text (gate `Always`, or `Needs` a byte that most prompts
///   hold) are merged first-fit into unions of at most [`PATTERN_DFA_LIMIT`]. A pass costs one
///   dependent table lookup per byte whatever the DFA holds, so k patterns in one union cost
///   one pass instead of k. A union can be far larger than its parts (counters multiply), so
///   each is built, and kept only if it fits. Each union keeps its parts' own DFAs too (they
///   count against the budget), for the texts on which it cannot stop early.
/// - A small windowed DFA then joins a union that runs on every text (gate `Always`) when the
///   union still fits: the pass is paid anyway, and its gate search and windows are saved.
///   Otherwise the small windowed DFAs that look for the same bytes share one union (which
///   keeps their windows). Large windowed DFAs stay alone: they hardly ever fit a union, and
///   each failed attempt costs a build up to the limit.
fn residual_dfas(sources: &[String], patterns: &[usize]) -> ResidualSplit {
    let mut built: Vec<ResidualDfa> = Vec::new();
    let mut how = Vec::new();
    let mut lazy = Vec::new();
    let mut whole = Vec::new();
    let mut windowed = Vec::new();
    // Bytes of every DFA kept: each pattern's own, and the unions.
    let mut used = 0usize;
    for &p in patterns {
        if let Some(run) = atoms::parse(&sources[p]).ok().and_then(|h| ByteRun::of(&h)) {
            how.push((p, Residual::Run));
            built.push(ResidualDfa {
                shapes: Shapes::Run(run),
                patterns: vec![p],
                gate: Gate::Always,
            });
            continue;
        }
        let budget = PATTERN_DFA_LIMIT.min(RESIDUAL_DFA_BUDGET.saturating_sub(used));
        let Some(dfa) = dense_dfa(sources, &[p], budget) else {
            how.push((p, Residual::Lazy));
            lazy.push(p);
            continue;
        };
        how.push((p, Residual::Dense(dfa.memory_usage())));
        used += dfa.memory_usage();
        let gate = GateSpec::of(&sources[p]);
        if gate.is_windowed() {
            windowed.push((gate, p, dfa));
        } else {
            whole.push((gate, p, dfa));
        }
    }
    let mut passes: Vec<Group> = Vec::new();
    for (gate, p, dfa) in whole {
        if !join_a_pass(sources, &mut passes, &mut used, gate, p, &dfa, |_| true) {
            passes.push(Group::new(gate, p, dfa));
        }
    }
    let mut small: Vec<Group> = Vec::new();
    for (gate, p, dfa) in windowed {
        if dfa.memory_usage() > SMALL_DFA {
            built.push(Group::new(gate, p, dfa).into_residual());
            continue;
        }
        if join_a_pass(sources, &mut passes, &mut used, gate, p, &dfa, |g| {
            g == GateSpec::Always
        }) {
            continue;
        }
        match small.iter_mut().find(|g| g.gate.shares_pass_with(gate)) {
            Some(g) => {
                g.gate = g.gate.join(gate);
                g.members.push(p);
                g.parts.push(dfa);
            }
            None => small.push(Group::new(gate, p, dfa)),
        }
    }
    built.extend(passes.into_iter().map(Group::into_residual));
    for mut group in small {
        if group.members.len() > 1 {
            let budget = PATTERN_DFA_LIMIT.min(RESIDUAL_DFA_BUDGET.saturating_sub(used));
            match dense_dfa(sources, &group.members, budget) {
                Some(union) => {
                    used += union.memory_usage();
                    group.union = Some(union);
                }
                // Each fits alone; together they do not: keep them apart.
                None => {
                    for (p, dfa) in group.members.into_iter().zip(group.parts) {
                        built.push(Group::new(GateSpec::of(&sources[p]), p, dfa).into_residual());
                    }
                    continue;
                }
            }
        }
        built.push(group.into_residual());
    }
    lazy.sort_unstable();
    (built, lazy, how)
}

/// Adds pattern `p` (gate `gate`, DFA `dfa`, already counted in `used`) to the first open
/// group `eligible` admits whose union with it fits [`PATTERN_DFA_LIMIT`] and the set's
/// budget; false when none does.
///
/// A failed build costs as much time as building a DFA of the limit's size, so two kinds of
/// attempt are not made: a union whose two parts (the group's current pass and the new
/// pattern's DFA) together exceed the budget (a union is hardly ever smaller than its parts:
/// its states project onto each part's, and counters multiply),
/// and any union with a group that already failed to take a pattern (it is close to full, and
/// every later attempt would fail the same way). Each group then fails at most once.
fn join_a_pass(
    sources: &[String],
    passes: &mut [Group],
    used: &mut usize,
    gate: GateSpec,
    p: usize,
    dfa: &Dfa,
    eligible: impl Fn(GateSpec) -> bool,
) -> bool {
    for pass in passes
        .iter_mut()
        .filter(|pass| !pass.closed && eligible(pass.gate))
    {
        // The new union replaces the group's old one, if it had one.
        let rest = used.saturating_sub(pass.union.as_ref().map_or(0, |u| u.memory_usage()));
        let budget = PATTERN_DFA_LIMIT.min(RESIDUAL_DFA_BUDGET.saturating_sub(rest));
        if pass.pass().memory_usage() + dfa.memory_usage() > budget {
            continue;
        }
        let mut members = pass.members.clone();
        members.push(p);
        if let Some(union) = dense_dfa(sources, &members, budget) {
            *used = rest + union.memory_usage();
            pass.gate = pass.gate.join(gate);
            pass.members = members;
            pass.parts.push(dfa.clone());
            pass.union = Some(union);
            return true;
        }
        pass.closed = true;
    }
    false
}

/// A fully built DFA of one pattern, for anchored searches only.
pub type AnchoredDfa = dense::DFA<Vec<u32>>;

/// Bytes one anchored DFA may take. A phrase rule's DFA (word lists, white space, optional
/// words) grows with its alternatives but stays small enough: of the sample bundle's 79
/// anchored patterns, the 64 without a gap all fit, the largest in 961 KiB (at 256 KiB, 8 of
/// them did not, and their lazy DFAs were the costliest confirmations of the development corpus).
const ANCHORED_DFA_LIMIT: usize = 1 << 20;
/// Bytes the anchored DFA of a rule that counts a wide class across a gap
/// ([`crate::gaps::contains_gap`]) may take. Such a DFA tracks the count, so it is usually far
/// larger (3–26 MiB for the sample bundle's, two past 64 MiB), and the builder works up to the
/// limit before it gives up: with every pattern at 1 MiB, the failed builds made a compile of
/// the sample bundle 0.4 s slower (0.9 -> 1.3 s of CPU). At this limit they fail early; 3 of
/// the 15 gapped patterns fit.
const GAPPED_ANCHORED_DFA_LIMIT: usize = 256 << 10;
/// Bytes all of a set's anchored DFAs may take together (the sample bundle's take 8.0 MiB).
const ANCHORED_DFA_BUDGET: usize = 12 << 20;

/// The anchored DFA of `source`, if it fits [`ANCHORED_DFA_LIMIT`] ([`GAPPED_ANCHORED_DFA_LIMIT`]
/// for a gapped rule) and what is left of the set's `budget` (which it then takes from).
///
/// Why: an anchored search by the pattern's own regex runs its lazy DFA, which builds a state
/// for each new path a text takes from a start, so on new text a rule's confirmation cost
/// depended on what text came before. A fully built DFA costs memory once, at compile time,
/// and each search from a start is then a table walk that ends where the rule stops matching.
fn anchored_dfa(source: &str, budget: &mut usize) -> Option<Arc<AnchoredDfa>> {
    let gapped = atoms::parse(source).map_or(true, |hir| crate::gaps::contains_gap(&hir));
    let limit = if gapped {
        GAPPED_ANCHORED_DFA_LIMIT
    } else {
        ANCHORED_DFA_LIMIT
    };
    let limit = limit.min(*budget);
    if limit == 0 {
        return None;
    }
    let dfa = dfa_cache::get_or_build(&["anchored DFA", source], limit, || {
        dense_builder(MatchKind::LeftmostFirst, StartKind::Anchored, limit)
            .build(source)
            .ok()
    })?;
    *budget = budget.saturating_sub(dfa.memory_usage());
    Some(dfa)
}

fn dense_dfa(sources: &[String], group: &[usize], budget: usize) -> Option<Dfa> {
    if budget == 0 {
        return None;
    }
    let pats: Vec<&str> = group.iter().map(|&i| sources[i].as_str()).collect();
    dfa_cache::get_or_build(&pats, budget, || {
        dense_builder(MatchKind::All, StartKind::Both, budget)
            .build_many(&pats)
            .ok()
    })
}

/// A builder of fully built DFAs of up to `limit` bytes, with the syntax the span regexes use
/// (ASCII classes and word boundaries, any bytes).
fn dense_builder(kind: MatchKind, start: StartKind, limit: usize) -> dense::Builder {
    let mut builder = dense::Builder::new();
    builder
        .configure(
            dense::Config::new()
                .match_kind(kind)
                .start_kind(start)
                .byte_classes(true)
                .dfa_size_limit(Some(limit))
                .determinize_size_limit(Some(DETERMINIZE_LIMIT)),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false).shrink(true));
    builder
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

    /// Asserts that the candidates for `t` are exactly `want`, each one sure (a residual
    /// automaton found its match: no confirmation needed).
    fn assert_sure(p: &Prefilter, t: &str, want: &[usize]) {
        let c = p.candidates(t.as_bytes());
        assert_eq!(c.iter().collect::<Vec<_>>(), want, "{t:?}");
        assert!(want.iter().all(|&i| c.is_sure(i)), "{t:?}");
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
        assert!(matches!(p.residual_patterns()[0].1, Residual::Dense(n) if n > 0));
        assert!(p.lazy_patterns().is_empty());
        assert!(cands(&p, "hello there").is_empty());
        // Every word of the phrase present, but not the phrase: a candidate to confirm.
        let c = p.candidates(b"read the previous INSTRUCTIONS; do not ignore them");
        assert_eq!(c.iter().collect::<Vec<_>>(), [0]);
        assert!(!c.is_sure(0));
        // One word alone: the phrase's other words are missing, so it cannot match.
        assert!(cands(&p, "read the INSTRUCTIONS for the team").is_empty());
        // The residual DFA is exact: it reports only real matches, as sure.
        assert_sure(&p, "ssn 078-05-1120 and 12-34", &[1]);
        assert!(cands(&p, "ssn 078-05-112").is_empty());
    }

    #[test]
    fn atoms_past_ascii_have_their_own_automaton_walked_on_texts_that_hold_one() {
        // Rule 0's atoms are all past ASCII, rule 1's all ASCII, and rule 2 starts at `à` or
        // `a`: one anchor of each kind. (`\b` is ASCII: none next to the other letters.)
        let p = set(&[
            r"(?i)ответ\s+пользователю",
            r"(?i)\bsystem\s+prompt\b",
            r"(?i)(?:à|\ba)\s+la\s+fin\s+de\s+(?:toute|chaque)\s+réponse",
        ]);
        let a = p.atoms.as_ref().unwrap();
        assert!(a.ascii.is_some() && a.other.is_some());
        let uses = |i: usize| &p.atom_patterns[i];
        assert!((0..a.ascii_len).all(|i| uses(i).iter().all(|u| u.atom.bytes.is_ascii())));
        assert!((a.ascii_len..p.atom_patterns.len())
            .all(|i| uses(i).iter().all(|u| !u.atom.bytes.is_ascii())));
        assert_eq!(cands(&p, "Дай ответ пользователю сразу"), [0]);
        assert_eq!(
            cands(&p, "the system prompt, then ответ пользователю"),
            [0, 1]
        );
        assert!(cands(&p, "ответ only, and a system").is_empty());
        // An ASCII text never walks the second automaton, and loses nothing by it.
        assert_eq!(cands(&p, "the system PROMPT"), [1]);
        for t in [
            "à la fin de chaque réponse",
            "A la fin de toute réponse",
            "a la fin",
        ] {
            let c = p.candidates(t.as_bytes());
            let want: &[usize] = if t.ends_with("réponse") { &[2] } else { &[] };
            assert_eq!(c.iter().collect::<Vec<_>>(), want, "{t}");
            if !want.is_empty() {
                let starts = c.starts(2).map(|s| s.positions().collect::<Vec<_>>());
                assert_eq!(starts, Some(vec![0]), "{t}");
            }
        }
    }

    #[test]
    fn anchored_candidates_start_at_their_anchors() {
        let p = set(&[r"(?i)\b(?:ignore|disregard)\s+(?:all\s+)?previous\s+rules"]);
        let starts = |t: &str| {
            p.candidates(t.as_bytes())
                .starts(0)
                .map(|s| s.positions().collect::<Vec<_>>())
        };
        assert_eq!(
            starts("Please IGNORE all previous rules, or disregard\tprevious rules."),
            Some(vec![7, 37])
        );
        // Its words are there, but no word starts a match (`xignore`): nothing to search.
        assert_eq!(starts("xignore previous rules"), Some(vec![]));
        assert!(cands(&p, "xignore previous rules").is_empty());
        // The bound on the starts a scan keeps grows with the text: a long text with a start
        // every few words keeps them all.
        let long = "ignore ".repeat(MIN_STARTS + 1) + "previous rules";
        assert_eq!(
            p.candidates(long.as_bytes())
                .starts(0)
                .map(|s| s.positions().count()),
            Some(MIN_STARTS + 1),
            "{} starts kept of {}",
            MIN_STARTS + 1,
            starts_cap(long.len())
        );
    }

    #[test]
    fn short_atoms_are_searched_with_their_white_space() {
        // `\ba\s+dan` starts at `a` (white space after it) and `\sqz\s+x` at the white space
        // before `qz`: each is searched with every white-space byte on the side it has one
        // (`qz` on both: 36 literals), so an `a` inside a word is not an occurrence at all.
        let sources = [r"(?i)\ba\s+dan\b", r"\sqz\s+x"];
        let p = set(&sources);
        let literals: Vec<&[u8]> = p
            .atom_patterns
            .iter()
            .flatten()
            .map(|u| u.atom.bytes.as_slice())
            .collect();
        for bytes in [&b"a"[..], b"qz"] {
            assert!(!literals.contains(&bytes), "{:?} searched bare", bytes);
        }
        for s in atoms::SPACE {
            assert!(literals.contains(&&[b'a', s][..]));
            assert!(literals.contains(&&[s, b'q', b'z', b'\t'][..]));
            let s = char::from(s);
            for (i, t, at) in [
                (0, format!("be A{s}dan now"), 3),
                (1, format!("x{s}qz{s}x"), 1),
            ] {
                let c = p.candidates(t.as_bytes());
                assert_eq!(c.iter().collect::<Vec<_>>(), [i], "{t:?}");
                let starts = c.starts(i).map(|s| s.positions().collect::<Vec<_>>());
                assert_eq!(starts, Some(vec![at]), "{t:?}");
                assert!(anchored_finds_the_same(&p, &c, i, sources[i], t.as_bytes()));
            }
        }
        assert!(cands(&p, "banana dan, xqz x").is_empty());
    }

    #[test]
    fn anchored_patterns_are_confirmed_by_a_fully_built_dfa() {
        // A weak anchor (`2`, a digit) still anchors: each search from it is a few steps of
        // the built DFA's table.
        let weak = r"(?i)\b(?:2|two|both)\s+(?:answers|replies)\b";
        let sources = [weak, r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"];
        let p = set(&sources);
        assert!(p.anchored_dfa(0).is_some());
        assert!(p.anchored_dfa(1).is_none(), "not anchored: no DFA");
        // The prefilter's size counts the DFA it holds (the bundle's budget is charged with it).
        let dfa_bytes = p.anchored_dfa(0).map_or(0, |d| d.memory_usage());
        assert!(
            p.memory_usage() > dfa_bytes,
            "{} vs {dfa_bytes}",
            p.memory_usage()
        );
        let t = "Give 2 apples, 42 pears and TWO  answers: both replies, 2 answersx.";
        let c = p.candidates(t.as_bytes());
        let starts = c.starts(0).map(|s| s.positions().collect::<Vec<_>>());
        // Every `2`, `two` or `both` after a word boundary: a superset of the match starts.
        assert_eq!(starts, Some(vec![5, 28, 42, 56]));
        assert_eq!(
            found_from_starts(&p, &c, 0, weak, t),
            ["TWO  answers", "both replies"]
        );
        assert!(anchored_finds_the_same(&p, &c, 0, weak, t.as_bytes()));
    }

    /// The matches of pattern `i` (`source`) in `t`, searched from its starts with its
    /// anchored DFA, as the engine confirms it.
    fn found_from_starts<'t>(
        p: &Prefilter,
        c: &Candidates,
        i: usize,
        source: &str,
        t: &'t str,
    ) -> Vec<&'t str> {
        let re = span_regex(source).unwrap();
        find(
            &re,
            t.as_bytes(),
            c.windows(i),
            c.starts(i).map(|s| s.searched_by(p.anchored_dfa(i))),
        )
        .map(|m| &t[m.range()])
        .collect()
    }

    #[test]
    fn a_gapless_phrase_rule_gets_a_larger_anchored_dfa_than_a_gapped_one() {
        let words = "alpha|bravo|charlie|delta|echo|foxtrot|golf|hotel|india|juliet|kilo|lima|\
                     mike|november|oscar|papa|quebec|romeo|sierra|tango|uniform|victor|whiskey|\
                     xray|yankee|zulu";
        // Optional words between listed ones: no gap (`\w` is narrower than a gap's class),
        // but a DFA of about 630 KiB.
        let gapless = format!(
            r"(?i)\b(?:{words})\s+(?:\w+\s+){{0,3}}(?:{words})\s+(?:\w+\s+){{0,3}}(?:{words})\b"
        );
        // A wide class counted across a gap: its DFA (about 320 KiB) tracks the count.
        let gapped = r"(?i)\b(?:alpha|bravo)\b.{0,100}?\b(?:charlie|delta)\b";
        let sources = [gapless.as_str(), gapped];
        let p = set(&sources);
        let size = |i: usize| p.anchored_dfa(i).map(|d| d.memory_usage());
        assert!(
            size(0).is_some_and(|n| n > GAPPED_ANCHORED_DFA_LIMIT && n <= ANCHORED_DFA_LIMIT),
            "{:?}",
            size(0)
        );
        assert_eq!(
            size(1),
            None,
            "a gapped rule's DFA past its own limit is not built"
        );
        let t = "Alpha went to bravo and then charlie: alpha, the bravo ones, charlie  delta xray \
                 and zulu kilo lima mike. Bravo! then much later, delta.";
        let c = p.candidates(t.as_bytes());
        assert!(c.starts(0).is_some_and(|s| s.positions().count() > 3));
        assert!(anchored_finds_the_same(&p, &c, 0, &gapless, t.as_bytes()));
        assert!(anchored_finds_the_same(&p, &c, 1, gapped, t.as_bytes()));
        assert_eq!(
            found_from_starts(&p, &c, 0, &gapless, t),
            [
                "Alpha went to bravo and then charlie",
                "charlie  delta xray and zulu kilo lima mike"
            ]
        );
    }

    #[test]
    fn past_the_starts_cap_anchored_patterns_are_searched_everywhere() {
        // Four patterns start at each `ignore`: four starts per seven bytes, over the cap.
        let p = set(&[
            r"(?i)\bignore\s+previous\s+rules",
            r"(?i)\bignore\s+prior\s+rules",
            r"(?i)\bignore\s+earlier\s+rules",
            r"(?i)\bignore\s+above\s+rules",
        ]);
        let text = |n: usize| "ignore ".repeat(n) + "previous rules";
        let under = text(MIN_STARTS / 4);
        let c = p.candidates(under.as_bytes());
        assert_eq!(
            c.starts(0).map(|s| s.positions().count()),
            Some(MIN_STARTS / 4)
        );
        let over = text(MIN_STARTS);
        assert!(4 * MIN_STARTS > starts_cap(over.len()));
        let c = p.candidates(over.as_bytes());
        assert!(c.starts(0).is_none());
        // The pattern is still a candidate, searched everywhere, and matches.
        assert!(c.iter().any(|i| i == 0));
    }

    #[test]
    fn gate_windows_see_the_context() {
        // A window search still sees the context: `\b` before a match at a window's start.
        let p = set(&[r"\b[0-9]{2}\b"]);
        assert!(cands(&p, "x 12 y").contains(&0));
        assert!(cands(&p, "x a12 y").is_empty());
        assert!(cands(&p, "x 123 y").is_empty());
        // A rare needed byte other than a digit gates too, and its windows are exact.
        let p = set(&[r"[\x01-\x08\x0E-\x1A]x{0,8}y\b"]);
        assert_eq!(p.residual_patterns().len(), 1);
        assert!(cands(&p, "no such byte here, at all").is_empty());
        assert_eq!(cands(&p, "abc \x01xxy def"), [0]);
        assert!(cands(&p, "abc \x01xxyz \x02 def").is_empty());
    }

    #[test]
    fn a_repeated_class_is_a_run_test_and_exact() {
        let p = set(&[r"[A-Z2-7]{16,}", r"(?i)system\s+prompt"]);
        assert_eq!(p.residual_patterns(), [(0, Residual::Run)]);
        assert_sure(&p, "key: JBSWY3DPEHPK3PXP.", &[0]);
        assert!(cands(&p, "JBSWY3DPEHPK3PX JBSWY3DPEHPK3PX").is_empty());
    }

    #[test]
    fn whole_text_residuals_share_a_pass_and_stay_exact() {
        // No atoms, no window: each would be a pass over the whole text of its own.
        let sources = [
            r"\b[0-9]+(?:\.[0-9]+){3,}\b",
            r"(?:[.-]{1,6}(?:\s+/\s+|\s+)){5,}[.-]{1,6}(?:\s|$)",
            r"(?:(?:\\x|0[xX])?[0-9A-Fa-f]{2}[\s:,]*){8,}",
            // Small and windowed: joins the pass that runs anyway.
            r"[\x00-\x08\x0B\x0C\x0E-\x1A\x1C-\x1F\x7F]",
        ];
        let p = set(&sources);
        assert_eq!(
            p.residual_patterns().len(),
            4,
            "{:?}",
            p.residual_patterns()
        );
        assert_eq!(p.residual.len(), 1, "{:?}", p.residual);
        assert!(matches!(p.residual[0].gate, Gate::Always));
        for (text, want) in [
            ("host 10.0.0.1 is down", vec![0]),
            (".- -... -.-. -.. . ..-.", vec![1]),
            ("dump: 0x41 0x42 0x43 0x44 0x45 0x46 0x47 0x48", vec![2]),
            ("a\x02b and 1.2.3.4", vec![0, 3]),
            ("version 1.2.3 and - . -", vec![]),
        ] {
            assert_sure(&p, text, &want);
        }
        // One member matches at every few bytes, the others never or only at the very end:
        // the union gives up after its repeated matches and the rest run alone.
        let many = "1.2.3.4 ".repeat(2000);
        for (text, want) in [
            (many.clone(), vec![0]),
            (format!("{many}\x02"), vec![0, 3]),
            (format!("{many}.- -... -.-. -.. . ..-. "), vec![0, 1]),
        ] {
            assert_sure(&p, &text, &want);
        }
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
            Just((r"\s".to_string(), "\t".to_string())),
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

    /// The regex the engine confirms a candidate with (built as `compile::span_regex` does).
    pub(crate) fn span_regex(source: &str) -> Option<meta::Regex> {
        meta::Regex::builder()
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .utf8_empty(false),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(source)
            .ok()
    }

    #[test]
    fn windows_hold_matches_at_their_edges() {
        // `ab[0-9]x` is at most 4 bytes: its windows reach 3 bytes past each `ab`, and a match
        // flush with the text's ends or with a window's edge is still found, with its `\b`.
        let p = set(&[r"\bab[0-9]?x\b"]);
        let re = span_regex(r"\bab[0-9]?x\b").unwrap();
        for text in [
            format!("ab1x{}", "~".repeat(3000)),
            format!("{}ab1x", "~".repeat(3000)),
            format!("{}ab1x~ab2x{}abx", "~".repeat(1500), "~".repeat(1500)),
            format!("{}zab1x~ab2x{}ab1", "~".repeat(1500), "~".repeat(1500)),
        ] {
            let t = text.as_bytes();
            let c = p.candidates(t);
            assert!(c.windows(0).is_some(), "a long text is windowed");
            let whole: Vec<_> = re.find_iter(t).map(|m| m.range()).collect();
            let windowed: Vec<_> = find_in(&re, t, c.windows(0)).map(|m| m.range()).collect();
            assert_eq!(whole, windowed, "{:?}", c.windows(0));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Digit-gated shapes (windows around digits, skipped when they hold too few): the
        /// prefilter reports exactly the shapes a whole-text search finds, on texts where
        /// digits cluster and spread at every distance from each other.
        #[test]
        fn digit_windows_lose_no_match(
            shapes in prop::collection::vec((1usize..4, 0usize..3, 1usize..6), 1..4),
            text in prop::collection::vec(prop::sample::select(vec!["1", "23", "4567", " ", "-", "ab", "x  y", "         "]), 0..60),
        ) {
            let sources: Vec<String> = shapes
                .iter()
                .map(|(a, gap, b)| format!(r"\b[0-9]{{{a}}}(?:[ -]?[0-9]){{{gap},{}}}\b", gap + b))
                .collect();
            let reference = RegexSetBuilder::new(&sources).unicode(false).build().unwrap();
            let p = Prefilter::build(&sources).unwrap();
            let text = text.concat();
            let c = p.candidates(text.as_bytes());
            for (i, source) in sources.iter().enumerate() {
                let matched = reference.matches(text.as_bytes()).matched(i);
                prop_assert_eq!(c.is_sure(i), matched, "{:?} on {:?}", source, &text);
            }
        }

        /// Windowed confirmation finds exactly what a whole-text search finds: random bounded
        /// patterns, their sample matches and noise strung together with gaps of about a
        /// window's reach, in texts long enough to be windowed.
        #[test]
        fn windows_find_what_the_whole_text_finds(
            pats in prop::collection::vec(pattern(), 1..4),
            parts in prop::collection::vec((any::<prop::sample::Index>(), 0usize..40, noise()), 1..10),
            lead in 0usize..2500,
        ) {
            let sources: Vec<String> = pats.iter().map(|(r, _)| r.clone()).collect();
            let res: Option<Vec<meta::Regex>> = sources.iter().map(|s| span_regex(s)).collect();
            let Some(res) = res else {
                return Ok(());
            };
            let p = Prefilter::build(&sources).unwrap();
            let mut text = "~".repeat(lead);
            for (which, gap, noise) in &parts {
                text.push_str(&pats[which.index(pats.len())].1);
                text.push_str(&"~".repeat(*gap));
                text.push_str(noise);
            }
            while text.len() < MIN_WINDOWED_TEXT {
                text.push('~');
            }
            let t = text.as_bytes();
            let c = p.candidates(t);
            for i in c.iter() {
                let whole: Vec<_> = res[i].find_iter(t).map(|m| m.range()).collect();
                let windowed: Vec<_> = find_in(&res[i], t, c.windows(i)).map(|m| m.range()).collect();
                prop_assert_eq!(whole, windowed, "pattern {:?} windows {:?}", &sources[i], c.windows(i));
            }
        }
    }

    /// Whether candidate `i` (pattern `source`) has the same matches in `t` searched from
    /// its starts as searched everywhere its windows allow (true when it has no starts).
    /// Both with the regex's lazy DFA and with the pattern's fully built anchored DFA.
    fn anchored_finds_the_same(
        p: &Prefilter,
        c: &Candidates,
        i: usize,
        source: &str,
        t: &[u8],
    ) -> bool {
        let (Some(starts), Some(re)) = (c.starts(i), span_regex(source)) else {
            return true;
        };
        let everywhere: Vec<_> = find_in(&re, t, c.windows(i)).map(|m| m.range()).collect();
        let lazy: Vec<_> = find_anchored(&re, t, c.windows(i), starts)
            .map(|m| m.range())
            .collect();
        let built = starts.searched_by(p.anchored_dfa(i));
        let dense: Vec<_> = find_anchored(&re, t, c.windows(i), built)
            .map(|m| m.range())
            .collect();
        everywhere == lazy && everywhere == dense
    }

    /// Words of the phrase rules below: a small vocabulary, so texts hold some of a branch's
    /// words far more often than all of them. Two are short enough to be searched with the
    /// white space next to them ([`padded`]).
    const PHRASE_WORDS: [&str; 8] = [
        "ignore", "previous", "rules", "reveal", "system", "prompt", "a", "or",
    ];

    /// A phrase rule as packs write them, with a sample match of each branch: alternatives
    /// (split at the top, or behind a shared `\b`) of two to four parts (a word, a choice of
    /// words, an optional word) joined by white space or by up to two words of any kind.
    fn phrase_rule() -> impl Strategy<Value = (String, Vec<String>)> {
        let word = prop::sample::select(PHRASE_WORDS.to_vec());
        let part = prop_oneof![
            word.clone().prop_map(|w| (w.to_string(), w.to_string())),
            (word.clone(), word.clone()).prop_map(|(a, b)| (format!("(?:{a}|{b})"), b.to_string())),
            (word.clone(), any::<bool>()).prop_map(|(w, take)| {
                (
                    format!("(?:{w}\\s+)?"),
                    if take { format!("{w} ") } else { String::new() },
                )
            }),
        ];
        let joint = prop_oneof![
            Just((r"\s+".to_string(), " ".to_string())),
            Just((r"\s+(?:\w+\s+){0,2}".to_string(), " so ".to_string())),
        ];
        let branch = prop::collection::vec((part, joint), 2..5).prop_map(|parts| {
            let mut re = String::new();
            let mut sample = String::new();
            for (i, ((p, ps), (j, js))) in parts.iter().enumerate() {
                re.push_str(p);
                sample.push_str(ps);
                if i + 1 < parts.len() && !p.ends_with(")?") {
                    re.push_str(j);
                    sample.push_str(js);
                }
            }
            (re, sample)
        });
        (prop::collection::vec(branch, 1..4), any::<bool>()).prop_map(|(branches, shared)| {
            let res: Vec<String> = branches.iter().map(|(r, _)| format!("(?:{r})")).collect();
            let re = if shared {
                format!(r"(?i)\b(?:{})\b", res.join("|"))
            } else {
                format!("(?i){}", res.join("|"))
            };
            (re, branches.into_iter().map(|(_, s)| s).collect())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Soundness of the factors: a phrase rule that matches a text is a candidate, on
        /// texts made of its own words in any order, some with a branch's sample planted.
        #[test]
        fn factors_never_drop_a_match(
            rules in prop::collection::vec(phrase_rule(), 1..4),
            words in prop::collection::vec(
                (prop::sample::select(PHRASE_WORDS.to_vec()), prop::sample::select(atoms::SPACE.to_vec())),
                0..12,
            ),
            plant in any::<Option<(prop::sample::Index, prop::sample::Index, prop::sample::Index)>>(),
        ) {
            let sources: Vec<String> = rules.iter().map(|(r, _)| r.clone()).collect();
            let reference = RegexSetBuilder::new(&sources).unicode(false).build().unwrap();
            let p = Prefilter::build(&sources).unwrap();
            // Words joined by any white-space byte, which padded atoms must each find.
            let mut text: String = words.iter().map(|(w, s)| format!("{w}{}", char::from(*s))).collect();
            if let Some((rule, branch, at)) = plant {
                let samples = &rules[rule.index(rules.len())].1;
                let sample = &samples[branch.index(samples.len())];
                let mut cut = at.index(text.len() + 1);
                while !text.is_char_boundary(cut) || text[..cut].ends_with(|c: char| c.is_ascii_alphabetic()) && cut < text.len() {
                    cut += 1;
                }
                text.insert_str(cut.min(text.len()), &format!(" {sample} "));
            }
            let c = p.candidates(text.as_bytes());
            let cands: Vec<usize> = c.iter().collect();
            for m in reference.matches(text.as_bytes()).iter() {
                prop_assert!(cands.contains(&m), "{:?} matches {:?} but is not a candidate", sources[m], text);
            }
            for &i in &cands {
                prop_assert!(anchored_finds_the_same(&p, &c, i, &sources[i], text.as_bytes()), "{:?} on {:?}", sources[i], text);
            }
        }
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
                    prop_assert!(anchored_finds_the_same(&p, &c, i, &sources[i], text.as_bytes()), "{:?} on {:?}", sources[i], text);
                }
            }
        }
    }
}
