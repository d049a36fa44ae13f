//! Guards `Protocol::Auto` and credentials end to end, on loopback agents that
//! serve agent cards: the card under the agent's path or at the origin decides the
//! URL and the A2A version posted; a card that cannot be had fails the delivery,
//! naming the card's URL, and nothing is posted; the credential reaches the agent
//! in the header its card asks for (or `Authorization: Bearer` without a card); a
//! 401 is `http_status 401` saying which credential was refused; and the secret
//! never reaches `Debug` output, a failure detail, or the log.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use delegation_log::transport::Http;
use delegation_log::transport::http::{Credential, Protocol};
use delivery_support::{deliver_one, serve};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SECRET: &str = "s3cr3t-Token-4242";

/// What an agent saw of one post.
#[derive(Debug)]
struct Seen {
    headers: HeaderMap,
    body: Value,
}

/// An agent at `path` that records each post and accepts it in the version it
/// was spoken to.
fn agent(path: &str, seen: mpsc::UnboundedSender<Seen>) -> Router {
    Router::new().route(
        path,
        post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let body: Value = serde_json::from_str(&body).unwrap();
                let result = if body["method"] == "SendMessage" {
                    json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": []}})
                } else {
                    json!({"kind": "message", "messageId": "m", "role": "agent", "parts": []})
                };
                let _ = seen.send(Seen { headers, body });
                axum::Json(json!({"jsonrpc": "2.0", "id": "task-1", "result": result}))
            }
        }),
    )
}

/// A card route at `path` serving `card`.
fn card(path: &str, card: Value) -> Router {
    Router::new().route(path, get(move || async move { axum::Json(card) }))
}

/// Delegates one task to `target` through `http`; returns the status and every
/// recorded event, as JSON.
async fn deliver(http: Http, target: String) -> (Value, Value) {
    let (ledger, id) = deliver_one(http, "task-1", target, Duration::from_secs(5)).await;
    let status = serde_json::to_value(ledger.status(&id).unwrap()).unwrap();
    let history = serde_json::to_value(ledger.history(&id).unwrap()).unwrap();
    (status, history)
}

fn auto() -> Http {
    Http::new().unwrap().protocol(Protocol::Auto)
}

/// A credential read from a file holding [`SECRET`].
fn credential() -> (tempfile::TempDir, Credential) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let credential = Credential::from_file(&path).unwrap();
    (dir, credential)
}

#[tokio::test]
async fn auto_reads_the_card_under_the_agents_path_and_speaks_1_0_at_its_interface() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As the official SDK serves a 1.0 agent that also speaks 0.3.
    let the_card = json!({
        "name": "review", "version": "1.0.0",
        "supportedInterfaces": [
            {"url": format!("http://{addr}/agents/review/rpc"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": format!("http://{addr}/agents/review/rpc"), "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ],
        "preferredTransport": "JSONRPC", "protocolVersion": "0.3",
        "url": format!("http://{addr}/agents/review/rpc"),
    });
    let app = agent("/agents/review/rpc", tx)
        .merge(card("/agents/review/.well-known/agent-card.json", the_card));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, _) = deliver(auto(), format!("http://{addr}/agents/review")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.headers["a2a-version"], "1.0");
    assert_eq!(seen.body["method"], "SendMessage");
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn auto_speaks_0_3_to_an_agent_whose_0_3_card_is_only_at_the_origin() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let the_card = json!({
        "name": "old", "version": "0.1.0", "protocolVersion": "0.3.0",
        "url": "/a2a", "preferredTransport": "JSONRPC",
    });
    let addr = serve(agent("/a2a", tx).merge(card("/.well-known/agent-card.json", the_card))).await;
    let (status, _) = deliver(auto(), format!("http://{addr}/a2a")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let seen = seen.recv().await.unwrap();
    assert!(seen.headers.get("a2a-version").is_none());
    assert_eq!(seen.body["method"], "message/send");
}

#[tokio::test]
async fn a_card_that_cannot_be_had_fails_the_delivery_naming_it_and_nothing_is_posted() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let addr = serve(agent("/a2a", tx)).await;
    let (status, _) = deliver(auto(), format!("http://{addr}/a2a")).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "http_status");
    assert_eq!(status["http_status"], 404);
    assert_eq!(status["target_received"], "no");
    assert_eq!(
        status["error_detail"],
        format!(
            "agent card http://{addr}/a2a/.well-known/agent-card.json: HTTP 404; \
             agent card http://{addr}/.well-known/agent-card.json: HTTP 404"
        )
    );
    assert!(seen.try_recv().is_err());

    let grpc_only = json!({"name": "g", "supportedInterfaces": [
        {"url": "http://127.0.0.1:1/g", "protocolBinding": "GRPC", "protocolVersion": "1.0"}]});
    let addr = serve(card("/.well-known/agent-card.json", grpc_only)).await;
    let (status, _) = deliver(auto(), format!("http://{addr}/")).await;
    assert_eq!(status["reason"], "bad_response", "{status}");
    let detail = status["error_detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "agent card http://{addr}/.well-known/agent-card.json: no JSON-RPC interface"
        )),
        "{detail}"
    );
}

#[tokio::test]
async fn the_credential_goes_in_the_header_the_card_asks_for() {
    let (_dir, credential) = credential();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let api_key_card = json!({
        "name": "keyed", "supportedInterfaces": [
            {"url": "", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "securitySchemes": {"key": {"apiKeySecurityScheme": {"location": "header", "name": "X-API-Key"}}},
        "securityRequirements": [{"schemes": {"key": {}}}],
    });
    let addr = serve(
        agent("/keyed", tx.clone()).merge(card("/keyed/.well-known/agent-card.json", api_key_card)),
    )
    .await;
    let http = Http::builder()
        .credential(credential.clone())
        .build()
        .unwrap()
        .protocol(Protocol::Auto);
    let (status, _) = deliver(http.clone(), format!("http://{addr}/keyed")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let keyed = seen.recv().await.unwrap();
    assert_eq!(keyed.headers["x-api-key"], SECRET);
    assert!(keyed.headers.get("authorization").is_none());

    let oidc_card = json!({
        "name": "oidc", "protocolVersion": "0.3.0", "url": "",
        "securitySchemes": {"google": {"type": "openIdConnect", "openIdConnectUrl": "https://id.example/.well-known/openid-configuration"}},
        "security": [{"google": ["openid"]}],
    });
    let addr = serve(agent("/", tx).merge(card("/.well-known/agent-card.json", oidc_card))).await;
    let (status, _) = deliver(http.clone(), format!("http://{addr}/")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let bearer = seen.recv().await.unwrap();
    assert_eq!(bearer.headers["authorization"], format!("Bearer {SECRET}"));

    // A fixed protocol reads no card: the secret goes as a bearer token.
    let (status, _) = deliver(http.protocol(Protocol::V0_3), format!("http://{addr}/")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    let fixed = seen.recv().await.unwrap();
    assert_eq!(fixed.headers["authorization"], format!("Bearer {SECRET}"));
}

/// An agent that refuses every post with 401, quoting the credentials it got.
fn refusing() -> Router {
    Router::new().route(
        "/a2a",
        post(|headers: HeaderMap| async move {
            let got = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (
                StatusCode::UNAUTHORIZED,
                format!("token {got:?} is not valid"),
            )
        }),
    )
}

#[tokio::test]
async fn a_401_is_http_status_401_saying_which_credential_was_refused() {
    let (_dir, credential) = credential();
    let addr = serve(refusing()).await;
    let http = Http::builder().credential(credential).build().unwrap();
    let (status, _) = deliver(http, format!("http://{addr}/a2a")).await;
    assert_eq!(status["reason"], "http_status");
    assert_eq!(status["http_status"], 401);
    let detail = status["error_detail"].as_str().unwrap();
    assert!(detail.contains("refused the credentials"), "{detail}");
    assert!(
        detail.contains("(sent the credential from the file "),
        "{detail}"
    );
    assert!(
        detail.ends_with("token as Authorization: Bearer)"),
        "{detail}"
    );

    let (status, _) = deliver(Http::new().unwrap(), format!("http://{addr}/a2a")).await;
    let detail = status["error_detail"].as_str().unwrap();
    assert!(
        detail.ends_with("(no credential was configured)"),
        "{detail}"
    );
}

#[tokio::test]
async fn the_secret_never_reaches_debug_output_a_failure_detail_or_the_log() {
    let (_dir, credential) = credential();
    let http = Http::builder().credential(credential).build().unwrap();
    for debug in [format!("{http:?}"), format!("{http:#?}")] {
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    let addr = serve(refusing()).await;
    let (status, history) = deliver(http, format!("http://{addr}/a2a")).await;
    let detail = status["error_detail"].as_str().unwrap();
    assert!(
        detail.contains(r#"token "Bearer [redacted]" is not valid"#),
        "{detail}"
    );
    for recorded in [status.to_string(), history.to_string()] {
        assert!(!recorded.contains(SECRET), "{recorded}");
    }
}

/// Set in the child process that reads its credential from the environment.
const CHILD: &str = "DELEGATION_LOG_TEST_AUTH_CHILD";

#[test]
fn a_credential_named_by_an_environment_variable_reaches_the_agent() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_its_credential_from_the_environment",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("DELEGATION_LOG_TEST_TOKEN", SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("child sent the token from the environment"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Run by the test above, in a child process; does nothing in a plain `cargo test`.
#[tokio::test]
async fn child_reads_its_credential_from_the_environment() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (tx, mut seen) = mpsc::unbounded_channel();
    let addr = serve(agent("/a2a", tx)).await;
    let credential = Credential::from_env("DELEGATION_LOG_TEST_TOKEN").unwrap();
    let http = Http::builder().credential(credential).build().unwrap();
    let (status, _) = deliver(http, format!("http://{addr}/a2a")).await;
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(
        seen.recv().await.unwrap().headers["authorization"],
        format!("Bearer {SECRET}")
    );
    println!("child sent the token from the environment");
}
