//! The [`Index`] on PostgreSQL: the table `hints (kind, delegation, retry)`,
//! primary key `(kind, delegation)`, with `kind` one of `o` (open), `d` (dead)
//! and `l` (a link, whose `retry` is the retry's id). Schema version 3 adds it;
//! connecting to a schema of version 2 fills it from the heads (see
//! [`fill`]), under the schema's advisory lock.
//!
//! The ledger's hints do not come through here: the store writes them with
//! the appends
//! ([`Store::hints_with_appends`](crate::store::Store::hints_with_appends)),
//! in each append's own statement (see `append.rs`), so a hint is in the table
//! exactly when its append is, and costs no round trip of its own. [`Index::hint`] and [`Index::unhint`] serve
//! the rest (the cleaning of stale dead hints, and any caller of the trait);
//! they commit with `SET LOCAL synchronous_commit = off`: a hint written before
//! an append needs no wait for the disk, because the append commits
//! synchronously afterwards and PostgreSQL's WAL is one sequence: flushing the
//! append's commit record flushes every WAL record before it, the hint's
//! included. A removal lost to a crash leaves a stale hint, which readers
//! verify away.

use postgres::Transaction;

use super::Postgres;
use super::fail::Failure;
use super::pool::Conn;
use crate::envelope;
use crate::error::{ReadError, Result};
use crate::event::DelegationId;
use crate::store::index::{Hint, Index, Set};
use crate::store::key;

const HINT: &str = "INSERT INTO hints (kind, delegation, retry) VALUES ($1, $2, $3) \
     ON CONFLICT (kind, delegation) DO UPDATE SET retry = EXCLUDED.retry";
const UNHINT: &str = "DELETE FROM hints WHERE kind = $1 AND delegation = $2";
const HINTED: &str = "SELECT delegation FROM hints WHERE kind = $1 ORDER BY delegation";
const LINK: &str = "SELECT retry FROM hints WHERE kind = 'l' AND delegation = $1";

/// Makes the transaction it runs in commit without waiting for the disk (see
/// the module docs for why a hint may).
const RELAXED: &str = "SET LOCAL synchronous_commit = off";

/// A hint as a row: kind, delegation, retry.
pub(super) fn row(hint: &Hint) -> (&'static str, Vec<u8>, Option<Vec<u8>>) {
    let bytes = |id: &DelegationId| id.as_str().as_bytes().to_vec();
    match hint {
        Hint::Open(id) => ("o", bytes(id), None),
        Hint::Dead(id) => ("d", bytes(id), None),
        Hint::Link { from, to } => ("l", bytes(from), Some(bytes(to))),
    }
}

fn kind(set: Set) -> &'static str {
    match set {
        Set::Open => "o",
        Set::Dead => "d",
    }
}

/// The id a stored key holds, or the damage of one that does not.
fn id(bytes: &[u8]) -> Result<DelegationId, ReadError> {
    crate::store::index::key::id(bytes)
        .map_err(|reason| ReadError::corrupt(format!("hint {}", key::hex(bytes)), reason))
}

impl Postgres {
    /// Writes (`remove` false) or removes the rows of `hints`, in one relaxed
    /// transaction.
    fn write_hints(&self, hints: &[Hint], remove: bool) -> Result<()> {
        if hints.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = hints.iter().map(row).collect();
        let doing = if remove {
            "removing hints"
        } else {
            "writing hints"
        };
        self.pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(if remove { UNHINT } else { HINT })?;
                let fail = conn.failer();
                let mut tx = conn.client.transaction().map_err(|e| fail(e, doing))?;
                tx.batch_execute(RELAXED).map_err(|e| fail(e, doing))?;
                for (kind, delegation, retry) in &rows {
                    if remove {
                        tx.execute(&statement, &[kind, delegation])
                    } else {
                        tx.execute(&statement, &[kind, delegation, retry])
                    }
                    .map_err(|e| fail(e, doing))?;
                }
                tx.commit().map_err(|e| fail(e, doing))
            })
            .map_err(Into::into)
    }
}

impl Index for Postgres {
    fn hint(&self, hints: &[Hint]) -> Result<()> {
        self.write_hints(hints, false)
    }

    fn unhint(&self, hints: &[Hint]) -> Result<()> {
        self.write_hints(hints, true)
    }

    /// One query: the sets it lists are the few open or dead delegations, not
    /// the log.
    fn hinted(
        &self,
        set: Set,
    ) -> Box<dyn Iterator<Item = Result<DelegationId, ReadError>> + Send + '_> {
        let kind = kind(set);
        let found = self
            .pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(HINTED)?;
                let fail = conn.failer();
                let rows = conn
                    .client
                    .query(&statement, &[&kind])
                    .map_err(|e| fail(e, "listing hints"))?;
                rows.iter()
                    .map(|row| {
                        row.try_get::<_, Vec<u8>>(0)
                            .map_err(|e| fail(e, "listing hints"))
                    })
                    .collect::<std::result::Result<Vec<_>, Failure>>()
            })
            .map_err(Into::into);
        match found {
            Ok(keys) => Box::new(keys.into_iter().map(|key| id(&key))),
            Err(error) => Box::new(std::iter::once(Err(error))),
        }
    }

    fn link(&self, from: &DelegationId) -> Result<Option<DelegationId>, ReadError> {
        let key = from.as_str().as_bytes().to_vec();
        let found = self
            .pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(LINK)?;
                let fail = conn.failer();
                let row = conn
                    .client
                    .query_opt(&statement, &[&key])
                    .map_err(|e| fail(e, "reading a link"))?;
                row.map(|row| row.try_get::<_, Option<Vec<u8>>>(0))
                    .transpose()
                    .map_err(|e| fail(e, "reading a link"))
            })
            .map_err(Failure::into_error)?;
        found.flatten().map(|to| id(&to)).transpose()
    }
}

/// Fills the table `hints` of a schema written without one (version 2) from
/// its heads, in the migrating transaction: each head's summary is decoded
/// (`envelope::head`) and given the hints of the delegation as it stands; a
/// dead hint of an attempt that another retries is then dropped. A head that
/// does not decode is hinted open and dead both, so that the readers, which
/// verify every hint against its head, report its damage rather than leave it
/// out. Returns how many heads were read.
pub(super) fn fill(
    tx: &mut Transaction<'_>,
    schema: &str,
) -> std::result::Result<u64, postgres::Error> {
    let heads = tx.query(
        &format!("SELECT delegation, summary FROM {schema}.heads"),
        &[],
    )?;
    let insert = tx.prepare(&format!(
        "INSERT INTO {schema}.hints (kind, delegation, retry) VALUES ($1, $2, $3) \
         ON CONFLICT (kind, delegation) DO UPDATE SET retry = EXCLUDED.retry"
    ))?;
    let mut count = 0u64;
    for head in &heads {
        let delegation: Vec<u8> = head.try_get(0)?;
        let summary: Vec<u8> = head.try_get(1)?;
        let hints = match envelope::head::decode(&summary) {
            Ok(standing) => Hint::standing(&standing),
            Err(_) => match id(&delegation) {
                Ok(id) => vec![Hint::Open(id.clone()), Hint::Dead(id)],
                Err(_) => Vec::new(),
            },
        };
        for hint in &hints {
            let (kind, delegation, retry) = row(hint);
            tx.execute(&insert, &[&kind, &delegation, &retry])?;
        }
        count += 1;
    }
    tx.batch_execute(&format!(
        "DELETE FROM {schema}.hints AS dead USING {schema}.hints AS link \
         WHERE dead.kind = 'd' AND link.kind = 'l' AND link.delegation = dead.delegation"
    ))?;
    Ok(count)
}
