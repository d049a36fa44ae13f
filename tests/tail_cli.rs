//! Guards `delegation-log tail` on sled: a store another process holds is exit 2,
//! naming the lock and what to do, at once and without a hang; a store held by
//! nobody is printed, one escaped line per event (`<time> <id> seq <n> <event>
//! …`, pinned by insta) or one JSON object per line as `export` writes it; and a
//! reader that closes stdout ends it without a panic.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::{mask, run};
use delegation_log::{Durability, Event, FailureReason, Ledger, ManualClock, Options};

/// A store of three delegations: delivered, failed with a detail that holds a
/// newline and an escape code, and still queued with a task.
fn written_store(dir: &std::path::Path) {
    let clock = ManualClock::at_unix_nanos(1_764_000_000_000_000_000);
    let ledger = Ledger::open_with(dir, Options::new().clock(clock.clone())).unwrap();
    let (a, b, c) = (
        "review-1".parse().unwrap(),
        "review-2".parse().unwrap(),
        "review-3".parse().unwrap(),
    );
    ledger
        .record(&a, Event::queued("planner", "http://127.0.0.1:8080/a2a"))
        .unwrap();
    clock.advance(Duration::from_millis(250));
    ledger
        .record(&a, Event::delivered(Some(200)).unwrap())
        .unwrap();
    ledger
        .record(&b, Event::queued("planner", "http://127.0.0.1:9/a2a"))
        .unwrap();
    clock.advance(Duration::from_millis(1));
    ledger
        .record(
            &b,
            Event::failed(
                FailureReason::TargetOffline,
                Some("refused\n\u{1b}[31mred".into()),
            )
            .unwrap(),
        )
        .unwrap();
    let mut queued = delegation_log::event::Queued::new("planner", "http://127.0.0.1:8080/a2a");
    queued.task = Some(serde_json::json!("summarize the diff"));
    ledger.record(&c, Event::Queued(queued)).unwrap();
}

#[test]
fn tail_prints_each_event_of_a_store_held_by_nobody_as_one_escaped_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    written_store(&db);
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    insta::assert_snapshot!("tail_lines", stdout);
    assert!(stderr.contains("tail ends here"), "{stderr}");
}

#[test]
fn tail_json_prints_each_record_as_export_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    written_store(&db);
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let out = dir.path().join("export.jsonl");
    let (code, _, stderr) = run(&[
        "export",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, std::fs::read_to_string(out).unwrap());
    insta::assert_snapshot!("tail_json", stdout);
}

#[test]
fn tail_on_a_sled_store_another_process_holds_exits_2_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let held = Ledger::open_with(&db, Options::new().durability(Durability::Buffered)).unwrap();
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.is_empty());
    insta::assert_snapshot!("tail_locked", mask(&stderr, &db));
    drop(held);
}

#[test]
fn tail_ends_without_a_panic_when_its_reader_closes_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    {
        let ledger =
            Ledger::open_with(&db, Options::new().durability(Durability::Buffered)).unwrap();
        // Well over a pipe's 64 KiB of lines.
        for n in 0..3000 {
            let id = format!("closing-{n:04}").parse().unwrap();
            ledger
                .record(&id, Event::queued("planner", "http://127.0.0.1:9/a2a"))
                .unwrap();
        }
        ledger.flush().unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .args(["tail", "--db", db.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
