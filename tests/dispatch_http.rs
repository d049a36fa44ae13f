//! Guards the HTTP transport against real servers on loopback, one per outcome:
//! a 200 is `delivered`, a 503 is `failed / http_status 503`, a closed port is
//! `failed / target_offline`, a server that never answers is `failed / timeout`, and
//! a task that cannot be encoded is `failed / marshal_error`. After `shutdown`,
//! `status` gives exactly these answers (pinned as JSON snapshots, times and ports
//! masked) and `history` shows `queued` then the outcome. It also pins the A2A
//! envelopes that reach the server, in both wire generations.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use delegation_log::EventKind;
use delegation_log::dispatch::{Dispatcher, Options, Request};
use delegation_log::transport::Http;
use delegation_log::transport::http::Version;
use delivery_support::{deliver_one, memory_ledger as ledger, serve};
use serde_json::{Value, json};
use support::closed_port;
use tokio::sync::mpsc;

/// Delegates one task to `target` over HTTP, shuts down, and returns the
/// status JSON (times and the port masked) and the history's event kinds.
async fn outcome(target: String, deadline: Duration) -> (Value, Vec<EventKind>) {
    let (ledger, id) = deliver_one(Http::new().unwrap(), "task-1", target, deadline).await;
    let status = ledger.status(&id).unwrap();
    let kinds = ledger
        .history(&id)
        .unwrap()
        .iter()
        .map(|r| r.event.kind())
        .collect();
    (mask(serde_json::to_value(status).unwrap()), kinds)
}

fn mask(mut status: Value) -> Value {
    for field in ["queued_at", "settled_at"] {
        if status[field].is_string() {
            status[field] = json!("[time]");
        }
    }
    for field in ["target", "error_detail"] {
        if let Some(text) = status[field].as_str() {
            status[field] = json!(mask_port(text));
        }
    }
    status
}

/// Replaces every `127.0.0.1:<port>` with `127.0.0.1:[port]`.
fn mask_port(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        let (before, after) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(before);
        out.push_str("[port]");
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// An agent at `/a2a` that answers every request with `status` and `answer`,
/// and hands each request's `A2A-Version` header and body to the receiver.
fn recording(
    status: StatusCode,
    answer: Value,
) -> (
    Router,
    mpsc::UnboundedReceiver<(Option<HeaderValue>, String)>,
) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/a2a",
        post(move |headers: HeaderMap, body: String| {
            let (seen_tx, answer) = (seen_tx.clone(), answer.clone());
            async move {
                let _ = seen_tx.send((headers.get("a2a-version").cloned(), body));
                (status, axum::Json(answer))
            }
        }),
    );
    (app, seen)
}

#[tokio::test]
async fn a_200_answer_is_recorded_as_delivered() {
    // What an A2A 0.3 agent answers: a Message.
    let (app, mut seen) = recording(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": "task-1", "result": {
            "kind": "message", "messageId": "m-1", "role": "agent",
            "contextId": "c-1", "parts": [{"kind": "text", "text": "on it"}]
        }}),
    );
    let addr = serve(app).await;
    let (status, kinds) = outcome(format!("http://{addr}/a2a"), Duration::from_secs(5)).await;
    insta::assert_json_snapshot!("status_delivered", status);
    assert_eq!(kinds, [EventKind::Queued, EventKind::Delivered]);

    let (version, body) = seen.recv().await.unwrap();
    assert_eq!(version, None);
    let body: Value = serde_json::from_str(&body).unwrap();
    insta::assert_json_snapshot!("envelope_a2a_0_3", body);
}

#[tokio::test]
async fn a_503_answer_is_recorded_as_failed_with_http_status_503() {
    let app = Router::new().route(
        "/a2a",
        post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "proxy busy") }),
    );
    let addr = serve(app).await;
    let (status, kinds) = outcome(format!("http://{addr}/a2a"), Duration::from_secs(5)).await;
    insta::assert_json_snapshot!("status_http_status_503", status);
    assert_eq!(kinds, [EventKind::Queued, EventKind::Failed]);
}

#[tokio::test]
async fn a_closed_port_is_recorded_as_target_offline() {
    let addr = closed_port();
    let (status, kinds) = outcome(format!("http://{addr}/a2a"), Duration::from_secs(5)).await;
    assert_eq!(status["reason"], "target_offline");
    assert_eq!(status["target_received"], "no");
    let detail = status["error_detail"].as_str().unwrap();
    assert!(detail.contains("Connection refused"), "{detail}");
    insta::assert_json_snapshot!("status_target_offline", status);
    assert_eq!(kinds, [EventKind::Queued, EventKind::Failed]);
}

#[tokio::test]
async fn a_server_that_never_answers_is_recorded_as_timeout() {
    let app = Router::new().route(
        "/a2a",
        post(|| async {
            std::future::pending::<()>().await;
        }),
    );
    let addr = serve(app).await;
    let (status, kinds) = outcome(format!("http://{addr}/a2a"), Duration::from_millis(150)).await;
    insta::assert_json_snapshot!("status_timeout", status);
    assert_eq!(kinds, [EventKind::Queued, EventKind::Failed]);
}

#[tokio::test]
async fn an_unencodable_task_is_recorded_as_marshal_error() {
    let ledger = ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Http::new().unwrap());
    let app = Router::new().route("/a2a", post(|| async { StatusCode::OK }));
    let addr = serve(app).await;
    // JSON object keys must be strings: this map has no JSON form.
    let task: HashMap<(u8, u8), &str> = HashMap::from([((4, 2), "review")]);
    let receipt = dispatcher
        .delegate(
            Request::new("planner", format!("http://{addr}/a2a"))
                .id("task-1".parse().unwrap())
                .task(&task),
        )
        .await
        .unwrap();
    dispatcher.shutdown().await.unwrap();
    let status = mask(serde_json::to_value(ledger.status(&receipt.id).unwrap()).unwrap());
    insta::assert_json_snapshot!("status_marshal_error", status);
    let kinds: Vec<_> = ledger
        .history(&receipt.id)
        .unwrap()
        .iter()
        .map(|r| r.event.kind())
        .collect();
    assert_eq!(kinds, [EventKind::Queued, EventKind::Failed]);
}

#[tokio::test]
async fn an_envelope_over_the_transports_limit_is_a_marshal_error_and_never_sent() {
    let ledger = ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Http::new().unwrap().max_body(64));
    let addr = closed_port();
    let receipt = dispatcher
        .delegate(
            Request::new("planner", format!("http://{addr}/a2a")).task("x".repeat(100).as_str()),
        )
        .await
        .unwrap();
    dispatcher.shutdown().await.unwrap();
    let status = ledger.status(&receipt.id).unwrap();
    assert_eq!(
        status.reason,
        Some(delegation_log::event::ReasonCode::MarshalError)
    );
    assert!(
        status
            .error_detail
            .unwrap()
            .contains("over the transport's limit of 64")
    );
}

#[tokio::test]
async fn a2a_1_0_posts_send_message_with_the_version_header() {
    // What an A2A 1.0 agent answers when it opens a task.
    let (app, mut seen) = recording(
        StatusCode::ACCEPTED,
        json!({"jsonrpc": "2.0", "id": "task-1", "result": {"task": {
            "id": "t-7", "contextId": "c-7",
            "status": {"state": "TASK_STATE_SUBMITTED"}
        }}}),
    );
    let addr = serve(app).await;
    let ledger = ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Http::new().unwrap().version(Version::V1_0));
    let receipt = dispatcher
        .delegate(
            Request::new("planner", format!("http://{addr}/a2a"))
                .id("task-1".parse().unwrap())
                .task_json(json!({"pr": 42})),
        )
        .await
        .unwrap();
    dispatcher.shutdown().await.unwrap();
    let status = ledger.status(&receipt.id).unwrap();
    assert_eq!(status.http_status, Some(202));
    let remote = status.remote.unwrap();
    assert_eq!(remote.kind, delegation_log::event::RemoteKind::Task);
    assert_eq!(remote.task_id.as_deref(), Some("t-7"));
    assert_eq!(
        remote.state,
        Some(delegation_log::event::TaskState::Submitted)
    );
    let (version, body) = seen.recv().await.unwrap();
    assert_eq!(version.unwrap(), "1.0");
    let body: Value = serde_json::from_str(&body).unwrap();
    insta::assert_json_snapshot!("envelope_a2a_1_0", body);
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_is_recorded_as_its_status() {
    let app = Router::new().route(
        "/a2a",
        post(|| async { (StatusCode::TEMPORARY_REDIRECT, [("location", "/elsewhere")]) }),
    );
    let addr = serve(app).await;
    let (status, _) = outcome(format!("http://{addr}/a2a"), Duration::from_secs(5)).await;
    assert_eq!(status["reason"], "http_status");
    assert_eq!(status["http_status"], 307);
}

/// A raw HTTP/1.1 server that answers every connection with `head` (status line
/// and headers, chunked), then streams `chunk` every `every` until the client
/// goes away, or stalls forever when `chunk` is empty. Returns its address and
/// the count of body bytes it managed to send.
async fn streaming_server(
    head: &'static str,
    chunk: &'static [u8],
    every: Duration,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    if chunk.is_empty() {
                        std::future::pending::<()>().await;
                    }
                    let framed = format!("{:x}\r\n", chunk.len());
                    if socket.write_all(framed.as_bytes()).await.is_err()
                        || socket.write_all(chunk).await.is_err()
                        || socket.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                    counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    (addr, sent)
}

const CHUNKED_500: &str = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
const CHUNKED_503: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
const CHUNKED_200: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn a_500_whose_body_streams_forever_is_http_status_500_read_with_bounded_memory() {
    static MEGABYTE: [u8; 1 << 20] = [b'x'; 1 << 20];
    let (addr, sent) = streaming_server(CHUNKED_500, &MEGABYTE, Duration::ZERO).await;
    // The deadline is far beyond the body's read budget: the status decides, at
    // once, and only a bounded prefix is kept.
    let (status, kinds) = outcome(format!("http://{addr}/a2a"), Duration::from_secs(30)).await;
    assert_eq!(status["reason"], "http_status");
    assert_eq!(status["http_status"], 500);
    assert_eq!(status["target_received"], "unknown");
    let detail = status["error_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("HTTP 500 Internal Server Error: xxx"),
        "{detail}"
    );
    assert!(detail.len() < 1000, "the detail holds only a prefix");
    assert_eq!(kinds, [EventKind::Queued, EventKind::Failed]);
    // The server could push only what socket buffers and the bounded read took,
    // nowhere near the gigabytes an unbounded read would have taken in the
    // deadline.
    let pushed = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(pushed < 256 << 20, "{pushed} bytes were pushed");
}

#[tokio::test]
async fn a_503_whose_body_stalls_is_http_status_503_not_timeout() {
    let (addr, _) = streaming_server(CHUNKED_503, b"", Duration::ZERO).await;
    let (status, _) = outcome(format!("http://{addr}/a2a"), Duration::from_secs(30)).await;
    assert_eq!(status["reason"], "http_status");
    assert_eq!(status["http_status"], 503);
    assert_eq!(status["target_received"], "no");
}

#[tokio::test]
async fn a_2xx_body_that_never_ends_is_a_timeout_not_a_hang() {
    let (addr, _) = streaming_server(CHUNKED_200, b" ", Duration::from_millis(20)).await;
    let (status, _) = outcome(format!("http://{addr}/a2a"), Duration::from_millis(400)).await;
    assert_eq!(status["reason"], "timeout");
    assert_eq!(status["target_received"], "unknown");
}

#[tokio::test]
async fn a_2xx_answer_over_the_answer_limit_is_bad_response() {
    static BIG: [u8; 64 * 1024] = [b' '; 64 * 1024];
    let (addr, _) = streaming_server(CHUNKED_200, &BIG, Duration::ZERO).await;
    let ledger = ledger();
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        Http::new().unwrap().max_answer(256 * 1024),
        Options::new().deadline(Duration::from_secs(30)),
    );
    let receipt = dispatcher
        .delegate(Request::new("planner", format!("http://{addr}/a2a")))
        .await
        .unwrap();
    dispatcher.shutdown().await.unwrap();
    let status = ledger.status(&receipt.id).unwrap();
    assert_eq!(
        status.reason,
        Some(delegation_log::event::ReasonCode::BadResponse)
    );
    assert!(status.error_detail.unwrap().contains("262144 bytes"));
}

/// Each kind of 2xx that is not the agent taking the task, as real peers send it.
#[tokio::test]
async fn two_xx_answers_that_are_not_acceptances_are_never_delivered() {
    let cases: [(&str, Value, &str, Option<i64>); 4] = [
        (
            "/method-not-found",
            json!({"jsonrpc": "2.0", "id": "task-1", "error": {"code": -32601, "message": "Method not found"}}),
            "rpc_error",
            Some(-32601),
        ),
        (
            "/rejected",
            json!({"jsonrpc": "2.0", "id": "task-1", "result": {"kind": "task", "id": "t-1", "contextId": "c-1", "status": {"state": "rejected"}}}),
            "rejected",
            None,
        ),
        (
            "/other-id",
            json!({"jsonrpc": "2.0", "id": "task-2", "result": {"kind": "message"}}),
            "bad_response",
            None,
        ),
        (
            "/empty-result",
            json!({"jsonrpc": "2.0", "id": "task-1", "result": {}}),
            "bad_response",
            None,
        ),
    ];
    let mut app = Router::new();
    for (path, answer, _, _) in &cases {
        let answer = answer.clone();
        app = app.route(path, post(move || async move { axum::Json(answer) }));
    }
    app = app.route(
        "/proxy-html",
        post(|| async { axum::response::Html("<html><body>Welcome</body></html>") }),
    );
    let addr = serve(app).await;
    for (path, _, reason, rpc_code) in cases.iter().map(|(p, a, r, c)| (*p, a, *r, *c)).chain([(
        "/proxy-html",
        &json!(null),
        "bad_response",
        None,
    )]) {
        let (status, kinds) = outcome(format!("http://{addr}{path}"), Duration::from_secs(5)).await;
        assert_eq!(status["status"], "failed", "{path}");
        assert_eq!(status["reason"], reason, "{path}");
        assert_eq!(status["rpc_code"], json!(rpc_code), "{path}");
        assert_eq!(kinds, [EventKind::Queued, EventKind::Failed]);
    }
}
