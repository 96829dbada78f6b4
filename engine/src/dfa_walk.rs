//! Several fully built DFAs walked over one text in one loop.
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

use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::{Input, MatchError, PatternSet};

/// One DFA's walk over a text: where it is and what it has found.
#[derive(Debug)]
pub struct Walk<'a> {
    dfa: &'a dense::DFA<Vec<u32>>,
    sid: StateID,
    found: PatternSet,
    /// Nothing more to find: every pattern found, or the dead state reached.
    done: bool,
}

impl<'a> Walk<'a> {
    /// A walk of `dfa` over the whole of `t`, from its unanchored start state.
    pub fn new(dfa: &'a dense::DFA<Vec<u32>>, t: &[u8]) -> Result<Walk<'a>, MatchError> {
        let sid = dfa.start_state_forward(&Input::new(t))?;
        Ok(Walk {
            dfa,
            sid,
            found: PatternSet::new(dfa.pattern_len()),
            done: false,
        })
    }

    /// The patterns found, by the DFA's pattern ids.
    pub fn found(&self) -> &PatternSet {
        &self.found
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
        for i in 0..self.dfa.match_len(self.sid) {
            self.found.insert(self.dfa.match_pattern(self.sid, i));
        }
        self.done = self.found.is_full();
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

/// Walks every walk over `t` (the text each was started on), two at a time in one loop. When
/// one of a pair is done the other goes on alone. Pairs, not more: the sample bundle has two
/// walks per text, and each further chain in the loop adds its bookkeeping to every byte.
pub fn walk_all(walks: &mut [Walk<'_>], t: &[u8]) -> Result<(), MatchError> {
    for pair in walks.chunks_mut(2) {
        match pair {
            [a, b] => walk_pair(a, b, t)?,
            [a] => a.run_from(t, 0)?,
            _ => {}
        }
    }
    Ok(())
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

    fn walked(walks: &[Walk<'_>]) -> Vec<Vec<usize>> {
        walks
            .iter()
            .map(|w| w.found().iter().map(|p| p.as_usize()).collect())
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
            let mut walks = vec![Walk::new(&a, t).unwrap(), Walk::new(&b, t).unwrap()];
            walk_all(&mut walks, t).unwrap();
            assert_eq!(
                walked(&walks),
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
        let mut walks = vec![Walk::new(&a, t).unwrap(), Walk::new(&b, t).unwrap()];
        walk_all(&mut walks, t).unwrap();
        assert_eq!(walked(&walks), vec![vec![0], vec![0, 1]]);
    }

    proptest! {
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
            let mut walks: Vec<_> = dfas.iter().map(|d| Walk::new(d, &t).unwrap()).collect();
            walk_all(&mut walks, &t).unwrap();
            let want: Vec<_> = dfas.iter().map(|d| reference(d, &t)).collect();
            prop_assert_eq!(walked(&walks), want);
        }
    }
}
