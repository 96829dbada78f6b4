//! Pure status computation: what the operator writes into `RulePack.status` and
//! `ScanPolicy.status`.
//!
//! Kept apart from the controller so the conditions a user sees (`kubectl wait
//! --for=condition=Ready rp/x`, Argo CD health) are decided by tested code that needs no API
//! server. The reconciler only adds `now` and writes the result.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use pd_engine::compile::{compile, resolve, CompileError, PackSet};
use pd_engine::policy::Policy;
use pd_engine::testing::{run_pack_tests, test_compiled};

use crate::builders::Names;
use crate::crd::{
    condition, set_condition, RuleError, RulePackStatus, ScanPolicyStatus, TestSummary,
};

/// Failing tests listed in status; the rest are counted only (status objects must stay small).
pub const MAX_LISTED_FAILURES: usize = 10;

/// Compiles pack `name` (with its `extends` chain, from `packs`), runs its tests, and updates
/// `previous` into the new status: `Compiled`, `TestsPassed` and `Ready` conditions, rule count,
/// content hash, errors by rule id and the test summary.
// Over 80 lines: each condition is set next to the facts that decide it, in status order.
pub fn rulepack_status(
    packs: &PackSet,
    name: &str,
    generation: Option<i64>,
    previous: Option<&RulePackStatus>,
    now: &Time,
) -> RulePackStatus {
    let mut status = RulePackStatus {
        observed_generation: generation,
        conditions: previous.map(|p| p.conditions.clone()).unwrap_or_default(),
        ..RulePackStatus::default()
    };
    let set = |cs: &mut Vec<_>, t: &str, ok: bool, reason: &str, msg: String| {
        set_condition(cs, condition(t, ok, reason, msg, generation, now));
    };

    let mut policy = Policy::default_policy();
    policy.spec.rule_packs = vec![name.to_string()];
    let compiled = compile(packs, policy).and_then(|c| resolve(packs, name).map(|r| (c, r)));
    let (compiled, resolved) = match compiled {
        Ok(ok) => ok,
        Err(e) => {
            let errors: Vec<RuleError> = match &e {
                CompileError::Invalid(problems) => problems
                    .iter()
                    .map(|p| RuleError {
                        pack: p.pack.clone(),
                        rule: p.rule.clone(),
                        message: p.message.clone(),
                    })
                    .collect(),
                CompileError::Policy { message, .. } => vec![RuleError {
                    pack: name.to_string(),
                    rule: None,
                    message: message.clone(),
                }],
            };
            let msg = format!("{} problem(s); see status.errors", errors.len());
            set(
                &mut status.conditions,
                "Compiled",
                false,
                "CompileFailed",
                msg.clone(),
            );
            set(
                &mut status.conditions,
                "TestsPassed",
                false,
                "NotRun",
                "the pack does not compile".into(),
            );
            set(
                &mut status.conditions,
                "Ready",
                false,
                "CompileFailed",
                msg.clone(),
            );
            // Only an edit of the pack (or of one it extends) can fix it.
            set_progress(
                &mut status.conditions,
                Progress::Stalled,
                "CompileFailed",
                &msg,
                generation,
                now,
            );
            status.errors = errors;
            return status;
        }
    };
    status.rule_count = Some(u32::try_from(resolved.rules.len()).unwrap_or(u32::MAX));
    status.content_hash = Some(resolved.content_hash());
    set(
        &mut status.conditions,
        "Compiled",
        true,
        "Compiled",
        format!("{} rules enabled", compiled.rule_count()),
    );

    // The pack was just compiled alone under the default policy, which is what its tests run
    // against: reuse it rather than compile again (`run_pack_tests` would).
    let report = packs.get(name).map_or_else(
        || run_pack_tests(packs, name),
        |spec| test_compiled(&compiled, spec, name),
    );
    status.notes = report
        .lints
        .iter()
        .take(MAX_LISTED_FAILURES)
        .cloned()
        .collect();
    let passed = u32::try_from(report.passed()).unwrap_or(u32::MAX);
    let failed = u32::try_from(report.failed()).unwrap_or(u32::MAX);
    let failures: Vec<String> = report
        .outcomes
        .iter()
        .filter(|o| !o.passed)
        .take(MAX_LISTED_FAILURES)
        .map(|o| format!("{}: {}", o.name, o.failures.join("; ")))
        .collect();
    if report.ok() {
        let msg = format!("{passed} tests passed");
        set(
            &mut status.conditions,
            "TestsPassed",
            true,
            "TestsPassed",
            msg,
        );
        set(
            &mut status.conditions,
            "Ready",
            true,
            "Ready",
            "compiled and tested".into(),
        );
        set_progress(
            &mut status.conditions,
            Progress::Done,
            "Ready",
            "",
            generation,
            now,
        );
    } else {
        let msg = format!("{failed} of {} tests failed", passed + failed);
        set(
            &mut status.conditions,
            "TestsPassed",
            false,
            "TestsFailed",
            msg.clone(),
        );
        set(
            &mut status.conditions,
            "Ready",
            false,
            "TestsFailed",
            msg.clone(),
        );
        set_progress(
            &mut status.conditions,
            Progress::Stalled,
            "TestsFailed",
            &msg,
            generation,
            now,
        );
    }
    status.tests = Some(TestSummary {
        passed,
        failed,
        failures,
    });
    status
}

/// `Ready` reason when a bound pack does not compile or fails its tests.
pub const REASON_PACKS_INVALID: &str = "RulePacksInvalid";
/// `Ready` reason when the policy's `tenantRef` names no Tenant.
pub const REASON_TENANT_NOT_FOUND: &str = "TenantNotFound";
/// `Ready` reason when the Tenant does not list the policy's namespace.
pub const REASON_NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// `Ready` reason when the policy's name cannot name its children (too long, or not a DNS-1035
/// label, e.g. `acme.chat`): every apply would be refused by the API server.
pub const REASON_INVALID_NAME: &str = "InvalidName";
/// `Ready` reason when the API server refused or failed an apply; the message is the API's.
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";
/// `Ready` reason when `scanner.image` is outside the operator's `--scanner-image-allow` list.
pub const REASON_IMAGE_NOT_ALLOWED: &str = "ImageNotAllowed";
/// `Ready` reason when a read the reconcile needs (Tenant, RulePacks, pods) failed.
pub const REASON_API_ERROR: &str = "APIError";
/// `Ready` reason when the scanner Deployment stopped progressing (`progressDeadlineSeconds`).
pub const REASON_PROGRESS_DEADLINE: &str = "ProgressDeadlineExceeded";
/// `Ready` reason when a scanner refused the desired bundle and keeps serving an older one.
pub const REASON_BUNDLE_REJECTED: &str = "BundleRejected";
/// `Ready` reason while the rollout or the bundle reload is under way.
pub const REASON_SCANNERS_NOT_READY: &str = "ScannersNotReady";
/// `Ready` reason while some ready scanner still serves another bundle than the desired one.
pub const REASON_BUNDLE_NOT_SERVED: &str = "BundleNotServed";

/// kstatus/Flux condition: the controller is still working towards the spec (InProgress).
pub const RECONCILING: &str = "Reconciling";
/// kstatus/Flux condition: the controller cannot get further without a human (Failed).
pub const STALLED: &str = "Stalled";

/// How a GitOps tool should judge the object, written as the `Reconciling`/`Stalled` pair that
/// kstatus (Flux `wait: true`, `kubectl`'s `kstatus`, kpt) reads. Without them kstatus calls any
/// custom resource with a current `observedGeneration` Current, even `Ready=False`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Done: neither condition is True.
    Done,
    /// `Reconciling=True`: wait, it is still moving (rollout, reload, a retried API error).
    Working,
    /// `Stalled=True`: a problem only a change of the inputs fixes.
    Stalled,
}

/// Sets `Reconciling` and `Stalled` for `progress`; never both True (kstatus takes the first
/// True one it meets, so both True would be ambiguous).
pub fn set_progress(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    progress: Progress,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let (reconciling, stalled) = match progress {
        Progress::Done => (false, false),
        Progress::Working => (true, false),
        Progress::Stalled => (false, true),
    };
    let (r_reason, r_msg) = if reconciling {
        (reason, message.to_string())
    } else {
        ("Reconciled", String::new())
    };
    let (s_reason, s_msg) = if stalled {
        (reason, message.to_string())
    } else {
        ("NotStalled", String::new())
    };
    set_condition(
        conditions,
        condition(RECONCILING, reconciling, r_reason, r_msg, generation, now),
    );
    set_condition(
        conditions,
        condition(STALLED, stalled, s_reason, s_msg, generation, now),
    );
}

/// Why the reconciler wrote no new bundle. `reason` is one of the `REASON_*` constants: only
/// [`REASON_PACKS_INVALID`] says anything about the packs, so only it sets `RulePacksReady`.
/// Every blocked reason needs a change of the inputs, so the policy is `Stalled`.
#[derive(Debug, Clone, Copy)]
pub struct Blocked<'a> {
    pub reason: &'a str,
    pub message: &'a str,
}

/// Annotation a scanner pod carries with the hash of the bundle it serves (written by the
/// scanner itself, `pd-scanner serve --report-pod`).
pub const SERVING_ANNOTATION: &str = "promptdefenders.io/serving-bundle-hash";
/// Annotation a scanner pod carries while it refuses the bundle it was last given (why, cut to
/// a few hundred characters); removed once a bundle loads. The hash of a refused bundle is not
/// needed: the operator never writes a bundle its own compiler rejects, so a pod that refuses
/// and does not serve the desired hash is refusing the desired bundle.
pub const BUNDLE_ERROR_ANNOTATION: &str = "promptdefenders.io/bundle-error";

/// One scanner pod as the operator sees it: readiness from kubelet, the bundle hashes from the
/// annotations the scanner writes on its own Pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodServing {
    pub name: String,
    pub ready: bool,
    pub serving: Option<String>,
    /// Why the pod refuses its newest bundle ([`BUNDLE_ERROR_ANNOTATION`]).
    pub error: Option<String>,
}

impl PodServing {
    /// Reads a Pod: `Ready` condition and the two annotations.
    pub fn from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        let ann = |k: &str| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        PodServing {
            name: pod.metadata.name.clone().unwrap_or_default(),
            ready: ready && pod.metadata.deletion_timestamp.is_none(),
            serving: ann(SERVING_ANNOTATION),
            error: ann(BUNDLE_ERROR_ANNOTATION),
        }
    }
}

/// What the ready scanner pods serve, against the `desired` bundle hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingSummary {
    pub ready: i32,
    /// Ready pods that report `desired`.
    pub on_desired: i32,
    /// The hash every ready pod reports, when they agree.
    pub common: Option<String>,
    /// Pods that refused `desired` (by name, sorted).
    pub rejected: Vec<String>,
    /// The first refusing pod's reason.
    pub first_error: Option<String>,
}

/// Summarises `pods` against `desired`.
pub fn serving_summary(pods: &[PodServing], desired: &str) -> ServingSummary {
    let ready: Vec<&PodServing> = pods.iter().filter(|p| p.ready).collect();
    let on_desired = ready
        .iter()
        .filter(|p| p.serving.as_deref() == Some(desired))
        .count();
    let first = ready.first().and_then(|p| p.serving.clone());
    let common = first.filter(|h| ready.iter().all(|p| p.serving.as_ref() == Some(h)));
    let mut rejected: Vec<String> = pods
        .iter()
        .filter(|p| p.error.is_some() && p.serving.as_deref() != Some(desired))
        .map(|p| p.name.clone())
        .collect();
    rejected.sort();
    let first_error = rejected
        .first()
        .and_then(|n| pods.iter().find(|p| &p.name == n))
        .and_then(|p| p.error.clone());
    ServingSummary {
        first_error,
        ready: i32::try_from(ready.len()).unwrap_or(i32::MAX),
        on_desired: i32::try_from(on_desired).unwrap_or(i32::MAX),
        common,
        rejected,
    }
}

/// What the reconciler observed for one ScanPolicy, as plain data.
#[derive(Debug, Clone, Copy)]
pub struct PolicyObservation<'a> {
    pub generation: Option<i64>,
    /// `Ok(bundle hash)` when every bound pack compiled, passed its tests and the bundle was
    /// written; `Err` otherwise (the previous bundle keeps serving).
    pub bundle: Result<&'a str, Blocked<'a>>,
    /// The scanner Deployment as the API server reports it, if it exists yet.
    pub deployment: Option<&'a Deployment>,
    /// The scanner pods, when scanners report what they serve (they need API access, i.e.
    /// `--api-server-egress` other than `off`). `None`: serving cannot be verified, and `Ready`
    /// says so in its message.
    pub pods: Option<&'a [PodServing]>,
}

/// True when the Deployment reports `Progressing=False` with `ProgressDeadlineExceeded`: its
/// rollout will not finish without a change (image, quota, scheduling).
fn deadline_exceeded(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter().find(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some(REASON_PROGRESS_DEADLINE)
            })
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// `RulePacksReady`, `Progressing`, `Available`, `Ready`, `Reconciling` and `Stalled` for a
/// ScanPolicy. `Ready` needs valid packs, a fully rolled-out, available Deployment of the current
/// generation *and* every ready scanner serving the desired bundle (when scanners report it),
/// which is what a GitOps tool should wait for.
// Over 80 lines: each condition is set next to the facts that decide it, in status order.
pub fn scanpolicy_status(
    names: &Names,
    obs: PolicyObservation<'_>,
    previous: Option<&ScanPolicyStatus>,
    now: &Time,
) -> ScanPolicyStatus {
    let g = obs.generation;
    let mut st = ScanPolicyStatus {
        observed_generation: g,
        conditions: previous.map(|p| p.conditions.clone()).unwrap_or_default(),
        // Keep reporting the bundle that is actually serving when a new one is rejected.
        active_bundle_hash: previous.and_then(|p| p.active_bundle_hash.clone()),
        endpoint: Some(names.endpoint()),
        ..ScanPolicyStatus::default()
    };
    let set = |cs: &mut Vec<_>, t: &str, ok: bool, reason: &str, msg: String| {
        set_condition(cs, condition(t, ok, reason, msg, g, now));
    };
    let packs_ok = match obs.bundle {
        Ok(hash) => {
            st.active_bundle_hash = Some(hash.to_string());
            set(
                &mut st.conditions,
                "RulePacksReady",
                true,
                "BundleWritten",
                format!("bundle {hash}"),
            );
            true
        }
        Err(blocked) => {
            st.last_error = Some(blocked.message.to_string());
            if blocked.reason == REASON_PACKS_INVALID {
                set(
                    &mut st.conditions,
                    "RulePacksReady",
                    false,
                    REASON_PACKS_INVALID,
                    blocked.message.to_string(),
                );
            }
            false
        }
    };
    let d_status = obs.deployment.and_then(|d| d.status.as_ref());
    let d_gen = obs.deployment.and_then(|d| d.metadata.generation);
    let ready = d_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = d_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let wanted = d_status.and_then(|s| s.replicas).unwrap_or(0);
    let observed = d_status.and_then(|s| s.observed_generation);
    st.ready_replicas = obs.deployment.map(|_| ready);
    let rolled_out = obs.deployment.is_some()
        && observed == d_gen
        && updated >= wanted
        && ready >= wanted
        && wanted > 0;
    let available = ready > 0;
    let stuck = obs.deployment.and_then(deadline_exceeded);
    if obs.deployment.is_none() {
        set(
            &mut st.conditions,
            "Progressing",
            true,
            "Creating",
            "scanner Deployment not created yet".into(),
        );
    } else if let Some(why) = &stuck {
        set(
            &mut st.conditions,
            "Progressing",
            false,
            REASON_PROGRESS_DEADLINE,
            why.clone(),
        );
    } else if rolled_out {
        set(
            &mut st.conditions,
            "Progressing",
            false,
            "RolledOut",
            format!("{ready}/{wanted} scanners ready"),
        );
    } else {
        set(
            &mut st.conditions,
            "Progressing",
            true,
            "RollingOut",
            format!("{updated}/{wanted} updated, {ready} ready"),
        );
    }
    if available {
        set(
            &mut st.conditions,
            "Available",
            true,
            "ScannersReady",
            format!("{ready} scanners ready"),
        );
    } else {
        set(
            &mut st.conditions,
            "Available",
            false,
            "NoReadyScanners",
            "no scanner is ready".into(),
        );
    }
    // What the pods serve, against the bundle the policy wants now (the active one).
    let desired = st.active_bundle_hash.clone();
    let summary = match (obs.pods, &desired) {
        (Some(pods), Some(desired)) => Some(serving_summary(pods, desired)),
        _ => None,
    };
    if let (Some(s), Some(desired)) = (&summary, &desired) {
        st.serving_bundle_hash = s.common.clone();
        st.serving_pods = Some(s.on_desired);
        st.serving = Some(format!("{}/{} pods on {desired}", s.on_desired, s.ready));
    }
    // The verdict: Ready, and the kstatus pair, from the most specific problem found.
    let (ready_ok, reason, message, progress) = if let Err(blocked) = obs.bundle {
        (
            false,
            blocked.reason.to_string(),
            blocked.message.to_string(),
            Progress::Stalled,
        )
    } else if let Some(why) = stuck {
        (
            false,
            REASON_PROGRESS_DEADLINE.to_string(),
            format!("scanner Deployment {}: {why}", names.scanner),
            Progress::Stalled,
        )
    } else if let Some(s) = summary.as_ref().filter(|s| !s.rejected.is_empty()) {
        (
            false,
            REASON_BUNDLE_REJECTED.to_string(),
            format!(
                "scanner pod(s) {} refused bundle {}; they keep serving {}{}",
                s.rejected.join(", "),
                desired.as_deref().unwrap_or_default(),
                s.common.as_deref().unwrap_or("their previous bundle"),
                s.first_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
            ),
            Progress::Stalled,
        )
    } else if !(available && rolled_out && packs_ok) {
        (
            false,
            REASON_SCANNERS_NOT_READY.to_string(),
            "waiting for the scanner rollout".to_string(),
            Progress::Working,
        )
    } else {
        match &summary {
            Some(s) if s.on_desired < s.ready || s.ready == 0 => (
                false,
                REASON_BUNDLE_NOT_SERVED.to_string(),
                format!(
                    "{}/{} ready scanners serve bundle {}",
                    s.on_desired,
                    s.ready,
                    desired.as_deref().unwrap_or_default()
                ),
                Progress::Working,
            ),
            Some(s) => (
                true,
                "Ready".to_string(),
                format!(
                    "{}/{} scanners serve bundle {} at {}",
                    s.on_desired,
                    s.ready,
                    desired.as_deref().unwrap_or_default(),
                    names.endpoint()
                ),
                Progress::Done,
            ),
            None => (
                true,
                "Ready".to_string(),
                format!(
                    "serving at {} (bundle written and rolled out; scanners do not report \
                     what they serve without API access)",
                    names.endpoint()
                ),
                Progress::Done,
            ),
        }
    };
    set(
        &mut st.conditions,
        "Ready",
        ready_ok,
        &reason,
        message.clone(),
    );
    set_progress(&mut st.conditions, progress, &reason, &message, g, now);
    st
}

/// The status after a reconcile that failed part-way (an apply refused or failed): `Ready=False`
/// with `reason` and the API's `message`, `lastError`, and `Stalled` when retrying cannot help
/// (`stalled`) or `Reconciling` while it is retried with backoff. Everything else is kept from
/// `previous`: a failed apply does not change what is serving.
pub fn failure_status(
    names: &Names,
    generation: Option<i64>,
    previous: Option<&ScanPolicyStatus>,
    reason: &str,
    message: &str,
    stalled: bool,
    now: &Time,
) -> ScanPolicyStatus {
    let mut st = previous.cloned().unwrap_or_default();
    st.observed_generation = generation;
    st.endpoint = Some(names.endpoint());
    st.last_error = Some(message.to_string());
    set_condition(
        &mut st.conditions,
        condition("Ready", false, reason, message, generation, now),
    );
    let progress = if stalled {
        Progress::Stalled
    } else {
        Progress::Working
    };
    set_progress(
        &mut st.conditions,
        progress,
        reason,
        message,
        generation,
        now,
    );
    st
}

/// The longest ScanPolicy name whose children's names (`<name>-scanner`, a Service name: a
/// DNS-1035 label of at most 63 characters) are valid.
pub const MAX_POLICY_NAME: usize = 63 - "-scanner".len();

/// Checks that `name` can name every child: a DNS-1035 label (lowercase letters, digits and
/// `-`, starting with a letter, ending with a letter or digit) of at most [`MAX_POLICY_NAME`]
/// characters. The CRD carries the same rule as CEL, so the API server refuses such a policy
/// up front; this check covers clusters that admitted one before the rule existed.
pub fn check_policy_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_POLICY_NAME {
        return Err(format!(
            "ScanPolicy name `{name}` has {} characters; at most {MAX_POLICY_NAME} fit into \
             its children's names (`<name>-scanner` must be a 63-character DNS label)",
            name.len()
        ));
    }
    let bytes = name.as_bytes();
    let ok = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !ok {
        return Err(format!(
            "ScanPolicy name `{name}` is not a DNS-1035 label (lowercase letters, digits and \
             `-`, starting with a letter): its Service `{name}-scanner` would be refused"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pd_engine::pack::RulePackSpec;

    fn now() -> Time {
        serde_json::from_str("\"2026-11-23T12:00:00Z\"").unwrap()
    }

    fn packs(yaml: &str) -> PackSet {
        let spec: RulePackSpec = serde_yaml::from_str(yaml).unwrap();
        PackSet::from([("p".to_string(), spec)])
    }

    fn cond<'a>(s: &'a RulePackStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(c.observed_generation, s.observed_generation);
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn good_pack_is_ready() {
        let p = packs("version: '1'\nrules: [{id: r1, category: other, severity: high, weight: 80, regex: evil}]\ntests: [{input: 'so evil', expect: {verdict: block}}]");
        let s = rulepack_status(&p, "p", Some(3), None, &now());
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(cond(&s, "Compiled"), ("True", "Compiled"));
        assert_eq!(cond(&s, "TestsPassed"), ("True", "TestsPassed"));
        assert_eq!(cond(&s, "Ready"), ("True", "Ready"));
        assert_eq!(s.rule_count, Some(1));
        assert!(s.content_hash.as_deref().unwrap().starts_with("sha256:"));
        assert_eq!(s.tests.unwrap().passed, 1);
    }

    #[test]
    fn rules_the_prefilter_cannot_skip_are_noted_without_failing() {
        let p = packs("version: '1'\nrules: [{id: ssn, category: pii, severity: low, weight: 5, regex: '\\b[0-9]{3}-[0-9]{2}-[0-9]{4}\\b'}, {id: w, category: other, severity: low, weight: 5, regex: 'secret plan'}]");
        let s = rulepack_status(&p, "p", Some(1), None, &now());
        assert_eq!(cond(&s, "Ready"), ("True", "Ready"));
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(
            s.notes[0].starts_with("rule `ssn` has no literal"),
            "{:?}",
            s.notes
        );
    }

    #[test]
    fn compile_errors_are_listed_by_rule() {
        let p = packs("version: '1'\nrules: [{id: good, category: other, severity: low, weight: 5, regex: ok}, {id: bad, category: other, severity: low, weight: 5, regex: '(x'}]");
        let s = rulepack_status(&p, "p", Some(1), None, &now());
        assert_eq!(cond(&s, "Compiled"), ("False", "CompileFailed"));
        assert_eq!(cond(&s, "TestsPassed"), ("False", "NotRun"));
        assert_eq!(cond(&s, "Ready"), ("False", "CompileFailed"));
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].rule.as_deref(), Some("bad"));
        assert!(s.rule_count.is_none());
    }

    #[test]
    fn failing_tests_make_the_pack_not_ready() {
        let p = packs("version: '1'\nrules: [{id: r1, category: other, severity: high, weight: 80, regex: evil}]\ntests: [{name: t1, input: 'nice', expect: {verdict: block}}]");
        let s = rulepack_status(&p, "p", Some(1), None, &now());
        assert_eq!(cond(&s, "Compiled"), ("True", "Compiled"));
        assert_eq!(cond(&s, "Ready"), ("False", "TestsFailed"));
        let t = s.tests.unwrap();
        assert_eq!((t.passed, t.failed), (0, 1));
        assert!(
            t.failures[0].starts_with("t1: expected verdict block"),
            "{t:?}"
        );
    }

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        ready: i32,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p-scanner", "generation": generation},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "updatedReplicas": updated, "readyReplicas": ready},
        }))
        .unwrap()
    }

    fn pcond<'a>(s: &'a ScanPolicyStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn policy_is_ready_only_when_packs_are_valid_and_rollout_done() {
        let names = Names::new("p", "ns", "t");
        let d = deployment(2, 2, 2, 2, 2);
        let obs = PolicyObservation {
            generation: Some(5),
            bundle: Ok("sha256:abc"),
            deployment: Some(&d),
            pods: None,
        };
        let s = scanpolicy_status(&names, obs, None, &now());
        assert_eq!(s.observed_generation, Some(5));
        assert_eq!(pcond(&s, "RulePacksReady"), ("True", "BundleWritten"));
        assert_eq!(pcond(&s, "Progressing"), ("False", "RolledOut"));
        assert_eq!(pcond(&s, "Available"), ("True", "ScannersReady"));
        assert_eq!(pcond(&s, "Ready"), ("True", "Ready"));
        assert_eq!(s.active_bundle_hash.as_deref(), Some("sha256:abc"));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.endpoint.as_deref(), Some("http://p-scanner.ns.svc:8080"));

        // Mid-rollout: still available, not ready.
        let d = deployment(3, 3, 2, 1, 2);
        let obs = PolicyObservation {
            deployment: Some(&d),
            ..obs
        };
        let s2 = scanpolicy_status(&names, obs, Some(&s), &now());
        assert_eq!(pcond(&s2, "Progressing"), ("True", "RollingOut"));
        assert_eq!(pcond(&s2, "Available"), ("True", "ScannersReady"));
        assert_eq!(pcond(&s2, "Ready"), ("False", "ScannersNotReady"));

        // A rejected bundle: the old hash keeps being reported, the error is surfaced.
        let d = deployment(2, 2, 2, 2, 2);
        let obs = PolicyObservation {
            generation: Some(6),
            bundle: Err(Blocked {
                reason: REASON_PACKS_INVALID,
                message: "rule `x`: bad regex",
            }),
            deployment: Some(&d),
            pods: None,
        };
        let s3 = scanpolicy_status(&names, obs, Some(&s), &now());
        assert_eq!(pcond(&s3, "Ready"), ("False", "RulePacksInvalid"));
        assert_eq!(s3.active_bundle_hash.as_deref(), Some("sha256:abc"));
        assert_eq!(s3.last_error.as_deref(), Some("rule `x`: bad regex"));

        // No Deployment yet.
        let obs = PolicyObservation {
            generation: Some(1),
            bundle: Ok("h"),
            deployment: None,
            pods: None,
        };
        let s4 = scanpolicy_status(&names, obs, None, &now());
        assert_eq!(pcond(&s4, "Progressing"), ("True", "Creating"));
        assert_eq!(pcond(&s4, "Ready"), ("False", "ScannersNotReady"));
        assert_eq!(s4.ready_replicas, None);

        // The tenant disappeared: Ready says so, RulePacksReady keeps what it knew.
        let obs = PolicyObservation {
            generation: Some(6),
            bundle: Err(Blocked {
                reason: REASON_TENANT_NOT_FOUND,
                message: "tenant `acme` does not exist",
            }),
            deployment: Some(&d),
            pods: None,
        };
        let s5 = scanpolicy_status(&names, obs, Some(&s), &now());
        assert_eq!(pcond(&s5, "Ready"), ("False", "TenantNotFound"));
        assert_eq!(pcond(&s5, "RulePacksReady"), ("True", "BundleWritten"));
        assert_eq!(
            s5.last_error.as_deref(),
            Some("tenant `acme` does not exist")
        );
        assert_eq!(s5.active_bundle_hash.as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn policy_names_must_fit_the_children() {
        assert!(check_policy_name("acme-chat").is_ok());
        assert!(check_policy_name(&"a".repeat(MAX_POLICY_NAME)).is_ok());
        // 56 characters: `<name>-scanner` would be 64.
        assert!(check_policy_name(&"a".repeat(MAX_POLICY_NAME + 1)).is_err());
        for bad in ["acme.chat", "Acme", "1chat", "chat-", ""] {
            assert!(check_policy_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_reconciling_and_stalled_at_once() {
        for p in [Progress::Done, Progress::Working, Progress::Stalled] {
            let mut cs = Vec::new();
            set_progress(&mut cs, p, "R", "m", Some(1), &now());
            let on: Vec<_> = cs.iter().filter(|c| c.status == "True").collect();
            assert!(on.len() <= 1, "{p:?}: {cs:?}");
        }
    }

    #[test]
    fn sample_packs_are_ready() {
        let loaded = pd_engine::bundle::load_embedded().unwrap();
        let packs = pd_engine::bundle::pack_set(&loaded);
        for name in ["baseline", "acme"] {
            let s = rulepack_status(&packs, name, Some(1), None, &now());
            assert_eq!(cond(&s, "Ready"), ("True", "Ready"), "{name}: {s:?}");
        }
    }
}
