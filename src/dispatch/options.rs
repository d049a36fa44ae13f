//! How a dispatcher delivers: the delivery deadline, how many deliveries run at
//! once, and how long shutdown waits; each with its default.

use std::time::Duration;

/// The delivery deadline when none is set: 8 s, as on the platform in the story.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);

/// How many deliveries run at once when no limit is set.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How long `shutdown` waits for deliveries when no limit is set: 30 s. What is
/// still running then ends as `failed` / `interrupted`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How a dispatcher delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub(super) deadline: Duration,
    pub(super) concurrency: usize,
    pub(super) shutdown_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deadline: DEFAULT_DEADLINE,
            concurrency: DEFAULT_CONCURRENCY,
            shutdown_timeout: Some(DEFAULT_SHUTDOWN_TIMEOUT),
        }
    }
}

impl Options {
    /// An 8 s deadline, 64 deliveries at once, and a 30 s shutdown timeout.
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
}
