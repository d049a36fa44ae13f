//! How a dispatcher delivers: the delivery deadline, how many deliveries run at
//! once, how long shutdown waits, its lease on a shared store, and its retries; each with its default.

use std::time::Duration;

use super::periodic::MIN_RECOVER_EVERY;
use super::{Recovery, Retry};

/// The delivery deadline when none is set: 8 s, as on the platform in the story.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);

/// How many deliveries run at once when no limit is set.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How many deliveries a dispatcher holds at once when no limit is set: 1024
/// (16 times [`DEFAULT_CONCURRENCY`]). Past it, `delegate` waits for room.
pub const DEFAULT_BACKLOG: usize = 1024;

/// How long `shutdown` waits for deliveries when no limit is set: 30 s. What is
/// still running then ends as `failed` / `interrupted`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A dispatcher's lease on a store shared by several processes when none is set:
/// 10 s, renewed every 3⅓ s. A dispatcher that dies is taken over at most this
/// long after its last renewal; one that cannot renew for this long (a pause,
/// a server outage) is taken over while it lives, and starts nothing more
/// under that lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The shortest lease a dispatcher takes: 300 ms (a heartbeat every 100 ms).
pub const MIN_LEASE: Duration = Duration::from_millis(300);

/// How a dispatcher delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub(super) deadline: Duration,
    pub(super) concurrency: usize,
    pub(super) backlog: usize,
    pub(super) shutdown_timeout: Option<Duration>,
    pub(super) lease: Duration,
    pub(super) retry: Retry,
    pub(super) recover_every: Option<Duration>,
    pub(super) recovery: Recovery,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deadline: DEFAULT_DEADLINE,
            concurrency: DEFAULT_CONCURRENCY,
            backlog: DEFAULT_BACKLOG,
            shutdown_timeout: Some(DEFAULT_SHUTDOWN_TIMEOUT),
            lease: DEFAULT_LEASE,
            retry: Retry::default(),
            recover_every: None,
            recovery: Recovery::Interrupt,
        }
    }
}

impl Options {
    /// An 8 s deadline, 64 deliveries at once, a backlog of 1024, a 30 s
    /// shutdown timeout, a 10 s lease, no retry, and no periodic recovery.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long one delivery may take before it ends as `timeout`. Time spent
    /// waiting for a free delivery slot does not count.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How many deliveries run at once (at least 1); the rest wait their turn.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How many deliveries the dispatcher holds at once (at least 1): admitted
    /// and not yet ended, whether queued and waiting for a slot, sending, or in a
    /// retry's backoff. Past it, [`Dispatcher::delegate`](super::Dispatcher::delegate)
    /// (and recovery's redeliveries) wait for a delivery to end before recording
    /// anything, so a flood of delegations costs at most this many tasks, this
    /// many tasks' requests in memory, and no more blocking threads than the
    /// deliveries in hand; the caller feels the pressure instead. A caller that
    /// stops waiting (drops the `delegate` future) leaves nothing recorded. See
    /// [`DEFAULT_BACKLOG`].
    pub fn backlog(mut self, backlog: usize) -> Self {
        self.backlog = backlog.max(1);
        self
    }

    /// How long [`Dispatcher::shutdown`](super::Dispatcher::shutdown) waits for
    /// deliveries before it cuts off the rest: each delivery still running or
    /// waiting for a slot then ends as `failed` / `interrupted` (the target may
    /// have it: `unknown`), recorded like any outcome, so shutdown is bounded and
    /// still leaves nothing `queued`. `None` waits for every delivery, however long
    /// the queue.
    pub fn shutdown_timeout(mut self, limit: Option<Duration>) -> Self {
        self.shutdown_timeout = limit;
        self
    }

    /// The dispatcher's lease on a store shared by several processes
    /// (PostgreSQL; at least [`MIN_LEASE`]); ignored on sled and in memory. Its
    /// heartbeat renews it every third of it. Shorter, and a dead dispatcher's
    /// deliveries are recovered sooner; longer, and a live one survives longer
    /// pauses and outages without being taken over. See [`DEFAULT_LEASE`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// How failed deliveries are retried (by default, not at all). See
    /// [`Retry`] and the [module docs](super#retries).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Runs recovery every `every` (at least [`MIN_RECOVER_EVERY`]) while the
    /// dispatcher lives, under the [`Options::recovery`] policy; `None` (the
    /// default) never does.
    ///
    /// For several dispatchers sharing a PostgreSQL ledger: a dispatcher that
    /// lives for days then settles (or redelivers) what a dead peer left once
    /// that peer's lease has run out, instead of only at its own start. Each
    /// pass is [`Dispatcher::recover`](super::Dispatcher::recover): it takes
    /// over only delegations whose owner's lease ran out (or that nobody
    /// claims), never a live peer's nor its own. A dead peer's delegation is
    /// thus settled between its lease and its lease plus `every` after the
    /// peer's last renewal; a period of about the lease (or a fraction of it)
    /// keeps that delay within twice the lease.
    ///
    /// The timer starts with the dispatcher's first delegation or recovery (as
    /// its lease does), runs in a task the dispatcher tracks, stops when
    /// [`Dispatcher::shutdown`](super::Dispatcher::shutdown) begins, and hands
    /// each pass that recovered or failed anything to
    /// [`Dispatcher::next_recovery`](super::Dispatcher::next_recovery); failures
    /// nobody took make `shutdown` fail with
    /// [`Error::Unrecovered`](super::Error::Unrecovered). Await those reports in
    /// a task of the caller's: a damaged delegation is reported on every pass,
    /// and once 64 reports wait untaken, the timer waits too (no report is
    /// dropped, and memory stays bounded).
    ///
    /// Why off by default: recovery decides for the caller what happens to a
    /// task the target may have (settle it, or send it again), which the
    /// dispatcher should not do unasked; each pass reads every delegation of
    /// the log, a cost the caller should choose; and on sled, whose lock
    /// admits one process, nothing is orphaned by another process while this
    /// one runs, so recovery at start suffices.
    pub fn recover_every(mut self, every: Option<Duration>) -> Self {
        self.recover_every = every.map(|every| every.max(MIN_RECOVER_EVERY));
        self
    }

    /// The policy periodic recovery ([`Options::recover_every`]) settles
    /// orphans under: [`Recovery::Interrupt`] (the default) or
    /// [`Recovery::Redeliver`].
    pub fn recovery(mut self, policy: Recovery) -> Self {
        self.recovery = policy;
        self
    }
}
