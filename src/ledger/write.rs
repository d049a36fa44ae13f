//! The write path: `record`, `settle` and `retry` (a read of a head, or on a
//! remote store a head remembered; a check by the fold; one atomic append), and
//! the one loop that retries a lost race for a head.
//!
//! Around the append, the index's hints ([`store::Index`](crate::store::Index)):
//! a `queued` or a `failed` costs one single-key insert before its append (a
//! retry two: its link and its open hint), and a settling outcome one
//! single-key removal after its commit. No write is batched with the append,
//! so on sled an append stays one `compare_and_swap` and the hints add no
//! device write of their own (they share sled's log buffer and its flush). An
//! index that writes hints with the appends (PostgreSQL's) gets them in the
//! append instead, atomically with it.
//!
//! On a remote store ([`Store::remote`](crate::store::Store::remote)) a write
//! reads no head when it can guess it (see `known.rs`): a lifecycle written by
//! one ledger is then one round trip per event, and the append's check of the
//! head it expects catches a guess another process made stale.

use crate::delegation::{Delegation, Fold, Outcome};
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Failed, Queued, Seq, Timestamp};
use crate::lifecycle::State;
use crate::store::{AppendError, Head, Owner};

use super::Ledger;
use super::appender::{Owned, Written};
use super::index::Hints;
use super::next::{Next, next_record};

/// What [`Ledger::record`] acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The record's seq.
    pub seq: Seq,
    /// Its timestamp.
    pub at: Timestamp,
    /// The delegation's state after it.
    pub state: State,
}

/// What [`Ledger::settle`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// This outcome was recorded: it won.
    Won(Recorded),
    /// The delegation had already settled; this outcome was refused and nothing
    /// was written. The outcome that won, as the delegation's head holds it.
    Lost {
        /// The outcome that won.
        outcome: Outcome,
        /// The seq of its record.
        seq: Seq,
        /// When it was recorded.
        at: Timestamp,
    },
}

/// What [`Ledger::retry`] acknowledged: the original's failure and the retry's
/// `queued`, written together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retried {
    /// The original's `failed` record.
    pub failed: Recorded,
    /// The retry's `queued` record.
    pub queued: Recorded,
    /// Which attempt the retry is.
    pub attempt: crate::event::Attempt,
}

/// What a retry writes ([`Ledger::plan_retry`]).
struct Plan {
    settled: Next,
    queued_next: Next,
    attempt: crate::event::Attempt,
    hints: Hints,
}

/// How many times `record` re-reads after losing a race before it gives up. Each
/// lost race means another record landed, and a delegation holds at most two, so
/// a correct store never comes near this.
const MAX_CONFLICTS: usize = 16;

/// What one event's write came to.
enum Appended {
    /// Written and committed.
    Recorded(Recorded),
    /// Refused as already settled: nothing was written. The delegation as its
    /// head says, which holds the outcome that won.
    Refused {
        error: Error,
        winner: Option<Box<Delegation>>,
    },
}

impl Ledger {
    /// Records `event` for delegation `id`, if the lifecycle allows it.
    ///
    /// The timestamp is the clock's, raised if need be to the delegation's last
    /// timestamp, so that a delegation's times never run backwards. In durable mode
    /// this returns only after a flush covers the record.
    ///
    /// A retry (a `queued` with `retry_of`) is refused here: it is written only
    /// together with the failure it retries, by [`Ledger::retry`].
    ///
    /// # Errors
    /// - [`Error::IllegalTransition`], [`Error::AlreadySettled`],
    ///   [`Error::InvalidEvent`] or [`Error::RetryLink`] if the event is refused;
    ///   nothing is written.
    /// - [`Error::Corrupt`] if the delegation's history is damaged; nothing is
    ///   written.
    /// - [`Error::Poisoned`] after an earlier write or flush failed.
    /// - A storage error if the write or flush fails; the ledger is then
    ///   poisoned, unless the store says nothing reached it
    ///   ([`AppendError::Unsent`]: a server that is down) or knows nothing of
    ///   it was written ([`AppendError::Undone`]: a statement the server
    ///   refused or cancelled, or a lost connection's write made sure of).
    pub fn record(&self, id: &DelegationId, event: Event) -> Result<Recorded> {
        self.record_as(id, event, None)
    }

    /// [`Ledger::record`], with `owner`'s claim on `id` in the same write if
    /// it is `Some` (on a store that writes claims with its appends:
    /// [`Ledger::queue_leased`]).
    pub(super) fn record_as(
        &self,
        id: &DelegationId,
        event: Event,
        owner: Option<Owner>,
    ) -> Result<Recorded> {
        self.check_poisoned()?;
        event.validate()?;
        if let Event::Queued(Queued {
            retry_of: Some(original),
            ..
        }) = &event
        {
            return Err(Error::RetryLink {
                id: id.clone(),
                reason: format!(
                    "a retry of `{original}` is written only with the failure it retries \
                     (Ledger::retry)"
                ),
            });
        }
        match self.append_event(id, event.normalized(), owner)? {
            Appended::Recorded(recorded) => Ok(recorded),
            Appended::Refused { error, .. } => Err(error),
        }
    }

    /// Records an outcome (`delivered` or `failed`) for delegation `id`, and when
    /// the delegation has already settled, says which outcome won instead of
    /// failing: what every writer racing to settle a delegation wants to know.
    /// The winner comes from the same read of the head that refused this outcome.
    ///
    /// # Errors
    /// As for [`Ledger::record`], except [`Error::AlreadySettled`], which is
    /// [`Settlement::Lost`] here.
    pub fn settle(&self, id: &DelegationId, outcome: Event) -> Result<Settlement> {
        self.check_poisoned()?;
        if let Event::Queued(_) = outcome {
            return Err(crate::event::InvalidEvent::NotAnOutcome.into());
        }
        outcome.validate()?;
        match self.append_event(id, outcome.normalized(), None)? {
            Appended::Recorded(recorded) => Ok(Settlement::Won(recorded)),
            Appended::Refused {
                error,
                winner: Some(winner),
            } => match (winner.outcome, winner.settled_at) {
                (Some(outcome), Some(at)) => Ok(Settlement::Lost {
                    outcome,
                    seq: winner.seq,
                    at,
                }),
                _ => Err(error),
            },
            Appended::Refused { error, .. } => Err(error),
        }
    }

    /// The one write of one event: read (or remember) the head, decide, append
    /// record and head together (and `owner`'s claim, if any:
    /// [`Store::append_claimed`](crate::store::Store::append_claimed)), under
    /// `id`'s writer stripe; then wait for the commit.
    fn append_event(
        &self,
        id: &DelegationId,
        event: Event,
        owner: Option<Owner>,
    ) -> Result<Appended> {
        let writing = self.inner.stripes.lock(id);
        let hints = Hints::of(id, &event);
        let mut guess = true;
        let new = matches!(event, Event::Queued(_));
        let written = self.write_retrying(|| {
            let (fold, next) = self.decide_on(
                &mut guess,
                &[id],
                || self.guessed(id, new),
                || Ok(self.resume(id)?),
                |fold| next_record(fold, event.clone(), self.stamp(fold)),
            )?;
            let next = match next {
                Ok(next) => next,
                Err(error @ Error::AlreadySettled { .. }) => {
                    let winner = fold.into_delegation().map(Box::new);
                    return Ok(((Appended::Refused { error, winner }, None), Ok(None)));
                }
                Err(error) => return Err(error),
            };
            let (recorded, append, record) = next.into_append(id, &fold);
            let head = self.inner.known.as_ref().map(|_| append.new_head());
            // Before the append it describes (see `store::index`), or with it.
            let with = self.hint_before(&hints)?;
            let written = self.append(vec![append], with, owner);
            Ok((
                (Appended::Recorded(recorded), Some((record, head))),
                written,
            ))
        });
        let ((appended, record), written) = written.inspect_err(|_| self.forget(&[id]))?;
        if let (Appended::Recorded(recorded), Some((_, head))) = (&appended, &record) {
            // Under the stripe, so that the next writer of `id` finds it; a
            // failed flush below forgets it (and poisons the ledger).
            self.remember(id, recorded.state, head.clone());
        }
        // The append is whole: the flush is shared.
        drop(writing);
        if let (Appended::Recorded(_), Some((record, _))) = (&appended, record) {
            self.commit(written).inspect_err(|_| self.forget(&[id]))?;
            self.unhint_after(&hints);
            // Acknowledged: hand it to the followers (never waits).
            self.inner.feed.publish(Some(record));
        }
        Ok(appended)
    }

    /// The folds a write starts from, and what `decide` makes of them (the
    /// event checked by the fold, and through it by the lifecycle machine).
    ///
    /// On a remote store the first try (`guess`, then spent) decides on the
    /// `guessed` folds, unread: the heads this ledger wrote last
    /// ([`known`](super::known)), or, for a new delegation, no head; the
    /// append then checks the guess. A guess that `decide` refuses is not
    /// believed: the heads of `ids` are forgotten and `read`, and the write
    /// decided again on them, as every later try is.
    fn decide_on<F, T>(
        &self,
        guess: &mut bool,
        ids: &[&DelegationId],
        guessed: impl FnOnce() -> Option<F>,
        read: impl FnOnce() -> Result<F>,
        decide: impl Fn(&F) -> Result<T>,
    ) -> Result<(F, Result<T>)> {
        if std::mem::take(guess)
            && let Some(folds) = guessed()
        {
            let decided = decide(&folds);
            if decided.is_ok() {
                return Ok((folds, decided));
            }
        }
        self.forget(ids);
        let folds = read()?;
        let decided = decide(&folds);
        Ok((folds, decided))
    }

    /// The fold of `id` from the head this ledger wrote last, or, if `new`,
    /// of no head; `None` on a store whose heads are read, not guessed.
    fn guessed(&self, id: &DelegationId, new: bool) -> Option<Fold> {
        let head = self.inner.known.as_ref()?.get(id);
        if head.is_none() && !new {
            return None;
        }
        self.resume_from(id, head.as_ref()).ok()
    }

    /// Keeps the head an acknowledged append wrote, while it leaves its
    /// delegation open.
    fn remember(&self, id: &DelegationId, state: State, head: Option<Head>) {
        if let Some(known) = &self.inner.known {
            known.wrote(id, head.filter(|_| state == State::Queued));
        }
    }

    /// Forgets the heads of `ids`: a write on them failed, or they were read.
    fn forget(&self, ids: &[&DelegationId]) {
        if let Some(known) = &self.inner.known {
            for id in ids {
                known.forget(id);
            }
        }
    }

    /// Settles delegation `original` as `failed` and queues `retry` as its retry,
    /// in one atomic write: a crash keeps both records or neither, so no original
    /// ever points at a retry that does not exist, and no retry exists whose
    /// original did not fail.
    ///
    /// The ledger fills in the retry's `retry_of` (`original`) and `attempt` (one
    /// more than the original's, which is 1 unless it is itself a retry); if
    /// `queued` already carries either, it must say the same. Both records pass
    /// the lifecycle machine first (the original must be `queued`, the retry must
    /// not exist), and both get the same timestamp. In durable mode this returns
    /// only after a flush covers both.
    ///
    /// # Errors
    /// - [`Error::AlreadySettled`] or [`Error::IllegalTransition`] (naming the
    ///   original) if the original is not `queued`; [`Error::IllegalTransition`]
    ///   (naming the retry) if the retry already exists; [`Error::InvalidEvent`] or
    ///   [`Error::RetryLink`] for a refused event. Nothing is written.
    /// - [`Error::Corrupt`] if either history is damaged; nothing is written.
    /// - [`Error::Poisoned`], or a storage error (which poisons the ledger), as for
    ///   [`Ledger::record`].
    pub fn retry(
        &self,
        original: &DelegationId,
        failed: Failed,
        retry: &DelegationId,
        queued: Queued,
    ) -> Result<Retried> {
        self.check_poisoned()?;
        let failed = Event::Failed(failed);
        failed.validate()?;
        let link = |reason: String| Error::RetryLink {
            id: retry.clone(),
            reason,
        };
        if retry == original {
            return Err(link("a delegation cannot retry itself".to_owned()));
        }
        if let Some(other) = queued.retry_of.as_ref().filter(|other| *other != original) {
            return Err(link(format!(
                "it says it retries `{other}`, but it is written as the retry of `{original}`"
            )));
        }
        let writing = self.inner.stripes.lock_all([original, retry]);
        let mut guess = true;
        let written = self.write_retrying(|| {
            let ((fold, retry_fold), plan) = self.decide_on(
                &mut guess,
                &[original, retry],
                || Some((self.guessed(original, false)?, self.guessed(retry, true)?)),
                || Ok((self.resume(original)?, self.resume(retry)?)),
                |(fold, retry_fold)| {
                    self.plan_retry(original, &failed, retry, &queued, fold, retry_fold)
                },
            )?;
            let Plan {
                settled,
                queued_next,
                attempt,
                hints,
            } = plan?;
            let (failed, settled, failed_record) = settled.into_append(original, &fold);
            let (queued, queued_next, queued_record) = queued_next.into_append(retry, &retry_fold);
            let head = self.inner.known.as_ref().map(|_| queued_next.new_head());
            let with = self.hint_before(&hints)?;
            let written = self.append(vec![settled, queued_next], with, None);
            let retried = Retried {
                failed,
                queued,
                attempt,
            };
            Ok((
                (retried, [failed_record, queued_record], hints, head),
                written,
            ))
        });
        let ((retried, records, hints, head), written) =
            written.inspect_err(|_| self.forget(&[original, retry]))?;
        // Under the stripes (see `append_event`).
        self.remember(original, retried.failed.state, None);
        self.remember(retry, retried.queued.state, head);
        drop(writing);
        self.commit(written)
            .inspect_err(|_| self.forget(&[original, retry]))?;
        self.unhint_after(&hints);
        // Acknowledged: hand both to the followers (never waits).
        self.inner.feed.publish(records);
        Ok(retried)
    }

    /// What a retry writes, decided on the folds of the original and of the
    /// retry: the original's `failed`, the retry's `queued` (with its link and
    /// its attempt, checked against what `queued` says), and the retry's hints.
    fn plan_retry(
        &self,
        original: &DelegationId,
        failed: &Event,
        retry: &DelegationId,
        queued: &Queued,
        fold: &Fold,
        retry_fold: &Fold,
    ) -> Result<Plan> {
        let link = |reason: String| Error::RetryLink {
            id: retry.clone(),
            reason,
        };
        let at = self.stamp(fold).max(self.stamp(retry_fold));
        let settled = next_record(fold, failed.clone(), at)?;
        let attempt = fold
            .delegation()
            .map_or(1, |delegation| delegation.attempt)
            .saturating_add(1);
        if let Some(said) = queued.attempt.filter(|said| *said != attempt) {
            return Err(link(format!(
                "it says attempt {said}, but `{original}` is attempt {}, so this is attempt {attempt}",
                attempt - 1
            )));
        }
        let event = Event::Queued(Queued {
            retry_of: Some(original.clone()),
            attempt: Some(attempt),
            ..queued.clone()
        });
        event.validate()?;
        // Only the retry's: the original's `failed` is retried, not dead.
        let hints = Hints::of(retry, &event);
        let queued_next = next_record(retry_fold, event.normalized(), at)?;
        Ok(Plan {
            settled,
            queued_next,
            attempt,
            hints,
        })
    }

    /// A record's timestamp: the clock's now, raised to the delegation's last
    /// timestamp so that its times never run backwards.
    fn stamp(&self, fold: &Fold) -> Timestamp {
        let now = self.clock().now();
        match fold.delegation() {
            Some(d) => now.max(d.settled_at.unwrap_or(d.queued_at)),
            None => now,
        }
    }

    /// Runs `attempt` (read, decide, write) until its write is not refused for a
    /// lost race on a head, at most [`MAX_CONFLICTS`] times: the one retry site of
    /// every write. The attempt's own errors (a refusal, damage) pass through; a
    /// failed write poisons the ledger. Returns the attempt's value and what
    /// its write came to (`None` for no write).
    fn write_retrying<T>(
        &self,
        mut attempt: impl FnMut() -> Result<(T, Result<Option<Written>, AppendError>)>,
    ) -> Result<(T, Option<Written>)> {
        let mut conflicts = 0;
        loop {
            let (value, written) = attempt()?;
            match written {
                Ok(written) => return Ok((value, written)),
                Err(AppendError::Conflict { id, .. }) => {
                    conflicts += 1;
                    if conflicts >= MAX_CONFLICTS {
                        return Err(Error::Conflict {
                            id,
                            attempts: conflicts,
                        });
                    }
                }
                // Damage found by the store's checks before writing, or a store
                // that takes no writes: nothing was written, and the ledger is as
                // sound as it was.
                Err(damaged @ AppendError::Damaged { .. }) => return Err(damaged.into()),
                Err(AppendError::Store(error @ Error::NeedsMigration { .. })) => return Err(error),
                // The claim to go with the write was refused: nothing was
                // written, claim included.
                Err(refused @ (AppendError::Claimed { .. } | AppendError::LeaseExpired { .. })) => {
                    return Err(refused.into());
                }
                // Nothing reached the store, or the store knows nothing of it
                // was written: it is as sound as it was.
                Err(AppendError::Unsent(error) | AppendError::Undone(error)) => return Err(error),
                // A failed write may be partly visible: serve nothing more.
                Err(AppendError::Store(error)) => return Err(self.poison(error)),
            }
        }
    }

    /// Appends to the store, atomically, in a group with the appends of writers
    /// that arrive at the same time ([`appender`]).
    /// `hints` go with the appends, for a store whose index writes them so
    /// ([`Ledger::hint_before`]); empty otherwise. So does `owner`'s claim on
    /// each delegation the appends start, for a store that writes claims so.
    fn append(
        &self,
        appends: Vec<Owned>,
        hints: Hints,
        owner: Option<Owner>,
    ) -> std::result::Result<Option<Written>, AppendError> {
        self.inner
            .appender
            .append(
                self.inner.store.as_ref(),
                &self.inner.commit,
                self.inner.options.durability,
                appends,
                hints,
                owner,
            )
            .map(Some)
    }
}
