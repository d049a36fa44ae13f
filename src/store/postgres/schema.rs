//! The tables the PostgreSQL store keeps, created or migrated by the crate under
//! an advisory lock, with the schema's version in a one-row table.
//!
//! - `records (delegation bytea, seq bigint, bytes bytea)`, primary key
//!   `(delegation, seq)`: the encoded records, exactly the bytes sled keeps.
//! - `heads (delegation bytea primary key, seq bigint, summary bytea)`: each
//!   delegation's head, raised in the same transaction as its record.
//! - `meta (version integer)`: one row, [`VERSION`].
//! - `dispatchers (id bytea primary key, host, pid, started_at, lease_until)`:
//!   one row per dispatcher lease (version 2), its times the server's.
//! - `claims (delegation bytea primary key, owner bytea, claimed_at, takeovers)`:
//!   which dispatcher owns each `queued` delegation, and how many times it was
//!   taken over (version 2). Neither table is part of the log: `audit` and the
//!   export never read them.
//! - `hints (kind, delegation, retry)`: the index of open, dead and retried
//!   delegations (version 3, see `index.rs`); not part of the log either.
//! - `refuse_taken_slot()`: raises SQLSTATE `DL001`. The append statements of
//!   earlier builds called it when a head moved over a record slot already
//!   taken (those of this one meet the record's primary key instead, see
//!   `append.rs`); it stays, so that such a build sharing the schema still
//!   runs.
//!
//! Ids are `bytea`, not `text`: a delegation id is any UTF-8 of 1 to 256 bytes,
//! NUL included, which `text` refuses. Both tables have an index on
//! `(octet_length(delegation), delegation)`, the order of sled's length-prefixed
//! keys, which the scan pages through.
//!
//! Version 1 had no `dispatchers` and `claims`; connecting to it adds them and
//! raises the version row to 2, so that a crate of version 1, which would
//! recover other processes' live deliveries, refuses the schema from then on.

/// The schema version this crate writes.
pub(super) const VERSION: i32 = 3;

/// The first version with the table `hints`: connecting to an older schema fills
/// it from the heads (`index::fill`).
pub(super) const HINTS_SINCE: i32 = 3;

/// The default schema's name.
pub(super) const DEFAULT: &str = "delegation_log";

/// Whether `name` is a schema name the store accepts: 1 to 63 lowercase ASCII
/// letters, digits and `_`, not starting with a digit. Anything it accepts needs
/// no quoting, so the name can be written into SQL as it is.
pub(super) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && name.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// The session settings of every connection: the schema, commits that wait
/// for their WAL to reach the server's disk whatever the server's default, the
/// statement timeout (in whole milliseconds, rounded up; 0 is none), and
/// generic plans for the prepared statements: each of them looks rows up by
/// key, so no parameter value calls for a plan of its own, and planning the
/// append's statement of six parts anew on every run cost the server about a
/// sixth of its CPU per delegation (`BENCHMARKS.md`, run P5).
pub(super) fn session(schema: &str, timeout: std::time::Duration) -> String {
    let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
    format!(
        "SET search_path = {schema}; SET synchronous_commit = on; \
         SET statement_timeout = {millis}; SET plan_cache_mode = force_generic_plan;"
    )
}

/// The statements that create version [`VERSION`], each idempotent, run in one
/// transaction under `pg_advisory_xact_lock`, so that processes starting together
/// do not race to create the same tables.
pub(super) fn create(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.meta (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             version integer NOT NULL);
         CREATE TABLE IF NOT EXISTS {schema}.records (
             delegation bytea NOT NULL CHECK (octet_length(delegation) BETWEEN 1 AND 256),
             seq bigint NOT NULL CHECK (seq >= 1),
             bytes bytea NOT NULL,
             PRIMARY KEY (delegation, seq));
         CREATE INDEX IF NOT EXISTS records_in_key_order
             ON {schema}.records ((octet_length(delegation)), delegation, seq);
         CREATE TABLE IF NOT EXISTS {schema}.heads (
             delegation bytea PRIMARY KEY CHECK (octet_length(delegation) BETWEEN 1 AND 256),
             seq bigint NOT NULL CHECK (seq >= 1),
             summary bytea NOT NULL);
         CREATE INDEX IF NOT EXISTS heads_in_key_order
             ON {schema}.heads ((octet_length(delegation)), delegation);
         CREATE OR REPLACE FUNCTION {schema}.refuse_taken_slot() RETURNS bigint
             LANGUAGE plpgsql VOLATILE AS $$
             BEGIN
                 RAISE EXCEPTION 'a record is stored beyond the head' USING ERRCODE = 'DL001';
             END $$;
         CREATE TABLE IF NOT EXISTS {schema}.dispatchers (
             id bytea PRIMARY KEY CHECK (octet_length(id) = 16),
             host text NOT NULL,
             pid integer NOT NULL,
             started_at timestamptz NOT NULL DEFAULT now(),
             lease_until timestamptz NOT NULL);
         CREATE TABLE IF NOT EXISTS {schema}.claims (
             delegation bytea PRIMARY KEY CHECK (octet_length(delegation) BETWEEN 1 AND 256),
             owner bytea NOT NULL,
             claimed_at timestamptz NOT NULL DEFAULT now(),
             takeovers integer NOT NULL DEFAULT 0);
         CREATE INDEX IF NOT EXISTS claims_by_owner ON {schema}.claims (owner);
         CREATE TABLE IF NOT EXISTS {schema}.hints (
             kind text NOT NULL CHECK (kind IN ('o', 'd', 'l')),
             delegation bytea NOT NULL CHECK (octet_length(delegation) BETWEEN 1 AND 256),
             retry bytea,
             PRIMARY KEY (kind, delegation));
         INSERT INTO {schema}.meta (version) VALUES ({VERSION}) ON CONFLICT (one) DO NOTHING;
         UPDATE {schema}.meta SET version = {VERSION} WHERE version < {VERSION};"
    )
}

/// A key for `pg_advisory_xact_lock` that is the same for every process using
/// `schema`: a fixed tag in the high half, a hash of the name in the low half.
pub(super) fn lock_key(schema: &str) -> i64 {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let hash = schema.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (0x6465_6c65_i64 << 32) | i64::from(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_lowercase_names_are_accepted() {
        for good in ["a", "delegation_log", "_x9", &"x".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "A", "9a", "a-b", "a b", "a\"b", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
