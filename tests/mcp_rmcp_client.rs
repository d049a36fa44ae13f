//! Guards `delegation-log mcp` driven by the Rust MCP SDK's own client (rmcp 3.11),
//! the binary started as a subprocess over stdio as a runtime would start it: the
//! tools and their schemas, a delegation delivered and one failed, a bad argument
//! answered as a tool error, and the shutdown paths: closing stdin, or SIGTERM,
//! while an agent still holds a delivery waits for it and records its outcome,
//! exits 0, and leaves nothing `queued`. Each outcome the client read is what
//! `delegation-log status --json` prints on the same db afterwards. With
//! `--log-format json` (feature `tracing`), the server's stderr holds the
//! delegation's `settled` line and none of the SDK's INFO chatter.
//!
//! With the tasks extension (`io.modelcontextprotocol/tasks`) declared, the same
//! delegations are MCP tasks: `delegate_task_async` answers with a task, `tasks/get`
//! says `working` while the log says `queued` and `completed` once it settles,
//! with `check_task_status`'s answer as the result (`isError` when it failed), and
//! answers from the log for a task an earlier, killed server opened. Bad task ids
//! and `tasks/cancel` get JSON-RPC errors; a client that did not declare the
//! extension gets the receipt, and `tasks/get` refused.
#![cfg(all(feature = "cli", feature = "mcp"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::{Agent, run};
use rmcp::ServiceExt as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, ErrorCode, GetTaskParams, GetTaskResult, Implementation, TaskPayload, TaskStatus,
};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceError};
use serde_json::{Value, json};
use support::closed_port_url;
use tokio::process::{Child, Command};

/// An A2A 0.3 agent that takes the task and answers with a Message.
fn message_answer(request: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "kind": "message", "messageId": "m-1", "role": "agent", "contextId": "c-1",
        "parts": [{"kind": "text", "text": "on it"}]
    }})
}

type Client = RunningService<RoleClient, ()>;

/// A client that declared the tasks extension.
type TasksClient = RunningService<RoleClient, ClientConfig>;

/// Starts `delegation-log mcp --db DB --protocol 0.3` and connects rmcp's client
/// to its stdin and stdout.
async fn start(db: &Path) -> (Client, Child) {
    start_with(db, &[]).await
}

/// As [`start`], with `extra` arguments.
async fn start_with(db: &Path, extra: &[&str]) -> (Client, Child) {
    let (child, stdout, stdin) = spawn(db, extra, Stdio::inherit());
    let client = ().serve((stdout, stdin)).await.unwrap();
    (client, child)
}

/// As [`start_with`], the client declaring the tasks extension.
async fn start_tasks(db: &Path, extra: &[&str]) -> (TasksClient, Child) {
    let (child, stdout, stdin) = spawn(db, extra, Stdio::inherit());
    let info = ClientConfig::new(
        ClientCapabilities::builder().enable_tasks().build(),
        Implementation::new("tasks-test", "1.0"),
    );
    let client = info.serve((stdout, stdin)).await.unwrap();
    assert!(
        client.peer_info().unwrap().capabilities.supports_tasks(),
        "the server declares the tasks extension"
    );
    (client, child)
}

/// The server process, with its stdout and stdin, its stderr to `stderr`.
fn spawn(
    db: &Path,
    extra: &[&str],
    stderr: Stdio,
) -> (
    Child,
    tokio::process::ChildStdout,
    tokio::process::ChildStdin,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .arg("mcp")
        .arg("--db")
        .arg(db)
        .args(["--protocol", "0.3", "--timeout", "10"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    (child, stdout, stdin)
}

async fn call(client: &Peer<RoleClient>, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .unwrap()
}

/// The structured answer of a call that succeeded.
async fn answer(client: &Peer<RoleClient>, tool: &'static str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{result:#?}");
    result.structured_content.unwrap()
}

/// Polls `check_task_status` until `id` is no longer `queued`.
async fn settled(client: &Peer<RoleClient>, id: &str) -> Value {
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

/// Waits until `agent` has received a request (within 10 s).
async fn has_the_request(agent: &Agent) {
    let until = Instant::now() + Duration::from_secs(10);
    while agent.requests() == 0 {
        assert!(Instant::now() < until, "the agent never got the request");
        tokio::time::sleep(Duration::from_millis(10)).await;
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

/// How a test ends the server while an agent holds a delivery.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGTERM, as a supervisor stops it.
    Sigterm,
    /// The client closes the server's stdin, as a runtime ends the session.
    StdinClosed,
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_held_delivery_waits_for_it_records_it_and_exits_0() {
    a_held_delivery_is_drained_when(Stop::Sigterm).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn stdin_closed_during_a_held_delivery_waits_for_it_records_it_and_exits_0() {
    a_held_delivery_is_drained_when(Stop::StdinClosed).await;
}

/// Stops the server with `stop` while the agent holds the only delivery: the
/// server waits for the agent's answer, records it, and exits 0, leaving
/// nothing `queued`.
async fn a_held_delivery_is_drained_when(stop: Stop) {
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
    has_the_request(&agent).await;

    let client = match stop {
        Stop::Sigterm => {
            let pid = child.id().unwrap().to_string();
            let killed = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            assert!(killed.success());
            Some(client)
        }
        Stop::StdinClosed => {
            client.cancel().await.unwrap();
            None
        }
    };
    // The server drains: it is still there while the agent holds its answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "{stop:?}: exited before the delivery ended"
    );
    agent.release();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    drop(client);

    let status = cli_status(&db, "held");
    assert_eq!(status["status"], "delivered", "{stop:?}: {status:#}");
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
    has_the_request(&agent).await;
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

/// Calls `delegate_task_async` once, as a client that declared the tasks
/// extension does (no follow-up rounds).
async fn delegate_once(client: &Peer<RoleClient>, arguments: Value) -> CallToolResponse {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    client
        .call_tool_once(CallToolRequestParams::new("delegate_task_async").with_arguments(arguments))
        .await
        .unwrap()
}

/// `tasks/get` for `id`.
async fn get_task(client: &Peer<RoleClient>, id: &str) -> GetTaskResult {
    client.get_task(GetTaskParams::new(id)).await.unwrap()
}

/// Polls `tasks/get` until the task `id` is terminal.
async fn task_settled(client: &Peer<RoleClient>, id: &str) -> GetTaskResult {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let task = get_task(client, id).await;
        if task.task.status().is_terminal() {
            return task;
        }
        assert_eq!(task.task.status(), TaskStatus::Working, "{task:#?}");
        assert!(Instant::now() < until, "{id} never settled: {task:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The result of a completed task, as JSON (a `CallToolResult`).
fn completed(task: &GetTaskResult) -> Value {
    match &task.task.payload {
        TaskPayload::Completed { result } => Value::Object(result.clone()),
        other => panic!("not completed: {other:#?}"),
    }
}

/// The JSON-RPC error a request was refused with.
fn refused<T: std::fmt::Debug>(answer: Result<T, ServiceError>) -> rmcp::ErrorData {
    match answer {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_tasks_extension_a_delegation_is_a_task_working_then_completed_as_the_log_says() {
    let agent = Agent::held(message_answer);
    let closed = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start_tasks(&db, &["--max-attempts", "2", "--backoff", "10ms"]).await;

    // For this client the tool's result is the delegation's status, and its
    // output schema says so.
    let tools = client.list_all_tools().await.unwrap();
    let delegate = tools
        .iter()
        .find(|tool| tool.name == "delegate_task_async")
        .unwrap();
    let required = &delegate.output_schema.as_ref().unwrap()["required"];
    assert!(
        required
            .as_array()
            .unwrap()
            .contains(&json!("target_received")),
        "{required:#}"
    );

    let CallToolResponse::Task(opened) = delegate_once(
        &client,
        json!({"target": agent.url(), "task": "review PR 42", "id": "task-accepting"}),
    )
    .await
    else {
        panic!("a client that declared the extension gets a task")
    };
    assert_eq!(opened.task.task_id, "task-accepting");
    assert_eq!(opened.task.status, TaskStatus::Working);
    assert!(opened.task.poll_interval_ms.is_some());
    assert_eq!(opened.task.ttl_ms, None, "the log keeps every delegation");

    // The agent holds its answer: the log says queued, the task working.
    has_the_request(&agent).await;
    let held = get_task(&client, "task-accepting").await;
    assert_eq!(held.task.status(), TaskStatus::Working, "{held:#?}");
    let status = answer(
        &client,
        "check_task_status",
        json!({"id": "task-accepting"}),
    )
    .await;
    assert_eq!(status["status"], "queued", "{status:#}");
    agent.release();

    let CallToolResponse::Task(offline) = delegate_once(
        &client,
        json!({"target": closed, "task": "review PR 43", "id": "task-closed"}),
    )
    .await
    else {
        panic!("a task")
    };
    assert_eq!(offline.task.task_id, "task-closed");

    // Settled: completed, with check_task_status's answer as the result.
    let delivered = task_settled(&client, "task-accepting").await;
    assert_eq!(delivered.task.status(), TaskStatus::Completed);
    let delivered = completed(&delivered);
    assert_eq!(delivered["isError"], false, "{delivered:#}");
    let delivered = delivered["structuredContent"].clone();
    assert_eq!(delivered["status"], "delivered", "{delivered:#}");
    assert_eq!(
        answer(
            &client,
            "check_task_status",
            json!({"id": "task-accepting"})
        )
        .await,
        delivered
    );
    // A failed delegation is a completed task whose result is an error: the
    // tool call ran, and what it did failed (retried once, then given up).
    let failed = task_settled(&client, "task-closed").await;
    assert_eq!(failed.task.status(), TaskStatus::Completed);
    assert!(
        failed
            .task
            .task
            .status_message
            .as_deref()
            .unwrap()
            .contains("target_offline"),
        "{failed:#?}"
    );
    let failed = completed(&failed);
    assert_eq!(failed["isError"], true, "{failed:#}");
    let failed = failed["structuredContent"].clone();
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["reason"], "target_offline", "{failed:#}");
    assert_eq!(failed["attempts"], 2, "{failed:#}");
    assert_eq!(failed["exhausted"], true, "{failed:#}");
    // The retry's id answers for the same task.
    let by_retry = get_task(&client, "task-closed.r1").await;
    assert_eq!(by_retry.task.task.task_id, "task-closed");
    assert_eq!(completed(&by_retry)["structuredContent"], failed);

    // Bad task ids: -32602, and the server goes on serving.
    for bad in ["never-delegated", "", &"x".repeat(257)] {
        let error = refused(client.get_task(GetTaskParams::new(bad)).await);
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{bad}: {error:#?}");
    }
    // A delegation cannot be withdrawn, settled or not.
    for id in ["task-accepting", "never-delegated"] {
        let error = refused(client.cancel_task(CancelTaskParams::new(id)).await);
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{id}: {error:#?}");
    }
    let error = refused(
        client
            .cancel_task(CancelTaskParams::new("task-accepting"))
            .await,
    );
    assert_eq!(error.data.unwrap()["cancellable"], false);
    // Bad arguments are still tool errors, not tasks.
    let CallToolResponse::Complete(bad) =
        delegate_once(&client, json!({"target": "127.0.0.1:9/a2a", "task": "t"})).await
    else {
        panic!("a bad argument opens no task")
    };
    assert_eq!(bad.is_error, Some(true), "{bad:#?}");
    assert_eq!(bad.structured_content.unwrap()["argument"], "target");
    assert_eq!(agent.requests(), 1);

    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    assert_eq!(cli_status(&db, "task-accepting"), delivered);
    assert_eq!(cli_status(&db, "task-closed"), failed);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn tasks_get_answers_from_the_log_for_a_task_a_killed_server_opened() {
    let agent = Agent::held(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start_tasks(&db, &[]).await;
    let CallToolResponse::Task(opened) = delegate_once(
        &client,
        json!({"target": agent.url(), "task": "review PR 42", "id": "task-orphan"}),
    )
    .await
    else {
        panic!("a task")
    };
    has_the_request(&agent).await;
    child.start_kill().unwrap();
    let _ = exited(&mut child, Duration::from_secs(10)).await;
    drop(client);
    assert_eq!(cli_status(&db, "task-orphan")["status"], "queued");

    // Nothing of the first run's memory survives; the log does.
    let (client, mut child) = start_tasks(&db, &[]).await;
    let task = get_task(&client, "task-orphan").await;
    assert_eq!(task.task.status(), TaskStatus::Completed, "{task:#?}");
    assert_eq!(task.task.task.created_at, opened.task.created_at);
    let result = completed(&task);
    assert_eq!(result["isError"], true, "{result:#}");
    let status = result["structuredContent"].clone();
    assert_eq!(status["reason"], "interrupted", "{status:#}");
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    assert_eq!(cli_status(&db, "task-orphan"), status);
    agent.release();
    assert_eq!(agent.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_the_tasks_extension_gets_the_receipt_and_no_tasks() {
    let closed = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (client, mut child) = start(&db).await;
    let tools = client.list_all_tools().await.unwrap();
    let delegate = tools
        .iter()
        .find(|tool| tool.name == "delegate_task_async")
        .unwrap();
    let schema = delegate.output_schema.as_ref().unwrap();
    assert_eq!(
        schema["properties"]["status"]["const"], "queued",
        "{schema:#?}"
    );
    let CallToolResponse::Complete(receipt) = delegate_once(
        &client,
        json!({"target": closed, "task": "review PR 43", "id": "plain"}),
    )
    .await
    else {
        panic!("a client that did not declare the extension never gets a task")
    };
    assert_eq!(receipt.structured_content.unwrap()["status"], "queued");
    let error = refused(client.get_task(GetTaskParams::new("plain")).await);
    assert_eq!(
        error.code,
        ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
        "{error:#?}"
    );
    let failed = settled(&client, "plain").await;
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    assert_eq!(cli_status(&db, "plain"), failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_retry_waits_for_its_backoff_is_working_and_says_until_when() {
    let closed = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    // The second attempt waits 1.5 to 3 s (equal jitter on a 3 s backoff).
    let (client, mut child) = start_tasks(&db, &["--max-attempts", "2", "--backoff", "3s"]).await;
    let CallToolResponse::Task(_) = delegate_once(
        &client,
        json!({"target": closed, "task": "review PR 42", "id": "task-backoff"}),
    )
    .await
    else {
        panic!("a task")
    };

    // The first attempt fails at once; the retry is then queued, and waits.
    let until = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let status = answer(&client, "check_task_status", json!({"id": "task-backoff"})).await;
        if status["latest"] == "task-backoff.r1" {
            break status;
        }
        assert_eq!(status["status"], "queued", "{status:#}");
        assert!(Instant::now() < until, "no retry was queued: {status:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(waiting["status"], "queued", "{waiting:#}");
    assert_eq!(waiting["attempts"], 2, "{waiting:#}");
    assert_eq!(waiting["exhausted"], false, "{waiting:#}");
    let next = waiting["next_attempt_at"].as_str().unwrap().to_owned();
    assert_eq!(
        waiting["last_failure"]["reason"], "target_offline",
        "{waiting:#}"
    );

    // Meanwhile the task is working, and says what it waits for, and until when.
    let task = get_task(&client, "task-backoff").await;
    assert_eq!(task.task.status(), TaskStatus::Working, "{task:#?}");
    let message = task.task.task.status_message.clone().unwrap();
    assert!(
        message.contains("backoff") && message.contains(&next),
        "{message}"
    );

    // Then it ends, as the log says.
    let settled = task_settled(&client, "task-backoff").await;
    let result = completed(&settled);
    assert_eq!(result["isError"], true, "{result:#}");
    let status = result["structuredContent"].clone();
    assert_eq!(status["reason"], "target_offline", "{status:#}");
    assert_eq!(status["exhausted"], true, "{status:#}");
    assert_eq!(status["latest"], "task-backoff.r1", "{status:#}");
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());
    assert_eq!(cli_status(&db, "task-backoff"), status);
}

#[cfg(feature = "tracing")]
#[tokio::test(flavor = "multi_thread")]
async fn log_format_json_prints_the_settled_line_and_not_the_sdk_s_info_lines() {
    let agent = Agent::answering(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let log = dir.path().join("stderr");
    let (child, stdout, stdin) = spawn(
        &db,
        &["--log-format", "json"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let mut child = child;
    let client = ().serve((stdout, stdin)).await.unwrap();
    answer(
        &client,
        "delegate_task_async",
        json!({"target": agent.url(), "task": "review PR 42", "id": "logged"}),
    )
    .await;
    assert_eq!(settled(&client, "logged").await["status"], "delivered");
    // A bad call, which rmcp itself may warn about.
    let _ = client
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    client.cancel().await.unwrap();
    assert!(exited(&mut child, Duration::from_secs(10)).await.success());

    let stderr = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let settled: Vec<&Value> = lines
        .iter()
        .filter(|line| line["span"]["name"] == "delegation" && line["span"]["id"] == "logged")
        .collect();
    assert_eq!(settled.len(), 1, "{stderr}");
    assert_eq!(settled[0]["span"]["outcome"], "delivered", "{stderr}");
    for line in &lines {
        let target = line["target"].as_str().unwrap_or_default();
        let level = line["level"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("delegation_log") || matches!(level, "WARN" | "ERROR"),
            "only the crate's lines below WARN: {line}"
        );
    }
}
