//! Replacing sensitive spans with typed placeholders (`[EMAIL_1]`, `[CREDIT_CARD_2]`…).
//!
//! The same value gets the same number everywhere in a prompt, so a model reading the redacted
//! text can still tell that two mentions refer to one thing. Overlapping spans merge (the earlier
//! span's tag wins), so the output never contains half a secret.

use std::collections::HashMap;
use std::ops::Range;

/// A span of the original text to replace, and the placeholder tag for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub range: Range<usize>,
    pub tag: &'static str,
}

/// Returns `text` with every redaction applied. Ranges must lie on char boundaries of `text`
/// (the engine maps them there); anything out of bounds is clamped rather than panicking.
pub fn redact(text: &str, mut spans: Vec<Redaction>) -> String {
    spans.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    });
    let mut merged: Vec<Redaction> = Vec::with_capacity(spans.len());
    for s in spans {
        let end = s.range.end.min(text.len());
        let start = s.range.start.min(end);
        if start == end {
            continue;
        }
        match merged.last_mut() {
            Some(last) if start < last.range.end => last.range.end = last.range.end.max(end),
            _ => merged.push(Redaction {
                range: start..end,
                tag: s.tag,
            }),
        }
    }
    let mut numbers: HashMap<(&str, &str), usize> = HashMap::new();
    let mut counters: HashMap<&str, usize> = HashMap::new();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in merged {
        let (Some(before), Some(value)) = (text.get(at..r.range.start), text.get(r.range.clone()))
        else {
            continue;
        };
        out.push_str(before);
        let n = *numbers.entry((r.tag, value)).or_insert_with(|| {
            let c = counters.entry(r.tag).or_default();
            *c += 1;
            *c
        });
        out.push('[');
        out.push_str(r.tag);
        out.push('_');
        out.push_str(&n.to_string());
        out.push(']');
        at = r.range.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(range: Range<usize>, tag: &'static str) -> Redaction {
        Redaction { range, tag }
    }

    #[test]
    fn numbers_by_value_and_tag() {
        let t = "a@x.io b@y.io a@x.io 4111";
        let out = redact(
            t,
            vec![
                r(0..6, "EMAIL"),
                r(7..13, "EMAIL"),
                r(14..20, "EMAIL"),
                r(21..25, "CREDIT_CARD"),
            ],
        );
        assert_eq!(out, "[EMAIL_1] [EMAIL_2] [EMAIL_1] [CREDIT_CARD_1]");
    }

    #[test]
    fn overlaps_merge_and_bad_ranges_are_clamped() {
        let out = redact(
            "0123456789",
            vec![r(2..5, "A"), r(4..8, "B"), r(9..40, "C")],
        );
        assert_eq!(out, "01[A_1]8[C_1]");
        assert_eq!(redact("abc", vec![]), "abc");
    }
}
