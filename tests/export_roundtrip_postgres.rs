//! Guards issue 14's "the hash chain and the export bytes are identical to
//! sled's": a log written to sled (every outcome, retries, tasks of every JSON
//! shape, ids with NUL and non-ASCII, more delegations than one scan page) is
//! exported, imported into an empty PostgreSQL ledger and exported again, and the
//! two exports are byte for byte the same. The PostgreSQL side is checked from
//! both ends: the ledger's audit is clean and every status matches sled's, and
//! the database holds exactly one row per exported record and one head per
//! delegation. Needs `DATABASE_URL` (`bash .ci/postgres`); under `CI=true` its
//! absence fails.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;
mod support;

use std::time::Duration;

use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::{Event, FailureReason, Ledger, ManualClock};
use serde_json::json;
use support::id;

/// A sled ledger with a bit of everything, over more than one scan page.
fn sled_log(ledger: &Ledger, clock: &ManualClock) {
    for n in 0..300u32 {
        clock.advance(Duration::from_millis(7));
        let name = match n % 7 {
            0 => format!("d-{n}"),
            1 => format!("délégation-{n}-✓"),
            2 => format!("nul\u{0}inside-{n}"),
            3 => format!("{}-{n}", "x".repeat(200)),
            _ => format!("plain-{n:04}"),
        };
        let this = id(&name);
        let mut queued = Queued::new("planner", format!("http://127.0.0.1:9/a2a/{n}"));
        queued.task = match n % 4 {
            0 => None,
            1 => Some(json!({"review": n, "lines": [1, 2, 3], "note": "é \"q\"\n"})),
            2 => Some(json!("plain text task")),
            _ => Some(json!([null, true, 1.5, {"z": 1, "a": 2}])),
        };
        ledger.record(&this, Event::Queued(queued)).unwrap();
        clock.advance(Duration::from_millis(3));
        match n % 5 {
            0 => {
                ledger
                    .record(&this, Event::delivered(Some(200)).unwrap())
                    .unwrap();
            }
            1 => {
                let reason = FailureReason::HttpStatus(503);
                ledger
                    .record(&this, Event::failed(reason, Some("busy".into())).unwrap())
                    .unwrap();
            }
            2 => {
                let failed = Failed {
                    reason: FailureReason::TargetOffline,
                    detail: Some(format!("refused {n}")),
                };
                let retry = id(&format!("retry-of-{n}"));
                ledger
                    .retry(&this, failed, &retry, Queued::new("planner", "again"))
                    .unwrap();
            }
            3 => {
                ledger
                    .record(&this, Event::failed(FailureReason::Timeout, None).unwrap())
                    .unwrap();
            }
            // Still queued: exported as pending.
            _ => {}
        }
    }
}

#[test]
fn an_export_from_sled_imported_into_postgres_exports_the_same_bytes() {
    let Some(schema) = pg_support::fresh("roundtrip") else {
        return;
    };
    let clock = ManualClock::at_unix_nanos(1_780_000_000_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let sled =
        Ledger::open_with(dir.path().join("log"), Options::new().clock(clock.clone())).unwrap();
    sled_log(&sled, &clock);
    let mut from_sled = Vec::new();
    let exported = sled.export(&mut from_sled).unwrap();

    let postgres = Ledger::with_store(schema.store.clone(), Options::new().clock(clock.clone()));
    let imported = postgres.import(from_sled.as_slice()).unwrap();
    assert!(imported.verdict.is_clean(), "{:?}", imported.verdict);
    assert_eq!(imported.stored, exported.records);
    let mut from_postgres = Vec::new();
    postgres.export(&mut from_postgres).unwrap();
    assert!(
        from_postgres == from_sled,
        "the exports differ (sled {} bytes, PostgreSQL {} bytes)",
        from_sled.len(),
        from_postgres.len()
    );

    // The ledger's side: a clean audit, and every status as on sled.
    let verdict = postgres.audit().unwrap();
    assert!(verdict.is_clean(), "{verdict:?}");
    let mut delegations = 0u64;
    for delegation in sled.replay() {
        let delegation = delegation.unwrap();
        assert_eq!(
            postgres.status(&delegation.id).unwrap(),
            sled.status(&delegation.id).unwrap()
        );
        delegations += 1;
    }
    // The database's side: one row per record, one head per delegation, each head
    // at its delegation's last record.
    let counts = schema.query(
        "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM heads), \
         (SELECT count(*) FROM heads h WHERE h.seq <> \
            (SELECT max(seq) FROM records r WHERE r.delegation = h.delegation))",
    );
    let count = |n: usize| counts[0][n].as_deref().unwrap().parse::<u64>().unwrap();
    assert_eq!(count(0), exported.records);
    assert_eq!(count(1), delegations);
    assert_eq!(count(2), 0, "a head that is not at its last record");
}
