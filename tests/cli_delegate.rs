//! Guards `delegation-log delegate`, the command a person or a script uses to hand a
//! task to a real agent, against loopback agents that count what they receive: a
//! JSON-RPC result is exit 0 and `delivered` with the agent's answer; a JSON-RPC
//! error, or a closed port, is exit 1 and `failed` with an honest reason; what it
//! prints is what `status` prints for the same delegation; a second run with the same
//! `--id` sends nothing; `--no-wait` prints the queued receipt at once and still
//! settles the delegation before the process exits; and usage errors exit 2 without
//! sending anything. The plain output of one delivered and one failed delegation is
//! pinned by insta, with times and ports masked.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use cli_support::{Agent, mask, run};
use delegation_log::event::Queued;
use delegation_log::{Event, Ledger};
use serde_json::{Value, json};
use support::closed_port_url;

/// An A2A 0.3 agent that takes the task and answers with a Message.
fn message_answer(request: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "kind": "message", "messageId": "m-1", "role": "agent", "contextId": "c-1",
        "parts": [{"kind": "text", "text": "on it"}]
    }})
}

/// An agent that does not know the method: JSON-RPC -32601.
fn method_not_found(request: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"],
        "error": {"code": -32601, "message": "Method not found"}})
}

/// An A2A 1.0 agent: it opens a task for `SendMessage` and knows no other method.
fn v1_task_answer(request: &Value) -> Value {
    if request["method"] == "SendMessage" {
        json!({"jsonrpc": "2.0", "id": request["id"], "result": {"task": {
            "id": "t-1", "contextId": "c-1", "status": {"state": "TASK_STATE_WORKING"}
        }}})
    } else {
        method_not_found(request)
    }
}

/// The arguments of `delegate`: `task` to `to`, logged in `db`, with `flags`.
fn delegate<'a>(db: &'a str, to: &'a str, flags: &[&'a str], task: &'a str) -> Vec<&'a str> {
    [&["delegate", "--db", db, "--to", to][..], flags, &[task]].concat()
}

/// Starts the binary with `args` as a child whose stdout and stderr are pipes.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit; returns its exit code and all it wrote to stderr.
fn exit_and_stderr(child: &mut Child) -> (Option<i32>, String) {
    let exit = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (exit.code(), stderr)
}

fn status_json(db: &str, id: &str) -> (i32, String) {
    let (code, stdout, _) = run(&["status", db, id, "--json"]);
    (code, stdout)
}

#[test]
fn an_agent_that_answers_a_message_is_exit_0_delivered_with_its_answer() {
    let agent = Agent::answering(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let url = agent.url();

    let (code, stdout, stderr) = run(&delegate(
        db_arg,
        &url,
        &["--protocol", "0.3", "--id", "task-1"],
        "review PR 42",
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stderr, "");
    insta::assert_snapshot!("delivered_plain", mask(&stdout, &db));
    let (_, status_plain, _) = run(&["status", db_arg, "task-1"]);
    assert_eq!(
        stdout,
        format!("{status_plain}attempt:         1 of at most 1\n"),
        "delegate prints what status prints, and which attempt of how many settled"
    );

    let (code, stdout, _) = run(&delegate(
        db_arg,
        &url,
        &[
            "--protocol",
            "0.3",
            "--id",
            "task-2",
            "--from",
            "planner",
            "--json",
        ],
        "review PR 43",
    ));
    assert_eq!(code, 0);
    let (_, status) = status_json(db_arg, "task-2");
    assert_eq!(
        without_attempts(&stdout),
        serde_json::from_str::<Value>(&status).unwrap(),
        "delegate --json prints what status --json prints, with attempt and attempts"
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"], "delivered");
    assert_eq!(status["target_received"], "yes");
    assert_eq!(
        status["remote"],
        json!({"kind": "message", "context_id": "c-1"})
    );
    assert_eq!(agent.methods(), ["message/send", "message/send"]);

    let ledger = Ledger::open(&db).unwrap();
    let history = ledger.history(&"task-2".parse().unwrap()).unwrap();
    let Event::Queued(queued) = &history[0].event else {
        panic!("{history:?}")
    };
    assert_eq!(queued.source, "planner");
    assert_eq!(queued.task, Some(json!("review PR 43")));
}

#[test]
fn protocol_1_0_speaks_send_message_and_records_the_task_the_agent_opened() {
    let agent = Agent::answering(v1_task_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let (code, stdout, stderr) = run(&delegate(
        db_arg,
        &agent.url(),
        &["--protocol", "1.0", "--json", "--id", "task-1"],
        "review PR 42",
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        status["remote"],
        json!({"kind": "task", "task_id": "t-1", "context_id": "c-1", "state": "working"})
    );
    let (_, plain, _) = run(&["status", db_arg, "task-1"]);
    assert!(
        plain.contains("remote:          task t-1 (context c-1) working\n"),
        "{plain}"
    );
    assert_eq!(agent.methods(), ["SendMessage"]);
}

#[test]
fn an_agent_that_answers_method_not_found_is_exit_1_failed_rpc_error_not_received() {
    let agent = Agent::answering(method_not_found);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let url = agent.url();

    let (code, stdout, stderr) = run(&delegate(
        db_arg,
        &url,
        &["--protocol", "0.3", "--id", "task-1"],
        "review PR 42",
    ));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "the status says it all");
    insta::assert_snapshot!("failed_plain", mask(&stdout, &db));

    let (code, stdout, _) = run(&delegate(
        db_arg,
        &url,
        &["--protocol", "0.3", "--id", "task-2", "--json"],
        "review PR 42",
    ));
    assert_eq!(code, 1);
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "rpc_error");
    assert_eq!(status["rpc_code"], -32601);
    assert_eq!(status["target_received"], "no");
    assert_eq!(status["remote"], Value::Null);
}

#[test]
fn a_closed_port_is_exit_1_failed_target_offline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (code, stdout, stderr) = run(&delegate(
        db.to_str().unwrap(),
        &closed_port_url(),
        &["--json"],
        "review PR 42",
    ));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "target_offline");
    assert_eq!(status["target_received"], "no");
    assert!(
        status["id"].as_str().unwrap().starts_with("d-"),
        "without --id the dispatcher generates one: {status}"
    );
}

#[test]
fn a_second_run_with_the_same_id_sends_nothing_and_prints_the_same_status() {
    let agent = Agent::answering(message_answer);
    let refusing = Agent::answering(method_not_found);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();

    for (url, id, expected) in [(agent.url(), "once", 0), (refusing.url(), "refused", 1)] {
        let args = delegate(db_arg, &url, &["--protocol", "0.3", "--id", id], "a task");
        let first = run(&args);
        assert_eq!(first.0, expected, "{first:?}");
        let second = run(&args);
        assert_eq!(second, first, "the same exit code and output, nothing else");
        let json_args = [&args[..], &["--json"]].concat();
        let (code, stdout, _) = run(&json_args);
        assert_eq!(code, expected);
        let (_, status) = status_json(db_arg, id);
        assert_eq!(
            without_attempts(&stdout),
            serde_json::from_str::<serde_json::Value>(&status).unwrap()
        );
    }
    assert_eq!(agent.requests(), 1, "delivered once, whatever the reruns");
    assert_eq!(
        refusing.requests(),
        1,
        "a failed one is not retried by a rerun"
    );

    // The same id for another task is refused: reusing it would report the other
    // delegation's outcome for a task that was never sent.
    let (code, stdout, stderr) = run(&delegate(
        db_arg,
        &agent.url(),
        &["--protocol", "0.3", "--id", "once"],
        "another task",
    ));
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "delegation-log: the log already holds `once` for another delegation (with another task); nothing was sent\n"
    );
    assert_eq!(agent.requests(), 1);
}

#[test]
fn a_rerun_of_a_delegation_a_dead_process_left_queued_sends_nothing_and_points_to_recover() {
    let agent = Agent::answering(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    {
        let ledger = Ledger::open(&db).unwrap();
        let queued = Event::Queued(Queued {
            task: Some(json!("a task")),
            ..Queued::new("cli", agent.url())
        });
        ledger.record(&"left".parse().unwrap(), queued).unwrap();
    }
    let url = agent.url();
    let args = delegate(db_arg, &url, &["--id", "left"], "a task");
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("status:          queued\n"), "{stdout}");
    assert_eq!(
        stderr,
        "delegation-log: `left` is still queued and no outcome is recorded; if the process that queued it is gone, `delegation-log recover` settles it\n"
    );
    let (code, stdout, stderr) = run(&[&args[..], &["--no-wait"]].concat());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("status:          queued\n"), "{stdout}");
    assert_eq!(agent.requests(), 0);
}

#[test]
fn no_wait_prints_the_queued_receipt_at_once_and_settles_before_exiting() {
    // The agent holds its answer until the test has read the receipt: the receipt
    // cannot wait for the delivery, and the process cannot exit before it.
    let agent = Agent::held(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let url = agent.url();
    let mut child = spawn(&delegate(
        db_arg,
        &url,
        &["--protocol", "0.3", "--no-wait", "--json", "--id", "task-1"],
        "review PR 42",
    ));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut receipt = String::new();
    while !receipt.ends_with("}\n") {
        assert_ne!(stdout.read_line(&mut receipt).unwrap(), 0, "{receipt}");
    }
    let receipt: Value = serde_json::from_str(&receipt).unwrap();
    let fields: Vec<&str> = receipt
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["id", "queued_at", "status"], "these and no other");
    assert_eq!(receipt["id"], "task-1");
    assert_eq!(receipt["status"], "queued");
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "the process drains the delivery before it exits"
    );

    agent.release();
    let (exit, stderr) = exit_and_stderr(&mut child);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(exit, Some(0), "{stderr}");
    assert_eq!(rest, "", "nothing follows the receipt");
    assert_eq!(stderr, "");

    let (code, status) = status_json(db_arg, "task-1");
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(status["queued_at"], receipt["queued_at"]);
    assert_eq!(agent.requests(), 1);
}

#[test]
fn no_wait_in_plain_form_prints_id_status_and_queued_at_and_exits_0_even_when_delivery_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let (code, stdout, stderr) = run(&delegate(
        db_arg,
        &closed_port_url(),
        &["--no-wait", "--id", "task-1"],
        "review PR 42",
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        mask(&stdout, &db),
        "id:              task-1\nstatus:          queued\nqueued_at:       [time]\n"
    );
    let (_, status) = status_json(db_arg, "task-1");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["reason"], "target_offline", "settled before exit");
}

#[test]
fn usage_errors_and_an_unusable_log_exit_2_and_send_nothing() {
    let agent = Agent::answering(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let url = agent.url();
    let long_id = "x".repeat(257);
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "not a log").unwrap();

    let cases: [(&str, Vec<&str>); 9] = [
        (
            "bad id",
            vec!["--db", db_arg, "--to", &url, "--id", &long_id, "t"],
        ),
        (
            "empty id",
            vec!["--db", db_arg, "--to", &url, "--id", "", "t"],
        ),
        (
            "no scheme",
            vec!["--db", db_arg, "--to", "127.0.0.1:9/a2a", "t"],
        ),
        ("not a URL", vec!["--db", db_arg, "--to", "http://", "t"]),
        (
            "ftp",
            vec!["--db", db_arg, "--to", "ftp://127.0.0.1/a2a", "t"],
        ),
        (
            "bad protocol",
            vec!["--db", db_arg, "--to", &url, "--protocol", "2.0", "t"],
        ),
        (
            "zero timeout",
            vec!["--db", db_arg, "--to", &url, "--timeout", "0", "t"],
        ),
        ("no task", vec!["--db", db_arg, "--to", &url]),
        ("no target", vec!["--db", db_arg, "t"]),
    ];
    for (what, args) in cases {
        let (code, stdout, stderr) = run(&[&["delegate"][..], &args].concat());
        assert_eq!(code, 2, "{what}: {stdout}\n{stderr}");
        assert_eq!(stdout, "", "{what}");
        assert!(!db.exists(), "{what}: a usage error creates no log");
    }

    let (code, stdout, stderr) = run(&delegate(not_a_dir.to_str().unwrap(), &url, &[], "t"));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.starts_with("delegation-log: cannot open "),
        "{stderr}"
    );

    // What the log refuses to store is refused before anything is queued or sent.
    let long_name = "a".repeat(70_000);
    let (code, stdout, stderr) = run(&delegate(db_arg, &url, &["--from", &long_name], "t"));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert_eq!(
        stderr,
        "delegation-log: cannot queue the delegation: invalid event: `source` is 70000 bytes, over the limit of 65536\n"
    );
    assert_eq!(Ledger::open(&db).unwrap().replay().count(), 0);
    assert_eq!(agent.requests(), 0);
}

#[test]
fn no_wait_still_settles_the_delegation_when_the_reader_of_the_receipt_goes_away() {
    let agent = Agent::answering(message_answer);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let url = agent.url();
    let mut child = spawn(&delegate(
        db_arg,
        &url,
        &["--protocol", "0.3", "--no-wait", "--id", "task-1"],
        "review PR 42",
    ));
    // Closing the pipe at once most likely makes printing the receipt fail.
    drop(child.stdout.take());
    let (exit, stderr) = exit_and_stderr(&mut child);
    match exit {
        // The receipt reached the pipe before it closed.
        Some(0) => assert_eq!(stderr, ""),
        Some(2) => assert_eq!(
            stderr,
            "delegation-log: could not print the receipt (Broken pipe (os error 32)); `task-1` went ahead and its outcome is recorded: see `status`\n"
        ),
        other => panic!("exit {other:?}: {stderr}"),
    }
    let (_, status) = status_json(db_arg, "task-1");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(agent.requests(), 1);
}

/// `delegate --json` without its `attempt`, `attempts` and `max_attempts`
/// (after checking that a delegation without retries says 1 of 1): what
/// `status --json` prints.
fn without_attempts(stdout: &str) -> serde_json::Value {
    let mut json: serde_json::Value = serde_json::from_str(stdout).unwrap();
    let object = json.as_object_mut().unwrap();
    assert_eq!(object.remove("attempt"), Some(1.into()), "{stdout}");
    assert_eq!(object.remove("attempts"), Some(1.into()), "{stdout}");
    assert_eq!(object.remove("max_attempts"), Some(1.into()), "{stdout}");
    json
}

/// Regression: `delegate --json` of a retried task printed the key `attempts`
/// twice (the task's attempts made, from the status, and the policy's maximum),
/// which JSON readers resolve each their own way. Each key now comes once: the
/// status's `attempts` (made) and `max_attempts` (allowed).
#[test]
fn delegate_json_of_a_retried_task_names_each_key_once_and_reads_as_status_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let (code, stdout, stderr) = run(&[
        "delegate",
        "--db",
        db_arg,
        "--to",
        &closed_port_url(),
        "--id",
        "retried",
        "--max-attempts",
        "3",
        "--backoff",
        "10ms",
        "--json",
        "review PR 45",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for key in ["\"attempts\"", "\"attempt\"", "\"max_attempts\""] {
        assert_eq!(stdout.matches(key).count(), 1, "{key} in {stdout}");
    }
    let mut printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["id"], "retried.r2", "{printed:#}");
    assert_eq!(printed["attempt"], 3, "{printed:#}");
    assert_eq!(printed["attempts"], 3, "{printed:#}");
    assert_eq!(printed["max_attempts"], 3, "{printed:#}");
    assert_eq!(printed["exhausted"], true, "{printed:#}");
    printed.as_object_mut().unwrap().remove("max_attempts");
    let (_, status) = status_json(db_arg, "retried.r2");
    assert_eq!(printed, serde_json::from_str::<Value>(&status).unwrap());
}
