//! Crash test against real sled: acknowledged means kept, through `kill -9`.
//!
//! This test binary (`harness = false`) re-spawns itself. A child (role from
//! `CRASH_ROLE=child`) opens a durable sled ledger, runs recovery, and then records
//! events for several delegations from two threads, printing each event to stdout
//! only after `record` acknowledged it. Its events are a pure function of the seed,
//! the iteration and the delegation, so the parent knows every event it could have
//! attempted. The parent kills each child with SIGKILL at a random moment, about
//! one in ten of them before it has finished opening the store, and then checks:
//!
//! - the store opens without a panic or an error;
//! - every acknowledged event is present, exactly as attempted;
//! - every delegation's seqs run from 1 without gaps;
//! - replay is legal: no delegation reads as damaged;
//! - every delegation's head (what `status` reads, alone) says what its history
//!   says: the record and its head are one atomic write (in the sled store's
//!   format 3, one value under the delegation's one key), so no kill falls
//!   between them;
//! - no phantom events: every stored event is one a child attempted (its planned
//!   event, or recovery's `interrupted` for a delegation an earlier child left
//!   queued);
//! - a second reopen gives an identical state;
//! - the store's audit finds no violation (its count of acknowledged records,
//!   kept outside sled, never leads what survived).
//!
//! A store is reused for eight children in a row, so recovery of a recovery gets
//! killed too, then a fresh one starts. `CRASH_KILLS` sets the number of kills
//! (100 by default), `CRASH_SEED` the seed (printed; the kill timing itself is not
//! reproducible).
//!
//! Modelled on sled's own `tests/test_crash_recovery.rs` (v0.34.7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio, exit};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::{DelegationId, Durability, Error, Event, FailureReason, Ledger, Record, Seq};

const ROLE: &str = "CRASH_ROLE";
const THREADS: u64 = 2;
/// How many children share one store before a fresh one starts.
const CHILDREN_PER_STORE: u64 = 8;
const RECOVERY_DETAIL: &str = "the process stopped before the outcome was known";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("child") => child(),
        Ok(other) => panic!("unknown {ROLE} {other:?}"),
        Err(_) => parent(),
    }
}

/// splitmix64: a tiny seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------
// What a child attempts: a pure function of (seed, iteration, thread, index)
// ---------------------------------------------------------------------------

/// The planned life of one delegation.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    queued: Event,
    /// The outcome, or `None` to leave it queued for recovery.
    outcome: Option<Event>,
    /// Whether to try a second, refused, outcome afterwards.
    duplicate: bool,
}

fn delegation(iteration: u64, thread: u64, index: u64) -> DelegationId {
    format!("i{iteration}-t{thread}-d{index}").parse().unwrap()
}

/// Parses an id made by [`delegation`].
fn parse_delegation(id: &DelegationId) -> (u64, u64, u64) {
    let mut parts = id.as_str().split('-');
    let mut field = |prefix: char| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(prefix))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("phantom delegation id {id}"))
    };
    (field('i'), field('t'), field('d'))
}

fn plan(seed: u64, iteration: u64, thread: u64, index: u64) -> Plan {
    let mut rng = Rng(seed ^ iteration.wrapping_mul(0x1000_0001) ^ (thread << 48) ^ index << 20);
    rng.next();
    let task = match rng.below(3) {
        0 => None,
        1 => Some(serde_json::json!({ "n": index, "text": "review the diff" })),
        _ => Some(serde_json::json!(
            "x".repeat(usize::try_from(rng.below(600)).unwrap())
        )),
    };
    let queued = Event::Queued(Queued {
        source: "planner".to_owned(),
        target: format!("http://127.0.0.1:{}/a2a", 9000 + rng.below(4)),
        task,
        retry_of: None,
        attempt: None,
        not_before: None,
    });
    let outcome = match rng.below(10) {
        0..=2 => None,
        3..=5 => {
            Some(Event::delivered([None, Some(200), Some(202)][rng.below(3) as usize]).unwrap())
        }
        choice => {
            let reason = match choice {
                6 => FailureReason::TargetOffline,
                7 => FailureReason::HttpStatus([404, 500, 503][rng.below(3) as usize]),
                8 => FailureReason::Timeout,
                _ => FailureReason::MarshalError,
            };
            Some(Event::failed(reason, Some(format!("detail {}", rng.below(1000)))).unwrap())
        }
    };
    Plan {
        duplicate: outcome.is_some() && rng.below(4) == 0,
        queued,
        outcome,
    }
}

fn interrupted() -> Event {
    Event::Failed(Failed {
        reason: FailureReason::Interrupted,
        detail: Some(RECOVERY_DETAIL.to_owned()),
    })
}

// ---------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------

fn child() {
    let seed = env_u64("CRASH_SEED").unwrap();
    let iteration = env_u64("CRASH_ITERATION").unwrap();
    let path = PathBuf::from(std::env::var("CRASH_DIR").unwrap());
    let ledger = Ledger::open_with(&path, Options::new().durability(Durability::Durable))
        .unwrap_or_else(|e| fail(&format!("open: {e}")));
    println!("opened");
    let recovered = ledger
        .recover()
        .unwrap_or_else(|e| fail(&format!("recover: {e}")));
    for id in recovered {
        println!("recovered {id}");
    }
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let ledger = &ledger;
            scope.spawn(move || {
                for index in 0.. {
                    let id = delegation(iteration, thread, index);
                    let plan = plan(seed, iteration, thread, index);
                    record(ledger, &id, plan.queued);
                    if let Some(outcome) = plan.outcome {
                        record(ledger, &id, outcome.clone());
                        if plan.duplicate {
                            match ledger.record(&id, outcome) {
                                Err(Error::AlreadySettled { .. }) => {}
                                other => fail(&format!("duplicate outcome for {id}: {other:?}")),
                            }
                        }
                    }
                }
            });
        }
    });
}

fn record(ledger: &Ledger, id: &DelegationId, event: Event) {
    match ledger.record(id, event) {
        Ok(recorded) => println!("ack {id} {}", recorded.seq),
        Err(e) => fail(&format!("record {id}: {e}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("child failed: {message}");
    exit(2)
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Figures {
    kills: u64,
    kills_during_open: u64,
    acknowledged_verified: u64,
    records_verified: u64,
}

fn parent() {
    let seed = env_u64("CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let kills = env_u64("CRASH_KILLS").unwrap_or(100);
    println!("crash test: seed {seed} (CRASH_SEED={seed} to reuse), {kills} kills");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut figures = Figures::default();
    let exe = std::env::current_exe().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut path = root.path().join("store-0");
    // How long a child takes from spawn to "opened", as last seen: kills during
    // open land anywhere in that window.
    let mut open_micros = 5_000;
    for iteration in 0..kills {
        if iteration % CHILDREN_PER_STORE == 0 {
            path = root.path().join(format!("store-{iteration}"));
        }
        let during_open = rng.below(10) == 0;
        let delay =
            Duration::from_micros(rng.below(if during_open { open_micros } else { 12_000 }));
        let (lines, opened_after) = run_child(&exe, &path, seed, iteration, during_open, delay);
        if let Some(opened_after) = opened_after {
            open_micros = u64::try_from(opened_after.as_micros()).unwrap().max(1);
        }
        figures.kills += 1;
        if !lines.iter().any(|line| line == "opened") {
            figures.kills_during_open += 1;
        }
        verify(&path, seed, iteration, &lines, &mut figures);
    }
    println!(
        "crash test passed: {} kills ({} during open), {} acknowledged events verified, \
         {} stored records checked, in {:.1} s (seed {seed})",
        figures.kills,
        figures.kills_during_open,
        figures.acknowledged_verified,
        figures.records_verified,
        started.elapsed().as_secs_f64(),
    );
}

/// Runs one child and kills it: right away (plus `delay`) when `during_open`,
/// otherwise `delay` after it said it opened the store. Returns its complete lines,
/// and how long it took to open when it was let open.
fn run_child(
    exe: &Path,
    path: &Path,
    seed: u64,
    iteration: u64,
    during_open: bool,
    delay: Duration,
) -> (Vec<String>, Option<Duration>) {
    let spawned = Instant::now();
    let mut child = Command::new(exe)
        .env(ROLE, "child")
        .env("CRASH_SEED", seed.to_string())
        .env("CRASH_ITERATION", iteration.to_string())
        .env("CRASH_DIR", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (opened_tx, opened_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            // A line cut short by the kill was never fully printed: ignore it.
            if let Some(complete) = line.strip_suffix('\n') {
                if complete == "opened" {
                    let _ = opened_tx.send(());
                }
                lines.push(complete.to_owned());
            }
            line.clear();
        }
        lines
    });
    let mut opened_after = None;
    if !during_open {
        opened_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child did not open the store within a minute");
        opened_after = Some(spawned.elapsed());
    }
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    assert!(
        status.signal() == Some(9),
        "child {iteration} was not killed but ended with {status:?}; its output ended with {:?}",
        lines.last()
    );
    (lines, opened_after)
}

/// The whole state of a store: every delegation's checked history.
fn snapshot(ledger: &Ledger) -> BTreeMap<DelegationId, Vec<Record>> {
    let mut state = BTreeMap::new();
    for delegation in ledger.replay() {
        let delegation = delegation.unwrap_or_else(|e| panic!("replay is not legal: {e}"));
        let history = ledger
            .history(&delegation.id)
            .unwrap_or_else(|e| panic!("history of {}: {e}", delegation.id));
        assert_eq!(history.len() as Seq, delegation.seq);
        // The record and its head are one atomic write: no kill falls between
        // them, so the head (what `status` reads, alone) says what the history
        // says.
        let status = ledger
            .status(&delegation.id)
            .unwrap_or_else(|e| panic!("status of {}: {e}", delegation.id));
        assert_eq!(
            status,
            delegation.status(),
            "the head disagrees after a kill"
        );
        state.insert(delegation.id, history);
    }
    state
}

fn open(path: &Path) -> Ledger {
    match Ledger::open(path) {
        Ok(ledger) => ledger,
        Err(e) => panic!("the store did not open after a kill: {e}"),
    }
}

fn verify(path: &Path, seed: u64, iteration: u64, lines: &[String], figures: &mut Figures) {
    if !path.exists() {
        // Killed before sled created anything.
        assert!(lines.iter().all(|line| line == "opened"), "{lines:?}");
        return;
    }
    let state = {
        let ledger = open(path);
        snapshot(&ledger)
    };
    // No phantom events, no gaps.
    for (id, history) in &state {
        let (born, thread, index) = parse_delegation(id);
        assert!(
            born <= iteration && thread < THREADS,
            "phantom delegation {id}"
        );
        let plan = plan(seed, born, thread, index);
        for (position, record) in history.iter().enumerate() {
            assert_eq!(record.seq, position as Seq + 1, "gap in {id}");
            let legal = match record.seq {
                1 => record.event == plan.queued,
                2 => {
                    Some(&record.event) == plan.outcome.as_ref()
                        || (born < iteration && record.event == interrupted())
                }
                _ => false,
            };
            assert!(legal, "phantom event in {id}: {record:?}, planned {plan:?}");
            figures.records_verified += 1;
        }
    }
    // Every acknowledged event is there.
    for line in lines {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("opened"), None, None) => {}
            (Some("ack"), Some(id), Some(seq)) => {
                let id: DelegationId = id.parse().unwrap();
                let seq: Seq = seq.parse().unwrap();
                let (born, thread, index) = parse_delegation(&id);
                assert_eq!(born, iteration);
                let plan = plan(seed, born, thread, index);
                let expected = if seq == 1 {
                    Some(&plan.queued)
                } else {
                    plan.outcome.as_ref()
                };
                let stored = state
                    .get(&id)
                    .and_then(|history| history.get(seq as usize - 1))
                    .unwrap_or_else(|| panic!("acknowledged {id} seq {seq} was lost"));
                assert_eq!(Some(&stored.event), expected, "acknowledged {id} seq {seq}");
                figures.acknowledged_verified += 1;
            }
            (Some("recovered"), Some(id), None) => {
                let id: DelegationId = id.parse().unwrap();
                let stored = state.get(&id).and_then(|history| history.get(1));
                assert_eq!(
                    stored.map(|r| &r.event),
                    Some(&interrupted()),
                    "recovered {id} is not settled as interrupted"
                );
                figures.acknowledged_verified += 1;
            }
            _ => panic!("unexpected child output {line:?}"),
        }
    }
    // A second reopen sees the same.
    let again = snapshot(&open(path));
    assert_eq!(state, again, "a second reopen gave a different state");
    // The store's own audit agrees: its count of acknowledged records never leads
    // what survived the kill, so nothing is reported lost. (Pending delegations are
    // expected after a kill; violations are not.)
    let verdict = delegation_log::audit::audit_path(path, &delegation_log::SystemClock)
        .unwrap_or_else(|e| panic!("the store could not be audited after a kill: {e}"));
    assert!(
        verdict.violations.is_empty(),
        "audit after a kill: {}",
        verdict.to_plain()
    );
}
