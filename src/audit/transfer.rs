//! `export` and `import`: a store's records out as portable JSON Lines, each retry
//! after its original, and a log verified clean back in, all or nothing.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};

use crate::audit::verify::{parse_line, verify};
use crate::audit::{AuditError, Verdict};
use crate::delegation::Fold;
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Record};
use crate::ledger::{Chain, Hints, Ledger, decode_stream, fold_records};
use crate::store::{Append, Expect, Stream, key};

/// What [`Ledger::export`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Records written, one per line.
    pub records: u64,
    /// Delegations written.
    pub delegations: u64,
    /// Retries left out because they were written while the export ran, after it
    /// had written their original as still `queued` (and retries of those): as in
    /// a snapshot taken before them. A quiet ledger leaves none out.
    pub left_out: u64,
}

/// What [`Ledger::import`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The log's verdict. If it is not clean, nothing was stored.
    pub verdict: Verdict,
    /// Records stored: all of the log's, or none.
    pub stored: u64,
}

impl Ledger {
    /// Writes every stored record to `out` as hashed JSON Lines, one delegation
    /// after another in the store's order, each delegation's records in seq
    /// order: an order [`verify`](crate::audit::verify) accepts. Records are in
    /// their normalized form (serde's field order, `at` in UTC with `Z`).
    ///
    /// A retry (a `queued` with `retry_of`) comes after the delegation it retries,
    /// so that its original's `failed` is on an earlier line, as `retry_link`
    /// asks: a retry that the store's order puts first is held back (by id, so
    /// memory grows only with such retries) and written right after its original.
    /// A retry whose original the store does not hold is written last, where
    /// `verify` reports it.
    ///
    /// The store reads each delegation whole, but not all of them at one instant,
    /// so a busy ledger can settle an original and queue its retry (one atomic
    /// write) after the export has written the original as `queued`. Such a
    /// retry is left out (counted in [`Exported::left_out`]), as a snapshot taken
    /// before it would: the export stays a log `verify` accepts. Remembering which
    /// originals were written as `queued` costs memory for each pending
    /// delegation.
    ///
    /// Export checks what it writes as the ledger reads it (envelope, key, chain,
    /// head), and refuses a damaged store rather than write a log that hides the
    /// damage: run [`Ledger::audit`] to see all of it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::UnknownVersion`] for a damaged delegation (what
    /// was written before it stays written); a storage error; [`StorageError::Io`](crate::StorageError::Io) if
    /// writing fails.
    pub fn export(&self, out: impl Write) -> Result<Exported> {
        self.check_poisoned()?;
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        let mut exported = Exported::default();
        // Retries held back, by the delegation they wait for; and every one held
        // back and not yet written, with the order they were held back in.
        let mut waiting: HashMap<DelegationId, Vec<DelegationId>> = HashMap::new();
        let mut held = Held::default();
        // Written while still queued, and left out: what a retry must not follow.
        let mut queued: HashSet<DelegationId> = HashSet::new();
        let mut left_out: HashSet<DelegationId> = HashSet::new();
        for stream in self.store().scan() {
            let stream = stream?;
            let records = checked(&stream, self.store().format())?;
            if let Some(of) =
                retry_of(&records).filter(|of| queued.contains(*of) || left_out.contains(*of))
            {
                // Written after the export passed its original: leave it, and
                // every retry waiting for it, out.
                let mut leaving = vec![stream.id];
                let _ = of;
                while let Some(id) = leaving.pop() {
                    if let Some(retries) = waiting.remove(&id) {
                        for retry in retries {
                            held.set.remove(&retry);
                            leaving.push(retry);
                        }
                    }
                    left_out.insert(id);
                }
                continue;
            }
            if records
                .last()
                .is_some_and(|record| matches!(record.event, Event::Queued(_)))
            {
                queued.insert(stream.id.clone());
            }
            if let Some(of) = retry_of(&records) {
                let written = key::prefix(of) < key::prefix(&stream.id) && !held.set.contains(of);
                if !written {
                    waiting
                        .entry(of.clone())
                        .or_default()
                        .push(stream.id.clone());
                    held.set.insert(stream.id.clone());
                    held.order.push(stream.id);
                    continue;
                }
            }
            write_records(&mut out, &records, &mut exported)?;
            self.release(&stream.id, &mut waiting, &mut held, &mut out, &mut exported)?;
        }
        exported.left_out = u64::try_from(left_out.len()).unwrap_or(u64::MAX);
        // Whatever still waits names a delegation that never came.
        for id in held.order.iter().filter(|id| held.set.contains(*id)) {
            let records = checked(&self.store().history(id)?, self.store().format())?;
            write_records(&mut out, &records, &mut exported)?;
        }
        out.flush()?;
        Ok(exported)
    }

    /// Writes every retry held back for `written`, and in turn those held back
    /// for them.
    fn release(
        &self,
        written: &DelegationId,
        waiting: &mut HashMap<DelegationId, Vec<DelegationId>>,
        held: &mut Held,
        out: &mut impl Write,
        exported: &mut Exported,
    ) -> Result<()> {
        if waiting.is_empty() {
            return Ok(());
        }
        let mut ready = vec![written.clone()];
        while let Some(original) = ready.pop() {
            let Entry::Occupied(entry) = waiting.entry(original) else {
                continue;
            };
            for retry in entry.remove() {
                held.set.remove(&retry);
                let records = checked(&self.store().history(&retry)?, self.store().format())?;
                write_records(out, &records, exported)?;
                ready.push(retry);
            }
        }
        Ok(())
    }

    /// Imports the JSON Lines log in `log`, all or nothing.
    ///
    /// 1. The log is copied to an anonymous temporary file and verified. If its
    ///    verdict is not clean, nothing is stored, and the verdict is returned with
    ///    `stored: 0`.
    /// 2. If the store already holds any of the log's delegations, nothing is
    ///    stored: [`AuditError::Exists`]. Delegations the log does not name are
    ///    left alone, so logs of disjoint delegations can be imported one after
    ///    another.
    /// 3. Every record is appended as it is, with its own `at` and `hash`, through
    ///    the store's conditional append. A log without hashes gets them computed
    ///    on the way in, exactly as [`Ledger::record`] would have. Then the store is
    ///    flushed.
    ///
    /// "All or nothing" is about the log's content. It is not a transaction: a
    /// crash or a storage error during step 3, or another writer creating one of
    /// the log's delegations meanwhile, leaves the records appended so far. The
    /// CLI holds the store's lock, so no other writer can interfere there.
    ///
    /// # Errors
    /// [`AuditError::Io`] or [`AuditError::NotALog`] if the log cannot be read;
    /// [`AuditError::Exists`] as above; [`AuditError::Store`] if the store fails.
    pub fn import(&self, log: impl Read) -> std::result::Result<Imported, AuditError> {
        self.check_poisoned()?;
        let mut log = log;
        let mut spool = tempfile::tempfile()?;
        io::copy(&mut log, &mut spool)?;
        spool.rewind()?;
        let verdict = verify(BufReader::new(&spool), self.clock())?;
        if !verdict.is_clean() {
            return Ok(Imported { verdict, stored: 0 });
        }
        spool.rewind()?;
        each_record(&spool, |line, record| {
            if record.seq == 1 && !self.store().history(&record.delegation)?.entries.is_empty() {
                return Err(AuditError::Exists {
                    line,
                    delegation: record.delegation,
                });
            }
            Ok(())
        })?;
        spool.rewind()?;
        let mut open: HashMap<DelegationId, Fold> = HashMap::new();
        let mut stored = 0u64;
        each_record(&spool, |_, mut record| {
            let id = record.delegation.clone();
            let fold = open
                .entry(id.clone())
                .or_insert_with(|| Fold::new(id.clone()));
            let expect = Expect::after(fold.seq());
            // The log verified clean, so every record applies.
            fold.apply(&record).map_err(|violation| Error::Corrupt {
                key: format!("delegation `{id}` seq {}", record.seq),
                reason: violation.to_string(),
            })?;
            record.hash = Some(fold.hash());
            let head = fold
                .delegation()
                .map(envelope::head::encode)
                .unwrap_or_default();
            let hints = Hints::of(&id, &record.event);
            let with = self.hint_before(&hints)?;
            self.store()
                .append_hinted(
                    &[Append {
                        id: &id,
                        expect,
                        record: &envelope::encode(&record),
                        head: &head,
                    }],
                    &with.before,
                    &with.after,
                )
                .map_err(|error| match error {
                    // A failed write may be partly visible: as `record` does, serve
                    // nothing more until reopened.
                    crate::store::AppendError::Store(error) => self.poison(error),
                    refused => Error::from(refused),
                })?;
            self.unhint_after(&hints);
            stored += 1;
            if fold.state().is_settled() {
                open.remove(&id);
            }
            Ok(())
        })?;
        self.flush()?;
        Ok(Imported { verdict, stored })
    }
}

/// Retries `export` held back and has not written yet.
#[derive(Default)]
struct Held {
    set: HashSet<DelegationId>,
    /// Every one ever held back, in order.
    order: Vec<DelegationId>,
}

/// A delegation's records, checked as the ledger reads them.
fn checked(stream: &Stream, format: u8) -> Result<Vec<Record>> {
    let records = decode_stream(stream)?;
    fold_records(stream, &records, Chain::Verify, format)?;
    Ok(records)
}

/// The delegation a delegation's first record retries, if it is a retry.
fn retry_of(records: &[Record]) -> Option<&DelegationId> {
    match &records.first()?.event {
        Event::Queued(queued) => queued.retry_of.as_ref(),
        _ => None,
    }
}

/// Writes a delegation's records as JSON Lines.
fn write_records(out: &mut impl Write, records: &[Record], exported: &mut Exported) -> Result<()> {
    for record in records {
        serde_json::to_writer(&mut *out, record).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        exported.records += 1;
    }
    exported.delegations += u64::from(!records.is_empty());
    Ok(())
}

/// Calls `each` with every record of a log already verified clean.
fn each_record(
    file: &std::fs::File,
    mut each: impl FnMut(u64, crate::event::Record) -> std::result::Result<(), AuditError>,
) -> std::result::Result<(), AuditError> {
    let mut line = 0u64;
    for bytes in BufReader::with_capacity(64 * 1024, file).split(b'\n') {
        let mut bytes = bytes?;
        line += 1;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let parsed = parse_line(&bytes).map_err(|malformed| {
            AuditError::Io(io::Error::other(format!(
                "line {line} changed after it was verified: {}",
                malformed.message
            )))
        })?;
        each(line, parsed.record)?;
    }
    Ok(())
}
