//! Status conditions in the Kubernetes convention, shared by the three kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Builds a condition in the Kubernetes convention. `reason` must be UpperCamelCase.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: now.clone(),
        observed_generation,
    }
}

/// Inserts or replaces the condition of the same type. `lastTransitionTime` only moves when
/// the status flips, which is what `kubectl wait` and Argo CD health checks expect.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let keep_time = old.status == new.status;
            let time = old.last_transition_time.clone();
            *old = new;
            if keep_time {
                old.last_transition_time = time;
            }
        }
        None => conditions.push(new),
    }
}
