//! Guards the HTTP transport against real servers on loopback, one per outcome:
//! a 200 is `delivered`, a 503 is `failed / http_status 503`, a closed port is
//! `failed / target_offline`, a server that never answers is `failed / timeout`, and
//! a task that cannot be encoded is `failed / marshal_error`. After `shutdown`,
//! `status` gives exactly these answers (pinned as JSON snapshots, times and ports
//! masked) and `history` shows `queued` then the outcome. It also pins the A2A
//! envelopes that reach the server, in both wire generations.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use delegation_log::dispatch::{Dispatcher, Options, Request};
use delegation_log::store::Memory;
use delegation_log::transport::Http;
use delegation_log::transport::http::Version;
use delegation_log::{EventKind, Ledger, ManualClock};
use serde_json::{Value, json};
use tokio::sync::mpsc;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn ledger() -> Ledger {
    Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::Options::new().clock(ManualClock::default()),
    )
}

/// Delegates one task to `target` over HTTP, shuts down, and returns the
/// status JSON (times and the port masked) and the history's event kinds.
async fn outcome(target: String, deadline: Duration) -> (Value, Vec<EventKind>) {
    let ledger = ledger();
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        Http::new().unwrap(),
        Options::new().deadline(deadline),
    );
    let receipt = dispatcher
        .delegate(
            Request::new("planner", target)
                .id("task-1".parse().unwrap())
                .task("review PR 42"),
        )
        .await
        .unwrap();
    dispatcher.shutdown().await.unwrap();
    let status = ledger.status(&receipt.id).unwrap();
    let kinds = ledger
        .history(&receipt.id)
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

#[tokio::test]
async fn a_200_answer_is_recorded_as_delivered() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/a2a",
        post(move |headers: HeaderMap, body: String| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send((headers.get("a2a-version").cloned(), body));
                axum::Json(json!({"jsonrpc": "2.0", "id": "task-1", "result": {}}))
            }
        }),
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
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/a2a",
        post(move |headers: HeaderMap, body: String| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send((headers.get("a2a-version").cloned(), body));
                StatusCode::ACCEPTED
            }
        }),
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
    assert_eq!(ledger.status(&receipt.id).unwrap().http_status, Some(202));
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
