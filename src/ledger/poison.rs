//! Poisoning: after a failed write or flush the ledger refuses every write and
//! read until it is reopened.

use crate::error::{Error, ReadError, Shared};

use super::Ledger;

impl Ledger {
    /// [`ReadError::Poisoned`] once a write or flush has failed (an
    /// [`Error::Poisoned`] where a write asks). Reads refuse too: what
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
        // A writer refused by a failed group flush is told `Poisoned`, whose
        // cause is the flush's own error: that, not the refusal, is the cause.
        let cause = match &error {
            Error::Poisoned { cause } => cause.clone(),
            other => Shared::new(other.clone()),
        };
        let _ = self.inner.poisoned.set(cause);
        error
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::error::{Error, ReadError, Shared, StorageError};
    use crate::ledger::{Ledger, Options};
    use crate::store::Memory;

    #[test]
    fn a_ledger_poisoned_by_a_refusal_keeps_the_refusals_cause_not_the_refusal() {
        let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new());
        let flush = Error::from(std::io::Error::other("the disk went away"));
        // What a writer waiting on a failed group flush is told, and passes on.
        let refused = Error::Poisoned {
            cause: Shared::new(flush),
        };
        let _ = ledger.poison(refused);
        let Err(ReadError::Poisoned { cause }) = ledger.check_poisoned() else {
            panic!("the ledger should be poisoned");
        };
        assert!(
            matches!(&*cause, Error::Storage(StorageError::Io(io)) if io.to_string() == "the disk went away"),
            "the cause should be the flush's error, not a refusal: {cause:?}"
        );
    }
}
