//! Guards the `recover` command's report: every delegation is recovered on its
//! own, so one damaged delegation does not keep the others queued; every one
//! settled (and every redelivery's outcome) is printed, then every one that could
//! not be recovered, with its id and why; and the exit status is 1 when any could
//! not, after all the others were done.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod cli_support;

use std::path::Path;

use audit_support::id;
use cli_support::run;
use delegation_log::event::ReasonCode;
use delegation_log::store::key;
use delegation_log::{Event, Ledger, StatusKind};

/// Three delegations left queued for a target nobody listens on, the middle
/// one's record overwritten with bytes that are no record.
fn store_with_one_damaged(db: &Path) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let ledger = Ledger::open(db).unwrap();
        for left in ["left-1", "left-2", "left-3"] {
            ledger
                .record(
                    &id(left),
                    Event::queued("planner", format!("http://127.0.0.1:{port}/a2a")),
                )
                .unwrap();
        }
    }
    audit_support::raw(db, |records, _| {
        records
            .insert(key::record(&id("left-2"), 1), &b"\x01 not a record"[..])
            .unwrap();
    });
    port
}

#[test]
fn recover_settles_every_readable_delegation_and_names_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    store_with_one_damaged(&db);
    let (code, stdout, stderr) = run(&["recover", db.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    insta::assert_snapshot!("recover_one_damaged", stdout);
    assert_eq!(
        stderr,
        "delegation-log: 1 delegation(s) could not be recovered\n"
    );
    let ledger = Ledger::open(&db).unwrap();
    for left in ["left-1", "left-3"] {
        let status = ledger.status(&id(left)).unwrap();
        assert_eq!(status.reason, Some(ReasonCode::Interrupted), "{left}");
    }
}

#[test]
fn recover_with_redeliver_redelivers_every_readable_delegation_and_names_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let port = store_with_one_damaged(&db);
    let (code, stdout, stderr) = run(&["recover", db.to_str().unwrap(), "--redeliver"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "redelivering 2 delegation(s); each original is failed / interrupted"
    );
    for (line, left) in lines[1..3].iter().zip(["left-1", "left-3"]) {
        let prefix = format!("  {left} -> {left}.r1: target_offline: ");
        assert!(line.starts_with(&prefix), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    }
    assert_eq!(
        lines[3],
        "could not recover 1 delegation(s); each is left as it was:"
    );
    assert!(
        lines[4].starts_with("  left-2: corrupt store at delegation `left-2` seq 1: "),
        "{}",
        lines[4]
    );
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(
        stderr,
        "delegation-log: 1 delegation(s) could not be recovered\n"
    );
    let ledger = Ledger::open(&db).unwrap();
    for left in ["left-1", "left-3"] {
        let retry = ledger
            .delegation(&id(&format!("{left}.r1")))
            .unwrap()
            .unwrap();
        assert_eq!(retry.retry_of, Some(id(left)));
        assert_eq!(ledger.status(&retry.id).unwrap().status, StatusKind::Failed);
    }
}
