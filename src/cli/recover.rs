//! `recover`: settle what a dead process left queued.

use std::path::Path;

use delegation_log::dispatch::{Dispatcher, Recovery};
use delegation_log::transport::Http;

use super::{Failure, Outcome, open_existing, runtime};

pub(crate) fn run(db: &Path, redeliver: bool) -> Outcome {
    let ledger = open_existing(db)?;
    if !redeliver {
        let settled = ledger
            .recover()
            .map_err(|e| Failure::Problems(format!("recovery stopped: {e}")))?;
        println!(
            "recovered {} delegation(s) as failed / interrupted",
            settled.len()
        );
        for id in settled {
            println!("  {id}");
        }
        return Ok(());
    }
    let transport =
        Http::new().map_err(|e| Failure::Unusable(format!("cannot start HTTP: {e}")))?;
    runtime()?.block_on(async {
        let dispatcher = Dispatcher::new(ledger, transport);
        let recovered = dispatcher
            .recover(Recovery::Redeliver)
            .await
            .map_err(|e| Failure::Problems(format!("recovery stopped: {e}")));
        let recovered = match recovered {
            Ok(recovered) => recovered,
            Err(failure) => {
                let _ = dispatcher.shutdown().await;
                return Err(failure);
            }
        };
        println!(
            "redelivering {} delegation(s); each original is failed / interrupted",
            recovered.len()
        );
        let mut problems = 0;
        for item in recovered {
            let Some(receipt) = item.redelivery else {
                continue;
            };
            let new_id = receipt.id.clone();
            match receipt.settled().await {
                Ok(settled) => println!(
                    "  {} -> {new_id}: {}",
                    item.id,
                    super::demo::describe(&settled.outcome)
                ),
                Err(e) => {
                    problems += 1;
                    println!("  {} -> {new_id}: not recorded: {e}", item.id);
                }
            }
        }
        let drained = dispatcher.shutdown().await;
        match (drained, problems) {
            (Ok(_), 0) => Ok(()),
            (Err(e), _) => Err(Failure::Problems(e.to_string())),
            (Ok(_), n) => Err(Failure::Problems(format!("{n} outcome(s) not recorded"))),
        }
    })
}
