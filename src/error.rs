//! The crate's errors, in layers: [`StorageError`] (a store failed), one error per
//! operation ([`OpenError`]: a store could not be opened; [`ReadError`]: a read
//! failed; `store::AppendError`: an append was refused or failed), and [`Error`],
//! which composes them.
//!
//! [`Error`]'s variants fall in four groups, by what a caller does about them:
//! - **refusals** ([`Error::IllegalTransition`], [`Error::AlreadySettled`],
//!   [`Error::InvalidEvent`], [`Error::RetryLink`]): the event was wrong, nothing
//!   was written, and the log is fine;
//! - **storage damage** ([`Error::Corrupt`], [`Error::UnknownVersion`]): the store
//!   holds bytes this crate will not trust; stop and audit;
//! - **no usable store** ([`Error::Open`], [`Error::NeedsMigration`]): nothing was
//!   read or written; fix the path, share the open ledger, or migrate;
//! - **storage failure** ([`Error::Storage`], [`Error::Poisoned`],
//!   [`Error::Task`]): the store could not do its job; writes stay refused until
//!   the ledger is reopened.
//!
//! A store's own append error (`store::AppendError`) wraps [`Error`], never the
//! other way round: this module names events, states and decode errors, and no
//! store's or ledger's types, so the import graph has no circle.

use std::path::PathBuf;
use std::sync::Arc;

use crate::envelope::DecodeError;
use crate::event::{DelegationId, EventKind, InvalidEvent};
use crate::lifecycle::{Refusal, State};

/// Everything that can go wrong in this crate.
///
/// Errors are cheap to clone (what they wrap is shared, not copied), so that one
/// failure can be handed to every caller it concerns: each writer a failed
/// group flush fails, and each call a poisoned ledger refuses.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event is illegal in the delegation's state: an outcome before `queued`,
    /// or a second `queued`.
    ///
    /// # Handling
    /// Nothing was written. For a second `queued` the delegation already exists:
    /// ask for its status instead of delegating again.
    #[error("delegation `{id}`: {event} is illegal in state {from}")]
    IllegalTransition {
        /// The delegation.
        id: DelegationId,
        /// Its state when the event arrived.
        from: State,
        /// The refused event.
        event: EventKind,
    },

    /// The delegation is already settled; nothing follows `delivered` or `failed`.
    /// This is what the losers of a race to settle one delegation get.
    ///
    /// # Handling
    /// Nothing was written. Read the status to learn the outcome that won.
    #[error("delegation `{id}` is already settled as {state}; {event} refused")]
    AlreadySettled {
        /// The delegation.
        id: DelegationId,
        /// Its terminal state.
        state: State,
        /// The refused event.
        event: EventKind,
    },

    /// The event breaks a field rule (a status code out of its range), whatever
    /// the state.
    ///
    /// # Handling
    /// A bug in the caller; nothing was written.
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] InvalidEvent),

    /// A retry (a `queued` with `retry_of`) that would not link to its original as
    /// `EVENT-LOG-FORMAT.md` asks: written on its own instead of with the failure
    /// it retries, naming another delegation than the one it retries, or with
    /// another `attempt` than one more than the original's.
    ///
    /// # Handling
    /// Nothing was written. Write a retry with
    /// [`Ledger::retry`](crate::Ledger::retry), which records the original's
    /// failure and the retry together and fills in `retry_of` and `attempt`.
    #[error("delegation `{id}`: retry refused: {reason}")]
    RetryLink {
        /// The retry.
        id: DelegationId,
        /// Why it was refused.
        reason: String,
    },

    /// The write lost the race for the delegation's head again and again: other
    /// writers kept appending between its read and its write. A correct store
    /// never gets here (a delegation holds at most two records), so this means
    /// writers outside this ledger's control, such as a second ledger over the
    /// same store.
    ///
    /// # Handling
    /// Nothing was written. Read the status and decide again.
    #[error("delegation `{id}`: the write lost the race for its head {attempts} times")]
    Conflict {
        /// The delegation.
        id: DelegationId,
        /// How many times the write was tried.
        attempts: usize,
    },

    /// Stored bytes are damaged: a checksum, a chain hash, a key or a sequence does
    /// not hold.
    ///
    /// # Handling
    /// Do not write to this delegation. Run an audit to see everything that is
    /// damaged, then restore from an export or a backup.
    #[error("corrupt store at {key}: {reason}")]
    Corrupt {
        /// Where: the delegation and seq, or the raw key in hex.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A record was written in a format version this crate does not know.
    ///
    /// # Handling
    /// The store was written by a newer version of this crate: upgrade.
    #[error("record at {key} has unknown format version {found}")]
    UnknownVersion {
        /// Where the record is.
        key: String,
        /// The version found.
        found: u8,
    },

    /// An earlier write or flush failed, so this ledger refuses writes: after a
    /// failed flush the operating system may have dropped the dirty pages, and a
    /// retry that succeeds would acknowledge data that is gone (see "fsyncgate",
    /// <https://wiki.postgresql.org/wiki/Fsync_Errors>).
    ///
    /// It refuses reads too (`status`, `history`, `replay`, `pending`, `recover`,
    /// `export`, `audit`): what the store shows then may hold an outcome that was
    /// never acknowledged and that a crash would undo, so a status read from it
    /// could say `delivered` for a delegation that comes back `queued`. Reopening
    /// reads only what survived.
    ///
    /// # Handling
    /// Drop the ledger and open it again; recovery then settles what was in flight.
    #[error("ledger is poisoned by an earlier storage failure ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned it: the error its write or flush returned,
        /// whole (also this error's source).
        #[source]
        cause: Shared<Error>,
    },

    /// On a store shared by several processes, another dispatcher whose lease is
    /// live claims this delegation: its id is in use.
    ///
    /// # Handling
    /// Nothing was written. Ask for its status instead of delegating it again.
    #[error("delegation `{id}` is claimed by another dispatcher whose lease is live")]
    Claimed {
        /// The delegation.
        id: DelegationId,
    },

    /// On a store shared by several processes, this dispatcher's lease ran out
    /// (its heartbeat did not renew it in time), so other dispatchers may take
    /// over what it claimed, and it claims nothing more under it.
    ///
    /// # Handling
    /// Nothing was written. The dispatcher takes a new lease at its next
    /// heartbeat; try again then. Frequent expiries mean the lease is too short
    /// for the pauses of this process or the server's latency.
    #[error("the dispatcher's lease ran out before it could claim `{id}`")]
    LeaseExpired {
        /// The delegation it was claiming.
        id: DelegationId,
    },

    /// The store could not be opened: it is locked, missing, or its engine broke
    /// on damaged files.
    ///
    /// # Handling
    /// As the [`OpenError`] variant says.
    #[error(transparent)]
    Open(#[from] OpenError),

    /// The store is in an older format, which this crate reads (upcasting each
    /// record) but does not write.
    ///
    /// # Handling
    /// Migrate it in place, once: `delegation-log migrate PATH`, or
    /// [`migrate`](crate::migrate). Migration is crash-safe.
    #[error(
        "store {path} is in format {found}, which this crate reads but does not write: \
         migrate it first (`delegation-log migrate {path}`)",
        path = .path.display()
    )]
    NeedsMigration {
        /// The store's path.
        path: PathBuf,
        /// The format found.
        found: u8,
    },

    /// The store failed: an I/O error, or its engine's own.
    ///
    /// # Handling
    /// Check the disk; the ledger is poisoned if this happened during a write
    /// or a flush, and refuses everything until it is reopened.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// Work this crate ran on a blocking thread ended abnormally: it panicked, or
    /// its runtime shut down under it. Whether its write happened is unknown.
    ///
    /// # Handling
    /// A panic is a bug in this crate or a store: report it. Treat the outcome as
    /// unknown: read the status, and recover after a reopen.
    #[error("{what} ended abnormally: {source}")]
    Task {
        /// What was running.
        what: &'static str,
        /// How it ended.
        source: Shared<tokio::task::JoinError>,
    },

    /// A task of this crate panicked (caught, so that no outcome is lost).
    ///
    /// # Handling
    /// A bug in this crate or in a transport: report it. Its delegation stays
    /// `queued` until recovery settles it.
    #[error("{what} ended abnormally: it panicked: {message}")]
    Panicked {
        /// What was running.
        what: &'static str,
        /// The panic's message.
        message: String,
    },
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Storage(StorageError::from(error))
    }
}

impl Error {
    /// The error for work on a blocking thread that ended abnormally.
    pub(crate) fn task(what: &'static str, join: tokio::task::JoinError) -> Self {
        Error::Task {
            what,
            source: Shared::new(join),
        }
    }
}

/// A store that failed to do its job. The underlying error is the source,
/// shared, so that the failure clones cheaply.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error from the file system.
    ///
    /// # Handling
    /// Check the disk, then reopen.
    #[error("I/O error: {0}")]
    Io(#[source] Shared<std::io::Error>),

    /// A failure the storage engine reported in its own terms (sled, or another
    /// backend's driver), kept as the source.
    ///
    /// # Handling
    /// As for [`StorageError::Io`].
    #[error("storage engine error: {0}")]
    Engine(#[source] Shared<dyn std::error::Error + Send + Sync>),
}

impl StorageError {
    /// The engine's own error, kept whole as the source.
    pub fn engine(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StorageError::Engine(Shared(Arc::new(error)))
    }
}

impl From<std::io::Error> for StorageError {
    fn from(error: std::io::Error) -> Self {
        StorageError::Io(Shared::new(error))
    }
}

/// Why a read failed: `status`, `history`, `replay`, `pending` and the other
/// reads of a ledger, and the reads of a [`Store`](crate::store::Store). A read
/// never refuses an event and never writes, so it fails in fewer ways than a
/// write: the store's bytes, the store itself, or the ledger's poison.
///
/// It converts into [`Error`] (each variant into the one of the same name), so a
/// function that returns [`Error`] reads with `?`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Stored bytes are damaged: a checksum, a chain hash, a key or a sequence
    /// does not hold.
    ///
    /// # Handling
    /// As for [`Error::Corrupt`]: run an audit, then restore from an export or a
    /// backup.
    #[error("corrupt store at {key}: {reason}")]
    Corrupt {
        /// Where: the delegation and seq, or the raw key in hex.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A record or head in a format version this crate does not know.
    ///
    /// # Handling
    /// The store was written by a newer version of this crate: upgrade.
    #[error("record at {key} has unknown format version {found}")]
    UnknownVersion {
        /// Where the record is.
        key: String,
        /// The version found.
        found: u8,
    },

    /// The ledger refuses reads after a failed write or flush: see
    /// [`Error::Poisoned`]. A store's own reads never return it.
    ///
    /// # Handling
    /// Drop the ledger and open it again.
    #[error("ledger is poisoned by an earlier storage failure ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned it, whole (also this error's source).
        #[source]
        cause: Shared<Error>,
    },

    /// The read needs what only a store of the current format has (the index
    /// of what is open and dead); this store is older.
    ///
    /// # Handling
    /// As for [`Error::NeedsMigration`]: migrate it in place, once.
    /// The message is [`Error::NeedsMigration`]'s: the same failure reads the
    /// same whichever type holds it.
    #[error(
        "store {path} is in format {found}, which this crate reads but does not write: \
         migrate it first (`delegation-log migrate {path}`)",
        path = .path.display()
    )]
    NeedsMigration {
        /// The store's path.
        path: PathBuf,
        /// The format found.
        found: u8,
    },

    /// The store failed: an I/O error, or its engine's own.
    ///
    /// # Handling
    /// Check the disk or the server, then read again; a read changes nothing,
    /// so it does not poison the ledger.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReadError {
    /// The error for stored bytes that did not decode.
    pub(crate) fn decode(key: String, error: DecodeError) -> Self {
        match error {
            DecodeError::UnknownVersion { found } => ReadError::UnknownVersion { key, found },
            other => ReadError::Corrupt {
                key,
                reason: other.to_string(),
            },
        }
    }

    /// The error for damaged bytes at `key`.
    pub(crate) fn corrupt(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ReadError::Corrupt {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl From<ReadError> for Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Corrupt { key, reason } => Error::Corrupt { key, reason },
            ReadError::UnknownVersion { key, found } => Error::UnknownVersion { key, found },
            ReadError::Poisoned { cause } => Error::Poisoned { cause },
            ReadError::NeedsMigration { path, found } => Error::NeedsMigration { path, found },
            ReadError::Storage(error) => Error::Storage(error),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        ReadError::Storage(StorageError::from(error))
    }
}

/// An error held in common by everyone it concerns, so that the errors that
/// hold it clone cheaply: each writer a failed group flush fails, and each call
/// a poisoned ledger refuses, gets the same failure, not a description of it.
///
/// It reads as the error it holds ([`Deref`](std::ops::Deref), `Display`), and
/// as the source of the error that holds it, it is that error itself:
/// `source().downcast_ref::<std::io::Error>()` finds a shared I/O error.
#[derive(Debug)]
pub struct Shared<E: ?Sized>(Arc<E>);

impl<E> Shared<E> {
    /// `error`, to be shared.
    pub fn new(error: E) -> Self {
        Shared(Arc::new(error))
    }
}

impl<E: ?Sized> Shared<E> {
    /// Whether `self` and `other` hold the very same error (not merely equal
    /// ones): a clone does.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<E: ?Sized> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

// Deliberately no `impl std::error::Error for Shared`: thiserror's `source()`
// then finds the error through `Deref`, and returns it, not this wrapper.
impl<E: ?Sized> std::ops::Deref for Shared<E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: ?Sized + std::fmt::Display> std::fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a store could not be opened.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store is already open, in this process or another.
    ///
    /// # Handling
    /// Share the open [`Ledger`](crate::Ledger) (it is cheap to clone) instead of
    /// opening the path twice.
    #[error("store {path} is already open (sled allows one open per path)")]
    Locked {
        /// The store's path.
        path: PathBuf,
    },

    /// The path holds no store: it is missing, or a directory without sled's
    /// `conf` and `db` files. Commands that only read never create a store.
    ///
    /// # Handling
    /// Check the path; open with [`Ledger::open`](crate::Ledger::open) to create a
    /// new store on purpose.
    #[error("no store at {path}: it is missing, or not a delegation-log store")]
    NotAStore {
        /// The path given.
        path: PathBuf,
    },

    /// The storage engine panicked while opening the store, which sled does on
    /// some damaged files.
    ///
    /// # Handling
    /// Treat the store as damaged: audit it, and restore from an export or backup.
    #[error("store {path} could not be opened: sled panicked ({message})")]
    Panicked {
        /// The store's path.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// The error for a refused event.
    pub(crate) fn refused(id: &DelegationId, refusal: Refusal) -> Self {
        match refusal {
            Refusal::AlreadySettled { state, event } => Error::AlreadySettled {
                id: id.clone(),
                state,
                event,
            },
            Refusal::IllegalTransition { from, event } => Error::IllegalTransition {
                id: id.clone(),
                from,
                event,
            },
        }
    }

    /// Whether the event was refused and nothing was written.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::IllegalTransition { .. }
                | Error::AlreadySettled { .. }
                | Error::InvalidEvent(_)
                | Error::RetryLink { .. }
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_keeps_the_engines_error_whole_as_its_source() {
        let error = Error::from(StorageError::engine(std::io::Error::other("disk on fire")));
        assert_eq!(error.to_string(), "storage engine error: disk on fire");
        let source = std::error::Error::source(&error).expect("a source");
        let engine = source
            .downcast_ref::<std::io::Error>()
            .expect("the engine's error");
        assert_eq!(engine.kind(), std::io::ErrorKind::Other);
    }

    #[test]
    fn a_poisoned_ledger_keeps_the_failure_that_poisoned_it_as_its_typed_source() {
        let failure = Error::from(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device",
        ));
        let poisoned = Error::Poisoned {
            cause: Shared::new(failure.clone()),
        };
        assert_eq!(
            poisoned.to_string(),
            "ledger is poisoned by an earlier storage failure \
             (I/O error: no space left on device); reopen it"
        );
        let source = std::error::Error::source(&poisoned).expect("a source");
        let Some(Error::Storage(StorageError::Io(io))) = source.downcast_ref::<Error>() else {
            panic!("the source should be the storage failure: {source:?}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        // The clone in the cause shares the I/O error rather than describing it.
        let Error::Storage(StorageError::Io(original)) = &failure else {
            unreachable!()
        };
        assert!(original.same(io));
    }

    #[test]
    fn an_io_error_is_a_storage_failure_with_its_own_message() {
        let error = Error::from(std::io::Error::other("short write"));
        assert!(matches!(error, Error::Storage(StorageError::Io(_))));
        assert_eq!(error.to_string(), "I/O error: short write");
    }

    #[test]
    fn an_open_error_reads_the_same_through_the_top_level_error() {
        let open = OpenError::NotAStore {
            path: PathBuf::from("/nowhere/log"),
        };
        let said = open.to_string();
        assert_eq!(Error::from(open).to_string(), said);
        assert_eq!(
            said,
            "no store at /nowhere/log: it is missing, or not a delegation-log store"
        );
    }
}
