//! The bookkeeping both verdicts share: judging a record through a
//! [`Fold`], counting delegations by state, and collecting violations.

use crate::audit::{Judgement, Kind, Pending, States, Verdict, Violation};
use crate::delegation::{self, Fold};
use crate::event::{Attempt, DelegationId, Event, Record, Seq};
use crate::lifecycle::{self, State};

/// A problem with a record's `hash` found outside the fold: mixed presence, or
/// text that is not a hash. It is reported only if the sequence and the lifecycle
/// pass, since `broken_chain` is last in precedence.
pub(crate) type ChainProblem = Option<String>;

/// Judges a retry's link, once every other kind has passed: `None` if the retry
/// may be applied (the judge then takes it as the retry of its original), or what
/// is wrong with the link. Called only for a `queued` that carries `retry_of`.
pub(crate) type Link<'a> = &'a mut dyn FnMut(&Record) -> Option<String>;

/// No link to judge: for records that cannot be a delegation's first.
pub(crate) fn no_link(_: &Record) -> Option<String> {
    None
}

/// Whether `record` is a retry: a `queued` with `retry_of`.
pub(crate) fn is_retry(record: &Record) -> bool {
    matches!(&record.event, Event::Queued(queued) if queued.retry_of.is_some())
}

/// The link rule of the format page, given what is known of the delegation the
/// retry names: `None` if `retry` may retry it.
pub(crate) fn judge_link(retry: &Record, original: Original<'_>) -> Option<String> {
    let Event::Queued(queued) = &retry.event else {
        return None;
    };
    let of = queued.retry_of.as_ref()?;
    let attempt = queued.attempt();
    match original {
        Original::Missing(why) => Some(format!("retries `{of}`, {why}")),
        Original::Damaged(why) => Some(format!("retries `{of}`, whose history is damaged: {why}")),
        Original::Retried(by) => Some(format!("retries `{of}`, which `{by}` already retried")),
        Original::Found { state, .. } if state != State::Failed => Some(format!(
            "retries `{of}`, which has not failed: it is {state}"
        )),
        Original::Found {
            attempt: theirs, ..
        } if theirs.checked_add(1) != Some(attempt) => Some(format!(
            "attempt {attempt}, but `{of}` is attempt {theirs}: a retry is one more"
        )),
        Original::Found { .. } => None,
    }
}

/// What a verdict knows of the delegation a retry names.
pub(crate) enum Original<'a> {
    /// Not there: never queued (or its first record was rejected), with the words
    /// for it.
    Missing(&'static str),
    /// Its history cannot be read (a store audit).
    Damaged(String),
    /// Already retried, by this delegation.
    Retried(&'a DelegationId),
    /// Its state and attempt.
    Found {
        /// Its state.
        state: State,
        /// Its attempt.
        attempt: Attempt,
    },
}

/// Counts and violations, as records are judged.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) records: u64,
    delegations: u64,
    states: States,
    violations: Vec<Violation>,
}

impl Tally {
    /// Counts one more record and returns its position, from 1.
    pub(crate) fn next_line(&mut self) -> u64 {
        self.records += 1;
        self.records
    }

    /// Reports a violation that is not about a readable record.
    pub(crate) fn report(
        &mut self,
        line: u64,
        delegation: Option<String>,
        kind: Kind,
        message: String,
    ) {
        self.violations.push(Violation {
            line,
            delegation,
            kind,
            message,
            seq: None,
            event: None,
            state: None,
        });
    }

    /// Reports a violation about a readable record.
    fn report_record(
        &mut self,
        line: u64,
        record: &Record,
        state: State,
        kind: Kind,
        message: String,
    ) {
        self.violations.push(Violation {
            line,
            delegation: Some(record.delegation.to_string()),
            kind,
            message,
            seq: Some(record.seq),
            event: Some(record.event.kind()),
            state: Some(state),
        });
    }

    /// Judges `record`, the record at `line`, against `fold`, and applies it if it
    /// passes. `written_seq` is the seq as the line wrote it when that was not a
    /// `u64` (a negative number), for the message. `link` judges a retry's link
    /// (see [`Link`]), last, once every other kind has passed. Returns whether it
    /// was applied.
    pub(crate) fn judge(
        &mut self,
        fold: &mut Fold,
        mut record: Record,
        line: u64,
        chain: ChainProblem,
        written_seq: Option<i64>,
        link: Link<'_>,
    ) -> bool {
        let before = fold.state();
        let verdict = match chain {
            Some(problem) => {
                record.hash = None;
                match fold.check(&record) {
                    Ok(_) => Err((Kind::BrokenChain, problem)),
                    Err(not_next) => Err(describe(&not_next, written_seq)),
                }
            }
            // Only a retry has a link to judge: every other record is checked and
            // applied in one go.
            None if is_retry(&record) => match fold.check(&record) {
                Err(not_next) => Err(describe(&not_next, written_seq)),
                Ok(_) => match link(&record) {
                    Some(problem) => Err((Kind::RetryLink, problem)),
                    None => fold
                        .apply(&record)
                        .map_err(|not_next| describe(&not_next, written_seq)),
                },
            },
            None => fold
                .apply(&record)
                .map_err(|not_next| describe(&not_next, written_seq)),
        };
        match verdict {
            Ok(after) => {
                self.count(before, after);
                true
            }
            Err((kind, message)) => {
                self.report_record(line, &record, before, kind, message);
                false
            }
        }
    }

    /// Judges a record of a delegation already settled as `state` at `seq`, which
    /// has been set aside: no record can follow it, so there is nothing to apply.
    pub(crate) fn judge_settled(
        &mut self,
        state: State,
        seq: Seq,
        record: &Record,
        line: u64,
        written_seq: Option<i64>,
    ) {
        let expected = seq.saturating_add(1);
        let (kind, message) = if record.seq != expected || written_seq.is_some() {
            describe(
                &delegation::NotNext::Sequence {
                    expected,
                    found: record.seq,
                },
                written_seq,
            )
        } else {
            match lifecycle::step(state, record.event.kind()) {
                Err(refusal) => describe(&delegation::NotNext::Illegal(refusal), None),
                // Settled states refuse every event; should the machine ever
                // change, refusing here is the safe reading.
                Ok(_) => (
                    Kind::IllegalTransition,
                    format!(
                        "{} after the delegation settled as {state}",
                        record.event.kind()
                    ),
                ),
            }
        };
        self.report_record(line, record, state, kind, message);
    }

    /// Counts one more record, applied without a finding, which took its
    /// delegation from `before` to `after`: what [`Tally::judge`] counts for
    /// it.
    pub(crate) fn applied(&mut self, before: State, after: State) {
        self.next_line();
        self.count(before, after);
    }

    fn count(&mut self, before: State, after: State) {
        if before == State::Initial {
            self.delegations += 1;
        } else if let Some(slot) = self.slot(before) {
            *slot = slot.saturating_sub(1);
        }
        if let Some(slot) = self.slot(after) {
            *slot += 1;
        }
    }

    fn slot(&mut self, state: State) -> Option<&mut u64> {
        match state {
            State::Initial => None,
            State::Queued => Some(&mut self.states.queued),
            State::Delivered => Some(&mut self.states.delivered),
            State::Failed => Some(&mut self.states.failed),
        }
    }

    /// The verdict, with `pending` sorted oldest first.
    pub(crate) fn finish(self, mut pending: Vec<Pending>) -> Verdict {
        pending.sort_by(|a, b| {
            (a.queued_at, a.delegation.as_str()).cmp(&(b.queued_at, b.delegation.as_str()))
        });
        Verdict {
            verdict: if self.violations.is_empty() {
                Judgement::Clean
            } else {
                Judgement::Violations
            },
            records: self.records,
            delegations: self.delegations,
            states: self.states,
            violations: self.violations,
            pending,
        }
    }
}

/// The kind and message of a record the fold refused.
fn describe(not_next: &delegation::NotNext, written_seq: Option<i64>) -> (Kind, String) {
    match not_next {
        delegation::NotNext::Sequence { expected, found } => {
            let found = written_seq.map_or_else(|| found.to_string(), |seq| seq.to_string());
            let why = match (expected, written_seq) {
                (_, Some(_)) => "a seq is a positive integer",
                (1, None) => "a delegation's first record is seq 1",
                (expected, None) if found.parse::<Seq>().is_ok_and(|f| f < *expected) => {
                    "a repeat of an earlier seq"
                }
                _ => "a gap: records are missing before it",
            };
            (
                Kind::Sequence,
                format!("seq {found}, expected {expected} ({why})"),
            )
        }
        delegation::NotNext::Illegal(refusal) => (Kind::IllegalTransition, refusal.to_string()),
        delegation::NotNext::BrokenChain {
            recorded, computed, ..
        } => (
            Kind::BrokenChain,
            format!("hash does not match: the record says {recorded}, the chain gives {computed}"),
        ),
        delegation::NotNext::WrongDelegation { .. } => (Kind::Malformed, not_next.to_string()),
    }
}

/// The pending entry for a fold still queued, aged against `now`.
pub(crate) fn pending(fold: &Fold, now: crate::event::Timestamp) -> Option<Pending> {
    let delegation = fold.delegation()?;
    (delegation.state == State::Queued).then(|| Pending::aged(delegation, now))
}
