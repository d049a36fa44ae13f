//! Guards what the PostgreSQL store does when the connection fails while an
//! append is in flight, so that the append may or may not have committed: it
//! settles the outcome on a new connection (ends the old connection's server
//! process, waits for it to be gone, reads the append back) and answers what
//! really happened. A write that committed is acknowledged; one that did not
//! is an error that leaves the ledger working (not poisoned), and writing it
//! again succeeds. Either way the database holds exactly what the ledger says.
//!
//! The connection is cut by a TCP proxy between the store and a real server:
//! either the request is dropped before the server sees it (not written), or
//! the server's answer is dropped after it committed (written). Both for a
//! lone append (one autocommitted statement) and for a group of two (a retry:
//! the failed attempt's `failed` and the next attempt's `queued`, one
//! transaction, cut at its `COMMIT`). And once while the append's server
//! process waits for a lock another session holds, so that it would commit
//! later if left alone: it is ended before the append is read back, also for
//! a plain role whose time zone changed since the store connected (the
//! process is named by numbers, not by times printed in a zone).
//!
//! And a dispatcher's: when the server is out of reach as a delivery's
//! outcome is to be written, the write reaches nothing and is tried again, so
//! the outcome the target gave is recorded once the server is back, rather
//! than left for recovery to call interrupted.
//!
//! Needs `DATABASE_URL` (`bash .ci/postgres`); under `CI=true` a missing server
//! fails the run.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::store::{Connect, Postgres};
use delegation_log::{DelegationId, Error, Event, FailureReason, Ledger, StatusKind};
use support::id;

/// What the proxy does to the next message that holds a needle.
#[derive(Clone)]
enum Cut {
    /// Passes everything.
    None,
    /// Drops the client's message holding the needle, and closes the
    /// connection: the server never sees it.
    Request(Vec<u8>),
    /// Passes the client's message holding the needle, then drops the
    /// server's answer to it and closes the connection: the server has done
    /// the work, and the client never hears.
    Reply(Vec<u8>),
    /// Passes the client's message holding the needle, then closes the
    /// connection a moment later, whatever the server is doing with it (a
    /// statement waiting for a lock goes on waiting).
    After(Vec<u8>),
    /// As [`Cut::Request`], and the server is then out of reach (new
    /// connections refused) for this long.
    RequestThenDown(Vec<u8>, Duration),
}

/// A TCP proxy to the server that cuts one connection as told, or all of
/// them while it is down.
struct Proxy {
    port: u16,
    cut: Arc<Mutex<Cut>>,
    cuts: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    closers: Closers,
}

/// What closes each connection the proxy made.
type Closers = Arc<Mutex<Vec<Arc<dyn Fn() + Send + Sync>>>>;

impl Proxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(Mutex::new(Cut::None));
        let cuts = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let closers: Closers = Arc::default();
        let (rule, count, is_down, closing) =
            (cut.clone(), cuts.clone(), down.clone(), closers.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if is_down.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let close = pump(client, server, rule.clone(), count.clone(), is_down.clone());
                closing.lock().unwrap().push(close);
            }
        });
        Proxy {
            port,
            cut,
            cuts,
            down,
            closers,
        }
    }

    /// Closes every connection, and refuses new ones until [`Proxy::up`]: the
    /// server is out of reach.
    fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for close in self.closers.lock().unwrap().drain(..) {
            close();
        }
    }

    fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    fn arm(&self, cut: Cut) {
        *self.cut.lock().unwrap() = cut;
    }
}

/// Copies bytes both ways between `client` and `server`, applying the cut;
/// answers what closes both.
fn pump(
    client: TcpStream,
    server: TcpStream,
    cut: Arc<Mutex<Cut>>,
    cuts: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
) -> Arc<dyn Fn() + Send + Sync> {
    let armed = Arc::new(AtomicBool::new(false));
    let close = {
        let (client, server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        move || {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    };
    let close = Arc::new(close);
    let closer: Arc<dyn Fn() + Send + Sync> = close.clone();
    {
        let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (armed, close, cuts) = (armed.clone(), close.clone(), cuts.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                let mut rule = cut.lock().unwrap();
                let holds = |needle: &[u8]| chunk.windows(needle.len()).any(|w| w == needle);
                match rule.clone() {
                    Cut::Request(needle) if holds(&needle) => {
                        *rule = Cut::None;
                        cuts.fetch_add(1, Ordering::SeqCst);
                        close();
                        return;
                    }
                    Cut::RequestThenDown(needle, outage) if holds(&needle) => {
                        *rule = Cut::None;
                        down.store(true, Ordering::SeqCst);
                        cuts.fetch_add(1, Ordering::SeqCst);
                        close();
                        let down = down.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(outage);
                            down.store(false, Ordering::SeqCst);
                        });
                        return;
                    }
                    Cut::Reply(needle) if holds(&needle) => {
                        *rule = Cut::None;
                        armed.store(true, Ordering::SeqCst);
                    }
                    Cut::After(needle) if holds(&needle) => {
                        *rule = Cut::None;
                        drop(rule);
                        let _ = to.write_all(chunk);
                        std::thread::sleep(Duration::from_millis(300));
                        cuts.fetch_add(1, Ordering::SeqCst);
                        close();
                        return;
                    }
                    _ => {}
                }
                drop(rule);
                if to.write_all(chunk).is_err() {
                    break;
                }
            }
            close();
        });
    }
    let (mut from, mut to) = (server, client);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if armed.load(Ordering::SeqCst) {
                cuts.fetch_add(1, Ordering::SeqCst);
                close();
                return;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        close();
    });
    closer
}

/// A schema of its own, with a ledger on it through a proxy.
struct Setup {
    schema: pg_support::Schema,
    proxy: Proxy,
    ledger: Ledger,
}

fn setup(tag: &str) -> Option<Setup> {
    setup_as(tag, None)
}

/// [`setup`], the store connecting as `role` (a plain role, not a superuser)
/// if one is given.
fn setup_as(tag: &str, role: Option<&str>) -> Option<Setup> {
    let url = pg_support::url()?;
    let config = postgres::Config::from_str(&url).unwrap();
    let port = config.get_ports()[0];
    let proxy = Proxy::start(format!("127.0.0.1:{port}"));
    let mut through = url.replacen(&format!(":{port}/"), &format!(":{}/", proxy.port), 1);
    assert_ne!(through, url, "the URL names its port: {url}");
    if let (Some(role), Some(user)) = (role, config.get_user()) {
        through = through.replacen(&format!("//{user}@"), &format!("//{role}@"), 1);
        assert!(through.contains(role), "the URL names its user: {url}");
    }
    let name = pg_support::unique(tag);
    let store = Arc::new(
        Postgres::connect_with(&through, Connect::new().schema(name.clone()).connections(1))
            .unwrap(),
    );
    let ledger = Ledger::with_store(store.clone(), Options::new());
    Some(Setup {
        schema: pg_support::Schema { store, name, url },
        proxy,
        ledger,
    })
}

/// The seqs of `id`'s records, as `schema` holds them.
fn seqs_in(schema: &pg_support::Schema, id: &DelegationId) -> Vec<String> {
    schema
        .query(&format!(
            "SELECT seq FROM records WHERE delegation = '{}'::bytea ORDER BY seq",
            id.as_str()
        ))
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect()
}

impl Setup {
    /// The seqs of `id`'s records, as the database holds them.
    fn seqs(&self, id: &DelegationId) -> Vec<String> {
        seqs_in(&self.schema, id)
    }

    /// `a`, whose outcome was not written, is still `queued` to the ledger
    /// (not poisoned), which takes the outcome when it is written again; and
    /// the ledger still serves.
    fn writes_the_outcome_again(&self, a: &DelegationId) {
        assert_eq!(self.ledger.status(a).unwrap().status, StatusKind::Queued);
        self.ledger
            .record(a, Event::delivered(Some(200)).unwrap())
            .unwrap();
        assert_eq!(self.seqs(a), ["1", "2"]);
        self.still_serves();
    }

    /// What the ledger says, read anew: it still serves reads and writes, and
    /// its audit of the store is clean.
    fn still_serves(&self) {
        assert!(self.ledger.audit().unwrap().is_clean());
        let other = id("unrelated");
        self.ledger
            .record(&other, Event::queued("planner", "http://127.0.0.1:9/a2a"))
            .unwrap();
        assert_eq!(
            self.ledger.status(&other).unwrap().status,
            StatusKind::Queued
        );
    }
}

/// `failed` is the error of a write the store found was not written.
fn assert_not_written<T: std::fmt::Debug>(failed: &Result<T, Error>) {
    match failed {
        Err(Error::Storage(error)) => {
            let message = error.to_string();
            assert!(message.contains("nothing of it was written"), "{message}");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
}

fn queued() -> Event {
    Event::queued("planner", "http://127.0.0.1:9/a2a")
}

#[test]
fn an_append_whose_answer_was_lost_after_it_committed_is_acknowledged_once() {
    let Some(setup) = setup("lost_reply") else {
        return;
    };
    let a = id("cut-reply-lone");
    setup.ledger.record(&a, queued()).unwrap();
    setup.proxy.arm(Cut::Reply(a.as_str().as_bytes().to_vec()));

    let recorded = setup
        .ledger
        .record(&a, Event::delivered(Some(200)).unwrap());
    assert_eq!(
        setup.proxy.cuts.load(Ordering::SeqCst),
        1,
        "the cut happened"
    );
    let recorded = recorded.expect("it committed, and the store found it so");
    assert_eq!(recorded.seq, 2);
    assert_eq!(
        setup.ledger.status(&a).unwrap().status,
        StatusKind::Delivered
    );
    assert_eq!(setup.seqs(&a), ["1", "2"], "the database holds it once");
    setup.still_serves();
}

#[test]
fn an_append_that_never_reached_the_server_is_an_error_that_does_not_poison() {
    let Some(setup) = setup("lost_request") else {
        return;
    };
    let a = id("cut-request-lone");
    setup.ledger.record(&a, queued()).unwrap();
    setup
        .proxy
        .arm(Cut::Request(a.as_str().as_bytes().to_vec()));

    let failed = setup
        .ledger
        .record(&a, Event::delivered(Some(200)).unwrap());
    assert_eq!(
        setup.proxy.cuts.load(Ordering::SeqCst),
        1,
        "the cut happened"
    );
    assert_not_written(&failed);
    if let Err(error) = &failed {
        // Each prefix once, however many layers the message went through.
        let message = error.to_string();
        assert_eq!(
            message.matches("storage engine error").count(),
            1,
            "{message}"
        );
        assert_eq!(message.matches("PostgreSQL").count(), 1, "{message}");
    }
    assert_eq!(setup.seqs(&a), ["1"], "the database holds no outcome");
    // Not poisoned: the ledger says what the database holds, and takes the
    // outcome when it is written again.
    setup.writes_the_outcome_again(&a);
}

/// As [`an_append_that_never_reached_the_server_is_an_error_that_does_not_poison`],
/// with the server out of reach for a second after the cut: the store waits
/// for it to come back to settle the write, rather than report an unknown
/// outcome (which would poison the ledger).
#[test]
fn an_append_cut_off_as_the_server_goes_away_is_settled_once_it_is_back() {
    let Some(setup) = setup("lost_then_down") else {
        return;
    };
    let a = id("cut-then-down");
    setup.ledger.record(&a, queued()).unwrap();
    setup.proxy.arm(Cut::RequestThenDown(
        a.as_str().as_bytes().to_vec(),
        Duration::from_millis(1_000),
    ));

    let failed = setup
        .ledger
        .record(&a, Event::delivered(Some(200)).unwrap());
    assert_eq!(
        setup.proxy.cuts.load(Ordering::SeqCst),
        1,
        "the cut happened"
    );
    assert_not_written(&failed);
    assert_eq!(setup.seqs(&a), ["1"]);
    setup.writes_the_outcome_again(&a);
}

/// A retry: `failed` for `first` and `queued` for `first.r1`, one group.
fn retry(setup: &Setup, first: &DelegationId, next: &DelegationId) -> Result<(), Error> {
    let failed = Failed {
        reason: FailureReason::TargetOffline,
        detail: Some("connection refused".into()),
    };
    setup
        .ledger
        .retry(
            first,
            failed,
            next,
            Queued::new("planner", "http://127.0.0.1:9/a2a"),
        )
        .map(|_| ())
}

#[test]
fn a_group_whose_commit_answer_was_lost_after_it_committed_is_acknowledged_once() {
    let Some(setup) = setup("lost_commit_reply") else {
        return;
    };
    let (first, next) = (id("cut-commit"), id("cut-commit.r1"));
    setup.ledger.record(&first, queued()).unwrap();
    setup.proxy.arm(Cut::Reply(b"COMMIT".to_vec()));

    let retried = retry(&setup, &first, &next);
    assert_eq!(
        setup.proxy.cuts.load(Ordering::SeqCst),
        1,
        "the cut happened"
    );
    retried.expect("it committed, and the store found it so");
    assert_eq!(setup.seqs(&first), ["1", "2"]);
    assert_eq!(setup.seqs(&next), ["1"]);
    assert_eq!(
        setup.ledger.status(&first).unwrap().status,
        StatusKind::Failed
    );
    assert_eq!(
        setup.ledger.status(&next).unwrap().status,
        StatusKind::Queued
    );
    setup.still_serves();
}

#[test]
fn a_group_whose_commit_never_reached_the_server_is_an_error_that_does_not_poison() {
    let Some(setup) = setup("lost_commit_request") else {
        return;
    };
    let (first, next) = (id("cut-commit"), id("cut-commit.r1"));
    setup.ledger.record(&first, queued()).unwrap();
    setup.proxy.arm(Cut::Request(b"COMMIT".to_vec()));

    let retried = retry(&setup, &first, &next);
    assert_eq!(
        setup.proxy.cuts.load(Ordering::SeqCst),
        1,
        "the cut happened"
    );
    assert_not_written(&retried);
    assert_eq!(setup.seqs(&first), ["1"], "no part of the group is there");
    assert!(
        setup.seqs(&next).is_empty(),
        "no part of the group is there"
    );
    assert_eq!(
        setup.ledger.status(&first).unwrap().status,
        StatusKind::Queued
    );
    retry(&setup, &first, &next).unwrap();
    assert_eq!(setup.seqs(&first), ["1", "2"]);
    assert_eq!(setup.seqs(&next), ["1"]);
    setup.still_serves();
}

/// A role of the test's own, a plain one (no superuser), dropped with all it
/// owns at the end.
struct Role {
    name: String,
    url: String,
}

impl Role {
    fn create(url: &str) -> Self {
        let name = pg_support::unique("role");
        let database = postgres::Config::from_str(url)
            .unwrap()
            .get_dbname()
            .unwrap()
            .to_owned();
        let sql =
            format!("CREATE ROLE {name} LOGIN; GRANT CREATE ON DATABASE {database} TO {name};");
        pg_support::raw(url, move |client| client.batch_execute(&sql).unwrap());
        Role {
            name,
            url: url.to_owned(),
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let sql = format!(
            "DROP OWNED BY {0} CASCADE; DROP ROLE IF EXISTS {0};",
            self.name
        );
        let _ = std::thread::spawn({
            let url = self.url.clone();
            move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).ok()?;
                client.batch_execute(&sql).ok()
            }
        })
        .join();
    }
}

/// The append is cut off while it waits for a lock another session holds:
/// its server process is still there, waiting, and would commit once the lock
/// is released. Settling ends that process first, so the append is not written,
/// and the answer says so. After the lock is released nothing more commits.
fn cut_while_blocked(role: Option<&Role>, zone_changed: bool) {
    let Some(setup) = setup_as("blocked", role.map(|role| role.name.as_str())) else {
        return;
    };
    let a = id("cut-while-blocked");
    setup.ledger.record(&a, queued()).unwrap();
    if let Some(role) = role.filter(|_| zone_changed) {
        // New sessions of the role now print times in another zone than the
        // store's first connection did.
        let sql = format!("ALTER ROLE {} SET timezone = 'Asia/Kolkata'", role.name);
        pg_support::raw(&setup.schema.url, move |client| {
            client.batch_execute(&sql).unwrap()
        });
    }

    // Another session holds the head's row lock until told.
    let held = pg_support::hold(
        &setup.schema.url,
        format!(
            "SELECT 1 FROM {}.heads WHERE delegation = '{}'::bytea FOR UPDATE",
            setup.schema.name,
            a.as_str()
        ),
    );
    setup.proxy.arm(Cut::After(a.as_str().as_bytes().to_vec()));
    let failed = setup
        .ledger
        .record(&a, Event::delivered(Some(200)).unwrap());
    held.release();
    assert_eq!(
        setup.proxy.cuts.load(Ordering::SeqCst),
        1,
        "the cut happened"
    );

    assert_not_written(&failed);
    // Had the waiting process been left alone, it would commit now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(setup.seqs(&a), ["1"], "nothing committed after the answer");
    setup.writes_the_outcome_again(&a);
}

#[test]
fn an_append_cut_off_while_its_server_process_waits_is_ended_first_and_not_written() {
    cut_while_blocked(None, false);
}

#[test]
fn a_plain_role_whose_time_zone_changed_meanwhile_still_ends_its_waiting_process() {
    let Some(url) = pg_support::url() else {
        return;
    };
    let role = Role::create(&url);
    cut_while_blocked(Some(&role), true);
}

/// The target accepts; as it does, the server goes out of reach (every
/// connection closed, new ones refused) for about a second, longer than a
/// connection may sit idle unchecked. The outcome's first write reaches
/// nothing, and does not poison the ledger; a later try writes it. The
/// sender learns `delivered`, the database holds it, and nothing is left to
/// recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_written_while_the_server_is_out_of_reach_is_written_when_it_is_back() {
    use delegation_log::Outcome;
    use delegation_log::dispatch::{Dispatcher, Options as Dispatch, Request};
    use delegation_log::transport::{Accepted, Immediate};

    let Some(setup) = setup("outcome_later") else {
        return;
    };
    let proxy = Arc::new(setup.proxy);
    let answer = {
        let proxy = proxy.clone();
        move |_: &delegation_log::transport::Message| {
            proxy.down();
            // Past the idle check, so that the outcome's write finds its
            // connection dead before it sends anything.
            std::thread::sleep(Duration::from_millis(400));
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(600));
                proxy.up();
            });
            Ok(Accepted::status(200))
        }
    };
    let dispatcher = Dispatcher::with_options(
        setup.ledger.clone(),
        Immediate::new(answer),
        Dispatch::new(),
    );
    let a = id("outcome-later");
    let receipt = dispatcher
        .delegate(Request::new("planner", "http://127.0.0.1:9/a2a").id(a.clone()))
        .await
        .unwrap();
    let settled = receipt.settled().await.unwrap();
    assert!(
        matches!(settled.outcome, Outcome::Delivered { .. }),
        "{settled:?}"
    );
    let stats = dispatcher.shutdown().await.unwrap();
    assert_eq!((stats.delivered, stats.unrecorded), (1, 0), "{stats:?}");
    let (ledger, schema) = (setup.ledger, setup.schema);
    let (status, seqs) = tokio::task::spawn_blocking({
        let a = a.clone();
        move || (ledger.status(&a).unwrap().status, seqs_in(&schema, &a))
    })
    .await
    .unwrap();
    assert_eq!(status, StatusKind::Delivered);
    assert_eq!(seqs, ["1", "2"], "the database holds the outcome once");
}

/// The target refuses the first attempt (offline, which the retry policy
/// retries), and as it does the server goes out of reach for about a second.
/// The failure and the next attempt's `queued` (one write) are tried again
/// once the server is back, so the blip costs no attempt: the task is
/// retried and delivered, not left failed with its retry lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_written_while_the_server_is_out_of_reach_is_written_when_it_is_back() {
    use delegation_log::Outcome;
    use delegation_log::dispatch::{Dispatcher, Options as Dispatch, Request, Retry};
    use delegation_log::transport::{Accepted, Failure, Immediate};

    let Some(setup) = setup("retry_later") else {
        return;
    };
    let proxy = Arc::new(setup.proxy);
    let calls = Arc::new(AtomicUsize::new(0));
    let answer = {
        let (proxy, calls) = (proxy.clone(), calls.clone());
        move |_: &delegation_log::transport::Message| {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return Ok(Accepted::status(200));
            }
            proxy.down();
            std::thread::sleep(Duration::from_millis(400));
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(600));
                proxy.up();
            });
            Err(Failure::offline("connection refused"))
        }
    };
    let policy = Retry::new()
        .max_attempts(3)
        .backoff(Duration::from_millis(10));
    let dispatcher = Dispatcher::with_options(
        setup.ledger.clone(),
        Immediate::new(answer),
        Dispatch::new().retry(policy),
    );
    let a = id("retry-later");
    let receipt = dispatcher
        .delegate(Request::new("planner", "http://127.0.0.1:9/a2a").id(a.clone()))
        .await
        .unwrap();
    let settled = receipt.settled().await.unwrap();
    assert!(
        matches!(settled.outcome, Outcome::Delivered { .. }),
        "{settled:?}"
    );
    assert_eq!(settled.attempt, 2, "{settled:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the target saw two attempts"
    );
    let stats = dispatcher.shutdown().await.unwrap();
    assert_eq!(stats.unrecorded, 0, "{stats:?}");
    let (ledger, schema) = (setup.ledger, setup.schema);
    let (status, first, retry) = tokio::task::spawn_blocking({
        let a = a.clone();
        move || {
            let retry = id("retry-later.r1");
            (
                ledger.task_status(&a).unwrap(),
                seqs_in(&schema, &a),
                seqs_in(&schema, &retry),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(status.status, StatusKind::Delivered, "{status:?}");
    assert_eq!(
        (first, retry),
        (
            vec!["1".to_owned(), "2".to_owned()],
            vec!["1".to_owned(), "2".to_owned()]
        )
    );
}
