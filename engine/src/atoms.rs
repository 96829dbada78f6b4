//! Required literals ("atoms") of a regex: strings one of which every match must contain.
//!
//! This is the idea behind YARA's atoms and Hyperscan's literal decomposition. If every match
//! of a rule contains one of a few literals, a single Aho–Corasick pass over the text for all
//! rules' atoms tells which rules can possibly match, and the others never run. Most rules are
//! phrases built around words (`ignore … previous … instructions`), so most rules have atoms;
//! the few that are pure character-class shapes (card numbers, IP addresses) have none and go
//! into a small union the engine compiles ahead of time into a full DFA.
//!
//! Atoms are computed on the pattern's syntax tree, folded to ASCII lower case (the prefilter
//! automaton is ASCII case-insensitive, which can only add candidates, never lose one). The
//! analysis is conservative by construction: whenever a node's strings cannot be enumerated
//! within small bounds it contributes "no information", never a guess, so a pattern is only
//! skipped when it truly cannot match.

use std::collections::BTreeSet;

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// A symbol of an analysed string: a byte (lower-cased), [`WB`] or [`WS`].
type Sym = u16;
/// An ASCII word boundary (`\b`) at this point of the string. Between two known bytes it is
/// either true (and dropped) or false (and the string cannot occur, so it is dropped); at either
/// end of an atom it becomes a check on the text next to the match.
const WB: Sym = 256;
/// One ASCII white-space byte (`\s`: tab, LF, VT, FF, CR, space). Kept as one symbol rather
/// than six strings, so phrases do not multiply; an atom is cut at it, and the white space next
/// to the piece kept becomes a check on the text.
const WS: Sym = 257;
/// The bytes `\s` matches in the engine's ASCII mode.
pub const SPACE: [u8; 6] = [b'\t', b'\n', 0x0B, 0x0C, b'\r', b' '];

/// A set of strings, lower-cased.
type Set = BTreeSet<Vec<Sym>>;

/// What must hold right next to an atom's occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Edge {
    Any,
    /// An ASCII word boundary (`\b`).
    WordBoundary,
    /// An ASCII white-space byte (`\s`): a byte of the match itself (atoms are cut at the
    /// pattern's `\s`), so the prefilter may search it as part of the literal.
    Space,
}

/// One atom: lower-cased bytes, and what must hold just before and just after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Atom {
    pub bytes: Vec<u8>,
    pub before: Edge,
    pub after: Edge,
}

impl Atom {
    /// Whether this occurrence (`t[start..end]`) satisfies the atom's edges. ASCII word
    /// characters and white space, as the engine's regexes use them.
    #[inline]
    pub fn boundaries_hold(&self, t: &[u8], start: usize, end: usize) -> bool {
        let word = |b: Option<&u8>| b.is_some_and(|b| is_word(*b));
        let before = start.checked_sub(1).and_then(|i| t.get(i));
        let last = end.checked_sub(1).and_then(|i| t.get(i));
        let ok = |edge: Edge, outside: Option<&u8>, inside: Option<&u8>| match edge {
            Edge::Any => true,
            Edge::WordBoundary => word(outside) != word(inside),
            Edge::Space => outside.is_some_and(|b| SPACE.contains(b)),
        };
        ok(self.before, before, t.get(start)) && ok(self.after, t.get(end), last)
    }

    fn has_edges(&self) -> bool {
        self.before != Edge::Any || self.after != Edge::Any
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Largest exact-string set a node may carry (products of alternatives grow fast).
const MAX_EXACT: usize = 64;
/// Longest exact string tracked; longer literals are still found through their pieces.
const MAX_EXACT_LEN: usize = 48;
/// A class with more members than this (after case folding) is a wildcard for the analysis.
const MAX_CLASS: usize = 8;
/// Most atoms a pattern may need (an alternation of many phrases).
const MAX_ATOMS: usize = 256;
/// Atoms are cut to this length: a prefix of a required string is itself required, and short
/// atoms keep the shared automaton small.
pub const MAX_ATOM_LEN: usize = 16;
/// Minimum [`quality`] of a usable atom set: two letters, a common word, one rare punctuation
/// mark or non-ASCII byte. Even a weak atom beats none: the rule then runs only on the texts
/// that contain it. Below this (single letters, digits, spaces) the atoms would occur in
/// almost every prompt, so the pattern is treated as having none.
pub const MIN_QUALITY: u32 = 8;

/// Parses `source` the way the engine compiles it: bytes, ASCII classes.
pub fn parse(source: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(source)
        .map_err(|e| e.to_string())
}

/// The atoms of `source`: lower-cased strings, each at most [`MAX_ATOM_LEN`] bytes, one of
/// which occurs (ASCII case-insensitively, with its boundaries) in every match; `None` when the
/// pattern has no usable set.
pub fn atoms(source: &str) -> Option<Vec<Atom>> {
    let hir = parse(source).ok()?;
    let set = analyze(&hir).req?;
    if quality(&set) < MIN_QUALITY {
        return None;
    }
    Some(atoms_of(&set))
}

/// The atoms of a requirement set: one per string, without those another one implies.
fn atoms_of(set: &Set) -> Vec<Atom> {
    minimal(set.iter().map(|s| to_atom(s)).collect())
}

/// Whether every match of `source` contains an ASCII digit. Shapes such as card, phone and
/// account numbers do; a text without digits can skip their DFAs altogether.
pub fn needs_digit(source: &str) -> bool {
    parse(source).is_ok_and(|h| hir_needs_digit(&h))
}

/// [`needs_digit`] on an already parsed pattern.
pub fn hir_needs_digit(h: &Hir) -> bool {
    needs(h, &|b| b.is_ascii_digit())
}

/// Whether every match of `h` contains a byte satisfying `pred`.
pub fn hir_needs(h: &Hir, pred: &dyn Fn(u8) -> bool) -> bool {
    needs(h, pred)
}

fn needs(h: &Hir, pred: &dyn Fn(u8) -> bool) -> bool {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => lit.0.iter().any(|&b| pred(b)),
        HirKind::Class(Class::Bytes(c)) => {
            c.ranges().iter().all(|r| (r.start()..=r.end()).all(&pred))
        }
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().all(|r| {
            u8::try_from(u32::from(r.end())).is_ok_and(|end| {
                u8::try_from(u32::from(r.start())).is_ok_and(|start| (start..=end).all(&pred))
            })
        }),
        HirKind::Capture(c) => needs(&c.sub, pred),
        HirKind::Repetition(r) => r.min >= 1 && needs(&r.sub, pred),
        HirKind::Concat(children) => children.iter().any(|c| needs(c, pred)),
        HirKind::Alternation(children) => children.iter().all(|c| needs(c, pred)),
    }
}

/// The atom of one required string: its best piece between white space (a piece of a required
/// string is required too), with the white space or word boundary around that piece as edges.
fn to_atom(s: &[Sym]) -> Atom {
    // `usable` guarantees a byte, so some piece has one; an empty atom would match anywhere,
    // which is still sound.
    best_piece(s).map_or(
        Atom {
            bytes: Vec::new(),
            before: Edge::Any,
            after: Edge::Any,
        },
        |p| p.atom,
    )
}

/// The best piece of a string, as an atom (see [`best_piece`]).
struct Piece<'a> {
    atom: Atom,
    /// The piece's symbols, without the white space around it.
    syms: &'a [Sym],
    /// Bytes before the piece in the string (its white space one byte each).
    offset: usize,
}

/// The piece of `s` between white space that weighs most, as an atom, with the white space or
/// word boundary around it as edges; `None` when no piece has a byte.
fn best_piece(s: &[Sym]) -> Option<Piece<'_>> {
    let mut best: Option<(u32, Piece<'_>)> = None;
    let count = s.split(|&c| c == WS).count();
    let mut offset = 0;
    for (i, piece) in s.split(|&c| c == WS).enumerate() {
        let bytes: Vec<u8> = piece.iter().filter_map(|&c| u8::try_from(c).ok()).collect();
        let len = bytes.len();
        if len > 0 {
            let edge = |space: bool, boundary: bool| match (space, boundary) {
                (true, _) => Edge::Space,
                (false, true) => Edge::WordBoundary,
                (false, false) => Edge::Any,
            };
            let mut atom = Atom {
                before: edge(i > 0, piece.first() == Some(&WB)),
                after: edge(i + 1 < count, piece.last() == Some(&WB)),
                bytes,
            };
            if atom.bytes.len() > MAX_ATOM_LEN {
                atom.bytes.truncate(MAX_ATOM_LEN);
                atom.after = Edge::Any;
            }
            let w = weight(piece)
                + 2 * u32::from(atom.before == Edge::Space)
                + 2 * u32::from(atom.after == Edge::Space);
            if best.as_ref().is_none_or(|(bw, _)| w > *bw) {
                let syms = piece;
                best = Some((w, Piece { atom, syms, offset }));
            }
        }
        // The piece's bytes and the one white-space byte after it.
        offset += len + 1;
    }
    best.map(|(_, p)| p)
}

/// Drops atoms that contain another atom without boundaries: wherever the longer one occurs,
/// the shorter one does too, so it adds nothing but automaton states.
fn minimal(atoms: BTreeSet<Atom>) -> Vec<Atom> {
    let all: Vec<Atom> = atoms.into_iter().collect();
    all.iter()
        .filter(|a| {
            !all.iter().any(|b| {
                !b.has_edges()
                    && b.bytes.len() < a.bytes.len()
                    && a.bytes
                        .windows(b.bytes.len())
                        .any(|w| w == b.bytes.as_slice())
            })
        })
        .cloned()
        .collect()
}

/// What the analysis knows about a node.
#[derive(Debug, Clone)]
struct Info {
    /// Every string the node can match, when that set is small (may contain "").
    exact: Option<Set>,
    /// A set of strings, one of which every match contains (never contains "").
    req: Option<Set>,
}

impl Info {
    fn exact(set: Set) -> Info {
        Info {
            req: usable(Some(set.clone())),
            exact: Some(set),
        }
    }

    fn nothing() -> Info {
        Info {
            exact: None,
            req: None,
        }
    }
}

fn one(s: Vec<Sym>) -> Set {
    std::iter::once(s).collect()
}

fn empty_string() -> Set {
    one(Vec::new())
}

/// A set is usable as a requirement only if none of its strings is empty (boundaries alone
/// are empty too).
fn usable(set: Option<Set>) -> Option<Set> {
    set.filter(all_usable)
}

fn all_usable(set: &Set) -> bool {
    !set.is_empty() && set.iter().all(|x| x.iter().any(|&c| c < WB))
}

fn analyze(h: &Hir) -> Info {
    match h.kind() {
        HirKind::Empty => Info::exact(empty_string()),
        HirKind::Look(look) => Info::exact(match look {
            Look::WordAscii | Look::WordStartAscii | Look::WordEndAscii => one(vec![WB]),
            _ => empty_string(),
        }),
        HirKind::Literal(lit) => Info::exact(one(lower(&lit.0))),
        HirKind::Class(c) => match class_members(c) {
            Some(set) => Info::exact(set),
            None => Info::nothing(),
        },
        HirKind::Capture(c) => analyze(&c.sub),
        HirKind::Repetition(r) => {
            let sub = analyze(&r.sub);
            if r.min == 0 {
                // `x?` keeps an exact set (`instructions?`); any other optional part says nothing.
                let exact = match (&sub.exact, r.max) {
                    (Some(e), Some(1)) => {
                        let mut e = e.clone();
                        e.insert(Vec::new());
                        Some(e)
                    }
                    _ => None,
                };
                return Info { exact, req: None };
            }
            let exact = match (&sub.exact, r.max) {
                (Some(e), Some(max)) if max == r.min => power(e, r.min),
                _ => None,
            };
            // `x{3,}` starts with three copies of x: the longest power that fits is required.
            let mut req = None;
            if let Some(e) = &sub.exact {
                for k in (1..=r.min.min(8)).rev() {
                    if let Some(p) = usable(power(e, k)) {
                        req = Some(p);
                        break;
                    }
                }
            }
            Info {
                exact,
                req: better(req, sub.req),
            }
        }
        HirKind::Concat(children) => concat(children),
        HirKind::Alternation(children) => {
            let infos: Vec<Info> = children.iter().map(analyze).collect();
            let mut exact = Some(Set::new());
            let mut req = Some(Set::new());
            for ci in &infos {
                exact = match (exact, &ci.exact) {
                    (Some(mut a), Some(e)) if a.len() + e.len() <= MAX_EXACT => {
                        a.extend(e.iter().cloned());
                        Some(a)
                    }
                    _ => None,
                };
                req = match (req, &ci.req) {
                    (Some(mut a), Some(r)) if a.len() + r.len() <= MAX_ATOMS => {
                        a.extend(r.iter().cloned());
                        Some(a)
                    }
                    _ => None,
                };
            }
            let from_exact = usable(exact.clone());
            Info {
                exact,
                req: better(usable(req), from_exact),
            }
        }
    }
}

/// A concatenation: runs of children with exact sets are multiplied out into longer strings;
/// the best run, or the best requirement of any child, is the requirement of the whole.
fn concat(children: &[Hir]) -> Info {
    concat_parts(children, None)
}

/// [`concat`], also adding to `weighed` (when given) every requirement it weighed: each of them
/// holds on its own (a run of the concatenation, or a requirement of one child), so a match
/// contains one string of each.
fn concat_parts(children: &[Hir], mut weighed: Option<&mut Vec<Set>>) -> Info {
    let mut best: Option<Set> = None;
    let mut consider = |best: Option<Set>, x: Option<Set>| {
        if let (Some(list), Some(x)) = (weighed.as_deref_mut(), &x) {
            list.push(x.clone());
        }
        better(best, x)
    };
    let mut run = empty_string();
    let mut all_exact = true;
    for child in children {
        let ci = analyze(child);
        match ci.exact {
            Some(e) => match product(&run, &e) {
                Some(p) => run = p,
                None => {
                    best = consider(best, usable(Some(run)));
                    best = consider(best, ci.req);
                    run = e;
                    all_exact = false;
                }
            },
            None => {
                all_exact = false;
                // `x+` (x exact) starts and ends with an x: the run continues into its first
                // copy, and a new run starts with its last (`rm\s+-rf` needs `rm ` and ` -rf`).
                let edge = match child.kind() {
                    HirKind::Repetition(r) if r.min >= 1 => analyze(&r.sub).exact,
                    _ => None,
                };
                match edge {
                    Some(e) => {
                        best = consider(best, usable(product(&run, &e)));
                        best = consider(best, usable(Some(run)));
                        best = consider(best, ci.req);
                        run = e;
                    }
                    None => {
                        best = consider(best, usable(Some(run)));
                        best = consider(best, ci.req);
                        run = empty_string();
                    }
                }
            }
        }
    }
    best = consider(best, usable(Some(run.clone())));
    Info {
        exact: all_exact.then_some(run),
        req: best,
    }
}

/// Factors a branch is checked against at most: its most selective ones.
pub const MAX_FACTORS: usize = 4;
/// Branches of a top-level alternation given factors at most; beyond, the atoms alone decide.
const MAX_FACTOR_BRANCHES: usize = 32;
/// Least [`quality`] of a factor: three letters, or a common word with a boundary. Each
/// factor's atoms join the shared automaton, and a weaker one would report matches all over
/// prose while filtering almost nothing.
const MIN_FACTOR_QUALITY: u32 = 12;

/// The branches of `h`: its top-level alternatives, each a pattern whose matches are among
/// `h`'s, that together match everything `h` does. The parser moves a prefix that every
/// alternative shares (often `\b`) out of the alternation, so an alternation next to nothing
/// but look-around is split too. Deeper alternations stay inside their branch, where
/// [`concat_parts`] makes one factor of each. More than [`MAX_FACTOR_BRANCHES`] alternatives
/// leave `h` whole.
fn split_branches(h: &Hir) -> Vec<Hir> {
    let unwrap = |mut h: &Hir| {
        while let HirKind::Capture(c) = h.kind() {
            h = &c.sub;
        }
        h.clone()
    };
    let h = unwrap(h);
    match h.kind() {
        HirKind::Alternation(alts) if alts.len() <= MAX_FACTOR_BRANCHES => {
            alts.iter().map(unwrap).collect()
        }
        HirKind::Concat(children) => {
            let mut alternation = None;
            for (i, c) in children.iter().enumerate() {
                match unwrap(c).kind() {
                    HirKind::Look(_) => {}
                    HirKind::Alternation(alts)
                        if alternation.is_none() && alts.len() <= MAX_FACTOR_BRANCHES =>
                    {
                        alternation = Some((i, alts.clone()))
                    }
                    _ => return vec![h.clone()],
                }
            }
            match alternation {
                Some((i, alts)) => alts
                    .into_iter()
                    .map(|alt| {
                        let mut parts = children[..i].to_vec();
                        parts.push(alt);
                        parts.extend_from_slice(&children[i + 1..]);
                        Hir::concat(parts)
                    })
                    .collect(),
                None => vec![h.clone()],
            }
        }
        _ => vec![h],
    }
}

/// Atom sets a match of one branch holds one atom of each of.
pub type Factors = Vec<Vec<Atom>>;

/// What every match of `source` contains, branch by branch of its top-level alternation
/// (a pattern without one is a single branch): a match is a match of some branch, and holds an
/// occurrence (with its edges) of one atom of every factor of that branch.
///
/// [`atoms`] keeps one set for the whole pattern; a phrase rule such as
/// `how\s+to … (?:make|build) … (?:bomb|napalm)` has its first words in many prompts that are
/// nothing like it, and each such prompt paid for a regex search. Requiring the other words too
/// drops those candidates before any search. `None` when no branch has two factors: the atoms
/// alone say as much.
pub fn requirements(source: &str) -> Option<Vec<Factors>> {
    let hir = parse(source).ok()?;
    let branches = split_branches(&hir);
    let mut out = Vec::with_capacity(branches.len());
    for branch in &branches {
        let mut sets = Vec::new();
        match branch.kind() {
            HirKind::Concat(children) => {
                concat_parts(children, Some(&mut sets));
            }
            _ => sets.extend(analyze(branch).req),
        }
        let mut sets: Vec<(u32, Set)> = sets.into_iter().map(|s| (quality(&s), s)).collect();
        sets.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        sets.dedup_by(|a, b| a.1 == b.1);
        // The best factor counts when it is as good as the pattern's own atoms need; the
        // others only when they are selective.
        let usable = sets
            .into_iter()
            .enumerate()
            .filter(|(i, (q, _))| *q >= MIN_FACTOR_QUALITY || (*i == 0 && *q >= MIN_QUALITY));
        // Two sets of the same words (`make\s` and `make`) are one factor: the first, which
        // checks more edges, is kept.
        let mut factors: Factors = Vec::new();
        let mut words: Vec<Vec<Vec<u8>>> = Vec::new();
        for (_, (_, set)) in usable {
            let atoms = atoms_of(&set);
            let mut key: Vec<Vec<u8>> = atoms.iter().map(|a| a.bytes.clone()).collect();
            key.sort();
            key.dedup();
            if !words.contains(&key) {
                words.push(key);
                factors.push(atoms);
            }
            if factors.len() == MAX_FACTORS {
                break;
            }
        }
        if factors.is_empty() {
            return None;
        }
        out.push(factors);
    }
    out.iter().any(|f| f.len() >= 2).then_some(out)
}

/// Where a match can start: `offset` bytes before an occurrence of `atom` (with its edges).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Anchor {
    pub atom: Atom,
    pub offset: usize,
}

/// Least [`quality`] of a pattern's anchors: far below a factor's ([`MIN_FACTOR_QUALITY`], 12,
/// which anchors once had to meet too). A factor's occurrences each keep a rule a candidate;
/// an anchor's each cost one anchored search, which ends within a few bytes where the rule
/// does not match (a table walk when the rule has a fully built anchored DFA,
/// `crate::prefilter::Prefilter::anchored_dfa`). So even a frequent anchor (`no`, `2`, `;`)
/// costs less than the unanchored search its rule would otherwise need, whose lazy DFA builds
/// states on every new text and then walks back to find where the match began. The 11 rules of
/// the sample bundle this anchored besides: 436.5 -> 401.6 M scan instructions on the
/// development corpus, 35.4 -> 25.8 M on its slowest prompts, at a cost of 397 -> 422 M on
/// 256 KiB of prose and +3 % on random ASCII (their atoms occur more often there); -6 % on
/// text made of the rules' own words (`docs/src/performance.md`, 2026-12-01 21:20). Hostile
/// texts full of anchors are bounded by the starts a scan keeps.
const MIN_ANCHOR_QUALITY: u32 = 2;

/// Where every match of `source` starts: for each of a few strings that every match begins
/// with (lower-cased, its white space one byte each), an atom taken from it and how far into
/// the string that atom lies. A match then starts at `offset` bytes before an occurrence of
/// one of the anchors' atoms, so the pattern can be confirmed by anchored searches at those
/// positions alone, instead of an unanchored search over the text (see
/// `crate::prefilter::Candidates::starts`). `None` when no such finite set is known, or when
/// its atoms would be too weak to be worth it.
pub fn anchors(source: &str) -> Option<Vec<Anchor>> {
    let hir = parse(source).ok()?;
    // An empty match starts anywhere.
    if hir.properties().minimum_len().is_none_or(|n| n == 0) {
        return None;
    }
    let set = prefixes(&hir)?;
    if !all_usable(&set) {
        return None;
    }
    let mut pieces = Set::new();
    let mut out = BTreeSet::new();
    for s in &set {
        let (piece, anchor) = anchor_of(s)?;
        pieces.insert(piece);
        out.insert(anchor);
    }
    (quality(&pieces) >= MIN_ANCHOR_QUALITY).then(|| out.into_iter().collect())
}

/// Longest prefix string kept: a prefix of a prefix is one too.
const MAX_PREFIX_LEN: usize = 32;

/// Strings one of which every non-empty match of `h` begins with; `None` when not known.
/// Strings may hold [`WB`] (zero width) and [`WS`] (one byte); none is empty.
fn prefixes(h: &Hir) -> Option<Set> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(Set::new()),
        HirKind::Literal(_) | HirKind::Class(_) => analyze(h).exact.map(with_content),
        HirKind::Capture(c) => prefixes(&c.sub),
        // A non-empty match of `x{m,n}` begins with a non-empty match of `x`.
        HirKind::Repetition(r) if r.max == Some(0) => Some(Set::new()),
        HirKind::Repetition(r) => prefixes(&r.sub),
        HirKind::Concat(children) => concat_prefixes(children),
        HirKind::Alternation(children) => {
            let mut all = Set::new();
            for child in children {
                all.extend(prefixes(child)?);
                if all.len() > MAX_ATOMS {
                    return None;
                }
            }
            Some(all)
        }
    }
}

/// [`prefixes`] of a concatenation, from its last child to its first: the exact strings of a
/// child multiplied out into what the children after it match, as far as the sets stay small.
fn concat_prefixes(children: &[Hir]) -> Option<Set> {
    // Of the children after the current one: every string they match together (when few),
    // the prefixes of their non-empty matches, and whether they can match nothing.
    let mut exact_after = Some(empty_string());
    let mut after = Some(Set::new());
    let mut empty_after = true;
    for child in children.iter().rev() {
        let info = analyze(child);
        let empty = child.properties().minimum_len() == Some(0);
        let prefixes_here = match &info.exact {
            Some(exact) => {
                // One of these strings, then a match of the rest (perhaps empty).
                let rest = exact_after.clone().or_else(|| {
                    after.clone().map(|mut a| {
                        if empty_after {
                            a.insert(Vec::new());
                        }
                        a
                    })
                });
                match rest.and_then(|r| prefix_product(exact, &r)) {
                    Some(p) => Some(with_content(p)),
                    // Too many strings: the child's own, when none of them can be empty.
                    None => {
                        let own = with_content(exact.clone());
                        (own.len() == exact.len()).then_some(own)
                    }
                }
            }
            None => match (prefixes(child), empty) {
                (Some(own), false) => Some(own),
                // When the child matches nothing, the match is a non-empty one of the rest.
                (Some(mut own), true) => after.clone().and_then(|a| {
                    own.extend(a);
                    (own.len() <= MAX_ATOMS).then_some(own)
                }),
                (None, _) => None,
            },
        };
        exact_after = match (&info.exact, &exact_after) {
            (Some(e), Some(x)) => product(e, x),
            _ => None,
        };
        after = prefixes_here;
        empty_after &= empty;
    }
    after
}

/// Every string of `a` followed by every string of `b`, cut to [`MAX_PREFIX_LEN`] (a prefix
/// of a prefix is one too), without those whose word boundaries cannot hold; `None` when there
/// would be more than [`MAX_ATOMS`].
fn prefix_product(a: &Set, b: &Set) -> Option<Set> {
    product_within(a, b, MAX_ATOMS, Long::Cut(MAX_PREFIX_LEN))
}

/// The strings that take up at least one byte: the others stand for empty matches.
fn with_content(set: Set) -> Set {
    set.into_iter()
        .filter(|s| s.iter().any(|&c| c != WB))
        .collect()
}

/// The anchor of one prefix string: its best piece as the atom (as [`to_atom`] picks it), and
/// the bytes before that piece as the offset. Also returns the piece with the white space it
/// checks around it, for weighing. `None` when the string has no byte.
fn anchor_of(s: &[Sym]) -> Option<(Vec<Sym>, Anchor)> {
    let Piece { atom, syms, offset } = best_piece(s)?;
    let mut weighed = syms.to_vec();
    if atom.before == Edge::Space {
        weighed.insert(0, WS);
    }
    if atom.after == Edge::Space {
        weighed.push(WS);
    }
    Some((weighed, Anchor { atom, offset }))
}

fn lower(bytes: &[u8]) -> Vec<Sym> {
    bytes
        .iter()
        .map(|b| Sym::from(b.to_ascii_lowercase()))
        .collect()
}

/// The members of a small class, lower-cased (`\s` as [`WS`]); `None` for a large one.
fn class_members(c: &Class) -> Option<Set> {
    if let Class::Bytes(b) = c {
        let members: Vec<u8> = b.iter().flat_map(|r| r.start()..=r.end()).take(7).collect();
        if members == SPACE {
            return Some(one(vec![WS]));
        }
    }
    let mut set = Set::new();
    match c {
        Class::Bytes(b) => {
            for r in b.ranges() {
                for byte in r.start()..=r.end() {
                    set.insert(lower(&[byte]));
                    if set.len() > MAX_CLASS {
                        return None;
                    }
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.ranges() {
                for ch in r.start()..=r.end() {
                    let mut buf = [0u8; 4];
                    set.insert(lower(ch.encode_utf8(&mut buf).as_bytes()));
                    if set.len() > MAX_CLASS {
                        return None;
                    }
                }
            }
        }
    }
    Some(set)
}

/// Resolves the word boundaries between two known bytes: kept strings have boundaries only at
/// their ends; `None` when a boundary cannot hold there (the string cannot occur).
fn settle(s: Vec<Sym>) -> Option<Vec<Sym>> {
    let mut out: Vec<Sym> = Vec::with_capacity(s.len());
    for (i, &c) in s.iter().enumerate() {
        if c != WB {
            out.push(c);
            continue;
        }
        if out.last() == Some(&WB) {
            continue;
        }
        let prev = out.last().copied();
        let next = s[i + 1..].iter().copied().find(|&x| x != WB);
        match (prev, next) {
            (Some(a), Some(b)) => {
                // WS is never a word character, like any byte above 255 here.
                let word = |x: Sym| u8::try_from(x).is_ok_and(is_word);
                if word(a) == word(b) {
                    return None;
                }
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

/// Every string of `a` followed by every string of `b`, without those whose word boundaries
/// cannot hold; `None` when there would be more than [`MAX_EXACT`], or one longer than
/// [`MAX_EXACT_LEN`].
fn product(a: &Set, b: &Set) -> Option<Set> {
    product_within(a, b, MAX_EXACT, Long::Fails(MAX_EXACT_LEN))
}

/// What a product does with a string over a length.
#[derive(Clone, Copy)]
enum Long {
    /// The whole product fails.
    Fails(usize),
    /// The string is cut to it.
    Cut(usize),
}

fn product_within(a: &Set, b: &Set, most: usize, long: Long) -> Option<Set> {
    if a.len().saturating_mul(b.len()) > most {
        return None;
    }
    let mut out = Set::new();
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            match long {
                Long::Fails(max) if s.len() > max => return None,
                Long::Cut(max) => s.truncate(max),
                Long::Fails(_) => {}
            }
            if let Some(s) = settle(s) {
                out.insert(s);
            }
        }
    }
    Some(out)
}

fn power(e: &Set, k: u32) -> Option<Set> {
    let mut acc = empty_string();
    for _ in 0..k {
        acc = product(&acc, e)?;
    }
    Some(acc)
}

fn better(a: Option<Set>, b: Option<Set>) -> Option<Set> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if quality(&b) > quality(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Words so common in prompts that an atom made only of one of them filters little.
const COMMON: &[&[u8]] = &[
    b"the", b"you", b"and", b"for", b"not", b"are", b"any", b"all", b"with", b"your", b"that",
    b"this", b"what", b"was", b"were", b"have", b"has", b"from", b"can", b"will", b"how", b"but",
    b"one", b"our", b"out", b"she", b"his", b"her", b"they", b"them", b"its", b"who", b"now",
    b"use", b"get", b"may", b"just", b"then", b"than", b"when", b"each", b"also", b"into",
];

/// How selective an atom set is, in quarter-letter points: the weakest atom's weight (letters
/// and digits 4, rare punctuation and non-ASCII bytes 12, common punctuation 2, white space 1,
/// a word boundary next to a letter 3; a very common word counts as two letters), less one
/// point per doubling beyond 64 atoms.
fn quality(set: &Set) -> u32 {
    if !all_usable(set) {
        return 0;
    }
    let weakest = set.iter().map(|a| weight(a)).min().unwrap_or(0);
    let size_penalty = (set.len() / 64).checked_ilog2().map_or(0, |l| l + 1);
    weakest.saturating_sub(size_penalty)
}

fn weight(atom: &[Sym]) -> u32 {
    let bytes: Vec<u8> = atom.iter().filter_map(|&c| u8::try_from(c).ok()).collect();
    let boundaries = 3 * atom.iter().filter(|&&c| c == WB).count() as u32
        + atom.iter().filter(|&&c| c == WS).count() as u32;
    if COMMON.contains(&bytes.trim_ascii()) {
        return MIN_QUALITY + boundaries;
    }
    boundaries
        + bytes
            .iter()
            .map(|&b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => 4,
                b' ' | b'\t' | b'\n' | b'\r' => 1,
                0x80..=0xFF => 12,
                b'.' | b',' | b'-' | b':' | b'\'' | b'"' | b'(' | b')' | b'/' | b'!' | b'?'
                | b';' => 2,
                _ => 12,
            })
            .sum::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An atom as text, `\b` and `\s` marking the edges it checks.
    fn show(x: &Atom) -> String {
        let edge = |e| match e {
            Edge::Any => "",
            Edge::WordBoundary => "\\b",
            Edge::Space => "\\s",
        };
        format!(
            "{}{}{}",
            edge(x.before),
            String::from_utf8_lossy(&x.bytes),
            edge(x.after)
        )
    }

    /// Atoms as text.
    fn a(src: &str) -> Option<Vec<String>> {
        atoms(src).map(|v| v.iter().map(show).collect())
    }

    /// Factors as text, branch by branch, each factor's atoms joined by `|`.
    fn f(src: &str) -> Option<Vec<Vec<String>>> {
        requirements(src).map(|branches| {
            branches
                .iter()
                .map(|factors| {
                    factors
                        .iter()
                        .map(|atoms| atoms.iter().map(show).collect::<Vec<_>>().join("|"))
                        .collect()
                })
                .collect()
        })
    }

    /// Anchors as text: the offset, then the atom.
    fn an(src: &str) -> Option<Vec<String>> {
        anchors(src).map(|v| {
            v.iter()
                .map(|x| format!("{}:{}", x.offset, show(&x.atom)))
                .collect()
        })
    }

    #[test]
    fn anchors_are_where_matches_start() {
        // The first words of each alternative, with the white space after them.
        assert_eq!(
            an(r"(?i)\b(?:ignore|disregard)\s+(?:all\s+)?previous\b").unwrap(),
            ["0:\\bdisregard\\s", "0:\\bignore\\s"]
        );
        // A rarer word later in the fixed part of the phrase, at its distance from the start;
        // where the white space may repeat, that distance is not fixed.
        assert_eq!(
            an(r"(?i)\bdo\sanything\snow").unwrap(),
            ["3:\\sanything\\s"]
        );
        assert_eq!(an(r"(?i)\bthe\s+system\s+prompt").unwrap(), ["0:\\bthe\\s"]);
        // An optional first part: a match starts with it or with what follows.
        assert_eq!(
            an(r"(?i)\b(?:please\s+)?reveal\s+(?:\w+\s+){0,3}secrets").unwrap(),
            ["0:\\bplease\\s", "0:\\breveal\\s"]
        );
        // Branches each bring their own.
        assert_eq!(
            an(r"(?i)\bjailbreak\b|\bdeveloper\s+mode").unwrap(),
            ["0:\\bdeveloper\\s", "0:\\bjailbreak\\b"]
        );
        // A short or common first word anchors too: each search from it is short.
        assert_eq!(an(r"(?i)\bx\s+[a-z]+").unwrap(), ["0:\\bx\\s"]);
        assert_eq!(
            an(r"(?i)\b(?:2|two)\s+answers").unwrap(),
            ["0:\\b2\\s", "0:\\btwo\\s"]
        );
    }

    #[test]
    fn no_anchors_where_a_match_can_start_anywhere() {
        // A wide class or an unbounded run first, a possible empty match.
        assert_eq!(an(r"[a-z]+@example\.com"), None);
        assert_eq!(an(r"\s*ignore\s+previous"), None);
        assert_eq!(an(r"(?:ignore)?"), None);
        assert_eq!(an(r"(?:^|\n)\s*system:"), None);
    }

    #[test]
    fn every_word_of_a_phrase_is_a_factor() {
        // Words apart from each other (a few words between) are factors of their own, next to
        // the atoms the prefilter already had; a repeated word is one factor, with its edges.
        assert_eq!(
            f(r"(?i)\bhow\s+to\s+(?:\w+\s+){0,3}?(?:make|build)\s+(?:a\s+)?(?:bomb|napalm)s?\b"),
            Some(vec![vec![
                "bomb\\b|bombs\\b|napalm\\b|napalms\\b".to_string(),
                "build\\s|make\\s".to_string(),
                "\\bhow\\s".to_string(),
            ]])
        );
        // Alternatives behind a shared `\b` are branches, each with its own words; common
        // words (`your`) and optional ones (`all`) are not factors.
        assert_eq!(
            f(
                r"(?i)\b(?:ignore\s+(?:all\s+)?previous\s+instructions|reveal\s+your\s+system\s+prompt)\b"
            ),
            Some(vec![
                vec!["\\sinstructions\\b", "previous\\s", "\\bignore\\s"]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
                vec!["\\breveal\\s", "\\sprompt\\b", "\\ssystem\\s"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            ])
        );
        // A branch of one word says no more than the atoms do.
        assert_eq!(f(r"(?i)\b(?:ignore|disregard)\b"), None);
        assert_eq!(f(r"(?i)\bsystem\b|\bprompt\b"), None);
        // One branch with two factors is enough; the other keeps its single one.
        assert_eq!(
            f(r"(?i)\bjailbreak\b|\bdeveloper\s+mode\s+enabled"),
            Some(vec![
                vec!["\\bjailbreak\\b".to_string()],
                vec!["\\bdeveloper\\s", "\\senabled", "\\smode\\s"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            ])
        );
    }

    #[test]
    fn words_in_phrases() {
        // The rarest piece wins: the last word with the space before it and the boundary after.
        assert_eq!(
            a(r"(?i)\bignore\s+(all\s+)?previous\s+instructions\b").unwrap(),
            ["\\sinstructions\\b"]
        );
        assert_eq!(
            a(r"\bsystem_?prompt").unwrap(),
            ["\\bsystem_prompt", "\\bsystemprompt"]
        );
        // `instructions?` is exact; both words keep the boundary after them.
        let got = a(r"(?i)your\s+(?:instructions?|rules)\b").unwrap();
        assert!(got.contains(&"\\srules\\b".to_string()), "{got:?}");
        assert!(got.contains(&"\\sinstruction\\b".to_string()), "{got:?}");
    }

    #[test]
    fn boundaries_make_short_words_usable_and_checkable() {
        // `sh` alone is too weak, at a word start it is not.
        let got = atoms(r"\bsh\b").unwrap();
        assert_eq!(got.len(), 1);
        let sh = &got[0];
        assert_eq!(
            (sh.before, sh.after),
            (Edge::WordBoundary, Edge::WordBoundary)
        );
        assert!(sh.boundaries_hold(b"run sh now", 4, 6));
        assert!(!sh.boundaries_hold(b"a fish now", 4, 6));
        assert!(!sh.boundaries_hold(b"shell", 0, 2));
        assert!(sh.boundaries_hold(b"sh", 0, 2));
        // A boundary between two word characters can never hold: that string is dropped.
        assert_eq!(a(r"ab\bcd"), None);
        assert_eq!(a(r"ab\b-cd").unwrap(), ["ab-cd"]);
    }

    #[test]
    fn white_space_is_one_symbol_and_an_edge() {
        let got = atoms(r"(?i)\bmy\s+secret").unwrap();
        assert_eq!(got.len(), 1, "one atom, not one per kind of white space");
        let secret = &got[0];
        assert_eq!(
            (secret.bytes.as_slice(), secret.before),
            (&b"secret"[..], Edge::Space)
        );
        for sp in [b' ', b'\t', b'\n', 0x0B, 0x0C, b'\r'] {
            let t = [b'm', b'y', sp, b's', b'e', b'c', b'r', b'e', b't'];
            assert!(secret.boundaries_hold(&t, 3, 9), "{sp:#x}");
        }
        assert!(!secret.boundaries_hold(b"mysecret", 2, 8));
        assert!(
            !secret.boundaries_hold(b"secret", 0, 6),
            "no space before the start"
        );
    }

    #[test]
    fn digit_shapes() {
        assert!(needs_digit(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"));
        assert!(needs_digit(r"\+[1-9][0-9]{0,3}|\(?[2-9][0-9]{2}\)"));
        assert!(needs_digit(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}"));
        assert!(
            !needs_digit(r"[0-9A-Za-z_]*:[0-9A-Za-z_]*:"),
            "letters would do"
        );
        assert!(!needs_digit(r"[0-9]*x"), "zero digits match");
        assert!(!needs_digit(r"\d{3}|abc"), "one branch has none");
    }

    #[test]
    fn alternation_needs_every_branch() {
        // One branch without atoms: the whole pattern has none.
        assert_eq!(a(r"secret|[0-9]{4}"), None);
        assert_eq!(a(r"alpha|omega").unwrap(), ["alpha", "omega"]);
    }

    #[test]
    fn repetitions() {
        assert_eq!(a(r"(?:ab){3,}").unwrap(), ["ababab"]);
        assert_eq!(a(r"x?y"), None, "`y` is too weak alone");
        assert_eq!(a(r"x?yz").unwrap(), ["yz"]);
        assert_eq!(a(r"\[/?INST\]").unwrap(), ["[/inst]", "[inst]"]);
        // `rm\s+-rf`: the run continues into the first copy of `\s`.
        assert_eq!(a(r"rm\s+-rf").unwrap(), ["\\s-rf"]);
    }

    #[test]
    fn shapes_have_none() {
        assert_eq!(a(r"\b[0-9](?:[ -]?[0-9]){12,18}\b"), None);
        assert_eq!(a(r"\b[0-9]+(?:\.[0-9]+){3,}\b"), None);
        assert_eq!(a(r"[A-Za-z]{3,}"), None);
        assert_eq!(a(r"(?:a|I)\s+\w+"), None, "single letters");
        assert_eq!(a(r"[0-9]+\.[0-9]+"), None, "digits and a dot");
        // One rare character is enough.
        assert_eq!(a(r"[a-z]+@[a-z]+\.[a-z]{2,}").unwrap(), ["@"]);
    }

    #[test]
    fn non_ascii_bytes() {
        let got = atoms(r"\xE2\x80[\x8B\xAA-\xAE]").unwrap();
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|x| x.bytes.len() == 3 && x.bytes[0] == 0xE2));
    }

    #[test]
    fn minimal_drops_superstrings() {
        let atom = |s: &[u8], b: bool| Atom {
            bytes: s.to_vec(),
            before: if b { Edge::WordBoundary } else { Edge::Any },
            after: Edge::Any,
        };
        let s: BTreeSet<Atom> = [
            atom(b"abc", false),
            atom(b"xabcx", false),
            atom(b"zzz", false),
        ]
        .into_iter()
        .collect();
        assert_eq!(minimal(s), [atom(b"abc", false), atom(b"zzz", false)]);
        // A shorter atom with a boundary check does not cover the longer one.
        let s: BTreeSet<Atom> = [atom(b"abc", true), atom(b"xabcx", false)]
            .into_iter()
            .collect();
        assert_eq!(minimal(s).len(), 2);
    }
}
