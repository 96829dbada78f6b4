//! Deciding whether to run, connecting, and the cluster operations the tests share.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Client, Config};
use rand::Rng;
use serde_json::{json, Value};

use crate::cleanup::Cleanup;
use crate::probe::{ProbeOutput, ProbeSpec, RunningProbe, Script, DEFAULT_CURL_IMAGE};
use crate::resources::{
    describe_conditions, rulepack_resource, scanpolicy_resource, tenant_resource, E2E_LABEL,
};
use crate::wait::{poll_until, Poll};
use crate::{failed, timeouts, Result};

/// Printed after every skip reason.
pub const SKIP_HINT: &str = "set PD_E2E=1 with a kind cluster from e2e/run.sh";

/// How long the API server gets to answer the first request before the cluster counts as
/// unreachable.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the suite runs, decided from `PD_E2E` alone (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Skip(&'static str),
    Run,
}

/// Reads a `PD_E2E` value. `Err` for values that are neither yes nor no.
pub fn gate(value: Option<&str>) -> std::result::Result<Gate, String> {
    match value.map(str::trim) {
        None | Some("" | "0" | "false" | "no") => Ok(Gate::Skip(
            "PD_E2E is not set, so no Kubernetes cluster was contacted",
        )),
        Some("1" | "true" | "yes") => Ok(Gate::Run),
        Some(other) => Err(format!(
            "PD_E2E={other:?} is not understood: use PD_E2E=1 to run against the cluster of \
             KUBECONFIG, or leave it unset to skip"
        )),
    }
}

/// The one line a skipped test prints.
pub fn skip_line(test: &str, reason: &str) -> String {
    format!("SKIPPED e2e::{test}: {reason} ({SKIP_HINT})")
}

/// Start of every test: `None` (after printing the skip line) when the suite is off, the
/// connected cluster when it is on. Panics — failing the test — when `PD_E2E=1` and the
/// cluster cannot be used.
pub async fn setup(test: &'static str) -> Option<Cluster> {
    let value = std::env::var_os("PD_E2E").map(|v| v.to_string_lossy().into_owned());
    match gate(value.as_deref()) {
        Ok(Gate::Skip(reason)) => {
            // Straight to the stderr handle, not `println!`: the test harness captures the
            // print macros of passing tests, and a skip must be seen in every run.
            let _ = writeln!(std::io::stderr(), "{}", skip_line(test, reason));
            None
        }
        Ok(Gate::Run) => match Cluster::connect(test).await {
            Ok(c) => Some(c),
            Err(e) => panic!("e2e::{test}: PD_E2E=1 but {e}"),
        },
        Err(e) => panic!("e2e::{test}: {e}"),
    }
}

/// Who may call a tenant's scanners, read from the Tenant the policy names.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub tenant: String,
    /// Namespace the Tenant's first `clients` entry selects (by `kubernetes.io/metadata.name`).
    pub namespace: String,
    /// That entry's `podSelector.matchLabels`.
    pub labels: BTreeMap<String, String>,
    /// `apiKeysSecretRef` and the first key in it.
    pub key_secret: String,
    pub key_id: String,
}

/// A scanner pod as the tests compare them before and after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerPod {
    pub name: String,
    pub uid: String,
    /// Pod IP, ready to put in a URL (IPv6 in brackets).
    pub host: String,
    /// Sum over containers.
    pub restarts: i32,
    pub ready: bool,
}

/// A connected cluster plus what this test created.
pub struct Cluster {
    pub client: Client,
    pub test: &'static str,
    /// Namespace of the sample ScanPolicy; the tests create their own policies here too,
    /// since the sample Tenant only allows this namespace (`PD_E2E_NAMESPACE`).
    pub namespace: String,
    /// The sample ScanPolicy applied by `e2e/run.sh` (`PD_E2E_POLICY`).
    pub policy: String,
    /// A namespace no Tenant lets call its scanners (`PD_E2E_FOREIGN_NAMESPACE`).
    pub foreign_namespace: String,
    /// Image of probe and load Pods (`PD_E2E_CURL_IMAGE`).
    pub curl_image: String,
    pub cleanup: Cleanup,
    suffix: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

impl Cluster {
    async fn connect(test: &'static str) -> Result<Cluster> {
        let mut config = match tokio::time::timeout(API_TIMEOUT, Config::infer()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "no Kubernetes config was found (KUBECONFIG, ~/.kube/config or in-cluster): \
                     {e}. Run e2e/run.sh, or point KUBECONFIG at a disposable kind cluster"
                )))
            }
            Err(_) => return Err(failed("reading the Kubernetes config took over 5 s")),
        };
        config.connect_timeout = Some(API_TIMEOUT);
        config.read_timeout = Some(Duration::from_secs(60));
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config)?;
        match tokio::time::timeout(API_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "the Kubernetes API at {url} did not answer: {e}. Is the kind cluster up? \
                     (e2e/run.sh creates it)"
                )))
            }
            Err(_) => {
                return Err(failed(format!(
                    "the Kubernetes API at {url} did not answer within {}s. Is the kind \
                     cluster up? (e2e/run.sh creates it)",
                    API_TIMEOUT.as_secs()
                )))
            }
        }
        let suffix = format!("{:06x}", rand::rng().random::<u32>() & 0xff_ffff);
        Ok(Cluster {
            client,
            test,
            namespace: env_or("PD_E2E_NAMESPACE", "acme-prod"),
            policy: env_or("PD_E2E_POLICY", "acme-chat"),
            foreign_namespace: env_or("PD_E2E_FOREIGN_NAMESPACE", "pd-e2e-foreign"),
            curl_image: env_or("PD_E2E_CURL_IMAGE", DEFAULT_CURL_IMAGE),
            cleanup: Cleanup::new(),
            suffix,
        })
    }

    /// A name unique to this test run: `e2e-<what>-<random>`.
    pub fn name(&self, what: &str) -> String {
        format!("e2e-{what}-{}", self.suffix)
    }

    /// Prints a result line for this test (shown with `--nocapture`).
    pub fn report(&self, message: &str) {
        println!("e2e::{}: {message}", self.test);
    }

    pub fn policies(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &scanpolicy_resource())
    }

    pub fn rulepacks(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &rulepack_resource())
    }

    pub fn tenants(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &tenant_resource())
    }

    /// Typed API in the test namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn object(kind: &str, name: &str, namespace: &str, spec: Value) -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "promptdefenders.io/v1alpha1",
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {E2E_LABEL.0: E2E_LABEL.1}
            },
            "spec": spec
        }))?)
    }

    /// Creates a RulePack in the test namespace, deleted when the test ends.
    pub async fn create_rulepack(&self, name: &str, spec: Value) -> Result<DynamicObject> {
        let obj = Self::object("RulePack", name, &self.namespace, spec)?;
        let created = self
            .rulepacks()
            .create(&PostParams::default(), &obj)
            .await?;
        self.cleanup.add(rulepack_resource(), &self.namespace, name);
        Ok(created)
    }

    /// Creates a ScanPolicy in the test namespace, deleted when the test ends.
    pub async fn create_policy(&self, name: &str, spec: Value) -> Result<DynamicObject> {
        let obj = Self::object("ScanPolicy", name, &self.namespace, spec)?;
        let created = self.policies().create(&PostParams::default(), &obj).await?;
        self.cleanup
            .add(scanpolicy_resource(), &self.namespace, name);
        Ok(created)
    }

    /// The sample policy, with a hint when it is missing.
    pub async fn sample_policy(&self) -> Result<DynamicObject> {
        self.policies().get_opt(&self.policy).await?.ok_or_else(|| {
            failed(format!(
                "ScanPolicy {}/{} does not exist; e2e/run.sh applies config/samples/ first",
                self.namespace, self.policy
            ))
        })
    }

    /// Polls ScanPolicy `name` until `done(object)` holds; the timeout message shows the
    /// conditions last seen.
    pub async fn wait_policy<F>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: F,
    ) -> Result<DynamicObject>
    where
        F: Fn(&DynamicObject) -> bool,
    {
        let api = self.policies();
        poll_until(
            &format!("ScanPolicy {}/{name} {what}", self.namespace),
            timeout,
            Duration::from_secs(1),
            || async {
                let p = api.get(name).await?;
                Ok(if done(&p) {
                    Poll::Ready(p)
                } else {
                    Poll::Pending(format!(
                        "activeBundleHash {}, {}",
                        p.data["status"]["activeBundleHash"],
                        describe_conditions(&p.data)
                    ))
                })
            },
        )
        .await
    }

    /// `Ready=True` for the current generation.
    pub async fn wait_policy_ready(&self, name: &str, timeout: Duration) -> Result<DynamicObject> {
        self.wait_policy(name, "to be Ready", timeout, |p| {
            let ready = crate::resources::condition(&p.data, "Ready")
                .is_some_and(|c| c["status"] == "True");
            let observed = p.data["status"]["observedGeneration"].as_i64();
            ready && observed.is_some() && observed == p.metadata.generation
        })
        .await
    }

    /// Reads the Tenant a policy names: its first client selector and API-key Secret.
    pub async fn client_identity(&self, policy: &DynamicObject) -> Result<ClientIdentity> {
        let tenant_name = policy.data["spec"]["tenantRef"]["name"]
            .as_str()
            .ok_or_else(|| failed("the policy has no spec.tenantRef.name"))?
            .to_string();
        let tenant = self.tenants().get(&tenant_name).await?;
        let spec = &tenant.data["spec"];
        let client = &spec["clients"][0];
        let namespace = client["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            .as_str()
            .unwrap_or(&self.namespace)
            .to_string();
        let labels: BTreeMap<String, String> = client["podSelector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let key_secret = spec["apiKeysSecretRef"]["name"]
            .as_str()
            .ok_or_else(|| failed(format!("Tenant {tenant_name} has no apiKeysSecretRef")))?
            .to_string();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = secrets.get_opt(&key_secret).await?.ok_or_else(|| {
            failed(format!(
                "Secret {}/{key_secret} (the Tenant's API keys) does not exist; e2e/run.sh \
                 creates it",
                self.namespace
            ))
        })?;
        let key_id = secret
            .data
            .unwrap_or_default()
            .into_keys()
            .next()
            .ok_or_else(|| failed(format!("Secret {key_secret} holds no API key")))?;
        Ok(ClientIdentity {
            tenant: tenant_name,
            namespace,
            labels,
            key_secret,
            key_id,
        })
    }

    /// The token of `id`'s API key (to hand it to a Pod in another namespace).
    pub async fn api_key(&self, id: &ClientIdentity) -> Result<String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = secrets.get(&id.key_secret).await?;
        let bytes = secret
            .data
            .unwrap_or_default()
            .remove(&id.key_id)
            .ok_or_else(|| failed(format!("key {} vanished from its Secret", id.key_id)))?;
        String::from_utf8(bytes.0).map_err(|_| failed("the API key is not UTF-8"))
    }

    /// Creates `name` if it does not exist (never deletes it: namespaces are slow to go).
    pub async fn ensure_namespace(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(name).await?.is_some() {
            return Ok(());
        }
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {E2E_LABEL.0: E2E_LABEL.1}}
        }))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Scanner pods of `policy` that are not being deleted.
    pub async fn scanner_pods(&self, policy: &str) -> Result<Vec<ScannerPod>> {
        let pods: Api<Pod> = self.api();
        let lp = ListParams::default().labels(&format!(
            "app.kubernetes.io/name=pd-scanner,app.kubernetes.io/instance={policy}"
        ));
        let mut out = Vec::new();
        for p in pods.list(&lp).await? {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let status = p.status.unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let restarts = status
                .container_statuses
                .unwrap_or_default()
                .iter()
                .map(|c| c.restart_count)
                .sum();
            let ip = status.pod_ip.unwrap_or_default();
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            out.push(ScannerPod {
                name: p.metadata.name.unwrap_or_default(),
                uid: p.metadata.uid.unwrap_or_default(),
                host,
                restarts,
                ready,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Waits until `policy` has exactly `count` ready scanner pods and no others.
    pub async fn wait_scanner_pods(
        &self,
        policy: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ScannerPod>> {
        poll_until(
            &format!("{count} ready scanner pods of {policy}"),
            timeout,
            Duration::from_secs(1),
            || async {
                let pods = self.scanner_pods(policy).await?;
                let ready = pods
                    .iter()
                    .filter(|p| p.ready && !p.host.is_empty())
                    .count();
                Ok(if ready == count && pods.len() == count {
                    Poll::Ready(pods)
                } else {
                    Poll::Pending(format!("{} pods, {ready} ready: {pods:?}", pods.len()))
                })
            },
        )
        .await
    }

    /// A probe in `namespace` with this cluster's curl image.
    pub fn probe(&self, prefix: &str, namespace: &str, script: Script) -> ProbeSpec {
        ProbeSpec::new(prefix, namespace, &self.curl_image, script)
    }

    /// Creates the probe Pod; call [`RunningProbe::finish`] for its output.
    pub async fn start_probe(&self, spec: &ProbeSpec) -> Result<RunningProbe> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &spec.namespace);
        let name = format!(
            "{}-{:05x}",
            spec.prefix,
            rand::rng().random::<u32>() & 0xf_ffff
        );
        // Normally deleted by `finish`; this covers a test that panics in between.
        self.cleanup.add_always(
            kube::discovery::ApiResource::erase::<Pod>(&()),
            &spec.namespace,
            &name,
        );
        RunningProbe::create(pods, spec, name).await
    }

    /// Runs a probe to completion.
    pub async fn run_probe(&self, spec: &ProbeSpec) -> Result<ProbeOutput> {
        self.start_probe(spec)
            .await?
            .finish(timeouts::PROBE_POD)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_zero_skips_without_contacting_anything() {
        for v in [
            None,
            Some(""),
            Some("0"),
            Some(" 0 "),
            Some("false"),
            Some("no"),
        ] {
            assert!(matches!(gate(v), Ok(Gate::Skip(_))), "{v:?}");
        }
    }

    #[test]
    fn one_runs() {
        for v in ["1", "true", "yes", " 1\n"] {
            assert_eq!(gate(Some(v)), Ok(Gate::Run), "{v:?}");
        }
    }

    #[test]
    fn anything_else_is_an_error_not_a_skip() {
        let e = gate(Some("kind")).unwrap_err();
        assert!(e.contains("PD_E2E=\"kind\""), "{e}");
    }

    #[test]
    fn skip_line_names_the_test_and_the_fix() {
        let Ok(Gate::Skip(reason)) = gate(None) else {
            panic!("unset must skip")
        };
        assert_eq!(
            skip_line("scan_through_service", reason),
            "SKIPPED e2e::scan_through_service: PD_E2E is not set, so no Kubernetes cluster \
             was contacted (set PD_E2E=1 with a kind cluster from e2e/run.sh)"
        );
    }
}
