//! Settling what a dead process left `queued`: as interrupted, or as interrupted
//! and redelivered, in one atomic write, under the first attempt's message id.

use std::sync::Arc;

use super::delivery::Delivery;
use super::receipt::Settle;
use super::supervisor::Admission;
use super::{Error, Inner, Receipt, blocking, ids};
use crate::delegation::Delegation;
use crate::event::{DelegationId, Failed, FailureReason, Queued};
use crate::ledger::{self, Lease, Ledger, Recorded, Taken};

/// What recovery holds while it redelivers on a shared store: the dispatcher's
/// lease (which claims each redelivery), and the claims it took over.
struct Taking {
    lease: Option<Lease>,
    taken: Taken,
}

/// How many redelivery ids recovery tries for one delegation when each is taken
/// by another writer between its look at the log and its write.
const REDELIVERY_ID_TRIES: usize = 16;

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

/// One delegation settled by recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The delegation the dead process left `queued`; now failed / interrupted.
    pub id: DelegationId,
    /// The redelivery, under policy [`Recovery::Redeliver`].
    pub redelivery: Option<Receipt>,
}

/// A delegation recovery found and could not settle (or redeliver), and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", .id.as_ref().map_or_else(|| "an unreadable delegation".to_owned(), |id| format!("delegation `{id}`")))]
pub struct Unrecovered {
    /// The delegation, when it could be told (a damaged store key names none).
    pub id: Option<DelegationId>,
    /// Why: damage in its history, a failed write, or a dispatcher shut down.
    pub error: Error,
}

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

/// [`Recovery::Interrupt`]: settles every orphan as interrupted (on a shared
/// store, every one taken over under `lease`).
pub(super) async fn interrupt(ledger: &Ledger, lease: Option<Lease>) -> Report {
    let ledger = ledger.clone();
    match blocking("ledger call", move || {
        Ok::<_, crate::Error>(ledger.recover_all_leased(lease.as_ref()))
    })
    .await
    {
        Ok(report) => Report {
            recovered: report
                .settled
                .into_iter()
                .map(|id| Recovered {
                    id,
                    redelivery: None,
                })
                .collect(),
            failed: report.failed.into_iter().map(Unrecovered::from).collect(),
        },
        Err(error) => Report::stopped(error.into()),
    }
}

/// [`Recovery::Redeliver`]: settles every orphan as interrupted and redelivers it
/// (on a shared store, every one taken over under `lease`, whose owner then
/// claims each redelivery).
pub(super) async fn redeliver(inner: &Arc<Inner>, lease: Option<Lease>) -> Report {
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
        match redeliver_one(inner, original, held).await {
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

/// Settles `original` as interrupted and queues its redelivery in one atomic
/// write, then delivers the redelivery. `None` if it is no longer an orphan: a
/// live delivery of this process claimed it, or another writer settled it.
async fn redeliver_one(
    inner: &Arc<Inner>,
    original: Delegation,
    held: Taking,
) -> Result<Option<Recovered>, Error> {
    let admission = inner.supervisor.admit()?;
    let (settle, settled) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let original_id = original.id.clone();
    let worker = Arc::clone(inner);
    // As in `delegate`: the write and the spawn run to the end together.
    let queued = blocking("redelivering", move || {
        requeue(&worker, admission, original, &held, settle, &runtime)
    })
    .await?;
    Ok(queued.map(|(id, recorded)| Recovered {
        id: original_id,
        redelivery: Some(Receipt::queued(id, recorded.at, settled)),
    }))
}

/// Redelivers `original`, on a blocking thread: claims a free redelivery id,
/// writes the original's failure and the redelivery's `queued` together, and
/// spawns the delivery. Answers the redelivery's id and `queued`, or `None` if
/// `original` is not an orphan any more.
fn requeue(
    inner: &Arc<Inner>,
    admission: Admission,
    original: Delegation,
    held: &Taking,
    settle: Settle,
    runtime: &tokio::runtime::Handle,
) -> Result<Option<(DelegationId, Recorded)>, Error> {
    // Unclaimed and queued when read, so no live delivery can own it now: one
    // starts only by recording `queued`, which it already is.
    if inner.ledger.is_claimed(&original.id) {
        return Ok(None);
    }
    let first = inner
        .ledger
        .first_attempt(&original.id)?
        .unwrap_or_else(|| original.id.clone());
    // One pass over the redelivery numbers, from the original's attempt up: a
    // number whose id the log holds is skipped; one that another writer takes
    // between the look and the write is a lost race, and the next is tried.
    let mut lost_races = 0;
    for n in original.attempt..=u64::MAX {
        let id = ids::redelivery(&first, n)?;
        if !inner.ledger.store().history(&id)?.entries.is_empty() {
            continue;
        }
        let claim = match inner.ledger.claim_leased(&id, held.lease.as_ref()) {
            Ok(claim) => claim,
            // Another live dispatcher holds this id: a lost race for it.
            Err(crate::Error::Claimed { .. }) => {
                lost_races += 1;
                if lost_races == REDELIVERY_ID_TRIES {
                    break;
                }
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let failed = Failed {
            reason: FailureReason::Interrupted,
            detail: Some(format!("redelivered as {id}")),
        };
        let queued = Queued {
            task: original.task.clone(),
            ..Queued::new(original.source.clone(), original.target.clone())
        };
        match inner.ledger.retry(&original.id, failed, &id, queued) {
            Ok(retried) => {
                held.taken.release(&original.id);
                let delivery = Delivery {
                    id: id.clone(),
                    message_id: first,
                    source: original.source,
                    target: original.target,
                    task: Ok(original.task),
                    attempt: original.attempt.saturating_add(1),
                };
                inner.start(admission, delivery, claim, settle, runtime);
                return Ok(Some((id, retried.queued)));
            }
            Err(
                crate::Error::AlreadySettled { id: refused, .. }
                | crate::Error::IllegalTransition { id: refused, .. },
            ) if refused == original.id => {
                let _ = claim.release();
                held.taken.release(&original.id);
                return Ok(None);
            }
            Err(
                crate::Error::AlreadySettled { id: refused, .. }
                | crate::Error::IllegalTransition { id: refused, .. },
            ) if refused == id => {
                let _ = claim.release();
                lost_races += 1;
                if lost_races == REDELIVERY_ID_TRIES {
                    break;
                }
            }
            Err(error) => {
                let _ = claim.release();
                return Err(error.into());
            }
        }
    }
    Err(Error::NoRedeliveryId {
        original: original.id,
        tries: REDELIVERY_ID_TRIES,
    })
}
