//! Admission and the deliveries in flight: who may start, how many may wait at
//! once, how many send at once, how shutdown drains them and cuts off the rest,
//! and what a dropped dispatcher ends.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Error;

/// One admitted delegation on its way to its delivery task. While it is held,
/// shutdown waits for it as for a running delivery; its place in the backlog
/// goes with the delivery task, and is free again when that task ends.
pub(super) struct Admission {
    token: TaskTrackerToken,
    place: OwnedSemaphorePermit,
}

/// Every delivery of a dispatcher, from admission to its end.
pub(super) struct Supervisor {
    /// Every delivery task, and every admission not yet one.
    tracker: TaskTracker,
    /// One permit per delivery that may send at once.
    slots: Semaphore,
    /// One permit per delivery admitted and not yet ended (queued, waiting for
    /// a slot, sending, or in a retry's backoff): what bounds the tasks, the
    /// memory and the blocking hops of a flood. Closed at shutdown.
    backlog: Arc<Semaphore>,
    /// Cancelled by a shutdown whose timeout passed: every delivery still sending
    /// or waiting for a slot ends as `interrupted`, and records it.
    cut_off: CancellationToken,
    /// Cancelled when the last clone of the dispatcher is dropped: every delivery
    /// ends where it is, unrecorded, and its delegation stays `queued`.
    abandoned: CancellationToken,
    /// Cancelled when shutdown begins or the dispatcher is dropped: the
    /// dispatcher's own work beside deliveries (periodic recovery) stops.
    closing: CancellationToken,
}

impl Supervisor {
    /// A supervisor letting `concurrency` deliveries send at once, and
    /// `backlog` be admitted and not yet ended.
    pub(super) fn new(concurrency: usize, backlog: usize) -> Self {
        Supervisor {
            tracker: TaskTracker::new(),
            slots: Semaphore::new(concurrency),
            backlog: Arc::new(Semaphore::new(backlog.min(Semaphore::MAX_PERMITS))),
            cut_off: CancellationToken::new(),
            abandoned: CancellationToken::new(),
            closing: CancellationToken::new(),
        }
    }

    /// Admits one delegation once the backlog has room for it, unless shutdown
    /// has begun (or begins while it waits). Nothing is recorded before this
    /// returns, so a caller that gives up waiting leaves no trace.
    pub(super) async fn admit(&self) -> Result<Admission, Error> {
        let place = Arc::clone(&self.backlog)
            .acquire_owned()
            .await
            .map_err(|_closed| Error::Closed)?;
        // Counted first, checked second: a shutdown that closes the tracker after
        // the count waits for this admission, and one that closed it before is
        // seen here (both touch one atomic, so one comes first).
        let token = self.tracker.token();
        if self.tracker.is_closed() {
            return Err(Error::Closed);
        }
        Ok(Admission { token, place })
    }

    /// Spawns the delivery `admission` admitted on `runtime`, tracked until it
    /// ends; its place in the backlog is held until then.
    pub(super) fn spawn(
        &self,
        admission: Admission,
        delivery: impl Future<Output = ()> + Send + 'static,
        runtime: &tokio::runtime::Handle,
    ) {
        let Admission { token, place } = admission;
        self.tracker.spawn_on(
            async move {
                delivery.await;
                drop(place);
            },
            runtime,
        );
        // The task holds shutdown off from here on.
        drop(token);
    }

    /// Spawns `work`, the dispatcher's own (not a delivery: it takes no place in
    /// the backlog), on the current runtime, tracked like a delivery, so that
    /// shutdown waits for it. It must end once [`Supervisor::unless_closing`]
    /// says so.
    pub(super) fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    /// Runs `work` unless shutdown begins or the dispatcher is dropped first (`None`).
    pub(super) async fn unless_closing<F: Future>(&self, work: F) -> Option<F::Output> {
        self.closing.run_until_cancelled(work).await
    }

    /// Whether shutdown has begun or the dispatcher was dropped.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Waits for a slot to send in; the slot is free again when the permit drops.
    pub(super) async fn slot(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.slots.acquire().await
    }

    /// Runs `work` unless shutdown cuts it off first (`None`).
    pub(super) async fn unless_cut_off<F: Future>(&self, work: F) -> Option<F::Output> {
        self.cut_off.run_until_cancelled(work).await
    }

    /// Whether shutdown has cut deliveries off: no retry is scheduled after it.
    pub(super) fn is_cut_off(&self) -> bool {
        self.cut_off.is_cancelled()
    }

    /// Runs `work` unless the dispatcher is dropped first (`None`).
    pub(super) async fn unless_abandoned<F: Future>(&self, work: F) -> Option<F::Output> {
        self.abandoned.run_until_cancelled(work).await
    }

    /// Admits nothing more, and waits until every admission and delivery has ended.
    /// Past `limit`, cuts off what is left and waits for each to record that.
    pub(super) async fn drain(&self, limit: Option<Duration>) {
        self.closing.cancel();
        self.backlog.close();
        self.tracker.close();
        if self.tracker.is_empty() {
            return;
        }
        if let Some(limit) = limit {
            if tokio::time::timeout(limit, self.tracker.wait())
                .await
                .is_ok()
            {
                return;
            }
            self.cut_off.cancel();
        }
        self.tracker.wait().await;
    }

    /// The dispatcher is gone: admits nothing more, and ends every delivery.
    pub(super) fn abandon(&self) {
        self.closing.cancel();
        self.backlog.close();
        self.tracker.close();
        self.abandoned.cancel();
    }
}
