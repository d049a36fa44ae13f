//! One delivery, from its acknowledged `queued` to its recorded outcome: wait for a
//! slot, send within the deadline (or until shutdown cuts it off), record the answer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use super::receipt::Settle;
use super::supervisor::Admission;
use super::{Inner, Request, Settled, Unrecorded, blocking, meter, outcome, trace};
use crate::delegation::Outcome;
use crate::event::{Attempt, DelegationId, Event, FailureReason, InvalidEvent};
use crate::ledger::{Claim, Ledger, Settlement};
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
    /// redelivers. Read by the delivery's span (feature `tracing`).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(super) attempt: Attempt,
}

impl Delivery {
    /// The first attempt at `request`'s task, as delegation `id`.
    pub(super) fn first(id: DelegationId, request: Request) -> Self {
        Delivery {
            message_id: id.clone(),
            id,
            source: request.source,
            target: request.target,
            task: request.task,
            attempt: 1,
        }
    }
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
            .spawn(inner.run(delivery, claim, settle), runtime);
        drop(admission);
    }

    /// One delegation, from its acknowledged `queued` to its recorded outcome,
    /// which goes to its receipt. The claim ends once the outcome is recorded (or
    /// could not be). A dropped dispatcher ends it where it is: the receipt answers
    /// `Abandoned`, the claim ends, and the delegation waits, queued, for recovery.
    async fn run(self: Arc<Self>, delivery: Delivery, claim: Claim, settle: Settle) {
        let id = delivery.id.clone();
        let span = trace::Span::of(&delivery);
        let meter = meter::Meter::start();
        // Boxed once here, innermost: each wrapper below (the panic catcher, the
        // abandonment, the span) takes its work by value and keeps it in its own
        // state, so an unboxed delivery made the task's future 19 KB, copied
        // whole on every spawn.
        let delivering = Box::pin(self.deliver(delivery, claim));
        let ended = span
            .around(self.supervisor.unless_abandoned(caught(delivering)))
            .await;
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
                Err(unrecorded)
            }
        };
        span.settled(&answer);
        meter.settled(&answer);
        let _ = settle.send(answer);
    }

    /// Sends `delivery` and records what came of it; then ends `claim` (in the
    /// shared store too, where there is one).
    async fn deliver(&self, delivery: Delivery, claim: Claim) -> Result<Settled, Unrecorded> {
        let Delivery {
            id,
            message_id,
            source,
            target,
            task,
            attempt: _,
        } = delivery;
        let answer = match task {
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
                self.send(message, &claim).await
            }
        };
        let event = outcome::event(answer);
        let described = outcome::describe(&event);
        let ledger = self.ledger.clone();
        let outcome_id = id.clone();
        let recorded = blocking("ledger call", move || {
            let recorded = record(&ledger, &outcome_id, event);
            // Recorded or not, this delivery is over; a delegation whose outcome
            // could not be written is left to recovery (and, on a shared store,
            // to this dispatcher's own recovery, which takes back its own claims).
            let _ = claim.release();
            recorded
        });
        match recorded.await {
            Ok(settled) => {
                self.tally
                    .settled(matches!(settled.outcome, Outcome::Delivered { .. }));
                Ok(settled)
            }
            Err(error) => {
                let unrecorded = Unrecorded {
                    id: Some(id),
                    outcome: described,
                    cause: Arc::new(error),
                };
                self.tally.unrecorded(unrecorded.clone());
                Err(unrecorded)
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

/// Records `event` as the outcome of `id`. If another writer settled it first,
/// answers with the outcome that won.
fn record(ledger: &Ledger, id: &DelegationId, event: Event) -> crate::Result<Settled> {
    let (outcome, seq, at) = match ledger.settle(id, event.clone())? {
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
    Ok(Settled {
        id: id.clone(),
        outcome,
        seq,
        at,
    })
}
