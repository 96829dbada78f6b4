//! Reading rule packs and policies from disk, in exactly the shapes a user applies to a cluster.
//!
//! One loader accepts: bare rule-pack files (YAML or JSON, named after the file), `RulePack` and
//! `ScanPolicy` custom resources (multi-document YAML, as `kubectl apply -f` takes them), and
//! directories of such files. `Tenant` resources and objects of other API groups are skipped so a
//! user can point the scanner at the same folder they apply. Loading is all-or-nothing: the first
//! error aborts and names the file and document, so nothing half-loaded is ever compiled.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use thiserror::Error;

use crate::pack::RulePackSpec;
use crate::policy::{Policy, PolicySpec, DEPLOYMENT_KEYS};

/// API group of the custom resources.
pub const API_GROUP: &str = "promptdefenders.io";

/// Where a document came from: a file and the 1-based index of the document in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.path.display(), self.document)
    }
}

/// A named rule pack as loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct PackSource {
    pub name: String,
    pub spec: RulePackSpec,
    pub origin: Origin,
}

/// Everything read from a set of paths.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Packs by name (names are unique; a clash is a load error).
    pub packs: BTreeMap<String, PackSource>,
    /// Policies in load order.
    pub policies: Vec<(Policy, Origin)>,
    /// Documents that were read but are not for the scanner (Tenants, other API groups).
    pub skipped: Vec<String>,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    #[error("rule pack `{name}` is defined twice: in {first} and in {second}")]
    DuplicatePack {
        name: String,
        first: Origin,
        second: Origin,
    },
    #[error("scan policy `{name}` is defined twice: in {first} and in {second}")]
    DuplicatePolicy {
        name: String,
        first: Origin,
        second: Origin,
    },
    #[error("no rule packs found in {}", paths_list(.0))]
    NoPacks(Vec<PathBuf>),
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// File extensions read from directories.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Loads every file and directory in `paths`. Directories are read one level deep, in name
/// order, skipping hidden entries (kubelet's `..data` and `..<timestamp>` folders of a mounted
/// ConfigMap are hidden; the visible names are symlinks into them).
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            for file in dir_files(path)? {
                load_file(&file, &mut loaded)?;
            }
        } else {
            load_file(path, &mut loaded)?;
        }
    }
    if loaded.packs.is_empty() {
        return Err(LoadError::NoPacks(paths.to_vec()));
    }
    Ok(loaded)
}

/// The files of `dir` the loader reads, in the order it reads them (hidden entries skipped,
/// symlinks followed). The hot-reload watcher fingerprints exactly these.
pub(crate) fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        // `metadata` follows symlinks, which is what a ConfigMap volume needs.
        if wanted
            && std::fs::metadata(&path)
                .map(|m| m.is_file())
                .unwrap_or(false)
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(path: &Path, loaded: &mut Loaded) -> Result<(), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| LoadError::Invalid {
        origin: Origin {
            path: path.to_path_buf(),
            document: 1,
        },
        message: format!(
            "file is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    load_str(&text, path, loaded)
}

/// Loads the documents of one file's text. `path` names the origin and, for a bare rule pack,
/// gives the pack its name (the file stem).
pub fn load_str(text: &str, path: &Path, loaded: &mut Loaded) -> Result<(), LoadError> {
    let mut bare_seen = false;
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            path: path.to_path_buf(),
            document: i + 1,
        };
        let invalid = |message: String| LoadError::Invalid {
            origin: origin.clone(),
            message,
        };
        let value = <Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| invalid(format!("invalid YAML/JSON: {e}")))?;
        let map = match value {
            Value::Null => continue,
            Value::Mapping(m) => m,
            other => {
                return Err(invalid(format!(
                    "expected a mapping (a rule pack or a custom resource), found {}",
                    kind_of(&other)
                )))
            }
        };
        match classify(&map).map_err(&invalid)? {
            Doc::BarePack => {
                if bare_seen {
                    return Err(invalid(
                        "a file may hold only one bare rule pack (its name is the file name); use RulePack resources for several".into(),
                    ));
                }
                bare_seen = true;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                validate_name(&name).map_err(&invalid)?;
                let spec = pack_spec(Value::Mapping(map), &name).map_err(&invalid)?;
                add_pack(loaded, name, spec, origin)?;
            }
            Doc::RulePack { name, spec } => {
                let spec = pack_spec(spec, &name).map_err(&invalid)?;
                add_pack(loaded, name, spec, origin)?;
            }
            Doc::ScanPolicy { name, tenant, spec } => {
                let spec = policy_spec(spec, &name).map_err(&invalid)?;
                if let Some((_, first)) = loaded.policies.iter().find(|(p, _)| p.name == name) {
                    return Err(LoadError::DuplicatePolicy {
                        name,
                        first: first.clone(),
                        second: origin,
                    });
                }
                loaded
                    .policies
                    .push((Policy { name, tenant, spec }, origin));
            }
            Doc::Bundle { spec } => {
                let bundle: BundleSpec = serde_yaml::from_value(spec)
                    .map_err(|e| invalid(format!("scan bundle: {e}")))?;
                bundle.policy.spec.validate().map_err(|e| {
                    invalid(format!("scan bundle policy `{}`: {e}", bundle.policy.name))
                })?;
                for (name, spec) in bundle.packs {
                    validate_name(&name).map_err(&invalid)?;
                    add_pack(loaded, name, spec, origin.clone())?;
                }
                if let Some((_, first)) = loaded
                    .policies
                    .iter()
                    .find(|(p, _)| p.name == bundle.policy.name)
                {
                    return Err(LoadError::DuplicatePolicy {
                        name: bundle.policy.name,
                        first: first.clone(),
                        second: origin,
                    });
                }
                loaded.policies.push((bundle.policy, origin));
            }
            Doc::Skipped(what) => loaded.skipped.push(format!("{what} in {origin}")),
        }
    }
    Ok(())
}

enum Doc {
    BarePack,
    RulePack {
        name: String,
        spec: Value,
    },
    ScanPolicy {
        name: String,
        tenant: Option<String>,
        spec: Value,
    },
    Bundle {
        spec: Value,
    },
    Skipped(String),
}

/// `spec` of a `ScanBundle`: one policy and exactly the packs it needs, resolved by the
/// operator (or `pd-scanner bundle`) and mounted into scanner pods as one file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    pub policy: Policy,
    pub packs: BTreeMap<String, RulePackSpec>,
}

fn classify(map: &Mapping) -> Result<Doc, String> {
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (api_version, kind) = match (api_version, kind) {
        (None, None) => return Ok(Doc::BarePack),
        (Some(a), Some(k)) => (a, k),
        _ => return Err("a resource needs both `apiVersion` and `kind`".into()),
    };
    let group = api_version.split('/').next().unwrap_or_default();
    if group != API_GROUP {
        return Ok(Doc::Skipped(format!("{kind} ({api_version})")));
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{kind} has no metadata.name"))?
        .to_string();
    validate_name(&name)?;
    let spec = map.get("spec").cloned().unwrap_or(Value::Null);
    match kind {
        "RulePack" => Ok(Doc::RulePack { name, spec }),
        "ScanPolicy" => {
            let tenant = match spec.get("tenantRef") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => Some(
                    v.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            format!(
                                "ScanPolicy `{name}`: tenantRef must be a name or {{name: ...}}"
                            )
                        })?
                        .to_string(),
                ),
            };
            Ok(Doc::ScanPolicy { name, tenant, spec })
        }
        "Tenant" => Ok(Doc::Skipped(format!("Tenant `{name}`"))),
        "ScanBundle" => Ok(Doc::Bundle { spec }),
        other => Err(format!(
            "unknown kind `{other}` in {API_GROUP}; expected RulePack, ScanPolicy, ScanBundle or Tenant"
        )),
    }
}

/// Names follow Kubernetes object names (DNS-1123 subdomain, at most 253 characters).
fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{name}`: use lowercase letters, digits, `-` and `.` (a Kubernetes object name)"
        ))
    }
}

fn pack_spec(spec: Value, name: &str) -> Result<RulePackSpec, String> {
    if spec.is_null() {
        return Err(format!("rule pack `{name}` has no spec"));
    }
    serde_yaml::from_value(spec).map_err(|e| format!("rule pack `{name}`: {e}"))
}

fn policy_spec(spec: Value, name: &str) -> Result<PolicySpec, String> {
    let spec = match spec {
        Value::Null => Value::Mapping(Mapping::new()),
        Value::Mapping(mut m) => {
            for key in DEPLOYMENT_KEYS {
                m.remove(*key);
            }
            Value::Mapping(m)
        }
        other => {
            return Err(format!(
                "scan policy `{name}`: spec must be a mapping, found {}",
                kind_of(&other)
            ))
        }
    };
    let spec: PolicySpec =
        serde_yaml::from_value(spec).map_err(|e| format!("scan policy `{name}`: {e}"))?;
    spec.validate()
        .map_err(|e| format!("scan policy `{name}`: {e}"))?;
    Ok(spec)
}

fn add_pack(
    loaded: &mut Loaded,
    name: String,
    spec: RulePackSpec,
    origin: Origin,
) -> Result<(), LoadError> {
    if let Some(first) = loaded.packs.get(&name) {
        return Err(LoadError::DuplicatePack {
            name,
            first: first.origin.clone(),
            second: origin,
        });
    }
    loaded
        .packs
        .insert(name.clone(), PackSource { name, spec, origin });
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, file: &str) -> Result<Loaded, LoadError> {
        let mut l = Loaded::default();
        load_str(text, Path::new(file), &mut l)?;
        Ok(l)
    }

    const RULE: &str = "{id: r1, category: other, severity: low, weight: 5, regex: 'x'}";

    #[test]
    fn bare_pack_is_named_after_its_file() {
        let l = load(
            &format!("version: '1'\nrules: [{RULE}]\n"),
            "dir/my-pack.yaml",
        )
        .unwrap();
        assert_eq!(l.packs["my-pack"].spec.rules.len(), 1);
    }

    #[test]
    fn json_files_load_too() {
        let json = r#"{"version": "1", "rules": [{"id": "r1", "category": "other", "severity": "low", "weight": 5, "keywords": {"any": ["x"]}}]}"#;
        let l = load(json, "p.json").unwrap();
        assert!(l.packs.contains_key("p"));
    }

    #[test]
    fn custom_resources_in_one_multi_document_file() {
        let text = format!(
            "apiVersion: promptdefenders.io/v1alpha1\nkind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n---\n\
             apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {{name: base, namespace: x}}\nspec:\n  version: '2'\n  rules: [{RULE}]\n---\n\
             apiVersion: promptdefenders.io/v1alpha1\nkind: ScanPolicy\nmetadata: {{name: pol}}\nspec:\n  tenantRef: {{name: acme}}\n  scanner: {{replicas: {{min: 2}}}}\n  rulePacks: [base]\n  thresholds: {{warn: 20, block: 40}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other}}\n"
        );
        let l = load(&text, "all.yaml").unwrap();
        assert_eq!(l.packs["base"].spec.version, "2");
        let (p, origin) = &l.policies[0];
        assert_eq!(p.name, "pol");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(p.spec.thresholds.block, 40);
        assert_eq!(origin.document, 3);
        assert_eq!(l.skipped.len(), 2, "{:?}", l.skipped);
    }

    #[test]
    fn errors_name_file_document_and_rule() {
        let text = format!(
            "apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {{name: a}}\nspec: {{version: '1', rules: [{RULE}]}}\n---\n\
             apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {{name: b}}\nspec:\n  version: '1'\n  rules:\n  - {{id: bad-one, category: other, severity: low, weight: 5}}\n"
        );
        let e = load(&text, "f.yaml").unwrap_err().to_string();
        assert!(e.contains("f.yaml (document 2)"), "{e}");
        assert!(e.contains("rule pack `b`"), "{e}");
        assert!(e.contains("bad-one"), "{e}");
    }

    #[test]
    fn unknown_fields_invalid_yaml_and_kinds_are_errors() {
        let e = load("version: '1'\nrulez: []\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rulez"), "{e}");
        let e = load("version: '1'\nrules: [\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid YAML"), "{e}");
        let e = load(
            "apiVersion: promptdefenders.io/v1alpha1\nkind: RulePak\nmetadata: {name: a}\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown kind `RulePak`"), "{e}");
        let e = load("- 1\n- 2\n", "p.yaml").unwrap_err().to_string();
        assert!(e.contains("found a list"), "{e}");
    }

    #[test]
    fn policy_spec_is_validated_and_strict() {
        let base = "apiVersion: promptdefenders.io/v1alpha1\nkind: ScanPolicy\nmetadata: {name: p}\nspec:\n";
        let e = load(
            &format!("{base}  thresholds: {{warn: 90, block: 10}}\n"),
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must not be above"), "{e}");
        let e = load(&format!("{base}  mood: audit\n"), "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mood"), "{e}");
    }

    #[test]
    fn scan_bundles_round_trip_through_the_loader() {
        let text = format!(
            "apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {{name: base}}\nspec: {{version: '1', rules: [{RULE}]}}\n---\n\
             apiVersion: promptdefenders.io/v1alpha1\nkind: ScanPolicy\nmetadata: {{name: pol}}\nspec: {{tenantRef: t, rulePacks: [base]}}\n"
        );
        let l = load(&text, "in.yaml").unwrap();
        let doc = crate::bundle::bundle_document(&l, None).unwrap();
        let again = load(&serde_json::to_string(&doc).unwrap(), "bundle.json").unwrap();
        assert_eq!(again.packs["base"].spec, l.packs["base"].spec);
        assert_eq!(again.policies[0].0, l.policies[0].0);
        let e = load(
            "apiVersion: promptdefenders.io/v1alpha1\nkind: ScanBundle\nmetadata: {name: x}\nspec: {packs: {}}\n",
            "b.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("scan bundle") && e.contains("policy"), "{e}");
    }

    #[test]
    fn duplicate_pack_names_are_rejected() {
        let one = format!("apiVersion: promptdefenders.io/v1alpha1\nkind: RulePack\nmetadata: {{name: a}}\nspec: {{version: '1', rules: [{RULE}]}}\n");
        let e = load(&format!("{one}---\n{one}"), "p.yaml").unwrap_err();
        assert!(matches!(e, LoadError::DuplicatePack { .. }), "{e}");
    }

    #[test]
    fn directories_skip_hidden_entries_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            format!("version: '1'\nrules: [{RULE}]\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        std::fs::write(dir.path().join("..data/b.yaml"), "garbage: [").unwrap();
        let l = load_paths(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(l.packs.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn empty_sources_and_missing_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_paths(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(e, LoadError::NoPacks(_)), "{e}");
        let e = load_paths(&[dir.path().join("missing.yaml")]).unwrap_err();
        assert!(e.to_string().contains("missing.yaml"), "{e}");
    }
}
