//! Which part of a text a residual automaton must search.
//!
//! A residual pattern has no literal every match must contain, but it usually still needs a
//! *byte* that prose rarely holds: a digit (card and phone shapes), an uppercase `M` (a
//! uuencoded line), a `<` or `=`. Its automaton then only runs when such a byte occurs, and
//! when the pattern's matches are also bounded in length, only on the windows of that reach
//! around each occurrence. The bytes are found with `memchr`-class searches, so a text without
//! them costs one vectorised pass, and none of this allocates.

use std::ops::Range;

use regex_automata::util::prefilter::Prefilter as Finder;
use regex_automata::{MatchKind, Span};
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::atoms;

/// A set of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub fn insert(&mut self, b: u8) {
        self.0[usize::from(b / 64)] |= 1 << (b % 64);
    }

    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }

    /// Every byte `h` can match.
    pub fn of_hir(h: &Hir) -> ByteSet {
        let mut set = ByteSet::default();
        set.add_hir(h);
        set
    }

    fn add_hir(&mut self, h: &Hir) {
        match h.kind() {
            HirKind::Empty | HirKind::Look(_) => {}
            HirKind::Literal(lit) => {
                for &b in lit.0.iter() {
                    self.insert(b);
                }
            }
            HirKind::Class(Class::Bytes(c)) => {
                for r in c.ranges() {
                    for b in r.start()..=r.end() {
                        self.insert(b);
                    }
                }
            }
            // Not produced without Unicode mode; every byte, to stay sound.
            HirKind::Class(Class::Unicode(_)) => {
                for b in 0..=255u8 {
                    self.insert(b);
                }
            }
            HirKind::Capture(c) => self.add_hir(&c.sub),
            HirKind::Repetition(r) => self.add_hir(&r.sub),
            HirKind::Concat(children) | HirKind::Alternation(children) => {
                for c in children {
                    self.add_hir(c);
                }
            }
        }
    }

    pub fn union(mut self, other: ByteSet) -> ByteSet {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        self
    }

    fn bytes(self) -> impl Iterator<Item = u8> {
        (0..=255u8).filter(move |&b| self.contains(b))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// How many bytes the set holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Estimated share of prompt bytes in this set, in 1/10,000: English prose with some code
    /// and numbers. Only the order matters (which set is rarest), not the figures.
    fn frequency(self) -> u32 {
        self.bytes()
            .map(|b| match b {
                b' ' => 1500,
                b'a'..=b'z' => 300,
                b'\n' | b'.' | b',' => 100,
                b'A'..=b'Z' => 30,
                b'0'..=b'9' => 20,
                b'\'' | b'"' | b'-' | b':' | b'(' | b')' | b'/' | b'?' | b'!' | b'_' => 30,
                0x80..=0xFF => 20,
                b';' | b'=' | b'[' | b']' | b'{' | b'}' | b'<' | b'>' | b'*' | b'#' | b'@' => 10,
                b'\t' | b'\r' | b'%' | b'&' | b'+' | b'$' | b'|' | b'\\' | b'`' | b'~' | b'^' => 5,
                _ => 1,
            })
            .sum()
    }
}

/// A set too common to be worth a gate: more than about 2.5 % of prompt bytes (any lower-case
/// letter, say). All ten digits together are about 2 %.
const MAX_FREQUENCY: u32 = 250;

/// Which part of a text an automaton must search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSpec {
    /// All of it.
    Always,
    /// Every match contains a byte of the set: a text without one skips the pass.
    Needs(ByteSet),
    /// Every match contains at least `.2` bytes of the set and is at most `.1` bytes long:
    /// only the windows of that reach around each such byte are searched, and of those only
    /// the ones that hold enough of the bytes (a card number needs 13 digits; prose with a
    /// year in it has four).
    Window(ByteSet, usize, usize),
}

impl GateSpec {
    /// The gate of one pattern: its rarest needed byte set, if rare enough.
    pub fn of(source: &str) -> GateSpec {
        let Ok(hir) = atoms::parse(source) else {
            return GateSpec::Always;
        };
        let mut sets = Vec::new();
        byte_sets(&hir, &mut sets);
        let best = sets
            .into_iter()
            .filter(|s| !s.is_empty() && atoms::hir_needs(&hir, &|b| s.contains(b)))
            .map(|s| (s.frequency(), s))
            .min_by_key(|(f, _)| *f);
        match (best, hir.properties().maximum_len()) {
            (Some((f, _)), _) if f > MAX_FREQUENCY => GateSpec::Always,
            (Some((_, set)), Some(len)) => {
                let least = min_count(&hir, &set).max(1);
                GateSpec::Window(set, len.max(1), least)
            }
            (Some((_, set)), None) => GateSpec::Needs(set),
            (None, _) => GateSpec::Always,
        }
    }

    /// The gate of a group searched together: the union of the sets (each pattern's matches
    /// hold a byte of its own set, so of the union), the longest window.
    pub fn join(self, other: GateSpec) -> GateSpec {
        match (self, other) {
            (GateSpec::Window(a, x, n), GateSpec::Window(b, y, m)) => {
                GateSpec::Window(a.union(b), x.max(y), n.min(m))
            }
            (
                GateSpec::Window(a, ..) | GateSpec::Needs(a),
                GateSpec::Window(b, ..) | GateSpec::Needs(b),
            ) => GateSpec::Needs(a.union(b)),
            _ => GateSpec::Always,
        }
    }

    /// Whether two small automata should be merged: windowed ones when they look for the same
    /// bytes (a union would widen both), the others all together (most prompts hold a digit
    /// or a dot, and one pass of a union costs about what one pass of each part does).
    pub fn shares_pass_with(self, other: GateSpec) -> bool {
        match (self, other) {
            (GateSpec::Window(a, ..), GateSpec::Window(b, ..)) => a == b,
            (GateSpec::Window(..), _) | (_, GateSpec::Window(..)) => false,
            _ => true,
        }
    }

    /// Whether only windows around the gate's bytes are searched (not the whole text).
    pub fn is_windowed(self) -> bool {
        matches!(self, GateSpec::Window(..))
    }

    pub fn build(self) -> Gate {
        let finder = |set: ByteSet| {
            let needles: Vec<[u8; 1]> = set.bytes().map(|b| [b]).collect();
            ByteFinder {
                set,
                fast: Finder::new(MatchKind::LeftmostFirst, &needles),
            }
        };
        match self {
            GateSpec::Always => Gate::Always,
            GateSpec::Needs(set) => Gate::Needs(finder(set)),
            GateSpec::Window(set, len, least) => Gate::Window(finder(set), len, least),
        }
    }
}

/// The fewest bytes of `set` any match of `h` holds.
fn min_count(h: &Hir, set: &ByteSet) -> usize {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(lit) => lit.0.iter().filter(|&&b| set.contains(b)).count(),
        HirKind::Class(Class::Bytes(c)) => usize::from(
            c.iter()
                .all(|r| (r.start()..=r.end()).all(|b| set.contains(b))),
        ),
        HirKind::Class(Class::Unicode(_)) => 0,
        HirKind::Capture(c) => min_count(&c.sub, set),
        HirKind::Repetition(r) => {
            min_count(&r.sub, set).saturating_mul(usize::try_from(r.min).unwrap_or(usize::MAX))
        }
        HirKind::Concat(children) => children
            .iter()
            .fold(0usize, |n, c| n.saturating_add(min_count(c, set))),
        HirKind::Alternation(children) => children
            .iter()
            .map(|c| min_count(c, set))
            .min()
            .unwrap_or(0),
    }
}

/// Candidate byte sets of a pattern: each literal byte, each class.
fn byte_sets(h: &Hir, out: &mut Vec<ByteSet>) {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => {
            for &b in lit.0.iter() {
                let mut s = ByteSet::default();
                s.insert(b);
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut s = ByteSet::default();
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    s.insert(b);
                }
            }
            if !out.contains(&s) {
                out.push(s);
            }
        }
        // Parsed without Unicode: no such class; a gate is only an optimisation.
        HirKind::Class(Class::Unicode(_)) => {}
        HirKind::Capture(c) => byte_sets(&c.sub, out),
        HirKind::Repetition(r) => byte_sets(&r.sub, out),
        HirKind::Concat(children) | HirKind::Alternation(children) => {
            for c in children {
                byte_sets(c, out);
            }
        }
    }
}

/// Finds the bytes of a set: `memchr` for up to three bytes, a vectorised or table search for
/// more (`regex-automata`'s prefilter picks).
#[derive(Debug, Clone)]
pub struct ByteFinder {
    set: ByteSet,
    fast: Option<Finder>,
}

impl ByteFinder {
    /// Position of the first byte of the set in `t[from..]`.
    fn find(&self, t: &[u8], from: usize) -> Option<usize> {
        if from >= t.len() {
            return None;
        }
        // The bytes right after the last one found are looked at directly first: where the
        // bytes are dense (a run of digits) one call of the vectorised search per byte would
        // cost more than the table lookups.
        let near = (from + NEAR).min(t.len());
        if let Some(i) = t[from..near].iter().position(|&b| self.set.contains(b)) {
            return Some(from + i);
        }
        match &self.fast {
            Some(f) => f.find(t, Span::from(near..t.len())).map(|s| s.start),
            None => t[near..]
                .iter()
                .position(|&b| self.set.contains(b))
                .map(|p| p + near),
        }
    }
}

/// Bytes looked at one by one before the vectorised search takes over.
const NEAR: usize = 16;

/// A built gate.
#[derive(Debug, Clone)]
pub enum Gate {
    Always,
    Needs(ByteFinder),
    Window(ByteFinder, usize, usize),
}

impl Gate {
    /// Whether the whole of `t` is to be searched (`Some(false)`: none of it); `None` for a
    /// gate of windows.
    pub fn searches_whole(&self, t: &[u8]) -> Option<bool> {
        match self {
            Gate::Always => Some(true),
            Gate::Needs(f) => Some(f.find(t, 0).is_some()),
            Gate::Window(..) => None,
        }
    }

    /// The ranges of `t` to search, in order, disjoint; none when the text can be skipped.
    pub fn ranges<'a>(&'a self, t: &'a [u8]) -> Ranges<'a> {
        let state = match self {
            Gate::Always => State::Whole,
            Gate::Needs(f) if f.find(t, 0).is_some() => State::Whole,
            Gate::Needs(_) => State::Done,
            Gate::Window(f, len, least) => State::Windows {
                finder: f,
                len: *len,
                least: *least,
                at: 0,
                pending: None,
                count: 0,
            },
        };
        Ranges { t, state }
    }
}

enum State<'a> {
    Whole,
    Windows {
        finder: &'a ByteFinder,
        len: usize,
        /// Bytes of the set a window must hold.
        least: usize,
        /// Where the next byte of the set is looked for.
        at: usize,
        /// The window being extended.
        pending: Option<Range<usize>>,
        /// Bytes of the set in it.
        count: usize,
    },
    Done,
}

/// Iterator of [`Gate::ranges`].
pub struct Ranges<'a> {
    t: &'a [u8],
    state: State<'a>,
}

impl Iterator for Ranges<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        match &mut self.state {
            State::Whole => {
                self.state = State::Done;
                Some(0..self.t.len())
            }
            State::Done => None,
            State::Windows {
                finder,
                len,
                least,
                at,
                pending,
                count,
            } => loop {
                let Some(p) = finder.find(self.t, *at) else {
                    let last = pending.take().filter(|_| *count >= *least);
                    self.state = State::Done;
                    return last;
                };
                *at = p + 1;
                // A match of at most `len` bytes that holds the byte at `p` lies in
                // [p + 1 - len, p + len); overlapping or touching windows merge. A match lies
                // in one merged window, so a window with fewer than `least` of the bytes holds
                // none.
                let w = (p + 1).saturating_sub(*len)..(p + *len).min(self.t.len());
                match pending {
                    Some(cur) if w.start <= cur.end => {
                        cur.end = cur.end.max(w.end);
                        *count += 1;
                    }
                    Some(cur) => {
                        let done = std::mem::replace(cur, w);
                        let enough = *count >= *least;
                        *count = 1;
                        if enough {
                            return Some(done);
                        }
                    }
                    None => {
                        *pending = Some(w);
                        *count = 1;
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits() -> ByteSet {
        let mut s = ByteSet::default();
        for b in b'0'..=b'9' {
            s.insert(b);
        }
        s
    }

    #[test]
    fn windows_cover_every_possible_match() {
        let t = b"ab 12 cdefghij 3 k";
        // As (start, end) pairs.
        let ranges = |g: GateSpec, t: &[u8]| {
            g.build()
                .ranges(t)
                .map(|r| (r.start, r.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ranges(GateSpec::Window(digits(), 3, 1), t),
            [(1, 7), (13, 18)]
        );
        assert_eq!(ranges(GateSpec::Window(digits(), 40, 1), t), [(0, 18)]);
        assert!(ranges(GateSpec::Needs(digits()), b"none").is_empty());
        assert_eq!(ranges(GateSpec::Needs(digits()), b"n0ne"), [(0, 4)]);
        assert!(ranges(GateSpec::Window(digits(), 5, 1), b"none").is_empty());
        assert_eq!(ranges(GateSpec::Always, b"none"), [(0, 4)]);
        // Many bytes of a set (more than `memchr` handles) and touching windows.
        let mut s = ByteSet::default();
        for b in *b"<>%;^=" {
            s.insert(b);
        }
        assert_eq!(
            ranges(GateSpec::Window(s, 2, 1), b"a<bbb=c"),
            [(0, 3), (4, 7)]
        );
        assert_eq!(ranges(GateSpec::Window(s, 2, 1), b"a<bb=c"), [(0, 6)]);
        // Windows with fewer of the bytes than a match needs are skipped.
        let t = b"card 4111 1111 1111 1111, year 2024, page 7";
        assert_eq!(
            ranges(GateSpec::Window(digits(), 23, 13), t),
            [(0, t.len())]
        );
        assert_eq!(ranges(GateSpec::Window(digits(), 5, 13), t), [(1, 43)]);
        assert!(ranges(GateSpec::Window(digits(), 5, 13), b"year 2024, page 7").is_empty());
    }

    #[test]
    fn gates_pick_the_rarest_needed_bytes() {
        assert_eq!(
            GateSpec::of(r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b"),
            GateSpec::Window(digits(), 11, 9)
        );
        // A hyphen is rarer than all ten digits together.
        assert!(matches!(
            GateSpec::of(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
            GateSpec::Window(s, 11, 2) if s.contains(b'-') && !s.contains(b'1')
        ));
        assert!(matches!(
            GateSpec::of(r"(?:^|[\s:])M[\x21-\x60]{0,30}[<>%;^=][\x20-\x60]{5,60}(?:\n|$)"),
            GateSpec::Window(s, _, 1) if s.contains(b'M') && !s.contains(b'a')
        ));
        assert!(matches!(
            GateSpec::of(r"\b[0-9]+(?:\.[0-9]+){3,}\b"),
            GateSpec::Needs(_)
        ));
        assert!(matches!(
            GateSpec::of(r"(?:\xE2[\xA0-\xA3][\x80-\xBF]\s?){4,}"),
            GateSpec::Needs(_)
        ));
        assert_eq!(
            GateSpec::of(r"[A-Za-z]{3,}"),
            GateSpec::Always,
            "letters are common"
        );
        assert_eq!(GateSpec::of(r"[0-9]*x"), GateSpec::Always, "x is common");
        assert_eq!(GateSpec::of(r"\d{3}|abc"), GateSpec::Always);
    }
}
