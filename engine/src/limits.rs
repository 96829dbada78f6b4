//! Bounds on what rule-pack sources may cost, and error text safe for readers who may not see
//! the sources.
//!
//! Rule packs are data, often written by someone other than whoever runs the scanner (a
//! tenant's RulePack, a file dropped into a mounted directory). Without bounds one pack can
//! make every reload cost minutes of CPU and hundreds of MiB (issue 12, finding 5: 100k rules
//! took 97 s and 665 MiB to compile). Each limit below is checked as early as its input allows:
//! the file size from the file's metadata before a byte is read, rule counts after parsing and
//! before any regex is compiled, compiled sizes while compiling (so a bundle over its budget
//! stops one regex past the budget, not after compiling everything). The same limits hold in
//! `pd-scanner test`/`scan`/`bundle`, in `serve`, and — through [`crate::compile::compile`]'s
//! defaults — in the operator's RulePack validation.

use std::borrow::Cow;

/// Bounds applied to every rule-pack source. [`Limits::default`] is what the operator and the
/// library's plain entry points use; the `pd-scanner` flags override each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest source file (or ConfigMap value) read, in bytes. Checked on the file's metadata
    /// first, so a huge file costs a `stat`, not a read.
    pub max_file_bytes: u64,
    /// Most rules one pack may define itself (`rules`, not counting inherited ones).
    pub max_pack_rules: usize,
    /// Most rules a compiled bundle may hold (all bound packs with their `extends` chains).
    pub max_bundle_rules: usize,
    /// Longest regex source, in bytes.
    pub max_regex_bytes: usize,
    /// Compiled size limit of one rule's regex (the regex crate's NFA size limit): counted
    /// repetitions multiply, so a 13-byte `b{1000}{1000}` asks for a million states.
    pub max_regex_compiled_bytes: usize,
    /// Compiled size of a whole bundle: the rules' regexes and the keyword automaton, summed
    /// while compiling. The prefilter's automata have fixed budgets of their own.
    pub max_bundle_compiled_bytes: usize,
}

/// 4 MiB: ten times the sample bundle (the learned model included), four times the 1 MiB a
/// ConfigMap can hold at all.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 20;
/// 5,000 own rules per pack: fifty times the sample baseline pack.
pub const DEFAULT_MAX_PACK_RULES: usize = 5_000;
/// 10,000 rules per bundle: a few large packs bound together.
pub const DEFAULT_MAX_BUNDLE_RULES: usize = 10_000;
/// 4 KiB of regex source: real rules are well under 1 KiB.
pub const DEFAULT_MAX_REGEX_BYTES: usize = 4096;
/// 2 MiB per compiled regex: room for bounded repeats like `\w{1,1000}`, not for nested ones.
pub const DEFAULT_MAX_REGEX_COMPILED_BYTES: usize = 2 << 20;
/// 256 MiB per bundle: a full bundle of rules at their usual size (tens of KiB each) fits many
/// times over; a bundle of near-limit regexes does not.
pub const DEFAULT_MAX_BUNDLE_COMPILED_BYTES: usize = 256 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_pack_rules: DEFAULT_MAX_PACK_RULES,
            max_bundle_rules: DEFAULT_MAX_BUNDLE_RULES,
            max_regex_bytes: DEFAULT_MAX_REGEX_BYTES,
            max_regex_compiled_bytes: DEFAULT_MAX_REGEX_COMPILED_BYTES,
            max_bundle_compiled_bytes: DEFAULT_MAX_BUNDLE_COMPILED_BYTES,
        }
    }
}

/// A name taken from a source (a pack it extends, a model, a policy's pack list), as shown in
/// error text that may be public (`/readyz`, the Pod annotation): the name itself when it looks
/// like one (at most 128 characters of `A-Za-z0-9._-`), else a placeholder. Names that are
/// validated when read (pack and rule ids) need no such care; free text must never be shown.
pub fn shown_name(name: &str) -> Cow<'_, str> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        Cow::Owned(format!("`{name}`"))
    } else {
        Cow::Borrowed("(a value that is not a valid name)")
    }
}

/// Most problems shown in public error text; the rest are counted.
pub const MAX_SHOWN_PROBLEMS: usize = 10;
/// Longest problem line shown in public error text, in bytes.
pub const MAX_PROBLEM_BYTES: usize = 300;

/// Joins problem lines for public error text: at most [`MAX_SHOWN_PROBLEMS`] of them, each cut
/// to [`MAX_PROBLEM_BYTES`], then "and N more". One refused reload with 20,000 broken rules
/// must not make `/readyz` (or the Pod annotation) megabytes long.
pub fn bounded_lines(lines: &[String]) -> String {
    bounded_lines_of(lines, MAX_SHOWN_PROBLEMS, MAX_PROBLEM_BYTES)
}

/// At most `max_lines` of `lines`, each cut to `max_bytes`, then how many were left out.
pub fn bounded_lines_of(lines: &[String], max_lines: usize, max_bytes: usize) -> String {
    let mut out: Vec<String> = lines
        .iter()
        .take(max_lines)
        .map(|l| truncate(l, max_bytes))
        .collect();
    if lines.len() > max_lines {
        out.push(format!(
            "… and {} more problem(s) (`pd-scanner test` lists them all)",
            lines.len() - max_lines
        ));
    }
    out.join("\n")
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_and_free_text_is_not() {
        assert_eq!(shown_name("baseline"), "`baseline`");
        assert_eq!(shown_name("prompt-attacks_v1.2"), "`prompt-attacks_v1.2`");
        for bad in ["", "root:x:0:0", "a b", "x`y", &"a".repeat(129)] {
            assert!(!shown_name(bad).contains(bad) || bad.is_empty(), "{bad}");
        }
    }

    #[test]
    fn public_lists_are_bounded() {
        let lines: Vec<String> = (0..25)
            .map(|i| format!("{i}: {}", "é".repeat(400)))
            .collect();
        let s = bounded_lines(&lines);
        assert_eq!(s.lines().count(), MAX_SHOWN_PROBLEMS + 1);
        assert!(s.lines().all(|l| l.len() <= MAX_PROBLEM_BYTES), "{s}");
        assert!(
            s.ends_with("… and 15 more problem(s) (`pd-scanner test` lists them all)"),
            "{s}"
        );
        assert_eq!(bounded_lines(&["one".into()]), "one");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "a…");
    }
}
