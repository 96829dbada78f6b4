//! Choosing what to serve: the loaded packs, the policy that binds them, compiled together.
//!
//! Also holds the sample configuration compiled into the binary, so `pd-scanner` works out of
//! the box anywhere — the same files as `config/samples/`, which a user can copy and edit.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::compile::{compile_checked, compile_with, CompileError, CompiledPack, PackSet};
use crate::limits::Limits;
use crate::load::{document_line, load_snapshot, rule_line, LoadError, Loaded, Origin};
use crate::policy::Policy;
use crate::sources::{Snapshot, SourceFile};

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
                Some(source) => {
                    // The loader kept no text: read the file again for the line (an error
                    // path, at a terminal). A file gone or changed since only costs the line.
                    let text = std::fs::read_to_string(&source.origin.path).ok();
                    let at = located(&source.origin, text.as_deref(), p.rule.as_deref());
                    format!("{at}{p}")
                }
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

/// `path:line (document N): `, the line that of `rule` when it can be found in `text` (the
/// file's contents), else of the document; `path (document N): ` without the text.
fn located(origin: &Origin, text: Option<&str>, rule: Option<&str>) -> String {
    let line = text.and_then(|text| {
        let start = document_line(text, origin.document)?;
        Some(rule.map_or(start, |r| rule_line(text, start, r)))
    });
    match line {
        Some(l) => format!(
            "{}:{l} (document {}): ",
            origin.path.display(),
            origin.document
        ),
        None => format!("{origin}: "),
    }
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
    // The paths are the repository's; run from elsewhere, say where they are.
    let whose = if Path::new(DEFAULT_SAMPLES_DIR).is_dir() {
        ""
    } else {
        "; these paths are relative to the root of a Prompt Defenders checkout"
    };
    Some(format!(
        "load it too: {} (the sample `{base}`{}), or -f {DEFAULT_SAMPLES_DIR}/ for every sample{whose}",
        flags.join(" "),
        if files.len() > 1 {
            " and the packs it extends"
        } else {
            ""
        }
    ))
}

impl BundleError {
    /// One line per problem for readers who may not see the sources (`/readyz`, the Pod
    /// annotation): nothing quoted from any file. [`build_snapshot`]'s [`Refused`] adds where
    /// each problem is.
    pub fn public_lines(&self) -> Vec<String> {
        match self {
            BundleError::Load(e) => vec![e.public()],
            BundleError::Compile(e) => e.public_lines(),
            // Names of loaded (validated) policies, and the operator's own `--policy`.
            other => vec![other.to_string()],
        }
    }
}

/// A source set that was refused, one line per problem, each prefixed with where the problem
/// is (file, line, document) when that is known: `detail` in full (for the log and the command
/// line), `public` quoting nothing from any file (for `/readyz` and the Pod annotation).
#[derive(Debug, Error)]
#[error("{}", detail.join("\n"))]
pub struct Refused {
    pub error: BundleError,
    pub detail: Vec<String>,
    pub public: Vec<String>,
}

/// Loads `paths`, or with none: `config/samples/` when it exists, else the embedded samples.
pub fn load_sources(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    load_sources_with(paths, &Limits::default())
}

/// [`load_sources`] under `limits`.
pub fn load_sources_with(paths: &[PathBuf], limits: &Limits) -> Result<Loaded, LoadError> {
    load_snapshot(&read_sources(paths, limits)?)
}

/// Reads the source set [`load_sources`] loads (see [`crate::sources::read`]).
pub fn read_sources(paths: &[PathBuf], limits: &Limits) -> Result<Snapshot, LoadError> {
    if !paths.is_empty() {
        return crate::sources::read(paths, limits);
    }
    if Path::new(DEFAULT_SAMPLES_DIR).is_dir() {
        return crate::sources::read(&[PathBuf::from(DEFAULT_SAMPLES_DIR)], limits);
    }
    Ok(embedded_snapshot())
}

fn embedded_snapshot() -> Snapshot {
    Snapshot {
        requested: Vec::new(),
        files: EMBEDDED_SAMPLES
            .iter()
            .map(|(name, text)| SourceFile {
                path: PathBuf::from(format!("<embedded>/{name}")),
                bytes: text.as_bytes().to_vec(),
            })
            .collect(),
        recent: false,
    }
}

/// The embedded samples.
pub fn load_embedded() -> Result<Loaded, LoadError> {
    load_snapshot(&embedded_snapshot())
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
    bundle_document_with(loaded, policy, &Limits::default())
}

/// [`bundle_document`] under `limits`.
pub fn bundle_document_with(
    loaded: &Loaded,
    policy: Option<&str>,
    limits: &Limits,
) -> Result<serde_json::Value, BundleError> {
    let policy = select_policy(loaded, policy)?;
    let packs = pack_set(loaded);
    // Compiling validates everything the scanner would check.
    let compiled = compile_with(&packs, policy.clone(), limits)?;
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

/// Reads, loads, selects the policy and compiles with every check `pd-scanner test` makes
/// ([`compile_checked`]).
pub fn build(
    paths: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
) -> Result<CompiledPack, Box<Refused>> {
    build_loaded(paths, policy, limits).map(|(_, pack)| pack)
}

/// [`build`], keeping what was loaded: for callers that also report on the sources (packs the
/// policy leaves unused, say).
pub fn build_loaded(
    paths: &[PathBuf],
    policy: Option<&str>,
    limits: &Limits,
) -> Result<(Loaded, CompiledPack), Box<Refused>> {
    let snapshot = read_sources(paths, limits).map_err(|e| {
        let detail = vec![e.to_string()];
        Box::new(Refused {
            public: vec![e.public()],
            error: e.into(),
            detail,
        })
    })?;
    build_snapshot(&snapshot, policy, limits)
}

/// Loads, selects the policy and compiles a source set already read, with every check
/// `pd-scanner test` makes. What `serve` loads, first and on every reload.
pub fn build_snapshot(
    snapshot: &Snapshot,
    policy: Option<&str>,
    limits: &Limits,
) -> Result<(Loaded, CompiledPack), Box<Refused>> {
    let loaded = load_snapshot(snapshot).map_err(|e| refused(e.into(), None, snapshot))?;
    let policy = select_policy(&loaded, policy).map_err(|e| refused(e, Some(&loaded), snapshot))?;
    let pack = compile_checked(&pack_set(&loaded), policy, limits)
        .map_err(|e| refused(e.into(), Some(&loaded), snapshot))?;
    Ok((loaded, pack))
}

/// Like [`build_snapshot`], for a bundle held in memory (a ConfigMap's value read from the
/// API); `origin` names it in errors the way a file path would. The size limit for files holds
/// for it too.
pub fn build_from_text(
    text: &str,
    origin: &Path,
    policy: Option<&str>,
    limits: &Limits,
) -> Result<CompiledPack, Box<Refused>> {
    let snapshot = Snapshot {
        requested: vec![origin.to_path_buf()],
        files: vec![SourceFile {
            path: origin.to_path_buf(),
            bytes: text.as_bytes().to_vec(),
        }],
        recent: false,
    };
    if text.len() as u64 > limits.max_file_bytes {
        let e = LoadError::TooLarge {
            path: origin.to_path_buf(),
            size: text.len() as u64,
            limit: limits.max_file_bytes,
        };
        return Err(refused(e.into(), None, &snapshot));
    }
    build_snapshot(&snapshot, policy, limits).map(|(_, pack)| pack)
}

/// `error` as located lines: each problem prefixed with where it is (file, line and document
/// of the pack or policy, the rule's own line when it can be found) when `loaded` says where
/// that pack or policy came from.
fn refused(error: BundleError, loaded: Option<&Loaded>, snapshot: &Snapshot) -> Box<Refused> {
    let text_of = |origin: &Origin| {
        snapshot
            .files
            .iter()
            .find(|f| f.path == origin.path)
            .and_then(|f| std::str::from_utf8(&f.bytes).ok())
    };
    let at = |origin: &Origin, rule: Option<&str>| located(origin, text_of(origin), rule);
    let (mut public, mut detail): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut add = |shown: String, full: String| {
        if !public.contains(&shown) {
            public.push(shown);
            detail.push(full);
        }
    };
    match (&error, loaded) {
        (BundleError::Compile(CompileError::Invalid(problems)), Some(loaded)) => {
            for p in problems {
                let prefix = loaded
                    .packs
                    .get(&p.pack)
                    .map(|source| at(&source.origin, p.rule.as_deref()))
                    .unwrap_or_default();
                let mut full = format!("{prefix}{p}");
                if p.rule.is_none() {
                    if let Some(hint) = missing_base_hint(loaded, &p.pack) {
                        full.push_str("; ");
                        full.push_str(&hint);
                    }
                }
                add(format!("{prefix}{}", p.public()), full);
            }
        }
        (BundleError::Compile(e @ CompileError::Policy { policy, .. }), Some(loaded)) => {
            let prefix = loaded
                .policies
                .iter()
                .find(|(p, _)| &p.name == policy)
                .map(|(_, origin)| at(origin, None))
                .unwrap_or_default();
            for line in e.public_lines() {
                add(format!("{prefix}{line}"), format!("{prefix}{e}"));
            }
        }
        _ => add(error.public_lines().join("\n"), error.to_string()),
    }
    Box::new(Refused {
        error,
        detail,
        public,
    })
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
        crate::compile::compile(&pack_set(&loaded), policy).unwrap();
        let default = select_policy(&loaded, Some("default")).unwrap();
        assert_eq!(default, Policy::default_policy());
        assert!(matches!(
            select_policy(&loaded, Some("nope")),
            Err(BundleError::NoSuchPolicy(..))
        ));
    }
    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            requested: vec![PathBuf::from("dir")],
            files: files
                .iter()
                .map(|(p, t)| SourceFile {
                    path: PathBuf::from(p),
                    bytes: t.as_bytes().to_vec(),
                })
                .collect(),
            recent: false,
        }
    }

    #[test]
    fn refusals_name_file_and_line_and_quote_nothing() {
        let good = "version: '1'\nrules:\n- {id: g, category: other, severity: low, weight: 5, regex: x}\n";
        let bad = "# a pack\nversion: '1'\nrules:\n- {id: ok, category: other, severity: low, weight: 5, regex: y}\n- id: broken\n  category: other\n  severity: low\n  weight: 5\n  regex: '(hunter2'\n";
        let s = snapshot(&[("dir/good.yaml", good), ("dir/bad.yaml", bad)]);
        let r = build_snapshot(&s, None, &Limits::default()).unwrap_err();
        assert!(r.error.to_string().contains("hunter2"), "{}", r.error);
        assert!(
            r.to_string().starts_with("dir/bad.yaml:5 (document 1): rule pack `bad`, rule `broken`: invalid regex: regex parse error"),
            "{r}"
        );
        assert_eq!(
            r.public,
            ["dir/bad.yaml:5 (document 1): rule pack `bad`, rule `broken`: invalid regex (a syntax error; `pd-scanner test` shows where)"]
        );

        // A cycle no policy binds is refused, located at each pack's document.
        let a = "version: '1'\nextends: b\nrules: []\n";
        let b = "---\nversion: '1'\nextends: a\nrules: []\n";
        let s = snapshot(&[
            ("dir/good.yaml", good),
            ("dir/a.yaml", a),
            ("dir/b.yaml", b),
        ]);
        let r = build_snapshot(&s, None, &Limits::default()).unwrap_err();
        assert_eq!(
            r.public,
            [
                "dir/a.yaml:1 (document 1): rule pack `a`: `extends` forms a cycle: a -> b -> a",
                "dir/b.yaml:1 (document 1): rule pack `b`: `extends` forms a cycle: b -> a -> b",
            ]
        );

        let r = build_from_text(
            "",
            Path::new("configmap/x[bundle.json]"),
            None,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(
            r.public,
            ["configmap/x[bundle.json]: the file is empty (nothing but whitespace or comments); a source file must hold at least one document"]
        );
        let limits = Limits {
            max_file_bytes: 10,
            ..Limits::default()
        };
        let r = build_from_text(good, Path::new("cm"), None, &limits).unwrap_err();
        assert!(matches!(
            r.error,
            BundleError::Load(LoadError::TooLarge { .. })
        ));
    }
}
