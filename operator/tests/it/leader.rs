//! Leader election against a mocked API server (as `reconcile`): every request the
//! elector sends is recorded, so the tests pin method, path and the Lease written.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use pd_operator::leader::LeaderElector;
use serde_json::{json, Value};

use crate::support::mock_api::{api_status, finish, lines, mock_client, Recorded};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/pd-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/pd-system/leases/pd-operator-leader";
const ME: &str = "pd-operator-7d9f-abc12345";

fn elector(client: Client) -> LeaderElector {
    LeaderElector {
        client,
        namespace: "pd-system".into(),
        lease_name: "pd-operator-leader".into(),
        identity: ME.into(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
}

fn now() -> Timestamp {
    "2026-03-01T12:00:30.250000Z".parse().expect("timestamp")
}
const NOW: &str = "2026-03-01T12:00:30.250000Z";

fn lease(holder: &str, renewed: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "pd-operator-leader", "namespace": "pd-system",
                     "resourceVersion": "41", "uid": "lease-uid"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-03-01T11:00:00.000000Z", "renewTime": renewed,
                 "leaseTransitions": transitions}
    })
}

/// An API server holding `current` (404 if `None`) that answers writes with `write_code`.
fn server_with(
    current: Option<Value>,
    write_code: u16,
) -> impl Fn(&Recorded) -> (u16, Value) + Send + 'static {
    move |r| match (r.method.as_str(), &current) {
        ("GET", Some(l)) => (200, l.clone()),
        ("GET", None) => (404, api_status(404, "NotFound")),
        (_, _) if write_code == 409 => (409, api_status(409, "Conflict")),
        ("POST", _) => (201, r.body.clone()),
        ("PUT", _) => (200, r.body.clone()),
        _ => (405, api_status(405, "MethodNotAllowed")),
    }
}

#[tokio::test]
async fn absent_lease_is_created_and_we_lead() {
    let (client, server) = mock_client(server_with(None, 201));
    let e = elector(client);
    assert!(e.try_acquire_or_renew(now()).await.expect("election"));
    let reqs = finish(e, server).await;
    assert_eq!(
        lines(&reqs),
        vec![format!("GET {LEASE}"), format!("POST {LEASES}?")]
    );
    let b = &reqs[1].body;
    assert_eq!(b["metadata"]["name"], "pd-operator-leader", "{b}");
    assert_eq!(b["metadata"]["namespace"], "pd-system", "{b}");
    assert_eq!(
        b["spec"],
        json!({"holderIdentity": ME, "leaseDurationSeconds": 15, "acquireTime": NOW,
               "renewTime": NOW, "leaseTransitions": 0}),
        "{b}"
    );
}

#[tokio::test]
async fn lease_held_by_me_is_renewed() {
    let held = lease(ME, "2026-03-01T12:00:25.000000Z", 2);
    let (client, server) = mock_client(server_with(Some(held), 200));
    let e = elector(client);
    assert!(e.try_acquire_or_renew(now()).await.expect("election"));
    let reqs = finish(e, server).await;
    assert_eq!(
        lines(&reqs),
        vec![format!("GET {LEASE}"), format!("PUT {LEASE}?")]
    );
    let b = &reqs[1].body;
    assert_eq!(b["metadata"]["resourceVersion"], "41", "{b}");
    assert_eq!(
        b["spec"],
        json!({"holderIdentity": ME, "leaseDurationSeconds": 15,
               "acquireTime": "2026-03-01T11:00:00.000000Z", "renewTime": NOW,
               "leaseTransitions": 2}),
        "{b}"
    );
}

#[tokio::test]
async fn fresh_lease_of_another_replica_is_left_alone() {
    // Renewed 10 s ago, valid for 15 s: 5 s left.
    let held = lease("other-replica", "2026-03-01T12:00:20.250000Z", 2);
    let (client, server) = mock_client(server_with(Some(held), 200));
    let e = elector(client);
    assert!(!e.try_acquire_or_renew(now()).await.expect("election"));
    let reqs = finish(e, server).await;
    assert_eq!(lines(&reqs), vec![format!("GET {LEASE}")]);
}

#[tokio::test]
async fn expired_lease_of_another_replica_is_taken_over() {
    // Renewed 16 s ago, valid for 15 s.
    let held = lease("other-replica", "2026-03-01T12:00:14.250000Z", 2);
    let (client, server) = mock_client(server_with(Some(held), 200));
    let e = elector(client);
    assert!(e.try_acquire_or_renew(now()).await.expect("election"));
    let reqs = finish(e, server).await;
    assert_eq!(
        lines(&reqs),
        vec![format!("GET {LEASE}"), format!("PUT {LEASE}?")]
    );
    let b = &reqs[1].body;
    assert_eq!(b["metadata"]["resourceVersion"], "41", "{b}");
    assert_eq!(
        b["spec"],
        json!({"holderIdentity": ME, "leaseDurationSeconds": 15, "acquireTime": NOW,
               "renewTime": NOW, "leaseTransitions": 3}),
        "{b}"
    );
}

#[tokio::test]
async fn lost_takeover_race_is_not_leader() {
    let held = lease("other-replica", "2026-03-01T12:00:14.250000Z", 2);
    let (client, server) = mock_client(server_with(Some(held), 409));
    let e = elector(client);
    assert!(!e
        .try_acquire_or_renew(now())
        .await
        .expect("409 is not an error"));
    let reqs = finish(e, server).await;
    assert_eq!(
        lines(&reqs),
        vec![format!("GET {LEASE}"), format!("PUT {LEASE}?")]
    );
}

#[tokio::test]
async fn lost_create_race_is_not_leader() {
    let (client, server) = mock_client(server_with(None, 409));
    let e = elector(client);
    assert!(!e
        .try_acquire_or_renew(now())
        .await
        .expect("409 is not an error"));
    let reqs = finish(e, server).await;
    assert_eq!(
        lines(&reqs),
        vec![format!("GET {LEASE}"), format!("POST {LEASES}?")]
    );
}

#[tokio::test]
async fn server_error_is_returned() {
    let (client, server) = mock_client(|_| (500, api_status(500, "InternalError")));
    let e = elector(client);
    let err = e.try_acquire_or_renew(now()).await.expect_err("500");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500),
        "{err}"
    );
    let reqs = finish(e, server).await;
    assert_eq!(lines(&reqs), vec![format!("GET {LEASE}")]);
}

#[tokio::test]
async fn release_clears_the_holder() {
    let held = lease(ME, "2026-03-01T12:00:25.000000Z", 2);
    let (client, server) = mock_client(server_with(Some(held), 200));
    let e = elector(client);
    e.release(now()).await.expect("release");
    let reqs = finish(e, server).await;
    assert_eq!(
        lines(&reqs),
        vec![format!("GET {LEASE}"), format!("PUT {LEASE}?")]
    );
    let b = &reqs[1].body;
    assert_eq!(b["metadata"]["resourceVersion"], "41", "{b}");
    assert!(b["spec"].get("holderIdentity").is_none(), "{b}");
    assert_eq!(b["spec"]["leaseDurationSeconds"], 1, "{b}");
}

#[tokio::test]
async fn release_leaves_another_holders_lease_alone() {
    let held = lease("other-replica", "2026-03-01T12:00:25.000000Z", 2);
    let (client, server) = mock_client(server_with(Some(held), 200));
    let e = elector(client);
    e.release(now()).await.expect("release");
    let reqs = finish(e, server).await;
    assert_eq!(lines(&reqs), vec![format!("GET {LEASE}")]);
}
