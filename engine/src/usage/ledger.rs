//! The usage ledger: one ConfigMap per ScanPolicy (`<policy>-usage`, created by pd-operator),
//! shared by the policy's scanner pods and the operator. The format is defined here and read
//! by both sides, so it cannot drift between them.
//!
//! Keys:
//! - `pod.<pod name>`: a [`PodUsage`], written only by that pod (JSON merge patch of its one
//!   key). A restarted container finds its key and continues from it; a new pod has a new name
//!   and starts at zero under a new key, so nothing a dead pod counted is lost or counted twice.
//!   Keys of other periods are ignored by every reader and removed by the operator.
//! - `quota.json`: a [`QuotaGrant`], written only by the operator: the tenant's quota and what
//!   the tenant's *other* policies used, so a scanner can judge the tenant's total.
//!
//! Why a merge patch and not server-side apply: every scanner of a policy would apply under
//! the same field manager (they share a service account and image), and an apply removes the
//! fields its manager applied before but not now — one pod's apply would delete the other
//! pods' keys. A merge patch changes exactly the key it names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Prefix of the per-pod keys.
pub const POD_KEY_PREFIX: &str = "pod.";
/// The operator's key.
pub const QUOTA_KEY: &str = "quota.json";
/// Label the operator puts on every ledger (value `"true"`), for its label-selected watch.
pub const LEDGER_LABEL: &str = "promptdefenders.io/usage-ledger";

/// The ledger ConfigMap's name for a policy.
pub fn ledger_name(policy: &str) -> String {
    format!("{policy}-usage")
}

/// The key a pod writes under.
pub fn pod_key(pod: &str) -> String {
    format!("{POD_KEY_PREFIX}{pod}")
}

/// Scans by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdicts {
    #[serde(default)]
    pub allow: u64,
    #[serde(default)]
    pub warn: u64,
    #[serde(default)]
    pub block: u64,
}

/// One pod's running totals for one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    /// `YYYY-MM` (UTC).
    pub period: String,
    /// Prompts scanned (a batch counts each item).
    pub scans: u64,
    /// Prompt bytes scanned (UTF-8).
    pub bytes: u64,
    #[serde(default)]
    pub verdicts: Verdicts,
    /// Requests refused (or flagged, with `auditOnly`) because the quota was used up.
    #[serde(default)]
    pub quota_exceeded: u64,
    /// RFC 3339, when the pod wrote this.
    #[serde(default)]
    pub updated_at: String,
}

impl PodUsage {
    /// Adds `other` into `self` (the period is left as is).
    pub fn add(&mut self, other: &PodUsage) {
        self.scans = self.scans.saturating_add(other.scans);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.verdicts.allow = self.verdicts.allow.saturating_add(other.verdicts.allow);
        self.verdicts.warn = self.verdicts.warn.saturating_add(other.verdicts.warn);
        self.verdicts.block = self.verdicts.block.saturating_add(other.verdicts.block);
        self.quota_exceeded = self.quota_exceeded.saturating_add(other.quota_exceeded);
    }
}

/// What a tenant does when its quota is used up: `block` refuses scans with 429
/// `quota_exceeded` until the next period; `auditOnly` keeps scanning and counts each request
/// in `pd_quota_exceeded_total{action="audit_only"}`; `allow` keeps scanning (usage is still
/// reported).
// The variants carry no doc comments: schemars would turn them into a `oneOf`, which a CRD's
// structural schema does not take as an enum.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OnExceeded {
    #[default]
    Block,
    AuditOnly,
    Allow,
}

impl OnExceeded {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OnExceeded::Block => "block",
            OnExceeded::AuditOnly => "audit_only",
            OnExceeded::Allow => "allow",
        }
    }
}

/// The operator's word to a policy's scanners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaGrant {
    /// `YYYY-MM` the figures are for; a scanner ignores a grant of another period.
    pub period: String,
    pub scans_per_month: u64,
    /// Extra scans allowed past `scansPerMonth` before `onExceeded` applies.
    #[serde(default)]
    pub burst: u64,
    pub on_exceeded: OnExceeded,
    /// Scans of this period by the tenant's other policies, at the operator's last aggregation.
    #[serde(default)]
    pub used_elsewhere: u64,
}

impl QuotaGrant {
    /// Scans allowed in the period before `onExceeded` applies.
    pub fn allowance(&self) -> u64 {
        self.scans_per_month.saturating_add(self.burst)
    }
}

/// What a ledger's `data` holds for `period`: every pod's usage of that period by pod name
/// (other periods and unreadable values skipped) and the grant, if it is for that period.
pub fn read(
    data: &BTreeMap<String, String>,
    period: &str,
) -> (BTreeMap<String, PodUsage>, Option<QuotaGrant>) {
    let pods = data
        .iter()
        .filter_map(|(k, v)| {
            let pod = k.strip_prefix(POD_KEY_PREFIX)?;
            let usage: PodUsage = serde_json::from_str(v).ok()?;
            (usage.period == period).then(|| (pod.to_string(), usage))
        })
        .collect();
    let grant = data
        .get(QUOTA_KEY)
        .and_then(|v| serde_json::from_str::<QuotaGrant>(v).ok())
        .filter(|g| g.period == period);
    (pods, grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_keeps_this_periods_pods_and_grant() {
        let usage = |period: &str, scans| {
            serde_json::to_string(&PodUsage {
                period: period.into(),
                scans,
                ..PodUsage::default()
            })
            .unwrap()
        };
        let data = BTreeMap::from([
            ("pod.a".to_string(), usage("2026-11", 5)),
            ("pod.b".to_string(), usage("2026-10", 7)),
            ("pod.c".to_string(), "not json".to_string()),
            ("other".to_string(), usage("2026-11", 9)),
            (
                QUOTA_KEY.to_string(),
                r#"{"period":"2026-11","scansPerMonth":10,"burst":2,"onExceeded":"auditOnly","usedElsewhere":3}"#.to_string(),
            ),
        ]);
        let (pods, grant) = read(&data, "2026-11");
        assert_eq!(pods.keys().collect::<Vec<_>>(), ["a"]);
        let grant = grant.unwrap();
        assert_eq!(grant.allowance(), 12);
        assert_eq!(grant.on_exceeded, OnExceeded::AuditOnly);
        assert!(read(&data, "2026-12").1.is_none());
    }
}
