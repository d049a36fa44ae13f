//! The sync facade over the blocking client: a few threads the store owns, each
//! with its own connection, taking jobs from one channel and answering on another.
//!
//! Why threads: the ledger is synchronous and is called from plain threads and
//! from inside tokio tasks alike. The blocking `postgres` client runs its own
//! tokio runtime and panics when it is called on a thread that is already inside
//! one, so it is never called on the caller's thread: a caller hands a job to a
//! worker and waits for the answer on a plain channel, which is safe anywhere.
//! The workers' threads are never inside a runtime, so the client is at home
//! there. Each worker keeps one connection, opened on first use and opened again
//! after the server went away, so calls fail with a typed error while the server
//! is down and work again once it is back.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};

use super::fail::{self, Failure, classify};
use crate::error::Error;

/// How many times a job that lost a deadlock or a serialization check is run.
const ATTEMPTS: usize = 5;

/// How long a connection may sit idle before its next job checks it (an empty
/// query) before running. A server that crashed, or was stopped at once, while
/// the connection sat idle sends nothing a client notices until it is used: a
/// write sent on such a connection fails with no word from the server, and its
/// outcome is unknown until the store settles it on a new connection (see
/// `append::settle`), which takes a round trip or two more. The check finds the connection
/// dead first, so the job runs on a new one, or fails typed, having sent
/// nothing, while the server is down. Busy connections are not checked: a
/// crash less than this long after a connection's last job can still leave
/// the next write's outcome unknown, as a crash during a write always does;
/// while the server is down it cannot be settled, and the ledger is
/// poisoned. A check is one round trip, paid only by a job after a quiet
/// spell.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(250);

/// How long that check may take before the connection counts as dead. (Its
/// socket is then closed, which waits at most for the TCP user timeout set at
/// connect: see `mod.rs`.)
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One worker's connection, with the statements prepared on it.
pub(super) struct Conn {
    /// The client.
    pub(super) client: Client,
    statements: HashMap<&'static str, Statement>,
    target: Arc<str>,
    /// When a job last ended on it.
    used: Instant,
    /// The server process serving it, asked at connect; `None` if the server
    /// would not say (no access to `pg_stat_activity`).
    backend: Option<Backend>,
}

/// Which server process serves a connection, and on which server: its pid
/// and its start time, which together name it even after the server reuses
/// the pid, and the server's address, port and start time. When a connection
/// fails with a write in flight, the store ends that process from a new
/// connection to the same server and waits for it to be gone, so that the
/// write's outcome is settled before it is read back (see `append.rs`).
/// Times are microseconds since the Unix epoch, compared as numbers, so no
/// session setting (`TimeZone`, `DateStyle`) changes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Backend {
    pub(super) pid: i32,
    pub(super) started: i64,
    pub(super) server: Server,
}

/// Which server a session is on: its address and port (empty and 0 over a
/// Unix socket), when its postmaster started, and whether it is a standby.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Server {
    pub(super) address: String,
    pub(super) port: i32,
    pub(super) started: i64,
    pub(super) standby: bool,
}

impl Server {
    /// The server of the session `row` was read on, from its columns `at..`
    /// (as [`SERVER`] and [`BACKEND`] select them).
    pub(super) fn from_row(row: &postgres::Row, at: usize) -> Result<Self, postgres::Error> {
        Ok(Server {
            address: row.try_get(at)?,
            port: row.try_get(at + 1)?,
            started: row.try_get(at + 2)?,
            standby: row.try_get(at + 3)?,
        })
    }
}

/// The columns that say which server a session is on ([`Server`]).
macro_rules! server_columns {
    () => {
        "coalesce(host(inet_server_addr()), ''), coalesce(inet_server_port(), 0), \
         (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint, \
         pg_is_in_recovery()"
    };
}

/// Which server this session is on ([`Server`]).
pub(super) const SERVER: &str = concat!("SELECT ", server_columns!());

/// The connection's own server process, then its server.
const BACKEND: &str = concat!(
    "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint, ",
    server_columns!(),
    " FROM pg_stat_activity WHERE pid = pg_backend_pid()"
);

impl Conn {
    /// `sql`, prepared once per connection.
    pub(super) fn statement(&mut self, sql: &'static str) -> Result<Statement, Failure> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .prepare(sql)
            .map_err(|e| classify(e, "preparing a statement", &self.target))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Whether the connection can take a job: not closed, and, after it sat
    /// idle for [`CHECK_AFTER_IDLE`], answering an empty query.
    fn usable(&mut self) -> bool {
        !self.client.is_closed()
            && (self.used.elapsed() < CHECK_AFTER_IDLE
                || self.client.is_valid(CHECK_TIMEOUT).is_ok())
    }

    /// The server, as errors name it (without a password).
    pub(super) fn target(&self) -> Arc<str> {
        self.target.clone()
    }

    /// The server process serving this connection, if the server said.
    pub(super) fn backend(&self) -> Option<Backend> {
        self.backend.clone()
    }

    /// What turns a client error met while doing something into a [`Failure`],
    /// apart from the connection, so that it can be used while a transaction
    /// borrows the client.
    pub(super) fn failer(&self) -> impl Fn(postgres::Error, &str) -> Failure + use<> {
        let target = self.target.clone();
        move |error, doing| classify(error, doing, &target)
    }
}

/// What a worker needs to (re)connect.
struct Link {
    config: postgres::Config,
    /// Run on every new connection (session settings).
    setup: Arc<str>,
    target: Arc<str>,
    conn: Option<Conn>,
}

impl Link {
    /// The live connection, opened if there is none or it was closed; and whether
    /// it was opened just now.
    fn conn(&mut self) -> Result<(&mut Conn, bool), Failure> {
        let stale = !self.conn.as_mut().is_some_and(Conn::usable);
        if stale {
            self.conn = None;
            let mut client = self
                .config
                .connect(NoTls)
                .map_err(|e| Failure::Connection(connect_error(e, &self.target)))?;
            client
                .batch_execute(&self.setup)
                .map_err(|e| classify(e, "setting up the session", &self.target))?;
            // Without it, a write whose connection fails in flight cannot be
            // settled, and is reported as unknown; every other call works.
            let backend = client
                .query_one(BACKEND, &[])
                .and_then(|row| {
                    Ok(Backend {
                        pid: row.try_get(0)?,
                        started: row.try_get(1)?,
                        server: Server::from_row(&row, 2)?,
                    })
                })
                .ok();
            self.conn = Some(Conn {
                client,
                statements: HashMap::new(),
                target: self.target.clone(),
                used: Instant::now(),
                backend,
            });
        }
        match self.conn.as_mut() {
            Some(conn) => Ok((conn, stale)),
            None => Err(Failure::Connection(fail::storage(format!(
                "PostgreSQL {}: no connection",
                self.target
            )))),
        }
    }

    /// Runs `job` on the connection. A job that failed on a connection that had
    /// gone stale while idle (the server restarted since) runs once more on a new
    /// one; a job that lost a deadlock runs again, up to [`ATTEMPTS`] times. Every
    /// such failure happened before anything committed, or in a statement that
    /// is safe to run again (the leases' and claims'); a write whose outcome is
    /// unknown is [`Failure::Lost`], never run again.
    fn run<T>(
        &mut self,
        job: &mut dyn FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let (conn, fresh) = self.conn()?;
            let done = job(conn);
            conn.used = Instant::now();
            match done {
                Ok(value) => return Ok(value),
                Err(Failure::Connection(error)) => {
                    self.conn = None;
                    if fresh || attempt > 0 {
                        return Err(Failure::Connection(error));
                    }
                    last = Some(Failure::Connection(error));
                }
                Err(lost @ Failure::Lost { .. }) => {
                    self.conn = None;
                    return Err(lost);
                }
                Err(Failure::Retry(error)) => last = Some(Failure::Retry(error)),
                Err(other) => {
                    if conn_closed(&self.conn) {
                        self.conn = None;
                    }
                    return Err(other);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Failure::Other(fail::storage(format!(
                "PostgreSQL {}: gave up after {ATTEMPTS} attempts",
                self.target
            )))
        }))
    }
}

fn conn_closed(conn: &Option<Conn>) -> bool {
    conn.as_ref().is_some_and(|conn| conn.client.is_closed())
}

/// The error of a failed connect.
fn connect_error(error: postgres::Error, target: &str) -> crate::error::StorageError {
    let message = format!(
        "PostgreSQL {target}: cannot connect: {}",
        super::fail::describe(&error)
    );
    fail::caused(message, error)
}

type Job = Box<dyn FnOnce(&mut Link) + Send>;

/// The workers and the channel that feeds them.
pub(super) struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    target: Arc<str>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts `workers` threads (at least one), named `delegation-log-<name>-<n>`,
    /// that connect to `config` on first use and run `setup` on each new
    /// connection.
    pub(super) fn start(
        name: &str,
        config: postgres::Config,
        setup: String,
        target: String,
        workers: usize,
    ) -> Result<Self, Error> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let (setup, target): (Arc<str>, Arc<str>) = (setup.into(), target.into());
        let mut handles = Vec::new();
        for n in 0..workers.max(1) {
            let link = Link {
                config: config.clone(),
                setup: setup.clone(),
                target: target.clone(),
                conn: None,
            };
            let receiver = receiver.clone();
            let handle = std::thread::Builder::new()
                .name(format!("delegation-log-{name}-{n}"))
                .spawn(move || work(link, &receiver))?;
            handles.push(handle);
        }
        Ok(Pool {
            jobs: Some(jobs),
            workers: handles,
            target,
        })
    }

    /// The server, as errors name it (without a password).
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// Runs `job` on a worker's connection and waits for its answer. Safe to call
    /// from any thread, inside a tokio runtime or not.
    pub(super) fn run<T, F>(&self, job: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&mut Conn) -> Result<T, Failure> + Send + 'static,
    {
        let stopped = || {
            Failure::Other(fail::storage(format!(
                "PostgreSQL {}: the store's worker thread stopped",
                self.target
            )))
        };
        let (answer, answered) = mpsc::sync_channel(1);
        let mut job = job;
        let boxed: Job = Box::new(move |link: &mut Link| {
            let _ = answer.send(link.run(&mut job));
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(boxed)
            .map_err(|_| stopped())?;
        answered.recv().map_err(|_| stopped())?
    }
}

/// A worker: takes jobs until the channel closes. A job that panics (which the
/// store's own jobs never mean to) costs its connection, not the worker; its
/// caller sees a closed answer channel, a typed error.
fn work(mut link: Link, receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut link))).is_err() {
            link.conn = None;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends every worker once its job is done.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
