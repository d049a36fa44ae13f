//! `verify`: the verdict on a JSON Lines log, replayed without storing it.
//!
//! Memory: a [`Fold`] for each delegation still open. A delegation that settles is
//! set aside as its id, state and seq, since a later record of it must still be
//! judged (a late outcome is `illegal_transition`, a second `queued` a `sequence`
//! repeat). While every new delegation of the log sorts after the ones before it
//! (the store's order, which `export` writes) no set-aside delegation can be asked
//! about, so they go to an anonymous temporary file and memory stays flat however
//! long the log. The first record that breaks that order loads them into memory,
//! and from then on memory grows with the number of settled delegations. So does
//! the first retry (a `queued` with `retry_of`) that names a set-aside
//! delegation: judging its link needs that delegation's state and attempt. The
//! delegations already retried are kept in memory, one entry per retry.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};

use serde_json::Value;

use crate::audit::judge::{self, ChainProblem, Original, Tally};
use crate::audit::{AuditError, Kind, Verdict, strict};
use crate::clock::Clock;
use crate::delegation::Fold;
use crate::event::{Attempt, ChainHash, DelegationId, Event, Record, Seq};
use crate::lifecycle::State;

/// The longest line `verify` reads; a longer one is `malformed`, and is skipped
/// without being held in memory.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Replays the JSON Lines log in `reader` and returns its verdict. `clock` gives
/// the "now" that pending delegations are aged against.
///
/// # Errors
/// [`AuditError::Io`] if the log cannot be read; [`AuditError::NotALog`] if it has
/// lines and none is a JSON object.
pub fn verify(reader: impl Read, clock: &dyn Clock) -> Result<Verdict, AuditError> {
    verify_with(reader, clock, Options::default(), &mut |_| {})
}

/// How [`verify_with`] judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Require every record to carry `hash`. The format lets a log go without
    /// hashes (its first record decides), so stripping every hash from a log gives
    /// a log that verifies clean; an auditor who expects an export, which is always
    /// hashed, sets this, and every record without a hash is then `broken_chain`.
    pub require_hashes: bool,
}

/// As [`verify`], with `options`, calling `progress` now and then with the bytes
/// read so far (for a progress bar).
///
/// # Errors
/// As for [`verify`].
pub fn verify_with(
    reader: impl Read,
    clock: &dyn Clock,
    options: Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Verdict, AuditError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut replay = Replay {
        hashed: options.require_hashes.then_some(true),
        required: options.require_hashes,
        ..Replay::default()
    };
    let mut buf = Vec::with_capacity(1024);
    let mut read = 0u64;
    while let Some(line) = read_line(&mut reader, &mut buf, &mut read)? {
        replay.line(line);
        if replay.tally.records.is_multiple_of(4096) {
            progress(read);
        }
    }
    progress(read);
    replay.finish(clock)
}

/// What `read_line` found.
enum Line<'a> {
    /// A line, without its `\n` or `\r\n`.
    Text(&'a [u8]),
    /// A line longer than [`MAX_LINE`], skipped.
    TooLong,
}

/// Reads the next line into `buf`; `None` at the end of the input.
fn read_line<'a>(
    reader: &mut impl BufRead,
    buf: &'a mut Vec<u8>,
    read: &mut u64,
) -> io::Result<Option<Line<'a>>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (available.get(..at).unwrap_or_default(), true),
            None => (available, false),
        };
        if !too_long && buf.len().saturating_add(chunk.len()) > MAX_LINE {
            too_long = true;
            buf.clear();
        }
        if !too_long {
            buf.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(done);
        reader.consume(used);
        *read += u64::try_from(used).unwrap_or(u64::MAX);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if too_long {
        return Ok(Some(Line::TooLong));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(Line::Text(buf)))
}

/// A line that is a record, as far as the field rules go.
pub(crate) struct Parsed {
    /// The record, with its hash if the line had a well-formed one.
    pub(crate) record: Record,
    /// Whether the line carried a `hash` at all.
    pub(crate) carries_hash: bool,
    /// The `hash` text, when it was not 64 lowercase hex digits.
    pub(crate) bad_hash: Option<String>,
    /// The seq as written, when it was negative (it is 0 in `record`).
    pub(crate) negative_seq: Option<i64>,
}

/// A line that is not a record.
pub(crate) struct Malformed {
    /// Whether the line was at least a JSON object.
    pub(crate) object: bool,
    /// The `delegation` string it names, if any.
    pub(crate) delegation: Option<String>,
    /// What is wrong.
    pub(crate) message: String,
}

/// Applies the field rules of the format page to one line.
pub(crate) fn parse_line(bytes: &[u8]) -> Result<Parsed, Malformed> {
    let not_object = |message: String| Malformed {
        object: false,
        delegation: None,
        message,
    };
    if bytes.is_empty() {
        return Err(not_object("blank line".to_owned()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| not_object(format!("not UTF-8: {e}")))?;
    let value = strict::parse(text).map_err(|e| not_object(format!("not JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(not_object("not a JSON object".to_owned()));
    };
    let delegation = object
        .get("delegation")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let malformed = |message: String| Malformed {
        object: true,
        delegation: delegation.clone(),
        message,
    };
    // serde reads `null` as an absent optional field; the format's optional fields
    // are strings and integers, so `null` is a field of the wrong type. (`task` is
    // any JSON, so `null` is allowed there, and means no task.)
    let optional: &[&str] = match object.get("event").and_then(Value::as_str) {
        Some("delivered") => &["hash", "http_status", "remote"],
        Some("failed") => &["hash", "http_status", "rpc_code", "detail"],
        Some("queued") => &["hash", "retry_of", "attempt", "not_before"],
        _ => &["hash"],
    };
    for field in optional {
        if object.get(*field).is_some_and(Value::is_null) {
            return Err(malformed(format!(
                "`{field}` is null; leave it out or give a value of its type"
            )));
        }
    }
    if let Some(Value::Object(remote)) = object.get("remote") {
        for field in ["task_id", "context_id", "state"] {
            if remote.get(field).is_some_and(Value::is_null) {
                return Err(malformed(format!(
                    "`remote.{field}` is null; leave it out or give a string"
                )));
            }
        }
    }
    let (carries_hash, hash, bad_hash) = match object.remove("hash") {
        None => (false, None, None),
        Some(Value::String(text)) => match ChainHash::from_hex(&text) {
            Some(hash) => (true, Some(hash), None),
            None => (true, None, Some(text)),
        },
        Some(_) => return Err(malformed("`hash` must be a string".to_owned())),
    };
    let negative_seq = object
        .get("seq")
        .and_then(Value::as_i64)
        .filter(|seq| *seq < 0);
    if negative_seq.is_some() {
        object.insert("seq".to_owned(), Value::from(0u64));
    }
    let mut record: Record = serde_json::from_value(Value::Object(object))
        .map_err(|e| malformed(format!("not a record: {e}")))?;
    // The same limits the ledger checks before it writes: what one refuses, the
    // other does too.
    record
        .event
        .validate()
        .map_err(|e| malformed(format!("not a record: {e}")))?;
    record.hash = hash;
    Ok(Parsed {
        record,
        carries_hash,
        bad_hash,
        negative_seq,
    })
}

/// The order a store scans delegations in: by id length, then bytes (the order of
/// [`key::prefix`](crate::store::key::prefix)).
fn store_order(a: &DelegationId, b: &DelegationId) -> Ordering {
    (a.as_str().len(), a.as_str().as_bytes()).cmp(&(b.as_str().len(), b.as_str().as_bytes()))
}

#[derive(Default)]
struct Replay {
    tally: Tally,
    /// Delegations whose first record was accepted and which have not settled.
    open: HashMap<DelegationId, Fold>,
    /// Settled delegations, set aside.
    settled: Settled,
    /// Delegations already retried, each with the retry that did.
    retried: HashMap<DelegationId, DelegationId>,
    /// The greatest id, in store order, of any delegation accepted so far.
    last: Option<DelegationId>,
    /// Whether the log is hashed, decided by its first record.
    hashed: Option<bool>,
    /// Whether hashes are required, whatever the first record says.
    required: bool,
    /// Lines that were JSON objects.
    objects: u64,
    /// The first I/O error of the set-aside file, reported at the end.
    error: Option<io::Error>,
}

impl Replay {
    fn line(&mut self, line: Line<'_>) {
        let number = self.tally.next_line();
        let parsed = match line {
            Line::TooLong => Err(Malformed {
                object: false,
                delegation: None,
                message: format!("line longer than {MAX_LINE} bytes"),
            }),
            Line::Text(bytes) => parse_line(bytes),
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(malformed) => {
                self.objects += u64::from(malformed.object);
                self.tally.report(
                    number,
                    malformed.delegation,
                    Kind::Malformed,
                    malformed.message,
                );
                return;
            }
        };
        self.objects += 1;
        let hashed = *self.hashed.get_or_insert(parsed.carries_hash);
        let chain: ChainProblem = match (hashed, parsed.carries_hash, parsed.bad_hash) {
            (true, false, _) if self.required => {
                Some("no hash, but hashes are required".to_owned())
            }
            (true, false, _) => {
                Some("no hash, but the log is hashed (its first record has one)".to_owned())
            }
            (false, true, _) => {
                Some("a hash, but the log is not hashed (its first record has none)".to_owned())
            }
            (_, _, Some(text)) => Some(format!(
                "hash `{}` is not 64 lowercase hex digits",
                text.chars().take(80).collect::<String>()
            )),
            _ => None,
        };
        self.judge(parsed.record, number, chain, parsed.negative_seq);
    }

    fn judge(&mut self, record: Record, line: u64, chain: ChainProblem, negative: Option<i64>) {
        let id = record.delegation.clone();
        if let Some(fold) = self.open.get_mut(&id) {
            // A delegation already open refuses a second `queued` before any link
            // is judged.
            self.tally
                .judge(fold, record, line, chain, negative, &mut judge::no_link);
            if fold.state().is_settled() {
                let (state, seq) = (fold.state(), fold.seq());
                let attempt = fold.delegation().map_or(1, |d| d.attempt);
                self.open.remove(&id);
                self.set_aside(id, state, seq, attempt);
            }
            return;
        }
        let may_be_known = self
            .last
            .as_ref()
            .is_some_and(|last| store_order(&id, last) != Ordering::Greater);
        if may_be_known {
            match self.settled.get(&id) {
                Ok(Some((state, seq, _))) => {
                    self.tally
                        .judge_settled(state, seq, &record, line, negative);
                    return;
                }
                Ok(None) => {}
                Err(error) => {
                    self.error.get_or_insert(error);
                }
            }
        }
        let mut fold = Fold::new(id.clone());
        let (open, settled, retried, error) = (
            &self.open,
            &mut self.settled,
            &mut self.retried,
            &mut self.error,
        );
        let mut link = |retry: &Record| {
            let Event::Queued(queued) = &retry.event else {
                return None;
            };
            let of = queued.retry_of.as_ref()?;
            let original = match (retried.get(of), open.get(of)) {
                (Some(by), _) => Original::Retried(by),
                (None, Some(fold)) => Original::Found {
                    state: fold.state(),
                    attempt: fold.delegation().map_or(1, |d| d.attempt),
                },
                (None, None) => match settled.get(of) {
                    Ok(Some((state, _, attempt))) => Original::Found { state, attempt },
                    Ok(None) => Original::Missing("which no earlier line queued"),
                    Err(e) => {
                        error.get_or_insert(e);
                        Original::Missing("which the set-aside delegations could not tell")
                    }
                },
            };
            let verdict = judge::judge_link(retry, original);
            if verdict.is_none() {
                retried.insert(of.clone(), retry.delegation.clone());
            }
            verdict
        };
        if self
            .tally
            .judge(&mut fold, record, line, chain, negative, &mut link)
        {
            if self
                .last
                .as_ref()
                .is_none_or(|last| store_order(&id, last) == Ordering::Greater)
            {
                self.last = Some(id.clone());
            }
            self.open.insert(id, fold);
        }
    }

    fn set_aside(&mut self, id: DelegationId, state: State, seq: Seq, attempt: Attempt) {
        if let Err(error) = self.settled.insert(id, state, seq, attempt) {
            self.error.get_or_insert(error);
        }
    }

    fn finish(self, clock: &dyn Clock) -> Result<Verdict, AuditError> {
        if let Some(error) = self.error {
            return Err(AuditError::Io(error));
        }
        if self.tally.records > 0 && self.objects == 0 {
            return Err(AuditError::NotALog {
                lines: self.tally.records,
            });
        }
        let now = clock.now();
        let pending = self
            .open
            .values()
            .filter_map(|fold| judge::pending(fold, now))
            .collect();
        Ok(self.tally.finish(pending))
    }
}

/// Settled delegations set aside: on disk while nobody asks, in memory after.
#[derive(Default)]
enum Settled {
    /// None yet.
    #[default]
    Empty,
    /// In an anonymous temporary file, unread.
    Spilled(BufWriter<File>),
    /// In memory.
    Loaded(HashMap<DelegationId, (State, Seq, Attempt)>),
}

impl Settled {
    fn insert(
        &mut self,
        id: DelegationId,
        state: State,
        seq: Seq,
        attempt: Attempt,
    ) -> io::Result<()> {
        if let Settled::Empty = self {
            *self = match tempfile::tempfile() {
                Ok(file) => Settled::Spilled(BufWriter::with_capacity(64 * 1024, file)),
                // No temporary directory: keep them in memory instead.
                Err(_) => Settled::Loaded(HashMap::new()),
            };
        }
        match self {
            Settled::Empty => Ok(()),
            Settled::Spilled(file) => {
                let bytes = id.as_str().as_bytes();
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                file.write_all(&[state_code(state)])?;
                file.write_all(&seq.to_be_bytes())?;
                file.write_all(&attempt.to_be_bytes())?;
                file.write_all(&len.to_be_bytes())?;
                file.write_all(bytes)
            }
            Settled::Loaded(map) => {
                map.insert(id, (state, seq, attempt));
                Ok(())
            }
        }
    }

    fn get(&mut self, id: &DelegationId) -> io::Result<Option<(State, Seq, Attempt)>> {
        if let Settled::Spilled(_) = self {
            self.load()?;
        }
        Ok(match self {
            Settled::Loaded(map) => map.get(id).copied(),
            Settled::Empty | Settled::Spilled(_) => None,
        })
    }

    fn load(&mut self) -> io::Result<()> {
        let Settled::Spilled(writer) = std::mem::take(self) else {
            return Ok(());
        };
        let mut file = writer.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        let mut reader = BufReader::new(file);
        let mut map = HashMap::new();
        let corrupt = || io::Error::other("the temporary file of settled delegations is damaged");
        loop {
            let mut header = [0u8; 19];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let (code, rest) = header.split_first().ok_or_else(corrupt)?;
            let (seq, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
            let (attempt, len) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
            let len: [u8; 2] = len.try_into().map_err(|_| corrupt())?;
            let mut id = vec![0u8; usize::from(u16::from_be_bytes(len))];
            reader.read_exact(&mut id)?;
            let id = String::from_utf8(id).map_err(|_| corrupt())?;
            let id = DelegationId::try_from(id).map_err(|_| corrupt())?;
            let state = state_from_code(*code).ok_or_else(corrupt)?;
            map.insert(
                id,
                (
                    state,
                    u64::from_be_bytes(*seq),
                    u64::from_be_bytes(*attempt),
                ),
            );
        }
        *self = Settled::Loaded(map);
        Ok(())
    }
}

fn state_code(state: State) -> u8 {
    match state {
        State::Initial => 0,
        State::Queued => 1,
        State::Delivered => 2,
        State::Failed => 3,
    }
}

fn state_from_code(code: u8) -> Option<State> {
    State::ALL.get(usize::from(code)).copied()
}
