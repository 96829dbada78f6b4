//! Desired state: what must exist in the cluster for one ScanPolicy, as pure functions.
//!
//! The reconcilers (`controller/`) only apply what these return, server-side, with the field
//! manager [`FIELD_MANAGER`]. Keeping the decisions here — and out of code that talks to the API
//! server — is what lets `pd-operator render` show exactly what would be applied, and lets the
//! golden tests pin every field without a cluster.

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

/// The `ScanBundle` the scanners serve: exactly the scanner's `bundle_document`, so the pods
/// load what `pd-scanner bundle` would print for the same inputs.
pub fn bundle(
    policy: &ScanPolicy,
    packs: &BTreeMap<String, RulePackSpec>,
) -> Result<serde_json::Value, BuildError> {
    let name = policy.name_any();
    let mut loaded = Loaded::default();
    let ns = policy.namespace().unwrap_or_default();
    for (pack, spec) in packs {
        loaded.packs.insert(
            pack.clone(),
            PackSource {
                name: pack.clone(),
                spec: spec.clone(),
                origin: Origin {
                    path: PathBuf::from(format!("rulepacks/{ns}/{pack}")),
                    document: 1,
                },
            },
        );
    }
    loaded.policies.push((
        Policy {
            name: name.clone(),
            tenant: Some(policy.spec.tenant_ref.name.clone()),
            spec: policy.spec.policy_spec(),
        },
        Origin {
            path: PathBuf::from(format!("scanpolicies/{ns}/{name}")),
            document: 1,
        },
    ));
    bundle_document(&loaded, Some(&name)).map_err(|source| BuildError::Bundle {
        policy: name,
        source,
    })
}

fn config_map(
    policy: &ScanPolicy,
    tenant: &Tenant,
    names: &Names,
    owner: &Option<OwnerReference>,
    packs: &BTreeMap<String, RulePackSpec>,
) -> Result<(ConfigMap, String), BuildError> {
    let doc = bundle(policy, packs)?;
    let hash = doc["metadata"]["annotations"][BUNDLE_HASH_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let text = serde_json::to_string_pretty(&doc)?;
    let mut meta = meta(names, &names.bundle, owner);
    meta.annotations = Some(BTreeMap::from([(
        BUNDLE_HASH_ANNOTATION.to_string(),
        hash.clone(),
    )]));
    let mut data = BTreeMap::from([(BUNDLE_KEY.to_string(), text)]);
    if let Some(webhooks) = webhooks_file(tenant)? {
        data.insert(WEBHOOKS_KEY.to_string(), webhooks);
    }
    let cm = ConfigMap {
        metadata: meta,
        data: Some(data),
        ..ConfigMap::default()
    };
    Ok((cm, hash))
}

/// The tenant's webhooks file (`serve --webhooks`), in the bundle ConfigMap under this key and
/// mounted on its own (the bundle directory must hold nothing but the bundle).
const WEBHOOKS_KEY: &str = "webhooks.yaml";
const WEBHOOKS_DIR: &str = "/etc/pd/webhooks";
/// Signing keys, one directory per webhook (and one per key being rotated out).
const WEBHOOK_KEYS_DIR: &str = "/etc/pd/webhook-keys";
/// Pod-template annotation with the webhooks file's hash: the scanner reads that file once at
/// start, so a change must roll the pods (signing keys need no roll: they are re-read).
pub const WEBHOOKS_HASH_ANNOTATION: &str = "promptdefenders.io/webhooks-hash";

fn webhook_name(i: usize, w: &crate::crd::Webhook) -> String {
    w.name.clone().unwrap_or_else(|| format!("webhook-{i}"))
}

fn webhook_key_paths(i: usize, w: &crate::crd::Webhook) -> Vec<String> {
    let mut keys = vec![format!("{WEBHOOK_KEYS_DIR}/{i}/current")];
    if w.previous_secret_ref.is_some() {
        keys.push(format!("{WEBHOOK_KEYS_DIR}/{i}-previous/previous"));
    }
    keys
}

/// The scanner's webhooks file for `tenant` (`None` without webhooks): the Tenant's fields,
/// with the signing keys at the paths [`deployment`] mounts them at. Batching, rate and
/// retries keep the scanner's defaults.
pub fn webhooks_file(tenant: &Tenant) -> Result<Option<String>, BuildError> {
    if tenant.spec.webhooks.is_empty() {
        return Ok(None);
    }
    let list: Vec<serde_json::Value> = tenant
        .spec
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut o = serde_json::json!({
                "name": webhook_name(i, w),
                "url": w.url,
                "minSeverity": w.min_severity,
                "keyFiles": webhook_key_paths(i, w),
            });
            if let Some(f) = w.format {
                o["format"] = serde_json::json!(f);
            }
            if !w.verdicts.is_empty() {
                o["verdicts"] = serde_json::json!(w.verdicts);
            }
            if let Some(l) = &w.link_template {
                o["linkTemplate"] = serde_json::json!(l);
            }
            if w.allow_insecure_http {
                o["allowInsecureHttp"] = serde_json::json!(true);
            }
            o
        })
        .collect();
    Ok(Some(serde_yaml::to_string(&list)?))
}

/// TCP ports the webhook URLs name (443 for `https://`, 80 for `http://`, else the explicit
/// one). NetworkPolicy cannot match host names, so scanner egress for webhooks goes to these
/// ports on any address.
pub fn webhook_ports(tenant: &Tenant) -> std::collections::BTreeSet<u16> {
    tenant
        .spec
        .webhooks
        .iter()
        .filter_map(|w| {
            let uri: axum::http::Uri = w.url.parse().ok()?;
            let default = match uri.scheme_str()? {
                "https" => 443,
                "http" => 80,
                _ => return None,
            };
            Some(uri.port_u16().unwrap_or(default))
        })
        .collect()
}

/// The usage ledger ConfigMap `<policy>-usage`: created empty and labelled here; the
/// scanners write their keys into it and pd-operator's usage aggregation its `quota.json`
/// (`crate::usage`, docs/src/usage.md). The operator creates it because RBAC cannot limit
/// `create` to one name, and a scanner allowed to create ConfigMaps could create any. This
/// apply never names a data key, so it never removes what the others wrote.
///
/// Owned by the Tenant, not the policy: deleting and recreating a ScanPolicy must not hand its
/// tenant a fresh month of quota, so the ledger (and the month's counts in it) outlives the
/// policy and goes with the tenant.
fn usage_ledger(names: &Names, owner: &Option<OwnerReference>) -> ConfigMap {
    let mut meta = meta(names, &ledger_name(&names.policy), owner);
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(LEDGER_LABEL.to_string(), "true".to_string());
    }
    ConfigMap {
        metadata: meta,
        ..ConfigMap::default()
    }
}

fn service_account(names: &Names, owner: &Option<OwnerReference>) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(names, &names.scanner, owner),
        ..ServiceAccount::default()
    }
}

/// Read access to the policy's own bundle ConfigMap and nothing else: a compromised scanner
/// must not read other tenants' bundles. `list` and `watch` with
/// `fieldSelector=metadata.name=<name>` are authorized against `resourceNames` too, which is
/// how the scanner's watch asks.
///
/// With [`Settings::scanners_report`] the scanner also patches its own Pod's annotations (the
/// bundle hash it serves). RBAC cannot name a Pod whose name is random, so this rule covers the
/// namespace's pods; the chart's ValidatingAdmissionPolicy restricts it to the caller's own Pod
/// and those annotations (docs/src/operator.md, "Conditions, reasons, and what `Ready` guarantees").
fn role(names: &Names, owner: &Option<OwnerReference>, settings: &Settings) -> Role {
    let mut rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".to_string()]),
        resource_names: Some(vec![names.bundle.clone()]),
        verbs: ["get", "list", "watch"].map(String::from).to_vec(),
        ..PolicyRule::default()
    }];
    if !settings.api_server.is_empty() {
        // The usage ledger: read its own key once at start, then merge-patch it.
        rules.push(PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_string()]),
            resource_names: Some(vec![ledger_name(&names.policy)]),
            verbs: ["get", "patch"].map(String::from).to_vec(),
            ..PolicyRule::default()
        });
    }
    if settings.scanners_report() {
        rules.push(PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_string()]),
            verbs: vec!["patch".to_string()],
            ..PolicyRule::default()
        });
    }
    Role {
        metadata: meta(names, &names.scanner, owner),
        rules: Some(rules),
    }
}

fn role_binding(names: &Names, owner: &Option<OwnerReference>) -> RoleBinding {
    RoleBinding {
        metadata: meta(names, &names.scanner, owner),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: names.scanner.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: names.scanner.clone(),
            namespace: Some(names.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

fn service(names: &Names, owner: &Option<OwnerReference>) -> Service {
    Service {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(names)),
            ports: Some(vec![ServicePort {
                name: Some(api_port_name(names).to_string()),
                app_protocol: names.tls.then(|| "https".to_string()),
                port: SCANNER_PORT,
                target_port: Some(IntOrString::String(api_port_name(names).to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Name of the scan API's container and Service port: `https` with TLS, else `http`.
fn api_port_name(names: &Names) -> &'static str {
    if names.tls {
        "https"
    } else {
        "http"
    }
}

/// The port probes and metrics scrapers use: the API port, or with TLS the plain health port.
fn metrics_port(names: &Names) -> i32 {
    if names.tls {
        HEALTH_PORT
    } else {
        SCANNER_PORT
    }
}

fn tcp_port(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".to_string()),
        port: Some(IntOrString::Int(port)),
        ..NetworkPolicyPort::default()
    }
}

fn namespace_named(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            name.to_string(),
        )])),
        ..LabelSelector::default()
    }
}

/// Selecting the scanner pods with both policy types makes everything not listed here denied:
/// ingress only from the tenant's clients and the monitoring namespace, egress only DNS and,
/// with the ConfigMap watch on, the API server's addresses (see [`crate::apiserver`]).
fn network_policy(
    tenant: &Tenant,
    names: &Names,
    owner: &Option<OwnerReference>,
    settings: &Settings,
) -> NetworkPolicy {
    let monitoring_namespace = settings.monitoring_namespace.as_str();
    let clients: Vec<NetworkPolicyPeer> = tenant
        .spec
        .clients
        .iter()
        .filter(|c| c.namespace_selector.is_some() || c.pod_selector.is_some())
        .map(|c| NetworkPolicyPeer {
            namespace_selector: c.namespace_selector.clone(),
            pod_selector: c.pod_selector.clone(),
            ..NetworkPolicyPeer::default()
        })
        .collect();
    let mut ingress = Vec::new();
    if !clients.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(clients),
            ports: Some(vec![tcp_port(SCANNER_PORT)]),
        });
    }
    // Monitoring scrapes metrics: with TLS, on the plain health port only.
    ingress.push(NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_named(monitoring_namespace)),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp_port(metrics_port(names))]),
    });
    let mut egress = egress_rules(&settings.api_server);
    let webhook_ports = webhook_ports(tenant);
    if !webhook_ports.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(
                ["0.0.0.0/0", "::/0"]
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.to_string(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .to_vec(),
            ),
            ports: Some(
                webhook_ports
                    .into_iter()
                    .map(|p| tcp_port(i32::from(p)))
                    .collect(),
            ),
        });
    }
    NetworkPolicy {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}

/// DNS, then one rule per API-server port with the blocks reachable on it.
fn egress_rules(api_server: &[ApiEndpoint]) -> Vec<NetworkPolicyEgressRule> {
    let dns = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(IntOrString::Int(53)),
        ..NetworkPolicyPort::default()
    };
    let mut rules = vec![NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_named("kube-system")),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "k8s-app".to_string(),
                    "kube-dns".to_string(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![dns("UDP"), dns("TCP")]),
    }];
    let mut by_port: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for e in api_server {
        by_port.entry(e.port).or_default().push(&e.cidr);
    }
    for (port, blocks) in by_port {
        rules.push(NetworkPolicyEgressRule {
            to: Some(
                blocks
                    .into_iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.to_string(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![tcp_port(i32::from(port))]),
        });
    }
    rules
}

/// The HMAC Secret's name and data key: the tenant's ref, else `<tenant>-hmac` / `key`.
pub fn hmac_secret(tenant: &Tenant) -> (String, String) {
    match &tenant.spec.hmac_key_secret_ref {
        Some(r) => (
            r.name.clone(),
            r.key.clone().unwrap_or_else(|| "key".to_string()),
        ),
        None => (format!("{}-hmac", tenant.name_any()), "key".to_string()),
    }
}

/// The scanner's command line.
// Over 80 lines: one flag per line, in the order `pd-scanner serve --help` lists them.
pub fn scanner_args(policy: &ScanPolicy, tenant: &Tenant, settings: &Settings) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "-f",
        BUNDLE_DIR,
        "--keys",
        KEYS_DIR,
        "--hmac-key-file",
        "/etc/pd/hmac/key",
        "--listen",
        "0.0.0.0:8080",
        "--log-format",
        "json",
        // The tamper-evident audit chain goes to stdout and logs to stderr, so a log pipeline
        // can tell them apart by stream; the root file system is read-only, so no file sink.
        "--audit-stdout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !settings.api_server.is_empty() {
        // The pod's own namespace comes from its service account's `namespace` file.
        args.extend([
            "--configmap".to_string(),
            bundle_config_map(&policy.name_any()),
        ]);
    }
    if settings.scanners_report() {
        // `$(POD_NAME)` is expanded by the kubelet from the container's downward-API env.
        args.extend(["--report-pod".to_string(), "$(POD_NAME)".to_string()]);
    }
    if !tenant.spec.webhooks.is_empty() {
        args.extend([
            "--webhooks".to_string(),
            format!("{WEBHOOKS_DIR}/{WEBHOOKS_KEY}"),
        ]);
    }
    if !settings.api_server.is_empty() {
        args.extend([
            "--usage-ledger".to_string(),
            ledger_name(&policy.name_any()),
        ]);
    }
    if !tenant.spec.webhooks.is_empty() || !settings.api_server.is_empty() {
        args.extend(["--pod-name".to_string(), "$(POD_NAME)".to_string()]);
    }
    if let Some(n) = policy.spec.scanner.max_prompt_bytes {
        args.extend(["--max-prompt-bytes".to_string(), n.to_string()]);
    }
    if let Some(r) = &tenant.spec.rate_limit {
        args.extend([
            "--rate-limit".to_string(),
            r.requests_per_second.to_string(),
            "--rate-burst".to_string(),
            r.burst.to_string(),
        ]);
    }
    if let Some(days) = tenant.spec.audit_retention_days {
        // Rotation and deletion apply to an audit file sink (`--audit-file`, e.g. set through
        // `PD_AUDIT_FILE` with a volume); the records on stdout are kept by the log pipeline.
        args.extend(["--audit-retention-days".to_string(), days.to_string()]);
    }
    if let Some(tls) = &policy.spec.tls {
        args.extend([
            "--tls-cert".to_string(),
            format!("{TLS_DIR}/tls.crt"),
            "--tls-key".to_string(),
            format!("{TLS_DIR}/tls.key"),
        ]);
        if tls.require_client_cert {
            args.extend([
                "--client-ca".to_string(),
                format!("{TLS_DIR}/{CLIENT_CA_FILE}"),
            ]);
        }
        args.extend([
            "--health-listen".to_string(),
            format!("0.0.0.0:{HEALTH_PORT}"),
        ]);
    }
    args
}

/// Where the client CA lands in the TLS volume.
const CLIENT_CA_FILE: &str = "client-ca.crt";

/// The TLS volume: one projected volume of the serving Secret's `tls.crt` and `tls.key` and,
/// with client certificates required, a `ca.crt` (the serving Secret's or
/// `clientCASecretName`'s) as `client-ca.crt`. Projected Secret volumes are updated in place
/// by the kubelet (an atomic `..data` swap), which is how a renewal reaches the scanner's
/// reload; listing the keys makes a Secret without one fail the mount visibly rather than
/// start a scanner that cannot load. Readable by the scanner's group only (`fsGroup`).
fn tls_volume(tls: &TlsSpec) -> Volume {
    let item = |key: &str, path: &str| KeyToPath {
        key: key.to_string(),
        path: path.to_string(),
        ..KeyToPath::default()
    };
    let mut serving = vec![item("tls.crt", "tls.crt"), item("tls.key", "tls.key")];
    let mut sources = Vec::new();
    let separate_ca = match (&tls.client_ca_secret_name, tls.require_client_cert) {
        (Some(ca), true) => Some(ca.clone()),
        (None, true) => {
            serving.push(item("ca.crt", CLIENT_CA_FILE));
            None
        }
        (_, false) => None,
    };
    sources.push(VolumeProjection {
        secret: Some(SecretProjection {
            name: tls.secret_name.clone(),
            items: Some(serving),
            optional: Some(false),
        }),
        ..VolumeProjection::default()
    });
    if let Some(ca) = separate_ca {
        sources.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: ca,
                items: Some(vec![item("ca.crt", CLIENT_CA_FILE)]),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        });
    }
    Volume {
        name: "tls".to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o440),
        }),
        ..Volume::default()
    }
}

/// Requests CPU so the HPA has something to scale on; limits memory so one pod cannot starve
/// a node. The memory request is the measured need with headroom: the scanner's automata are
/// built at compile time and per-rule caches are capped, so its RSS stays at ~27 MiB (glibc
/// build, peak) through 300,000 distinct prompts at saturation (docs/src/performance.md,
/// `bench/load.sh`); the limit leaves room for concurrent maximal prompts.
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("100m")),
            ("memory".to_string(), q("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("512Mi"))])),
        ..ResourceRequirements::default()
    }
}

/// The restricted Pod Security Standard, field by field.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(SCANNER_UID),
        run_as_group: Some(SCANNER_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// An HTTP probe on the port named `http`: the API port without TLS, the plain health port
/// with it (kubelet presents no client certificate, so it could not probe a mutual-TLS port).
fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn deployment(
    policy: &ScanPolicy,
    tenant: &Tenant,
    names: &Names,
    owner: &Option<OwnerReference>,
    settings: &Settings,
) -> Deployment {
    let container = scanner_container(policy, tenant, names, settings);
    let volumes = scanner_volumes(policy, tenant, names);
    let pod_annotations = pod_annotations(tenant, names);
    Deployment {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(DeploymentSpec {
            // Left unset: the HPA owns the replica count, and setting it here would make every
            // apply fight the autoscaler.
            replicas: None,
            selector: LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(names)),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.scanner.clone()),
                    // A token only for the ConfigMap watch (its Role reads this one ConfigMap
                    // and nothing else); without the watch the scanner never calls the API,
                    // so a compromised pod then holds no credential at all.
                    automount_service_account_token: Some(!settings.api_server.is_empty()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(SCANNER_UID),
                        run_as_group: Some(SCANNER_UID),
                        fs_group: Some(SCANNER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The scanner container: image, args, env, ports, probes, resources and the mounts of
/// [`scanner_volumes`].
// Over 80 lines: one object literal, read top to bottom like the YAML it renders.
fn scanner_container(
    policy: &ScanPolicy,
    tenant: &Tenant,
    names: &Names,
    settings: &Settings,
) -> Container {
    let default_image = settings.scanner_image.as_str();
    let scanner = &policy.spec.scanner;
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    };
    let mut ports = vec![port(api_port_name(names), SCANNER_PORT)];
    let mut mounts = vec![
        mount("bundle", BUNDLE_DIR, true),
        mount("keys", KEYS_DIR, true),
        mount("hmac", HMAC_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    if policy.spec.tls.is_some() {
        ports.push(port("http", HEALTH_PORT));
        mounts.push(mount("tls", TLS_DIR, true));
    }
    let has_webhooks = !tenant.spec.webhooks.is_empty();
    if has_webhooks {
        mounts.push(mount("webhooks", WEBHOOKS_DIR, true));
        for (i, w) in tenant.spec.webhooks.iter().enumerate() {
            mounts.push(mount(
                &format!("webhook-key-{i}"),
                &format!("{WEBHOOK_KEYS_DIR}/{i}"),
                true,
            ));
            if w.previous_secret_ref.is_some() {
                mounts.push(mount(
                    &format!("webhook-prev-{i}"),
                    &format!("{WEBHOOK_KEYS_DIR}/{i}-previous"),
                    true,
                ));
            }
        }
    }
    Container {
        name: "scanner".to_string(),
        image: Some(
            scanner
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(scanner_args(policy, tenant, settings)),
        env: (settings.scanners_report() || has_webhooks).then(|| {
            let mut env = vec![EnvVar {
                name: "POD_NAME".to_string(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_string(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }];
            if has_webhooks {
                // The CA bundle the scanner image ships for webhook deliveries over HTTPS.
                env.push(EnvVar {
                    name: "SSL_CERT_FILE".to_string(),
                    value: Some("/etc/ssl/certs/ca-certificates.crt".to_string()),
                    ..EnvVar::default()
                });
            }
            env
        }),
        ports: Some(ports),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(scanner.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The pod's volumes: the bundle, API keys, HMAC key, `/tmp`, and the TLS and webhook files
/// when the policy and tenant have them.
// Over 80 lines: one volume literal each, read top to bottom like the YAML it renders.
fn scanner_volumes(policy: &ScanPolicy, tenant: &Tenant, names: &Names) -> Vec<Volume> {
    let (hmac_name, hmac_key) = hmac_secret(tenant);
    let has_webhooks = !tenant.spec.webhooks.is_empty();
    let mut volumes = vec![
        Volume {
            name: "bundle".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.bundle.clone(),
                // Only the bundle: the scanner loads every file of this directory.
                items: Some(vec![KeyToPath {
                    key: BUNDLE_KEY.to_string(),
                    path: BUNDLE_KEY.to_string(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "keys".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tenant.spec.api_keys_secret_ref.name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "hmac".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(hmac_name),
                items: Some(vec![KeyToPath {
                    key: hmac_key,
                    path: "key".to_string(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("16Mi".to_string())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    if let Some(tls) = &policy.spec.tls {
        volumes.push(tls_volume(tls));
    }
    if has_webhooks {
        volumes.push(Volume {
            name: "webhooks".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.bundle.clone(),
                items: Some(vec![KeyToPath {
                    key: WEBHOOKS_KEY.to_string(),
                    path: WEBHOOKS_KEY.to_string(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        // Whole Secret volumes (no subPath), so a rotated key reaches the pod. Optional: a
        // signing Secret that does not exist (yet) must not keep the scanners in
        // ContainerCreating; the scanner then refuses just that webhook (`no_key`) until
        // kubelet writes the key, and picks it up at the next delivery.
        let key_volume = |name: String, r: &crate::crd::SecretRef, path: &str| Volume {
            name,
            secret: Some(SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                items: Some(vec![KeyToPath {
                    key: r.key.clone().unwrap_or_else(|| "secret".to_string()),
                    path: path.to_string(),
                    ..KeyToPath::default()
                }]),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        for (i, w) in tenant.spec.webhooks.iter().enumerate() {
            volumes.push(key_volume(
                format!("webhook-key-{i}"),
                &w.secret_ref,
                "current",
            ));
            if let Some(prev) = &w.previous_secret_ref {
                volumes.push(key_volume(format!("webhook-prev-{i}"), prev, "previous"));
            }
        }
    }
    volumes
}

/// The pod template's annotations: Prometheus scraping, and the webhooks file's hash.
fn pod_annotations(tenant: &Tenant, names: &Names) -> BTreeMap<String, String> {
    // No bundle hash on the pod template: the scanners hot-reload the mounted ConfigMap, so a
    // new bundle must not restart them (nor a renewed certificate: they reload that too).
    let mut pod_annotations = BTreeMap::from(
        [
            ("prometheus.io/scrape", "true".to_string()),
            ("prometheus.io/port", metrics_port(names).to_string()),
            ("prometheus.io/path", "/metrics".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    // The webhooks file is read once at start: a new one rolls the pods.
    if let Ok(Some(file)) = webhooks_file(tenant) {
        use sha2::Digest;
        pod_annotations.insert(
            WEBHOOKS_HASH_ANNOTATION.to_string(),
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(file.as_bytes()))
            ),
        );
    }
    pod_annotations
}

fn hpa(
    policy: &ScanPolicy,
    names: &Names,
    owner: &Option<OwnerReference>,
) -> HorizontalPodAutoscaler {
    let s = &policy.spec.scanner;
    HorizontalPodAutoscaler {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: names.scanner.clone(),
            },
            min_replicas: Some(s.replicas.min),
            max_replicas: s.replicas.max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(s.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    }
}

/// `maxUnavailable: 1` rather than `minAvailable`: with `replicas.min: 1` a `minAvailable: 1`
/// budget would block every node drain.
fn pdb(names: &Names, owner: &Option<OwnerReference>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(names, &names.scanner, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
