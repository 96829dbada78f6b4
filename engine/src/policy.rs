//! The detection half of a `ScanPolicy`: which packs, thresholds, per-category actions, mode.
//!
//! The operator's `ScanPolicy` custom resource repeats [`PolicySpec`]'s fields in its own spec
//! (written out, not `#[serde(flatten)]`; a test keeps the two sets equal) and adds the
//! deployment fields listed in [`DEPLOYMENT_KEYS`], which the scanner ignores when it reads the
//! same YAML locally.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pack::{Action, Category};

/// `ScanPolicy.spec` keys that configure the Kubernetes deployment, not detection. The local
/// loader skips them; every other key must belong to [`PolicySpec`].
pub const DEPLOYMENT_KEYS: &[&str] = &["tenantRef", "scanner", "tls"];

/// Detection settings of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Names of the rule packs to bind (a pack that extends another brings its base along; do
    /// not list both). Empty means every loaded pack that no other pack extends.
    #[serde(default)]
    pub rule_packs: Vec<String>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Per-category action; a rule's own `action` wins over this.
    #[serde(default = "default_actions")]
    pub actions: BTreeMap<Category, Action>,
    /// Upper bound on how much one category may add to the score (default: no cap below 100).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub category_caps: BTreeMap<Category, u32>,
    #[serde(default)]
    pub mode: Mode,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            rule_packs: Vec::new(),
            thresholds: Thresholds::default(),
            actions: default_actions(),
            category_caps: BTreeMap::new(),
            mode: Mode::Enforce,
        }
    }
}

/// Personal data and credentials are redacted by default: the caller can forward the redacted
/// prompt instead of refusing the request.
fn default_actions() -> BTreeMap<Category, Action> {
    BTreeMap::from([
        (Category::Pii, Action::Redact),
        (Category::Secrets, Action::Redact),
    ])
}

/// Score thresholds (0–100): `score >= block` blocks, else `score >= warn` warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "default_warn")]
    #[schemars(range(min = 1, max = 100))]
    pub warn: u32,
    #[serde(default = "default_block")]
    #[schemars(range(min = 1, max = 100))]
    pub block: u32,
}

fn default_warn() -> u32 {
    30
}

fn default_block() -> u32 {
    60
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: default_warn(),
            block: default_block(),
        }
    }
}

/// `enforce` returns the verdict the rules reach; `audit` always answers `allow` but reports
/// (and audits) what enforcement would have decided — for rolling out a pack safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl PolicySpec {
    /// Checks what the type cannot: threshold order and ranges, cap ranges.
    pub fn validate(&self) -> Result<(), String> {
        let t = self.thresholds;
        if !(1..=100).contains(&t.warn) || !(1..=100).contains(&t.block) {
            return Err(format!(
                "thresholds must be within 1..=100 (warn {}, block {})",
                t.warn, t.block
            ));
        }
        if t.warn > t.block {
            return Err(format!(
                "thresholds.warn ({}) must not be above thresholds.block ({})",
                t.warn, t.block
            ));
        }
        if let Some((c, v)) = self.category_caps.iter().find(|(_, v)| **v > 100) {
            return Err(format!("categoryCaps.{c} is {v}; caps are 0..=100"));
        }
        Ok(())
    }
}

/// A named policy as the scanner applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub tenant: Option<String>,
    pub spec: PolicySpec,
}

impl Policy {
    /// What applies when no `ScanPolicy` is given: all packs, default thresholds and actions.
    pub fn default_policy() -> Self {
        Policy {
            name: "default".to_string(),
            tenant: None,
            spec: PolicySpec::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_spec_gets_defaults() {
        let p: PolicySpec = serde_yaml::from_str("{}").unwrap();
        assert_eq!(p, PolicySpec::default());
        assert_eq!(p.actions.get(&Category::Pii), Some(&Action::Redact));
        p.validate().unwrap();
    }

    #[test]
    fn thresholds_must_be_ordered() {
        let p: PolicySpec = serde_yaml::from_str("{thresholds: {warn: 70, block: 50}}").unwrap();
        assert!(p.validate().unwrap_err().contains("must not be above"));
        let p: PolicySpec = serde_yaml::from_str("{thresholds: {warn: 0}}").unwrap();
        assert!(p.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_yaml::from_str::<PolicySpec>("{treshold: {}}").unwrap_err();
        assert!(e.to_string().contains("treshold"));
        let e = serde_yaml::from_str::<PolicySpec>("{actions: {pii: shred}}").unwrap_err();
        assert!(e.to_string().contains("shred"));
    }
}
