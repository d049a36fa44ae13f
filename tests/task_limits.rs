//! Guards the door of the log: what the ledger stores, it can read back, `export`
//! carries and `verify` and `import` take back. One rule for every place: a `null`
//! task is no task; a task nested deeper than `MAX_TASK_DEPTH` or larger than
//! `MAX_TASK_BYTES`, and a text field longer than `MAX_TEXT_BYTES`, are refused
//! with a typed error before anything is written. (Hardening review, defects 1
//! and 9.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;

use delegation_log::dispatch::{self, Dispatcher, Request};
use delegation_log::event::{InvalidEvent, MAX_TASK_BYTES, MAX_TASK_DEPTH, Queued};
use delegation_log::transport::Immediate;
use delegation_log::{Error, Event, Ledger, StatusKind};
use delivery_support::memory_ledger as ledger;
use serde_json::{Value, json};

fn queued(task: Option<Value>) -> Event {
    Event::Queued(Queued {
        source: "planner".into(),
        target: "reviewer".into(),
        task,
        retry_of: None,
        attempt: None,
        not_before: None,
    })
}

/// `depth` arrays around a number: `[[[1]]]` is depth 3.
fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// Exports `ledger`, verifies the export, imports it into a fresh ledger, and
/// exports that: the round trip the format page promises.
fn round_trip(ledger: &Ledger) -> (Vec<u8>, Vec<u8>) {
    let mut first = Vec::new();
    ledger.export(&mut first).unwrap();
    let verdict = delegation_log::audit::verify(first.as_slice(), ledger.clock()).unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    let copy = self::ledger();
    let imported = copy.import(first.as_slice()).unwrap();
    assert!(
        imported.verdict.is_clean(),
        "{}",
        imported.verdict.to_plain()
    );
    assert!(imported.stored > 0);
    let mut second = Vec::new();
    copy.export(&mut second).unwrap();
    (first, second)
}

#[test]
fn a_null_task_is_recorded_as_no_task_and_stays_readable_everywhere() {
    let ledger = ledger();
    let null = "null-task".parse().unwrap();
    ledger.record(&null, queued(Some(Value::Null))).unwrap();
    // Before the fix the record was written with `"task":null`, which the strict
    // decoder then called corrupt: status, recover and export all failed.
    let delegation = ledger.delegation(&null).unwrap().unwrap();
    assert_eq!(delegation.task, None);
    assert_eq!(ledger.status(&null).unwrap().status, StatusKind::Queued);
    assert_eq!(ledger.recover().unwrap(), std::slice::from_ref(&null));
    assert_eq!(ledger.status(&null).unwrap().status, StatusKind::Failed);
    assert!(ledger.audit().unwrap().is_clean());
    let (first, second) = round_trip(&ledger);
    assert_eq!(first, second);
    assert!(!String::from_utf8(first).unwrap().contains("\"task\""));
}

#[tokio::test]
async fn a_null_task_through_the_dispatcher_is_no_task_too() {
    let ledger = ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
    let mut ids = Vec::new();
    for request in [
        Request::new("planner", "reviewer").task(&None::<String>),
        Request::new("planner", "reviewer").task(&f64::NAN),
        Request::new("planner", "reviewer").task_json(Value::Null),
    ] {
        ids.push(dispatcher.delegate(request).await.unwrap().id);
    }
    dispatcher.shutdown().await.unwrap();
    for id in ids {
        let delegation = ledger.delegation(&id).unwrap().unwrap();
        assert_eq!(delegation.task, None);
        assert_eq!(ledger.status(&id).unwrap().status, StatusKind::Delivered);
    }
    assert!(ledger.audit().unwrap().is_clean());
    round_trip(&ledger);
}

#[test]
fn a_log_line_with_a_null_task_verifies_imports_and_exports() {
    let line = r#"{"delegation":"d","seq":1,"event":"queued","source":"planner","target":"reviewer","task":null,"at":"2026-06-07T01:32:07Z"}"#;
    let ledger = ledger();
    let verdict = delegation_log::audit::verify(line.as_bytes(), ledger.clock()).unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    assert_eq!(ledger.import(line.as_bytes()).unwrap().stored, 1);
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let verdict = delegation_log::audit::verify(export.as_slice(), ledger.clock()).unwrap();
    assert!(verdict.is_clean());
}

#[test]
fn a_task_at_the_depth_limit_is_kept_and_one_level_more_is_refused_before_writing() {
    let ledger = ledger();
    let deepest = "deepest".parse().unwrap();
    ledger
        .record(&deepest, queued(Some(nested(MAX_TASK_DEPTH))))
        .unwrap();
    assert_eq!(
        ledger.delegation(&deepest).unwrap().unwrap().task,
        Some(nested(MAX_TASK_DEPTH))
    );
    round_trip(&ledger);

    // 127 levels was accepted before the fix, then could never be read back.
    for depth in [MAX_TASK_DEPTH + 1, 127] {
        let id = format!("deep-{depth}").parse().unwrap();
        let refused = ledger.record(&id, queued(Some(nested(depth))));
        assert!(
            matches!(refused, Err(Error::InvalidEvent(InvalidEvent::TaskTooDeep))),
            "{refused:?}"
        );
        assert_eq!(ledger.status(&id).unwrap().status, StatusKind::NotFound);
    }
    assert!(ledger.audit().unwrap().is_clean());
}

#[test]
fn a_task_nested_20000_deep_is_refused_without_overflowing_the_stack() {
    // Building and dropping such a value recurses in serde_json itself, so the
    // test gives its own thread room for that; the ledger must not recurse.
    let worker = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let ledger = ledger();
            let id = "abyss".parse().unwrap();
            let refused = ledger.record(&id, queued(Some(nested(20_000))));
            assert!(matches!(
                refused,
                Err(Error::InvalidEvent(InvalidEvent::TaskTooDeep))
            ));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
                let refused = dispatcher
                    .delegate(Request::new("planner", "reviewer").task_json(nested(20_000)))
                    .await;
                assert!(matches!(
                    refused,
                    Err(dispatch::Error::Ledger(Error::InvalidEvent(
                        InvalidEvent::TaskTooDeep
                    )))
                ));
                dispatcher.shutdown().await.unwrap();
            });
            assert_eq!(ledger.replay().count(), 0, "nothing was written");
        })
        .unwrap();
    worker.join().unwrap();
}

#[test]
fn a_task_over_the_size_limit_is_refused_and_what_is_stored_round_trips() {
    let ledger = ledger();
    // 17 MiB was stored before the fix, then refused by verify and import.
    let huge = "x".repeat(17 << 20);
    let id = "huge".parse().unwrap();
    let refused = ledger.record(&id, queued(Some(json!(huge))));
    assert!(matches!(
        refused,
        Err(Error::InvalidEvent(InvalidEvent::TaskTooLarge { .. }))
    ));
    assert_eq!(ledger.status(&id).unwrap().status, StatusKind::NotFound);

    // The largest task the ledger takes, with the longest texts, survives the
    // whole round trip, escaping included (every byte a control character).
    let largest = "\u{1}".repeat((MAX_TASK_BYTES - 2) / 6);
    let text = "\u{1}".repeat(delegation_log::event::MAX_TEXT_BYTES);
    let id = "largest".parse().unwrap();
    ledger
        .record(
            &id,
            Event::Queued(Queued {
                source: text.clone(),
                target: text.clone(),
                task: Some(json!(largest)),
                retry_of: None,
                attempt: None,
                not_before: None,
            }),
        )
        .unwrap();
    ledger
        .record(
            &id,
            Event::failed(delegation_log::FailureReason::Timeout, Some(text)).unwrap(),
        )
        .unwrap();
    let (first, second) = round_trip(&ledger);
    assert_eq!(first, second);
}

#[test]
fn a_text_over_the_limit_is_refused_before_writing() {
    let ledger = ledger();
    let id = "long-source".parse().unwrap();
    let refused = ledger.record(&id, Event::queued("s".repeat(65 * 1024), "reviewer"));
    assert!(matches!(
        refused,
        Err(Error::InvalidEvent(InvalidEvent::TextTooLong {
            field: "source",
            ..
        }))
    ));
}

#[test]
fn verify_refuses_by_the_same_limits() {
    let too_deep = format!(
        r#"{{"delegation":"d","seq":1,"event":"queued","source":"s","target":"t","task":{},"at":"2026-06-07T01:32:07Z"}}"#,
        nested(MAX_TASK_DEPTH + 1)
    );
    let ledger = ledger();
    let verdict = delegation_log::audit::verify(too_deep.as_bytes(), ledger.clock()).unwrap();
    let json: Value = serde_json::from_str(&verdict.to_json()).unwrap();
    assert_eq!(json["violations"][0]["kind"], "malformed");
    let imported = ledger.import(too_deep.as_bytes()).unwrap();
    assert!(!imported.verdict.is_clean());
    assert_eq!(imported.stored, 0);
}
