//! The API's connection loop: what a client can hold of the node before it
//! has sent a single valid request.
//!
//! `axum::serve` builds hyper connections without a timer, so hyper's
//! header-read timeout never fires, and it accepts without limit. Here
//! hyper's HTTP/1 builder gets tokio's timer (the header timeout then also
//! closes idle keep-alive connections: hyper arms it whenever it waits for
//! a request head), a semaphore caps open connections (beyond it, clients
//! wait in the kernel's accept queue, which costs no file descriptor), and
//! a per-IP share keeps one address from taking them all. Every request
//! runs under tower-http's timeout, and every error response leaves in the
//! documented JSON shape.

use super::ApiError;
use crate::config::ApiConfig;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

/// hyper's read buffer per connection at most: a request head must fit
/// (hyper answers 431 past it), and 512 slow clients cost at most 32 MiB.
const READ_BUF_BYTES_MAX: usize = 64 << 10;
/// Refused connections whose answer we let the client read before
/// closing; past this many at once, a refused connection is just closed.
const LINGERING_MAX: usize = 64;
const LINGER: Duration = Duration::from_millis(500);
/// After `accept` fails (out of file descriptors), wait this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// In-flight responses get this long to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` under the `[api]` limits until `shutdown`
/// resolves.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    config: &ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    warn_if_few_descriptors(config.max_connections);
    let app = guard(app, config);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .max_buf_size(READ_BUF_BYTES_MAX)
        .keep_alive(true);
    let open = Arc::new(Semaphore::new(config.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let lingering = Arc::new(Semaphore::new(LINGERING_MAX));
    let graceful = GracefulShutdown::new();
    let mut accept_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A free slot first, then accept: over the cap, clients queue in
        // the kernel rather than in our descriptor table.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    if accept_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!("api: accept failed (more within 10 s not logged): {e}");
                        accept_warned = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.claim(peer.ip(), config.max_connections_per_ip) else {
            refuse(stream, &lingering);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (reset, header timeout, bad
            // request line): hyper has already answered or closed.
            let _ = conn.await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("api: connections still open at shutdown (event streams) dropped");
    }
}

/// The request-level limits around the routes: tower-http's timeout, then
/// every error response rewritten into the JSON shape.
pub fn guard(app: Router, config: &ApiConfig) -> Router {
    app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_millis(config.request_timeout_ms),
    ))
    .layer(axum::middleware::map_response(json_errors))
}

/// Rejections made outside our handlers (axum's extractors, tower-http's
/// timeout and limits) come as text or with no body: give them the
/// documented `{"error": {"code", "message"}}` shape.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        500 => "internal",
        503 => "unavailable",
        _ => "http_error",
    };
    let mut out = ApiError {
        status,
        code,
        message: text,
    }
    .into_response();
    // Keep what else the rejection said (Allow, Retry-After, ...).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Open connections per client address (IPv6 by /64, what one host is
/// usually given). Entries exist only while a connection holds a slot, so
/// the table is bounded by `max_connections`.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's share; given back on drop.
struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

fn share_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

impl PerIp {
    fn claim(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let key = share_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Answers a connection over its address's share with 503 JSON and closes
/// it. The answer fits any fresh socket buffer, so it is written without
/// waiting; the close waits briefly (bounded in count) so a client that
/// already sent its request reads the answer rather than a reset.
fn refuse(stream: TcpStream, lingering: &Arc<Semaphore>) {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": "too many open connections from your address; close some and retry",
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(permit);
    });
}

/// Says so at startup when the connection cap leaves too few descriptors
/// for RocksDB (up to 256), the peers and the logs.
fn warn_if_few_descriptors(max_connections: usize) {
    // getrlimit is `unsafe` FFI, which the workspace forbids: read /proc.
    let Ok(text) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(soft) = soft {
        if max_connections + 384 > soft {
            tracing::warn!(
                "api.max_connections = {max_connections} with a file-descriptor limit of {soft}: \
                 leave about 384 for storage and peers (lower max_connections or raise ulimit -n)"
            );
        }
    }
}
