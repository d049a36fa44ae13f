//! Guards `docs/hash-chain.md`: its worked example (a record, its canonical bytes,
//! its hash) is what the code computes, and its Python program recomputes every
//! hash of a real export. The page can never drift from the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use delegation_log::event::{Failed, Queued, Remote, RemoteKind, TaskState};
use delegation_log::ledger::Options;
use delegation_log::store::Memory;
use delegation_log::{ChainHash, Event, FailureReason, Ledger, ManualClock, Record};

fn page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/hash-chain.md")).unwrap()
}

/// The fenced block after `<!-- example:NAME -->`.
fn example(page: &str, name: &str) -> String {
    let marker = format!("<!-- example:{name} -->");
    let after = &page[page.find(&marker).expect(&marker) + marker.len()..];
    let open = after.find("```").unwrap();
    let body = &after[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].trim_end().to_owned()
}

#[test]
fn the_worked_example_is_what_the_code_computes() {
    let page = page();
    let mut previous = ChainHash::GENESIS;
    for n in 1..=2 {
        let record: Record = serde_json::from_str(&example(&page, &format!("line-{n}"))).unwrap();
        let canonical = String::from_utf8(record.canonical_bytes()).unwrap();
        assert_eq!(
            canonical,
            example(&page, &format!("canonical-{n}")),
            "record {n}"
        );
        let hash = record.chain_hash(&previous);
        assert_eq!(
            hash.to_hex(),
            example(&page, &format!("hash-{n}")),
            "record {n}"
        );
        previous = hash;
    }
}

fn python(program: &str, input: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("chain.py");
    std::fs::write(&script, program).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the page's program");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_pages_python_program_recomputes_the_example() {
    let page = page();
    let input = format!(
        "{}\n{}\n",
        example(&page, "line-1"),
        example(&page, "line-2")
    );
    let printed = python(&example(&page, "python"), &input);
    let expected = format!(
        "1 MISMATCH {}\n2 MISMATCH {}\n",
        example(&page, "hash-1"),
        example(&page, "hash-2")
    );
    assert_eq!(printed, expected);
}

#[test]
fn the_pages_python_program_recomputes_every_hash_of_an_export() {
    let clock = ManualClock::at_unix_nanos(1_780_795_927_123_456_789);
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new().clock(clock.clone()));
    let outcomes = [
        Some(Event::delivered(Some(204)).unwrap()),
        Some(Event::delivered(None).unwrap()),
        Some(
            Event::failed(
                FailureReason::HttpStatus(503),
                Some("busy \"proxy\" ✓".into()),
            )
            .unwrap(),
        ),
        Some(Event::failed(FailureReason::TargetOffline, None).unwrap()),
        Some(Event::failed(FailureReason::Interrupted, Some("stopped".into())).unwrap()),
        Some(
            Event::failed(
                FailureReason::RpcError(-32601),
                Some("Method not found".into()),
            )
            .unwrap(),
        ),
        Some(Event::failed(FailureReason::Rejected, None).unwrap()),
        Some(
            Event::delivered_with(
                Some(200),
                Some(Remote {
                    kind: RemoteKind::Task,
                    task_id: Some("t-1".into()),
                    context_id: Some("c-é".into()),
                    state: Some(TaskState::InputRequired),
                }),
            )
            .unwrap(),
        ),
        Some(Event::delivered_with(Some(200), Some(Remote::message())).unwrap()),
        None,
    ];
    // One queued record per delegation, plus each outcome but the last (`None`).
    let expected_lines = outcomes.len() * 2 - 1;
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let id = format!("d-{n}").parse().unwrap();
        let mut queued = Event::queued("planner", "http://127.0.0.1:9/a2a");
        if let Event::Queued(q) = &mut queued {
            q.task = Some(serde_json::json!({"z": [1, "two", null, true], "a": {"é": "\u{1}"}}));
        }
        ledger.record(&id, queued).unwrap();
        clock.advance(std::time::Duration::from_millis(250));
        if let Some(outcome) = outcome {
            ledger.record(&id, outcome).unwrap();
        }
    }
    // And a retry of the delegation left queued, with every retry field.
    let last = format!("d-{}", expected_lines / 2).parse().unwrap();
    ledger
        .retry(
            &last,
            Failed {
                reason: FailureReason::Interrupted,
                detail: Some("redelivered as d-retry".into()),
            },
            &"d-retry".parse().unwrap(),
            Queued {
                not_before: Some("2026-06-07T03:32:07.5+02:00".parse().unwrap()),
                ..Queued::new("planner", "http://127.0.0.1:9/a2a")
            },
        )
        .unwrap();
    let expected_lines = expected_lines + 2;
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let printed = python(
        &example(&page(), "python"),
        &String::from_utf8(export).unwrap(),
    );
    assert_eq!(printed.lines().count(), expected_lines);
    for line in printed.lines() {
        assert!(line.contains(" ok "), "{line}");
    }
}
