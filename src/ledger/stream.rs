//! A stored stream read back: its records decoded and checked against their keys,
//! folded, and its head checked against the fold.

use crate::delegation::{Delegation, Fold, Status};
use crate::envelope;
use crate::error::ReadError;
use crate::event::{DelegationId, Record, Seq};
use crate::store::{self, Head, Lent, Stream, StreamRef};

use super::lent::LentFold;

/// How strictly a head is decoded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum HeadCheck {
    /// Every check, the one byte form included ([`envelope::head::decode`]): for
    /// reads that tell a head apart from its records.
    Strict,
    /// Every check but the byte form ([`envelope::head::decode_checksummed`]):
    /// for writes, which read the head alone. (`status` makes the same checks
    /// through [`head_status`], without building the delegation.)
    Checksummed,
}

/// Decodes a head's summary: the delegation as of its last record (without its
/// task), checked against the head's key and seq. `None` for a head of format 1,
/// which holds only the last chain hash.
pub(crate) fn summary(
    id: &DelegationId,
    head: &Head,
    format: u8,
    check: HeadCheck,
) -> Result<Option<Delegation>, ReadError> {
    if format < store::HEAD_FORMAT {
        return Ok(None);
    }
    let where_ = || format!("head of `{id}`");
    let decoded = match check {
        HeadCheck::Strict => envelope::head::decode(&head.summary),
        HeadCheck::Checksummed => envelope::head::decode_checksummed(&head.summary),
    };
    let delegation = decoded.map_err(|e| ReadError::decode(where_(), e))?;
    if &delegation.id != id || delegation.seq != head.seq {
        return Err(ReadError::Corrupt {
            key: where_(),
            reason: format!(
                "it is stored as the head of seq {}, but says `{}` seq {}",
                head.seq, delegation.id, delegation.seq
            ),
        });
    }
    Ok(Some(delegation))
}

/// The status a head of format 2 ([`store::HEAD_FORMAT`]) describes: its
/// summary (`bytes`) checked as [`summary`] checks it with
/// [`HeadCheck::Checksummed`] (checksum, body, the fold's rules, and the key's
/// id and seq), without building the delegation.
pub(crate) fn head_status(id: &DelegationId, seq: Seq, bytes: &[u8]) -> Result<Status, ReadError> {
    let where_ = || format!("head of `{id}`");
    let summary =
        envelope::head::decode_summary(bytes).map_err(|e| ReadError::decode(where_(), e))?;
    if summary.id() != id.as_str() || summary.seq() != seq {
        return Err(ReadError::Corrupt {
            key: where_(),
            reason: format!(
                "it is stored as the head of seq {seq}, but says `{}` seq {}",
                summary.id(),
                summary.seq()
            ),
        });
    }
    summary
        .into_status(id.clone())
        .map_err(|e| ReadError::decode(where_(), e))
}

/// Decodes and folds a stream of a store in `format`, checking its head.
pub(super) fn fold_stream(stream: &Stream, format: u8) -> Result<(Vec<Record>, Fold), ReadError> {
    let records = decode_stream(stream)?;
    let fold = fold_records(stream, &records, Chain::Trust, format)?;
    Ok((records, fold))
}

/// One delegation of a scan, rebuilt as [`fold_stream`] rebuilds it (`None`
/// for one without records), with the same errors.
///
/// The common case is read in place ([`replay_view`]); anything else (damage
/// anywhere, a head of format 1, a record of version 1) is read again the
/// owned way, by [`fold_stream`], which says what is wrong.
///
/// # Errors
/// As for [`fold_stream`], and the scan's errors ([`Lent::into_stream`]).
pub(crate) fn replay_lent(lent: Lent, format: u8) -> Result<Option<Delegation>, ReadError> {
    if format >= store::HEAD_FORMAT
        && let Some(delegation) = lent.view().as_ref().and_then(replay_view)
    {
        return Ok(Some(delegation));
    }
    let stream = lent.into_stream()?;
    fold_stream(&stream, format).map(|(_, fold)| fold.into_delegation())
}

/// A delegation read in place, checked as [`fold_stream`] checks it with a
/// head of format 2: each record's byte form and key, the fold's rules, and
/// the head against the fold (its bytes exactly those of the fold's
/// delegation). `Some` only where [`fold_stream`] gives that delegation; `None`
/// for anything else, for [`fold_stream`] to judge.
fn replay_view(view: &StreamRef<'_>) -> Option<Delegation> {
    let (head_seq, summary) = view.head?;
    let mut fold = LentFold::trusting(view.id);
    for (seq, bytes) in view.records() {
        let record = envelope::decode_lent(bytes)?;
        if record.delegation != view.id || record.seq != seq {
            return None;
        }
        fold.apply(record)?;
    }
    if fold.seq() != head_seq || !fold.is_head(summary) {
        return None;
    }
    fold.into_delegation()
}

/// Decodes a stream's entries, checking each against its key.
pub(crate) fn decode_stream(stream: &Stream) -> Result<Vec<Record>, ReadError> {
    stream
        .entries
        .iter()
        .map(|entry| {
            let where_ = || format!("delegation `{}` seq {}", stream.id, entry.seq);
            let record =
                envelope::decode(&entry.bytes).map_err(|e| ReadError::decode(where_(), e))?;
            if record.delegation != stream.id || record.seq != entry.seq {
                return Err(ReadError::Corrupt {
                    key: where_(),
                    reason: format!(
                        "record says delegation `{}` seq {}",
                        record.delegation, record.seq
                    ),
                });
            }
            Ok(record)
        })
        .collect()
}

/// Whether a fold recomputes every chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Recompute and compare each record's hash: audit and export.
    Verify,
    /// Take each stored hash as the chain's: the ledger's reads (the bytes still
    /// pass their checksum, strict decoding, sequence, lifecycle and head checks).
    Trust,
}

/// Folds decoded records and checks the head against them.
///
/// # Errors
/// [`ReadError::Corrupt`] for a record the fold refuses, or a head that disagrees
/// with the records ([`head_disagrees`]).
pub(crate) fn fold_records(
    stream: &Stream,
    records: &[Record],
    chain: Chain,
    format: u8,
) -> Result<Fold, ReadError> {
    let mut fold = match chain {
        Chain::Verify => Fold::new(stream.id.clone()),
        Chain::Trust => Fold::trusting(stream.id.clone()),
    };
    let mut previous = None;
    for record in records {
        let before = (fold.seq(), fold.hash());
        fold.apply(record).map_err(|not_next| ReadError::Corrupt {
            key: format!("delegation `{}` seq {}", stream.id, record.seq),
            reason: not_next.to_string(),
        })?;
        previous = Some(before);
    }
    match head_disagrees(stream, &fold, previous, format)? {
        None => Ok(fold),
        Some(reason) => Err(ReadError::Corrupt {
            key: format!("delegation `{}`", stream.id),
            reason,
        }),
    }
}

/// Why a stream's head disagrees with its folded records, if it does.
///
/// A head of format 2 was written with its record in one atomic write, so it
/// must describe exactly the delegation the records fold to: same state,
/// outcome, times, seq and hash. A head of format 1 was written after its
/// record, so it may lag by one (a process killed between the two, for a record
/// it never acknowledged), and a single record may have none. `previous` is the
/// (seq, hash) before the last record.
///
/// # Errors
/// [`ReadError::Corrupt`] for a head whose summary does not decode.
pub(crate) fn head_disagrees(
    stream: &Stream,
    fold: &Fold,
    previous: Option<(Seq, crate::event::ChainHash)>,
    format: u8,
) -> Result<Option<String>, ReadError> {
    let last = (fold.seq(), fold.hash());
    let Some(head) = &stream.head else {
        let benign =
            stream.entries.is_empty() || (format < store::HEAD_FORMAT && stream.entries.len() == 1);
        return Ok((!benign).then(|| format!("no head, but the records reach seq {}", last.0)));
    };
    if head.seq > last.0 {
        return Ok(Some(format!(
            "the head says seq {}, but the records end at seq {}: records were lost",
            head.seq, last.0
        )));
    }
    // The usual case, without decoding the head: its bytes are exactly the head
    // the folded delegation encodes to (one byte form, so it would decode to
    // that delegation). Anything else is decoded below, and told field by field.
    if format >= store::HEAD_FORMAT
        && let Some(folded) = fold.delegation()
        && folded.seq == head.seq
        && envelope::head::is_encoding_of(&head.summary, folded)
    {
        return Ok(None);
    }
    let Some(said) = summary(&stream.id, head, format, HeadCheck::Strict)? else {
        let hash = head.summary.as_slice();
        let at = |(seq, h): (Seq, crate::event::ChainHash)| seq == head.seq && h.0 == hash;
        return Ok((!at(last) && !previous.is_some_and(at)).then(|| {
            format!(
                "the head says seq {}, which does not match the records ending at seq {}",
                head.seq, last.0
            )
        }));
    };
    let folded = fold.delegation().map(|delegation| Delegation {
        task: None,
        ..delegation.clone()
    });
    if folded.is_none() {
        return Ok(Some(format!(
            "the head says seq {}, but there are no records",
            head.seq
        )));
    }
    let Some(folded) = folded.filter(|folded| *folded != said) else {
        return Ok(None);
    };
    Ok(Some(format!(
        "the head disagrees with the history ({}): the head says {} at seq {}, the \
         records say {} at seq {}",
        differences(&said, &folded).join(", "),
        describe(Some(&said)),
        said.seq,
        describe(Some(&folded)),
        last.0
    )))
}

/// The fields in which two summaries of one delegation differ.
fn differences(a: &Delegation, b: &Delegation) -> Vec<&'static str> {
    let fields = [
        ("state", a.state != b.state),
        ("outcome", a.outcome != b.outcome),
        ("seq", a.seq != b.seq),
        ("hash", a.hash != b.hash),
        ("queued_at", a.queued_at != b.queued_at),
        ("settled_at", a.settled_at != b.settled_at),
        ("source", a.source != b.source),
        ("target", a.target != b.target),
        ("retry_of", a.retry_of != b.retry_of),
        ("attempt", a.attempt != b.attempt),
        ("not_before", a.not_before != b.not_before),
    ];
    fields
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

/// A delegation's state and outcome in a few words, for head findings.
fn describe(delegation: Option<&Delegation>) -> String {
    let Some(delegation) = delegation else {
        return "nothing".to_owned();
    };
    let status = delegation.status();
    match status.reason {
        Some(reason) => format!("{} ({reason})", delegation.state.as_str()),
        None => delegation.state.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        ChainHash, Event, FailureReason, Queued, Remote, RemoteKind, TaskState, Timestamp,
    };
    use crate::store::key;
    use crate::store::sled::value;

    use crate::envelope::testing::sealed as history;

    fn histories() -> Vec<(DelegationId, Vec<Vec<u8>>, Vec<u8>)> {
        let retry = Event::Queued(Queued {
            task: Some(serde_json::json!({"review": "pr-42", "lines": [1, 2.5, null]})),
            retry_of: Some("d-0".parse().unwrap()),
            attempt: Some(2),
            not_before: Some(Timestamp::from_unix_nanos(1_780_000_001_000_000_001)),
            ..Queued::new("planner", "reviewer")
        });
        let tasked = Event::Queued(Queued {
            task: Some(serde_json::json!(["a", {"b": true}])),
            ..Queued::new("planner", "reviewer")
        });
        let remote = Remote {
            kind: RemoteKind::Task,
            task_id: Some("t-1".into()),
            context_id: None,
            state: Some(TaskState::Other("TASK_STATE_ODD".into())),
        };
        // A task whose one bit flip can leave text that parses to another
        // value with whitespace after it ("10" to "1 "): a form serde_json
        // never writes, so no read may take it.
        let numbered = Event::Queued(Queued {
            task: Some(serde_json::json!(10)),
            ..Queued::new("planner", "reviewer")
        });
        vec![
            history("queued", vec![Event::queued("a", "b")]),
            history("numbered", vec![numbered]),
            history("retry", vec![retry.clone()]),
            history(
                "delivered",
                vec![
                    tasked.clone(),
                    Event::delivered_with(Some(202), Some(remote)).unwrap(),
                ],
            ),
            history(
                "plain",
                vec![Event::queued("a", "b"), Event::delivered(None).unwrap()],
            ),
            history(
                "failed",
                vec![
                    retry,
                    Event::failed(FailureReason::RpcError(-32601), Some("no".into())).unwrap(),
                ],
            ),
            history(
                "offline",
                vec![
                    tasked,
                    Event::failed(FailureReason::Interrupted, None).unwrap(),
                ],
            ),
        ]
    }

    /// What replay gave for a stored key and value before it read them in
    /// place: the stream decoded and copied, then folded.
    fn owned(raw_key: &[u8], raw: &[u8]) -> String {
        let folded = key::parse_head(raw_key)
            .map_err(|reason| ReadError::Corrupt {
                key: format!("key {}", key::hex(raw_key)),
                reason,
            })
            .and_then(|id| {
                let (head, entries) = value::decode(&id, raw)?;
                fold_stream(
                    &Stream {
                        id,
                        entries,
                        head: Some(head),
                    },
                    store::HEAD_FORMAT,
                )
            })
            .map(|(_, fold)| fold.into_delegation());
        format!("{folded:?}")
    }

    /// Replay of a key and value read in place, as sled lends them and as
    /// another store's stream gives them, must be what [`owned`] gives.
    fn assert_same(raw_key: &[u8], raw: &[u8]) {
        let expected = owned(raw_key, raw);
        let lent = Lent::value(raw_key.into(), raw.into());
        let found = replay_lent(lent, store::HEAD_FORMAT);
        assert_eq!(format!("{found:?}"), expected, "value {}", key::hex(raw));
        if let (Ok(id), Ok((head, entries))) = (
            key::parse_head(raw_key),
            key::parse_head(raw_key)
                .and_then(|id| value::decode(&id, raw).map_err(|e| e.to_string())),
        ) {
            let stream = Stream {
                id,
                entries,
                head: Some(head),
            };
            let found = replay_lent(Lent::from(stream), store::HEAD_FORMAT);
            assert_eq!(format!("{found:?}"), expected, "stream {}", key::hex(raw));
        }
    }

    fn stored(records: &[Vec<u8>], summary: &[u8]) -> Vec<u8> {
        let mut frames = Vec::new();
        for record in records {
            frames.extend_from_slice(&u32::try_from(record.len()).unwrap().to_be_bytes());
            frames.extend_from_slice(record);
        }
        value::encode(records.len() as u64, summary, &frames, None)
    }

    /// Recomputes the CRC-32 of a record's or a head's envelope (both cover
    /// every byte from offset 5), so that a change behind it reaches the body.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let checksum = crc32fast::hash(&bytes[5..]);
        bytes[1..5].copy_from_slice(&checksum.to_be_bytes());
        bytes
    }

    #[test]
    fn a_clean_delegation_is_replayed_in_place_as_the_fold_gives_it() {
        for (id, records, summary) in histories() {
            let raw = stored(&records, &summary);
            let lent = Lent::value(key::prefix(&id).into(), raw.clone().into());
            let view = lent.view().unwrap();
            assert!(replay_view(&view).is_some(), "{id} was not read in place");
            assert_same(&key::prefix(&id), &raw);
        }
    }

    #[test]
    fn every_flip_of_a_stored_value_or_key_replays_as_the_owned_read_does() {
        for (id, records, summary) in histories() {
            let raw_key = key::prefix(&id);
            let raw = stored(&records, &summary);
            for bit in 0..raw.len() * 8 {
                let mut flipped = raw.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_same(&raw_key, &flipped);
            }
            for len in 0..raw.len() {
                assert_same(&raw_key, &raw[..len]);
            }
            for bit in 0..raw_key.len() * 8 {
                let mut flipped = raw_key.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_same(&flipped, &raw);
            }
        }
    }

    #[test]
    fn every_flip_behind_a_valid_checksum_replays_as_the_owned_read_does() {
        for (id, records, summary) in histories() {
            let raw_key = key::prefix(&id);
            for at in 0..records.len() {
                for bit in 5 * 8..records[at].len() * 8 {
                    let mut changed = records.clone();
                    changed[at][bit / 8] ^= 1 << (bit % 8);
                    changed[at] = resealed(changed[at].clone());
                    assert_same(&raw_key, &stored(&changed, &summary));
                }
            }
            for bit in 5 * 8..summary.len() * 8 {
                let mut changed = summary.clone();
                changed[bit / 8] ^= 1 << (bit % 8);
                assert_same(&raw_key, &stored(&records, &resealed(changed)));
            }
        }
    }

    #[test]
    fn mixed_up_histories_replay_as_the_owned_read_does() {
        let all = histories();
        for (id, records, summary) in &all {
            let raw_key = key::prefix(id);
            for (_, other_records, other_summary) in &all {
                assert_same(&raw_key, &stored(records, other_summary));
                assert_same(&raw_key, &stored(other_records, summary));
                let mut longer = records.clone();
                longer.extend(other_records.iter().cloned());
                assert_same(&raw_key, &stored(&longer, summary));
            }
            assert_same(&raw_key, &stored(&records[..1], summary));
            assert_same(&raw_key, &stored(&[], summary));
        }
    }

    #[test]
    fn a_record_of_version_1_is_replayed_the_owned_way() {
        let id: DelegationId = "v1".parse().unwrap();
        let mut record = Record {
            delegation: id.clone(),
            seq: 1,
            event: Event::queued("a", "b"),
            at: Timestamp::from_unix_nanos(1_780_000_000_000_000_000),
            hash: None,
        };
        record.hash = Some(record.chain_hash(&ChainHash::GENESIS));
        let mut fold = Fold::new(id.clone());
        fold.apply(&record).unwrap();
        let summary = envelope::head::encode(fold.delegation().unwrap());
        let raw = stored(&[envelope::encode_v1(&record)], &summary);
        let lent = Lent::value(key::prefix(&id).into(), raw.clone().into());
        assert!(replay_view(&lent.view().unwrap()).is_none());
        assert_same(&key::prefix(&id), &raw);
        assert!(owned(&key::prefix(&id), &raw).starts_with("Ok(Some("));
    }
}
