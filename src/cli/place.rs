//! Where a command's log is: a sled directory, or a PostgreSQL server given as a
//! `postgres://` (or `postgresql://`) URL in the same argument.

use std::fmt;
use std::path::Path;

use delegation_log::store::postgres::redact;
use delegation_log::{Ledger, Result};

/// The URL, when `db` names a PostgreSQL server rather than a directory.
pub(crate) fn url(db: &Path) -> Option<&str> {
    let text = db.to_str()?;
    (text.starts_with("postgres://") || text.starts_with("postgresql://")).then_some(text)
}

/// Opens the log at `db`, creating it if it is a directory that holds none (on
/// PostgreSQL, the schema is created if missing).
pub(crate) fn open(db: &Path) -> Result<Ledger> {
    match url(db) {
        Some(url) => Ledger::open_url(url),
        None => Ledger::open(db),
    }
}

/// Opens the log at `db`, which must exist if it is a directory (on PostgreSQL,
/// a server that answers; a schema not there yet reads as an empty log).
pub(crate) fn open_existing(db: &Path) -> Result<Ledger> {
    match url(db) {
        Some(url) => Ledger::open_url(url),
        None => Ledger::open_existing(db),
    }
}

/// `db` as messages show it: a directory as it is; a URL with any password the
/// client would read from it, in its user info or as a `password=` parameter,
/// replaced by `***` (`postgres://user:***@host/db`), so that no error or line
/// of output ever prints it.
pub(crate) fn shown(db: &Path) -> Shown<'_> {
    Shown(db)
}

/// What [`shown`] returns: displays `db` without its password.
pub(crate) struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url(self.0) {
            Some(url) => f.write_str(&redact(url)),
            None => self.0.display().fmt(f),
        }
    }
}
