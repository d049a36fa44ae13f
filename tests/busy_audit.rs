//! Guards `audit` and `export` of a ledger that is writing (hardening review,
//! defect 4). sled's scan walks records and heads without a snapshot, so an
//! append could fall between them: with 4 writers running, 9 of 59 audits
//! reported violations and 12 exports failed, though a quiet store audited clean.
//! A busy ledger must audit and export exactly as clean as a quiet one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use delegation_log::{Durability, Event, FailureReason, Ledger, Options};

/// Lifecycles per writer.
const LIFECYCLES: u64 = 2_000;

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
    let finished = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (ledger, finished, written) = (ledger.clone(), finished.clone(), written.clone());
            std::thread::spawn(move || {
                // Bounded, so the test ends; audits run while these write.
                for n in 0..LIFECYCLES {
                    // Ids spread over the key space, so appends land before, at
                    // and after wherever a scan is.
                    let id = format!("{:x}-w{writer}-{n}", n.wrapping_mul(0x9e37_79b9) % 4096)
                        .parse()
                        .unwrap();
                    ledger
                        .record(&id, Event::queued("planner", "reviewer"))
                        .unwrap();
                    let outcome = if n % 2 == 0 {
                        Event::delivered(Some(200)).unwrap()
                    } else {
                        Event::failed(FailureReason::HttpStatus(503), Some("busy".into())).unwrap()
                    };
                    ledger.record(&id, outcome).unwrap();
                    written.fetch_add(2, Ordering::Relaxed);
                    // Paced, so the writing spans many audits.
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    // Let the store grow before judging it.
    while written.load(Ordering::Relaxed) < 1_000 {
        std::thread::yield_now();
    }
    let mut audits = 0;
    let mut busy = 0;
    for round in 0.. {
        let writing = finished.load(Ordering::Relaxed) < WRITERS;
        if !writing && round >= 5 {
            break;
        }
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
        audits += 1;
        busy += u32::from(writing);
    }
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(busy >= 3, "only {busy} audits overlapped the writers");
    let quiet = ledger.audit().unwrap();
    assert!(
        quiet.is_clean() && quiet.pending.is_empty(),
        "{}",
        quiet.to_plain()
    );
    println!(
        "{audits} audits and exports ({busy} while writers ran) around {} writes, all clean",
        written.load(Ordering::Relaxed)
    );
}
