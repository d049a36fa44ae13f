//! The reference model of the ledger over the fault-injecting store, at the level
//! of events, and the format page's rules that say what the ledger must answer.

use std::collections::BTreeMap;
use std::time::Duration;

use super::pool::{POOL, key_order, pool_id};
use super::transition::Transition;
use crate::delegation::{Status, StatusKind};
use crate::error::{Error, StorageError};
use crate::event::http_status::Code;
use crate::event::{
    DelegationId, Event, EventKind, Failed, FailureReason, Queued, Received, Seq, Timestamp,
};
use crate::ledger::Durability;
use crate::store::Fault;

/// The clock reads `BASE + step` milliseconds at each step: 2026-06-07T01:32:07Z,
/// where a [`ManualClock`] starts.
///
/// [`ManualClock`]: crate::clock::ManualClock
const BASE_NANOS: i64 = 1_780_795_927_000_000_000;

pub(super) fn timestamp(nanos: i64) -> Timestamp {
    Timestamp::from_unix_nanos(nanos)
}

/// One stored record, as the model sees it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Rec {
    /// The event; several candidates when racing writers recorded it, of which
    /// the ledger picked one.
    pub(super) events: Vec<Event>,
    /// Nanoseconds since the epoch.
    pub(super) at: i64,
    /// Whether a crash tore it.
    torn: bool,
}

/// One delegation in one image, as `store::memory` keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Slot {
    entries: Vec<(Seq, Rec)>,
    head: Option<Seq>,
    /// What the head summarises: the records its writer's fold covered.
    pub(super) summary: Vec<(Seq, Rec)>,
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
pub(super) enum Read {
    /// No records.
    Absent,
    /// A typed `Error::Corrupt`.
    Corrupt,
    /// The records, checked.
    Found(Vec<(Seq, Rec)>),
}

/// The lifecycle, as the format page states it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Phase {
    Initial,
    Queued,
    Settled,
}

/// How the ledger is expected to refuse or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ErrKind {
    Poisoned,
    Invalid,
    Illegal,
    AlreadySettled,
    RetryLink,
    Corrupt,
    Io,
}

pub(super) fn kind_of(error: &Error) -> ErrKind {
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
pub(super) enum Expected {
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
///
/// [`Faulty`]: crate::store::Faulty
#[derive(Clone, Debug)]
pub struct Model {
    pub(super) durability: Durability,
    /// Transitions applied so far; the clock reads `BASE + step` ms, plus
    /// `advanced`.
    step: i64,
    /// Nanoseconds the clock was moved forward by [`Transition::AdvanceClock`].
    advanced: i64,
    pub(super) live: Image,
    durable: Image,
    pub(super) live_links: Links,
    durable_links: Links,
    pending: Vec<Unflushed>,
    armed: Vec<Fault>,
    pub(super) poisoned: bool,
    pub(super) expected: Expected,
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
    pub(super) fn unflushed_appends(&self) -> usize {
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
    pub(super) fn now(&self) -> i64 {
        BASE_NANOS + self.step * 1_000_000 + self.advanced
    }

    pub(super) fn read(&self, id: usize) -> Read {
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
                        detail: Some(crate::ledger::INTERRUPTED.to_owned()),
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

pub(super) fn phase_of(entries: &[(Seq, Rec)]) -> Phase {
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
pub(super) fn expected_status(id: &DelegationId, records: &[(Seq, Event, i64)]) -> Status {
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
