//! Desired state: what must exist in the cluster for one ScanPolicy, as pure functions.
//!
//! The reconcilers (`controller/`) only apply what these return, server-side, with the field
//! manager [`FIELD_MANAGER`]. Keeping the decisions here — and out of code that talks to the API
//! server — is what lets `pd-operator render` show exactly what would be applied, and lets the
//! golden tests pin every field without a cluster.
//!
//! Here: the names, labels, owner references and errors every child shares, and
//! [`build_children`]; one module per group of children beside it (`config_maps`, `rbac`,
//! `network`, `deployment`, `scaling`) and the tenant's `webhooks`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretProjection, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use pd_engine::bundle::{bundle_document, BundleError};
use pd_engine::load::{Loaded, Origin, PackSource};
use pd_engine::pack::RulePackSpec;
use pd_engine::policy::Policy;
use pd_engine::usage::ledger::{ledger_name, LEDGER_LABEL};
use thiserror::Error;

use crate::apiserver::ApiEndpoint;
use crate::crd::{ScanPolicy, Tenant, TlsSpec};

mod config_maps;
mod deployment;
mod network;
mod rbac;
mod scaling;
mod webhooks;

// The public builders keep their paths (`crate::builders::scanner_args`); the rest is shared
// with the sibling modules only (they `use super::*`).
pub use config_maps::*;
pub use deployment::*;
use network::*;
use rbac::*;
use scaling::*;
pub use webhooks::*;

/// The one field manager for server-side apply.
pub const FIELD_MANAGER: &str = "pd-operator";
/// Scanner API, health and metrics port (HTTPS for the API when the policy has `tls`).
pub const SCANNER_PORT: i32 = 8080;
/// With `tls`: plain-HTTP port for probes and metrics only (`--health-listen`), named `http`
/// so kubelet and the chart's PodMonitor reach it without client certificates.
pub const HEALTH_PORT: i32 = 8081;
/// Default namespace whose pods may scrape scanner metrics.
pub const MONITORING_NAMESPACE: &str = "monitoring";
/// Annotation carrying the bundle's hash on the ConfigMap.
pub const BUNDLE_HASH_ANNOTATION: &str = "promptdefenders.io/bundle-hash";
/// Key of the bundle in its ConfigMap.
pub const BUNDLE_KEY: &str = "bundle.json";
/// Unprivileged user of the scanner image (distroless `nonroot`).
pub const SCANNER_UID: i64 = 65532;
/// Default scanner image: the scanner released with this operator.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/prompt-defenders/pd-scanner:",
    env!("CARGO_PKG_VERSION")
);

/// Cluster-wide choices that shape every policy's children: set once per operator (flags of
/// `pd-operator run` / `render`), not per ScanPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Scanner image for policies without `scanner.image`.
    pub scanner_image: String,
    /// Namespace (by `kubernetes.io/metadata.name`) allowed to scrape scanner metrics.
    pub monitoring_namespace: String,
    /// Namespace whose RulePacks every policy can bind and extend (a platform team's baseline),
    /// after its own namespace's. `None`: each namespace sees only its own packs.
    pub shared_namespace: Option<String>,
    /// Where scanners reach the API server. Non-empty: each scanner watches its bundle
    /// ConfigMap through the API (new bundles in about a second instead of kubelet's minute),
    /// so its pods get a token and egress to exactly these destinations. Empty: no token, egress
    /// DNS only, reloads when kubelet refreshes the mounted copy.
    pub api_server: Vec<ApiEndpoint>,
    /// Scanners write the hash they serve on their own Pod (`--report-pod`), and `Ready` waits
    /// for every ready pod to serve the desired bundle. Needs `api_server` (a token and egress).
    /// On by default, like `pd-operator run --scanner-reports-serving`.
    pub report_serving: bool,
    /// Prefixes a policy's `scanner.image` must start with; empty allows any. Without it any
    /// namespace user who may write a ScanPolicy picks the image the operator deploys.
    pub image_allowlist: Vec<String>,
}

impl Settings {
    /// Whether scanner pods report the bundle they serve: asked for, and able to reach the API.
    pub fn scanners_report(&self) -> bool {
        self.report_serving && !self.api_server.is_empty()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scanner_image: DEFAULT_IMAGE.to_string(),
            monitoring_namespace: MONITORING_NAMESPACE.to_string(),
            shared_namespace: None,
            api_server: Vec::new(),
            report_serving: true,
            image_allowlist: Vec::new(),
        }
    }
}

const BUNDLE_DIR: &str = "/etc/pd/bundle";
const KEYS_DIR: &str = "/etc/pd/keys";
const HMAC_DIR: &str = "/etc/pd/hmac";
const TLS_DIR: &str = "/etc/pd/tls";

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("ScanPolicy `{0}` has no namespace")]
    NoNamespace(String),
    #[error("ScanPolicy `{policy}` refers to tenant `{wanted}`, but tenant `{given}` was given")]
    WrongTenant {
        policy: String,
        wanted: String,
        given: String,
    },
    #[error("tenant `{tenant}` does not allow namespace `{namespace}` (allowed: {allowed})")]
    NamespaceNotAllowed {
        tenant: String,
        namespace: String,
        allowed: String,
    },
    #[error("scanner image `{image}` is not allowed (allowed prefixes: {allowed})")]
    ImageNotAllowed { image: String, allowed: String },
    /// The packs or policy do not compile; carries the scanner's rule-level problems.
    #[error("ScanPolicy `{policy}`: {source}")]
    Bundle {
        policy: String,
        #[source]
        source: BundleError,
    },
    #[error("cannot serialize the bundle: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot serialize the tenant's webhooks file: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Every child object of one ScanPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    /// The usage ledger `<policy>-usage` ([`usage_ledger`]); only when scanners reach the API.
    pub usage_ledger: Option<ConfigMap>,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    pub deployment: Deployment,
    pub hpa: HorizontalPodAutoscaler,
    pub pdb: PodDisruptionBudget,
    /// `promptdefenders.io/bundle-hash` of the ConfigMap.
    pub bundle_hash: String,
}

impl Children {
    /// All objects in apply order (identities and RBAC first, workload last) as JSON values,
    /// each with `apiVersion` and `kind`.
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        let mut values = vec![
            serde_json::to_value(&self.service_account)?,
            serde_json::to_value(&self.role)?,
            serde_json::to_value(&self.role_binding)?,
            serde_json::to_value(&self.config_map)?,
        ];
        if let Some(ledger) = &self.usage_ledger {
            values.push(serde_json::to_value(ledger)?);
        }
        values.extend([
            serde_json::to_value(&self.service)?,
            serde_json::to_value(&self.network_policy)?,
            serde_json::to_value(&self.deployment)?,
            serde_json::to_value(&self.hpa)?,
            serde_json::to_value(&self.pdb)?,
        ]);
        Ok(values)
    }
}

/// Names of a policy's children, in one place so builders, render and (later) the reconciler
/// agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub policy: String,
    pub namespace: String,
    pub tenant: String,
    /// ConfigMap `<policy>-bundle`.
    pub bundle: String,
    /// Deployment, Service, HPA, PDB, NetworkPolicy, ServiceAccount, Role, RoleBinding.
    pub scanner: String,
    /// Whether the scan API is served over TLS (the policy has `tls`).
    pub tls: bool,
}

/// The bundle ConfigMap's name for a policy.
pub fn bundle_config_map(policy: &str) -> String {
    format!("{policy}-bundle")
}

impl Names {
    pub fn new(policy: &str, namespace: &str, tenant: &str) -> Self {
        Names {
            policy: policy.to_string(),
            namespace: namespace.to_string(),
            tenant: tenant.to_string(),
            bundle: bundle_config_map(policy),
            scanner: format!("{policy}-scanner"),
            tls: false,
        }
    }

    /// The same names for a policy whose scanners do (or do not) serve TLS.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// In-cluster URL of the scan API.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}.{}.svc:{SCANNER_PORT}",
            self.scanner, self.namespace
        )
    }
}

/// The labels every child carries.
pub fn labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from(
        [
            ("app.kubernetes.io/name", "pd-scanner"),
            ("app.kubernetes.io/instance", names.policy.as_str()),
            ("app.kubernetes.io/component", "scanner"),
            ("app.kubernetes.io/part-of", "prompt-defenders"),
            ("app.kubernetes.io/managed-by", "pd-operator"),
            ("promptdefenders.io/tenant", names.tenant.as_str()),
            ("promptdefenders.io/policy", names.policy.as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

/// The stable subset used in selectors: selectors are immutable on Deployments, so they must
/// not include anything that could ever change (such as the tenant).
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "pd-scanner".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            names.policy.clone(),
        ),
    ])
}

/// Controller owner reference to the policy, so children are garbage-collected with it. `None`
/// when the policy never reached an API server (`render`): the API server rejects an owner
/// reference without a uid, so a preview leaves it out and stays `kubectl apply`-able.
pub fn owner_reference(policy: &ScanPolicy) -> Option<OwnerReference> {
    let uid = policy.metadata.uid.clone().filter(|u| !u.is_empty())?;
    Some(OwnerReference {
        api_version: ScanPolicy::api_version(&()).into_owned(),
        kind: ScanPolicy::kind(&()).into_owned(),
        name: policy.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// A non-controller owner reference to the Tenant (cluster-scoped, so it may own namespaced
/// objects), for what must outlive a policy. `blockOwnerDeletion` stays unset: setting it
/// would need `update` on `tenants/finalizers` where that admission plugin is on. `None`
/// without a uid, as for [`owner_reference`].
pub fn tenant_owner_reference(tenant: &Tenant) -> Option<OwnerReference> {
    let uid = tenant.metadata.uid.clone().filter(|u| !u.is_empty())?;
    Some(OwnerReference {
        api_version: Tenant::api_version(&()).into_owned(),
        kind: Tenant::kind(&()).into_owned(),
        name: tenant.name_any(),
        uid,
        controller: None,
        block_owner_deletion: None,
    })
}

fn meta(names: &Names, name: &str, owner: &Option<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names)),
        owner_references: owner.clone().map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Builds every child of `policy`. `packs` are the RulePacks of the policy's namespace by name;
/// only those the policy binds (with their `extends` chains) go into the bundle, and they are
/// compiled first, so an invalid pack is an error here and never reaches a scanner.
pub fn build_children(
    policy: &ScanPolicy,
    tenant: &Tenant,
    packs: &BTreeMap<String, RulePackSpec>,
    settings: &Settings,
) -> Result<Children, BuildError> {
    let policy_name = policy.name_any();
    let namespace = policy
        .namespace()
        .ok_or_else(|| BuildError::NoNamespace(policy_name.clone()))?;
    let tenant_name = tenant.name_any();
    if policy.spec.tenant_ref.name != tenant_name {
        return Err(BuildError::WrongTenant {
            policy: policy_name,
            wanted: policy.spec.tenant_ref.name.clone(),
            given: tenant_name,
        });
    }
    // Closed by default: an empty list allows no namespace (not every namespace).
    let allowed = &tenant.spec.namespaces;
    if !allowed.contains(&namespace) {
        return Err(BuildError::NamespaceNotAllowed {
            tenant: tenant_name,
            namespace,
            allowed: if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            },
        });
    }
    check_image(policy, settings)?;
    let names =
        Names::new(&policy_name, &namespace, &tenant_name).with_tls(policy.spec.tls.is_some());
    let owner = owner_reference(policy);
    let (config_map, bundle_hash) = config_map(policy, tenant, &names, &owner, packs)?;
    Ok(Children {
        service_account: service_account(&names, &owner),
        role: role(&names, &owner, settings),
        role_binding: role_binding(&names, &owner),
        config_map,
        usage_ledger: (!settings.api_server.is_empty())
            .then(|| usage_ledger(&names, &tenant_owner_reference(tenant))),
        service: service(&names, &owner),
        network_policy: network_policy(tenant, &names, &owner, settings),
        deployment: deployment(policy, tenant, &names, &owner, settings),
        hpa: hpa(policy, &names, &owner),
        pdb: pdb(&names, &owner),
        bundle_hash,
    })
}

/// Refuses a `scanner.image` outside [`Settings::image_allowlist`] (the operator's own
/// default image is always allowed: the platform chose it).
pub fn check_image(policy: &ScanPolicy, settings: &Settings) -> Result<(), BuildError> {
    let Some(image) = &policy.spec.scanner.image else {
        return Ok(());
    };
    let allowed = &settings.image_allowlist;
    if allowed.is_empty() || allowed.iter().any(|p| image.starts_with(p.as_str())) {
        return Ok(());
    }
    Err(BuildError::ImageNotAllowed {
        image: image.clone(),
        allowed: allowed.join(", "),
    })
}
