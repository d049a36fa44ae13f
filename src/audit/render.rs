//! The plain-text form of a verdict.

use std::fmt::Write as _;

use crate::audit::Verdict;

/// A summary, one line per violation, then the pending delegations with ages.
pub(crate) fn plain(verdict: &Verdict) -> String {
    let mut out = String::new();
    let states = verdict.states;
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "verdict: {}\nrecords: {}\ndelegations: {} (queued {}, delivered {}, failed {})\nviolations: {}",
        match verdict.verdict {
            super::Outcome::Clean => "clean",
            super::Outcome::Violations => "violations",
        },
        verdict.records,
        verdict.delegations,
        states.queued,
        states.delivered,
        states.failed,
        verdict.violations.len(),
    );
    for violation in &verdict.violations {
        let _ = writeln!(
            out,
            "  line {}: {}: {}: {}",
            violation.line,
            violation.delegation.as_deref().unwrap_or("-"),
            violation.kind,
            violation.message,
        );
    }
    let _ = writeln!(out, "pending: {}", verdict.pending.len());
    for pending in &verdict.pending {
        let _ = writeln!(
            out,
            "  {}: queued at {}, age {}",
            pending.delegation,
            pending.queued_at,
            age(pending.age_seconds),
        );
    }
    out
}

/// `3d 4h 5m 6s`, leaving out leading zero units.
pub(crate) fn age(seconds: u64) -> String {
    let units = [
        (seconds / 86_400, "d"),
        (seconds / 3_600 % 24, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let mut parts = units
        .iter()
        .skip_while(|(value, unit)| *value == 0 && *unit != "s")
        .map(|(value, unit)| format!("{value}{unit}"));
    let mut out = parts.next().unwrap_or_default();
    for part in parts {
        out.push(' ');
        out.push_str(&part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_leave_out_leading_zero_units() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3_605), "1h 0m 5s");
        assert_eq!(age(90_061), "1d 1h 1m 1s");
    }
}
