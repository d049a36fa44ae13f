//! The plain-text form of a verdict (a summary, a line per violation, the pending
//! delegations with their ages), and the escaping of text printed for people.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::audit::Verdict;

/// `text` made safe to print to a terminal: control characters (C0, DEL, C1,
/// escape sequences and newlines included) and the bidirectional formatting
/// characters that reorder what a reader sees are written as `\u{..}` escapes.
/// Everything else is kept as it is.
///
/// A delegation id, a detail or a target comes from whoever wrote the log, so
/// printing it raw would let a hostile log move the cursor, clear the screen, or
/// print a fake `verdict: clean` line.
///
/// ```
/// use delegation_log::audit::printable;
///
/// assert_eq!(printable("task-1"), "task-1");
/// assert_eq!(printable("x\u{1b}[2J\nverdict: clean"), "x\\u{1b}[2J\\u{a}verdict: clean");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A summary, one line per violation, then the pending delegations with ages.
pub(crate) fn plain(verdict: &Verdict) -> String {
    let mut out = String::new();
    let states = verdict.states;
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "verdict: {}\nrecords: {}\ndelegations: {} (queued {}, delivered {}, failed {})\nviolations: {}",
        match verdict.verdict {
            super::Judgement::Clean => "clean",
            super::Judgement::Violations => "violations",
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
            printable(violation.delegation.as_deref().unwrap_or("-")),
            violation.kind,
            printable(&violation.message),
        );
    }
    let _ = writeln!(out, "pending: {}", verdict.pending.len());
    for pending in &verdict.pending {
        let _ = writeln!(
            out,
            "  {}: queued at {}, age {}",
            printable(pending.delegation.as_str()),
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
    use super::{age, printable};

    #[test]
    fn control_and_reordering_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            printable("plain é ✓ 😀 \\ \"quoted\""),
            "plain é ✓ 😀 \\ \"quoted\""
        );
        assert_eq!(printable("\u{1b}[5A\u{1b}[J"), "\\u{1b}[5A\\u{1b}[J");
        assert_eq!(
            printable("a\tb\r\n\u{7f}\u{9b}"),
            "a\\u{9}b\\u{d}\\u{a}\\u{7f}\\u{9b}"
        );
        assert_eq!(printable("\u{202e}fdp.exe"), "\\u{202e}fdp.exe");
    }

    #[test]
    fn ages_leave_out_leading_zero_units() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3_605), "1h 0m 5s");
        assert_eq!(age(90_061), "1d 1h 1m 1s");
    }
}
