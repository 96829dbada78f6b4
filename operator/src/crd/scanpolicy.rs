//! `ScanPolicy` (`sp`): the detection settings, tenant and scanner Deployment of one policy,
//! and its rollout status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use pd_engine::pack::{Action, Category};
use pd_engine::policy::{Mode, PolicySpec, Thresholds};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The detection fields are the scanner's `PolicySpec`, written out flat (rather than
// `#[serde(flatten)]`, which would carry `PolicySpec`'s `additionalProperties: false` into a
// schema that also has `tenantRef` and `scanner`); `ScanPolicySpec::policy_spec` converts, and a
// test keeps the two field sets equal.
/// Binds a tenant to rule packs (detection settings) and says how to run its scanners.
// Several `printcolumn(type_ = "string", ...)` look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "promptdefenders.io",
    version = "v1alpha1",
    kind = "ScanPolicy",
    category = "prompt-defenders",
    namespaced,
    shortname = "sp",
    status = "ScanPolicyStatus",
    derive = "PartialEq",
    doc = "Binds a Tenant to RulePacks and runs scanners for it.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Hash",
        type_ = "string",
        json_path = ".status.activeBundleHash",
        priority = "1"
    ),
    printcolumn(
        name = "Serving",
        type_ = "string",
        json_path = ".status.serving",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScanPolicySpec {
    pub tenant_ref: TenantRef,
    /// Names of RulePacks in the policy's namespace (a pack brings its `extends` chain along).
    /// Empty means every pack no other pack extends.
    #[serde(default)]
    pub rule_packs: Vec<String>,
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self.warn <= self.block").message("thresholds.warn must not be above thresholds.block"))]
    pub thresholds: Thresholds,
    /// Per-category action; a rule's own `action` wins over this.
    #[serde(default = "default_actions")]
    pub actions: BTreeMap<Category, Action>,
    /// Upper bound on what one category may add to the score.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub category_caps: BTreeMap<Category, u32>,
    #[serde(default)]
    pub mode: Mode,
    /// How the scanner pods run.
    #[serde(default)]
    pub scanner: ScannerSpec,
    /// Serve the scan API over HTTPS (TLS 1.2 and 1.3), optionally requiring client
    /// certificates, from a `kubernetes.io/tls` Secret such as a cert-manager Certificate
    /// writes. Absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// TLS of a policy's scanners. The Secret is mounted, not read by the operator: scanners reload
/// a renewed certificate on their own, and a Secret that does not exist (yet) keeps new pods in
/// `ContainerCreating` until it does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.clientCASecretName) || self.requireClientCert").message("clientCASecretName needs requireClientCert: true"))]
pub struct TlsSpec {
    /// Secret in the policy's namespace with `tls.crt` (the chain, leaf first) and `tls.key`:
    /// a cert-manager Certificate's `spec.secretName`. Its certificate should name the
    /// scanner's Service, `<policy>-scanner.<namespace>.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Require every client to present a certificate issued by the client CA (mutual TLS), in
    /// addition to its API key. The CA is `ca.crt` of `clientCASecretName`, else of
    /// `secretName` (cert-manager writes the issuing CA there for CA and self-signed issuers).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Secret in the policy's namespace whose `ca.crt` verifies client certificates, when it
    /// is not `secretName`'s own.
    #[serde(
        rename = "clientCASecretName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 253))]
    pub client_ca_secret_name: Option<String>,
}

fn default_actions() -> BTreeMap<Category, Action> {
    PolicySpec::default().actions
}

/// Reference to a cluster-scoped Tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantRef {
    pub name: String,
}

/// Scanner deployment sizing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScannerSpec {
    #[serde(default)]
    pub replicas: Replicas,
    /// HPA CPU target.
    #[serde(
        rename = "targetCPUUtilizationPercentage",
        default = "default_cpu_target"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
    /// Container resources; defaults request CPU (the HPA needs a request to scale on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Largest prompt accepted (`--max-prompt-bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prompt_bytes: Option<u64>,
    /// Scanner image; defaults to the `pd-scanner` image of this operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Default for ScannerSpec {
    fn default() -> Self {
        ScannerSpec {
            replicas: Replicas::default(),
            target_cpu_utilization_percentage: default_cpu_target(),
            resources: None,
            max_prompt_bytes: None,
            image: None,
        }
    }
}

fn default_cpu_target() -> i32 {
    70
}

/// HPA bounds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.min <= self.max").message("replicas.min must not be above replicas.max"))]
pub struct Replicas {
    #[serde(default = "default_min")]
    #[schemars(range(min = 1))]
    pub min: i32,
    #[serde(default = "default_max")]
    #[schemars(range(min = 1))]
    pub max: i32,
}

fn default_min() -> i32 {
    2
}

fn default_max() -> i32 {
    4
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas {
            min: default_min(),
            max: default_max(),
        }
    }
}

impl ScanPolicySpec {
    /// The detection settings as the scanner applies them.
    pub fn policy_spec(&self) -> PolicySpec {
        PolicySpec {
            rule_packs: self.rule_packs.clone(),
            thresholds: self.thresholds,
            actions: self.actions.clone(),
            category_caps: self.category_caps.clone(),
            mode: self.mode,
        }
    }
}

/// What the operator last concluded about a ScanPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `RulePacksReady`, `Available`, `Progressing`, `Ready`, and kstatus's `Reconciling` and
    /// `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Bundle hash the scanners were last given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_bundle_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// In-cluster URL of the scan API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The bundle hash every ready scanner reports serving (absent while they differ, or when
    /// scanners cannot report: no API access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_bundle_hash: Option<String>,
    /// Ready scanner pods serving `activeBundleHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_pods: Option<i32>,
    /// `<serving>/<ready> pods on <hash>`, for `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
}

/// CEL on `metadata.name` (the only metadata a CRD's rules can see, at the schema root): the
/// children are named `<policy>-scanner`, and a Service name is a DNS-1035 label of at most 63
/// characters. Same limit as [`crate::status::MAX_POLICY_NAME`].
pub const POLICY_NAME_LENGTH_RULE: &str = "size(self.metadata.name) <= 55";
pub const POLICY_NAME_LENGTH_MESSAGE: &str =
    "metadata.name must be at most 55 characters: the scanner's Service is named <name>-scanner (63 at most)";
/// The characters a DNS-1035 label allows (`acme.chat` would make an invalid Service name).
pub const POLICY_NAME_CHARS_RULE: &str =
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
pub const POLICY_NAME_CHARS_MESSAGE: &str =
    "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter): it names the scanner's Service";
