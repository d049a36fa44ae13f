//! Fuzzing the audit: arbitrary bytes judged as a JSON Lines log keep the
//! verdict's own rules, and a clean log survives `import` then `export`.

use std::sync::Arc;

use crate::clock::ManualClock;
use crate::ledger::{Ledger, Options};

/// Judges `bytes` as a JSON Lines log, twice, and checks the verdict.
///
/// # Panics
/// If the verdict differs between two runs over the same bytes; if it breaks its
/// own rules (violations out of line order or past the last line, a clean verdict
/// with violations, states that do not add up to the delegations); or if a clean
/// log, imported into an empty store and exported again, does not verify clean
/// with the same records, delegations and states.
pub fn verify_jsonl(bytes: &[u8]) {
    let clock = ManualClock::default();
    let first = crate::audit::verify(bytes, &clock);
    let second = crate::audit::verify(bytes, &clock);
    let verdict = match (first, second) {
        (Ok(first), Ok(second)) => {
            assert_eq!(first, second, "verify gave two verdicts on the same bytes");
            first
        }
        (Err(first), Err(second)) => {
            assert_eq!(
                first.to_string(),
                second.to_string(),
                "verify failed two ways"
            );
            return;
        }
        (first, second) => panic!("verify is unstable: {first:?} then {second:?}"),
    };
    let lines = u64::try_from(bytes.split(|b| *b == b'\n').count()).unwrap_or(u64::MAX);
    assert!(
        verdict.violations.windows(2).all(|pair| match pair {
            [a, b] => a.line < b.line,
            _ => true,
        }),
        "violations out of line order, or two on one line: {verdict:?}"
    );
    assert!(
        verdict
            .violations
            .iter()
            .all(|v| v.line >= 1 && v.line <= lines),
        "a violation outside the log's {lines} lines: {verdict:?}"
    );
    assert_eq!(verdict.is_clean(), verdict.violations.is_empty());
    let states = verdict.states;
    assert_eq!(
        states.queued + states.delivered + states.failed,
        verdict.delegations,
        "states do not add up: {verdict:?}"
    );
    assert_eq!(
        states.queued,
        u64::try_from(verdict.pending.len()).unwrap_or(u64::MAX)
    );
    if !verdict.is_clean() {
        return;
    }
    let ledger = Ledger::with_store(
        Arc::new(crate::store::Memory::new()),
        Options::new().clock(clock.clone()),
    );
    let imported = ledger
        .import(bytes)
        .unwrap_or_else(|e| panic!("a clean log did not import: {e}"));
    assert_eq!(
        imported.verdict, verdict,
        "import judged the log differently"
    );
    let mut exported = Vec::new();
    ledger
        .export(&mut exported)
        .unwrap_or_else(|e| panic!("an imported log did not export: {e}"));
    let again = crate::audit::verify(exported.as_slice(), &clock)
        .unwrap_or_else(|e| panic!("an export did not verify: {e}"));
    assert!(
        again.is_clean(),
        "an export of a clean log is not clean: {again:?}"
    );
    assert_eq!(
        (again.records, again.delegations, again.states),
        (verdict.records, verdict.delegations, verdict.states),
        "import then export changed the log"
    );
}
