//! PII detectors: personal data about a person (e-mail, phone, payment card, IBAN, US SSN).

use std::ops::Range;

use super::bytes::{all_same, contains, digit_runs};
use super::{Detector, DetectorCategory};

/// The `email` detector ([`DetectorKind::Email`](super::DetectorKind::Email)).
pub(super) const EMAIL: Detector = Detector {
    placeholder: "EMAIL",
    category: DetectorCategory::Pii,
    summary: "local@domain.tld, no stray dots",
    candidate_pattern: r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}",
    refine: refine_email,
};

/// The `phone` detector ([`DetectorKind::Phone`](super::DetectorKind::Phone)).
pub(super) const PHONE: Detector = Detector {
    placeholder: "PHONE",
    category: DetectorCategory::Pii,
    summary: "E.164 `+…` or North-American with valid area/exchange; not dates or versions",
    // E.164 groups with single separators, or NANP with an optional leading dotted or
    // dashed number and trailing number so refine can reject version-like runs.
    candidate_pattern: r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,5}\)?){1,7}|(?:\b[0-9]{1,4}[.-]|\b1 )?(?:\([2-9][0-9]{2}\) ?|\b[2-9][0-9]{2}[.-])[2-9][0-9]{2}[.-][0-9]{4}(?:[.-][0-9]+)?\b",
    refine: refine_phone,
};

/// The `credit_card` detector ([`DetectorKind::CreditCard`](super::DetectorKind::CreditCard)).
pub(super) const CREDIT_CARD: Detector = Detector {
    placeholder: "CREDIT_CARD",
    category: DetectorCategory::Pii,
    summary: "13–19 digits, known IIN ranges, Luhn",
    candidate_pattern: r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
    refine: refine_card,
};

/// The `iban` detector ([`DetectorKind::Iban`](super::DetectorKind::Iban)).
pub(super) const IBAN: Detector = Detector {
    placeholder: "IBAN",
    category: DetectorCategory::Pii,
    summary: "country length, mod-97",
    candidate_pattern: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    refine: refine_iban,
};

/// The `us_ssn` detector ([`DetectorKind::UsSsn`](super::DetectorKind::UsSsn)).
pub(super) const US_SSN: Detector = Detector {
    placeholder: "US_SSN",
    category: DetectorCategory::Pii,
    summary: "`AAA-GG-SSSS` with area/group/serial rules",
    candidate_pattern: r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b",
    refine: refine_ssn,
};

fn refine_email(c: &[u8]) -> Option<Range<usize>> {
    // Leading dots are sentence punctuation the greedy local-part class swallowed ("see...a@b.io");
    // skipping them keeps the address instead of dropping it.
    let start = c.iter().position(|&b| b != b'.')?;
    let s = &c[start..];
    let at = s.iter().position(|&b| b == b'@')?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.ends_with(b".")
        && !contains(local, b"..")
        && local
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    if !local_ok || domain.len() > 253 {
        return None;
    }
    let labels: Vec<&[u8]> = domain.split(|&b| b == b'.').collect();
    if labels.len() < 2 {
        return None;
    }
    let labels_ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with(b"-")
            && !l.ends_with(b"-")
            && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let tld = labels.last()?;
    if !labels_ok || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    Some(start..c.len())
}

fn refine_phone(c: &[u8]) -> Option<Range<usize>> {
    if c.first() == Some(&b'+') {
        refine_e164(c)
    } else {
        refine_nanp(c)
    }
}

fn refine_e164(c: &[u8]) -> Option<Range<usize>> {
    let body = c.get(1..)?;
    if !body.first().is_some_and(|b| (b'1'..=b'9').contains(b))
        || !body.last().is_some_and(u8::is_ascii_digit)
        || !body
            .iter()
            .all(|&b| b.is_ascii_digit() || b" ().-".contains(&b))
    {
        return None;
    }
    let runs = digit_runs(body);
    let digits: usize = runs.iter().map(|r| r.len()).sum();
    if !(8..=15).contains(&digits) {
        return None;
    }
    // Separators between groups: one of space/dot/dash, or parens around one group.
    let opens = body.iter().filter(|&&b| b == b'(').count();
    let closes = body.iter().filter(|&&b| b == b')').count();
    if opens > 1 || opens != closes {
        return None;
    }
    if opens == 1 {
        let o = body.iter().position(|&b| b == b'(')?;
        let cl = body.iter().position(|&b| b == b')')?;
        if cl < o + 2 || !body[o + 1..cl].iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    for w in runs.windows(2) {
        let sep = &body[w[0].end..w[1].start];
        let plain = sep.iter().filter(|&&b| b != b'(' && b != b')').count();
        if plain > 1 {
            return None;
        }
    }
    // A date written after a plus sign ("+2024-01-15") is not a number anyone dials, a single
    // dot is a decimal ("+3.14159265"), and an unseparated short run is more often an amount.
    let lens: Vec<usize> = runs.iter().map(|r| r.len()).collect();
    let decimal = runs.len() == 2 && body[runs[0].end..runs[1].start] == *b".";
    let digit_bytes: Vec<u8> = body.iter().copied().filter(u8::is_ascii_digit).collect();
    if lens == [4, 2, 2]
        || lens == [2, 2, 4]
        || decimal
        || (runs.len() == 1 && digits < 10)
        || all_same(&digit_bytes[1..])
    {
        return None;
    }
    Some(0..c.len())
}

fn refine_nanp(c: &[u8]) -> Option<Range<usize>> {
    if !c
        .iter()
        .all(|&b| b.is_ascii_digit() || b" ().-".contains(&b))
    {
        return None;
    }
    let runs = digit_runs(c);
    let groups: &[Range<usize>] = match runs.len() {
        3 => &runs,
        4 => {
            // Only the country code "1" may precede; anything else is a version or serial number.
            if &c[runs[0].clone()] != b"1" {
                return None;
            }
            &runs[1..]
        }
        _ => return None,
    };
    let [area, exchange, line] = groups else {
        return None;
    };
    if area.len() != 3 || exchange.len() != 3 || line.len() != 4 {
        return None;
    }
    let first = |r: &Range<usize>| c.get(r.start).copied().unwrap_or(b'0');
    if !(b'2'..=b'9').contains(&first(area)) || !(b'2'..=b'9').contains(&first(exchange)) {
        return None;
    }
    let sep1 = &c[area.end..exchange.start];
    let sep2 = &c[exchange.end..line.start];
    let parenthesized = area.start > 0 && c[area.start - 1] == b'(';
    let seps_ok = if parenthesized {
        (sep1 == b")" || sep1 == b") ") && (sep2 == b"-" || sep2 == b".")
    } else {
        sep1 == sep2 && (sep1 == b"-" || sep1 == b".")
    };
    let digits: Vec<u8> = groups.iter().flat_map(|r| c[r.clone()].to_vec()).collect();
    if !seps_ok || all_same(&digits) {
        return None;
    }
    Some(0..c.len())
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let v = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = v * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the issuer prefix is a known card brand and the length fits that brand.
fn card_brand_ok(d: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let len = d.len();
    let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
    let visa = d.first() == Some(&b'4') && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = (p2 == 34 || p2 == 37) && len == 15;
    let discover =
        (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners = ((300..=305).contains(&p3) || p2 == 36 || p2 == 38) && (14..=19).contains(&len);
    visa || mastercard || amex || discover || jcb || diners
}

fn refine_card(c: &[u8]) -> Option<Range<usize>> {
    if !c
        .iter()
        .all(|&b| b.is_ascii_digit() || b == b' ' || b == b'-')
    {
        return None;
    }
    let runs = digit_runs(c);
    if runs.first().map(|r| r.start) != Some(0) || runs.last().map(|r| r.end) != Some(c.len()) {
        return None;
    }
    if runs.len() > 1 {
        // One separator character, used consistently, one at a time.
        let sep = c[runs[0].end];
        let seps_ok = runs
            .windows(2)
            .all(|w| w[1].start == w[0].end + 1 && c[w[0].end] == sep);
        let lens: Vec<usize> = runs.iter().map(|r| r.len()).collect();
        let (last, init) = lens.split_last()?;
        let grouped_by_four = init.iter().all(|&l| l == 4) && (1..=4).contains(last);
        let amex_like = lens == [4, 6, 5] || lens == [4, 6, 4];
        if !seps_ok || !(grouped_by_four || amex_like) {
            return None;
        }
    }
    let digits: Vec<u8> = c.iter().copied().filter(u8::is_ascii_digit).collect();
    let ok = (13..=19).contains(&digits.len())
        && !all_same(&digits)
        && luhn_valid(&digits)
        && card_brand_ok(&digits);
    ok.then_some(0..c.len())
}

/// Registered IBAN lengths for the countries prompts mention most; others get the generic bounds.
fn iban_country_len(cc: &[u8]) -> Option<usize> {
    Some(match cc {
        b"DE" | b"GB" | b"IE" => 22,
        b"FR" | b"IT" => 27,
        b"ES" | b"SE" => 24,
        b"NL" | b"DK" | b"FI" => 18,
        b"BE" => 16,
        b"CH" => 21,
        b"AT" | b"LU" => 20,
        b"PL" => 28,
        b"NO" => 15,
        b"PT" => 25,
        _ => return None,
    })
}

fn iban_valid(s: &[u8]) -> bool {
    if s.is_empty() || s.ends_with(b" ") {
        return false;
    }
    let spaced = s.contains(&b' ');
    // Print format puts a space after every four characters and nowhere else.
    let layout_ok = s.iter().enumerate().all(|(i, &b)| {
        if b == b' ' {
            spaced && i % 5 == 4
        } else {
            (!spaced || i % 5 != 4) && (b.is_ascii_uppercase() || b.is_ascii_digit())
        }
    });
    if !layout_ok {
        return false;
    }
    let compact: Vec<u8> = s.iter().copied().filter(|&b| b != b' ').collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    if let Some(expected) = iban_country_len(&compact[..2]) {
        if compact.len() != expected {
            return false;
        }
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rotated {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            let v = u32::from(b - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

fn refine_iban(c: &[u8]) -> Option<Range<usize>> {
    // The optional trailing group may have absorbed a following short token; retry without it.
    let mut ends = vec![c.len()];
    ends.extend(
        c.iter()
            .enumerate()
            .rev()
            .filter(|(_, &b)| b == b' ')
            .map(|(i, _)| i),
    );
    ends.into_iter()
        .find(|&end| iban_valid(&c[..end]))
        .map(|end| 0..end)
}

fn refine_ssn(c: &[u8]) -> Option<Range<usize>> {
    if c.len() != 11 {
        return None;
    }
    let sep = c[3];
    if !(sep == b'-' || sep == b' ') || c[6] != sep {
        return None;
    }
    let digits: Vec<u8> = c
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 6)
        .map(|(_, &b)| b)
        .collect();
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: Range<usize>| {
        digits[r]
            .iter()
            .fold(0u32, |a, &b| a * 10 + u32::from(b - b'0'))
    };
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return None;
    }
    // Published in advertising (078-05-1120) and in an SSA pamphlet (219-09-9999): never real.
    if digits == b"078051120" || digits == b"219099999" {
        return None;
    }
    Some(0..c.len())
}

/// Examples the registry's tests run through every detector of this family.
#[cfg(test)]
pub(super) mod cases {
    use super::super::DetectorKind;

    /// (text given to the detector, value it must report) — every entry is a positive.
    pub(in super::super) fn positives(kind: DetectorKind) -> Vec<(String, String)> {
        let same = |v: &[String]| v.iter().map(|s| (s.clone(), s.clone())).collect::<Vec<_>>();
        let s = |x: &str| x.to_string();
        match kind {
            DetectorKind::Email => same(&[
                s("john.doe@example.com"),
                s("a+tag@mail.example.co.uk"),
                s("first_last%x@sub-domain.io"),
            ]),
            DetectorKind::Phone => same(&[
                s("+1 (555) 234-5678"),
                s("+44 20 7946 0958"),
                s("+4915112345678"),
                s("(555) 234-5678"),
                s("555-234-5678"),
                s("555.234.5678"),
                s("1-555-234-5678"),
            ]),
            DetectorKind::CreditCard => same(&[
                s("4111 1111 1111 1111"),
                s("4111111111111111"),
                s("5555-5555-5555-4444"),
                s("3782 822463 10005"),
                s("6011111111111117"),
                s("3530111333300000"),
                s("30569309025904"),
                s("2223003122003222"),
            ]),
            DetectorKind::Iban => same(&[
                s("GB82 WEST 1234 5698 7654 32"),
                s("DE89 3704 0044 0532 0130 00"),
                s("DE89370400440532013000"),
                s("FR1420041010050500013M02606"),
                s("NL91ABNA0417164300"),
            ]),
            DetectorKind::UsSsn => same(&[s("123-45-6789"), s("536 22 1234")]),
            _ => Vec::new(),
        }
    }

    /// Texts the detector must not report, fed through the full find-then-refine flow.
    pub(in super::super) fn negatives(kind: DetectorKind) -> Vec<String> {
        let s = |x: &str| x.to_string();
        match kind {
            DetectorKind::Email => vec![
                s("john..doe@example.com"),
                s("john.@example.com"),
                s("user@localhost"),
                s("user@example.c0m"),
                s("@example.com"),
            ],
            DetectorKind::Phone => vec![
                s("2024-01-15"),
                s("version 1.2.3.4"),
                s("055-234-5678"),
                s("555-123-4567"),
                s("555-234.5678"),
                s("build 2.555.234.5678"),
                s("555.234.5678.9"),
                s("12345"),
                s("+2024-01-15"),
                s("ticket 12-34-5678"),
            ],
            DetectorKind::CreditCard => vec![
                s("4111 1111 1111 1112"),
                s("1234567812345678"),
                s("0000000000000000"),
                s("4111  1111 1111 1111"),
                s("4111-1111 1111-1111"),
                s("9111111111111111"),
            ],
            DetectorKind::Iban => vec![
                s("GB82 WEST 1234 5698 7654 33"),
                s("DE89 3704 0044 0532 0130 01"),
                s("DE8937040044053201300"),
                s("XX00 0000 0000 0000"),
            ],
            DetectorKind::UsSsn => vec![
                s("000-12-3456"),
                s("666-12-3456"),
                s("900-12-3456"),
                s("123-00-4567"),
                s("123-45-0000"),
                s("078-05-1120"),
                s("219-09-9999"),
                s("123-45 6789"),
                s("123456789"),
            ],
            _ => Vec::new(),
        }
    }
}
