//! Reading rule packs and policies from disk, in exactly the shapes a user applies to a cluster.
//!
//! One loader accepts: bare rule-pack files (YAML or JSON, named after the file), `RulePack` and
//! `ScanPolicy` custom resources (multi-document YAML, as `kubectl apply -f` takes them), and
//! directories of such files. `Tenant` resources and objects of other API groups are skipped so a
//! user can point the scanner at the same folder they apply. Loading is all-or-nothing: the first
//! error aborts and names the file, line and document, so nothing half-loaded is ever compiled.
//! Which files are read, and how, is [`crate::sources`]'s business.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use thiserror::Error;

use crate::limits::{shown_name, Limits};
use crate::pack::RulePackSpec;
use crate::policy::{Policy, PolicySpec, DEPLOYMENT_KEYS};
use crate::sources::Snapshot;

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
    /// A document that does not load (boxed: it is the largest variant by far, and every
    /// `Result` carrying a `LoadError` pays for the largest).
    #[error("{0}")]
    Invalid(Box<InvalidDocument>),
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
    /// Nothing but whitespace, comments or empty documents: refused rather than loaded as "no
    /// packs here", because that is what a file truncated to nothing (or caught between an
    /// editor's truncate and write) looks like.
    #[error("{path}: the file is empty (nothing but whitespace or comments); a source file must hold at least one document")]
    Empty { path: PathBuf },
    #[error("{path}: the file is {size} bytes; the limit is {limit} (--max-pack-bytes)")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// A symlink whose target is outside the directory holding it.
    #[error("{path} is a symlink to {target}, outside {dir}; links are followed only within their own directory (name the target itself to load it)")]
    OutsideSource {
        path: PathBuf,
        target: PathBuf,
        dir: PathBuf,
    },
    /// The file changed while it was being read: a writer is still at work.
    #[error("{path} changed while it was being read; try again once it is written")]
    Changing { path: PathBuf },
}

/// Why a document does not load, and where.
#[derive(Debug, Error)]
#[error("{}: {message}", at(.origin, *.line, *.column))]
pub struct InvalidDocument {
    pub origin: Origin,
    /// 1-based line and column of the problem when the parser knows them, else the line where
    /// the document starts.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Quotes nothing from the source: it may be shown to anyone who can reach `/readyz`.
    pub summary: String,
    /// May quote the source (a parser's own words, a bad value).
    pub message: String,
}

impl LoadError {
    fn invalid(
        origin: Origin,
        line: Option<usize>,
        column: Option<usize>,
        summary: String,
        message: String,
    ) -> Self {
        LoadError::Invalid(Box::new(InvalidDocument {
            origin,
            line,
            column,
            summary,
            message,
        }))
    }

    /// The error for readers who may not see the sources (`/readyz`, the Pod annotation): it
    /// names the file, line and what is wrong, and quotes nothing from any file.
    pub fn public(&self) -> String {
        match self {
            LoadError::Invalid(d) => format!("{}: {}", at(&d.origin, d.line, d.column), d.summary),
            LoadError::DuplicatePolicy {
                name,
                first,
                second,
            } => format!(
                "scan policy {} is defined twice: in {first} and in {second}",
                shown_name(name)
            ),
            // Where the link points is the log's business.
            LoadError::OutsideSource { path, dir, .. } => format!(
                "{} is a symlink to a file outside {}; links are followed only within their own directory",
                path.display(),
                dir.display()
            ),
            // The others hold paths, validated names, numbers and the OS's own words.
            other => other.to_string(),
        }
    }
}

/// `path:line:column (document n)`, with what is known of the position.
fn at(origin: &Origin, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(
            "{}:{l}:{c} (document {})",
            origin.path.display(),
            origin.document
        ),
        (Some(l), None) => format!(
            "{}:{l} (document {})",
            origin.path.display(),
            origin.document
        ),
        _ => origin.to_string(),
    }
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why one document does not load: `summary` for public error text (nothing from the source
/// but validated names), `message` with every detail.
struct Bad {
    summary: String,
    message: String,
}

impl Bad {
    /// A message that quotes nothing from the source but validated names and numbers.
    fn plain(message: impl Into<String>) -> Bad {
        let message = message.into();
        Bad {
            summary: message.clone(),
            message,
        }
    }

    fn hiding(summary: impl Into<String>, message: impl Into<String>) -> Bad {
        Bad {
            summary: summary.into(),
            message: message.into(),
        }
    }
}

/// Loads every file and directory in `paths` under the default [`Limits`] (see
/// [`crate::sources`] for which files are read).
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    load_paths_with(paths, &Limits::default())
}

/// [`load_paths`] under `limits`.
pub fn load_paths_with(paths: &[PathBuf], limits: &Limits) -> Result<Loaded, LoadError> {
    load_snapshot(&crate::sources::read(paths, limits)?)
}

/// Loads the files of a read source set. Loading is all-or-nothing: the first error aborts.
pub fn load_snapshot(snapshot: &Snapshot) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    for file in &snapshot.files {
        let text = std::str::from_utf8(&file.bytes).map_err(|e| {
            let valid = &file.bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let summary = format!(
                "the file is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            );
            LoadError::invalid(
                Origin {
                    path: file.path.clone(),
                    document: 1,
                },
                Some(line),
                None,
                summary.clone(),
                summary,
            )
        })?;
        load_str(text, &file.path, &mut loaded)?;
    }
    if loaded.packs.is_empty() {
        return Err(LoadError::NoPacks(snapshot.requested.clone()));
    }
    Ok(loaded)
}

/// Loads the documents of one file's text. `path` names the origin and, for a bare rule pack,
/// gives the pack its name (the file stem). Text with no document at all (empty, whitespace,
/// comments) is an error: see [`LoadError::Empty`].
pub fn load_str(text: &str, path: &Path, loaded: &mut Loaded) -> Result<(), LoadError> {
    let mut bare_seen = false;
    let mut documents = 0;
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = DocAt {
            text,
            index: i,
            origin: Origin {
                path: path.to_path_buf(),
                document: i + 1,
            },
        };
        let Some(map) = at.mapping(doc)? else {
            continue;
        };
        documents += 1;
        match classify(&map).map_err(|b| at.invalid(b))? {
            Doc::BarePack => {
                if bare_seen {
                    return Err(at.invalid(Bad::plain(
                        "a file may hold only one bare rule pack (its name is the file name); use RulePack resources for several",
                    )));
                }
                bare_seen = true;
                at.add_bare_pack(map, loaded)?;
            }
            Doc::RulePack { name, spec } => at.add_rule_pack(name, spec, loaded)?,
            Doc::ScanPolicy { name, tenant, spec } => {
                at.add_scan_policy(name, tenant, spec, loaded)?
            }
            Doc::Bundle { spec } => at.add_bundle(spec, loaded)?,
            Doc::Skipped(what) => loaded.skipped.push(format!("{what} in {}", at.origin)),
        }
    }
    if documents == 0 {
        return Err(LoadError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// One document of a file's text, being loaded: where it is, to locate its errors.
struct DocAt<'t> {
    text: &'t str,
    /// 0-based position among the file's documents.
    index: usize,
    origin: Origin,
}

impl DocAt<'_> {
    /// Semantic errors carry the document's first line; the parser's carry their own.
    fn invalid(&self, bad: Bad) -> LoadError {
        LoadError::invalid(
            self.origin.clone(),
            document_line(self.text, self.index + 1),
            None,
            bad.summary,
            bad.message,
        )
    }

    /// Schema errors are located by deserializing the document again, typed (as `typed` does),
    /// from the text: only then does the parser know where the offending field is.
    fn schema(
        &self,
        bad: Bad,
        typed: fn(&str, usize) -> Option<serde_yaml::Location>,
    ) -> LoadError {
        let mut e = self.invalid(bad);
        if let (Some(loc), LoadError::Invalid(d)) = (typed(self.text, self.index), &mut e) {
            d.line = Some(loc.line());
            d.column = Some(loc.column());
        }
        e
    }

    /// The document as a mapping; `None` for an empty document (a stray `---`), which is
    /// skipped rather than counted.
    fn mapping(&self, doc: serde_yaml::Deserializer<'_>) -> Result<Option<Mapping>, LoadError> {
        let value = match <Value as serde::Deserialize>::deserialize(doc) {
            Ok(v) => v,
            Err(e) => return Err(syntax_error(self.text, self.origin.clone(), &e)),
        };
        match value {
            Value::Null => Ok(None),
            Value::Mapping(m) => Ok(Some(m)),
            other => Err(self.invalid(Bad::plain(format!(
                "expected a mapping (a rule pack or a custom resource), found {}",
                kind_of(&other)
            )))),
        }
    }

    /// A bare rule pack is named for its file (the file's stem), so that name must be valid.
    fn add_bare_pack(self, map: Mapping, loaded: &mut Loaded) -> Result<(), LoadError> {
        let name = self
            .origin
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        validate_name(&name).map_err(|b| self.invalid(b))?;
        let spec = pack_spec(Value::Mapping(map), &name)
            .map_err(|b| self.schema(b, locate::<RulePackSpec>))?;
        add_pack(loaded, name, spec, self.origin)
    }

    fn add_rule_pack(
        self,
        name: String,
        spec: Value,
        loaded: &mut Loaded,
    ) -> Result<(), LoadError> {
        let spec =
            pack_spec(spec, &name).map_err(|b| self.schema(b, locate::<Resource<RulePackSpec>>))?;
        add_pack(loaded, name, spec, self.origin)
    }

    fn add_scan_policy(
        self,
        name: String,
        tenant: Option<String>,
        spec: Value,
        loaded: &mut Loaded,
    ) -> Result<(), LoadError> {
        let spec = policy_spec(spec, &name).map_err(|b| self.invalid(b))?;
        add_policy(loaded, Policy { name, tenant, spec }, self.origin)
    }

    /// A bundle's policy is validated before any of its packs is added, and its packs are
    /// added before its policy, as a policy and the packs it binds come from one document.
    fn add_bundle(self, spec: Value, loaded: &mut Loaded) -> Result<(), LoadError> {
        let bundle: BundleSpec = serde_yaml::from_value(spec).map_err(|e| {
            self.schema(
                Bad::hiding(
                    "scan bundle: does not match the ScanBundle format (an unknown or missing field, or a value of the wrong type)",
                    format!("scan bundle: {e}"),
                ),
                locate::<Resource<BundleSpec>>,
            )
        })?;
        bundle.policy.spec.validate().map_err(|e| {
            self.invalid(Bad::hiding(
                format!(
                    "scan bundle policy {}: {e}",
                    shown_name(&bundle.policy.name)
                ),
                format!("scan bundle policy `{}`: {e}", bundle.policy.name),
            ))
        })?;
        for (name, spec) in bundle.packs {
            validate_name(&name).map_err(|b| self.invalid(b))?;
            add_pack(loaded, name, spec, self.origin.clone())?;
        }
        add_policy(loaded, bundle.policy, self.origin)
    }
}

/// Policy names are unique across everything loaded: a second policy of one name would
/// silently shadow the first.
fn add_policy(loaded: &mut Loaded, policy: Policy, origin: Origin) -> Result<(), LoadError> {
    if let Some((_, first)) = loaded.policies.iter().find(|(p, _)| p.name == policy.name) {
        return Err(LoadError::DuplicatePolicy {
            name: policy.name,
            first: first.clone(),
            second: origin,
        });
    }
    loaded.policies.push((policy, origin));
    Ok(())
}

/// A YAML/JSON syntax error, located. The parser's message names what it expected, but it
/// stays in `message`: the public summary is a fixed text, and says "truncated" when the
/// parser ran out of text in the middle of a structure — what a half-written file looks like.
fn syntax_error(text: &str, origin: Origin, e: &serde_yaml::Error) -> LoadError {
    let location = e.location();
    let at_end = location
        .as_ref()
        .is_some_and(|l| l.index() >= text.trim_end().len());
    let summary = if at_end {
        "invalid YAML/JSON: the text ends in the middle of a structure (truncated, or still being written?)"
    } else {
        "invalid YAML/JSON syntax"
    };
    // Running out of text, the parser points one line past the last; point at the last.
    let (line, column) = match &location {
        Some(_) if at_end => {
            let last = text.trim_end().lines().enumerate().last();
            (
                Some(last.map_or(1, |(i, _)| i + 1)),
                Some(last.map_or(1, |(_, l)| l.chars().count() + 1)),
            )
        }
        Some(l) => (Some(l.line()), Some(l.column())),
        None => (document_line(text, origin.document), None),
    };
    LoadError::invalid(
        origin,
        line,
        column,
        summary.into(),
        format!("invalid YAML/JSON: {e}"),
    )
}

/// A custom resource as far as locating an error in its `spec` needs.
#[derive(serde::Deserialize)]
struct Resource<T> {
    #[allow(dead_code)]
    spec: T,
}

/// Where deserializing document `index` (0-based) of `text` as `T` fails, if it does.
fn locate<T: serde::de::DeserializeOwned>(
    text: &str,
    index: usize,
) -> Option<serde_yaml::Location> {
    let doc = serde_yaml::Deserializer::from_str(text).nth(index)?;
    T::deserialize(doc).err()?.location()
}

/// The 1-based line where document `document` (1-based) of `text` starts, as far as a scan of
/// the lines can tell: the first line that is not blank, a comment or a directive starts the
/// first document, and every `---` marker a new one (a `...` marker ends one). Good for
/// pointing at a document; not a YAML parser.
pub fn document_line(text: &str, document: usize) -> Option<usize> {
    let mut seen = 0;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("---") {
            seen += 1;
            inside = true;
        } else if marker("...") {
            inside = false;
            continue;
        } else {
            let t = line.trim();
            if inside || t.is_empty() || t.starts_with('#') || line.starts_with('%') {
                continue;
            }
            seen += 1;
            inside = true;
        }
        if seen == document {
            return Some(i + 1);
        }
    }
    None
}

/// The 1-based line of the rule `id` in the document starting at `from` (a line naming it
/// after an `id:` key), else `from`. For pointing at a rule in error text; a heuristic, not a
/// parser, and falls back to the document.
pub fn rule_line(text: &str, from: usize, id: &str) -> usize {
    let is_id_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        if i + 1 > from && (line.starts_with("---") || line.starts_with("...")) {
            break;
        }
        for (pos, _) in line.match_indices(id) {
            let bytes = line.as_bytes();
            let end = pos + id.len();
            if (pos > 0 && is_id_byte(bytes[pos - 1]))
                || bytes.get(end).is_some_and(|&b| is_id_byte(b))
            {
                continue;
            }
            let before = line[..pos].trim_end_matches([' ', '\t', '"', '\'']);
            let key = before
                .strip_suffix(':')
                .map(|k| k.trim_end_matches([' ', '\t', '"', '\'']));
            if key.is_some_and(|k| {
                k.ends_with("id") && !k[..k.len() - 2].bytes().last().is_some_and(is_id_byte)
            }) {
                return i + 1;
            }
        }
    }
    from
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

fn classify(map: &Mapping) -> Result<Doc, Bad> {
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (api_version, kind) = match (api_version, kind) {
        (None, None) => return Ok(Doc::BarePack),
        (Some(a), Some(k)) => (a, k),
        _ => return Err(Bad::plain("a resource needs both `apiVersion` and `kind`")),
    };
    let group = api_version.split('/').next().unwrap_or_default();
    if group != API_GROUP {
        return Ok(Doc::Skipped(format!("{kind} ({api_version})")));
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Bad::hiding(
                format!("a {API_GROUP} resource has no metadata.name"),
                format!("{kind} has no metadata.name"),
            )
        })?
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
                            Bad::plain(format!(
                                "ScanPolicy `{name}`: tenantRef must be a name or {{name: ...}}"
                            ))
                        })?
                        .to_string(),
                ),
            };
            Ok(Doc::ScanPolicy { name, tenant, spec })
        }
        "Tenant" => Ok(Doc::Skipped(format!("Tenant `{name}`"))),
        "ScanBundle" => Ok(Doc::Bundle { spec }),
        other => Err(Bad::hiding(
            format!("unknown kind in {API_GROUP}; expected RulePack, ScanPolicy, ScanBundle or Tenant"),
            format!(
                "unknown kind `{other}` in {API_GROUP}; expected RulePack, ScanPolicy, ScanBundle or Tenant"
            ),
        )),
    }
}

/// Names follow Kubernetes object names (DNS-1123 subdomain, at most 253 characters).
fn validate_name(name: &str) -> Result<(), Bad> {
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
        let rule = "use lowercase letters, digits, `-` and `.` (a Kubernetes object name)";
        Err(Bad::hiding(
            format!("invalid name: {rule}"),
            format!("invalid name `{name}`: {rule}"),
        ))
    }
}

/// `name` is validated before a spec is read, so it may appear in summaries.
fn pack_spec(spec: Value, name: &str) -> Result<RulePackSpec, Bad> {
    if spec.is_null() {
        return Err(Bad::plain(format!("rule pack `{name}` has no spec")));
    }
    let rules = spec.get("rules").cloned();
    serde_yaml::from_value(spec).map_err(|e| {
        let message = e.to_string();
        let rule = rules
            .as_ref()
            .and_then(|r| failing_rule(r, &message))
            .map(|id| {
                // Some of the format's own checks name the rule already in the message.
                let named = message.contains(&format!("rule `{id}`"));
                (
                    format!(", rule {}", shown_name(&id)),
                    if named {
                        String::new()
                    } else {
                        format!(", rule `{id}`")
                    },
                )
            })
            .unwrap_or_default();
        Bad::hiding(
            format!("rule pack `{name}`{}: does not match the rule-pack format (an unknown or missing field, or a value of the wrong type)", rule.0),
            format!("rule pack `{name}`{}: {message}", rule.1),
        )
    })
}

/// The id of the rule in `rules` (a pack's `spec.rules`) that fails to deserialize with exactly
/// `message`, the error of the whole spec: the rule a schema error is in, so the error can name
/// it as it names the rule of a compile error. None when the error is outside the rules, or the
/// rule has no string id.
fn failing_rule(rules: &Value, message: &str) -> Option<String> {
    rules.as_sequence()?.iter().find_map(|rule| {
        let e = serde_yaml::from_value::<crate::pack::Rule>(rule.clone()).err()?;
        (e.to_string() == message)
            .then(|| rule.get("id")?.as_str().map(str::to_string))
            .flatten()
    })
}

fn policy_spec(spec: Value, name: &str) -> Result<PolicySpec, Bad> {
    let spec = match spec {
        Value::Null => Value::Mapping(Mapping::new()),
        Value::Mapping(mut m) => {
            for key in DEPLOYMENT_KEYS {
                m.remove(*key);
            }
            Value::Mapping(m)
        }
        other => {
            return Err(Bad::plain(format!(
                "scan policy `{name}`: spec must be a mapping, found {}",
                kind_of(&other)
            )))
        }
    };
    let spec: PolicySpec = serde_yaml::from_value(spec).map_err(|e| {
        Bad::hiding(
            format!("scan policy `{name}`: does not match the ScanPolicy format (an unknown or missing field, or a value of the wrong type)"),
            format!("scan policy `{name}`: {e}"),
        )
    })?;
    // Validation messages hold numbers and category names only.
    spec.validate()
        .map_err(|e| Bad::plain(format!("scan policy `{name}`: {e}")))?;
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
        let e = load(&text, "f.yaml").unwrap_err();
        let public = e.public();
        let e = e.to_string();
        // The rule's line: the typed parse locates the field.
        assert!(e.starts_with("f.yaml:12:"), "{e}");
        assert!(e.contains("(document 2)"), "{e}");
        // The format's own check names the rule; it is not named twice.
        assert!(
            e.contains("rule pack `b`: rule `bad-one` has no matcher"),
            "{e}"
        );
        assert!(public.starts_with("f.yaml:12:"), "{public}");
        assert!(
            public.contains("rule pack `b`, rule `bad-one`: does not match the rule-pack format"),
            "{public}"
        );
    }

    #[test]
    fn a_schema_error_names_its_rule_only_when_it_is_in_one() {
        let pack = |rules: &str| format!("version: '1'\nrules:\n{rules}");
        let ok = "- {id: fine, category: other, severity: low, weight: 5, regex: x}\n";
        // In the second rule: named, by id, in the detail and (a valid name) in public text.
        let e = load(
            &pack(&format!(
                "{ok}- {{id: r2, category: other, severity: low, weight: 5, regexx: x}}\n"
            )),
            "p.yaml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("rule pack `p`, rule `r2`: unknown field `regexx`"),
            "{e}"
        );
        assert!(
            e.public()
                .contains("rule pack `p`, rule `r2`: does not match"),
            "{}",
            e.public()
        );
        // An id that is not a name is never quoted in public text.
        let e = load(
            &pack("- {id: 'a b', category: other, severity: low, weight: heavy, regex: x}\n"),
            "p.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("rule `a b`: invalid type"), "{e}");
        assert!(
            e.public()
                .contains("rule (a value that is not a valid name): does not match"),
            "{}",
            e.public()
        );
        // Outside the rules: no rule named, even when a rule has an error of its own.
        let e = load(
            &format!("version: '1'\ncolour: red\nrules:\n{ok}"),
            "p.yaml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("rule pack `p`: unknown field `colour`"),
            "{e}"
        );
    }

    #[test]
    fn empty_and_truncated_files_are_errors_with_a_line() {
        for text in ["", "  \n\n", "# only a comment\n", "---\n---\n"] {
            let e = load(text, "p.yaml").unwrap_err();
            assert!(matches!(e, LoadError::Empty { .. }), "{text:?}: {e}");
            assert!(e.to_string().contains("p.yaml: the file is empty"), "{e}");
        }
        // Cut in the middle of a flow list, a quoted string, a JSON object.
        for (text, line) in [
            ("version: '1'\nrules: [\n  {id: a, category: other,", 3),
            ("version: '1'\nrules:\n- id: a\n  regex: 'abc", 4),
            ("{\"version\": \"1\", \"rules\": [", 1),
        ] {
            let e = load(text, "p.yaml").unwrap_err();
            let public = e.public();
            assert!(
                public.starts_with(&format!("p.yaml:{line}:")) && public.contains("truncated"),
                "{text:?}: {public}"
            );
        }
        // A syntax error elsewhere is not called truncation.
        let public = load("x: [}\ny: 1\n", "p.yaml").unwrap_err().public();
        assert!(public.starts_with("p.yaml:1:"), "{public}");
        assert!(public.ends_with("invalid YAML/JSON syntax"), "{public}");
    }

    #[test]
    fn public_errors_quote_nothing_from_the_file() {
        let secret = "s3cr3t-VALUE";
        for text in [
            format!("{secret}: 1\n"),
            format!("version: '1'\nrules:\n- {{id: a, category: {secret}, severity: low, weight: 5, regex: x}}\n"),
            format!("apiVersion: promptdefenders.io/v1\nkind: {secret}\nmetadata: {{name: a}}\n"),
            format!("apiVersion: promptdefenders.io/v1\nkind: RulePack\nmetadata: {{name: {secret}}}\n"),
            format!("'{secret}\n"),
            format!("version: '1'\nrules: [{secret}\n"),
        ] {
            let e = load(&text, "p.yaml").unwrap_err();
            assert!(e.to_string().contains("p.yaml"), "{e}");
            let public = e.public();
            assert!(!public.contains(secret), "{public}");
            assert!(public.starts_with("p.yaml:"), "{public}");
        }
    }

    #[test]
    fn documents_and_rules_are_located_by_line() {
        let text = "# c\n\nversion: '1'\nrules:\n- id: a\n  x: 1\n---\nkind: x\n...\nfoo: 1\n- {id: b, z: 1}\n";
        assert_eq!(document_line(text, 1), Some(3));
        assert_eq!(document_line(text, 2), Some(7));
        assert_eq!(document_line(text, 3), Some(10));
        assert_eq!(document_line(text, 4), None);
        assert_eq!(rule_line(text, 3, "a"), 5);
        assert_eq!(rule_line(text, 10, "b"), 11);
        assert_eq!(rule_line(text, 3, "b"), 3, "not in that document");
        let json = "{\"rules\": [\n {\"id\": \"ab\"},\n {\"ruleid\": \"a\"},\n {\"id\": \"a\"}]}";
        assert_eq!(rule_line(json, 1, "a"), 4);
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
