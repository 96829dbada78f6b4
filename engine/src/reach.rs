//! How far a match of an unbounded pattern can reach from one of its atoms.
//!
//! Most rules are phrases joined by `\s+` or `(?:\w+\s+){0,2}`: unbounded, so "a match is at
//! most N bytes" gives no window to confirm them in. But a match can only grow long through
//! its unbounded repetitions, and the bytes such a repetition adds beyond its minimum count all
//! belong to the repetition's byte class. So every match is made of at most `base` bytes (the
//! pattern with each unbounded repetition held to its minimum) plus at most `segments` runs of
//! bytes, each run inside one repetition's class. Walking away from an atom occurrence, a
//! lower bound of the base bytes needed so far is: the bytes in no class, plus one for every run
//! beyond `segments` (runs counted greedily, which gives the fewest). Once that bound exceeds
//! `base`, no match holding the occurrence reaches further. On prose the walk stops after a
//! sentence or two; on text made only of class bytes it does not stop, and the window is the
//! whole text (the same work as before).

use std::ops::Range;

use regex_syntax::hir::{Hir, HirKind};

use crate::gate::ByteSet;

/// Patterns whose base length or run count exceeds this get no reach (the windows would be
/// the whole text anyway).
const MAX_REACH: usize = 1 << 16;
/// Byte classes tracked one by one; more are merged into the last (a wider class only makes
/// windows larger, never too small).
const MAX_CLASSES: usize = 64;

/// The reach of one pattern.
#[derive(Debug, Clone)]
pub struct Reach {
    base: usize,
    segments: usize,
    /// For each byte, the classes (bits) that hold it.
    classes_of: Box<[u64; 256]>,
}

impl Reach {
    /// The reach of an unbounded pattern, `None` when it is too large to be useful.
    pub fn of(h: &Hir) -> Option<Reach> {
        let mut classes: Vec<ByteSet> = Vec::new();
        let (base, segments) = walk(h, &mut classes)?;
        // A run of a class that holds nearly every printable byte (`[^>]*`, `\S+`) can cover
        // any text: the walk would never stop, so do not take it.
        let nearly_all = |c: &ByteSet| (0x20..0x7F).filter(|&b| !c.contains(b)).count() <= 3;
        if classes.iter().any(nearly_all) {
            return None;
        }
        let mut classes_of = Box::new([0u64; 256]);
        for (i, class) in classes.iter().enumerate() {
            let bit = 1u64 << i.min(MAX_CLASSES - 1);
            for b in 0..=255u8 {
                if class.contains(b) {
                    classes_of[usize::from(b)] |= bit;
                }
            }
        }
        Some(Reach {
            base,
            segments,
            classes_of,
        })
    }

    /// The smallest start of a match that holds the byte at `from` (exclusive end of the
    /// walk), not looking below `stop`: returns `stop` if the walk gets there.
    pub fn left(&self, t: &[u8], from: usize, stop: usize) -> usize {
        let mut walk = Walk::default();
        let mut p = from.min(t.len());
        while p > stop {
            if walk.step(self, t[p - 1]) {
                return p;
            }
            p -= 1;
        }
        stop
    }

    /// The largest end of a match that holds the byte before `from`, not looking beyond
    /// `stop`: returns `stop` if the walk gets there.
    pub fn right(&self, t: &[u8], from: usize, stop: usize) -> usize {
        let mut walk = Walk::default();
        let stop = stop.min(t.len());
        let mut q = from;
        while q < stop {
            if walk.step(self, t[q]) {
                return q;
            }
            q += 1;
        }
        stop
    }
}

impl Reach {
    /// Disjoint ranges, in order, that hold every match containing one of the occurrences
    /// (`start..end` of the pattern's atoms in `t`; reordered and overwritten here); `None`
    /// when the walks would cover more than half the text (then the whole text is searched,
    /// which costs about the same).
    ///
    /// A walk only gets longer as its starting point moves the way it walks: a fresh walk has
    /// spent nothing where an earlier one has already spent some of its budget. So an
    /// occurrence inside another (starting no earlier, ending no later) adds nothing; of the
    /// rest, in order, a leftward walk can stop at the window before it, and a rightward walk
    /// at the next occurrence's end, because once it gets there the next walk goes at least
    /// as far and the two windows are one. Each byte is walked at most once in each
    /// direction, however densely the atoms occur, so the budget weighs the windows and not
    /// the same bytes walked again (counting those, long attack prompts, which hold a rule's
    /// words dozens of times, gave up on windows that were there).
    pub fn windows(
        &self,
        t: &[u8],
        occurrences: &mut [(usize, usize)],
    ) -> Option<Vec<Range<usize>>> {
        // By start, and for one start the longest first; then keep each occurrence that ends
        // later than every one before it (the others lie inside one of those).
        occurrences.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut n = 0;
        for i in 0..occurrences.len() {
            if n == 0 || occurrences[i].1 > occurrences[n - 1].1 {
                occurrences[n] = occurrences[i];
                n += 1;
            }
        }
        let kept = &occurrences[..n];
        // Beyond this, searching the whole text is cheaper than finding the windows.
        let budget = t.len() / 2;
        if self.least_cover(t.len(), kept) > budget {
            return None;
        }
        let mut work = 0usize;
        let mut out: Vec<Range<usize>> = Vec::new();
        for (i, &(start, end)) in kept.iter().enumerate() {
            // When the walk before reached this occurrence's end, `stop` is `start` and this
            // walk takes no step.
            let stop = out.last().map_or(0, |w| w.end.min(start));
            let from = self.left(t, start, stop);
            let next_end = kept.get(i + 1).map_or(t.len(), |&(_, e)| e);
            let to = self.right(t, end, next_end);
            work = work.saturating_add(start - from).saturating_add(to - end);
            if work > budget {
                return None;
            }
            match out.last_mut() {
                Some(last) if from <= last.end => last.end = last.end.max(to),
                _ => out.push(from..to),
            }
        }
        Some(out)
    }

    /// Bytes the windows cover at the least: a walk pays at most one base byte per byte it
    /// takes, so it goes at least `base + 1` bytes before it can stop. When that alone is more
    /// than half the text (a rule's common words all over a long prompt), the walks are not
    /// started: they would find windows too large to be worth it, or give up half way.
    fn least_cover(&self, len: usize, sorted: &[(usize, usize)]) -> usize {
        let reach = self.base.saturating_add(1);
        let mut covered = 0usize;
        let mut last_end = 0usize;
        for &(start, end) in sorted {
            let from = start.saturating_sub(reach).max(last_end);
            let to = end.saturating_add(reach).min(len);
            if to > from {
                covered += to - from;
                last_end = to;
            }
        }
        covered
    }
}

/// The lower bound of base bytes, walked one byte at a time away from an occurrence.
#[derive(Default)]
struct Walk {
    cost: usize,
    runs: usize,
    /// Classes holding every byte of the current run (0: no run).
    run: u64,
}

impl Walk {
    /// Takes one more byte; true when no match can hold it.
    fn step(&mut self, r: &Reach, b: u8) -> bool {
        let m = r.classes_of[usize::from(b)];
        if m == 0 {
            self.cost += 1;
            self.run = 0;
        } else if self.run & m != 0 {
            self.run &= m;
        } else {
            self.run = m;
            self.runs += 1;
            if self.runs > r.segments {
                self.cost += 1;
            }
        }
        self.cost > r.base
    }
}

/// (base length, runs) of `h`, collecting the classes of its unbounded repetitions.
fn walk(h: &Hir, classes: &mut Vec<ByteSet>) -> Option<(usize, usize)> {
    let out = match h.kind() {
        HirKind::Empty | HirKind::Look(_) => (0, 0),
        HirKind::Literal(_) | HirKind::Class(_) => (h.properties().maximum_len()?, 0),
        HirKind::Capture(c) => walk(&c.sub, classes)?,
        HirKind::Concat(children) => {
            let mut sum = (0usize, 0usize);
            for c in children {
                let (b, s) = walk(c, classes)?;
                sum = (sum.0.saturating_add(b), sum.1.saturating_add(s));
            }
            sum
        }
        HirKind::Alternation(children) => {
            let mut most = (0usize, 0usize);
            for c in children {
                let (b, s) = walk(c, classes)?;
                most = (most.0.max(b), most.1.max(s));
            }
            most
        }
        HirKind::Repetition(r) => {
            let (b, s) = walk(&r.sub, classes)?;
            match r.max {
                Some(max) => {
                    let n = usize::try_from(max).ok()?;
                    (b.saturating_mul(n), s.saturating_mul(n))
                }
                None => {
                    let n = usize::try_from(r.min).ok()?;
                    classes.push(ByteSet::of_hir(&r.sub));
                    (b.saturating_mul(n), s.saturating_mul(n).saturating_add(1))
                }
            }
        }
    };
    (out.0 <= MAX_REACH && out.1 <= MAX_REACH).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atoms::parse;

    fn reach(src: &str) -> Reach {
        Reach::of(&parse(src).unwrap()).unwrap()
    }

    #[test]
    fn base_and_runs() {
        let r = reach(r"(?i)\bignore\s+(?:all\s+)?previous\s+instructions\b");
        // ignore + one space + "all " + previous + one space + instructions.
        assert_eq!((r.base, r.segments), (6 + 1 + 4 + 8 + 1 + 12, 3));
        let r = reach(r"a(?:\w+\s+){0,2}b");
        assert_eq!((r.base, r.segments), (2 + 4, 4));
        // An unbounded repetition of a group with repetitions inside is one run of its bytes.
        let r = reach(r"x(?:y\s+)*z");
        assert_eq!((r.base, r.segments), (2, 1));
        // A run that can hold any printable byte gives no reach.
        assert!(Reach::of(&parse(r"<\s*script\b[^>]*>").unwrap()).is_none());
    }

    /// The windows as defined: each occurrence walked left to the text's start and right to
    /// its end, with no stops, and overlapping or touching ranges merged.
    fn unstopped(r: &Reach, t: &[u8], occurrences: &[(usize, usize)]) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = occurrences
            .iter()
            .map(|&(s, e)| r.left(t, s, 0)..r.right(t, e, t.len()))
            .collect();
        ranges.sort_by_key(|w| (w.start, w.end));
        let mut out: Vec<Range<usize>> = Vec::new();
        for w in ranges {
            match out.last_mut() {
                Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                _ => out.push(w),
            }
        }
        out
    }

    proptest::proptest! {
        /// The stopped walks give the same windows as walking every occurrence out in full:
        /// dense and sparse occurrences, nested ones, and texts of words, spaces and bytes no
        /// class holds.
        #[test]
        fn stopped_walks_find_the_full_windows(
            which in 0usize..3,
            text in proptest::collection::vec(
                proptest::sample::select(b"ab  cd.-\nxyz".to_vec()),
                1..1500,
            ),
            occ in proptest::collection::vec((0usize..1500, 0usize..8), 1..24),
        ) {
            let r = reach(
                [r"ab\s+cd", r"a(?:\w+\s+){0,2}b", r"(?i)\bab\b(?:\s+\w+){0,3}\s+cd"][which],
            );
            let t = &text[..];
            let mut occurrences: Vec<(usize, usize)> = occ
                .iter()
                .map(|&(s, l)| (s.min(t.len()), (s + l).min(t.len())))
                .collect();
            let expected = unstopped(&r, t, &occurrences);
            match r.windows(t, &mut occurrences) {
                Some(got) => proptest::prop_assert_eq!(got, expected),
                // Only when the windows really are large: each byte is walked at most once
                // each way, so walks over half the text mean windows over a quarter of it.
                None => {
                    let covered: usize = expected.iter().map(|w| w.len()).sum();
                    proptest::prop_assert!(covered > t.len() / 4);
                }
            }
        }
    }

    #[test]
    fn walks_stop_where_no_match_can_reach() {
        let r = reach(r"ab\s+cd");
        // Base 5 (`ab`, one space, `cd`) and one run of white space: leftwards from `cd`, the
        // spaces are the run and every other byte costs one; the sixth ends the walk.
        let t = b"xyzab   cd";
        assert_eq!(r.left(t, 8, 0), 0, "within budget all the way");
        let t = b"vwxyzab   cd";
        assert_eq!(r.left(t, 10, 0), 2, "w cannot be part of a match");
        assert_eq!(r.left(t, 10, 6), 6, "stops at stop");
        // Rightwards from the end of `ab`, the same.
        let t = b"ab   cdefghij";
        assert_eq!(r.right(t, 2, t.len()), 10);
    }
}
