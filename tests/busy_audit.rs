//! Guards `audit` and `export` of a ledger that is writing (hardening review,
//! defect 4). sled's scan walks records and heads without a snapshot, so an
//! append could fall between them: with 4 writers running, 9 of 59 audits
//! reported violations and 12 exports failed, though a quiet store audited clean.
//! A busy ledger must audit and export exactly as clean as a quiet one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use delegation_log::{Durability, Event, FailureReason, Ledger, Options};

/// Audits (each with an export and its verify) while the writers run.
const ROUNDS: u64 = 5;

/// Writer threads.
const WRITERS: u64 = 4;

#[test]
fn a_busy_ledger_audits_and_exports_clean_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_with(
        dir.path().join("log"),
        Options::new().durability(Durability::Buffered),
    )
    .unwrap();
    // Writers go on until every audit has run, so each audit meets live writes.
    let audited = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (ledger, audited, written) = (ledger.clone(), audited.clone(), written.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while audited.load(Ordering::Relaxed) < ROUNDS {
                    // Ids spread over the key space, so appends land before, at
                    // and after wherever a scan is.
                    let id = format!("{:x}-w{writer}-{n}", n.wrapping_mul(0x9e37_79b9) % 4096)
                        .parse()
                        .unwrap();
                    ledger
                        .record(&id, Event::queued("planner", "reviewer"))
                        .unwrap();
                    let outcome = if n.is_multiple_of(2) {
                        Event::delivered(Some(200)).unwrap()
                    } else {
                        Event::failed(FailureReason::HttpStatus(503), Some("busy".into())).unwrap()
                    };
                    ledger.record(&id, outcome).unwrap();
                    written.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                    // Paced, so the store stays small enough to audit often.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        })
        .collect();
    // Let the store grow before judging it.
    while written.load(Ordering::Relaxed) < 1_000 {
        std::thread::yield_now();
    }
    for round in 0..ROUNDS {
        let verdict = ledger.audit().unwrap();
        assert!(
            verdict.violations.is_empty(),
            "audit {round} of a busy ledger: {}",
            verdict.to_plain()
        );
        let mut export = Vec::new();
        let exported = ledger.export(&mut export);
        assert!(exported.is_ok(), "export {round}: {exported:?}");
        let checked = delegation_log::audit::verify(export.as_slice(), ledger.clock()).unwrap();
        assert!(checked.is_clean(), "export {round}: {}", checked.to_plain());
        audited.fetch_add(1, Ordering::Relaxed);
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let quiet = ledger.audit().unwrap();
    assert!(
        quiet.is_clean() && quiet.pending.is_empty(),
        "{}",
        quiet.to_plain()
    );
    println!(
        "{ROUNDS} audits and exports while writers ran, around {} writes, all clean",
        written.load(Ordering::Relaxed)
    );
}
