//! A stored stream read back: its records decoded and checked against their keys,
//! folded, and its head checked against the fold.

use crate::delegation::{Delegation, Fold, Status};
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Record, Seq};
use crate::store::{self, Head, Stream};

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
) -> Result<Option<Delegation>> {
    if format < store::HEAD_FORMAT {
        return Ok(None);
    }
    let where_ = || format!("head of `{id}`");
    let decoded = match check {
        HeadCheck::Strict => envelope::head::decode(&head.summary),
        HeadCheck::Checksummed => envelope::head::decode_checksummed(&head.summary),
    };
    let delegation = decoded.map_err(|e| Error::decode(where_(), e))?;
    if &delegation.id != id || delegation.seq != head.seq {
        return Err(Error::Corrupt {
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
pub(crate) fn head_status(id: &DelegationId, seq: Seq, bytes: &[u8]) -> Result<Status> {
    let where_ = || format!("head of `{id}`");
    let summary = envelope::head::decode_summary(bytes).map_err(|e| Error::decode(where_(), e))?;
    if summary.id() != id.as_str() || summary.seq() != seq {
        return Err(Error::Corrupt {
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
        .map_err(|e| Error::decode(where_(), e))
}

/// Decodes and folds a stream of a store in `format`, checking its head.
pub(super) fn fold_stream(stream: &Stream, format: u8) -> Result<(Vec<Record>, Fold)> {
    let records = decode_stream(stream)?;
    let fold = fold_records(stream, &records, Chain::Trust, format)?;
    Ok((records, fold))
}

/// Decodes a stream's entries, checking each against its key.
pub(crate) fn decode_stream(stream: &Stream) -> Result<Vec<Record>> {
    stream
        .entries
        .iter()
        .map(|entry| {
            let where_ = || format!("delegation `{}` seq {}", stream.id, entry.seq);
            let record = envelope::decode(&entry.bytes).map_err(|e| Error::decode(where_(), e))?;
            if record.delegation != stream.id || record.seq != entry.seq {
                return Err(Error::Corrupt {
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
/// [`Error::Corrupt`] for a record the fold refuses, or a head that disagrees
/// with the records ([`head_disagrees`]).
pub(crate) fn fold_records(
    stream: &Stream,
    records: &[Record],
    chain: Chain,
    format: u8,
) -> Result<Fold> {
    let mut fold = match chain {
        Chain::Verify => Fold::new(stream.id.clone()),
        Chain::Trust => Fold::trusting(stream.id.clone()),
    };
    let mut previous = None;
    for record in records {
        let before = (fold.seq(), fold.hash());
        fold.apply(record).map_err(|not_next| Error::Corrupt {
            key: format!("delegation `{}` seq {}", stream.id, record.seq),
            reason: not_next.to_string(),
        })?;
        previous = Some(before);
    }
    match head_disagrees(stream, &fold, previous, format)? {
        None => Ok(fold),
        Some(reason) => Err(Error::Corrupt {
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
/// [`Error::Corrupt`] for a head whose summary does not decode.
pub(crate) fn head_disagrees(
    stream: &Stream,
    fold: &Fold,
    previous: Option<(Seq, crate::event::ChainHash)>,
    format: u8,
) -> Result<Option<String>> {
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
