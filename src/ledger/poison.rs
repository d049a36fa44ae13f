//! Poisoning: after a failed write or flush the ledger refuses every write and
//! read until it is reopened.

use crate::error::{Error, ReadError, Shared};

use super::Ledger;

impl Ledger {
    /// [`Error::Poisoned`] once a write or flush has failed. Reads refuse too: what
    /// the store shows after a failed flush may include writes that never became
    /// durable, and a crash would undo them, so the ledger serves nothing until it
    /// is reopened and reads only what survived.
    pub(crate) fn check_poisoned(&self) -> Result<(), ReadError> {
        match self.inner.poisoned.get() {
            Some(cause) => Err(ReadError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the ledger with `error` as the cause, and returns the error.
    pub(crate) fn poison(&self, error: Error) -> Error {
        let _ = self.inner.poisoned.set(Shared::new(error.clone()));
        error
    }
}
