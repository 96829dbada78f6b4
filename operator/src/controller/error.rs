//! The one error type of the reconcilers, and how build and pack problems map onto it.

use pd_engine::bundle::BundleError;
use pd_engine::compile::CompileError;
use thiserror::Error;

use crate::builders::BuildError;

#[derive(Debug, Error)]
pub enum Error {
    /// Any API failure: transport, 409 conflict, 5xx. Retried with backoff, never fatal.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The API server refused or failed the apply of one child; the policy's status names it
    /// (`ApplyFailed`) with the API's message.
    #[error("apply of {kind} `{name}`: {}", api_message(.source))]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} `{name}` has no {field}")]
    MissingField {
        kind: &'static str,
        name: String,
        field: &'static str,
    },
    #[error("tenant `{0}` does not exist")]
    MissingTenant(String),
    /// The policy's name cannot name its children ([`check_policy_name`](crate::status::check_policy_name)).
    #[error("{0}")]
    InvalidName(String),
    /// Writing the status itself failed (nothing left to report the failure to).
    #[error("status write: {0}")]
    Status(#[source] kube::Error),
    /// A bound pack does not compile or fails its tests. The policy's status says so; the
    /// bundle ConfigMap is not written, so the last good bundle keeps serving.
    #[error("rule pack `{pack}`{}: {message}", .rule.as_ref().map(|r| format!(", rule `{r}`")).unwrap_or_default())]
    InvalidPack {
        pack: String,
        rule: Option<String>,
        message: String,
    },
    /// The policy cannot be built for another reason (tenant mismatch, namespace not allowed).
    #[error(transparent)]
    Build(BuildError),
    #[error("cannot serialize: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking compile task panicked or was cancelled.
    #[error("compile task: {0}")]
    Blocking(String),
}

impl Error {
    /// True for a 409 from the API server.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) | Error::Apply { source: kube::Error::Api(s), .. } if s.is_conflict())
    }

    /// True when retrying the same request cannot succeed: the API server refused it (400,
    /// 403, 422, …) rather than failed it (409, 429, 5xx, transport). Such a policy is `Stalled`.
    pub fn is_permanent(&self) -> bool {
        let source = match self {
            Error::Kube(e) | Error::Apply { source: e, .. } => e,
            _ => return false,
        };
        matches!(source, kube::Error::Api(s) if (400..500).contains(&s.code) && ![404, 408, 409, 429].contains(&s.code))
    }
}

/// The API server's own words for a failure (its `Status.message`), else the error's text.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Bundle { policy, source } => invalid_pack(&policy, &source),
            other => Error::Build(other),
        }
    }
}

/// Names the first broken rule (status messages stay short; the RulePack's own status lists
/// all of them).
fn invalid_pack(policy: &str, source: &BundleError) -> Error {
    match source {
        BundleError::Compile(CompileError::Invalid(problems)) if !problems.is_empty() => {
            let first = &problems[0];
            let more = problems.len() - 1;
            Error::InvalidPack {
                pack: first.pack.clone(),
                rule: first.rule.clone(),
                message: if more > 0 {
                    format!("{} (and {more} more problem(s))", first.message)
                } else {
                    first.message.clone()
                },
            }
        }
        other => Error::InvalidPack {
            pack: policy.to_string(),
            rule: None,
            message: other.to_string(),
        },
    }
}

pub(super) fn missing(kind: &'static str, name: &str, field: &'static str) -> Error {
    Error::MissingField {
        kind,
        name: name.to_string(),
        field,
    }
}
