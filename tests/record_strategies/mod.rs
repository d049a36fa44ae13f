//! The proptest strategies for records, written once: every kind of event, with
//! the texts, ids, tasks, seqs and times that stress the codecs and canonical JSON.
//!
//! Shared by the codec tests (`codec_v2.rs`), the canonical bytes test
//! (`canonical_bytes.rs`) and the lifecycle properties
//! (`refused_events_change_nothing.rs`, `seqs_and_times_run_forward.rs`). Each value is valid by the format's field rules, so a
//! test that refuses one has found a bug, not a bad input.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use delegation_log::event::{Delivered, Failed, Queued, Remote, RemoteKind, TaskState};
use delegation_log::{ChainHash, DelegationId, Event, FailureReason, Record, Timestamp};
use proptest::prelude::*;
use serde_json::Value;

/// 2^53: past it, JSON numbers (and JCS) are doubles, not exact integers.
const EXACT: u64 = 1 << 53;

/// Any text a field may hold: plain, arbitrary, and every character JSON and JCS
/// escape.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:/._-]{0,12}",
        any::<String>(),
        Just("\"\\/\u{0}\u{1f}\u{7f}\u{2028}é😀\t\n\r\u{8}\u{c}".to_owned()),
    ]
}

/// Any delegation id: short, arbitrary, and the longest (256 bytes).
pub fn id() -> impl Strategy<Value = DelegationId> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        any::<String>().prop_map(|s| format!("x{}", s.chars().take(40).collect::<String>())),
        Just("ø".repeat(128)),
    ]
    .prop_map(|id| DelegationId::try_from(id).unwrap())
}

/// Any time: round, with nanoseconds, and any at all.
pub fn instant() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        Just(Timestamp::from_unix_nanos(1_780_795_927_000_000_000)),
        Just(Timestamp::from_unix_nanos(1_780_795_927_250_000_001)),
        any::<i64>().prop_map(Timestamp::from_unix_nanos),
    ]
}

/// A seq: the usual few, any, and those around 2^53.
pub fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..=3, any::<u64>(), EXACT - 2..=EXACT + 2]
}

/// Any JSON a task may be: keys from every plane (so that sorting by UTF-16
/// code units and by code points disagree), integers past 2^53, and the doubles
/// whose shortest form JCS spells out (RFC 8785 §3.2.2.3).
pub fn json() -> impl Strategy<Value = Value> {
    let double = prop_oneof![
        prop_oneof![
            Just(1e21),
            Just(1e-7),
            Just(-0.0),
            Just(5e-324),
            Just(f64::MAX),
            Just(9_007_199_254_740_993.0),
        ],
        any::<f64>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        double.prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        text().prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("\u{e000}".to_owned()),
        Just("😀".to_owned()),
        Just("\u{fb33}".to_owned()),
        Just("\u{80}".to_owned()),
        Just("\r".to_owned()),
        "[a-c]{0,2}",
        any::<String>(),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A `queued` event's task: none, a fixed object, a flat one, a string, or any
/// JSON but `null` ([`json`]).
pub fn task() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(serde_json::json!(
            {"b": [1, 2.5, -0.0, 1e21, null], "a": "x", "é": {"z": true, "A": 1}}
        ))),
        any::<(i64, f64, String)>().prop_map(|(i, f, s)| {
            let f = if f.is_finite() { f } else { 0.5 };
            Some(serde_json::json!({"s": s, "i": i, "f": f}))
        }),
        text().prop_map(|s| Some(Value::String(s))),
        // A task of JSON `null` is no task: the format stores it as absent.
        json()
            .prop_filter("a null task is no task", |task| !task.is_null())
            .prop_map(Some),
    ]
}

/// Any `queued`: maybe a retry (its attempt 2 or more, or around 2^53), maybe
/// held back.
pub fn queued() -> impl Strategy<Value = Event> {
    let attempt = prop_oneof![2u64..=5, 2u64..=u64::MAX, EXACT - 2..=EXACT + 2];
    let retry = proptest::option::of((id(), attempt));
    (
        text(),
        text(),
        task(),
        retry,
        proptest::option::of(instant()),
    )
        .prop_map(|(source, target, task, retry, not_before)| {
            Event::Queued(Queued {
                source,
                target,
                task,
                retry_of: retry.as_ref().map(|(of, _)| of.clone()),
                attempt: retry.map(|(_, attempt)| attempt),
                not_before,
            })
        })
}

/// What an agent answered: a Message or a Task, with any ids and state.
pub fn remote() -> impl Strategy<Value = Remote> {
    let state = prop_oneof![
        Just(TaskState::Working),
        Just(TaskState::InputRequired),
        Just(TaskState::Rejected),
        Just(TaskState::Unknown),
        Just(TaskState::Other("TASK_STATE_WORKING".to_owned())),
        "[a-z_]{0,12}".prop_map(|text| TaskState::from_wire(&text)),
        text().prop_map(TaskState::Other),
    ];
    (
        prop_oneof![Just(RemoteKind::Message), Just(RemoteKind::Task)],
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(state),
    )
        .prop_map(|(kind, task_id, context_id, state)| Remote {
            kind,
            task_id,
            context_id,
            state,
        })
}

/// Any failure reason, with any non-2xx status and any JSON-RPC code.
pub fn reason() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        Just(FailureReason::TargetOffline),
        prop_oneof![100u16..=199, 300u16..=u16::MAX].prop_map(FailureReason::HttpStatus),
        prop_oneof![Just(-32601i64), Just(-32603), any::<i64>()].prop_map(FailureReason::RpcError),
        Just(FailureReason::Rejected),
        Just(FailureReason::BadResponse),
        Just(FailureReason::MarshalError),
        Just(FailureReason::Timeout),
        Just(FailureReason::Interrupted),
    ]
}

/// Any outcome: `delivered` (with a 2xx or no status) or `failed`.
pub fn outcome() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            proptest::option::of(200u16..=299),
            proptest::option::of(remote())
        )
            .prop_map(|(http_status, remote)| Event::Delivered(Delivered {
                http_status,
                remote
            })),
        (reason(), proptest::option::of(text()))
            .prop_map(|(reason, detail)| Event::Failed(Failed { reason, detail })),
    ]
}

/// Any legal event with short random texts, weighted toward `queued`: what the
/// lifecycle properties (`refused_events_change_nothing.rs`,
/// `seqs_and_times_run_forward.rs`) feed a delegation.
pub fn lifecycle_event() -> impl Strategy<Value = Event> {
    let reason = prop_oneof![
        Just(FailureReason::TargetOffline),
        (300u16..600).prop_map(FailureReason::HttpStatus),
        Just(FailureReason::MarshalError),
        Just(FailureReason::Timeout),
        Just(FailureReason::Interrupted),
    ];
    prop_oneof![
        3 => ("[a-z]{1,8}", "[a-z]{1,8}").prop_map(|(s, t)| Event::queued(s, t)),
        2 => proptest::option::of(200u16..300).prop_map(|code| Event::delivered(code).unwrap()),
        2 => (reason, proptest::option::of("[ -~]{0,16}"))
            .prop_map(|(reason, detail)| Event::failed(reason, detail).unwrap()),
    ]
}

/// A record of `event`, with the chain hash of a first record.
pub fn sealed(delegation: DelegationId, seq: u64, event: Event, at: Timestamp) -> Record {
    let mut record = Record {
        delegation,
        seq,
        event,
        at,
        hash: None,
    };
    record.hash = Some(record.chain_hash(&ChainHash::GENESIS));
    record
}

/// A valid record of any kind, at any seq, sealed.
pub fn record() -> impl Strategy<Value = Record> {
    (id(), seq(), prop_oneof![queued(), outcome()], instant())
        .prop_map(|(id, seq, event, at)| sealed(id, seq, event, at))
}
