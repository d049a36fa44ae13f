//! The group append: one transaction that, for each append in order, raises the
//! delegation's head conditionally and inserts its record, or writes nothing.
//!
//! Each append is one statement: a data-modifying CTE that moves the head (an
//! `INSERT` for a delegation with no head, an `UPDATE … WHERE delegation = $1
//! AND seq = $2` that also asks for the record the head names) and inserts the
//! record only if the head moved. Zero heads moved is a lost race (or a missing
//! record), and the statement wrote nothing. A unique violation undoes the
//! whole statement: on `heads`, a first record's lost race (another writer's
//! head is there), and on `records`, a head moved over a taken record slot. So
//! a statement either writes its record and head or nothing, and a group of
//! one needs no transaction around it: it is one autocommitted statement, one
//! round trip. A larger group is one transaction of such statements, all or
//! nothing. Racing writers queue on the head's row lock (or, for a first
//! record, on the head's key); under READ COMMITTED the loser's `UPDATE`
//! re-reads the winner's head and matches nothing, and its `INSERT` meets the
//! winner's key, so exactly one wins.
//!
//! The head and the record are plain inserts, not `ON CONFLICT DO NOTHING`:
//! for each row, PostgreSQL's speculative insertion probes the unique index
//! before inserting, takes a lock in the shared lock table and writes one WAL
//! record more, which a plain insert into the same unique index does not, and
//! an error undoes as much. (The hints and the claim, which are upserts, keep
//! `ON CONFLICT`.)

use postgres::error::Severity;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row, Statement};

use super::fail::{self, Failure};
use super::index;
use super::pool::{Backend, Conn, SERVER, Server};
use crate::error::Error;
use crate::event::{DelegationId, Seq};
use crate::store::{Append, AppendError, Expect, Hint, Owner};

/// The hints an append writes with it (`$1` kinds, `$2` delegations and `$3`
/// retries, the same in every append statement), only if the head moved.
///
/// An append statement names only the index changes its append makes: a
/// data-modifying CTE runs (opens its table and indexes, locks them) even
/// when it changes no row, and skipping the empty ones cut the two statements
/// of a delegation by about a tenth in a pgbench probe (`BENCHMARKS.md`, run
/// P11). So each statement comes in four [`variants!`], and every variant
/// declares the five hint parameters ([`HINT_TYPES`]), whether it reads them
/// or not, so that all take the same arguments.
macro_rules! writes_hints {
    () => {
        ",
    hinted AS (
        INSERT INTO hints (kind, delegation, retry)
        SELECT h.kind, h.delegation, h.retry
        FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS h (kind, delegation, retry)
        WHERE EXISTS (SELECT 1 FROM moved)
        ON CONFLICT (kind, delegation) DO UPDATE SET retry = EXCLUDED.retry
        RETURNING 1)"
    };
}

/// The hints an append removes with it (`$4` kinds, `$5` delegations), only
/// if the head moved, each by its primary key (a join on the unnested arrays
/// was planned, generically, as a scan of all of `hints` in a schema never
/// analyzed).
///
/// A removed *open* hint means its delegation settled with this append (the
/// ledger removes one only with the write that settles it), so that
/// delegation's claim goes too, whoever holds it: a claim marks who delivers a
/// `queued` delegation, and a settled one has nothing left to deliver
/// ([`Ownership::settlement_releases`](crate::store::Ownership::settlement_releases)).
macro_rules! removes_hints {
    () => {
        ",
    stale AS (SELECT * FROM unnest($4::text[], $5::bytea[]) AS u (kind, delegation)),
    unhinted AS (
        DELETE FROM hints
        WHERE ((kind = 'o' AND delegation = ANY (ARRAY(SELECT delegation FROM stale WHERE kind = 'o')))
            OR (kind = 'd' AND delegation = ANY (ARRAY(SELECT delegation FROM stale WHERE kind = 'd')))
            OR (kind = 'l' AND delegation = ANY (ARRAY(SELECT delegation FROM stale WHERE kind = 'l'))))
          AND EXISTS (SELECT 1 FROM moved)
        RETURNING 1),
    released AS (
        DELETE FROM claims
        WHERE delegation = ANY (ARRAY(SELECT delegation FROM stale WHERE kind = 'o'))
          AND EXISTS (SELECT 1 FROM moved)
        RETURNING 1)"
    };
}

/// The four [`Variants`] of an append statement, `$head` (its CTEs up to its
/// own writes) and `$tail` (its answer).
macro_rules! variants {
    ($head:ident, $tail:ident) => {
        Variants {
            bare: concat!($head!(), $tail!()),
            writes: concat!($head!(), writes_hints!(), $tail!()),
            removes: concat!($head!(), removes_hints!(), $tail!()),
            both: concat!($head!(), writes_hints!(), removes_hints!(), $tail!()),
        }
    };
}

/// An append statement, by the index changes it names: none,
/// [`writes_hints!`], [`removes_hints!`], or both.
struct Variants {
    bare: &'static str,
    writes: &'static str,
    removes: &'static str,
    both: &'static str,
}

impl Variants {
    /// The variant that writes and removes `rows`.
    fn of(&self, rows: &Rows) -> &'static str {
        match (rows.kinds.is_empty(), rows.stale_kinds.is_empty()) {
            (true, true) => self.bare,
            (false, true) => self.writes,
            (true, false) => self.removes,
            (false, false) => self.both,
        }
    }

    /// All four.
    #[cfg(test)]
    fn all(&self) -> [&'static str; 4] {
        [self.bare, self.writes, self.removes, self.both]
    }
}

/// The types of the hint parameters `$1`–`$5`, declared by every append
/// statement ([`variants!`]): the others are typed by their casts.
const HINT_TYPES: [Type; 5] = [
    Type::TEXT_ARRAY,
    Type::BYTEA_ARRAY,
    Type::BYTEA_ARRAY,
    Type::TEXT_ARRAY,
    Type::BYTEA_ARRAY,
];

/// The answer of every append statement: how many heads moved (0 or 1). Its
/// record went in with a moved head, or the statement failed.
macro_rules! answer {
    () => {
        "
    SELECT (SELECT count(*) FROM moved)"
    };
}

/// [`answer!`], then whether the lease was live and whether the delegation was
/// free ([`FIRST_CLAIMED`]).
macro_rules! answer_claimed {
    () => {
        "
    SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM me), (SELECT count(*) FROM free)"
    };
}

/// The insert of a delegation's first record (`$6` id, `$8` record) if its
/// head moved: the same in [`FIRST`] and [`FIRST_CLAIMED`].
macro_rules! put_first {
    () => {
        ",
    put AS (
        INSERT INTO records (delegation, seq, bytes)
        SELECT $6::bytea, 1::bigint, $8::bytea FROM moved)"
    };
}

/// The head of [`FIRST`].
macro_rules! first {
    () => {
        concat!(
            "
    WITH moved AS (
        INSERT INTO heads (delegation, seq, summary) VALUES ($6::bytea, 1, $7::bytea)
        RETURNING seq)",
            put_first!()
        )
    };
}

/// The first record of a delegation and its head: `$1`–`$5` the hints
/// ([`writes_hints!`], [`removes_hints!`]), `$6` id, `$7` summary, `$8` record.
const FIRST: Variants = variants!(first, answer);

/// The head of [`FIRST_CLAIMED`].
macro_rules! first_claimed {
    () => {
        concat!(
            "
    WITH me AS (SELECT 1 FROM dispatchers WHERE id = $9::bytea AND lease_until > now()),
    free AS (
        SELECT 1 FROM me WHERE NOT EXISTS (
            SELECT 1 FROM claims c
            WHERE c.delegation = $6::bytea AND c.owner <> $9::bytea
              AND EXISTS (
                  SELECT 1 FROM dispatchers d WHERE d.id = c.owner AND d.lease_until > now()))),
    moved AS (
        INSERT INTO heads (delegation, seq, summary) SELECT $6::bytea, 1, $7::bytea FROM free
        RETURNING seq)",
            put_first!(),
            ",
    claimed AS (
        INSERT INTO claims (delegation, owner, claimed_at)
        SELECT $6::bytea, $9::bytea, now() FROM moved
        ON CONFLICT (delegation) DO UPDATE SET owner = EXCLUDED.owner, claimed_at = now()
        RETURNING 1)"
        )
    };
}

/// [`FIRST`] with `$9` owner's claim on `$6`, in the same statement: the head
/// moves only if the owner's lease is live (`me`) and no other owner with a
/// live lease claims `$6` (`free`), and the claim is written only if the head
/// moved, so the claim and the `queued` commit together or not at all. The
/// claim is taken as `lease.rs`'s `CLAIM` takes it, except that the writer
/// that moved the head takes it whoever holds it: a claim `free` did not see,
/// written since by a claimer whose own `queued` must now lose the race for
/// the head, passes to the head's writer (the claimer's release, which ends
/// only its own claim, then leaves it). Answers as [`FIRST`], then whether
/// the lease was live and whether `$6` was free.
const FIRST_CLAIMED: Variants = variants!(first_claimed, answer_claimed);

/// The head of [`NEXT`].
macro_rules! next {
    () => {
        "
    WITH moved AS (
        UPDATE heads SET seq = $8::bigint, summary = $9::bytea
        WHERE delegation = $6::bytea AND seq = $7::bigint
          AND EXISTS (SELECT 1 FROM records WHERE delegation = $6::bytea AND seq = $7::bigint)
        RETURNING seq),
    put AS (
        INSERT INTO records (delegation, seq, bytes)
        SELECT $6::bytea, $8::bigint, $10::bytea FROM moved)"
    };
}

/// A later record and its head: `$1`–`$5` the hints ([`writes_hints!`],
/// [`removes_hints!`]), `$6` id, `$7` expected head seq, `$8` new seq, `$9`
/// summary, `$10` record.
const NEXT: Variants = variants!(next, answer);

/// The SQLSTATE of a unique violation.
const UNIQUE: &str = "23505";

/// The head's seq, read after a head did not move: a new statement, so under
/// READ COMMITTED it sees the winner's commit.
const HEAD_SEQ: &str = "SELECT seq FROM heads WHERE delegation = $1::bytea";

/// One append, owned, so that it can travel to a worker thread.
pub(super) struct Item {
    id: DelegationId,
    key: Vec<u8>,
    expect: Expect,
    after: Option<i64>,
    next: i64,
    record: Vec<u8>,
    head: Vec<u8>,
    hints: Rows,
    /// The owner whose claim on `id` goes with this append ([`FIRST_CLAIMED`]).
    owner: Option<Vec<u8>>,
}

/// The index rows an append writes and removes with it, as the parallel arrays
/// its statement takes ([`writes_hints!`], [`removes_hints!`]).
#[derive(Default)]
struct Rows {
    kinds: Vec<&'static str>,
    delegations: Vec<Vec<u8>>,
    retries: Vec<Option<Vec<u8>>>,
    stale_kinds: Vec<&'static str>,
    stale_delegations: Vec<Vec<u8>>,
}

impl Rows {
    fn of(hints: &[Hint], stale: &[Hint]) -> Self {
        let mut rows = Rows::default();
        for (kind, delegation, retry) in hints.iter().map(index::row) {
            rows.kinds.push(kind);
            rows.delegations.push(delegation);
            rows.retries.push(retry);
        }
        for (kind, delegation, _) in stale.iter().map(index::row) {
            rows.stale_kinds.push(kind);
            rows.stale_delegations.push(delegation);
        }
        rows
    }
}

/// The owned items of a group, the hints going with its last append (the group
/// is one transaction, so they are written if and only if all of it is), and
/// `owner`'s claim with each append that starts its delegation; or the error
/// of a seq PostgreSQL's `bigint` cannot hold.
pub(super) fn items(
    appends: &[Append<'_>],
    hints: &[Hint],
    stale: &[Hint],
    owner: Option<Owner>,
) -> Result<Vec<Item>, AppendError> {
    let last = appends.len().saturating_sub(1);
    appends
        .iter()
        .enumerate()
        .map(|(at, append)| {
            let after = append.expect.seq().map(bigint).transpose()?;
            Ok(Item {
                id: append.id.clone(),
                key: append.id.as_str().as_bytes().to_vec(),
                expect: append.expect,
                after,
                next: bigint(append.expect.next())?,
                record: append.record.to_vec(),
                head: append.head.to_vec(),
                hints: if at == last {
                    Rows::of(hints, stale)
                } else {
                    Rows::default()
                },
                owner: owner
                    .filter(|_| append.expect == Expect::Empty)
                    .map(|owner| owner.as_bytes().to_vec()),
            })
        })
        .collect()
}

fn bigint(seq: Seq) -> Result<i64, Error> {
    i64::try_from(seq)
        .map_err(|_| fail::storage(format!("seq {seq} does not fit PostgreSQL's bigint")).into())
}

/// Writes `items` in one transaction, all or nothing. A refusal is `Ok(Err(_))`:
/// the connection is fine and nothing was written.
pub(super) fn run(conn: &mut Conn, items: &[Item]) -> Result<Result<(), AppendError>, Failure> {
    let statements = items
        .iter()
        .map(|item| conn.typed_statement(item.sql(), &HINT_TYPES))
        .collect::<Result<Vec<_>, _>>()?;
    let head_seq = conn.statement(HEAD_SEQ)?;
    let fail = conn.failer();
    let (target, backend) = (conn.target(), conn.backend());
    if let ([item], [statement]) = (items, &statements[..]) {
        // One statement, autocommitted: it wrote all of itself or nothing.
        let answer = item.write(&mut conn.client, statement);
        let moved = match answer.and_then(|row| item.moved(&row)) {
            Ok(Ok(moved)) => moved,
            Ok(Err(unclaimed)) => return Ok(Err(unclaimed)),
            Err(error) if taken(&error) => {
                return Ok(Err(AppendError::occupied(&item.id, item.expect.next())));
            }
            // Another writer's head is there: the statement wrote nothing.
            Err(error) if lost(&error) => 0,
            // The server ended the session when the statement came, or while
            // it ran (it was shutting down): the statement committed nothing,
            // and the pool runs it again on a new connection if this one had
            // sat idle.
            Err(error) if shutting_down(&error) => return Err(fail(error, "appending")),
            // An ERROR: the statement rolled back.
            Err(error) if rolled_back(&error) => return undone(fail(error, "appending")),
            // No word from the server, or another FATAL or a PANIC: the
            // statement may have committed.
            Err(error) => {
                return Err(fail::lost(
                    error,
                    "appending",
                    &target,
                    "the connection failed while an append was in flight: it may or \
                     may not have been written",
                    backend,
                ));
            }
        };
        if moved > 0 {
            return Ok(Ok(()));
        }
        let actual = head(&mut conn.client, &head_seq, &item.key)
            .map_err(|e| fail(e, "reading a head after a lost race"))?;
        return Ok(Err(refusal(item, actual)));
    }
    let mut tx = conn
        .client
        .transaction()
        .map_err(|e| fail(e, "beginning an append"))?;
    for (at, (item, statement)) in items.iter().zip(&statements).enumerate() {
        let answer = item.write(&mut tx, statement);
        // Nothing of the group is committed whether a rollback is heard or not:
        // a transaction that never commits is rolled back by the server.
        let moved = match answer.and_then(|row| item.moved(&row)) {
            Ok(Ok(moved)) => moved,
            Ok(Err(unclaimed)) => {
                let _ = tx.rollback();
                return Ok(Err(unclaimed));
            }
            Err(error) if taken(&error) => {
                let _ = tx.rollback();
                return Ok(Err(AppendError::occupied(&item.id, item.expect.next())));
            }
            // A head is there, and the failed statement aborted the
            // transaction. The group's own, if an earlier append of it wrote
            // one; otherwise another writer's, committed (a unique index
            // waits for an inserter's end), read after the rollback.
            Err(error) if lost(&error) => {
                let _ = tx.rollback();
                let actual = match items.iter().take(at).rev().find(|i| i.key == item.key) {
                    Some(earlier) => Some(earlier.next),
                    None => head(&mut conn.client, &head_seq, &item.key)
                        .map_err(|e| fail(e, "reading a head after a lost race"))?,
                };
                return Ok(Err(refusal(item, actual)));
            }
            Err(error) => return undone(fail(error, "appending")),
        };
        if moved == 0 {
            let actual = head(&mut tx, &head_seq, &item.key)
                .map_err(|e| fail(e, "reading a head after a lost race"))?;
            let _ = tx.rollback();
            return Ok(Err(refusal(item, actual)));
        }
    }
    match tx.commit() {
        Ok(()) => Ok(Ok(())),
        // The server refused the COMMIT with an ERROR: the transaction rolled
        // back.
        Err(error) if rolled_back(&error) => undone(fail(error, "committing an append")),
        // No word from the server, or a FATAL or a PANIC: it may have
        // committed.
        Err(error) => Err(fail::lost(
            error,
            "committing an append",
            &target,
            "the connection failed during COMMIT: the append may or may not have been written",
            backend,
        )),
    }
}

/// Whether the server answered `error` with the severity ERROR, after which
/// the session goes on and the statement's transaction is rolled back. A
/// FATAL ends the session and a PANIC the server, either of which may come
/// after a commit was written (a PANIC in the commit's own WAL flush); an
/// error without the server's word (the socket failed) says nothing.
fn rolled_back(error: &postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(Severity::Error))
}

/// What a write the server answered with an error comes to: its transaction
/// rolled back, so nothing of it was written. A lost deadlock is run again
/// (by the pool), and a session the server ended (it was shutting down, or
/// refused the connection's state) is replaced and reported as unsent; any
/// other refusal, a statement timeout included, is [`AppendError::Undone`].
fn undone(failure: Failure) -> Result<Result<(), AppendError>, Failure> {
    match failure {
        Failure::Other(error) => Ok(Err(AppendError::Undone(error.into()))),
        other => Err(other),
    }
}

impl Item {
    /// How many heads this append's statement moved (0 or 1), from its answer
    /// `row`; or, for an append with a claim that moved none, the claim's
    /// refusal if it was refused (then the statement wrote nothing).
    fn moved(&self, row: &Row) -> Result<Result<i64, AppendError>, postgres::Error> {
        let moved: i64 = row.try_get(0)?;
        if moved > 0 || self.owner.is_none() || self.after.is_some() {
            return Ok(Ok(moved));
        }
        let (live, free): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        let id = self.id.clone();
        Ok(match (live, free) {
            (0, _) => Err(AppendError::LeaseExpired { id }),
            (_, 0) => Err(AppendError::Claimed { id }),
            _ => Ok(moved),
        })
    }

    /// The variant of [`FIRST`], [`FIRST_CLAIMED`] or [`NEXT`] this append
    /// runs.
    fn sql(&self) -> &'static str {
        match (self.after, &self.owner) {
            (None, Some(_)) => FIRST_CLAIMED.of(&self.hints),
            (None, None) => FIRST.of(&self.hints),
            (Some(_), _) => NEXT.of(&self.hints),
        }
    }

    /// Runs this append's `statement` (its [`Item::sql`], prepared) on
    /// `client`: a connection, or a transaction.
    fn write(
        &self,
        client: &mut impl GenericClient,
        statement: &Statement,
    ) -> Result<Row, postgres::Error> {
        let rows = &self.hints;
        let hints: [&(dyn ToSql + Sync); 5] = [
            &rows.kinds,
            &rows.delegations,
            &rows.retries,
            &rows.stale_kinds,
            &rows.stale_delegations,
        ];
        match (self.after, &self.owner) {
            (None, Some(owner)) => client.query_one(
                statement,
                &[&hints[..], &[&self.key, &self.head, &self.record, owner]].concat(),
            ),
            (None, None) => client.query_one(
                statement,
                &[&hints[..], &[&self.key, &self.head, &self.record]].concat(),
            ),
            (Some(after), _) => client.query_one(
                statement,
                &[
                    &hints[..],
                    &[&self.key, &after, &self.next, &self.head, &self.record],
                ]
                .concat(),
            ),
        }
    }
}

/// The head's seq of the delegation `key`, read by `statement` ([`HEAD_SEQ`]).
fn head(
    client: &mut impl GenericClient,
    statement: &Statement,
    key: &[u8],
) -> Result<Option<i64>, postgres::Error> {
    client
        .query_opt(statement, &[&key])
        .and_then(|row| row.map(|row| row.try_get::<_, i64>(0)).transpose())
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
    violates(error, "records_pkey")
}

/// Whether a first record's statement lost its race for the head: another
/// writer's head is there (and the statement wrote nothing).
fn lost(error: &postgres::Error) -> bool {
    violates(error, "heads_pkey")
}

/// Whether `error` is a unique violation of `constraint` (the primary keys
/// `schema.rs` creates are named by PostgreSQL's default, `<table>_pkey`).
fn violates(error: &postgres::Error, constraint: &str) -> bool {
    error
        .as_db_error()
        .is_some_and(|db| db.code().code() == UNIQUE && db.constraint() == Some(constraint))
}

/// Whether the server ended the session before running the statement: it was
/// shutting down (SQLSTATE 57P01 to 57P03), so nothing of the statement ran.
fn shutting_down(error: &postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| code.code().starts_with("57P"))
}

/// How long the store waits for the server process of a failed connection to
/// end, once asked, before it gives up settling the write that process was
/// running.
const END_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often it looks again meanwhile.
const END_LOOK: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether the server process `$1` started at `$2` (microseconds since the
/// epoch) is still there. A pid alone could name a later session: the start
/// time makes it the one.
const ALIVE: &str = "
    SELECT count(*) FROM pg_stat_activity
    WHERE pid = $1::integer
      AND (extract(epoch FROM backend_start) * 1000000)::bigint = $2::bigint";

/// Asks the server process `$1` started at `$2` to end (without waiting: the
/// store looks again with [`ALIVE`], which works on every server version, and
/// no wait of the server's meets the statement timeout).
const END: &str = "
    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE pid = $1::integer
      AND (extract(epoch FROM backend_start) * 1000000)::bigint = $2::bigint";

/// The bytes of one record, if it is there.
const RECORD: &str = "SELECT bytes FROM records WHERE delegation = $1::bytea AND seq = $2::bigint";

/// What settling a write whose outcome was unknown found.
pub(super) enum Settled {
    /// The write committed: all of the group is there.
    Written,
    /// The write did not commit, and never will: nothing of the group is there.
    NotWritten,
}

/// Settles the outcome of `items`' write, which was in flight on the
/// connection served by `backend` when that connection failed: on a new
/// connection, to the same server and not a standby, ends `backend` and
/// waits for it to be gone (a server process that is gone commits nothing
/// more; a server that restarted since has none of its old processes), then
/// reads back the record of the group's last append. The group was one
/// transaction, so that record is there, with the bytes written, exactly when
/// all of the group is. Anything else (the server still down, another server
/// or a standby answering, the process not ending in time, the old process
/// unknown) leaves the outcome unknown: an error.
pub(super) fn settle(
    conn: &mut Conn,
    items: &[Item],
    backend: Option<&Backend>,
) -> Result<Settled, Failure> {
    let doing = "settling an append whose connection failed";
    let target = conn.target();
    let unknown = |why: String| {
        Err(Failure::Other(fail::storage(format!(
            "PostgreSQL {target}: {doing}: {why}"
        ))))
    };
    let Some(backend) = backend else {
        return unknown("the server did not say which process ran it".to_owned());
    };
    let Some(last) = items.last() else {
        return Ok(Settled::Written);
    };
    let (alive, end) = (conn.statement(ALIVE)?, conn.statement(END)?);
    let (record, server) = (conn.statement(RECORD)?, conn.statement(SERVER)?);
    let fail = conn.failer();
    let now = conn
        .client
        .query_one(&server, &[])
        .and_then(|row| Server::from_row(&row, 0))
        .map_err(|e| fail(e, doing))?;
    let was = &backend.server;
    if now.standby || (now.address.as_str(), now.port) != (was.address.as_str(), was.port) {
        return unknown(format!(
            "the new connection reached another server or a standby ({now:?}, not {was:?})"
        ));
    }
    if now.started < was.started {
        return unknown(format!(
            "the server now answering started before it ({now:?}, not {was:?})"
        ));
    }
    // A server started after the old process's was not the server it ran
    // on: it restarted since, and every process of before is gone.
    if now.started == was.started {
        end_backend(conn, backend, &alive, &end)?;
    }
    let stored: Option<Vec<u8>> = conn
        .client
        .query_opt(&record, &[&last.key, &last.next])
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(|e| fail(e, doing))?;
    Ok(if stored.as_deref() == Some(last.record.as_slice()) {
        Settled::Written
    } else {
        Settled::NotWritten
    })
}

/// Ends the server process `backend` if it is still there, and waits until it
/// is gone, for at most [`END_WAIT`] from the first ask.
fn end_backend(
    conn: &mut Conn,
    backend: &Backend,
    alive: &Statement,
    end: &Statement,
) -> Result<(), Failure> {
    let fail = conn.failer();
    let doing = "ending the server process of a failed connection";
    let mut asked: Option<std::time::Instant> = None;
    loop {
        let count: i64 = conn
            .client
            .query_one(alive, &[&backend.pid, &backend.started])
            .and_then(|row| row.try_get(0))
            .map_err(|e| fail(e, doing))?;
        if count == 0 {
            return Ok(());
        }
        match asked {
            Some(at) if at.elapsed() >= END_WAIT => {
                return Err(Failure::Other(fail::storage(format!(
                    "PostgreSQL {}: {doing}: process {} did not end within {END_WAIT:?}",
                    conn.target(),
                    backend.pid
                ))));
            }
            Some(_) => std::thread::sleep(END_LOOK),
            // Asked once, then looked at until it is gone.
            None => {
                conn.client
                    .query(end, &[&backend.pid, &backend.started])
                    .map_err(|e| fail(e, doing))?;
                asked = Some(std::time::Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client on the tests' server (`DATABASE_URL`), in a fresh schema of
    /// the store's tables with the store's session settings, or `None`
    /// without a server (under `CI=true` a missing server fails the test).
    fn fresh_schema() -> Option<(postgres::Client, String)> {
        let plain = super::super::url::tests_server()?;
        let mut client = postgres::Client::connect(&plain, postgres::NoTls).expect("connects");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .subsec_nanos();
        let name = format!("plans_{}_{nanos}", std::process::id());
        client
            .batch_execute(&super::super::schema::create(&name))
            .expect("the schema is created");
        client
            .batch_execute(&super::super::schema::session(
                &name,
                std::time::Duration::from_secs(30),
            ))
            .expect("the session is set");
        Some((client, name))
    }

    /// The generic plan (the store's `plan_cache_mode`) of `statement`, with
    /// `arguments` given in SQL, as PostgreSQL's JSON.
    fn generic_plan(
        client: &mut postgres::Client,
        statement: &str,
        arguments: &str,
    ) -> serde_json::Value {
        client
            .batch_execute(&format!(
                "DEALLOCATE ALL; \
                 PREPARE planned (text[], bytea[], bytea[], text[], bytea[]) AS {statement}"
            ))
            .expect("the statement is prepared");
        let rows = client
            .simple_query(&format!(
                "EXPLAIN (FORMAT JSON) EXECUTE planned ({arguments})"
            ))
            .expect("the plan is explained");
        let text = rows
            .iter()
            .find_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .expect("a plan");
        serde_json::from_str(&text).expect("the plan is JSON")
    }

    /// Every node of `plan` that reads `table` (not the node that writes it):
    /// (node type, whether it reads by an index condition).
    fn reads_of(plan: &serde_json::Value, table: &str, found: &mut Vec<(String, bool)>) {
        match plan {
            serde_json::Value::Array(items) => {
                for item in items {
                    reads_of(item, table, found);
                }
            }
            serde_json::Value::Object(node) => {
                let kind = node.get("Node Type").and_then(|v| v.as_str());
                if let Some(kind) = kind
                    && kind != "ModifyTable"
                    && node.get("Relation Name").and_then(|v| v.as_str()) == Some(table)
                {
                    let keyed =
                        node.contains_key("Index Cond") || node.contains_key("Recheck Cond");
                    found.push((kind.to_owned(), keyed));
                }
                for value in node.values() {
                    reads_of(value, table, found);
                }
            }
            _ => {}
        }
    }

    /// Every variant of every append statement reads `hints` and `claims`
    /// only by key (an index condition) in its generic plan, on tables never
    /// analyzed (as in a new schema until autovacuum comes) and on large ones:
    /// the settling append removes its delegation's hint and claim by their
    /// primary keys, not by a join that scans all of `hints` (a table every
    /// dispatcher writes on every delegation, so a scan of it costs more the
    /// more are in flight), as a join on `unnest` of the stale arrays was
    /// planned before. A variant that changes no hint reads neither table,
    /// but for a claim's check.
    #[test]
    fn every_append_statement_reads_hints_and_claims_only_by_key_in_its_generic_plan() {
        let Some((mut client, name)) = fresh_schema() else {
            return;
        };
        let hints = r"'{o}', '{\\x01}', '{NULL}', '{o,d}', '{\\x02,\\x03}'";
        let mut cases = Vec::new();
        for statement in NEXT.all() {
            cases.push((statement, format!(r"{hints}, '\x02', 1, 2, '\x00', '\x00'")));
        }
        for statement in FIRST.all() {
            cases.push((statement, format!(r"{hints}, '\x02', '\x00', '\x00'")));
        }
        for statement in FIRST_CLAIMED.all() {
            cases.push((
                statement,
                format!(r"{hints}, '\x02', '\x00', '\x00', '\x00'"),
            ));
        }
        let fills: [&[&str]; 2] = [
            // Fresh and empty, never analyzed: the case that planned a scan.
            &[],
            // Many rows, analyzed. (A table analyzed with a few rows on one
            // page is scanned, rightly: one page is less than an index's two.)
            &[
                "INSERT INTO hints (kind, delegation) \
                 SELECT 'o', int8send(g) FROM generate_series(1, 5000) AS g",
                "INSERT INTO claims (delegation, owner) \
                 SELECT int8send(g), '\\x00' FROM generate_series(1, 5000) AS g",
                "ANALYZE hints, claims",
            ],
        ];
        let mut plans = Vec::new();
        for fill in fills {
            for statement in fill {
                client
                    .batch_execute(statement)
                    .expect("the tables are filled");
            }
            for (statement, arguments) in &cases {
                let plan = generic_plan(&mut client, statement, arguments);
                plans.push((fill, statement, plan));
            }
        }
        client
            .batch_execute(&format!("DEALLOCATE ALL; DROP SCHEMA {name} CASCADE"))
            .expect("the schema is dropped");
        assert_eq!(plans.len(), 2 * 12, "every variant of every statement");
        for (fill, statement, plan) in plans {
            for table in ["hints", "claims"] {
                let mut reads = Vec::new();
                reads_of(&plan, table, &mut reads);
                assert!(
                    reads.iter().all(|(_, keyed)| *keyed),
                    "{table} read without a key after {fill:?}: {reads:?}\n{plan:#}"
                );
                // The removals read both tables; so does the claim's check.
                let reads_it = statement.contains("unhinted")
                    || (table == "claims" && statement.contains("claimed AS"));
                assert_eq!(
                    !reads.is_empty(),
                    reads_it,
                    "{table} after {fill:?}: {reads:?}\n{plan:#}"
                );
            }
        }
    }
}
