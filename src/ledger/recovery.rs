//! Recovery: settling as `interrupted` every delegation a dead process left
//! `queued`, leaving alone the ones a live delivery (of this process, or under a live lease) owns.

use std::time::Duration;

use crate::delegation::Delegation;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Failed, FailureReason};
use crate::lifecycle::State;
use crate::store::Owner;

use super::Ledger;
use super::lease::Lease;
use super::stream::fold_stream;

/// The lease [`Ledger::recover`] holds while it settles what it took over, on a
/// store shared by several processes: if it dies midway, what it took is free
/// again this long after.
pub const RECOVERY_LEASE: Duration = Duration::from_secs(10);

/// The detail of the `failed` / `interrupted` that recovery writes for a
/// delegation a dead process left `queued`.
pub(crate) const INTERRUPTED: &str = "the process stopped before the outcome was known";

/// A delegation that recovery found and could not settle, and why. `E` is the
/// error of the recovery that ran: the ledger's [`Error`] for
/// [`Ledger::recover_all`], a dispatcher's for its recovery
/// ([`dispatch::Unrecovered`](crate::dispatch::Unrecovered)).
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", .id.as_ref().map_or_else(|| "an unreadable delegation".to_owned(), |id| format!("delegation `{id}`")))]
pub struct Unrecovered<E = Error> {
    /// The delegation, when it could be told (a damaged store key names none).
    pub id: Option<DelegationId>,
    /// Why it was not settled: damage in its history, a failed write, or (in a
    /// dispatcher's recovery) a dispatcher shut down.
    pub error: E,
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

/// The delegations recovery may settle: `queued`, claimed by no live delivery
/// of this process, and, on a shared store, taken over from dead owners.
pub(crate) struct Orphans {
    /// The delegations, in store order.
    pub(crate) found: Vec<Delegation>,
    /// The delegations whose history could not be read (or the takeover that
    /// failed), each with its error.
    pub(crate) damaged: Vec<Unrecovered>,
    /// On a shared store: the claims taken over.
    pub(crate) taken: Taken,
}

/// The lease and owner recovery took delegations over as, on a shared store.
#[derive(Clone, Default)]
pub(crate) struct Taken(Option<(Lease, Owner)>);

impl Taken {
    /// Ends the claim recovery took on `id`, once it is settled (a failure only
    /// leaves a row naming a settled delegation, which nothing takes over).
    pub(crate) fn release(&self, id: &DelegationId) {
        if let Some((lease, owner)) = &self.0
            && let Some(ownership) = lease.store().ownership()
        {
            let _ = ownership.release(*owner, id);
        }
    }
}

impl Ledger {
    /// Settles every delegation still `queued` as `failed` with reason
    /// [`FailureReason::Interrupted`]: the recovery for a process that died
    /// mid-delivery. Delegations a delivery of
    /// this process has [claimed](Ledger::claim) are live, not dead, and are left
    /// alone, so recovery may run at any time, even while a dispatcher delivers.
    ///
    /// On a store shared by several processes (PostgreSQL), recovery takes a
    /// lease of its own ([`RECOVERY_LEASE`]) and settles only what it takes over:
    /// delegations whose owner's lease ran out, or that nobody claims; the live
    /// deliveries of other processes are left alone.
    ///
    /// A delegation that another writer settles meanwhile is left as it settled.
    ///
    /// # Errors
    /// A storage error; delegations settled before it stay settled. A damaged
    /// delegation does not keep the others queued: every readable one is settled
    /// first, then the first damage met is returned. [`Ledger::recover_all`] says
    /// what happened to each.
    pub fn recover(&self) -> Result<Vec<DelegationId>> {
        let (settled, damaged, unwritten) = self.recover_parts(None);
        match unwritten.into_iter().chain(damaged).next() {
            Some(failure) => Err(failure.error),
            None => Ok(settled),
        }
    }

    /// As [`Ledger::recover`], but it reports every delegation it could not
    /// settle, with its id and its own error, instead of the first error.
    pub fn recover_all(&self) -> Report {
        let (settled, mut failed, unwritten) = self.recover_parts(None);
        failed.extend(unwritten);
        Report { settled, failed }
    }

    /// As [`Ledger::recover_all`], taking over under `lease` (see
    /// [`Ledger::lease`]) instead of a lease of its own; with `None`, as
    /// [`Ledger::recover_all`].
    pub fn recover_all_leased(&self, lease: Option<&Lease>) -> Report {
        let (settled, mut failed, unwritten) = self.recover_parts(lease);
        failed.extend(unwritten);
        Report { settled, failed }
    }

    /// Recovery: what it settled, what it could not read, and what it could not
    /// write. Without `lease`, it takes (and ends) a lease of its own on a
    /// shared store.
    fn recover_parts(
        &self,
        lease: Option<&Lease>,
    ) -> (Vec<DelegationId>, Vec<Unrecovered>, Vec<Unrecovered>) {
        let own = match lease {
            Some(_) => None,
            None => match self.lease(RECOVERY_LEASE) {
                Ok(own) => own,
                Err(error) => {
                    let stopped = vec![Unrecovered { id: None, error }];
                    return (Vec::new(), stopped, Vec::new());
                }
            },
        };
        let orphans = self.orphans(lease.or(own.as_ref()));
        let mut settled = Vec::with_capacity(orphans.found.len());
        let mut unwritten = Vec::new();
        for delegation in &orphans.found {
            if self.is_claimed(&delegation.id) {
                continue;
            }
            match self.interrupt(&delegation.id, &orphans.taken) {
                Ok(true) => settled.push(delegation.id.clone()),
                Ok(false) => {}
                Err(error) => unwritten.push(Unrecovered {
                    id: Some(delegation.id.clone()),
                    error,
                }),
            }
        }
        if let Some(own) = own {
            let _ = own.retire();
        }
        // Stale hints cost a read each until removed; a failure here changes
        // no answer (readers verify every hint), so it is not reported.
        let _ = self.clean_index();
        (settled, orphans.damaged, unwritten)
    }

    /// Settles the orphan `id` as `failed` / `interrupted` (detail
    /// [`INTERRUPTED`]) and, once it is settled, by this write or by another
    /// writer first, ends the claim recovery took over on it (`taken`).
    /// `Ok(true)` if this write settled it, `Ok(false)` if another writer had.
    ///
    /// # Errors
    /// The write's error other than [`Error::AlreadySettled`]; the claim is
    /// kept then.
    pub(crate) fn interrupt(&self, id: &DelegationId, taken: &Taken) -> Result<bool> {
        let event = Event::Failed(Failed {
            reason: FailureReason::Interrupted,
            detail: Some(INTERRUPTED.to_owned()),
        });
        match self.record(id, event) {
            Ok(_) => {
                taken.release(id);
                Ok(true)
            }
            Err(Error::AlreadySettled { .. }) => {
                taken.release(id);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Every delegation a dead process left: `queued` and not claimed by a live
    /// delivery of this process, in store order; and every delegation whose
    /// history could not be read, with its error. Under a `lease` (a shared
    /// store), only those taken over for its owner: claimed by an owner whose
    /// lease ran out, or by nobody.
    pub(crate) fn orphans(&self, lease: Option<&Lease>) -> Orphans {
        let mut orphans = Orphans {
            found: Vec::new(),
            damaged: Vec::new(),
            taken: Taken::default(),
        };
        // A poisoned ledger reads nothing, so it recovers nothing.
        if let Err(error) = self.check_poisoned() {
            orphans.damaged.push(Unrecovered {
                id: None,
                error: error.into(),
            });
            return orphans;
        }
        for stream in self.inner.store.scan() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    orphans.damaged.push(Unrecovered {
                        id: None,
                        error: error.into(),
                    });
                    continue;
                }
            };
            match fold_stream(&stream, self.format()).map(|(_, fold)| fold.into_delegation()) {
                Ok(Some(delegation))
                    if delegation.state == State::Queued && !self.is_claimed(&delegation.id) =>
                {
                    orphans.found.push(delegation);
                }
                Ok(_) => {}
                Err(error) => orphans.damaged.push(Unrecovered {
                    id: Some(stream.id),
                    error: error.into(),
                }),
            }
        }
        let Some(lease) = lease else {
            return orphans;
        };
        let Some(ownership) = lease.store().ownership() else {
            return orphans;
        };
        let owner = lease.owner();
        let candidates: Vec<DelegationId> = orphans.found.iter().map(|d| d.id.clone()).collect();
        match ownership.take_over(owner, &candidates) {
            Ok(taken) => {
                let taken: std::collections::HashSet<DelegationId> = taken.into_iter().collect();
                orphans.found.retain(|d| taken.contains(&d.id));
            }
            Err(error) => {
                orphans.found.clear();
                orphans.damaged.push(Unrecovered { id: None, error });
            }
        }
        orphans.taken = Taken(Some((lease.clone(), owner)));
        orphans
    }
}
