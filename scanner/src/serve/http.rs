//! The HTTP API: routes, request parsing, errors.
//!
//! Every failure is a JSON body `{"error": {"code", "message"}}` with the matching status —
//! never an HTML page or a dropped connection — and every message is fixed text (plus limits
//! from the configuration and positions): no message ever quotes the prompt, a field name or a
//! value the client sent. Protocol errors hyper answers by itself get the same body
//! ([`crate::serve::conn_io`]).
//!
//! The scan routes check the API key (and the per-peer throttle of bad keys) from the headers
//! before a byte of the body is read; the body is then read against a size limit derived from
//! `--max-prompt-bytes` and `--max-batch`, within `--http-body-timeout-ms`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{InputHasher, ScanResult};
use crate::serve::audit::Decision;
use crate::serve::audit_writer::AuditSink;
use crate::serve::keys::{KeyRing, KeyStore};
use crate::serve::metrics::Metrics;
use crate::serve::ratelimit::{RateLimit, RateLimiter};
use crate::serve::reload::BundleState;
use crate::serve::server::PeerAddr;

/// Failed authentications a peer address may make back to back, and how fast that allowance
/// refills. Past it the peer's requests are refused (429) without checking the key at all, so
/// guessing keys costs real time; clients with a valid key never spend from it.
pub const AUTH_FAILURE_LIMIT: RateLimit = RateLimit {
    per_second: 1.0,
    burst: 10,
};

/// Everything a handler needs; shared by all requests.
pub struct AppState {
    pub bundle: Arc<BundleState>,
    pub metrics: Arc<Metrics>,
    /// `None` only with `--no-auth`.
    pub keys: Option<Arc<KeyRing>>,
    /// Per key id; per peer address with `--no-auth`.
    pub limiter: RateLimiter,
    /// Failed authentications per peer address ([`AUTH_FAILURE_LIMIT`]).
    pub auth_failures: RateLimiter,
    pub hasher: InputHasher,
    pub max_prompt_bytes: usize,
    pub max_batch: usize,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// The audit writer; `None` when auditing is off.
    pub audit: Option<AuditSink>,
    /// Admission of scans too large to run inline.
    pub large_scans: LargeScans,
    /// Webhook notifications (`--webhooks`); offered decisions after they are audited.
    pub webhooks: Option<Arc<crate::serve::webhook::Dispatcher>>,
    /// Usage counters and the tenant's quota ([`crate::serve::usage`]).
    pub usage: Arc<crate::serve::usage::Usage>,
}

/// `POST /v1/scan` body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The text to scan (UTF-8, at most the configured size).
    pub prompt: String,
    /// Caller context; accepted and ignored by the engine, never logged.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/scan/batch` body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub items: Vec<BatchItem>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// Echoed back with the item's result.
    #[serde(default)]
    pub id: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub result: ScanResult,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BatchResponse {
    /// One result per item, in request order.
    pub results: Vec<BatchResult>,
}

/// The error body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, snake_case.
    pub code: &'static str,
    /// For people; fixed text, never anything the client sent.
    pub message: String,
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code,
                    message: self.message,
                },
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// The OpenAPI document, checked in as `scanner/openapi.json` and drift-tested.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Room in a body for each prompt's JSON encoding: twice its decoded size, which holds any
/// prompt whose non-ASCII text a client escapes as `\uXXXX` (Python's `json.dumps` default: 6
/// bytes for a 3-byte character). Prompts escaped beyond that (control characters, `\u`
/// escapes of ASCII) must be sent shorter or unescaped.
pub const JSON_EXPANSION: usize = 2;
/// Room in a body besides the prompts: the envelope, ids and metadata.
pub const BODY_ENVELOPE_BYTES: usize = 64 * 1024;

/// The largest body a scan route reads: `items` prompts at [`JSON_EXPANSION`] times the prompt
/// limit, plus [`BODY_ENVELOPE_BYTES`]. The prompts' own sizes are checked after decoding.
pub fn body_limit(max_prompt_bytes: usize, items: usize) -> usize {
    max_prompt_bytes
        .saturating_mul(JSON_EXPANSION)
        .saturating_mul(items.max(1))
        .saturating_add(BODY_ENVELOPE_BYTES)
}

pub fn router(state: Arc<AppState>) -> Router {
    let scan_routes = Router::new()
        .route("/v1/scan", post(scan))
        .route("/v1/scan/batch", post(scan_batch))
        .route("/openapi.json", get(openapi));
    with_probe_routes(scan_routes).with_state(state)
}

/// The probe and metrics routes alone (`--health-listen`): no scan route, so this listener
/// needs neither keys nor client certificates and gives access to nothing else.
pub fn health_router(state: Arc<AppState>) -> Router {
    with_probe_routes(Router::new()).with_state(state)
}

/// `routes` plus health, readiness and metrics, then the JSON 404/405 fallbacks (added last:
/// the 405 fallback reaches only the routes registered before it). Both listeners serve these.
fn with_probe_routes(routes: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(State(s): State<Arc<AppState>>) -> ApiError {
    s.metrics.http("other", 404);
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed(State(s): State<Arc<AppState>>) -> ApiError {
    s.metrics.http("other", 405);
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.http("/healthz", 200);
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if s.audit.as_ref().is_some_and(|a| !a.ready()) {
        s.metrics.http("/readyz", 503);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "ready": false,
                "reason": "audit records cannot be written (see the log); decisions are refused until they can",
            })),
        )
            .into_response();
    }
    let last_error = s.bundle.last_error();
    match s.bundle.current() {
        Some(p) => {
            s.metrics.http("/readyz", 200);
            let unused = s.bundle.unused_packs();
            // Still ready: the policy's own packs serve as they should. The warning is for
            // the person who loaded a pack and wonders why it never matches.
            let warning = (!unused.is_empty())
                .then(|| crate::serve::reload::unused_packs_warning(&p, &unused));
            Json(serde_json::json!({
                "ready": true,
                "bundle": p.pack,
                "policy": p.policy.name,
                "rules": p.rule_count(),
                "unused_packs": unused,
                "warning": warning,
                "last_reload_error": last_error,
                // Which source updates arrive from: the ConfigMap watch while it is synced,
                // else the polled files.
                "source": if s.bundle.api_live() { "configmap" } else { "files" },
            }))
            .into_response()
        }
        None => {
            s.metrics.http("/readyz", 503);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "ready": false,
                    "reason": last_error.unwrap_or_else(|| "no bundle loaded yet".into()),
                })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.http("/metrics", 200);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn openapi(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.http("/openapi.json", 200);
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn scan(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let r = scan_inner(&s, req).await;
    respond(&s, "/v1/scan", r)
}

async fn scan_batch(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let r = batch_inner(&s, req).await;
    respond(&s, "/v1/scan/batch", r)
}

fn respond<T: Serialize>(s: &AppState, route: &'static str, r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => {
            s.metrics.http(route, 200);
            Json(v).into_response()
        }
        Err(e) => {
            s.metrics.http(route, e.status.as_u16());
            e.into_response()
        }
    }
}

fn too_many_requests(code: &'static str, message: &'static str, wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
    e.retry_after = Some(secs.max(1));
    e
}

/// Who is calling: the key id, or the peer address without authentication. Checked from the
/// headers alone, before the body is read.
fn authenticate(
    s: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<String, ApiError> {
    let peer_key = match peer {
        Some(ip) => format!("ip:{ip}"),
        None => "ip:unknown".to_string(),
    };
    let Some(keys) = &s.keys else {
        return Ok(peer_key);
    };
    let now = Instant::now();
    if let Err(wait) = s.auth_failures.peek(&peer_key, now) {
        s.metrics.auth_throttled();
        return Err(too_many_requests(
            "auth_throttled",
            "too many requests with a missing or unknown API key from this address; retry later",
            wait,
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(KeyStore::bearer);
    let Some(token) = token else {
        let _ = s.auth_failures.check(&peer_key, now);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing bearer token (Authorization: Bearer <key>)",
        ));
    };
    match keys.verify(token) {
        Some(id) => Ok(id),
        None => {
            let _ = s.auth_failures.check(&peer_key, now);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
            ))
        }
    }
}

/// Checks shared by both scan routes, in the order a client would want to hear about them,
/// all from the headers: key, rate (one token), content type.
fn admit(s: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<String, ApiError> {
    let client = authenticate(s, headers, peer)?;
    if let Err(wait) = s.limiter.check(&client, Instant::now()) {
        s.metrics.rate_limited();
        return Err(too_many_requests(
            "rate_limited",
            "rate limit exceeded; see Retry-After",
            wait,
        ));
    }
    if let Err(q) = s.usage.admit(s.bundle.current().as_deref()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "the tenant's scan quota for {} is used up; it resets at {} (see Retry-After)",
                q.period, q.resets_at
            ),
        );
        e.retry_after = Some(q.retry_after.as_secs().max(1));
        return Err(e);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    Ok(client)
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body is over the size limit",
    )
}

/// Reads the body, at most `limit` bytes and within the body timeout. A declared
/// `Content-Length` over the limit is refused before anything is read.
async fn read_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(payload_too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(s.body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(payload_too_large()),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "could not read the request body",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses JSON with errors that describe the problem but never quote the input.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            format!(
                "request body is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!(
                    "request does not match the schema: {} (line {}, column {})",
                    describe_data_error(&e),
                    e.line(),
                    e.column()
                ),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!(
                    "request body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            ),
        }
    })
}

/// A fixed description of a data error: serde's own text quotes the client's field names and
/// values (`unknown field `…``, `invalid type: integer `314159265``), so only its kind is kept.
/// Missing-field errors name fields of our schema, never the client's.
fn describe_data_error(e: &serde_json::Error) -> &'static str {
    let text = e.to_string();
    if text.starts_with("missing field `prompt`") {
        "missing field `prompt`"
    } else if text.starts_with("missing field `items`") {
        "missing field `items`"
    } else if text.starts_with("missing field") {
        "a required field is missing"
    } else if text.starts_with("unknown field") {
        "unknown field (see the API schema at /openapi.json)"
    } else if text.starts_with("invalid type") {
        "a field has the wrong type"
    } else if text.starts_with("invalid length") || text.starts_with("invalid value") {
        "a field has an invalid value"
    } else {
        "the body has the wrong shape"
    }
}

fn check_size(s: &AppState, prompt: &str) -> Result<(), ApiError> {
    if prompt.len() > s.max_prompt_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "prompt_too_large",
            format!("prompt is over the limit of {} bytes", s.max_prompt_bytes),
        ));
    }
    Ok(())
}

fn bundle(s: &AppState) -> Result<Arc<crate::compile::CompiledPack>, ApiError> {
    s.bundle.current().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_bundle",
            "no valid rule bundle is loaded (GET /readyz says why)",
        )
    })
}

fn run_scan(s: &AppState, pack: &crate::compile::CompiledPack, prompt: &str) -> ScanResult {
    let started = Instant::now();
    let result = pack.scan(prompt, &s.hasher);
    s.metrics.scanned(&result, started.elapsed().as_secs_f64());
    s.usage.scanned(pack, result.verdict, prompt.len());
    result
}

fn decision(pack: &crate::compile::CompiledPack, result: &ScanResult) -> Decision {
    Decision {
        tenant: pack.policy.tenant.clone(),
        policy: result.policy.clone(),
        input_hash: result.input_hash.clone(),
        verdict: result.verdict.as_str().to_string(),
        evaluated_verdict: result.evaluated_verdict.map(|v| v.as_str().to_string()),
        score: result.score,
        rules: result.rule_ids().map(str::to_string).collect(),
        pack_hash: result.rule_pack.hash.clone(),
        latency_us: result.latency_us,
    }
}

/// Waits until the decisions are audited (when auditing is on): no answer leaves before its
/// record is written.
async fn audit(s: &AppState, decisions: Vec<Decision>) -> Result<(), ApiError> {
    let Some(sink) = &s.audit else {
        return Ok(());
    };
    sink.record(decisions).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the decision could not be audited, so it is not answered; retry later",
        )
    })
}

/// Prompts up to this size are scanned right on the async worker (tens of microseconds);
/// larger ones go to the blocking pool, so one 256 KiB attack prompt (milliseconds) cannot
/// stall the other connections served by that worker.
pub const INLINE_SCAN_BYTES: usize = 16 * 1024;

/// How many large scans (over [`INLINE_SCAN_BYTES`], a batch counted by its total) run at once,
/// and how long one may wait for its turn.
///
/// Why: a scan's memory and time are bounded per scan (the engine's automata are built ahead
/// of time; windows and spans are capped), but not the number of scans at once. Tokio's
/// blocking pool grows to 512 threads, and every thread running a scan holds its own regex
/// caches, so a few dozen maximal prompts at once used to take gigabytes. With a slot per core
/// the worst case is `slots` × one maximal scan, whatever clients send; the rest wait in line
/// (no work is lost) and are refused with 503 `busy` only past `wait`.
#[derive(Debug)]
pub struct LargeScans {
    slots: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl LargeScans {
    pub fn new(slots: usize, wait: Duration) -> Self {
        LargeScans {
            slots: Arc::new(tokio::sync::Semaphore::new(slots.max(1))),
            wait,
        }
    }
}

async fn offload<T: Send + 'static>(
    s: &Arc<AppState>,
    bytes: usize,
    f: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    if bytes <= INLINE_SCAN_BYTES {
        return Ok(f(s));
    }
    s.metrics.large_scan_waiting(1);
    let permit = tokio::time::timeout(
        s.large_scans.wait,
        s.large_scans.slots.clone().acquire_owned(),
    )
    .await;
    s.metrics.large_scan_waiting(-1);
    let Ok(Ok(permit)) = permit else {
        s.metrics.large_scan_refused();
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many large prompts are being scanned at once; retry shortly",
        );
        e.retry_after = Some(1);
        return Err(e);
    };
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let r = f(&s);
        drop(permit);
        r
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the scan task failed",
        )
    })
}

fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<PeerAddr>().map(|p| p.0.ip())
}

async fn scan_inner(s: &Arc<AppState>, req: Request) -> Result<ScanResult, ApiError> {
    let peer = peer(&req);
    let (parts, body) = req.into_parts();
    admit(s, &parts.headers, peer)?;
    let bytes = read_body(s, &parts.headers, body, body_limit(s.max_prompt_bytes, 1)).await?;
    let req: ScanRequest = parse(&bytes)?;
    drop(bytes);
    check_size(s, &req.prompt)?;
    let pack = bundle(s)?;
    let prompt = req.prompt;
    let (pack, result) = offload(s, prompt.len(), move |s| {
        let r = run_scan(s, &pack, &prompt);
        (pack, r)
    })
    .await?;
    audit(s, vec![decision(&pack, &result)]).await?;
    if let Some(w) = &s.webhooks {
        w.offer(&pack, [&result]);
    }
    Ok(result)
}

async fn batch_inner(s: &Arc<AppState>, req: Request) -> Result<BatchResponse, ApiError> {
    let peer = peer(&req);
    let (parts, body) = req.into_parts();
    let client = admit(s, &parts.headers, peer)?;
    let limit = body_limit(s.max_prompt_bytes, s.max_batch);
    let bytes = read_body(s, &parts.headers, body, limit).await?;
    let req: BatchRequest = parse(&bytes)?;
    drop(bytes);
    if req.items.len() > s.max_batch {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_items",
            format!("batch has more than {} items", s.max_batch),
        ));
    }
    for (i, item) in req.items.iter().enumerate() {
        check_size(s, &item.prompt).map_err(|mut e| {
            e.message = format!("item {i}: {}", e.message);
            e
        })?;
    }
    // Every item is a scan: admission took one token, the rest are charged now.
    let extra = u32::try_from(req.items.len().saturating_sub(1)).unwrap_or(u32::MAX);
    s.limiter.charge(&client, extra, Instant::now());
    // One bundle for the whole batch, so every item is judged by the same rules.
    let pack = bundle(s)?;
    let bytes = req.items.iter().map(|i| i.prompt.len()).sum();
    let items = req.items;
    let (pack, results) = offload(s, bytes, move |s| {
        let results: Vec<BatchResult> = items
            .into_iter()
            .map(|item| BatchResult {
                result: run_scan(s, &pack, &item.prompt),
                id: item.id,
            })
            .collect();
        (pack, results)
    })
    .await?;
    audit(
        s,
        results.iter().map(|r| decision(&pack, &r.result)).collect(),
    )
    .await?;
    if let Some(w) = &s.webhooks {
        w.offer(&pack, results.iter().map(|r| &r.result));
    }
    Ok(BatchResponse { results })
}

/// Builds the OpenAPI 3.1 document from the request and response types (JSON Schema 2020-12,
/// which OpenAPI 3.1 uses as is).
///
/// Requests are described as the server deserializes them and responses as it serializes
/// them, so a response field that is omitted when empty (e.g. `Advisory.decoded_from` for a
/// direct match) is not listed as required.
pub fn openapi_document() -> serde_json::Value {
    let settings = || {
        schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.definitions_path = "/components/schemas".into())
    };
    let mut requests = settings().for_deserialize().into_generator();
    let scan_req = requests.subschema_for::<ScanRequest>();
    let batch_req = requests.subschema_for::<BatchRequest>();
    let mut responses = settings().for_serialize().into_generator();
    let scan_res = responses.subschema_for::<ScanResult>();
    let batch_res = responses.subschema_for::<BatchResponse>();
    let error = responses.subschema_for::<ErrorBody>();
    let mut schemas = requests.take_definitions(true);
    for (name, schema) in responses.take_definitions(true) {
        // The two sets share no type; a clash would make one side's references wrong.
        debug_assert!(
            !schemas.contains_key(&name),
            "schema {name} in requests and responses"
        );
        schemas.insert(name, schema);
    }
    let err = |desc: &str| serde_json::json!({"description": desc, "content": {"application/json": {"schema": error}}});
    let scan_errors = |ok_desc: &str, ok_schema: &schemars::Schema| {
        serde_json::json!({
            "200": {"description": ok_desc, "content": {"application/json": {"schema": ok_schema}}},
            "400": err("Malformed JSON, a body that is not UTF-8, or a request that is not valid HTTP"),
            "401": err("Missing or unknown API key"),
            "408": err("The body did not arrive within the body timeout"),
            "413": err("Body or prompt over the size limit"),
            "415": err("Content-Type is not application/json"),
            "422": err("Missing, mistyped or unknown fields; too many batch items"),
            "429": err("Rate limited (`rate_limited`), too many bad API keys from this address (`auth_throttled`), or the tenant's monthly scan quota is used up and its `onExceeded` is `block` (`quota_exceeded`); see the Retry-After header"),
            "431": err("Request headers over the size limit"),
            "503": err("No valid rule bundle is loaded (`no_bundle`), the decision could not be audited (`audit_unavailable`), or too many open connections (`too_many_connections`)")
        })
    };
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Prompt Defenders scanner API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Scans prompts against the loaded rule bundle. Raw prompts are never logged or stored."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/scan": {"post": {
                "operationId": "scan",
                "requestBody": {"required": true, "content": {"application/json": {"schema": scan_req}}},
                "responses": scan_errors("The verdict", &scan_res)
            }},
            "/v1/scan/batch": {"post": {
                "operationId": "scanBatch",
                "requestBody": {"required": true, "content": {"application/json": {"schema": batch_req}}},
                "responses": scan_errors("One result per item, in order", &batch_res)
            }},
            "/healthz": {"get": {"operationId": "healthz", "security": [], "responses": {"200": {"description": "The process is alive"}}}},
            "/readyz": {"get": {"operationId": "readyz", "security": [], "responses": {
                "200": {"description": "A valid bundle is loaded (name, version, hash)"},
                "503": {"description": "No valid bundle; `reason` says why"}
            }}},
            "/metrics": {"get": {"operationId": "metrics", "security": [], "responses": {"200": {"description": "Prometheus text exposition"}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "security": [], "responses": {"200": {"description": "This document"}}}}
        }
    })
}

/// Wall-clock time, for audit records.
pub fn now() -> SystemTime {
    SystemTime::now()
}
