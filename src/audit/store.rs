//! `audit`: the verdict on a store, from its own records.
//!
//! The store scans one delegation at a time, and the audit holds only that one.
//! For each stored record, in scan order: the envelope (version, CRC-32, strict
//! body), the key against the record (same delegation, same seq), then the
//! [`Fold`]: sequence (so a missing middle record is a gap), lifecycle, and chain
//! hash. After a delegation's records, its redundant head: a head ahead of the
//! records means records were lost, the last one included.
//!
//! A retry (a `queued` with `retry_of`) is judged against the store as it is: the
//! delegation it retries must be in the store, readable, `failed`, one attempt
//! lower, and retried by no other retry earlier in scan order. That delegation is
//! read on its own, so judging links costs one read per retry; the delegations
//! already retried are kept in memory, one entry per retry.
//!
//! Most delegations have no finding and are no retry: each of those is checked
//! in place, its records borrowed from what the store read ([`Store::scan_lent`],
//! [`audit_view`]), by the same checks. Any other delegation is read again whole
//! and judged record by record, so the findings are the same either way.

use std::path::Path;

use std::collections::HashMap;

use crate::audit::judge::{self, Original, Tally};
use crate::audit::{AuditError, Judgement, Kind, Verdict, Violation};
use crate::clock::Clock;
use crate::delegation::Fold;
use crate::envelope::{self, EventRef};
use crate::error::ReadError;
use crate::event::{ChainHash, DelegationId, Event, Record, Seq};
use crate::ledger::LentFold;
use crate::ledger::{Chain, Ledger, decode_stream, fold_records, head_disagrees};
use crate::lifecycle::State;
use crate::store::{Head, Sled, Store, Stream, StreamRef};

/// Audits every record of `store`. `clock` gives the "now" that pending
/// delegations are aged against.
///
/// Positions (`line`) count stored records in scan order, from 1. Damage the
/// scan reports (a key that does not parse, a record of an unknown version) is a
/// `malformed` violation at the position it would have had.
///
/// # Errors
/// [`AuditError::Store`] if the store fails to read (I/O), as opposed to reading
/// back damaged bytes, which are violations.
pub fn audit(store: &dyn Store, clock: &dyn Clock) -> Result<Verdict, AuditError> {
    audit_observed(store, clock, &mut |_| {})
}

/// As [`audit`], calling `progress` now and then with the records audited so far.
///
/// # Errors
/// As for [`audit`].
pub fn audit_observed(
    store: &dyn Store,
    clock: &dyn Clock,
    progress: &mut dyn FnMut(u64),
) -> Result<Verdict, AuditError> {
    let now = clock.now();
    let mut tally = Tally::default();
    let mut pending = Vec::new();
    let mut reported = 0u64;
    let mut retried = HashMap::new();
    for lent in store.scan_lent() {
        let format = store.format();
        // The common case, a delegation without a finding, is read in place;
        // anything else is read again whole and judged record by record.
        let stream = match lent {
            Ok(lent) => {
                let clean = lent
                    .view()
                    .as_ref()
                    .filter(|_| format >= crate::store::HEAD_FORMAT)
                    .and_then(|view| audit_view(view, now));
                match clean {
                    Some(clean) => {
                        clean.count(&mut tally, &mut pending);
                        None
                    }
                    None => Some(lent.into_stream()),
                }
            }
            Err(error) => Some(Err(error)),
        };
        match stream {
            None => {}
            Some(stream) => audit_item(store, &mut tally, &mut pending, &mut retried, stream, now)?,
        }
        if tally.records >= reported + 4096 {
            reported = tally.records;
            progress(reported);
        }
    }
    progress(tally.records);
    Ok(tally.finish(pending))
}

/// A delegation read in place in which the audit finds nothing ([`audit_view`]).
struct Clean {
    /// Its records: a `queued`, then its outcome if it has settled.
    records: Seq,
    /// Its state.
    state: State,
    /// Itself, if it is still `queued`.
    pending: Option<super::Pending>,
}

impl Clean {
    /// Counts it as judging its records one by one counts them.
    fn count(self, tally: &mut Tally, pending: &mut Vec<super::Pending>) {
        tally.applied(State::Initial, State::Queued);
        if self.records == 2 {
            tally.applied(State::Queued, self.state);
        }
        pending.extend(self.pending);
    }
}

/// A delegation read in place, checked as [`audit_stream`] checks it: each
/// record's envelope and key, the fold with every chain hash recomputed, and
/// the head against the fold. `Some` only where [`audit_stream`] would find
/// nothing; `None` for anything else (a finding, a retry, whose link is judged
/// against the store, a record of version 1), for [`audit_stream`] to judge.
fn audit_view(view: &StreamRef<'_>, now: crate::event::Timestamp) -> Option<Clean> {
    let (head_seq, summary) = view.head?;
    let mut fold = LentFold::verifying(view.id);
    for (seq, bytes) in view.records() {
        let record = envelope::decode_lent(bytes)?;
        let retry = matches!(&record.event, EventRef::Queued(queued) if queued.retry_of.is_some());
        if record.delegation != view.id || record.seq != seq || retry {
            return None;
        }
        fold.apply(record)?;
    }
    if fold.seq() != head_seq || !fold.is_head(summary) {
        return None;
    }
    let (records, state) = (fold.seq(), fold.state());
    let pending = match state {
        State::Queued => Some(super::Pending::aged(&fold.into_delegation()?, now)),
        _ => None,
    };
    Some(Clean {
        records,
        state,
        pending,
    })
}

/// Audits one item of the scan: a delegation read whole, or what the scan
/// found wrong.
fn audit_item(
    store: &dyn Store,
    tally: &mut Tally,
    pending: &mut Vec<super::Pending>,
    retried: &mut HashMap<DelegationId, DelegationId>,
    stream: Result<Stream, ReadError>,
    now: crate::event::Timestamp,
) -> Result<(), AuditError> {
    match stream {
        Ok(stream) => {
            let mut link = |retry: &Record| judge_stored_link(store, retried, retry);
            let format = store.format();
            if let Some(queued) = audit_stream(tally, stream, now, format, &mut link) {
                pending.push(queued);
            }
        }
        Err(ReadError::Corrupt { key, reason }) => {
            let line = tally.next_line();
            tally.report(line, None, Kind::Malformed, format!("{key}: {reason}"));
        }
        Err(error @ ReadError::UnknownVersion { .. }) => {
            let line = tally.next_line();
            tally.report(line, None, Kind::Malformed, error.to_string());
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Audits the sled store at `path`, which must exist (an audit never creates a
/// store).
///
/// # Errors
/// [`AuditError::Io`] if there is nothing at `path`; [`AuditError::Store`] if the
/// store cannot be opened (sled panicked on damaged files, it is locked, a newer
/// format) or read.
pub fn audit_path(path: impl AsRef<Path>, clock: &dyn Clock) -> Result<Verdict, AuditError> {
    audit_path_observed(path, clock, &mut |_| {})
}

/// As [`audit_path`], with progress as for [`audit_observed`].
///
/// # Errors
/// As for [`audit_path`].
pub fn audit_path_observed(
    path: impl AsRef<Path>,
    clock: &dyn Clock,
    progress: &mut dyn FnMut(u64),
) -> Result<Verdict, AuditError> {
    let path = path.as_ref();
    std::fs::metadata(path)?;
    let store = Sled::open_existing_with_cache(path, Sled::SCAN_CACHE_BYTES)?;
    let mut verdict = audit_observed(&store, clock, progress)?;
    let acknowledged = store.acknowledged_at_open();
    if verdict.records < acknowledged {
        // sled can drop whole delegations, records and heads together, without an
        // error; only the count kept outside its files can tell.
        verdict.violations.push(Violation {
            line: verdict.records.saturating_add(1),
            delegation: None,
            kind: Kind::Sequence,
            message: {
                let lost = acknowledged - verdict.records;
                format!(
                    "the store holds {} records, but {acknowledged} were acknowledged as \
                     durable ({}): at least {lost} {} lost",
                    verdict.records,
                    crate::store::sled::ACKED_FILE,
                    if lost == 1 {
                        "record was"
                    } else {
                        "records were"
                    },
                )
            },
            seq: None,
            event: None,
            state: None,
        });
        verdict.verdict = Judgement::Violations;
    }
    Ok(verdict)
}

/// Where the last stored records of a delegation stand, for the head check.
#[derive(Clone, Copy)]
struct Seen {
    line: u64,
    /// The seq of its key.
    seq: Seq,
    /// Its chain hash, when it decoded and matched its key.
    hash: Option<ChainHash>,
}

/// Judges a stored retry's link against the store: the delegation it retries is
/// read and folded as the ledger reads it.
fn judge_stored_link(
    store: &dyn Store,
    retried: &mut HashMap<DelegationId, DelegationId>,
    retry: &Record,
) -> Option<String> {
    let Event::Queued(queued) = &retry.event else {
        return None;
    };
    let of = queued.retry_of.as_ref()?;
    let read = store.history(of).and_then(|stream| {
        fold_records(
            &stream,
            &decode_stream(&stream)?,
            Chain::Verify,
            store.format(),
        )
    });
    let original = match (retried.get(of), read) {
        (Some(by), _) => Original::Retried(by),
        (None, Err(error)) => Original::Damaged(error.to_string()),
        (None, Ok(fold)) => match fold.delegation() {
            None => Original::Missing("which the store does not hold"),
            Some(delegation) => Original::Found {
                state: delegation.state,
                attempt: delegation.attempt,
            },
        },
    };
    let verdict = judge::judge_link(retry, original);
    if verdict.is_none() {
        retried.insert(of.clone(), retry.delegation.clone());
    }
    verdict
}

/// Audits one delegation; returns it as pending if it ends queued.
fn audit_stream(
    tally: &mut Tally,
    stream: Stream,
    now: crate::event::Timestamp,
    format: u8,
    link: judge::Link<'_>,
) -> Option<super::Pending> {
    let id = stream.id.clone();
    let mut fold = Fold::new(id.clone());
    let (mut last, mut previous): (Option<Seen>, Option<Seen>) = (None, None);
    for entry in &stream.entries {
        let line = tally.next_line();
        let mut seen = Seen {
            line,
            seq: entry.seq,
            hash: None,
        };
        match envelope::decode(&entry.bytes) {
            Err(error) => tally.report(
                line,
                Some(id.to_string()),
                Kind::Malformed,
                format!("seq {}: {error}", entry.seq),
            ),
            Ok(record) if record.delegation != id || record.seq != entry.seq => tally.report(
                line,
                Some(id.to_string()),
                Kind::Malformed,
                format!(
                    "stored under `{id}` seq {}, but the record says `{}` seq {}",
                    entry.seq, record.delegation, record.seq
                ),
            ),
            Ok(record) => {
                seen.hash = record.hash;
                tally.judge(&mut fold, record, line, None, None, &mut *link);
            }
        }
        previous = last.replace(seen);
    }
    if let Some((kind, message)) = check_head(&stream, &fold, last, previous, format) {
        let line = match last {
            Some(seen) => seen.line,
            // No records at all: where they would have been.
            None => tally.records + 1,
        };
        tally.report(line, Some(id.to_string()), kind, message);
    }
    judge::pending(&fold, now)
}

/// Checks the head against the stored records and what they fold to.
///
/// A head of format 2 was written in one atomic write with its record, so it
/// must sit on the last record and hold exactly the delegation the records fold
/// to: anything else is damage, and a status read from it would lie. A head of
/// format 1 was written after its record, so one that lags by exactly one, with
/// the hash of the record before the last, is what a process killed between the
/// two writes left, for a record it never acknowledged: benign, as is a missing
/// head over a single record.
fn check_head(
    stream: &Stream,
    fold: &Fold,
    last: Option<Seen>,
    previous: Option<Seen>,
    format: u8,
) -> Option<(Kind, String)> {
    let legacy = format < crate::store::HEAD_FORMAT;
    let Some(last) = last else {
        let head = stream.head.as_ref()?;
        return Some((
            Kind::Sequence,
            format!(
                "no records, but the head says seq {}: every record was lost",
                head.seq
            ),
        ));
    };
    let Some(head) = &stream.head else {
        let benign = legacy && last.seq == 1 && previous.is_none();
        return (!benign).then(|| {
            (
                Kind::BrokenChain,
                format!("no head, but the records reach seq {}", last.seq),
            )
        });
    };
    if head.seq > last.seq {
        let lost = if head.seq == last.seq + 1 {
            format!("record {} was lost", head.seq)
        } else {
            format!("records {}..={} were lost", last.seq + 1, head.seq)
        };
        return Some((
            Kind::Sequence,
            format!(
                "the head says seq {}, but the records end at seq {}: {lost}",
                head.seq, last.seq
            ),
        ));
    }
    if legacy {
        return check_legacy_head(head, last, previous);
    }
    if head.seq > fold.seq() {
        // The records past what folded are damaged, and reported as such.
        return None;
    }
    if head.seq < fold.seq() {
        return Some((
            Kind::BrokenChain,
            format!(
                "the head says seq {}, but the records reach seq {}: the head disagrees with \
                 the history",
                head.seq,
                fold.seq()
            ),
        ));
    }
    // The head is at the last record that folded; damaged records past it (a torn
    // write, never acknowledged) are reported on their own. (With a head,
    // `head_disagrees` reads only the head and the fold, not the records.)
    match head_disagrees(stream, fold, None, format) {
        Ok(None) => None,
        Ok(Some(message)) => Some((Kind::BrokenChain, message)),
        Err(error) => Some((Kind::Malformed, error.to_string())),
    }
}

/// The head check of format 1, whose head is a seq and the last chain hash.
fn check_legacy_head(head: &Head, last: Seen, previous: Option<Seen>) -> Option<(Kind, String)> {
    let hash_differs = |seen: Option<Seen>| {
        seen.and_then(|seen| seen.hash)
            .is_some_and(|hash| hash.0.as_slice() != head.summary.as_slice())
    };
    if head.seq == last.seq {
        hash_differs(Some(last)).then(|| {
            (
                Kind::BrokenChain,
                format!("the head's hash at seq {} is not the record's", head.seq),
            )
        })
    } else if head.seq + 1 == last.seq
        && previous.is_some_and(|previous| previous.seq == head.seq)
        && !hash_differs(previous)
    {
        None
    } else {
        Some((
            Kind::BrokenChain,
            format!(
                "the head says seq {}, which does not match the records ending at seq {}",
                head.seq, last.seq
            ),
        ))
    }
}

impl Ledger {
    /// Audits this ledger's store: [`audit`] with the ledger's clock.
    ///
    /// # Errors
    /// As for [`audit`].
    pub fn audit(&self) -> Result<Verdict, AuditError> {
        self.check_poisoned()?;

        audit(self.store().as_ref(), self.clock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FailureReason, Queued, Remote, RemoteKind, TaskState, Timestamp};
    use crate::store::sled::value;
    use crate::store::{Lent, Memory, key};

    /// The stored key and value of `events` as the history of `id`, as the
    /// ledger writes them, with each record and the head passed through
    /// `damage` (given its index, the head's being the number of records).
    fn stored(id: &str, events: Vec<Event>, damage: &dyn Fn(usize, &mut Vec<u8>)) -> Vec<u8> {
        let (_, mut records, mut summary) = crate::envelope::testing::sealed(id, events);
        let mut frames = Vec::new();
        for (index, bytes) in records.iter_mut().enumerate() {
            damage(index, bytes);
            frames.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
            frames.extend_from_slice(bytes);
        }
        damage(records.len(), &mut summary);
        value::encode(records.len() as u64, &summary, &frames, None)
    }

    /// The verdict on one stored delegation as `audit` reaches it (in place
    /// where it can), and as it reached it before, read whole.
    fn verdicts(raw_key: &[u8], raw: &[u8]) -> (Verdict, Verdict) {
        let store = Memory::new();
        let now = Timestamp::from_unix_nanos(1_790_000_000_000_000_000);
        let audited = |in_place: bool| {
            let (mut tally, mut pending, mut retried) =
                (Tally::default(), Vec::new(), HashMap::new());
            let lent = Lent::value(raw_key.into(), raw.into());
            let clean = lent
                .view()
                .as_ref()
                .filter(|_| in_place)
                .and_then(|view| audit_view(view, now));
            match clean {
                Some(clean) => clean.count(&mut tally, &mut pending),
                None => audit_item(
                    &store,
                    &mut tally,
                    &mut pending,
                    &mut retried,
                    lent.into_stream(),
                    now,
                )
                .unwrap(),
            }
            tally.finish(pending)
        };
        (audited(true), audited(false))
    }

    fn histories() -> Vec<(&'static str, Vec<Event>)> {
        let tasked = Event::Queued(Queued {
            task: Some(serde_json::json!({"review": "pr-42", "lines": [1, 2.5, null]})),
            not_before: Some(Timestamp::from_unix_nanos(1_780_000_001_000_000_001)),
            ..Queued::new("planner", "reviewer \"two\"\n")
        });
        let remote = Remote {
            kind: RemoteKind::Task,
            task_id: Some("t-1".into()),
            context_id: None,
            state: Some(TaskState::Other("TASK_STATE_ODD".into())),
        };
        vec![
            ("queued", vec![tasked.clone()]),
            (
                "delivered",
                vec![
                    Event::queued("a", "b"),
                    Event::delivered_with(Some(202), Some(remote)).unwrap(),
                ],
            ),
            (
                "failed",
                vec![
                    tasked,
                    Event::failed(FailureReason::RpcError(-32601), Some("no".into())).unwrap(),
                ],
            ),
            (
                "retry",
                vec![Event::Queued(Queued {
                    retry_of: Some("d-0".parse().unwrap()),
                    attempt: Some(2),
                    ..Queued::new("a", "b")
                })],
            ),
        ]
    }

    /// Recomputes the CRC-32 of a record's or a head's envelope (both cover
    /// every byte from offset 5), so that a change behind it reaches the body.
    fn reseal(bytes: &mut [u8]) {
        let checksum = crc32fast::hash(&bytes[5..]);
        bytes[1..5].copy_from_slice(&checksum.to_be_bytes());
    }

    #[test]
    fn a_clean_delegation_is_audited_in_place_as_record_by_record() {
        for (id, events) in histories() {
            let raw = stored(id, events, &|_, _| {});
            let raw_key = key::prefix(&id.parse().unwrap());
            let (in_place, whole) = verdicts(&raw_key, &raw);
            assert_eq!(in_place, whole, "{id}");
            assert!(whole.is_clean() || id == "retry", "{id}: {whole:?}");
            let lent = Lent::value(raw_key.as_slice().into(), raw.as_slice().into());
            let now = Timestamp::from_unix_nanos(1_790_000_000_000_000_000);
            let clean = lent.view().as_ref().and_then(|view| audit_view(view, now));
            // A retry's link is judged against the store, record by record.
            assert_eq!(clean.is_some(), id != "retry", "{id}");
        }
    }

    #[test]
    fn every_flip_behind_a_valid_checksum_is_audited_as_record_by_record() {
        for (id, events) in histories() {
            let raw_key = key::prefix(&id.parse().unwrap());
            let lengths = std::cell::RefCell::new(Vec::new());
            stored(id, events.clone(), &|_, bytes| {
                lengths.borrow_mut().push(bytes.len())
            });
            for (at, len) in lengths.into_inner().into_iter().enumerate() {
                for bit in 5 * 8..len * 8 {
                    let raw = stored(id, events.clone(), &|index, bytes| {
                        if index == at {
                            bytes[bit / 8] ^= 1 << (bit % 8);
                            reseal(bytes);
                        }
                    });
                    let (in_place, whole) = verdicts(&raw_key, &raw);
                    assert_eq!(in_place, whole, "{id}: part {at}, bit {bit}");
                }
            }
        }
    }

    #[test]
    fn every_flip_of_a_stored_value_is_audited_as_record_by_record() {
        for (id, events) in histories() {
            let raw_key = key::prefix(&id.parse().unwrap());
            let raw = stored(id, events, &|_, _| {});
            for bit in 0..raw.len() * 8 {
                let mut flipped = raw.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let (in_place, whole) = verdicts(&raw_key, &flipped);
                assert_eq!(in_place, whole, "{id}: bit {bit}");
            }
        }
    }
}
