//! `mcp`: serve the MCP tools over stdio until the client closes stdin or the
//! process gets SIGTERM or Ctrl-C, then drain every delivery and exit.
//!
//! Stdout carries the protocol and nothing else; what this command has to say goes
//! to stderr.

use std::path::PathBuf;
use std::time::Duration;

use delegation_log::Ledger;
use delegation_log::dispatch::Options;
use delegation_log::mcp::{self, Server};

use super::delegate::seconds;
use super::http::{HttpArgs, Protocol};
use super::{Done, Failure, runtime, stopped};

/// The arguments of `mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The log's directory; created if it does not exist. The server holds its
    /// lock while it runs.
    #[arg(long, value_name = "DIR")]
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
}

pub(crate) fn run(args: Args) -> Done {
    let ledger = Ledger::open(&args.db).map_err(|e| {
        Failure::Unusable(format!(
            "cannot open {}: {e}",
            super::place::shown(&args.db)
        ))
    })?;
    let http = args.http.transport()?;
    let protocol = match args.http.protocol {
        Protocol::Auto => mcp::Protocol::Auto,
        Protocol::V0_3 => mcp::Protocol::V0_3,
        Protocol::V1_0 => mcp::Protocol::V1_0,
    };
    let server = Server::new(ledger, http, Options::new().deadline(args.timeout))
        .source(args.from)
        .protocol(protocol);
    let runtime = runtime()?;
    let served = runtime.block_on(server.serve(rmcp::transport::stdio(), stopped()));
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
