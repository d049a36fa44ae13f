//! What a sender asks of the whole log: what is still pending
//! ([`Ledger::pending`]), and what gave up ([`Ledger::dead`]), each served from
//! the store's index (every hint verified against its head), not from a scan.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::delegation::Delegation;
use crate::error::ReadError;
use crate::event::{Attempt, DelegationId, Timestamp};
use crate::lifecycle::State;
use crate::store::index::Set;

use super::Ledger;
use super::index::Links;
use crate::delegation::LastFailure;

/// A delegation not settled yet: what [`Ledger::pending`] lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The delegation (this attempt).
    pub id: DelegationId,
    /// The first attempt of its task.
    pub first: DelegationId,
    /// Which attempt it is: 1, or more for a retry.
    pub attempt: Attempt,
    /// To whom.
    pub target: String,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// How long ago it was queued, by the ledger's clock (`age_secs` in JSON).
    #[serde(rename = "age_secs", serialize_with = "seconds")]
    pub age: Duration,
    /// Why it waits.
    #[serde(flatten)]
    pub waiting: Waiting,
}

/// Why a pending delegation waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "waiting", content = "retry_at", rename_all = "snake_case")]
pub enum Waiting {
    /// It may be sent now: being delivered, or (if no process delivers it) for
    /// `recover` to settle.
    InFlight,
    /// A retry, not to be sent before this time.
    RetryAt(Timestamp),
}

/// A task that gave up: its latest attempt failed and nothing retries it. What
/// [`Ledger::dead`] lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dead {
    /// The first attempt.
    pub first: DelegationId,
    /// The last attempt, the one that failed.
    pub last: DelegationId,
    /// How many attempts were made.
    pub attempts: Attempt,
    /// To whom.
    pub target: String,
    /// How the last attempt failed.
    pub failure: LastFailure,
}

fn seconds<S: Serializer>(age: &Duration, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    // Milliseconds are enough for an age, and keep the JSON short.
    let millis = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
    serializer.serialize_f64(millis as f64 / 1000.0)
}

impl Ledger {
    /// Every delegation not settled yet (`queued`, retries waiting for their
    /// `not_before` included) queued at least `older_than` ago (all of them
    /// with `None`), oldest first: each with its first attempt, age, target,
    /// attempt, and why it waits.
    ///
    /// Served from the store's open hints ([`Index`](crate::store::Index)),
    /// each checked against its head, so a stale hint is never listed; the
    /// cost is a few reads per pending delegation, whatever the log's size. A
    /// store without an index (an older sled store before `migrate`) is
    /// scanned instead, with the same answer.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] for a
    /// damaged head met on the way.
    pub fn pending(&self, older_than: Option<Duration>) -> Result<Vec<Pending>, ReadError> {
        self.check_poisoned()?;
        let now = self.clock().now();
        let mut pending = Vec::new();
        for delegation in self.open_delegations()? {
            let age = now.since(delegation.queued_at);
            if older_than.is_some_and(|older_than| age < older_than) {
                continue;
            }
            let first = match delegation.retry_of {
                None => delegation.id.clone(),
                Some(_) => self
                    .back(delegation.clone())?
                    .first()
                    .map_or_else(|| delegation.id.clone(), |first| first.id.clone()),
            };
            let waiting = match delegation.not_before.filter(|at| *at > now) {
                Some(at) => Waiting::RetryAt(at),
                None => Waiting::InFlight,
            };
            pending.push(Pending {
                id: delegation.id,
                first,
                attempt: delegation.attempt,
                target: delegation.target,
                queued_at: delegation.queued_at,
                age,
                waiting,
            });
        }
        pending.sort_by(|a, b| {
            (a.queued_at.as_datetime(), a.id.as_str())
                .cmp(&(b.queued_at.as_datetime(), b.id.as_str()))
        });
        Ok(pending)
    }

    /// Every task that gave up: its latest attempt `failed`, and nothing retries
    /// it. Each with its first and last attempt, the attempt count, its target,
    /// and how the last attempt failed; in order of the failure, oldest first.
    ///
    /// Served from the store's dead hints, each checked against its head and its
    /// forward link, as [`Ledger::pending`] is from the open ones.
    ///
    /// # Errors
    /// As for [`Ledger::pending`].
    pub fn dead(&self) -> Result<Vec<Dead>, ReadError> {
        self.check_poisoned()?;
        let mut dead = Vec::new();
        let mut links = Links::default();
        for delegation in self.failed_delegations()? {
            if self.retry_of(&delegation.id, &mut links)?.is_some() {
                continue;
            }
            let Some(chain) = self.chain(&delegation.id)? else {
                continue;
            };
            let view = self.view(&chain);
            let Some(failure) = view.last_failure.filter(|_| view.exhausted) else {
                continue;
            };
            dead.push(Dead {
                first: view.first,
                last: view.latest,
                attempts: view.count,
                target: chain.latest.target,
                failure,
            });
        }
        dead.sort_by(|a, b| {
            (a.failure.at.as_datetime(), a.last.as_str())
                .cmp(&(b.failure.at.as_datetime(), b.last.as_str()))
        });
        Ok(dead)
    }

    /// Every delegation still `queued`, in store order, each read whole from its
    /// records (a scan of the whole log, which stops at the first damage): what
    /// the MCP tool `list_pending` reads. [`Ledger::pending`] answers from the
    /// index. (Recovery scans too, and keeps going past damage, which it
    /// reports delegation by delegation.)
    ///
    /// # Errors
    /// The first storage error or damaged delegation met.
    pub fn queued(&self) -> Result<Vec<Delegation>, ReadError> {
        let mut queued = Vec::new();
        for delegation in self.replay() {
            let delegation = delegation?;
            if delegation.state == State::Queued {
                queued.push(delegation);
            }
        }
        Ok(without_retried(queued))
    }

    /// The delegations whose head is `queued`: the verified open hints, or a
    /// scan without an index.
    ///
    /// The hints are listed first and the heads read after, so a hinted
    /// delegation may have been retried in between: its head then reads
    /// `failed`, and its retry's hint may be missing from the list already
    /// read. The task was pending all along, so its verified forward links
    /// are followed to the attempt that is queued now.
    fn open_delegations(&self) -> Result<Vec<Delegation>, ReadError> {
        let Some(index) = self.inner.store.index() else {
            return Ok(without_retried(self.hinted(Set::Open, State::Queued)?));
        };
        let (mut found, mut seen, mut links) = (Vec::new(), HashSet::new(), Links::default());
        for id in index.hinted(Set::Open) {
            let mut current = self.summary_of(&id?)?;
            while let Some(failed) = current.take_if(|now| now.state == State::Failed) {
                // Each verified link goes to an attempt one higher, so the walk ends.
                current = self
                    .retry_of(&failed.id, &mut links)?
                    .filter(|next| next.attempt == failed.attempt.saturating_add(1));
            }
            if let Some(queued) = current.filter(|now| now.state == State::Queued)
                && seen.insert(queued.id.clone())
            {
                found.push(queued);
            }
        }
        Ok(without_retried(found))
    }

    /// The delegations whose head is `failed`: the verified dead hints (a
    /// candidate still needs its forward link checked), or a scan without an
    /// index.
    fn failed_delegations(&self) -> Result<Vec<Delegation>, ReadError> {
        self.hinted(Set::Dead, State::Failed)
    }

    /// The delegations hinted in `set` whose head is in `state`; on a store
    /// without an index, every delegation in `state`, by a scan.
    fn hinted(&self, set: Set, state: State) -> Result<Vec<Delegation>, ReadError> {
        let Some(index) = self.inner.store.index() else {
            let mut found = Vec::new();
            for delegation in self.replay() {
                let delegation = delegation?;
                if delegation.state == state {
                    found.push(delegation);
                }
            }
            return Ok(found);
        };
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for id in index.hinted(set) {
            let id = id?;
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(delegation) = self
                .summary_of(&id)?
                .filter(|delegation| delegation.state == state)
            {
                found.push(delegation);
            }
        }
        Ok(found)
    }
}

/// `queued`, less each delegation another of them retries. The list was read
/// one delegation at a time, so one read `queued` may have been failed and
/// retried (one write) before its retry was read, `queued` too: it is not
/// queued any more, and its task is listed once, by its retry.
fn without_retried(queued: Vec<Delegation>) -> Vec<Delegation> {
    let retried: HashSet<DelegationId> = queued
        .iter()
        .filter_map(|delegation| delegation.retry_of.clone())
        .collect();
    if retried.is_empty() {
        return queued;
    }
    queued
        .into_iter()
        .filter(|delegation| !retried.contains(&delegation.id))
        .collect()
}
