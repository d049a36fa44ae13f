//! Guards "never stuck" across a process death, on a real sled store: a child
//! process delegates to a target that never answers, prints each id once
//! `delegate` has returned (so `queued` is durable), and is killed with SIGKILL.
//! The parent reopens the store and recovers. Under the default policy every
//! printed delegation ends `failed / interrupted`; under the redeliver policy each
//! also names its redelivery, which is sent under the original id as the message id
//! and delivered. None is ever left `queued`.
//!
//! Then recovery itself is killed: a child runs `recover` with redelivery over a
//! store of many orphans and is killed with SIGKILL midway. Every original it
//! failed names a redelivery that exists and retries it, every retry's original
//! failed, the store audits clean, and the next recovery finishes the job.
//!
//! A `harness = false` test that re-spawns itself; the role comes from
//! `DELEGATION_LOG_CRASH_CHILD` (the store path, for a delegating child) or
//! `DELEGATION_LOG_RECOVER_CHILD` (the store path, for a recovering child).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use delegation_log::dispatch::{Dispatcher, Recovery, Request};
use delegation_log::event::ReasonCode;
use delegation_log::{DelegationId, Event, Ledger, StatusKind};
use delivery_support::{Silent, recording};

const CHILD: &str = "DELEGATION_LOG_CRASH_CHILD";
const RECOVER_CHILD: &str = "DELEGATION_LOG_RECOVER_CHILD";
const DELEGATIONS: usize = 6;
/// Orphans a killed recovery starts from.
const ORPHANS: usize = 60;
/// Recoveries killed midway.
const RECOVERY_KILLS: u64 = 4;

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(Path::new(&path));
        return;
    }
    if let Ok(path) = std::env::var(RECOVER_CHILD) {
        recovering_child(Path::new(&path));
        return;
    }
    let started = std::time::Instant::now();
    for round in 0..3 {
        killed_child_leaves_nothing_queued_after_default_recovery(round);
    }
    killed_child_is_redelivered_under_the_original_message_id();
    let mut midway = 0;
    for round in 0..RECOVERY_KILLS {
        midway +=
            u64::from(a_recovery_killed_midway_never_leaves_an_original_without_its_retry(round));
    }
    println!(
        "recovery_crash: {} children killed with SIGKILL ({RECOVERY_KILLS} during \
         recovery, {midway} of them midway), all recovered ({:.1?})",
        4 + RECOVERY_KILLS,
        started.elapsed()
    );
}

/// Runs `future` to its end on a runtime of this thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Opens the store, says so, and redelivers every orphan to a target that never
/// answers, until it is killed.
fn recovering_child(path: &Path) {
    block_on(async {
        let ledger = Ledger::open(path).unwrap();
        let dispatcher = Dispatcher::new(ledger, Silent);
        println!("recovering");
        std::io::stdout().flush().unwrap();
        let report = dispatcher.recover(Recovery::Redeliver).await;
        assert!(report.is_complete(), "{:?}", report.failed);
        println!("done");
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

/// Kills a recovering child after a delay that varies by round, then checks the
/// pairing of originals and retries; returns whether the kill came midway (some
/// orphans redelivered, some not).
fn a_recovery_killed_midway_never_leaves_an_original_without_its_retry(round: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let orphans: Vec<DelegationId> = (0..ORPHANS)
        .map(|n| format!("orphan-{n:03}").parse().unwrap())
        .collect();
    {
        let ledger = Ledger::open(&path).unwrap();
        for id in &orphans {
            ledger
                .record(id, Event::queued("planner", "silent"))
                .unwrap();
        }
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(RECOVER_CHILD, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "recovering");
    // Spread the kills over the recovery: about 1 ms per durable redelivery.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let delay = 2 + (u64::from(nanos) + round * 7) % 25;
    std::thread::sleep(std::time::Duration::from_millis(delay));
    child.kill().unwrap();
    child.wait().unwrap();

    let ledger = Ledger::open(&path).unwrap();
    let mut redelivered = 0;
    for original in &orphans {
        let status = ledger.status(original).unwrap();
        match status.status {
            StatusKind::Queued => {}
            StatusKind::Failed => {
                redelivered += 1;
                let detail = status.error_detail.unwrap();
                let retry: DelegationId = detail
                    .strip_prefix("redelivered as ")
                    .unwrap_or_else(|| panic!("{original}: {detail}"))
                    .parse()
                    .unwrap();
                let retry = ledger
                    .delegation(&retry)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{original} names {retry}, which does not exist"));
                assert_eq!(retry.retry_of.as_ref(), Some(original));
                assert_eq!(retry.state, delegation_log::lifecycle::State::Queued);
            }
            other => panic!("{original} is {other:?}"),
        }
    }
    for delegation in ledger.replay() {
        let delegation = delegation.unwrap();
        if let Some(original) = &delegation.retry_of {
            assert_eq!(
                ledger.status(original).unwrap().status,
                StatusKind::Failed,
                "{} retries {original}, which has not failed",
                delegation.id
            );
        }
    }
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());

    // The next recovery finishes the job: every task delivered, under its first id.
    let (transport, sent) = recording();
    block_on(async {
        let dispatcher = Dispatcher::new(ledger.clone(), transport);
        let report = dispatcher.recover(Recovery::Redeliver).await;
        assert!(report.is_complete(), "{:?}", report.failed);
        dispatcher.shutdown().await.unwrap();
    });
    assert!(ledger.queued().unwrap().is_empty());
    let mut sent: Vec<DelegationId> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, message_id)| message_id.clone())
        .collect();
    sent.sort();
    assert_eq!(
        sent, orphans,
        "each task goes out once more, under its first id"
    );
    assert!(ledger.audit().unwrap().is_clean());
    redelivered > 0 && redelivered < ORPHANS
}

/// Delegates, prints each acknowledged id, then waits to be killed.
fn child(path: &Path) {
    block_on(async {
        let ledger = Ledger::open(path).unwrap();
        let dispatcher = Dispatcher::new(ledger, Silent);
        let mut stdout = std::io::stdout();
        for n in 0..DELEGATIONS {
            let receipt = dispatcher
                .delegate(Request::new("planner", "silent").task(&format!("task {n}")))
                .await
                .unwrap();
            writeln!(stdout, "{}", receipt.id).unwrap();
            stdout.flush().unwrap();
        }
        writeln!(stdout, "done").unwrap();
        stdout.flush().unwrap();
        std::future::pending::<()>().await;
    });
}

/// Runs a child on `path`, kills it with SIGKILL once it has printed every id,
/// and returns the ids.
fn run_and_kill(path: &Path) -> Vec<DelegationId> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut ids = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line == "done" {
            break;
        }
        ids.push(line.parse().unwrap());
    }
    // std's Child::kill sends SIGKILL on unix.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(ids.len(), DELEGATIONS, "the child died early");
    ids
}

fn killed_child_leaves_nothing_queued_after_default_recovery(round: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let ids = run_and_kill(&path);

    let ledger = Ledger::open(&path).unwrap();
    for id in &ids {
        assert_eq!(
            ledger.status(id).unwrap().status,
            StatusKind::Queued,
            "round {round}"
        );
    }
    let mut recovered = ledger.recover().unwrap();
    recovered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(recovered, expected, "round {round}");
    for id in &ids {
        let status = ledger.status(id).unwrap();
        assert_eq!(status.status, StatusKind::Failed);
        assert_eq!(status.reason, Some(ReasonCode::Interrupted));
    }
    assert!(ledger.queued().unwrap().is_empty());
}

fn killed_child_is_redelivered_under_the_original_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let ids = run_and_kill(&path);

    let ledger = Ledger::open(&path).unwrap();
    let (transport, sent) = recording();
    block_on(async {
        let dispatcher = Dispatcher::new(ledger.clone(), transport);
        let report = dispatcher.recover(Recovery::Redeliver).await;
        assert!(report.is_complete(), "{:?}", report.failed);
        assert_eq!(report.recovered.len(), ids.len());
        dispatcher.shutdown().await.unwrap();
    });
    for id in &ids {
        let redelivery: DelegationId = format!("{id}.r1").parse().unwrap();
        let original = ledger.status(id).unwrap();
        assert_eq!(original.reason, Some(ReasonCode::Interrupted));
        assert_eq!(
            original.error_detail,
            Some(format!("redelivered as {redelivery}"))
        );
        assert_eq!(
            ledger.status(&redelivery).unwrap().status,
            StatusKind::Delivered
        );
        assert!(sent.lock().unwrap().contains(&(redelivery, id.clone())));
    }
    assert!(ledger.queued().unwrap().is_empty());
}
