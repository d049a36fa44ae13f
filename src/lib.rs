//! An append-only, auditable event log for asynchronous delegations: one agent
//! handing a task to another, where the sender must always learn the outcome.
//!
//! A delegation is `queued` durably before delivery starts, then ends in exactly one
//! of `delivered` or `failed { reason, detail }`. Its state is rebuilt from the log
//! alone, every event passes a hierarchical state machine that refuses illegal
//! transitions, and the log can be exported with a hash chain for outside audit.
//!
//! ```
//! use delegation_log::{Event, FailureReason, Ledger, StatusKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ledger = Ledger::open(dir.path().join("log"))?;
//!
//! let id = "review-42".parse()?;
//! ledger.record(&id, Event::queued("planner", "http://127.0.0.1:8080/a2a"))?;
//! ledger.record(&id, Event::failed(FailureReason::HttpStatus(503), Some("proxy busy".into()))?)?;
//!
//! let status = ledger.status(&id)?;
//! assert_eq!(status.status, StatusKind::Failed);
//! assert_eq!(status.http_status, Some(503));
//!
//! // Settled means settled: a late second outcome is refused and changes nothing.
//! let late = ledger.record(&id, Event::delivered(Some(200))?);
//! assert!(matches!(late, Err(delegation_log::Error::AlreadySettled { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! The crate's promises, and how each is tested, are in the README.
#![doc = include_str!("../README.md")]

pub mod audit;
pub mod clock;
pub mod delegation;
pub mod dispatch;
// Not part of the API: see the module's own note.
#[doc(hidden)]
pub mod envelope;
pub mod error;
pub mod event;
#[cfg(all(feature = "feed", unix))]
pub mod feed;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod ledger;
pub mod lifecycle;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod store;
pub mod transport;

pub use crate::audit::{AuditError, Verdict};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::delegation::{Delegation, Outcome, Status, StatusKind};
pub use crate::dispatch::{Dispatcher, Receipt, Recovery, Request};
pub use crate::error::{Error, OpenError, ReadError, Result, Shared, StorageError};
pub use crate::event::{
    ChainHash, DelegationId, Event, EventKind, FailureReason, Received, Record, Seq, Timestamp,
};
pub use crate::ledger::{Durability, Ledger, Migration, Options, Recorded, Settlement, migrate};
