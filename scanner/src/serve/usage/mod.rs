//! Usage metering and quotas (`--usage-ledger`).
//!
//! Every scan the engine runs is counted twice: in Prometheus counters labelled with the
//! tenant and policy of the loaded bundle (`pd_usage_scans_total{tenant,policy,verdict}`,
//! `pd_usage_bytes_total{tenant,policy}`; one pod serves one policy, so the labels add no
//! cardinality), and in this pod's running totals for the current calendar month (UTC), which
//! [`flush`] writes to the policy's usage ledger ConfigMap ([`ledger`]) every flush interval
//! and on shutdown. pd-operator sums the ledgers per tenant into the Tenant's status and writes
//! the tenant's quota back into each ledger; the flush's answer (the whole ledger) tells this
//! pod what its sibling pods counted and what the tenant's other policies used, so the quota
//! check ([`Usage::admit`]) needs no request to anyone at scan time.
//!
//! The price of deciding locally is a bounded overshoot: scans of other pods not yet flushed
//! (and, for other policies, not yet aggregated) are not seen. docs/src/usage.md states the
//! bound; `scanner/tests/it/usage.rs` measures it.

pub mod flush;
// The ledger format and periods live in the engine crate, which the operator shares.
pub use pd_engine::usage::{ledger, period};

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use pd_engine::verdict::Verdict;

use ledger::{OnExceeded, PodUsage, QuotaGrant};
use pd_engine::compile::CompiledPack;
use period::Period;

/// The longest `Retry-After` of a `quota_exceeded` answer. The true wait is until the next
/// month, which can be weeks; a client told to come back in weeks would not notice a raised
/// quota, so it is asked to try again within the hour instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantPolicy {
    tenant: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantPolicyVerdict {
    tenant: String,
    policy: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantPolicyAction {
    tenant: String,
    policy: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// The usage and quota metrics, registered with the service's other metrics.
#[derive(Clone, Default)]
pub struct UsageMetrics {
    scans: Family<TenantPolicyVerdict, Counter>,
    bytes: Family<TenantPolicy, Counter>,
    exceeded: Family<TenantPolicyAction, Counter>,
    used_ratio: Family<TenantPolicy, Gauge<f64, AtomicU64>>,
    ledger_writes: Family<ResultLabel, Counter>,
}

impl UsageMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let scans = Family::<TenantPolicyVerdict, Counter>::default();
        registry.register(
            "pd_usage_scans",
            "Prompts scanned, by tenant, policy and verdict (a batch counts each item)",
            scans.clone(),
        );
        let bytes = Family::<TenantPolicy, Counter>::default();
        registry.register(
            "pd_usage_bytes",
            "Prompt bytes scanned, by tenant and policy",
            bytes.clone(),
        );
        let exceeded = Family::<TenantPolicyAction, Counter>::default();
        registry.register(
            "pd_quota_exceeded",
            "Requests past the tenant's quota, by the action taken (block, audit_only, allow)",
            exceeded.clone(),
        );
        let used_ratio = Family::<TenantPolicy, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "pd_quota_used_ratio",
            "This scanner's estimate of the tenant's scans this month over scansPerMonth (set with a quota only)",
            used_ratio.clone(),
        );
        let ledger_writes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "pd_usage_ledger_writes",
            "Writes of this pod's totals to the usage ledger ConfigMap, by result (ok, error)",
            ledger_writes.clone(),
        );
        UsageMetrics {
            scans,
            bytes,
            exceeded,
            used_ratio,
            ledger_writes,
        }
    }

    pub(crate) fn ledger_write(&self, ok: bool) {
        self.ledger_writes
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }
}

/// Tenant and policy labels of a bundle (`""` for a bundle without a tenant).
fn identity(pack: Option<&CompiledPack>) -> TenantPolicy {
    TenantPolicy {
        tenant: pack
            .and_then(|p| p.policy.tenant.clone())
            .unwrap_or_default(),
        policy: pack.map(|p| p.policy.name.clone()).unwrap_or_default(),
    }
}

/// The usage counters of one tenant and policy, looked up once per bundle: building a label
/// set costs two string copies and a map lookup per family, on every scan otherwise.
struct Counters {
    id: TenantPolicy,
    /// By verdict (allow, warn, block), each created at its first scan as the family would:
    /// `/metrics` shows no series for a verdict never given.
    scans: [OnceLock<Counter>; 3],
    bytes: Counter,
}

impl Counters {
    fn of(metrics: &UsageMetrics, pack: &CompiledPack) -> Self {
        let id = identity(Some(pack));
        let bytes = metrics.bytes.get_or_create(&id).clone();
        Counters {
            id,
            scans: Default::default(),
            bytes,
        }
    }

    fn serve(&self, pack: &CompiledPack) -> bool {
        self.id.policy == pack.policy.name
            && self.id.tenant == pack.policy.tenant.as_deref().unwrap_or_default()
    }

    fn scans(&self, metrics: &UsageMetrics, verdict: Verdict) -> &Counter {
        let slot = match verdict {
            Verdict::Allow => 0,
            Verdict::Warn => 1,
            Verdict::Block => 2,
        };
        self.scans[slot].get_or_init(|| {
            metrics
                .scans
                .get_or_create(&TenantPolicyVerdict {
                    tenant: self.id.tenant.clone(),
                    policy: self.id.policy.clone(),
                    verdict: verdict.as_str(),
                })
                .clone()
        })
    }
}

/// What this pod knows for the current period.
#[derive(Debug)]
struct Book {
    period: Period,
    /// This pod's totals (including what an earlier container of the same pod wrote, once
    /// [`Book::adopted`]).
    own: PodUsage,
    /// Whether this pod's stored key was read (a restarted container continues from it).
    adopted: bool,
    /// Scans of this period by the other pods of this ledger, at the last flush.
    siblings: u64,
    /// The operator's grant for this period, from the last flush.
    grant: Option<QuotaGrant>,
}

impl Book {
    fn new(period: Period) -> Self {
        Book {
            period,
            own: PodUsage {
                period: period.to_string(),
                ..PodUsage::default()
            },
            adopted: false,
            siblings: 0,
            grant: None,
        }
    }

    /// Starts a new period when `now` is past this one. A new period's key starts at zero
    /// everywhere, so there is nothing to adopt.
    fn roll(&mut self, now: SystemTime) {
        let p = Period::of(now);
        if p != self.period {
            *self = Book::new(p);
            self.adopted = true;
        }
    }

    /// The tenant's scans this period as far as this pod knows.
    fn tenant_used(&self) -> u64 {
        let elsewhere = self.grant.as_ref().map_or(0, |g| g.used_elsewhere);
        elsewhere
            .saturating_add(self.siblings)
            .saturating_add(self.own.scans)
    }
}

/// A refused request: `quota_exceeded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaBlocked {
    /// For `Retry-After`: until the next period, at most [`MAX_RETRY_AFTER`].
    pub retry_after: Duration,
    /// The period that is used up (`YYYY-MM`).
    pub period: String,
    /// When it ends (the next period's start), RFC 3339.
    pub resets_at: String,
}

/// The counters and quota state of one scanner.
pub struct Usage {
    metrics: UsageMetrics,
    book: Mutex<Book>,
    /// The counters of the bundle scanned with last.
    counters: RwLock<Option<Counters>>,
}

impl Usage {
    pub fn new(metrics: UsageMetrics) -> Self {
        Usage {
            metrics,
            book: Mutex::new(Book::new(Period::of(SystemTime::now()))),
            counters: RwLock::new(None),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic while holding the lock leaves only counters behind: still usable.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the counters of `pack`'s tenant and policy, looking them up only when the
    /// bundle's labels changed.
    fn with_counters(&self, pack: &CompiledPack, f: impl FnOnce(&Counters)) {
        // A panic while holding the lock leaves only counter handles behind: still usable.
        if let Some(c) = self
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|c| c.serve(pack))
        {
            return f(c);
        }
        let c = Counters::of(&self.metrics, pack);
        f(&c);
        *self.counters.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// Counts one scan the engine ran.
    pub fn scanned(&self, pack: &CompiledPack, verdict: Verdict, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.with_counters(pack, |c| {
            c.scans(&self.metrics, verdict).inc();
            c.bytes.inc_by(bytes);
        });
        let mut book = self.book();
        book.roll(SystemTime::now());
        let own = &mut book.own;
        own.scans = own.scans.saturating_add(1);
        own.bytes = own.bytes.saturating_add(bytes);
        match verdict {
            Verdict::Allow => own.verdicts.allow += 1,
            Verdict::Warn => own.verdicts.warn += 1,
            Verdict::Block => own.verdicts.block += 1,
        }
    }

    /// The quota check, made before a request's body is read: `Err` when the tenant's quota
    /// (with its burst) is used up and the tenant's `onExceeded` is `block`. With `auditOnly`
    /// and `allow` the request goes on and is counted in `pd_quota_exceeded_total`. Without a
    /// grant for the current period (no quota, no ledger, or a new month the operator has
    /// not written yet) every request goes on.
    pub fn admit(&self, pack: Option<&CompiledPack>) -> Result<(), QuotaBlocked> {
        let now = SystemTime::now();
        let (action, period) = {
            let mut book = self.book();
            book.roll(now);
            let Some(grant) = &book.grant else {
                return Ok(());
            };
            if book.tenant_used() < grant.allowance() {
                return Ok(());
            }
            let action = grant.on_exceeded;
            book.own.quota_exceeded = book.own.quota_exceeded.saturating_add(1);
            (action, book.period)
        };
        let id = identity(pack);
        self.metrics
            .exceeded
            .get_or_create(&TenantPolicyAction {
                tenant: id.tenant,
                policy: id.policy,
                action: action.as_str().to_string(),
            })
            .inc();
        if action != OnExceeded::Block {
            return Ok(());
        }
        Err(QuotaBlocked {
            retry_after: period.remaining(now).min(MAX_RETRY_AFTER),
            period: period.to_string(),
            resets_at: crate::serve::audit::rfc3339_millis(period.next().start()),
        })
    }

    /// This pod's totals to write now, stamped.
    pub fn snapshot(&self) -> PodUsage {
        let now = SystemTime::now();
        let mut book = self.book();
        book.roll(now);
        let mut own = book.own.clone();
        own.updated_at = crate::serve::audit::rfc3339_millis(now);
        own
    }

    /// Whether this pod's stored totals were read yet (see [`Usage::adopt`]).
    pub fn adopted(&self) -> bool {
        self.book().adopted
    }

    /// Continues from what an earlier container of this pod stored under its key (`None`:
    /// nothing stored, this pod starts at zero).
    pub fn adopt(&self, stored: Option<&PodUsage>) {
        let mut book = self.book();
        book.roll(SystemTime::now());
        if book.adopted {
            return;
        }
        if let Some(s) = stored.filter(|s| s.period == book.own.period) {
            book.own.add(s);
        }
        book.adopted = true;
    }

    /// Takes in the ledger as the API returned it after a flush: the sibling pods' totals and
    /// the operator's grant. `pod` is this pod's name (its own key is skipped).
    pub fn observe(&self, data: &BTreeMap<String, String>, pod: &str, pack: Option<&CompiledPack>) {
        let mut book = self.book();
        book.roll(SystemTime::now());
        let (pods, grant) = ledger::read(data, &book.own.period);
        book.siblings = pods
            .iter()
            .filter(|(name, _)| name.as_str() != pod)
            .fold(0u64, |sum, (_, u)| sum.saturating_add(u.scans));
        book.grant = grant;
        let id = identity(pack);
        match &book.grant {
            Some(g) if g.scans_per_month > 0 => {
                // Precision loss past 2^53 scans is irrelevant for a ratio.
                let ratio = book.tenant_used() as f64 / g.scans_per_month as f64;
                self.metrics.used_ratio.get_or_create(&id).set(ratio);
            }
            _ => {
                self.metrics.used_ratio.remove(&id);
            }
        }
    }

    pub(crate) fn metrics(&self) -> &UsageMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_json(period: &str, scans: u64) -> String {
        serde_json::to_string(&PodUsage {
            period: period.to_string(),
            scans,
            ..PodUsage::default()
        })
        .unwrap()
    }

    fn bundle(tenant: Option<&str>, policy: &str) -> CompiledPack {
        use pd_engine::compile::{compile, PackSet};
        use pd_engine::policy::{Policy, PolicySpec};
        let mut set = PackSet::new();
        let pack = "version: \"1\"\nrules:\n  - {id: x, category: other, severity: high, weight: 90, keywords: {any: [evil]}}\n";
        set.insert("p".into(), serde_yaml::from_str(pack).unwrap());
        let policy = Policy {
            name: policy.into(),
            tenant: tenant.map(str::to_string),
            spec: PolicySpec {
                rule_packs: vec!["p".into()],
                ..PolicySpec::default()
            },
        };
        compile(&set, policy).unwrap()
    }

    fn exposition(metrics: &UsageMetrics) -> String {
        let mut registry = Registry::default();
        registry.register("u_scans", "", metrics.scans.clone());
        registry.register("u_bytes", "", metrics.bytes.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn scans_are_counted_under_the_labels_of_the_bundle_that_scanned_them() {
        let metrics = UsageMetrics::default();
        let usage = Usage::new(metrics.clone());
        let (a, b) = (bundle(Some("acme"), "chat"), bundle(None, "other"));
        usage.scanned(&a, Verdict::Allow, 10);
        usage.scanned(&a, Verdict::Allow, 5);
        usage.scanned(&b, Verdict::Block, 7);
        usage.scanned(&a, Verdict::Block, 1);
        let text = exposition(&metrics);
        for line in [
            r#"u_scans_total{tenant="acme",policy="chat",verdict="allow"} 2"#,
            r#"u_scans_total{tenant="acme",policy="chat",verdict="block"} 1"#,
            r#"u_scans_total{tenant="",policy="other",verdict="block"} 1"#,
            r#"u_bytes_total{tenant="acme",policy="chat"} 16"#,
            r#"u_bytes_total{tenant="",policy="other"} 7"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // No series for a verdict never given.
        assert!(!text.contains(r#"verdict="warn""#), "{text}");
        assert_eq!(usage.snapshot().scans, 4);
    }

    #[test]
    fn the_tenant_total_is_elsewhere_plus_siblings_plus_own() {
        let usage = Usage::new(UsageMetrics::default());
        let period = Period::of(SystemTime::now()).to_string();
        // A restarted container continues from its key; only once.
        usage.adopt(Some(&PodUsage {
            period: period.clone(),
            scans: 3,
            ..PodUsage::default()
        }));
        usage.adopt(Some(&PodUsage {
            period: period.clone(),
            scans: 100,
            ..PodUsage::default()
        }));
        assert_eq!(usage.snapshot().scans, 3);
        let grant = |per_month: u64, period: &str| {
            serde_json::to_string(&QuotaGrant {
                period: period.to_string(),
                scans_per_month: per_month,
                burst: 1,
                on_exceeded: OnExceeded::Block,
                used_elsewhere: 1,
            })
            .unwrap()
        };
        let mut data = BTreeMap::from([
            // Its own key as stored is not a sibling.
            ("pod.me".to_string(), usage_json(&period, 50)),
            ("pod.other".to_string(), usage_json(&period, 4)),
            ("pod.gone".to_string(), usage_json("2001-01", 70)),
            (ledger::QUOTA_KEY.to_string(), grant(8, &period)),
        ]);
        // 1 + 4 + 3 = 8 of 8 + 1: one left.
        usage.observe(&data, "me", None);
        assert_eq!(usage.admit(None), Ok(()));
        data.insert(ledger::QUOTA_KEY.to_string(), grant(7, &period));
        usage.observe(&data, "me", None);
        let blocked = usage.admit(None).unwrap_err();
        assert_eq!(blocked.period, period);
        assert!(blocked.retry_after <= MAX_RETRY_AFTER);
        assert_eq!(usage.snapshot().quota_exceeded, 1);
        // A grant of another period (a month the operator has not summed yet) limits nothing.
        data.insert(ledger::QUOTA_KEY.to_string(), grant(7, "2001-01"));
        usage.observe(&data, "me", None);
        assert_eq!(usage.admit(None), Ok(()));
    }

    #[test]
    fn a_new_period_starts_from_zero() {
        let mut book = Book::new(Period::parse("2001-01").unwrap());
        book.own.scans = 9;
        book.siblings = 4;
        book.roll(SystemTime::now());
        assert_eq!(book.own.scans, 0);
        assert_eq!(book.siblings, 0);
        assert_eq!(book.own.period, Period::of(SystemTime::now()).to_string());
        assert!(book.adopted, "a new period has nothing to continue from");
    }
}
