//! Every occurrence of many literals in one pass over a text: the atom automaton of the
//! prefilter and the keyword automaton both need each place where any of their words occurs
//! (ASCII case ignored), overlaps included.
//!
//! `aho-corasick`'s `find_overlapping_iter` gives exactly that, one match per call: each call
//! resumes a saved search state, steps the automaton and returns. On prose the atom automaton
//! matches about once every five bytes (short words such as `in`, `the`, `or` are atoms), and
//! that per-call bookkeeping was about a tenth of the prefilter's instructions there.
//! [`Literals::for_each`] walks the same automaton itself through the crate's low-level
//! [`Automaton`] interface, in one loop that calls back for every occurrence, and reports the
//! same occurrences in the same order (position of the end, then the order the automaton lists
//! them in). The property test below holds it to that.

use aho_corasick::automaton::{Automaton, Prefilter};
use aho_corasick::{dfa, nfa::contiguous, Anchored, BuildError, MatchKind, Span};

/// One occurrence: which literal (its index in the list the set was built from) and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub literal: usize,
    pub start: usize,
    pub end: usize,
}

/// Literals searched together, ASCII case-insensitively, every occurrence reported.
#[derive(Clone, Debug)]
pub struct Literals {
    imp: Imp,
}

/// A DFA scans 2–3× faster than the other kinds; the contiguous NFA is the fallback when very
/// many literals exceed the DFA's limits.
#[derive(Clone, Debug)]
enum Imp {
    Dfa(dfa::DFA),
    Nfa(contiguous::NFA),
}

impl Literals {
    /// Builds the automaton over `literals`.
    pub fn new<P: AsRef<[u8]>>(literals: &[P]) -> Result<Literals, BuildError> {
        let imp = match dfa::Builder::new()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .build(literals)
        {
            Ok(d) => Imp::Dfa(d),
            Err(_) => Imp::Nfa(
                contiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .build(literals)?,
            ),
        };
        Ok(Literals { imp })
    }

    /// Calls `f` with every occurrence in `t`, in order of where it ends.
    #[inline]
    pub fn for_each(&self, t: &[u8], f: impl FnMut(Occurrence)) {
        match &self.imp {
            Imp::Dfa(d) => walk(d, t, f),
            Imp::Nfa(n) => walk(n, t, f),
        }
    }

    /// Bytes held by the automaton.
    pub fn memory_usage(&self) -> usize {
        match &self.imp {
            Imp::Dfa(d) => d.memory_usage(),
            Imp::Nfa(n) => n.memory_usage(),
        }
    }
}

/// The overlapping search of `aho-corasick` (its `try_find_overlapping_fwd`, unanchored), as one
/// loop. A state is special when it is dead, a match, or (with a prefilter) the start state;
/// the prefilter, when the automaton has one, skips from the start state to the next place a
/// literal may begin.
#[inline(always)]
fn walk<A: Automaton>(aut: &A, t: &[u8], mut f: impl FnMut(Occurrence)) {
    let Ok(mut sid) = aut.start_state(Anchored::No) else {
        // Only an anchored-only automaton has no unanchored start; these are built unanchored.
        return;
    };
    if aut.is_match(sid) {
        // An empty literal occurs at the start (and, through the start state, everywhere).
        report(aut, sid, 0, &mut f);
    }
    let pre: Option<&Prefilter> = aut.prefilter();
    let mut at = 0;
    while at < t.len() {
        sid = aut.next_state(Anchored::No, sid, t[at]);
        if aut.is_special(sid) {
            if aut.is_dead(sid) {
                return;
            } else if aut.is_match(sid) {
                report(aut, sid, at + 1, &mut f);
            } else if let Some(pre) = pre {
                match pre.find_in(t, Span::from(at..t.len())).into_option() {
                    None => return,
                    Some(i) if i > at => {
                        at = i;
                        continue;
                    }
                    Some(_) => {}
                }
            }
        }
        at += 1;
    }
}

#[inline(always)]
fn report<A: Automaton>(
    aut: &A,
    sid: aho_corasick::automaton::StateID,
    end: usize,
    f: &mut impl FnMut(Occurrence),
) {
    for i in 0..aut.match_len(sid) {
        let p = aut.match_pattern(sid, i);
        f(Occurrence {
            literal: p.as_usize(),
            start: end - aut.pattern_len(p),
            end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasick, AhoCorasickKind};
    use proptest::prelude::*;

    impl Literals {
        /// Every occurrence in `t`, in order of where it ends.
        fn all(&self, t: &[u8]) -> Vec<Occurrence> {
            let mut v = Vec::new();
            self.for_each(t, |o| v.push(o));
            v
        }

        fn is_dfa(&self) -> bool {
            matches!(self.imp, Imp::Dfa(_))
        }
    }

    /// What `aho-corasick`'s own overlapping iterator reports, for the same literals.
    fn reference(literals: &[Vec<u8>], t: &[u8], kind: AhoCorasickKind) -> Vec<Occurrence> {
        let ac = AhoCorasick::builder()
            .kind(Some(kind))
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .build(literals)
            .unwrap();
        ac.find_overlapping_iter(t)
            .map(|m| Occurrence {
                literal: m.pattern().as_usize(),
                start: m.start(),
                end: m.end(),
            })
            .collect()
    }

    fn nfa(literals: &[Vec<u8>]) -> Literals {
        Literals {
            imp: Imp::Nfa(
                contiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .build(literals)
                    .unwrap(),
            ),
        }
    }

    #[test]
    fn overlapping_occurrences_in_end_order() {
        let lits: Vec<Vec<u8>> = vec![b"he".to_vec(), b"she".to_vec(), b"hers".to_vec()];
        let set = Literals::new(&lits).unwrap();
        assert!(set.is_dfa());
        let got = set.all(b"uSHErs");
        let at = |literal, start, end| Occurrence {
            literal,
            start,
            end,
        };
        assert_eq!(got, vec![at(1, 1, 4), at(0, 2, 4), at(2, 2, 6)]);
        assert_eq!(got, reference(&lits, b"uSHErs", AhoCorasickKind::DFA));
        assert_eq!(nfa(&lits).all(b"uSHErs"), got);
    }

    #[test]
    fn a_single_rare_literal_uses_the_prefilter_and_finds_every_occurrence() {
        let lits: Vec<Vec<u8>> = vec![b"zebra".to_vec()];
        let set = Literals::new(&lits).unwrap();
        let t = b"a zebra, two ZEBRAS and zebrazebra";
        let got = set.all(t);
        assert_eq!(
            got.iter().map(|o| o.start).collect::<Vec<_>>(),
            vec![2, 13, 24, 29]
        );
        assert_eq!(got, reference(&lits, t, AhoCorasickKind::DFA));
    }

    #[test]
    fn empty_literal_and_empty_text() {
        let lits: Vec<Vec<u8>> = vec![Vec::new(), b"a".to_vec()];
        let set = Literals::new(&lits).unwrap();
        assert_eq!(set.all(b""), reference(&lits, b"", AhoCorasickKind::DFA));
        assert_eq!(
            set.all(b"aa"),
            reference(&lits, b"aa", AhoCorasickKind::DFA)
        );
        assert!(Literals::new(&[b"x"]).unwrap().all(b"").is_empty());
    }

    proptest! {
        /// Same occurrences, same order, as the crate's iterator, for both automaton kinds.
        #[test]
        fn same_occurrences_as_the_iterator(
            lits in prop::collection::vec(prop::collection::vec(prop::sample::select(b"abAB .".to_vec()), 0..5), 1..12),
            t in prop::collection::vec(prop::sample::select(b"abAB .x".to_vec()), 0..200),
        ) {
            let set = Literals::new(&lits).unwrap();
            prop_assert_eq!(set.all(&t), reference(&lits, &t, AhoCorasickKind::DFA));
            prop_assert_eq!(nfa(&lits).all(&t), reference(&lits, &t, AhoCorasickKind::ContiguousNFA));
        }
    }
}
