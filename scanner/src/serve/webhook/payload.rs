//! What a webhook carries: the decision's identifiers, never the prompt.
//!
//! An [`Event`] is built from a [`ScanResult`] by picking fields one by one — rule ids,
//! categories, severities, score, verdicts, the input's HMAC hash, the bundle and the pod — so
//! nothing derived from the text (spans, redacted prompt, mitigations, classifier evidence)
//! can reach a receiver by accident. The shape of the generic JSON body is checked in as
//! `scanner/webhook-event.schema.json` and tested against real deliveries.

use serde::Serialize;

use crate::compile::CompiledPack;
use crate::engine::ScanResult;
use crate::policy::Mode;

use super::Format;

/// The `type` of a generic JSON delivery; versioned so receivers can dispatch on it.
pub const BODY_TYPE: &str = "pd.findings.v1";

/// One rule that fired.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRef {
    pub id: String,
    pub category: &'static str,
    pub severity: &'static str,
}

/// One scan decision, as notified. Shared by every webhook it matches.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Random, unique per decision: receivers deduplicate on it.
    pub event_id: String,
    /// When the decision was made (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    /// The policy's tenant (null for a standalone scanner's policy without one).
    pub tenant: Option<String>,
    pub policy: String,
    /// The verdict served to the client.
    pub verdict: &'static str,
    /// In audit mode: what enforcement would have decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated_verdict: Option<&'static str>,
    pub mode: &'static str,
    pub score: u32,
    /// The highest severity among the rules (null when no rule fired).
    pub max_severity: Option<&'static str>,
    pub rules: Vec<RuleRef>,
    /// Distinct categories of the rules, sorted.
    pub categories: Vec<&'static str>,
    /// Distinct severities of the rules, lowest first.
    pub severities: Vec<&'static str>,
    /// HMAC-SHA256 of the input under the scanner's key: correlates with the audit log and
    /// the scan response, reveals nothing of the text.
    pub input_hash: String,
    pub bundle_hash: String,
    pub bundle_name: String,
    pub bundle_version: String,
    pub scanner_pod: String,
}

impl Event {
    pub fn from_result(pack: &CompiledPack, r: &ScanResult, pod: &str) -> Event {
        let mut categories: Vec<_> = r.advisories.iter().map(|a| a.category).collect();
        categories.sort();
        categories.dedup();
        let mut severities: Vec<_> = r.advisories.iter().map(|a| a.severity).collect();
        severities.sort();
        severities.dedup();
        Event {
            event_id: hex::encode(rand::random::<[u8; 16]>()),
            timestamp: crate::serve::audit::rfc3339_millis(std::time::SystemTime::now()),
            tenant: pack.policy.tenant.clone(),
            policy: r.policy.clone(),
            verdict: r.verdict.as_str(),
            evaluated_verdict: r.evaluated_verdict.map(|v| v.as_str()),
            mode: match r.mode {
                Mode::Enforce => "enforce",
                Mode::Audit => "audit",
            },
            score: r.score,
            max_severity: severities.last().map(|s| s.as_str()),
            rules: r
                .advisories
                .iter()
                .map(|a| RuleRef {
                    id: a.rule_id.clone(),
                    category: a.category.as_str(),
                    severity: a.severity.as_str(),
                })
                .collect(),
            categories: categories.iter().map(|c| c.as_str()).collect(),
            severities: severities.iter().map(|s| s.as_str()).collect(),
            input_hash: r.input_hash.clone(),
            bundle_hash: r.rule_pack.hash.clone(),
            bundle_name: r.rule_pack.name.clone(),
            bundle_version: r.rule_pack.version.clone(),
            scanner_pod: pod.to_string(),
        }
    }

    /// The dashboard link of this event: `template` with `{event_id}`, `{input_hash}`,
    /// `{tenant}`, `{policy}` and `{bundle_hash}` replaced (values percent-encoded).
    pub fn link(&self, template: &str) -> String {
        let mut out = template.to_string();
        for (name, value) in [
            ("{event_id}", self.event_id.as_str()),
            ("{input_hash}", self.input_hash.as_str()),
            ("{tenant}", self.tenant.as_deref().unwrap_or("")),
            ("{policy}", self.policy.as_str()),
            ("{bundle_hash}", self.bundle_hash.as_str()),
        ] {
            if out.contains(name) {
                out = out.replace(name, &percent_encode(value));
            }
        }
        out
    }
}

/// The placeholders a link template may use.
pub const LINK_PLACEHOLDERS: &[&str] =
    &["event_id", "input_hash", "tenant", "policy", "bundle_hash"];

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// Renders one delivery's body. The body is fixed for the delivery: retries send the same
/// bytes (with a fresh timestamp and signature), so receivers can deduplicate.
pub fn render(
    format: Format,
    webhook: &str,
    delivery_id: &str,
    events: &[std::sync::Arc<Event>],
    link_template: Option<&str>,
) -> Vec<u8> {
    let link = |e: &Event| link_template.map(|t| e.link(t));
    let value = match format {
        Format::Json => serde_json::json!({
            "type": BODY_TYPE,
            "delivery_id": delivery_id,
            "webhook": webhook,
            "events": events
                .iter()
                .map(|e| EventOut { event: e, link: link(e) })
                .collect::<Vec<_>>(),
        }),
        Format::Slack => slack(events, &link),
        Format::Teams => teams(events, &link),
    };
    // Serializing a `Value` cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// One line of text per event, for the chat formats. Identifiers only, as for JSON.
fn summary_line(e: &Event) -> String {
    let verdict = match e.evaluated_verdict {
        Some(v) => format!("{} (audit mode; would {v})", e.verdict),
        None => e.verdict.to_string(),
    };
    let rules: Vec<&str> = e.rules.iter().map(|r| r.id.as_str()).collect();
    format!(
        "{verdict} · tenant {} · policy {} · score {} · severity {} · rules {} · input {}",
        e.tenant.as_deref().unwrap_or("none"),
        e.policy,
        e.score,
        e.max_severity.unwrap_or("none"),
        if rules.is_empty() {
            "none".to_string()
        } else {
            rules.join(", ")
        },
        e.input_hash
    )
}

fn title(events: &[std::sync::Arc<Event>]) -> String {
    match events {
        [one] => format!("Prompt Defenders: {} finding", one.verdict),
        many => format!("Prompt Defenders: {} findings", many.len()),
    }
}

/// Slack incoming-webhook message: `text` (the notification fallback) plus one section block
/// per event (Slack allows 50 blocks; a batch over 49 events is summarised in a last block).
fn slack(
    events: &[std::sync::Arc<Event>],
    link: &dyn Fn(&Event) -> Option<String>,
) -> serde_json::Value {
    let mut blocks = vec![serde_json::json!({
        "type": "header",
        "text": {"type": "plain_text", "text": title(events)},
    })];
    for e in events.iter().take(48) {
        let mut text = summary_line(e);
        if let Some(l) = link(e) {
            text.push_str(&format!(" · <{l}|details>"));
        }
        blocks.push(serde_json::json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": text},
        }));
    }
    if events.len() > 48 {
        blocks.push(serde_json::json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("and {} more", events.len() - 48)}],
        }));
    }
    serde_json::json!({"text": title(events), "blocks": blocks})
}

/// Microsoft Teams message (Workflows / incoming webhook) with one Adaptive Card: a title and
/// a fact set per event, plus an "Open" action per event when a link template is set.
fn teams(
    events: &[std::sync::Arc<Event>],
    link: &dyn Fn(&Event) -> Option<String>,
) -> serde_json::Value {
    let mut body = vec![serde_json::json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": title(events), "wrap": true,
    })];
    let mut actions = Vec::new();
    for e in events {
        body.push(serde_json::json!({
            "type": "FactSet",
            "separator": true,
            "facts": [
                {"title": "Verdict", "value": e.evaluated_verdict.map_or(e.verdict.to_string(), |v| format!("{} (audit; would {v})", e.verdict))},
                {"title": "Tenant", "value": e.tenant.as_deref().unwrap_or("none")},
                {"title": "Policy", "value": e.policy},
                {"title": "Score", "value": e.score.to_string()},
                {"title": "Severity", "value": e.max_severity.unwrap_or("none")},
                {"title": "Rules", "value": e.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")},
                {"title": "Input hash", "value": e.input_hash},
                {"title": "Time", "value": e.timestamp},
            ],
        }));
        if let Some(l) = link(e) {
            if actions.len() < 5 {
                actions
                    .push(serde_json::json!({"type": "Action.OpenUrl", "title": "Open", "url": l}));
            }
        }
    }
    let mut card = serde_json::json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = serde_json::Value::Array(actions);
    }
    serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}
