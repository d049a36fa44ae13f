//! Guards scale: a log of 20,000 records (generated here, not committed) is
//! verified and, written into a sled store, audited without error; and the peak
//! heap of `verify` does not grow with the number of settled delegations
//! (measured with a counting allocator in this test binary). One
//! hundred thousand and one million records are measured by `benches/audit.rs`
//! (generating them through sled takes minutes in a debug build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufWriter, Write};

use delegation_log::audit;
use delegation_log::delegation::Fold;
use delegation_log::store::{Append, Expect, Sled, Store};
use delegation_log::{DelegationId, Event, ManualClock, Record, Timestamp};
use peak_alloc::PeakAlloc;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// Writes `n` records (n/2 delegations, queued then delivered; the last one left
/// pending) as hashed JSON Lines into `log`, and into the sled store at `db`.
fn generate(n: usize, log: &std::path::Path, db: &std::path::Path) {
    let mut out = BufWriter::new(std::fs::File::create(log).unwrap());
    let store = Sled::open(db).unwrap();
    for d in 0..n / 2 {
        let id: DelegationId = format!("delegation-{d:08}").parse().unwrap();
        let at = Timestamp::from_unix_nanos(1_780_795_927_000_000_000);
        let mut fold = Fold::new(id.clone());
        let events = [
            Event::queued("planner", "reviewer"),
            Event::delivered(Some(200)).unwrap(),
        ];
        let keep = if d + 1 == n / 2 { 1 } else { 2 };
        for (seq, event) in (1..).zip(events).take(keep) {
            let mut record = Record {
                delegation: id.clone(),
                seq,
                event,
                at,
                hash: None,
            };
            record.hash = Some(record.chain_hash(&fold.hash()));
            fold.apply(&record).unwrap();
            serde_json::to_writer(&mut out, &record).unwrap();
            out.write_all(b"\n").unwrap();
            let bytes = delegation_log::envelope::encode(&record);
            let head = delegation_log::envelope::head::encode(fold.delegation().unwrap());
            store
                .append(&[Append {
                    id: &id,
                    expect: Expect::after(seq - 1),
                    record: &bytes,
                    head: &head,
                }])
                .unwrap();
        }
    }
    out.flush().unwrap();
    store.flush().unwrap();
}

/// Peak live heap bytes above the starting level while `f` runs.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = PEAK.current_usage();
    PEAK.reset_peak_usage();
    let out = f();
    (out, PEAK.peak_usage().saturating_sub(before))
}

#[test]
fn twenty_thousand_records_verify_and_audit_clean_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for n in [4_000usize, 20_000] {
        let log = dir.path().join(format!("{n}.jsonl"));
        let db = dir.path().join(format!("{n}.db"));
        generate(n, &log, &db);
        let (verdict, verify_peak) = peak(|| {
            audit::verify(std::fs::File::open(&log).unwrap(), &ManualClock::default()).unwrap()
        });
        assert!(verdict.is_clean());
        assert_eq!(verdict.records as usize, n - 1);
        assert_eq!(verdict.pending.len(), 1);
        let (verdict, audit_peak) = peak(|| {
            let store = Sled::open(&db).unwrap();
            audit::audit(&store, &ManualClock::default()).unwrap()
        });
        assert!(verdict.is_clean());
        assert_eq!(verdict.records as usize, n - 1);
        assert_eq!(verdict.delegations as usize, n / 2);
        peaks.push((verify_peak, audit_peak));
    }
    let (small, large) = (peaks[0], peaks[1]);
    // verify holds only open delegations: five times the settled delegations,
    // the same peak (within allocator noise).
    assert!(
        large.0 <= small.0 + small.0 / 5,
        "verify peak grew from {} to {} bytes",
        small.0,
        large.0
    );
    eprintln!(
        "peak heap: verify {} -> {} B, audit {} -> {} B",
        small.0, large.0, small.1, large.1
    );
}
