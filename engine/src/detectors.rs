//! Built-in detectors: PII, credentials and exfiltration targets with real validation.
//!
//! Every detector works in two stages, because the engine matches all rules of a pack with one
//! `RegexSet` pass and only then looks closer at the rules that fired:
//!
//! 1. [`DetectorKind::candidate_pattern`] is a cheap, ASCII-only regex that over-approximates the
//!    format. It must compile with `unicode(false)` both alone and inside the shared set, so it
//!    stays small (no huge bounded repetitions) and uses no Unicode classes.
//! 2. [`DetectorKind::refine`] validates one candidate (checksums, prefixes, entropy, context) and
//!    returns the exact sub-range to report and redact. Candidates may deliberately include a little
//!    context (a key name, a trailing delimiter, neighbouring dotted numbers) so that `refine` can
//!    reject look-alikes the regex alone cannot tell apart, since the regex crate has no look-around.
//!
//! Precision matters more than recall here: a false positive blocks or rewrites a benign prompt.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A built-in validator a rule can use instead of a regex.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// E-mail address (`local@domain.tld`).
    Email,
    /// Phone number: E.164 (`+` and 8–15 digits) or North American (NANP) format.
    Phone,
    /// Payment card number: known issuer prefix, brand length and Luhn checksum.
    CreditCard,
    /// International Bank Account Number with mod-97 checksum and per-country length.
    Iban,
    /// US Social Security Number (`AAA-GG-SSSS`), excluding never-issued ranges.
    UsSsn,
    /// IPv4 address (dotted quad, no leading zeros, not part of a longer version string).
    Ipv4,
    /// IPv6 address.
    Ipv6,
    /// `http`, `https` or `ftp` URL, or a `www.` host.
    Url,
    /// AWS access key id (`AKIA...` and the other documented prefixes).
    AwsAccessKey,
    /// AWS secret access key, only when introduced by its key name.
    AwsSecretKey,
    /// GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// GitLab personal access token (`glpat-`).
    GitlabToken,
    /// Slack token (`xoxb-` ...) or Slack incoming-webhook URL.
    SlackToken,
    /// Stripe secret or restricted key (publishable `pk_` keys are not secrets).
    StripeKey,
    /// Google API key (`AIza...`).
    GoogleApiKey,
    /// OpenAI (`sk-`, `sk-proj-`) or Anthropic (`sk-ant-`) API key.
    OpenaiKey,
    /// PEM/PGP private key header.
    PrivateKey,
    /// JSON Web Token whose header and payload decode to JSON objects.
    Jwt,
    /// High-entropy value assigned to a secret-sounding name (`password = ...`).
    GenericSecret,
}

/// The policy category a detector's findings belong to unless a rule says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorCategory {
    /// Personal data about a person.
    Pii,
    /// Credentials that grant access to something.
    Secrets,
    /// Destinations data could be sent to.
    Exfiltration,
}

impl DetectorKind {
    /// Every detector, in declaration order, so callers can enumerate without a macro.
    pub const ALL: &'static [DetectorKind] = &[
        DetectorKind::Email,
        DetectorKind::Phone,
        DetectorKind::CreditCard,
        DetectorKind::Iban,
        DetectorKind::UsSsn,
        DetectorKind::Ipv4,
        DetectorKind::Ipv6,
        DetectorKind::Url,
        DetectorKind::AwsAccessKey,
        DetectorKind::AwsSecretKey,
        DetectorKind::GithubToken,
        DetectorKind::GitlabToken,
        DetectorKind::SlackToken,
        DetectorKind::StripeKey,
        DetectorKind::GoogleApiKey,
        DetectorKind::OpenaiKey,
        DetectorKind::PrivateKey,
        DetectorKind::Jwt,
        DetectorKind::GenericSecret,
    ];

    /// The snake_case name, identical to the serde form so logs and rule files agree.
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Email => "email",
            DetectorKind::Phone => "phone",
            DetectorKind::CreditCard => "credit_card",
            DetectorKind::Iban => "iban",
            DetectorKind::UsSsn => "us_ssn",
            DetectorKind::Ipv4 => "ipv4",
            DetectorKind::Ipv6 => "ipv6",
            DetectorKind::Url => "url",
            DetectorKind::AwsAccessKey => "aws_access_key",
            DetectorKind::AwsSecretKey => "aws_secret_key",
            DetectorKind::GithubToken => "github_token",
            DetectorKind::GitlabToken => "gitlab_token",
            DetectorKind::SlackToken => "slack_token",
            DetectorKind::StripeKey => "stripe_key",
            DetectorKind::GoogleApiKey => "google_api_key",
            DetectorKind::OpenaiKey => "openai_key",
            DetectorKind::PrivateKey => "private_key",
            DetectorKind::Jwt => "jwt",
            DetectorKind::GenericSecret => "generic_secret",
        }
    }

    /// The tag redaction writes in place of a value. IPv4 and IPv6 share one tag because the
    /// downstream reader only needs to know "an address was here".
    pub fn placeholder(self) -> &'static str {
        match self {
            DetectorKind::Email => "EMAIL",
            DetectorKind::Phone => "PHONE",
            DetectorKind::CreditCard => "CREDIT_CARD",
            DetectorKind::Iban => "IBAN",
            DetectorKind::UsSsn => "US_SSN",
            DetectorKind::Ipv4 | DetectorKind::Ipv6 => "IP_ADDRESS",
            DetectorKind::Url => "URL",
            DetectorKind::AwsAccessKey => "AWS_ACCESS_KEY",
            DetectorKind::AwsSecretKey => "AWS_SECRET_KEY",
            DetectorKind::GithubToken => "GITHUB_TOKEN",
            DetectorKind::GitlabToken => "GITLAB_TOKEN",
            DetectorKind::SlackToken => "SLACK_TOKEN",
            DetectorKind::StripeKey => "STRIPE_KEY",
            DetectorKind::GoogleApiKey => "GOOGLE_API_KEY",
            DetectorKind::OpenaiKey => "OPENAI_KEY",
            DetectorKind::PrivateKey => "PRIVATE_KEY",
            DetectorKind::Jwt => "JWT",
            DetectorKind::GenericSecret => "SECRET",
        }
    }

    /// The category used when a rule does not set one.
    pub fn default_category(self) -> DetectorCategory {
        match self {
            DetectorKind::Email
            | DetectorKind::Phone
            | DetectorKind::CreditCard
            | DetectorKind::Iban
            | DetectorKind::UsSsn => DetectorCategory::Pii,
            DetectorKind::Ipv4 | DetectorKind::Ipv6 | DetectorKind::Url => {
                DetectorCategory::Exfiltration
            }
            DetectorKind::AwsAccessKey
            | DetectorKind::AwsSecretKey
            | DetectorKind::GithubToken
            | DetectorKind::GitlabToken
            | DetectorKind::SlackToken
            | DetectorKind::StripeKey
            | DetectorKind::GoogleApiKey
            | DetectorKind::OpenaiKey
            | DetectorKind::PrivateKey
            | DetectorKind::Jwt
            | DetectorKind::GenericSecret => DetectorCategory::Secrets,
        }
    }

    /// The candidate regex (for `regex::bytes` with `unicode(false)`): a superset of the format
    /// that [`DetectorKind::refine`] narrows down.
    pub fn candidate_pattern(self) -> &'static str {
        match self {
            DetectorKind::Email => {
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
            }
            // E.164 groups with single separators, or NANP with an optional leading dotted or
            // dashed number and trailing number so refine can reject version-like runs.
            DetectorKind::Phone => {
                r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,5}\)?){1,7}|(?:\b[0-9]{1,4}[.-]|\b1 )?(?:\([2-9][0-9]{2}\) ?|\b[2-9][0-9]{2}[.-])[2-9][0-9]{2}[.-][0-9]{4}(?:[.-][0-9]+)?\b"
            }
            DetectorKind::CreditCard => r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
            DetectorKind::Iban => r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
            DetectorKind::UsSsn => r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b",
            // Takes the whole dotted run so refine sees `1.2.3.4.5` and rejects it.
            DetectorKind::Ipv4 => r"\b[0-9]+(?:\.[0-9]+){3,}\b",
            // Takes neighbouring word characters too, so refine can reject `std::fmt`-like code.
            DetectorKind::Ipv6 => r"[0-9A-Za-z_]*:[0-9A-Za-z_]*:[0-9A-Za-z_:.]*",
            DetectorKind::Url => r#"(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'`]+"#,
            DetectorKind::AwsAccessKey => {
                r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"
            }
            // Includes one trailing delimiter so a longer base64 run is not cut to 40 chars.
            DetectorKind::AwsSecretKey => {
                r#"(?i)(?:aws_?secret_?access_?key|aws[ _-]?secret(?:[ _-]?key)?|secret_?access_?key)["']?\s*(?:[:=]{1,2}|=>)\s*["']?[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)"#
            }
            DetectorKind::GithubToken => {
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"
            }
            DetectorKind::GitlabToken => r"\bglpat-[A-Za-z0-9_-]{20,255}",
            DetectorKind::SlackToken => {
                r"\bxox[baprs]-[A-Za-z0-9-]{10,255}|https://hooks\.slack\.com/services/T[A-Za-z0-9]{6,12}/B[A-Za-z0-9]{6,12}/[A-Za-z0-9]{16,32}"
            }
            DetectorKind::StripeKey => r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,255}\b",
            // Includes one trailing delimiter because the key may end in `-`, where `\b` fails.
            DetectorKind::GoogleApiKey => r"\bAIza[0-9A-Za-z_-]{35}(?:[^0-9A-Za-z_-]|$)",
            DetectorKind::OpenaiKey => r"\bsk-[A-Za-z0-9_-]{20,255}",
            DetectorKind::PrivateKey => {
                r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----"
            }
            DetectorKind::Jwt => {
                r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"
            }
            DetectorKind::GenericSecret => {
                r#"(?i)(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|client[_-]?secret|private[_-]?key)["']?\s*(?:[:=]{1,2}|=>)\s*["']?[^\s"']{8,128}"#
            }
        }
    }

    /// Validates one candidate match and returns the range (relative to `candidate`) of the
    /// sensitive value, or `None` when it is a look-alike. Total on arbitrary bytes: never panics
    /// and never returns a range outside `candidate`.
    pub fn refine(self, candidate: &[u8]) -> Option<Range<usize>> {
        let r = match self {
            DetectorKind::Email => refine_email(candidate),
            DetectorKind::Phone => refine_phone(candidate),
            DetectorKind::CreditCard => refine_card(candidate),
            DetectorKind::Iban => refine_iban(candidate),
            DetectorKind::UsSsn => refine_ssn(candidate),
            DetectorKind::Ipv4 => refine_ipv4(candidate),
            DetectorKind::Ipv6 => refine_ipv6(candidate),
            DetectorKind::Url => refine_url(candidate),
            DetectorKind::AwsAccessKey => refine_aws_access(candidate),
            DetectorKind::AwsSecretKey => refine_aws_secret(candidate),
            DetectorKind::GithubToken => refine_github(candidate),
            DetectorKind::GitlabToken => refine_gitlab(candidate),
            DetectorKind::SlackToken => refine_slack(candidate),
            DetectorKind::StripeKey => refine_stripe(candidate),
            DetectorKind::GoogleApiKey => refine_google(candidate),
            DetectorKind::OpenaiKey => refine_openai(candidate),
            DetectorKind::PrivateKey => refine_private_key(candidate),
            DetectorKind::Jwt => refine_jwt(candidate),
            DetectorKind::GenericSecret => refine_generic(candidate),
        }?;
        // Defensive: the contract is a non-empty range inside the candidate, whatever a helper did.
        (r.start < r.end && r.end <= candidate.len()).then_some(r)
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Spans of maximal ASCII digit runs, used by the number-shaped detectors to reason about groups.
fn digit_runs(c: &[u8]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in c.iter().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..c.len());
    }
    runs
}

fn all_same(bytes: &[u8]) -> bool {
    bytes.windows(2).all(|w| w[0] == w[1])
}

/// Shannon entropy in bits per byte: separates random credentials from words and placeholders.
fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Number of character classes (lower, upper, digit, other) present.
fn char_classes(bytes: &[u8]) -> usize {
    let lower = bytes.iter().any(u8::is_ascii_lowercase);
    let upper = bytes.iter().any(u8::is_ascii_uppercase);
    let digit = bytes.iter().any(u8::is_ascii_digit);
    let other = bytes.iter().any(|b| !b.is_ascii_alphanumeric());
    [lower, upper, digit, other].iter().filter(|&&x| x).count()
}

fn has_lower_upper_digit(bytes: &[u8]) -> bool {
    bytes.iter().any(u8::is_ascii_lowercase)
        && bytes.iter().any(u8::is_ascii_uppercase)
        && bytes.iter().any(u8::is_ascii_digit)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Decodes unpadded (or padded) base64url; `None` on any invalid character or impossible length.
/// Hand-written because the crate may not take a base64 dependency for one JWT check.
fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    let trimmed = match input.iter().position(|&b| b == b'=') {
        Some(p) if input[p..].iter().all(|&b| b == b'=') => &input[..p],
        Some(_) => return None,
        None => input,
    };
    if trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in trimmed {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// PII
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Exfiltration targets
// ---------------------------------------------------------------------------------------------

fn refine_ipv4(c: &[u8]) -> Option<Range<usize>> {
    let s = std::str::from_utf8(c).ok()?;
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let parts_ok = parts.iter().all(|p| {
        !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    });
    if !parts_ok {
        return None;
    }
    s.parse::<Ipv4Addr>().ok()?;
    Some(0..c.len())
}

fn ipv6_valid(s: &[u8]) -> bool {
    if !s
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        || s.iter().filter(|&&b| b == b':').count() < 2
    {
        return false;
    }
    let Ok(text) = std::str::from_utf8(s) else {
        return false;
    };
    let Ok(addr) = text.parse::<Ipv6Addr>() else {
        return false;
    };
    // "a::b" parses, but in prompts it is far more often code (`a::b`) than an address. Require
    // some substance: a 3+ digit group, or 3+ groups, or the well-known loopback.
    let groups: Vec<&str> = text.split(':').filter(|g| !g.is_empty()).collect();
    let time_like = !text.contains("::")
        && groups.len() <= 3
        && groups
            .iter()
            .all(|g| g.len() <= 2 && g.bytes().all(|b| b.is_ascii_digit()));
    let substantial =
        groups.iter().any(|g| g.len() >= 3) || groups.len() >= 3 || addr == Ipv6Addr::LOCALHOST;
    substantial && !time_like
}

fn refine_ipv6(c: &[u8]) -> Option<Range<usize>> {
    let end = c.len() - c.iter().rev().take_while(|&&b| b == b'.').count();
    if ipv6_valid(&c[..end]) {
        return Some(0..end);
    }
    // A label glued on with one colon ("addr:2001:db8::1"): retry after it, but only when the
    // label is clearly a word, so `ab::cd`-style code is not split into an address.
    let colon = c[..end].iter().position(|&b| b == b':')?;
    let label = &c[..colon];
    let single = c.get(colon + 1) != Some(&b':');
    let wordy = label
        .iter()
        .any(|b| b.is_ascii_alphabetic() && !b.is_ascii_hexdigit());
    if single && wordy && ipv6_valid(&c[colon + 1..end]) {
        return Some(colon + 1..end);
    }
    None
}

fn refine_url(c: &[u8]) -> Option<Range<usize>> {
    let mut end = c.len();
    while end > 0 {
        let last = c[end - 1];
        if b".,;:!?'\"]>".contains(&last) {
            end -= 1;
        } else if last == b')' {
            // Keep a closing paren that balances one inside the URL (Wikipedia-style links).
            let opens = c[..end].iter().filter(|&&b| b == b'(').count();
            let closes = c[..end].iter().filter(|&&b| b == b')').count();
            if closes > opens {
                end -= 1;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    let s = &c[..end];
    let lower = s.to_ascii_lowercase();
    let (host_start, www) = if let Some(p) = lower.windows(3).position(|w| w == b"://") {
        let scheme = &lower[..p];
        if !(scheme == b"http" || scheme == b"https" || scheme == b"ftp") {
            return None;
        }
        (p + 3, false)
    } else if lower.starts_with(b"www.") {
        (0, true)
    } else {
        return None;
    };
    let rest = &s[host_start..];
    let host_len = rest
        .iter()
        .position(|b| b"/?#".contains(b))
        .unwrap_or(rest.len());
    let authority = &rest[..host_len];
    // Drop userinfo and port; what remains must look like a host name or an IP literal.
    let host = authority.rsplit(|&b| b == b'@').next().unwrap_or(authority);
    let host_ok = !host.is_empty()
        && host.iter().any(u8::is_ascii_alphanumeric)
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !host_ok {
        return None;
    }
    if www {
        let name = host.split(|&b| b == b':').next().unwrap_or(host);
        let labels: Vec<&[u8]> = name.split(|&b| b == b'.').collect();
        let tld_ok = labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic));
        if labels.len() < 3 || labels.iter().any(|l| l.is_empty()) || !tld_ok {
            return None;
        }
    }
    Some(0..end)
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

fn refine_aws_access(c: &[u8]) -> Option<Range<usize>> {
    const PREFIXES: [&[u8]; 10] = [
        b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AROA", b"ANPA", b"ANVA", b"AIPA",
    ];
    let ok = c.len() == 20
        && PREFIXES.iter().any(|p| c.starts_with(p))
        && c[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    ok.then_some(0..20)
}

fn is_b64_std(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'/' || b == b'+'
}

fn refine_aws_secret(c: &[u8]) -> Option<Range<usize>> {
    let end = if c.last().copied().is_some_and(is_b64_std) {
        c.len()
    } else {
        c.len().checked_sub(1)?
    };
    let start = end.checked_sub(40)?;
    let value = &c[start..end];
    let bounded = start == 0 || !is_b64_std(c[start - 1]);
    let key_before = start > 0 && c[..start].iter().any(|&b| b == b':' || b == b'=');
    let ok = bounded
        && key_before
        && value.iter().copied().all(is_b64_std)
        && has_lower_upper_digit(value);
    ok.then_some(start..end)
}

fn refine_github(c: &[u8]) -> Option<Range<usize>> {
    let (prefix_len, body_ok): (usize, fn(&u8) -> bool) = if c.starts_with(b"github_pat_") {
        (11, |b| b.is_ascii_alphanumeric() || *b == b'_')
    } else if c.len() > 4 && c.starts_with(b"gh") && b"pousr".contains(&c[2]) && c[3] == b'_' {
        (4, u8::is_ascii_alphanumeric)
    } else {
        return None;
    };
    let body = &c[prefix_len..];
    let min = if prefix_len == 4 { 36 } else { 22 };
    let ok = (min..=255).contains(&body.len())
        && body.iter().all(body_ok)
        && !all_same(body)
        && body.iter().any(u8::is_ascii_digit);
    ok.then_some(0..c.len())
}

fn refine_gitlab(c: &[u8]) -> Option<Range<usize>> {
    let body = c.strip_prefix(b"glpat-")?;
    let ok = (20..=255).contains(&body.len())
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && char_classes(body) >= 2
        && !all_same(body);
    ok.then_some(0..c.len())
}

fn refine_slack(c: &[u8]) -> Option<Range<usize>> {
    if let Some(rest) = c.strip_prefix(b"https://hooks.slack.com/services/") {
        let parts: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
        let ok = parts.len() == 3
            && parts[0].starts_with(b"T")
            && parts[1].starts_with(b"B")
            && parts
                .iter()
                .all(|p| p.len() >= 7 && p.iter().all(u8::is_ascii_alphanumeric));
        return ok.then_some(0..c.len());
    }
    if c.len() < 5 || !c.starts_with(b"xox") || !b"baprs".contains(&c[3]) || c[4] != b'-' {
        return None;
    }
    let end = c.len() - c.iter().rev().take_while(|&&b| b == b'-').count();
    let body = c.get(5..end)?;
    let ok = body.len() >= 10
        && body.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        && body.iter().any(u8::is_ascii_digit)
        && !all_same(body);
    ok.then_some(0..end)
}

fn refine_stripe(c: &[u8]) -> Option<Range<usize>> {
    // Publishable keys (`pk_`) are meant to ship in web pages; flagging them is noise.
    if !(c.starts_with(b"sk_") || c.starts_with(b"rk_")) {
        return None;
    }
    let body = c[3..]
        .strip_prefix(b"live_")
        .or_else(|| c[3..].strip_prefix(b"test_"))?;
    let ok = (16..=255).contains(&body.len())
        && body.iter().all(u8::is_ascii_alphanumeric)
        && !all_same(body);
    ok.then_some(0..c.len())
}

fn refine_google(c: &[u8]) -> Option<Range<usize>> {
    let is_key = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    let ok = c.starts_with(b"AIza")
        && c.len() >= 39
        && c[4..39].iter().all(is_key)
        && c.get(39).is_none_or(|b| !is_key(b))
        && c.len() <= 40;
    ok.then_some(0..39)
}

fn refine_openai(c: &[u8]) -> Option<Range<usize>> {
    let body = c.strip_prefix(b"sk-")?;
    if !body
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    let ok = if let Some(ant) = body.strip_prefix(b"ant-") {
        ant.len() >= 32 && has_lower_upper_digit(ant)
    } else if contains(body, b"T3BlbkFJ") {
        // Base64 of "OpenAI", embedded in every legacy OpenAI key.
        body.len() >= 20
    } else {
        c.len() >= 40 && has_lower_upper_digit(body) && shannon_entropy(body) >= 3.5
    };
    ok.then_some(0..c.len())
}

fn refine_private_key(c: &[u8]) -> Option<Range<usize>> {
    let ok = c.starts_with(b"-----BEGIN ")
        && (c.ends_with(b"PRIVATE KEY-----") || c.ends_with(b"PRIVATE KEY BLOCK-----"));
    ok.then_some(0..c.len())
}

fn is_json_object(bytes: &[u8]) -> bool {
    let t = bytes.trim_ascii();
    t.starts_with(b"{") && t.ends_with(b"}") && t.contains(&b'"')
}

fn refine_jwt(c: &[u8]) -> Option<Range<usize>> {
    let parts: Vec<&[u8]> = c.split(|&b| b == b'.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return None;
    };
    let ok = signature.len() >= 10
        && signature
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && base64url_decode(header).is_some_and(|h| is_json_object(&h))
        && base64url_decode(payload).is_some_and(|p| is_json_object(&p));
    ok.then_some(0..c.len())
}

/// Values that are obviously not real secrets: templates, masks and documentation filler.
fn is_placeholder(value: &[u8]) -> bool {
    let lower = value.to_ascii_lowercase();
    const WORDS: [&[u8]; 11] = [
        b"your",
        b"example",
        b"placeholder",
        b"redacted",
        b"changeme",
        b"xxxx",
        b"****",
        b"dummy",
        b"getenv",
        b"environ",
        b"env.",
    ];
    lower == b"password"
        || WORDS.iter().any(|w| contains(&lower, w))
        || (lower.starts_with(b"<") && lower.ends_with(b">"))
        || lower.starts_with(b"${")
        || lower.starts_with(b"{{")
        || lower.ends_with(b"}}")
        || lower.starts_with(b"$")
        || lower.starts_with(b"%")
        || (lower.starts_with(b"{") && lower.ends_with(b"}"))
        || lower.starts_with(b"/")
        || lower.starts_with(b"~/")
        || lower.starts_with(b"./")
        || lower.starts_with(b"http")
        || looks_like_code(value)
        || all_same(&lower)
}

/// `settings.API_KEY`, `request.form.get(`, `Correct_Horse`: identifiers and attribute access
/// pasted from code. Without any digit or unusual symbol these are references, not secrets.
fn looks_like_code(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphabetic() || b"_.-()[]".contains(&b))
}

fn refine_generic(c: &[u8]) -> Option<Range<usize>> {
    let sep = c.iter().position(|&b| b == b':' || b == b'=')?;
    let mut start = sep;
    while start < c.len() && b":=>".contains(&c[start]) {
        start += 1;
    }
    while start < c.len() && c[start].is_ascii_whitespace() {
        start += 1;
    }
    if start < c.len() && (c[start] == b'"' || c[start] == b'\'') {
        start += 1;
    }
    // The value ends at whitespace or a closing quote, as in the candidate pattern.
    let mut end = c[start..]
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b == b'"' || b == b'\'')
        .map_or(c.len(), |p| start + p);
    while end > start && b",;".contains(&c[end - 1]) {
        end -= 1;
    }
    let value = c.get(start..end)?;
    let ok = (8..=128).contains(&value.len())
        && !value
            .iter()
            .any(|&b| b.is_ascii_whitespace() || b == b'"' || b == b'\'')
        && shannon_entropy(value) >= 3.0
        && char_classes(value) >= 2
        && !is_placeholder(value);
    ok.then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::bytes::{RegexBuilder, RegexSetBuilder};

    /// Builds a string from parts so this file holds no literal that secret scanners would flag.
    fn cat(parts: &[&str]) -> String {
        parts.concat()
    }

    /// (text given to the detector, value it must report) — every entry is a positive.
    fn positives(kind: DetectorKind) -> Vec<(String, String)> {
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
            DetectorKind::Ipv4 => same(&[s("192.168.1.10"), s("10.0.0.1"), s("8.8.8.8")]),
            DetectorKind::Ipv6 => same(&[
                s("2001:db8::1"),
                s("fe80::1ff:fe23:4567:890a"),
                s("2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
                s("::1"),
                s("::ffff:192.0.2.128"),
            ]),
            DetectorKind::Url => same(&[
                s("https://example.com/path?q=1"),
                s("http://evil.test:8080/x"),
                s("ftp://files.example.org/a.txt"),
                s("www.example.com/page"),
                s("https://en.wikipedia.org/wiki/Foo_(bar)"),
            ]),
            DetectorKind::AwsAccessKey => same(&[
                cat(&["AKIA", "IOSFODNN7EXAMPLE"]),
                cat(&["ASIA", "Y34FZKBOKMUTVV7A"]),
            ]),
            DetectorKind::AwsSecretKey => {
                let secret = cat(&["wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY"]);
                vec![
                    (cat(&["aws_secret_access_key = ", &secret]), secret.clone()),
                    (
                        cat(&["AWS_SECRET_ACCESS_KEY=\"", &secret, "\""]),
                        secret.clone(),
                    ),
                    (cat(&["\"SecretAccessKey\": \"", &secret, "\""]), secret),
                ]
            }
            DetectorKind::GithubToken => same(&[
                cat(&["ghp", "_", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"]),
                cat(&["gho", "_", "16C7e42F292c6912E7710c838347Ae178B4a"]),
                cat(&[
                    "github",
                    "_pat_",
                    "11ABCDEFG0abcdefghijkl_MNOPQRSTUVWXYZ0123456789",
                ]),
            ]),
            DetectorKind::GitlabToken => same(&[cat(&["glpat", "-", "x7Yb2kQ9LmN4pR8sT1vW"])]),
            DetectorKind::SlackToken => same(&[
                cat(&[
                    "xoxb",
                    "-",
                    "1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
                ]),
                cat(&[
                    "https://hooks.slack.com/services/",
                    "T00000000/B00000000/",
                    "XXXXXXXXXXXXXXXXXXXXXXXX",
                ]),
            ]),
            DetectorKind::StripeKey => same(&[
                cat(&["sk", "_live_", "4eC39HqLyjWDarjtT1zdp7dc"]),
                cat(&["rk", "_test_", "51HbX2aK3jf8sDf7Gh6Jk"]),
            ]),
            DetectorKind::GoogleApiKey => {
                same(&[cat(&["AIza", "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"])])
            }
            DetectorKind::OpenaiKey => same(&[
                cat(&["sk-", "abcdefghij", "T3BlbkFJ", "klmnopqrstuvwxyz123456"]),
                cat(&["sk-", "proj-", "Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5AbC7"]),
                cat(&[
                    "sk-",
                    "ant-",
                    "api03-",
                    "Xy7Kp2Lm9Qr4St8Vw1Za5Bc3De6Fg0Hj",
                    "-AA",
                ]),
            ]),
            DetectorKind::PrivateKey => same(&[
                cat(&["-----BEGIN ", "RSA ", "PRIVATE KEY-----"]),
                cat(&["-----BEGIN ", "PRIVATE KEY-----"]),
                cat(&["-----BEGIN ", "PGP ", "PRIVATE KEY BLOCK-----"]),
            ]),
            DetectorKind::Jwt => same(&[cat(&[
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
                ".",
                "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0",
                ".",
                "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            ])]),
            DetectorKind::GenericSecret => vec![
                (s("password = \"Tr0ub4dor&3x\""), s("Tr0ub4dor&3x")),
                (s("api_key: 9f8e7d6c5b4aQ1W2"), s("9f8e7d6c5b4aQ1W2")),
                (s("DB_PASSWORD=hunter2XYZ!"), s("hunter2XYZ!")),
                (
                    s("\"client_secret\": \"q8Zr-41kPx_9Lm\""),
                    s("q8Zr-41kPx_9Lm"),
                ),
            ],
        }
    }

    /// Texts the detector must not report, fed through the full find-then-refine flow.
    fn negatives(kind: DetectorKind) -> Vec<String> {
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
            DetectorKind::Ipv4 => vec![
                s("1.2.3.4.5"),
                s("10.0.0.256"),
                s("192.168.01.1"),
                s("v1.2.3"),
                s("version 2.10.3.1.7"),
            ],
            DetectorKind::Ipv6 => vec![
                s("12:30:45"),
                s("use std::fmt::Display"),
                s("a::b"),
                s("00:1A:2B:3C:4D:5E"),
                s("key:value:other"),
                s("ratio 1:2:3"),
            ],
            DetectorKind::Url => vec![
                s("http://"),
                s("www.example"),
                s("mailto:x@y.z"),
                s("gopher://x"),
            ],
            DetectorKind::AwsAccessKey => vec![
                s("AKIAIOSFODNN7EXAMPL"),
                cat(&["AKIA", "iosfodnn7example"]),
                cat(&["AKIA", "IOSFODNN7EXAMPLEX"]),
            ],
            DetectorKind::AwsSecretKey => vec![
                // No key name: a bare 40-char string is too ambiguous.
                cat(&["wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY"]),
                // No digits / single case.
                cat(&[
                    "aws_secret_access_key = ",
                    "abcdefghijabcdefghijabcdefghijabcdefghij",
                ]),
                // Longer than 40: not an AWS secret.
                cat(&[
                    "aws_secret = ",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY12345",
                ]),
            ],
            DetectorKind::GithubToken => vec![
                cat(&["ghp", "_", "short123"]),
                cat(&["ghx", "_", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"]),
                cat(&["ghp", "_", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]),
            ],
            DetectorKind::GitlabToken => vec![
                cat(&["glpat", "-", "short"]),
                cat(&["glpat", "-", "aaaaaaaaaaaaaaaaaaaaaaaa"]),
            ],
            DetectorKind::SlackToken => vec![
                cat(&["xoxb", "-", "abcdefghijklmnop"]),
                cat(&["xoxz", "-", "1234567890123"]),
            ],
            DetectorKind::StripeKey => vec![
                cat(&["pk", "_live_", "4eC39HqLyjWDarjtT1zdp7dc"]),
                cat(&["pk", "_test_", "4eC39HqLyjWDarjtT1zdp7dc"]),
                cat(&["sk", "_live_", "short"]),
            ],
            DetectorKind::GoogleApiKey => vec![
                cat(&["AIza", "SyDdI0hCZtE6vySjMm"]),
                cat(&["AIza", "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHIextra"]),
            ],
            DetectorKind::OpenaiKey => vec![
                cat(&["sk-", "this-is-not-a-real-key-just-some-words"]),
                cat(&["sk-", "abc123"]),
                cat(&["sk-", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]),
            ],
            DetectorKind::PrivateKey => vec![
                cat(&["-----BEGIN ", "PUBLIC KEY-----"]),
                cat(&["-----BEGIN ", "CERTIFICATE-----"]),
            ],
            DetectorKind::Jwt => vec![
                // Right shape, but the segments do not decode to JSON objects.
                cat(&["eyJhbGciOi", ".", "eyJzdWIiOi", ".", "SflKxwRJSMeKKF2QT4fw"]),
                cat(&[
                    "eyJ!!!!!!!",
                    ".",
                    "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
                    ".",
                    "SflKxwRJSMeKKF2QT4fw",
                ]),
            ],
            DetectorKind::GenericSecret => vec![
                s("password = changeme"),
                s("password: password"),
                s("api_key = your_api_key_here"),
                s("secret: xxxxxxxxxxxx"),
                s("password = ********"),
                s("api_key: <API_KEY_HERE>"),
                s("token secret=${SECRET_VALUE}"),
                s("client_secret: {{ vault.secret }}"),
                s("password=aaaaaaaa"),
                s("password = abcdefgh"),
                s("api_key = os.environ[KEY]"),
                s("secret: REDACTED-1234"),
                s("apikey=example-123456"),
            ],
        }
    }

    fn compile(kind: DetectorKind) -> regex::bytes::Regex {
        RegexBuilder::new(kind.candidate_pattern())
            .unicode(false)
            .build()
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    /// The engine's flow: candidates from `find_iter`, then `refine`, mapped back to the text.
    fn detect(kind: DetectorKind, text: &str) -> Vec<String> {
        let re = compile(kind);
        re.find_iter(text.as_bytes())
            .filter_map(|m| {
                let r = kind.refine(&text.as_bytes()[m.range()])?;
                let abs = m.start() + r.start..m.start() + r.end;
                Some(text[abs].to_string())
            })
            .collect()
    }

    #[test]
    fn all_lists_every_variant_in_order() {
        assert_eq!(DetectorKind::ALL.len(), 19);
        let mut sorted = DetectorKind::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, DetectorKind::ALL);
        sorted.dedup();
        assert_eq!(sorted.len(), 19);
    }

    #[test]
    fn names_match_serde_and_display() {
        for &k in DetectorKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(k.to_string(), k.name());
            let back: DetectorKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, k);
        }
        assert_eq!(DetectorKind::CreditCard.name(), "credit_card");
    }

    #[test]
    fn placeholders_and_categories() {
        assert_eq!(DetectorKind::Ipv4.placeholder(), "IP_ADDRESS");
        assert_eq!(DetectorKind::Ipv6.placeholder(), "IP_ADDRESS");
        assert_eq!(DetectorKind::GenericSecret.placeholder(), "SECRET");
        assert_eq!(DetectorKind::UsSsn.placeholder(), "US_SSN");
        for &k in DetectorKind::ALL {
            let p = k.placeholder();
            assert!(
                p.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{p}"
            );
        }
        use DetectorCategory::*;
        let expect = [
            (DetectorKind::Email, Pii),
            (DetectorKind::Phone, Pii),
            (DetectorKind::CreditCard, Pii),
            (DetectorKind::Iban, Pii),
            (DetectorKind::UsSsn, Pii),
            (DetectorKind::Ipv4, Exfiltration),
            (DetectorKind::Ipv6, Exfiltration),
            (DetectorKind::Url, Exfiltration),
            (DetectorKind::AwsAccessKey, Secrets),
            (DetectorKind::GenericSecret, Secrets),
            (DetectorKind::Jwt, Secrets),
        ];
        for (k, c) in expect {
            assert_eq!(k.default_category(), c, "{k}");
        }
    }

    #[test]
    fn json_schema_lists_snake_case_names() {
        let schema = schemars::schema_for!(DetectorKind);
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains("\"credit_card\""));
        assert!(text.contains("\"generic_secret\""));
    }

    #[test]
    fn every_pattern_compiles_alone_ascii_only() {
        for &k in DetectorKind::ALL {
            compile(k);
            assert!(k.candidate_pattern().is_ascii(), "{k}");
        }
    }

    #[test]
    fn all_patterns_compile_as_one_set() {
        let set = RegexSetBuilder::new(DetectorKind::ALL.iter().map(|k| k.candidate_pattern()))
            .unicode(false)
            .dfa_size_limit(64 << 20)
            .size_limit(64 << 20)
            .build()
            .unwrap();
        assert_eq!(set.len(), DetectorKind::ALL.len());
        let m = set.matches(b"mail john.doe@example.com from 10.0.0.1");
        assert!(m.matched(0) && m.matched(5));
    }

    #[test]
    fn positives_refine_to_the_value() {
        for &k in DetectorKind::ALL {
            let cases = positives(k);
            assert!(!cases.is_empty(), "{k} has no positives");
            for (input, value) in cases {
                let r = k
                    .refine(input.as_bytes())
                    .unwrap_or_else(|| panic!("{k}: refine rejected {input:?}"));
                assert_eq!(&input[r], value, "{k}");
            }
        }
    }

    #[test]
    fn positives_found_inside_sentences() {
        for &k in DetectorKind::ALL {
            for (input, value) in positives(k) {
                for text in [
                    format!("Please look at {input} before noon."),
                    input.clone(),
                    format!("x\n{input}\ny, and more"),
                ] {
                    let found = detect(k, &text);
                    assert!(
                        found.contains(&value),
                        "{k}: {value:?} not found in {text:?}: {found:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn negatives_are_rejected() {
        for &k in DetectorKind::ALL {
            let cases = negatives(k);
            assert!(!cases.is_empty(), "{k} has no negatives");
            for text in cases {
                let found = detect(k, &text);
                assert!(
                    found.is_empty(),
                    "{k}: false positive in {text:?}: {found:?}"
                );
            }
        }
    }

    #[test]
    fn benign_prose_is_clean() {
        let text = "Release 1.2.3.4.5 shipped on 2024-01-15 at 12:30:45. Call me maybe. \
                    Use std::collections::HashMap; ratio 3:2. Set password = changeme in dev. \
                    Order #12345678 costs 19.99; version v10.0.0.1 and item 2.5.1 are fine.";
        for &k in DetectorKind::ALL {
            let found = detect(k, text);
            assert!(found.is_empty(), "{k}: {found:?}");
        }
    }

    #[test]
    fn code_and_technical_text_is_clean() {
        let texts = [
            "pwd=/home/user/projects/app",
            "api_key = settings.API_KEY",
            "password = request.form.get('password')",
            "password = process.env.DB_PASSWORD",
            "password=f'{password}' and secret={secret_value}",
            "id 550e8400-e29b-41d4-a716-446655440000 sha 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "ISBN 978-3-16-148410-0, pi is +3.14159265, gain +10000000, ts 1700000000000",
            "risk-assessment-framework-for-enterprise-teams and task-runner-configuration",
            "fn main() { let x: Vec<u8> = a::b::c(); } // see docs",
            "Meeting 2024-01-15T12:30:45Z, room 4-101, score 3:1:2",
        ];
        for text in texts {
            for &k in DetectorKind::ALL {
                if k == DetectorKind::Url {
                    continue;
                }
                let found = detect(k, text);
                assert!(found.is_empty(), "{k}: {found:?} in {text:?}");
            }
        }
    }

    #[test]
    fn specific_edge_cases() {
        // Email: leading sentence dots are not part of the address.
        assert_eq!(
            detect(DetectorKind::Email, "see ...a.b@example.io"),
            vec!["a.b@example.io"]
        );
        // URL trailing punctuation is stripped, balanced parens kept.
        assert_eq!(
            detect(DetectorKind::Url, "(see https://example.com/a).")[0],
            "https://example.com/a"
        );
        // IPv6 after a glued label.
        assert_eq!(
            detect(DetectorKind::Ipv6, "addr:2001:db8::1"),
            vec!["2001:db8::1"]
        );
        // IBAN followed by a short token still validates.
        assert_eq!(
            detect(DetectorKind::Iban, "IBAN DE89 3704 0044 0532 0130 00 AB"),
            vec!["DE89 3704 0044 0532 0130 00"]
        );
        // Private key header inside a PEM body.
        let pem = cat(&[
            "-----BEGIN ",
            "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        ]);
        assert_eq!(detect(DetectorKind::PrivateKey, &pem).len(), 1);
        // Base64url decoder round trip on a known value.
        assert_eq!(base64url_decode(b"eyJhIjoxfQ").unwrap(), b"{\"a\":1}");
        assert!(base64url_decode(b"abcde").is_none());
        assert!(base64url_decode(b"ab=c").is_none());
    }

    proptest! {
        #[test]
        fn refine_is_total_on_bytes(idx in 0usize..19, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = DetectorKind::ALL[idx];
            if let Some(r) = k.refine(&bytes) {
                prop_assert!(r.start < r.end && r.end <= bytes.len());
            }
        }

        #[test]
        fn refine_is_total_on_mutated_positives(idx in 0usize..19, case in 0usize..8, cut in 0usize..120, tail in "[ -~]{0,40}") {
            let k = DetectorKind::ALL[idx];
            let cases = positives(k);
            let (input, _) = &cases[case % cases.len()];
            let cut = cut.min(input.len());
            let mut bytes = input.as_bytes()[..cut].to_vec();
            bytes.extend_from_slice(tail.as_bytes());
            if let Some(r) = k.refine(&bytes) {
                prop_assert!(r.start < r.end && r.end <= bytes.len());
            }
        }
    }
}
