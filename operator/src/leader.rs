//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never run the
//! controllers at the same time.
//!
//! The protocol is client-go's: the leader renews the Lease's `renewTime` every
//! [`RENEW_EVERY`]; a candidate takes the Lease over only when `renewTime +
//! leaseDurationSeconds` has passed. Every write after the read carries the read's
//! `resourceVersion`, so of two candidates racing for an expired Lease exactly one PUT wins and
//! the other gets a 409 Conflict (= not leader).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

/// Name of the Lease the operator replicas compete for.
pub const LEASE_NAME: &str = "pd-operator-leader";
/// How long a Lease stays valid after its last renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews (and a candidate retries).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// One candidate for the operator's Lease.
#[derive(Clone)]
pub struct LeaderElector {
    pub client: Client,
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// `POD_NAME` (downward API) or the host name, plus a random suffix so a restarted pod with the
/// same name is a new holder.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pd-operator".to_string());
    format!("{base}-{:08x}", rand::random::<u32>())
}

/// The current time as the Lease's timestamp type (microseconds, as `MicroTime` carries).
pub fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// A candidate with the defaults: Lease [`LEASE_NAME`], [`default_identity`],
    /// [`LEASE_DURATION`], [`RENEW_EVERY`].
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            lease_name: LEASE_NAME.to_string(),
            identity: default_identity(),
            lease_duration: LEASE_DURATION,
            renew_every: RENEW_EVERY,
        }
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// One election round at `now`: creates the Lease if it is absent, renews it if we hold it,
    /// takes it over if the holder let it expire (or released it). `Ok(true)` = we are the
    /// leader until `now + lease_duration`. A 409 on the write (another candidate won the race)
    /// is `Ok(false)`; other API errors are returned.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let api = self.api();
        let micro = MicroTime(now);
        let duration = seconds(self.lease_duration);
        let Some(mut lease) = api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(micro.clone()),
                    renew_time: Some(micro),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(self.identity.as_str()) {
            spec.renew_time = Some(micro);
            spec.lease_duration_seconds = Some(duration);
        } else {
            if holder.is_some() && !expired(spec, now) {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.lease_duration_seconds = Some(duration);
            spec.acquire_time = Some(micro.clone());
            spec.renew_time = Some(micro);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        // The fetched resourceVersion stays in `lease.metadata`: the PUT fails with 409 if
        // anybody wrote the Lease since our GET.
        match api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (best effort, on shutdown) so another replica takes over at once
    /// instead of waiting for it to expire: if we still hold it, clears `holderIdentity` and sets
    /// `leaseDurationSeconds` to 1, as client-go's `ReleaseOnCancel` does.
    pub async fn release(&self, now: Timestamp) -> Result<(), kube::Error> {
        let api = self.api();
        let Some(mut lease) = api.get_opt(&self.lease_name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now));
        api.replace(&self.lease_name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// `renewTime + leaseDurationSeconds` is before `now` (a Lease without them has expired).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    match renew
        .0
        .checked_add(SignedDuration::from_secs(i64::from(secs)))
    {
        Ok(until) => until < now,
        Err(_) => false,
    }
}
