//! The dispatcher's lease on a shared store: taken at its first delegation or
//! recovery, renewed by a heartbeat task it tracks, ended at shutdown.
//!
//! On sled and in memory there is no lease ([`Ledger::lease`] answers `None`)
//! and nothing here runs. On PostgreSQL the heartbeat renews the lease every
//! third of it; when a renewal finds it ran out, the lease is replaced by a new
//! one under a new owner, and deliveries claimed under the old owner start
//! nothing ([`Claim::may_deliver`](crate::ledger::Claim::may_deliver)). The
//! heartbeat is never detached: shutdown stops it and waits for it, and a
//! dropped dispatcher aborts it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Error, blocking};
use crate::ledger::{Lease, Ledger};

/// The lease, once taken, and its heartbeat.
#[derive(Default)]
pub(super) struct Held {
    lease: OnceCell<Option<Lease>>,
    heartbeat: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Held {
    /// The lease, taken (and its heartbeat started) on first use; `None` for a
    /// store one process holds.
    ///
    /// # Errors
    /// The storage error of taking it; the next call tries again.
    pub(super) async fn get(
        &self,
        ledger: &Ledger,
        duration: Duration,
    ) -> Result<Option<Lease>, Error> {
        self.lease
            .get_or_try_init(|| async {
                let taking = ledger.clone();
                let lease = blocking("taking a lease", move || taking.lease(duration)).await?;
                if let Some(lease) = &lease {
                    let stop = CancellationToken::new();
                    let task = tokio::spawn(beat(lease.clone(), stop.clone()));
                    *self.heartbeat() = Some((stop, task));
                }
                Ok(lease)
            })
            .await
            .cloned()
    }

    /// The lease, if taken and there is one.
    pub(super) fn peek(&self) -> Option<Lease> {
        self.lease.get().cloned().flatten()
    }

    /// Stops the heartbeat, waits for it, and ends the lease: what shutdown does
    /// once every delivery is recorded.
    pub(super) async fn end(&self) {
        let beating = self.heartbeat().take();
        if let Some((stop, task)) = beating {
            stop.cancel();
            let _ = task.await;
        }
        if let Some(Some(lease)) = self.lease.get() {
            let lease = lease.clone();
            let _ = blocking("ending a lease", move || lease.retire()).await;
        }
    }

    /// Aborts the heartbeat: the dispatcher was dropped. The lease runs out in
    /// its own time, and its deliveries are then taken over.
    pub(super) fn abandon(&self) {
        if let Some((stop, task)) = self.heartbeat().take() {
            stop.cancel();
            task.abort();
        }
    }

    fn heartbeat(&self) -> std::sync::MutexGuard<'_, Option<(CancellationToken, JoinHandle<()>)>> {
        // One assignment or take under the lock: a poisoned lock guards a whole value.
        self.heartbeat.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The heartbeat: renews `lease` every third of it until `stop`. A renewal
/// that fails leaves this process's deadline for the lease where it was, so
/// deliveries stop starting once it passes; the next beat tries again.
async fn beat(lease: Lease, stop: CancellationToken) {
    let period = lease.duration() / 3;
    loop {
        if stop
            .run_until_cancelled(tokio::time::sleep(period))
            .await
            .is_none()
        {
            return;
        }
        let renewing = lease.clone();
        let _ =
            tokio::task::spawn_blocking(move || crate::store::thread::marked(|| renewing.renew()))
                .await;
    }
}
