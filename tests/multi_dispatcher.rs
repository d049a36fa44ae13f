//! Guards "several dispatchers, one ledger" (issue 14) with real processes: three
//! dispatcher processes share one PostgreSQL schema and deliver over A2A HTTP to
//! two loopback targets, one answering at once and one holding every answer, so
//! that deliveries are in flight. One process is killed with SIGKILL mid-delivery;
//! the two survivors, already running and never called again, recover on their
//! own timer (`Options::recover_every`, 250 ms, redeliver policy), and take its
//! held delegations over once its lease has run out, never their own live ones.
//!
//! Then, from both sides: no delegation is left `queued`; each has exactly two
//! records (none settles twice); the store audits clean; each of the dead
//! process's held delegations was taken over by exactly one survivor and
//! redelivered once, linked by `retry_of`; and what the targets saw (each
//! `messageId` and delegation) agrees with the log: every delivery once, the
//! dead process's held tasks twice under one `messageId` (the recorded retry).
//!
//! A `harness = false` test that re-spawns itself; a child's role comes from
//! `DELEGATION_LOG_FLEET_CHILD` (its name). Needs `DATABASE_URL`
//! (`bash .ci/postgres`); under `CI=true` its absence fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use delegation_log::dispatch::{Dispatcher, Options, Recovery, Request};
use delegation_log::event::ReasonCode;
use delegation_log::lifecycle::State;
use delegation_log::transport::Http;
use delegation_log::{DelegationId, Ledger, StatusKind};
use serde_json::{Value, json};
use support::id;
use tokio::sync::Semaphore;

const CHILD: &str = "DELEGATION_LOG_FLEET_CHILD";
const URL: &str = "DELEGATION_LOG_FLEET_URL";
const QUICK: &str = "DELEGATION_LOG_FLEET_QUICK";
const HELD: &str = "DELEGATION_LOG_FLEET_HELD";
/// Each process's lease: the survivors take over at most this long after the
/// kill (and a recovery period), and at least about two thirds of it. Long
/// enough that no heartbeat of a process sharing two loaded cores with the
/// others is late enough to let it lapse (one is due every third of it).
const LEASE: Duration = Duration::from_secs(3);
/// Tasks per process, every other one to the held target.
const TASKS: usize = 6;
const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
/// The process that is killed.
const DEAD: &str = "alpha";
/// How long any wait of the parent may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    if let Ok(name) = std::env::var(CHILD) {
        child(&name);
        return;
    }
    let Some(schema) = pg_support::fresh("fleet") else {
        return;
    };
    let started = Instant::now();
    let takeover = three_dispatchers_one_killed_survivors_recover_only_its_delegations(&schema);
    println!(
        "multi_dispatcher: 3 processes, 1 killed with SIGKILL mid-delivery, its held \
         deliveries taken over {takeover:.1?} after the kill (lease {LEASE:?}); log, \
         audit, claims and targets agree ({:.1?})",
        started.elapsed()
    );
}

/// One dispatcher process: delegates its tasks, says so, then says what its
/// periodic recovery (with redelivery, every 250 ms) did until its stdin
/// closes; then shuts down.
fn child(name: &str) {
    let url = std::env::var(URL).unwrap();
    let targets = [std::env::var(QUICK).unwrap(), std::env::var(HELD).unwrap()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ledger = Ledger::open_url(&url).unwrap();
        let dispatcher = Dispatcher::with_options(
            ledger,
            Http::new().unwrap(),
            Options::new()
                .lease(LEASE)
                .deadline(Duration::from_secs(60))
                .recover_every(Some(Duration::from_millis(250)))
                .recovery(Recovery::Redeliver),
        );
        let mut out = std::io::stdout();
        for n in 0..TASKS {
            let id: DelegationId = format!("{name}-{n:02}").parse().unwrap();
            let target = &targets[n % 2];
            let receipt = dispatcher
                .delegate(Request::new(name, target).id(id).task(&format!("task {n}")))
                .await
                .unwrap();
            writeln!(out, "queued {}", receipt.id).unwrap();
        }
        writeln!(out, "delegated").unwrap();
        out.flush().unwrap();
        let (closed, mut stdin_closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = closed.send(());
        });
        loop {
            let report = tokio::select! {
                _ = &mut stdin_closed => break,
                report = dispatcher.next_recovery() => report,
            };
            let Some(report) = report else { break };
            for recovered in report.recovered {
                let redelivery = recovered.redelivery.map(|r| r.id.to_string());
                writeln!(
                    out,
                    "took {} as {}",
                    recovered.id,
                    redelivery.unwrap_or_default()
                )
                .unwrap();
            }
            for failed in report.failed {
                writeln!(out, "unrecovered {failed}").unwrap();
            }
            out.flush().unwrap();
        }
        match dispatcher.shutdown().await {
            Ok(_) => writeln!(out, "done").unwrap(),
            Err(e) => writeln!(out, "shutdown failed: {e}").unwrap(),
        }
        out.flush().unwrap();
    });
}

/// What a target was sent: (messageId, delegationId) for each request, in order.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// The two loopback targets, on a thread and runtime of their own.
struct Targets {
    quick: SocketAddr,
    held: SocketAddr,
    quick_seen: Seen,
    held_seen: Seen,
    gate: Arc<Semaphore>,
}

fn answer(request: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "kind": "message", "messageId": "ok", "role": "agent", "contextId": "c",
        "parts": [{"kind": "text", "text": "on it"}]
    }})
}

fn target(seen: Seen, gate: Option<Arc<Semaphore>>) -> Router {
    Router::new().route(
        "/a2a",
        post(move |axum::Json(request): axum::Json<Value>| {
            let (seen, gate) = (Arc::clone(&seen), gate.clone());
            async move {
                let message = &request["params"]["message"];
                seen.lock().unwrap().push((
                    message["messageId"].as_str().unwrap_or("?").to_owned(),
                    message["metadata"]["delegationId"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned(),
                ));
                if let Some(gate) = gate
                    && let Ok(permit) = gate.acquire().await
                {
                    permit.forget();
                }
                axum::Json(answer(&request))
            }
        }),
    )
}

fn start_targets() -> Targets {
    let (quick_seen, held_seen): (Seen, Seen) = (Seen::default(), Seen::default());
    let gate = Arc::new(Semaphore::new(0));
    let bind = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    };
    let (quick, held) = (bind(), bind());
    let targets = Targets {
        quick: quick.local_addr().unwrap(),
        held: held.local_addr().unwrap(),
        quick_seen: Arc::clone(&quick_seen),
        held_seen: Arc::clone(&held_seen),
        gate: Arc::clone(&gate),
    };
    // Serves until the process ends.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let quick = tokio::net::TcpListener::from_std(quick).unwrap();
            let held = tokio::net::TcpListener::from_std(held).unwrap();
            let quick = axum::serve(quick, target(quick_seen, None));
            let held = axum::serve(held, target(held_seen, Some(gate)));
            let _ = tokio::join!(quick, held);
        });
    });
    targets
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/a2a")
}

/// Polls `check` every 20 ms until it holds; fails after [`PATIENCE`].
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running child, with its stdout lines arriving on `lines`.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
}

fn spawn(name: &str, db: &str, targets: &Targets) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, name)
        .env(URL, db)
        .env(QUICK, url(targets.quick))
        .env(HELD, url(targets.held))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    Running {
        child,
        lines,
        reader,
    }
}

impl Running {
    /// Every line up to and including `last`.
    fn lines_until(&self, last: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("waiting for `{last}`: {e}; so far {lines:?}"));
            let done = line == last;
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// Returns how long after the kill the last of the dead process's held
/// deliveries was taken over.
fn three_dispatchers_one_killed_survivors_recover_only_its_delegations(
    schema: &pg_support::Schema,
) -> Duration {
    let sep = if schema.url.contains('?') { '&' } else { '?' };
    let db = format!("{}{sep}schema={}", schema.url, schema.name);
    let targets = start_targets();
    let mut running: BTreeMap<&str, Running> = NAMES
        .iter()
        .map(|name| (*name, spawn(name, &db, &targets)))
        .collect();
    let mut queued: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, child) in &running {
        let lines = child.lines_until("delegated");
        queued.insert(
            name,
            lines
                .into_iter()
                .filter_map(|l| l.strip_prefix("queued ").map(str::to_owned))
                .collect(),
        );
    }
    for (name, ids) in &queued {
        assert_eq!(ids.len(), TASKS, "{name}");
    }
    let held_of = |name: &str| -> Vec<String> {
        (0..TASKS)
            .filter(|n| n % 2 == 1)
            .map(|n| format!("{name}-{n:02}"))
            .collect()
    };
    let quick_of = |name: &str| -> Vec<String> {
        (0..TASKS)
            .filter(|n| n % 2 == 0)
            .map(|n| format!("{name}-{n:02}"))
            .collect()
    };
    // Every held delivery is in flight at the held target.
    let held_total = NAMES.len() * TASKS / 2;
    until("every held delivery reached the held target", || {
        targets.held_seen.lock().unwrap().len() == held_total
    });
    let ledger = Ledger::open_url(&db).unwrap();
    until("the quick deliveries settled", || {
        NAMES
            .iter()
            .flat_map(|n| quick_of(n))
            .all(|q| ledger.status(&id(&q)).unwrap().status == StatusKind::Delivered)
    });

    // SIGKILL mid-delivery.
    let mut dead = running.remove(DEAD).unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed = Instant::now();
    for held in held_of(DEAD) {
        assert_eq!(
            ledger.status(&id(&held)).unwrap().status,
            StatusKind::Queued
        );
    }
    until(
        "the survivors took the dead process's deliveries over",
        || {
            held_of(DEAD)
                .iter()
                .all(|h| ledger.status(&id(h)).unwrap().status == StatusKind::Failed)
        },
    );
    let takeover = killed.elapsed();
    assert!(
        // The next renewal was due at most a third of a lease after the last
        // one, so about two thirds of the lease were left at the kill;
        // asserting one third allows that renewal to be a third of a lease
        // late.
        takeover >= LEASE / 3,
        "taken over {takeover:?} after the kill, too soon for a lease of {LEASE:?}"
    );
    // The survivors' own held deliveries are still in flight, and were left alone.
    for name in NAMES.iter().filter(|n| **n != DEAD) {
        for held in held_of(name) {
            assert_eq!(
                ledger.status(&id(&held)).unwrap().status,
                StatusKind::Queued,
                "{held}"
            );
        }
    }
    until("the redeliveries reached the held target", || {
        targets.held_seen.lock().unwrap().len() == held_total + held_of(DEAD).len()
    });
    targets.gate.add_permits(1 << 20);
    let mut said: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, mut child) in running {
        drop(child.child.stdin.take());
        let lines = child.lines_until("done");
        assert!(child.child.wait().unwrap().success(), "{name}: {lines:?}");
        child.reader.join().unwrap();
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("unrecovered") || l.starts_with("shutdown failed")),
            "{name}: {lines:?}"
        );
        said.insert(name, lines);
    }

    // Each of the dead process's held delegations was taken by exactly one survivor.
    let mut took: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (name, lines) in &said {
        for line in lines {
            if let Some(rest) = line.strip_prefix("took ") {
                let (original, redelivery) = rest.split_once(" as ").unwrap();
                let previous = took.insert(
                    original.to_owned(),
                    (name.to_string(), redelivery.to_owned()),
                );
                assert!(
                    previous.is_none(),
                    "{original} taken twice: {previous:?} and {name}"
                );
            }
        }
    }
    assert_eq!(
        took.keys().cloned().collect::<BTreeSet<_>>(),
        held_of(DEAD).into_iter().collect::<BTreeSet<_>>(),
        "only the dead process's in-flight delegations are taken over"
    );

    // The log: nothing queued, two records each, the audit clean.
    assert!(ledger.queued().unwrap().is_empty());
    let all: Vec<_> = ledger.replay().map(Result::unwrap).collect();
    assert_eq!(all.len(), NAMES.len() * TASKS + held_of(DEAD).len());
    for delegation in &all {
        assert_eq!(
            ledger.history(&delegation.id).unwrap().len(),
            2,
            "{}: queued and one outcome",
            delegation.id
        );
        let text = delegation.id.as_str();
        if let Some((_, (_, redelivery))) = took.get_key_value(text) {
            let status = ledger.status(&delegation.id).unwrap();
            assert_eq!(status.reason, Some(ReasonCode::Interrupted), "{text}");
            assert_eq!(
                status.error_detail,
                Some(format!("redelivered as {redelivery}"))
            );
            assert_eq!(redelivery, &format!("{text}.r1"));
        } else {
            assert_eq!(delegation.state, State::Delivered, "{text}");
        }
        if let Some(original) = &delegation.retry_of {
            assert!(
                took.contains_key(original.as_str()),
                "{text} retries {original}"
            );
            assert_eq!(delegation.attempt, 2);
        }
    }
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    // The database: every claim released; only the dead lease is left, run out.
    assert_eq!(
        schema.query("SELECT count(*) FROM claims"),
        vec![vec![Some("0".into())]]
    );
    assert_eq!(
        schema.query("SELECT count(*), bool_and(lease_until < now()) FROM dispatchers"),
        vec![vec![Some("1".into()), Some("t".into())]]
    );

    // The targets agree with the log: each delivered delegation's message went to
    // its target under its first attempt's id, and nothing else did, except the
    // dead process's held tasks, sent twice under one messageId (the retry).
    let expect = |pairs: Vec<(String, String)>| {
        let mut pairs = pairs;
        pairs.sort();
        pairs
    };
    let quick_log: Vec<(String, String)> = all
        .iter()
        .filter(|d| d.target == url(targets.quick))
        .map(|d| (d.id.to_string(), d.id.to_string()))
        .collect();
    let held_log: Vec<(String, String)> = all
        .iter()
        .filter(|d| d.target == url(targets.held))
        .map(|d| {
            let first = ledger.first_attempt(&d.id).unwrap().unwrap();
            (first.to_string(), d.id.to_string())
        })
        .collect();
    assert_eq!(
        expect(targets.quick_seen.lock().unwrap().clone()),
        expect(quick_log)
    );
    assert_eq!(
        expect(targets.held_seen.lock().unwrap().clone()),
        expect(held_log)
    );
    let held_ids: Vec<String> = targets
        .held_seen
        .lock()
        .unwrap()
        .iter()
        .map(|(m, _)| m.clone())
        .collect();
    for original in held_of(DEAD) {
        assert_eq!(
            held_ids.iter().filter(|m| **m == original).count(),
            2,
            "{original}"
        );
    }
    takeover
}
