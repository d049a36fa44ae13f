//! Recovery: settling as `interrupted` every delegation a dead process left
//! `queued`, and leaving alone the ones a live delivery of this process claims.

use crate::delegation::Delegation;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Failed, FailureReason};
use crate::lifecycle::State;

use super::Ledger;
use super::stream::fold_stream;

/// A delegation that recovery found and could not settle, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", .id.as_ref().map_or_else(|| "an unreadable delegation".to_owned(), |id| format!("delegation `{id}`")))]
pub struct Unrecovered {
    /// The delegation, when it could be told (a damaged store key names none).
    pub id: Option<DelegationId>,
    /// Why it was not settled: damage in its history, or a failed write.
    pub error: Error,
}

/// What [`Ledger::recover_all`] did: every delegation it settled, and every one it
/// could not, each with its own error.
#[derive(Debug, Default)]
pub struct Report {
    /// Settled as `failed` / `interrupted`, in store order.
    pub settled: Vec<DelegationId>,
    /// Not settled: damaged or not written, in store order.
    pub failed: Vec<Unrecovered>,
}

impl Ledger {
    /// Settles every delegation still `queued` as `failed` with reason
    /// [`FailureReason::Interrupted`]: the recovery for a process that died
    /// mid-delivery. Delegations a delivery of
    /// this process has [claimed](Ledger::claim) are live, not dead, and are left
    /// alone, so recovery may run at any time, even while a dispatcher delivers.
    ///
    /// A delegation that another writer settles meanwhile is left as it settled.
    ///
    /// # Errors
    /// A storage error; delegations settled before it stay settled. A damaged
    /// delegation does not keep the others queued: every readable one is settled
    /// first, then the first damage met is returned. [`Ledger::recover_all`] says
    /// what happened to each.
    pub fn recover(&self) -> Result<Vec<DelegationId>> {
        let (settled, damaged, unwritten) = self.recover_parts();
        match unwritten.into_iter().chain(damaged).next() {
            Some(failure) => Err(failure.error),
            None => Ok(settled),
        }
    }

    /// As [`Ledger::recover`], but it reports every delegation it could not
    /// settle, with its id and its own error, instead of the first error.
    pub fn recover_all(&self) -> Report {
        let (settled, mut failed, unwritten) = self.recover_parts();
        failed.extend(unwritten);
        Report { settled, failed }
    }

    /// Recovery: what it settled, what it could not read, and what it could not
    /// write.
    fn recover_parts(&self) -> (Vec<DelegationId>, Vec<Unrecovered>, Vec<Unrecovered>) {
        let (orphans, damaged) = self.orphans();
        let mut settled = Vec::with_capacity(orphans.len());
        let mut unwritten = Vec::new();
        for delegation in orphans {
            if self.is_claimed(&delegation.id) {
                continue;
            }
            let event = Event::Failed(Failed {
                reason: FailureReason::Interrupted,
                detail: Some("the process stopped before the outcome was known".to_owned()),
            });
            match self.record(&delegation.id, event) {
                Ok(_) => settled.push(delegation.id),
                Err(Error::AlreadySettled { .. }) => {}
                Err(error) => unwritten.push(Unrecovered {
                    id: Some(delegation.id),
                    error,
                }),
            }
        }
        (settled, damaged, unwritten)
    }

    /// Every delegation a dead process left: `queued` and not claimed by a live
    /// delivery of this process, in store order; and every delegation whose
    /// history could not be read, with its error.
    pub(crate) fn orphans(&self) -> (Vec<Delegation>, Vec<Unrecovered>) {
        let mut orphans = Vec::new();
        let mut damaged = Vec::new();
        // A poisoned ledger reads nothing, so it recovers nothing.
        if let Err(error) = self.check_poisoned() {
            damaged.push(Unrecovered { id: None, error });
            return (orphans, damaged);
        }
        for stream in self.inner.store.scan() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    damaged.push(Unrecovered { id: None, error });
                    continue;
                }
            };
            match fold_stream(&stream, self.format()).map(|(_, fold)| fold.into_delegation()) {
                Ok(Some(delegation))
                    if delegation.state == State::Queued && !self.is_claimed(&delegation.id) =>
                {
                    orphans.push(delegation);
                }
                Ok(_) => {}
                Err(error) => damaged.push(Unrecovered {
                    id: Some(stream.id),
                    error,
                }),
            }
        }
        (orphans, damaged)
    }
}
