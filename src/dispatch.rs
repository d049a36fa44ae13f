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
//! If recording an outcome fails (the store failed, the ledger is poisoned), the
//! failure is counted, handed to the receipt's [`Receipt::settled`], and returned by
//! `shutdown`: a delegation whose outcome could not be written is never reported
//! as fine.
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

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::delegation::{Delegation, Outcome, StatusKind};
use crate::event::{
    DelegationId, Event, Failed, FailureReason, MAX_ID_LEN, Queued, Seq, Timestamp,
};
use crate::ledger::{self, Claim, Ledger, Recorded, Settlement};
use crate::transport::{Failure, Message, Transport};

/// The delivery deadline when none is set: 8 s, as on the platform in the story.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);

/// How many deliveries run at once when no limit is set.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How long `shutdown` waits for deliveries when no limit is set: 30 s. What is
/// still running then ends as `failed` / `interrupted`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What can go wrong when delegating, settling or shutting down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ledger refused or failed to record `queued`; nothing is delivered.
    ///
    /// # Handling
    /// For [`crate::Error::IllegalTransition`] the id is taken: the delegation
    /// already exists, so ask for its status. For a storage error, see
    /// [`crate::Error`].
    #[error(transparent)]
    Ledger(#[from] crate::Error),

    /// The dispatcher is shut down and takes no more delegations.
    ///
    /// # Handling
    /// A bug in the caller's ordering: delegate before shutting down.
    #[error("the dispatcher is shut down")]
    Closed,

    /// A delivery's outcome could not be recorded; its delegation stays `queued`
    /// in the log until recovery settles it.
    ///
    /// # Handling
    /// The ledger is most likely poisoned: reopen it, and recover.
    #[error("{0}")]
    Unrecorded(Unrecorded),

    /// `shutdown` drained every delivery, and some outcomes could not be recorded.
    ///
    /// # Handling
    /// As for [`Error::Unrecorded`], for each.
    #[error("{} outcome(s) could not be recorded; first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Drained(Vec<Unrecorded>),

    /// The dispatcher was dropped before this delegation settled: its delivery was
    /// aborted and it stays `queued` until recovery settles it.
    ///
    /// # Handling
    /// Call [`Dispatcher::shutdown`] before dropping a dispatcher.
    #[error("delegation `{0}` was abandoned: the dispatcher was dropped before it settled")]
    Abandoned(DelegationId),

    /// A generated id is not a valid delegation id. Generated ids are far below
    /// the limit, and redelivery ids are kept within it, so this does not happen.
    ///
    /// # Handling
    /// A bug in this crate: report it.
    #[error(transparent)]
    InvalidId(#[from] crate::event::InvalidId),
}

/// An outcome that was decided but could not be written.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("outcome of delegation `{}` not recorded ({outcome}): {cause}", .id.as_ref().map_or("<unknown>", DelegationId::as_str))]
pub struct Unrecorded {
    /// The delegation, when known (a panicked task does not say).
    pub id: Option<DelegationId>,
    /// The outcome that was due, in words (`delivered`, `failed: timeout`, …).
    pub outcome: String,
    /// Why it was not recorded.
    pub cause: String,
}

/// How a dispatcher delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    deadline: Duration,
    concurrency: usize,
    shutdown_timeout: Option<Duration>,
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

    /// How long [`Dispatcher::shutdown`] waits for deliveries before it cuts off
    /// the rest: each delivery still running or waiting for a slot then ends as
    /// `failed` / `interrupted` (the target may have it: `unknown`), recorded like
    /// any outcome, so shutdown is bounded and still leaves nothing `queued`.
    /// `None` waits for every delivery, however long the queue.
    pub fn shutdown_timeout(mut self, limit: Option<Duration>) -> Self {
        self.shutdown_timeout = limit;
        self
    }
}

/// One task to delegate.
#[derive(Clone, Debug)]
pub struct Request {
    id: Option<DelegationId>,
    source: String,
    target: String,
    task: Result<Option<serde_json::Value>, String>,
}

impl Request {
    /// A task-less delegation from `source` to `target` (for HTTP, the URL).
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Request {
            id: None,
            source: source.into(),
            target: target.into(),
            task: Ok(None),
        }
    }

    /// Uses `id` instead of a generated one. A second delegation with the same id
    /// is refused.
    pub fn id(mut self, id: DelegationId) -> Self {
        self.id = Some(id);
        self
    }

    /// The task, encoded to JSON now. If it cannot be encoded (a map with
    /// non-string keys, a `Serialize` impl that fails), the delegation is still
    /// queued, and then fails with reason `marshal_error` and the encoder's error as
    /// the detail.
    pub fn task<T: Serialize + ?Sized>(mut self, task: &T) -> Self {
        self.task = serde_json::to_value(task)
            .map(Some)
            .map_err(|e| e.to_string());
        self
    }

    /// The task as JSON.
    pub fn task_json(mut self, task: serde_json::Value) -> Self {
        self.task = Ok(Some(task));
        self
    }
}

/// One delivery: what [`Inner::run`] sends, and as which delegation.
struct Delivery {
    id: DelegationId,
    /// The A2A `messageId`: the id of the task's first attempt.
    message_id: DelegationId,
    source: String,
    target: String,
    task: Result<Option<serde_json::Value>, String>,
}

/// What [`Dispatcher::delegate`] answers: the delegation is queued and durable.
///
/// Its JSON form is `{"id":…,"status":"queued","queued_at":…}`.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// The delegation's id.
    pub id: DelegationId,
    /// Always [`StatusKind::Queued`].
    pub status: StatusKind,
    /// When `queued` was recorded.
    pub queued_at: Timestamp,
    #[serde(skip)]
    settled: oneshot::Receiver<Result<Settled, Unrecorded>>,
}

impl Receipt {
    /// Waits for the delegation's outcome to be recorded.
    ///
    /// # Errors
    /// [`Error::Unrecorded`] if the outcome could not be written;
    /// [`Error::Abandoned`] if the dispatcher was dropped first.
    pub async fn settled(self) -> Result<Settled, Error> {
        match self.settled.await {
            Ok(Ok(settled)) => Ok(settled),
            Ok(Err(unrecorded)) => Err(Error::Unrecorded(unrecorded)),
            Err(_) => Err(Error::Abandoned(self.id)),
        }
    }
}

/// A recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The delegation.
    pub id: DelegationId,
    /// How it ended.
    pub outcome: Outcome,
    /// The seq of the outcome's record.
    pub seq: Seq,
    /// When the outcome was recorded.
    pub at: Timestamp,
}

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

/// Which recovery to run for delegations a dead process left `queued`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// Settle each as `failed`, reason `interrupted` ([`Ledger::recover`]).
    #[default]
    Interrupt,
    /// Settle each as `failed`, reason `interrupted`, detail `redelivered as
    /// <new id>`, and, in the same atomic write, queue its redelivery: a retry
    /// (`retry_of`, `attempt`) sent with the first attempt's id as the message id.
    /// See the [module docs](self#recovery) for the ids.
    Redeliver,
}

/// One delegation settled by recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The delegation the dead process left `queued`; now failed / interrupted.
    pub id: DelegationId,
    /// The redelivery, under policy [`Recovery::Redeliver`].
    pub redelivery: Option<Receipt>,
}

/// A delegation recovery found and could not settle (or redeliver), and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", .id.as_ref().map_or_else(|| "an unreadable delegation".to_owned(), |id| format!("delegation `{id}`")))]
pub struct Unrecovered {
    /// The delegation, when it could be told (a damaged store key names none).
    pub id: Option<DelegationId>,
    /// Why: damage in its history, a failed write, or a dispatcher shut down.
    pub error: Error,
}

impl From<ledger::Unrecovered> for Unrecovered {
    fn from(unrecovered: ledger::Unrecovered) -> Self {
        Unrecovered {
            id: unrecovered.id,
            error: Error::Ledger(unrecovered.error),
        }
    }
}

/// What [`Dispatcher::recover`] did with each delegation a dead process left.
#[derive(Debug, Default)]
pub struct Report {
    /// Settled (and, under [`Recovery::Redeliver`], redelivered), in store order.
    pub recovered: Vec<Recovered>,
    /// Found and not settled, each with its own error, in store order.
    pub failed: Vec<Unrecovered>,
}

impl Report {
    /// Whether every delegation recovery found was settled.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

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

/// Aborts the remaining deliveries when the last clone of a dispatcher is dropped.
/// Delivery tasks hold `Inner`, never `Owner`, so they cannot keep it alive.
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        let mut tasks = self.0.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.closed = true;
        tasks.aborted = true;
        tasks.set.abort_all();
    }
}

struct Inner {
    ledger: Ledger,
    transport: Arc<dyn Transport>,
    options: Options,
    slots: Arc<Semaphore>,
    tasks: Mutex<Tasks>,
    admitted: Notify,
    draining: tokio::sync::Mutex<()>,
    unrecorded: Mutex<Vec<Unrecorded>>,
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    unrecorded_count: AtomicU64,
    next_id: AtomicU64,
    id_seed: RandomState,
    /// Set by a shutdown whose timeout passed: every delivery still running ends
    /// as interrupted.
    cutoff: tokio::sync::watch::Sender<Option<Duration>>,
}

#[derive(Default)]
struct Tasks {
    /// Every delivery task not yet reaped.
    set: JoinSet<()>,
    /// No more admissions: `shutdown` started or the dispatcher was dropped.
    closed: bool,
    /// The dispatcher was dropped: admissions in progress start no delivery.
    aborted: bool,
    /// `delegate` calls between admission and the start of their delivery task.
    admitting: usize,
}

/// One admission in progress. Dropping it, wherever that happens (after the
/// delivery task is spawned, on an error, in a panic, or unrun in a cancelled
/// blocking task), ends the admission and wakes a waiting `shutdown`.
struct Admission(Arc<Inner>);

impl Drop for Admission {
    fn drop(&mut self) {
        {
            let mut tasks = self.0.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.admitting = tasks.admitting.saturating_sub(1);
        }
        self.0.admitted.notify_waiters();
    }
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
            slots: Arc::new(Semaphore::new(options.concurrency)),
            tasks: Mutex::new(Tasks::default()),
            admitted: Notify::new(),
            draining: tokio::sync::Mutex::new(()),
            unrecorded: Mutex::new(Vec::new()),
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unrecorded_count: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            id_seed: RandomState::new(),
            cutoff: tokio::sync::watch::Sender::new(None),
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
        Stats {
            queued: self.inner.queued.load(Ordering::Relaxed),
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            unrecorded: self.inner.unrecorded_count.load(Ordering::Relaxed),
        }
    }

    /// Records `queued` durably and starts delivery; returns once `queued` is
    /// acknowledged, without waiting for delivery.
    ///
    /// If the caller stops awaiting this future, the delegation still goes ahead:
    /// it runs in a task the dispatcher tracks.
    ///
    /// # Errors
    /// - [`Error::Ledger`] if `queued` was refused (the id is taken, the task is
    ///   nested too deep or too large: [`crate::event::InvalidEvent`]) or could not
    ///   be recorded; nothing is delivered.
    /// - [`Error::Closed`] after [`Dispatcher::shutdown`].
    pub async fn delegate(&self, mut request: Request) -> Result<Receipt, Error> {
        // The task is checked before anything copies or encodes it: a task nested
        // far too deep is refused here, with no recursion over it.
        match &request.task {
            Ok(Some(serde_json::Value::Null)) => request.task = Ok(None),
            Ok(Some(task)) => crate::event::check_task(task).map_err(crate::Error::from)?,
            _ => {}
        }
        let id = match request.id.clone() {
            Some(id) => id,
            None => self.generate_id()?,
        };
        let admission = self.admission()?;
        let queued = Event::Queued(Queued {
            task: request.task.as_ref().ok().cloned().flatten(),
            ..Queued::new(request.source.clone(), request.target.clone())
        });
        let delivery = Delivery {
            id: id.clone(),
            message_id: id.clone(),
            source: request.source,
            target: request.target,
            task: request.task,
        };
        let (settled_tx, settled_rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let runtime = tokio::runtime::Handle::current();
        // Recording `queued` and spawning the delivery happen together on a
        // blocking thread, which runs to the end even if this future is dropped:
        // a delegation acknowledged to the log always gets its delivery.
        let admitted = tokio::task::spawn_blocking(move || {
            let claim = inner.ledger.claim(&delivery.id);
            let recorded = inner.ledger.record(&delivery.id, queued)?;
            inner.start(admission, delivery, claim, settled_tx, &runtime);
            Ok::<_, Error>(recorded)
        })
        .await;
        match admitted {
            Ok(Ok(recorded)) => Ok(Receipt {
                id,
                status: StatusKind::Queued,
                queued_at: recorded.at,
                settled: settled_rx,
            }),
            Ok(Err(error)) => Err(error),
            Err(join) => Err(Error::Ledger(crate::Error::Storage(format!(
                "recording `queued` ended abnormally: {join}"
            )))),
        }
    }

    /// Starts an admission, unless the dispatcher is closed.
    fn admission(&self) -> Result<Admission, Error> {
        let mut tasks = self.tasks();
        if tasks.closed {
            return Err(Error::Closed);
        }
        self.reap(&mut tasks);
        tasks.admitting += 1;
        Ok(Admission(Arc::clone(&self.inner)))
    }

    /// Stops taking delegations and waits until every delivery has ended and its
    /// outcome is recorded. Afterwards no task of this dispatcher runs.
    ///
    /// The wait is bounded by [`Options::shutdown_timeout`] (30 s by default):
    /// deliveries still running or waiting for a slot then end as `failed` /
    /// `interrupted`, recorded like any outcome, so a long queue to a dead target
    /// cannot hold shutdown for hours, and nothing is left `queued`.
    ///
    /// # Errors
    /// [`Error::Drained`] with every outcome that could not be recorded during the
    /// dispatcher's life (each also went to its receipt).
    pub async fn shutdown(&self) -> Result<Stats, Error> {
        // Concurrent calls drain one after the other, so each returns only when
        // nothing runs.
        let _draining = self.inner.draining.lock().await;
        let mut set = loop {
            let admitted = self.inner.admitted.notified();
            {
                let mut tasks = self.tasks();
                tasks.closed = true;
                if tasks.admitting == 0 {
                    break std::mem::take(&mut tasks.set);
                }
            }
            admitted.await;
        };
        let drained = match self.inner.options.shutdown_timeout {
            _ if set.is_empty() => true,
            Some(limit) => tokio::time::timeout(limit, self.join_all(&mut set))
                .await
                .is_ok(),
            None => {
                self.join_all(&mut set).await;
                true
            }
        };
        if !drained {
            // Cut off what is left: each delivery records `interrupted` and ends.
            self.inner
                .cutoff
                .send_replace(self.inner.options.shutdown_timeout);
            self.join_all(&mut set).await;
        }
        let unrecorded = self.inner.unrecorded_list().clone();
        if unrecorded.is_empty() {
            Ok(self.stats())
        } else {
            Err(Error::Drained(unrecorded))
        }
    }

    /// Waits for every task of `set`, noting any that ended abnormally.
    async fn join_all(&self, set: &mut JoinSet<()>) {
        while let Some(joined) = set.join_next().await {
            if let Err(error) = joined {
                self.inner.note_unrecorded(Unrecorded {
                    id: None,
                    outcome: "unknown".to_owned(),
                    cause: format!("delivery task ended abnormally: {error}"),
                });
            }
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
    pub async fn recover(&self, policy: Recovery) -> Report {
        let ledger = self.inner.ledger.clone();
        match policy {
            Recovery::Interrupt => {
                match blocking(move || Ok::<_, crate::Error>(ledger.recover_all())).await {
                    Ok(report) => Report {
                        recovered: report
                            .settled
                            .into_iter()
                            .map(|id| Recovered {
                                id,
                                redelivery: None,
                            })
                            .collect(),
                        failed: report.failed.into_iter().map(Unrecovered::from).collect(),
                    },
                    Err(error) => Report {
                        recovered: Vec::new(),
                        failed: vec![Unrecovered {
                            id: None,
                            error: error.into(),
                        }],
                    },
                }
            }
            Recovery::Redeliver => {
                let mut report = Report::default();
                let orphans = blocking(move || Ok::<_, crate::Error>(ledger.orphans())).await;
                let orphans = match orphans {
                    Ok((orphans, damaged)) => {
                        report
                            .failed
                            .extend(damaged.into_iter().map(Unrecovered::from));
                        orphans
                    }
                    Err(error) => {
                        report.failed.push(Unrecovered {
                            id: None,
                            error: error.into(),
                        });
                        Vec::new()
                    }
                };
                for original in orphans {
                    let id = original.id.clone();
                    match self.redeliver(original).await {
                        Ok(Some(recovered)) => report.recovered.push(recovered),
                        Ok(None) => {}
                        Err(error) => report.failed.push(Unrecovered {
                            id: Some(id),
                            error,
                        }),
                    }
                }
                report
            }
        }
    }

    /// Settles `original` as interrupted and queues its redelivery in one atomic
    /// write, then delivers the redelivery. `None` if it is no longer an orphan: a
    /// live delivery of this process claimed it, or another writer settled it.
    async fn redeliver(&self, original: Delegation) -> Result<Option<Recovered>, Error> {
        let admission = self.admission()?;
        let (settled_tx, settled_rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let runtime = tokio::runtime::Handle::current();
        let original_id = original.id.clone();
        // As in `delegate`: the write and the spawn run to the end together.
        let queued = tokio::task::spawn_blocking(move || {
            inner.redeliver(admission, original, settled_tx, &runtime)
        })
        .await;
        match queued {
            Ok(Ok(Some((id, recorded)))) => Ok(Some(Recovered {
                id: original_id,
                redelivery: Some(Receipt {
                    id,
                    status: StatusKind::Queued,
                    queued_at: recorded.at,
                    settled: settled_rx,
                }),
            })),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(error)) => Err(error),
            Err(join) => Err(Error::Ledger(crate::Error::Storage(format!(
                "redelivering ended abnormally: {join}"
            )))),
        }
    }

    /// A fresh id: milliseconds since the epoch, a counter, and 32 random bits.
    fn generate_id(&self) -> Result<DelegationId, Error> {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut hasher = self.inner.id_seed.build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u64(n);
        hasher.write_u32(std::process::id());
        let random = hasher.finish() & 0xffff_ffff;
        let millis = nanos / 1_000_000;
        Ok(DelegationId::try_from(format!(
            "d-{millis:x}-{n:x}-{random:08x}"
        ))?)
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        // Spawning and taking the set are single operations under the lock, so a
        // poisoned lock still guards a consistent set.
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Collects finished tasks, so the set does not grow with every delegation.
    fn reap(&self, tasks: &mut Tasks) {
        while let Some(joined) = tasks.set.try_join_next() {
            if let Err(error) = joined {
                self.inner.note_unrecorded(Unrecorded {
                    id: None,
                    outcome: "unknown".to_owned(),
                    cause: format!("delivery task ended abnormally: {error}"),
                });
            }
        }
    }
}

/// How many ids a redelivery tries when each is taken by the time it writes.
const REDELIVERY_ID_TRIES: usize = 16;

/// The id of redelivery `n` of a task whose first attempt is `first`: `first.r<n>`,
/// or, when that passes [`MAX_ID_LEN`], the longest prefix of `first` that fits
/// (cut at a character boundary), `~`, the first 16 hex digits of SHA-256 of
/// `first`, and `.r<n>`.
fn redelivery_id(first: &DelegationId, n: u64) -> Result<DelegationId, Error> {
    use sha2::{Digest, Sha256};

    let suffix = format!(".r{n}");
    let plain = format!("{first}{suffix}");
    if plain.len() <= MAX_ID_LEN {
        return Ok(DelegationId::try_from(plain)?);
    }
    let digest = Sha256::digest(first.as_str().as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let text = first.as_str();
    let mut cut = MAX_ID_LEN
        .saturating_sub(suffix.len() + 1 + hash.len())
        .min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = text.get(..cut).unwrap_or_default();
    Ok(DelegationId::try_from(format!("{prefix}~{hash}{suffix}"))?)
}

/// The first redelivery id of `first`, from number `n` up, that the log does not
/// hold; `n` is left at its number.
fn free_redelivery_id(
    ledger: &Ledger,
    first: &DelegationId,
    n: &mut u64,
) -> Result<DelegationId, Error> {
    loop {
        let candidate = redelivery_id(first, *n)?;
        if ledger.store().history(&candidate)?.entries.is_empty() {
            return Ok(candidate);
        }
        *n = n.saturating_add(1);
    }
}

impl Inner {
    /// Spawns the delivery of a delegation whose `queued` is acknowledged, holding
    /// its claim until the outcome is recorded, then ends the admission.
    fn start(
        self: &Arc<Self>,
        admission: Admission,
        delivery: Delivery,
        claim: Claim,
        settled: oneshot::Sender<Result<Settled, Unrecorded>>,
        runtime: &tokio::runtime::Handle,
    ) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            // A dropped dispatcher starts nothing: the receipt answers Abandoned,
            // the claim ends, and the delegation waits, queued, for recovery.
            if !tasks.aborted {
                let inner = Arc::clone(self);
                tasks
                    .set
                    .spawn_on(inner.run(delivery, claim, settled), runtime);
            }
        }
        drop(admission);
    }

    /// Redelivers `original`, on a blocking thread: claims a free redelivery id,
    /// writes the original's failure and the redelivery's `queued` together, and
    /// spawns the delivery. Answers the redelivery's id and `queued`, or `None` if
    /// `original` is not an orphan any more.
    fn redeliver(
        self: &Arc<Self>,
        admission: Admission,
        original: Delegation,
        settled: oneshot::Sender<Result<Settled, Unrecorded>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<(DelegationId, Recorded)>, Error> {
        // Unclaimed and queued when read, so no live delivery can own it now: one
        // starts only by recording `queued`, which it already is.
        if self.ledger.is_claimed(&original.id) {
            return Ok(None);
        }
        let first = self
            .ledger
            .first_attempt(&original.id)?
            .unwrap_or_else(|| original.id.clone());
        let mut n = original.attempt;
        for _ in 0..REDELIVERY_ID_TRIES {
            let id = free_redelivery_id(&self.ledger, &first, &mut n)?;
            let claim = self.ledger.claim(&id);
            let failed = Failed {
                reason: FailureReason::Interrupted,
                detail: Some(format!("redelivered as {id}")),
            };
            let queued = Queued {
                task: original.task.clone(),
                ..Queued::new(original.source.clone(), original.target.clone())
            };
            match self.ledger.retry(&original.id, failed, &id, queued) {
                Ok(retried) => {
                    let delivery = Delivery {
                        id: id.clone(),
                        message_id: first,
                        source: original.source,
                        target: original.target,
                        task: Ok(original.task),
                    };
                    self.start(admission, delivery, claim, settled, runtime);
                    return Ok(Some((id, retried.queued)));
                }
                Err(
                    crate::Error::AlreadySettled { id: refused, .. }
                    | crate::Error::IllegalTransition { id: refused, .. },
                ) if refused == original.id => return Ok(None),
                // Another writer took the id meanwhile: try the next one.
                Err(
                    crate::Error::AlreadySettled { id: refused, .. }
                    | crate::Error::IllegalTransition { id: refused, .. },
                ) if refused == id => n = n.saturating_add(1),
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Ledger(crate::Error::Storage(format!(
            "no free redelivery id for `{}` after {REDELIVERY_ID_TRIES} tries",
            original.id
        ))))
    }

    /// One delegation, from its acknowledged `queued` to its recorded outcome.
    /// The claim ends once the outcome is recorded (or could not be).
    async fn run(
        self: Arc<Self>,
        delivery: Delivery,
        claim: Claim,
        settled: oneshot::Sender<Result<Settled, Unrecorded>>,
    ) {
        let Delivery {
            id,
            message_id,
            source,
            target,
            task,
        } = delivery;
        let outcome = match task {
            Err(encoding) => Err(Failure::marshal(format!(
                "the task could not be encoded as JSON: {encoding}"
            ))),
            Ok(task) => {
                let message = Message {
                    delegation: id.clone(),
                    message_id,
                    source,
                    target,
                    task,
                };
                self.deliver(message).await
            }
        };
        let event = outcome_event(outcome);
        let described = describe(&event);
        let ledger = self.ledger.clone();
        let outcome_id = id.clone();
        let result = blocking(move || record_outcome(&ledger, &outcome_id, event)).await;
        let answer = match result {
            Ok((settled, delivered)) => {
                if delivered {
                    self.delivered.fetch_add(1, Ordering::SeqCst);
                } else {
                    self.failed.fetch_add(1, Ordering::SeqCst);
                }
                Ok(settled)
            }
            Err(error) => {
                let unrecorded = Unrecorded {
                    id: Some(id.clone()),
                    outcome: described,
                    cause: error.to_string(),
                };
                self.note_unrecorded(unrecorded.clone());
                Err(unrecorded)
            }
        };
        drop(claim);
        let _ = settled.send(answer);
    }

    /// Waits for a delivery slot, then sends within the deadline.
    /// Waits for a delivery slot, then sends within the deadline; a shutdown
    /// whose timeout passed cuts either wait short.
    async fn deliver(&self, message: Message) -> Result<crate::transport::Accepted, Failure> {
        let mut cutoff = self.cutoff.subscribe();
        let delivery = std::pin::pin!(async {
            let _slot = Arc::clone(&self.slots)
                .acquire_owned()
                .await
                .map_err(|_| Failure::offline("the dispatcher's delivery slots are closed"))?;
            let deadline = self.options.deadline;
            match tokio::time::timeout(deadline, self.transport.send(message)).await {
                Ok(answer) => answer,
                Err(_) => Err(Failure::timeout(format!(
                    "no answer within the delivery deadline of {deadline:?}"
                ))),
            }
        });
        let mut cut = std::pin::pin!(async move {
            let waited = cutoff.wait_for(Option::is_some).await.map(|limit| *limit);
            match waited {
                Ok(limit) => limit,
                // The dispatcher is gone; its tasks are being aborted anyway.
                Err(_) => std::future::pending().await,
            }
        });
        let mut delivery = delivery;
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(answer) = delivery.as_mut().poll(cx) {
                return std::task::Poll::Ready(answer);
            }
            cut.as_mut().poll(cx).map(|limit| {
                Err(Failure::new(
                    FailureReason::Interrupted,
                    format!(
                        "shutdown cut the delivery off after waiting {}",
                        limit.map_or_else(|| "its timeout".to_owned(), |l| format!("{l:?}"))
                    ),
                ))
            })
        })
        .await
    }

    fn note_unrecorded(&self, unrecorded: Unrecorded) {
        self.unrecorded_count.fetch_add(1, Ordering::SeqCst);
        self.unrecorded_list().push(unrecorded);
    }

    fn unrecorded_list(&self) -> MutexGuard<'_, Vec<Unrecorded>> {
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Records `event` as the outcome of `id`. If another writer settled it first,
/// answers with the outcome that won. The flag says whether it was delivered.
fn record_outcome(
    ledger: &Ledger,
    id: &DelegationId,
    event: Event,
) -> crate::Result<(Settled, bool)> {
    let (outcome, seq, at) = match ledger.settle(id, event.clone())? {
        Settlement::Won(recorded) => {
            let outcome = match event {
                Event::Delivered(d) => Outcome::Delivered {
                    http_status: d.http_status,
                    remote: d.remote,
                },
                Event::Failed(f) => Outcome::Failed(f),
                Event::Queued(_) => {
                    return Err(crate::Error::Storage(
                        "an outcome cannot be `queued`".to_owned(),
                    ));
                }
            };
            (outcome, recorded.seq, recorded.at)
        }
        Settlement::Lost { outcome, seq, at } => (outcome, seq, at),
    };
    let delivered = matches!(outcome, Outcome::Delivered { .. });
    let settled = Settled {
        id: id.clone(),
        outcome,
        seq,
        at,
    };
    Ok((settled, delivered))
}

/// The event for a delivery's outcome. A transport that breaks the status rules
/// (a 2xx failure, a non-2xx acceptance) gets `failed` / `marshal_error` with the
/// contradiction as the detail, never a refused record.
fn outcome_event(outcome: Result<crate::transport::Accepted, Failure>) -> Event {
    let event = match outcome {
        Ok(accepted) => {
            Event::delivered_with(accepted.http_status, accepted.remote).map_err(|e| e.to_string())
        }
        Err(failure) => {
            Event::failed(failure.reason, Some(failure.detail)).map_err(|e| e.to_string())
        }
    };
    event.unwrap_or_else(|contradiction| {
        Event::Failed(Failed {
            reason: FailureReason::MarshalError,
            detail: Some(format!(
                "the transport broke the status rules: {contradiction}"
            )),
        })
    })
}

/// `delivered`, or `failed: <reason>`.
fn describe(event: &Event) -> String {
    match event {
        Event::Failed(failed) => format!("failed: {}", failed.reason),
        other => other.kind().to_string(),
    }
}

/// Runs blocking ledger work off the async threads. A panic in it becomes a
/// storage error, never a lost outcome.
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<crate::Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(E::from(crate::Error::Storage(format!(
            "ledger call ended abnormally: {join}"
        )))),
    }
}
