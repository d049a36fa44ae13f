//! Recovery on a timer: a long-running dispatcher settles what a dead peer left
//! once that peer's lease runs out, not only at its own start.
//!
//! With [`Options::recover_every`](super::Options::recover_every) set, the
//! dispatcher runs [`Dispatcher::recover`](super::Dispatcher::recover) under its
//! [`Options::recovery`](super::Options::recovery) policy once per period, in a
//! task it tracks: started at its first delegation or recovery (as its lease
//! is), stopped when shutdown begins (at its wait between passes: a pass in
//! progress runs to its end, and shutdown waits for it, so that what the pass
//! settled is reported), and aborted with a dropped dispatcher. Each pass that recovered or
//! failed anything is handed on, never dropped:
//! [`Dispatcher::next_recovery`](super::Dispatcher::next_recovery) answers it,
//! and the failures nobody took make [`Dispatcher::shutdown`](super::Dispatcher::shutdown)
//! fail with [`Error::Unrecovered`](super::Error::Unrecovered). At most
//! [`REPORTS`] reports wait to be taken; past that, the timer waits for the
//! caller (memory stays bounded, and no report is dropped).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Inner;
use super::recovery::{self, Recovery, Report, Unrecovered};

/// The shortest period between two recoveries: 100 ms.
pub const MIN_RECOVER_EVERY: Duration = Duration::from_millis(100);

/// How many reports wait to be taken before the timer waits for the caller.
pub(super) const REPORTS: usize = 64;

/// The timer's state: the sender its task takes when it starts, and the
/// reports on their way to the caller.
pub(super) struct Periodic {
    /// Taken by the task when it starts (or by shutdown, if it never did);
    /// once it is dropped, [`Periodic::next`] answers `None` after the last report.
    sender: Mutex<Option<mpsc::Sender<Report>>>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Report>>,
    /// The failures of a report the timer held when shutdown stopped it.
    left: Mutex<Vec<Unrecovered>>,
}

impl Default for Periodic {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(REPORTS);
        Periodic {
            sender: Mutex::new(Some(sender)),
            receiver: tokio::sync::Mutex::new(receiver),
            left: Mutex::new(Vec::new()),
        }
    }
}

impl Periodic {
    /// Starts the timer of `inner`, once, if its options ask for one and
    /// shutdown has not begun.
    pub(super) fn start(inner: &Arc<Inner>) {
        let Some(every) = inner.options.recover_every else {
            return;
        };
        if inner.supervisor.is_closing() {
            return;
        }
        let Some(sender) = inner.periodic.sender().take() else {
            return;
        };
        let policy = inner.options.recovery;
        inner
            .supervisor
            .spawn_tracked(run(Arc::clone(inner), every, policy, sender));
    }

    /// The next report of a pass that recovered or failed anything; `None`
    /// once the timer has stopped and every report was taken (at once, if
    /// there is no timer).
    pub(super) async fn next(&self) -> Option<Report> {
        self.receiver.lock().await.recv().await
    }

    /// After shutdown's drain: no timer starts any more, and every failure of
    /// a report nobody took, in order. A caller awaiting [`Periodic::next`]
    /// now gets the reports instead.
    pub(super) fn close(&self) -> Vec<Unrecovered> {
        drop(self.sender().take());
        let mut failed = Vec::new();
        if let Ok(mut receiver) = self.receiver.try_lock() {
            while let Ok(report) = receiver.try_recv() {
                failed.extend(report.failed);
            }
        }
        failed.append(&mut self.left.lock().unwrap_or_else(|p| p.into_inner()));
        failed
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Report>>> {
        // One take under the lock: a poisoned lock guards a whole value.
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The timer: every `every`, one recovery under `policy`, until shutdown
/// begins or the dispatcher is dropped. Holds the sender, so the reports'
/// stream ends when this task does.
async fn run(inner: Arc<Inner>, every: Duration, policy: Recovery, reports: mpsc::Sender<Report>) {
    loop {
        let waited = inner
            .supervisor
            .unless_closing(tokio::time::sleep(every))
            .await;
        if waited.is_none() {
            return;
        }
        let pass = async {
            match inner.lease().await {
                Ok(lease) => recovery::recover(&inner, policy, lease).await,
                Err(error) => Report::stopped(error),
            }
        };
        // A pass that has begun runs to its end, shutdown or not: what it has
        // settled must reach its report.
        let mut report = pass.await;
        if inner.supervisor.is_closing() {
            // Orphans the pass reached after shutdown began were refused
            // admission and left untouched, for the next recovery: skipped,
            // not failures.
            report
                .failed
                .retain(|failed| !matches!(failed.error, super::Error::Closed));
        }
        if report.recovered.is_empty() && report.failed.is_empty() {
            continue;
        }
        // A report goes to the queue when there is room; a full queue waits
        // for the caller, unless shutdown begins first: then this report's
        // failures go to shutdown's answer.
        let room = match reports.try_reserve() {
            Ok(room) => Some(Ok(room)),
            Err(mpsc::error::TrySendError::Full(())) => {
                inner.supervisor.unless_closing(reports.reserve()).await
            }
            Err(mpsc::error::TrySendError::Closed(())) => None,
        };
        match room {
            Some(Ok(room)) => room.send(report),
            _ => {
                let mut left = inner
                    .periodic
                    .left
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                left.extend(report.failed);
                return;
            }
        }
    }
}
