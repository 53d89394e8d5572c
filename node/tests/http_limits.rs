//! The API's connection limits, in-process on loopback with small
//! configured limits: slow headers and idle keep-alive connections are
//! closed, one address cannot take every connection, over the global cap
//! clients wait, slow bodies time out, and every rejection is JSON.
//!
//! No assertion is on speed: a test waits (up to a generous bound that
//! only a missing limit reaches) for the server to act.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::routing::{get, post};
use axum::Router;
use phalanx_node::api::serve_router;
use phalanx_node::config::ApiConfig;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longer than any limit configured here; reaching it fails the test.
const BOUND: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[allow(dead_code)]
struct Flag {
    proof: bool,
}

fn app() -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/q", get(|Query(_f): Query<Flag>| async { "ok" }))
        .route(
            "/n/{n}",
            get(|Path(n): Path<u64>| async move { n.to_string() }),
        )
        .route("/echo", post(|b: Bytes| async move { b }))
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: ApiConfig) -> Server {
        // Listen on every loopback address, so tests can be clients from
        // 127.0.0.1 and 127.0.0.2 (two "hosts").
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_router(listener, app(), &config, async {
                let _ = rx.await;
            })
            .await
        });
        Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(BOUND, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes; returns what it sent.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response whose body is JSON (Content-Length framed).
async fn read_response(s: &mut TcpStream) -> (u16, serde_json::Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + len])
                    .unwrap_or_else(|_| serde_json::Value::String(text[end + 4..].into()));
                assert!(
                    head.to_ascii_lowercase()
                        .contains("content-type: application/json"),
                    "not JSON: {head}"
                );
                return (status, body);
            }
        }
        let n = tokio::time::timeout(BOUND, s.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before a full response: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn get_from(from: [u8; 4], server: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut s = connect_from(from, server).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut s).await
}

fn config() -> ApiConfig {
    ApiConfig {
        header_read_timeout_ms: 60_000,
        request_timeout_ms: 60_000,
        ..ApiConfig::default()
    }
}

#[tokio::test]
async fn a_slow_header_is_cut_off_at_the_header_timeout() {
    let server = Server::start(ApiConfig {
        header_read_timeout_ms: 200,
        ..config()
    })
    .await;
    let mut slow = connect_from([127, 0, 0, 1], server.addr).await;
    // Half a request head, and then nothing.
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    read_to_close(&mut slow).await;
    // A connection that sends nothing at all goes the same way.
    let mut silent = connect_from([127, 0, 0, 1], server.addr).await;
    read_to_close(&mut silent).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start(ApiConfig {
        header_read_timeout_ms: 200,
        ..config()
    })
    .await;
    let mut s = connect_from([127, 0, 0, 1], server.addr).await;
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    // Kept alive, then idle: closed, not held forever.
    read_to_close(&mut s).await;
    server.stop().await;
}

#[tokio::test]
async fn one_address_gets_its_share_and_others_are_still_served() {
    let server = Server::start(ApiConfig {
        max_connections: 8,
        max_connections_per_ip: 3,
        max_event_subscribers: 2,
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 1], server.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    // The fourth from the same address: refused, in JSON.
    let (status, body) = get_from([127, 0, 0, 1], server.addr, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "too_many_connections");
    // Another address is served.
    let (status, body) = get_from([127, 0, 0, 2], server.addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    // A slot given back is usable again.
    drop(held.pop());
    let mut again = None;
    for _ in 0..1000 {
        let (status, _) = get_from([127, 0, 0, 1], server.addr, "/health").await;
        if status == 200 {
            again = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(again, Some(200), "the freed slot was never given back");
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn over_the_global_cap_clients_wait_and_are_served_when_one_leaves() {
    let server = Server::start(ApiConfig {
        max_connections: 4,
        max_connections_per_ip: 2,
        max_event_subscribers: 1,
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for from in [
        [127, 0, 0, 3],
        [127, 0, 0, 3],
        [127, 0, 0, 4],
        [127, 0, 0, 4],
    ] {
        let mut s = connect_from(from, server.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let mut waiting = connect_from([127, 0, 0, 2], server.addr).await;
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Not accepted while four are open. (A slow machine could only make
    // this pass wrongly, never fail wrongly.)
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut byte))
            .await
            .is_err(),
        "answered over the connection cap"
    );
    drop(held.pop());
    let (status, _) = read_response(&mut waiting).await;
    assert_eq!(status, 200);
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_body_gets_a_json_408() {
    let server = Server::start(ApiConfig {
        request_timeout_ms: 200,
        ..config()
    })
    .await;
    let mut s = connect_from([127, 0, 0, 1], server.addr).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let (status, body) = read_response(&mut s).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout");
    server.stop().await;
}

#[tokio::test]
async fn extractor_rejections_are_json() {
    let server = Server::start(config()).await;
    for (path, want_status, want_code) in [
        ("/q?proof=maybe", 400, "bad_request"),
        ("/q", 400, "bad_request"),
        ("/n/abc", 400, "bad_request"),
        ("/nothing-here", 404, "not_found"),
    ] {
        let (status, body) = get_from([127, 0, 0, 1], server.addr, path).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(body["error"]["code"], want_code, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path}: {body}"
        );
    }
    server.stop().await;
}
