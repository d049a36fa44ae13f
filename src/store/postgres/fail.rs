//! How PostgreSQL failures become the crate's errors: every failure of the server
//! or the connection is a [`StorageError`] that says where and what, never a panic.

use postgres::error::SqlState;

use super::pool::Backend;
use crate::error::StorageError;

/// A failure of the PostgreSQL store: what it was doing and on which server, with
/// the client's own error (or the failure it follows from) kept as the source.
///
/// It reaches callers as [`StorageError::Engine`] (inside
/// [`Error::Storage`](crate::Error::Storage) or
/// [`ReadError::Storage`](crate::ReadError::Storage)); downcast
/// the engine error to this type to inspect it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PostgresError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PostgresError {
    /// The client's error (`postgres::Error`, with its SQLSTATE), when the
    /// failure came from the client.
    pub fn client_error(&self) -> Option<&postgres::Error> {
        self.source
            .as_deref()
            .and_then(|source| source.downcast_ref())
    }
}

/// What a failed statement means for the connection it ran on.
#[derive(Debug)]
pub(super) enum Failure {
    /// The connection is gone or unusable (the server shut down, restarted or
    /// dropped it, or the network failed): it must be replaced. Inside a
    /// transaction, nothing of it committed unless this was its `COMMIT`; an
    /// autocommitted statement may have committed, so only those safe to run
    /// again (leases and claims) are classified so; an append whose outcome is
    /// unknown is [`Failure::Lost`].
    Connection(StorageError),
    /// The transaction lost a deadlock or a serialization check: it was rolled
    /// back whole, and may be run again.
    Retry(StorageError),
    /// The connection failed while a write was in flight (an autocommitted
    /// append, or a `COMMIT`): it may or may not have committed. The
    /// connection is replaced and the write is not run again; the store then
    /// settles the outcome from a new connection, by ending `backend` (the
    /// failed connection's server process) and reading the write back, or,
    /// if it cannot, reports it as unknown, and the caller must treat the
    /// store as suspect.
    Lost {
        /// The failure.
        error: StorageError,
        /// The server process that was running the write, if known.
        backend: Option<Backend>,
    },
    /// Anything else: reported as it is.
    Other(StorageError),
}

impl From<Failure> for crate::Error {
    fn from(failure: Failure) -> Self {
        failure.into_error().into()
    }
}

impl From<Failure> for crate::error::ReadError {
    fn from(failure: Failure) -> Self {
        failure.into_error().into()
    }
}

impl Failure {
    /// The store's failure, whatever the kind.
    pub(super) fn into_error(self) -> StorageError {
        match self {
            Failure::Connection(error)
            | Failure::Retry(error)
            | Failure::Lost { error, .. }
            | Failure::Other(error) => error,
        }
    }
}

/// The crate's error for a failure of the server, the connection or the
/// store's own machinery: a [`StorageError`]. Every error of this store is
/// made here.
pub(super) fn storage(message: String) -> StorageError {
    wrap(message, None)
}

/// [`storage`], keeping `source` (the failure this one follows from) whole.
pub(super) fn caused(
    message: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StorageError {
    wrap(message, Some(Box::new(source)))
}

fn wrap(message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> StorageError {
    StorageError::engine(PostgresError { message, source })
}

/// What `error` says, without the prefix [`StorageError`] gives an engine's
/// error: for a message that goes on to wrap it, so that the prefix is said
/// once.
pub(super) fn said(error: &StorageError) -> String {
    match error {
        StorageError::Engine(engine) => engine.to_string(),
        other => other.to_string(),
    }
}

/// The failure of a write whose outcome is unknown (`why` says so): the
/// connection failed while it was in flight. The message names the server,
/// what was being done and the client's error once, and keeps that error as
/// the source, so [`PostgresError::client_error`] finds its SQLSTATE.
pub(super) fn lost(
    error: postgres::Error,
    doing: &str,
    target: &str,
    why: &str,
    backend: Option<Backend>,
) -> Failure {
    let text = format!("PostgreSQL {target}: {doing}: {} ({why})", describe(&error));
    Failure::Lost {
        error: caused(text, error),
        backend,
    }
}

/// Sorts a client error by what the caller must do about it, with `doing` (what
/// the store was doing) and `target` (the server, without its password) in the
/// message.
pub(super) fn classify(error: postgres::Error, doing: &str, target: &str) -> Failure {
    let code = error.code().cloned();
    let text = format!("PostgreSQL {target}: {doing}: {}", describe(&error));
    let message = caused(text, error);
    match code.as_ref() {
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED => Failure::Retry(message),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE => Failure::Retry(message),
        Some(code) if code.code().starts_with("08") || code.code().starts_with("57P") => {
            Failure::Connection(message)
        }
        Some(_) => Failure::Other(message),
        // No SQLSTATE: the socket failed, the server closed it, or the protocol
        // broke; the connection cannot be trusted again.
        None => Failure::Connection(message),
    }
}

/// The client error, with the server's own message, detail and code when it sent
/// one (the client's `Display` says only "db error").
pub(super) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut out = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                out.push_str("; ");
                out.push_str(detail);
            }
            out
        }
        None => {
            let mut out = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                out.push_str(": ");
                out.push_str(&cause.to_string());
                source = cause.source();
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::{Failure, PostgresError, describe, lost};
    use crate::error::StorageError;

    /// A real client error without a server: a connect to a port where
    /// nothing listens.
    fn refused() -> postgres::Error {
        let mut config = postgres::Config::new();
        config.host("127.0.0.1").port(9).user("someone");
        config
            .connect(postgres::NoTls)
            .err()
            .expect("nothing listens on port 9")
    }

    #[test]
    fn an_unknown_outcome_says_its_cause_once_and_keeps_the_client_error_as_source() {
        let cause = describe(&refused());
        let Failure::Lost { error, .. } = lost(
            refused(),
            "appending",
            "someone@127.0.0.1:9/db",
            "why",
            None,
        ) else {
            panic!("not Lost");
        };
        let shown = error.to_string();
        assert_eq!(shown.matches(&cause).count(), 1, "{shown}");
        assert_eq!(shown.matches("PostgreSQL").count(), 1, "{shown}");
        assert_eq!(shown.matches("storage engine error").count(), 1, "{shown}");
        assert!(shown.ends_with("(why)"), "{shown}");
        let StorageError::Engine(engine) = &error else {
            panic!("{error:?}");
        };
        let failure = engine.downcast_ref::<PostgresError>().unwrap();
        assert!(failure.client_error().is_some(), "{failure:?}");
    }
}
