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

use std::path::Path;

use std::collections::HashMap;

use crate::audit::judge::{self, Original, Tally};
use crate::audit::{AuditError, Judgement, Kind, Verdict, Violation};
use crate::clock::Clock;
use crate::delegation::Fold;
use crate::envelope;
use crate::error::Error;
use crate::event::{ChainHash, DelegationId, Event, Record, Seq};
use crate::ledger::{Chain, Ledger, decode_stream, fold_records, head_disagrees};
use crate::store::{Head, Sled, Store, Stream};

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
    for stream in store.scan() {
        match stream {
            Ok(stream) => {
                let mut link = |retry: &Record| judge_stored_link(store, &mut retried, retry);
                let format = store.format();
                if let Some(queued) = audit_stream(&mut tally, stream, now, format, &mut link) {
                    pending.push(queued);
                }
            }
            Err(Error::Corrupt { key, reason }) => {
                let line = tally.next_line();
                tally.report(line, None, Kind::Malformed, format!("{key}: {reason}"));
            }
            Err(error @ Error::UnknownVersion { .. }) => {
                let line = tally.next_line();
                tally.report(line, None, Kind::Malformed, error.to_string());
            }
            Err(error) => return Err(AuditError::Store(error)),
        }
        if tally.records >= reported + 4096 {
            reported = tally.records;
            progress(reported);
        }
    }
    progress(tally.records);
    Ok(tally.finish(pending))
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
    // write, never acknowledged) are reported on their own.
    match head_disagrees(&folded_part(stream, head.seq), fold, None, format) {
        Ok(None) => None,
        Ok(Some(message)) => Some((Kind::BrokenChain, message)),
        Err(error) => Some((Kind::Malformed, error.to_string())),
    }
}

/// `stream` without its records past `seq`.
fn folded_part(stream: &Stream, seq: Seq) -> Stream {
    Stream {
        id: stream.id.clone(),
        entries: stream
            .entries
            .iter()
            .filter(|entry| entry.seq <= seq)
            .cloned()
            .collect(),
        head: stream.head.clone(),
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
