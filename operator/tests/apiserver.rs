//! `--api-server-egress auto`: the discovery of the API server's addresses, against the mocked
//! API server, with the exact requests it makes (and so the RBAC it needs).

mod mock_api;

use mock_api::{api_status, mock_client};
use pd_operator::apiserver::{discover, ApiEndpoint, DiscoveryError};
use serde_json::{json, Value};

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})
}

fn slices(addresses: &[&str]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {},
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
