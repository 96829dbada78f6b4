//! Fuzz harnesses: what the `fuzz/` targets (cargo-fuzz, libFuzzer) run on every input.
//!
//! The engine's harnesses, [`scan`] and [`pack`], live in `pd_engine::fuzzing` (re-exported
//! here) so that their targets build without the service; this module adds [`http`]: a request
//! (route, method, headers from the first byte; the rest is the body) through the real axum
//! router with an in-memory server state, plus the rewriting of hyper's protocol-error replies.
//! `scanner/tests/it/fuzz_replay.rs` replays every target's seed corpus through these functions
//! under a plain `cargo test`.
//!
//! Not part of the API: public only so that the fuzz crate and the replay test can call it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};

use crate::engine::InputHasher;

pub use pd_engine::fuzzing::*;

/// Largest request body an [`http`] run sends.
pub const MAX_HTTP_BYTES: usize = 64 * 1024;

/// Builds what [`http`] shares across inputs (the server state and its bundle).
pub fn init_http() {
    http_fixture();
}

/// A valid API key of the [`http`] harness's server.
pub const HTTP_KEY: &str = "fuzz-token-0123456789abcdef";
/// The [`http`] harness's prompt limit: small, so over-limit prompts and batches (and the
/// large-scan admission path, past 16 KiB per batch) are reachable with short inputs.
pub const HTTP_MAX_PROMPT: usize = 8 * 1024;
const HTTP_MAX_BATCH: usize = 4;

struct HttpFixture {
    state: Arc<crate::serve::http::AppState>,
    runtime: tokio::runtime::Runtime,
}

fn http_fixture() -> &'static HttpFixture {
    use crate::serve::http::{AppState, LargeScans};
    use crate::serve::keys::KeyRing;
    use crate::serve::metrics::Metrics;
    use crate::serve::ratelimit::{RateLimit, RateLimiter};
    use crate::serve::reload::{BundleState, Sources};

    static FIXTURE: OnceLock<HttpFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let metrics = Arc::new(Metrics::new());
        let bundle = Arc::new(BundleState::new());
        // No paths: `config/samples/` under the working directory, else the embedded samples.
        let sources = Sources {
            paths: Vec::new(),
            policy: None,
            limits: crate::limits::Limits::default(),
        };
        assert!(
            bundle.reload(&sources, &metrics).installed,
            "sample bundle loads"
        );
        let key_file = std::env::temp_dir().join(format!("pd-fuzz-keys-{}", std::process::id()));
        std::fs::write(&key_file, format!("fuzz={HTTP_KEY}\n")).expect("write key file");
        let keys = KeyRing::load(&key_file);
        let _ = std::fs::remove_file(&key_file);
        // Limits nothing reaches at fuzzing speed: every input must be judged on its own, not
        // on how many came before it.
        let unlimited = RateLimit {
            per_second: 1e12,
            burst: u32::MAX,
        };
        let state = AppState {
            usage: Arc::new(crate::serve::usage::Usage::new(metrics.usage.clone())),
            bundle,
            metrics,
            keys: Some(Arc::new(keys.expect("key file loads"))),
            limiter: RateLimiter::new(unlimited),
            auth_failures: RateLimiter::new(unlimited),
            hasher: InputHasher::new(b"fuzz-hmac-key").expect("hmac key"),
            max_prompt_bytes: HTTP_MAX_PROMPT,
            max_batch: HTTP_MAX_BATCH,
            body_timeout: Duration::from_secs(5),
            audit: None,
            large_scans: LargeScans::new(2, Duration::from_secs(5)),
            webhooks: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        HttpFixture {
            state: Arc::new(state),
            runtime,
        }
    })
}

/// Every status the API documents (`scanner/openapi.json`), plus 404 and 405.
const STATUSES: &[u16] = &[200, 400, 401, 404, 405, 408, 413, 415, 422, 429, 431, 503];

/// Strings in a JSON document, keys included.
fn json_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                out.push(k);
                json_strings(v, out);
            }
        }
        _ => {}
    }
}

/// A request through the real router (the first byte chooses route, method, content type and
/// credentials; the rest is the body), checked against what the API promises: a documented
/// status; errors as `{"error": {"code", "message"}}` that never quote the request; a 200
/// scan exactly when the body is a valid request within the limits, with spans inside the
/// prompt and one result per batch item in order. The rest of the input also goes through the
/// rewriting of hyper's protocol-error replies.
pub fn http(data: &[u8]) {
    if data.len() > MAX_HTTP_BYTES + 1 {
        return;
    }
    let (&first, body) = data.split_first().unwrap_or((&0, &[]));
    check_protocol_error_reply(body);

    let shape = RequestShape::decode(first);
    let reply = send(shape.request(body));
    assert!(
        STATUSES.contains(&reply.status.as_u16()),
        "status {}",
        reply.status
    );
    let json: serde_json::Value = match serde_json::from_slice(&reply.bytes) {
        Ok(v) => v,
        Err(_) if shape.path == "/readyz" || shape.path == "/healthz" => return,
        Err(e) => panic!(
            "{} answered {} with a body that is not JSON: {e}",
            shape.path, reply.status
        ),
    };
    if !reply.status.is_success() {
        check_error_reply(&reply, &json, body);
    }
    if shape.scan_route && shape.method == Method::POST {
        check_scan_decision(&shape, reply.status, &json, body);
    }
}

/// Whatever hyper would have rejected as a protocol error is answered by our rewritten reply:
/// it must still be a well-formed HTTP head whose content-length matches a JSON error body.
fn check_protocol_error_reply(body: &[u8]) {
    let Some(reply) = crate::serve::conn_io::protocol_error_reply(body) else {
        return;
    };
    let reply = String::from_utf8(reply).expect("reply is UTF-8");
    let (head, body) = reply.split_once("\r\n\r\n").expect("reply has a head");
    let len = format!("content-length: {}\r\n", body.len());
    assert!(head.contains(&len), "content-length of the rewritten reply");
    let v: serde_json::Value = serde_json::from_str(body).expect("reply body is JSON");
    assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
}

/// What the first input byte chose: kept as data so that the checks can work out what the
/// handler must have decided independently of it.
struct RequestShape {
    path: &'static str,
    /// `/v1/scan` or `/v1/scan/batch`.
    scan_route: bool,
    method: Method,
    content_type: Option<&'static str>,
    auth: Option<String>,
}

impl RequestShape {
    /// Bits 0-2 pick the route, bit 3 the method, bits 4-5 the content type, bits 6-7 the
    /// credentials; most values go to the valid choice so that scans are reached often.
    fn decode(first: u8) -> Self {
        let (path, scan_route) = match first & 0x07 {
            0..=2 => ("/v1/scan", true),
            3 | 4 => ("/v1/scan/batch", true),
            5 => ("/readyz", false),
            6 => ("/healthz", false),
            _ => ("/v1/nope", false),
        };
        let method = if first & 0x08 == 0 {
            Method::POST
        } else {
            Method::GET
        };
        let content_type = match (first >> 4) & 0x03 {
            0 | 1 => Some("application/json"),
            2 => Some("Application/JSON; charset=utf-8"),
            _ => None,
        };
        let auth = match first >> 6 {
            0 | 1 => Some(format!("Bearer {HTTP_KEY}")),
            2 => Some("Bearer not-the-right-token-at-all".to_string()),
            _ => None,
        };
        RequestShape {
            path,
            scan_route,
            method,
            content_type,
            auth,
        }
    }

    /// The request as the server would see it, peer address included (the rate limiters key
    /// on it).
    fn request(&self, body: &[u8]) -> Request<Body> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path);
        if let Some(ct) = self.content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.extension(crate::serve::server::PeerAddr(
            ([127, 0, 0, 1], 40000).into(),
        ))
        .body(Body::from(body.to_vec()))
        .expect("request builds")
    }
}

/// A collected response.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
}

/// Runs one request through a fresh router over the shared state, on the fixture's runtime.
fn send(req: Request<Body>) -> Reply {
    use http_body_util::BodyExt;

    let f = http_fixture();
    let router = crate::serve::http::router(f.state.clone());
    f.runtime.block_on(async move {
        use tower_service::Service;
        let mut svc = router;
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut svc, cx))
            .await
            .expect("router is ready");
        let resp = svc.call(req).await.expect("router is infallible");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            bytes,
        }
    })
}

/// An error reply keeps the documented shape: a snake_case code, a fixed message that quotes
/// nothing the client sent, and the headers its status promises.
fn check_error_reply(reply: &Reply, json: &serde_json::Value, body: &[u8]) {
    let code = json["error"]["code"].as_str().expect("error.code");
    let message = json["error"]["message"].as_str().expect("error.message");
    assert!(
        !code.is_empty()
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "code {code:?}"
    );
    assert!(!message.is_empty());
    // Error messages are fixed text: nothing the client sent comes back.
    if let Ok(sent) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut strings = Vec::new();
        json_strings(&sent, &mut strings);
        for s in strings.into_iter().filter(|s| s.len() >= 12) {
            assert!(!message.contains(s), "error message quotes the request");
        }
    }
    if reply.status == StatusCode::UNAUTHORIZED {
        assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    if reply.status == StatusCode::TOO_MANY_REQUESTS {
        assert!(reply.headers.contains_key(header::RETRY_AFTER));
    }
}

/// For a POST to a scan route: what the handler must have decided, worked out independently
/// of it, in the order it checks (credentials, content type, body, limits).
fn check_scan_decision(
    shape: &RequestShape,
    status: StatusCode,
    json: &serde_json::Value,
    body: &[u8],
) {
    let authorized = shape.auth.as_deref() == Some(&format!("Bearer {HTTP_KEY}"));
    if !authorized {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        return;
    }
    if shape.content_type.is_none() {
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return;
    }
    let Some(prompts) = parse_prompts(shape.path, body) else {
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "an invalid body was answered {status}"
        );
        return;
    };
    let within =
        prompts.len() <= HTTP_MAX_BATCH && prompts.iter().all(|(_, p)| p.len() <= HTTP_MAX_PROMPT);
    if !within {
        assert!(
            status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::UNPROCESSABLE_ENTITY,
            "a request over the limits was answered {status}"
        );
        return;
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Only `busy` is possible here: the bundle is loaded and auditing is off.
        assert_eq!(json["error"]["code"], "busy");
        return;
    }
    assert_eq!(status, StatusCode::OK, "a valid request was refused");
    check_scan_results(shape.path, &prompts, json);
}

/// The `(id, prompt)` items of a scan or batch body, or `None` when it is not a valid
/// request; parsed with the service's own request types so that "valid" means the same.
fn parse_prompts(path: &str, body: &[u8]) -> Option<Vec<(Option<String>, String)>> {
    if path == "/v1/scan" {
        serde_json::from_slice::<crate::serve::http::ScanRequest>(body)
            .ok()
            .map(|r| vec![(None, r.prompt)])
    } else {
        serde_json::from_slice::<crate::serve::http::BatchRequest>(body)
            .ok()
            .map(|r| r.items.into_iter().map(|i| (i.id, i.prompt)).collect())
    }
}

/// A 200 scan holds one result per item, in order, each with a verdict and advisory spans
/// inside its prompt.
fn check_scan_results(path: &str, prompts: &[(Option<String>, String)], json: &serde_json::Value) {
    let results: Vec<&serde_json::Value> = if path == "/v1/scan" {
        vec![json]
    } else {
        json["results"]
            .as_array()
            .expect("results")
            .iter()
            .collect()
    };
    assert_eq!(results.len(), prompts.len(), "one result per item");
    for ((id, prompt), r) in prompts.iter().zip(results) {
        assert!(matches!(
            r["verdict"].as_str(),
            Some("allow" | "warn" | "block")
        ));
        if path != "/v1/scan" {
            assert_eq!(r["id"].as_str(), id.as_deref(), "batch ids echoed in order");
        }
        for a in r["advisories"].as_array().expect("advisories") {
            let span = |k: &str| {
                a["span"][k]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .expect("span")
            };
            assert_span(prompt, span("start"), span("end"), "advisory over HTTP");
        }
    }
}
