//! `pd-operator render`: what the operator would apply for a set of YAML files, with no
//! cluster — a GitOps preview, and the input of the golden tests.
//!
//! Rule packs and policies are read by the scanner's own loader (so the same strictness and
//! error messages apply), then the files are read once more for the typed `Tenant` and
//! `ScanPolicy` resources, whose deployment fields the scanner's loader deliberately drops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::ResourceExt;
use pd_engine::bundle::pack_set;
use pd_engine::compile::policy_packs;
use pd_engine::load::{load_paths, LoadError, API_GROUP};
use pd_engine::policy::Policy;
use pd_engine::testing::run_pack_tests;
use serde_yaml::Value;
use thiserror::Error;

use crate::builders::{build_children, BuildError, Children, Settings};
use crate::crd::{ScanPolicy, Tenant};

/// Namespace assumed for a ScanPolicy without one, as `kubectl apply` would.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Error)]
pub enum RenderError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} (document {document}): {message}")]
    Invalid {
        path: PathBuf,
        document: usize,
        message: String,
    },
    #[error("no ScanPolicy found in the given files")]
    NoPolicies,
    #[error(
        "ScanPolicy `{policy}` refers to tenant `{tenant}`, which is not among the given files"
    )]
    NoTenant { policy: String, tenant: String },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("rule pack `{pack}` fails its tests:\n{}", .failures.join("\n"))]
    PackTests { pack: String, failures: Vec<String> },
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("cannot convert to JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The typed resources found in the files.
#[derive(Debug, Default)]
pub struct Resources {
    pub tenants: Vec<Tenant>,
    pub policies: Vec<ScanPolicy>,
}

/// Reads the typed Tenants and ScanPolicies from files and directories (one level deep, hidden
/// entries skipped, `.yaml`/`.yml`/`.json`), like the scanner's loader.
pub fn read_resources(paths: &[PathBuf]) -> Result<Resources, RenderError> {
    let mut out = Resources::default();
    for path in paths {
        let io = |source| RenderError::Io {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io)? {
                let p = entry.map_err(io)?.path();
                let hidden = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                let wanted = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ["yaml", "yml", "json"].contains(&e));
                if !hidden && wanted && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            for f in files {
                read_file(&f, &mut out)?;
            }
        } else {
            read_file(path, &mut out)?;
        }
    }
    Ok(out)
}

fn read_file(path: &Path, out: &mut Resources) -> Result<(), RenderError> {
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let invalid = |message: String| RenderError::Invalid {
            path: path.to_path_buf(),
            document: i + 1,
            message,
        };
        let value = <Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| invalid(format!("invalid YAML: {e}")))?;
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let ours = api_version.is_some_and(|v| v.split('/').next() == Some(API_GROUP));
        if !ours {
            continue;
        }
        match value.get("kind").and_then(Value::as_str) {
            Some("Tenant") => out
                .tenants
                .push(serde_yaml::from_value(value).map_err(|e| invalid(format!("Tenant: {e}")))?),
            Some("ScanPolicy") => {
                let mut p: ScanPolicy = serde_yaml::from_value(value)
                    .map_err(|e| invalid(format!("ScanPolicy: {e}")))?;
                if p.metadata.namespace.is_none() {
                    p.metadata.namespace = Some(DEFAULT_NAMESPACE.to_string());
                }
                out.policies.push(p);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every child of every ScanPolicy in `paths`, policy by policy in file order. Fails — naming
/// the rule — when a bound pack does not compile or fails its tests, as the operator would.
pub fn render(paths: &[PathBuf], settings: &Settings) -> Result<Vec<Children>, RenderError> {
    let loaded = load_paths(paths)?;
    let packs = pack_set(&loaded);
    let resources = read_resources(paths)?;
    if resources.policies.is_empty() {
        return Err(RenderError::NoPolicies);
    }
    let mut out = Vec::new();
    for policy in &resources.policies {
        let wanted = &policy.spec.tenant_ref.name;
        let tenant = resources
            .tenants
            .iter()
            .find(|t| &t.name_any() == wanted)
            .ok_or_else(|| RenderError::NoTenant {
                policy: policy.name_any(),
                tenant: wanted.clone(),
            })?;
        let children = build_children(policy, tenant, &packs, settings)?;
        check_pack_tests(policy, &packs)?;
        out.push(children);
    }
    Ok(out)
}

/// Runs the tests of every pack the policy binds, and of the packs they extend. Shared with the
/// controller, so `render` and the cluster reject the same packs.
pub fn check_pack_tests(
    policy: &ScanPolicy,
    packs: &BTreeMap<String, pd_engine::pack::RulePackSpec>,
) -> Result<(), RenderError> {
    let scanner_policy = Policy {
        name: policy.name_any(),
        tenant: Some(policy.spec.tenant_ref.name.clone()),
        spec: policy.spec.policy_spec(),
    };
    let bound = policy_packs(packs, &scanner_policy).map_err(|source| BuildError::Bundle {
        policy: policy.name_any(),
        source: source.into(),
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for name in bound {
        let mut next = Some(name);
        while let Some(n) = next {
            if !seen.insert(n.clone()) {
                break;
            }
            let report = run_pack_tests(packs, &n);
            if !report.ok() {
                let mut failures: Vec<String> = report.error.into_iter().collect();
                failures.extend(
                    report
                        .outcomes
                        .iter()
                        .filter(|o| !o.passed)
                        .map(|o| format!("  {}: {}", o.name, o.failures.join("; "))),
                );
                return Err(RenderError::PackTests { pack: n, failures });
            }
            next = packs.get(&n).and_then(|s| s.extends.clone());
        }
    }
    Ok(())
}

/// Multi-document YAML of all children.
pub fn to_yaml(children: &[Children]) -> Result<String, RenderError> {
    let mut out = String::new();
    for c in children {
        for v in c.to_values()? {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&v)?);
        }
    }
    Ok(out)
}
