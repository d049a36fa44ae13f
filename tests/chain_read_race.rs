//! Guards the sender's view of a task against a retry written while it is
//! being read. The view is several reads (the attempt asked about, then the
//! link to its retry, then the retry's head), not one snapshot, and a retry is
//! written together with the failure it follows. So a reader can see the retry
//! but the attempt before it still `queued`, as it was read before the write.
//! It must not answer that mixture (a waiting retry with no failure behind it):
//! the view shows the failure the retry follows, as the log holds it.
//!
//! The retry is written, by a second ledger on the same store, at each point
//! between the reads in turn: just after the reader's first, second, …
//! read of the first attempt's head. Both with the store's index and without
//! it (links from a scan).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use delegation_log::event::{Failed, Queued, ReasonCode};
use delegation_log::ledger::Options;
use delegation_log::store::{Append, AppendError, Head, Index, Memory, Store, Stream};
use delegation_log::{
    DelegationId, Error, Event, FailureReason, Ledger, ManualClock, ReadError, StatusKind,
};
use support::id;

type Hook = Box<dyn FnOnce() + Send>;

/// A store over a shared [`Memory`] store that runs `hook` once, right after it
/// has answered the `after`-th read of `watched`'s head.
struct Interleaved {
    inner: Arc<Memory>,
    watched: DelegationId,
    hook: Mutex<Option<Hook>>,
    with_index: bool,
    after: usize,
    reads: AtomicUsize,
}

impl Store for Interleaved {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        self.inner.append(appends)
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        let head = self.inner.head(id)?;
        if *id == self.watched && self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        Ok(head)
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        self.inner.history(id)
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        self.inner.scan()
    }

    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }

    fn index(&self) -> Option<&dyn Index> {
        if self.with_index {
            self.inner.index()
        } else {
            None
        }
    }
}

fn ledger_on(store: Arc<dyn Store>) -> Ledger {
    Ledger::with_store(store, Options::new().clock(ManualClock::default()))
}

/// Queues `first`, then reads its task's view through a store that writes the
/// retry `first.r1` (with `first`'s failure) after the reader's `after`-th read
/// of `first`'s head. Whatever the reader saw, its view is one the log held:
/// `first` alone and queued, or the retry queued behind `first`'s failure, as a
/// quiet read then gives.
fn view_with_a_retry_written_mid_read(with_index: bool, after: usize) {
    let (first, retry) = (id("first"), id("first.r1"));
    let shared = Arc::new(Memory::new());
    let writer = ledger_on(shared.clone());
    writer.record(&first, Event::queued("p", "t")).unwrap();

    let hook: Hook = {
        let (writer, first, retry) = (writer.clone(), first.clone(), retry.clone());
        Box::new(move || {
            let failed = Failed {
                reason: FailureReason::TargetOffline,
                detail: Some("connection refused".into()),
            };
            writer
                .retry(&first, failed, &retry, Queued::new("p", "t"))
                .unwrap();
        })
    };
    let reader = ledger_on(Arc::new(Interleaved {
        inner: shared,
        watched: first.clone(),
        hook: Mutex::new(Some(hook)),
        with_index,
        after,
        reads: AtomicUsize::new(0),
    }));

    let status = reader.task_status(&first).unwrap();
    let attempts = reader.attempts(&first).unwrap().unwrap();
    if status.id == first {
        // Read before the retry was written.
        assert_eq!(status.status, StatusKind::Queued, "{status:?}");
        assert_eq!(status.attempts, None, "{status:?}");
        return;
    }
    assert_eq!(status.id, retry, "{status:?}");
    assert_eq!(status.status, StatusKind::Queued, "{status:?}");
    let seen = status.attempts.expect("two attempts");
    assert_eq!(seen.count, 2, "{seen:?}");
    let failure = seen
        .last_failure
        .as_ref()
        .expect("the retry follows a failure, and the view says which");
    assert_eq!(failure.id, first, "{seen:?}");
    assert_eq!(failure.reason, ReasonCode::TargetOffline, "{seen:?}");
    // And it is the view a quiet read gives.
    assert_eq!(seen, attempts);
}

#[test]
fn a_retry_written_between_the_reads_of_a_view_shows_the_failure_it_follows_with_the_index() {
    for after in 1..=4 {
        view_with_a_retry_written_mid_read(true, after);
    }
}

#[test]
fn a_retry_written_between_the_reads_of_a_view_shows_the_failure_it_follows_without_an_index() {
    for after in 1..=4 {
        view_with_a_retry_written_mid_read(false, after);
    }
}
