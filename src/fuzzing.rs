//! Fuzz operations and their checks, as library functions (feature `fuzzing`).
//!
//! The cargo-fuzz targets in `fuzz/` call these, and so does `tests/fuzz_corpus.rs`
//! over the committed seed corpora, so the same checks run under the nightly fuzzer
//! and under stable `cargo test`. Each function panics only when it finds a real
//! violation of the crate's promises; a panic is the fuzzer's signal.
//!
//! - [`decode_record`]: stored bytes never panic the record or head decoder, and
//!   whatever decodes re-encodes to the same bytes.
//! - [`ops_with_crashes`]: a sequence of operations on the fault-injecting store,
//!   with crashes, torn writes, failed writes and flushes, reopens and recovery,
//!   checked step by step against a small model.
//! - [`verify_jsonl`]: arbitrary bytes judged as a JSON Lines log never panic
//!   `verify`, the verdict is the same when run again and keeps its own rules
//!   (violations in line order, within the log, counts adding up), and a clean log
//!   survives `import` then `export` with the same verdict.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;

use crate::clock::ManualClock;
use crate::delegation::StatusKind;
use crate::envelope;
use crate::error::Error;
use crate::event::{DelegationId, Delivered, Event, EventKind, Failed, FailureReason, Queued, Seq};
use crate::ledger::{Durability, Ledger, Options};
use crate::lifecycle::State;
use crate::store::{Fault, Faulty, Store, Stream};

/// Decodes `bytes` as a stored record, and again as the body of a record of each
/// known format version (1, JSON; 2, postcard) sealed with a valid checksum, so
/// that the fuzzer reaches the strict body decoding without having to forge a
/// CRC-32. Does the same with a delegation's head: `bytes` as a head, and as a
/// head's body sealed with a valid checksum.
///
/// # Panics
/// If bytes that decode do not re-encode to themselves: two byte forms for one
/// record (or head) would let a stored record change without its checksum
/// noticing.
pub fn decode_record(bytes: &[u8]) {
    round_trip(bytes);
    head_round_trip(bytes);
    let mut head = Vec::with_capacity(5 + bytes.len());
    head.push(envelope::head::VERSION);
    head.extend_from_slice(&[0; 4]);
    head.extend_from_slice(bytes);
    let checksum = crc32fast::hash(head.get(5..).unwrap_or_default());
    if let Some(slot) = head.get_mut(1..5) {
        slot.copy_from_slice(&checksum.to_be_bytes());
    }
    head_round_trip(&head);
    for version in [1, envelope::VERSION] {
        let mut sealed = Vec::with_capacity(envelope::HEADER_LEN + bytes.len());
        sealed.push(version);
        sealed.extend_from_slice(&[0; 4]);
        sealed.extend_from_slice(&[0x5a; 32]);
        sealed.extend_from_slice(bytes);
        let checksum = crc32fast::hash(sealed.get(5..).unwrap_or_default());
        if let Some(slot) = sealed.get_mut(1..5) {
            slot.copy_from_slice(&checksum.to_be_bytes());
        }
        round_trip(&sealed);
    }
}

/// Decodes `bytes` and, if they hold a record, re-encodes it in the version they
/// were written in.
fn round_trip(bytes: &[u8]) {
    if let Ok(record) = envelope::decode(bytes) {
        let again = match bytes.first() {
            Some(1) => envelope::encode_v1(&record),
            _ => envelope::encode(&record),
        };
        assert!(
            again == bytes,
            "{record:?} decoded from bytes it does not re-encode to"
        );
    }
}

/// Decodes `bytes` as a head and, if they hold one, re-encodes it.
fn head_round_trip(bytes: &[u8]) {
    if let Ok(delegation) = envelope::head::decode(bytes) {
        let again = envelope::head::encode(&delegation);
        assert!(
            again == bytes,
            "{delegation:?} decoded from a head it does not re-encode to"
        );
    }
}

/// A failure reason, as the fuzzer picks it.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum Reason {
    /// [`FailureReason::TargetOffline`].
    TargetOffline,
    /// [`FailureReason::HttpStatus`]; 2xx codes make the event invalid.
    HttpStatus(u16),
    /// [`FailureReason::MarshalError`].
    MarshalError,
    /// [`FailureReason::Timeout`].
    Timeout,
    /// [`FailureReason::Interrupted`].
    Interrupted,
}

impl From<Reason> for FailureReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::TargetOffline => FailureReason::TargetOffline,
            Reason::HttpStatus(code) => FailureReason::HttpStatus(code),
            Reason::MarshalError => FailureReason::MarshalError,
            Reason::Timeout => FailureReason::Timeout,
            Reason::Interrupted => FailureReason::Interrupted,
        }
    }
}

/// One operation. Delegations are picked from a pool of four ids by `id % 4`.
#[derive(Clone, Debug, Arbitrary)]
pub enum Op {
    /// Records `queued`, with a task when `task` is set.
    Queue {
        /// Which delegation.
        id: u8,
        /// Whether to carry a task.
        task: bool,
    },
    /// Records `delivered`; a status outside 2xx makes the event invalid.
    Deliver {
        /// Which delegation.
        id: u8,
        /// The status.
        http_status: Option<u16>,
    },
    /// Records `failed`.
    Fail {
        /// Which delegation.
        id: u8,
        /// Why.
        reason: Reason,
        /// Whether to carry a detail.
        detail: bool,
    },
    /// `Ledger::flush`.
    Flush,
    /// Crash: the store keeps only its durable image; the ledger is reopened.
    Crash,
    /// Crash tearing the last unflushed append; the ledger is reopened.
    CrashTearing,
    /// Drop the ledger and open a new one over the same store, without a crash.
    Reopen,
    /// `Ledger::recover`.
    Recover,
    /// Arm a failure of the next append.
    FailWrite,
    /// Arm a failure of the next flush.
    FailFlush,
}

/// A whole run: the durability mode, the store's seed, and the operations.
#[derive(Clone, Debug, Arbitrary)]
pub struct Script {
    /// Buffered mode instead of durable.
    pub buffered: bool,
    /// The fault-injecting store's seed (it picks where tears cut).
    pub seed: u64,
    /// The operations, of which at most [`MAX_OPS`] run.
    pub ops: Vec<Op>,
}

/// How many operations of a script run, so that every execution stays fast.
pub const MAX_OPS: usize = 64;

const POOL: [&str; 4] = ["a", "ab", "b", "delegation-with-a-longer-id"];

/// What the model knows: the faults armed, whether the ledger is poisoned, the
/// appends not yet flushed, and the events acknowledged.
#[derive(Debug, Default)]
struct Model {
    armed: Vec<Fault>,
    poisoned: bool,
    /// Appends since the last store flush, in order.
    unflushed: Vec<DelegationId>,
    /// Acknowledged events: delegation, seq, and whether the acknowledgement
    /// promises that it survives a crash.
    acked: Vec<(DelegationId, Seq, bool)>,
}

impl Model {
    fn take(&mut self, fault: Fault) -> bool {
        match self.armed.iter().position(|armed| *armed == fault) {
            Some(at) => {
                self.armed.remove(at);
                true
            }
            None => false,
        }
    }

    /// A store flush: the unflushed appends become durable, unless it fails.
    fn store_flush(&mut self) -> bool {
        self.unflushed.clear();
        if self.take(Fault::FailFlush) {
            self.poisoned = true;
            // As after a failed fsync, what was acknowledged but unflushed is gone.
            self.acked.retain(|(_, _, durable)| *durable);
            return false;
        }
        for acked in &mut self.acked {
            acked.2 = true;
        }
        true
    }

    fn crash(&mut self) {
        self.armed.clear();
        self.unflushed.clear();
        self.poisoned = false;
        self.acked.retain(|(_, _, durable)| *durable);
    }
}

/// Runs `script` against a ledger over a [`Faulty`] store, checking after every
/// operation.
///
/// # Panics
/// On a broken promise: an answer the model does not allow (an illegal event
/// accepted, a legal one refused, a refusal that wrote, a failure that did not
/// poison), two outcomes for one delegation, replay differing from live, an
/// acknowledged durable event lost in a crash, a torn write that does not read as
/// damaged, or something still pending after a successful recover.
pub fn ops_with_crashes(script: Script) {
    let durability = if script.buffered {
        Durability::Buffered
    } else {
        Durability::Durable
    };
    let store = Arc::new(Faulty::seeded(script.seed));
    let clock = ManualClock::default();
    let open = || {
        let shared: Arc<dyn Store> = store.clone();
        Ledger::with_store(
            shared,
            Options::new().durability(durability).clock(clock.clone()),
        )
    };
    let ids: Vec<DelegationId> = POOL
        .iter()
        .filter_map(|id| DelegationId::try_from(*id).ok())
        .collect();
    let mut ledger = open();
    let mut model = Model::default();
    for op in script.ops.into_iter().take(MAX_OPS) {
        clock.advance(Duration::from_millis(1));
        match op {
            Op::Queue { id, task } => {
                let event = Event::Queued(Queued {
                    task: task.then(|| serde_json::json!({ "op": id })),
                    ..Queued::new("planner", "reviewer")
                });
                record(
                    &ledger,
                    &store,
                    &mut model,
                    durability,
                    pick(&ids, id),
                    event,
                );
            }
            Op::Deliver { id, http_status } => {
                let event = Event::Delivered(Delivered {
                    http_status,
                    remote: None,
                });
                record(
                    &ledger,
                    &store,
                    &mut model,
                    durability,
                    pick(&ids, id),
                    event,
                );
            }
            Op::Fail { id, reason, detail } => {
                let event = Event::Failed(Failed {
                    reason: reason.into(),
                    detail: detail.then(|| "detail \u{2713}".to_owned()),
                });
                record(
                    &ledger,
                    &store,
                    &mut model,
                    durability,
                    pick(&ids, id),
                    event,
                );
            }
            Op::Flush => {
                let result = ledger.flush();
                if model.poisoned {
                    assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
                } else {
                    let ok = model.store_flush();
                    assert_eq!(result.is_ok(), ok, "flush answered {result:?}");
                }
            }
            Op::Crash => {
                store.crash();
                model.crash();
                ledger = open();
                check_acknowledged(&store, &model);
            }
            Op::CrashTearing => {
                let torn = model.unflushed.last().cloned();
                assert_eq!(store.crash_tearing(), torn.is_some());
                model.crash();
                ledger = open();
                check_acknowledged(&store, &model);
                if let Some(torn) = torn {
                    // The torn record has no head: its history reads as damaged,
                    // while `status` answers from the head as it was.
                    let history = ledger.history(&torn);
                    assert!(
                        matches!(history, Err(Error::Corrupt { .. })),
                        "torn `{torn}` reads as {history:?}"
                    );
                }
            }
            Op::Reopen => {
                model.poisoned = false;
                ledger = open();
            }
            Op::Recover => recover(&ledger, &store, &mut model, durability, &ids),
            Op::FailWrite => {
                store.inject(Fault::FailWrite);
                model.armed.push(Fault::FailWrite);
            }
            Op::FailFlush => {
                store.inject(Fault::FailFlush);
                model.armed.push(Fault::FailFlush);
            }
        }
        check_invariants(&ledger, &store, &model, &ids);
    }
}

fn pick(ids: &[DelegationId], id: u8) -> &DelegationId {
    let index = usize::from(id) % ids.len().max(1);
    ids.get(index)
        .unwrap_or_else(|| panic!("the id pool is empty"))
}

fn snapshot(store: &Faulty, ids: &[DelegationId]) -> Vec<Stream> {
    ids.iter()
        .map(|id| {
            store
                .history(id)
                .unwrap_or_else(|e| panic!("the in-memory store failed: {e}"))
        })
        .collect()
}

/// What the ledger must answer for `event` on `id`, judged from what it reads
/// now: `Ok(())` for an accepted event.
///
/// The ledger judges from the delegation's head alone (what `status` reads); a
/// legal event whose record slot is taken (a torn record past the head) is
/// refused by the store as damage.
fn verdict(
    ledger: &Ledger,
    store: &Faulty,
    model: &Model,
    id: &DelegationId,
    event: &Event,
) -> Result<(), &'static str> {
    if model.poisoned {
        return Err("poisoned");
    }
    if event.validate().is_err() {
        return Err("invalid");
    }
    let (state, seq) = match ledger.status(id) {
        Err(Error::Corrupt { .. } | Error::UnknownVersion { .. }) => return Err("corrupt"),
        Err(other) => panic!("reading `{id}` failed: {other}"),
        Ok(status) => match status.status {
            StatusKind::NotFound => (State::Initial, 0),
            StatusKind::Queued => (State::Queued, 1),
            StatusKind::Delivered => (State::Delivered, 2),
            StatusKind::Failed => (State::Failed, 2),
        },
    };
    let legal = match (state, event.kind()) {
        (State::Initial, EventKind::Queued) => Ok(()),
        (State::Queued, EventKind::Delivered | EventKind::Failed) => Ok(()),
        (State::Initial | State::Queued, _) => Err("illegal"),
        (State::Delivered | State::Failed, _) => Err("settled"),
    };
    let taken = store
        .history(id)
        .unwrap_or_else(|e| panic!("the in-memory store failed: {e}"))
        .entries
        .iter()
        .any(|entry| entry.seq == seq + 1);
    legal.and(if taken { Err("corrupt") } else { Ok(()) })
}

fn same_refusal(error: &Error, expected: &str) -> bool {
    matches!(
        (error, expected),
        (Error::Poisoned { .. }, "poisoned")
            | (Error::InvalidEvent(_), "invalid")
            | (
                Error::Corrupt { .. } | Error::UnknownVersion { .. },
                "corrupt"
            )
            | (Error::IllegalTransition { .. }, "illegal")
            | (Error::AlreadySettled { .. }, "settled")
    )
}

fn record(
    ledger: &Ledger,
    store: &Faulty,
    model: &mut Model,
    durability: Durability,
    id: &DelegationId,
    event: Event,
) {
    let expected = verdict(ledger, store, model, id, &event);
    let before = store
        .history(id)
        .unwrap_or_else(|e| panic!("the in-memory store failed: {e}"));
    let result = ledger.record(id, event);
    let after = store
        .history(id)
        .unwrap_or_else(|e| panic!("the in-memory store failed: {e}"));
    match expected {
        Err(refusal) => {
            let refused = result
                .as_ref()
                .is_err_and(|error| same_refusal(error, refusal));
            assert!(refused, "expected {refusal}, got {result:?}");
            assert_eq!(before, after, "a refused event changed the store");
        }
        Ok(()) if model.take(Fault::FailWrite) => {
            model.poisoned = true;
            assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
            assert_eq!(before, after, "a failed write changed the store");
        }
        Ok(()) => {
            model.unflushed.push(id.clone());
            assert_eq!(after.entries.len(), before.entries.len() + 1);
            let flushed = durability == Durability::Buffered || model.store_flush();
            match result {
                Ok(recorded) if flushed => {
                    let durable = durability == Durability::Durable;
                    model.acked.push((id.clone(), recorded.seq, durable));
                }
                Err(Error::Io(_)) if !flushed => {}
                other => panic!("expected a flushed={flushed} record, got {other:?}"),
            }
        }
    }
}

fn recover(
    ledger: &Ledger,
    store: &Faulty,
    model: &mut Model,
    durability: Durability,
    ids: &[DelegationId],
) {
    let before = snapshot(store, ids);
    let pending: Vec<DelegationId> = ids
        .iter()
        .filter(|id| matches!(ledger.delegation(id), Ok(Some(d)) if d.state == State::Queued))
        .cloned()
        .collect();
    let damaged = ids
        .iter()
        .any(|id| matches!(ledger.delegation(id), Err(Error::Corrupt { .. })));
    let result = ledger.recover();
    let after = snapshot(store, ids);
    let mut written: Vec<DelegationId> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(_, a)| a.id.clone())
        .collect();
    // Recovery writes in the store's key order, which is the order of the
    // store's unflushed appends (and so which one a crash tears).
    written.sort_by_key(crate::store::key::prefix);
    for id in &written {
        assert!(
            pending.contains(id),
            "recover wrote to `{id}`, which was not pending"
        );
        model.unflushed.push(id.clone());
    }
    match &result {
        Ok(settled) => {
            // A poisoned ledger reads nothing, so it never recovers.
            assert!(!damaged && !model.poisoned, "{result:?}");
            let mut sorted = settled.clone();
            sorted.sort_by_key(crate::store::key::prefix);
            let mut expected = pending.clone();
            expected.sort_by_key(crate::store::key::prefix);
            assert_eq!(sorted, expected, "recover settled the wrong delegations");
            for id in settled {
                let seq = ledger.delegation(id).ok().flatten().map_or(0, |d| d.seq);
                model
                    .acked
                    .push((id.clone(), seq, durability == Durability::Durable));
            }
            let still = ledger.pending();
            assert!(
                still.as_ref().is_ok_and(Vec::is_empty),
                "pending after a recover: {still:?}"
            );
        }
        Err(Error::Corrupt { .. }) => {
            assert!(damaged, "recover reported damage that reads fine");
            assert_eq!(
                written.len(),
                pending.len(),
                "recover left readable delegations queued"
            );
        }
        Err(Error::Poisoned { .. }) => assert!(model.poisoned && written.is_empty()),
        Err(Error::Io(_)) => {
            // An armed fault hit one of recovery's writes.
            if model.take(Fault::FailWrite) {
                model.poisoned = true;
                if durability == Durability::Durable {
                    // The writes before the failed one were each flushed.
                    model.unflushed.clear();
                }
            } else {
                assert!(durability == Durability::Durable);
                assert!(
                    !model.store_flush(),
                    "recover failed without a failing flush"
                );
            }
            return;
        }
        Err(other) => panic!("recover failed with {other}"),
    }
    if durability == Durability::Durable && !written.is_empty() {
        // Each of recovery's records was flushed.
        model.unflushed.clear();
    }
}

fn check_acknowledged(store: &Faulty, model: &Model) {
    for (id, seq, _) in &model.acked {
        let stream = store
            .history(id)
            .unwrap_or_else(|e| panic!("the in-memory store failed: {e}"));
        let kept = stream
            .entries
            .iter()
            .any(|entry| entry.seq == *seq && envelope::decode(&entry.bytes).is_ok());
        assert!(kept, "acknowledged `{id}` seq {seq} was lost in a crash");
    }
}

fn check_invariants(ledger: &Ledger, store: &Faulty, model: &Model, ids: &[DelegationId]) {
    assert_eq!(store.pending(), model.unflushed.len(), "unflushed appends");
    if model.poisoned {
        // A poisoned ledger serves no reads: what it holds may not be durable.
        for id in ids {
            let status = ledger.status(id);
            assert!(matches!(status, Err(Error::Poisoned { .. })), "{status:?}");
        }
        let replayed: Vec<_> = ledger.replay().collect();
        assert!(
            matches!(replayed.as_slice(), [Err(Error::Poisoned { .. })]),
            "{replayed:?}"
        );
        return;
    }
    for stream in snapshot(store, ids) {
        let outcomes = stream
            .entries
            .iter()
            .filter_map(|entry| envelope::decode(&entry.bytes).ok())
            .filter(|record| record.event.kind() != EventKind::Queued)
            .count();
        assert!(outcomes <= 1, "`{}` holds {outcomes} outcomes", stream.id);
    }
    let mut readable = 0;
    for item in ledger.replay() {
        match item {
            Ok(replayed) => {
                readable += 1;
                let live = ledger.delegation(&replayed.id);
                assert!(
                    matches!(&live, Ok(Some(live)) if *live == replayed),
                    "replay of `{}` differs from live: {live:?}",
                    replayed.id
                );
            }
            Err(Error::Corrupt { .. }) => {}
            Err(other) => panic!("replay failed with {other}"),
        }
    }
    let live = ids
        .iter()
        .filter(|id| matches!(ledger.delegation(id), Ok(Some(_))))
        .count();
    assert_eq!(readable, live, "replay and live disagree on what exists");
}

/// Judges `bytes` as a JSON Lines log, twice, and checks the verdict.
///
/// # Panics
/// If the verdict differs between two runs over the same bytes; if it breaks its
/// own rules (violations out of line order or past the last line, a clean verdict
/// with violations, states that do not add up to the delegations); or if a clean
/// log, imported into an empty store and exported again, does not verify clean
/// with the same records, delegations and states.
pub fn verify_jsonl(bytes: &[u8]) {
    let clock = ManualClock::default();
    let first = crate::audit::verify(bytes, &clock);
    let second = crate::audit::verify(bytes, &clock);
    let verdict = match (first, second) {
        (Ok(first), Ok(second)) => {
            assert_eq!(first, second, "verify gave two verdicts on the same bytes");
            first
        }
        (Err(first), Err(second)) => {
            assert_eq!(
                first.to_string(),
                second.to_string(),
                "verify failed two ways"
            );
            return;
        }
        (first, second) => panic!("verify is unstable: {first:?} then {second:?}"),
    };
    let lines = u64::try_from(bytes.split(|b| *b == b'\n').count()).unwrap_or(u64::MAX);
    assert!(
        verdict.violations.windows(2).all(|pair| match pair {
            [a, b] => a.line < b.line,
            _ => true,
        }),
        "violations out of line order, or two on one line: {verdict:?}"
    );
    assert!(
        verdict
            .violations
            .iter()
            .all(|v| v.line >= 1 && v.line <= lines),
        "a violation outside the log's {lines} lines: {verdict:?}"
    );
    assert_eq!(verdict.is_clean(), verdict.violations.is_empty());
    let states = verdict.states;
    assert_eq!(
        states.queued + states.delivered + states.failed,
        verdict.delegations,
        "states do not add up: {verdict:?}"
    );
    assert_eq!(
        states.queued,
        u64::try_from(verdict.pending.len()).unwrap_or(u64::MAX)
    );
    if !verdict.is_clean() {
        return;
    }
    let ledger = Ledger::with_store(
        Arc::new(crate::store::Memory::new()),
        Options::new().clock(clock.clone()),
    );
    let imported = ledger
        .import(bytes)
        .unwrap_or_else(|e| panic!("a clean log did not import: {e}"));
    assert_eq!(
        imported.verdict, verdict,
        "import judged the log differently"
    );
    let mut exported = Vec::new();
    ledger
        .export(&mut exported)
        .unwrap_or_else(|e| panic!("an imported log did not export: {e}"));
    let again = crate::audit::verify(exported.as_slice(), &clock)
        .unwrap_or_else(|e| panic!("an export did not verify: {e}"));
    assert!(
        again.is_clean(),
        "an export of a clean log is not clean: {again:?}"
    );
    assert_eq!(
        (again.records, again.delegations, again.states),
        (verdict.records, verdict.delegations, verdict.states),
        "import then export changed the log"
    );
}
