//! One delivery, from its acknowledged `queued` to its recorded outcome: wait for a
//! slot, send within the deadline (or until shutdown cuts it off), record the answer.

use std::sync::Arc;

use super::receipt::Settle;
use super::{Admission, Inner, Request, Settled, Unrecorded, blocking, outcome};
use crate::delegation::Outcome;
use crate::event::{DelegationId, Event, FailureReason};
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
        }
    }
}

impl Inner {
    /// Spawns the delivery of a delegation whose `queued` is acknowledged, holding
    /// its claim until the outcome is recorded, then ends the admission.
    pub(super) fn start(
        self: &Arc<Self>,
        admission: Admission,
        delivery: Delivery,
        claim: Claim,
        settled: Settle,
        runtime: &tokio::runtime::Handle,
    ) {
        self.tally.queued();
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

    /// One delegation, from its acknowledged `queued` to its recorded outcome.
    /// The claim ends once the outcome is recorded (or could not be).
    async fn run(self: Arc<Self>, delivery: Delivery, claim: Claim, settled: Settle) {
        let Delivery {
            id,
            message_id,
            source,
            target,
            task,
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
                self.deliver(message).await
            }
        };
        let event = outcome::event(answer);
        let described = outcome::describe(&event);
        let ledger = self.ledger.clone();
        let outcome_id = id.clone();
        let result = blocking("ledger call", move || record(&ledger, &outcome_id, event)).await;
        let answer = match result {
            Ok(settled) => {
                self.tally
                    .settled(matches!(settled.outcome, Outcome::Delivered { .. }));
                Ok(settled)
            }
            Err(error) => {
                let unrecorded = Unrecorded {
                    id: Some(id.clone()),
                    outcome: described,
                    cause: error.to_string(),
                };
                self.tally.unrecorded(unrecorded.clone());
                Err(unrecorded)
            }
        };
        drop(claim);
        let _ = settled.send(answer);
    }

    /// Waits for a delivery slot, then sends within the deadline; a shutdown
    /// whose timeout passed cuts either wait short.
    async fn deliver(&self, message: Message) -> Result<Accepted, Failure> {
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
    Ok(Settled {
        id: id.clone(),
        outcome,
        seq,
        at,
    })
}
