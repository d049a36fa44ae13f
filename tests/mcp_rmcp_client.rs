//! Guards `delegation-log mcp` driven by the Rust MCP SDK's own client (rmcp 3.11),
//! the binary started as a subprocess over stdio as a runtime would start it: the
//! tools and their schemas, a delegation delivered and one failed, a bad argument
//! answered as a tool error, and the shutdown paths. Closing stdin drains and
//! exits 0; SIGTERM while an agent still holds a delivery waits for it and records
//! its outcome, leaving nothing `queued`. Each outcome the client read is what
//! `delegation-log status --json` prints on the same db afterwards.
#![cfg(all(feature = "cli", feature = "mcp"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::{Agent, closed_port_url, run};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// An A2A 0.3 agent that takes the task and answers with a Message.
fn message_answer(request: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "kind": "message", "messageId": "m-1", "role": "agent", "contextId": "c-1",
        "parts": [{"kind": "text", "text": "on it"}]
    }})
}

type Client = RunningService<RoleClient, ()>;

/// Starts `delegation-log mcp --db DB --protocol 0.3` and connects rmcp's client
/// to its stdin and stdout.
async fn start(db: &Path) -> (Client, Child) {
    start_with(db, &[]).await
}

/// As [`start`], with `extra` arguments.
async fn start_with(db: &Path, extra: &[&str]) -> (Client, Child) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .arg("mcp")
        .arg("--db")
        .arg(db)
        .args(["--protocol", "0.3", "--timeout", "10"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let client = ().serve((stdout, stdin)).await.unwrap();
    (client, child)
}

async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .unwrap()
}

/// The structured answer of a call that succeeded.
async fn answer(client: &Client, tool: &'static str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{result:#?}");
    result.structured_content.unwrap()
}

/// Polls `check_task_status` until `id` is no longer `queued`.
async fn settled(client: &Client, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = answer(client, "check_task_status", json!({"id": id})).await;
        if status["status"] != "queued" {
            return status;
        }
        assert!(Instant::now() < until, "{id} never settled: {status:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child's exit, within `limit`.
async fn exited(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    tokio::time::timeout(limit, child.wait())
        .await
        .expect("the server exited in time")
        .unwrap()
}

/// What `delegation-log status --json DB ID` prints, parsed.
fn cli_status(db: &Path, id: &str) -> Value {
    let (_, stdout, stderr) = run(&["status", db.to_str().unwrap(), id, "--json"]);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {stdout} {stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_client_delegates_polls_to_the_outcome_and_the_cli_agrees() {
    let agent = Agent::answering(message_answer);
    let closed = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start(&db).await;

    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "delegation-log");
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["check_task_status", "delegate_task_async", "list_pending"]
    );
    assert!(tools.iter().all(|tool| tool.output_schema.is_some()));

    let receipt = answer(
        &client,
        "delegate_task_async",
        json!({"target": agent.url(), "task": "review PR 42", "id": "rmcp-accepting"}),
    )
    .await;
    assert_eq!(receipt["status"], "queued", "{receipt:#}");
    assert_eq!(receipt["id"], "rmcp-accepting", "{receipt:#}");
    // No id: the server makes one.
    let fresh = answer(
        &client,
        "delegate_task_async",
        json!({"target": closed, "task": "review PR 43"}),
    )
    .await;
    let fresh_id = fresh["id"].as_str().unwrap().to_owned();
    assert!(fresh_id.starts_with("d-"), "{fresh:#}");

    let delivered = settled(&client, "rmcp-accepting").await;
    assert_eq!(delivered["status"], "delivered", "{delivered:#}");
    assert_eq!(delivered["remote"]["kind"], "message", "{delivered:#}");
    let failed = settled(&client, &fresh_id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["reason"], "target_offline", "{failed:#}");

    let refused = call(
        &client,
        "delegate_task_async",
        json!({"target": "127.0.0.1:9/a2a", "task": "t"}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true), "{refused:#?}");
    assert_eq!(refused.structured_content.unwrap()["argument"], "target");
    assert_eq!(agent.requests(), 1);

    // Closing stdin ends the session; the server drains and exits 0.
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    assert_eq!(cli_status(&db, "rmcp-accepting"), delivered);
    assert_eq!(cli_status(&db, &fresh_id), failed);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_held_delivery_waits_for_it_records_it_and_exits_0() {
    let agent = Agent::held(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start(&db).await;
    let receipt = answer(
        &client,
        "delegate_task_async",
        json!({"target": agent.url(), "task": "review PR 42", "id": "held"}),
    )
    .await;
    assert_eq!(receipt["status"], "queued");
    let until = Instant::now() + Duration::from_secs(10);
    while agent.requests() == 0 {
        assert!(Instant::now() < until, "the agent never got the request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The server drains: it is still there while the agent holds its answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the delivery ended"
    );
    agent.release();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    drop(client);

    let status = cli_status(&db, "held");
    assert_eq!(status["status"], "delivered", "{status:#}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_server_started_after_one_was_killed_settles_what_it_left_queued_before_serving() {
    let agent = Agent::held(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start(&db).await;
    let receipt = answer(
        &client,
        "delegate_task_async",
        json!({"target": agent.url(), "task": "review PR 42", "id": "orphan"}),
    )
    .await;
    assert_eq!(receipt["status"], "queued");
    let until = Instant::now() + Duration::from_secs(10);
    while agent.requests() == 0 {
        assert!(Instant::now() < until, "the agent never got the request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Killed mid-delivery: nothing drains, the delegation stays queued.
    child.start_kill().unwrap();
    let _ = exited(&mut child, Duration::from_secs(10)).await;
    drop(client);
    assert_eq!(cli_status(&db, "orphan")["status"], "queued");

    // The next server settles it before it answers the first call, so a client
    // polling it reads the outcome at once instead of `queued` forever.
    let (client, mut child) = start(&db).await;
    let status = answer(&client, "check_task_status", json!({"id": "orphan"})).await;
    assert_eq!(status["status"], "failed", "{status:#}");
    assert_eq!(status["reason"], "interrupted", "{status:#}");
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    assert_eq!(cli_status(&db, "orphan"), status);
    // It was not sent again: the policy at start is `interrupt`.
    agent.release();
    assert_eq!(agent.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_retries_check_task_status_on_the_first_id_follows_the_task_to_its_last_attempt() {
    let closed = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start_with(&db, &["--max-attempts", "3", "--backoff", "10ms"]).await;
    let receipt = answer(
        &client,
        "delegate_task_async",
        json!({"target": closed, "task": "review PR 44", "id": "gone"}),
    )
    .await;
    assert_eq!(receipt["status"], "queued", "{receipt:#}");
    // The first attempt fails at once; the task goes on until its third.
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = answer(&client, "check_task_status", json!({"id": "gone"})).await;
        if status["exhausted"] == true {
            break status;
        }
        assert!(Instant::now() < until, "never exhausted: {status:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["status"], "failed", "{status:#}");
    assert_eq!(status["reason"], "target_offline", "{status:#}");
    assert_eq!(status["attempts"], 3, "{status:#}");
    assert_eq!(status["latest"], "gone.r2", "{status:#}");
    assert_eq!(status["latest_status"], "failed", "{status:#}");
    let pending = answer(&client, "list_pending", json!({})).await;
    assert_eq!(pending["pending"], json!([]), "{pending:#}");
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    // What the server answered is what the CLI prints, from any attempt's id.
    assert_eq!(cli_status(&db, "gone")["latest"], "gone.r2");
    assert_eq!(cli_status(&db, "gone.r1")["exhausted"], true);
}
