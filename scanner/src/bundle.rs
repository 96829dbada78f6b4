//! Choosing what to serve: the loaded packs, the policy that binds them, compiled together.
//!
//! Also holds the sample configuration compiled into the binary, so `pd-scanner` works out of
//! the box anywhere — the same files as `config/samples/`, which a user can copy and edit.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::compile::{compile, CompileError, CompiledPack, PackSet};
use crate::load::{load_paths, load_str, LoadError, Loaded};
use crate::policy::Policy;

/// `config/samples/`, as compiled into the binary: (file name, contents).
pub const EMBEDDED_SAMPLES: &[(&str, &str)] = &[
    (
        "learned-rulepack.yaml",
        include_str!("../../config/samples/learned-rulepack.yaml"),
    ),
    (
        "baseline-rulepack.yaml",
        include_str!("../../config/samples/baseline-rulepack.yaml"),
    ),
    (
        "acme-rulepack.yaml",
        include_str!("../../config/samples/acme-rulepack.yaml"),
    ),
    (
        "tenant.yaml",
        include_str!("../../config/samples/tenant.yaml"),
    ),
    (
        "scanpolicy.yaml",
        include_str!("../../config/samples/scanpolicy.yaml"),
    ),
];

/// Where `-f` points when it is not given.
pub const DEFAULT_SAMPLES_DIR: &str = "config/samples";

#[derive(Debug, Error)]
pub enum BundleError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("scan policy `{0}` is not among the loaded ones ({1})")]
    NoSuchPolicy(String, String),
    #[error("several scan policies are loaded ({0}); choose one with --policy")]
    AmbiguousPolicy(String),
    /// A compile error of packs read from files ([`build`], [`build_loaded`]), told with
    /// [`explain`]: which file each pack came from, how to load a missing base pack.
    #[error("{text}")]
    Sourced { text: String, error: CompileError },
}

/// A compile error as a person at a terminal needs it: each problem prefixed with the file and
/// document of the pack it names (a rule pack's name alone does not say which of the files
/// given with `-f` to open), and a base pack that is not loaded with how to load it. The
/// operator keeps [`CompileError`]'s own text: its packs come from the API, not from files.
pub fn explain(error: &CompileError, loaded: &Loaded) -> String {
    let CompileError::Invalid(problems) = error else {
        return error.to_string();
    };
    problems
        .iter()
        .map(|p| {
            let mut line = match loaded.packs.get(&p.pack) {
                Some(source) => format!("{}: {p}", source.origin),
                None => p.to_string(),
            };
            if p.rule.is_none() {
                if let Some(hint) = missing_base_hint(loaded, &p.pack) {
                    line.push_str("; ");
                    line.push_str(&hint);
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How to load the pack `pack` extends, when it is not loaded: the sample files along its
/// `extends` chain when it is a sample pack (`baseline` extends `learned`, so naming one file
/// would only move the error one pack down), else the generic advice.
fn missing_base_hint(loaded: &Loaded, pack: &str) -> Option<String> {
    let base = loaded.packs.get(pack)?.spec.extends.as_deref()?;
    if loaded.packs.contains_key(base) {
        return None;
    }
    let samples = load_embedded().unwrap_or_default();
    let mut files = Vec::new();
    let mut next = Some(base);
    while let Some(name) = next.filter(|n| !loaded.packs.contains_key(*n)) {
        let Some(sample) = samples.packs.get(name) else {
            break;
        };
        let file = sample.origin.path.file_name().unwrap_or_default();
        let file = Path::new(DEFAULT_SAMPLES_DIR).join(file);
        if files.contains(&file) {
            break;
        }
        files.push(file);
        next = sample.spec.extends.as_deref();
    }
    if files.is_empty() {
        return Some(format!(
            "load it too: -f the file that defines `{base}`, or -f the directory that holds it"
        ));
    }
    let flags: Vec<String> = files
        .iter()
        .map(|f| format!("-f {}", f.display()))
        .collect();
    Some(format!(
        "load it too: {} (the sample `{base}`{}), or -f {DEFAULT_SAMPLES_DIR}/ for every sample",
        flags.join(" "),
        if files.len() > 1 {
            " and the packs it extends"
        } else {
            ""
        }
    ))
}

/// Loads `paths`, or with none: `config/samples/` when it exists, else the embedded samples.
pub fn load_sources(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    if !paths.is_empty() {
        return load_paths(paths);
    }
    if Path::new(DEFAULT_SAMPLES_DIR).is_dir() {
        return load_paths(&[PathBuf::from(DEFAULT_SAMPLES_DIR)]);
    }
    load_embedded()
}

/// The embedded samples.
pub fn load_embedded() -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for (name, text) in EMBEDDED_SAMPLES {
        let path = PathBuf::from(format!("<embedded>/{name}"));
        load_str(text, &path, &mut loaded)?;
    }
    Ok(loaded)
}

/// The packs of `loaded` by name.
pub fn pack_set(loaded: &Loaded) -> PackSet {
    loaded
        .packs
        .iter()
        .map(|(n, p)| (n.clone(), p.spec.clone()))
        .collect()
}

/// The policy to apply: the named one; else the only one loaded; else the default policy
/// (every pack no other pack extends, default thresholds and actions).
pub fn select_policy(loaded: &Loaded, name: Option<&str>) -> Result<Policy, BundleError> {
    let names = || {
        loaded
            .policies
            .iter()
            .map(|(p, _)| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) if n == "default" && loaded.policies.iter().all(|(p, _)| p.name != n) => {
            Ok(Policy::default_policy())
        }
        Some(n) => loaded
            .policies
            .iter()
            .find(|(p, _)| p.name == n)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| BundleError::NoSuchPolicy(n.to_string(), names())),
        None => match loaded.policies.as_slice() {
            [] => Ok(Policy::default_policy()),
            [(p, _)] => Ok(p.clone()),
            _ => Err(BundleError::AmbiguousPolicy(names())),
        },
    }
}

/// The `ScanBundle` document for a policy: the policy and exactly the packs it binds (with
/// their `extends` chains), so a scanner needs this one file and nothing else. The operator
/// writes it into the policy's ConfigMap; `pd-scanner bundle` prints it.
pub fn bundle_document(
    loaded: &Loaded,
    policy: Option<&str>,
) -> Result<serde_json::Value, BundleError> {
    let policy = select_policy(loaded, policy)?;
    let packs = pack_set(loaded);
    // Compiling validates everything the scanner would check.
    let compiled = compile(&packs, policy.clone())?;
    let needed = compiled.used_packs();
    let spec = crate::load::BundleSpec {
        packs: packs
            .into_iter()
            .filter(|(n, _)| needed.contains(n.as_str()))
            .collect(),
        policy,
    };
    Ok(serde_json::json!({
        "apiVersion": format!("{}/v1alpha1", crate::load::API_GROUP),
        "kind": "ScanBundle",
        "metadata": {
            "name": spec.policy.name,
            "annotations": {"promptdefenders.io/bundle-hash": compiled.pack.hash},
        },
        "spec": spec,
    }))
}

/// Loads, selects the policy and compiles.
pub fn build(paths: &[PathBuf], policy: Option<&str>) -> Result<CompiledPack, BundleError> {
    build_loaded(paths, policy).map(|(_, pack)| pack)
}

/// [`build`], keeping what was loaded: for callers that also report on the sources (packs the
/// policy leaves unused, say).
pub fn build_loaded(
    paths: &[PathBuf],
    policy: Option<&str>,
) -> Result<(Loaded, CompiledPack), BundleError> {
    let loaded = load_sources(paths)?;
    let policy = select_policy(&loaded, policy)?;
    let pack = compile(&pack_set(&loaded), policy).map_err(|error| BundleError::Sourced {
        text: explain(&error, &loaded),
        error,
    })?;
    Ok((loaded, pack))
}

/// Like [`build`], for a bundle held in memory (a ConfigMap's value read from the API);
/// `origin` names it in errors the way a file path would.
pub fn build_from_text(
    text: &str,
    origin: &Path,
    policy: Option<&str>,
) -> Result<CompiledPack, BundleError> {
    let mut loaded = Loaded::default();
    load_str(text, origin, &mut loaded)?;
    let policy = select_policy(&loaded, policy)?;
    Ok(compile(&pack_set(&loaded), policy)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_samples_match_the_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED_SAMPLES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "add new sample files to EMBEDDED_SAMPLES"
        );
    }

    #[test]
    fn embedded_samples_compile_under_their_policy() {
        let loaded = load_embedded().unwrap();
        let policy = select_policy(&loaded, None).unwrap();
        assert_ne!(policy.name, "default", "the samples carry a ScanPolicy");
        compile(&pack_set(&loaded), policy).unwrap();
        let default = select_policy(&loaded, Some("default")).unwrap();
        assert_eq!(default, Policy::default_policy());
        assert!(matches!(
            select_policy(&loaded, Some("nope")),
            Err(BundleError::NoSuchPolicy(..))
        ));
    }
}
