//! The system under test: a real ledger over a store, driven by the transitions
//! the model took, its answers, postconditions and invariants checked against it.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use super::model::{
    ErrKind, Expected, Model, Phase, Read, Rec, expected_status, kind_of, phase_of, timestamp,
};
use super::pool::{POOL, key_order, pool_id};
use super::transition::Transition;
use crate::clock::ManualClock;
use crate::delegation::{Status, StatusKind};
use crate::envelope;
use crate::error::ReadError;
use crate::event::{DelegationId, Event, EventKind, Failed, FailureReason, Queued, Seq, Timestamp};
use crate::ledger::{Attempts, Dead, Durability, LastFailure, Ledger, Options, Pending, Waiting};
use crate::store::{Faulty, Store, Stream};

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
            // The records the heads name, which the retry wrote: not the
            // last entries, since a torn crash can leave a remnant beyond a
            // head (a record slot taken past it, which the next append
            // there refuses as damage).
            let written = |index: usize| {
                after
                    .get(index)
                    .and_then(|stream| {
                        let head = stream.head.as_ref()?.seq;
                        stream.entries.iter().find(|entry| entry.seq == head)
                    })
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
