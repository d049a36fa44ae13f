//! The PostgreSQL store (feature `postgres`): the same records and heads as sled,
//! in two tables of a shared server, so that several processes can share a ledger.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use delegation_log::{Event, Ledger};
//!
//! let ledger = Ledger::open_url("postgres://app@db.internal/agents")?;
//! let id = "review-42".parse()?;
//! ledger.record(&id, Event::queued("planner", "http://127.0.0.1:8080/a2a"))?;
//! # Ok(())
//! # }
//! ```
//!
//! # The client, and why
//! The ledger is synchronous and is called from plain threads and from tokio
//! tasks alike. The store uses the blocking [`postgres`] client (see
//! `pool.rs`). That client runs a tokio runtime of its own and panics when
//! called from a thread already inside one, so a caller on such a thread (an
//! async task) never touches it: it hands the call to one of the store's worker
//! threads over a channel and waits for the answer, which works inside a
//! runtime and outside one. A caller where the client is safe (a plain thread,
//! or the blocking threads on which the crate's dispatcher and MCP server run
//! ledger calls) runs the call itself on a free connection, sparing the two
//! hand-offs between threads (`BENCHMARKS.md`, run P9), and queues for a worker
//! only when every connection is busy or other jobs are already queued. The
//! store keeps [`Connect::connections`] connections ([`DEFAULT_CONNECTIONS`]
//! by default), each with its worker thread, opened on first use and opened
//! again when the server went away; a dispatcher's lease has a worker and a
//! connection of its own (`lease.rs`).
//!
//! # The contract, on PostgreSQL
//! - [`Store::append`] is one transaction: per append, a conditional move of the
//!   head and the insert of the record, in one statement (see `append.rs`),
//!   which also writes and removes the index's hints of the append
//!   ([`Store::append_hinted`]). The store is [`Store::remote`], so a ledger
//!   writes a delegation's events without reading its head first: a lifecycle
//!   written by one dispatcher is one statement per event. Of
//!   several writers with the same expectation exactly one commits; the others
//!   get [`AppendError::Conflict`] naming the head they lost to, as on sled. A
//!   taken record slot is [`AppendError::Damaged`]. A deadlock between groups
//!   rolls back and runs again, a few times. A writer that loses the race to
//!   start a delegation, or meets a taken slot, meets a primary key: the
//!   head and the record are plain inserts, which cost the server less than
//!   `ON CONFLICT` when nothing conflicts. When something does, the server
//!   logs that statement as an `ERROR` (a unique violation on `heads` or
//!   `records`), the answer the writer gets and not a fault, and the aborted
//!   insert leaves a dead row for vacuum: a few bytes for each delegation
//!   started twice under one id, which only racing writers or a repeated id
//!   do.
//! - [`Store::head`] is one query; [`Store::history`] one statement (one
//!   snapshot, so records and head are in step); [`Store::scan`] pages through the
//!   delegations in sled's key order (length, then bytes), one statement and at
//!   most 256 delegations per page, never the whole table.
//! - **Durability.** Every connection sets `synchronous_commit = on`, so a commit
//!   returns only once its WAL is flushed to the server's disk: an append that
//!   returned is durable (as durable as the server's own `fsync` setting makes
//!   it). [`Store::flush`] therefore has nothing left to do and returns at once;
//!   every [`Durability`](crate::Durability) is durable here.
//! - **Failures.** Every server or connection failure is a store failure
//!   ([`StorageError`](crate::StorageError): `Error::Storage` from a write,
//!   `ReadError::Storage` from a read) naming the server (never its password) and what the store was doing. While
//!   the server is down, calls fail that way; once it is back, they work again.
//!   A connection that sat idle for a quarter of a second is checked (an empty query)
//!   before its next call, so one the server dropped meanwhile (it restarted,
//!   crashed or was stopped) is replaced first; a call that failed on a
//!   connection the server closed while saying so runs again once on a new
//!   one, which is safe because nothing had committed, or the statement is one
//!   that may run twice (the leases' and claims'). A write that never
//!   reached the server is an error that does not poison a ledger
//!   ([`AppendError::Unsent`]); so is a write the server answered with an
//!   error, which rolled it back ([`AppendError::Undone`]).
//! - **Unknown outcomes are settled.** A connection lost while an append was
//!   in flight, or during a `COMMIT`, with no word from the server, leaves
//!   the append's outcome unknown for a moment: it may have committed. The
//!   append is never run again. On a new connection the store ends the failed
//!   connection's server process (`pg_terminate_backend`, named by its pid
//!   and start time, asked at connect) and waits until it is gone, after which
//!   nothing of it can still commit; then it reads back the record of the
//!   group's last append (a group is one transaction). If it is there, with
//!   the bytes written, the append is acknowledged; if not, it is
//!   [`AppendError::Undone`], and the ledger goes on. So is an answer of
//!   severity FATAL or PANIC, which may come after a commit; only an ERROR
//!   means the write rolled back. The new connection must reach the same
//!   server (address, port) and not a standby; a server that restarted since
//!   has no process of before left to end. Only if that cannot be found out
//!   (the server is still out of reach after five seconds of tries, each of
//!   which may wait out the connect timeout; another server or a standby answers, the
//!   process does not end within five seconds, or the role may not read
//!   `pg_stat_activity` or end its own sessions) is the outcome reported as unknown
//!   ([`AppendError::Store`]), and the ledger poisons itself as for any
//!   failed write; open a new ledger over the store to go on. The store
//!   needs a session of its own on the server: behind a pooler in
//!   transaction mode (PgBouncer's `pool_mode = transaction`) neither its
//!   session settings nor this settling hold.
//! - **Statement timeout.** Every connection sets `statement_timeout`
//!   ([`STATEMENT_TIMEOUT`], 30 s, by default; [`Connect::statement_timeout`]),
//!   so a hung server or a lock another session holds ends a call with a typed
//!   error (SQLSTATE `57014`) instead of holding it forever. The cancelled
//!   statement wrote nothing ([`AppendError::Undone`]), and the ledger goes
//!   on.
//!
//! # Several dispatchers, one ledger: leases and claims
//! On sled the file lock means one process, so a `queued` delegation found by
//! recovery was certainly orphaned. Here it may belong to a live dispatcher on
//! another host, so the store offers [`Ownership`](crate::store::Ownership)
//! (see `lease.rs`), and the ledger and dispatcher use it:
//!
//! - every dispatcher holds a **lease** (a `dispatchers` row whose `lease_until`
//!   is the server's `now()` plus the lease), renewed by a heartbeat every third
//!   of the lease;
//! - it **claims** each delegation (a `claims` row) with or before its
//!   `queued`, so a `queued` delegation always has an owner: a new delegation's
//!   claim goes in the statement of its `queued`
//!   ([`Store::append_claimed`]), which
//!   writes both or neither, and a redelivery's or a retry's is committed
//!   before its `queued` ([`Ownership::claim`](crate::store::Ownership::claim));
//!   the write that settles the
//!   delegation ends the claim in the same statement, whoever holds it
//!   ([`Ownership::settlement_releases`](crate::store::Ownership::settlement_releases)),
//!   and a claim whose `queued` was refused is released on its own;
//! - **recovery takes over only the dead**: delegations whose owner's lease ran
//!   out, or that nobody claims (written with [`Ledger::record`](crate::Ledger::record) directly), in
//!   one statement that moves the claims with `FOR UPDATE SKIP LOCKED`, so that
//!   of racing recoveries exactly one takes each; it then settles or redelivers
//!   them through the same conditional append as every write, so an old owner
//!   that settles first wins and the taker's outcome is refused;
//! - a dispatcher whose lease ran out (its heartbeat found the row expired)
//!   **starts no delivery** under it: what it had not yet sent ends as `failed /
//!   interrupted` (unless the taker settled it first), and it takes a new lease
//!   for what comes next.
//!
//! **No grace period for unclaimed delegations.** The claim is committed with or
//! before `queued` and deleted only with or after the outcome, so a `queued`
//! delegation without a claim belongs to no dispatcher of this version: it was
//! recorded with [`Ledger::record`](crate::Ledger::record) directly, or its claim was stolen from an
//! expired owner. It is taken over at once. A grace period would guard only
//! writers that do not claim (a crate of schema version 1, which the version
//! row now refuses), and measuring one would need a server time the records do
//! not carry (their timestamps are the writer's clock).
//!
//! All lease times are the server's; a dispatcher's own view of its lease is a
//! monotonic deadline counted from *before* each renewal was sent, so it always
//! ends no later than the server's. See the README ("Several dispatchers, one
//! ledger") for choosing the lease: shorter recovers sooner after a crash,
//! longer tolerates longer pauses and outages before a live dispatcher is taken
//! over.

//! # Schema
//! The tables live in a schema of their own (`delegation_log` by default, see
//! [`Connect::schema`]), created or migrated by [`Postgres::connect`] (see
//! `schema.rs`). Several ledgers can share a database under different schemas.

mod append;
mod fail;
mod index;
mod lease;
mod pool;
mod read;
mod schema;
mod url;

use std::sync::Arc;
use std::time::Duration;

use self::fail::Failure;
pub use self::fail::PostgresError;
use self::pool::{Conn, Pool};
pub use self::url::redact;
use super::{Append, AppendError, Head, Hint, Owner, Store, Stream};
use crate::error::{ReadError, Result};
use crate::event::DelegationId;

/// How long one statement may run before the server cancels it, unless
/// [`Connect::statement_timeout`] says otherwise: 30 seconds.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections a store keeps unless told otherwise
/// ([`Connect::connections`], or `connections=N` in the URL): 2.
///
/// Two, not more, because each dispatcher's connections are backends on the
/// server, and on a server that shares its cores with the dispatchers, as on one
/// host, every backend more costs CPU. Four dispatcher processes with 2
/// connections each cost the server a tenth to a quarter less CPU per
/// delegation than with 4 each, and ran nearer raw inserts in every pair of
/// runs (`BENCHMARKS.md`, run P8); since callers run their own statements,
/// one and two per process measure alike (run P9). A dispatcher's writers
/// that arrive while both are busy wait for one, so the count bounds the
/// appends in flight, not the deliveries. A dispatcher's lease has a
/// connection of its own besides, so that its renewals never wait behind the
/// appends. Across a network, where
/// each statement waits a round trip, more connections keep more appends in
/// flight: raise it there.
pub const DEFAULT_CONNECTIONS: usize = 2;

/// The most connections a store may keep ([`Connect::connections`], or
/// `connections=N` in the URL): 64. More than a server's default
/// `max_connections` (100) would leave room for nobody else;
/// [`Postgres::connect_with`] refuses more.
pub const MAX_CONNECTIONS: usize = 64;

/// How to connect: the schema, the number of connections, and the statement
/// timeout.
#[derive(Clone, Debug)]
pub struct Connect {
    schema: String,
    connections: usize,
    statement_timeout: Duration,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            schema: schema::DEFAULT.to_owned(),
            connections: DEFAULT_CONNECTIONS,
            statement_timeout: STATEMENT_TIMEOUT,
        }
    }
}

impl Connect {
    /// Schema `delegation_log`, [`DEFAULT_CONNECTIONS`] connections, statements cancelled after
    /// [`STATEMENT_TIMEOUT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the server lets one statement of the store run (PostgreSQL's
    /// `statement_timeout`, set on every connection; waiting for a lock counts)
    /// before it cancels it, so that a hung server or a lock another session
    /// holds never holds a writer forever. A cancelled statement is an
    /// [`Error::Storage`](crate::Error::Storage) whose client error has SQLSTATE
    /// `57014`; it wrote nothing, and the ledger goes on (the store answers
    /// it as [`AppendError::Undone`]). [`STATEMENT_TIMEOUT`] by default; rounded up to whole
    /// milliseconds; [`Duration::ZERO`] turns the timeout off, which PostgreSQL
    /// allows and this crate advises against.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// The schema holding the tables: 1 to 63 lowercase ASCII letters, digits and
    /// `_`, not starting with a digit; [`Postgres::connect_with`] refuses others.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many connections (and worker threads) the store keeps for its reads
    /// and writes; at least 1, and at most [`MAX_CONNECTIONS`]
    /// ([`Postgres::connect_with`] refuses more). [`DEFAULT_CONNECTIONS`]
    /// unless set; a URL's `connections=N` wins over it. A dispatcher's lease
    /// takes one more connection of its own, opened when the lease is first
    /// taken.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }
}

/// A store on a PostgreSQL server. Cheap to share behind an `Arc`; every call is
/// safe from any thread, inside a tokio runtime or not.
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
    /// One connection of its own for a dispatcher's lease (taking, renewing
    /// and ending it), opened on first use: a renewal never waits behind
    /// appends that wait for a lock, however many, so a live dispatcher does
    /// not lose its lease to its own slow statements.
    leases: Pool,
    schema: String,
}

impl Postgres {
    /// Connects to the server at `url` (`postgres://user:password@host:port/db`,
    /// or a `key=value` connection string) with the defaults of [`Connect`], and
    /// creates or migrates the schema. A URL may name the schema in its query,
    /// `postgres://host/db?schema=NAME`, which then wins over [`Connect::schema`],
    /// and the number of connections, `connections=N` (1 to 64), which wins
    /// over [`Connect::connections`].
    ///
    /// # Errors
    /// As for [`Postgres::connect_with`].
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, Connect::default())
    }

    /// Connects to the server at `url` with `connect`, and creates or migrates
    /// its schema.
    ///
    /// # Errors
    /// [`Error::Storage`](crate::Error::Storage) if the URL does not parse, the
    /// schema name, the `connections=N` of the URL or more than
    /// [`MAX_CONNECTIONS`] in `connect` is refused,
    /// the server cannot be reached, or the schema is of a newer version than
    /// this crate writes.
    pub fn connect_with(url: &str, connect: Connect) -> Result<Self> {
        let (url, own) = url::split(url);
        let mut connect = match own.schema {
            Some(name) => connect.schema(name),
            None => connect,
        };
        if let Some(value) = own.connections {
            connect.connections = url::connections(&value).map_err(fail::storage)?;
        } else if connect.connections > MAX_CONNECTIONS {
            return Err(fail::storage(format!(
                "PostgreSQL store of {} connections refused: at most {MAX_CONNECTIONS}",
                connect.connections
            ))
            .into());
        }
        if !schema::valid_name(&connect.schema) {
            return Err(fail::storage(format!(
                "PostgreSQL schema name `{}` refused: use 1 to 63 lowercase ASCII \
                 letters, digits and `_`, not starting with a digit",
                connect.schema
            ))
            .into());
        }
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            fail::storage(format!(
                "PostgreSQL URL does not parse: {}",
                fail::describe(&e)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config.keepalives(true);
        // A host that vanishes (no FIN, no RST) holds unacknowledged bytes
        // for the kernel's retransmission limit, about 15 minutes, unless
        // this bounds it; a busy server still acknowledges at once.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(std::time::Duration::from_secs(30));
        }
        let target = describe_target(&config);
        let session = schema::session(&connect.schema, connect.statement_timeout);
        let pool = Pool::start(
            "pg",
            config.clone(),
            session.clone(),
            target.clone(),
            connect.connections,
        )?;
        let leases = Pool::start("pg-lease", config, session, target, 1)?;
        let store = Postgres {
            pool,
            leases,
            schema: connect.schema,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Creates the schema if it is missing, and checks its version.
    fn migrate(&self) -> Result<()> {
        let name = self.schema.clone();
        let found = self
            .pool
            .run(move |conn: &mut Conn| {
                let fail = conn.failer();
                let mut tx = conn
                    .client
                    .transaction()
                    .map_err(|e| fail(e, "creating the schema"))?;
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1)",
                    &[&schema::lock_key(&name)],
                )
                .map_err(|e| fail(e, "locking the schema"))?;
                let before = existing_version(&mut tx, &name)
                    .map_err(|e| fail(e, "reading the schema version"))?;
                tx.batch_execute(&schema::create(&name))
                    .map_err(|e| fail(e, "creating the schema"))?;
                // A schema written without hints gets them from its heads before
                // anyone can write (the advisory lock holds other connectors).
                if before.is_some_and(|v| v < schema::HINTS_SINCE) {
                    index::fill(&mut tx, &name).map_err(|e| fail(e, "filling the index"))?;
                }
                let version: i32 = tx
                    .query_one(&format!("SELECT version FROM {name}.meta"), &[])
                    .and_then(|row| row.try_get(0))
                    .map_err(|e| fail(e, "reading the schema version"))?;
                tx.commit().map_err(|e| fail(e, "creating the schema"))?;
                Ok(version)
            })
            .map_err(Failure::into_error)?;
        if found > schema::VERSION {
            return Err(fail::storage(format!(
                "PostgreSQL {}: schema `{}` is at version {found}, newer than the {} this \
                 crate writes: upgrade the crate",
                self.pool.target(),
                self.schema,
                schema::VERSION
            ))
            .into());
        }
        Ok(())
    }
}

/// The schema's version before this connection creates or migrates it; `None`
/// for a schema without its `meta` table (a new one).
fn existing_version(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
) -> std::result::Result<Option<i32>, postgres::Error> {
    let table = format!("{schema}.meta");
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    tx.query_opt(&format!("SELECT version FROM {schema}.meta"), &[])?
        .map(|row| row.try_get(0))
        .transpose()
}

/// The server as errors name it: user, hosts, ports and database, no password.
fn describe_target(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// How long a write whose outcome is unknown goes on trying to reach the
/// server again to settle it (a server that restarted, say), before it is
/// reported as unknown. A try that started may take longer (a connect waits
/// up to its timeout), and the writer holds the ledger's turn meanwhile: the
/// other writers wait, as their writes would fail while the server is away.
const SETTLE_FOR: Duration = Duration::from_secs(5);

impl Postgres {
    /// Settles a write whose connection failed in flight (`append::settle`),
    /// trying again while the server cannot be reached, for [`SETTLE_FOR`].
    fn settle(
        &self,
        items: &Arc<Vec<append::Item>>,
        backend: Option<pool::Backend>,
    ) -> Result<append::Settled, Failure> {
        let until = std::time::Instant::now() + SETTLE_FOR;
        let mut wait = Duration::from_millis(50);
        loop {
            let (group, process) = (items.clone(), backend.clone());
            let settled = self
                .pool
                .run(move |conn: &mut Conn| append::settle(conn, &group, process.as_ref()));
            match settled {
                Err(Failure::Connection(_)) if std::time::Instant::now() + wait < until => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                settled => return settled,
            }
        }
    }

    /// Writes a group's `items` on one of the store's connections
    /// (`append::run`). A write whose connection failed while it was in flight
    /// is settled on a new connection (`append::settle`): it was written, or it
    /// was not; only if that cannot be found out, the server out of reach for
    /// [`SETTLE_FOR`] included, is its outcome unknown, an
    /// [`AppendError::Store`].
    fn write(&self, items: Vec<append::Item>) -> Result<(), AppendError> {
        let items = Arc::new(items);
        let group = items.clone();
        match self
            .pool
            .run(move |conn: &mut Conn| append::run(conn, &group))
        {
            Ok(written) => written,
            // The server could not be reached, or said it never ran the
            // statement; a connection lost within a group's transaction
            // before its COMMIT rolled it back. Nothing was written.
            Err(Failure::Connection(error)) => Err(AppendError::Unsent(error.into())),
            Err(Failure::Lost { error, backend }) => match self.settle(&items, backend) {
                Ok(append::Settled::Written) => Ok(()),
                Ok(append::Settled::NotWritten) => Err(AppendError::Undone(
                    fail::caused(
                        format!(
                            "{}; on a new connection its server process was ended and the \
                             append was not there: nothing of it was written",
                            fail::said(&error)
                        ),
                        error,
                    )
                    .into(),
                )),
                Err(unsettled) => Err(AppendError::Store(
                    fail::caused(
                        format!(
                            "{}; settling it failed: {}",
                            fail::said(&error),
                            fail::said(&unsettled.into_error())
                        ),
                        error,
                    )
                    .into(),
                )),
            },
            Err(failure) => Err(AppendError::Store(failure.into())),
        }
    }
}

impl Store for Postgres {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        self.append_hinted(appends, &[], &[])
    }

    /// The hints go in the statement of the group's last append (see
    /// `append.rs`): one round trip for a lone append and its hints.
    fn append_hinted(
        &self,
        appends: &[Append<'_>],
        hints: &[Hint],
        stale: &[Hint],
    ) -> Result<(), AppendError> {
        if appends.is_empty() {
            return Ok(());
        }
        self.write(append::items(appends, hints, stale, None)?)
    }

    /// The claims go in the statement of the append that starts their
    /// delegation (see `append.rs`): one round trip for a lone `queued`, its
    /// hints and its claim.
    fn append_claimed(
        &self,
        appends: &[Append<'_>],
        hints: &[Hint],
        stale: &[Hint],
        owner: Owner,
    ) -> Result<(), AppendError> {
        if appends.is_empty() {
            return Ok(());
        }
        self.write(append::items(appends, hints, stale, Some(owner))?)
    }

    /// Yes: see [`Store::append_claimed`] above.
    fn claims_with_appends(&self) -> bool {
        true
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        self.read_head(id)
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        self.read_history(id)
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        Box::new(self.pages())
    }

    /// Yes: every append statement writes and removes its hints (see
    /// `append.rs`), so no hint is ever stale from a failed append or a crash,
    /// and none costs a round trip of its own.
    fn hints_with_appends(&self) -> bool {
        true
    }

    /// Yes: every call is a round trip to the server, which other processes
    /// share.
    fn remote(&self) -> bool {
        true
    }

    /// Nothing to do: every append committed with `synchronous_commit = on`, so
    /// it was on the server's disk before [`Store::append`] returned.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn ownership(&self) -> Option<&dyn super::Ownership> {
        Some(self)
    }

    fn index(&self) -> Option<&dyn super::Index> {
        Some(self)
    }
}
