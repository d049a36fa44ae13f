//! `status` and `history`: read one delegation from a log, and print its status
//! (with its task's attempts) or the records of each attempt, as text or JSON.

use std::io::Write as _;
use std::path::Path;

use delegation_log::audit::printable;
use delegation_log::event::{Remote, RemoteKind};
use delegation_log::ledger::Attempts;
use delegation_log::{Event, Status, StatusKind};
use serde::Serialize;

use super::{Done, Failure, open_existing, or_dash, parse_id};

pub(crate) fn status(db: &Path, id: &str, json: bool) -> Done {
    let ledger = open_existing(db)?;
    let id = parse_id(id)?;
    let status = ledger
        .task_status(&id)
        .map_err(|e| Failure::Problems(format!("cannot read `{id}`: {e}")))?;
    print_status(&status, json)?;
    if status.status == StatusKind::NotFound {
        return Err(Failure::Problems(format!(
            "no delegation `{id}` in the log"
        )));
    }
    Ok(())
}

/// Prints a status as `status` does: the JSON object with `json`, else one
/// `field: value` line per field, `-` for what does not apply. A stdout that cannot
/// be written (a reader that went away) is exit 2, not a panic.
pub(crate) fn print_status(status: &Status, json: bool) -> Done {
    let text = if json {
        serde_json::to_string_pretty(status)
            .map_err(|e| Failure::Unusable(format!("cannot encode the status: {e}")))?
    } else {
        let lines = [
            format!("id:              {}", status.id),
            format!("status:          {}", or_dash(word(&status.status))),
            format!("reason:          {}", or_dash(word(&status.reason))),
            format!("http_status:     {}", or_dash(status.http_status)),
            format!("rpc_code:        {}", or_dash(status.rpc_code)),
            format!("error_detail:    {}", or_dash(status.error_detail.as_ref())),
            format!(
                "target_received: {}",
                or_dash(word(&status.target_received))
            ),
            format!(
                "remote:          {}",
                or_dash(status.remote.as_ref().map(remote))
            ),
            format!("target:          {}", or_dash(status.target.as_ref())),
            format!("queued_at:       {}", or_dash(status.queued_at)),
            format!("settled_at:      {}", or_dash(status.settled_at)),
        ];
        let mut lines = lines.to_vec();
        if let Some(attempts) = &status.attempts {
            lines.extend(attempt_lines(status, attempts));
        }
        // One field a line: a field's own newlines and escape codes are escaped.
        lines
            .iter()
            .map(|line| printable(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Unusable(format!("cannot write to stdout: {e}")))
}

/// The lines of a status's task: this attempt of how many, the latest attempt
/// and its state, the first, the last failure, when the next attempt may go,
/// and whether the task gave up.
fn attempt_lines(status: &Status, attempts: &Attempts) -> [String; 6] {
    let failure = attempts.last_failure.as_ref().map(|failure| {
        let mut text = failure.reason.as_str().to_owned();
        if let Some(code) = failure.http_status {
            text.push_str(&format!(" {code}"));
        }
        if let Some(detail) = &failure.detail {
            text.push_str(&format!(": {detail}"));
        }
        format!("{text} at {} ({})", failure.at, failure.id)
    });
    [
        format!(
            "attempt:         {} of {}",
            status.attempt.unwrap_or(1),
            attempts.count
        ),
        format!(
            "latest:          {} ({})",
            attempts.latest,
            or_dash(word(&attempts.latest_status))
        ),
        format!("first:           {}", attempts.first),
        format!("last_failure:    {}", or_dash(failure)),
        format!("next_attempt_at: {}", or_dash(attempts.next_attempt_at)),
        format!(
            "exhausted:       {}",
            if attempts.exhausted { "yes" } else { "no" }
        ),
    ]
}

/// A value's name as its JSON form writes it (`failed`, `rpc_error`, `no`), or
/// `None` for what serializes to anything but a string (`null`).
fn word(value: &impl Serialize) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => Some(word),
        _ => None,
    }
}

/// The agent's answer in a few words: `message`, `message (context c-1)`,
/// `task t-1 (context c-1) working`.
fn remote(remote: &Remote) -> String {
    let mut words = match remote.kind {
        RemoteKind::Message => "message".to_owned(),
        RemoteKind::Task => "task".to_owned(),
    };
    if let Some(task) = &remote.task_id {
        words.push(' ');
        words.push_str(task);
    }
    if let Some(context) = &remote.context_id {
        words.push_str(&format!(" (context {context})"));
    }
    if let Some(state) = &remote.state {
        words.push(' ');
        words.push_str(state.as_str());
    }
    words
}

pub(crate) fn history(db: &Path, id: &str, json: bool) -> Done {
    let ledger = open_existing(db)?;
    let id = parse_id(id)?;
    // Every attempt of the task, first to latest: one for a task never retried.
    let attempts = ledger
        .task_history(&id)
        .map_err(|e| Failure::Problems(format!("cannot read `{id}`: {e}")))?;
    if attempts.iter().all(|(_, records)| records.is_empty()) {
        return Err(Failure::Problems(format!(
            "no delegation `{id}` in the log"
        )));
    }
    let several = attempts.len() > 1;
    for (n, (attempt, records)) in attempts.iter().enumerate() {
        if several && !json {
            if n > 0 {
                println!();
            }
            println!(
                "attempt {} of {}: {}",
                n + 1,
                attempts.len(),
                printable(attempt.as_str())
            );
        }
        for record in records {
            if json {
                let line = serde_json::to_string(record)
                    .map_err(|e| Failure::Unusable(format!("cannot encode a record: {e}")))?;
                println!("{line}");
                continue;
            }
            let what = what(&record.event);
            println!(
                "{}  {:<9}  {}  {}",
                record.seq,
                record.event.kind().as_str(),
                record.at,
                printable(&what)
            );
        }
    }
    Ok(())
}

/// An event's own words, after its kind: `planner -> http://…  task …` for a
/// `queued`, `http 200` for a `delivered`, `reason: detail` for a `failed`. Not
/// yet escaped: the caller escapes the whole line with `printable`.
pub(crate) fn what(event: &Event) -> String {
    match event {
        Event::Queued(queued) => {
            let task = queued
                .task
                .as_ref()
                .map(|t| format!("  task {t}"))
                .unwrap_or_default();
            format!("{} -> {}{task}", queued.source, queued.target)
        }
        Event::Delivered(delivered) => match delivered.http_status {
            Some(code) => format!("http {code}"),
            None => String::new(),
        },
        Event::Failed(failed) => match &failed.detail {
            Some(detail) => format!("{}: {detail}", failed.reason),
            None => failed.reason.to_string(),
        },
    }
}
