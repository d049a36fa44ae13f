//! Leases and claims on PostgreSQL: each an autocommitted statement, every time
//! the server's `now()`, takeovers with `FOR UPDATE SKIP LOCKED`. A lease is
//! taken, renewed and ended on a connection of its own (the store's `leases`),
//! never queued behind the appends and claims on the others.
//!
//! A lease is a row of `dispatchers` whose `lease_until` is ahead of `now()`; a
//! claim is a row of `claims` naming its owner. A claim is *dead* when its owner
//! has no live lease (it ran out, or the row is gone after a clean shutdown).
//! Every statement here is safe to run again after a connection lost mid-way:
//! renewing, claiming, releasing and taking over for the same owner twice leave
//! the same rows as once.
//!
//! **Claims commit without waiting for their WAL to reach disk**, in one round
//! trip: the statement itself calls `set_config('synchronous_commit', 'off',
//! true)`, which sets it for the statement's own implicit transaction, whose
//! commit then does not wait (`BEGIN`, `SET LOCAL`, the statement and `COMMIT`
//! took four round trips; pgbench on the CI server: 300 such single-statement
//! inserts made 3 WAL syncs, 300 plain ones 300). A claim is visible to every session
//! the moment it commits, and the `queued` written after it commits
//! synchronously, which flushes the WAL up to and past the claim, so a `queued`
//! that survives a server crash always has its claim. (A new delegation's
//! claim is not taken here but in the statement of its `queued`, durably:
//! `append.rs`, `FIRST_CLAIMED`. This path claims redeliveries and retries.) A claim ends with the
//! append that settles its delegation (`append.rs`), atomically; a release of
//! a claim whose `queued` was refused, lost in a crash, leaves a claim on a
//! delegation that is not `queued`, which nothing takes over. That spares
//! each delivery a disk flush (`benches/postgres.rs`, `lease` group).
//! Leases and takeovers commit durably: a renewal lost in a crash would let a
//! lease end earlier than its dispatcher counts on.

use std::time::Duration;

use super::Postgres;
use super::fail::Failure;
use super::pool::{Conn, Pool};
use crate::error::Result;
use crate::event::DelegationId;
use crate::store::{Claimed, Owner, Ownership};

/// `$1` owner, `$2` host, `$3` pid, `$4` lease in milliseconds. Takes the
/// lease, and in the same statement sweeps what dispatchers gone for good left
/// behind, so that nothing accumulates forever.
///
/// A dispatcher is gone for good an hour after its lease ran out (or at once
/// if its row is gone: it retired). The sweep deletes its claims on *settled*
/// delegations (a crash between claiming an id whose `queued` was refused and
/// releasing it, or a release an older crate lost) and on delegations never
/// queued (a crash between the claim and `queued`), and its `dispatchers` row
/// once it claims nothing else.
/// "Settled" is judged from the head's seq, the only thing of the log read
/// here: the lifecycle has one pending state, `queued`, always seq 1, and any
/// later record settles. A claim on a `queued` delegation is never swept,
/// however old: recovery takes it over and counts the takeover. (Should the
/// dead writer's `queued` land after its claim was swept, it is a `queued`
/// nobody claims, which recovery takes over at once.) A sweep that
/// fails fails the lease with it (one statement), so none is taken.
const REGISTER: &str = "
    WITH swept AS (
        DELETE FROM claims c
        WHERE NOT EXISTS (
                SELECT 1 FROM dispatchers d
                WHERE d.id = c.owner AND d.lease_until > now() - interval '1 hour')
          AND NOT EXISTS (SELECT 1 FROM heads h WHERE h.delegation = c.delegation AND h.seq = 1)
        RETURNING c.delegation),
    gone AS (
        DELETE FROM dispatchers d
        WHERE d.lease_until < now() - interval '1 hour'
          AND NOT EXISTS (
              SELECT 1 FROM claims c
              WHERE c.owner = d.id
                AND NOT EXISTS (SELECT 1 FROM swept s WHERE s.delegation = c.delegation))
        RETURNING 1)
    INSERT INTO dispatchers (id, host, pid, started_at, lease_until)
    VALUES ($1::bytea, $2::text, $3::integer, now(),
            now() + $4::bigint * interval '1 millisecond')
    ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until";

/// `$1` owner, `$2` lease in milliseconds: renews a lease that has not run out.
const RENEW: &str = "
    UPDATE dispatchers SET lease_until = now() + $2::bigint * interval '1 millisecond'
    WHERE id = $1::bytea AND lease_until > now()";

/// `$1` owner.
const RETIRE: &str = "DELETE FROM dispatchers WHERE id = $1::bytea";

/// `$1` owner, `$2` delegation. Answers (owner's lease live, claims written): a
/// free delegation is claimed, one already the owner's stays so, and one whose
/// owner's lease ran out passes to this owner (its `queued`, if written, makes
/// the caller's own `queued` fail, and the caller then releases it).
/// Like [`RELEASE`], it commits without waiting for the disk (module docs).
const CLAIM: &str = "
    WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
    me AS (SELECT 1 FROM dispatchers WHERE id = $1::bytea AND lease_until > now()),
    put AS (
        INSERT INTO claims (delegation, owner, claimed_at)
        SELECT $2::bytea, $1::bytea, now() FROM me
        ON CONFLICT (delegation) DO UPDATE SET owner = EXCLUDED.owner, claimed_at = now()
        WHERE claims.owner = EXCLUDED.owner OR NOT EXISTS (
            SELECT 1 FROM dispatchers d WHERE d.id = claims.owner AND d.lease_until > now())
        RETURNING 1)
    SELECT (SELECT count(*) FROM me), (SELECT count(*) FROM put) FROM relaxed";

/// `$1` owner, `$2` delegation: only the owner's own claim goes, committed
/// without waiting for the disk (module docs).
const RELEASE: &str = "
    WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
    DELETE FROM claims USING relaxed WHERE delegation = $2::bytea AND owner = $1::bytea";

/// `$1` owner, `$2` candidate delegations. Moves to `$1` every candidate's claim
/// whose owner has no live lease (or is `$1`), skipping rows another taker has
/// locked, and claims every candidate nobody claims; counts each takeover from
/// another owner. Nothing at all unless `$1`'s own lease is live.
const TAKE_OVER: &str = "
    WITH me AS (SELECT 1 FROM dispatchers WHERE id = $1::bytea AND lease_until > now()),
    dead AS (
        SELECT c.delegation FROM claims c
        WHERE EXISTS (SELECT 1 FROM me)
          AND c.delegation = ANY($2::bytea[])
          AND (c.owner = $1::bytea OR NOT EXISTS (
              SELECT 1 FROM dispatchers d WHERE d.id = c.owner AND d.lease_until > now()))
        FOR UPDATE OF c SKIP LOCKED),
    moved AS (
        UPDATE claims c SET owner = $1::bytea, claimed_at = now(),
            takeovers = c.takeovers + CASE WHEN c.owner = $1::bytea THEN 0 ELSE 1 END
        FROM dead WHERE c.delegation = dead.delegation
        RETURNING c.delegation),
    fresh AS (
        INSERT INTO claims (delegation, owner, claimed_at, takeovers)
        SELECT u.delegation, $1::bytea, now(), 1 FROM unnest($2::bytea[]) AS u(delegation)
        WHERE EXISTS (SELECT 1 FROM me)
          AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.delegation = u.delegation)
        ON CONFLICT (delegation) DO NOTHING
        RETURNING delegation)
    SELECT delegation FROM moved UNION ALL SELECT delegation FROM fresh";

/// A lease as milliseconds for the statements: at least 1, at most `i64::MAX`.
fn millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// This host's name, as the `dispatchers` row shows it; `?` if unknown.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "?".to_owned())
}

fn key(id: &DelegationId) -> Vec<u8> {
    id.as_str().as_bytes().to_vec()
}

/// Runs one statement of `sql` with `params` built on a connection of `pool`
/// (the store's, or the lease's own), and answers how many rows it
/// touched: one round trip.
fn touch(
    pool: &Pool,
    sql: &'static str,
    doing: &'static str,
    params: impl Fn() -> Vec<Box<dyn postgres::types::ToSql + Sync + Send>> + Send + 'static,
) -> Result<u64> {
    pool.run(move |conn: &mut Conn| {
        let statement = conn.statement(sql)?;
        let fail = conn.failer();
        let owned = params();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = owned
            .iter()
            .map(|p| p.as_ref() as &(dyn postgres::types::ToSql + Sync))
            .collect();
        conn.client
            .execute(&statement, &refs)
            .map_err(|e| fail(e, doing))
    })
    .map_err(Into::into)
}

impl Ownership for Postgres {
    fn register(&self, owner: Owner, lease: Duration) -> Result<()> {
        let (host, pid, ms) = (host(), std::process::id(), millis(lease));
        let pid = i32::try_from(pid).unwrap_or(i32::MAX);
        touch(
            &self.leases,
            REGISTER,
            "taking a dispatcher lease",
            move || {
                vec![
                    Box::new(owner.as_bytes().to_vec()),
                    Box::new(host.clone()),
                    Box::new(pid),
                    Box::new(ms),
                ]
            },
        )
        .map(drop)
    }

    fn renew(&self, owner: Owner, lease: Duration) -> Result<bool> {
        let ms = millis(lease);
        touch(
            &self.leases,
            RENEW,
            "renewing a dispatcher lease",
            move || vec![Box::new(owner.as_bytes().to_vec()), Box::new(ms)],
        )
        .map(|rows| rows > 0)
    }

    fn retire(&self, owner: Owner) -> Result<()> {
        touch(
            &self.leases,
            RETIRE,
            "ending a dispatcher lease",
            move || vec![Box::new(owner.as_bytes().to_vec())],
        )
        .map(drop)
    }

    fn claim(&self, owner: Owner, id: &DelegationId) -> Result<Claimed> {
        let key = key(id);
        self.pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(CLAIM)?;
                let fail = conn.failer();
                let doing = "claiming a delegation";
                let row = conn
                    .client
                    .query_one(&statement, &[&owner.as_bytes().as_slice(), &key])
                    .map_err(|e| fail(e, doing))?;
                let live: i64 = row
                    .try_get(0)
                    .map_err(|e| fail(e, "claiming a delegation"))?;
                let put: i64 = row
                    .try_get(1)
                    .map_err(|e| fail(e, "claiming a delegation"))?;
                Ok(match (live, put) {
                    (0, _) => Claimed::LeaseExpired,
                    (_, 0) => Claimed::Taken,
                    _ => Claimed::Yes,
                })
            })
            .map_err(Into::into)
    }

    fn release(&self, owner: Owner, id: &DelegationId) -> Result<()> {
        let key = key(id);
        touch(&self.pool, RELEASE, "releasing a claim", move || {
            vec![Box::new(owner.as_bytes().to_vec()), Box::new(key.clone())]
        })
        .map(drop)
    }

    /// Yes: the append statement that settles a delegation deletes its claim
    /// (see `append.rs`).
    fn settlement_releases(&self) -> bool {
        true
    }

    fn take_over(&self, owner: Owner, candidates: &[DelegationId]) -> Result<Vec<DelegationId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = candidates.iter().map(key).collect();
        let taken: Vec<Vec<u8>> = self
            .pool
            .run(move |conn: &mut Conn| {
                let statement = conn.statement(TAKE_OVER)?;
                let fail = conn.failer();
                let rows = conn
                    .client
                    .query(&statement, &[&owner.as_bytes().as_slice(), &keys])
                    .map_err(|e| fail(e, "taking over delegations"))?;
                rows.iter()
                    .map(|row| {
                        row.try_get(0)
                            .map_err(|e| fail(e, "taking over delegations"))
                    })
                    .collect()
            })
            .map_err(Failure::into_error)?;
        // Answered in the candidates' order, each once.
        Ok(candidates
            .iter()
            .filter(|id| {
                taken
                    .iter()
                    .any(|key| key.as_slice() == id.as_str().as_bytes())
            })
            .cloned()
            .collect())
    }
}
