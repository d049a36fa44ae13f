//! The group append: one transaction that, for each append in order, raises the
//! delegation's head conditionally and inserts its record, or writes nothing.
//!
//! Each append is one statement: a data-modifying CTE that moves the head (an
//! `INSERT … ON CONFLICT DO NOTHING` for a delegation with no head, an
//! `UPDATE … WHERE delegation = $1 AND seq = $2` that also asks for the record
//! the head names) and inserts the record only if the head moved. Zero heads
//! moved is a lost race (or a missing record), and the statement wrote nothing; a
//! head moved over a taken record slot raises `refuse_taken_slot()` (SQLSTATE
//! `DL001`) inside the statement, which undoes it. So a statement either writes
//! its record and head or nothing, and a group of one needs no transaction around
//! it: it is one autocommitted statement, one round trip. A larger group is one
//! transaction of such statements, all or nothing. Racing writers queue on the head's
//! row lock; under READ COMMITTED the loser's `UPDATE` re-reads the winner's head
//! and matches nothing, so exactly one wins.

use super::fail::{self, Failure};
use super::pool::Conn;
use crate::error::Error;
use crate::event::{DelegationId, Seq};
use crate::store::{Append, AppendError, Expect};

/// The first record of a delegation and its head: `$1` id, `$2` summary, `$3`
/// record. Answers (heads moved, records inserted).
const FIRST: &str = "
    WITH moved AS (
        INSERT INTO heads (delegation, seq, summary) VALUES ($1::bytea, 1, $2::bytea)
        ON CONFLICT (delegation) DO NOTHING
        RETURNING seq),
    put AS (
        INSERT INTO records (delegation, seq, bytes)
        SELECT $1::bytea, 1::bigint, $3::bytea FROM moved
        ON CONFLICT (delegation, seq) DO NOTHING
        RETURNING seq)
    SELECT m, p, CASE WHEN m > 0 AND p = 0 THEN refuse_taken_slot() ELSE 0 END
    FROM (SELECT (SELECT count(*) FROM moved) AS m, (SELECT count(*) FROM put) AS p) AS counts";

/// A later record and its head: `$1` id, `$2` expected head seq, `$3` new seq,
/// `$4` summary, `$5` record. Answers (heads moved, records inserted).
const NEXT: &str = "
    WITH moved AS (
        UPDATE heads SET seq = $3::bigint, summary = $4::bytea
        WHERE delegation = $1::bytea AND seq = $2::bigint
          AND EXISTS (SELECT 1 FROM records WHERE delegation = $1::bytea AND seq = $2::bigint)
        RETURNING seq),
    put AS (
        INSERT INTO records (delegation, seq, bytes)
        SELECT $1::bytea, $3::bigint, $5::bytea FROM moved
        ON CONFLICT (delegation, seq) DO NOTHING
        RETURNING seq)
    SELECT m, p, CASE WHEN m > 0 AND p = 0 THEN refuse_taken_slot() ELSE 0 END
    FROM (SELECT (SELECT count(*) FROM moved) AS m, (SELECT count(*) FROM put) AS p) AS counts";

/// The SQLSTATE `refuse_taken_slot()` raises.
const TAKEN: &str = "DL001";

/// The head's seq, read after a head did not move: a new statement, so under
/// READ COMMITTED it sees the winner's commit.
const HEAD_SEQ: &str = "SELECT seq FROM heads WHERE delegation = $1::bytea";

/// One append, owned, so that it can travel to a worker.
pub(super) struct Item {
    id: DelegationId,
    key: Vec<u8>,
    expect: Expect,
    after: Option<i64>,
    next: i64,
    record: Vec<u8>,
    head: Vec<u8>,
}

/// The owned items of a group, or the error of a seq PostgreSQL's `bigint` cannot hold.
pub(super) fn items(appends: &[Append<'_>]) -> Result<Vec<Item>, AppendError> {
    appends
        .iter()
        .map(|append| {
            let after = append.expect.seq().map(bigint).transpose()?;
            Ok(Item {
                id: append.id.clone(),
                key: append.id.as_str().as_bytes().to_vec(),
                expect: append.expect,
                after,
                next: bigint(append.expect.next())?,
                record: append.record.to_vec(),
                head: append.head.to_vec(),
            })
        })
        .collect()
}

fn bigint(seq: Seq) -> Result<i64, Error> {
    i64::try_from(seq)
        .map_err(|_| fail::storage(format!("seq {seq} does not fit PostgreSQL's bigint")))
}

/// Writes `items` in one transaction, all or nothing. A refusal is `Ok(Err(_))`:
/// the connection is fine and nothing was written.
pub(super) fn run(conn: &mut Conn, items: &[Item]) -> Result<Result<(), AppendError>, Failure> {
    let first = conn.statement(FIRST)?;
    let next = conn.statement(NEXT)?;
    let head_seq = conn.statement(HEAD_SEQ)?;
    let fail = conn.failer();
    let target = conn.target();
    if let [item] = items {
        // One statement, autocommitted: it wrote all of itself or nothing.
        let answer = match item.after {
            None => conn
                .client
                .query_one(&first, &[&item.key, &item.head, &item.record]),
            Some(after) => conn.client.query_one(
                &next,
                &[&item.key, &after, &item.next, &item.head, &item.record],
            ),
        };
        let moved = match answer.and_then(|row| row.try_get::<_, i64>(0)) {
            Ok(moved) => moved,
            Err(error) if taken(&error) => {
                return Ok(Err(AppendError::occupied(&item.id, item.expect.next())));
            }
            Err(error) => {
                // The statement may have committed, unless the server said it
                // never ran it (it was shutting down when the statement came).
                let never_ran = shutting_down(&error);
                let lost = conn_lost(&error) && !never_ran;
                return Err(if lost {
                    fail::lost(
                        error,
                        "appending",
                        &target,
                        "the connection failed while an append was in flight: it may or \
                         may not have been written",
                    )
                } else {
                    fail(error, "appending")
                });
            }
        };
        if moved > 0 {
            return Ok(Ok(()));
        }
        let actual = conn
            .client
            .query_opt(&head_seq, &[&item.key])
            .and_then(|row| row.map(|row| row.try_get::<_, i64>(0)).transpose())
            .map_err(|e| fail(e, "reading a head after a lost race"))?;
        return Ok(Err(refusal(item, actual)));
    }
    let mut tx = conn
        .client
        .transaction()
        .map_err(|e| fail(e, "beginning an append"))?;
    for item in items {
        let answer = match item.after {
            None => tx.query_one(&first, &[&item.key, &item.head, &item.record]),
            Some(after) => tx.query_one(
                &next,
                &[&item.key, &after, &item.next, &item.head, &item.record],
            ),
        };
        // Nothing of the group is committed whether a rollback is heard or not:
        // a transaction that never commits is rolled back by the server.
        let moved = match answer.and_then(|row| row.try_get::<_, i64>(0)) {
            Ok(moved) => moved,
            Err(error) if taken(&error) => {
                let _ = tx.rollback();
                return Ok(Err(AppendError::occupied(&item.id, item.expect.next())));
            }
            Err(error) => return Err(fail(error, "appending")),
        };
        if moved == 0 {
            let actual = tx
                .query_opt(&head_seq, &[&item.key])
                .and_then(|row| row.map(|row| row.try_get::<_, i64>(0)).transpose())
                .map_err(|e| fail(e, "reading a head after a lost race"))?;
            let _ = tx.rollback();
            return Ok(Err(refusal(item, actual)));
        }
    }
    tx.commit().map_err(|error| {
        if conn_lost(&error) {
            fail::lost(
                error,
                "committing an append",
                &target,
                "the connection failed during COMMIT: the append may or may not have been \
                 written",
            )
        } else {
            fail(error, "committing an append")
        }
    })?;
    Ok(Ok(()))
}

/// Why an append whose head did not move was refused, given the head's seq read
/// after it: its record is missing if the head is where the writer expected,
/// otherwise another writer moved it (a conflict naming where it is).
fn refusal(item: &Item, actual: Option<i64>) -> AppendError {
    let actual = actual.and_then(|seq| u64::try_from(seq).ok());
    match (actual, item.expect) {
        (Some(seq), Expect::At(expected)) if seq == expected => {
            AppendError::missing(&item.id, expected)
        }
        _ => AppendError::Conflict {
            id: item.id.clone(),
            expected: item.expect,
            actual,
        },
    }
}

/// Whether the statement refused a taken record slot (and so wrote nothing).
fn taken(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| code.code() == TAKEN)
}

/// Whether `error` means the connection failed (the same test as
/// [`fail::classify`]'s `Failure::Connection`).
fn conn_lost(error: &postgres::Error) -> bool {
    error
        .code()
        .is_none_or(|code| code.code().starts_with("08") || code.code().starts_with("57P"))
}

/// Whether the server ended the session before running the statement: it was
/// shutting down (SQLSTATE 57P01 to 57P03), so nothing of the statement ran.
fn shutting_down(error: &postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| code.code().starts_with("57P"))
}
