//! `pending` and `dead`: what a sender asks of the whole log, served from the
//! store's index (verified against the heads), read-only.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use delegation_log::audit::printable;
use delegation_log::ledger::{Dead, Pending, Waiting};
use serde::Serialize;

use super::{Done, Failure, open_existing};

/// The arguments of `pending`.
#[derive(Debug, clap::Args)]
pub(crate) struct PendingArgs {
    /// The log's directory, or a `postgres://` URL.
    #[arg(long, value_name = "DB")]
    db: PathBuf,
    /// Only what was queued at least this long ago: seconds, or a number with
    /// `s`, `m`, `h` or `d` (`90`, `1.5m`, `2h`).
    #[arg(long, value_name = "DUR", value_parser = duration)]
    older_than: Option<Duration>,
    /// Print `{"pending": [...]}` as JSON.
    #[arg(long)]
    json: bool,
}

/// The arguments of `dead`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeadArgs {
    /// The log's directory, or a `postgres://` URL.
    #[arg(long, value_name = "DB")]
    db: PathBuf,
    /// Print `{"dead": [...]}` as JSON.
    #[arg(long)]
    json: bool,
}

/// `pending`: one line per delegation not settled, oldest first: exit 0 (none
/// is not a failure), 1 if the log cannot be read, 2 if it cannot be opened.
pub(crate) fn pending(args: &PendingArgs) -> Done {
    let ledger = open_existing(&args.db)?;
    let pending = ledger
        .pending(args.older_than)
        .map_err(|e| Failure::Problems(format!("cannot read {}: {e}", args.db.display())))?;
    if args.json {
        return print_json(&Listing { pending: &pending });
    }
    print_lines(pending.iter().map(pending_line))
}

/// `dead`: one line per task that gave up, oldest failure first; exits as
/// `pending` does.
pub(crate) fn dead(args: &DeadArgs) -> Done {
    let ledger = open_existing(&args.db)?;
    let dead = ledger
        .dead()
        .map_err(|e| Failure::Problems(format!("cannot read {}: {e}", args.db.display())))?;
    if args.json {
        return print_json(&DeadListing { dead: &dead });
    }
    print_lines(dead.iter().map(dead_line))
}

#[derive(Serialize)]
struct Listing<'a> {
    pending: &'a [Pending],
}

#[derive(Serialize)]
struct DeadListing<'a> {
    dead: &'a [Dead],
}

/// `<id>  attempt <n>  age <age>  <in_flight | retry_at <time>>  <target>  first <id>`
fn pending_line(entry: &Pending) -> String {
    let waiting = match entry.waiting {
        Waiting::InFlight => "in_flight".to_owned(),
        Waiting::RetryAt(at) => format!("retry_at {at}"),
    };
    format!(
        "{}  attempt {}  age {}  {waiting}  {}  first {}",
        entry.id,
        entry.attempt,
        age(entry.age),
        entry.target,
        entry.first
    )
}

/// `<first>  last <id>  attempts <n>  <target>  <reason>[ <status>][: <detail>]  at <time>`
fn dead_line(entry: &Dead) -> String {
    let failure = &entry.failure;
    let mut reason = failure.reason.as_str().to_owned();
    if let Some(status) = failure.http_status {
        reason.push_str(&format!(" {status}"));
    }
    if let Some(detail) = &failure.detail {
        reason.push_str(&format!(": {detail}"));
    }
    format!(
        "{}  last {}  attempts {}  {}  {reason}  at {}",
        entry.first, entry.last, entry.attempts, entry.target, failure.at
    )
}

/// An age in its two largest units: `42s`, `3m07s`, `5h02m`, `2d03h`.
fn age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// `--older-than`: seconds, or a number and a unit (`s`, `m`, `h`, `d`).
fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.char_indices().last() {
        Some((at, unit @ ('s' | 'm' | 'h' | 'd'))) => (text.get(..at).unwrap_or_default(), unit),
        _ => (text, 's'),
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (`90`, `90s`, `1.5m`, `2h`, `1d`)"))?;
    let scale = match unit {
        'm' => 60.0,
        'h' => 3_600.0,
        'd' => 86_400.0,
        _ => 1.0,
    };
    if !number.is_finite() || number < 0.0 {
        return Err(format!("`{text}` is not a duration of 0 or more"));
    }
    Duration::try_from_secs_f64(number * scale).map_err(|e| e.to_string())
}

/// Prints the JSON form, which escapes every control character itself.
fn print_json(value: &impl Serialize) -> Done {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Unusable(format!("cannot encode the answer: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Unusable(format!("cannot write to stdout: {e}")))
}

/// Prints each line, its escape codes and newlines escaped; a stdout that went
/// away is exit 2, not a panic.
fn print_lines(lines: impl Iterator<Item = String>) -> Done {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{}", printable(&line))
            .map_err(|e| Failure::Unusable(format!("cannot write to stdout: {e}")))?;
    }
    out.flush()
        .map_err(|e| Failure::Unusable(format!("cannot write to stdout: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("2h").unwrap(), Duration::from_secs(7_200));
        assert_eq!(duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(duration("-1s").is_err());
        assert!(duration("soon").is_err());
    }

    #[test]
    fn ages_read_in_their_two_largest_units() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(187)), "3m07s");
        assert_eq!(age(Duration::from_secs(5 * 3_600 + 120)), "5h02m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 3 * 3_600)), "2d03h");
    }
}
