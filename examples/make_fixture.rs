//! Writes the compatibility fixture: a small sled store in the current format,
//! with delegations in every state and every failure reason, stamped by a manual
//! clock so that its contents are the same on every run.
//!
//! ```sh
//! cargo run --example make_fixture -- tests/fixtures/v4
//! ```
//!
//! `tests/compat.rs` opens the committed copies; a new format version gets a new
//! directory beside it, and every old one stays:
//! - `tests/fixtures/v1/`: format version 1 before the agent's answer was recorded
//!   (11 delegations);
//! - `tests/fixtures/v1-answers/`: format version 1 with `rpc_error`, `rejected`,
//!   `bad_response`, `rpc_code` and `remote` (18 delegations);
//! - `tests/fixtures/v2/`: format version 2 (one tree, heads with summaries,
//!   binary record bodies), with a retry (20 delegations);
//! - `tests/fixtures/v3/`: format version 3 (one key per delegation: its head,
//!   then its records), the same 20 delegations; written without hints, it is
//!   now a migration fixture;
//! - `tests/fixtures/v4/`: format version 4 (format 3 and the tree `index`, the
//!   hints of what is open, dead and retried), the same 20 delegations.

use std::time::Duration;

use delegation_log::event::{Queued, Remote, RemoteKind, TaskState};
use delegation_log::ledger::Options;
use delegation_log::{Event, FailureReason, Ledger, ManualClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: make_fixture <directory that does not exist yet>")?;
    if std::path::Path::new(&path).exists() {
        return Err(format!("{path} exists; remove it first").into());
    }
    let clock = ManualClock::default();
    let ledger = Ledger::open_with(&path, Options::new().clock(clock.clone()))?;
    let tick = || clock.advance(Duration::from_micros(1_500));
    let queued = |task| {
        Event::Queued(Queued {
            source: "planner".to_owned(),
            target: "http://127.0.0.1:8080/a2a".to_owned(),
            task,
            retry_of: None,
            attempt: None,
            not_before: None,
        })
    };
    let outcomes = [
        (
            "queued",
            Some(serde_json::json!({"review": "pr-42", "lines": [1, 2]})),
            None,
        ),
        ("delivered", None, Some(Event::delivered(Some(200))?)),
        (
            "delivered-plain",
            Some(serde_json::json!("a plain task")),
            Some(Event::delivered(None)?),
        ),
        (
            "offline",
            None,
            Some(Event::failed(
                FailureReason::TargetOffline,
                Some("connection refused".into()),
            )?),
        ),
        (
            "busy",
            None,
            Some(Event::failed(
                FailureReason::HttpStatus(503),
                Some("503 Service Unavailable".into()),
            )?),
        ),
        (
            "not-found",
            None,
            Some(Event::failed(FailureReason::HttpStatus(404), None)?),
        ),
        (
            "marshal",
            None,
            Some(Event::failed(FailureReason::MarshalError, None)?),
        ),
        (
            "timeout",
            None,
            Some(Event::failed(
                FailureReason::Timeout,
                Some("no answer in 30 s".into()),
            )?),
        ),
        (
            "interrupted",
            None,
            Some(Event::failed(
                FailureReason::Interrupted,
                Some("the process stopped before the outcome was known".into()),
            )?),
        ),
        (
            "délégation-✓",
            Some(serde_json::json!("tâche \"citée\"\n😀")),
            Some(Event::delivered(Some(202))?),
        ),
        // What agents answered, since the format recorded it (rpc_code, remote).
        (
            "rpc-error",
            None,
            Some(Event::failed(
                FailureReason::RpcError(-32601),
                Some("Method not found".into()),
            )?),
        ),
        (
            "rpc-internal",
            None,
            Some(Event::failed(
                FailureReason::RpcError(-32603),
                Some("Internal error".into()),
            )?),
        ),
        (
            "rejected",
            None,
            Some(Event::failed(
                FailureReason::Rejected,
                Some("the agent rejected the task (task t-3)".into()),
            )?),
        ),
        (
            "bad-response",
            None,
            Some(Event::failed(
                FailureReason::BadResponse,
                Some("HTTP 200 with a body that is not JSON: <html>".into()),
            )?),
        ),
        (
            "answered-task",
            Some(serde_json::json!("review PR 42")),
            Some(Event::delivered_with(
                Some(200),
                Some(Remote {
                    kind: RemoteKind::Task,
                    task_id: Some("t-1".into()),
                    context_id: Some("c-1".into()),
                    state: Some(TaskState::Working),
                }),
            )?),
        ),
        (
            "answered-message",
            None,
            Some(Event::delivered_with(Some(200), Some(Remote::message()))?),
        ),
        (
            "answered-odd-state",
            None,
            Some(Event::delivered_with(
                Some(200),
                Some(Remote {
                    kind: RemoteKind::Task,
                    task_id: Some("t-2".into()),
                    context_id: None,
                    state: Some(TaskState::Other("TASK_STATE_PAUSED".into())),
                }),
            )?),
        ),
    ];
    for (name, task, outcome) in outcomes {
        let id = format!("compat-{name}").parse()?;
        ledger.record(&id, queued(task))?;
        tick();
        if let Some(outcome) = outcome {
            ledger.record(&id, outcome)?;
            tick();
        }
    }
    let long = "l".repeat(delegation_log::event::MAX_ID_LEN).parse()?;
    ledger.record(&long, queued(None))?;
    tick();
    ledger.record(
        &long,
        Event::failed(FailureReason::HttpStatus(599), Some("ü".repeat(40)))?,
    )?;
    // A retry (since format 2's fixture): the original failed and its retry
    // queued in one write, the retry then delivered.
    let original = "compat-retried".parse()?;
    ledger.record(&original, queued(Some(serde_json::json!("try me twice"))))?;
    tick();
    let retry = "compat-retried.r1".parse()?;
    ledger.retry(
        &original,
        delegation_log::event::Failed {
            reason: FailureReason::Interrupted,
            detail: Some("redelivered as compat-retried.r1".into()),
        },
        &retry,
        Queued::new("planner", "http://127.0.0.1:8080/a2a"),
    )?;
    tick();
    ledger.record(&retry, Event::delivered(Some(200))?)?;
    ledger.flush()?;
    println!("wrote {path}");
    Ok(())
}
