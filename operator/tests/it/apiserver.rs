//! `--api-server-egress auto`: the discovery of the API server's addresses, against the mocked
//! API server, with the exact requests it makes (and so the RBAC it needs).

use crate::support::mock_api::{api_status, mock_client};
use pd_operator::apiserver::{discover, ApiEndpoint, DiscoveryError};
use serde_json::{json, Value};

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})
}

fn slices(addresses: &[&str]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {"resourceVersion": "7"},
           "items": [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "kubernetes", "namespace": "default"},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": addresses}],
                      "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]})
}

fn endpoint(cidr: &str, port: u16) -> ApiEndpoint {
    ApiEndpoint {
        cidr: cidr.into(),
        port,
    }
}

#[tokio::test]
async fn reads_the_cluster_ip_and_every_endpoint() {
    let (client, server) = mock_client(|r| match r.path.as_str() {
        "/api/v1/namespaces/default/services/kubernetes" => (200, service()),
        _ => (200, slices(&["172.18.0.3", "172.18.0.2"])),
    });
    let found = discover(&client).await.unwrap();
    drop(client);
    assert_eq!(
        found,
        [
            endpoint("10.96.0.1/32", 443),
            endpoint("172.18.0.2/32", 6443),
            endpoint("172.18.0.3/32", 6443),
        ]
    );
    let seen: Vec<String> = server
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /api/v1/namespaces/default/services/kubernetes",
            "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?&labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes",
        ]
    );
}

#[tokio::test]
async fn no_endpoints_or_no_access_is_an_error_that_says_so() {
    let (client, _server) = mock_client(|r| match r.path.as_str() {
        "/api/v1/namespaces/default/services/kubernetes" => (200, service()),
        _ => (200, slices(&[])),
    });
    let e = discover(&client).await.unwrap_err();
    assert!(matches!(e, DiscoveryError::Incomplete(_)), "{e}");
    assert!(e.to_string().contains("no endpoint addresses"), "{e}");

    let (client, _server) = mock_client(|_| (403, api_status(403, "Forbidden")));
    let e = discover(&client).await.unwrap_err();
    assert!(matches!(e, DiscoveryError::Api(_)), "{e}");
    assert!(e.to_string().contains("default/kubernetes"), "{e}");
}

#[tokio::test]
async fn a_moved_control_plane_is_stored_and_triggers_one_re_apply() {
    use futures::StreamExt;
    use pd_operator::builders::Settings;
    use pd_operator::controller::Context;
    use std::sync::Arc;

    // The API server now answers on .9; the operator started with .2.
    let (client, _server) = mock_client(|r| {
        if r.path
            .starts_with("/api/v1/namespaces/default/services/kubernetes")
        {
            (200, service())
        } else if r.path.contains("watch=true") {
            // An empty watch: the stream ends and the watcher re-watches.
            (200, Value::Null)
        } else {
            (200, slices(&["172.18.0.9"]))
        }
    });
    let started = vec![
        endpoint("10.96.0.1/32", 443),
        endpoint("172.18.0.2/32", 6443),
    ];
    let ctx = Arc::new(Context::with_settings(
        client.clone(),
        Settings {
            api_server: started.clone(),
            ..Settings::default()
        },
    ));
    let c = ctx.clone();
    let mut changes =
        pd_operator::apiserver::changes(client, move |found| c.set_api_server(found)).boxed();
    tokio::time::timeout(std::time::Duration::from_secs(20), changes.next())
        .await
        .expect("a change within 20 s")
        .expect("the stream goes on");
    assert_eq!(
        ctx.settings().api_server,
        [
            endpoint("10.96.0.1/32", 443),
            endpoint("172.18.0.9/32", 6443)
        ]
    );
    // The same addresses again are no change.
    assert!(!ctx.set_api_server(ctx.settings().api_server.clone()));
    assert!(ctx.set_api_server(started));
}
