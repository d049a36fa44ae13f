//! The stored head of a delegation: its whole summary, checksummed, so that its
//! status is one read.
//!
//! Head format version 2, every integer in the header big-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | head format version, `2` |
//! | 1 | 4 | CRC-32 (IEEE) of every byte from offset 5 to the end |
//! | 5 | rest | the delegation without its task, as postcard 1.x |
//!
//! The body holds, in this order: id, state, source, target, retry_of, attempt,
//! not_before, queued_at, settled_at, outcome, seq and hash, each as the record
//! body of [format version 2](super) writes the same kind of field. The task is
//! left out: it lives in the delegation's `queued` record only, and a head
//! decodes with no task.
//!
//! Decoding is as strict as a record's: the checksum first, then the body, which
//! must describe a delegation that folding its records could give (see
//! [`decode`]), and be exactly what [`encode`] writes for it.

use serde::{Deserialize, Serialize};

use super::DecodeError;
use super::binary::{self, Delivered, EventRef, Failed, Instant, RecordRef};
use crate::delegation::{Delegation, Outcome, Status};
use crate::event::{self, ChainHash, DelegationId, Received, Seq, Timestamp};
use crate::lifecycle;

/// The head format version this crate writes and reads.
pub const VERSION: u8 = 2;

/// The size of the head's header: version and checksum.
const HEADER_LEN: usize = 1 + 4;

/// Encodes `delegation`, without its task, as a head in format [`VERSION`].
///
/// Whatever the delegation holds is written as it is; [`decode`] refuses a head
/// that no fold of records gives, so write only what a
/// [`Fold`](crate::delegation::Fold) produced.
pub fn encode(delegation: &Delegation) -> Vec<u8> {
    let mut out = Vec::with_capacity(super::TYPICAL_LEN);
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    let mut out = binary::write(&Body::of(delegation), out);
    out.extend_from_slice(&delegation.hash.0);
    super::write_checksum(&mut out);
    out
}

/// Decodes a head into its delegation, with `task: None`.
///
/// Beyond the checksum and the one byte form [`encode`] writes, the head must be
/// one a [`Fold`](crate::delegation::Fold) of valid records gives: its state is
/// `queued` (no outcome, no settled_at, seq 1) or `delivered` / `failed` (the
/// matching outcome, a settled_at, seq 2), never `initial`; its attempt is 1
/// without `retry_of` and at least 2 with it; and its fields keep the rules of
/// [`Event::validate`](crate::event::Event::validate) (text lengths, status
/// ranges).
///
/// # Errors
/// A [`DecodeError`] naming the first thing wrong, checked in this order: the
/// version, the length, the checksum, then the body; never a panic.
pub fn decode(bytes: &[u8]) -> Result<Delegation, DecodeError> {
    let summary = decode_summary(bytes)?;
    // The body's bytes are the fields, then the hash, then nothing: exactly what
    // `encode` writes for the decoded delegation.
    if !summary.trailing.is_empty() || !binary::encodes_to(&summary.body, summary.fields) {
        return Err(DecodeError::NonCanonical);
    }
    summary.into_delegation()
}

/// Decodes a head as [`decode`] does, in every check but the last: the version,
/// the length, the checksum, the body and the fold's rules are checked, and the
/// one byte form is not.
///
/// For the hot path (`status`, and a write resuming from the head), where the
/// checksum already stops damage: a head in another byte form with a valid
/// checksum must have been forged. Reads that fold the records (`audit`,
/// `history`, replay) compare the head's bytes with the encoding of the fold and
/// decode it strictly when they differ, so such a head is still reported there.
///
/// # Errors
/// As [`decode`], except [`DecodeError::NonCanonical`].
pub fn decode_checksummed(bytes: &[u8]) -> Result<Delegation, DecodeError> {
    decode_summary(bytes)?.into_delegation()
}

/// A head decoded and checked as [`decode_checksummed`] checks it, still
/// borrowing its texts from the stored bytes: what `status` answers from
/// without building the delegation.
pub(crate) struct Summary<'a> {
    body: Body<'a>,
    hash: [u8; 32],
    /// What the checks gave: the state and the instants.
    checked: Checked,
    /// The body's bytes before the hash, for the byte-form check.
    fields: &'a [u8],
    /// Whatever follows the hash: nothing, in the one byte form.
    trailing: &'a [u8],
}

/// Decodes and checks a head, in the order [`decode`] gives: the version, the
/// length, the checksum, the body and the fold's rules; not the byte form.
///
/// # Errors
/// As [`decode_checksummed`].
pub(crate) fn decode_summary(bytes: &[u8]) -> Result<Summary<'_>, DecodeError> {
    match bytes.first() {
        None => return Err(DecodeError::Truncated { len: 0 }),
        Some(&VERSION) => {}
        Some(&found) => return Err(DecodeError::UnknownVersion { found }),
    }
    let stored = super::checked(bytes, HEADER_LEN)?;
    // The hash is the body's last field, 32 raw bytes (as postcard writes a
    // `[u8; 32]`): taken as a slice rather than byte by byte.
    let (body, rest): (Body<'_>, &[u8]) =
        postcard::take_from_bytes(stored).map_err(|e| DecodeError::Body(e.to_string()))?;
    let (hash, trailing) = rest
        .split_first_chunk::<32>()
        .ok_or_else(|| DecodeError::Body(postcard::Error::DeserializeUnexpectedEnd.to_string()))?;
    let fields = stored
        .get(..stored.len().saturating_sub(rest.len()))
        .unwrap_or_default();
    let checked = body.check()?;
    Ok(Summary {
        body,
        hash: *hash,
        checked,
        fields,
        trailing,
    })
}

impl Summary<'_> {
    /// The id the head names.
    pub(crate) fn id(&self) -> &str {
        self.body.id
    }

    /// The head's seq.
    pub(crate) fn seq(&self) -> Seq {
        self.body.seq
    }

    /// The status the head describes, for `id`, which must be the id it names
    /// ([`Summary::id`]): what [`Delegation::status`] gives for the delegation
    /// [`decode`] would give, built without it.
    ///
    /// # Errors
    /// Only what the checks already refused: a `retry_of` that is not an id.
    pub(crate) fn into_status(self, id: DelegationId) -> Result<Status, DecodeError> {
        let body = self.body;
        let (reason, http_status, rpc_code, error_detail, target_received, remote) =
            match body.outcome {
                None => (None, None, None, None, Some(Received::Unknown), None),
                Some(Settled::Delivered(delivered)) => (
                    None,
                    delivered.http_status(),
                    None,
                    None,
                    Some(Received::Yes),
                    delivered.remote(),
                ),
                Some(Settled::Failed(failed)) => {
                    let reason = failed.reason();
                    (
                        Some(reason.code()),
                        reason.http_status(),
                        reason.rpc_code(),
                        failed.detail().map(str::to_owned),
                        Some(reason.received()),
                        None,
                    )
                }
            };
        let retry_of = body
            .retry_of
            .map(|text| binary::id("retry_of", text))
            .transpose()?;
        Ok(Status {
            id,
            status: self.checked.state.into(),
            reason,
            http_status,
            rpc_code,
            error_detail,
            target_received,
            remote,
            target: Some(body.target.to_owned()),
            attempt: retry_of.is_some().then_some(body.attempt),
            retry_of,
            queued_at: Some(self.checked.queued_at),
            settled_at: self.checked.settled_at,
            attempts: None,
        })
    }

    /// The delegation the head describes, with `task: None`.
    fn into_delegation(self) -> Result<Delegation, DecodeError> {
        let body = self.body;
        let outcome = match body.outcome {
            None => None,
            Some(Settled::Delivered(delivered)) => {
                let delivered = delivered.into_event();
                Some(Outcome::Delivered {
                    http_status: delivered.http_status,
                    remote: delivered.remote,
                })
            }
            Some(Settled::Failed(failed)) => Some(Outcome::Failed(failed.into_event())),
        };
        let retry_of = body
            .retry_of
            .map(|text| binary::id("retry_of", text))
            .transpose()?;
        Ok(Delegation {
            id: binary::id("id", body.id)?,
            state: self.checked.state,
            // A first attempt's queued carries no attempt (attempt 1); `check`
            // refused anything else without `retry_of`.
            attempt: body.attempt,
            source: body.source.to_owned(),
            target: body.target.to_owned(),
            task: None,
            retry_of,
            not_before: self.checked.not_before,
            queued_at: self.checked.queued_at,
            settled_at: self.checked.settled_at,
            outcome,
            seq: body.seq,
            hash: ChainHash(self.hash),
        })
    }
}

/// Whether `bytes` is exactly the head [`encode`] writes for `delegation`
/// (whose task it leaves out, as heads do): how a head is checked against the
/// delegation its records fold to, without decoding it. Since [`decode`] takes
/// one byte form only, a head that is not these bytes never decodes to
/// `delegation`.
pub(crate) fn is_encoding_of(bytes: &[u8], delegation: &Delegation) -> bool {
    is_head(bytes, &Body::of(delegation), &delegation.hash)
}

/// [`is_encoding_of`] the delegation that folding `queued`, then `outcome` if
/// there is one, gives in `state` (the records read in place, checked and
/// folded), without building that delegation: the fields a
/// [`Fold`](crate::delegation::Fold) takes from each record, taken from the
/// same records.
pub(crate) fn is_head_of(
    bytes: &[u8],
    queued: &RecordRef<'_>,
    outcome: Option<&RecordRef<'_>>,
    state: lifecycle::State,
) -> bool {
    let EventRef::Queued(fields) = &queued.event else {
        return false;
    };
    let settled = match outcome.map(|record| &record.event) {
        None => None,
        Some(EventRef::Delivered(delivered)) => Some(Settled::Delivered(*delivered)),
        Some(EventRef::Failed(failed)) => Some(Settled::Failed(*failed)),
        Some(EventRef::Queued(_)) => return false,
    };
    let last = outcome.unwrap_or(queued);
    let body = Body {
        id: queued.delegation,
        state: State::of(state),
        source: fields.source,
        target: fields.target,
        retry_of: fields.retry_of,
        attempt: fields.attempt.unwrap_or(1),
        not_before: fields.not_before.map(Instant::of),
        queued_at: Instant::of(queued.at),
        settled_at: outcome.map(|record| Instant::of(record.at)),
        outcome: settled,
        seq: last.seq,
    };
    is_head(bytes, &body, &last.hash)
}

/// Whether `bytes` is the head whose body is `body` and then `hash`.
fn is_head(bytes: &[u8], body: &Body<'_>, hash: &ChainHash) -> bool {
    bytes.first() == Some(&VERSION)
        && super::checked(bytes, HEADER_LEN).is_ok_and(|stored| {
            // The fields, then the hash as 32 raw bytes, compared as a slice.
            stored
                .split_last_chunk::<32>()
                .is_some_and(|(fields, stored)| {
                    *stored == hash.0 && binary::encodes_to(body, fields)
                })
        })
}

/// The body [`encode`] writes for `delegation`.
#[cfg(test)]
fn body(delegation: &Delegation) -> Vec<u8> {
    let mut out = binary::write(&Body::of(delegation), Vec::new());
    out.extend_from_slice(&delegation.hash.0);
    out
}

/// A delegation without its task, and without its hash: in the stored body, the
/// hash follows these fields as 32 raw bytes, which is how postcard writes a
/// `[u8; 32]` field after them (so the bytes are those of a struct ending in
/// `hash: [u8; 32]`).
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Body<'a> {
    id: &'a str,
    state: State,
    source: &'a str,
    target: &'a str,
    #[serde(borrow)]
    retry_of: Option<&'a str>,
    attempt: u64,
    not_before: Option<Instant>,
    queued_at: Instant,
    settled_at: Option<Instant>,
    #[serde(borrow)]
    outcome: Option<Settled<'a>>,
    seq: Seq,
}

/// [`lifecycle::State`], in the order of [`lifecycle::State::ALL`]. `Initial` is
/// written if asked, and refused when read.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum State {
    Initial,
    Queued,
    Delivered,
    Failed,
}

impl State {
    fn of(state: lifecycle::State) -> Self {
        match state {
            lifecycle::State::Initial => State::Initial,
            lifecycle::State::Queued => State::Queued,
            lifecycle::State::Delivered => State::Delivered,
            lifecycle::State::Failed => State::Failed,
        }
    }
}

/// [`Outcome`].
#[derive(Clone, Copy, Serialize, Deserialize)]
enum Settled<'a> {
    Delivered(#[serde(borrow)] Delivered<'a>),
    Failed(#[serde(borrow)] Failed<'a>),
}

/// What checking a body gives: its state and its instants.
#[derive(Clone, Copy)]
struct Checked {
    state: lifecycle::State,
    not_before: Option<Timestamp>,
    queued_at: Timestamp,
    settled_at: Option<Timestamp>,
}

impl<'a> Body<'a> {
    fn of(delegation: &'a Delegation) -> Self {
        Body {
            id: delegation.id.as_str(),
            state: State::of(delegation.state),
            source: &delegation.source,
            target: &delegation.target,
            retry_of: delegation.retry_of.as_ref().map(DelegationId::as_str),
            attempt: delegation.attempt,
            not_before: delegation.not_before.map(Instant::of),
            queued_at: Instant::of(delegation.queued_at),
            settled_at: delegation.settled_at.map(Instant::of),
            outcome: delegation.outcome.as_ref().map(|outcome| match outcome {
                Outcome::Delivered {
                    http_status,
                    remote,
                } => Settled::Delivered(Delivered::of(*http_status, remote)),
                Outcome::Failed(failed) => Settled::Failed(Failed::of(failed)),
            }),
            seq: delegation.seq,
        }
    }

    /// Whether a fold of valid records could give this head, checked on the
    /// borrowed fields, without building anything: its state and instants if so.
    fn check(&self) -> Result<Checked, DecodeError> {
        let refused = |why: &str| Err(DecodeError::Body(format!("head: {why}")));
        binary::check_id("id", self.id)?;
        if let Some(text) = self.retry_of {
            binary::check_id("retry_of", text)?;
        }
        let not_before = self
            .not_before
            .map(|at| at.timestamp("not_before"))
            .transpose()?;
        // The queued event this head was folded from: its rules are the head's.
        // A first attempt's queued carries no attempt; anything else in the head
        // is the queued's own, and broken if it breaks the retry rule.
        let has_retry = self.retry_of.is_some();
        let attempt = (has_retry || self.attempt != 1).then_some(self.attempt);
        event::rules::queued(self.source, self.target, has_retry, attempt, None)
            .map_err(binary::broken)?;
        // The rules of `Event::validate`, each event's checked in place.
        match &self.outcome {
            None => {}
            Some(Settled::Delivered(delivered)) => delivered.check()?,
            Some(Settled::Failed(failed)) => failed.check()?,
        }
        let settled_at = self
            .settled_at
            .map(|at| at.timestamp("settled_at"))
            .transpose()?;
        let state = match (self.state, &self.outcome, settled_at.is_some()) {
            (State::Initial, _, _) => return refused("state `initial`: nothing was recorded"),
            (State::Queued, None, false) => lifecycle::State::Queued,
            (State::Delivered, Some(Settled::Delivered(_)), true) => lifecycle::State::Delivered,
            (State::Failed, Some(Settled::Failed(_)), true) => lifecycle::State::Failed,
            (State::Queued, _, _) => {
                return refused("state `queued` with an outcome or a settled_at");
            }
            (State::Delivered | State::Failed, _, _) => {
                return refused("a settled state without its outcome and settled_at");
            }
        };
        // One `queued` record, then at most one outcome.
        let seq = if state.is_settled() { 2 } else { 1 };
        if self.seq != seq {
            return Err(DecodeError::Body(format!(
                "head: state `{state}` is seq {seq}, not {}",
                self.seq
            )));
        }
        Ok(Checked {
            state,
            not_before,
            queued_at: self.queued_at.timestamp("queued_at")?,
            settled_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegation::Fold;
    use crate::event::{
        FailureReason, MAX_TEXT_BYTES, Queued, Record, Remote, RemoteKind, TaskState, Timestamp,
    };

    /// What folding `events` as the history of `id` gives.
    fn folded(id: &str, events: Vec<event::Event>) -> Delegation {
        let id: DelegationId = id.parse().unwrap();
        let mut fold = Fold::new(id.clone());
        for (event, seq) in events.into_iter().zip(1..) {
            let record = Record {
                delegation: id.clone(),
                seq,
                event,
                at: Timestamp::from_unix_nanos(1_780_000_000_000_000_000 + seq as i64 * 250),
                hash: None,
            };
            fold.apply(&record).unwrap();
        }
        fold.into_delegation().unwrap()
    }

    fn retry() -> event::Event {
        event::Event::Queued(Queued {
            task: Some(serde_json::json!({"review": "pr-42"})),
            retry_of: Some("d-0".parse().unwrap()),
            attempt: Some(3),
            not_before: Some(Timestamp::from_unix_nanos(1_780_000_100_000_000_000)),
            ..Queued::new("planner", "reviewer")
        })
    }

    fn delegations() -> Vec<Delegation> {
        let remote = Remote {
            kind: RemoteKind::Task,
            task_id: Some("t-1".into()),
            context_id: None,
            state: Some(TaskState::InputRequired),
        };
        let mut all = vec![
            folded("queued", vec![event::Event::queued("a", "b")]),
            folded("retry", vec![retry()]),
            folded(
                "delivered",
                vec![
                    retry(),
                    event::Event::delivered_with(Some(202), Some(remote)).unwrap(),
                ],
            ),
            folded(
                "plain",
                vec![
                    event::Event::queued("a", "b"),
                    event::Event::delivered(None).unwrap(),
                ],
            ),
        ];
        for reason in [
            FailureReason::TargetOffline,
            FailureReason::HttpStatus(503),
            FailureReason::RpcError(-32603),
            FailureReason::Rejected,
            FailureReason::BadResponse,
            FailureReason::MarshalError,
            FailureReason::Timeout,
            FailureReason::Interrupted,
        ] {
            all.push(folded(
                "failed",
                vec![
                    event::Event::queued("a", "b"),
                    event::Event::failed(reason, Some("why".into())).unwrap(),
                ],
            ));
        }
        all
    }

    /// `delegation` without its task, as a head decodes.
    fn untasked(delegation: &Delegation) -> Delegation {
        Delegation {
            task: None,
            ..delegation.clone()
        }
    }

    /// Seals `body` as a head with a valid checksum.
    fn resealed(body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![VERSION, 0, 0, 0, 0];
        bytes.extend_from_slice(body);
        super::super::write_checksum(&mut bytes);
        bytes
    }

    #[test]
    fn heads_round_trip_without_their_task() {
        for delegation in delegations() {
            let bytes = encode(&delegation);
            assert_eq!(bytes.first(), Some(&VERSION));
            assert_eq!(decode(&bytes), Ok(untasked(&delegation)));
        }
    }

    #[test]
    fn a_summary_answers_the_status_its_delegation_gives() {
        for delegation in delegations() {
            let bytes = encode(&delegation);
            let summary = decode_summary(&bytes).unwrap();
            assert_eq!(summary.id(), delegation.id.as_str());
            assert_eq!(summary.seq(), delegation.seq);
            assert_eq!(
                summary.into_status(delegation.id.clone()),
                Ok(delegation.status())
            );
        }
    }

    #[test]
    fn a_head_is_the_encoding_of_its_delegation_and_of_no_other() {
        let all = delegations();
        for (i, delegation) in all.iter().enumerate() {
            let bytes = encode(delegation);
            assert!(is_encoding_of(&bytes, delegation));
            assert!(is_encoding_of(&bytes, &untasked(delegation)));
            for (j, other) in all.iter().enumerate() {
                assert_eq!(
                    is_encoding_of(&bytes, other),
                    i == j || untasked(other) == untasked(delegation),
                    "{i} against {j}"
                );
            }
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                if let Some(byte) = flipped.get_mut(bit / 8) {
                    *byte ^= 1 << (bit % 8);
                }
                assert!(!is_encoding_of(&flipped, delegation), "bit {bit}");
            }
            for len in 0..bytes.len() {
                assert!(!is_encoding_of(bytes.get(..len).unwrap(), delegation));
            }
        }
    }

    #[test]
    fn every_single_bit_flip_of_a_head_is_a_typed_error() {
        for delegation in delegations() {
            super::super::tests::assert_every_bit_flip_is_typed(&encode(&delegation), decode);
        }
    }

    #[test]
    fn every_truncation_of_a_head_is_a_typed_error() {
        for delegation in delegations() {
            let bytes = encode(&delegation);
            for len in 0..bytes.len() {
                let err =
                    decode(bytes.get(..len).unwrap()).expect_err("a truncation must not decode");
                match err {
                    DecodeError::Truncated { len: found } => {
                        assert_eq!(found, len);
                        assert!(len < HEADER_LEN);
                    }
                    DecodeError::Checksum { .. } => assert!(len >= HEADER_LEN),
                    other => panic!("{len}: {other}"),
                }
            }
        }
    }

    #[test]
    fn non_canonical_heads_are_refused_even_with_a_valid_checksum() {
        let delegation = untasked(&delegations().remove(0));
        let body = body(&delegation);
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(decode(&resealed(&trailing)), Err(DecodeError::NonCanonical));
        // The id's length, 6, as a two-byte varint: the same value, not minimal.
        let (&length, rest) = body.split_first().unwrap();
        assert_eq!(length, 6);
        let mut padded = vec![0x86, 0x00];
        padded.extend_from_slice(rest);
        assert_eq!(decode(&resealed(&padded)), Err(DecodeError::NonCanonical));
    }

    #[test]
    fn heads_no_fold_gives_are_refused() {
        let all = delegations();
        let queued = untasked(&all[0]);
        let delivered = untasked(&all[2]);
        let failed = untasked(&all[4]);
        let refused = |delegation: Delegation| {
            let result = decode(&encode(&delegation));
            assert!(
                matches!(result, Err(DecodeError::Body(_))),
                "{delegation:?} read as {result:?}"
            );
        };
        refused(Delegation {
            state: lifecycle::State::Initial,
            ..queued.clone()
        });
        refused(Delegation {
            state: lifecycle::State::Delivered,
            ..queued.clone()
        });
        refused(Delegation {
            outcome: delivered.outcome.clone(),
            ..queued.clone()
        });
        refused(Delegation {
            settled_at: delivered.settled_at,
            ..queued.clone()
        });
        refused(Delegation {
            settled_at: None,
            ..delivered.clone()
        });
        refused(Delegation {
            outcome: failed.outcome.clone(),
            ..delivered.clone()
        });
        refused(Delegation {
            outcome: None,
            ..failed.clone()
        });
        refused(Delegation {
            seq: 0,
            ..queued.clone()
        });
        refused(Delegation {
            seq: 2,
            ..queued.clone()
        });
        refused(Delegation {
            seq: 3,
            ..failed.clone()
        });
        refused(Delegation {
            attempt: 0,
            ..queued.clone()
        });
        refused(Delegation {
            attempt: 2,
            ..queued.clone()
        });
        refused(Delegation {
            attempt: 1,
            ..untasked(&all[1])
        });
        refused(Delegation {
            source: "x".repeat(MAX_TEXT_BYTES + 1),
            ..queued.clone()
        });
        refused(Delegation {
            outcome: Some(Outcome::Delivered {
                http_status: Some(500),
                remote: None,
            }),
            ..delivered.clone()
        });
        refused(Delegation {
            outcome: Some(Outcome::Failed(event::Failed {
                reason: FailureReason::HttpStatus(204),
                detail: None,
            })),
            ..failed.clone()
        });
    }

    #[test]
    fn other_versions_are_refused_as_such() {
        let bytes = encode(&delegations().remove(0));
        for version in (0..=u8::MAX).filter(|v| *v != VERSION) {
            let mut other = bytes.clone();
            other[0] = version;
            assert_eq!(
                decode(&other),
                Err(DecodeError::UnknownVersion { found: version })
            );
        }
    }
}
