//! The HTTP API: routes, request parsing, errors.
//!
//! Every failure is a JSON body `{"error": {"code", "message"}}` with the matching status —
//! never an HTML page or a dropped connection — and no message ever quotes the prompt: request
//! bodies are parsed here, so parse errors are reworded rather than passed through.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{InputHasher, ScanResult};
use crate::serve::audit::Decision;
use crate::serve::keys::KeyStore;
use crate::serve::metrics::Metrics;
use crate::serve::ratelimit::RateLimiter;
use crate::serve::reload::BundleState;

/// Everything a handler needs; shared by all requests.
pub struct AppState {
    pub bundle: Arc<BundleState>,
    pub metrics: Arc<Metrics>,
    /// `None` only with `--no-auth`.
    pub keys: Option<KeyStore>,
    pub limiter: RateLimiter,
    pub hasher: InputHasher,
    pub max_prompt_bytes: usize,
    pub max_batch: usize,
    /// Decisions for the audit writer; `None` when auditing is off.
    pub audit: Option<std::sync::mpsc::Sender<Decision>>,
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
    /// For people; never contains prompt text.
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

/// Request bodies may carry JSON escapes, so allow the prompt limit several times over before
/// the transport refuses; the prompt's own size is checked after decoding.
fn body_limit(max_prompt_bytes: usize, max_batch: usize) -> usize {
    max_prompt_bytes
        .saturating_mul(6)
        .saturating_mul(max_batch.max(1))
        .min(1 << 30)
        .saturating_add(64 * 1024)
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = body_limit(state.max_prompt_bytes, state.max_batch);
    Router::new()
        .route("/v1/scan", post(scan))
        .route("/v1/scan/batch", post(scan_batch))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
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
    let last_error = s.bundle.last_error();
    match s.bundle.current() {
        Some(p) => {
            s.metrics.http("/readyz", 200);
            Json(serde_json::json!({
                "ready": true,
                "bundle": p.pack,
                "policy": p.policy.name,
                "rules": p.rule_count(),
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

async fn scan(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = scan_inner(&s, &headers, body).await;
    respond(&s, "/v1/scan", r)
}

async fn scan_batch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = batch_inner(&s, &headers, body).await;
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

/// Checks shared by both scan routes, in the order a client would want to hear about them.
fn admit(s: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let client = match &s.keys {
        None => "anonymous".to_string(),
        Some(keys) => {
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(KeyStore::bearer)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "missing bearer token (Authorization: Bearer <key>)",
                    )
                })?;
            keys.verify(token)
                .ok_or_else(|| {
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key")
                })?
                .to_string()
        }
    };
    if let Err(wait) = s.limiter.check(&client, Instant::now()) {
        s.metrics.rate_limited();
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("rate limit exceeded for key `{client}`; retry in {secs} s"),
        );
        e.retry_after = Some(secs.max(1));
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

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is over the size limit",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "could not read the request body",
            )
        }
    })
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
                    "request does not match the schema: {}",
                    describe_data_error(&e)
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

/// serde's data errors quote offending *values* only for type mismatches ("invalid type:
/// string \"…\""); keep the kind of problem and drop anything after the first colon-quoted part.
fn describe_data_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let cut = text.find(" at line ").unwrap_or(text.len());
    let head = &text[..cut];
    // "unknown field `<name>`, expected ..." — the name is client input; leave it out.
    if let Some(rest) = head.strip_prefix("unknown field `") {
        return match rest.find("`, ") {
            Some(i) => format!("unknown field; {}", &rest[i + 3..]),
            None => "unknown field".to_string(),
        };
    }
    match head.find('"') {
        Some(q) if head.starts_with("invalid type") || head.starts_with("invalid value") => {
            format!("{}…", head[..q].trim_end())
        }
        _ => head.to_string(),
    }
}

fn check_size(s: &AppState, prompt: &str) -> Result<(), ApiError> {
    if prompt.len() > s.max_prompt_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "prompt_too_large",
            format!(
                "prompt is {} bytes; the limit is {}",
                prompt.len(),
                s.max_prompt_bytes
            ),
        ));
    }
    Ok(())
}

fn bundle(s: &AppState) -> Result<Arc<crate::compile::CompiledPack>, ApiError> {
    s.bundle.current().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_bundle",
            s.bundle
                .last_error()
                .map(|e| format!("no valid rule bundle is loaded: {e}"))
                .unwrap_or_else(|| "no valid rule bundle is loaded yet".into()),
        )
    })
}

fn run_scan(s: &AppState, pack: &crate::compile::CompiledPack, prompt: &str) -> ScanResult {
    let started = Instant::now();
    let result = pack.scan(prompt, &s.hasher);
    s.metrics.scanned(&result, started.elapsed().as_secs_f64());
    if let Some(tx) = &s.audit {
        let d = Decision {
            tenant: pack.policy.tenant.clone(),
            policy: result.policy.clone(),
            input_hash: result.input_hash.clone(),
            verdict: result.verdict.as_str().to_string(),
            evaluated_verdict: result.evaluated_verdict.map(|v| v.as_str().to_string()),
            score: result.score,
            rules: result.rule_ids().map(str::to_string).collect(),
            pack_hash: result.rule_pack.hash.clone(),
            latency_us: result.latency_us,
        };
        if tx.send(d).is_err() {
            s.metrics.audit_error();
        }
    }
    result
}

/// Prompts up to this size are scanned right on the async worker (tens of microseconds);
/// larger ones go to the blocking pool, so one 256 KiB attack prompt (milliseconds) cannot
/// stall the other connections served by that worker.
const INLINE_SCAN_BYTES: usize = 16 * 1024;

async fn offload<T: Send + 'static>(
    s: &Arc<AppState>,
    bytes: usize,
    f: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    if bytes <= INLINE_SCAN_BYTES {
        return Ok(f(s));
    }
    let s = s.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the scan task failed",
            )
        })
}

async fn scan_inner(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ScanResult, ApiError> {
    admit(s, headers)?;
    let bytes = read_body(body)?;
    let req: ScanRequest = parse(&bytes)?;
    check_size(s, &req.prompt)?;
    let pack = bundle(s)?;
    let prompt = req.prompt;
    offload(s, prompt.len(), move |s| run_scan(s, &pack, &prompt)).await
}

async fn batch_inner(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<BatchResponse, ApiError> {
    admit(s, headers)?;
    let bytes = read_body(body)?;
    let req: BatchRequest = parse(&bytes)?;
    if req.items.len() > s.max_batch {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_items",
            format!(
                "batch has {} items; the limit is {}",
                req.items.len(),
                s.max_batch
            ),
        ));
    }
    for (i, item) in req.items.iter().enumerate() {
        check_size(s, &item.prompt).map_err(|mut e| {
            e.message = format!("item {i}: {}", e.message);
            e
        })?;
    }
    // One bundle for the whole batch, so every item is judged by the same rules.
    let pack = bundle(s)?;
    let bytes = req.items.iter().map(|i| i.prompt.len()).sum();
    let items = req.items;
    let results = offload(s, bytes, move |s| {
        items
            .into_iter()
            .map(|item| BatchResult {
                result: run_scan(s, &pack, &item.prompt),
                id: item.id,
            })
            .collect()
    })
    .await?;
    Ok(BatchResponse { results })
}

/// Builds the OpenAPI 3.1 document from the request and response types (JSON Schema 2020-12,
/// which OpenAPI 3.1 uses as is).
pub fn openapi_document() -> serde_json::Value {
    let mut gen = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let scan_req = gen.subschema_for::<ScanRequest>();
    let scan_res = gen.subschema_for::<ScanResult>();
    let batch_req = gen.subschema_for::<BatchRequest>();
    let batch_res = gen.subschema_for::<BatchResponse>();
    let error = gen.subschema_for::<ErrorBody>();
    let schemas = gen.take_definitions(true);
    let err = |desc: &str| serde_json::json!({"description": desc, "content": {"application/json": {"schema": error}}});
    let scan_errors = |ok_desc: &str, ok_schema: &schemars::Schema| {
        serde_json::json!({
            "200": {"description": ok_desc, "content": {"application/json": {"schema": ok_schema}}},
            "400": err("Malformed JSON or a body that is not UTF-8"),
            "401": err("Missing or unknown API key"),
            "413": err("Body or prompt over the size limit"),
            "415": err("Content-Type is not application/json"),
            "422": err("Missing, mistyped or unknown fields; too many batch items"),
            "429": err("Rate limited; see the Retry-After header"),
            "503": err("No valid rule bundle is loaded")
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
