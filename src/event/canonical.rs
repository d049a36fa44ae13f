//! RFC 8785 (JCS) canonical JSON of a record without its hash, the bytes the chain
//! hashes: a direct writer for the record's own fields, the generic one behind it.

use serde::Serialize;

use super::{DelegationId, Event, Record, Seq, Timestamp};

/// The canonical bytes of `record`: the direct writer's, or the generic
/// canonicalizer's where the direct writer does not apply.
pub(super) fn to_vec(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match write(record, &mut out) {
        Ok(()) => out,
        Err(NotFast) => generic(record),
    }
}

/// JCS through the generic canonicalizer, which sorts keys at run time.
fn generic(record: &Record) -> Vec<u8> {
    let unhashed = UnhashedRecord {
        delegation: &record.delegation,
        seq: record.seq,
        event: &record.event,
        at: record.at,
    };
    // JCS of a value that serde_json can always represent: the record's own
    // fields are strings, integers and an already-parsed JSON task.
    serde_json_canonicalizer::to_vec(&unhashed).unwrap_or_default()
}

/// JCS written directly, the keys in the order JCS sorts them: `at`,
/// `attempt`, `delegation`, `detail`, `event`, `http_status`, `not_before`,
/// `reason`, `remote`, `retry_of`, `rpc_code`, `seq`, `source`, `target`,
/// `task`. Strings are escaped as serde_json escapes them, which is what JCS
/// asks; integers up to 2^53 are their decimal digits in both. A seq or an
/// attempt beyond 2^53 (which JCS writes as a rounded double) is left to the
/// generic path; a task is canonicalized by it in place.
fn write(record: &Record, out: &mut Vec<u8>) -> Result<(), NotFast> {
    const MAX_EXACT: Seq = 1 << 53;
    if record.seq > MAX_EXACT {
        return Err(NotFast);
    }
    let string =
        |out: &mut Vec<u8>, text: &str| serde_json::to_writer(&mut *out, text).map_err(|_| NotFast);
    let (attempt, not_before, retry_of) = match &record.event {
        Event::Queued(queued) => (queued.attempt, queued.not_before, queued.retry_of.as_ref()),
        _ => (None, None, None),
    };
    out.extend_from_slice(b"{\"at\":\"");
    out.extend_from_slice(record.at.to_string().as_bytes());
    out.push(b'"');
    if let Some(attempt) = attempt {
        if attempt > MAX_EXACT {
            return Err(NotFast);
        }
        out.extend_from_slice(b",\"attempt\":");
        out.extend_from_slice(attempt.to_string().as_bytes());
    }
    out.extend_from_slice(b",\"delegation\":");
    string(out, record.delegation.as_str())?;
    let (detail, http_status, reason, remote, rpc_code) = match &record.event {
        Event::Queued(_) => (None, None, None, None, None),
        Event::Delivered(delivered) => (
            None,
            delivered.http_status,
            None,
            delivered.remote.as_ref(),
            None,
        ),
        Event::Failed(failed) => (
            failed.detail.as_deref(),
            failed.reason.http_status(),
            Some(failed.reason.code()),
            None,
            failed.reason.rpc_code(),
        ),
    };
    if let Some(detail) = detail {
        out.extend_from_slice(b",\"detail\":");
        string(out, detail)?;
    }
    out.extend_from_slice(b",\"event\":\"");
    out.extend_from_slice(record.event.kind().as_str().as_bytes());
    out.push(b'"');
    if let Some(code) = http_status {
        out.extend_from_slice(b",\"http_status\":");
        out.extend_from_slice(code.to_string().as_bytes());
    }
    if let Some(not_before) = not_before {
        out.extend_from_slice(b",\"not_before\":\"");
        out.extend_from_slice(not_before.to_string().as_bytes());
        out.push(b'"');
    }
    if let Some(reason) = reason {
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(reason.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(remote) = remote {
        out.extend_from_slice(b",\"remote\":");
        serde_json_canonicalizer::to_writer(remote, &mut *out).map_err(|_| NotFast)?;
    }
    if let Some(retry_of) = retry_of {
        out.extend_from_slice(b",\"retry_of\":");
        string(out, retry_of.as_str())?;
    }
    if let Some(code) = rpc_code {
        // JCS writes integers beyond 2^53 as rounded doubles: the generic path.
        if code.unsigned_abs() > MAX_EXACT {
            return Err(NotFast);
        }
        out.extend_from_slice(b",\"rpc_code\":");
        out.extend_from_slice(code.to_string().as_bytes());
    }
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(record.seq.to_string().as_bytes());
    if let Event::Queued(queued) = &record.event {
        out.extend_from_slice(b",\"source\":");
        string(out, &queued.source)?;
        out.extend_from_slice(b",\"target\":");
        string(out, &queued.target)?;
        if let Some(task) = queued.task.as_ref().filter(|task| !task.is_null()) {
            out.extend_from_slice(b",\"task\":");
            serde_json_canonicalizer::to_writer(task, &mut *out).map_err(|_| NotFast)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// The fast JCS writer does not apply; the generic one does.
struct NotFast;

#[derive(Serialize)]
struct UnhashedRecord<'a> {
    delegation: &'a DelegationId,
    seq: Seq,
    #[serde(flatten)]
    event: &'a Event,
    at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Delivered, Failed, FailureReason, Queued, Remote, RemoteKind, TaskState};

    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z0-9:/._-]{1,12}",
            any::<String>().prop_filter("ids are non-empty", |s| !s.is_empty()),
            Just("\"\\/\u{0}\u{1f}\u{7f}\u{2028}é😀\t\n\r\u{8}\u{c}".to_owned()),
        ]
    }

    fn any_remote() -> impl proptest::strategy::Strategy<Value = Remote> {
        use proptest::prelude::*;
        let state = prop_oneof![
            Just(TaskState::Working),
            Just(TaskState::InputRequired),
            Just(TaskState::Rejected),
            any_text().prop_map(TaskState::Other),
        ];
        (
            prop_oneof![Just(RemoteKind::Message), Just(RemoteKind::Task)],
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::option::of(state),
        )
            .prop_map(|(kind, task_id, context_id, state)| Remote {
                kind,
                task_id,
                context_id,
                state,
            })
    }

    fn any_record() -> impl proptest::strategy::Strategy<Value = Record> {
        use proptest::prelude::*;
        let task = prop_oneof![
            Just(None),
            Just(Some(
                serde_json::json!({"b": [1, 2.5, -0.0, 1e21, null], "a": "x", "é": {"z": true, "A": 1}})
            )),
            any::<(i64, f64, String)>().prop_map(|(i, f, s)| {
                Some(serde_json::json!({"s": s, "i": i, "f": if f.is_finite() { f } else { 0.5 }}))
            }),
        ];
        let reason = prop_oneof![
            Just(FailureReason::TargetOffline),
            (300u16..=599).prop_map(FailureReason::HttpStatus),
            prop_oneof![Just(-32601i64), Just(-32603), any::<i64>()]
                .prop_map(FailureReason::RpcError),
            Just(FailureReason::Rejected),
            Just(FailureReason::BadResponse),
            Just(FailureReason::MarshalError),
            Just(FailureReason::Timeout),
            Just(FailureReason::Interrupted),
        ];
        let attempt = prop_oneof![
            2u64..=5,
            2u64..=u64::MAX,
            (1u64 << 53) - 2..=(1u64 << 53) + 2
        ];
        let retry = proptest::option::of((any_text(), attempt));
        let not_before = proptest::option::of(prop_oneof![
            Just(1_780_795_927_000_000_000i64),
            Just(1_780_795_927_000_000_001i64),
            any::<i64>(),
        ]);
        let event = prop_oneof![
            (any_text(), any_text(), task, retry, not_before).prop_map(
                |(source, target, task, retry, not_before)| {
                    let (retry_of, attempt) = match retry {
                        Some((of, attempt)) => (
                            DelegationId::try_from(of.chars().take(64).collect::<String>()).ok(),
                            Some(attempt),
                        ),
                        None => (None, None),
                    };
                    Event::Queued(Queued {
                        source,
                        target,
                        task,
                        attempt: attempt.filter(|_| retry_of.is_some()),
                        retry_of,
                        not_before: not_before.map(Timestamp::from_unix_nanos),
                    })
                }
            ),
            (
                proptest::option::of(200u16..=299),
                proptest::option::of(any_remote())
            )
                .prop_map(|(http_status, remote)| Event::Delivered(Delivered {
                    http_status,
                    remote
                })),
            (reason, proptest::option::of(any_text()))
                .prop_map(|(reason, detail)| Event::Failed(Failed { reason, detail })),
        ];
        let seq = prop_oneof![1u64..=3, any::<u64>(), (1u64 << 53) - 2..=(1u64 << 53) + 2];
        let at = prop_oneof![
            Just(1_780_795_927_000_000_000i64),
            Just(1_780_795_927_250_000_000i64),
            any::<i64>(),
        ];
        (any_text(), seq, event, at).prop_map(|(id, seq, event, at)| Record {
            delegation: DelegationId::try_from(id.chars().take(64).collect::<String>())
                .unwrap_or_else(|_| DelegationId::try_from("x").unwrap()),
            seq,
            event,
            at: Timestamp::from_unix_nanos(at),
            hash: None,
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 512,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/event-canonical-bytes.txt",
                ),
            )),
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn the_direct_jcs_writer_agrees_with_the_generic_canonicalizer(record in any_record()) {
            let direct = String::from_utf8(record.canonical_bytes());
            let generic = String::from_utf8(generic(&record));
            proptest::prop_assert_eq!(direct, generic);
        }
    }
}
