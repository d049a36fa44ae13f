//! Guards that the ledger does what the reference model says: random
//! interleavings of many delegations on the fault-injecting store (a
//! proptest-state-machine test), checked step by step against the model,
//! `delegation_log::fuzzing::Model` (behind the `fuzzing` feature), which the fuzz
//! target `ops`, `tests/fuzz_seeds_pass.rs` and
//! `tests/refused_events_change_nothing.rs` check the ledger against too.
//!
//! Every transition (queue, deliver, fail with each reason, duplicate and illegal
//! outcomes, invalid events, K threads racing to settle one delegation, a retry
//! through `Ledger::retry` with a backoff on the manual clock, time passing,
//! flush, crash, torn crash, injected write and flush failures, reopen, recover)
//! is predicted by the model, and the ledger's answer must match it exactly. A
//! crash after a retry and before its `not_before` is a crash during the
//! backoff: in durable mode the acknowledged retry survives it, and in either
//! mode a crash keeps both records of a retry or neither. Both
//! durability modes are modelled: each case picks one. Races run only with no
//! fault armed (racing writers meet a fault in an order nobody controls), and
//! only here: the fuzzer's scripts have none.
//!
//! What is checked, step by step, is listed on `fuzzing::Subject`: a refused
//! event writes nothing; at most one terminal outcome per delegation; exactly
//! one racer wins; every durable acknowledgement survives a crash; a torn write
//! reads as `Corrupt`, never as another state; a poisoned ledger serves no reads;
//! live state equals the model, `replay()` equals live, and `status` (one read
//! of the head) equals a replay of the history, always; nothing readable is
//! pending after a successful recover; a retry link is never half written; and
//! the sender's view follows the chains as the model does: `attempts` from
//! every attempt's id (first, latest, count, latest state, last failure,
//! `next_attempt_at` while the latest waits for its `not_before`, `exhausted`),
//! `pending` (each waiting for its retry time, or in flight) and `dead`.
//!
//! The same model and the same checks run on a ledger over PostgreSQL (feature
//! `postgres`, `DATABASE_URL` from `bash .ci/postgres`, a fresh schema per case):
//! there every commit is durable at once, so the cases are in durable mode, a
//! crash is a reopen after which every acknowledged event must be read, and torn
//! writes and injected faults (which only the fault-injecting store can make) are
//! left out. Without a server it says how to start one and passes over; under
//! `CI=true` it fails.
//!
//! 256 cases by default (64 on PostgreSQL); set `PROPTEST_CASES` for more.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "postgres")]
mod pg_support;

use delegation_log::event::{Delivered, Failed};
use delegation_log::fuzzing::{FIRST_SLOTS, Model, POOL, Subject, Transition};
use delegation_log::store::Fault;
use delegation_log::{Durability, Event, FailureReason};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use serde_json::json;
use std::time::Duration;

/// proptest's default configuration, with its failures kept in `file`.
fn persisted_in(file: &'static str) -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

prop_state_machine! {
    #![proptest_config(persisted_in("proptest-regressions/ledger_agrees_with_model.txt"))]

    #[test]
    fn the_ledger_behaves_like_the_model_under_crashes_faults_and_races(
        sequential 1..48 => LedgerUnderTest
    );
}

prop_state_machine! {
    #![proptest_config(persisted_in("proptest-regressions/ledger_agrees_with_model_retries.txt"))]

    /// The same model and checks, weighted towards retries, time passing and
    /// crashes, so that chains of several attempts and crashes during a
    /// backoff are common: the acknowledged retry survives a crash in durable
    /// mode, a crash keeps both records of a retry or neither, and
    /// `attempts`, `pending` and `dead` read the chains as the model does
    /// before and after each retry's `not_before`.
    #[test]
    fn retries_survive_crashes_during_their_backoff_and_read_as_the_model_chains(
        sequential 1..48 => RetriesUnderTest
    );
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn queued_event() -> impl Strategy<Value = Event> {
    (
        prop_oneof![Just("planner"), Just("ops")],
        prop_oneof![Just("reviewer"), Just("http://127.0.0.1:9/a2a")],
        prop_oneof![
            Just(None),
            Just(Some(json!({"review": "pr-42", "lines": [1, 2]}))),
            Just(Some(json!("plain text task"))),
        ],
    )
        .prop_map(|(source, target, task)| {
            Event::Queued(delegation_log::event::Queued {
                source: source.to_owned(),
                target: target.to_owned(),
                task,
                retry_of: None,
                attempt: None,
                not_before: None,
            })
        })
}

fn detail() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("503 Service Unavailable".to_owned())),
        Just(Some("é ✓ \"quoted\"\nline two \u{1F600}".to_owned())),
        Just(Some("x".repeat(300))),
    ]
}

fn reason() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        Just(FailureReason::TargetOffline),
        Just(FailureReason::MarshalError),
        Just(FailureReason::Timeout),
        Just(FailureReason::Interrupted),
        Just(FailureReason::Rejected),
        Just(FailureReason::BadResponse),
        prop::sample::select(vec![
            0u16,
            100,
            302,
            404,
            429,
            500,
            501,
            503,
            599,
            999,
            u16::MAX
        ])
        .prop_map(FailureReason::HttpStatus),
        prop::sample::select(vec![
            -32700i64,
            -32601,
            -32603,
            -32009,
            0,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(FailureReason::RpcError),
    ]
}

fn outcome_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            prop::sample::select(vec![None, Some(200u16), Some(201), Some(204), Some(299)]),
            prop_oneof![
                Just(None),
                Just(Some(delegation_log::event::Remote::message())),
                Just(Some(delegation_log::event::Remote {
                    kind: delegation_log::event::RemoteKind::Task,
                    task_id: Some("t-1".to_owned()),
                    context_id: Some("c-1".to_owned()),
                    state: Some(delegation_log::event::TaskState::InputRequired),
                })),
            ],
        )
            .prop_map(|(http_status, remote)| Event::Delivered(Delivered {
                http_status,
                remote
            })),
        (reason(), detail()).prop_map(|(reason, detail)| Event::Failed(Failed { reason, detail })),
    ]
}

/// Events that break a field rule, built around the checked constructors.
fn invalid_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        prop::sample::select(vec![100u16, 199, 300, 503]).prop_map(|code| Event::Delivered(
            Delivered {
                http_status: Some(code),
                remote: None,
            }
        )),
        prop::sample::select(vec![200u16, 204, 299]).prop_map(|code| Event::Failed(Failed {
            reason: FailureReason::HttpStatus(code),
            detail: None,
        })),
    ]
}

struct LedgerModel;

impl ReferenceStateMachine for LedgerModel {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![Just(Durability::Durable), Just(Durability::Buffered)]
            .prop_map(Model::new)
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        transitions(state, true)
    }

    /// Racing writers meet an armed fault in an order nobody controls, so races
    /// run only with no fault armed.
    fn preconditions(state: &Model, transition: &Transition) -> bool {
        match transition {
            Transition::Race { .. } => !state.faults_armed(),
            _ => true,
        }
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        state.apply(transition);
        state
    }
}

/// A retry, as the dispatcher writes one: mostly of a `queued` delegation to a
/// free slot (when there are such), sometimes of any slot to any slot, so that
/// every refusal is met too; failing for any reason (now and then one that
/// makes the failure invalid), with a backoff from none to the policy's
/// maximum delay.
fn retry(state: &Model) -> BoxedStrategy<Transition> {
    let (queued, free) = state.retry_candidates();
    let any = (0..POOL, 0..POOL).boxed();
    let pair = if queued.is_empty() || free.is_empty() {
        any
    } else {
        prop_oneof![
            3 => (prop::sample::select(queued), prop::sample::select(free)),
            1 => any,
        ]
        .boxed()
    };
    (
        pair,
        prop_oneof![
            9 => reason(),
            1 => Just(FailureReason::HttpStatus(204)),
        ],
        backoff(),
    )
        .prop_map(|((id, to), reason, backoff)| Transition::Retry {
            id,
            to,
            reason,
            backoff,
        })
        .boxed()
}

/// A backoff, or a time passing: around the millisecond each step takes, and
/// up to the default maximum delay.
fn backoff() -> impl Strategy<Value = Duration> {
    prop::sample::select(vec![0u64, 1, 2, 5, 200, 1_000, 30_000]).prop_map(Duration::from_millis)
}

/// The weighted transitions; with `faults` false, no torn crash and no injected
/// fault (for a store that cannot make them).
fn transitions(state: &Model, faults: bool) -> BoxedStrategy<Transition> {
    let id = 0..POOL;
    if !faults {
        return prop_oneof![
            4 => (0..FIRST_SLOTS, queued_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            6 => (id.clone(), outcome_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            1 => (id.clone(), invalid_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            2 => (id, prop::collection::vec(outcome_event(), 2..=4))
                .prop_map(|(id, outcomes)| Transition::Race { id, outcomes }),
            2 => Just(Transition::Flush),
            1 => Just(Transition::Crash),
            1 => Just(Transition::Reopen),
            2 => Just(Transition::Recover),
            4 => retry(state),
            2 => backoff().prop_map(Transition::AdvanceClock),
        ]
        .boxed();
    }
    {
        prop_oneof![
            4 => (0..FIRST_SLOTS, queued_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            6 => (id.clone(), outcome_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            1 => (id.clone(), invalid_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            2 => (id, prop::collection::vec(outcome_event(), 2..=4))
                .prop_map(|(id, outcomes)| Transition::Race { id, outcomes }),
            2 => Just(Transition::Flush),
            1 => Just(Transition::Crash),
            1 => Just(Transition::TornCrash),
            1 => Just(Transition::Reopen),
            2 => Just(Transition::Recover),
            1 => prop_oneof![Just(Fault::FailWrite), Just(Fault::FailFlush)]
                .prop_map(Transition::Inject),
            4 => retry(state),
            2 => backoff().prop_map(Transition::AdvanceClock),
        ]
        .boxed()
    }
}

/// The model, with transitions weighted towards retries.
struct RetryModel;

impl ReferenceStateMachine for RetryModel {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        LedgerModel::init_state()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        let id = 0..POOL;
        prop_oneof![
            3 => (0..FIRST_SLOTS, queued_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            3 => (id, outcome_event()).prop_map(|(id, event)| Transition::Record { id, event }),
            6 => retry(state),
            3 => backoff().prop_map(Transition::AdvanceClock),
            1 => Just(Transition::Flush),
            2 => Just(Transition::Crash),
            1 => Just(Transition::TornCrash),
            1 => Just(Transition::Reopen),
            1 => Just(Transition::Recover),
            1 => prop_oneof![Just(Fault::FailWrite), Just(Fault::FailFlush)]
                .prop_map(Transition::Inject),
        ]
        .boxed()
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        state.apply(transition);
        state
    }
}

struct RetriesUnderTest;

impl StateMachineTest for RetriesUnderTest {
    type SystemUnderTest = Subject;
    type Reference = RetryModel;

    fn init_test(model: &Model) -> Subject {
        Subject::new(0x5eed, model)
    }

    fn apply(mut subject: Subject, model: &Model, transition: Transition) -> Subject {
        subject.apply(model, transition);
        subject
    }

    fn check_invariants(subject: &Subject, model: &Model) {
        subject.check_invariants(model);
    }
}

struct LedgerUnderTest;

impl StateMachineTest for LedgerUnderTest {
    type SystemUnderTest = Subject;
    type Reference = LedgerModel;

    fn init_test(model: &Model) -> Subject {
        Subject::new(0x5eed, model)
    }

    fn apply(mut subject: Subject, model: &Model, transition: Transition) -> Subject {
        subject.apply(model, transition);
        subject
    }

    fn check_invariants(subject: &Subject, model: &Model) {
        subject.check_invariants(model);
    }
}

// ---------------------------------------------------------------------------
// The same model on PostgreSQL
// ---------------------------------------------------------------------------

#[cfg(feature = "postgres")]
prop_state_machine! {
    #![proptest_config(Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..persisted_in("proptest-regressions/ledger_agrees_with_model_postgres.txt")
    })]

    #[test]
    fn the_ledger_on_postgres_behaves_like_the_model_under_reopens_and_races(
        sequential 1..48 => LedgerOnPostgres
    );
}

/// The model in durable mode, without tears or faults.
#[cfg(feature = "postgres")]
struct DurableModel;

#[cfg(feature = "postgres")]
impl ReferenceStateMachine for DurableModel {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::new(Durability::Durable)).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        transitions(state, false)
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        state.apply(transition);
        state
    }
}

/// The subject of a case: a ledger on a fresh schema, with the schema itself,
/// which is dropped when the next case starts.
#[cfg(feature = "postgres")]
struct OnPostgres {
    subject: Option<Subject>,
}

#[cfg(feature = "postgres")]
struct LedgerOnPostgres;

#[cfg(feature = "postgres")]
impl StateMachineTest for LedgerOnPostgres {
    type SystemUnderTest = OnPostgres;
    type Reference = DurableModel;

    fn init_test(model: &Model) -> OnPostgres {
        use std::sync::Mutex;
        // The schema of the case before is dropped here, once its subject is gone.
        static SCHEMA: Mutex<Option<pg_support::Schema>> = Mutex::new(None);
        let mut current = SCHEMA.lock().unwrap_or_else(|p| p.into_inner());
        *current = None;
        let Some(schema) = pg_support::fresh("model") else {
            return OnPostgres { subject: None };
        };
        let subject = Subject::on_store(schema.store.clone(), model);
        *current = Some(schema);
        OnPostgres {
            subject: Some(subject),
        }
    }

    fn apply(mut state: OnPostgres, model: &Model, transition: Transition) -> OnPostgres {
        if let Some(subject) = &mut state.subject {
            subject.apply(model, transition);
        }
        state
    }

    fn check_invariants(state: &OnPostgres, model: &Model) {
        if let Some(subject) = &state.subject {
            subject.check_invariants(model);
        }
    }
}

/// Regression, found by `retries_survive_…` (its seed is kept in
/// `proptest-regressions/ledger_agrees_with_model_retries.txt`): a flush fails,
/// so slot 2's `queued` stays live but never durable; after a reopen, recovery
/// writes its `failed` on top, and a torn crash leaves that `failed` on disk
/// cut short, with no head and no `queued` below it. A retry into slot 2 then
/// writes seq 1 beneath the remnant, as the model says, and the check must read
/// the record the head names rather than the store's last entry (the remnant).
#[test]
fn a_retry_into_a_delegation_a_torn_crash_left_a_remnant_in_is_read_by_its_head() {
    let queued = || Event::queued("planner", "reviewer");
    let record = |id| Transition::Record {
        id,
        event: queued(),
    };
    let transitions = vec![
        record(0),
        record(1),
        Transition::Flush,
        Transition::Recover,
        record(2),
        record(0),
        Transition::Inject(Fault::FailFlush),
        Transition::Flush,
        Transition::Reopen,
        Transition::Recover,
        Transition::TornCrash,
        Transition::Retry {
            id: 1,
            to: 2,
            reason: FailureReason::TargetOffline,
            backoff: Duration::ZERO,
        },
        record(0),
        record(0),
    ];
    let mut model = Model::new(Durability::Buffered);
    let mut subject = Subject::new(0x5eed, &model);
    for transition in transitions {
        model.apply(&transition);
        subject.apply(&model, transition);
        subject.check_invariants(&model);
    }
}
