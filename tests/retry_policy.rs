//! Guards the retry policy end to end, through a real dispatcher and ledger: a
//! retryable failure is retried until max attempts, never past the deadline,
//! and never for a reason the policy does not retry. Whatever a target answers
//! (a random script of failures, then acceptance), the chain in the log is
//! exactly what the policy's rules give: as many linked attempts, each `queued`
//! with `retry_of` the one before and one more `attempt`, every one sent with
//! the first attempt's `messageId`, and the receipt settles with the last. A
//! `Retry-After` is waited out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delegation_log::dispatch::{Dispatcher, Options, Request, Retry};
use delegation_log::store::Memory;
use delegation_log::transport::{Accepted, Failure, Immediate};
use delegation_log::{DelegationId, FailureReason, Ledger, Outcome};
use proptest::prelude::*;

/// What the target answers each time it is asked: the script, then acceptance.
#[derive(Clone, Debug)]
struct Script(Vec<FailureReason>);

fn reason() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        Just(FailureReason::TargetOffline),
        Just(FailureReason::Timeout),
        Just(FailureReason::BadResponse),
        Just(FailureReason::Rejected),
        Just(FailureReason::MarshalError),
        prop::sample::select(vec![
            301u16, 400, 403, 404, 408, 422, 429, 500, 501, 502, 503, 504
        ])
        .prop_map(FailureReason::HttpStatus),
        prop::sample::select(vec![-32601i64, -32602, -32603]).prop_map(FailureReason::RpcError),
    ]
}

/// The chain the policy's rules give for `script`: the reasons of its failed
/// attempts, and whether the last attempt was delivered.
fn expected(policy: &Retry, zero_deadline: bool, script: &Script) -> (usize, bool) {
    let mut attempt = 1;
    loop {
        let Some(reason) = script.0.get(attempt - 1) else {
            return (attempt, true);
        };
        let retried =
            policy.retries(*reason) && (attempt as u64) < policy.attempts() && !zero_deadline;
        if !retried {
            return (attempt, false);
        }
        attempt += 1;
    }
}

/// Runs one delegation against `script` under `policy`; answers the receipt's
/// settled attempt and id, the message ids the target was sent, and the ledger.
fn run(policy: Retry, script: &Script) -> (u64, DelegationId, Outcome, Vec<DelegationId>, Ledger) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ledger = Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new(),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let answers = script.0.clone();
    let (counting, keeping) = (Arc::clone(&calls), Arc::clone(&sent));
    let transport = Immediate::new(move |message| {
        keeping.lock().unwrap().push(message.message_id.clone());
        let n = counting.fetch_add(1, Ordering::SeqCst);
        match answers.get(n) {
            Some(reason) => Err(Failure::new(*reason, "scripted")),
            None => Ok(Accepted::status(200)),
        }
    });
    let settled = runtime.block_on(async {
        let dispatcher =
            Dispatcher::with_options(ledger.clone(), transport, Options::new().retry(policy));
        let receipt = dispatcher
            .delegate(Request::new("planner", "reviewer").id("task".parse().unwrap()))
            .await
            .unwrap();
        let settled = receipt.settled().await.unwrap();
        dispatcher.shutdown().await.unwrap();
        settled
    });
    let sent = sent.lock().unwrap().clone();
    (settled.attempt, settled.id, settled.outcome, sent, ledger)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/retry_policy.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]

    /// The property of this file, over random scripts and policies.
    #[test]
    fn a_retryable_failure_is_retried_until_max_attempts_never_past_the_deadline_never_for_other_reasons(
        script in prop::collection::vec(reason(), 0..6).prop_map(Script),
        max_attempts in 1u64..5,
        retry_unknown in any::<bool>(),
        zero_deadline in any::<bool>(),
    ) {
        let policy = Retry::new()
            .max_attempts(max_attempts)
            .retry_unknown(retry_unknown)
            .backoff(Duration::from_millis(1))
            .max_delay(Duration::from_millis(2))
            .deadline(zero_deadline.then_some(Duration::ZERO))
            .jitter_seed(3);
        let (attempts, delivered) = expected(&policy, zero_deadline, &script);
        let (attempt, last, outcome, sent, ledger) = run(policy, &script);

        prop_assert_eq!(attempt, attempts as u64);
        prop_assert_eq!(sent.len(), attempts, "one send per attempt");
        prop_assert!(sent.iter().all(|m| m.as_str() == "task"), "one messageId: {:?}", sent);
        prop_assert_eq!(matches!(outcome, Outcome::Delivered { .. }), delivered);

        // The log: `task`, `task.r1`, … linked in order, the last one settled as
        // the receipt says, and nothing beyond it.
        let mut id: DelegationId = "task".parse().unwrap();
        for n in 1..=attempts {
            let delegation = ledger.delegation(&id).unwrap().expect("each attempt is in the log");
            prop_assert_eq!(delegation.attempt, n as u64);
            prop_assert_eq!(delegation.not_before.is_some(), n > 1);
            let next: DelegationId = format!("task.r{n}").parse().unwrap();
            if n == attempts {
                prop_assert_eq!(&id, &last);
                prop_assert_eq!(delegation.outcome.as_ref(), Some(&outcome));
                prop_assert!(ledger.delegation(&next).unwrap().is_none());
            } else {
                prop_assert!(matches!(delegation.outcome, Some(Outcome::Failed(_))));
                let retry = ledger.delegation(&next).unwrap().expect("its retry");
                prop_assert_eq!(retry.retry_of.as_ref(), Some(&id));
            }
            id = next;
        }
    }
}

/// A 429 whose `Retry-After` is longer than the backoff is waited out.
#[test]
fn a_retry_after_longer_than_the_backoff_is_waited_out() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ledger = Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new(),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&calls);
    let transport = Immediate::new(move |_| {
        if counting.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(Failure::status(429, "slow down")
                .with_retry_after(Some(Duration::from_millis(300))))
        } else {
            Ok(Accepted::status(200))
        }
    });
    let policy = Retry::new()
        .max_attempts(2)
        .backoff(Duration::from_millis(1));
    let started = Instant::now();
    let settled = runtime.block_on(async {
        let dispatcher =
            Dispatcher::with_options(ledger.clone(), transport, Options::new().retry(policy));
        let receipt = dispatcher
            .delegate(Request::new("planner", "reviewer"))
            .await
            .unwrap();
        let settled = receipt.settled().await.unwrap();
        dispatcher.shutdown().await.unwrap();
        settled
    });
    assert_eq!(settled.attempt, 2);
    assert!(matches!(settled.outcome, Outcome::Delivered { .. }));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}
