//! A delegation rebuilt from its records, and the status a sender polls.
//!
//! [`Fold`] is the one place where records become state: it checks each record's
//! sequence, asks the [lifecycle machine](crate::lifecycle) whether the event is
//! legal, and checks the chain hash. Live recording, replay, `status` and the
//! audits all fold through it, so they cannot disagree.

use serde::Serialize;

use crate::event::{
    Attempt, ChainHash, DelegationId, Event, Failed, ReasonCode, Received, Record, Remote, Seq,
    Timestamp,
};
use crate::lifecycle::{self, Refusal, State};

/// How a settled delegation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target accepted the task, with this 2xx status if delivery was HTTP.
    Delivered {
        /// The 2xx status.
        http_status: Option<u16>,
        /// What the agent answered: a message, or a task with its id and state.
        remote: Option<Remote>,
    },
    /// Delivery failed.
    Failed(Failed),
}

/// One delegation, as its records describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delegation {
    /// Its id.
    pub id: DelegationId,
    /// Where it stands: `Queued`, `Delivered` or `Failed`.
    pub state: State,
    /// Who delegated.
    pub source: String,
    /// To whom.
    pub target: String,
    /// What was delegated.
    pub task: Option<serde_json::Value>,
    /// For a retry, the failed delegation it retries.
    pub retry_of: Option<DelegationId>,
    /// Which attempt at its task it is: 1 unless it is a retry.
    pub attempt: Attempt,
    /// Not to be sent before this instant, if it says so.
    pub not_before: Option<Timestamp>,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// When it settled, if it has.
    pub settled_at: Option<Timestamp>,
    /// How it ended, if it has.
    pub outcome: Option<Outcome>,
    /// The seq of its last record.
    pub seq: Seq,
    /// The chain hash of its last record.
    pub hash: ChainHash,
}

impl Delegation {
    /// What the sender polls for: the answer of a `check_task_status` tool.
    pub fn status(&self) -> Status {
        Delegation {
            id: self.id.clone(),
            source: String::new(),
            target: self.target.clone(),
            task: None,
            retry_of: self.retry_of.clone(),
            outcome: self.outcome.clone(),
            ..*self
        }
        .into_status()
    }

    /// [`Delegation::status`], taking the delegation's fields instead of copying
    /// them: what [`Ledger::status`](crate::Ledger::status) answers from the
    /// delegation it has just decoded.
    pub(crate) fn into_status(self) -> Status {
        let (reason, http_status, rpc_code, error_detail, target_received, remote) =
            match self.outcome {
                None => (None, None, None, None, Some(Received::Unknown), None),
                Some(Outcome::Delivered {
                    http_status,
                    remote,
                }) => (None, http_status, None, None, Some(Received::Yes), remote),
                Some(Outcome::Failed(failed)) => (
                    Some(failed.reason.code()),
                    failed.reason.http_status(),
                    failed.reason.rpc_code(),
                    failed.detail,
                    Some(failed.reason.received()),
                    None,
                ),
            };
        Status {
            id: self.id,
            status: self.state.into(),
            reason,
            http_status,
            rpc_code,
            error_detail,
            target_received,
            remote,
            target: Some(self.target),
            attempt: self.retry_of.is_some().then_some(self.attempt),
            retry_of: self.retry_of,
            queued_at: Some(self.queued_at),
            settled_at: self.settled_at,
            attempts: None,
        }
    }
}

/// The status of one delegation, as a sender's `check_task_status` sees it.
///
/// Every field is always present in its JSON form, `null` where it does not apply,
/// except the two of a retry, `attempt` and `retry_of`, which appear only on a
/// retry (so a first attempt's status reads as it always has).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The delegation asked about.
    pub id: DelegationId,
    /// `queued`, `delivered`, `failed`, or `not_found`.
    pub status: StatusKind,
    /// Why it failed (`target_offline`, `http_status`, …), for `failed`.
    pub reason: Option<ReasonCode>,
    /// The status code the target answered, for `delivered` over HTTP and for
    /// `failed` with reason `http_status`.
    pub http_status: Option<u16>,
    /// The JSON-RPC error code the agent answered, for `failed` with reason
    /// `rpc_error`.
    pub rpc_code: Option<i64>,
    /// The error detail, for `failed`.
    pub error_detail: Option<String>,
    /// Whether the target may have the task: `yes`, `no` or `unknown`.
    pub target_received: Option<Received>,
    /// What the agent answered, for `delivered`: `kind` (`message` or `task`),
    /// `task_id`, `context_id` and `state`, so the sender can follow the task.
    pub remote: Option<Remote>,
    /// To whom it was delegated.
    pub target: Option<String>,
    /// For a retry: which attempt it is (2 or more). Absent from the JSON form
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// For a retry: the failed delegation it retries. Absent from the JSON form
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<DelegationId>,
    /// When it was queued.
    pub queued_at: Option<Timestamp>,
    /// When it settled.
    pub settled_at: Option<Timestamp>,
    /// Its task's attempts, flattened into the JSON form (`first`, `latest`,
    /// `latest_status`, `attempts`, `last_failure`, `next_attempt_at`,
    /// `exhausted`), for a task of more than one attempt: filled by
    /// [`Ledger::task_status`](crate::Ledger::task_status) (which then
    /// answers with the latest attempt's status), which `status` prints. `None`, and absent from the JSON form, for a
    /// task never retried, and from [`Ledger::status`](crate::Ledger::status), which reads one head.
    #[serde(flatten)]
    pub attempts: Option<Attempts>,
}

impl Status {
    /// The answer for an id the log has never seen.
    pub fn not_found(id: DelegationId) -> Self {
        Status {
            id,
            status: StatusKind::NotFound,
            reason: None,
            http_status: None,
            rpc_code: None,
            error_detail: None,
            target_received: None,
            remote: None,
            target: None,
            attempt: None,
            retry_of: None,
            queued_at: None,
            settled_at: None,
            attempts: None,
        }
    }
}

/// A delegation's attempts as one task: what [`Ledger::attempts`](crate::Ledger::attempts) answers, and
/// what `status` adds to a delegation's own fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempts {
    /// The first attempt's id (the task's A2A `messageId`).
    pub first: DelegationId,
    /// The latest attempt's id.
    pub latest: DelegationId,
    /// The latest attempt's state: the task's state.
    pub latest_status: StatusKind,
    /// How many attempts so far.
    #[serde(rename = "attempts")]
    pub count: Attempt,
    /// The latest failed attempt, if any failed.
    pub last_failure: Option<LastFailure>,
    /// When the latest attempt may be sent: its `not_before`, while it is
    /// `queued` and that time is ahead of the ledger's clock; `null` otherwise.
    pub next_attempt_at: Option<Timestamp>,
    /// Whether the task gave up: the latest attempt failed and nothing retries
    /// it.
    pub exhausted: bool,
}

/// How an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastFailure {
    /// The attempt that failed.
    pub id: DelegationId,
    /// Why (`target_offline`, `http_status`, …).
    pub reason: ReasonCode,
    /// The status code, for reason `http_status`.
    pub http_status: Option<u16>,
    /// The error detail.
    pub detail: Option<String>,
    /// When it failed.
    pub at: Timestamp,
}

impl LastFailure {
    /// The failure of `attempt`, if it failed.
    pub(crate) fn of(attempt: &Delegation) -> Option<Self> {
        match (&attempt.outcome, attempt.settled_at) {
            (Some(Outcome::Failed(failed)), Some(at)) => Some(LastFailure {
                id: attempt.id.clone(),
                reason: failed.reason.code(),
                http_status: failed.reason.http_status(),
                detail: failed.detail.clone(),
                at,
            }),
            _ => None,
        }
    }
}

/// The `status` field of a [`Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Queued, delivery in flight.
    Queued,
    /// Delivered.
    Delivered,
    /// Failed; see the reason.
    Failed,
    /// The log has no such delegation.
    NotFound,
}

impl From<State> for StatusKind {
    /// What `status` says of a delegation in `state`: `initial` (no record yet,
    /// which a stored delegation never is) reads as `queued`.
    fn from(state: State) -> Self {
        match state {
            State::Delivered => StatusKind::Delivered,
            State::Failed => StatusKind::Failed,
            State::Initial | State::Queued => StatusKind::Queued,
        }
    }
}

/// Why a record is not the next one of its delegation's history: the fold's
/// refusal. (An audit's finding about a log is [`audit::Violation`](crate::audit::Violation).)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotNext {
    /// The record belongs to another delegation.
    #[error("record of `{found}` in the history of `{expected}`")]
    WrongDelegation {
        /// The delegation being folded.
        expected: DelegationId,
        /// The delegation the record names.
        found: DelegationId,
    },
    /// The seq is not one more than the last applied record's.
    #[error("seq {found}, expected {expected}")]
    Sequence {
        /// The seq that was due.
        expected: Seq,
        /// The seq found.
        found: Seq,
    },
    /// The lifecycle machine refused the event.
    #[error("{0}")]
    Illegal(Refusal),
    /// The record's hash does not match the chain.
    #[error("chain hash mismatch at seq {seq}: recorded {recorded}, computed {computed}")]
    BrokenChain {
        /// The record's seq.
        seq: Seq,
        /// The hash the record carries.
        recorded: ChainHash,
        /// The hash the chain gives.
        computed: ChainHash,
    },
}

/// Folds one delegation's records, in order, into a [`Delegation`].
///
/// A refused record changes nothing: the next record is judged against the last
/// applied one.
///
/// Not part of the crate's API (the [`Ledger`](crate::Ledger) and the audits fold
/// for you): public, and hidden from the documentation, for the crate's own tests,
/// which build heads and histories by hand.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Fold {
    id: DelegationId,
    state: State,
    seq: Seq,
    hash: ChainHash,
    current: Option<Delegation>,
    /// Whether a record's hash is recomputed and compared ([`Fold::new`]), or
    /// taken as stored ([`Fold::trusting`]).
    verify_chain: bool,
}

impl Fold {
    /// An empty fold for `id` that checks every record's chain hash: what `verify`,
    /// `audit`, `export` and `import` use.
    pub fn new(id: DelegationId) -> Self {
        Fold {
            verify_chain: true,
            id,
            state: State::Initial,
            seq: 0,
            hash: ChainHash::GENESIS,
            current: None,
        }
    }

    /// A fold that starts where a head's summary left off, trusting stored
    /// hashes: what every write of the ledger resumes from, without reading the
    /// history. The summary has no task, so neither has the fold's delegation.
    pub(crate) fn resume(summary: Delegation) -> Self {
        Fold {
            verify_chain: false,
            id: summary.id.clone(),
            state: summary.state,
            seq: summary.seq,
            hash: summary.hash,
            current: Some(summary),
        }
    }

    /// The delegation being folded.
    pub fn id(&self) -> &DelegationId {
        &self.id
    }

    /// An empty fold for `id` that takes each record's stored hash as the chain's,
    /// without recomputing it: what the ledger's reads use. The stored bytes
    /// still pass their checksum, strict decoding, the sequence, the lifecycle
    /// machine and the head check; recomputing every hash (canonical JSON and
    /// SHA-256 per record) is the audit's job, which runs [`Fold::new`].
    pub fn trusting(id: DelegationId) -> Self {
        Fold {
            verify_chain: false,
            ..Fold::new(id)
        }
    }

    /// The delegation's state after the records applied so far.
    pub fn state(&self) -> State {
        self.state
    }

    /// The seq of the last applied record, 0 for none.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// The chain hash of the last applied record.
    pub fn hash(&self) -> ChainHash {
        self.hash
    }

    /// The delegation so far, if a record has been applied.
    pub fn delegation(&self) -> Option<&Delegation> {
        self.current.as_ref()
    }

    /// Consumes the fold, giving the delegation.
    pub fn into_delegation(self) -> Option<Delegation> {
        self.current
    }

    /// Checks `record` against the records applied so far, without applying it:
    /// sequence first, then the lifecycle, then (if the record has a hash) the chain.
    /// Returns the state the record leads to.
    ///
    /// # Errors
    /// The first [`NotNext`] that applies.
    pub fn check(&self, record: &Record) -> Result<State, NotNext> {
        if record.delegation != self.id {
            return Err(NotNext::WrongDelegation {
                expected: self.id.clone(),
                found: record.delegation.clone(),
            });
        }
        let expected = self.seq.saturating_add(1);
        if record.seq != expected {
            return Err(NotNext::Sequence {
                expected,
                found: record.seq,
            });
        }
        let next = lifecycle::step(self.state, record.event.kind()).map_err(NotNext::Illegal)?;
        if let Some(recorded) = record.hash.filter(|_| self.verify_chain) {
            let computed = record.chain_hash(&self.hash);
            if recorded != computed {
                return Err(NotNext::BrokenChain {
                    seq: record.seq,
                    recorded,
                    computed,
                });
            }
        }
        Ok(next)
    }

    /// Checks `record` and, if it passes, applies it.
    ///
    /// # Errors
    /// The first [`NotNext`] that applies; the fold is then unchanged.
    pub fn apply(&mut self, record: &Record) -> Result<State, NotNext> {
        let next = self.check(record)?;
        self.state = next;
        self.seq = record.seq;
        self.hash = record.hash.unwrap_or_else(|| record.chain_hash(&self.hash));
        match (&record.event, &mut self.current) {
            (Event::Queued(queued), current) => {
                *current = Some(Delegation {
                    id: self.id.clone(),
                    state: next,
                    source: queued.source.clone(),
                    target: queued.target.clone(),
                    task: queued.task.clone(),
                    retry_of: queued.retry_of.clone(),
                    attempt: queued.attempt(),
                    not_before: queued.not_before,
                    queued_at: record.at,
                    settled_at: None,
                    outcome: None,
                    seq: record.seq,
                    hash: self.hash,
                });
            }
            (event, Some(delegation)) => {
                delegation.state = next;
                delegation.seq = record.seq;
                delegation.hash = self.hash;
                delegation.settled_at = Some(record.at);
                delegation.outcome = match event {
                    Event::Delivered(delivered) => Some(Outcome::Delivered {
                        http_status: delivered.http_status,
                        remote: delivered.remote.clone(),
                    }),
                    Event::Failed(failed) => Some(Outcome::Failed(failed.clone())),
                    Event::Queued(_) => delegation.outcome.clone(),
                };
            }
            // The machine allows no outcome before `queued`.
            (_, None) => {}
        }
        Ok(next)
    }
}
