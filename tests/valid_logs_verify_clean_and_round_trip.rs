//! Guards the audit's round trip on random valid logs (random delegations,
//! outcomes, interleavings, hashed or not, `at` in any notation): `verify` finds
//! them clean, with every record, delegation and open delegation counted, and
//! `export` after `import` gives their normalized hashed form, on which import
//! then export is exactly the identity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod random_logs;
mod support;

use std::sync::Arc;

use audit_support::clock;
use delegation_log::Ledger;
use delegation_log::audit;
use delegation_log::ledger::Options;
use delegation_log::store::Memory;
use proptest::prelude::*;
use random_logs::{config, delegation, export, log_of, normalized, text, unique};

proptest! {
    #![proptest_config(config("proptest-regressions/valid_logs_verify_clean_and_round_trip.txt"))]

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
}
