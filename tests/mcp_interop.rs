//! Guards `delegation-log mcp` against a real MCP client: the official MCP Python
//! SDK (`mcp` 2.3.0, `tests/mcp/client.py`), which starts the binary as a stdio
//! subprocess as an agent runtime would. The client lists the tools (each with an
//! input and an output schema, and the SDK checks every structured answer against
//! its schema), delegates to a loopback A2A agent that holds its answer and to a
//! closed port, sees the first still `queued` while the agent holds it (the
//! delivery goes on while the client polls), polls `check_task_status` until each
//! settles, and sends bad arguments, each of which must be a tool error and leave
//! the server serving. Judged from both sides: what the client saw, what the agent
//! received, and what `delegation-log status --json` says on the same db after the
//! server drained and exited, which must be the very object the client got.
//!
//! A second client on the same SDK (`tests/mcp/tasks_client.py`) declares the
//! tasks extension (`io.modelcontextprotocol/tasks`) through the SDK's extension
//! mechanism, on the 2026-07-28 connection the SDK negotiates by default: its
//! delegations come back as tasks, `tasks/get` says `working` while the agent
//! holds the first and `completed` once each settles, with the status the CLI
//! prints as the result; the SDK's own `call_tool` finishes a task through the
//! extension's resolver, and bad task ids and `tasks/cancel` are JSON-RPC errors.
//!
//! The accepting target is the crate's own loopback agent (`tests/cli_support`),
//! not an official A2A SDK agent: it can hold its answer until the test lets it
//! go, which is what shows a delivery running while the client polls; A2A interop
//! itself is `tests/a2a_interop.rs`'s job. The Python client comes from
//! `bash .ci/python-peers` (a venv at target/py/mcp); under `CI=true` its absence
//! fails the test.
#![cfg(all(feature = "cli", feature = "mcp"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod support;

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cli_support::{Agent, run};
use serde_json::{Value, json};
use support::closed_port_url;

/// How long the client may take for each phase (Python starts slowly).
const PHASE_TIMEOUT: Duration = Duration::from_secs(90);

const INSTALL: &str = "install the Python MCP client with `bash .ci/python-peers` \
    (a venv at target/py/mcp with mcp 2.3.0), or point MCP_PYTHON at a Python that \
    has tests/mcp/requirements.txt installed";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `$MCP_PYTHON`, else the venv of `.ci/python-peers`.
fn python() -> PathBuf {
    match std::env::var_os("MCP_PYTHON") {
        Some(python) if !python.is_empty() => PathBuf::from(python),
        _ => repo().join("target/py/mcp/bin/python"),
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the SDK can be used; outside CI, a missing one skips the test after
/// saying how to install it.
fn sdk_installed(python: &Path) -> bool {
    let imports = python.exists()
        && Command::new(python)
            .args(["-c", "import mcp.client.stdio"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    if !imports {
        let why = format!("no Python with the MCP SDK at {}", python.display());
        assert!(
            !ci(),
            "CI=true and the MCP SDK client is not installed: {why}; {INSTALL}"
        );
        let _ = writeln!(std::io::stderr(), "mcp_interop: SKIPPED ({why}); {INSTALL}");
    }
    imports
}

/// An A2A 0.3 agent that takes the task and answers with a Message.
fn message_answer(request: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "kind": "message", "messageId": "m-1", "role": "agent", "contextId": "c-1",
        "parts": [{"kind": "text", "text": "on it"}]
    }})
}

/// A Python driver, `tests/mcp/SCRIPT`, run against the server binary on a
/// fresh db, with an agent that holds its answers and a closed port as its two
/// targets.
struct Session {
    agent: Agent,
    db: PathBuf,
    stderr: PathBuf,
    client: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Session {
    /// Starts `script`; `None` if the SDK is missing (outside CI only).
    fn start(script: &str) -> Option<Self> {
        let python = python();
        if !sdk_installed(&python) {
            return None;
        }
        let agent = Agent::held(message_answer);
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("log");
        let stderr = dir.path().join("client.stderr");
        let mut client = Command::new(python)
            .arg(repo().join("tests/mcp").join(script))
            .args(["--server", env!("CARGO_BIN_EXE_delegation-log")])
            .arg("--db")
            .arg(&db)
            .args(["--accepting", &agent.url(), "--closed", &closed_port_url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdin = client.stdin.take().unwrap();
        let stdout = client.stdout.take().unwrap();
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        Some(Session {
            agent,
            db,
            stderr,
            client,
            stdin,
            lines,
            _dir: dir,
        })
    }

    /// The client's next JSON line, within [`PHASE_TIMEOUT`].
    fn next(&self, what: &str) -> Value {
        match self.lines.recv_timeout(PHASE_TIMEOUT) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}")),
            Err(e) => panic!(
                "{what}: no line from the client ({e}); its stderr:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }

    /// Tells the client to go on to its next phase.
    fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The client's exit, which must be a success.
    fn finished(&mut self) {
        let status = self.client.wait().unwrap();
        assert!(
            status.success(),
            "the client failed: {status}; stderr:\n{}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }
}

/// Waits until `agent` has received a request, within [`PHASE_TIMEOUT`].
fn has_the_request(agent: &Agent) {
    let until = std::time::Instant::now() + PHASE_TIMEOUT;
    while agent.requests() == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the agent never got the delegation"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `delegation-log status --json DB ID` prints, parsed.
fn cli_status(db: &Path, id: &str) -> Value {
    let (_, stdout, stderr) = run(&["status", db.to_str().unwrap(), id, "--json"]);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {stdout} {stderr}"))
}

/// A tool error naming `argument`, with the structured `invalid_argument` form.
fn assert_invalid(answer: &Value, argument: &str) {
    assert_eq!(answer["is_error"], true, "{answer:#}");
    assert_eq!(
        answer["structured"]["error"], "invalid_argument",
        "{answer:#}"
    );
    assert_eq!(answer["structured"]["argument"], argument, "{answer:#}");
    let text = answer["text"][0].as_str().unwrap_or_default();
    assert!(
        text.contains(argument),
        "the text should name {argument}: {answer:#}"
    );
}

#[test]
fn the_official_python_client_delegates_polls_to_the_outcome_and_the_cli_agrees() {
    let Some(mut session) = Session::start("client.py") else {
        return;
    };
    let db = session.db.clone();

    // Phase 1: both delegated; the agent holds its answer, so the client sees
    // `queued`, and the agent has the request in hand.
    let queued = session.next("phase queued");
    assert_eq!(queued["phase"], "queued", "{queued:#}");
    assert_eq!(
        queued["status"]["structured"]["status"], "queued",
        "{queued:#}"
    );
    has_the_request(&session.agent);
    session.agent.release();
    session.go();

    let done = session.next("phase done");
    session.finished();
    assert_eq!(done["phase"], "done", "{done:#}");
    let seen = &done["seen"];

    // The session: the server and its three tools, each with both schemas.
    assert_eq!(seen["server"], "delegation-log", "{seen:#}");
    let tools = seen["tools"].as_object().unwrap();
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["check_task_status", "delegate_task_async", "list_pending"]
    );
    for (name, tool) in tools {
        assert_eq!(tool["input_schema"]["type"], "object", "{name}: {tool:#}");
        assert_eq!(tool["output_schema"]["type"], "object", "{name}: {tool:#}");
    }
    let required = &tools["delegate_task_async"]["input_schema"]["required"];
    assert_eq!(required, &json!(["target", "task"]), "{seen:#}");

    // The receipts: queued at once, under the ids asked for.
    for (which, id) in [("accepting", "mcp-accepting"), ("closed", "mcp-closed")] {
        let receipt = &seen["receipts"][which];
        assert_eq!(receipt["is_error"], false, "{receipt:#}");
        assert_eq!(receipt["structured"]["id"], id, "{receipt:#}");
        assert_eq!(receipt["structured"]["status"], "queued", "{receipt:#}");
        assert!(
            receipt["structured"]["queued_at"].is_string(),
            "{receipt:#}"
        );
    }

    // While the agent held its answer, the delegation was pending and in flight.
    let pending = seen["pending_while_held"]["structured"]["pending"]
        .as_array()
        .unwrap();
    let held = pending.iter().find(|p| p["id"] == "mcp-accepting").unwrap();
    assert_eq!(held["status"], "queued", "{pending:#?}");
    assert_eq!(held["in_flight"], true, "{pending:#?}");
    assert_eq!(
        seen["pending_older_than_an_hour"]["structured"]["pending"],
        json!([])
    );

    // The outcomes, as the client polled them.
    let accepted = &seen["settled"]["mcp-accepting"]["structured"];
    assert_eq!(accepted["status"], "delivered", "{accepted:#}");
    assert_eq!(accepted["http_status"], 200, "{accepted:#}");
    assert_eq!(accepted["remote"]["kind"], "message", "{accepted:#}");
    assert_eq!(
        accepted["target"],
        session.agent.url().as_str(),
        "{accepted:#}"
    );
    let offline = &seen["settled"]["mcp-closed"]["structured"];
    assert_eq!(offline["status"], "failed", "{offline:#}");
    assert_eq!(offline["reason"], "target_offline", "{offline:#}");
    assert_eq!(offline["target_received"], "no", "{offline:#}");
    // Retried once (the server runs with --max-attempts 2), then given up: the
    // first id answers for the task, and the SDK checked every field against
    // the tool's output schema.
    assert_eq!(offline["attempts"], 2, "{offline:#}");
    assert_eq!(offline["latest"], "mcp-closed.r1", "{offline:#}");
    assert_eq!(offline["latest_status"], "failed", "{offline:#}");
    assert_eq!(offline["exhausted"], true, "{offline:#}");
    assert_eq!(
        offline["last_failure"]["id"], "mcp-closed.r1",
        "{offline:#}"
    );
    assert_eq!(seen["pending_after"]["structured"]["pending"], json!([]));
    assert_eq!(seen["not_found"]["is_error"], false, "{seen:#}");
    assert_eq!(
        seen["not_found"]["structured"]["status"], "not_found",
        "{seen:#}"
    );

    // Bad arguments: tool errors naming the argument; nothing sent; still serving.
    let bad = &seen["bad"];
    for (case, argument) in [
        ("empty_id", "id"),
        ("long_id", "id"),
        ("missing_id", "id"),
        ("not_a_url", "target"),
        ("ftp_target", "target"),
        ("task_too_large", "task"),
        ("unknown_protocol", "protocol"),
        ("negative_older_than", "older_than"),
    ] {
        assert_invalid(&bad[case], argument);
    }
    assert_invalid(&bad["unknown_argument"], "url");
    assert_eq!(bad["id_taken"]["is_error"], true, "{bad:#}");
    assert_eq!(
        bad["id_taken"]["structured"]["error"], "id_taken",
        "{bad:#}"
    );
    assert!(seen["unknown_tool"]["raised"].is_string(), "{seen:#}");
    assert_eq!(seen["after_bad"]["structured"], *offline, "{seen:#}");
    assert_eq!(session.agent.requests(), 1, "bad calls must send nothing");

    // The other side: the CLI on the same db, after the server drained and exited,
    // prints the very objects the client got.
    assert_eq!(cli_status(&db, "mcp-accepting"), *accepted);
    assert_eq!(cli_status(&db, "mcp-closed"), *offline);
    assert_eq!(
        cli_status(&db, "never-delegated"),
        seen["not_found"]["structured"]
    );
}

#[test]
fn the_official_python_client_declaring_the_tasks_extension_polls_tasks_get_to_the_outcome() {
    let Some(mut session) = Session::start("tasks_client.py") else {
        return;
    };
    let db = session.db.clone();

    // While the agent holds its answer, the task is working.
    let working = session.next("phase working");
    assert_eq!(working["phase"], "working", "{working:#}");
    assert_eq!(
        working["task"]["taskId"], "mcp-task-accepting",
        "{working:#}"
    );
    assert_eq!(working["task"]["status"], "working", "{working:#}");
    has_the_request(&session.agent);
    session.agent.release();
    session.go();

    let done = session.next("phase done");
    session.finished();
    assert_eq!(done["phase"], "done", "{done:#}");
    let seen = &done["seen"];
    assert_eq!(seen["protocol_version"], "2026-07-28", "{seen:#}");
    assert_eq!(
        seen["server_extensions"],
        json!(["io.modelcontextprotocol/tasks"]),
        "{seen:#}"
    );
    // For a client with tasks, the tool's result is the status.
    assert!(
        seen["delegate_output_schema"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("target_received")),
        "{seen:#}"
    );

    // The task the call opened: the delegation id, working.
    let created = &seen["created"];
    assert_eq!(created["resultType"], "task", "{created:#}");
    assert_eq!(created["taskId"], "mcp-task-accepting", "{created:#}");
    assert_eq!(created["status"], "working", "{created:#}");

    // Delivered: completed, the status as its result (schema-checked by the SDK).
    let accepting = &seen["accepting"];
    assert_eq!(accepting["status"], "completed", "{accepting:#}");
    assert_eq!(seen["accepting_result"]["is_error"], false, "{seen:#}");
    let delivered = &seen["accepting_result"]["structured"];
    assert_eq!(delivered["status"], "delivered", "{delivered:#}");
    assert_eq!(delivered["remote"]["kind"], "message", "{delivered:#}");

    // Failed (retried once, then given up): completed, an error result, finished
    // by the SDK's call_tool through the extension's resolver.
    assert_eq!(seen["closed_result"]["is_error"], true, "{seen:#}");
    let offline = &seen["closed_result"]["structured"];
    assert_eq!(offline["status"], "failed", "{offline:#}");
    assert_eq!(offline["reason"], "target_offline", "{offline:#}");
    assert_eq!(offline["target_received"], "no", "{offline:#}");
    assert_eq!(offline["attempts"], 2, "{offline:#}");
    assert_eq!(offline["exhausted"], true, "{offline:#}");
    let polled = seen["closed_polled"].as_array().unwrap();
    assert_eq!(polled.first().unwrap(), "working", "{seen:#}");
    assert_eq!(polled.last().unwrap(), "completed", "{seen:#}");

    // JSON-RPC errors: an unknown or empty task id, and a cancel.
    for case in ["unknown_task", "empty_task_id", "cancel"] {
        assert_eq!(seen[case]["raised"], "MCPError", "{case}: {seen:#}");
        assert_eq!(seen[case]["code"], -32602, "{case}: {seen:#}");
    }
    assert_eq!(seen["cancel"]["data"]["cancellable"], false, "{seen:#}");

    // check_task_status answers the same, and so does the CLI after the server
    // drained and exited.
    assert_eq!(
        seen["check"]["mcp-task-accepting"]["structured"],
        *delivered
    );
    assert_eq!(seen["check"]["mcp-task-closed"]["structured"], *offline);
    assert_eq!(cli_status(&db, "mcp-task-accepting"), *delivered);
    assert_eq!(cli_status(&db, "mcp-task-closed"), *offline);
    assert_eq!(session.agent.requests(), 1);
}
