//! DFAs walked by the engine itself, where `regex-automata`'s own searches do not fit: several
//! whole-text DFAs in one loop ([`which_all`]), and the reverse pass of a gap check
//! ([`match_starts`]).
//!
//! A DFA search is a chain of dependent loads: the next state's address is the current
//! state's table entry, so one byte costs a load's latency (about 2 ns here) however small the
//! table, and the core sits idle between loads. The residual DFAs that search every text (the
//! sample bundle has two unions of them) each paid that chain over the whole text, one after
//! the other. Walked in one loop, the two chains are independent and their loads overlap: two
//! passes for about the time of one.
//!
//! The question asked is the one `which_overlapping_matches` answers (which patterns match
//! anywhere in the text), and it is answered the same way: a DFA built with
//! [`MatchKind::All`](regex_automata::MatchKind::All) reports, in every match state, every
//! pattern with a match ending there, so the patterns of the match states a walk passes
//! through, plus the end-of-input transition, are exactly the patterns that match. A walk stops
//! early once it has found every pattern of its DFA or reached the dead state.
//!
//! [`match_starts`] is every place in a span where a match of a reverse DFA's patterns starts.
//! (Each gap check walks alone: several checks' passes walked in one loop were measured no
//! faster, see the performance notes.)

use std::ops::Range;

use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::{Input, MatchError, PatternSet};

/// One DFA's walk over a text: where it is and what it has found.
#[derive(Debug)]
struct Walk<'a> {
    dfa: &'a dense::DFA<Vec<u32>>,
    sid: StateID,
    found: PatternSet,
    /// Nothing more to find: every pattern found, or the dead state reached, or too many
    /// repeats.
    done: bool,
    /// Match states passed that held no pattern not found before, and how many may be.
    repeats: usize,
    max_repeats: usize,
}

/// What one DFA's walk found.
#[derive(Debug)]
pub struct Found {
    /// The patterns found, by the DFA's pattern ids.
    pub patterns: PatternSet,
    /// Whether the walk read the whole text (or found every pattern); `false` when it stopped
    /// after its allowance of repeated matches, so patterns it has not found may still match.
    pub complete: bool,
}

impl<'a> Walk<'a> {
    /// A walk of `dfa` over the whole of `t`, from its unanchored start state.
    fn new(
        dfa: &'a dense::DFA<Vec<u32>>,
        t: &[u8],
        max_repeats: usize,
    ) -> Result<Walk<'a>, MatchError> {
        let sid = dfa.start_state_forward(&Input::new(t))?;
        Ok(Walk {
            dfa,
            sid,
            found: PatternSet::new(dfa.pattern_len()),
            done: false,
            repeats: 0,
            max_repeats,
        })
    }

    /// Moves on byte `b` (at position `at`, for the error).
    #[inline(always)]
    fn step(&mut self, b: u8, at: usize) -> Result<(), MatchError> {
        self.sid = self.dfa.next_state(self.sid, b);
        if self.dfa.is_special_state(self.sid) {
            self.special(b, at)?;
        }
        Ok(())
    }

    /// A match, dead or quit state (start and accelerated states need nothing: acceleration
    /// only skips bytes that leave the state unchanged, and a walk that shares its loop with
    /// another cannot skip).
    fn special(&mut self, b: u8, at: usize) -> Result<(), MatchError> {
        if self.dfa.is_match_state(self.sid) {
            self.collect();
        } else if self.dfa.is_dead_state(self.sid) {
            self.done = true;
        } else if self.dfa.is_quit_state(self.sid) {
            return Err(MatchError::quit(b, at));
        }
        Ok(())
    }

    fn collect(&mut self) {
        let mut new = false;
        for i in 0..self.dfa.match_len(self.sid) {
            new |= self.found.insert(self.dfa.match_pattern(self.sid, i));
        }
        if !new {
            self.repeats += 1;
        }
        self.done = self.found.is_full() || self.repeats > self.max_repeats;
    }

    /// Whether the walk stopped on its allowance of repeats with patterns left to find.
    fn gave_up(&self) -> bool {
        self.repeats > self.max_repeats && !self.found.is_full()
    }

    /// The end-of-input transition: matches that end at the text's end (`$`, `\b`).
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.sid = self.dfa.next_eoi_state(self.sid);
        if self.dfa.is_match_state(self.sid) {
            self.collect();
        }
        self.done = true;
    }

    /// Walks on alone from position `from` to the end of `t`.
    fn run_from(&mut self, t: &[u8], from: usize) -> Result<(), MatchError> {
        let rest = t.get(from..).unwrap_or_default();
        for (i, &b) in rest.iter().enumerate() {
            if self.done {
                return Ok(());
            }
            self.step(b, from + i)?;
        }
        self.finish();
        Ok(())
    }
}

/// Which patterns of each DFA match somewhere in `t`, in the order of `dfas`: the DFAs walk
/// the text two at a time in one loop, and when one of a pair is done the other goes on alone.
/// Pairs, not more: the sample bundle has two whole-text DFAs, and each further chain in the
/// loop adds its bookkeeping to every byte.
///
/// A walk stops after `max_repeats` match states that hold no pattern it had not found yet
/// (`Found::complete` is then false): on a text where one pattern matches at every byte (a run
/// of digits for a phone shape) and another never does, a walk would pay a match state at every
/// byte to the end, and searching the missing patterns alone is cheaper.
pub fn which_all(
    dfas: &[&dense::DFA<Vec<u32>>],
    t: &[u8],
    max_repeats: usize,
) -> Result<Vec<Found>, MatchError> {
    let mut walks = dfas
        .iter()
        .map(|dfa| Walk::new(dfa, t, max_repeats))
        .collect::<Result<Vec<_>, _>>()?;
    for pair in walks.chunks_mut(2) {
        match pair {
            [a, b] => walk_pair(a, b, t)?,
            [a] => a.run_from(t, 0)?,
            _ => {}
        }
    }
    Ok(walks
        .into_iter()
        .map(|w| Found {
            complete: !w.gave_up(),
            patterns: w.found,
        })
        .collect())
}

fn walk_pair(a: &mut Walk<'_>, b: &mut Walk<'_>, t: &[u8]) -> Result<(), MatchError> {
    let mut at = 0;
    for &byte in t {
        if a.done || b.done {
            break;
        }
        a.step(byte, at)?;
        b.step(byte, at)?;
        at += 1;
    }
    a.run_from(t, at)?;
    b.run_from(t, at)
}

/// Every `(pattern, start)` of a match of a reverse DFA's patterns inside `span` of `t`
/// (look-around past the span's edges sees the whole text), by descending start (the patterns
/// of one start in the DFA's order); `None` for a span past the text or reversed, or when the
/// search fails (it cannot: the engine configures no quit bytes).
///
/// This is what the crate's reverse overlapping search (`try_search_overlapping_rev`) is for,
/// but that search reports the second and later patterns of a match state one byte short of
/// where they start (regex-automata 0.4.19: the call that resumes at a match state reports the
/// position it stopped at, the first call that position plus one), and in a debug build it can
/// panic on the subtraction. The gap checks used it, so a rule whose pieces after a gap start
/// at the same place could be judged unable to match where it did.
pub fn match_starts(
    dfa: &dense::DFA<Vec<u32>>,
    t: &[u8],
    span: Range<usize>,
) -> Option<Vec<(u32, usize)>> {
    let bytes = t.get(span.clone())?;
    let mut sid = dfa
        .start_state_reverse(&Input::new(t).range(span.clone()))
        .ok()?;
    let mut hits = Vec::new();
    let record = |sid: StateID, at: usize, hits: &mut Vec<(u32, usize)>| {
        for i in 0..dfa.match_len(sid) {
            hits.push((dfa.match_pattern(sid, i).as_u32(), at));
        }
    };
    for (i, &b) in bytes.iter().enumerate().rev() {
        sid = dfa.next_state(sid, b);
        if dfa.is_special_state(sid) {
            // Matches are reported one byte late: this state says where the last byte read
            // (the one after `b`) starts a match.
            if dfa.is_match_state(sid) {
                record(sid, span.start + i + 1, &mut hits);
            } else if dfa.is_dead_state(sid) {
                return Some(hits);
            } else if dfa.is_quit_state(sid) {
                return None;
            }
        }
    }
    // Past the span's start: the byte before it, or the start of the text.
    match span.start.checked_sub(1).and_then(|i| t.get(i)) {
        Some(&b) => {
            sid = dfa.next_state(sid, b);
            if dfa.is_match_state(sid) {
                record(sid, span.start, &mut hits);
            } else if dfa.is_quit_state(sid) {
                return None;
            }
        }
        None => {
            sid = dfa.next_eoi_state(sid);
            if dfa.is_match_state(sid) {
                record(sid, 0, &mut hits);
            }
        }
    }
    Some(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::dfa::dense::DFA;
    use regex_automata::util::syntax;
    use regex_automata::MatchKind;

    fn dfa(patterns: &[&str]) -> DFA<Vec<u32>> {
        dense::Builder::new()
            .configure(dense::Config::new().match_kind(MatchKind::All))
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build_many(patterns)
            .unwrap()
    }

    /// The crate's own answer: which patterns match anywhere in `t`.
    fn reference(d: &DFA<Vec<u32>>, t: &[u8]) -> Vec<usize> {
        let mut set = PatternSet::new(d.pattern_len());
        d.try_which_overlapping_matches(&Input::new(t), &mut set)
            .unwrap();
        set.iter().map(|p| p.as_usize()).collect()
    }

    /// [`which_all`] over `dfas` with no limit on repeats, as pattern numbers.
    fn walked(dfas: &[&DFA<Vec<u32>>], t: &[u8]) -> Vec<Vec<usize>> {
        which_all(dfas, t, usize::MAX)
            .unwrap()
            .iter()
            .map(|found| {
                assert!(found.complete);
                found.patterns.iter().map(|p| p.as_usize()).collect()
            })
            .collect()
    }

    #[test]
    fn a_pair_finds_what_each_dfa_finds_alone() {
        let a = dfa(&[r"\bor\s+1\s*=\s*1\b", r"'\s*--\s*$", r"[0-9]{3}-[0-9]{4}"]);
        let b = dfa(&[r"^abc", r"xyz\b", r"q"]);
        for t in [
            "abc or 1=1 and call 555-1234 then '--",
            "say xyz",
            "xyzw or 1 = 12 '-- no",
            "",
            "q",
        ] {
            let t = t.as_bytes();
            assert_eq!(
                walked(&[&a, &b], t),
                vec![reference(&a, t), reference(&b, t)],
                "{:?}",
                String::from_utf8_lossy(t)
            );
        }
    }

    #[test]
    fn a_walk_that_found_everything_stops_and_its_partner_goes_on() {
        let a = dfa(&["a"]);
        let b = dfa(&["z$", "y"]);
        let t = b"a then y and at the very end z";
        assert_eq!(walked(&[&a, &b], t), vec![vec![0], vec![0, 1]]);
    }

    #[test]
    fn a_walk_stops_after_its_repeats_and_says_so() {
        let a = dfa(&["[0-9]", "x"]);
        let b = dfa(&["1"]);
        let t = b"1234567890123 x";
        let found = which_all(&[&a, &b], t, 3).unwrap();
        // `a` met four match states with nothing new after its first digit: it stopped there,
        // before `x`; `b` found its one pattern.
        assert!(!found[0].complete);
        assert_eq!(
            found[0]
                .patterns
                .iter()
                .map(|p| p.as_usize())
                .collect::<Vec<_>>(),
            [0]
        );
        assert!(found[1].complete && found[1].patterns.is_full());
        // With room for the repeats it reads on to `x`.
        let found = which_all(&[&a, &b], t, 20).unwrap();
        assert!(found[0].complete && found[0].patterns.is_full());
    }

    fn reverse(patterns: &[&str]) -> DFA<Vec<u32>> {
        dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(regex_automata::dfa::StartKind::Unanchored),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(
                regex_automata::nfa::thompson::Config::new()
                    .utf8(false)
                    .reverse(true),
            )
            .build_many(patterns)
            .unwrap()
    }

    /// A walk's hits, checked to descend by start, with the patterns of one start sorted (the
    /// DFA lists them in its own order, which the gap checks do not depend on).
    fn by_start(hits: Option<Vec<(u32, usize)>>) -> Option<Vec<(u32, usize)>> {
        let mut hits = hits?;
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "{hits:?}");
        hits.sort_by_key(|&(p, at)| (std::cmp::Reverse(at), p));
        Some(hits)
    }

    /// Every `(pattern, start)` of a match inside `span` (look-around sees the whole text), by
    /// descending start, then pattern: each pattern tried from each start, anchored. (Not the
    /// crate's reverse overlapping search: past the first pattern of a match state it reports
    /// offsets one byte short, see [`match_starts`].)
    fn reverse_reference(
        patterns: &[&str],
        t: &[u8],
        span: Range<usize>,
    ) -> Option<Vec<(u32, usize)>> {
        let res: Vec<_> = patterns
            .iter()
            .map(|p| {
                regex_automata::meta::Regex::builder()
                    .syntax(syntax::Config::new().unicode(false).utf8(false))
                    .configure(regex_automata::meta::Config::new().utf8_empty(false))
                    .build(p)
                    .unwrap()
            })
            .collect();
        let mut found = Vec::new();
        for at in (span.start..=span.end).rev() {
            for (k, re) in res.iter().enumerate() {
                let input = Input::new(t)
                    .range(at..span.end)
                    .anchored(regex_automata::Anchored::Yes);
                if re.is_match(input) {
                    found.push((k as u32, at));
                }
            }
        }
        Some(found)
    }

    #[test]
    fn a_reverse_walk_reports_every_match_start() {
        let pa = [r"\bsteps\s+to\b", r"how\b", "o", "o"];
        let pb = ["^never", r"\bto$", "s", r"s\b"];
        let (a, b) = (reverse(&pa), reverse(&pb));
        let t = b"never say how: steps to do it, steps  to";
        let spans = [
            0..t.len(),
            6..t.len(),
            0..20,
            15..23,
            40..40,
            0..0,
            3..t.len(),
        ];
        for (i, s) in spans.iter().enumerate() {
            let (d, p) = if i % 2 == 0 {
                (&a, &pa[..])
            } else {
                (&b, &pb[..])
            };
            let hits = match_starts(d, t, s.clone());
            assert_eq!(
                by_start(hits),
                reverse_reference(p, t, s.clone()),
                "span {s:?}"
            );
        }
        // Two patterns that start at one place: both at that place (the crate's own reverse
        // overlapping search reports the second one byte short).
        let hits = match_starts(&a, t, 0..t.len()).unwrap();
        let mut o: Vec<_> = hits.into_iter().filter(|&(p, _)| p >= 2).collect();
        o.sort_unstable();
        assert_eq!(
            o,
            [
                (2, 11),
                (2, 22),
                (2, 25),
                (2, 39),
                (3, 11),
                (3, 22),
                (3, 25),
                (3, 39)
            ]
        );
        assert!(match_starts(&a, t, Range { start: 5, end: 2 }).is_none());
        assert!(match_starts(&a, t, 0..t.len() + 1).is_none());
    }

    proptest! {
        /// A reverse walk over any span reports every match start, by descending start.
        #[test]
        fn a_reverse_walk_finds_every_match_start(
            sets in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec![
                    "ab", r"\bab\b", "^a", "b$", r"a\s*=\s*b", "(?:ab){2,}", r"b\b", "a.b", "x",
                ]), 1..4),
                1..7),
            t in prop::collection::vec(prop::sample::select(b"ab= .x\n".to_vec()), 0..200),
            cuts in prop::collection::vec((0usize..210, 0usize..210), 7),
        ) {
            let dfas: Vec<_> = sets.iter().map(|s| reverse(s)).collect();
            let spans: Vec<_> = cuts
                .iter()
                .map(|&(a, b)| a.min(b).min(t.len())..a.max(b).min(t.len()))
                .collect();
            for ((d, p), s) in dfas.iter().zip(&sets).zip(&spans) {
                prop_assert_eq!(by_start(match_starts(d, &t, s.clone())), reverse_reference(p, &t, s.clone()));
            }
        }

        /// Any number of DFAs walked in pairs find what the crate's overlapping search finds,
        /// with look-around at both ends of the text and counted repetitions.
        #[test]
        fn walks_find_what_the_overlapping_search_finds(
            sets in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec![
                    "ab", r"\bab\b", "^a", "b$", r"a\s*=\s*b", "[0-9]{2,3}", r"\d+\.\d+",
                    "(?:ab){2,}", "x", r"b\b", r"\Bb", "a.b", "^$",
                ]), 1..5),
                1..6),
            t in prop::collection::vec(prop::sample::select(b"ab= .x1\n".to_vec()), 0..300),
        ) {
            let dfas: Vec<_> = sets.iter().map(|s| dfa(s)).collect();
            let want: Vec<_> = dfas.iter().map(|d| reference(d, &t)).collect();
            prop_assert_eq!(walked(&dfas.iter().collect::<Vec<_>>(), &t), want);
        }
    }
}
