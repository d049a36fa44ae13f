//! Format version 2: records with a binary body, and the delegation head.
//!
//! - Random valid records of every kind round-trip through version 2, and their
//!   version-1 bytes decode to the same record; random histories fold to heads
//!   that round-trip without their task.
//! - Every single-bit flip and every truncation of a random version-2 record or
//!   head is a typed error: the version byte reads as an unknown version, anything
//!   else as a checksum mismatch.
//! - A body behind a valid checksum decodes strictly: a task's JSON text in any
//!   form but the compact one serde_json writes, or `null`, is non-canonical; a
//!   record that breaks a rule of the format is refused as a body error; and
//!   arbitrary edits of real bodies decode only to records that re-encode to the
//!   same bytes.
//! - Version 2 is smaller than version 1 for typical records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod record_strategies;
mod support;

use audit_support::{edit, sealed_bytes};
use delegation_log::delegation::Fold;
use delegation_log::envelope::{self, DecodeError, HEADER_LEN, head};
use delegation_log::event::{Delivered, Failed, Queued, Remote, RemoteKind, TaskState};
use delegation_log::{
    ChainHash, Delegation, DelegationId, Event, FailureReason, Record, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use record_strategies::{id, instant, outcome, queued, record, sealed};

/// The delegation a history of one `queued` and, maybe, an outcome folds to.
fn delegation() -> impl Strategy<Value = Delegation> {
    (
        id(),
        queued(),
        proptest::option::of(outcome()),
        instant(),
        instant(),
    )
        .prop_map(|(id, queued, outcome, queued_at, settled_at)| {
            let mut fold = Fold::new(id.clone());
            let events = std::iter::once((queued, queued_at))
                .chain(outcome.map(|outcome| (outcome, settled_at)));
            for ((event, at), seq) in events.zip(1..) {
                let record = Record {
                    delegation: id.clone(),
                    seq,
                    event,
                    at,
                    hash: None,
                };
                fold.apply(&record).unwrap();
            }
            fold.into_delegation().unwrap()
        })
}

fn untasked(delegation: &Delegation) -> Delegation {
    Delegation {
        task: None,
        ..delegation.clone()
    }
}

/// Every single-bit flip of `bytes`, through `decode`: the version byte's bits
/// must give an unknown version, every other bit a checksum mismatch.
fn assert_every_flip_is_typed<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        match decode(&flipped) {
            Err(DecodeError::UnknownVersion { .. }) => assert!(bit < 8, "bit {bit}"),
            Err(DecodeError::Checksum { .. }) => assert!(bit >= 8, "bit {bit}"),
            other => panic!("bit {bit}: {other:?}"),
        }
    }
}

/// Every truncation of `bytes`, through `decode`: shorter than `header` is
/// truncated, anything longer a checksum mismatch.
fn assert_every_truncation_is_typed<T: std::fmt::Debug>(
    bytes: &[u8],
    header: usize,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    for len in 0..bytes.len() {
        match decode(&bytes[..len]) {
            Err(DecodeError::Truncated { len: found }) => {
                assert_eq!(found, len);
                assert!(len < header, "{len}");
            }
            Err(DecodeError::Checksum { .. }) => assert!(len >= header, "{len}"),
            other => panic!("{len} bytes: {other:?}"),
        }
    }
}

/// Seals `body` as a version-2 record with a valid checksum.
fn resealed(body: &[u8]) -> Vec<u8> {
    sealed_bytes(envelope::VERSION, [0x5a; 32], body)
}

/// `body` with its first length-prefixed string `from` (one-byte length) replaced
/// by `to`.
fn with_text_replaced(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let mut needle = vec![u8::try_from(from.len()).unwrap()];
    needle.extend_from_slice(from.as_bytes());
    let at = body
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap_or_else(|| panic!("{from} is not in the body"));
    let mut edited = body[..at].to_vec();
    edited.push(u8::try_from(to.len()).unwrap());
    edited.extend_from_slice(to.as_bytes());
    edited.extend_from_slice(&body[at + needle.len()..]);
    edited
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(Config {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/codec_v2.txt",
        ))),
        .. Config::default()
    })]

    #[test]
    fn version_2_records_round_trip_and_version_1_reads_the_same(record in record()) {
        let bytes = envelope::encode(&record);
        prop_assert_eq!(bytes[0], envelope::VERSION);
        prop_assert_eq!(envelope::decode(&bytes), Ok(record.clone()));
        let v1 = envelope::encode_v1(&record);
        prop_assert_eq!(v1[0], 1);
        prop_assert_eq!(envelope::decode(&v1), Ok(record));
    }

    #[test]
    fn heads_round_trip_without_their_task(delegation in delegation()) {
        let bytes = head::encode(&delegation);
        prop_assert_eq!(bytes[0], head::VERSION);
        prop_assert_eq!(head::decode(&bytes), Ok(untasked(&delegation)));
    }

    #[test]
    fn arbitrary_edits_of_version_2_bodies_decode_strictly(
        record in record(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<u8>()), 1..4),
    ) {
        let mut body = envelope::encode(&record)[HEADER_LEN..].to_vec();
        edit(&mut body, &edits);
        let bytes = resealed(&body);
        if let Ok(decoded) = envelope::decode(&bytes) {
            prop_assert_eq!(envelope::encode(&decoded), bytes);
        }
        let mut head = vec![head::VERSION, 0, 0, 0, 0];
        head.extend_from_slice(&body);
        let checksum = crc32fast::hash(&head[5..]);
        head[1..5].copy_from_slice(&checksum.to_be_bytes());
        if let Ok(decoded) = head::decode(&head) {
            prop_assert_eq!(head::encode(&decoded), head);
        }
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/codec_v2.txt",
        ))),
        .. Config::default()
    })]

    #[test]
    fn every_flip_and_truncation_of_a_version_2_record_is_a_typed_error(record in record()) {
        let bytes = envelope::encode(&record);
        assert_every_flip_is_typed(&bytes, envelope::decode);
        assert_every_truncation_is_typed(&bytes, HEADER_LEN, envelope::decode);
    }

    #[test]
    fn every_flip_and_truncation_of_a_head_is_a_typed_error(delegation in delegation()) {
        let bytes = head::encode(&delegation);
        assert_every_flip_is_typed(&bytes, head::decode);
        assert_every_truncation_is_typed(&bytes, 5, head::decode);
    }
}

// ---------------------------------------------------------------------------
// Strict bodies
// ---------------------------------------------------------------------------

fn at() -> Timestamp {
    "2026-06-07T01:32:07.250Z".parse().unwrap()
}

fn with_task(task: serde_json::Value) -> Record {
    sealed(
        "d-1".parse().unwrap(),
        1,
        Event::Queued(Queued {
            task: Some(task),
            ..Queued::new("planner", "reviewer")
        }),
        at(),
    )
}

#[test]
fn a_task_in_any_json_form_but_the_compact_one_is_non_canonical() {
    let record = with_task(serde_json::json!({"a": 1, "b": [1, 2]}));
    let body = &envelope::encode(&record)[HEADER_LEN..];
    let compact = r#"{"a":1,"b":[1,2]}"#;
    assert_eq!(
        envelope::decode(&resealed(body)).unwrap().hash,
        Some(ChainHash([0x5a; 32]))
    );
    for other in [
        r#"{"b":[1,2],"a":1}"#,
        r#"{"a":1, "b":[1,2]}"#,
        r#"{"a":1e0,"b":[1,2]}"#,
        r#"{"a":1,"b":[1,2]} "#,
        r#"{"a":1,"a":1,"b":[1,2]}"#,
        r#"{"\u0061":1,"b":[1,2]}"#,
    ] {
        let edited = resealed(&with_text_replaced(body, compact, other));
        assert_eq!(
            envelope::decode(&edited),
            Err(DecodeError::NonCanonical),
            "{other}"
        );
    }
    let broken = resealed(&with_text_replaced(body, compact, r#"{"a":1,"b":[1,2]"#));
    assert!(
        matches!(envelope::decode(&broken), Err(DecodeError::Body(e)) if e.contains("task")),
        "{:?}",
        envelope::decode(&broken)
    );
}

#[test]
fn a_stored_null_task_is_non_canonical() {
    let record = with_task(serde_json::json!("abcd"));
    let body = &envelope::encode(&record)[HEADER_LEN..];
    let edited = resealed(&with_text_replaced(body, r#""abcd""#, "null"));
    assert_eq!(envelope::decode(&edited), Err(DecodeError::NonCanonical));
}

#[test]
fn a_task_state_outside_the_logs_vocabulary_is_kept_as_it_came() {
    let remote = |state: TaskState| {
        sealed(
            "d-1".parse().unwrap(),
            2,
            Event::Delivered(Delivered {
                http_status: Some(200),
                remote: Some(Remote {
                    state: Some(state),
                    ..Remote::message()
                }),
            }),
            at(),
        )
    };
    for state in [
        TaskState::InputRequired,
        TaskState::Other("TASK_STATE_WORKING".to_owned()),
        TaskState::Other("input-required".to_owned()),
        TaskState::Other(String::new()),
    ] {
        let record = remote(state);
        assert_eq!(
            envelope::decode(&envelope::encode(&record)).as_ref(),
            Ok(&record)
        );
    }
    // `Other` holding one of the log's own names is the named state once stored,
    // in version 2 as in version 1.
    let odd = remote(TaskState::Other("working".to_owned()));
    let read = remote(TaskState::Working);
    assert_eq!(envelope::decode(&envelope::encode(&odd)), Ok(read.clone()));
    assert_eq!(envelope::decode(&envelope::encode_v1(&odd)), Ok(read));
}

#[test]
fn records_that_break_a_rule_of_the_format_are_refused_as_body_errors() {
    let id: DelegationId = "d-1".parse().unwrap();
    let long = "x".repeat(delegation_log::event::MAX_TEXT_BYTES + 1);
    let deep = (0..=delegation_log::event::MAX_TASK_DEPTH)
        .fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]));
    let broken = [
        Event::Delivered(Delivered {
            http_status: Some(302),
            remote: None,
        }),
        Event::Failed(Failed {
            reason: FailureReason::HttpStatus(200),
            detail: None,
        }),
        Event::Queued(Queued {
            retry_of: Some(id.clone()),
            ..Queued::new("a", "b")
        }),
        Event::Queued(Queued {
            attempt: Some(2),
            ..Queued::new("a", "b")
        }),
        Event::Queued(Queued {
            retry_of: Some(id.clone()),
            attempt: Some(1),
            ..Queued::new("a", "b")
        }),
        Event::Queued(Queued::new(long.clone(), "b")),
        Event::Queued(Queued {
            task: Some(deep),
            ..Queued::new("a", "b")
        }),
        Event::Failed(Failed {
            reason: FailureReason::Timeout,
            detail: Some(long),
        }),
    ];
    for event in broken {
        assert!(event.validate().is_err(), "{event:?}");
        let bytes = envelope::encode(&sealed(id.clone(), 1, event.clone(), at()));
        assert!(
            matches!(envelope::decode(&bytes), Err(DecodeError::Body(_))),
            "{event:?}: {:?}",
            envelope::decode(&bytes)
        );
    }
}

#[test]
fn an_id_outside_one_to_256_bytes_is_a_body_error() {
    let record = sealed("abc".parse().unwrap(), 1, Event::queued("a", "b"), at());
    let body = &envelope::encode(&record)[HEADER_LEN..];
    let empty = resealed(&with_text_replaced(body, "abc", ""));
    assert!(matches!(
        envelope::decode(&empty),
        Err(DecodeError::Body(e)) if e.contains("delegation")
    ));
}

// ---------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------

/// A first attempt queued with a small task, and its delivery with the agent's
/// task in the answer: what the log mostly holds.
fn typical() -> [Record; 2] {
    let id: DelegationId = "9f1c2e4a-7b3d-4c5e-8f6a-1b2c3d4e5f60".parse().unwrap();
    [
        sealed(
            id.clone(),
            1,
            Event::Queued(Queued {
                task: Some(serde_json::json!({"review": "pr-42", "priority": 2})),
                ..Queued::new("planner", "http://127.0.0.1:8080/a2a")
            }),
            at(),
        ),
        sealed(
            id,
            2,
            Event::Delivered(Delivered {
                http_status: Some(200),
                remote: Some(Remote {
                    kind: RemoteKind::Task,
                    task_id: Some("t-7d1e".into()),
                    context_id: Some("c-0b3a".into()),
                    state: Some(TaskState::Working),
                }),
            }),
            at(),
        ),
    ]
}

#[test]
fn version_2_is_smaller_than_version_1_for_typical_records() {
    for record in typical() {
        let v2 = envelope::encode(&record).len();
        let v1 = envelope::encode_v1(&record).len();
        assert!(v2 < v1, "{}: v2 {v2} bytes, v1 {v1}", record.event.kind());
    }
}
