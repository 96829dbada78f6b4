//! Patterns that are one byte class repeated: `[A-Za-z0-9+/_-]{16,}`, `[A-Z2-7]{16,}`.
//!
//! Such a pattern matches a text exactly when the text holds `min` consecutive bytes of the
//! class, and it holds no literal, so the prefilter must decide it on every text. A DFA does
//! that at one dependent table lookup per byte. A run test can skip instead, the way
//! Boyer–Moore skips: a run of `min` that starts at or after `start` must cover the byte at
//! `start + min - 1`. So the test looks at that byte and walks back from it; the first byte
//! outside the class moves `start` past it. On prose, where the class's runs are words and
//! much shorter than `min`, it reads a few bytes per `min` instead of every byte, and it never
//! reads a byte twice.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::gate::ByteSet;

/// "Some `min` consecutive bytes of the text are in the class."
#[derive(Debug, Clone)]
pub struct ByteRun {
    class: ByteSet,
    min: usize,
}

impl ByteRun {
    /// The run a pattern stands for, when it is exactly a repetition of one byte class (or
    /// one byte), at least once, with no look-around: `[C]{n,}` or `[C]{n,m}`, whose matches
    /// exist exactly where `n` bytes of `C` do (a longer run holds a match of `n`). `hir` is
    /// parsed as bytes ([`crate::atoms::parse`]), as the residual DFAs are.
    pub fn of(hir: &Hir) -> Option<ByteRun> {
        let rep = match hir.kind() {
            HirKind::Repetition(r) => r,
            HirKind::Capture(c) => return ByteRun::of(&c.sub),
            _ => return None,
        };
        let min = usize::try_from(rep.min).ok().filter(|&n| n > 0)?;
        match rep.sub.kind() {
            HirKind::Class(Class::Bytes(_)) => {}
            HirKind::Literal(lit) if lit.0.len() == 1 => {}
            _ => return None,
        }
        Some(ByteRun {
            class: ByteSet::of_hir(&rep.sub),
            min,
        })
    }

    /// Whether `t` holds `min` consecutive bytes of the class.
    pub fn is_in(&self, t: &[u8]) -> bool {
        let n = self.min;
        // No run of `n` starts before `start`; `t[start..known]` are all in the class.
        let mut start = 0;
        let mut known = 0;
        while start + n <= t.len() {
            let mut i = start + n;
            while i > known {
                if !self.class.contains(t[i - 1]) {
                    break;
                }
                i -= 1;
            }
            if i == known {
                return true;
            }
            // `t[i - 1]` is outside the class and everything after it up to `start + n` is in.
            known = start + n;
            start = i;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atoms;
    use proptest::prelude::*;

    fn run(source: &str) -> Option<ByteRun> {
        ByteRun::of(&atoms::parse(source).unwrap())
    }

    #[test]
    fn only_a_bare_repetition_of_one_class_is_a_run() {
        for yes in [
            "[A-Z2-7]{16,}",
            "(?:[a-f0-9]{8,40})",
            "x{3}",
            "(?i)[a-z]{2,}",
            "\\d+",
        ] {
            assert!(run(yes).is_some(), "{yes}");
        }
        for no in [
            "\\b[a-z]{3,}",
            "[a-z]{3,}\\b",
            "(?:ab){3,}",
            "[a-z]{3,}x",
            "[a-z]*",
            "[a-z]",
            "abc",
        ] {
            assert!(run(no).is_none(), "{no}");
        }
    }

    #[test]
    fn finds_a_run_at_either_edge_and_not_one_byte_short() {
        let r = run("[a-z]{4,}").unwrap();
        assert!(r.is_in(b"abcd"));
        assert!(r.is_in(b"abcd 12"));
        assert!(r.is_in(b"12 abcd"));
        assert!(r.is_in(b"1 ab cde fghi"));
        assert!(!r.is_in(b"abc"));
        assert!(!r.is_in(b"abc dfg hij 1klm"));
        assert!(!r.is_in(b""));
    }

    proptest! {
        /// The run test answers what the pattern's own regex answers, on texts made of the
        /// class's bytes and a few others, in runs of every length around `min`.
        #[test]
        fn a_run_matches_where_its_regex_does(
            lo in 0u8..120,
            width in 1u8..40,
            min in 1usize..20,
            bounded in any::<bool>(),
            text in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let hi = lo.saturating_add(width);
            let source = if bounded {
                format!("[\\x{lo:02X}-\\x{hi:02X}]{{{min},{}}}", min + 3)
            } else {
                format!("[\\x{lo:02X}-\\x{hi:02X}]{{{min},}}")
            };
            // Bias the text toward the class so that long runs occur.
            let text: Vec<u8> = text
                .iter()
                .map(|&b| if b % 8 == 0 { b } else { lo + b % (width + 1) })
                .collect();
            let re = regex::bytes::RegexBuilder::new(&source)
                .unicode(false)
                .build()
                .unwrap();
            let r = run(&source).unwrap();
            prop_assert_eq!(r.is_in(&text), re.is_match(&text));
        }
    }
}
