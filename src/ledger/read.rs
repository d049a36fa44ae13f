//! The reads: `status`, one read of a head; `history`, `delegation`, `replay`
//! and `first_attempt`, which fold records and check them against heads.

use crate::delegation::{Delegation, Fold, Status};
use crate::error::ReadError;
use crate::event::{DelegationId, Record};
use crate::store::{self, Head, Lent};

use super::Ledger;
use super::stream::{HeadCheck, fold_stream, head_status, replay_lent, summary};

impl Ledger {
    /// The status of delegation `id`; [`StatusKind::NotFound`](crate::StatusKind)
    /// if the log has never seen it. One read: the delegation's head.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] if its history is damaged.
    pub fn status(&self, id: &DelegationId) -> Result<Status, ReadError> {
        self.check_poisoned()?;
        if self.format() < store::HEAD_FORMAT {
            // A head of format 1 holds no summary: the history is folded.
            return Ok(match self.resume(id)?.into_delegation() {
                Some(delegation) => delegation.into_status(),
                None => Status::not_found(id.clone()),
            });
        }
        // The status straight from the head's summary, read where the store
        // keeps it: no delegation, no fold.
        let mut status = None;
        self.inner.store.read_head(id, &mut |seq, summary| {
            status = Some(head_status(id, seq, summary)?);
            Ok(())
        })?;
        Ok(status.unwrap_or_else(|| Status::not_found(id.clone())))
    }

    /// Delegation `id` rebuilt from its records, or `None` if it has none.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] if its history is damaged.
    pub fn delegation(&self, id: &DelegationId) -> Result<Option<Delegation>, ReadError> {
        Ok(self.read(id)?.1.into_delegation())
    }

    /// The records of delegation `id`, in order, each checked.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] if its history is damaged.
    pub fn history(&self, id: &DelegationId) -> Result<Vec<Record>, ReadError> {
        Ok(self.read(id)?.0)
    }

    /// Every delegation, rebuilt from the log alone, one at a time in store order.
    /// A damaged delegation gives an error item and the replay goes on.
    ///
    /// A poisoned ledger yields one [`ReadError::Poisoned`] and nothing else.
    pub fn replay(&self) -> impl Iterator<Item = Result<Delegation, ReadError>> + '_ {
        let poisoned = self.check_poisoned().err();
        let scan: Box<dyn Iterator<Item = Result<Lent, ReadError>> + Send + '_> =
            if poisoned.is_some() {
                Box::new(std::iter::empty())
            } else {
                self.inner.store.scan_lent()
            };
        poisoned.map(Err).into_iter().chain(scan.filter_map(|lent| {
            lent.and_then(|lent| replay_lent(lent, self.format()))
                .transpose()
        }))
    }

    /// The first attempt of delegation `id`'s task: `id` itself, or, for a retry,
    /// the delegation its chain of `retry_of` links starts from. This is the
    /// message id a redelivery keeps, read from the log, so it holds across any
    /// number of crashes. `None` if the log has never seen `id`.
    ///
    /// # Errors
    /// [`ReadError::Storage`]; [`ReadError::Corrupt`] if a history on the way
    /// is damaged (each is read whole and folded, as a redelivery's message id
    /// must not rest on a damaged attempt), or a link names a delegation the
    /// log does not hold or one whose attempt is not one less.
    pub fn first_attempt(&self, id: &DelegationId) -> Result<Option<DelegationId>, ReadError> {
        let Some(asked) = self.delegation(id)? else {
            return Ok(None);
        };
        let attempts = self.back_by(asked, |id| self.delegation(id))?;
        Ok(attempts.into_iter().next().map(|first| first.id))
    }

    /// Reads, decodes and folds one delegation's whole history, and checks its
    /// head against it: what `history`, `delegation` and recovery read.
    pub(super) fn read(&self, id: &DelegationId) -> Result<(Vec<Record>, Fold), ReadError> {
        self.check_poisoned()?;
        fold_stream(&self.inner.store.history(id)?, self.format())
    }

    /// The store's format ([`Store::format`]).
    pub(super) fn format(&self) -> u8 {
        self.inner.store.format()
    }

    /// The fold of `id` as its head describes it, one read: where every write
    /// starts, and what `status` answers from. A store of format 1, whose heads
    /// hold no summary, is folded from its history instead.
    pub(super) fn resume(&self, id: &DelegationId) -> Result<Fold, ReadError> {
        let head = self.inner.store.head(id)?;
        self.resume_from(id, head.as_ref())
    }

    /// The fold of `id` from `head`, as [`Ledger::resume`] makes it from the
    /// head it reads: no head is a delegation with no records.
    pub(super) fn resume_from(
        &self,
        id: &DelegationId,
        head: Option<&Head>,
    ) -> Result<Fold, ReadError> {
        let Some(head) = head else {
            return Ok(Fold::trusting(id.clone()));
        };
        match summary(id, head, self.format(), HeadCheck::Checksummed)? {
            Some(delegation) => Ok(Fold::resume(delegation)),
            None => Ok(self.read(id)?.1),
        }
    }
}
