//! The HTTP API (JSON). Routes are stable under `/v1`; `/openapi.json`
//! describes them. Every error is a 4xx/5xx with
//! `{"error": {"code": "...", "message": "..."}}`, and no input panics the
//! node: bodies are size-limited, JSON is parsed by hand so every failure
//! gets our error shape, and nothing here touches consensus state except
//! through the mempool.

mod body;
mod server;

pub use server::{guard, serve_router};

use crate::node::{Admitted, Shared};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::Stream;
use phalanx_consensus::{Block, CommitCertificate, SeqNum, TxResult};
use phalanx_crypto::{merkle, Address, Digest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A node more blocks behind than this refuses submissions (503
/// `catching_up`) until it has caught up. A few blocks behind is normal
/// for a moment; a window's worth means it is fetching history.
pub const SUBMIT_BEHIND_MAX: u64 = 64;

type AppState = Arc<Shared>;

/// An API error with its HTTP status and a stable code.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// 503 `fail_stopped` if the node fail-stopped: its state disagreed with a
/// checkpoint quorum, so nothing it executed may be served as true.
fn refuse_if_fail_stopped(s: &Shared) -> Result<(), ApiError> {
    match s.fail_stop() {
        None => Ok(()),
        Some(stop) => Err(ApiError::new(
            503,
            "fail_stopped",
            format!(
                "this node stopped at checkpoint {}: {}. It serves no state and takes no transactions: use another node. Operator: {}",
                stop.seq, stop.reason, stop.recovery
            ),
        )),
    }
}

impl From<phalanx_storage::StorageError> for ApiError {
    fn from(e: phalanx_storage::StorageError) -> ApiError {
        ApiError::new(500, "storage", e.to_string())
    }
}

pub fn router(shared: AppState) -> Router {
    let body_limit = shared.config.api.max_body_bytes;
    let event_slots = EventSlots {
        free: Arc::new(Semaphore::new(shared.config.api.max_event_subscribers)),
        max: shared.config.api.max_event_subscribers,
        keepalive: Duration::from_millis(shared.config.api.event_keepalive_ms),
    };
    Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{hash}", get(transaction))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/blocks/latest", get(latest_block))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/validators", get(validators))
        .route("/v1/status", get(status))
        .route("/v1/evidence", get(evidence))
        .route("/v1/events", get(events))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bounds the body while it streams in (413 past it); axum's
        // rather than tower-http's RequestBodyLimit, whose early refusal
        // by Content-Length closes on a client still writing (a reset,
        // not an answer).
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(Extension(event_slots))
        .with_state(shared)
}

/// Serves the API until `shutdown` resolves, under the `[api]` limits
/// (see `server`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let config = shared.config.api.clone();
    serve_router(listener, router(shared), &config, shutdown).await;
}

/// A query string, refused in our JSON shape (axum's `Query` answers
/// text/plain).
struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::new(400, "bad_query", e.body_text()))
    }
}

async fn not_found() -> ApiError {
    ApiError::new(404, "not_found", "no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        405,
        "method_not_allowed",
        "method not allowed on this route; see /openapi.json",
    )
}

/// `POST /v1/transactions`: one transaction, or `{"transactions": [...]}`.
async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    refuse_if_fail_stopped(&s)?;
    if !is_json {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "send the transaction as JSON with Content-Type: application/json",
        ));
    }
    // A validator cut off from a quorum cannot get anything committed:
    // say so now, so the client uses another node, rather than accept
    // transactions that wait for the partition to heal.
    let connected = s.network.connected().len() + 1;
    let quorum = s.validators.quorum();
    if connected < quorum {
        return Err(ApiError::new(
            503,
            "no_quorum",
            format!(
                "this node reaches {connected} of {} validators (itself included), a quorum is {quorum}: try another node",
                s.validators.len()
            ),
        ));
    }
    // Far behind, this node checks nonces against old accounts and cannot
    // tell the client when its transaction commits: send it elsewhere.
    let behind = s.status().blocks_behind;
    if behind > SUBMIT_BEHIND_MAX {
        return Err(ApiError::new(
            503,
            "catching_up",
            format!("this node is {behind} blocks behind and catching up from its peers: try another node"),
        ));
    }
    let body = body.map_err(|e| {
        let status = e.status().as_u16();
        let code = if status == 413 {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, e.body_text())
    })?;
    let (batch, parsed) = match body::parse(&body, s.config.api.max_batch_txs) {
        Ok(body::Submission::One(tx)) => (false, vec![tx]),
        Ok(body::Submission::Batch(txs)) => (true, txs),
        Err(body::BodyError::Json(e)) => {
            return Err(ApiError::new(
                400,
                "malformed_json",
                format!("malformed JSON: {e}"),
            ))
        }
        // A batch with one malformed item is refused whole: nothing of it
        // is admitted, and the message names the item.
        Err(body::BodyError::Shape(e)) => {
            return Err(ApiError::new(
                400,
                "malformed_transaction",
                format!("not a transaction: {e}"),
            ))
        }
        Err(body::BodyError::TooMany(max)) => {
            return Err(ApiError::new(
                413,
                "batch_too_large",
                format!("more than {max} transactions in the batch"),
            ))
        }
    };
    let admission = s.mempool.submit(parsed).await;
    if !admission.admitted.is_empty() {
        // Bounded channel: waits while the consensus loop is busy.
        let _ = s
            .admitted
            .send(Admitted {
                gossip: admission.admitted,
            })
            .await;
    }
    let results: Vec<Result<Digest, ApiError>> = admission
        .verdicts
        .into_iter()
        .map(|v| {
            v.map_err(|e| {
                s.metrics.reject_tx(e.code());
                ApiError::new(e.status(), e.code(), e.to_string())
            })
        })
        .collect();
    if !batch {
        return match results.into_iter().next() {
            Some(Ok(h)) => Ok((
                StatusCode::ACCEPTED,
                Json(json!({"hash": h.to_hex(), "status": "pending"})),
            )
                .into_response()),
            Some(Err(e)) => Err(e),
            None => Err(ApiError::new(500, "internal", "verdict missing")),
        };
    }
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let items: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(h) => json!({"hash": h.to_hex(), "status": "pending"}),
            Err(e) => json!({"error": {"code": e.code, "message": e.message}}),
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({"accepted": accepted, "results": items})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ProofQuery {
    proof: Option<bool>,
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    Digest::from_hex(text).map_err(|_| ApiError::new(400, "bad_hash", "expected 64 hex characters"))
}

fn result_json(r: &TxResult) -> Value {
    match r {
        TxResult::Executed => json!({"status": "executed"}),
        TxResult::Failed(f) => json!({
            "status": "failed",
            "reason": f.to_string(),
            "may_execute_later": r.may_execute_later(),
        }),
    }
}

/// `GET /v1/transactions/{hash}[?proof=true]`
async fn transaction(
    State(s): State<AppState>,
    Path(hash): Path<String>,
    ApiQuery(q): ApiQuery<ProofQuery>,
) -> Result<Response, ApiError> {
    let hash = parse_digest(&hash)?;
    refuse_if_fail_stopped(&s)?;
    if let Some(loc) = s.store.tx_location(&hash)? {
        let block = s
            .store
            .block(loc.height)?
            .ok_or_else(|| ApiError::new(500, "storage", "indexed block missing"))?;
        let mut body = json!({
            "hash": hash.to_hex(),
            "status": "committed",
            "height": loc.height.0,
            "position": loc.position,
            "block_hash": block.hash().to_hex(),
            "result": result_json(&loc.result),
            "transaction": block.txs.get(loc.position as usize),
        });
        if q.proof.unwrap_or(false) {
            let hashes = block
                .txs
                .iter()
                .map(phalanx_consensus::tx_hash)
                .collect::<Vec<_>>();
            let proof = merkle::prove(&hashes, loc.position as usize)
                .ok_or_else(|| ApiError::new(500, "storage", "position outside block"))?;
            body["proof"] = json!(proof);
            body["header"] = json!(block.header);
            let cert = s.store.certificate(loc.height)?;
            body["certificate"] = cert
                .map(|c| certificate_json(&s, &c))
                .unwrap_or(Value::Null);
        }
        return Ok(Json(body).into_response());
    }
    if s.mempool.contains(&hash) {
        return Ok(Json(json!({"hash": hash.to_hex(), "status": "pending"})).into_response());
    }
    Ok((
        StatusCode::NOT_FOUND,
        Json(json!({"hash": hash.to_hex(), "status": "unknown"})),
    )
        .into_response())
}

/// `GET /v1/accounts/{address}`
async fn account(
    State(s): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let address = Address::from_hex(&address)
        .map_err(|_| ApiError::new(400, "bad_address", "expected 40 hex characters"))?;
    refuse_if_fail_stopped(&s)?;
    let a = s.store.account(&address)?;
    let height = s.store.height()?;
    let pending_nonce = s.mempool.pending_nonce(&address, a.nonce);
    Ok(Json(json!({
        "address": address.to_hex(),
        "balance": a.balance,
        "nonce": a.nonce,
        "pending_nonce": pending_nonce,
        "height": height.0,
    })))
}

/// A certificate with, for every signature, the signer's key and the exact
/// bytes signed: checkable with any ed25519 library.
fn certificate_json(s: &Shared, c: &CommitCertificate) -> Value {
    let signatures: Vec<Value> = c
        .votes
        .iter()
        .map(|v| {
            json!({
                "validator_index": s.validators.index_of(&v.signer).map(|i| i.0),
                "public_key": v.signer.to_hex(),
                "signature": v.signature.to_hex(),
                "signed_bytes": hex::encode(v.signing_bytes(s.chain_id())),
            })
        })
        .collect();
    json!({
        "view": c.view.0,
        "seq": c.seq.0,
        "batch_digest": c.batch_digest.to_hex(),
        "signatures": signatures,
    })
}

fn block_json(s: &Shared, b: &Block, cert: Option<CommitCertificate>) -> Value {
    json!({
        "height": b.header.height.0,
        "hash": b.hash().to_hex(),
        "header": b.header,
        "transactions": b.txs,
        "tx_hashes": b.txs.iter().map(|t| phalanx_consensus::tx_hash(t).to_hex()).collect::<Vec<_>>(),
        "results": b.results.iter().map(result_json).collect::<Vec<_>>(),
        "certificate": cert.map(|c| certificate_json(s, &c)),
    })
}

async fn block_at(s: &Shared, height: SeqNum) -> Result<Json<Value>, ApiError> {
    // A block's header and results carry the state this node executed.
    refuse_if_fail_stopped(s)?;
    let b = s.store.block(height)?.ok_or_else(|| {
        ApiError::new(404, "not_found", format!("no block at height {}", height.0))
    })?;
    let cert = s.store.certificate(height)?;
    Ok(Json(block_json(s, &b, cert)))
}

/// `GET /v1/blocks/latest`
async fn latest_block(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    refuse_if_fail_stopped(&s)?;
    let h = s.store.height()?;
    if h.0 == 0 {
        return Err(ApiError::new(404, "not_found", "no blocks yet"));
    }
    block_at(&s, h).await
}

/// `GET /v1/blocks/{height}`
async fn block(
    State(s): State<AppState>,
    Path(height): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let h: u64 = height
        .parse()
        .map_err(|_| ApiError::new(400, "bad_height", "height must be a positive integer"))?;
    block_at(&s, SeqNum(h)).await
}

/// `GET /v1/validators`
async fn validators(State(s): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = s
        .genesis
        .validators
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "index": i,
                "name": v.name,
                "public_key": v.public_key.to_hex(),
                "p2p_address": v.p2p_address,
            })
        })
        .collect();
    Json(json!({
        "chain_id": s.chain_id(),
        "genesis_hash": s.genesis_hash.to_hex(),
        "f": s.validators.f(),
        "quorum": s.validators.quorum(),
        "validators": list,
    }))
}

/// `GET /v1/status`
async fn status(State(s): State<AppState>) -> Json<Value> {
    Json(json!(s.status()))
}

/// Evidence records per page unless `limit` says otherwise.
pub const EVIDENCE_PAGE_DEFAULT: usize = 100;
/// The most evidence records one page returns.
pub const EVIDENCE_PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
struct EvidenceQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// `GET /v1/evidence[?limit=&after=]`: one page, ordered by (validator,
/// view, phase); `next` is the `after` of the following page, or null.
async fn evidence(
    State(s): State<AppState>,
    Query(q): Query<EvidenceQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => EVIDENCE_PAGE_DEFAULT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=EVIDENCE_PAGE_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "bad_limit",
                    format!("limit must be an integer from 1 to {EVIDENCE_PAGE_MAX}"),
                )
            })?,
    };
    let after = match q.after.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<phalanx_storage::EvidenceCursor>()
                .map_err(|e| ApiError::new(400, "bad_cursor", format!("after: {e}")))?,
        ),
    };
    let page = s.store.evidence_page(after.as_ref(), limit)?;
    let list: Vec<Value> = page
        .records
        .iter()
        .map(|e| {
            json!({
                "validator": e.validator.to_hex(),
                "validator_index": s.validators.index_of(&e.validator).map(|i| i.0),
                "phase": format!("{:?}", e.phase),
                "view": e.view.0,
                "seq": e.seq.0,
                "first": e.first,
                "second": e.second,
            })
        })
        .collect();
    Ok(Json(json!({
        "evidence": list,
        "next": page.next.map(|c| c.to_string()),
    })))
}

/// The `/v1/events` subscriber slots: a stream holds one until it ends.
#[derive(Clone)]
struct EventSlots {
    free: Arc<Semaphore>,
    max: usize,
    keepalive: Duration,
}

/// `GET /v1/events`: server-sent events, one `block` event per new block,
/// a keep-alive comment when there is none; at most
/// `api.max_event_subscribers` at once.
async fn events(
    State(s): State<AppState>,
    Extension(slots): Extension<EventSlots>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let slot = slots.free.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            503,
            "too_many_subscribers",
            format!(
                "this node serves at most {} event streams at once; retry later or use another node",
                slots.max
            ),
        )
    })?;
    let rx = s.blocks.subscribe();
    // The slot lives in the stream's state: given back when the client
    // goes (hyper drops the stream when a write, such as a keep-alive,
    // fails).
    let stream = futures::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        loop {
            match rx.recv().await {
                Ok(b) => {
                    let event = SseEvent::default()
                        .event("block")
                        .json_data(&b)
                        .unwrap_or_default();
                    return Some((Ok(event), (rx, slot)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(slots.keepalive)))
}

/// `GET /health`: 200 `ok` or `degraded` (running, something failed: see
/// `reason`), 503 `fail_stopped` (stopped on a state divergence: see
/// `reason` and `recovery`).
async fn health(State(s): State<AppState>) -> Response {
    let st = s.status();
    let mut body =
        json!({"status": "ok", "height": st.height, "peers_connected": st.peers_connected});
    if let Some(stop) = &st.fail_stopped {
        body["status"] = json!("fail_stopped");
        body["reason"] = json!(stop.reason);
        body["seq"] = json!(stop.seq);
        body["since_ms"] = json!(stop.since_ms);
        body["recovery"] = json!(stop.recovery);
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    if let Some(d) = &st.degraded {
        body["status"] = json!("degraded");
        body["reason"] = json!(d.reason);
        body["since_ms"] = json!(d.since_ms);
    }
    Json(body).into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// `GET /openapi.json`
async fn openapi(State(s): State<AppState>) -> Json<Value> {
    Json(crate::openapi::document(&s.config.api))
}
