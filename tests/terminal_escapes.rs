//! Guards what is printed for people against hostile text (hardening review,
//! defect 10): a delegation id, detail or target carrying terminal escape codes
//! or newlines is printed escaped, so a log can never redraw `verify`'s verdict
//! as "clean" or forge a line of `status`.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use cli_support::run;
use delegation_log::{Event, FailureReason, Ledger};

/// An id that, printed raw, moves the cursor up, clears the screen and prints a
/// fake summary.
const HOSTILE: &str = "x\u{1b}[5A\u{1b}[J\nverdict: clean\nviolations: 0";

fn no_raw_controls(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters printed: {text:?}"
    );
}

#[test]
fn verify_prints_a_hostile_delegation_id_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hostile.jsonl");
    // seq 2 first: a sequence violation, so the id is printed on its line.
    let line = serde_json::json!({
        "delegation": HOSTILE, "seq": 2, "event": "delivered", "at": "2026-06-07T01:32:07Z"
    });
    std::fs::write(&log, format!("{line}\n")).unwrap();
    let (code, stdout, stderr) = run(&["verify", log.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with("verdict: violations\n"), "{stdout}");
    no_raw_controls(&stdout);
    assert!(
        !stdout.lines().any(|line| line == "verdict: clean"),
        "a forged verdict line: {stdout}"
    );
    assert!(
        stdout.contains(r"x\u{1b}[5A\u{1b}[J\u{a}verdict: clean"),
        "{stdout}"
    );
}

#[test]
fn status_and_history_print_hostile_fields_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let id = HOSTILE.parse().unwrap();
    {
        let ledger = Ledger::open(&db).unwrap();
        ledger
            .record(&id, Event::queued("planner\u{1b}[2K", "http://x/\u{9b}31m"))
            .unwrap();
        ledger
            .record(
                &id,
                Event::failed(
                    FailureReason::BadResponse,
                    Some("<html>\u{1b}]0;owned\u{7}\nstatus:          delivered".into()),
                )
                .unwrap(),
            )
            .unwrap();
    }
    let db = db.to_str().unwrap();
    for args in [
        vec!["status", db, HOSTILE],
        vec!["history", db, HOSTILE],
        vec!["audit", db],
    ] {
        let (code, stdout, stderr) = run(&args);
        assert!(code == 0 || code == 1, "{args:?}: {stderr}");
        no_raw_controls(&stdout);
        no_raw_controls(&stderr);
        assert!(
            !stdout
                .lines()
                .any(|line| line.starts_with("status:          delivered")),
            "{args:?}: a forged status line: {stdout}"
        );
    }
}
