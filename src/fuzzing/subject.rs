//! Fuzz operations and their checks, as library functions (feature `fuzzing`).
//!
//! The cargo-fuzz targets in `fuzz/` call these, and so does `tests/fuzz_seeds_pass.rs`
//! over the committed seed corpora, so the same checks run under the nightly fuzzer
//! and under stable `cargo test`. Each function panics only when it finds a real
//! violation of the crate's promises; a panic is the fuzzer's signal.
//!
//! - [`decode_record`]: stored bytes never panic the record or head decoder, and
//!   whatever decodes re-encodes to the same bytes.
//! - [`ops_with_crashes`]: a sequence of operations on the fault-injecting store,
//!   with crashes, torn writes, failed writes and flushes, reopens and recovery,
//!   checked step by step against the [`Model`].
//! - [`verify_jsonl`]: arbitrary bytes judged as a JSON Lines log never panic
//!   `verify`, the verdict is the same when run again and keeps its own rules
//!   (violations in line order, within the log, counts adding up), and a clean log
//!   survives `import` then `export` with the same verdict.
//!
//! The [`Model`] is the one reference model of the ledger over the fault-injecting
//! store: `tests/ledger_agrees_with_model.rs` drives it with
//! proptest-state-machine (adding racing writers),
//! `tests/refused_events_change_nothing.rs` with random events on the memory
//! store, and [`ops_with_crashes`] with the fuzzer's scripts. Each [`Transition`]
//! is taken by the model first, then by the [`Subject`] (a real ledger over a
//! [`Faulty`] store, or any store), whose answers, postconditions and invariants
//! are checked against the model's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use arbitrary::Arbitrary;

use crate::clock::ManualClock;
use crate::delegation::{Status, StatusKind};
use crate::envelope;
use crate::error::{Error, ReadError, StorageError};
use crate::event::http_status::Code;
use crate::event::{
    DelegationId, Delivered, Event, EventKind, Failed, FailureReason, MAX_ID_LEN, Queued, Received,
    Seq, Timestamp,
};
use crate::ledger::{Attempts, Dead, Durability, LastFailure, Ledger, Options, Pending, Waiting};
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
    head_round_trip(&sealed(envelope::head::VERSION, &[], bytes));
    for version in [1, envelope::VERSION] {
        round_trip(&sealed(version, &[0x5a; 32], bytes));
    }
}

/// `body` behind a header of `version` and a valid CRC-32 of all that follows
/// it, `hash` first (a record's chain hash; a head has none).
fn sealed(version: u8, hash: &[u8], body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + hash.len() + body.len());
    bytes.push(version);
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(hash);
    bytes.extend_from_slice(body);
    let checksum = crc32fast::hash(bytes.get(5..).unwrap_or_default());
    if let Some(slot) = bytes.get_mut(1..5) {
        slot.copy_from_slice(&checksum.to_be_bytes());
    }
    bytes
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

/// One operation. Delegations are picked from the model's pool, [`pool_id`]`(id)`.
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

// ---------------------------------------------------------------------------
// The reference model of the ledger over the fault-injecting store
// ---------------------------------------------------------------------------

/// How many delegations the model knows: ids come from a small pool, so that
/// events collide. The pool holds a prefix of another id and an id of the
/// maximum length, then two ids named as the dispatcher names retries.
pub const POOL: usize = 6;

/// The slots fresh delegations are queued in (the fuzzer's scripts use only
/// these); the rest of the pool is free for retries to be queued in, so that
/// chains of several attempts are common.
pub const FIRST_SLOTS: usize = 4;

/// The delegation id of pool slot `index` (taken modulo [`POOL`]).
pub fn pool_id(index: usize) -> DelegationId {
    let text = match index % POOL {
        0 => "a".to_owned(),
        1 => "ab".to_owned(),
        2 => "b".to_owned(),
        3 => "z".repeat(MAX_ID_LEN),
        4 => "a.r1".to_owned(),
        _ => "a.r2".to_owned(),
    };
    DelegationId::try_from(text).unwrap_or_else(|e| panic!("a pool id is refused: {e}"))
}

/// The pool slots in the store's key order.
fn key_order() -> Vec<usize> {
    let mut order: Vec<usize> = (0..POOL).collect();
    order.sort_by_key(|&index| crate::store::key::prefix(&pool_id(index)));
    order
}

/// The clock reads `BASE + step` milliseconds at each step: 2026-06-07T01:32:07Z,
/// where a [`ManualClock`] starts.
const BASE_NANOS: i64 = 1_780_795_927_000_000_000;

fn timestamp(nanos: i64) -> Timestamp {
    Timestamp::from_unix_nanos(nanos)
}

const RECOVERY_DETAIL: &str = "the process stopped before the outcome was known";

/// One transition of the ledger and its store, as the model and the system
/// under test both take it.
#[derive(Clone, Debug)]
pub enum Transition {
    /// Records one event: `queued` (delegate), an outcome (deliver, fail, or a
    /// duplicate outcome), or an invalid event.
    Record {
        /// The pool slot of the delegation.
        id: usize,
        /// The event.
        event: Event,
    },
    /// Threads race to record these outcomes for one delegation, one thread each.
    Race {
        /// The pool slot of the delegation.
        id: usize,
        /// The racing outcomes.
        outcomes: Vec<Event>,
    },
    /// `Ledger::flush`.
    Flush,
    /// Crash: the store keeps only its durable image; the ledger is reopened.
    Crash,
    /// Crash tearing the last unflushed append; the ledger is reopened.
    TornCrash,
    /// Drop the ledger and open a new one over the same store, without a crash.
    Reopen,
    /// `Ledger::recover`.
    Recover,
    /// Arm a one-shot fault of the store.
    Inject(Fault),
    /// `Ledger::retry`, as the dispatcher calls it: delegation `id` fails with
    /// `reason`, and its next attempt, `to`, is queued (a copy of `id`'s
    /// `queued`) with `not_before` = now + `backoff`, in one write.
    Retry {
        /// The pool slot of the failing attempt.
        id: usize,
        /// The pool slot of the next attempt.
        to: usize,
        /// Why the attempt failed.
        reason: FailureReason,
        /// How long the next attempt waits.
        backoff: Duration,
    },
    /// Time passes on the manual clock (beyond the millisecond of every step).
    AdvanceClock(Duration),
}

/// One stored record, as the model sees it.
#[derive(Clone, Debug, PartialEq)]
struct Rec {
    /// The event; several candidates when racing writers recorded it, of which
    /// the ledger picked one.
    events: Vec<Event>,
    /// Nanoseconds since the epoch.
    at: i64,
    /// Whether a crash tore it.
    torn: bool,
}

/// One delegation in one image, as `store::memory` keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Slot {
    entries: Vec<(Seq, Rec)>,
    head: Option<Seq>,
    /// What the head summarises: the records its writer's fold covered.
    summary: Vec<(Seq, Rec)>,
}

impl Slot {
    /// `memory::push`: writes without checks; a head written with its record
    /// replaces the old one.
    fn push(&mut self, seq: Seq, rec: Rec, summary: Option<Vec<(Seq, Rec)>>) {
        self.entries.push((seq, rec));
        if let Some(summary) = summary {
            self.head = Some(seq);
            self.summary = summary;
        }
    }
}

type Image = BTreeMap<usize, Slot>;

/// The index's retry links, from one pool slot to another (`Hint::Link`): the
/// only hints whose absence can change an answer, since readers verify every
/// hint against the heads.
type Links = BTreeMap<usize, usize>;

/// One unflushed write of the store, in order.
#[derive(Clone, Debug, PartialEq)]
enum Unflushed {
    /// A group of appends, written atomically: one, or a retry's two.
    Group(Vec<PendingWrite>),
    /// A retry link of the index, written before its group.
    Link(usize, usize),
}

#[derive(Clone, Debug, PartialEq)]
struct PendingWrite {
    id: usize,
    seq: Seq,
    rec: Rec,
    /// The head written with it.
    summary: Vec<(Seq, Rec)>,
}

/// What reading one delegation gives.
#[derive(Clone, Debug, PartialEq)]
enum Read {
    /// No records.
    Absent,
    /// A typed `Error::Corrupt`.
    Corrupt,
    /// The records, checked.
    Found(Vec<(Seq, Rec)>),
}

/// The lifecycle, as the format page states it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Initial,
    Queued,
    Settled,
}

/// How the ledger is expected to refuse or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrKind {
    Poisoned,
    Invalid,
    Illegal,
    AlreadySettled,
    RetryLink,
    Corrupt,
    Io,
}

fn kind_of(error: &Error) -> ErrKind {
    match error {
        Error::Poisoned { .. } => ErrKind::Poisoned,
        Error::InvalidEvent(_) => ErrKind::Invalid,
        Error::IllegalTransition { .. } => ErrKind::Illegal,
        Error::AlreadySettled { .. } => ErrKind::AlreadySettled,
        Error::RetryLink { .. } => ErrKind::RetryLink,
        Error::Corrupt { .. } => ErrKind::Corrupt,
        Error::Storage(StorageError::Io(_)) => ErrKind::Io,
        other => panic!("unexpected error from the ledger: {other:?}"),
    }
}

/// What the last transition must have answered.
#[derive(Clone, Debug, PartialEq)]
enum Expected {
    Nothing,
    /// A record: its seq, or how it is refused; and whether it wrote.
    Record {
        result: Result<Seq, ErrKind>,
        wrote: bool,
    },
    /// A race: `Ok(seq)` when one writer wins at `seq` and the rest get
    /// `AlreadySettled`; `Err(kind)` when every writer gets `kind`.
    Race(Result<Seq, ErrKind>),
    Flush(Result<(), ErrKind>),
    /// Whether there was an unflushed append to tear.
    Torn(bool),
    Recover(Result<Vec<usize>, ErrKind>),
    /// A retry: the `queued` to write, and the seqs of the failure and of the
    /// retry's `queued` and the retry's attempt, or how it is refused; and
    /// whether it wrote.
    Retry {
        queued: Queued,
        result: Result<(Seq, Seq, crate::event::Attempt), ErrKind>,
        wrote: bool,
    },
}

/// The reference model: the [`Faulty`] store at the level of events, with a live
/// image (what reads see), a durable image (what survives a crash), the list of
/// unflushed appends and the armed faults; and the ledger's rules over it. After
/// each transition it holds what the ledger must have answered.
///
/// A torn write (the last unflushed append reaching the disk cut short, without
/// its head) makes its delegation's history read as `Error::Corrupt`, never as
/// some other state; `status` reads the head, which covers only what was written
/// whole, and a write finds the torn record in its slot and is refused as
/// damage.
///
/// After a failed flush the appended records stay visible in the live image but
/// never become durable (as after a failed fsync), and no later flush covers
/// them. A reopen without a crash keeps seeing them, and a later event stacked
/// on one becomes durable without it: after a crash that delegation's history
/// reads as `Corrupt` (a detected loss, never a silent one), while its head still
/// says what its writer acknowledged.
#[derive(Clone, Debug)]
pub struct Model {
    durability: Durability,
    /// Transitions applied so far; the clock reads `BASE + step` ms, plus
    /// `advanced`.
    step: i64,
    /// Nanoseconds the clock was moved forward by [`Transition::AdvanceClock`].
    advanced: i64,
    live: Image,
    durable: Image,
    live_links: Links,
    durable_links: Links,
    pending: Vec<Unflushed>,
    armed: Vec<Fault>,
    poisoned: bool,
    expected: Expected,
}

impl Model {
    /// A model of an empty store, in `durability` mode.
    pub fn new(durability: Durability) -> Self {
        Model {
            durability,
            step: 0,
            advanced: 0,
            live: Image::new(),
            durable: Image::new(),
            live_links: Links::new(),
            durable_links: Links::new(),
            pending: Vec::new(),
            armed: Vec::new(),
            poisoned: false,
            expected: Expected::Nothing,
        }
    }

    /// The pool slots whose head is `queued` (which a retry may fail), and
    /// those with no head (which a retry may queue): for strategies that aim
    /// retries where they are taken.
    pub fn retry_candidates(&self) -> (Vec<usize>, Vec<usize>) {
        let phase = |id: usize| {
            phase_of(
                self.live
                    .get(&id)
                    .map(|slot| slot.summary.as_slice())
                    .unwrap_or_default(),
            )
        };
        let queued = (0..POOL).filter(|&id| phase(id) == Phase::Queued).collect();
        let free = (0..POOL)
            .filter(|&id| phase(id) == Phase::Initial)
            .collect();
        (queued, free)
    }

    /// Whether a fault is armed. Racing writers meet an armed fault in an order
    /// nobody controls, so a race is predictable only with none armed.
    pub fn faults_armed(&self) -> bool {
        !self.armed.is_empty()
    }

    /// Applies `transition`, and keeps what the ledger must answer to it.
    pub fn apply(&mut self, transition: &Transition) {
        self.step += 1;
        self.expected = match transition {
            Transition::Record { id, event } => {
                let (result, wrote) = self.record(*id, vec![event.clone()]);
                Expected::Record { result, wrote }
            }
            Transition::Race { id, outcomes } => {
                Expected::Race(self.record(*id, outcomes.clone()).0)
            }
            Transition::Flush => Expected::Flush(if self.poisoned {
                Err(ErrKind::Poisoned)
            } else {
                self.store_flush()
            }),
            Transition::Crash => {
                self.crash();
                Expected::Nothing
            }
            Transition::TornCrash => Expected::Torn(self.crash_tearing()),
            Transition::Reopen => {
                self.poisoned = false;
                Expected::Nothing
            }
            Transition::Recover => Expected::Recover(self.recover()),
            Transition::Inject(fault) => {
                self.armed.push(*fault);
                Expected::Nothing
            }
            Transition::Retry {
                id,
                to,
                reason,
                backoff,
            } => self.retry(*id, *to, *reason, *backoff),
            Transition::AdvanceClock(by) => {
                self.advanced = self
                    .advanced
                    .saturating_add(i64::try_from(by.as_nanos()).unwrap_or(i64::MAX));
                Expected::Nothing
            }
        };
    }

    /// How many appends are not yet durable (a group counts each of its own).
    fn unflushed_appends(&self) -> usize {
        self.pending
            .iter()
            .map(|write| match write {
                Unflushed::Group(group) => group.len(),
                Unflushed::Link(..) => 0,
            })
            .sum()
    }

    /// Copies unflushed writes into the durable image and links, in order.
    fn make_durable(&mut self, writes: Vec<Unflushed>) {
        for write in writes {
            match write {
                Unflushed::Group(group) => {
                    for write in group {
                        let slot = self.durable.entry(write.id).or_default();
                        slot.push(write.seq, write.rec, Some(write.summary));
                    }
                }
                Unflushed::Link(from, to) => {
                    self.durable_links.insert(from, to);
                }
            }
        }
    }

    /// What the clock reads now, in nanoseconds since the epoch.
    fn now(&self) -> i64 {
        BASE_NANOS + self.step * 1_000_000 + self.advanced
    }

    fn read(&self, id: usize) -> Read {
        read_slot(self.live.get(&id))
    }

    /// Disarms `fault` if it is armed; whether it was.
    fn take(&mut self, fault: Fault) -> bool {
        let at = self.armed.iter().position(|armed| *armed == fault);
        at.map(|at| self.armed.remove(at)).is_some()
    }

    /// `Faulty::flush`.
    fn store_flush(&mut self) -> Result<(), ErrKind> {
        let pending = std::mem::take(&mut self.pending);
        if self.take(Fault::FailFlush) {
            self.poisoned = true;
            return Err(ErrKind::Io);
        }
        self.make_durable(pending);
        Ok(())
    }

    /// `Ledger::record`, with these candidate events (one, unless racing).
    fn record(&mut self, id: usize, events: Vec<Event>) -> (Result<Seq, ErrKind>, bool) {
        if self.poisoned {
            return (Err(ErrKind::Poisoned), false);
        }
        if events.iter().any(|event| !valid(event)) {
            return (Err(ErrKind::Invalid), false);
        }
        let Some(kind) = events.first().map(Event::kind) else {
            panic!("a record of no event");
        };
        // The ledger reads the head alone, one get.
        let slot = self.live.get(&id).cloned().unwrap_or_default();
        let headed = slot.summary.clone();
        let (phase, seq, last_at) = (
            phase_of(&headed),
            headed.len() as Seq,
            headed.last().map(|(_, rec)| rec.at),
        );
        if let Some(refusal) = refusal(phase, kind) {
            return (Err(refusal), false);
        }
        if self.take(Fault::FailWrite) {
            self.poisoned = true;
            return (Err(ErrKind::Io), false);
        }
        // A torn record sits in the slot the head says is free: the store refuses
        // the write as damage, and the ledger is as sound as before.
        if slot.entries.iter().any(|(at, _)| *at == seq + 1) {
            return (Err(ErrKind::Corrupt), false);
        }
        let at = last_at.map_or(self.now(), |last| last.max(self.now()));
        let write = self.write_live(id, events, at);
        let seq = write.seq;
        self.pending.push(Unflushed::Group(vec![write]));
        if self.durability == Durability::Durable
            && let Err(kind) = self.store_flush()
        {
            return (Err(kind), true);
        }
        (Ok(seq), true)
    }

    /// Appends a record of `events` at `at` to `id`'s slot in the live image,
    /// with its head; the write, for the unflushed list.
    fn write_live(&mut self, id: usize, events: Vec<Event>, at: i64) -> PendingWrite {
        let slot = self.live.entry(id).or_default();
        let mut summary = slot.summary.clone();
        let seq = summary.len() as Seq + 1;
        let rec = Rec {
            events,
            at,
            torn: false,
        };
        summary.push((seq, rec.clone()));
        slot.push(seq, rec.clone(), Some(summary.clone()));
        PendingWrite {
            id,
            seq,
            rec,
            summary,
        }
    }

    /// The first record of `id`'s head, if it is a `queued`: the delegation's
    /// `queued` as the ledger's reads of the head see it.
    fn headed_queued(&self, id: usize) -> Option<Queued> {
        let slot = self.live.get(&id)?;
        let (_, rec) = slot.summary.first()?;
        match rec.events.first() {
            Some(Event::Queued(queued)) => Some(queued.clone()),
            _ => None,
        }
    }

    /// `Ledger::retry` as the dispatcher calls it: the original's `queued`
    /// copied, with `not_before` = now + `backoff`; the ledger fills in
    /// `retry_of` and `attempt`. Both records are one group: a flush makes
    /// both durable, a crash (torn or not) loses both, a failed flush both.
    fn retry(
        &mut self,
        id: usize,
        to: usize,
        reason: FailureReason,
        backoff: Duration,
    ) -> Expected {
        let now = self.now();
        let backoff = i64::try_from(backoff.as_nanos()).unwrap_or(i64::MAX);
        let queued = Queued {
            retry_of: None,
            attempt: None,
            not_before: Some(timestamp(now.saturating_add(backoff))),
            ..self
                .headed_queued(id)
                .unwrap_or_else(|| Queued::new("planner", "reviewer"))
        };
        let (result, wrote) = self.retry_write(id, to, reason, &queued);
        Expected::Retry {
            queued,
            result,
            wrote,
        }
    }

    fn retry_write(
        &mut self,
        id: usize,
        to: usize,
        reason: FailureReason,
        queued: &Queued,
    ) -> (Result<(Seq, Seq, crate::event::Attempt), ErrKind>, bool) {
        let failed = Event::Failed(Failed {
            reason,
            detail: None,
        });
        if self.poisoned {
            return (Err(ErrKind::Poisoned), false);
        }
        if !valid(&failed) {
            return (Err(ErrKind::Invalid), false);
        }
        if id == to {
            return (Err(ErrKind::RetryLink), false);
        }
        let original = self.live.get(&id).cloned().unwrap_or_default().summary;
        let retry = self.live.get(&to).cloned().unwrap_or_default().summary;
        if let Some(refusal) = refusal(phase_of(&original), EventKind::Failed) {
            return (Err(refusal), false);
        }
        if let Some(refusal) = refusal(phase_of(&retry), EventKind::Queued) {
            return (Err(refusal), false);
        }
        let attempt = self
            .headed_queued(id)
            .map_or(1, |queued| queued.attempt())
            .saturating_add(1);
        // The link and the retry's open hint, before the append.
        self.live_links.insert(id, to);
        self.pending.push(Unflushed::Link(id, to));
        if self.take(Fault::FailWrite) {
            self.poisoned = true;
            return (Err(ErrKind::Io), false);
        }
        let torn_at = |slot: Option<&Slot>, seq: Seq| {
            slot.is_some_and(|slot| slot.entries.iter().any(|(at, _)| *at == seq))
        };
        if torn_at(self.live.get(&id), original.len() as Seq + 1)
            || torn_at(self.live.get(&to), retry.len() as Seq + 1)
        {
            return (Err(ErrKind::Corrupt), false);
        }
        let last = |entries: &[(Seq, Rec)]| entries.last().map(|(_, rec)| rec.at);
        let at = [last(&original), last(&retry)]
            .into_iter()
            .flatten()
            .fold(self.now(), i64::max);
        let event = Event::Queued(Queued {
            retry_of: Some(pool_id(id)),
            attempt: Some(attempt),
            ..queued.clone()
        });
        let failing = self.write_live(id, vec![failed], at);
        let queueing = self.write_live(to, vec![event], at);
        let seqs = (failing.seq, queueing.seq, attempt);
        self.pending.push(Unflushed::Group(vec![failing, queueing]));
        if self.durability == Durability::Durable
            && let Err(kind) = self.store_flush()
        {
            return (Err(kind), true);
        }
        (Ok(seqs), true)
    }

    fn crash(&mut self) {
        self.live = self.durable.clone();
        self.live_links = self.durable_links.clone();
        self.pending.clear();
        self.armed.clear();
        self.poisoned = false;
    }

    /// `Faulty::crash_tearing`.
    fn crash_tearing(&mut self) -> bool {
        let Some(at) = self
            .pending
            .iter()
            .rposition(|write| matches!(write, Unflushed::Group(_)))
        else {
            self.crash();
            return false;
        };
        self.pending.truncate(at + 1);
        let Some(Unflushed::Group(mut group)) = self.pending.pop() else {
            self.crash();
            return false;
        };
        let before = std::mem::take(&mut self.pending);
        self.make_durable(before);
        // A group of several is lost whole, never torn apart.
        let Some(last) = group.pop().filter(|_| group.is_empty()) else {
            self.crash();
            return true;
        };
        let slot = self.durable.entry(last.id).or_default();
        slot.push(
            last.seq,
            Rec {
                torn: true,
                ..last.rec
            },
            None,
        );
        self.crash();
        true
    }

    /// `Ledger::recover`: settles every readable pending delegation, in key order,
    /// then reports damage, if any.
    fn recover(&mut self) -> Result<Vec<usize>, ErrKind> {
        // A poisoned ledger reads nothing, so it recovers nothing.
        if self.poisoned {
            return Err(ErrKind::Poisoned);
        }
        let mut settled = Vec::new();
        let mut damaged = false;
        for id in key_order() {
            match self.read(id) {
                Read::Corrupt => damaged = true,
                Read::Found(entries) if phase_of(&entries) == Phase::Queued => {
                    let event = Event::Failed(Failed {
                        reason: FailureReason::Interrupted,
                        detail: Some(RECOVERY_DETAIL.to_owned()),
                    });
                    match self.record(id, vec![event]).0 {
                        Ok(_) => settled.push(id),
                        Err(kind) => return Err(kind),
                    }
                }
                Read::Found(_) | Read::Absent => {}
            }
        }
        if damaged {
            return Err(ErrKind::Corrupt);
        }
        Ok(settled)
    }
}

/// How the lifecycle refuses an event of `kind` on a delegation in `phase`.
fn refusal(phase: Phase, kind: EventKind) -> Option<ErrKind> {
    match (phase, kind) {
        (Phase::Initial, EventKind::Queued) | (Phase::Queued, EventKind::Delivered) => None,
        (Phase::Queued, EventKind::Failed) => None,
        (Phase::Initial | Phase::Queued, _) => Some(ErrKind::Illegal),
        (Phase::Settled, _) => Some(ErrKind::AlreadySettled),
    }
}

/// The field rules of the format page that the events of these runs can break.
fn valid(event: &Event) -> bool {
    match event {
        Event::Queued(_) => true,
        Event::Delivered(delivered) => delivered
            .http_status
            .is_none_or(|code| Code(code).is_success()),
        Event::Failed(failed) => match failed.reason {
            FailureReason::HttpStatus(code) => !Code(code).is_success(),
            _ => true,
        },
    }
}

fn phase_of(entries: &[(Seq, Rec)]) -> Phase {
    match entries.len() {
        0 => Phase::Initial,
        1 => Phase::Queued,
        _ => Phase::Settled,
    }
}

/// What the ledger's fold makes of a slot: torn records do not decode, seqs must
/// run from 1 without gaps, the lifecycle must hold, and the head, written with
/// each record in one atomic write, must be the last record.
fn read_slot(slot: Option<&Slot>) -> Read {
    let Some(slot) = slot else {
        return Read::Absent;
    };
    if slot.entries.iter().any(|(_, rec)| rec.torn) {
        return Read::Corrupt;
    }
    for (index, (seq, rec)) in slot.entries.iter().enumerate() {
        let legal = match index {
            0 => rec.events.iter().all(|e| e.kind() == EventKind::Queued),
            1 => rec.events.iter().all(|e| e.kind() != EventKind::Queued),
            _ => false,
        };
        if *seq != index as Seq + 1 || !legal {
            return Read::Corrupt;
        }
    }
    let last = slot.entries.len() as Seq;
    if slot.head.unwrap_or(0) != last {
        return Read::Corrupt;
    }
    if slot.entries.is_empty() {
        Read::Absent
    } else {
        Read::Found(slot.entries.clone())
    }
}

/// The "target may have it?" column of the format page's table of reasons.
fn received(reason: FailureReason) -> Received {
    match reason {
        FailureReason::TargetOffline | FailureReason::MarshalError => Received::No,
        FailureReason::HttpStatus(code) => {
            if (300..=499).contains(&code) || code == 501 || code == 503 {
                Received::No
            } else {
                Received::Unknown
            }
        }
        FailureReason::RpcError(code) => {
            if code == -32603 {
                Received::Unknown
            } else {
                Received::No
            }
        }
        FailureReason::Rejected => Received::Yes,
        FailureReason::BadResponse | FailureReason::Timeout | FailureReason::Interrupted => {
            Received::Unknown
        }
    }
}

/// The status the records give, following the format page.
fn expected_status(id: &DelegationId, records: &[(Seq, Event, i64)]) -> Status {
    let Some((_, Event::Queued(queued), queued_at)) = records.first() else {
        panic!("a model delegation must start with queued: {records:?}");
    };
    let mut status = Status {
        id: id.clone(),
        status: StatusKind::Queued,
        reason: None,
        http_status: None,
        rpc_code: None,
        error_detail: None,
        target_received: Some(Received::Unknown),
        remote: None,
        target: Some(queued.target.clone()),
        attempt: queued.retry_of.is_some().then(|| queued.attempt()),
        retry_of: queued.retry_of.clone(),
        queued_at: Some(timestamp(*queued_at)),
        settled_at: None,
        attempts: None,
    };
    match records.get(1) {
        None => {}
        Some((_, Event::Delivered(delivered), at)) => {
            status.status = StatusKind::Delivered;
            status.http_status = delivered.http_status;
            status.remote.clone_from(&delivered.remote);
            status.target_received = Some(Received::Yes);
            status.settled_at = Some(timestamp(*at));
        }
        Some((_, Event::Failed(failed), at)) => {
            status.status = StatusKind::Failed;
            status.reason = Some(failed.reason.code());
            status.http_status = failed.reason.http_status();
            status.rpc_code = failed.reason.rpc_code();
            status.error_detail.clone_from(&failed.detail);
            status.target_received = Some(received(failed.reason));
            status.settled_at = Some(timestamp(*at));
        }
        Some(other) => panic!("a model delegation cannot hold {other:?} second"),
    }
    status
}

// ---------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------

/// An event the ledger acknowledged.
#[derive(Clone, Debug)]
struct Acked {
    id: usize,
    seq: Seq,
    at: i64,
    /// Whether the acknowledgement promises it survives a crash: in durable mode
    /// at once, in buffered mode once a flush covered it.
    durable: bool,
}

/// The system under test: a ledger over a [`Faulty`] store (or, with
/// [`Subject::on_store`], over any store that keeps every commit), driven by the
/// transitions the [`Model`] took and checked against it.
///
/// Postconditions, checked in [`Subject::apply`]:
/// - a refused event (refusal, poisoned ledger, damaged delegation, failed write)
///   leaves the store's bytes unchanged, for every delegation;
/// - a write to one delegation changes no other;
/// - of racing outcomes exactly one wins and the rest get `AlreadySettled`;
/// - after a crash, every event acknowledged as durable (in durable mode, every
///   acknowledged event; in buffered mode, those a later flush covered) is still
///   in the store, byte for byte readable;
/// - nothing readable is pending after a successful recover;
/// - a retry acknowledges its failure and its `queued` with one timestamp, and
///   a refused retry leaves the store unchanged.
///
/// Invariants, checked in [`Subject::check_invariants`] after every step:
/// - the store's unflushed appends are the model's;
/// - a poisoned ledger serves no reads;
/// - a delegation holds at most one terminal outcome in the store;
/// - live state (`status` and `history` of every id) equals the model;
/// - `replay()` equals live, delegation for delegation, with one error per
///   damaged delegation;
/// - `status`, one read of the head, equals the status of a replay of the
///   history, for every readable delegation: the head never lies;
/// - a retry link is never half written: a retry's `queued` has its
///   original's `failed` beside it, and every retry written is in the store
///   whole or not at all;
/// - the sender's view equals the model's: `attempts` from every id (back by
///   `retry_of`, forward by the index's verified links), `pending` and `dead`;
///   and a task's first attempt is never a retry.
pub struct Subject {
    store: Arc<dyn Store>,
    /// The same store when it is the fault-injecting one, which crashes, tears
    /// and injected faults need; `None` for a store that keeps every commit.
    faulty: Option<Arc<Faulty>>,
    ledger: Ledger,
    clock: ManualClock,
    durability: Durability,
    ids: Vec<DelegationId>,
    /// Which candidate won each race, by (id, seq, at).
    winners: HashMap<(usize, Seq, i64), Event>,
    acked: Vec<Acked>,
    /// Every retry written, acknowledged or not: (original, retry, at).
    retries: Vec<(usize, usize, i64)>,
}

impl Subject {
    /// A ledger over an empty [`Faulty`] store seeded with `seed` (which picks
    /// where tears cut), in the durability mode of `model`, on a clock at the
    /// model's time.
    pub fn new(seed: u64, model: &Model) -> Self {
        let faulty = Arc::new(Faulty::seeded(seed));
        Self::build(faulty.clone(), Some(faulty), model)
    }

    /// A ledger over `store`, an empty store that keeps every commit as soon as
    /// it is made (such as PostgreSQL), for a model in durable mode whose
    /// transitions have no torn crash and no injected fault: a crash there is a
    /// reopen, after which every acknowledged event must still be read.
    ///
    /// # Panics
    /// In [`Subject::apply`], on a torn crash or an injected fault.
    pub fn on_store(store: Arc<dyn Store>, model: &Model) -> Self {
        Self::build(store, None, model)
    }

    fn build(store: Arc<dyn Store>, faulty: Option<Arc<Faulty>>, model: &Model) -> Self {
        let clock = ManualClock::at_unix_nanos(model.now());
        Subject {
            ledger: open_ledger(&store, model.durability, &clock),
            store,
            faulty,
            clock,
            durability: model.durability,
            ids: (0..POOL).map(pool_id).collect(),
            winners: HashMap::new(),
            acked: Vec::new(),
            retries: Vec::new(),
        }
    }

    /// Runs `transition`, which `model` has just taken, on the ledger, and checks
    /// the ledger's answer against the model's.
    ///
    /// # Panics
    /// On an answer the model does not allow, or a broken postcondition.
    pub fn apply(&mut self, model: &Model, transition: Transition) {
        self.clock.set_unix_nanos(model.now());
        match (transition, &model.expected) {
            (Transition::Record { id, event }, Expected::Record { result, wrote }) => {
                self.record(id, event, *result, *wrote);
            }
            (Transition::Race { id, outcomes }, Expected::Race(result)) => {
                self.race(id, &outcomes, *result);
            }
            (Transition::Flush, Expected::Flush(result)) => {
                let got = self.ledger.flush();
                match (&got, result) {
                    (Ok(()), Ok(())) => {
                        for acked in &mut self.acked {
                            acked.durable = true;
                        }
                    }
                    (Err(error), Err(kind)) => {
                        assert_eq!(kind_of(error), *kind, "{error}");
                        // A failed flush loses the unflushed appends for good (as
                        // after a failed fsync): no later flush covers them.
                        self.acked.retain(|acked| acked.durable);
                    }
                    _ => panic!("flush answered {got:?}, the model expected {result:?}"),
                }
            }
            (Transition::Crash, Expected::Nothing) => {
                if let Some(faulty) = &self.faulty {
                    faulty.crash();
                }
                self.reopen();
                self.assert_durable_acknowledgements_survived();
            }
            (Transition::TornCrash, Expected::Torn(tore)) => {
                assert_eq!(self.faulty().crash_tearing(), *tore);
                self.reopen();
                self.assert_durable_acknowledgements_survived();
            }
            (Transition::Reopen, Expected::Nothing) => self.reopen(),
            (Transition::Recover, Expected::Recover(result)) => self.recover(model, result),
            (Transition::Inject(fault), Expected::Nothing) => self.faulty().inject(fault),
            (
                Transition::Retry { id, to, reason, .. },
                Expected::Retry {
                    queued,
                    result,
                    wrote,
                },
            ) => self.retry(id, to, reason, queued.clone(), *result, *wrote),
            (Transition::AdvanceClock(_), Expected::Nothing) => {}
            (transition, expected) => {
                panic!("model and test disagree: {transition:?} with {expected:?}")
            }
        }
    }

    fn id(&self, index: usize) -> &DelegationId {
        self.ids
            .get(index)
            .unwrap_or_else(|| panic!("no delegation {index} in the pool"))
    }

    fn faulty(&self) -> &Faulty {
        self.faulty
            .as_deref()
            .unwrap_or_else(|| panic!("tears and injected faults need the fault-injecting store"))
    }

    fn reopen(&mut self) {
        self.ledger = open_ledger(&self.store, self.durability, &self.clock);
    }

    fn snapshot(&self) -> Vec<Stream> {
        self.ids
            .iter()
            .map(|id| {
                self.store
                    .history(id)
                    .unwrap_or_else(|e| panic!("the store failed: {e}"))
            })
            .collect()
    }

    fn record(&mut self, id: usize, event: Event, result: Result<Seq, ErrKind>, wrote: bool) {
        let before = self.snapshot();
        let got = self.ledger.record(self.id(id), event);
        match (&got, result) {
            (Ok(recorded), Ok(seq)) => {
                assert_eq!(recorded.seq, seq);
                self.acknowledge(id, seq, nanos(recorded.at));
            }
            (Err(error), Err(kind)) => assert_eq!(kind_of(error), kind, "{error}"),
            _ => panic!("record answered {got:?}, the model expected {result:?}"),
        }
        let after = self.snapshot();
        if wrote {
            for (index, (b, a)) in before.iter().zip(&after).enumerate() {
                if index == id {
                    assert_eq!(a.entries.len(), b.entries.len() + 1);
                } else {
                    assert_eq!(a, b, "a write to one delegation changed another");
                }
            }
        } else {
            assert_eq!(before, after, "a refused event changed the store");
        }
    }

    fn retry(
        &mut self,
        id: usize,
        to: usize,
        reason: FailureReason,
        queued: Queued,
        result: Result<(Seq, Seq, crate::event::Attempt), ErrKind>,
        wrote: bool,
    ) {
        let before = self.snapshot();
        let failed = Failed {
            reason,
            detail: None,
        };
        let got = self.ledger.retry(self.id(id), failed, self.id(to), queued);
        match (&got, result) {
            (Ok(retried), Ok((failed_seq, queued_seq, attempt))) => {
                assert_eq!(
                    (retried.failed.seq, retried.queued.seq, retried.attempt),
                    (failed_seq, queued_seq, attempt)
                );
                assert_eq!(
                    retried.failed.at, retried.queued.at,
                    "one timestamp for both"
                );
                let at = nanos(retried.failed.at);
                self.acknowledge(id, failed_seq, at);
                self.acknowledge(to, queued_seq, at);
            }
            (Err(error), Err(kind)) => assert_eq!(kind_of(error), kind, "{error}"),
            _ => panic!("retry answered {got:?}, the model expected {result:?}"),
        }
        let after = self.snapshot();
        if wrote {
            for (index, (b, a)) in before.iter().zip(&after).enumerate() {
                if index == id || index == to {
                    assert_eq!(a.entries.len(), b.entries.len() + 1);
                } else {
                    assert_eq!(a, b, "a retry changed a third delegation");
                }
            }
            let written = |index: usize| {
                after
                    .get(index)
                    .and_then(|stream| stream.entries.last())
                    .and_then(|entry| envelope::decode(&entry.bytes).ok())
                    .map(|record| nanos(record.at))
            };
            let at = written(to).unwrap_or_else(|| panic!("the retry's `queued` is unreadable"));
            assert_eq!(written(id), Some(at), "one timestamp for both");
            self.retries.push((id, to, at));
        } else {
            assert_eq!(before, after, "a refused retry changed the store");
        }
    }

    fn race(&mut self, id: usize, outcomes: &[Event], result: Result<Seq, ErrKind>) {
        let before = self.snapshot();
        let barrier = Barrier::new(outcomes.len());
        let ledger = &self.ledger;
        let delegation = self.id(id);
        let answers: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = outcomes
                .iter()
                .map(|event| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        ledger.record(delegation, event.clone())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| panic!("a racing writer panicked"))
                })
                .collect()
        });
        match result {
            Ok(seq) => {
                let mut winners = answers
                    .iter()
                    .zip(outcomes)
                    .filter_map(|(answer, event)| Some((answer.as_ref().ok()?, event)));
                let (Some((recorded, winner)), None) = (winners.next(), winners.next()) else {
                    panic!("exactly one racer wins: {answers:?}");
                };
                for answer in &answers {
                    if let Err(error) = answer {
                        assert_eq!(kind_of(error), ErrKind::AlreadySettled, "{error}");
                    }
                }
                assert_eq!(recorded.seq, seq);
                let at = nanos(recorded.at);
                self.winners.insert((id, seq, at), winner.clone());
                self.acknowledge(id, seq, at);
            }
            Err(kind) => {
                for answer in &answers {
                    match answer {
                        Err(error) => assert_eq!(kind_of(error), kind, "{error}"),
                        Ok(recorded) => panic!("a racer won against {kind:?}: {recorded:?}"),
                    }
                }
                assert_eq!(before, self.snapshot(), "refused racers changed the store");
            }
        }
    }

    fn recover(&mut self, model: &Model, result: &Result<Vec<usize>, ErrKind>) {
        let got = self.ledger.recover();
        match (&got, result) {
            (Ok(settled), Ok(ids)) => {
                let expected: Vec<DelegationId> = ids.iter().map(|&i| self.id(i).clone()).collect();
                assert_eq!(settled, &expected);
                for &id in ids {
                    let Read::Found(entries) = model.read(id) else {
                        panic!("recovered {id} is not readable in the model");
                    };
                    let Some((seq, rec)) = entries.last() else {
                        panic!("recovered {id} has no records in the model");
                    };
                    self.acknowledge(id, *seq, rec.at);
                }
                let pending = self.ledger.queued();
                assert!(
                    pending.as_ref().is_ok_and(Vec::is_empty),
                    "pending after a recover: {pending:?}"
                );
            }
            (Err(error), Err(kind)) => assert_eq!(kind_of(error), *kind, "{error}"),
            _ => panic!("recover answered {got:?}, the model expected {result:?}"),
        }
    }

    /// The event a model record stands for, with the race winner resolved.
    fn resolve(&self, id: usize, seq: Seq, rec: &Rec) -> Event {
        if let [only] = rec.events.as_slice() {
            return only.clone();
        }
        let winner = self
            .winners
            .get(&(id, seq, rec.at))
            .unwrap_or_else(|| panic!("no winner known for race on {id} seq {seq}"));
        assert!(
            rec.events.contains(winner),
            "the winner was not a candidate"
        );
        winner.clone()
    }

    fn acknowledge(&mut self, id: usize, seq: Seq, at: i64) {
        self.acked.push(Acked {
            id,
            seq,
            at,
            durable: self.durability == Durability::Durable,
        });
    }

    /// After a crash, every event acknowledged as durable is still in the store,
    /// byte for byte readable. (Whether its delegation as a whole reads, or reads
    /// as damaged, the invariants check against the model.)
    fn assert_durable_acknowledgements_survived(&mut self) {
        self.acked.retain(|acked| acked.durable);
        for acked in &self.acked {
            let stream = self
                .store
                .history(self.id(acked.id))
                .unwrap_or_else(|e| panic!("the in-memory store failed: {e}"));
            let kept = stream.entries.iter().any(|entry| {
                entry.seq == acked.seq
                    && envelope::decode(&entry.bytes)
                        .is_ok_and(|record| record.at == timestamp(acked.at))
            });
            assert!(
                kept,
                "acknowledged durable event {acked:?} was lost in a crash: {stream:?}"
            );
        }
    }

    /// Checks the invariants against `model` (see [`Subject`]).
    ///
    /// # Panics
    /// On a broken invariant.
    pub fn check_invariants(&self, model: &Model) {
        // A store without faults has nothing unflushed: every commit is kept.
        let pending = self.faulty.as_ref().map_or(0, |faulty| faulty.pending());
        assert_eq!(pending, model.unflushed_appends(), "unflushed appends");
        if model.poisoned {
            // A poisoned ledger serves no reads: what it holds may not be durable.
            for id in &self.ids {
                let status = self.ledger.status(id);
                assert!(
                    matches!(status, Err(ReadError::Poisoned { .. })),
                    "{status:?}"
                );
                let history = self.ledger.history(id);
                assert!(
                    matches!(history, Err(ReadError::Poisoned { .. })),
                    "{history:?}"
                );
            }
            let replayed: Vec<_> = self.ledger.replay().collect();
            assert!(
                matches!(replayed.as_slice(), [Err(ReadError::Poisoned { .. })]),
                "{replayed:?}"
            );
            for id in &self.ids {
                let attempts = self.ledger.attempts(id);
                assert!(
                    matches!(attempts, Err(ReadError::Poisoned { .. })),
                    "{attempts:?}"
                );
            }
            let pending = self.ledger.pending(None);
            assert!(
                matches!(pending, Err(ReadError::Poisoned { .. })),
                "{pending:?}"
            );
            let dead = self.ledger.dead();
            assert!(matches!(dead, Err(ReadError::Poisoned { .. })), "{dead:?}");
            return;
        }
        self.check_retry_links();
        self.check_senders_view(model);
        for stream in self.snapshot() {
            let outcomes = stream
                .entries
                .iter()
                .filter_map(|entry| envelope::decode(&entry.bytes).ok())
                .filter(|record| record.event.kind() != EventKind::Queued)
                .count();
            assert!(outcomes <= 1, "`{}` holds {outcomes} outcomes", stream.id);
        }
        let (readable, damaged) = self.check_live(model);
        // Replay equals live: the same delegations, in key order, each exactly as
        // `delegation` rebuilds it, and one error per damaged delegation.
        let mut replayed = Vec::new();
        let mut replay_errors = 0;
        for item in self.ledger.replay() {
            match item {
                Ok(delegation) => {
                    let live = self.ledger.delegation(&delegation.id);
                    assert!(
                        matches!(&live, Ok(Some(live)) if *live == delegation),
                        "replay of `{}` differs from live: {live:?}",
                        delegation.id
                    );
                    // `status` is one read of the head; it must say exactly what
                    // a replay of the history says, always.
                    let status = self.ledger.status(&delegation.id);
                    assert!(
                        matches!(&status, Ok(status) if *status == delegation.status()),
                        "status (the head) of `{}` differs from a replay of the history: \
                         {status:?}",
                        delegation.id
                    );
                    replayed.push(delegation.id);
                }
                Err(ReadError::Corrupt { .. }) => replay_errors += 1,
                Err(other) => panic!("replay gave {other:?}"),
            }
        }
        assert_eq!(replayed, readable);
        assert_eq!(replay_errors, damaged);
        if matches!(model.expected, Expected::Recover(Ok(_))) {
            for index in 0..POOL {
                if let Read::Found(entries) = model.read(index) {
                    assert_ne!(phase_of(&entries), Phase::Queued);
                }
            }
        }
    }

    /// A retry link is never half written: every retry's `queued` in the store
    /// has its original's `failed` beside it, at the same time, and every retry
    /// written has both records in the store or neither.
    fn check_retry_links(&self) {
        let snapshot = self.snapshot();
        let record = |index: usize, seq: Seq| {
            snapshot
                .get(index)
                .and_then(|stream| stream.entries.iter().find(|entry| entry.seq == seq))
                .and_then(|entry| envelope::decode(&entry.bytes).ok())
        };
        for (index, stream) in snapshot.iter().enumerate() {
            let Some(Event::Queued(queued)) = record(index, 1).map(|record| record.event) else {
                continue;
            };
            let (Some(original), Some(at)) = (queued.retry_of, record(index, 1).map(|r| r.at))
            else {
                continue;
            };
            let original = self.index_of(&original);
            let failed = record(original, 2);
            assert!(
                failed
                    .as_ref()
                    .is_some_and(|f| f.event.kind() == EventKind::Failed && f.at == at),
                "`{}` retries `{}`, whose failure is not beside it: {failed:?}",
                stream.id,
                self.id(original)
            );
        }
        for &(original, retry, at) in &self.retries {
            let failed = record(original, 2)
                .is_some_and(|r| r.event.kind() == EventKind::Failed && nanos(r.at) == at);
            let queued = record(retry, 1).is_some_and(|r| {
                matches!(&r.event, Event::Queued(q) if q.retry_of.as_ref() == Some(self.id(original)))
                    && nanos(r.at) == at
            });
            assert_eq!(
                failed,
                queued,
                "the retry of `{}` as `{}` is half written: failed {failed}, queued {queued}",
                self.id(original),
                self.id(retry)
            );
        }
    }

    /// The sender's view (`attempts` from every id, `pending`, `dead`) equals
    /// the model's, which follows the heads back by `retry_of` and forward by
    /// the index's links, verified.
    fn check_senders_view(&self, model: &Model) {
        for index in 0..POOL {
            let id = self.id(index);
            let got = self.ledger.attempts(id).map_err(|e| kind_of(&e.into()));
            let expected = self
                .expected_chain(model, index)
                .map(|chain| chain.map(|chain| self.view(model, &chain)));
            assert_eq!(got, expected, "attempts from `{id}`");
            if let Ok(Some(view)) = &got {
                let first = self.index_of(&view.first);
                assert!(
                    self.headed(model, first)
                        .is_some_and(|first| first.queued.retry_of.is_none()),
                    "the first attempt of `{id}`'s task, `{}`, is a retry",
                    view.first
                );
            }
        }
        let got = self.ledger.pending(None).map_err(|e| kind_of(&e.into()));
        assert_eq!(got, self.expected_pending(model), "pending");
        let got = self.ledger.dead().map_err(|e| kind_of(&e.into()));
        assert_eq!(got, self.expected_dead(model), "dead");
    }

    fn index_of(&self, id: &DelegationId) -> usize {
        self.ids
            .iter()
            .position(|known| known == id)
            .unwrap_or_else(|| panic!("`{id}` is not in the pool"))
    }

    /// Delegation `index` as its head says (the records its head summarises,
    /// race winners resolved): what every read of the sender's view starts
    /// from.
    fn headed(&self, model: &Model, index: usize) -> Option<Headed> {
        let summary = &model.live.get(&index)?.summary;
        let mut records = summary
            .iter()
            .map(|(seq, rec)| (self.resolve(index, *seq, rec), rec.at));
        let (Event::Queued(queued), queued_at) = records.next()? else {
            panic!(
                "a model head of `{}` does not start with queued",
                self.id(index)
            );
        };
        Some(Headed {
            index,
            queued,
            queued_at,
            outcome: records.next(),
        })
    }

    /// The chain of attempts `index` belongs to, as `Ledger::chain` walks it:
    /// back by `retry_of` (a missing original, or an attempt that is not one
    /// less, is damage), forward by the index's links whose target's head
    /// says it retries the latest, while the attempt is one more.
    fn expected_chain(&self, model: &Model, index: usize) -> Result<Option<Vec<Headed>>, ErrKind> {
        let Some(asked) = self.headed(model, index) else {
            return Ok(None);
        };
        let mut chain = self.back(model, asked)?;
        while let Some(latest) = chain.last() {
            let Some(next) = self.forward(model, latest.index) else {
                break;
            };
            if next.attempt() != latest.attempt().saturating_add(1) {
                break;
            }
            chain.push(next);
        }
        Ok(Some(chain))
    }

    /// The attempts from the first to `asked`.
    fn back(&self, model: &Model, asked: Headed) -> Result<Vec<Headed>, ErrKind> {
        let mut chain = vec![asked];
        while let Some(current) = chain.last() {
            let Some(previous) = &current.queued.retry_of else {
                break;
            };
            let before = self
                .headed(model, self.index_of(previous))
                .ok_or(ErrKind::Corrupt)?;
            if before.attempt().saturating_add(1) != current.attempt() {
                return Err(ErrKind::Corrupt);
            }
            chain.push(before);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The verified retry of `index`: the index's link, if its target's head
    /// says it retries `index`.
    fn forward(&self, model: &Model, index: usize) -> Option<Headed> {
        let to = *model.live_links.get(&index)?;
        self.headed(model, to)
            .filter(|next| next.queued.retry_of.as_ref() == Some(self.id(index)))
    }

    fn view(&self, model: &Model, chain: &[Headed]) -> Attempts {
        let (Some(first), Some(latest)) = (chain.first(), chain.last()) else {
            panic!("an empty chain");
        };
        let now = model.now();
        Attempts {
            first: self.id(first.index).clone(),
            latest: self.id(latest.index).clone(),
            latest_status: latest.kind(),
            count: chain.len() as crate::event::Attempt,
            last_failure: chain
                .iter()
                .rev()
                .find_map(|attempt| attempt.failure(self.id(attempt.index))),
            next_attempt_at: latest
                .queued
                .not_before
                .filter(|at| latest.outcome.is_none() && nanos(*at) > now),
            exhausted: latest.kind() == StatusKind::Failed,
        }
    }

    fn expected_pending(&self, model: &Model) -> Result<Vec<Pending>, ErrKind> {
        let now = model.now();
        let mut pending = Vec::new();
        for index in 0..POOL {
            let Some(open) = self.headed(model, index).filter(|h| h.outcome.is_none()) else {
                continue;
            };
            let first = match open.queued.retry_of {
                None => index,
                Some(_) => self
                    .back(model, open.clone())?
                    .first()
                    .map_or(index, |first| first.index),
            };
            pending.push(Pending {
                id: self.id(index).clone(),
                first: self.id(first).clone(),
                attempt: open.attempt(),
                target: open.queued.target.clone(),
                queued_at: timestamp(open.queued_at),
                age: timestamp(now).since(timestamp(open.queued_at)),
                waiting: match open.queued.not_before.filter(|at| nanos(*at) > now) {
                    Some(at) => Waiting::RetryAt(at),
                    None => Waiting::InFlight,
                },
            });
        }
        pending.sort_by(|a, b| {
            (a.queued_at.as_datetime(), a.id.as_str())
                .cmp(&(b.queued_at.as_datetime(), b.id.as_str()))
        });
        Ok(pending)
    }

    fn expected_dead(&self, model: &Model) -> Result<Vec<Dead>, ErrKind> {
        let mut dead = Vec::new();
        for index in 0..POOL {
            let Some(failed) = self
                .headed(model, index)
                .filter(|h| h.kind() == StatusKind::Failed)
            else {
                continue;
            };
            if self.forward(model, index).is_some() {
                continue;
            }
            let Some(chain) = self.expected_chain(model, index)? else {
                continue;
            };
            let view = self.view(model, &chain);
            let Some(failure) = view.last_failure.filter(|_| view.exhausted) else {
                continue;
            };
            dead.push(Dead {
                first: view.first,
                last: view.latest,
                attempts: view.count,
                target: failed.queued.target.clone(),
                failure,
            });
        }
        dead.sort_by(|a, b| {
            (a.failure.at.as_datetime(), a.last.as_str())
                .cmp(&(b.failure.at.as_datetime(), b.last.as_str()))
        });
        Ok(dead)
    }

    /// Checks `status` and `history` of every delegation against the model;
    /// returns the readable ones in key order, and how many read as damaged.
    fn check_live(&self, model: &Model) -> (Vec<DelegationId>, usize) {
        let mut readable = Vec::new();
        let mut damaged = 0;
        for index in key_order() {
            let id = self.id(index);
            let status = self
                .ledger
                .status(id)
                .unwrap_or_else(|e| panic!("status of `{id}`: {e}"));
            let history = self.ledger.history(id);
            match model.read(index) {
                Read::Absent => {
                    assert_eq!(status, Status::not_found(id.clone()));
                    assert!(history.is_ok_and(|h| h.is_empty()), "`{id}` is absent");
                }
                Read::Corrupt => {
                    damaged += 1;
                    // `status` reads the head, which covers only what was
                    // acknowledged: a torn record beyond it is not its business.
                    let headed: Vec<(Seq, Event, i64)> = model
                        .live
                        .get(&index)
                        .map(|slot| slot.summary.as_slice())
                        .unwrap_or_default()
                        .iter()
                        .map(|(seq, rec)| (*seq, self.resolve(index, *seq, rec), rec.at))
                        .collect();
                    let expected = if headed.is_empty() {
                        Status::not_found(id.clone())
                    } else {
                        expected_status(id, &headed)
                    };
                    assert_eq!(status, expected, "{id}: status beside damage");
                    assert!(
                        matches!(history, Err(ReadError::Corrupt { .. })),
                        "`{id}` reads as {history:?}, not as damaged"
                    );
                }
                Read::Found(entries) => {
                    let records: Vec<(Seq, Event, i64)> = entries
                        .iter()
                        .map(|(seq, rec)| (*seq, self.resolve(index, *seq, rec), rec.at))
                        .collect();
                    assert_eq!(status, expected_status(id, &records));
                    let history: Vec<(Seq, Event, i64)> = history
                        .unwrap_or_else(|e| panic!("history of `{id}`: {e}"))
                        .into_iter()
                        .map(|r| (r.seq, r.event, nanos(r.at)))
                        .collect();
                    assert_eq!(history, records);
                    readable.push(id.clone());
                }
            }
        }
        (readable, damaged)
    }
}

/// A delegation as its head says, in the model.
#[derive(Clone, Debug)]
struct Headed {
    index: usize,
    queued: Queued,
    queued_at: i64,
    /// The outcome and when it was recorded, if settled.
    outcome: Option<(Event, i64)>,
}

impl Headed {
    fn attempt(&self) -> crate::event::Attempt {
        self.queued.attempt()
    }

    fn kind(&self) -> StatusKind {
        match &self.outcome {
            None => StatusKind::Queued,
            Some((Event::Delivered(_), _)) => StatusKind::Delivered,
            Some((Event::Failed(_), _)) => StatusKind::Failed,
            Some((other, _)) => panic!("a model delegation cannot hold {other:?} second"),
        }
    }

    fn failure(&self, id: &DelegationId) -> Option<LastFailure> {
        match &self.outcome {
            Some((Event::Failed(failed), at)) => Some(LastFailure {
                id: id.clone(),
                reason: failed.reason.code(),
                http_status: failed.reason.http_status(),
                detail: failed.detail.clone(),
                at: timestamp(*at),
            }),
            _ => None,
        }
    }
}

fn open_ledger(store: &Arc<dyn Store>, durability: Durability, clock: &ManualClock) -> Ledger {
    Ledger::with_store(
        store.clone(),
        Options::new().durability(durability).clock(clock.clone()),
    )
}

fn nanos(at: Timestamp) -> i64 {
    at.unix_nanos()
        .unwrap_or_else(|| panic!("{at:?} is out of range"))
}

// ---------------------------------------------------------------------------
// The fuzzer's scripts, run through the model
// ---------------------------------------------------------------------------

impl Op {
    /// The model's transition for this operation.
    fn transition(self) -> Transition {
        // The encoding of the committed seeds: four slots.
        let slot = |id: u8| usize::from(id) % FIRST_SLOTS;
        match self {
            Op::Queue { id, task } => Transition::Record {
                id: slot(id),
                event: Event::Queued(Queued {
                    task: task.then(|| serde_json::json!({ "op": id })),
                    ..Queued::new("planner", "reviewer")
                }),
            },
            Op::Deliver { id, http_status } => Transition::Record {
                id: slot(id),
                event: Event::Delivered(Delivered {
                    http_status,
                    remote: None,
                }),
            },
            Op::Fail { id, reason, detail } => Transition::Record {
                id: slot(id),
                event: Event::Failed(Failed {
                    reason: reason.into(),
                    detail: detail.then(|| "detail \u{2713}".to_owned()),
                }),
            },
            Op::Flush => Transition::Flush,
            Op::Crash => Transition::Crash,
            Op::CrashTearing => Transition::TornCrash,
            Op::Reopen => Transition::Reopen,
            Op::Recover => Transition::Recover,
            Op::FailWrite => Transition::Inject(Fault::FailWrite),
            Op::FailFlush => Transition::Inject(Fault::FailFlush),
        }
    }
}

/// Runs `script` against a ledger over a [`Faulty`] store, step by step against
/// the [`Model`]: each operation is a [`Transition`] the model takes first, then
/// the [`Subject`], whose answer and invariants are checked against the model's.
///
/// # Panics
/// On a broken promise: see [`Subject`] for every postcondition and invariant.
pub fn ops_with_crashes(script: Script) {
    let durability = if script.buffered {
        Durability::Buffered
    } else {
        Durability::Durable
    };
    let mut model = Model::new(durability);
    let mut subject = Subject::new(script.seed, &model);
    for op in script.ops.into_iter().take(MAX_OPS) {
        let transition = op.transition();
        model.apply(&transition);
        subject.apply(&model, transition);
        subject.check_invariants(&model);
    }
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
