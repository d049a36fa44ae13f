//! Guards where `verify` points: in a random log (random delegations, outcomes,
//! interleavings, hashed or not) with one injected fault of each kind (a
//! malformed line, a seq out of order, an outcome after settlement, a broken
//! chain), the first violation `verify` reports is that fault, of its kind, at its
//! line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod random_logs;
mod support;

use audit_support::clock;
use delegation_log::audit::{self, Kind};
use delegation_log::{ChainHash, Record};
use proptest::prelude::*;
use random_logs::{config, delegation, log_of, unique};
use serde_json::{Value, json};

proptest! {
    #![proptest_config(config("proptest-regressions/faults_are_reported_at_their_line.txt"))]

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
