//! Guards the `recover` command's report: every delegation is recovered on its
//! own, so one damaged delegation does not keep the others queued; every one
//! settled (and every redelivery's outcome) is printed, then every one that could
//! not be recovered, with its id and why; and the exit status is 1 when any could
//! not, after all the others were done.
//!
//! One definition runs on sled (a directory) and on PostgreSQL (a
//! `postgres://…?schema=…` URL, the damage written with a client of its own),
//! with the same snapshot. Needs `DATABASE_URL` for the PostgreSQL cases
//! (`bash .ci/postgres`); under `CI=true` its absence fails.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod cli_support;
#[cfg(feature = "postgres")]
mod pg_support;
mod support;

use std::path::PathBuf;

use cli_support::run;
use delegation_log::event::ReasonCode;
use delegation_log::store::key;
use delegation_log::{Event, Ledger, StatusKind};
use support::id;

/// Where the log lives: what `recover` is given as its db.
enum Log {
    /// A sled directory (in a temporary directory kept alive with it).
    Sled {
        _dir: tempfile::TempDir,
        db: PathBuf,
    },
    /// A PostgreSQL schema, dropped with it, and its URL.
    #[cfg(feature = "postgres")]
    Postgres(pg_support::Schema, String),
}

impl Log {
    fn sled() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("log");
        Log::Sled { _dir: dir, db }
    }

    /// A fresh schema, or `None` with no server outside CI.
    #[cfg(feature = "postgres")]
    fn postgres(tag: &str) -> Option<Log> {
        let schema = pg_support::fresh(tag)?;
        let sep = if schema.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}schema={}", schema.url, schema.name);
        Some(Log::Postgres(schema, url))
    }

    /// The db argument of the command.
    fn db(&self) -> &str {
        match self {
            Log::Sled { db, .. } => db.to_str().unwrap(),
            #[cfg(feature = "postgres")]
            Log::Postgres(_, url) => url,
        }
    }

    /// A ledger on it; on sled, drop it before running a command.
    fn ledger(&self) -> Ledger {
        match self {
            Log::Sled { db, .. } => Ledger::open(db).unwrap(),
            #[cfg(feature = "postgres")]
            Log::Postgres(schema, _) => {
                Ledger::with_store(schema.store.clone(), Default::default())
            }
        }
    }

    /// Overwrites `left-2`'s first record with bytes that are no record
    /// (version 1, then garbage), as damage would.
    fn damage_left_2(&self) {
        match self {
            Log::Sled { db, .. } => audit_support::raw(db, |records, _| {
                records
                    .insert(key::record(&id("left-2"), 1), &b"\x01 not a record"[..])
                    .unwrap();
            }),
            #[cfg(feature = "postgres")]
            Log::Postgres(schema, _) => schema.execute(
                "UPDATE records SET bytes = '\\x01206e6f742061207265636f7264'::bytea \
                 WHERE delegation = convert_to('left-2', 'UTF8') AND seq = 1",
            ),
        }
    }
}

/// Three delegations left queued for a target nobody listens on, the middle
/// one's record overwritten with bytes that are no record.
fn store_with_one_damaged(log: &Log) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    {
        let ledger = log.ledger();
        for left in ["left-1", "left-2", "left-3"] {
            ledger
                .record(
                    &id(left),
                    Event::queued("planner", format!("http://127.0.0.1:{port}/a2a")),
                )
                .unwrap();
        }
    }
    log.damage_left_2();
    port
}

fn recover_settles_every_readable_delegation_and_names_the_damaged_one(log: &Log) {
    store_with_one_damaged(log);
    let (code, stdout, stderr) = run(&["recover", log.db()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    insta::assert_snapshot!("recover_one_damaged", stdout);
    assert_eq!(
        stderr,
        "delegation-log: 1 delegation(s) could not be recovered\n"
    );
    let ledger = log.ledger();
    for left in ["left-1", "left-3"] {
        let status = ledger.status(&id(left)).unwrap();
        assert_eq!(status.reason, Some(ReasonCode::Interrupted), "{left}");
    }
}

fn recover_with_redeliver_redelivers_every_readable_delegation_and_names_the_damaged_one(
    log: &Log,
) {
    let port = store_with_one_damaged(log);
    let (code, stdout, stderr) = run(&["recover", log.db(), "--redeliver"]);
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
    let ledger = log.ledger();
    for left in ["left-1", "left-3"] {
        let retry = ledger
            .delegation(&id(&format!("{left}.r1")))
            .unwrap()
            .unwrap();
        assert_eq!(retry.retry_of, Some(id(left)));
        assert_eq!(ledger.status(&retry.id).unwrap().status, StatusKind::Failed);
    }
}

#[test]
fn on_sled_recover_settles_every_readable_delegation_and_names_the_damaged_one() {
    recover_settles_every_readable_delegation_and_names_the_damaged_one(&Log::sled());
}

#[test]
fn on_sled_recover_with_redeliver_redelivers_every_readable_delegation_and_names_the_damaged_one() {
    recover_with_redeliver_redelivers_every_readable_delegation_and_names_the_damaged_one(
        &Log::sled(),
    );
}

#[cfg(feature = "postgres")]
#[test]
fn on_postgres_recover_settles_every_readable_delegation_and_names_the_damaged_one() {
    if let Some(log) = Log::postgres("recover_cmd") {
        recover_settles_every_readable_delegation_and_names_the_damaged_one(&log);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn on_postgres_recover_with_redeliver_redelivers_every_readable_delegation_and_names_the_damaged_one()
 {
    if let Some(log) = Log::postgres("recover_cmd_redeliver") {
        recover_with_redeliver_redelivers_every_readable_delegation_and_names_the_damaged_one(&log);
    }
}
