//! Pins what `delegation-log pending` and `dead` print, as text and as JSON
//! (insta snapshots), on a log holding every kind of entry: a first attempt in
//! flight, a retry waiting for its `not_before`, a task that gave up after two
//! attempts, a plain failure, a delivered task (listed by neither), and a
//! hostile id and detail, which are printed escaped. Ages are masked (they grow
//! with the wall clock); every other field comes from fixed ids and a manual
//! clock. Both commands only read: they never create a store.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use std::path::Path;
use std::time::Duration;

use cli_support::run;
use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::{Event, FailureReason, Ledger, ManualClock, Timestamp};

/// 2020-09-13T12:26:40Z.
const START: i64 = 1_600_000_000_000_000_000;

/// A retry's `not_before` far ahead of any wall clock the tests run under.
const LATER: i64 = 4_102_444_800_000_000_000;

/// An id that, printed raw, would clear the screen and forge a line.
const HOSTILE: &str = "h\u{1b}[2J\nforged 1";

fn build(path: &Path) {
    let clock = ManualClock::at_unix_nanos(START);
    let ledger = Ledger::open_with(path, Options::new().clock(clock.clone())).unwrap();
    let tick = || clock.advance(Duration::from_secs(90));
    let id = |text: &str| text.parse().unwrap();
    let queued = |target: &str| Event::Queued(Queued::new("planner", target));
    let failed = |reason, detail: &str| Failed {
        reason,
        detail: Some(detail.to_owned()),
    };

    ledger
        .record(&id("in-flight"), queued("http://agent-a/a2a"))
        .unwrap();
    tick();
    ledger
        .record(&id("waiting"), queued("http://agent-b/a2a"))
        .unwrap();
    tick();
    ledger
        .retry(
            &id("waiting"),
            failed(FailureReason::TargetOffline, "connection refused"),
            &id("waiting.r1"),
            Queued {
                not_before: Some(Timestamp::from_unix_nanos(LATER)),
                ..Queued::new("planner", "http://agent-b/a2a")
            },
        )
        .unwrap();
    tick();
    ledger
        .record(&id("gave-up"), queued("http://agent-c/a2a"))
        .unwrap();
    tick();
    ledger
        .retry(
            &id("gave-up"),
            failed(FailureReason::HttpStatus(503), "busy"),
            &id("gave-up.r1"),
            Queued::new("planner", "http://agent-c/a2a"),
        )
        .unwrap();
    tick();
    ledger
        .record(
            &id("gave-up.r1"),
            Event::failed(FailureReason::HttpStatus(503), Some("still busy".into())).unwrap(),
        )
        .unwrap();
    tick();
    ledger
        .record(&id("plain"), queued("http://agent-d/a2a"))
        .unwrap();
    tick();
    ledger
        .record(
            &id("plain"),
            Event::failed(FailureReason::Timeout, Some("no answer\u{1b}[1A".into())).unwrap(),
        )
        .unwrap();
    tick();
    ledger
        .record(&id("done"), queued("http://agent-e/a2a"))
        .unwrap();
    ledger
        .record(&id("done"), Event::delivered(Some(200)).unwrap())
        .unwrap();
    tick();
    ledger
        .record(&id(HOSTILE), queued("http://agent-f/a2a"))
        .unwrap();
}

/// The log, built once per test in a directory of its own.
fn log() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    build(&path);
    let db = path.to_str().unwrap().to_owned();
    (dir, db)
}

/// Masks each `age <age>` of the text form.
fn mask_ages(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut words: Vec<&str> = line.split("  ").collect();
            for word in &mut words {
                if word.starts_with("age ") {
                    *word = "age [age]";
                }
            }
            words.join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn no_raw_controls(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters printed: {text:?}"
    );
}

#[test]
fn pending_lists_what_is_not_settled_oldest_first_one_line_each() {
    let (_dir, db) = log();
    let (code, stdout, stderr) = run(&["pending", "--db", &db]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    no_raw_controls(&stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    insta::assert_snapshot!("pending_plain", mask_ages(&stdout));
}

#[test]
fn pending_as_json_lists_the_same_entries() {
    let (_dir, db) = log();
    let (code, stdout, stderr) = run(&["pending", "--db", &db, "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for entry in json["pending"].as_array_mut().unwrap() {
        assert!(entry["age_secs"].as_f64().unwrap() > 0.0);
        entry["age_secs"] = serde_json::json!("[age]");
    }
    insta::assert_json_snapshot!("pending_json", json);
}

#[test]
fn pending_older_than_leaves_out_what_is_younger() {
    let (_dir, db) = log();
    let (code, stdout, _) = run(&["pending", "--db", &db, "--older-than", "36500d"]);
    assert_eq!((code, stdout.as_str()), (0, ""));
    let (code, stdout, _) = run(&["pending", "--db", &db, "--older-than", "1h"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let (code, _, stderr) = run(&["pending", "--db", &db, "--older-than", "soon"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn dead_lists_each_task_that_gave_up_with_its_last_failure() {
    let (_dir, db) = log();
    let (code, stdout, stderr) = run(&["dead", "--db", &db]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    no_raw_controls(&stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    insta::assert_snapshot!("dead_plain", stdout);
    let (code, stdout, stderr) = run(&["dead", "--db", &db, "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    insta::assert_json_snapshot!("dead_json", json);
}

#[test]
fn status_of_any_attempt_answers_for_the_task_with_its_latest_attempt() {
    let (_dir, db) = log();
    let mut answers = Vec::new();
    for id in ["gave-up", "gave-up.r1"] {
        let (code, stdout, stderr) = run(&["status", &db, id, "--json"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        answers.push(json);
    }
    // The same answer from the first id and the last: the task's.
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["id"], "gave-up.r1");
    assert_eq!(answers[0]["status"], "failed");
    assert_eq!(answers[0]["error_detail"], "still busy");
    assert_eq!(answers[0]["first"], "gave-up");
    assert_eq!(answers[0]["attempts"], 2);
    assert_eq!(answers[0]["exhausted"], true);
    insta::assert_json_snapshot!("status_of_a_first_attempt_json", answers[0]);
    // A task whose retry waits for its backoff reads `queued`, never the
    // first attempt's `failed`: a sender polling its id keeps polling.
    let (code, stdout, _) = run(&["status", &db, "waiting", "--json"]);
    assert_eq!(code, 0);
    let waiting: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(waiting["status"], "queued", "{waiting:#}");
    assert_eq!(waiting["id"], "waiting.r1", "{waiting:#}");
    assert!(waiting["next_attempt_at"].is_string(), "{waiting:#}");
    let (code, stdout, _) = run(&["status", &db, "waiting"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("status_of_a_waiting_task_plain", stdout);
}

#[test]
fn pending_and_dead_on_a_missing_log_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-log");
    for command in ["pending", "dead"] {
        let (code, _, stderr) = run(&[command, "--db", missing.to_str().unwrap()]);
        assert_eq!(code, 2, "{command}: {stderr}");
        assert!(!missing.exists(), "{command} created a store");
    }
}

#[test]
fn history_of_any_attempt_shows_every_attempt_of_the_task_first_to_latest() {
    let (_dir, db) = log();
    let (code, from_first, stderr) = run(&["history", &db, "gave-up"]);
    assert_eq!(code, 0, "{from_first}{stderr}");
    let (code, from_latest, stderr) = run(&["history", &db, "gave-up.r1"]);
    assert_eq!(code, 0, "{from_latest}{stderr}");
    assert_eq!(from_first, from_latest);
    insta::assert_snapshot!("history_of_a_retried_task", from_first);

    // As JSON Lines: both attempts' records, each naming its delegation.
    let (code, stdout, stderr) = run(&["history", &db, "gave-up.r1", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["delegation"].as_str().unwrap(),
                line["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("gave-up", "queued"),
            ("gave-up", "failed"),
            ("gave-up.r1", "queued"),
            ("gave-up.r1", "failed")
        ]
    );

    // A task never retried reads as it always has: its own records, no header.
    let (code, stdout, _) = run(&["history", &db, "plain"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(!stdout.contains("attempt"), "{stdout}");
}
