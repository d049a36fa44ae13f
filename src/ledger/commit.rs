//! Group commit: durability. Writers that finish their appends while a flush runs
//! share the next one, and `record` acknowledges once a flush covers its append.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result, Shared};
use crate::store::Store;

use super::appender::Written;
use super::{Durability, Ledger};

impl Ledger {
    /// In durable (or crash-safe) mode, waits for a flush that covers `written`
    /// (the one its writer ran in its turn, or a later one).
    pub(super) fn commit(&self, written: Option<Written>) -> Result<()> {
        let level = self.inner.options.durability;
        let Some(written) = written.filter(|_| level != Durability::Buffered) else {
            return Ok(());
        };
        written
            .flushed
            .unwrap_or_else(|| {
                self.inner
                    .commit
                    .wait_for(written.ticket, self.inner.store.as_ref(), level)
            })
            .map_err(|error| self.poison(error))
    }

    /// Makes every acknowledged event durable now, on the device (as
    /// [`Durability::Durable`]), whatever the durability mode.
    ///
    /// # Errors
    /// A storage error; the ledger is then poisoned.
    pub fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        self.inner
            .commit
            .wait(self.inner.store.as_ref(), Durability::Durable)
            .map_err(|error| self.poison(error))
    }
}

/// Group commit: writers that finish their appends while a flush runs share the
/// next one, so a burst of N durable writers costs about two flushes, not N.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<Commit>,
    flushed: Condvar,
}

#[derive(Default)]
struct Commit {
    /// Appends completed so far; a write's ticket is this count after its append
    /// (after its group's, for appends written in a group).
    written: u64,
    /// Appends covered by a completed flush that reached the device.
    durable: u64,
    /// Appends covered by a completed flush of either level.
    flushed: u64,
    /// Whether a writer is flushing now.
    flushing: bool,
    /// Set forever by a failed flush.
    failed: Option<Shared<Error>>,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, Commit> {
        // The counters are updated under the lock in single assignments, so a
        // poisoned lock still guards consistent values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a flush of at least `level` that started after this call has
    /// completed, running it if no one else is. Whatever was appended before the
    /// call is then durable at that level. Writers that arrive while a flush runs
    /// share the next one.
    pub(super) fn wait(&self, store: &dyn Store, level: Durability) -> Result<()> {
        let ticket = self.appended(1);
        self.wait_for(ticket, store, level)
    }

    /// Counts `appends` just written, and returns their ticket: a flush that
    /// starts from now on covers them. A group of appends written together gets
    /// one ticket, so the first of its writers to wait flushes them all.
    pub(super) fn appended(&self, appends: u64) -> u64 {
        let mut commit = self.lock();
        commit.written = commit.written.saturating_add(appends);
        commit.written
    }

    /// Waits until a flush of at least `level` covers the appends of `ticket`,
    /// running it if no one else is. Writers that arrive while a flush runs share
    /// the next one.
    pub(super) fn wait_for(&self, ticket: u64, store: &dyn Store, level: Durability) -> Result<()> {
        let commit = self.lock();
        self.until(commit, ticket, store, level)
    }

    fn until<'a>(
        &'a self,
        mut commit: MutexGuard<'a, Commit>,
        ticket: u64,
        store: &dyn Store,
        level: Durability,
    ) -> Result<()> {
        let synced = level == Durability::Durable;
        loop {
            if let Some(cause) = &commit.failed {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            let covered = if synced {
                commit.durable
            } else {
                commit.flushed
            };
            if covered >= ticket {
                return Ok(());
            }
            if commit.flushing {
                commit = self.flushed.wait(commit).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            commit.flushing = true;
            let covers = commit.written;
            drop(commit);
            // One span per store flush (feature `tracing`), around the flush
            // and, when durable, its sync.
            #[cfg(feature = "tracing")]
            let _span = tracing::info_span!("store_flush", durable = synced).entered();
            let result = if synced {
                store.flush()
            } else {
                store.flush_crash_safe()
            };
            commit = self.lock();
            commit.flushing = false;
            match result {
                Ok(()) => {
                    commit.flushed = commit.flushed.max(covers);
                    if synced {
                        commit.durable = commit.durable.max(covers);
                    }
                }
                Err(error) => {
                    commit.failed = Some(Shared::new(error.clone()));
                    self.flushed.notify_all();
                    return Err(error);
                }
            }
            self.flushed.notify_all();
        }
    }
}
