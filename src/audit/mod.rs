//! Audits: the verdict of `EVENT-LOG-FORMAT.md` on a JSON Lines log
//! ([`verify`]) or on a store ([`audit`]), and the moves between the two
//! ([`Ledger::export`](crate::Ledger::export), [`Ledger::import`](crate::Ledger::import)).
//!
//! Both verdicts judge every record with the same [`Fold`](crate::delegation::Fold)
//! that live recording uses, so an audit cannot disagree with the ledger about what
//! is legal. Both stream:
//! - [`audit`] holds one delegation at a time (a store scans by delegation);
//! - [`verify`] holds a [`Fold`](crate::delegation::Fold) for each delegation still
//!   open, and sets settled ones aside in a temporary file while the log is in the
//!   store's order (the order [`Ledger::export`](crate::Ledger::export) writes). See
//!   `docs/audit.md` for what that costs on logs in other orders.
//!
//! ```
//! use delegation_log::audit::{self, Kind};
//! use delegation_log::ManualClock;
//!
//! let log = concat!(
//!     r#"{"delegation":"d-1","seq":1,"event":"queued","source":"a","target":"b","at":"2026-06-07T01:32:07Z"}"#, "\n",
//!     r#"{"delegation":"d-1","seq":2,"event":"delivered","at":"2026-06-07T01:32:08Z"}"#, "\n",
//!     r#"{"delegation":"d-1","seq":3,"event":"failed","reason":"timeout","at":"2026-06-07T01:32:09Z"}"#, "\n",
//! );
//! let verdict = audit::verify(log.as_bytes(), &ManualClock::default())?;
//! assert!(!verdict.is_clean());
//! let violation = &verdict.violations[0];
//! assert_eq!((violation.line, violation.kind), (3, Kind::IllegalTransition));
//! assert_eq!(verdict.states.delivered, 1);
//! # Ok::<(), delegation_log::audit::AuditError>(())
//! ```

mod judge;
mod render;
pub use self::render::printable;
mod store;
mod strict;
mod transfer;
mod verify;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use self::store::{audit, audit_observed, audit_path, audit_path_observed};
pub use self::transfer::{Exported, Imported};
pub use self::verify::{MAX_LINE, Options, verify, verify_with};
use crate::delegation::Delegation;
use crate::event::{DelegationId, EventKind, Seq, Timestamp};
use crate::lifecycle::State;

/// The kinds of violation, in the order of precedence of the format page: a record
/// gets at most one, the first that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The line is not a JSON object of the record form (or, in a store, the
    /// stored bytes are not a record: checksum, envelope, key).
    Malformed,
    /// `seq` is not the next number for the delegation (gap, repeat, or not
    /// starting at 1); in a store, also records lost at the end of a delegation.
    Sequence,
    /// The event is not allowed in the delegation's current state.
    IllegalTransition,
    /// `hash` does not match, or hashes are mixed with their absence; in a store,
    /// also a head that does not match the records.
    BrokenChain,
    /// A retry (a `queued` with `retry_of`) names no delegation that failed on an
    /// earlier line, or one that an earlier line already retried, or its `attempt`
    /// is not one more than that delegation's. In a store: the delegation it
    /// retries is missing, damaged, not failed, or retried by another retry first
    /// in scan order.
    RetryLink,
}

impl Kind {
    /// The kind's name in verdicts, such as `broken_chain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Malformed => "malformed",
            Kind::Sequence => "sequence",
            Kind::IllegalTransition => "illegal_transition",
            Kind::BrokenChain => "broken_chain",
            Kind::RetryLink => "retry_link",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One violation: which record, what is wrong with it.
///
/// Its JSON form is exactly the format page's
/// `{"line": N, "delegation": "id or null", "kind": K, "message": "..."}`; the
/// other fields are for Rust callers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The record's position, from 1: its line in a JSON Lines log, its position
    /// in scan order in a store. A finding about a store delegation's head is
    /// placed on the delegation's last stored record.
    pub line: u64,
    /// The delegation the record names, when it names one (even an invalid id).
    pub delegation: Option<String>,
    /// What kind of violation.
    pub kind: Kind,
    /// What is wrong, for people.
    pub message: String,
    /// The record's seq, when it could be read.
    #[serde(skip)]
    pub seq: Option<Seq>,
    /// The record's event, when it could be read.
    #[serde(skip)]
    pub event: Option<EventKind>,
    /// The delegation's state when the record arrived, when the record could be
    /// read: what it was judged against.
    #[serde(skip)]
    pub state: Option<State>,
}

/// How many delegations ended in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct States {
    /// Still queued: pending.
    pub queued: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed.
    pub failed: u64,
}

/// A delegation still `queued` at the end of the log: not a violation, but
/// listed so that stuck delegations stand out.
///
/// Not [`ledger::Pending`](crate::ledger::Pending), which answers a sender
/// from the store's index (first attempt, target, why it waits, the age to the
/// millisecond as `age_secs`): this one is a line of a verdict, judged from the
/// records alone, in the shape the format page gives (`delegation`,
/// `queued_at`, whole `age_seconds`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Its id.
    pub delegation: DelegationId,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// Whole seconds from `queued_at` to the clock's now (0 if the clock is
    /// behind it).
    pub age_seconds: u64,
}

impl Pending {
    /// The entry for `delegation`, queued, aged against `now`.
    pub(crate) fn aged(delegation: &Delegation, now: Timestamp) -> Self {
        Pending {
            delegation: delegation.id.clone(),
            queued_at: delegation.queued_at,
            age_seconds: now.since(delegation.queued_at).as_secs(),
        }
    }

    /// The age as a duration, to the second.
    pub fn age(&self) -> Duration {
        Duration::from_secs(self.age_seconds)
    }
}

/// `clean` or `violations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// No violation.
    Clean,
    /// At least one violation.
    Violations,
}

/// The verdict on a log or a store.
///
/// Its JSON form is the object of the format page (`verdict`, `records`,
/// `delegations`, `states`, `violations`), plus one key the page does not name,
/// `pending`, last: the delegations still queued, oldest first, each with its
/// `queued_at` and `age_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `clean` or `violations`.
    pub verdict: Judgement,
    /// Records judged, accepted or not: lines of a log, stored records of a store.
    pub records: u64,
    /// Delegations whose first record was accepted.
    pub delegations: u64,
    /// Those delegations, by their state after replay.
    pub states: States,
    /// Every violation, in line order.
    pub violations: Vec<Violation>,
    /// Delegations still queued, oldest first.
    pub pending: Vec<Pending>,
}

impl Verdict {
    /// Whether the verdict is `clean`.
    pub fn is_clean(&self) -> bool {
        self.verdict == Judgement::Clean
    }

    /// The verdict as the JSON object of the format page (pretty-printed).
    pub fn to_json(&self) -> String {
        // A verdict holds strings and integers only, so this cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The plain-text form: a summary, one line per violation, then the pending
    /// delegations with their ages.
    pub fn to_plain(&self) -> String {
        render::plain(self)
    }
}

/// Why an audit could not judge its input at all (exit status 2 in the CLI).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The input could not be read: missing, a directory, an I/O error midway.
    ///
    /// # Handling
    /// Nothing was judged; fix the path or the disk and run again.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),

    /// The input has lines, and not one of them is a JSON object: it is not a
    /// log at all (a database file, a binary, the wrong file).
    ///
    /// # Handling
    /// Check which file was given.
    #[error("not a log: none of its {lines} lines is a JSON object")]
    NotALog {
        /// How many lines it has.
        lines: u64,
    },

    /// The store could not be opened or read: sled panicked on damaged files, the
    /// path is locked, a newer format, an I/O error.
    ///
    /// # Handling
    /// The store is damaged or busy. Restore it from an export or a backup, or
    /// close the process holding it.
    #[error("cannot read the store: {0}")]
    Store(#[from] crate::Error),

    /// `import` refused the log because the store already has one of its
    /// delegations. Nothing was stored.
    ///
    /// # Handling
    /// Import into an empty store, or leave out the delegations it already has.
    #[error("line {line}: delegation `{delegation}` already exists in the store; nothing imported")]
    Exists {
        /// The first line naming it.
        line: u64,
        /// The delegation.
        delegation: DelegationId,
    },
}

impl From<crate::ReadError> for AuditError {
    fn from(error: crate::ReadError) -> Self {
        AuditError::Store(error.into())
    }
}
