//! Confirming a gapped rule on a short stretch of new text, with a bounded backtracker instead
//! of the lazy DFA.
//!
//! A rule that counts a wide class across a gap (`address\b[^\n]{0,100}?\d[^\n]{0,80}?,…`,
//! see [`crate::gaps`]) is the lazy DFA's worst case: on text it has not seen, its state
//! tracks how far each started match has come through each counter, so nearly every byte
//! builds a new state, and each is a set of hundreds of NFA states. Three ~200-byte rental
//! applications took 117–315 µs each in `pii-postal-address` alone, and crafted address-like
//! texts of 256 bytes up to 1.2 ms. The gap check skips the search where no gap can be
//! crossed; where one can, a short span now goes to `regex-automata`'s bounded backtracker,
//! which visits each (NFA state, byte) pair at most once: a search costs at most the NFA's
//! states times the span, whatever the text, builds nothing, and keeps nothing between texts.
//!
//! Only gapped rules, and only spans of up to [`SHORT_SPAN`] bytes (all windows together):
//! - the backtracker steps through the NFA at each byte a match could start at, so on longer
//!   spans, and for phrase rules whose lazy DFA reuses the states prose keeps reaching, the
//!   lazy DFA is faster. Given every rule's short spans, the development corpus scanned no
//!   faster and its p99 rose, from the spans where the rule does not match;
//! - given the gapped rules' alone, the corpus's scan instructions fell 2.3 % and its slowest
//!   short prompt went from 669–734 µs to 427–469 µs; 400 crafted address-like texts of up to
//!   256 bytes went from p99 568–602 µs (max 1.0–1.2 ms) to 79–86 µs (max 89–94 µs).
//!
//! Its matches are the regex's own (leftmost-first, the same syntax and empty-match rules as
//! the span regex); a property test holds them equal.

use std::cell::RefCell;
use std::ops::Range;

use regex_automata::nfa::thompson::backtrack::{self, BoundedBacktracker};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::prefilter::Prefilter as PrefixFilter;
use regex_automata::{Input, Match, MatchKind};

/// Spans searched (all windows together) up to this long are confirmed with the backtracker.
pub const SHORT_SPAN: usize = 256;

/// The backtracker of one span regex.
#[derive(Debug)]
pub struct ShortSearch {
    re: BoundedBacktracker,
}

thread_local! {
    /// One search state per thread, shared by every rule's backtracker: its visited set is
    /// at most the largest NFA's states times [`SHORT_SPAN`] bits (tens of KiB), where a cache
    /// per rule and thread would hold that many times over.
    static CACHE: RefCell<Option<backtrack::Cache>> = const { RefCell::new(None) };
}

impl ShortSearch {
    /// The backtracker of `source` as the span regex compiles it (bytes, ASCII classes,
    /// leftmost-first, empty matches allowed anywhere), with the regex's prefix prefilter so
    /// it tries only the positions a match can start at. `None` when it does not compile
    /// within `size_limit`: the lazy DFA then confirms every span.
    pub fn of(source: &str, size_limit: usize) -> Option<ShortSearch> {
        // Parsed once, as the engine parses every pattern (`atoms::parse`: bytes, ASCII
        // classes), for both the prefilter and the NFA.
        let hir = crate::atoms::parse(source).ok()?;
        let prefix = PrefixFilter::from_hir_prefix(MatchKind::LeftmostFirst, &hir);
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .which_captures(WhichCaptures::Implicit)
                    .nfa_size_limit(Some(size_limit)),
            )
            .build_from_hir(&hir)
            .ok()?;
        // The visited set must hold every state at every position of the longest span.
        let capacity = nfa
            .states()
            .len()
            .saturating_mul(SHORT_SPAN + 1)
            .div_ceil(8)
            + 64;
        let re = BoundedBacktracker::builder()
            .configure(
                BoundedBacktracker::config()
                    .visited_capacity(capacity)
                    .prefilter(prefix),
            )
            .build_from_nfa(nfa)
            .ok()?;
        (re.max_haystack_len() >= SHORT_SPAN).then_some(ShortSearch { re })
    }

    /// The matches of the regex in `windows` of `t` (or all of `t`), in order, as the span
    /// regex's `find_iter` reports them, at most `limit`; `None` when the spans are longer
    /// than [`SHORT_SPAN`] together (the caller then runs the lazy DFA).
    pub fn find_in(
        &self,
        t: &[u8],
        windows: Option<&[Range<usize>]>,
        limit: usize,
    ) -> Option<Vec<Match>> {
        let whole = 0..t.len();
        let spans = windows.unwrap_or(std::slice::from_ref(&whole));
        if spans.iter().map(|w| w.len()).sum::<usize>() > SHORT_SPAN {
            return None;
        }
        CACHE.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            let cache = slot.get_or_insert_with(|| self.re.create_cache());
            cache.reset(&self.re);
            let mut found = Vec::new();
            for w in spans {
                for m in self.re.try_find_iter(cache, Input::new(t).range(w.clone())) {
                    // Only a span longer than the visited set can fail, which the length
                    // check rules out; were one to fail, the lazy DFA would search instead.
                    found.push(m.ok()?);
                    if found.len() >= limit {
                        return Some(found);
                    }
                }
            }
            Some(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefilter::tests::{noise, pattern, span_regex};
    use proptest::prelude::*;

    #[test]
    fn a_counted_gap_on_a_short_text() {
        let source = r"(?i)\baddress\b[^\n]{0,100}?\d[^\n]{0,80}?,\s*[A-Z]{2}\s+\d{5}\b";
        let s = ShortSearch::of(source, 10 << 20).unwrap();
        let t = b"Name: Jo, address: 12 Oak Lane, Springfield, IL 62704. Phone 555-0100";
        let found = s.find_in(t, None, usize::MAX).unwrap();
        let want: Vec<_> = span_regex(source).unwrap().find_iter(t).collect();
        assert_eq!(found, want);
        assert_eq!(found.len(), 1);
        // Windows are searched in order, and a limit stops the search.
        let two = [0..20, 30..t.len()];
        assert_eq!(s.find_in(t, Some(&two), 1).unwrap().len(), 0);
        // Longer than the short span: the lazy DFA's job.
        let long = vec![b'a'; SHORT_SPAN + 1];
        assert!(s.find_in(&long, None, 1).is_none());
        let windows = [0..SHORT_SPAN / 2, SHORT_SPAN / 2..SHORT_SPAN + 1];
        assert!(s.find_in(&long, Some(&windows), 1).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// The backtracker reports exactly the span regex's matches, in the same order, on the
        /// whole text and in windows (whose look-around still sees the text around them).
        #[test]
        fn backtracker_matches_the_span_regex(
            pat in pattern(),
            before in noise(),
            after in noise(),
            cut in any::<prop::sample::Index>(),
        ) {
            let (source, sample) = pat;
            let Some(re) = span_regex(&source) else {
                return Ok(());
            };
            let Some(s) = ShortSearch::of(&source, 10 << 20) else {
                return Ok(());
            };
            let text = format!("{before}{sample}{after}{sample}");
            let t = text.as_bytes();
            prop_assume!(t.len() <= SHORT_SPAN);
            let whole: Vec<_> = re.find_iter(t).collect();
            prop_assert_eq!(s.find_in(t, None, usize::MAX).unwrap(), whole.clone());
            prop_assert_eq!(s.find_in(t, None, 1).unwrap(), whole.into_iter().take(1).collect::<Vec<_>>());
            let mid = cut.index(t.len() + 1);
            let windows = [0..mid, mid..t.len()];
            let windowed: Vec<_> = windows
                .iter()
                .flat_map(|w| re.find_iter(Input::new(t).range(w.clone())))
                .collect();
            prop_assert_eq!(s.find_in(t, Some(&windows), usize::MAX).unwrap(), windowed);
        }
    }
}
