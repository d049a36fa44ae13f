//! Guards `delegation-log tail --db postgres://…`: it prints what other processes
//! write, each event exactly once, in seq order per delegation, even when
//! transactions commit in another order than they began (the hazard of tailing by
//! a sequence: a row that commits late behind a higher one is skipped). Two
//! writers are held inside their transactions by advisory locks (a trigger on
//! `records`) while others commit, then let go in reverse order. SIGTERM and
//! SIGINT (Ctrl-C) each end `tail` with exit 0. Needs `DATABASE_URL` (`bash
//! .ci/postgres`); under `CI=true` its absence fails.
#![cfg(all(feature = "cli", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;

use std::collections::{HashMap, HashSet};
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use delegation_log::store::{Connect, Postgres};
use delegation_log::{DelegationId, Event, Ledger};

const HOLD: &str = "
    CREATE FUNCTION hold_late() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.delegation = convert_to('late-a', 'UTF8') THEN
            PERFORM pg_advisory_xact_lock(7271);
        ELSIF NEW.delegation = convert_to('late-b', 'UTF8') THEN
            PERFORM pg_advisory_xact_lock(7272);
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER hold_late BEFORE INSERT ON records
        FOR EACH ROW EXECUTE FUNCTION hold_late();";

/// A `tail` child, killed and reaped when dropped still running: a test that
/// fails midway leaves no tail polling the server.
struct Reaped(Child);

impl Reaped {
    fn spawn(command: &mut Command) -> Self {
        Reaped(command.spawn().unwrap())
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn url_of(schema: &pg_support::Schema) -> String {
    let sep = if schema.url.contains('?') { '&' } else { '?' };
    format!("{}{sep}schema={}", schema.url, schema.name)
}

/// Holds advisory lock `key` on a session of its own until `release` is sent.
fn hold(url: &str, key: i64) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release, released) = mpsc::channel::<()>();
    let (held, holding) = mpsc::channel::<()>();
    let url = url.to_owned();
    let thread = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .unwrap();
        held.send(()).unwrap();
        let _ = released.recv();
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .unwrap();
    });
    holding.recv_timeout(Duration::from_secs(10)).unwrap();
    (release, thread)
}

/// Polls `done` until it holds, or panics at the deadline with `what`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The (delegation, seq) of each line `tail --json` printed so far.
struct Printed {
    lines: mpsc::Receiver<String>,
    seen: Vec<(String, u64)>,
}

impl Printed {
    fn drain(&mut self) -> &[(String, u64)] {
        while let Ok(line) = self.lines.try_recv() {
            let record: serde_json::Value = serde_json::from_str(&line).unwrap();
            self.seen.push((
                record["delegation"].as_str().unwrap().to_owned(),
                record["seq"].as_u64().unwrap(),
            ));
        }
        &self.seen
    }

    fn has(&mut self, id: &str, seq: u64) -> bool {
        self.drain().iter().any(|(d, s)| d == id && *s == seq)
    }
}

#[test]
fn tail_prints_every_event_other_processes_commit_once_whatever_the_commit_order() {
    let Some(schema) = pg_support::fresh("tail_cli") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Default::default());
    let id = |s: &str| -> DelegationId { s.parse().unwrap() };
    let queued = || Event::queued("planner", "http://127.0.0.1:9/a2a");
    ledger.record(&id("before"), queued()).unwrap();
    schema.execute(HOLD);

    let mut child = Reaped::spawn(
        Command::new(env!("CARGO_BIN_EXE_delegation-log"))
            .args([
                "tail",
                "--db",
                &url_of(&schema),
                "--json",
                "--interval-ms",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = child.stdout.take().unwrap();
    let (line, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for text in std::io::BufReader::new(stdout).lines() {
            let _ = line.send(text.unwrap());
        }
    });
    let mut printed = Printed {
        lines,
        seen: Vec::new(),
    };
    until("the log already there", || printed.has("before", 1));

    // Two writers begin and are held inside their transactions, `late-a` first.
    let (release_a, locker_a) = hold(&schema.url, 7271);
    let (release_b, locker_b) = hold(&schema.url, 7272);
    // Each on a store and a ledger of its own, as in a process of its own: one
    // ledger's writers take turns to append, and a store's connections are
    // few, so held ones would hold up the others. The stores connect first:
    // connecting checks the schema, which would wait for a held writer.
    let mut stores = [(); 2]
        .map(|()| {
            Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone())).unwrap()
        })
        .into_iter();
    let mut writer = |name: &'static str| {
        let store = stores.next().unwrap();
        let ledger = Ledger::with_store(std::sync::Arc::new(store), Default::default());
        std::thread::spawn(move || {
            ledger.record(&name.parse().unwrap(), queued()).unwrap();
        })
    };
    let late_a = writer("late-a");
    // A writer waits on advisory lock `key` (classid 0, objid `key`).
    let waiting = |key: u32| {
        let sql = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = 0 AND objid = {key} AND NOT granted"
        );
        schema.query(&sql)[0][0].as_deref() == Some("1")
    };
    until("late-a to wait inside its transaction", || waiting(7271));
    let late_b = writer("late-b");
    until("late-b to wait inside its transaction", || waiting(7272));

    // Meanwhile others commit, and tail prints them.
    for n in 0..20 {
        let early = id(&format!("early-{n:02}"));
        ledger.record(&early, queued()).unwrap();
        ledger
            .record(&early, Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    until("the early commits", || printed.has("early-19", 2));
    assert!(!printed.has("late-a", 1) && !printed.has("late-b", 1));

    // Let go in reverse order: late-b commits, then late-a, the first to begin.
    release_b.send(()).unwrap();
    late_b.join().unwrap();
    until("late-b", || printed.has("late-b", 1));
    release_a.send(()).unwrap();
    late_a.join().unwrap();
    until("late-a", || printed.has("late-a", 1));
    ledger
        .record(&id("late-a"), Event::delivered(Some(200)).unwrap())
        .unwrap();
    until("late-a's outcome", || printed.has("late-a", 2));
    locker_a.join().unwrap();
    locker_b.join().unwrap();

    // SIGTERM ends it cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");

    // Every record of the log, once; each delegation's in seq order.
    let seen = printed.drain().to_vec();
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "printed twice: {seen:?}");
    let mut logged = HashSet::new();
    for delegation in ledger.replay() {
        let delegation = delegation.unwrap();
        for record in ledger.history(&delegation.id).unwrap() {
            logged.insert((record.delegation.to_string(), record.seq));
        }
    }
    assert_eq!(logged.len(), 1 + 2 + 40 + 1);
    assert_eq!(unique, logged, "skipped or extra");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (delegation, seq) in &seen {
        let before = last.insert(delegation, *seq).unwrap_or(0);
        assert_eq!(*seq, before + 1, "{delegation} out of order: {seen:?}");
    }
}

#[test]
fn tail_ends_with_exit_0_on_ctrl_c() {
    let Some(schema) = pg_support::fresh("tail_int") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Default::default());
    ledger
        .record(
            &"only".parse().unwrap(),
            Event::queued("planner", "http://127.0.0.1:9/a2a"),
        )
        .unwrap();
    let mut child = Reaped::spawn(
        Command::new(env!("CARGO_BIN_EXE_delegation-log"))
            .args(["tail", "--db", &url_of(&schema)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(" only seq 1 queued planner -> "), "{first}");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
}
