//! `mcp`: serve the MCP tools over stdio until the client closes stdin or the
//! process gets SIGTERM or Ctrl-C, then drain every delivery and exit.
//!
//! Stdout carries the protocol and nothing else; what this command has to say goes
//! to stderr.

use std::path::PathBuf;
use std::time::Duration;

use delegation_log::audit::printable;
use delegation_log::dispatch::{DEFAULT_LEASE, Options, Recovery, Report};
use delegation_log::mcp::Server;

use super::delegate::seconds;
use super::http::HttpArgs;
use super::{Done, Failure, runtime, stopped};

/// The arguments of `mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The log's directory, created if it does not exist (the server holds its
    /// lock while it runs), or a `postgres://` URL, shared with other
    /// dispatchers.
    #[arg(long, value_name = "DIR|URL")]
    db: PathBuf,
    /// How to reach the agents; --protocol is the default for calls that name
    /// none.
    #[command(flatten)]
    http: HttpArgs,
    /// Who delegates, as recorded in each `queued`.
    #[arg(long, value_name = "NAME", default_value = "mcp")]
    from: String,
    /// The delivery deadline in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "8")]
    timeout: Duration,
    /// Retries, as for `delegate`: `check_task_status` on a task's first id
    /// then answers for its latest attempt.
    #[command(flatten)]
    retry: super::delegate::RetryArgs,
    /// What to do at start with delegations a dead process left `queued`:
    /// `interrupt` settles each as failed / interrupted, `redeliver` also sends
    /// it again (as `recover --redeliver` does), `off` leaves them for
    /// `delegation-log recover`.
    #[arg(long, value_enum, value_name = "POLICY", default_value = "interrupt")]
    recover: AtStart,
    /// While serving, run that recovery again every SECS seconds (fractions
    /// allowed; 0 never does), so that what a dead dispatcher sharing the
    /// database left is settled once its lease runs out, without a restart.
    /// Default: on a `postgres://` db, every 10 s (the lease); on a directory,
    /// never (its lock admits no other process). Ignored with `--recover off`.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    recover_every: Option<Duration>,
}

/// The `--recover` policy of `mcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AtStart {
    /// Settle each as failed / interrupted.
    Interrupt,
    /// Settle each as failed / interrupted and deliver it again.
    Redeliver,
    /// Leave them queued.
    Off,
}

pub(crate) fn run(args: Args) -> Done {
    let ledger = super::open(&args.db)?;
    let http = args.http.transport()?;
    let protocol = args.http.protocol;
    let policy = match args.recover {
        AtStart::Interrupt => Some(Recovery::Interrupt),
        AtStart::Redeliver => Some(Recovery::Redeliver),
        AtStart::Off => None,
    };
    let every = match args.recover_every {
        Some(every) if every.is_zero() => None,
        Some(every) => Some(every),
        None if super::place::url(&args.db).is_some() => Some(DEFAULT_LEASE),
        None => None,
    };
    let server = Server::new(
        ledger,
        http,
        Options::new()
            .deadline(args.timeout)
            .retry(args.retry.policy())
            .recover_every(policy.and(every))
            .recovery(policy.unwrap_or_default()),
    )
    .source(args.from)
    .protocol(protocol);
    let runtime = runtime()?;
    let feed = super::feed::start(&runtime, server.ledger(), &args.db, "mcp");
    if let Some(policy) = policy {
        say(&runtime.block_on(server.recover(policy)), policy);
    }
    let served = runtime.block_on(async {
        // Ends when shutdown has stopped the periodic recovery.
        let reports = async {
            while let Some(report) = server.next_recovery().await {
                say(&report, policy.unwrap_or_default());
            }
        };
        let (served, ()) = tokio::join!(
            server.clone().serve(rmcp::transport::stdio(), stopped()),
            reports
        );
        served
    });
    // Every delivery is drained: followers get the last outcomes, then the end.
    runtime.block_on(feed.close());
    // A read of stdin cannot be cancelled: after a signal, do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match served {
        Ok(stats) => {
            eprintln!(
                "delegation-log mcp: drained: {} queued, {} delivered, {} failed",
                stats.queued, stats.delivered, stats.failed
            );
            Ok(())
        }
        Err(e) => Err(Failure::Unusable(e.to_string())),
    }
}

/// Says on stderr what a recovery did: how many it settled, and each it could not.
fn say(report: &Report, policy: Recovery) {
    if !report.recovered.is_empty() {
        eprintln!(
            "delegation-log mcp: recovered {} delegation(s) a dead process left queued ({})",
            report.recovered.len(),
            match policy {
                Recovery::Redeliver => "failed / interrupted, each redelivered",
                _ => "failed / interrupted",
            }
        );
    }
    for failure in &report.failed {
        eprintln!(
            "delegation-log mcp: could not recover {}",
            printable(&failure.to_string())
        );
    }
}
