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
//! ```
//! use delegation_log::dispatch::{Dispatcher, Request};
//! use delegation_log::transport::Instant;
//! use delegation_log::{Ledger, StatusKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ledger = Ledger::open(dir.path().join("log"))?;
//! let dispatcher = Dispatcher::new(ledger.clone(), Instant::accepting());
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
use crate::event::{DelegationId, Event, Failed, FailureReason, Queued, Seq, Timestamp};
use crate::ledger::{Ledger, Recorded};
use crate::transport::{Failure, Message, Transport};

/// The delivery deadline when none is set: 8 s, as on the platform in the story.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);

/// How many deliveries run at once when no limit is set.
pub const DEFAULT_CONCURRENCY: usize = 64;

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

    /// Recovery was asked for after this dispatcher had started delegating, when
    /// pending delegations may be its own live ones.
    ///
    /// # Handling
    /// Recover right after opening the ledger, before the first `delegate`.
    #[error("recovery must run before the first delegate")]
    RecoverTooLate,

    /// A generated or derived id is not a valid delegation id: a redelivery id
    /// (`<id>.r<n>`) of an id close to the length limit.
    ///
    /// # Handling
    /// Use shorter ids.
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deadline: DEFAULT_DEADLINE,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl Options {
    /// An 8 s deadline and 64 deliveries at once.
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
}

/// One task to delegate.
#[derive(Clone, Debug)]
pub struct Request {
    id: Option<DelegationId>,
    message_id: Option<DelegationId>,
    source: String,
    target: String,
    task: Result<Option<serde_json::Value>, String>,
}

impl Request {
    /// A task-less delegation from `source` to `target` (for HTTP, the URL).
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Request {
            id: None,
            message_id: None,
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

    /// The id receivers see (A2A `messageId`); by default the delegation's own id.
    /// A redelivery keeps the original delegation's, so receivers can drop repeats.
    pub fn message_id(mut self, id: DelegationId) -> Self {
        self.message_id = Some(id);
        self
    }
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
    /// <new id>`, and delegate it again as `<id>.r<n>` with the original id as the
    /// message id.
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

/// Delivers delegations through a [`Transport`] and records every outcome.
///
/// Cheap to clone; clones share the deliveries. `delegate`, `recover` and
/// `shutdown` must run inside a tokio runtime.
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
        let admission = {
            let mut tasks = self.tasks();
            if tasks.closed {
                return Err(Error::Closed);
            }
            self.reap(&mut tasks);
            tasks.admitting += 1;
            Admission(Arc::clone(&self.inner))
        };
        let (settled_tx, settled_rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let runtime = tokio::runtime::Handle::current();
        let admit_id = id.clone();
        // Recording `queued` and spawning the delivery happen together on a
        // blocking thread, which runs to the end even if this future is dropped:
        // a delegation acknowledged to the log always gets its delivery.
        let admitted = tokio::task::spawn_blocking(move || {
            inner.admit(admission, admit_id, request, settled_tx, &runtime)
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

    /// Stops taking delegations and waits until every delivery has ended and its
    /// outcome is recorded. Afterwards no task of this dispatcher runs.
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
        while let Some(joined) = set.join_next().await {
            if let Err(error) = joined {
                self.inner.note_unrecorded(Unrecorded {
                    id: None,
                    outcome: "unknown".to_owned(),
                    cause: format!("delivery task ended abnormally: {error}"),
                });
            }
        }
        let unrecorded = self.inner.unrecorded_list().clone();
        if unrecorded.is_empty() {
            Ok(self.stats())
        } else {
            Err(Error::Drained(unrecorded))
        }
    }

    /// Settles every delegation a dead process left `queued`, by `policy`. Run it
    /// right after opening the ledger, before the first `delegate`: the store's
    /// lock guarantees that whatever is pending then belonged to a dead process.
    ///
    /// # Errors
    /// - [`Error::RecoverTooLate`] if this dispatcher has already delegated.
    /// - [`Error::Ledger`] for a storage error; delegations settled before it stay
    ///   settled.
    pub async fn recover(&self, policy: Recovery) -> Result<Vec<Recovered>, Error> {
        if self.inner.queued.load(Ordering::SeqCst) > 0 {
            return Err(Error::RecoverTooLate);
        }
        let ledger = self.inner.ledger.clone();
        match policy {
            Recovery::Interrupt => {
                let settled = blocking(move || ledger.recover()).await?;
                Ok(settled
                    .into_iter()
                    .map(|id| Recovered {
                        id,
                        redelivery: None,
                    })
                    .collect())
            }
            Recovery::Redeliver => {
                let pending = blocking(move || ledger.pending()).await?;
                let mut recovered = Vec::with_capacity(pending.len());
                for delegation in pending {
                    if let Some(receipt) = self.redeliver(delegation).await? {
                        recovered.push(receipt);
                    }
                }
                Ok(recovered)
            }
        }
    }

    /// Settles `original` as interrupted, naming its redelivery, then delegates the
    /// redelivery. `None` if another writer settled it first.
    async fn redeliver(&self, original: Delegation) -> Result<Option<Recovered>, Error> {
        let ledger = self.inner.ledger.clone();
        let id = original.id.clone();
        let settle = blocking(move || -> Result<Option<DelegationId>, Error> {
            let new_id = free_redelivery_id(&ledger, &id)?;
            let event = Event::Failed(Failed {
                reason: FailureReason::Interrupted,
                detail: Some(format!("redelivered as {new_id}")),
            });
            match ledger.record(&id, event) {
                Ok(_) => Ok(Some(new_id)),
                Err(crate::Error::AlreadySettled { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        });
        let Some(new_id) = settle.await? else {
            return Ok(None);
        };
        let mut request = Request::new(original.source, original.target)
            .id(new_id)
            .message_id(original.id.clone());
        request.task = Ok(original.task);
        let receipt = self.delegate(request).await?;
        Ok(Some(Recovered {
            id: original.id,
            redelivery: Some(receipt),
        }))
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

/// The first `<id>.r<n>` not in the log.
fn free_redelivery_id(ledger: &Ledger, id: &DelegationId) -> Result<DelegationId, Error> {
    let mut n: u64 = 1;
    loop {
        let candidate = DelegationId::try_from(format!("{id}.r{n}"))?;
        if ledger.delegation(&candidate)?.is_none() {
            return Ok(candidate);
        }
        n += 1;
    }
}

impl Inner {
    /// Records `queued` and, once it is acknowledged, spawns the delivery task.
    /// Runs on a blocking thread.
    fn admit(
        self: Arc<Self>,
        admission: Admission,
        id: DelegationId,
        request: Request,
        settled: oneshot::Sender<Result<Settled, Unrecorded>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Recorded, Error> {
        let queued = Event::Queued(Queued {
            source: request.source.clone(),
            target: request.target.clone(),
            task: request.task.as_ref().ok().cloned().flatten(),
        });
        let recorded = self.ledger.record(&id, queued)?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            // A dropped dispatcher starts nothing: the receipt answers Abandoned
            // and the delegation waits, queued, for recovery.
            if !tasks.aborted {
                let inner = Arc::clone(&self);
                tasks.set.spawn_on(inner.run(id, request, settled), runtime);
            }
        }
        drop(admission);
        Ok(recorded)
    }

    /// One delegation, from its acknowledged `queued` to its recorded outcome.
    async fn run(
        self: Arc<Self>,
        id: DelegationId,
        request: Request,
        settled: oneshot::Sender<Result<Settled, Unrecorded>>,
    ) {
        let Request {
            message_id,
            source,
            target,
            task,
            ..
        } = request;
        let outcome = match task {
            Err(encoding) => Err(Failure::marshal(format!(
                "the task could not be encoded as JSON: {encoding}"
            ))),
            Ok(task) => {
                let message = Message {
                    delegation: id.clone(),
                    message_id: message_id.unwrap_or_else(|| id.clone()),
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
        let _ = settled.send(answer);
    }

    /// Waits for a delivery slot, then sends within the deadline.
    async fn deliver(&self, message: Message) -> Result<crate::transport::Accepted, Failure> {
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
    match ledger.record(id, event.clone()) {
        Ok(recorded) => {
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
            let delivered = matches!(outcome, Outcome::Delivered { .. });
            Ok((
                Settled {
                    id: id.clone(),
                    outcome,
                    seq: recorded.seq,
                    at: recorded.at,
                },
                delivered,
            ))
        }
        Err(crate::Error::AlreadySettled { .. }) => {
            let won = ledger
                .delegation(id)?
                .and_then(|d| Some((d.outcome?, d.seq, d.settled_at?)));
            match won {
                Some((outcome, seq, at)) => {
                    let delivered = matches!(outcome, Outcome::Delivered { .. });
                    Ok((
                        Settled {
                            id: id.clone(),
                            outcome,
                            seq,
                            at,
                        },
                        delivered,
                    ))
                }
                None => Err(crate::Error::Storage(format!(
                    "delegation `{id}` is settled but its outcome cannot be read"
                ))),
            }
        }
        Err(error) => Err(error),
    }
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
