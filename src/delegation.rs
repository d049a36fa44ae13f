//! A delegation rebuilt from its records, and the status a sender polls.
//!
//! [`Fold`] is the one place where records become state: it checks each record's
//! sequence, asks the [lifecycle machine](crate::lifecycle) whether the event is
//! legal, and checks the chain hash. Live recording, replay, `status` and the
//! audits all fold through it, so they cannot disagree.

use serde::Serialize;

use crate::envelope::{self, EventRef, RecordRef};
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
    pub attempts: Option<crate::ledger::Attempts>,
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

/// A [`Fold`] over records read in place ([`envelope::decode_lent`]): what
/// replay and the audit fold each delegation with. Where [`Fold`] copies each record's fields into its
/// delegation as it applies it, this keeps the records it applied (a `queued`
/// and at most one outcome, the most a history holds) and builds the
/// [`Delegation`] once, at the end, from the same fields.
///
/// It checks what [`Fold::check`] checks, in the same way: the delegation, the
/// sequence, the lifecycle machine and, if it verifies the chain, the hash.
/// Anything it does not take as the
/// common case (a refused record, an outcome before a `queued`, a second of
/// either) ends it with `None`: the caller then folds the records with
/// [`Fold`], which says what is wrong.
pub(crate) struct LentFold<'a> {
    id: &'a str,
    state: State,
    seq: Seq,
    /// The chain hash of the last applied record.
    hash: ChainHash,
    /// Whether each record's hash is recomputed and compared, as
    /// [`Fold::new`] does, or taken as stored, as [`Fold::trusting`] does.
    verify_chain: bool,
    queued: Option<RecordRef<'a>>,
    outcome: Option<RecordRef<'a>>,
}

impl<'a> LentFold<'a> {
    /// An empty fold for the delegation `id` that takes each stored hash as
    /// the chain's ([`Fold::trusting`]): what replay folds with.
    pub(crate) fn trusting(id: &'a str) -> Self {
        LentFold {
            id,
            state: State::Initial,
            seq: 0,
            hash: ChainHash::GENESIS,
            verify_chain: false,
            queued: None,
            outcome: None,
        }
    }

    /// An empty fold for the delegation `id` that recomputes every record's
    /// chain hash and compares it with the stored one ([`Fold::new`]): what
    /// the audit folds with.
    pub(crate) fn verifying(id: &'a str) -> Self {
        LentFold {
            verify_chain: true,
            ..LentFold::trusting(id)
        }
    }

    /// The seq of the last applied record, 0 for none.
    pub(crate) fn seq(&self) -> Seq {
        self.seq
    }

    /// The state after the records applied so far.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Applies `record`, as [`Fold::apply`] would; `None` if it would refuse it
    /// (or the history is not the common case, above).
    pub(crate) fn apply(&mut self, record: RecordRef<'a>) -> Option<()> {
        if record.delegation != self.id || record.seq != self.seq.saturating_add(1) {
            return None;
        }
        let next = lifecycle::step(self.state, record.event.kind()).ok()?;
        if self.verify_chain && record.chain_hash(&self.hash)? != record.hash {
            return None;
        }
        let slot = match record.event {
            EventRef::Queued(_) => &mut self.queued,
            EventRef::Delivered(_) | EventRef::Failed(_) if self.queued.is_some() => {
                &mut self.outcome
            }
            EventRef::Delivered(_) | EventRef::Failed(_) => return None,
        };
        if slot.is_some() {
            return None;
        }
        self.state = next;
        self.seq = record.seq;
        self.hash = record.hash;
        *slot = Some(record);
        Some(())
    }

    /// Whether `summary` is exactly the head stored for the delegation folded
    /// so far ([`envelope::head::is_encoding_of`] it), checked without building
    /// the delegation. `false` before any record.
    pub(crate) fn is_head(&self, summary: &[u8]) -> bool {
        self.queued.as_ref().is_some_and(|queued| {
            envelope::head::is_head_of(summary, queued, self.outcome.as_ref(), self.state)
        })
    }

    /// The delegation, as [`Fold::into_delegation`] gives it for the same
    /// records; `None` before any record.
    pub(crate) fn into_delegation(self) -> Option<Delegation> {
        let queued = self.queued?;
        let EventRef::Queued(fields) = queued.event else {
            return None;
        };
        let (settled_at, outcome, seq, hash) = match self.outcome {
            None => (None, None, queued.seq, queued.hash),
            Some(record) => {
                let outcome = match record.event {
                    EventRef::Delivered(delivered) => Outcome::Delivered {
                        http_status: delivered.http_status(),
                        remote: delivered.remote(),
                    },
                    EventRef::Failed(failed) => Outcome::Failed(failed.into_event()),
                    EventRef::Queued(_) => return None,
                };
                (Some(record.at), Some(outcome), record.seq, record.hash)
            }
        };
        Some(Delegation {
            id: DelegationId::try_from(self.id).ok()?,
            state: self.state,
            source: fields.source.to_owned(),
            target: fields.target.to_owned(),
            task: fields.task,
            retry_of: fields
                .retry_of
                .map(DelegationId::try_from)
                .transpose()
                .ok()?,
            attempt: fields.attempt.unwrap_or(1),
            not_before: fields.not_before,
            queued_at: queued.at,
            settled_at,
            outcome,
            seq,
            hash,
        })
    }
}
