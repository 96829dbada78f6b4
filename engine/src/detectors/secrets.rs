//! Secrets: credentials that grant access to something (cloud and vendor keys, tokens,
//! private keys, JWTs, high-entropy values assigned to secret-sounding names).

use std::ops::Range;

use super::bytes::{
    all_same, base64url_decode, char_classes, contains, has_lower_upper_digit, shannon_entropy,
};
use super::{Detector, DetectorCategory};

/// The `aws_access_key` detector ([`DetectorKind::AwsAccessKey`](super::DetectorKind::AwsAccessKey)).
pub(super) const AWS_ACCESS_KEY: Detector = Detector {
    placeholder: "AWS_ACCESS_KEY",
    category: DetectorCategory::Secrets,
    summary: "documented key-id prefixes",
    candidate_pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
    refine: refine_aws_access,
};

/// The `aws_secret_key` detector ([`DetectorKind::AwsSecretKey`](super::DetectorKind::AwsSecretKey)).
pub(super) const AWS_SECRET_KEY: Detector = Detector {
    placeholder: "AWS_SECRET_KEY",
    category: DetectorCategory::Secrets,
    summary: "40 characters, only next to its key name",
    // Includes one trailing delimiter so a longer base64 run is not cut to 40 chars.
    candidate_pattern: r#"(?i)(?:aws_?secret_?access_?key|aws[ _-]?secret(?:[ _-]?key)?|secret_?access_?key)["']?\s*(?:[:=]{1,2}|=>)\s*["']?[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)"#,
    refine: refine_aws_secret,
};

/// The `github_token` detector ([`DetectorKind::GithubToken`](super::DetectorKind::GithubToken)).
pub(super) const GITHUB_TOKEN: Detector = Detector {
    placeholder: "GITHUB_TOKEN",
    category: DetectorCategory::Secrets,
    summary: "vendor format (`ghp_`, `github_pat_`, …)",
    candidate_pattern: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    refine: refine_github,
};

/// The `gitlab_token` detector ([`DetectorKind::GitlabToken`](super::DetectorKind::GitlabToken)).
pub(super) const GITLAB_TOKEN: Detector = Detector {
    placeholder: "GITLAB_TOKEN",
    category: DetectorCategory::Secrets,
    summary: "vendor format (`glpat-`)",
    candidate_pattern: r"\bglpat-[A-Za-z0-9_-]{20,255}",
    refine: refine_gitlab,
};

/// The `slack_token` detector ([`DetectorKind::SlackToken`](super::DetectorKind::SlackToken)).
pub(super) const SLACK_TOKEN: Detector = Detector {
    placeholder: "SLACK_TOKEN",
    category: DetectorCategory::Secrets,
    summary: "vendor format (`xoxb-` …) or incoming-webhook URL",
    candidate_pattern: r"\bxox[baprs]-[A-Za-z0-9-]{10,255}|https://hooks\.slack\.com/services/T[A-Za-z0-9]{6,12}/B[A-Za-z0-9]{6,12}/[A-Za-z0-9]{16,32}",
    refine: refine_slack,
};

/// The `stripe_key` detector ([`DetectorKind::StripeKey`](super::DetectorKind::StripeKey)).
pub(super) const STRIPE_KEY: Detector = Detector {
    placeholder: "STRIPE_KEY",
    category: DetectorCategory::Secrets,
    summary: "vendor format; publishable `pk_` keys excluded",
    candidate_pattern: r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,255}\b",
    refine: refine_stripe,
};

/// The `google_api_key` detector ([`DetectorKind::GoogleApiKey`](super::DetectorKind::GoogleApiKey)).
pub(super) const GOOGLE_API_KEY: Detector = Detector {
    placeholder: "GOOGLE_API_KEY",
    category: DetectorCategory::Secrets,
    summary: "vendor format (`AIza…`)",
    // Includes one trailing delimiter because the key may end in `-`, where `\b` fails.
    candidate_pattern: r"\bAIza[0-9A-Za-z_-]{35}(?:[^0-9A-Za-z_-]|$)",
    refine: refine_google,
};

/// The `openai_key` detector ([`DetectorKind::OpenaiKey`](super::DetectorKind::OpenaiKey)).
pub(super) const OPENAI_KEY: Detector = Detector {
    placeholder: "OPENAI_KEY",
    category: DetectorCategory::Secrets,
    summary: "vendor format (`sk-`, `sk-proj-`, `sk-ant-`)",
    candidate_pattern: r"\bsk-[A-Za-z0-9_-]{20,255}",
    refine: refine_openai,
};

/// The `private_key` detector ([`DetectorKind::PrivateKey`](super::DetectorKind::PrivateKey)).
pub(super) const PRIVATE_KEY: Detector = Detector {
    placeholder: "PRIVATE_KEY",
    category: DetectorCategory::Secrets,
    summary: "PEM/OpenSSH/PGP private-key headers",
    candidate_pattern: r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----",
    refine: refine_private_key,
};

/// The `jwt` detector ([`DetectorKind::Jwt`](super::DetectorKind::Jwt)).
pub(super) const JWT: Detector = Detector {
    placeholder: "JWT",
    category: DetectorCategory::Secrets,
    summary: "three segments, header and payload decode to JSON",
    candidate_pattern: r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
    refine: refine_jwt,
};

/// The `generic_secret` detector ([`DetectorKind::GenericSecret`](super::DetectorKind::GenericSecret)).
pub(super) const GENERIC_SECRET: Detector = Detector {
    placeholder: "SECRET",
    category: DetectorCategory::Secrets,
    summary: "`password=`/`api_key:`… assignments with a high-entropy value, placeholders excluded",
    candidate_pattern: r#"(?i)(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|client[_-]?secret|private[_-]?key)["']?\s*(?:[:=]{1,2}|=>)\s*["']?[^\s"']{8,128}"#,
    refine: refine_generic,
};

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

/// Examples the registry's tests run through every detector of this family.
#[cfg(test)]
pub(super) mod cases {
    use super::super::tests::cat;
    use super::super::DetectorKind;

    /// (text given to the detector, value it must report) — every entry is a positive.
    pub(in super::super) fn positives(kind: DetectorKind) -> Vec<(String, String)> {
        let same = |v: &[String]| v.iter().map(|s| (s.clone(), s.clone())).collect::<Vec<_>>();
        let s = |x: &str| x.to_string();
        match kind {
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
            _ => Vec::new(),
        }
    }

    /// Texts the detector must not report, fed through the full find-then-refine flow.
    pub(in super::super) fn negatives(kind: DetectorKind) -> Vec<String> {
        let s = |x: &str| x.to_string();
        match kind {
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
            _ => Vec::new(),
        }
    }
}
