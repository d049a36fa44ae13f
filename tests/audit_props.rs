//! Guards the audit round trips on random logs: for random valid logs (random
//! delegations, outcomes, interleavings, hashed or not, `at` in any notation),
//! `verify` is clean and `export` ∘ `import` is the identity on the normalized
//! hashed form; for random logs with one injected fault of each kind, `verify`
//! reports that fault first, at its line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;

use std::collections::HashMap;
use std::sync::Arc;

use audit_support::clock;
use delegation_log::audit::{self, Kind};
use delegation_log::ledger::Options;
use delegation_log::store::Memory;
use delegation_log::{ChainHash, Ledger, Record};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Delegation {
    id: String,
    task: Option<Value>,
    outcome: Option<Value>,
    millis: i64,
    offset: bool,
}

fn outcome() -> impl Strategy<Value = Option<Value>> {
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

fn delegation() -> impl Strategy<Value = Delegation> {
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

fn at(millis: i64, offset: bool) -> String {
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
fn log_of(delegations: &[Delegation], picks: &[usize], hashed: bool) -> Vec<Value> {
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

fn text(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

fn unique(delegations: Vec<Delegation>) -> Vec<Delegation> {
    let mut seen = std::collections::HashSet::new();
    delegations
        .into_iter()
        .filter(|d| seen.insert(d.id.clone()))
        .collect()
}

/// The log's records, hashed, normalized and in store order: what export writes.
fn normalized(values: &[Value]) -> String {
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

fn config(file: &'static str) -> Config {
    Config {
        cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

fn export(ledger: &Ledger) -> String {
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

proptest! {
    #![proptest_config(config("proptest-regressions/audit_props.txt"))]

    #[test]
    fn random_valid_logs_verify_clean_and_export_after_import_is_the_identity(
        delegations in proptest::collection::vec(delegation(), 1..12).prop_map(unique),
        picks in proptest::collection::vec(any::<usize>(), 1..40),
        hashed in any::<bool>(),
    ) {
        let values = log_of(&delegations, &picks, hashed);
        let log = text(&values);
        let verdict = audit::verify(log.as_bytes(), &clock()).unwrap();
        prop_assert!(verdict.is_clean(), "{}\n{}", log, verdict.to_plain());
        prop_assert_eq!(verdict.records as usize, values.len());
        prop_assert_eq!(verdict.delegations as usize, delegations.len());
        let settled = delegations.iter().filter(|d| d.outcome.is_some()).count();
        prop_assert_eq!(verdict.states.queued as usize, delegations.len() - settled);

        let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new());
        prop_assert_eq!(ledger.import(log.as_bytes()).unwrap().stored as usize, values.len());
        let exported = export(&ledger);
        prop_assert_eq!(&exported, &normalized(&values));

        // And on the normalized form, import then export is exactly the identity.
        let again = Ledger::with_store(Arc::new(Memory::new()), Options::new());
        again.import(exported.as_bytes()).unwrap();
        prop_assert_eq!(export(&again), exported.clone());
        prop_assert!(audit::verify(exported.as_bytes(), &clock()).unwrap().is_clean());
    }

    #[test]
    fn one_injected_fault_is_reported_first_and_at_its_line(
        delegations in proptest::collection::vec(delegation(), 1..10).prop_map(unique),
        picks in proptest::collection::vec(any::<usize>(), 1..40),
        hashed in any::<bool>(),
        fault in 0u8..4,
        at_line in any::<usize>(),
    ) {
        let mut values = log_of(&delegations, &picks, hashed);
        let mut lines: Vec<String> = values.iter().map(Value::to_string).collect();
        let k = at_line % values.len();
        let expected = match fault {
            0 => {
                values[k]["event"] = json!("bogus");
                lines[k] = values[k].to_string();
                (k, Kind::Malformed)
            }
            1 => {
                values[k]["seq"] = json!(values[k]["seq"].as_u64().unwrap() + 7);
                lines[k] = values[k].to_string();
                (k, Kind::Sequence)
            }
            2 => {
                let settled: Vec<usize> = (0..values.len())
                    .filter(|&i| values[i]["seq"] == json!(2))
                    .collect();
                prop_assume!(!settled.is_empty());
                let last = settled[k % settled.len()];
                let mut late = json!({"delegation": values[last]["delegation"], "seq": 3,
                    "event": "failed", "reason": "timeout", "at": "2026-06-08T00:00:00Z"});
                if hashed {
                    let record: Record = serde_json::from_value(late.clone()).unwrap();
                    let previous = ChainHash::from_hex(values[last]["hash"].as_str().unwrap()).unwrap();
                    late["hash"] = json!(record.chain_hash(&previous).to_hex());
                }
                let position = last + 1 + (k % (values.len() - last));
                lines.insert(position, late.to_string());
                (position, Kind::IllegalTransition)
            }
            _ => {
                if hashed {
                    values[k]["at"] = json!("2030-01-01T00:00:00Z");
                } else {
                    values[k]["hash"] = json!("0".repeat(64));
                }
                lines[k] = values[k].to_string();
                (k, Kind::BrokenChain)
            }
        };
        let log: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let verdict = audit::verify(log.as_bytes(), &clock()).unwrap();
        let first = verdict.violations.first().map(|v| (v.line, v.kind));
        prop_assert_eq!(first, Some((expected.0 as u64 + 1, expected.1)), "{}\n{}", log, verdict.to_plain());
    }
}
