//! `RulePack` (`rp`): the scanner's rule-pack format as a resource, and its compile/test status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use pd_engine::pack::RulePackSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// `spec` is exactly the scanner's rule-pack format; this wrapper only exists because the
// `CustomResource` derive needs a local struct to hang the resource on.
/// A rule pack, in the format `pd-scanner` reads (`pd-scanner schema` prints it).
// Several `printcolumn(type_ = "string", ...)` look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "promptdefenders.io",
    version = "v1alpha1",
    kind = "RulePack",
    category = "prompt-defenders",
    namespaced,
    shortname = "rp",
    status = "RulePackStatus",
    derive = "PartialEq",
    doc = "Detection rules for Prompt Defenders scanners, compiled and tested by the operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.ruleCount"),
    printcolumn(
        name = "Hash",
        type_ = "string",
        json_path = ".status.contentHash",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct RulePackCrdSpec(pub RulePackSpec);

/// What compiling and testing the pack found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulePackStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Compiled`, `TestsPassed`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Rules after resolving `extends` and `overrides`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<u32>,
    /// `sha256:<hex>` of the resolved pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Compile errors, by rule id where one applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RuleError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestSummary>,
    /// Not failures: the pack's own regex rules that have no literal the scanner's prefilter
    /// can skip them by, so they run on every prompt, with what that costs (as
    /// `pd-scanner test` prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One compile problem.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleError {
    pub pack: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
}

/// Outcome of the pack's embedded tests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestSummary {
    pub passed: u32,
    pub failed: u32,
    /// Names of failing tests with the reason (bounded; status must stay small).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}
