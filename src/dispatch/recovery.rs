//! Settling what a dead process left `queued`: as interrupted, or as interrupted
//! and redelivered, in one atomic write, under the first attempt's message id;
//! and resuming the retries that were waiting out their backoff.
//!
//! Why a retry's `not_before` decides: a dispatcher writes a retry's `queued`
//! (with `not_before`) before its backoff, and sends nothing before
//! `not_before`. So a retry read while its `not_before` is still ahead was
//! certainly never sent; resuming it (sending it at its time) can neither lose
//! the task nor send it twice, and settling it as `interrupted` would say
//! "unknown" of what is known. Once `not_before` has passed, the dead process
//! may have sent it, and the target may have it: that is any orphan's case,
//! and the [`Recovery`] policy decides, as for any other. The clock is the
//! ledger's, which wrote `not_before`.

use std::sync::Arc;

use super::delivery::Delivery;
use super::receipt::Settle;
use super::requeue::{Failing, Requeued};
use super::supervisor::Admission;
use super::{Error, Inner, Receipt, blocking};
use crate::delegation::Delegation;
use crate::event::{DelegationId, Failed, FailureReason, Queued, Timestamp};
use crate::ledger::{self, Lease, Ledger, Taken};

/// What recovery holds while it redelivers on a shared store: the dispatcher's
/// lease (which claims each redelivery), and the claims it took over.
struct Taking {
    lease: Option<Lease>,
    taken: Taken,
}

/// Which recovery to run for delegations a dead process left `queued`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// Settle each as `failed`, reason `interrupted` ([`Ledger::recover`]).
    #[default]
    Interrupt,
    /// Settle each as `failed`, reason `interrupted`, detail `redelivered as
    /// <new id>`, and, in the same atomic write, queue its redelivery: a retry
    /// (`retry_of`, `attempt`) sent with the first attempt's id as the message id.
    /// See the [module docs](super#recovery) for the ids.
    Redeliver,
}

/// One delegation settled (or resumed) by recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The delegation the dead process left `queued`; now failed /
    /// interrupted, unless it was resumed.
    pub id: DelegationId,
    /// Its next attempt: the redelivery under [`Recovery::Redeliver`], or,
    /// under [`Recovery::Interrupt`], the retry the dispatcher's retry policy
    /// queued.
    pub redelivery: Option<Receipt>,
    /// A retry that was still waiting for its `not_before`, resumed as it
    /// was (`id` itself, not settled): its receipt.
    pub resumed: Option<Receipt>,
}

/// A delegation recovery found and could not settle (or redeliver), and why:
/// the ledger's [`Unrecovered`](ledger::Unrecovered), with the dispatcher's
/// [`Error`].
pub type Unrecovered = ledger::Unrecovered<Error>;

impl From<ledger::Unrecovered> for Unrecovered {
    fn from(unrecovered: ledger::Unrecovered) -> Self {
        Unrecovered {
            id: unrecovered.id,
            error: Error::Ledger(unrecovered.error),
        }
    }
}

/// What [`Dispatcher::recover`](super::Dispatcher::recover) did with each
/// delegation a dead process left.
#[derive(Debug, Default)]
pub struct Report {
    /// Settled (and, under [`Recovery::Redeliver`], redelivered), in store order.
    pub recovered: Vec<Recovered>,
    /// Found and not settled, each with its own error, in store order.
    pub failed: Vec<Unrecovered>,
}

impl Report {
    /// Whether every delegation recovery found was settled.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// A report of one failure that stopped recovery before it found anything.
    pub(super) fn stopped(error: Error) -> Self {
        Report {
            recovered: Vec::new(),
            failed: vec![Unrecovered { id: None, error }],
        }
    }
}

/// Recovery under `policy`: finds every orphan (on a shared store, every one
/// taken over under `lease`), then settles each on its own. A retry still
/// waiting for its `not_before` is resumed, whatever the policy; any other
/// orphan is settled as `interrupted` and then, under [`Recovery::Interrupt`],
/// retried if the dispatcher's retry policy retries `interrupted`, or, under
/// [`Recovery::Redeliver`], redelivered.
pub(super) async fn recover(inner: &Arc<Inner>, policy: Recovery, lease: Option<Lease>) -> Report {
    let ledger = inner.ledger.clone();
    let taking = lease.clone();
    let orphans = blocking("ledger call", move || {
        Ok::<_, crate::Error>(ledger.orphans(taking.as_ref()))
    })
    .await;
    let orphans = match orphans {
        Ok(found) => found,
        Err(error) => return Report::stopped(error.into()),
    };
    let mut report = Report {
        recovered: Vec::new(),
        failed: orphans.damaged.into_iter().map(Unrecovered::from).collect(),
    };
    for original in orphans.found {
        let id = original.id.clone();
        let held = Taking {
            lease: lease.clone(),
            taken: orphans.taken.clone(),
        };
        let now = inner.ledger.clock().now();
        let waiting = original.retry_of.is_some() && original.not_before.is_some_and(|at| at > now);
        let settled = if waiting {
            resume(inner, original, held).await
        } else {
            match policy {
                Recovery::Interrupt => interrupt_one(inner, original, held).await,
                Recovery::Redeliver => redeliver_one(inner, original, held).await,
            }
        };
        match settled {
            Ok(Some(recovered)) => report.recovered.push(recovered),
            Ok(None) => {}
            Err(error) => report.failed.push(Unrecovered {
                id: Some(id),
                error,
            }),
        }
    }
    report
}

/// The task `attempt` belongs to: its first attempt's id (the `messageId`)
/// and when that was queued (where the retry policy's deadline counts from).
fn task_of(ledger: &Ledger, attempt: &Delegation) -> Result<(DelegationId, Timestamp), Error> {
    let first = ledger
        .first_attempt(&attempt.id)?
        .unwrap_or_else(|| attempt.id.clone());
    let started = match ledger.delegation(&first)? {
        Some(first) => first.queued_at,
        None => attempt.queued_at,
    };
    Ok((first, started))
}

/// One orphan in hand, on a blocking thread: what [`settle_one`] gives each
/// way of settling it.
struct Orphan<A> {
    /// The dispatcher, to write through and to start deliveries on.
    worker: Arc<Inner>,
    /// The delegation a dead process left `queued`, claimed by nobody here.
    delegation: Delegation,
    /// Its task's first attempt (the `messageId`) and when that was queued.
    first: DelegationId,
    started: Timestamp,
    /// Its admission: [`Admission`], or `Option<Admission>` where settling
    /// needs none.
    admission: A,
    /// The receipt's two ends, for the delivery it may start.
    settle: Settle,
    settled: tokio::sync::oneshot::Receiver<Result<super::Settled, Error>>,
    runtime: tokio::runtime::Handle,
    /// What recovery holds: the lease and the claims it took over.
    held: Taking,
}

/// What every way of settling one orphan starts with, said once: admission (by
/// `admit`, which says whether settling needs it), a receipt channel, the
/// runtime, and then, on a blocking thread that runs to the end: `None` if a
/// live delivery of this process claimed it meanwhile, else its task (see
/// [`task_of`]) and `settle` with the orphan in hand.
async fn settle_one<A: Send + 'static>(
    inner: &Arc<Inner>,
    what: &'static str,
    delegation: Delegation,
    held: Taking,
    admit: fn(Result<Admission, Error>) -> Result<A, Error>,
    settle: impl FnOnce(Orphan<A>) -> Result<Option<Recovered>, Error> + Send + 'static,
) -> Result<Option<Recovered>, Error> {
    let admission = admit(inner.supervisor.admit().await)?;
    let (sender, settled) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let worker = Arc::clone(inner);
    blocking(what, move || {
        // Unclaimed and queued when read, so no live delivery can own it now: one
        // starts only by recording `queued`, which it already is.
        if worker.ledger.is_claimed(&delegation.id) {
            return Ok(None);
        }
        let (first, started) = task_of(&worker.ledger, &delegation)?;
        settle(Orphan {
            worker,
            delegation,
            first,
            started,
            admission,
            settle: sender,
            settled,
            runtime,
            held,
        })
    })
    .await
}

impl<A> Orphan<A> {
    /// The orphan with `admission`, where settling it needed none and its
    /// next attempt does.
    fn admitted(self, admission: Admission) -> Orphan<Admission> {
        let Orphan {
            worker,
            delegation,
            first,
            started,
            admission: _,
            settle,
            settled,
            runtime,
            held,
        } = self;
        Orphan {
            worker,
            delegation,
            first,
            started,
            admission,
            settle,
            settled,
            runtime,
            held,
        }
    }
}

impl Orphan<Admission> {
    /// Settles the orphan as `failed` (`failed` is given its next attempt's id)
    /// and queues that next attempt, due at `not_before`, in one write
    /// ([`Inner::requeue`]); then ends the claim recovery took over on the
    /// orphan and delivers the next attempt under the first attempt's message
    /// id. `None` if another writer settled the orphan first.
    fn next_attempt(
        self,
        failed: impl Fn(&DelegationId) -> Failed,
        not_before: Option<Timestamp>,
    ) -> Result<Option<Recovered>, Error> {
        let Orphan {
            worker,
            delegation: original,
            first,
            started,
            admission,
            settle,
            settled,
            runtime,
            held,
        } = self;
        let failing = Failing {
            id: &original.id,
            attempt: original.attempt,
            first: &first,
        };
        let queued = Queued {
            task: original.task.clone(),
            not_before,
            ..Queued::new(original.source.clone(), original.target.clone())
        };
        match worker.requeue(&failing, held.lease.as_ref(), failed, &queued)? {
            Requeued::Queued { id, claim, retried } => {
                held.taken.release(&original.id);
                let delivery = Delivery {
                    id: id.clone(),
                    message_id: first,
                    source: original.source,
                    target: original.target,
                    task: Ok(original.task),
                    attempt: retried.attempt,
                    started,
                    not_before,
                };
                worker.start(admission, delivery, claim, settle, &runtime);
                Ok(Some(Recovered {
                    id: original.id,
                    redelivery: Some(Receipt::queued(id, retried.queued.at, settled)),
                    resumed: None,
                }))
            }
            Requeued::Settled => {
                held.taken.release(&original.id);
                Ok(None)
            }
        }
    }
}

/// Resumes a retry whose `not_before` had not come when recovery read it: it
/// was certainly never sent (a dispatcher sends nothing before then), so it is
/// neither interrupted nor redelivered, only delivered at its time, in a task
/// the dispatcher tracks. `None` if a live delivery claimed it meanwhile.
async fn resume(
    inner: &Arc<Inner>,
    waiting: Delegation,
    held: Taking,
) -> Result<Option<Recovered>, Error> {
    settle_one(
        inner,
        "resuming a retry",
        waiting,
        held,
        |a| a,
        |orphan| {
            let Orphan {
                worker,
                delegation: waiting,
                first,
                started,
                admission,
                settle,
                settled,
                runtime,
                held,
            } = orphan;
            // On a shared store the claim taken over is this owner's now; the
            // delivery's claim keeps it, and ends it once the outcome is recorded.
            let claim = worker
                .ledger
                .claim_leased(&waiting.id, held.lease.as_ref())?;
            let id = waiting.id.clone();
            let queued_at = waiting.queued_at;
            let delivery = Delivery {
                id: waiting.id,
                message_id: first,
                source: waiting.source,
                target: waiting.target,
                task: Ok(waiting.task),
                attempt: waiting.attempt,
                started,
                not_before: waiting.not_before,
            };
            worker.start(admission, delivery, claim, settle, &runtime);
            Ok(Some(Recovered {
                id: id.clone(),
                redelivery: None,
                resumed: Some(Receipt::queued(id, queued_at, settled)),
            }))
        },
    )
    .await
}

/// [`Recovery::Interrupt`] for one orphan: settles it as interrupted; and when
/// the dispatcher's retry policy retries `interrupted` (only with
/// [`Retry::retry_unknown`](super::Retry::retry_unknown)) and the task has
/// attempts and time left, queues its next attempt in the same write and
/// delivers that at its `not_before`, as after a live failure. It needs no
/// admission to settle, only to retry.
async fn interrupt_one(
    inner: &Arc<Inner>,
    original: Delegation,
    held: Taking,
) -> Result<Option<Recovered>, Error> {
    settle_one(
        inner,
        "recovering",
        original,
        held,
        |a| Ok(a.ok()),
        |mut orphan| {
            let now = orphan.worker.ledger.clock().now();
            let plan = orphan
                .worker
                .options
                .retry
                .plan(
                    FailureReason::Interrupted,
                    None,
                    orphan.delegation.attempt,
                    now.since(orphan.started),
                    &orphan.first,
                )
                .map(|wait| now.after(wait));
            if let (Some(not_before), Some(admission)) = (plan, orphan.admission.take()) {
                let failed = |next: &DelegationId| Failed {
                    reason: FailureReason::Interrupted,
                    detail: Some(format!("{}; retried as {next}", ledger::INTERRUPTED)),
                };
                return orphan
                    .admitted(admission)
                    .next_attempt(failed, Some(not_before));
            }
            let Orphan {
                worker,
                delegation: original,
                held,
                ..
            } = orphan;
            let settled = worker.ledger.interrupt(&original.id, &held.taken)?;
            Ok(settled.then(|| Recovered {
                id: original.id,
                redelivery: None,
                resumed: None,
            }))
        },
    )
    .await
}

/// [`Recovery::Redeliver`] for one orphan: claims a free redelivery id, writes
/// the original's failure and the redelivery's `queued` in one atomic write,
/// and delivers the redelivery. `None` if it is no longer an orphan: a live
/// delivery of this process claimed it, or another writer settled it.
async fn redeliver_one(
    inner: &Arc<Inner>,
    original: Delegation,
    held: Taking,
) -> Result<Option<Recovered>, Error> {
    // As in `delegate`: the write and the spawn run to the end together.
    settle_one(
        inner,
        "redelivering",
        original,
        held,
        |a| a,
        |orphan| {
            let failed = |id: &DelegationId| Failed {
                reason: FailureReason::Interrupted,
                detail: Some(format!("redelivered as {id}")),
            };
            orphan.next_attempt(failed, None)
        },
    )
    .await
}
