//! How long a failed reconcile waits before its retry.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::Resource;

use super::{object_key, Context, Error};

/// First retry after an error other than a conflict; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// First retry after a 409: another writer raced us, so a quick retry usually succeeds.
pub const CONFLICT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Delay before retry number `previous_failures + 1`: 1 s (conflict) or 5 s (anything else),
/// doubling per consecutive failure, capped at [`BACKOFF_MAX`]. A conflict or a 5xx therefore
/// slows down instead of crash-looping.
pub fn backoff(error: &Error, previous_failures: u32) -> Duration {
    let base = if error.is_conflict() {
        CONFLICT_BACKOFF_BASE
    } else {
        BACKOFF_BASE
    };
    let factor = 1u32 << previous_failures.min(16);
    base.saturating_mul(factor).min(BACKOFF_MAX)
}

/// What the controllers do with a failed reconcile: log it and requeue with [`backoff`].
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = object_key(obj.as_ref());
    let previous = ctx.record_failure(key.clone());
    let delay = backoff(error, previous);
    tracing::warn!(object = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
