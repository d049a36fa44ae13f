//! Model-based property test: random interleavings of many delegations on the
//! fault-injecting store, checked step by step against a reference model.
//!
//! The model mirrors the [`Faulty`] store at the level of events: a live image
//! (what reads see), a durable image (what survives a crash), the list of
//! unflushed appends, and the armed faults. Every transition (queue, deliver, fail
//! with each reason, duplicate and illegal outcomes, invalid events, K threads
//! racing to settle one delegation, flush, crash, torn crash, injected write and
//! flush failures, reopen, recover) is predicted by the model, and the ledger's
//! answer must match it exactly. Both durability modes are modelled: each case
//! picks one.
//!
//! Postconditions, in `apply`:
//! - a refused event (refusal, poisoned ledger, damaged delegation, failed write)
//!   leaves the store's bytes unchanged, for every delegation;
//! - a delegation holds at most one terminal outcome in the store;
//! - of K racing outcomes exactly one wins and the rest get `AlreadySettled`;
//! - after a crash, every event acknowledged as durable (in durable mode, every
//!   acknowledged event; in buffered mode, those a later flush covered) is still
//!   in the store.
//!
//! Invariants, after every step:
//! - live state (`status` and `history` of every id) equals the model;
//! - `replay()` equals live, delegation for delegation;
//! - `status`, one read of the head, equals the status of a replay of the
//!   history, for every readable delegation, always: the head never lies;
//! - nothing readable is pending after a successful recover.
//!
//! A torn write (the last unflushed append reaching the disk cut short, without
//! its head) must make its delegation's history read as `Error::Corrupt`, never
//! as some other state: the model marks the torn record and predicts `Corrupt`
//! for every read of it. `status` reads the head, which covers only what was
//! written whole, and a write finds the torn record in its slot and is refused
//! as damage.
//!
//! After a failed flush the appended records stay visible in the live image but
//! never become durable (as after a failed fsync), and no later flush covers them
//! (in buffered mode, acknowledged events are lost that way). A reopen without a
//! crash keeps seeing them, and a later event stacked on one becomes durable
//! without it: after a crash that delegation's history reads as `Corrupt` (a
//! detected loss, never a silent one), while its head still says what its
//! writer acknowledged. The model predicts exactly that.
//!
//! 256 cases by default; set `PROPTEST_CASES` for more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier};

use delegation_log::event::{Delivered, Failed};
use delegation_log::store::{Fault, Faulty, Store, Stream};
use delegation_log::{
    DelegationId, Durability, Error, Event, EventKind, FailureReason, Ledger, ManualClock, Options,
    Received, Seq, Status, StatusKind, Timestamp, envelope,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use serde_json::json;

prop_state_machine! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        .. Config::default()
    })]

    #[test]
    fn the_ledger_behaves_like_the_model_under_crashes_faults_and_races(
        sequential 1..48 => LedgerUnderTest
    );
}

/// Delegation ids come from a small pool, so that events collide. The pool holds
/// a prefix of another id and an id of the maximum length.
const POOL: usize = 4;

fn pool_id(index: usize) -> DelegationId {
    match index {
        0 => "a".parse().unwrap(),
        1 => "ab".parse().unwrap(),
        2 => "b".parse().unwrap(),
        _ => "z"
            .repeat(delegation_log::event::MAX_ID_LEN)
            .parse()
            .unwrap(),
    }
}

/// The pool indexes in the store's key order.
fn key_order() -> Vec<usize> {
    let mut order: Vec<usize> = (0..POOL).collect();
    order.sort_by_key(|&index| delegation_log::store::key::prefix(&pool_id(index)));
    order
}

/// The clock reads `BASE + step` milliseconds at each step.
const BASE_NANOS: i64 = 1_780_795_927_000_000_000;

fn timestamp(nanos: i64) -> Timestamp {
    Timestamp::from_unix_nanos(nanos)
}

const RECOVERY_DETAIL: &str = "the process stopped before the outcome was known";

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

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

    /// The records the head summarises: what `status` and every write start
    /// from, without reading the history.
    fn headed(&self) -> Vec<(Seq, Rec)> {
        self.summary.clone()
    }
}

type Image = BTreeMap<usize, Slot>;

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
    Corrupt,
    Io,
}

fn kind_of(error: &Error) -> ErrKind {
    match error {
        Error::Poisoned { .. } => ErrKind::Poisoned,
        Error::InvalidEvent(_) => ErrKind::Invalid,
        Error::IllegalTransition { .. } => ErrKind::Illegal,
        Error::AlreadySettled { .. } => ErrKind::AlreadySettled,
        Error::Corrupt { .. } => ErrKind::Corrupt,
        Error::Io(_) => ErrKind::Io,
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
}

#[derive(Clone, Debug)]
struct Model {
    durability: Durability,
    /// Transitions applied so far; the clock reads `BASE + step` ms.
    step: i64,
    live: Image,
    durable: Image,
    pending: Vec<PendingWrite>,
    armed: Vec<Fault>,
    poisoned: bool,
    expected: Expected,
}

#[derive(Clone, Debug)]
enum Transition {
    /// Records one event: `queued` (delegate), an outcome (deliver, fail, or a
    /// duplicate outcome), or an invalid event.
    Record {
        id: usize,
        event: Event,
    },
    /// K threads race to record these outcomes for one delegation.
    Race {
        id: usize,
        outcomes: Vec<Event>,
    },
    Flush,
    Crash,
    TornCrash,
    Reopen,
    Recover,
    Inject(Fault),
}

impl Model {
    fn new(durability: Durability) -> Self {
        Model {
            durability,
            step: 0,
            live: Image::new(),
            durable: Image::new(),
            pending: Vec::new(),
            armed: Vec::new(),
            poisoned: false,
            expected: Expected::Nothing,
        }
    }

    fn now(&self) -> i64 {
        BASE_NANOS + self.step * 1_000_000
    }

    fn read(&self, id: usize) -> Read {
        read_slot(self.live.get(&id))
    }

    fn take(&mut self, fault: Fault) -> bool {
        match self.armed.iter().position(|armed| *armed == fault) {
            Some(at) => {
                self.armed.remove(at);
                true
            }
            None => false,
        }
    }

    /// `Faulty::flush`.
    fn store_flush(&mut self) -> Result<(), ErrKind> {
        let pending = std::mem::take(&mut self.pending);
        if self.take(Fault::FailFlush) {
            self.poisoned = true;
            return Err(ErrKind::Io);
        }
        for write in pending {
            let slot = self.durable.entry(write.id).or_default();
            slot.push(write.seq, write.rec, Some(write.summary));
        }
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
        let kind = events[0].kind();
        // The ledger reads the head alone, one get.
        let slot = self.live.get(&id).cloned().unwrap_or_default();
        let headed = slot.headed();
        let (phase, seq, last_at) = (
            phase_of(&headed),
            headed.len() as Seq,
            headed.last().map(|(_, rec)| rec.at),
        );
        let refusal = match (phase, kind) {
            (Phase::Initial, EventKind::Queued) | (Phase::Queued, EventKind::Delivered) => None,
            (Phase::Queued, EventKind::Failed) => None,
            (Phase::Initial | Phase::Queued, _) => Some(ErrKind::Illegal),
            (Phase::Settled, _) => Some(ErrKind::AlreadySettled),
        };
        if let Some(refusal) = refusal {
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
        let rec = Rec {
            events,
            at: last_at.map_or(self.now(), |last| last.max(self.now())),
            torn: false,
        };
        let seq = seq + 1;
        let mut summary = headed;
        summary.push((seq, rec.clone()));
        self.live
            .entry(id)
            .or_default()
            .push(seq, rec.clone(), Some(summary.clone()));
        self.pending.push(PendingWrite {
            id,
            seq,
            rec,
            summary,
        });
        if self.durability == Durability::Durable
            && let Err(kind) = self.store_flush()
        {
            return (Err(kind), true);
        }
        (Ok(seq), true)
    }

    fn crash(&mut self) {
        self.live = self.durable.clone();
        self.pending.clear();
        self.armed.clear();
        self.poisoned = false;
    }

    /// `Faulty::crash_tearing`.
    fn crash_tearing(&mut self) -> bool {
        let Some(last) = self.pending.pop() else {
            self.crash();
            return false;
        };
        for write in std::mem::take(&mut self.pending) {
            let slot = self.durable.entry(write.id).or_default();
            slot.push(write.seq, write.rec, Some(write.summary));
        }
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

fn valid(event: &Event) -> bool {
    match event {
        Event::Queued(_) => true,
        Event::Delivered(delivered) => delivered
            .http_status
            .is_none_or(|code| (200..=299).contains(&code)),
        Event::Failed(failed) => match failed.reason {
            FailureReason::HttpStatus(code) => !(200..=299).contains(&code),
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
    let head_ok = slot.head.unwrap_or(0) == last;
    if !head_ok {
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
        attempt: None,
        retry_of: None,
        queued_at: Some(timestamp(*queued_at)),
        settled_at: None,
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
            status.error_detail = failed.detail.clone();
            status.target_received = Some(received(failed.reason));
            status.settled_at = Some(timestamp(*at));
        }
        Some(other) => panic!("a model delegation cannot hold {other:?} second"),
    }
    status
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn queued_event() -> impl Strategy<Value = Event> {
    (
        prop_oneof![Just("planner"), Just("ops")],
        prop_oneof![Just("reviewer"), Just("http://127.0.0.1:9/a2a")],
        prop_oneof![
            Just(None),
            Just(Some(json!({"review": "pr-42", "lines": [1, 2]}))),
            Just(Some(json!("plain text task"))),
        ],
    )
        .prop_map(|(source, target, task)| {
            Event::Queued(delegation_log::event::Queued {
                source: source.to_owned(),
                target: target.to_owned(),
                task,
                retry_of: None,
                attempt: None,
                not_before: None,
            })
        })
}

fn detail() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("503 Service Unavailable".to_owned())),
        Just(Some("é ✓ \"quoted\"\nline two \u{1F600}".to_owned())),
        Just(Some("x".repeat(300))),
    ]
}

fn reason() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        Just(FailureReason::TargetOffline),
        Just(FailureReason::MarshalError),
        Just(FailureReason::Timeout),
        Just(FailureReason::Interrupted),
        Just(FailureReason::Rejected),
        Just(FailureReason::BadResponse),
        prop::sample::select(vec![
            0u16,
            100,
            302,
            404,
            429,
            500,
            501,
            503,
            599,
            999,
            u16::MAX
        ])
        .prop_map(FailureReason::HttpStatus),
        prop::sample::select(vec![
            -32700i64,
            -32601,
            -32603,
            -32009,
            0,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(FailureReason::RpcError),
    ]
}

fn outcome_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            prop::sample::select(vec![None, Some(200u16), Some(201), Some(204), Some(299)]),
            prop_oneof![
                Just(None),
                Just(Some(delegation_log::event::Remote::message())),
                Just(Some(delegation_log::event::Remote {
                    kind: delegation_log::event::RemoteKind::Task,
                    task_id: Some("t-1".to_owned()),
                    context_id: Some("c-1".to_owned()),
                    state: Some(delegation_log::event::TaskState::InputRequired),
                })),
            ],
        )
            .prop_map(|(http_status, remote)| Event::Delivered(Delivered {
                http_status,
                remote
            })),
        (reason(), detail()).prop_map(|(reason, detail)| Event::Failed(Failed { reason, detail })),
    ]
}

/// Events that break a field rule, built around the checked constructors.
fn invalid_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        prop::sample::select(vec![100u16, 199, 300, 503]).prop_map(|code| Event::Delivered(
            Delivered {
                http_status: Some(code),
                remote: None,
            }
        )),
        prop::sample::select(vec![200u16, 204, 299]).prop_map(|code| Event::Failed(Failed {
            reason: FailureReason::HttpStatus(code),
            detail: None,
        })),
    ]
}

struct LedgerModel;

impl ReferenceStateMachine for LedgerModel {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![Just(Durability::Durable), Just(Durability::Buffered)]
            .prop_map(Model::new)
            .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Transition> {
        let id = 0..POOL;
        prop_oneof![
            4 => (id.clone(), queued_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            6 => (id.clone(), outcome_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            1 => (id.clone(), invalid_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            2 => (id, prop::collection::vec(outcome_event(), 2..=4))
                .prop_map(|(id, outcomes)| Transition::Race { id, outcomes }),
            2 => Just(Transition::Flush),
            1 => Just(Transition::Crash),
            1 => Just(Transition::TornCrash),
            1 => Just(Transition::Reopen),
            2 => Just(Transition::Recover),
            1 => prop_oneof![Just(Fault::FailWrite), Just(Fault::FailFlush)]
                .prop_map(Transition::Inject),
        ]
        .boxed()
    }

    /// Racing writers meet an armed fault in an order nobody controls, so races
    /// run only with no fault armed.
    fn preconditions(state: &Model, transition: &Transition) -> bool {
        match transition {
            Transition::Race { .. } => state.armed.is_empty(),
            _ => true,
        }
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        state.step += 1;
        state.expected = match transition {
            Transition::Record { id, event } => {
                let (result, wrote) = state.record(*id, vec![event.clone()]);
                Expected::Record { result, wrote }
            }
            Transition::Race { id, outcomes } => {
                Expected::Race(state.record(*id, outcomes.clone()).0)
            }
            Transition::Flush => Expected::Flush(if state.poisoned {
                Err(ErrKind::Poisoned)
            } else {
                state.store_flush()
            }),
            Transition::Crash => {
                state.crash();
                Expected::Nothing
            }
            Transition::TornCrash => Expected::Torn(state.crash_tearing()),
            Transition::Reopen => {
                state.poisoned = false;
                Expected::Nothing
            }
            Transition::Recover => Expected::Recover(state.recover()),
            Transition::Inject(fault) => {
                state.armed.push(*fault);
                Expected::Nothing
            }
        };
        state
    }
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

struct Sut {
    store: Arc<Faulty>,
    ledger: Ledger,
    clock: ManualClock,
    durability: Durability,
    ids: Vec<DelegationId>,
    /// Which candidate won each race, by (id, seq, at).
    winners: HashMap<(usize, Seq, i64), Event>,
    acked: Vec<Acked>,
}

impl Sut {
    fn open_ledger(store: &Arc<Faulty>, durability: Durability, clock: &ManualClock) -> Ledger {
        let store: Arc<dyn Store> = store.clone();
        Ledger::with_store(
            store,
            Options::new().durability(durability).clock(clock.clone()),
        )
    }

    fn reopen(&mut self) {
        self.ledger = Self::open_ledger(&self.store, self.durability, &self.clock);
    }

    fn snapshot(&self) -> Vec<Stream> {
        self.ids
            .iter()
            .map(|id| self.store.history(id).unwrap())
            .collect()
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

    /// Postcondition: no delegation holds two terminal outcomes in the store.
    fn assert_one_terminal_outcome_at_most(&self) {
        for stream in self.snapshot() {
            let terminal = stream
                .entries
                .iter()
                .filter_map(|entry| envelope::decode(&entry.bytes).ok())
                .filter(|record| record.event.kind() != EventKind::Queued)
                .count();
            assert!(terminal <= 1, "{} holds {terminal} outcomes", stream.id);
        }
    }

    /// Postcondition after a crash: every event acknowledged as durable is still
    /// in the store, byte for byte readable. (Whether its delegation as a whole
    /// reads, or reads as damaged, the invariants check against the model.)
    fn assert_durable_acknowledgements_survived(&mut self) {
        self.acked.retain(|acked| acked.durable);
        for acked in &self.acked {
            let stream = self.store.history(&self.ids[acked.id]).unwrap();
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
}

struct LedgerUnderTest;

impl StateMachineTest for LedgerUnderTest {
    type SystemUnderTest = Sut;
    type Reference = LedgerModel;

    fn init_test(model: &Model) -> Sut {
        let store = Arc::new(Faulty::seeded(0x5eed));
        let clock = ManualClock::at_unix_nanos(model.now());
        Sut {
            ledger: Sut::open_ledger(&store, model.durability, &clock),
            store,
            clock,
            durability: model.durability,
            ids: (0..POOL).map(pool_id).collect(),
            winners: HashMap::new(),
            acked: Vec::new(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, transition: Transition) -> Sut {
        sut.clock.set_unix_nanos(model.now());
        match (transition, &model.expected) {
            (Transition::Record { id, event }, Expected::Record { result, wrote }) => {
                let before = sut.snapshot();
                let got = sut.ledger.record(&sut.ids[id], event);
                match (&got, result) {
                    (Ok(recorded), Ok(seq)) => {
                        assert_eq!(recorded.seq, *seq);
                        let at = recorded.at.unix_nanos().unwrap();
                        sut.acknowledge(id, *seq, at);
                    }
                    (Err(error), Err(kind)) => assert_eq!(kind_of(error), *kind, "{error}"),
                    _ => panic!("record answered {got:?}, the model expected {result:?}"),
                }
                let after = sut.snapshot();
                if *wrote {
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
                sut.assert_one_terminal_outcome_at_most();
            }
            (Transition::Race { id, outcomes }, Expected::Race(result)) => {
                let before = sut.snapshot();
                let barrier = Barrier::new(outcomes.len());
                let ledger = &sut.ledger;
                let delegation = &sut.ids[id];
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
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                match result {
                    Ok(seq) => {
                        let winners: Vec<usize> = answers
                            .iter()
                            .enumerate()
                            .filter_map(|(i, answer)| answer.is_ok().then_some(i))
                            .collect();
                        assert_eq!(winners.len(), 1, "exactly one racer wins: {answers:?}");
                        let winner = winners[0];
                        for (i, answer) in answers.iter().enumerate() {
                            if i != winner {
                                let error = answer.as_ref().unwrap_err();
                                assert_eq!(kind_of(error), ErrKind::AlreadySettled, "{error}");
                            }
                        }
                        let recorded = answers[winner].as_ref().unwrap();
                        assert_eq!(recorded.seq, *seq);
                        let at = recorded.at.unix_nanos().unwrap();
                        sut.winners.insert((id, *seq, at), outcomes[winner].clone());
                        sut.acknowledge(id, *seq, at);
                    }
                    Err(kind) => {
                        for answer in &answers {
                            let error = answer.as_ref().unwrap_err();
                            assert_eq!(kind_of(error), *kind, "{error}");
                        }
                        assert_eq!(before, sut.snapshot(), "refused racers changed the store");
                    }
                }
                sut.assert_one_terminal_outcome_at_most();
            }
            (Transition::Flush, Expected::Flush(result)) => {
                let got = sut.ledger.flush();
                match (&got, result) {
                    (Ok(()), Ok(())) => {
                        for acked in &mut sut.acked {
                            acked.durable = true;
                        }
                    }
                    (Err(error), Err(kind)) => {
                        assert_eq!(kind_of(error), *kind, "{error}");
                        // A failed flush loses the unflushed appends for good (as
                        // after a failed fsync): no later flush covers them.
                        sut.acked.retain(|acked| acked.durable);
                    }
                    _ => panic!("flush answered {got:?}, the model expected {result:?}"),
                }
            }
            (Transition::Crash, Expected::Nothing) => {
                sut.store.crash();
                sut.reopen();
                sut.assert_durable_acknowledgements_survived();
            }
            (Transition::TornCrash, Expected::Torn(tore)) => {
                assert_eq!(sut.store.crash_tearing(), *tore);
                sut.reopen();
                sut.assert_durable_acknowledgements_survived();
            }
            (Transition::Reopen, Expected::Nothing) => sut.reopen(),
            (Transition::Recover, Expected::Recover(result)) => {
                let got = sut.ledger.recover();
                match (&got, result) {
                    (Ok(settled), Ok(ids)) => {
                        let expected: Vec<DelegationId> =
                            ids.iter().map(|&i| sut.ids[i].clone()).collect();
                        assert_eq!(settled, &expected);
                        for &id in ids {
                            let Read::Found(entries) = model.read(id) else {
                                panic!("recovered {id} is not readable in the model");
                            };
                            let (seq, rec) = entries.last().unwrap();
                            sut.acknowledge(id, *seq, rec.at);
                        }
                        assert!(
                            sut.ledger.pending().unwrap().is_empty(),
                            "something is pending after a recover"
                        );
                    }
                    (Err(error), Err(kind)) => assert_eq!(kind_of(error), *kind, "{error}"),
                    _ => panic!("recover answered {got:?}, the model expected {result:?}"),
                }
                sut.assert_one_terminal_outcome_at_most();
            }
            (Transition::Inject(fault), Expected::Nothing) => sut.store.inject(fault),
            (transition, expected) => {
                panic!("model and test disagree: {transition:?} with {expected:?}")
            }
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        assert_eq!(
            sut.store.pending(),
            model.pending.len(),
            "unflushed appends"
        );
        if model.poisoned {
            // A poisoned ledger serves no reads: what it holds may not be durable.
            for id in &sut.ids {
                let status = sut.ledger.status(id);
                assert!(matches!(status, Err(Error::Poisoned { .. })), "{status:?}");
                assert!(matches!(
                    sut.ledger.history(id),
                    Err(Error::Poisoned { .. })
                ));
            }
            let replayed: Vec<_> = sut.ledger.replay().collect();
            assert!(
                matches!(replayed.as_slice(), [Err(Error::Poisoned { .. })]),
                "{replayed:?}"
            );
            return;
        }
        let mut readable = Vec::new();
        let mut damaged = 0;
        for index in key_order() {
            let id = &sut.ids[index];
            let status = sut.ledger.status(id);
            let history = sut.ledger.history(id);
            match model.read(index) {
                Read::Absent => {
                    assert_eq!(status.unwrap(), Status::not_found(id.clone()));
                    assert!(history.unwrap().is_empty());
                }
                Read::Corrupt => {
                    damaged += 1;
                    // `status` reads the head, which covers only what was
                    // acknowledged: a torn record beyond it is not its business.
                    let headed: Vec<(Seq, Event, i64)> = model.live[&index]
                        .headed()
                        .iter()
                        .map(|(seq, rec)| (*seq, sut.resolve(index, *seq, rec), rec.at))
                        .collect();
                    let expected = if headed.is_empty() {
                        Status::not_found(id.clone())
                    } else {
                        expected_status(id, &headed)
                    };
                    assert_eq!(status.unwrap(), expected, "{id}: status beside damage");
                    assert!(matches!(history, Err(Error::Corrupt { .. })));
                }
                Read::Found(entries) => {
                    let records: Vec<(Seq, Event, i64)> = entries
                        .iter()
                        .map(|(seq, rec)| (*seq, sut.resolve(index, *seq, rec), rec.at))
                        .collect();
                    assert_eq!(status.unwrap(), expected_status(id, &records));
                    let history: Vec<(Seq, Event, i64)> = history
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.seq, r.event, r.at.unix_nanos().unwrap()))
                        .collect();
                    assert_eq!(history, records);
                    readable.push(id.clone());
                }
            }
        }
        // Replay equals live: the same delegations, in key order, each exactly as
        // `delegation` rebuilds it, and one error per damaged delegation.
        let mut replayed = Vec::new();
        let mut replay_errors = 0;
        for item in sut.ledger.replay() {
            match item {
                Ok(delegation) => {
                    let live = sut.ledger.delegation(&delegation.id).unwrap().unwrap();
                    assert_eq!(delegation, live, "replay differs from live");
                    // `status` is one read of the head; it must say exactly what
                    // a replay of the history says, always.
                    assert_eq!(
                        sut.ledger.status(&delegation.id).unwrap(),
                        delegation.status(),
                        "status (the head) differs from a replay of the history"
                    );
                    replayed.push(delegation.id);
                }
                Err(Error::Corrupt { .. }) => replay_errors += 1,
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
}
