//! The sync facade over the blocking client: a few connections the store owns,
//! and as many worker threads, which take jobs from one channel, run each on
//! the first connection free, and answer on another channel.
//!
//! Why threads: the ledger is synchronous and is called from plain threads and
//! from inside tokio tasks alike. The blocking `postgres` client runs its own
//! tokio runtime and panics when it is called on a thread that is already inside
//! one. A caller on such a thread hands its job to a worker and waits for the
//! answer on a plain channel, which is safe anywhere; the workers' threads are
//! never inside a runtime, so the client is at home there. A caller on a thread
//! where the client may run ([`thread::may_block`]: outside any runtime, or the
//! crate's own blocking work) runs its job itself, on a connection no job is
//! using, and skips the two hand-offs between threads that a worker costs;
//! if every connection is busy, or a job is already queued (the queue is
//! served first), it queues for a worker like any other caller. A connection
//! is only ever closed on a thread where the client may run: by the caller or
//! worker whose job found it dead, lost it mid-write or panicked on it, or by
//! a worker when the pool is dropped.
//! Each connection is opened on first use and opened again after the server
//! went away, so calls fail with a typed error while the server is down and
//! work again once it is back.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};

use super::fail::{self, Failure, classify};
use crate::error::Error;
use crate::store::thread;

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

/// One of the store's connections, with the statements prepared on it.
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
        self.typed_statement(sql, &[])
    }

    /// `sql`, prepared once per connection with the types of its first
    /// parameters given (the rest inferred), so that it may leave some of
    /// those unread.
    pub(super) fn typed_statement(
        &mut self,
        sql: &'static str,
        types: &[postgres::types::Type],
    ) -> Result<Statement, Failure> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .prepare_typed(sql, types)
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

/// One of the store's connections, if open, and what it takes to (re)connect.
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

/// A queued job: run on the link it is given, which it gives back to the
/// idle list before it answers, so that a caller who runs its next job at once
/// finds the connection free.
type Job = Box<dyn FnOnce(Link, &Links) + Send>;

/// The connections no job is using, and the jobs waiting for one.
struct Links {
    idle: Mutex<Vec<Link>>,
    /// Told each time a connection comes back.
    returned: Condvar,
    /// Jobs handed to the workers and not yet on a connection. While there
    /// are any, a caller does not run its own job: the queued jobs take the
    /// connections that come back first (in no set order among themselves).
    queued: AtomicUsize,
}

impl Links {
    /// A connection no job is using, if there is one.
    fn try_take(&self) -> Option<Link> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// A connection, once one is free.
    fn take(&self) -> Link {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(link) = idle.pop() {
                return link;
            }
            idle = self.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Gives `link` back.
    fn put_back(&self, link: Link) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(link);
        self.returned.notify_one();
    }
}

/// The connections, their workers, and the channel that feeds them.
pub(super) struct Pool {
    jobs: Option<Sender<Job>>,
    links: Arc<Links>,
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
    /// Starts `workers` connections (at least one), and as many worker threads
    /// named `delegation-log-<name>-<n>`; each connection connects to `config`
    /// on first use and runs `setup` on each new session.
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
        let workers = workers.max(1);
        let links = Arc::new(Links {
            idle: Mutex::new(
                (0..workers)
                    .map(|_| Link {
                        config: config.clone(),
                        setup: setup.clone(),
                        target: target.clone(),
                        conn: None,
                    })
                    .collect(),
            ),
            returned: Condvar::new(),
            queued: AtomicUsize::new(0),
        });
        let mut handles = Vec::new();
        for n in 0..workers {
            let (links, receiver) = (links.clone(), receiver.clone());
            let handle = std::thread::Builder::new()
                .name(format!("delegation-log-{name}-{n}"))
                .spawn(move || work(&links, &receiver));
            match handle {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    // The connections are still unopened: dropping them here
                    // blocks on nothing.
                    drop(jobs);
                    for handle in handles {
                        let _ = handle.join();
                    }
                    return Err(error.into());
                }
            }
        }
        Ok(Pool {
            jobs: Some(jobs),
            links,
            workers: handles,
            target,
        })
    }

    /// The server, as errors name it (without a password).
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// Runs `job` on a connection and waits for its answer. Safe to call from
    /// any thread, inside a tokio runtime or not: on a thread where the client
    /// may run, with a connection free and no job queued before it, the job
    /// runs here; otherwise it queues for a worker.
    pub(super) fn run<T, F>(&self, job: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&mut Conn) -> Result<T, Failure> + Send + 'static,
    {
        let mut job = job;
        if thread::may_block()
            && self.links.queued.load(Ordering::Acquire) == 0
            && let Some(mut link) = self.links.try_take()
        {
            let answer = guarded(&mut link, &mut job);
            self.links.put_back(link);
            return answer;
        }
        let stopped = || {
            Failure::Other(fail::storage(format!(
                "PostgreSQL {}: the store's worker threads stopped",
                self.target
            )))
        };
        let (answer, answered) = mpsc::sync_channel(1);
        let boxed: Job = Box::new(move |mut link: Link, links: &Links| {
            let result = guarded(&mut link, &mut job);
            links.put_back(link);
            let _ = answer.send(result);
        });
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        self.links.queued.fetch_add(1, Ordering::AcqRel);
        if jobs.send(boxed).is_err() {
            self.links.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(stopped());
        }
        answered.recv().map_err(|_| stopped())?
    }
}

/// Runs `job` on `link` ([`Link::run`]). A job that panics (which the store's
/// own jobs never mean to) is a typed error, and costs its connection: it may
/// have stopped in the middle of a statement.
fn guarded<T>(
    link: &mut Link,
    job: &mut dyn FnMut(&mut Conn) -> Result<T, Failure>,
) -> Result<T, Failure> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| link.run(job))) {
        Ok(answer) => answer,
        Err(_) => {
            // A connection that fails to close must not take the link (and
            // the pool's shutdown, which waits for every link) with it.
            let conn = link.conn.take();
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(conn)));
            Err(Failure::Other(fail::storage(format!(
                "PostgreSQL {}: a job of the store panicked",
                link.target
            ))))
        }
    }
}

/// A worker: takes jobs until the channel closes, and runs each on the first
/// connection that is free. Then it takes a connection and closes it, here,
/// where the client may block, not wherever the pool is dropped (which may be
/// an async task): there are as many workers as connections, and no caller is
/// left once the channel closes.
fn work(links: &Links, receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else {
            drop(links.take());
            return;
        };
        let link = links.take();
        links.queued.fetch_sub(1, Ordering::AcqRel);
        job(link, links);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends every worker once its job is done, and
        // each closes a connection on its own thread: closing one blocks on
        // the client's runtime, which must not happen on an async thread.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of `connections` on the tests' server (`DATABASE_URL`, from
    /// `bash .ci/postgres`), or `None` without one, as `tests/pg_support`
    /// does: under `CI=true` a missing server fails the test.
    fn pool(connections: usize) -> Option<Pool> {
        let plain = super::super::url::tests_server()?;
        let config: postgres::Config = plain.parse().expect("DATABASE_URL parses");
        Some(
            Pool::start(
                "pool-test",
                config,
                String::new(),
                "test".into(),
                connections,
            )
            .expect("the pool starts"),
        )
    }

    /// A runtime whose own thread a test's async code runs on.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    }

    /// The name of the thread a job ran on, and the server process it ran on.
    fn whereabouts(pool: &Pool) -> Result<(String, i32), Failure> {
        pool.run(|conn: &mut Conn| {
            let pid: i32 = conn
                .client
                .query_one("SELECT pg_backend_pid()", &[])
                .and_then(|row| row.try_get(0))
                .map_err(|e| classify(e, "asking for the pid", "test"))?;
            let here = std::thread::current();
            Ok((here.name().unwrap_or("unnamed").to_owned(), pid))
        })
    }

    #[test]
    fn a_job_runs_on_its_caller_s_thread_where_the_client_may_run_and_on_a_worker_in_a_runtime() {
        let Some(pool) = pool(1) else { return };
        let pool = Arc::new(pool);
        let caller = std::thread::current().name().map(str::to_owned);
        let (thread, pid) = whereabouts(&pool).expect("a plain thread's job");
        assert_eq!(Some(thread), caller, "a plain thread runs its job itself");

        let runtime = runtime();
        let (in_task, on_blocking, marked) = runtime.block_on(async {
            // Inside the runtime's own thread the client would panic: the job
            // goes to the worker.
            let in_task = whereabouts(&pool).expect("an async task's job");
            let unmarked = pool.clone();
            let on_blocking = tokio::task::spawn_blocking(move || whereabouts(&unmarked))
                .await
                .expect("the blocking task ends")
                .expect("an unmarked blocking thread's job");
            let marked = pool.clone();
            let marked = tokio::task::spawn_blocking(move || {
                let here = std::thread::current().name().map(str::to_owned);
                (here, thread::marked(|| whereabouts(&marked)))
            })
            .await
            .expect("the blocking task ends");
            (in_task, on_blocking, marked)
        });
        assert_eq!(in_task, ("delegation-log-pool-test-0".to_owned(), pid));
        assert_eq!(on_blocking, ("delegation-log-pool-test-0".to_owned(), pid));
        let (blocking_thread, answer) = marked;
        let (thread, same_pid) = answer.expect("a marked thread's job");
        assert_eq!(
            Some(thread),
            blocking_thread,
            "a marked thread runs its job itself"
        );
        assert_eq!(same_pid, pid, "on the pool's one connection");
    }

    #[test]
    fn a_caller_that_finds_every_connection_busy_is_answered_by_a_worker_once_one_is_free() {
        let Some(pool) = pool(2) else { return };
        let pool = Arc::new(pool);
        // Two plain threads hold both connections, each in a job that waits
        // for a word from the test.
        let (held, holding) = mpsc::channel();
        let mut releases = Vec::new();
        let mut holders = Vec::new();
        for n in 0..2 {
            let (release, released) = mpsc::channel::<()>();
            releases.push(release);
            let (pool, held) = (pool.clone(), held.clone());
            holders.push(std::thread::spawn(move || {
                pool.run(move |conn: &mut Conn| {
                    let pid: i32 = conn
                        .client
                        .query_one("SELECT pg_backend_pid()", &[])
                        .and_then(|row| row.try_get(0))
                        .map_err(|e| classify(e, "asking for the pid", "test"))?;
                    let _ = held.send((n, pid));
                    let _ = released.recv();
                    Ok(pid)
                })
            }));
        }
        let mut pids = [0; 2];
        for _ in 0..2 {
            let (n, pid) = holding.recv().expect("held");
            pids[n] = pid;
        }
        assert_ne!(pids[0], pids[1], "two connections, two server processes");

        let late = {
            let pool = pool.clone();
            std::thread::spawn(move || whereabouts(&pool))
        };
        // Queued: no connection was free (and it cannot finish before one is).
        let queued = Instant::now();
        while pool.links.queued.load(Ordering::Acquire) == 0 {
            assert!(queued.elapsed() < Duration::from_secs(20), "never queued");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!late.is_finished(), "no connection was free");
        // One connection comes back, whichever it is: the queued job takes it.
        let mut releases = releases.into_iter();
        drop(releases.next());
        let (thread, pid) = late.join().expect("joined").expect("answered");
        assert!(
            thread.starts_with("delegation-log-pool-test-"),
            "a worker ran it, not its caller: {thread}"
        );
        assert_eq!(pid, pids[0], "on the connection that came back");
        drop(releases);
        for holder in holders {
            holder.join().expect("joined").expect("answered");
        }
    }

    #[test]
    fn a_caller_does_not_run_its_own_job_while_jobs_are_queued_for_the_workers() {
        let Some(pool) = pool(1) else { return };
        // As if a job were waiting for a connection: the caller must queue
        // behind it, not take the free connection first.
        pool.links.queued.fetch_add(1, Ordering::AcqRel);
        let (thread, _) = whereabouts(&pool).expect("answered");
        assert_eq!(thread, "delegation-log-pool-test-0", "a worker ran it");
        pool.links.queued.fetch_sub(1, Ordering::AcqRel);
        let caller = std::thread::current().name().map(str::to_owned);
        let (thread, _) = whereabouts(&pool).expect("answered");
        assert_eq!(
            Some(thread),
            caller,
            "with the queue empty, the caller runs it"
        );
    }

    #[test]
    fn a_pool_dropped_in_an_async_task_closes_the_connections_its_callers_opened_on_its_workers() {
        let (Some(pool), Some(watcher)) = (pool(2), pool(1)) else {
            return;
        };
        let caller = std::thread::current().name().map(str::to_owned);
        let (thread, pid) = whereabouts(&pool).expect("a job");
        assert_eq!(Some(thread), caller, "the caller opened the connection");
        let runtime = runtime();
        // Closing a connection here would block on the client's runtime
        // inside this one, and panic.
        runtime.block_on(async move { drop(pool) });
        // The server saw the session end (its process goes once the client's
        // goodbye arrives).
        let gone = (0..500).any(|_| {
            let alive = watcher.run(move |conn: &mut Conn| {
                conn.client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                        &[&pid],
                    )
                    .and_then(|row| row.try_get::<_, i64>(0))
                    .map_err(|e| classify(e, "looking for the session", "test"))
            });
            let gone = alive.expect("asked") == 0;
            if !gone {
                std::thread::sleep(Duration::from_millis(20));
            }
            gone
        });
        assert!(gone, "the session {pid} was closed");
    }

    #[test]
    fn a_job_that_panics_is_a_typed_error_and_costs_its_connection_not_its_worker() {
        let Some(pool) = pool(1) else { return };
        let (_, before) = whereabouts(&pool).expect("a job");
        let panicked = pool.run(|_: &mut Conn| -> Result<(), Failure> { panic!("a bad job") });
        match panicked {
            Err(Failure::Other(error)) => {
                assert!(error.to_string().contains("panicked"), "{error}");
            }
            other => panic!("a panic became {other:?}"),
        }
        let (_, after) = whereabouts(&pool).expect("a job after the panic");
        assert_ne!(before, after, "the connection was replaced");

        // The same on a worker, which goes on serving.
        let runtime = runtime();
        let (panicked, next) = runtime.block_on(async {
            let panicked = pool.run(|_: &mut Conn| -> Result<(), Failure> { panic!("a bad job") });
            (panicked, whereabouts(&pool))
        });
        match panicked {
            Err(Failure::Other(error)) => {
                assert!(error.to_string().contains("panicked"), "{error}");
            }
            other => panic!("a panic on a worker became {other:?}"),
        }
        let (thread, last) = next.expect("a job after the worker's panic");
        assert_eq!(thread, "delegation-log-pool-test-0");
        assert_ne!(last, after, "the connection was replaced");
    }
}
