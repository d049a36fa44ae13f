//! Following a ledger in its own process: every record its writers wrote, handed
//! out after its write was acknowledged, on a bounded feed that never waits.
//!
//! The write path makes one call, [`Feed::publish`], after the commit that
//! acknowledged a write (`write.rs`: `append_event` and `retry`). The feed is a
//! bounded [`tokio::sync::broadcast`] channel of [`FOLLOW_CAPACITY`] records: a
//! send never waits for a reader, so a follower that is slow, or never reads,
//! cannot stall a writer. Such a follower falls behind: the oldest records are
//! overwritten, and its next receive says how many it missed
//! ([`FollowError::Lagged`]); it can catch up from the log itself
//! ([`Ledger::history`], [`Ledger::replay`], or [`Tail`](super::Tail)).
//!
//! This is not sled's `watch_prefix`, whose unread subscriber blocks every writer
//! after 1024 events.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::event::Record;

use super::Ledger;

/// How many records the feed holds for its slowest follower before it overwrites
/// the oldest; a follower further behind is told how many it missed.
pub const FOLLOW_CAPACITY: usize = 4096;

/// The sending side, shared by a ledger's clones.
pub(super) struct Feed {
    sender: broadcast::Sender<Arc<Record>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            sender: broadcast::Sender::new(FOLLOW_CAPACITY),
        }
    }
}

impl Feed {
    /// Hands acknowledged `records` to every follower, in order. Never waits: with
    /// no follower it does nothing; a full feed overwrites its oldest record.
    pub(super) fn publish(&self, records: impl IntoIterator<Item = Record>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        for record in records {
            // An error means the last follower went away meanwhile: nothing to do.
            let _ = self.sender.send(Arc::new(record));
        }
    }
}

/// Why [`Follower::recv`] or [`Follower::try_recv`] gave no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The follower fell behind by more than [`FOLLOW_CAPACITY`] records and
    /// `missed` of them are gone from the feed. The next receive gives the oldest
    /// record still held.
    ///
    /// # Handling
    /// Carry on, and catch up from the log (the missed records are in it, and
    /// were acknowledged), or report the gap.
    #[error("the follower fell behind and missed {missed} records")]
    Lagged {
        /// How many records it missed.
        missed: u64,
    },
    /// Every clone of the ledger is gone: no record will come.
    ///
    /// # Handling
    /// Stop following.
    #[error("the ledger was closed")]
    Closed,
    /// [`Follower::try_recv`] only: nothing new yet.
    ///
    /// # Handling
    /// Try again later, or await [`Follower::recv`].
    #[error("no new record yet")]
    Empty,
}

/// What a ledger's writers wrote from the moment [`Ledger::follow`] was called,
/// one record at a time, each after its write was acknowledged.
///
/// Records come in the order their writes were acknowledged. For one
/// delegation that is seq order, except when two writers of it race (a second
/// record written before the first one's `record` returned), since both are
/// acknowledged by the same flush; each record carries its seq. Records stored
/// by [`Ledger::import`] are history brought in, not new events, and are not
/// fed.
#[derive(Debug)]
pub struct Follower {
    receiver: broadcast::Receiver<Arc<Record>>,
}

impl Follower {
    /// The next record, waiting for one.
    ///
    /// # Errors
    /// [`FollowError::Lagged`] if records were missed (the follower goes on from
    /// the oldest one held); [`FollowError::Closed`] once the ledger is gone.
    pub async fn recv(&mut self) -> Result<Record, FollowError> {
        self.receiver
            .recv()
            .await
            .map(unshare)
            .map_err(|error| match error {
                broadcast::error::RecvError::Lagged(missed) => FollowError::Lagged { missed },
                broadcast::error::RecvError::Closed => FollowError::Closed,
            })
    }

    /// The next record if one is there, without waiting.
    ///
    /// # Errors
    /// [`FollowError::Empty`] if none is there yet; otherwise as for
    /// [`Follower::recv`].
    pub fn try_recv(&mut self) -> Result<Record, FollowError> {
        self.receiver
            .try_recv()
            .map(unshare)
            .map_err(|error| match error {
                broadcast::error::TryRecvError::Lagged(missed) => FollowError::Lagged { missed },
                broadcast::error::TryRecvError::Closed => FollowError::Closed,
                broadcast::error::TryRecvError::Empty => FollowError::Empty,
            })
    }
}

/// The record, taken out of its `Arc` if this was its last follower.
fn unshare(record: Arc<Record>) -> Record {
    Arc::try_unwrap(record).unwrap_or_else(|shared| (*shared).clone())
}

impl Ledger {
    /// Follows what this ledger (and its clones) write from now on: every record
    /// acknowledged after this call, in a [`Follower`].
    ///
    /// A follower never slows a writer: a slow one, or one that never reads,
    /// falls behind and is told how many records it missed. Only this process's
    /// writes are fed; to follow other processes writing to a shared PostgreSQL
    /// store, poll with a [`Tail`](super::Tail). Another process can follow a
    /// sled store this process holds through `feed::Server` (feature `feed`),
    /// which serves this feed on a socket in the store's directory.
    pub fn follow(&self) -> Follower {
        Follower {
            receiver: self.inner.feed.sender.subscribe(),
        }
    }
}
