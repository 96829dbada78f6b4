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
//!
//! On a large automaton the walk is bound by memory latency, not by instructions: each step
//! loads the next state from a transition table of megabytes (the sample bundle's atom DFA
//! holds over two thousand atoms), and the next step needs that load. Sampled on generated
//! prompts, 45 % of the prefilter's own time sat on that one load. So a text is cut into
//! `STREAMS` pieces walked in step, each from the automaton's start a few bytes before its
//! piece (the longest literal less one, so every occurrence that ends in the piece is seen
//! whole): the streams' loads do not depend on one another and the processor overlaps them.
//! Occurrences of the later streams wait in a buffer, so the callback still sees them in text
//! order; a long text is cut so block by block (`BLOCK`), which bounds the buffers.

use std::ops::Range;

use aho_corasick::automaton::{Automaton, Prefilter, StateID};
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
    /// The longest literal's length: how far before its piece a stream starts.
    max_len: usize,
    /// Whether long texts may be walked in streams: decided once, from the automaton.
    streams: bool,
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
        Ok(Literals::of(imp, literals))
    }

    /// `imp`, built over `literals`.
    fn of<P: AsRef<[u8]>>(imp: Imp, literals: &[P]) -> Literals {
        let streams = match &imp {
            Imp::Dfa(d) => streamable(d),
            Imp::Nfa(n) => streamable(n),
        };
        Literals {
            imp,
            max_len: literals.iter().map(|l| l.as_ref().len()).max().unwrap_or(0),
            streams,
        }
    }

    /// Calls `f` with every occurrence in `t`, in order of where it ends.
    #[inline]
    pub fn for_each(&self, t: &[u8], f: impl FnMut(Occurrence)) {
        let streams = self.walks_in_streams(t.len());
        match &self.imp {
            Imp::Dfa(d) if streams => walk_streams(d, t, self.max_len, f),
            Imp::Nfa(n) if streams => walk_streams(n, t, self.max_len, f),
            Imp::Dfa(d) => walk_one(d, t, f),
            Imp::Nfa(n) => walk_one(n, t, f),
        }
    }

    /// Whether a text of `len` bytes is walked in interleaved streams.
    #[inline]
    pub(crate) fn walks_in_streams(&self, len: usize) -> bool {
        self.streams && len >= MIN_INTERLEAVED && len / STREAMS > self.max_len
    }

    /// Bytes held by the automaton.
    pub fn memory_usage(&self) -> usize {
        match &self.imp {
            Imp::Dfa(d) => d.memory_usage(),
            Imp::Nfa(n) => n.memory_usage(),
        }
    }
}

/// Texts shorter than this are walked as one stream: the pieces' overlaps and the buffer
/// would cost more than the overlapped loads save. (Timed as below: from 128 bytes on, 4.5 ns
/// a byte against 4.8 from 256 on; from 68 or 96, no faster than from 128.)
const MIN_INTERLEAVED: usize = 128;
/// Streams walked in step on a longer text. Timed on 40,000 generated prompts new to the
/// automaton (a scratch program walking the sample bundle's atom DFA with a counting callback):
/// 6.8 ns a byte in one stream, 5.6 in two, 4.7 in three, 4.5 in four.
const STREAMS: usize = 4;

/// Whether an automaton can be walked in streams. With a prefilter the start state skips
/// ahead, which one stream does best. An empty literal (the start state matches) occurs
/// everywhere: one stream. Only the standard unanchored semantics (what `Literals` builds)
/// never reach a dead state, which the streams could not honour (a dead state ends the whole
/// search).
fn streamable<A: Automaton>(aut: &A) -> bool {
    aut.prefilter().is_none()
        && aut.match_kind() == MatchKind::Standard
        && aut
            .start_state(Anchored::No)
            .is_ok_and(|sid| !aut.is_match(sid))
}

/// Bytes walked in streams at a time: the later streams' occurrences wait in buffers until
/// their block is done, so a block bounds what those hold (a text of one letter repeated, whose
/// every byte is an atom, would otherwise buffer three quarters of a 256 KiB prompt's bytes).
const BLOCK: usize = 8 << 10;

/// Every occurrence in `t`, in order of its end, in [`STREAMS`] streams, block by block (the last block takes the remainder, so a
/// text under two blocks is one block).
#[inline(always)]
fn walk_streams<A: Automaton>(aut: &A, t: &[u8], max_len: usize, mut f: impl FnMut(Occurrence)) {
    let Ok(start) = aut.start_state(Anchored::No) else {
        return;
    };
    // The later streams' occurrences, reported once the first stream is done. Room for one
    // occurrence per 16 bytes of a stream's piece up front (the development corpus held one
    // per 7 bytes before short atoms were padded): grown from empty, each text paid a dozen
    // reallocations (1.4 % of the samples of a scan of that corpus, `perf`; 0.2 % of its
    // instructions).
    let piece = t.len().min(2 * BLOCK) / STREAMS;
    let mut later: [Vec<Occurrence>; STREAMS] =
        std::array::from_fn(|k| Vec::with_capacity(if k == 0 { 0 } else { piece / 16 }));
    let mut from = 0;
    while from < t.len() {
        let to = if t.len() - from < 2 * BLOCK {
            t.len()
        } else {
            from + BLOCK
        };
        walk_block(aut, t, from..to, start, max_len, &mut later, &mut f);
        from = to;
    }
}

/// One block of [`walk_streams`]. Stream `k` reports the occurrences that end in its piece
/// `(lo_k, hi_k]` of the block; it starts from the automaton's start state `max_len - 1` bytes
/// before the piece, so it has read every byte of such an occurrence (an unanchored search
/// from the start state at `p` finds every occurrence that starts at or after `p`), and the
/// occurrences it sees that end before its piece are the previous stream's (or block's) to
/// report. The first stream reports at once, the others after it, in stream order.
#[inline(always)]
fn walk_block<A: Automaton>(
    aut: &A,
    t: &[u8],
    block: Range<usize>,
    start: StateID,
    max_len: usize,
    later: &mut [Vec<Occurrence>; STREAMS],
    mut f: impl FnMut(Occurrence),
) {
    let piece = block.len() / STREAMS;
    let lo: [usize; STREAMS] = std::array::from_fn(|k| block.start + k * piece);
    let hi: [usize; STREAMS] = std::array::from_fn(|k| {
        if k + 1 == STREAMS {
            block.end
        } else {
            block.start + (k + 1) * piece
        }
    });
    let from: [usize; STREAMS] =
        std::array::from_fn(|k| lo[k].saturating_sub(max_len.saturating_sub(1)));
    let mut sid = [start; STREAMS];
    let mut found = |k: usize, sid: StateID, end: usize, later: &mut [Vec<_>; STREAMS]| {
        if end <= lo[k] {
            return;
        }
        match later.get_mut(k) {
            Some(held) if k > 0 => report(aut, sid, end, &mut |o| held.push(o)),
            _ => report(aut, sid, end, &mut f),
        }
    };
    // Every stream is at least `piece` bytes long: walk that many in step, over slices of one
    // length so that the loop needs no bounds checks.
    let [a, b, c, d] = from.map(|f| t.get(f..f + piece).unwrap_or_default());
    for (i, (((&x0, &x1), &x2), &x3)) in a.iter().zip(b).zip(c).zip(d).enumerate() {
        for (k, x) in [x0, x1, x2, x3].into_iter().enumerate() {
            sid[k] = aut.next_state(Anchored::No, sid[k], x);
        }
        for k in 0..STREAMS {
            if aut.is_special(sid[k]) && aut.is_match(sid[k]) {
                found(k, sid[k], from[k] + i + 1, later);
            }
        }
    }
    // The rest of each stream (its overlap, and the last one's remainder), alone and in order.
    for k in 0..STREAMS {
        let rest = from[k] + piece;
        for (at, &b) in (rest..).zip(t.get(rest..hi[k]).unwrap_or_default()) {
            sid[k] = aut.next_state(Anchored::No, sid[k], b);
            if aut.is_special(sid[k]) && aut.is_match(sid[k]) {
                found(k, sid[k], at + 1, later);
            }
        }
    }
    for held in later.iter_mut() {
        held.drain(..).for_each(&mut f);
    }
}

/// The overlapping search of `aho-corasick` (its `try_find_overlapping_fwd`, unanchored), as one
/// loop. A state is special when it is dead, a match, or (with a prefilter) the start state;
/// the prefilter, when the automaton has one, skips from the start state to the next place a
/// literal may begin.
#[inline(always)]
fn walk_one<A: Automaton>(aut: &A, t: &[u8], mut f: impl FnMut(Occurrence)) {
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
fn report<A: Automaton>(aut: &A, sid: StateID, end: usize, f: &mut impl FnMut(Occurrence)) {
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

    /// The DFA (`dfa`) or the contiguous NFA over `literals`, with or without the crate's
    /// prefilter.
    fn of_kind(literals: &[Vec<u8>], dfa: bool, prefilter: bool) -> Literals {
        let imp = if dfa {
            Imp::Dfa(
                dfa::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .prefilter(prefilter)
                    .build(literals)
                    .unwrap(),
            )
        } else {
            Imp::Nfa(
                contiguous::Builder::new()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .prefilter(prefilter)
                    .build(literals)
                    .unwrap(),
            )
        };
        Literals::of(imp, literals)
    }

    fn nfa(literals: &[Vec<u8>]) -> Literals {
        of_kind(literals, false, true)
    }

    /// Both kinds without a prefilter, as the large atom automaton is: long texts are walked
    /// in streams.
    fn streamed(literals: &[Vec<u8>]) -> [Literals; 2] {
        [
            of_kind(literals, true, false),
            of_kind(literals, false, false),
        ]
    }

    #[test]
    fn occurrences_across_the_streams_edges_are_reported_once_in_order() {
        // Occurrences at the very start and end, and ones that straddle each piece's edge
        // (the text is 4 pieces of 100 bytes), of literals of different lengths.
        let lits: Vec<Vec<u8>> = vec![b"abcdef".to_vec(), b"cd".to_vec(), b"f".to_vec()];
        let mut t = vec![b'.'; 400];
        for at in [0, 97, 98, 99, 196, 295, 394] {
            t[at..at + 6].copy_from_slice(b"ABCdef");
        }
        for set in streamed(&lits) {
            assert!(set.walks_in_streams(t.len()));
            let got = set.all(&t);
            assert_eq!(got, reference(&lits, &t, AhoCorasickKind::DFA));
            // 7 × (abcdef, cd, f), less what the overlapping copies at 97–99 overwrote.
            assert!(got.len() > 10, "{got:?}");
        }
        // Past two blocks: the blocks' edges too.
        let mut long = vec![b'.'; 3 * BLOCK + 1000];
        for at in [
            BLOCK - 6,
            BLOCK - 3,
            BLOCK - 1,
            2 * BLOCK - 2,
            2 * BLOCK + 513,
        ] {
            long[at..at + 6].copy_from_slice(b"abcDEF");
        }
        for set in streamed(&lits) {
            let got = set.all(&long);
            assert_eq!(got, reference(&lits, &long, AhoCorasickKind::DFA));
            assert!(got.len() > 8, "{got:?}");
        }
        // Short texts, and automata with a prefilter, are walked in one stream.
        assert!(!streamed(&lits)[0].walks_in_streams(127));
        assert!(!Literals::new(&[b"zebra"]).unwrap().walks_in_streams(4096));
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

        /// The same on texts long enough to be walked in streams: every occurrence once, in
        /// the iterator's order, whatever piece edge it crosses.
        #[test]
        fn streams_find_the_same_occurrences_as_the_iterator(
            lits in prop::collection::vec(prop::collection::vec(prop::sample::select(b"abAB .".to_vec()), 1..9), 1..12),
            t in prop::collection::vec(prop::sample::select(b"abAB .x".to_vec()), 128..1200),
        ) {
            let want = reference(&lits, &t, AhoCorasickKind::DFA);
            for set in streamed(&lits) {
                prop_assert!(set.walks_in_streams(t.len()));
                prop_assert_eq!(set.all(&t), want.clone());
            }
        }

        /// The same past several blocks, whose edges fall anywhere in the text's pattern.
        #[test]
        fn blocks_find_the_same_occurrences_as_the_iterator(
            lits in prop::collection::vec(prop::collection::vec(prop::sample::select(b"abAB .".to_vec()), 1..9), 1..12),
            unit in prop::collection::vec(prop::sample::select(b"abAB .x".to_vec()), 1..300),
            len in 2 * BLOCK..4 * BLOCK,
        ) {
            let t: Vec<u8> = unit.iter().copied().cycle().take(len).collect();
            let want = reference(&lits, &t, AhoCorasickKind::DFA);
            for set in streamed(&lits) {
                prop_assert_eq!(set.all(&t), want.clone());
            }
        }
    }
}
