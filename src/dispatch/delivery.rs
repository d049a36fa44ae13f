//! One delivery, from its acknowledged `queued` to its recorded outcome: wait for a
//! slot, send within the deadline (or until shutdown cuts it off), record the answer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::receipt::Settle;
use super::requeue::{Failing, Requeued};
use super::supervisor::Admission;
use super::{Error, Inner, Request, Settled, Unrecorded, blocking, meter, outcome, trace};
use crate::delegation::Outcome;
use crate::event::{
    Attempt, DelegationId, Event, Failed, FailureReason, InvalidEvent, Queued, Timestamp,
};
use crate::ledger::{Claim, Lease, Ledger, Settlement};
use crate::transport::{Accepted, Failure, Message};

/// What one delivery sends, and as which delegation.
pub(super) struct Delivery {
    pub(super) id: DelegationId,
    /// The A2A `messageId`: the id of the task's first attempt.
    pub(super) message_id: DelegationId,
    pub(super) source: String,
    pub(super) target: String,
    pub(super) task: Result<Option<serde_json::Value>, String>,
    /// Which attempt at the task it is: 1, or one more than the delegation it
    /// retries or redelivers.
    pub(super) attempt: Attempt,
    /// When the task's first attempt was queued: the retry policy's total
    /// deadline counts from here.
    pub(super) started: Timestamp,
    /// Not to be sent before this instant: a retry waiting out its backoff.
    pub(super) not_before: Option<Timestamp>,
}

impl Delivery {
    /// The first attempt at `request`'s task, as delegation `id`, queued at
    /// `started`.
    pub(super) fn first(id: DelegationId, request: Request, started: Timestamp) -> Self {
        Delivery {
            message_id: id.clone(),
            id,
            source: request.source,
            target: request.target,
            task: request.task,
            attempt: 1,
            started,
            not_before: None,
        }
    }
}

/// What one attempt came to: its own recorded outcome (or why it has none), and
/// the next attempt when the failure was retried.
struct Step {
    ended: Result<Settled, Unrecorded>,
    next: Option<(Delivery, Claim)>,
}

impl Inner {
    /// Spawns the delivery of a delegation whose `queued` is acknowledged, then
    /// lets its admission go: from here on the delivery task holds shutdown off.
    pub(super) fn start(
        self: &Arc<Self>,
        admission: Admission,
        delivery: Delivery,
        claim: Claim,
        settle: Settle,
        runtime: &tokio::runtime::Handle,
    ) {
        self.tally.queued();
        let inner = Arc::clone(self);
        self.supervisor
            .spawn(admission, inner.run(delivery, claim, settle), runtime);
    }

    /// One task, from its acknowledged `queued` to the recorded outcome of its
    /// last attempt, which goes to its receipt. Each attempt's claim ends once
    /// its outcome is recorded (or could not be). A dropped dispatcher ends it
    /// where it is: the receipt answers `Abandoned`, the claim ends, and the
    /// attempt waits, queued, for recovery.
    async fn run(self: Arc<Self>, delivery: Delivery, claim: Claim, settle: Settle) {
        let id = delivery.id.clone();
        // Boxed once here, innermost: each wrapper below (the panic catcher, the
        // abandonment) takes its work by value and keeps it in its own state, so
        // an unboxed delivery made the task's future 19 KB, copied whole on
        // every spawn.
        let chain = Box::pin(self.chain(delivery, claim));
        let ended = self.supervisor.unless_abandoned(caught(chain)).await;
        let answer = match ended {
            None => return,
            Some(Ok(answer)) => answer,
            Some(Err(panic)) => {
                let unrecorded = Unrecorded {
                    id: Some(id),
                    outcome: "unknown".to_owned(),
                    cause: Arc::new(crate::Error::Panicked {
                        what: "delivery task",
                        message: panic,
                    }),
                };
                self.tally.unrecorded(unrecorded.clone());
                Err(Error::Unrecorded(unrecorded))
            }
        };
        let _ = settle.send(answer);
    }

    /// The attempts at one task, in this one tracked task: each waits for its
    /// `not_before`, is sent, and is recorded; a failure the retry policy
    /// retries is recorded together with the next attempt's `queued`, and the
    /// loop goes on with it. A shutdown that cuts the wait short leaves the
    /// queued attempt for recovery ([`Error::Deferred`]).
    async fn chain(
        self: &Arc<Self>,
        mut delivery: Delivery,
        mut claim: Claim,
    ) -> Result<Settled, Error> {
        loop {
            // Counted from `queued` acknowledged, as the meter's doc says: a
            // retry's backoff is part of its time in the queue.
            let meter = meter::Meter::start();
            if let Some(not_before) = delivery.not_before {
                let wait = not_before.since(self.ledger.clock().now());
                let waited = self
                    .supervisor
                    .unless_cut_off(tokio::time::sleep(wait))
                    .await;
                if waited.is_none() {
                    let _ = blocking("ending a claim", move || claim.release()).await;
                    return Err(Error::Deferred {
                        id: delivery.id,
                        not_before,
                    });
                }
            }
            let span = trace::Span::of(&delivery);
            let step = span.around(self.attempt(delivery, claim)).await;
            span.settled(&step.ended);
            meter.settled(&step.ended);
            match step.next {
                Some((next, next_claim)) => {
                    delivery = next;
                    claim = next_claim;
                }
                None => return step.ended.map_err(Error::Unrecorded),
            }
        }
    }

    /// Sends one attempt and records what came of it: its outcome, or, for a
    /// failure the policy retries, its failure and the next attempt's `queued`
    /// in one write, durable before any backoff starts. Then ends `claim` (in
    /// the shared store too, where there is one).
    async fn attempt(self: &Arc<Self>, delivery: Delivery, claim: Claim) -> Step {
        let Delivery {
            id,
            message_id,
            source,
            target,
            task,
            attempt,
            started,
            not_before: _,
        } = delivery;
        let answer = match &task {
            Err(encoding) => Err(Failure::marshal(format!(
                "the task could not be encoded as JSON: {encoding}"
            ))),
            Ok(task) => {
                let message = Message {
                    delegation: id.clone(),
                    message_id: message_id.clone(),
                    source: source.clone(),
                    target: target.clone(),
                    task: task.clone(),
                };
                self.send(message, &claim).await
            }
        };
        let retry_after = answer
            .as_ref()
            .err()
            .and_then(|failure| failure.retry_after);
        let event = outcome::event(answer);
        let described = outcome::describe(&event);
        // A next attempt only for a failure, never once shutdown has cut
        // deliveries off, and only while the claim may still deliver.
        let plan = match &event {
            Event::Failed(failed) if !self.supervisor.is_cut_off() && claim.may_deliver() => {
                let now = self.ledger.clock().now();
                self.options
                    .retry
                    .plan(
                        failed.reason,
                        retry_after,
                        attempt,
                        now.since(started),
                        &message_id,
                    )
                    .map(|wait| now.after(wait))
            }
            _ => None,
        };
        // One try of the write on a blocking thread; tries again, after a
        // wait, a write that failed having written nothing (see
        // `RECORD_AGAIN`), until `RECORD_FOR` has passed or shutdown cuts
        // deliveries off; the waits are the runtime's, not a thread's.
        let deadline = tokio::time::Instant::now() + RECORD_FOR;
        let mut wait = RECORD_AGAIN;
        let mut claim = claim;
        let recorded = loop {
            let worker = Arc::clone(self);
            let lease = self.held.peek();
            let outcome_id = id.clone();
            let first = message_id.clone();
            let next_task = task.as_ref().ok().cloned().flatten();
            let (next_source, next_target) = (source.clone(), target.clone());
            let event = event.clone();
            let tried = blocking("ledger call", move || {
                Ok::<_, crate::Error>(record_once(
                    &worker,
                    Once {
                        id: &outcome_id,
                        first: &first,
                        attempt,
                        event,
                        plan: plan
                            .map(|not_before| (not_before, next_task, next_source, next_target)),
                        lease: lease.as_ref(),
                    },
                    claim,
                ))
            })
            .await;
            let (error, kept) = match tried {
                Ok(Tried::Done(done)) => break done,
                Ok(Tried::Again(error, kept)) => (error, kept),
                Err(error) => break Err(error),
            };
            let now = tokio::time::Instant::now();
            let waited = if now + wait < deadline {
                self.supervisor
                    .unless_cut_off(tokio::time::sleep(wait))
                    .await
            } else {
                None
            };
            if waited.is_none() {
                // Out of time, or shut down: left to recovery, as any outcome
                // that could not be written.
                let _ = blocking("ending a claim", move || kept.release()).await;
                break Err(error);
            }
            claim = kept;
            wait = (wait * 2).min(RECORD_WAIT_MAX);
        };
        match recorded {
            Ok((settled, next)) => {
                self.tally
                    .settled(matches!(settled.outcome, Outcome::Delivered { .. }));
                let next = next.map(|(next, next_claim, next_attempt, not_before)| {
                    self.tally.queued();
                    let delivery = Delivery {
                        id: next,
                        message_id,
                        source,
                        target,
                        task,
                        attempt: next_attempt,
                        started,
                        not_before: Some(not_before),
                    };
                    (delivery, next_claim)
                });
                Step {
                    ended: Ok(settled),
                    next,
                }
            }
            Err(error) => {
                let unrecorded = Unrecorded {
                    id: Some(id),
                    outcome: described,
                    cause: Arc::new(error),
                };
                self.tally.unrecorded(unrecorded.clone());
                Step {
                    ended: Err(unrecorded),
                    next: None,
                }
            }
        }
    }

    /// Waits for a delivery slot, then sends within the deadline; a shutdown
    /// whose timeout passed cuts either wait short. On a shared store nothing is
    /// sent once the lease `claim` was made under has run out: another
    /// dispatcher may have taken the delegation over.
    async fn send(&self, message: Message, claim: &Claim) -> Result<Accepted, Failure> {
        let deadline = self.options.deadline;
        let sending = async {
            let Ok(_slot) = self.supervisor.slot().await else {
                return Err(Failure::offline(
                    "the dispatcher's delivery slots are closed",
                ));
            };
            if !claim.may_deliver() {
                return Err(Failure::new(
                    FailureReason::Interrupted,
                    "the dispatcher's lease ran out before the delivery started; \
                     nothing was sent",
                ));
            }
            match tokio::time::timeout(deadline, self.transport.send(message)).await {
                Ok(answer) => answer,
                Err(_) => Err(Failure::timeout(format!(
                    "no answer within the delivery deadline of {deadline:?}"
                ))),
            }
        };
        match self.supervisor.unless_cut_off(sending).await {
            Some(answer) => answer,
            None => Err(Failure::new(
                FailureReason::Interrupted,
                format!(
                    "shutdown cut the delivery off after waiting {}",
                    self.options
                        .shutdown_timeout
                        .map_or_else(|| "its timeout".to_owned(), |l| format!("{l:?}"))
                ),
            )),
        }
    }
}

/// Runs `work`, and answers what a panic in it said instead of unwinding through
/// the task: a delivery that panics is reported, never silently lost.
async fn caught<F: Future>(work: F) -> Result<F::Output, String> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => {
                let said = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                Poll::Ready(Err(said))
            }
        }
    })
    .await
}

/// How long a delivery keeps trying to write its outcome (or its failure and
/// next attempt) when a write fails having written nothing and leaves the
/// ledger working (a database server out of reach, or one that refused the
/// write): enough for a server's restart or a network blip, after which the
/// outcome is left to recovery as before.
const RECORD_FOR: Duration = Duration::from_secs(6);

/// The first wait between two tries; each next wait doubles, up to
/// [`RECORD_WAIT_MAX`].
const RECORD_AGAIN: Duration = Duration::from_millis(100);

/// The longest wait between two tries.
const RECORD_WAIT_MAX: Duration = Duration::from_millis(1_600);

/// The next attempt a retried failure was written with: its id, its claim,
/// its number, and when it may go.
type Next = (DelegationId, Claim, Attempt, Timestamp);

/// What one try of an attempt's write came to.
enum Tried {
    /// Written (or settled by another writer first), or failed for good: what
    /// the attempt ends with, its claim ended.
    Done(Result<(Settled, Option<Next>), crate::Error>),
    /// Failed having written nothing, with the ledger still working: worth
    /// another try, with the claim kept.
    Again(crate::Error, Claim),
}

/// One try's inputs.
struct Once<'a> {
    id: &'a DelegationId,
    first: &'a DelegationId,
    attempt: Attempt,
    event: Event,
    /// For a failure the policy retries: when, and the next attempt's task,
    /// source and target.
    plan: Option<(Timestamp, Option<serde_json::Value>, String, String)>,
    lease: Option<&'a Lease>,
}

/// Whether `error` failed having written nothing, with `ledger` still
/// working: the store could not be reached, or knew it wrote nothing (a write
/// whose outcome is unknown poisons the ledger).
fn wrote_nothing(ledger: &Ledger, error: &crate::Error) -> bool {
    matches!(error, crate::Error::Storage(_)) && ledger.check_poisoned().is_ok()
}

/// One try at recording an attempt's outcome: for a failure the policy
/// retries, the failure and the next attempt's `queued` in one write
/// ([`Inner::requeue`]); otherwise, or if that pair was refused, the outcome
/// alone ([`record`]). Ends `claim` unless the try is worth another.
fn record_once(worker: &Inner, once: Once<'_>, claim: Claim) -> Tried {
    let Once {
        id,
        first,
        attempt,
        event,
        plan,
        lease,
    } = once;
    if let (Some((not_before, next_task, next_source, next_target)), Event::Failed(failed)) =
        (plan, &event)
    {
        let failing = Failing { id, attempt, first };
        let queued = Queued {
            task: next_task,
            not_before: Some(not_before),
            ..Queued::new(next_source, next_target)
        };
        let noted = |next: &DelegationId| Failed {
            reason: failed.reason,
            detail: Some(match &failed.detail {
                Some(detail) => format!("{detail}; retried as {next}"),
                None => format!("retried as {next}"),
            }),
        };
        match worker.requeue(&failing, lease, noted, &queued) {
            Ok(Requeued::Queued {
                id: next,
                claim: next_claim,
                retried,
            }) => {
                // The original settled (failed, retried) with the pair.
                let _ = claim.settled();
                let settled = Settled {
                    id: id.clone(),
                    outcome: Outcome::Failed(noted(&next)),
                    seq: retried.failed.seq,
                    at: retried.failed.at,
                    attempt,
                };
                return Tried::Done(Ok((
                    settled,
                    Some((next, next_claim, retried.attempt, not_before)),
                )));
            }
            // A blip: the pair is tried again, so that the policy's next
            // attempt is not lost to it.
            Err(Error::Ledger(error)) if wrote_nothing(&worker.ledger, &error) => {
                return Tried::Again(error, claim);
            }
            // Settled by another writer first (the outcome that won is read
            // below), or the pair could not be written: the failure is
            // recorded alone, so the attempt still settles.
            Ok(Requeued::Settled) | Err(_) => {}
        }
    }
    let recorded = match record(&worker.ledger, id, event, attempt) {
        Err(error) if wrote_nothing(&worker.ledger, &error) => return Tried::Again(error, claim),
        recorded => recorded,
    };
    // Recorded or not, this attempt is over; one whose outcome could not
    // be written is left to recovery (and, on a shared store, to this
    // dispatcher's own recovery, which takes back its own claims).
    // Won, the claim may have ended with the settling write itself.
    // Lost, it is released: the winner's write ended only the claim
    // there was when it committed, and this one may have come after.
    let _ = match recorded {
        Ok((_, true)) => claim.settled(),
        Ok((_, false)) | Err(_) => claim.release(),
    };
    Tried::Done(recorded.map(|(settled, _)| (settled, None)))
}

/// Records `event` as the outcome of `id`, attempt `attempt` at its task. If
/// another writer settled it first, answers with the outcome that won. Also
/// says whether this outcome won.
fn record(
    ledger: &Ledger,
    id: &DelegationId,
    event: Event,
    attempt: Attempt,
) -> crate::Result<(Settled, bool)> {
    let settlement = ledger.settle(id, event.clone())?;
    let won = matches!(settlement, Settlement::Won(_));
    let (outcome, seq, at) = match settlement {
        Settlement::Won(recorded) => {
            let outcome = match event {
                Event::Delivered(d) => Outcome::Delivered {
                    http_status: d.http_status,
                    remote: d.remote,
                },
                Event::Failed(f) => Outcome::Failed(f),
                // `settle` refuses a `queued` before anything is written.
                Event::Queued(_) => return Err(InvalidEvent::NotAnOutcome.into()),
            };
            (outcome, recorded.seq, recorded.at)
        }
        Settlement::Lost { outcome, seq, at } => (outcome, seq, at),
    };
    Ok((
        Settled {
            id: id.clone(),
            outcome,
            seq,
            at,
            attempt,
        },
        won,
    ))
}
