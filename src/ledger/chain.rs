//! The sender's view of a delegation's attempts: from any attempt's id, back by
//! `retry_of` to the first and forward by the index's verified links to the
//! latest, a few reads per attempt and never a scan (on a store with an index).

use crate::delegation::{Attempts, Delegation, LastFailure, Status};
use crate::error::ReadError;
use crate::event::{Attempt, DelegationId, Event, Record};
use crate::lifecycle::State;

use super::Ledger;
use super::index::Links;

/// A chain of attempts, read: each attempt's summary, first to latest.
pub(super) struct Chain {
    /// The attempts before the latest, first to last.
    pub(super) earlier: Vec<Delegation>,
    /// The latest attempt.
    pub(super) latest: Delegation,
}

impl Chain {
    /// The first attempt.
    pub(super) fn first(&self) -> &Delegation {
        self.earlier.first().unwrap_or(&self.latest)
    }
}

impl Ledger {
    /// The attempts of the task delegation `id` is an attempt of, from any of
    /// its attempts' ids: the first and latest ids, the latest's state, how many
    /// attempts, the last failure, when the next attempt may go, and whether the
    /// task gave up. `None` if the log has never seen `id`.
    ///
    /// It reads each attempt's head (back by `retry_of`, checking each link's
    /// attempt number), and forward one index read and one head read per
    /// attempt (a link is followed only if the later attempt's head says it
    /// retries the earlier). On a store without an index (an older sled store
    /// before `migrate`), the forward links come from one scan.
    ///
    /// # Errors
    /// [`ReadError::Storage`]; [`ReadError::Corrupt`] for a damaged head, or a `retry_of`
    /// that names a delegation the log does not hold or one whose attempt is
    /// not one less.
    pub fn attempts(&self, id: &DelegationId) -> Result<Option<Attempts>, ReadError> {
        self.check_poisoned()?;
        Ok(self.chain(id)?.map(|chain| self.view(&chain)))
    }

    /// The records of every attempt of the task delegation `id` is an attempt
    /// of, first attempt to latest, each attempt's history as
    /// [`Ledger::history`] reads it (folded and checked against its head):
    /// what `history` prints. A task never retried gives one entry, `id`'s own
    /// history; an unknown `id` gives none.
    ///
    /// # Errors
    /// As for [`Ledger::attempts`] and [`Ledger::history`].
    pub fn task_history(
        &self,
        id: &DelegationId,
    ) -> Result<Vec<(DelegationId, Vec<Record>)>, ReadError> {
        self.check_poisoned()?;
        loop {
            let Some(chain) = self.chain(id)? else {
                return Ok(Vec::new());
            };
            let histories = chain
                .earlier
                .iter()
                .chain(std::iter::once(&chain.latest))
                .map(|attempt| Ok((attempt.id.clone(), self.history(&attempt.id)?)))
                .collect::<Result<Vec<_>, ReadError>>()?;
            // The latest attempt's history is read after the chain: if it
            // failed meanwhile, it may have been retried by the same write,
            // which the chain did not see. Then the chain is read again, now
            // longer; a failure that nothing retries ends the task's history.
            let failed_since = chain.latest.state == State::Queued
                && histories
                    .last()
                    .and_then(|(_, records)| records.last())
                    .is_some_and(|last| matches!(last.event, Event::Failed(_)));
            let retried = failed_since
                && self
                    .retry_of(&chain.latest.id, &mut Links::default())?
                    .is_some();
            if !retried {
                return Ok(histories);
            }
        }
    }

    /// The status of the task delegation `id` is an attempt of, from any of its
    /// attempts' ids: what `status` prints and the MCP tool `check_task_status`
    /// answers, so that a sender polling the id it delegated under learns the
    /// task's outcome, however many attempts it took.
    ///
    /// For a task never retried, this is [`Ledger::status`] of `id`, unchanged.
    /// For a task of several attempts it is the status of its **latest**
    /// attempt (its `id`, `status`, reason and times: `queued` while a retry
    /// waits for its backoff or is in flight, then its outcome), with the task's
    /// attempts in [`Status::attempts`] (`first`, `latest`, `attempts`,
    /// `last_failure`, `next_attempt_at`, `exhausted`). An earlier attempt's
    /// own status is [`Ledger::status`] of its id, and `history` shows every
    /// attempt's records. A few reads per attempt, where [`Ledger::status`] is
    /// one. The status and the attempts come from the same reads, and an
    /// attempt read unsettled is read again once a retry of it is found, so
    /// the answer is one the log held even while a retry is being written:
    /// never a retry without the failure it follows, never `failed` for a
    /// task whose next attempt is queued.
    ///
    /// # Errors
    /// As for [`Ledger::attempts`].
    pub fn task_status(&self, id: &DelegationId) -> Result<Status, ReadError> {
        self.check_poisoned()?;
        let Some(chain) = self.chain(id)? else {
            return Ok(Status::not_found(id.clone()));
        };
        // The status and the attempts from the same reads of the chain.
        let mut status = chain.latest.status();
        if !chain.earlier.is_empty() {
            status.attempts = Some(self.view(&chain));
        }
        Ok(status)
    }

    /// The chain `id` belongs to, first attempt to latest.
    pub(super) fn chain(&self, id: &DelegationId) -> Result<Option<Chain>, ReadError> {
        let Some(asked) = self.summary_of(id)? else {
            return Ok(None);
        };
        let mut earlier = self.back(asked)?;
        let mut links = Links::default();
        let mut latest = earlier.pop().ok_or_else(|| not_found(id))?;
        // Whether `latest` was read after the links were listed.
        let mut read_since_listed = false;
        // Each verified link goes to an attempt one higher, so the walk ends.
        loop {
            let next = match self.retry_of(&latest.id, &mut links)? {
                Some(next) => next,
                // Links listed by a scan are as the log was then; a `failed`
                // read since may have come with a retry the scan did not see,
                // so they are listed again. (An index is read afresh for each
                // link.)
                None if links.listed() && read_since_listed && latest.state == State::Failed => {
                    links = Links::default();
                    match self.retry_of(&latest.id, &mut links)? {
                        Some(next) => next,
                        None => break,
                    }
                }
                None => break,
            };
            if next.attempt != latest.attempt.saturating_add(1) {
                break;
            }
            // A retry is written in one write with the outcome of the attempt
            // it retries, so an attempt read as not settled was read before
            // that write: read it again, or the view would show a retry with
            // no failure behind it.
            if !latest.state.is_settled() {
                latest = self.summary_of(&latest.id)?.ok_or_else(|| {
                    ReadError::corrupt(
                        format!("delegation `{}`", latest.id),
                        "its head was read, then was gone".to_owned(),
                    )
                })?;
            }
            earlier.push(std::mem::replace(&mut latest, next));
            read_since_listed = links.listed();
        }
        Ok(Some(Chain { earlier, latest }))
    }

    /// The attempts from the first to `asked`, back by `retry_of`, one head
    /// read each.
    pub(super) fn back(&self, asked: Delegation) -> Result<Vec<Delegation>, ReadError> {
        self.back_by(asked, |id| self.summary_of(id))
    }

    /// The attempts from the first to `asked`, back by `retry_of`, each read
    /// by `read`: a head ([`Ledger::back`]), or a whole history folded
    /// ([`Ledger::first_attempt`]), which checks every record on the way.
    pub(super) fn back_by(
        &self,
        asked: Delegation,
        read: impl Fn(&DelegationId) -> Result<Option<Delegation>, ReadError>,
    ) -> Result<Vec<Delegation>, ReadError> {
        let mut earlier = Vec::new();
        let mut current = asked;
        // Each link goes to an attempt one lower, so the walk ends.
        while let Some(previous) = current.retry_of.clone() {
            let broken =
                |reason: String| ReadError::corrupt(format!("delegation `{}`", current.id), reason);
            let Some(before) = read(&previous)? else {
                return Err(broken(format!(
                    "it retries `{previous}`, which the log does not hold"
                )));
            };
            if before.attempt.saturating_add(1) != current.attempt {
                return Err(broken(format!(
                    "it is attempt {}, but `{previous}`, which it retries, is attempt {}",
                    current.attempt, before.attempt
                )));
            }
            earlier.push(std::mem::replace(&mut current, before));
        }
        earlier.push(current);
        earlier.reverse();
        Ok(earlier)
    }

    /// The sender's view of a chain.
    pub(super) fn view(&self, chain: &Chain) -> Attempts {
        let (first, latest) = (chain.first(), &chain.latest);
        let count = chain.earlier.len().saturating_add(1);
        let now = self.clock().now();
        Attempts {
            first: first.id.clone(),
            latest: latest.id.clone(),
            latest_status: latest.status().status,
            count: Attempt::try_from(count).unwrap_or(Attempt::MAX),
            last_failure: std::iter::once(latest)
                .chain(chain.earlier.iter().rev())
                .find_map(LastFailure::of),
            next_attempt_at: latest
                .not_before
                .filter(|at| latest.state == State::Queued && *at > now),
            exhausted: latest.state == State::Failed,
        }
    }
}

/// What [`Ledger::chain`] would say of an empty walk, which cannot happen:
/// the walk holds at least the attempt asked about.
fn not_found(id: &DelegationId) -> ReadError {
    ReadError::Corrupt {
        key: format!("delegation `{id}`"),
        reason: "its chain of attempts came out empty".to_owned(),
    }
}
