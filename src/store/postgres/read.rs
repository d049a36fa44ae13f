//! The reads: a head (one query), a history (one statement, so one snapshot:
//! records and head in step), and the scan, which pages through the delegations
//! in sled's key order, a bounded page at a time, each page one statement.
//!
//! The scan's pages are keyed by the last delegation seen, never by a sequence
//! number or a commit order, so a transaction that commits late cannot be skipped
//! by a cursor that passed its number (the hazard of tailing by sequence): a
//! delegation is either read whole in its page's snapshot, or, if it is created
//! behind the cursor meanwhile, left to the next scan.

use std::collections::VecDeque;

use postgres::Row;

use super::Postgres;
use super::fail::Failure;
use super::pool::Conn;
use crate::error::ReadError;
use crate::event::DelegationId;
use crate::store::{Entry, Head, Stream, key};

/// How many delegations one page of the scan reads.
const PAGE: i64 = 256;

const HEAD: &str = "SELECT seq, summary FROM heads WHERE delegation = $1::bytea";

const HISTORY: &str = "
    SELECT true AS is_head, seq, summary AS bytes FROM heads WHERE delegation = $1::bytea
    UNION ALL
    SELECT false, seq, bytes FROM records WHERE delegation = $1::bytea
    ORDER BY is_head DESC, seq";

/// The delegations after `($1 length, $2 id)` in key order, at most `$3` of
/// them, whether they have a head, records or both, with their heads and
/// records. Each side is read through its key-order index and stops after `$3`.
const PAGE_SQL: &str = "
    WITH ids AS (
        SELECT len, delegation FROM (
            (SELECT octet_length(delegation) AS len, delegation FROM heads
             WHERE (octet_length(delegation), delegation) > ($1::integer, $2::bytea)
             ORDER BY 1, 2 LIMIT $3::bigint)
            UNION
            (SELECT DISTINCT octet_length(delegation) AS len, delegation FROM records
             WHERE (octet_length(delegation), delegation) > ($1::integer, $2::bytea)
             ORDER BY 1, 2 LIMIT $3::bigint)
        ) AS both_tables
        ORDER BY len, delegation LIMIT $3::bigint)
    SELECT ids.len, ids.delegation, true AS is_head, h.seq, h.summary AS bytes
      FROM ids JOIN heads h ON h.delegation = ids.delegation
    UNION ALL
    SELECT ids.len, ids.delegation, false, r.seq, r.bytes
      FROM ids JOIN records r ON r.delegation = ids.delegation
    ORDER BY len, delegation, is_head DESC, seq";

/// One delegation's rows, as they came from the server.
#[derive(Default)]
pub(super) struct Rows {
    key: Vec<u8>,
    head: Option<(i64, Vec<u8>)>,
    entries: Vec<(i64, Vec<u8>)>,
}

impl Rows {
    /// Adds one row of (is_head, seq, bytes).
    fn push(&mut self, is_head: bool, seq: i64, bytes: Vec<u8>) {
        if is_head {
            self.head = Some((seq, bytes));
        } else {
            self.entries.push((seq, bytes));
        }
    }

    /// The stream these rows make for `id`; an error for a seq below 1.
    fn into_stream(self, id: DelegationId) -> Result<Stream, ReadError> {
        let seq = |seq: i64| {
            u64::try_from(seq).map_err(|_| ReadError::Corrupt {
                key: format!("delegation `{id}`"),
                reason: format!("stored seq {seq} is negative"),
            })
        };
        let head = match self.head {
            Some((at, summary)) => Some(Head {
                seq: seq(at)?,
                summary,
            }),
            None => None,
        };
        let entries = self
            .entries
            .into_iter()
            .map(|(at, bytes)| {
                Ok(Entry {
                    seq: seq(at)?,
                    bytes,
                })
            })
            .collect::<Result<_, ReadError>>()?;
        Ok(Stream { id, entries, head })
    }
}

/// The delegation of a stored key, or the damage of one that is not an id.
fn parse_id(key: &[u8]) -> Result<DelegationId, ReadError> {
    std::str::from_utf8(key)
        .map_err(|e| e.to_string())
        .and_then(|id| DelegationId::try_from(id).map_err(|e| e.to_string()))
        .map_err(|reason| ReadError::Corrupt {
            key: format!("delegation {}", key::hex(key)),
            reason,
        })
}

fn key_of(id: &DelegationId) -> Vec<u8> {
    id.as_str().as_bytes().to_vec()
}

impl Postgres {
    pub(super) fn read_head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        let key = key_of(id);
        let found = self
            .pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(HEAD)?;
                let fail = conn.failer();
                let row = conn
                    .client
                    .query_opt(&statement, &[&key])
                    .map_err(|e| fail(e, "reading a head"))?;
                row.map(|row| Ok((get(&row, 0, &fail)?, get(&row, 1, &fail)?)))
                    .transpose()
            })
            .map_err(Failure::into_error)?;
        let Some((seq, summary)) = found else {
            return Ok(None);
        };
        let rows = Rows {
            key: Vec::new(),
            head: Some((seq, summary)),
            entries: Vec::new(),
        };
        Ok(rows.into_stream(id.clone())?.head)
    }

    pub(super) fn read_history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        let key = key_of(id);
        let rows = self
            .pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(HISTORY)?;
                let fail = conn.failer();
                let mut rows = Rows::default();
                for row in conn
                    .client
                    .query(&statement, &[&key])
                    .map_err(|e| fail(e, "reading a history"))?
                {
                    rows.push(
                        get(&row, 0, &fail)?,
                        get(&row, 1, &fail)?,
                        get(&row, 2, &fail)?,
                    );
                }
                Ok(rows)
            })
            .map_err(Failure::into_error)?;
        rows.into_stream(id.clone())
    }

    /// The page of delegations after `after` (a key's length and bytes).
    fn read_page(&self, after: (i32, Vec<u8>)) -> Result<Vec<Rows>, ReadError> {
        self.pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(PAGE_SQL)?;
                let fail = conn.failer();
                let mut page: Vec<Rows> = Vec::new();
                for row in conn
                    .client
                    .query(&statement, &[&after.0, &after.1, &PAGE])
                    .map_err(|e| fail(e, "scanning"))?
                {
                    let key: Vec<u8> = get(&row, 1, &fail)?;
                    let (is_head, seq, bytes) = (
                        get(&row, 2, &fail)?,
                        get(&row, 3, &fail)?,
                        get(&row, 4, &fail)?,
                    );
                    match page.last_mut() {
                        Some(rows) if rows.key == key => rows.push(is_head, seq, bytes),
                        _ => {
                            let mut rows = Rows {
                                key,
                                ..Rows::default()
                            };
                            rows.push(is_head, seq, bytes);
                            page.push(rows);
                        }
                    }
                }
                Ok(page)
            })
            .map_err(Into::into)
    }

    pub(super) fn pages(&self) -> Pages<'_> {
        Pages {
            store: self,
            after: Some((0, Vec::new())),
            ready: VecDeque::new(),
        }
    }
}

/// A column of a row, or the failure of a column of another type than expected.
fn get<'a, T: postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: usize,
    fail: &impl Fn(postgres::Error, &str) -> Failure,
) -> Result<T, Failure> {
    row.try_get(column)
        .map_err(|e| fail(e, "reading a column"))
        .map_err(|failure| Failure::Other(failure.into_error()))
}

/// The scan: one page at a time, each delegation of a page as a stream.
pub(super) struct Pages<'a> {
    store: &'a Postgres,
    /// The last key read, or `None` once the last page was read (or failed).
    after: Option<(i32, Vec<u8>)>,
    ready: VecDeque<Result<Stream, ReadError>>,
}

impl Iterator for Pages<'_> {
    type Item = Result<Stream, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(stream) = self.ready.pop_front() {
                return Some(stream);
            }
            let after = self.after.take()?;
            match self.store.read_page(after) {
                // A failed page ends the scan: the next page would fail the same way.
                Err(error) => return Some(Err(error)),
                Ok(page) => {
                    let full = i64::try_from(page.len()).is_ok_and(|len| len >= PAGE);
                    if full {
                        self.after = page.last().map(|rows| {
                            let len = i32::try_from(rows.key.len()).unwrap_or(i32::MAX);
                            (len, rows.key.clone())
                        });
                    }
                    for rows in page {
                        let stream = parse_id(&rows.key).and_then(|id| rows.into_stream(id));
                        self.ready.push_back(stream);
                    }
                }
            }
        }
    }
}
