//! Built-in detectors: PII, credentials and exfiltration targets with real validation.
//!
//! Every detector works in two stages, because the engine matches all rules of a pack with one
//! `RegexSet` pass and only then looks closer at the rules that fired:
//!
//! 1. [`Detector::candidate_pattern`] is a cheap, ASCII-only regex that over-approximates the
//!    format. It must compile with `unicode(false)` both alone and inside the shared set, so it
//!    stays small (no huge bounded repetitions) and uses no Unicode classes.
//! 2. [`Detector::refine`] validates one candidate (checksums, prefixes, entropy, context) and
//!    returns the exact sub-range to report and redact. Candidates may deliberately include a little
//!    context (a key name, a trailing delimiter, neighbouring dotted numbers) so that `refine` can
//!    reject look-alikes the regex alone cannot tell apart, since the regex crate has no look-around.
//!
//! Precision matters more than recall here: a false positive blocks or rewrites a benign prompt.
//!
//! Every detector is one [`Detector`] value in the file of its family (`pii.rs`, `network.rs`,
//! `secrets.rs`) and one line in the registry below, which derives [`DetectorKind`] (the rule
//! format's `detector:` values, so the CRD schema), [`DetectorKind::ALL`] and the table in
//! docs/src/rule-packs.md from that one list. docs/src/contributing/add-a-detector.md walks
//! through adding one.

mod bytes;
mod network;
mod pii;
mod secrets;

use std::fmt;
use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One built-in detector: everything the engine, redaction and the docs need to know about it.
/// Plain data rather than a trait so the whole registry is a list of constants the compiler
/// checks, and a detector cannot do anything between the two stages the engine runs.
#[derive(Debug, Clone, Copy)]
pub struct Detector {
    /// The tag redaction writes in place of a value.
    pub placeholder: &'static str,
    /// The category used when a rule does not set one.
    pub category: DetectorCategory,
    /// What the validator checks, one line for the table in docs/src/rule-packs.md.
    pub summary: &'static str,
    /// The candidate regex (for `regex::bytes` with `unicode(false)`): a superset of the format
    /// that [`Detector::refine`] narrows down.
    pub candidate_pattern: &'static str,
    /// Validates one candidate match and returns the range (relative to the candidate) of the
    /// sensitive value, or `None` when it is a look-alike. Called through
    /// [`DetectorKind::refine`], which enforces the range contract.
    pub refine: fn(&[u8]) -> Option<Range<usize>>,
}

/// Declares [`DetectorKind`] from the registry list: one variant per line, its serde name, and
/// the [`Detector`] constant holding the rest. A macro so the enum (which serde and schemars
/// need), [`DetectorKind::ALL`] and the lookup cannot drift from the list.
macro_rules! registry {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal => $spec:path,)*) => {
        /// A built-in validator a rule can use instead of a regex.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        pub enum DetectorKind {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl DetectorKind {
            /// Every detector, in registry order, so callers can enumerate without a macro.
            pub const ALL: &'static [DetectorKind] = &[$(DetectorKind::$variant,)*];

            /// The snake_case name, identical to the serde form so logs and rule files agree.
            pub fn name(self) -> &'static str {
                match self {
                    $(DetectorKind::$variant => $name,)*
                }
            }

            /// This detector's registry entry.
            pub fn spec(self) -> &'static Detector {
                match self {
                    $(DetectorKind::$variant => &$spec,)*
                }
            }
        }
    };
}

// The registry: adding a detector is one line here and its `Detector` in the family's file.
registry! {
    // pii.rs
    /// E-mail address (`local@domain.tld`).
    Email = "email" => pii::EMAIL,
    /// Phone number: E.164 (`+` and 8–15 digits) or North American (NANP) format.
    Phone = "phone" => pii::PHONE,
    /// Payment card number: known issuer prefix, brand length and Luhn checksum.
    CreditCard = "credit_card" => pii::CREDIT_CARD,
    /// International Bank Account Number with mod-97 checksum and per-country length.
    Iban = "iban" => pii::IBAN,
    /// US Social Security Number (`AAA-GG-SSSS`), excluding never-issued ranges.
    UsSsn = "us_ssn" => pii::US_SSN,
    // network.rs
    /// IPv4 address (dotted quad, no leading zeros, not part of a longer version string).
    Ipv4 = "ipv4" => network::IPV4,
    /// IPv6 address.
    Ipv6 = "ipv6" => network::IPV6,
    /// `http`, `https` or `ftp` URL, or a `www.` host.
    Url = "url" => network::URL,
    // secrets.rs
    /// AWS access key id (`AKIA...` and the other documented prefixes).
    AwsAccessKey = "aws_access_key" => secrets::AWS_ACCESS_KEY,
    /// AWS secret access key, only when introduced by its key name.
    AwsSecretKey = "aws_secret_key" => secrets::AWS_SECRET_KEY,
    /// GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken = "github_token" => secrets::GITHUB_TOKEN,
    /// GitLab personal access token (`glpat-`).
    GitlabToken = "gitlab_token" => secrets::GITLAB_TOKEN,
    /// Slack token (`xoxb-` ...) or Slack incoming-webhook URL.
    SlackToken = "slack_token" => secrets::SLACK_TOKEN,
    /// Stripe secret or restricted key (publishable `pk_` keys are not secrets).
    StripeKey = "stripe_key" => secrets::STRIPE_KEY,
    /// Google API key (`AIza...`).
    GoogleApiKey = "google_api_key" => secrets::GOOGLE_API_KEY,
    /// OpenAI (`sk-`, `sk-proj-`) or Anthropic (`sk-ant-`) API key.
    OpenaiKey = "openai_key" => secrets::OPENAI_KEY,
    /// PEM/PGP private key header.
    PrivateKey = "private_key" => secrets::PRIVATE_KEY,
    /// JSON Web Token whose header and payload decode to JSON objects.
    Jwt = "jwt" => secrets::JWT,
    /// High-entropy value assigned to a secret-sounding name (`password = ...`).
    GenericSecret = "generic_secret" => secrets::GENERIC_SECRET,
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

impl DetectorCategory {
    /// The category's name in rule files and the docs.
    pub fn name(self) -> &'static str {
        match self {
            DetectorCategory::Pii => "pii",
            DetectorCategory::Secrets => "secrets",
            DetectorCategory::Exfiltration => "exfiltration",
        }
    }
}

impl DetectorKind {
    /// The tag redaction writes in place of a value. IPv4 and IPv6 share one tag because the
    /// downstream reader only needs to know "an address was here".
    pub fn placeholder(self) -> &'static str {
        self.spec().placeholder
    }

    /// The category used when a rule does not set one.
    pub fn default_category(self) -> DetectorCategory {
        self.spec().category
    }

    /// The candidate regex (for `regex::bytes` with `unicode(false)`): a superset of the format
    /// that [`DetectorKind::refine`] narrows down.
    pub fn candidate_pattern(self) -> &'static str {
        self.spec().candidate_pattern
    }

    /// Validates one candidate match and returns the range (relative to `candidate`) of the
    /// sensitive value, or `None` when it is a look-alike. Total on arbitrary bytes: never panics
    /// and never returns a range outside `candidate`.
    pub fn refine(self, candidate: &[u8]) -> Option<Range<usize>> {
        let r = (self.spec().refine)(candidate)?;
        // Defensive: the contract is a non-empty range inside the candidate, whatever a helper did.
        (r.start < r.end && r.end <= candidate.len()).then_some(r)
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The detector table of docs/src/rule-packs.md (between its `detectors` markers), rendered from
/// the registry; a test keeps the page in step (`UPDATE_GOLDEN=1` rewrites it).
pub fn docs_table() -> String {
    let mut out =
        String::from("| detector | category | validation | placeholder |\n|---|---|---|---|\n");
    for &k in DetectorKind::ALL {
        let s = k.spec();
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` |\n",
            k.name(),
            s.category.name(),
            s.summary,
            s.placeholder
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::bytes::{RegexBuilder, RegexSetBuilder};

    /// Builds a string from parts so no file holds a literal that secret scanners would flag.
    pub(super) fn cat(parts: &[&str]) -> String {
        parts.concat()
    }

    /// (text given to the detector, value it must report) — every entry is a positive.
    fn positives(kind: DetectorKind) -> Vec<(String, String)> {
        [
            pii::cases::positives,
            network::cases::positives,
            secrets::cases::positives,
        ]
        .iter()
        .flat_map(|f| f(kind))
        .collect()
    }

    /// Texts the detector must not report, fed through the full find-then-refine flow.
    fn negatives(kind: DetectorKind) -> Vec<String> {
        [
            pii::cases::negatives,
            network::cases::negatives,
            secrets::cases::negatives,
        ]
        .iter()
        .flat_map(|f| f(kind))
        .collect()
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
        assert_eq!(
            bytes::base64url_decode(b"eyJhIjoxfQ").unwrap(),
            b"{\"a\":1}"
        );
        assert!(bytes::base64url_decode(b"abcde").is_none());
        assert!(bytes::base64url_decode(b"ab=c").is_none());
    }

    #[test]
    fn docs_table_matches_the_registry() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/rule-packs.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- detectors: begin -->\n", "<!-- detectors: end -->");
        let start = page.find(begin).expect("begin marker") + begin.len();
        let stop = page.find(end).expect("end marker");
        let table = docs_table();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let updated = format!("{}{}{}", &page[..start], table, &page[stop..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        assert_eq!(
            &page[start..stop],
            table,
            "docs/src/rule-packs.md's detector table is stale: UPDATE_GOLDEN=1 cargo test -p pd-engine --lib detectors"
        );
    }

    proptest! {
        #[test]
        fn refine_is_total_on_bytes(idx in 0..DetectorKind::ALL.len(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = DetectorKind::ALL[idx];
            if let Some(r) = k.refine(&bytes) {
                prop_assert!(r.start < r.end && r.end <= bytes.len());
            }
        }

        #[test]
        fn refine_is_total_on_mutated_positives(idx in 0..DetectorKind::ALL.len(), case in 0usize..8, cut in 0usize..120, tail in "[ -~]{0,40}") {
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
