//! Guards what people see from the `delegation-log` binary: the demo's live table,
//! final table and audit verdict against real loopback targets; `status` and
//! `history` in plain and JSON form; `recover` under both policies; and the exit
//! codes (0 fine, 1 not found or problems, 2 usage or unreadable log). Plain output
//! is pinned by insta snapshots with times, ports and paths masked, and the live
//! lines (whose order depends on which target answers first) sorted.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use cli_support::{mask, run};
use delegation_log::{Event, Ledger, StatusKind};

/// Sorts the live lines: those between the live table's header and the first
/// blank line after it.
fn sort_live(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("id ")).unwrap();
    let end = header + lines[header..].iter().position(|l| l.is_empty()).unwrap();
    let mut live = lines[header + 1..end].to_vec();
    live.sort_unstable();
    let mut out: Vec<&str> = lines[..=header].to_vec();
    out.extend(live);
    out.extend(&lines[end..]);
    out.join("\n") + "\n"
}

#[test]
fn the_demo_settles_every_task_and_audits_clean_and_the_log_answers_status_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db_arg = db.to_str().unwrap();
    let (code, stdout, stderr) = run(&["demo", "--db", db_arg, "--deadline-ms", "1000"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    insta::assert_snapshot!("demo", sort_live(&mask(&stdout, &db)));

    let (code, stdout, _) = run(&["status", db_arg, "demo-02"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("status_plain", mask(&stdout, &db));

    // A delivered one shows what the agent answered: the task it opened.
    let (code, stdout, _) = run(&["status", db_arg, "demo-01"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("status_plain_delivered", mask(&stdout, &db));

    let (code, stdout, _) = run(&["status", db_arg, "demo-05", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["reason"], "timeout");
    assert_eq!(status["target_received"], "unknown");

    let (code, stdout, _) = run(&["history", db_arg, "demo-03"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("history_plain", mask(&stdout, &db));

    let (code, stdout, _) = run(&["history", db_arg, "demo-01", "--json"]);
    assert_eq!(code, 0);
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["event"], "queued");
    assert_eq!(records[1]["event"], "delivered");
    assert_eq!(records[1]["http_status"], 200);
    assert!(records.iter().all(|r| r["hash"].is_string()));

    // A second demo on the same log takes fresh ids.
    let (code, stdout, _) = run(&[
        "demo",
        "--db",
        db_arg,
        "--tasks",
        "4",
        "--deadline-ms",
        "1000",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("demo2-04"), "{stdout}");
}

#[test]
fn an_unknown_id_exits_1_and_a_missing_log_or_bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    drop(Ledger::open(&db).unwrap());
    let db_arg = db.to_str().unwrap();

    let (code, stdout, stderr) = run(&["status", db_arg, "nope"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("status:          not_found"));
    assert_eq!(stderr, "delegation-log: no delegation `nope` in the log\n");
    let (code, _, _) = run(&["history", db_arg, "nope"]);
    assert_eq!(code, 1);

    let missing = dir.path().join("missing");
    let (code, _, stderr) = run(&["status", missing.to_str().unwrap(), "x"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("delegation-log: no store at"),
        "{stderr}"
    );
    assert!(!missing.exists(), "reading must not create a log");

    let (code, _, _) = run(&["status", db_arg]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn recover_settles_what_a_dead_process_left_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    {
        let ledger = Ledger::open(&db).unwrap();
        for id in ["left-1", "left-2"] {
            ledger
                .record(
                    &id.parse().unwrap(),
                    Event::queued("planner", "http://127.0.0.1:9/a2a"),
                )
                .unwrap();
        }
    }
    let (code, stdout, _) = run(&["recover", db.to_str().unwrap()]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("recover_interrupt", stdout);
    let ledger = Ledger::open(&db).unwrap();
    assert!(ledger.queued().unwrap().is_empty());
    let status = ledger.status(&"left-1".parse().unwrap()).unwrap();
    assert_eq!(status.status, StatusKind::Failed);
}

#[test]
fn recover_with_redeliver_sends_each_again_and_records_the_new_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    // Nothing listens on this port, so each redelivery ends target_offline.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let ledger = Ledger::open(&db).unwrap();
        ledger
            .record(
                &"left".parse().unwrap(),
                Event::queued("planner", format!("http://127.0.0.1:{port}/a2a")),
            )
            .unwrap();
    }
    let (code, stdout, _) = run(&["recover", db.to_str().unwrap(), "--redeliver"]);
    assert_eq!(code, 0, "{stdout}");
    insta::assert_snapshot!("recover_redeliver", mask(&stdout, &db));
    let ledger = Ledger::open(&db).unwrap();
    let original = ledger.status(&"left".parse().unwrap()).unwrap();
    assert_eq!(
        original.error_detail.as_deref(),
        Some("redelivered as left.r1")
    );
    assert!(ledger.queued().unwrap().is_empty());
}
