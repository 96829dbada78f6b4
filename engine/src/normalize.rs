//! Text normalization applied before rules are matched.
//!
//! Attackers hide trigger phrases from naive matchers with full-width letters, Cyrillic and
//! Greek look-alikes, zero-width characters, bidi controls and odd whitespace. Folding all of
//! those to a canonical form lets one ASCII rule catch every variant, while the offset map lets
//! findings and redactions point at the exact bytes the caller sent.
//!
//! Unicode normalization is applied per cluster (a base character plus the combining marks and
//! stripped invisibles that follow it) rather than over the whole string: that keeps an exact
//! offset map and still composes `e` + U+0301 into `é`. The cost is that compositions which
//! do not involve combining marks (conjoining Hangul jamo written as separate characters) are
//! not recomposed; rules never depend on those.

use std::borrow::Cow;
use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use unicode_normalization::char::{decompose_canonical, decompose_compatible, is_combining_mark};
use unicode_normalization::{is_nfc_quick, is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// The most a cluster may grow, in bytes, when normalized; a cluster that would grow more is
/// matched as it was written.
///
/// Compatibility decompositions are how one character becomes many: U+FDFA (an Arabic
/// honorific ligature) becomes 18 characters, 11 times its bytes, and the squared Katakana
/// units of U+3300–U+3357 five or six times theirs. Scanning cost follows the normalized
/// length, so a maximal prompt of U+FDFA cost ten times any other text (issue 12's 287 ms per
/// 256 KiB). No decomposition over twice its bytes yields Latin text (the largest Latin ones
/// are `㎮`/`㎯`, `rad∕s`, at 2.3 and 2.7 times, whose slash is not ASCII either), so keeping
/// them as written hides nothing from the rules, and bounds normalized text at twice the
/// prompt.
pub const MAX_EXPANSION: usize = 2;

/// Whether normalizing `c` to `form` would make it over [`MAX_EXPANSION`] times its bytes,
/// judged on its decomposition (composition only shortens it): the one rule for lone
/// characters and whole clusters alike. A character already in `form` never is.
///
/// Checked before a cluster goes through the full pipeline: for a prompt made of such
/// characters, composing each one only to throw the result away was most of the scan's cost.
fn over_expanding(c: char, form: UnicodeForm) -> bool {
    let quick = match form {
        UnicodeForm::None => return false,
        UnicodeForm::Nfc => is_nfc_quick(std::iter::once(c)),
        UnicodeForm::Nfkc => is_nfkc_quick(std::iter::once(c)),
    };
    quick != IsNormalized::Yes && decomposes_over(c, form)
}

/// [`over_expanding`] for a character known not to be in `form` already.
fn decomposes_over(c: char, form: UnicodeForm) -> bool {
    let mut bytes = 0;
    let count = |d: char| bytes += d.len_utf8();
    match form {
        UnicodeForm::None => return false,
        UnicodeForm::Nfc => decompose_canonical(c, count),
        UnicodeForm::Nfkc => decompose_compatible(c, count),
    }
    bytes > MAX_EXPANSION * c.len_utf8()
}

/// Which Unicode normalization form is applied before matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeForm {
    /// Leave characters as they are: for packs that match exact code points.
    None,
    /// Canonical composition only: merges decomposed accents, keeps compatibility forms.
    Nfc,
    /// Compatibility composition: also folds full-width letters, ligatures and math letters,
    /// the most common obfuscations, hence the default.
    #[default]
    Nfkc,
}

impl UnicodeForm {
    /// Strength order used by [`Normalization::union`]: each form implies the weaker ones.
    fn rank(self) -> u8 {
        match self {
            UnicodeForm::None => 0,
            UnicodeForm::Nfc => 1,
            UnicodeForm::Nfkc => 2,
        }
    }
}

fn yes() -> bool {
    true
}

/// Which normalization steps run. Everything is on by default because every step removes an
/// evasion technique; packs turn steps off only when they match on exact characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Normalization {
    /// Unicode normalization form.
    #[serde(default)]
    pub unicode: UnicodeForm,
    /// Map Cyrillic/Greek look-alikes to ASCII and typographic quotes and dashes to `'`, `"`, `-`.
    #[serde(default = "yes")]
    pub fold_confusables: bool,
    /// Remove zero-width, bidi, soft-hyphen, variation-selector and TAG characters.
    #[serde(default = "yes")]
    pub strip_invisible: bool,
    /// Collapse whitespace runs: to `"\n"` when the run holds a line break, else to `" "`.
    #[serde(default = "yes")]
    pub fold_whitespace: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            unicode: UnicodeForm::Nfkc,
            fold_confusables: true,
            strip_invisible: true,
            fold_whitespace: true,
        }
    }
}

impl Normalization {
    /// Combines the needs of several packs scanned together: a step wanted by any pack runs,
    /// since a pack that did not ask for it loses nothing its rules could match.
    pub fn union(self, other: Normalization) -> Normalization {
        Normalization {
            unicode: if other.unicode.rank() > self.unicode.rank() {
                other.unicode
            } else {
                self.unicode
            },
            fold_confusables: self.fold_confusables || other.fold_confusables,
            strip_invisible: self.strip_invisible || other.strip_invisible,
            fold_whitespace: self.fold_whitespace || other.fold_whitespace,
        }
    }

    fn is_noop(&self) -> bool {
        self.unicode == UnicodeForm::None
            && !self.fold_confusables
            && !self.strip_invisible
            && !self.fold_whitespace
    }
}

/// One stretch of the normalized text and the original bytes that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    /// Start in the normalized text; the segment runs to the next segment's start.
    norm: usize,
    /// Original bytes that produced the segment.
    orig: usize,
    orig_end: usize,
    /// Copied verbatim, so offsets inside map byte for byte; otherwise every byte of the
    /// segment maps to the whole original range.
    ident: bool,
}

/// Normalized text plus the map back to the original, so matches can be reported and
/// redacted where the caller will see them.
#[derive(Debug, Clone)]
pub struct Normalized<'a> {
    original: &'a str,
    text: Cow<'a, str>,
    /// Empty when `text` is borrowed (identity).
    segs: Vec<Seg>,
}

impl<'a> Normalized<'a> {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Lets callers skip offset translation (and duplicate matching) when nothing changed.
    pub fn is_identity(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    /// Maps a byte range of [`Self::text`] to the smallest original range that produced it.
    /// Never panics: out-of-range or reversed input is clamped, and the result always lies on
    /// char boundaries of the original, so it can be sliced and redacted directly.
    pub fn to_original(&self, r: Range<usize>) -> Range<usize> {
        let norm_len = self.text.len();
        let start = r.start.min(norm_len);
        let end = r.end.clamp(start, norm_len);
        let (s, e) = if self.segs.is_empty() {
            (start, end)
        } else if start == end {
            let p = if start < norm_len {
                self.map_byte(start).0
            } else if norm_len == 0 {
                0
            } else {
                self.map_byte(norm_len - 1).1
            };
            (p, p)
        } else {
            let s = self.map_byte(start).0;
            let e = self.map_byte(end - 1).1;
            (s.min(e), s.max(e))
        };
        let s = floor_boundary(self.original, s);
        let e = ceil_boundary(self.original, e.max(s));
        s..e
    }

    /// Original range of the single normalized byte `p` (`p < text.len()`).
    fn map_byte(&self, p: usize) -> (usize, usize) {
        let idx = self.segs.partition_point(|s| s.norm <= p).saturating_sub(1);
        match self.segs.get(idx) {
            Some(seg) if seg.ident => {
                let o = seg.orig + (p - seg.norm);
                (o, o + 1)
            }
            Some(seg) => (seg.orig, seg.orig_end),
            None => (0, self.original.len()),
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Normalizes `text` as configured. Clean ASCII (the common case) is returned borrowed
/// without allocating.
pub fn normalize<'a>(text: &'a str, n: &Normalization) -> Normalized<'a> {
    if n.is_noop() || (text.is_ascii() && !ascii_needs_ws_fold(text.as_bytes(), n.fold_whitespace))
    {
        return Normalized {
            original: text,
            text: Cow::Borrowed(text),
            segs: Vec::new(),
        };
    }
    let mut b = Builder {
        src: text,
        n: *n,
        out: String::new(),
        segs: Vec::new(),
        lazy: true,
        ws: None,
        scratch: String::new(),
        scratch2: String::new(),
    };
    b.run();
    b.finish()
}

fn is_ascii_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// ASCII text only changes if its whitespace needs folding: tabs and the like, or runs.
///
/// This runs on every clean prompt, so it looks at eight bytes at a time: a word-at-a-time
/// mask of the space/newline bytes shows adjacent pairs with one shift, and any tab, CR, VT or
/// FF means a change.
fn ascii_needs_ws_fold(b: &[u8], fold: bool) -> bool {
    if !fold {
        return false;
    }
    const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// High bit set in exactly the bytes of `v` that are zero.
    fn zero_bytes(v: u64) -> u64 {
        !(((v & LO7).wrapping_add(LO7)) | v | LO7)
    }
    let space = u64::from(b' ') * ONES;
    let mut prev_ws = false;
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        // Any byte below 0x0E (tab, newline, VT, FF, CR live there)? The input is ASCII, so
        // the classic "has less than" test is exact enough to pick the rare slow chunks.
        if v.wrapping_sub(0x0E * ONES) & !v & HIGH != 0 {
            if bytes_need_fold(chunk, &mut prev_ws) {
                return true;
            }
            continue;
        }
        let ws = zero_bytes(v ^ space);
        // Byte i and byte i+1 both spaces, or the previous chunk ended in whitespace and this
        // one starts with a space.
        if ws & (ws >> 8) != 0 || (prev_ws && ws & 0x80 != 0) {
            return true;
        }
        prev_ws = ws >> 63 != 0;
    }
    bytes_need_fold(chunks.remainder(), &mut prev_ws)
}

/// The byte-at-a-time check, for chunks holding control bytes and for the tail.
/// `prev_ws` carries "the previous byte was a space or newline" across calls.
fn bytes_need_fold(bytes: &[u8], prev_ws: &mut bool) -> bool {
    for &c in bytes {
        match c {
            b' ' | b'\n' => {
                if *prev_ws {
                    return true;
                }
                *prev_ws = true;
            }
            b'\t' | b'\r' | 0x0B | 0x0C => return true,
            _ => *prev_ws = false,
        }
    }
    false
}

/// Characters that render as nothing (or only steer rendering) and so can split a trigger word
/// without a reader noticing. Joiners and selectors only affect glyph shaping, which matching
/// does not care about.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

fn is_newline(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{0085}' | '\u{2028}' | '\u{2029}')
}

/// Look-alikes that render like ASCII letters in common fonts. Kept small on purpose: only
/// characters a reader would take for the ASCII letter, so folding cannot create matches a
/// human would not see. Leetspeak is deliberately absent (digits are legitimate text).
fn fold_char(c: char) -> char {
    match c {
        // Cyrillic lowercase
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'һ' => 'h',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ү' => 'y',
        'ӏ' => 'l',
        // Cyrillic uppercase
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'Ѕ' => 'S',
        'І' => 'I',
        'Ј' => 'J',
        'Ү' => 'Y',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        'Ӏ' => 'I',
        // Greek uppercase
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Greek lowercase
        'α' => 'a',
        'ο' => 'o',
        'ι' => 'i',
        'ν' => 'v',
        'ρ' => 'p',
        'υ' => 'u',
        'κ' => 'k',
        'χ' => 'x',
        'γ' => 'y',
        'ϲ' => 'c',
        'ϳ' => 'j',
        // Latin and Armenian variants
        'ɡ' => 'g',
        'ɑ' => 'a',
        'ı' => 'i',
        'ȷ' => 'j',
        'օ' => 'o',
        'ս' => 'u',
        'հ' => 'h',
        // Typographic punctuation: rules are written with ASCII quotes and hyphens.
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        _ => c,
    }
}

/// Pending whitespace run: emitted only once it ends, as one character.
#[derive(Debug, Clone, Copy)]
struct WsRun {
    start: usize,
    end: usize,
    newline: bool,
    chars: usize,
}

struct Builder<'a> {
    src: &'a str,
    n: Normalization,
    out: String,
    segs: Vec<Seg>,
    /// Nothing has diverged yet: the output so far is implicitly a prefix of `src`, so clean
    /// text never allocates.
    lazy: bool,
    ws: Option<WsRun>,
    scratch: String,
    scratch2: String,
}

impl<'a> Builder<'a> {
    fn run(&mut self) {
        let src = self.src;
        let b = src.as_bytes();
        let fold_ws = self.n.fold_whitespace;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c < 0x80 {
                if fold_ws && is_ascii_ws(c) {
                    self.add_ws(i..i + 1, c == b'\n' || c == b'\r');
                    i += 1;
                    continue;
                }
                let start = i;
                i += 1;
                while i < b.len() && b[i] < 0x80 {
                    if fold_ws && is_ascii_ws(b[i]) {
                        // A lone space or newline between words needs no folding; keeping it
                        // in the run avoids per-word bookkeeping.
                        let lone = matches!(b[i], b' ' | b'\n')
                            && b.get(i + 1).is_some_and(|&n| n < 0x80 && !is_ascii_ws(n));
                        if !lone {
                            break;
                        }
                    }
                    i += 1;
                }
                if i < b.len() && b[i] >= 0x80 && self.cluster_end(i) > i {
                    // The last ASCII letter is the base of following combining marks.
                    if i - 1 > start {
                        self.push_ident(start..i - 1);
                    }
                    i = self.cluster(i - 1);
                } else {
                    self.push_ident(start..i);
                }
                continue;
            }
            let Some(ch) = src.get(i..).and_then(|s| s.chars().next()) else {
                break;
            };
            let len = ch.len_utf8();
            if self.n.strip_invisible && is_invisible(ch) {
                self.delete(i..i + len);
                i += len;
            } else if fold_ws && ch.is_whitespace() {
                self.add_ws(i..i + len, is_newline(ch));
                i += len;
            } else {
                i = self.cluster(i);
            }
        }
    }

    /// End of the combining marks (and interleaved stripped invisibles) after `from`; `from`
    /// itself when none follow.
    fn cluster_end(&self, from: usize) -> usize {
        let Some(rest) = self.src.get(from..) else {
            return from;
        };
        let mut end = from;
        for (off, c) in rest.char_indices() {
            if is_combining_mark(c) {
                end = from + off + c.len_utf8();
            } else if !(self.n.strip_invisible && is_invisible(c)) {
                break;
            }
        }
        end
    }

    /// Transforms the cluster whose base starts at `start`; returns where it ends.
    fn cluster(&mut self, start: usize) -> usize {
        let Some(base) = self.src.get(start..).and_then(|s| s.chars().next()) else {
            return self.src.len();
        };
        let base_end = start + base.len_utf8();
        let end = self.cluster_end(base_end);
        if end == base_end {
            // Fast path: a lone character, the overwhelmingly common case.
            if base.is_ascii() {
                self.push_ident(start..end);
                return end;
            }
            if self.n.fold_confusables {
                let f = fold_char(base);
                if f != base && f.is_ascii() {
                    let mut buf = [0u8; 4];
                    self.push_mapped(f.encode_utf8(&mut buf), start..end);
                    return end;
                }
            }
            let quick = match self.n.unicode {
                UnicodeForm::None => IsNormalized::Yes,
                UnicodeForm::Nfc => is_nfc_quick(std::iter::once(base)),
                UnicodeForm::Nfkc => is_nfkc_quick(std::iter::once(base)),
            };
            if quick == IsNormalized::Yes || decomposes_over(base, self.n.unicode) {
                self.push_ident(start..end);
                return end;
            }
        }
        let piece = self.src.get(start..end).unwrap_or("");
        // A cluster holding a character that would grow past MAX_EXPANSION is kept as it is:
        // see MAX_EXPANSION for why nothing a rule looks for is lost.
        if piece.chars().any(|c| over_expanding(c, self.n.unicode)) {
            self.push_ident(start..end);
            return end;
        }
        let mut out = std::mem::take(&mut self.scratch);
        let mut tmp = std::mem::take(&mut self.scratch2);
        self.transform(piece, &mut out, &mut tmp);
        debug_assert!(
            out.len() <= MAX_EXPANSION * piece.len(),
            "{piece:?} -> {out:?}"
        );
        if out == piece {
            self.push_ident(start..end);
        } else {
            self.push_mapped(&out, start..end);
        }
        self.scratch = out;
        self.scratch2 = tmp;
        end
    }

    /// Full per-cluster pipeline. Folding runs before composition so that a look-alike base
    /// plus accent composes like the ASCII letter would, and again after, because compatibility
    /// decompositions can yield look-alikes; a second round settles compositions the second
    /// fold enabled, which keeps normalization idempotent.
    fn transform(&self, piece: &str, out: &mut String, tmp: &mut String) {
        let strip = self.n.strip_invisible;
        let fold = self.n.fold_confusables;
        let keep = |c: &char| !(strip && is_invisible(*c));
        let f = |c: char| if fold { fold_char(c) } else { c };
        out.clear();
        out.extend(piece.chars().filter(keep).map(f));
        for _ in 0..2 {
            let settled = match self.n.unicode {
                UnicodeForm::None => true,
                UnicodeForm::Nfc => is_nfc_quick(out.chars()) == IsNormalized::Yes,
                UnicodeForm::Nfkc => is_nfkc_quick(out.chars()) == IsNormalized::Yes,
            };
            if settled {
                return;
            }
            tmp.clear();
            match self.n.unicode {
                UnicodeForm::Nfc => tmp.extend(out.chars().nfc()),
                _ => tmp.extend(out.chars().nfkc()),
            }
            out.clear();
            out.extend(tmp.chars().filter(keep).map(f));
        }
    }

    /// Ends the clean prefix: from here on the output is built explicitly.
    fn materialize(&mut self, at: usize) {
        if !self.lazy {
            return;
        }
        self.lazy = false;
        self.out.reserve(self.src.len());
        self.out.push_str(self.src.get(..at).unwrap_or(""));
        if at > 0 {
            self.segs.push(Seg {
                norm: 0,
                orig: 0,
                orig_end: at,
                ident: true,
            });
        }
    }

    fn push_ident(&mut self, r: Range<usize>) {
        self.flush_ws();
        self.append_ident(r);
    }

    fn append_ident(&mut self, r: Range<usize>) {
        if self.lazy {
            return;
        }
        let piece = self.src.get(r.clone()).unwrap_or("");
        match self.segs.last_mut() {
            Some(last) if last.ident && last.orig_end == r.start => last.orig_end = r.end,
            _ => self.segs.push(Seg {
                norm: self.out.len(),
                orig: r.start,
                orig_end: r.end,
                ident: true,
            }),
        }
        self.out.push_str(piece);
    }

    fn push_mapped(&mut self, s: &str, r: Range<usize>) {
        for d in s.chars() {
            if self.n.fold_whitespace && d.is_whitespace() {
                self.add_ws(r.clone(), is_newline(d));
                continue;
            }
            self.flush_ws();
            self.materialize(r.start);
            self.push_seg_char(d, r.clone());
        }
    }

    fn push_seg_char(&mut self, d: char, r: Range<usize>) {
        let same = matches!(self.segs.last(), Some(l) if !l.ident && l.orig == r.start && l.orig_end == r.end);
        if !same {
            self.segs.push(Seg {
                norm: self.out.len(),
                orig: r.start,
                orig_end: r.end,
                ident: false,
            });
        }
        self.out.push(d);
    }

    fn delete(&mut self, r: Range<usize>) {
        let at = self.ws.map_or(r.start, |w| w.start.min(r.start));
        self.materialize(at);
    }

    fn add_ws(&mut self, r: Range<usize>, newline: bool) {
        match &mut self.ws {
            Some(w) => {
                w.start = w.start.min(r.start);
                w.end = w.end.max(r.end);
                w.newline |= newline;
                w.chars += 1;
            }
            None => {
                self.ws = Some(WsRun {
                    start: r.start,
                    end: r.end,
                    newline,
                    chars: 1,
                })
            }
        }
    }

    fn flush_ws(&mut self) {
        let Some(w) = self.ws.take() else {
            return;
        };
        let ch = if w.newline { b'\n' } else { b' ' };
        let ident =
            w.chars == 1 && w.end == w.start + 1 && self.src.as_bytes().get(w.start) == Some(&ch);
        if ident {
            self.append_ident(w.start..w.end);
        } else {
            self.materialize(w.start);
            self.push_seg_char(char::from(ch), w.start..w.end);
        }
    }

    fn finish(mut self) -> Normalized<'a> {
        self.flush_ws();
        if self.lazy {
            return Normalized {
                original: self.src,
                text: Cow::Borrowed(self.src),
                segs: Vec::new(),
            };
        }
        Normalized {
            original: self.src,
            text: Cow::Owned(self.out),
            segs: self.segs,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn word_at_a_time_whitespace_check_agrees_with_the_simple_one() {
        fn simple(b: &[u8]) -> bool {
            b.windows(2)
                .any(|w| matches!(w[0], b' ' | b'\n') && matches!(w[1], b' ' | b'\n'))
                || b.iter().any(|c| matches!(c, b'\t' | b'\r' | 0x0B | 0x0C))
        }
        let alphabet = [b'a', b' ', b'\n', b'\t', b'x', b'\r'];
        // Every string of length 0..=10 over a small alphabet would be 60M cases; walk a
        // deterministic pseudo-random sample instead, covering chunk boundaries.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let s: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 16 * 4)) as usize + i) % alphabet.len()])
                .collect();
            assert_eq!(super::ascii_needs_ws_fold(&s, true), simple(&s), "{s:?}");
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn all() -> Normalization {
        Normalization::default()
    }

    /// The original slice behind the first match of `needle` in the normalized text.
    fn orig_of<'a>(input: &'a str, needle: &str) -> &'a str {
        let n = normalize(input, &all());
        let pos = n.text().find(needle).expect("needle present");
        let r = n.to_original(pos..pos + needle.len());
        &input[r]
    }

    #[test]
    fn full_width_folds_and_maps_back() {
        let input = "please ｉｇｎｏｒｅ this";
        let n = normalize(input, &all());
        assert_eq!(n.text(), "please ignore this");
        assert!(!n.is_identity());
        assert_eq!(orig_of(input, "ignore"), "ｉｇｎｏｒｅ");
        assert_eq!(orig_of(input, "gno"), "ｇｎｏ");
        assert_eq!(orig_of(input, "this"), "this");
    }

    #[test]
    fn cyrillic_lookalikes_fold() {
        let input = "now іgnоrе it";
        assert_eq!(normalize(input, &all()).text(), "now ignore it");
        assert_eq!(orig_of(input, "ignore"), "іgnоrе");
        let greek = "ΑΒΕ ορα";
        assert_eq!(normalize(greek, &all()).text(), "ABE opa");
    }

    #[test]
    fn zero_width_and_bidi_are_removed() {
        let input = "ig\u{200B}nore";
        let n = normalize(input, &all());
        assert_eq!(n.text(), "ignore");
        assert_eq!(orig_of(input, "ignore"), input);
        let bidi = "x \u{202E}ign\u{2066}ore\u{2069}\u{00AD} y";
        assert_eq!(normalize(bidi, &all()).text(), "x ignore y");
        assert_eq!(orig_of(bidi, "ignore"), "ign\u{2066}ore");
        let tags = "a\u{E0041}\u{E0042}b\u{FE0F}";
        assert_eq!(normalize(tags, &all()).text(), "ab");
        assert_eq!(normalize("\u{FEFF}abc", &all()).text(), "abc");
        assert_eq!(orig_of("\u{FEFF}abc", "abc"), "abc");
    }

    #[test]
    fn whitespace_folding() {
        let n = normalize("a  b\t\tc\n\n\nd \u{00A0}\u{3000}e \r\n f", &all());
        assert_eq!(n.text(), "a b c\nd e\nf");
        assert_eq!(orig_of("a  b\t\tc", "b c"), "b\t\tc");
        assert_eq!(orig_of("x\u{2003}\u{2003}y", " "), "\u{2003}\u{2003}");
        // Single spaces and single newlines stay as they are.
        let n = normalize("a b\nc", &all());
        assert!(n.is_identity());
        // An invisible inside a run joins the run.
        assert_eq!(normalize("a \u{200B} b", &all()).text(), "a b");
        let off = Normalization {
            fold_whitespace: false,
            ..all()
        };
        assert_eq!(normalize("a  b", &off).text(), "a  b");
        assert!(normalize("a  b", &off).is_identity());
    }

    #[test]
    fn quotes_dashes_and_composition() {
        assert_eq!(normalize("“hi” it’s a—b", &all()).text(), "\"hi\" it's a-b");
        assert_eq!(normalize("cafe\u{0301}", &all()).text(), "café");
        assert_eq!(orig_of("cafe\u{0301}!", "é"), "e\u{0301}");
        assert_eq!(normalize("ﬁle 𝐢𝐠𝐧𝐨𝐫𝐞", &all()).text(), "file ignore");
        let nfc = Normalization {
            unicode: UnicodeForm::Nfc,
            ..all()
        };
        assert_eq!(normalize("ｉ", &nfc).text(), "ｉ");
        assert_eq!(normalize("e\u{0301}", &nfc).text(), "é");
    }

    #[test]
    fn expansion_is_bounded_at_twice_the_prompt() {
        // Kept as written: 18 characters (11 times the bytes) and a 6-character Katakana word.
        for ch in ["\u{FDFA}", "\u{FDFB}", "\u{3316}"] {
            let input = format!("a{ch}b");
            assert_eq!(normalize(&input, &all()).text(), input);
        }
        // Also behind a combining mark, where the whole cluster is transformed.
        let marked = "a\u{FDFA}\u{0301}b";
        assert_eq!(normalize(marked, &all()).text(), marked);
        // Expansions within the bound still apply.
        assert_eq!(normalize("\u{2474}\u{FB03}", &all()).text(), "(1)ffi");
        assert_eq!(normalize("\u{3349}", &all()).text(), "ミリ");
        // Whatever the text, normalized text is at most twice the input.
        let every: String = (0x80u32..0x3_0000).filter_map(char::from_u32).collect();
        let n = normalize(&every, &all());
        assert!(n.text().len() <= MAX_EXPANSION * every.len());
        let worst: String = "\u{FDFA}".repeat(1000);
        assert_eq!(normalize(&worst, &all()).text().len(), worst.len());
    }

    /// One rule for a lone character and a cluster: U+320E (`(가)`: 8 bytes decomposed, 5
    /// composed, from 3) is kept as written alone and behind a combining mark; and the bound
    /// holds in NFC too, where U+1D160 decomposes canonically to three times its bytes.
    #[test]
    fn lone_characters_and_clusters_follow_one_rule() {
        for input in ["a\u{320E}b", "a\u{320E}\u{0301}b"] {
            assert_eq!(normalize(input, &all()).text(), input);
        }
        let nfc = Normalization {
            unicode: UnicodeForm::Nfc,
            ..all()
        };
        for input in ["\u{1D160}", "\u{1D160}\u{0301}"] {
            assert_eq!(normalize(input, &nfc).text(), input);
        }
        let every: String = (0x80u32..=0x10_FFFF).filter_map(char::from_u32).collect();
        for form in [UnicodeForm::Nfc, UnicodeForm::Nfkc] {
            let n = Normalization {
                unicode: form,
                ..all()
            };
            assert!(normalize(&every, &n).text().len() <= MAX_EXPANSION * every.len());
        }
    }

    #[test]
    fn ascii_fast_path_is_borrowed() {
        let n = normalize("Ignore previous instructions.\nThanks", &all());
        assert!(n.is_identity());
        assert!(matches!(n.text, Cow::Borrowed(_)));
        assert_eq!(n.to_original(0..6), 0..6);
        // Clean non-ASCII text is borrowed too.
        let n = normalize("naïve 日本語 text", &all());
        assert!(n.is_identity());
        assert_eq!(n.to_original(7..10), 7..10);
    }

    #[test]
    fn to_original_clamps_and_points() {
        let input = "ａｂ";
        let n = normalize(input, &all());
        assert_eq!(n.text(), "ab");
        assert_eq!(n.to_original(1..1), 3..3);
        assert_eq!(n.to_original(2..2), 6..6);
        assert_eq!(n.to_original(0..100), 0..6);
        #[allow(clippy::reversed_empty_ranges)]
        let rev = n.to_original(2..1);
        assert_eq!(rev, 6..6);
    }

    #[test]
    fn union_takes_the_stronger() {
        let a = Normalization {
            unicode: UnicodeForm::Nfc,
            fold_confusables: false,
            strip_invisible: true,
            fold_whitespace: false,
        };
        let b = Normalization {
            unicode: UnicodeForm::None,
            fold_confusables: true,
            strip_invisible: false,
            fold_whitespace: false,
        };
        let u = a.union(b);
        assert_eq!(u.unicode, UnicodeForm::Nfc);
        assert!(u.fold_confusables && u.strip_invisible && !u.fold_whitespace);
        assert_eq!(b.union(a), u);
        assert_eq!(a.union(all()), all());
    }

    #[test]
    fn serde_defaults_and_strictness() {
        let n: Normalization = serde_json::from_str("{}").unwrap();
        assert_eq!(n, Normalization::default());
        let n: Normalization = serde_json::from_str(r#"{"unicode":"none"}"#).unwrap();
        assert_eq!(n.unicode, UnicodeForm::None);
        assert!(n.fold_confusables);
        let n: Normalization =
            serde_yaml::from_str("unicode: nfc\nfoldWhitespace: false\n").unwrap();
        assert_eq!(n.unicode, UnicodeForm::Nfc);
        assert!(!n.fold_whitespace);
        assert!(serde_json::from_str::<Normalization>(r#"{"bogus":true}"#).is_err());
        assert!(serde_json::from_str::<Normalization>(r#"{"unicode":"nfd"}"#).is_err());
        let back: Normalization =
            serde_json::from_str(&serde_json::to_string(&all()).unwrap()).unwrap();
        assert_eq!(back, all());
        let schema = serde_json::to_string(&schemars::schema_for!(Normalization)).unwrap();
        assert!(schema.contains("foldConfusables"));
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a",
            "b",
            "e",
            " ",
            "  ",
            "\n",
            "\t",
            "\r\n",
            "ｉ",
            "і",
            "о",
            "\u{200B}",
            "\u{202E}",
            "\u{0301}",
            "\u{0308}",
            "¨",
            "\u{00A0}",
            "“",
            "—",
            "ﬁ",
            "가",
            "\u{1100}",
            "\u{1161}",
            "\u{E0041}",
            "𝐢",
            "é",
            "\u{3000}",
            "\u{2028}",
            "⑴",
            "\u{0344}",
            "Α",
            "ɡ",
            "x",
        ]);
        prop_oneof![
            any::<String>(),
            prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_maps_in_bounds(s in text_strategy(), a in 0usize..200, b in 0usize..200) {
            for n in [all(), Normalization { unicode: UnicodeForm::Nfc, ..all() },
                      Normalization { fold_whitespace: false, strip_invisible: false, ..all() }] {
                let out = normalize(&s, &n);
                let t = out.text();
                let bounds: Vec<usize> = (0..=t.len()).filter(|i| t.is_char_boundary(*i)).collect();
                let x = bounds[a % bounds.len()];
                let y = bounds[b % bounds.len()];
                let (x, y) = (x.min(y), x.max(y));
                let r = out.to_original(x..y);
                prop_assert!(r.start <= r.end && r.end <= s.len());
                prop_assert!(s.is_char_boundary(r.start) && s.is_char_boundary(r.end));
                // Mapping a non-empty range never yields an empty original range.
                if x < y { prop_assert!(r.start < r.end); }
                // Byte-level ranges (regex over bytes) are safe too.
                let r = out.to_original(a.min(b)..a.max(b));
                prop_assert!(s.is_char_boundary(r.start) && s.is_char_boundary(r.end) && r.end <= s.len());
            }
        }

        #[test]
        fn idempotent_when_all_on(s in text_strategy()) {
            let once = normalize(&s, &all()).text().to_string();
            let twice = normalize(&once, &all());
            prop_assert_eq!(twice.text(), once.as_str());
        }

        #[test]
        fn identity_means_unchanged(s in text_strategy()) {
            let out = normalize(&s, &all());
            if out.is_identity() {
                prop_assert_eq!(out.text(), s.as_str());
            }
        }
    }
}
