//! The tests' PostgreSQL server: its URL from `DATABASE_URL` (set by
//! `bash .ci/postgres`), and a schema of its own for each test, dropped after it.
//!
//! Without `DATABASE_URL`, a PostgreSQL case prints how to start a server and
//! passes over; under `CI=true` it fails instead, and a URL that is set but does
//! not answer fails anywhere. Raw SQL (to look at or damage what the database
//! holds) runs on a thread of its own, so that it works inside tokio tests too.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use delegation_log::store::{Connect, Postgres};

const START: &str = "start one with `eval \"$(bash .ci/postgres)\"` (a throwaway cluster on \
    127.0.0.1; it installs Debian's postgresql if missing), which exports DATABASE_URL";

/// The server's URL, or `None` (after saying how to start one) outside CI.
pub fn url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true and DATABASE_URL is not set: {START}");
            eprintln!("SKIPPED: the PostgreSQL cases need DATABASE_URL; {START}");
            None
        }
    }
}

/// What joins a parameter to `url`: `&` if it has a query already, else `?`.
pub fn sep(url: &str) -> char {
    if url.contains('?') { '&' } else { '?' }
}

/// A schema of one test, with a store on it; dropped with the schema.
pub struct Schema {
    /// The store, on this schema.
    pub store: Arc<Postgres>,
    /// The schema's name.
    pub name: String,
    /// The server.
    pub url: String,
}

/// A schema name no other test of any process uses now: `t_<tag>_<pid>_<n>`.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("t_{tag}_{}_{n}", std::process::id())
}

/// A store on a fresh schema, or `None` with no server outside CI.
pub fn fresh(tag: &str) -> Option<Schema> {
    let url = url()?;
    let name = unique(tag);
    let store = Postgres::connect_with(&url, Connect::new().schema(name.clone()))
        .unwrap_or_else(|e| panic!("DATABASE_URL is set, yet the store does not open: {e}"));
    Some(Schema {
        store: Arc::new(store),
        name,
        url,
    })
}

impl Schema {
    /// Runs `sql` on a connection of its own and returns every row's columns as
    /// text (`NULL` as `None`); `bytea` comes back as PostgreSQL's hex (`\x…`).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = format!("SET search_path = {}; {sql}", self.name);
        raw(&self.url, move |client| {
            client
                .simple_query(&sql)
                .unwrap()
                .into_iter()
                .filter_map(|message| match message {
                    postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|n| row.get(n).map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
    }

    /// Runs `sql` (several statements allowed) on a connection of its own.
    pub fn execute(&self, sql: &str) {
        let sql = format!("SET search_path = {}; {sql}", self.name);
        raw(&self.url, move |client| client.batch_execute(&sql).unwrap());
    }

    /// Ends `owner`'s lease by the server's clock, as if it had run out.
    /// Tests take leases long enough that no heartbeat on a loaded machine
    /// lets them lapse, and end them here when they mean to.
    pub fn expire(&self, owner: delegation_log::store::Owner) {
        self.execute(&format!(
            "UPDATE dispatchers SET lease_until = now() - interval '1 second' \
             WHERE id = '\\x{owner}'::bytea"
        ));
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let url = self.url.clone();
        // Not while the test is failing: a panic in a drop during a panic aborts.
        if !std::thread::panicking() {
            raw(&url, move |client| client.batch_execute(&sql).unwrap());
        }
    }
}

/// A transaction on a session of its own that ran some SQL (to take a lock)
/// and holds what it took until released or dropped; it then rolls back.
pub struct Held {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Begins a transaction on a client of its own, runs `sql` in it, and returns
/// once it ran, holding its locks.
pub fn hold(url: &str, sql: String) -> Held {
    let (held, is_held) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let url = url.to_owned();
    let thread = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.batch_execute(&sql).unwrap();
        held.send(()).unwrap();
        let _ = released.recv();
        tx.rollback().unwrap();
    });
    is_held.recv().unwrap();
    Held {
        release: Some(release),
        thread: Some(thread),
    }
}

impl Held {
    /// Rolls the transaction back, and waits until it has.
    pub fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.unwrap();
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.end();
    }
}

/// Runs `work` with a fresh client, on a thread of its own (the blocking client
/// panics inside a tokio runtime).
pub fn raw<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        work(&mut client)
    })
    .join()
    .unwrap()
}
