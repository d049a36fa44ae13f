//! Guards the sender's view of a task that gave up: delegated over real HTTP to
//! a closed loopback port with three attempts allowed, every attempt fails as
//! `target_offline` (which the policy retries), and the third is the last.
//! From any attempt's id the ledger then says the same thing: three attempts,
//! the latest failed, nothing waiting, `exhausted`; `dead` lists the task once,
//! `pending` lists nothing; `status --json` of the first id carries the same
//! view; and the store's audit finds every retry link sound.
#![cfg(all(feature = "http", feature = "cli"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod delivery_support;
mod support;

use std::time::Duration;

use delegation_log::dispatch::{Dispatcher, Options, Request, Retry};
use delegation_log::transport::Http;
use delegation_log::{DelegationId, Ledger, Outcome, StatusKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_every_attempt_is_exhausted_dead_and_read_the_same_from_any_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let ledger = Ledger::open(&path).unwrap();
    let target = support::closed_port_url();
    let policy = Retry::new()
        .max_attempts(3)
        .backoff(Duration::from_millis(10))
        .jitter_seed(7);
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        Http::new().unwrap(),
        Options::new().retry(policy),
    );
    let id: DelegationId = "offline".parse().unwrap();
    let receipt = dispatcher
        .delegate(Request::new("planner", target).id(id.clone()).task("t"))
        .await
        .unwrap();
    let settled = receipt.settled().await.unwrap();
    dispatcher.shutdown().await.unwrap();
    assert_eq!(settled.attempt, 3, "{settled:?}");
    assert_eq!(settled.id.as_str(), "offline.r2");
    assert!(
        matches!(settled.outcome, Outcome::Failed { .. }),
        "{settled:?}"
    );

    let views: Vec<_> = ["offline", "offline.r1", "offline.r2"]
        .iter()
        .map(|id| ledger.attempts(&id.parse().unwrap()).unwrap().unwrap())
        .collect();
    for view in &views {
        assert_eq!(view, &views[0]);
    }
    let view = &views[0];
    assert_eq!(view.first, id);
    assert_eq!(view.latest.as_str(), "offline.r2");
    assert_eq!(view.count, 3);
    assert_eq!(view.latest_status, StatusKind::Failed);
    assert!(view.exhausted, "{view:?}");
    assert_eq!(view.next_attempt_at, None);
    let last = view.last_failure.as_ref().unwrap();
    assert_eq!(last.id.as_str(), "offline.r2");

    let dead = ledger.dead().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].first.as_str(), dead[0].last.as_str()),
        ("offline", "offline.r2")
    );
    assert_eq!(dead[0].attempts, 3);
    assert!(ledger.pending(None).unwrap().is_empty());
    drop((dispatcher, ledger));

    let db = path.to_str().unwrap();
    let (code, stdout, stderr) = cli_support::run(&["status", db, "offline", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["status"], "failed", "{status:#}");
    assert_eq!(status["latest"], "offline.r2", "{status:#}");
    assert_eq!(status["attempts"], 3, "{status:#}");
    assert_eq!(status["exhausted"], true, "{status:#}");
    let (code, stdout, stderr) = cli_support::run(&["audit", db]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}
