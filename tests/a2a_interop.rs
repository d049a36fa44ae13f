//! Guards promise 6, "delivered means the agent took it", against agents built with
//! the official A2A Python SDK (`a2a-sdk` 1.3.0, `tests/a2a/agent.py`), not only the
//! crate's own loopback servers: each wire generation (0.3, 1.0) and `auto` against a
//! 1.0 agent with the SDK's 0.3 compatibility layer and a 1.0-only agent (the bug: a
//! 0.3 `message/send` there gets HTTP 200 carrying JSON-RPC -32601 and must be
//! `failed / rpc_error`, never `delivered`), a Task answer (its id, context and state
//! recorded), a rejected Task, and hostile peers (a closed port, a 404, an HTML 200,
//! a body that never ends). Every case is judged from both sides: the log's status,
//! and what the agent itself recorded receiving; a message the agent never saw is
//! never `delivered`, and a delivered one reached it with the delegation id as its
//! messageId and the task as its text. Retries too: an SDK agent behind a gate
//! that answers its first two requests 503 with `Retry-After: 1` gets one
//! delegation in three linked attempts, delivered, and sees one messageId. The
//! Python peers come from
//! `bash .ci/python-peers`; under `CI=true` their absence fails every test here.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;
mod support;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use delegation_log::transport::http::{Http, Protocol};
use delivery_support::{TASK, deliver_one};
use serde_json::Value;
use support::closed_port_url;

/// The delivery deadline for answers that come at once: generous, since the
/// one Python agent serves every test of this binary on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long the Python agent may take to say `LISTENING`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The SDK agent process, shared by every test of this binary (Python starts slowly).
struct Agent {
    /// `http://127.0.0.1:PORT`, from the agent's `LISTENING` line.
    base: String,
    /// One JSON line per message an agent's executor received.
    record: PathBuf,
    child: Mutex<Child>,
    /// Held open for the life of the test process: the agent runs with
    /// `--exit-with-stdin`, so it ends when this closes, even though a static is
    /// never dropped.
    _stdin: Mutex<ChildStdin>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Why the agent is not running.
enum Unavailable {
    /// The venv or the SDK is not installed.
    NotInstalled(String),
    /// It is installed, yet the agent did not start: always a failure.
    Broken(String),
}

const INSTALL: &str = "install the Python peers with `bash .ci/python-peers` \
    (a venv at target/py/a2a with a2a-sdk 1.3.0), or point A2A_PYTHON at a Python \
    that has tests/a2a/requirements.txt installed";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python to run the agent with: `$A2A_PYTHON`, else the venv of
/// `.ci/python-peers`.
fn python() -> PathBuf {
    match std::env::var_os("A2A_PYTHON") {
        Some(python) if !python.is_empty() => PathBuf::from(python),
        _ => repo().join("target/py/a2a/bin/python"),
    }
}

fn start() -> Result<Agent, Unavailable> {
    let python = python();
    if !python.exists() {
        return Err(Unavailable::NotInstalled(format!(
            "no Python at {}",
            python.display()
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("a2a-interop-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .map_err(|e| Unavailable::Broken(format!("temporary directory: {e}")))?
        .keep();
    let record = dir.join("seen.jsonl");
    let stderr_path = dir.join("agent.stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| Unavailable::Broken(format!("{}: {e}", stderr_path.display())))?;
    let mut child = Command::new(&python)
        .arg(repo().join("tests/a2a/agent.py"))
        .arg("--record")
        .arg(&record)
        .arg("--exit-with-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| Unavailable::NotInstalled(format!("{}: {e}", python.display())))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");

    // Read the first line on a thread, so that a silent agent cannot hang the test.
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = line_tx.send(read);
    });
    let line = line_rx.recv_timeout(START_TIMEOUT);
    let base = match line {
        Ok(Ok(line)) if line.starts_with("LISTENING ") => {
            line["LISTENING ".len()..].trim().to_owned()
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let why = format!(
                "tests/a2a/agent.py ({}) did not print LISTENING within {START_TIMEOUT:?}: \
                 {other:?}\n--- its stderr ---\n{stderr}",
                python.display()
            );
            return Err(if stderr.contains("ModuleNotFoundError") {
                Unavailable::NotInstalled(why)
            } else {
                Unavailable::Broken(why)
            });
        }
    };
    Ok(Agent {
        base,
        record,
        child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    })
}

/// The shared agent, started on first use; `None` (after saying how to install
/// it) when the SDK is not installed outside CI. Under `CI=true` a missing SDK
/// fails the test, and so does, anywhere, an agent that is installed but will not
/// start.
fn agent() -> Option<&'static Agent> {
    enum State {
        Running(Agent),
        Skip(String),
        Fail(String),
    }
    static AGENT: OnceLock<State> = OnceLock::new();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let state = AGENT.get_or_init(|| match start() {
        Ok(agent) => State::Running(agent),
        Err(Unavailable::NotInstalled(why)) if !ci => {
            // Once, past the test harness's capture, so that a plain `cargo test`
            // shows it.
            let _ = writeln!(
                std::io::stderr(),
                "a2a_interop: SKIPPED, the A2A SDK peers are not installed ({why}); {INSTALL}"
            );
            State::Skip(why)
        }
        Err(Unavailable::NotInstalled(why)) => State::Fail(format!(
            "CI=true and the A2A SDK peers are not installed: {why}; {INSTALL}"
        )),
        Err(Unavailable::Broken(why)) => State::Fail(why),
    });
    match state {
        State::Running(agent) => Some(agent),
        State::Skip(why) => {
            eprintln!("SKIPPED: the A2A SDK peers are not installed ({why}); {INSTALL}");
            None
        }
        State::Fail(why) => panic!("{why}"),
    }
}

impl Agent {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every message the agents received with this messageId.
    fn seen(&self, message_id: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON record line"))
            .filter(|seen| seen["message_id"] == message_id)
            .collect()
    }
}

/// Delegates [`TASK`] to `target` as `id` over HTTP speaking `protocol`, shuts the
/// dispatcher down (so the outcome is recorded), and returns the status as JSON
/// and how long it took.
async fn delegate(
    id: &str,
    target: String,
    protocol: Protocol,
    deadline: Duration,
) -> (Value, Duration) {
    let http = Http::new().unwrap().protocol(protocol);
    let started = Instant::now();
    let (ledger, id) = deliver_one(http, id, target, deadline).await;
    let took = started.elapsed();
    let status = serde_json::to_value(ledger.status(&id).unwrap()).unwrap();
    (status, took)
}

/// The agent saw this delegation exactly once, as the crate sent it: the delegation
/// id as messageId, the task as the text, in `protocol`'s wire generation.
fn assert_seen_once(agent: &Agent, id: &str, path: &str, version: Option<&str>) -> Value {
    let seen = agent.seen(id);
    assert_eq!(
        seen.len(),
        1,
        "the agent should have seen {id} once: {seen:#?}"
    );
    let seen = seen.into_iter().next().unwrap();
    assert_eq!(seen["agent"], path, "{seen:#}");
    assert_eq!(seen["message_id"], id, "{seen:#}");
    assert_eq!(seen["text"], TASK, "{seen:#}");
    assert_eq!(seen["role"], "ROLE_USER", "{seen:#}");
    assert_eq!(seen["metadata"]["delegationId"], id, "{seen:#}");
    match version {
        Some("1.0") => {
            assert_eq!(seen["method"], "SendMessage", "{seen:#}");
            assert_eq!(seen["a2a_version"], "1.0", "{seen:#}");
        }
        Some("0.3") => {
            assert_eq!(seen["method"], "message/send", "{seen:#}");
            assert!(
                seen["a2a_version"].is_null() || seen["a2a_version"] == "0.3",
                "{seen:#}"
            );
        }
        _ => {}
    }
    seen
}

fn assert_never_seen(agent: &Agent, id: &str) {
    let seen = agent.seen(id);
    assert!(
        seen.is_empty(),
        "the agent should never have seen {id}: {seen:#?}"
    );
}

/// `delivered`, the target has it, and the agent answered with a Message.
fn assert_delivered_message(status: &Value) {
    assert_eq!(status["status"], "delivered", "{status:#}");
    assert_eq!(status["reason"], Value::Null, "{status:#}");
    assert_eq!(status["http_status"], 200, "{status:#}");
    assert!(
        status["target_received"].is_null() || status["target_received"] == "yes",
        "{status:#}"
    );
    assert_eq!(status["remote"]["kind"], "message", "{status:#}");
    assert_eq!(status["remote"]["task_id"], Value::Null, "{status:#}");
    assert_eq!(status["remote"]["state"], Value::Null, "{status:#}");
}

/// `failed` with `reason`, and never `delivered`.
fn assert_failed(status: &Value, reason: &str, received: &str) {
    assert_eq!(status["status"], "failed", "{status:#}");
    assert_eq!(status["reason"], reason, "{status:#}");
    assert_eq!(status["target_received"], received, "{status:#}");
}

// --- A 1.0 agent with the SDK's 0.3 compatibility layer ---------------------------

#[tokio::test]
async fn a2a_0_3_to_an_sdk_agent_with_0_3_compat_is_delivered_and_the_agent_saw_it() {
    let Some(agent) = agent() else { return };
    let id = "v0_3-to-compat";
    let (status, _) = delegate(id, agent.url("/compat"), Protocol::V0_3, DEADLINE).await;
    assert_delivered_message(&status);
    let seen = assert_seen_once(agent, id, "/compat", Some("0.3"));
    assert_eq!(
        status["remote"]["context_id"], seen["context_id"],
        "{status:#}"
    );
}

#[tokio::test]
async fn a2a_1_0_to_an_sdk_agent_with_0_3_compat_is_delivered_and_the_agent_saw_it() {
    let Some(agent) = agent() else { return };
    let id = "v1_0-to-compat";
    let (status, _) = delegate(id, agent.url("/compat"), Protocol::V1_0, DEADLINE).await;
    assert_delivered_message(&status);
    let seen = assert_seen_once(agent, id, "/compat", Some("1.0"));
    assert_eq!(
        status["remote"]["context_id"], seen["context_id"],
        "{status:#}"
    );
}

#[tokio::test]
async fn auto_reads_the_compat_agents_card_and_speaks_1_0_the_newest_common_version() {
    let Some(agent) = agent() else { return };
    let id = "auto-to-compat";
    let (status, _) = delegate(id, agent.url("/compat"), Protocol::Auto, DEADLINE).await;
    assert_delivered_message(&status);
    assert_seen_once(agent, id, "/compat", Some("1.0"));
}

// --- A 1.0-only agent: the bug --------------------------------------------------

#[tokio::test]
async fn a2a_0_3_to_a_1_0_only_sdk_agent_is_failed_rpc_error_32601_and_never_delivered() {
    let Some(agent) = agent() else { return };
    let id = "v0_3-to-v1";
    let (status, _) = delegate(id, agent.url("/v1"), Protocol::V0_3, DEADLINE).await;
    assert_failed(&status, "rpc_error", "no");
    assert_eq!(status["rpc_code"], -32601, "{status:#}");
    assert_eq!(status["remote"], Value::Null, "{status:#}");
    let detail = status["error_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("Method not found"), "{status:#}");
    assert_never_seen(agent, id);
}

#[tokio::test]
async fn a2a_1_0_to_a_1_0_only_sdk_agent_is_delivered_and_the_agent_saw_it() {
    let Some(agent) = agent() else { return };
    let id = "v1_0-to-v1";
    let (status, _) = delegate(id, agent.url("/v1"), Protocol::V1_0, DEADLINE).await;
    assert_delivered_message(&status);
    assert_seen_once(agent, id, "/v1", Some("1.0"));
}

#[tokio::test]
async fn auto_reads_the_1_0_only_agents_card_and_speaks_1_0() {
    let Some(agent) = agent() else { return };
    let id = "auto-to-v1";
    let (status, _) = delegate(id, agent.url("/v1"), Protocol::Auto, DEADLINE).await;
    assert_delivered_message(&status);
    assert_seen_once(agent, id, "/v1", Some("1.0"));
}

// --- A Task answer ----------------------------------------------------------------

/// `delivered` with the agent's Task: the id and context the agent itself used,
/// and its state in the log's vocabulary.
async fn assert_task_delivered(protocol: Protocol, id: &str, version: &str) {
    let Some(agent) = agent() else { return };
    let (status, _) = delegate(id, agent.url("/task"), protocol, DEADLINE).await;
    assert_eq!(status["status"], "delivered", "{status:#}");
    assert_eq!(status["http_status"], 200, "{status:#}");
    let remote = &status["remote"];
    assert_eq!(remote["kind"], "task", "{status:#}");
    assert_eq!(remote["state"], "working", "{status:#}");
    let seen = assert_seen_once(agent, id, "/task", Some(version));
    assert_eq!(remote["task_id"], seen["task_id"], "{status:#} vs {seen:#}");
    assert_eq!(
        remote["context_id"], seen["context_id"],
        "{status:#} vs {seen:#}"
    );
    assert!(
        remote["task_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{status:#}"
    );
}

#[tokio::test]
async fn a2a_0_3_to_an_sdk_agent_that_opens_a_task_records_its_id_context_and_state() {
    assert_task_delivered(Protocol::V0_3, "v0_3-to-task", "0.3").await;
}

#[tokio::test]
async fn a2a_1_0_to_an_sdk_agent_that_opens_a_task_records_its_id_context_and_state() {
    assert_task_delivered(Protocol::V1_0, "v1_0-to-task", "1.0").await;
}

#[tokio::test]
async fn auto_to_an_sdk_agent_that_opens_a_task_records_its_id_context_and_state() {
    assert_task_delivered(Protocol::Auto, "auto-to-task", "1.0").await;
}

// --- A rejected Task ---------------------------------------------------------------

/// `failed / rejected`: the agent received the task (it is in its record) and
/// refused it, so the target has it.
async fn assert_rejected(protocol: Protocol, id: &str, version: &str) {
    let Some(agent) = agent() else { return };
    let (status, _) = delegate(id, agent.url("/reject"), protocol, DEADLINE).await;
    assert_failed(&status, "rejected", "yes");
    assert_eq!(status["rpc_code"], Value::Null, "{status:#}");
    let seen = assert_seen_once(agent, id, "/reject", Some(version));
    // The detail names the agent's task, so the sender can follow it up.
    let detail = status["error_detail"].as_str().unwrap_or_default();
    let task_id = seen["task_id"].as_str().unwrap();
    assert!(
        detail.contains(task_id),
        "the detail should name task {task_id}: {status:#}"
    );
}

#[tokio::test]
async fn a2a_0_3_to_an_sdk_agent_that_rejects_the_task_is_failed_rejected() {
    assert_rejected(Protocol::V0_3, "v0_3-to-reject", "0.3").await;
}

#[tokio::test]
async fn a2a_1_0_to_an_sdk_agent_that_rejects_the_task_is_failed_rejected() {
    assert_rejected(Protocol::V1_0, "v1_0-to-reject", "1.0").await;
}

#[tokio::test]
async fn auto_to_an_sdk_agent_that_rejects_the_task_is_failed_rejected() {
    assert_rejected(Protocol::Auto, "auto-to-reject", "1.0").await;
}

// --- Hostile peers -------------------------------------------------------------------

#[tokio::test]
async fn a_closed_port_is_failed_target_offline_in_every_protocol() {
    for (protocol, id) in [
        (Protocol::V0_3, "v0_3-to-closed-port"),
        (Protocol::V1_0, "v1_0-to-closed-port"),
        (Protocol::Auto, "auto-to-closed-port"),
    ] {
        let (status, _) = delegate(id, closed_port_url(), protocol, DEADLINE).await;
        assert_failed(&status, "target_offline", "no");
    }
}

#[tokio::test]
async fn a_path_the_server_does_not_serve_is_failed_http_status_404_and_never_seen() {
    let Some(agent) = agent() else { return };
    for (protocol, id) in [
        (Protocol::V0_3, "v0_3-to-404"),
        (Protocol::V1_0, "v1_0-to-404"),
    ] {
        let (status, _) = delegate(id, agent.url("/no-such-agent"), protocol, DEADLINE).await;
        assert_failed(&status, "http_status", "no");
        assert_eq!(status["http_status"], 404, "{status:#}");
        assert_never_seen(agent, id);
    }
    // `auto` finds no card under the path nor at the origin: it posts nothing.
    assert_no_card("auto-to-404", agent, "/no-such-agent").await;
}

/// `auto` to a path without an agent card: `failed / http_status 404` naming the
/// card's URL, and nothing posted.
async fn assert_no_card(id: &str, agent: &Agent, path: &str) {
    let (status, _) = delegate(id, agent.url(path), Protocol::Auto, DEADLINE).await;
    assert_failed(&status, "http_status", "no");
    assert_eq!(status["http_status"], 404, "{status:#}");
    let detail = status["error_detail"].as_str().unwrap_or_default();
    let card = agent.url(&format!("{path}/.well-known/agent-card.json"));
    assert!(
        detail.contains(&card),
        "the detail should name {card}: {status:#}"
    );
    assert_never_seen(agent, id);
}

/// A hostile peer (no SDK) was posted this delegation once, in `version`.
fn assert_posted_once(agent: &Agent, id: &str, path: &str, version: &str) {
    let seen = agent.seen(id);
    assert_eq!(
        seen.len(),
        1,
        "{path} should have been posted {id} once: {seen:#?}"
    );
    let seen = &seen[0];
    assert_eq!(seen["agent"], path, "{seen:#}");
    assert_eq!(seen["text"], TASK, "{seen:#}");
    let method = if version == "1.0" {
        "SendMessage"
    } else {
        "message/send"
    };
    assert_eq!(seen["method"], method, "{seen:#}");
}

#[tokio::test]
async fn an_html_page_with_status_200_is_failed_bad_response_not_delivered() {
    let Some(agent) = agent() else { return };
    for (protocol, id, version) in [
        (Protocol::V0_3, "v0_3-to-proxy-html", "0.3"),
        (Protocol::V1_0, "v1_0-to-proxy-html", "1.0"),
    ] {
        let (status, _) = delegate(id, agent.url("/proxy-html"), protocol, DEADLINE).await;
        assert_failed(&status, "bad_response", "unknown");
        assert_eq!(status["remote"], Value::Null, "{status:#}");
        assert_eq!(status["http_status"], Value::Null, "{status:#}");
        assert_posted_once(agent, id, "/proxy-html", version);
    }
    assert_no_card("auto-to-proxy-html", agent, "/proxy-html").await;
}

#[tokio::test]
async fn a_body_that_never_ends_is_failed_timeout_within_the_deadline() {
    let Some(agent) = agent() else { return };
    let deadline = Duration::from_secs(5);
    let url = agent.url("/endless");
    // Side by side, so the deadlines run out together.
    let (v0_3, v1_0) = tokio::join!(
        delegate("v0_3-to-endless", url.clone(), Protocol::V0_3, deadline),
        delegate("v1_0-to-endless", url, Protocol::V1_0, deadline),
    );
    for (status, took) in [&v0_3, &v1_0] {
        assert_failed(status, "timeout", "unknown");
        assert!(
            // Under twice the deadline: it ran out once, not once per stage.
            *took < deadline + Duration::from_secs(3),
            "settled after {took:?}, deadline {deadline:?}: {status:#}"
        );
    }
    assert_posted_once(agent, "v0_3-to-endless", "/endless", "0.3");
    assert_posted_once(agent, "v1_0-to-endless", "/endless", "1.0");
    // `auto` finds no card there, so it never posts into the endless body.
    assert_no_card("auto-to-endless", agent, "/endless").await;
}

/// Delegates `id` to the SDK agent at `path` with three attempts allowed (a
/// 50 ms backoff, jitter seeded by `seed`), on an in-memory ledger, and waits
/// for the chain to settle: the ledger, the last attempt's outcome, and how
/// long the chain took.
async fn three_attempts(
    agent: &Agent,
    path: &str,
    id: &delegation_log::DelegationId,
    seed: u64,
) -> (
    delegation_log::Ledger,
    delegation_log::dispatch::Settled,
    Duration,
) {
    use delegation_log::dispatch::{Dispatcher, Options, Request, Retry};

    let ledger = delivery_support::memory_ledger();
    let policy = Retry::new()
        .max_attempts(3)
        .backoff(Duration::from_millis(50))
        .jitter_seed(seed);
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        Http::new().unwrap().protocol(Protocol::Auto),
        Options::new().deadline(DEADLINE).retry(policy),
    );
    let started = Instant::now();
    let settled = tokio::time::timeout(Duration::from_secs(30), async {
        let receipt = dispatcher
            .delegate(
                Request::new("planner", agent.url(path))
                    .id(id.clone())
                    .task(TASK),
            )
            .await
            .unwrap();
        receipt.settled().await.unwrap()
    })
    .await
    .expect("the chain settled");
    let took = started.elapsed();
    dispatcher.shutdown().await.unwrap();
    (ledger, settled, took)
}

/// What the SDK agent at `path` recorded, one JSON object per request.
fn seen_at(agent: &Agent, path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(&agent.record).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|seen| seen["agent"] == path)
        .collect()
}

/// Issue 15, from both sides. The target answers 503 with `Retry-After: 1` to
/// its first two requests, then accepts. The log: three linked delegations
/// (`X`, `X.r1`, `X.r2`: each `queued` carries `retry_of` the one before and
/// attempts 1, 2, 3; two `failed / http_status 503`, then `delivered`), all of
/// one task whose first attempt is `X`, and the receipt settles with the last.
/// The peer: three requests, one distinct `messageId` (`X`) across them, the
/// third handled by the SDK. `Retry-After` was honoured: two waits of a second.
#[tokio::test]
async fn a_target_busy_twice_is_retried_after_its_retry_after_and_sees_one_message_id() {
    use delegation_log::{DelegationId, Outcome};

    let Some(agent) = agent() else { return };
    let id: DelegationId = "retry-busy-twice".parse().unwrap();
    let (ledger, settled, took) = three_attempts(agent, "/busy-twice", &id, 15).await;

    // The receipt: the chain's outcome, from its last attempt.
    assert_eq!(settled.attempt, 3, "{settled:?}");
    assert_eq!(settled.id.as_str(), "retry-busy-twice.r2", "{settled:?}");
    assert!(
        matches!(settled.outcome, Outcome::Delivered { .. }),
        "{settled:?}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice, yet the chain took {took:?}"
    );

    // The log: three linked delegations of one task.
    let ids = [
        "retry-busy-twice",
        "retry-busy-twice.r1",
        "retry-busy-twice.r2",
    ];
    let chain: Vec<_> = ids
        .iter()
        .map(|id| ledger.delegation(&id.parse().unwrap()).unwrap().unwrap())
        .collect();
    for (n, attempt) in chain.iter().enumerate() {
        assert_eq!(attempt.attempt, n as u64 + 1, "{attempt:?}");
        let previous = n.checked_sub(1).map(|p| ids[p].to_owned());
        assert_eq!(
            attempt.retry_of.as_ref().map(|r| r.as_str().to_owned()),
            previous,
            "{attempt:?}"
        );
        assert_eq!(attempt.not_before.is_some(), n > 0, "{attempt:?}");
        assert_eq!(
            ledger.first_attempt(&attempt.id).unwrap().unwrap(),
            id,
            "{attempt:?}"
        );
    }
    for failed in &chain[..2] {
        let status = failed.status();
        assert_eq!(status.http_status, Some(503), "{status:?}");
    }
    assert_eq!(
        chain[2].status().status,
        delegation_log::StatusKind::Delivered
    );
    // The sender's view, from the first id: the task, delivered at attempt 3.
    let view = ledger.attempts(&id).unwrap().unwrap();
    assert_eq!(view.latest.as_str(), "retry-busy-twice.r2", "{view:?}");
    assert_eq!(view.count, 3, "{view:?}");
    assert_eq!(view.latest_status, delegation_log::StatusKind::Delivered);
    assert!(!view.exhausted, "{view:?}");
    assert!(ledger.pending(None).unwrap().is_empty());
    assert!(ledger.dead().unwrap().is_empty());

    // The peer: three requests to the gated agent, one messageId.
    let seen = seen_at(agent, "/busy-twice");
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let ids: std::collections::BTreeSet<String> =
        seen.iter().map(|s| s["message_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one messageId across the attempts: {seen:#?}");
    assert_eq!(seen[2]["message_id"], "retry-busy-twice", "{seen:#?}");
    assert_eq!(seen[2]["text"], TASK, "{seen:#?}");
}

/// Issue 15, the other end: a target that answers every request with 503 and
/// `Retry-After: 1`. With three attempts allowed, the dispatcher waits out the
/// `Retry-After` between them (two waits of a second, though its own backoff is
/// 50 ms), then gives up: the task is `exhausted`, `dead` lists it once, and
/// nothing is pending. The peer saw three requests, all with one `messageId`.
#[tokio::test]
async fn a_target_always_busy_is_waited_out_by_its_retry_after_then_the_task_is_exhausted() {
    use delegation_log::{DelegationId, Outcome, StatusKind};

    let Some(agent) = agent() else { return };
    let id: DelegationId = "retry-busy-always".parse().unwrap();
    let (ledger, settled, took) = three_attempts(agent, "/busy-always", &id, 16).await;

    assert_eq!(settled.attempt, 3, "{settled:?}");
    assert_eq!(settled.id.as_str(), "retry-busy-always.r2", "{settled:?}");
    assert!(
        matches!(settled.outcome, Outcome::Failed { .. }),
        "{settled:?}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice, yet the chain took {took:?}"
    );

    // The log: the task gave up after its third attempt, and says so.
    let view = ledger.attempts(&id).unwrap().unwrap();
    assert_eq!(view.count, 3, "{view:?}");
    assert_eq!(view.latest.as_str(), "retry-busy-always.r2", "{view:?}");
    assert_eq!(view.latest_status, StatusKind::Failed, "{view:?}");
    assert!(view.exhausted, "{view:?}");
    let last = view.last_failure.as_ref().unwrap();
    assert_eq!(last.http_status, Some(503), "{view:?}");
    let status = ledger.task_status(&id).unwrap();
    assert_eq!(status.status, StatusKind::Failed, "{status:?}");
    assert_eq!(status.http_status, Some(503), "{status:?}");
    let dead = ledger.dead().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].first, id);
    assert!(ledger.pending(None).unwrap().is_empty());

    // The peer: three refused requests, one messageId.
    let seen = seen_at(agent, "/busy-always");
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let ids: std::collections::BTreeSet<String> =
        seen.iter().map(|s| s["message_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one messageId across the attempts: {seen:#?}");
    assert_eq!(seen[0]["message_id"], "retry-busy-always", "{seen:#?}");
}
