//! The rule-pack format: what a user writes in a `RulePack` (CR `spec`, or a bare YAML/JSON file).
//!
//! These types are the single source of truth for the format. The operator embeds
//! [`RulePackSpec`] in its `RulePack` custom resource, so the schema generated here (schemars) is
//! the schema the API server enforces. Every struct rejects unknown fields: a typo in a rule pack
//! must be an error, never a silently ignored setting.

use std::collections::BTreeSet;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::classifier::ModelSpec;
use crate::decode::{DecoderKind, DecoderLimits};
use crate::detectors::DetectorKind;
use crate::normalize::Normalization;

/// The body of a rule pack (`spec` of a `RulePack`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulePackSpec {
    /// Version of this pack, reported with every scan result (free-form; semver recommended).
    pub version: String,
    /// Human description of what the pack is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Name of a pack this one builds on. Its rules, normalization and decoders are inherited;
    /// `overrides` may change inherited rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Text normalization before matching. Inherited from `extends` when absent; defaults to all
    /// steps on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
    /// Decoders whose output is rescanned (encoded-payload detection). Inherited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoders: Option<Vec<DecoderKind>>,
    /// Bounds on decode-and-rescan. Inherited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_limits: Option<DecoderLimits>,
    /// The pack's own rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Changes to rules inherited through `extends`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<RuleOverride>,
    /// Learned text classifiers that `classifier` rules refer to (usually written by
    /// `pd-scanner train`). Inherited through `extends`; a model of the same name here
    /// replaces the inherited one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelSpec>,
    /// Examples the pack must get right; run by `pd-scanner test` and by the operator before a
    /// pack may reach a scanner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<PackTest>,
}

/// A detection rule. Exactly one matcher (`regex`, `keywords`, `detector` or `classifier`) sits
/// on the rule;
/// that is checked when the rule is read, so a [`Rule`] always has exactly one [`Matcher`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleDoc", into = "RuleDoc")]
pub struct Rule {
    pub id: RuleId,
    pub category: Category,
    pub severity: Severity,
    pub weight: u32,
    pub matcher: Matcher,
    pub mitigation: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub action: Option<Action>,
    pub match_on: MatchOn,
}

/// Which text a regex rule sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MatchOn {
    /// The normalized text (the default): look-alikes folded, invisible characters removed.
    #[default]
    Normalized,
    /// The text exactly as sent: for rules about the evasion itself (invisible characters,
    /// mixed scripts), which normalization would erase.
    Original,
    /// Only text revealed by a decoder (normalized): for rules about hidden payloads as such —
    /// a readable message inside base64 is suspicious whatever it says.
    Decoded,
}

impl MatchOn {
    fn is_default(&self) -> bool {
        *self == MatchOn::Normalized
    }
}

/// How a rule matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Matcher {
    /// A regular expression (Rust `regex` syntax, ASCII classes by default; see the guide).
    Regex(String),
    /// Literal phrases matched with one Aho–Corasick automaton for the whole pack.
    Keywords(Keywords),
    /// A built-in validator (Luhn, mod-97, token formats...).
    Detector(DetectorKind),
    /// A label of a learned model reaching a probability.
    Classifier(ClassifierMatch),
}

/// A `classifier` matcher: fires when `label` of `model` scores at least `threshold` on the
/// normalized text (and on every decoded payload, like any rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassifierMatch {
    /// Name of a model in `spec.models` of this pack or one it extends.
    pub model: String,
    /// One of the model's labels.
    pub label: String,
    /// Probability (0.5–1) at or above which the rule matches.
    #[schemars(range(min = 0.5, max = 1.0))]
    pub threshold: f64,
}

/// The on-the-wire shape of a rule: matchers as optional sibling keys. Converted to [`Rule`]
/// (exactly one matcher) on read, so the rest of the code never sees an ambiguous rule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "Rule")]
struct RuleDoc {
    /// Unique id across every pack a policy binds (lowercase letters, digits, `-`, `_`, `.`).
    id: String,
    category: Category,
    severity: Severity,
    /// Contribution to the 0–100 risk score when the rule matches (0–100).
    #[schemars(range(max = 100))]
    weight: u32,
    /// Regular expression matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    /// Keyword matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keywords: Option<Keywords>,
    /// Built-in detector matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detector: Option<DetectorKind>,
    /// Learned classifier matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classifier: Option<ClassifierMatch>,
    /// What a caller should do about a match; returned with each advisory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mitigation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Disabled rules are compiled (so they stay valid) but never match.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    enabled: bool,
    /// Overrides the policy's action for this rule's category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    /// Regex rules only: match the `original` text instead of the `normalized` one.
    #[serde(default, skip_serializing_if = "MatchOn::is_default")]
    match_on: MatchOn,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl TryFrom<RuleDoc> for Rule {
    type Error = String;

    fn try_from(doc: RuleDoc) -> Result<Self, String> {
        let id = RuleId::new(doc.id)?;
        let matcher = match (doc.regex, doc.keywords, doc.detector, doc.classifier) {
            (Some(r), None, None, None) => Matcher::Regex(r),
            (None, Some(k), None, None) => Matcher::Keywords(k),
            (None, None, Some(d), None) => Matcher::Detector(d),
            (None, None, None, Some(c)) => Matcher::Classifier(c),
            (None, None, None, None) => {
                return Err(format!(
                    "rule `{id}` has no matcher: set one of `regex`, `keywords`, `detector`, `classifier`"
                ))
            }
            _ => {
                return Err(format!(
                    "rule `{id}` has more than one matcher: set exactly one of `regex`, `keywords`, `detector`, `classifier`"
                ))
            }
        };
        if let Matcher::Classifier(c) = &matcher {
            if !(0.5..=1.0).contains(&c.threshold) {
                return Err(format!(
                    "rule `{id}`: classifier threshold {} is outside 0.5–1",
                    c.threshold
                ));
            }
        }
        if doc.match_on != MatchOn::Normalized && !matches!(matcher, Matcher::Regex(_)) {
            return Err(format!(
                "rule `{id}`: `matchOn` is only supported for `regex` rules"
            ));
        }
        if doc.weight > 100 {
            return Err(format!("rule `{id}`: weight {} is over 100", doc.weight));
        }
        Ok(Rule {
            id,
            category: doc.category,
            severity: doc.severity,
            weight: doc.weight,
            matcher,
            mitigation: doc.mitigation,
            description: doc.description,
            enabled: doc.enabled,
            action: doc.action,
            match_on: doc.match_on,
        })
    }
}

impl From<Rule> for RuleDoc {
    fn from(r: Rule) -> Self {
        let (mut regex, mut keywords, mut detector, mut classifier) = (None, None, None, None);
        match r.matcher {
            Matcher::Regex(s) => regex = Some(s),
            Matcher::Keywords(k) => keywords = Some(k),
            Matcher::Detector(d) => detector = Some(d),
            Matcher::Classifier(c) => classifier = Some(c),
        }
        RuleDoc {
            id: r.id.0,
            category: r.category,
            severity: r.severity,
            weight: r.weight,
            regex,
            keywords,
            detector,
            classifier,
            mitigation: r.mitigation,
            description: r.description,
            enabled: r.enabled,
            action: r.action,
            match_on: r.match_on,
        }
    }
}

impl JsonSchema for Rule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        RuleDoc::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RuleDoc::json_schema(generator)
    }
}

/// A rule id: non-empty, at most 128 bytes of `[a-z0-9._-]`, starting with a letter or digit.
/// Ids appear in metrics labels and Kubernetes status, so the alphabet is deliberately small.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleId(String);

impl RuleId {
    pub fn new(s: String) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        let starts_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.len() > 128 || !starts_ok || !s.chars().all(ok_char) {
            return Err(format!(
                "invalid rule id `{s}`: use 1-128 characters of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"
            ));
        }
        Ok(RuleId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RuleId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RuleId::new(s)
    }
}

impl From<RuleId> for String {
    fn from(id: RuleId) -> String {
        id.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for RuleId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RuleId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[a-z0-9][a-z0-9._-]*$"
        })
    }
}

/// Keyword matcher options. All keywords of a pack share one Aho–Corasick automaton.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Keywords {
    /// The rule matches when any of these phrases occurs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<String>,
    /// The rule matches when every one of these phrases occurs (in any order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<String>,
    /// ASCII case-insensitive matching (default true). Text is normalized first, so look-alike
    /// letters and full-width forms already compare equal.
    #[serde(default = "yes")]
    pub case_insensitive: bool,
    /// Only match whole words: the phrase must not be preceded or followed by a letter or digit
    /// (default true).
    #[serde(default = "yes")]
    pub whole_word: bool,
}

/// Risk categories. A closed set: metrics, per-category actions and caps key on it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Instructions that try to override the application's own (OWASP LLM01).
    PromptInjection,
    /// Persona and role-play set-ups meant to lift the model's safety rules.
    Jailbreak,
    /// Attempts to reveal the system prompt or hidden configuration (OWASP LLM07).
    PromptLeak,
    /// Personal data (OWASP LLM02).
    Pii,
    /// Credentials and keys (OWASP LLM02).
    Secrets,
    /// Getting data out: beacons, URLs with send/post verbs, markdown images.
    Exfiltration,
    /// Obfuscated or encoded payloads.
    Encoding,
    /// SQL / XSS / template / shell injection aimed at downstream tools (OWASP LLM05).
    CodeInjection,
    /// Anything else a pack author wants to score.
    Other,
}

impl Category {
    pub const ALL: &'static [Category] = &[
        Category::PromptInjection,
        Category::Jailbreak,
        Category::PromptLeak,
        Category::Pii,
        Category::Secrets,
        Category::Exfiltration,
        Category::Encoding,
        Category::CodeInjection,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::PromptInjection => "prompt_injection",
            Category::Jailbreak => "jailbreak",
            Category::PromptLeak => "prompt_leak",
            Category::Pii => "pii",
            Category::Secrets => "secrets",
            Category::Exfiltration => "exfiltration",
            Category::Encoding => "encoding",
            Category::CodeInjection => "code_injection",
            Category::Other => "other",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a match is, for people: alerting thresholds and webhooks key on it. The score comes
/// from `weight`, not from severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a match does beyond adding its weight to the score.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Any match blocks, whatever the score.
    Block,
    /// Matched spans are replaced by typed placeholders in `redacted_prompt`; the weight counts.
    Redact,
    /// Any match is at least a warning.
    Warn,
    /// Recorded as an advisory only: no weight, no effect on the verdict.
    Log,
}

/// A change to an inherited rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleOverride {
    /// Id of the inherited rule to change.
    pub id: RuleId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigation: Option<String>,
}

/// A pack test: an input and what the pack must conclude about it under the default policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackTest {
    /// Optional label shown in reports (defaults to the test's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub input: String,
    pub expect: Expectation,
}

/// What a test expects. At least one field must be set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expectation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::verdict::Verdict>,
    /// Rule ids that must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RuleId>,
    /// Rule ids that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_matches: Vec<RuleId>,
}

impl Expectation {
    pub fn is_empty(&self) -> bool {
        self.verdict.is_none() && self.matches.is_empty() && self.not_matches.is_empty()
    }
}

impl RulePackSpec {
    /// Ids defined by this pack's own rules (not inherited ones).
    pub fn own_ids(&self) -> BTreeSet<&RuleId> {
        self.rules.iter().map(|r| &r.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Result<Rule, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn rule_with_one_matcher_parses() {
        let r = rule("{id: a, category: pii, severity: low, weight: 5, detector: email}").unwrap();
        assert_eq!(r.matcher, Matcher::Detector(DetectorKind::Email));
        assert!(r.enabled);
    }

    #[test]
    fn rule_needs_exactly_one_matcher() {
        let e = rule("{id: a, category: pii, severity: low, weight: 5}").unwrap_err();
        assert!(e.to_string().contains("has no matcher"), "{e}");
        let e = rule("{id: a, category: pii, severity: low, weight: 5, regex: x, detector: email}")
            .unwrap_err();
        assert!(e.to_string().contains("more than one matcher"), "{e}");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        let e = rule("{id: a, category: pii, severity: low, weight: 5, regex: x, wieght: 3}")
            .unwrap_err();
        assert!(e.to_string().contains("wieght"), "{e}");
        let e = rule("{id: a, category: nope, severity: low, weight: 5, regex: x}").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = rule("{id: A!, category: pii, severity: low, weight: 5, regex: x}").unwrap_err();
        assert!(e.to_string().contains("invalid rule id"), "{e}");
        let e = rule("{id: a, category: pii, severity: low, weight: 101, regex: x}").unwrap_err();
        assert!(e.to_string().contains("over 100"), "{e}");
    }

    #[test]
    fn rule_round_trips_through_yaml() {
        let r = rule(
            "{id: k, category: jailbreak, severity: high, weight: 50, keywords: {any: [dan]}, action: block}",
        )
        .unwrap();
        let back: Rule = serde_yaml::from_str(&serde_yaml::to_string(&r).unwrap()).unwrap();
        assert_eq!(r, back);
        match r.matcher {
            Matcher::Keywords(k) => assert!(k.case_insensitive && k.whole_word),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn schema_exposes_matchers_on_the_rule() {
        let schema = serde_json::to_value(schemars::schema_for!(RulePackSpec)).unwrap();
        let rule = &schema["$defs"]["Rule"]["properties"];
        for key in [
            "id", "category", "severity", "weight", "regex", "keywords", "detector",
        ] {
            assert!(rule.get(key).is_some(), "schema lacks {key}: {rule}");
        }
    }
}
