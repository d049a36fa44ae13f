//! Random JSON Lines logs for the audit's property tests: delegations with
//! random ids, tasks, outcomes and times (`at` in UTC or with an offset),
//! interleaved at random, hashed or not; and what `export` writes for them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use delegation_log::{ChainHash, Ledger, Record};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Value, json};

/// One delegation of a random log.
#[derive(Clone, Debug)]
pub struct Delegation {
    pub id: String,
    pub task: Option<Value>,
    pub outcome: Option<Value>,
    pub millis: i64,
    pub offset: bool,
}

/// No outcome, or a legal `delivered` or `failed` of any reason.
pub fn outcome() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({"event": "delivered"}))),
        (200u16..=299).prop_map(|s| Some(json!({"event": "delivered", "http_status": s}))),
        (
            prop_oneof![
                Just("target_offline"),
                Just("marshal_error"),
                Just("timeout"),
                Just("interrupted")
            ],
            proptest::option::of("[ -~]{0,12}")
        )
            .prop_map(|(reason, detail)| {
                let mut v = json!({"event": "failed", "reason": reason});
                if let Some(detail) = detail {
                    v["detail"] = json!(detail);
                }
                Some(v)
            }),
        (prop_oneof![100u16..=199, 300u16..=599]).prop_map(|s| Some(
            json!({"event": "failed", "reason": "http_status", "http_status": s, "detail": "x"})
        )),
    ]
}

/// A delegation with a random id (possibly repeated: see [`unique`]), task,
/// outcome and time.
pub fn delegation() -> impl Strategy<Value = Delegation> {
    (
        "[a-z0-9._-]{1,12}",
        proptest::option::of(prop_oneof![
            Just(json!("text")),
            Just(json!({"b": [1, 2.5, null], "a": "é"})),
            any::<i64>().prop_map(|n| json!(n)),
        ]),
        outcome(),
        0i64..86_400_000,
        any::<bool>(),
    )
        .prop_map(|(id, task, outcome, millis, offset)| Delegation {
            id,
            task,
            outcome,
            millis,
            offset,
        })
}

/// 2026-06-07T01:32:07Z plus `millis`, in UTC with `Z`, or at +02:00 when
/// `offset`.
pub fn at(millis: i64, offset: bool) -> String {
    let base = 1_780_795_927_000i64 + millis;
    let utc = chrono::DateTime::from_timestamp_millis(base).unwrap();
    if offset {
        utc.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
    } else {
        utc.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// A log: each delegation's records as JSON values, interleaved by `picks`.
pub fn log_of(delegations: &[Delegation], picks: &[usize], hashed: bool) -> Vec<Value> {
    let mut queues: Vec<Vec<Value>> = delegations
        .iter()
        .map(|d| {
            let mut queued = json!({"delegation": d.id, "seq": 1, "event": "queued",
                "source": "planner", "target": "reviewer", "at": at(d.millis, d.offset)});
            if let Some(task) = &d.task {
                queued["task"] = task.clone();
            }
            let mut records = vec![queued];
            if let Some(outcome) = &d.outcome {
                let mut settled = outcome.clone();
                settled["delegation"] = json!(d.id);
                settled["seq"] = json!(2);
                settled["at"] = json!(at(d.millis + 5, d.offset));
                records.push(settled);
            }
            records.reverse();
            records
        })
        .collect();
    let mut out = Vec::new();
    let mut picks = picks.iter().cycle();
    let mut heads: HashMap<String, ChainHash> = HashMap::new();
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len())
            .filter(|&i| !queues[i].is_empty())
            .collect();
        let pick = live[picks.next().copied().unwrap_or(0) % live.len()];
        let mut value = queues[pick].pop().unwrap();
        if hashed {
            let record: Record = serde_json::from_value(value.clone()).unwrap();
            let id = record.delegation.to_string();
            let previous = heads.get(&id).copied().unwrap_or(ChainHash::GENESIS);
            let hash = record.chain_hash(&previous);
            heads.insert(id, hash);
            value["hash"] = json!(hash.to_hex());
        }
        out.push(value);
    }
    out
}

/// The lines of a log, each ending in `\n`.
pub fn text(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// The delegations with the first of each id.
pub fn unique(delegations: Vec<Delegation>) -> Vec<Delegation> {
    let mut seen = std::collections::HashSet::new();
    delegations
        .into_iter()
        .filter(|d| seen.insert(d.id.clone()))
        .collect()
}

/// The log's records, hashed, normalized and in store order: what export writes.
pub fn normalized(values: &[Value]) -> String {
    let mut by_id: Vec<(String, Vec<Record>)> = Vec::new();
    for value in values {
        let mut record: Record = serde_json::from_value(value.clone()).unwrap();
        let id = record.delegation.to_string();
        let index = match by_id.iter().position(|(known, _)| *known == id) {
            Some(index) => index,
            None => {
                by_id.push((id, Vec::new()));
                by_id.len() - 1
            }
        };
        let previous = by_id[index]
            .1
            .last()
            .and_then(|r| r.hash)
            .unwrap_or(ChainHash::GENESIS);
        record.hash = Some(record.chain_hash(&previous));
        by_id[index].1.push(record);
    }
    by_id.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
    by_id
        .iter()
        .flat_map(|(_, records)| records)
        .map(|r| format!("{}\n", serde_json::to_string(r).unwrap()))
        .collect()
}

/// 96 cases, failures kept in `file`.
pub fn config(file: &'static str) -> Config {
    Config {
        cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

/// What `ledger` exports.
pub fn export(ledger: &Ledger) -> String {
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}
