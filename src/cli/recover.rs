//! `recover`: settle what a dead process left queued.
//!
//! Every delegation is recovered on its own: the command prints each one it
//! settled (and, with `--redeliver`, each redelivery's outcome), then each one it
//! could not recover, with its id and why, and exits 1 if there was any.

use std::path::Path;
use std::time::Duration;

use delegation_log::DelegationId;
use delegation_log::dispatch::{Dispatcher, Options, Recovery};

use delegation_log::audit::printable;

use super::http::HttpArgs;
use super::{Done, Failure, open_existing, runtime};

pub(crate) fn run(db: &Path, redeliver: bool, http: &HttpArgs, lease: Duration) -> Done {
    let ledger = open_existing(db)?;
    if !redeliver {
        let held = ledger
            .lease(lease)
            .map_err(|e| Failure::Unusable(format!("cannot take a lease: {e}")))?;
        let report = ledger.recover_all_leased(held.as_ref());
        if let Some(held) = held {
            // What it took over is settled; a lease left to run out costs nothing.
            let _ = held.retire();
        }
        println!(
            "recovered {} delegation(s) as failed / interrupted",
            report.settled.len()
        );
        for id in &report.settled {
            println!("  {}", printable(id.as_str()));
        }
        let failed: Vec<_> = report
            .failed
            .iter()
            .map(|failure| (failure.id.as_ref(), failure.error.to_string()))
            .collect();
        return print_failures(&failed, 0);
    }
    let transport = http.transport()?;
    let runtime = runtime()?;
    let feed = super::feed::start(&runtime, &ledger, db, "recover");
    let done = runtime.block_on(async {
        let dispatcher = Dispatcher::with_options(ledger, transport, Options::new().lease(lease));
        let report = dispatcher.recover(Recovery::Redeliver).await;
        println!(
            "redelivering {} delegation(s); each original is failed / interrupted",
            report.recovered.len()
        );
        let mut unrecorded = 0;
        for item in report.recovered {
            let Some(receipt) = item.redelivery else {
                continue;
            };
            let new_id = receipt.id.clone();
            match receipt.settled().await {
                Ok(settled) => println!(
                    "  {} -> {}: {}",
                    printable(item.id.as_str()),
                    printable(new_id.as_str()),
                    printable(&super::demo::describe(&settled.outcome))
                ),
                Err(e) => {
                    unrecorded += 1;
                    println!(
                        "  {} -> {}: not recorded: {}",
                        printable(item.id.as_str()),
                        printable(new_id.as_str()),
                        printable(&e.to_string())
                    );
                }
            }
        }
        let drained = dispatcher.shutdown().await;
        let failed: Vec<_> = report
            .failed
            .iter()
            .map(|failure| (failure.id.as_ref(), failure.error.to_string()))
            .collect();
        let printed = print_failures(&failed, unrecorded);
        match drained {
            Err(e) if printed.is_ok() => Err(Failure::Problems(e.to_string())),
            _ => printed,
        }
    });
    runtime.block_on(feed.close());
    done
}

/// Prints every delegation recovery could not settle, and fails (exit 1) if there
/// is any, or if `unrecorded` redeliveries' outcomes were not recorded.
fn print_failures(failed: &[(Option<&DelegationId>, String)], unrecorded: usize) -> Done {
    if !failed.is_empty() {
        println!(
            "could not recover {} delegation(s); each is left as it was:",
            failed.len()
        );
        for (id, error) in failed {
            let id = id.map_or_else(|| "-".to_owned(), ToString::to_string);
            println!("  {}: {}", printable(&id), printable(error));
        }
    }
    match (failed.len(), unrecorded) {
        (0, 0) => Ok(()),
        (0, n) => Err(Failure::Problems(format!("{n} outcome(s) not recorded"))),
        (n, 0) => Err(Failure::Problems(format!(
            "{n} delegation(s) could not be recovered"
        ))),
        (n, m) => Err(Failure::Problems(format!(
            "{n} delegation(s) could not be recovered; {m} outcome(s) not recorded"
        ))),
    }
}
