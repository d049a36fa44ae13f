//! `status` and `history`: read one delegation from a log.

use std::path::Path;

use delegation_log::{Event, StatusKind};

use super::{Failure, Outcome, open_existing, or_dash, parse_id};

pub(crate) fn status(db: &Path, id: &str, json: bool) -> Outcome {
    let ledger = open_existing(db)?;
    let id = parse_id(id)?;
    let status = ledger
        .status(&id)
        .map_err(|e| Failure::Problems(format!("cannot read `{id}`: {e}")))?;
    if json {
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| Failure::Unusable(format!("cannot encode the status: {e}")))?;
        println!("{text}");
    } else {
        let word = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let json = serde_json::to_value(&status).unwrap_or_default();
        let status_word = json.get("status").and_then(word).unwrap_or_default();
        let reason = json.get("reason").and_then(word);
        let received = json.get("target_received").and_then(word);
        println!("id:              {}", status.id);
        println!("status:          {status_word}");
        println!("reason:          {}", or_dash(reason));
        println!("http_status:     {}", or_dash(status.http_status));
        println!("error_detail:    {}", or_dash(status.error_detail.as_ref()));
        println!("target_received: {}", or_dash(received));
        println!("target:          {}", or_dash(status.target.as_ref()));
        println!("queued_at:       {}", or_dash(status.queued_at));
        println!("settled_at:      {}", or_dash(status.settled_at));
    }
    if status.status == StatusKind::NotFound {
        return Err(Failure::Problems(format!(
            "no delegation `{id}` in the log"
        )));
    }
    Ok(())
}

pub(crate) fn history(db: &Path, id: &str, json: bool) -> Outcome {
    let ledger = open_existing(db)?;
    let id = parse_id(id)?;
    let records = ledger
        .history(&id)
        .map_err(|e| Failure::Problems(format!("cannot read `{id}`: {e}")))?;
    if records.is_empty() {
        return Err(Failure::Problems(format!(
            "no delegation `{id}` in the log"
        )));
    }
    for record in &records {
        if json {
            let line = serde_json::to_string(record)
                .map_err(|e| Failure::Unusable(format!("cannot encode a record: {e}")))?;
            println!("{line}");
            continue;
        }
        let what = match &record.event {
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
        };
        println!(
            "{}  {:<9}  {}  {what}",
            record.seq,
            record.event.kind().as_str(),
            record.at
        );
    }
    Ok(())
}
