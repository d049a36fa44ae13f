//! Records a few delegations in a fresh ledger and prints their statuses as JSON.

use delegation_log::{Event, FailureReason, Ledger};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(dir.path().join("log"))?;
    let outcomes = [
        ("deliver-1", Some(Event::delivered(Some(200))?)),
        (
            "busy-1",
            Some(Event::failed(
                FailureReason::HttpStatus(503),
                Some("503 Service Unavailable".into()),
            )?),
        ),
        (
            "offline-1",
            Some(Event::failed(
                FailureReason::TargetOffline,
                Some("connection refused".into()),
            )?),
        ),
        ("pending-1", None),
    ];
    for (id, outcome) in outcomes {
        let id = id.parse()?;
        ledger.record(&id, Event::queued("planner", "reviewer"))?;
        if let Some(outcome) = outcome {
            ledger.record(&id, outcome)?;
        }
        println!("{}", serde_json::to_string(&ledger.status(&id)?)?);
    }
    Ok(())
}
