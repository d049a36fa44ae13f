//! The dispatcher: delegate a task, learn its outcome, always.
//!
//! [`Dispatcher::delegate`] records `queued` durably, returns a [`Receipt`] at once,
//! and delivers in a task that the dispatcher tracks. Every delivery ends in a
//! recorded outcome: the transport's answer, or `timeout` when the deadline passes
//! first. Nothing is detached: [`Dispatcher::shutdown`] waits for every delivery,
//! and a dispatcher dropped without it aborts them, leaving their delegations
//! `queued` for [recovery](Dispatcher::recover) to settle.
//!
//! Ids are the caller's ([`Request::id`]) or generated: `d-<ms since the epoch,
//! hex>-<counter>-<32 random bits>`.
//!
//! An outcome's write (or a retried failure's, with its next attempt) that
//! fails without writing anything and leaves the ledger working (a database
//! server out of reach, or one that refused the write) is tried again, for 6 s
//! at most and not past a shutdown's cut-off, so that a server's restart does
//! not cost the outcome the target gave, nor the policy's next attempt. If recording an outcome still fails (the store
//! failed, the ledger is poisoned), the failure is counted, handed to the
//! receipt's [`Receipt::settled`], and returned by `shutdown`: a delegation
//! whose outcome could not be written is never reported as fine.
//!
//! # Recovery
//!
//! [`Dispatcher::recover`] settles what a dead process left `queued`, each
//! delegation on its own: one that cannot be read or written is reported in the
//! [`Report`] with its id and error, and the others are recovered all the same.
//!
//! - **Only the dead.** A dispatcher [claims](Ledger::claim) each delegation
//!   before it records `queued` and lets go once the outcome is recorded;
//!   recovery skips claimed delegations. sled's lock means one process, so what is
//!   `queued` and unclaimed belongs to no live delivery. Recovery may therefore run
//!   at any time, on any dispatcher over the ledger, even while deliveries run.
//!   (The `RecoverTooLate` error, which refused recovery once a dispatcher had
//!   delegated, is gone: it guarded only its own dispatcher, and a race slipped
//!   past it.) A delivery aborted by dropping its dispatcher ends its claim, so
//!   recovery in the same process settles it.
//! - **Only the dead, across processes.** On a store several processes share
//!   (PostgreSQL), each dispatcher holds a [lease](crate::ledger::Lease), taken at
//!   its first delegation or recovery and renewed by a heartbeat task every third
//!   of [`Options::lease`]; the claim is written to the store too
//!   with a new delegation's `queued`, in the same write
//!   ([`Ledger::queue_leased`]), and before a redelivery's
//!   ([`Ledger::claim_leased`]). Recovery takes over only what
//!   dispatchers whose lease ran out left, or what nobody claims; once a
//!   dispatcher's own lease has run out it sends nothing more under it (a
//!   delivery not yet sent ends `failed / interrupted`) and takes a new one. The
//!   heartbeat is tracked: shutdown stops it and ends the lease, and dropping the
//!   dispatcher aborts it. On sled and in memory there is no lease, and nothing
//!   of this runs.
//! - **Not only at start.** With [`Options::recover_every`], a dispatcher that
//!   lives long recovers on a timer, in a task it tracks, so that what a dead
//!   peer left is settled once the peer's lease runs out, without a restart;
//!   each pass that did anything is reported ([`Dispatcher::next_recovery`]).
//! - **Redelivery never loses the task.** Under [`Recovery::Redeliver`], the
//!   original's `failed` / `interrupted` (detail `redelivered as <new id>`) and the
//!   redelivery's `queued` are one atomic write ([`Ledger::retry`]): a crash keeps
//!   both or neither. The redelivery is a retry in the format's terms: its
//!   `queued` carries `retry_of` (the original) and `attempt` (one more than the
//!   original's).
//! - **One message id per task.** Every attempt goes out with the A2A
//!   `messageId` of the first attempt, found by following the `retry_of` links in
//!   the log ([`Ledger::first_attempt`]), so receivers can drop repeats however
//!   many crashes lie between attempts.
//! - **Redelivery ids.** A redelivery of a task whose first attempt is `X` is
//!   `X.r<n>`, with `n` the first number from the original's attempt up whose id the
//!   log does not hold (so `X` gives `X.r1`, and `X.r1` gives `X.r2`). When `X.r<n>`
//!   would pass the 256-byte limit, it is `<prefix>~<h>.r<n>`: the longest prefix
//!   of `X` (cut at a character boundary) that fits, `~`, and `h`, the first 16
//!   lowercase hex digits of SHA-256 of `X`, so that long ids with one prefix
//!   still get distinct redeliveries.
//!
//! # Retries
//!
//! With a [`Retry`] policy on the [`Options`] (by default there is none: one
//! attempt), a failed delivery is tried again, up to a number of attempts and
//! within an optional total deadline, after an exponential backoff with jitter
//! that honours the target's `Retry-After` (HTTP 429 and 503).
//!
//! - **Only what must be.** By default only failures the target certainly does
//!   not have (`target_received: no`) and may take later are retried: an
//!   unreachable target, HTTP 408, 429 and 503. Those it may have (`unknown`: a
//!   timeout, a 500) only with [`Retry::retry_unknown`]. `marshal_error`,
//!   `rejected`, JSON-RPC refusals and the other 3xx and 4xx never: the same
//!   request would get the same answer. [`Retry::retries`] has the table.
//! - **Attempts are delegations.** Nothing follows `failed`, so each attempt is
//!   a new delegation, `X.r1`, `X.r2`, … for a task whose first attempt is `X`
//!   (the redelivery ids above). Its `queued` carries `retry_of` (the failed
//!   attempt), `attempt` (2, 3, …) and `not_before` (when it may be sent). It is
//!   claimed first, like any delegation, then written with the failed attempt's
//!   `failed` in one atomic, durable write ([`Ledger::retry`]) **before** the
//!   backoff starts: a crash during the backoff loses nothing.
//! - **One message id per task.** Every attempt goes out with the first
//!   attempt's A2A `messageId`, so a receiver that drops repeats sees the task
//!   once, whatever was retried.
//! - **Tracked.** The backoff and the next attempt run in the same task as the
//!   first, which the dispatcher tracks: [`Dispatcher::shutdown`] waits for
//!   them, up to its timeout. A backoff the timeout cuts short ends the task
//!   with its retry still queued ([`Error::Deferred`]), for recovery; a dropped
//!   dispatcher leaves it the same way.
//! - **One receipt per task.** [`Receipt::settled`] answers the outcome of the
//!   last attempt, with its id and [`Settled::attempt`].
//! - **Recovery.** A queued retry whose `not_before` has not come was never
//!   sent: recovery resumes it at its time. One whose time has passed may have
//!   been sent, and is recovered like any orphan; after recovery settles an
//!   attempt as `interrupted`, the policy applies as after a live failure. See
//!   [`Dispatcher::recover`].
//!
//! ```
//! use std::time::Duration;
//!
//! use delegation_log::dispatch::{Dispatcher, Options, Request, Retry};
//! use delegation_log::transport::{Accepted, Failure, Immediate};
//! use delegation_log::Ledger;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ledger = Ledger::open(dir.path().join("log"))?;
//! // A target that is busy once, then takes the task.
//! let busy = std::sync::atomic::AtomicBool::new(true);
//! let target = Immediate::new(move |_| {
//!     if busy.swap(false, std::sync::atomic::Ordering::SeqCst) {
//!         Err(Failure::status(503, "busy"))
//!     } else {
//!         Ok(Accepted::status(200))
//!     }
//! });
//! let retry = Retry::new().max_attempts(3).backoff(Duration::from_millis(10));
//! let dispatcher = Dispatcher::with_options(ledger.clone(), target, Options::new().retry(retry));
//!
//! let receipt = dispatcher
//!     .delegate(Request::new("planner", "http://127.0.0.1:9/a2a").id("pr-42".parse()?))
//!     .await?;
//! let settled = receipt.settled().await?;
//! assert_eq!((settled.id.as_str(), settled.attempt), ("pr-42.r1", 2));
//! let retry = ledger.delegation(&settled.id)?.expect("in the log");
//! assert_eq!(retry.retry_of.as_ref().map(|id| id.as_str()), Some("pr-42"));
//! dispatcher.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use delegation_log::dispatch::{Dispatcher, Request};
//! use delegation_log::transport::Immediate;
//! use delegation_log::{Ledger, StatusKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ledger = Ledger::open(dir.path().join("log"))?;
//! let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
//!
//! let receipt = dispatcher
//!     .delegate(Request::new("planner", "http://127.0.0.1:9/a2a").task("review PR 42"))
//!     .await?;
//! assert_eq!(receipt.status, StatusKind::Queued);
//! let id = receipt.id.clone();
//!
//! dispatcher.shutdown().await?;
//! assert_eq!(ledger.status(&id)?.status, StatusKind::Delivered);
//! # Ok(())
//! # }
//! ```

// The dispatcher, one idea to a file:
mod delivery; // one delivery: a slot, the send under its deadline, the recorded outcome
mod error; // what can go wrong, and the outcome that could not be written
mod ids; // fresh ids, and `<first>.r<n>` for redeliveries
mod lease; // the lease on a shared store, its heartbeat, and its end at shutdown
mod meter; // outcome counters, delivery latency and queue depth (feature `metrics`)
mod options; // the deadline, the concurrency and the shutdown timeout
mod outcome; // a transport's answer as the event the log records
mod periodic; // recovery on a timer, for a dispatcher that lives long beside others
mod receipt; // what the caller holds: the receipt and the settled outcome
mod recovery; // settling what a dead process left queued, or redelivering it
mod request; // one task to delegate, as the caller describes it
mod requeue; // a task's next attempt: a free id, claimed, written with the failure it follows
mod retry; // the retry policy: what is retried, how often, after which backoff
mod stats; // what the dispatcher counts
mod supervisor; // admission, bounded concurrency, the shutdown drain and its cut-off
mod trace; // one tracing span per delivery (feature `tracing`)

use std::sync::Arc;

use self::delivery::Delivery;
use self::stats::Tally;
use self::supervisor::Supervisor;
use crate::ledger::Ledger;
use crate::transport::Transport;

pub use self::error::{Error, Unrecorded};
pub use self::options::{
    DEFAULT_BACKLOG, DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, DEFAULT_LEASE,
    DEFAULT_SHUTDOWN_TIMEOUT, MIN_LEASE, Options,
};
pub use self::periodic::MIN_RECOVER_EVERY;
pub use self::receipt::{Receipt, Settled};
pub use self::recovery::{Recovered, Recovery, Report, Unrecovered};
pub use self::request::Request;
pub use self::retry::{DEFAULT_BACKOFF, DEFAULT_MAX_DELAY, Retry};
pub use self::stats::Stats;

/// Delivers delegations through a [`Transport`] and records every outcome.
///
/// Cheap to clone; clones share the deliveries. `delegate`, `recover` and
/// `shutdown` must run inside a tokio runtime with timers enabled (`enable_time`, or
/// `#[tokio::main]`): the delivery deadline and the shutdown timeout are timers.
///
/// Dropping the last clone without [`Dispatcher::shutdown`] aborts the deliveries
/// still running: their receipts answer [`Error::Abandoned`], and their delegations
/// stay `queued` until recovery settles them. No delivery outlives its dispatcher.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

/// Ends the remaining deliveries when the last clone of a dispatcher is dropped.
/// Delivery tasks hold `Inner`, never `Owner`, so they cannot keep it alive.
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.supervisor.abandon();
        self.0.held.abandon();
    }
}

/// What a dispatcher and its delivery tasks share.
struct Inner {
    ledger: Ledger,
    transport: Arc<dyn Transport>,
    options: Options,
    supervisor: Supervisor,
    tally: Tally,
    ids: ids::Fresh,
    /// The lease on a shared store, and its heartbeat.
    held: lease::Held,
    /// Periodic recovery, if the options ask for it, and its reports.
    periodic: periodic::Periodic,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("options", &self.inner.options)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher with the default [`Options`].
    pub fn new(ledger: Ledger, transport: impl Transport) -> Self {
        Self::with_options(ledger, transport, Options::default())
    }

    /// A dispatcher with `options`.
    pub fn with_options(ledger: Ledger, transport: impl Transport, options: Options) -> Self {
        let inner = Arc::new(Inner {
            ledger,
            transport: Arc::new(transport),
            options,
            supervisor: Supervisor::new(options.concurrency, options.backlog),
            tally: Tally::default(),
            ids: ids::Fresh::new(),
            held: lease::Held::default(),
            periodic: periodic::Periodic::default(),
        });
        Dispatcher {
            _owner: Arc::new(Owner(Arc::clone(&inner))),
            inner,
        }
    }

    /// The ledger it records into.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// Counts so far.
    pub fn stats(&self) -> Stats {
        self.inner.tally.stats()
    }

    /// Records `queued` durably and starts delivery; returns once `queued` is
    /// acknowledged, without waiting for delivery.
    ///
    /// When the dispatcher already holds [`Options::backlog`] deliveries, this
    /// first waits for one of them to end: a flood is pushed back onto its
    /// caller instead of piling up tasks and memory. A caller that stops
    /// awaiting while it waits for room leaves nothing recorded. Once the
    /// recording of `queued` has begun, the delegation goes ahead even if the
    /// caller stops awaiting: it runs in a task the dispatcher tracks.
    ///
    /// # Errors
    /// - [`Error::Ledger`] if `queued` was refused (the id is taken, the task is
    ///   nested too deep or too large: [`crate::event::InvalidEvent`]) or could not
    ///   be recorded; nothing is delivered.
    /// - [`Error::Closed`] after [`Dispatcher::shutdown`] has begun, including
    ///   for a call that was waiting for room; nothing is recorded.
    pub async fn delegate(&self, request: Request) -> Result<Receipt, Error> {
        let request = request.checked()?;
        let id = match request.id.clone() {
            Some(id) => id,
            None => self.inner.ids.next()?,
        };
        let admission = self.inner.supervisor.admit().await?;
        let lease = self.inner.lease().await?;
        periodic::Periodic::start(&self.inner);
        let queued = request.queued();
        let mut delivery = Delivery::first(id.clone(), request, self.inner.ledger.clock().now());
        let (settle, settled) = tokio::sync::oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let runtime = tokio::runtime::Handle::current();
        // Recording `queued` and spawning the delivery happen together on a
        // blocking thread, which runs to the end even if this future is dropped:
        // a delegation acknowledged to the log always gets its delivery.
        let recorded = blocking("recording `queued`", move || {
            // Claimed with it, so that a `queued` always has an owner.
            let (recorded, claim) =
                inner
                    .ledger
                    .queue_leased(&delivery.id, queued, lease.as_ref())?;
            delivery.started = recorded.at;
            inner.start(admission, delivery, claim, settle, &runtime);
            Ok::<_, Error>(recorded)
        })
        .await?;
        Ok(Receipt::queued(id, recorded.at, settled))
    }

    /// Stops taking delegations and waits until every delivery has ended and its
    /// outcome is recorded; then, on a shared store, stops the lease's heartbeat
    /// and ends the lease. Afterwards no task of this dispatcher runs.
    ///
    /// The wait is bounded by [`Options::shutdown_timeout`] (30 s by default):
    /// deliveries still running or waiting for a slot then end as `failed` /
    /// `interrupted`, recorded like any outcome, so a long queue to a dead target
    /// cannot hold shutdown for hours. Nothing is left `queued` but a retry
    /// still waiting out its backoff: it was never sent, its receipt answers
    /// [`Error::Deferred`], and the next recovery resumes it at its time.
    ///
    /// # Errors
    /// - [`Error::Drained`] with every outcome that could not be recorded during
    ///   the dispatcher's life (each also went to its receipt).
    /// - Otherwise [`Error::Unrecovered`] with every delegation periodic
    ///   recovery could not settle, in reports nobody took with
    ///   [`Dispatcher::next_recovery`].
    pub async fn shutdown(&self) -> Result<Stats, Error> {
        self.inner
            .supervisor
            .drain(self.inner.options.shutdown_timeout)
            .await;
        self.inner.held.end().await;
        let unrecovered = self.inner.periodic.close();
        let unrecorded = self.inner.tally.all_unrecorded();
        if !unrecorded.is_empty() {
            Err(Error::Drained(unrecorded))
        } else if !unrecovered.is_empty() {
            Err(Error::Unrecovered(unrecovered))
        } else {
            Ok(self.stats())
        }
    }

    /// Settles every delegation a dead process left `queued`, by `policy`, each on
    /// its own: a delegation that cannot be read, settled or redelivered is
    /// reported in [`Report::failed`] with its id and error, and recovery goes on
    /// with the others.
    ///
    /// Delegations that a dispatcher of this process is delivering are live, not
    /// dead, and are left alone ([`Ledger::claim`]), so recovery may run at any
    /// time, on any dispatcher over the ledger, even while others deliver. Under
    /// [`Recovery::Redeliver`] the redeliveries are tracked like any delegation:
    /// await their receipts, or [`Dispatcher::shutdown`].
    ///
    /// A retry (see [Retries](self#retries)) still waiting for its
    /// `not_before` is resumed, whatever `policy`: nothing sends an attempt
    /// before its `not_before`, so it was certainly never sent, and it is
    /// delivered at its time ([`Recovered::resumed`]). One whose `not_before`
    /// has passed may have been sent, and is settled under `policy` like any
    /// orphan. Under [`Recovery::Interrupt`], an orphan settled as
    /// `interrupted` is then retried as after a live failure if the retry policy
    /// retries `interrupted` ([`Retry::retry_unknown`]) and the task has
    /// attempts and time left ([`Recovered::redelivery`]).
    ///
    /// On a store shared by several processes (PostgreSQL), recovery takes over
    /// only what dispatchers whose lease ran out left (or what nobody claims),
    /// under this dispatcher's own lease, so that of several dispatchers
    /// recovering at once exactly one takes each delegation.
    pub async fn recover(&self, policy: Recovery) -> Report {
        let lease = match self.inner.lease().await {
            Ok(lease) => lease,
            Err(error) => return Report::stopped(error),
        };
        periodic::Periodic::start(&self.inner);
        recovery::recover(&self.inner, policy, lease).await
    }

    /// The next report of periodic recovery ([`Options::recover_every`]) that
    /// recovered or failed anything, in order, as each pass ends; `None` once
    /// shutdown has stopped the timer and every report was taken, and at once
    /// without a timer. Every report goes to one caller: await this in one
    /// task (the failures of reports nobody took are returned by
    /// [`Dispatcher::shutdown`] as [`Error::Unrecovered`]).
    pub async fn next_recovery(&self) -> Option<Report> {
        // Without a timer, nothing ever comes.
        self.inner.options.recover_every?;
        self.inner.periodic.next().await
    }

    /// The dispatcher's lease on a store shared by several processes, taken at
    /// its first delegation or recovery; `None` before that, and on sled or in
    /// memory.
    pub fn lease(&self) -> Option<crate::ledger::Lease> {
        self.inner.held.peek()
    }
}

impl Inner {
    /// The lease, taken on first use ([`lease::Held::get`]).
    async fn lease(&self) -> Result<Option<crate::ledger::Lease>, Error> {
        self.held.get(&self.ledger, self.options.lease).await
    }
}

/// Runs blocking ledger work off the async threads, to the end even if the caller
/// stops waiting. A panic in it becomes a storage error naming `what` was running,
/// never a lost outcome.
async fn blocking<T, E>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<crate::Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || crate::store::thread::marked(work)).await {
        Ok(result) => result,
        Err(join) => Err(E::from(crate::Error::task(what, join))),
    }
}
