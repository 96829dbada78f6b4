//! Usage aggregation and quotas: from the scanners' usage ledgers to `Tenant.status.usage` and
//! `status.quota`, and from `Tenant.spec.quota` back to the ledgers.
//!
//! Each ScanPolicy has a ledger ConfigMap `<policy>-usage` (a child, created with the others
//! when scanners can reach the API) in which every scanner pod keeps its running totals for
//! the month under its own key (`pd_engine::usage::ledger`). The operator watches the
//! ledgers (label `promptdefenders.io/usage-ledger`) into a local cache and, every
//! [`DEFAULT_INTERVAL`] (`--usage-interval`), sums them per tenant from the cache:
//! - writes `status.usage` and `status.quota` of each Tenant whose figures changed (server-side
//!   apply under its own field manager [`FIELD_MANAGER`], so the Tenant reconciler's applies
//!   and these never take each other's fields);
//! - writes each ledger's `quota.json` (the tenant's quota and what its *other* policies used)
//!   when it changed, and removes keys of past periods in the same merge patch;
//! - publishes a Warning Event when the tenant first reaches 80 % and 100 % of its quota in a
//!   period, recording the announcement in `status.quota.announced` so a restarted operator
//!   does not repeat it.
//!
//! Why this shape: the operator never connects to a pod (the scanners' NetworkPolicy admits
//! only clients and monitoring) and makes no request per scan or per reconcile: cluster-wide it
//! costs one watch, and per interval at most one status write per tenant and one patch per
//! ledger whose grant changed. Scanners flush every 15 s; summing more often than every 30 s
//! would mostly rewrite the same status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use pd_engine::usage::ledger::{self, PodUsage, QuotaGrant, LEDGER_LABEL, QUOTA_KEY};
use pd_engine::usage::period::Period;

use crate::controller::{Context, Error};
use crate::crd::{PolicyUsage, QuotaStatus, Tenant, TenantUsage, UsageVerdicts};

/// Field manager of everything this module writes.
pub const FIELD_MANAGER: &str = "pd-operator-usage";
/// How often the ledgers are summed by default (`--usage-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// `status.quota.state` turns `Warning` (and an Event is published) at this percentage.
pub const WARNING_PERCENT: u64 = 80;

const TENANT_LABEL: &str = "promptdefenders.io/tenant";
const POLICY_LABEL: &str = "promptdefenders.io/policy";

/// One ledger's figures for the period.
#[derive(Debug, Default, Clone)]
struct PolicyTotals {
    usage: PodUsage,
    pods: u32,
}

/// What one pass did, for tests and logs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tenants whose status was written.
    pub statuses: Vec<String>,
    /// Ledgers (`namespace/name`) patched.
    pub ledgers: Vec<String>,
    /// Events published (`tenant: reason`).
    pub events: Vec<String>,
}

/// The quota state for `used` of `limit`: `(percent, state, threshold reached)`.
pub fn quota_state(used: u64, limit: u64) -> (u64, &'static str, Option<u64>) {
    let percent = if limit == 0 {
        100
    } else {
        // u128: no overflow for any u64 pair.
        u64::try_from(u128::from(used) * 100 / u128::from(limit)).unwrap_or(u64::MAX)
    };
    if percent >= 100 {
        (percent, "Exceeded", Some(100))
    } else if percent >= WARNING_PERCENT {
        (percent, "Warning", Some(WARNING_PERCENT))
    } else {
        (percent, "Ok", None)
    }
}

/// Sums `ledgers` for the period of `now`, then writes what changed (see the module docs).
/// Errors of one write are logged and counted in the result, never stop the others; the first
/// one is returned after every write was tried.
// Over 80 lines: one pass per period that makes the writes in the order the module docs list them.
pub async fn aggregate(
    ctx: &Context,
    ledgers: &[Arc<ConfigMap>],
    tenants: &[Arc<Tenant>],
    now: SystemTime,
) -> Result<Pass, Error> {
    let period = Period::of(now).to_string();
    // tenant -> (namespace/policy -> totals)
    let mut by_tenant: BTreeMap<String, BTreeMap<String, PolicyTotals>> = BTreeMap::new();
    for cm in ledgers {
        let labels = cm.labels();
        let (Some(tenant), Some(policy)) = (labels.get(TENANT_LABEL), labels.get(POLICY_LABEL))
        else {
            continue;
        };
        let data = cm.data.clone().unwrap_or_default();
        let (pods, _) = ledger::read(&data, &period);
        let mut totals = PolicyTotals {
            usage: PodUsage {
                period: period.clone(),
                ..PodUsage::default()
            },
            pods: 0,
        };
        for usage in pods.values() {
            totals.usage.add(usage);
            totals.pods += 1;
        }
        let key = format!("{}/{policy}", cm.namespace().unwrap_or_default());
        by_tenant
            .entry(tenant.clone())
            .or_default()
            .insert(key, totals);
    }
    let tenants: BTreeMap<String, &Tenant> =
        tenants.iter().map(|t| (t.name_any(), t.as_ref())).collect();
    let mut pass = Pass::default();
    let mut first_error: Option<Error> = None;

    // Ledgers first: enforcement matters more than reporting.
    for cm in ledgers {
        let labels = cm.labels();
        let Some(tenant_name) = labels.get(TENANT_LABEL) else {
            continue;
        };
        let policy_key = format!(
            "{}/{}",
            cm.namespace().unwrap_or_default(),
            labels.get(POLICY_LABEL).cloned().unwrap_or_default()
        );
        let policies = by_tenant.get(tenant_name);
        let total: u64 = policies
            .map(|p| p.values().map(|t| t.usage.scans).sum())
            .unwrap_or(0);
        let mine = policies
            .and_then(|p| p.get(&policy_key))
            .map_or(0, |t| t.usage.scans);
        let grant = tenants
            .get(tenant_name)
            .and_then(|t| t.spec.quota.as_ref())
            .map(|q| QuotaGrant {
                period: period.clone(),
                scans_per_month: q.scans_per_month,
                burst: q.burst.unwrap_or(0),
                on_exceeded: q.on_exceeded,
                used_elsewhere: total.saturating_sub(mine),
            });
        if let Some(patch) = ledger_patch(cm, grant.as_ref(), &period)? {
            let ns = cm.namespace().unwrap_or_default();
            let name = cm.name_any();
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            match Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                .patch(&name, &params, &Patch::Merge(patch))
                .await
            {
                Ok(_) => pass.ledgers.push(format!("{ns}/{name}")),
                Err(e) => {
                    tracing::warn!(ledger = %format!("{ns}/{name}"), error = %e, "cannot write the quota grant");
                    first_error.get_or_insert(Error::Kube(e));
                }
            }
        }
    }

    for (name, tenant) in &tenants {
        let policies = by_tenant.remove(name).unwrap_or_default();
        let old = tenant.status.as_ref();
        if policies.is_empty() && old.and_then(|s| s.usage.as_ref()).is_none() {
            // Never metered: nothing to say (and no write for tenants without scanners).
            continue;
        }
        let usage = tenant_usage(&period, &policies, now);
        let mut quota = tenant.spec.quota.as_ref().map(|q| {
            let (percent, state, _) = quota_state(usage.scans, q.scans_per_month);
            QuotaStatus {
                limit: q.scans_per_month,
                used: usage.scans,
                percent,
                state: state.to_string(),
                announced: old
                    .and_then(|s| s.quota.as_ref())
                    .and_then(|q| q.announced.clone())
                    .filter(|a| a.starts_with(&format!("{period}/"))),
            }
        });
        let mut event = None;
        if let Some(q) = quota.as_mut() {
            let (_, _, reached) = quota_state(q.used, q.limit);
            let announced = q
                .announced
                .as_deref()
                .and_then(|a| a.rsplit_once('/'))
                .and_then(|(_, t)| t.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(threshold) = reached.filter(|t| *t > announced) {
                q.announced = Some(format!("{period}/{threshold}"));
                event = Some(threshold);
            }
        }
        let same = old.is_some_and(|s| {
            s.quota == quota
                && s.usage.as_ref().is_some_and(|u| {
                    TenantUsage {
                        updated_at: usage.updated_at.clone(),
                        ..u.clone()
                    } == usage
                })
        });
        if !same {
            // A field left out of an apply is released (and removed) by this manager: a
            // quota taken out of the spec leaves no stale `status.quota` behind.
            let mut status = serde_json::Map::new();
            status.insert("usage".into(), serde_json::to_value(&usage)?);
            if let Some(q) = &quota {
                status.insert("quota".into(), serde_json::to_value(q)?);
            }
            let body = serde_json::json!({
                "apiVersion": "promptdefenders.io/v1alpha1",
                "kind": "Tenant",
                "status": status,
            });
            match Api::<Tenant>::all(ctx.client.clone())
                .patch_status(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            {
                Ok(_) => pass.statuses.push(name.clone()),
                Err(e) => {
                    tracing::warn!(tenant = %name, error = %e, "cannot write the usage status");
                    first_error.get_or_insert(Error::Status(e));
                    // Announce only what status could record, so a retry is not a repeat.
                    continue;
                }
            }
        }
        if let (Some(threshold), Some(q)) = (event, &quota) {
            let (reason, note) = if threshold >= 100 {
                let spec = tenant.spec.quota.as_ref();
                let allowance = q
                    .limit
                    .saturating_add(spec.and_then(|s| s.burst).unwrap_or(0));
                let action = serde_json::to_value(spec.map(|s| s.on_exceeded).unwrap_or_default())?;
                (
                    "QuotaExceeded",
                    format!(
                        "{} of {} scans used in {period} ({} %); onExceeded {} applies from {allowance} scans (scansPerMonth + burst)",
                        q.used, q.limit, q.percent, action.as_str().unwrap_or_default()
                    ),
                )
            } else {
                (
                    "QuotaNearlyExhausted",
                    format!(
                        "{} of {} scans used in {period} ({} %)",
                        q.used, q.limit, q.percent
                    ),
                )
            };
            ctx.event(*tenant, true, reason, "Quota", note).await;
            pass.events.push(format!("{name}: {reason}"));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(pass),
    }
}

/// The tenant's usage from its policies' totals.
fn tenant_usage(
    period: &str,
    policies: &BTreeMap<String, PolicyTotals>,
    now: SystemTime,
) -> TenantUsage {
    let mut sum = PodUsage::default();
    for t in policies.values() {
        sum.add(&t.usage);
    }
    let micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    TenantUsage {
        period: period.to_string(),
        scans: sum.scans,
        bytes: sum.bytes,
        verdicts: UsageVerdicts {
            allow: sum.verdicts.allow,
            warn: sum.verdicts.warn,
            block: sum.verdicts.block,
        },
        quota_exceeded: sum.quota_exceeded,
        policies: policies
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    PolicyUsage {
                        scans: t.usage.scans,
                        bytes: t.usage.bytes,
                        pods: t.pods,
                    },
                )
            })
            .collect(),
        updated_at: Time(
            k8s_openapi::jiff::Timestamp::from_microsecond(micros)
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        ),
    }
}

/// The merge patch that brings `cm` to `grant` (or to no grant) and drops the pod keys of
/// other periods; `None` when nothing would change. The grant's `usedElsewhere` moves with the
/// other policies' traffic, so it is rewritten whenever it changed.
fn ledger_patch(
    cm: &ConfigMap,
    grant: Option<&QuotaGrant>,
    period: &str,
) -> Result<Option<serde_json::Value>, Error> {
    let data = cm.data.clone().unwrap_or_default();
    let mut changes = serde_json::Map::new();
    let current = data
        .get(QUOTA_KEY)
        .and_then(|v| serde_json::from_str::<QuotaGrant>(v).ok());
    match grant {
        Some(g) if current.as_ref() != Some(g) => {
            changes.insert(QUOTA_KEY.into(), serde_json::to_string(g)?.into());
        }
        None if data.contains_key(QUOTA_KEY) => {
            changes.insert(QUOTA_KEY.into(), serde_json::Value::Null);
        }
        _ => {}
    }
    for (k, v) in &data {
        if !k.starts_with(ledger::POD_KEY_PREFIX) {
            continue;
        }
        let stale = serde_json::from_str::<PodUsage>(v).map_or(true, |u| u.period != period);
        if stale {
            changes.insert(k.clone(), serde_json::Value::Null);
        }
    }
    Ok((!changes.is_empty()).then(|| serde_json::json!({"data": changes})))
}

/// Watches the ledgers and aggregates every `interval` until the returned future is dropped
/// (the caller aborts it when leadership ends). `tenants` yields the current Tenants, or
/// `None` while their cache has not held a full list: a pass then would take every tenant for
/// gone and remove the quota grants from the ledgers.
pub async fn run(
    ctx: Arc<Context>,
    interval: Duration,
    tenants: impl Fn() -> Option<Vec<Arc<Tenant>>> + Send + 'static,
) {
    let (store, writer) = reflector::store::<ConfigMap>();
    let api = Api::<ConfigMap>::all(ctx.client.clone());
    let config = watcher::Config::default().labels(&format!("{LEDGER_LABEL}=true"));
    let watch = reflector::reflector(writer, watcher::watcher(api, config))
        .default_backoff()
        .for_each(|e| {
            if let Err(e) = e {
                tracing::debug!(error = %e, "usage ledger watch error");
            }
            futures::future::ready(())
        });
    let driver = tokio::spawn(watch);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.wait_until_ready().await.is_err() {
            break;
        }
        let Some(tenants) = tenants() else {
            tracing::debug!("Tenant cache not synced yet; usage aggregation waits");
            continue;
        };
        let ledgers = store.state();
        match aggregate(&ctx, &ledgers, &tenants, SystemTime::now()).await {
            Ok(pass) => tracing::debug!(?pass, "usage aggregated"),
            Err(e) => {
                tracing::warn!(error = %e, "usage aggregation incomplete; retried next interval")
            }
        }
    }
    driver.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_thresholds() {
        assert_eq!(quota_state(0, 100), (0, "Ok", None));
        assert_eq!(quota_state(79, 100), (79, "Ok", None));
        assert_eq!(quota_state(80, 100), (80, "Warning", Some(80)));
        assert_eq!(quota_state(100, 100), (100, "Exceeded", Some(100)));
        assert_eq!(quota_state(250, 100), (250, "Exceeded", Some(100)));
        assert_eq!(quota_state(u64::MAX, 1).1, "Exceeded");
    }
}
