//! What a dispatcher counts over its life: delegations queued, outcomes recorded
//! as delivered or failed, and every outcome that could not be recorded.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Unrecorded;

/// What `shutdown` reports once every delivery has ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Delegations queued by this dispatcher.
    pub queued: u64,
    /// Outcomes recorded as `delivered`.
    pub delivered: u64,
    /// Outcomes recorded as `failed`.
    pub failed: u64,
    /// Outcomes that could not be recorded.
    pub unrecorded: u64,
}

/// The running counts behind [`Stats`], and the outcomes that could not be
/// recorded, kept for `shutdown` to return.
#[derive(Default)]
pub(super) struct Tally {
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    unrecorded_count: AtomicU64,
    unrecorded: Mutex<Vec<Unrecorded>>,
}

impl Tally {
    /// A delegation was queued and its delivery starts.
    pub(super) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// An outcome was recorded: `delivered` or not.
    pub(super) fn settled(&self, delivered: bool) {
        let count = if delivered {
            &self.delivered
        } else {
            &self.failed
        };
        count.fetch_add(1, Ordering::SeqCst);
    }

    /// An outcome could not be recorded.
    pub(super) fn unrecorded(&self, unrecorded: Unrecorded) {
        self.unrecorded_count.fetch_add(1, Ordering::SeqCst);
        self.unrecorded_list().push(unrecorded);
    }

    /// Every outcome that could not be recorded, so far.
    pub(super) fn all_unrecorded(&self) -> Vec<Unrecorded> {
        self.unrecorded_list().clone()
    }

    /// The counts so far.
    pub(super) fn stats(&self) -> Stats {
        Stats {
            queued: self.queued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            unrecorded: self.unrecorded_count.load(Ordering::Relaxed),
        }
    }

    fn unrecorded_list(&self) -> std::sync::MutexGuard<'_, Vec<Unrecorded>> {
        // Each push is one operation under the lock, so a poisoned lock still
        // guards a consistent list.
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }
}
