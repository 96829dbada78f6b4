//! A mocked API server for the operator's tier-2 tests: `tower_test::mock::pair` behind a real
//! `kube::Client`, as in kube-rs's controller-rs fixtures. Every request is recorded, so tests
//! can pin method, path and query, content type and body.

use http::{header::CONTENT_TYPE, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

/// One request as the mock API server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub content_type: Option<String>,
    /// The JSON body, `Null` when empty.
    pub body: Value,
}

/// A client whose requests go to `respond` (status code, JSON answer); returns the client and
/// a task that yields every request once all clients are dropped.
pub fn mock_client(
    respond: impl Fn(&Recorded) -> (u16, Value) + Send + 'static,
) -> (Client, tokio::task::JoinHandle<Vec<Recorded>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default();
            let content_type = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let bytes = req.into_body().collect_bytes().await.expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON request body")
            };
            let rec = Recorded {
                method,
                path,
                content_type,
                body,
            };
            let (code, answer) = respond(&rec);
            if code == TIMEOUT {
                // As if the connection timed out: a transport error, no HTTP answer.
                send.send_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "mock timeout",
                ));
                seen.push(rec);
                continue;
            }
            let response = Response::builder()
                .status(code)
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&answer).expect("answer")))
                .expect("response");
            send.send_response(response);
            seen.push(rec);
        }
        seen
    });
    (Client::new(service, "default"), server)
}

/// Answer code that makes the mock fail the request at the transport level (a timeout)
/// instead of answering it.
pub const TIMEOUT: u16 = 0;

/// A `Status` failure body as the API server sends it.
pub fn api_status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "message": format!("mock {reason}"), "reason": reason, "code": code})
}

/// Drops `clients` (whatever holds the mocked client: a `Context`, an elector), which ends the
/// mock server, and returns every request it recorded.
pub async fn finish<T>(
    clients: T,
    server: tokio::task::JoinHandle<Vec<Recorded>>,
) -> Vec<Recorded> {
    drop(clients);
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("mock server still has clients")
        .expect("mock server panicked")
}

/// `METHOD path?query` of each request, for assertions on the exact sequence.
pub fn lines(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}
