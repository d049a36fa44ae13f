//! The command line: the subcommands, parsing their flags, exit codes (1 for problems
//! found, 2 for bad usage or an unusable log), and one module per subcommand.

pub mod audit;
mod delegate;
mod demo;
mod feed;
mod http;
mod inspect;
#[cfg(feature = "tracing")]
mod logs;
#[cfg(feature = "mcp")]
mod mcp;
#[cfg(feature = "metrics")]
mod metrics;
mod pending;
mod place;
mod recover;
mod tail;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use delegation_log::audit::printable;
use delegation_log::{DelegationId, Ledger, OpenError};

/// An auditable event log for agent-to-agent delegations.
#[derive(Debug, Parser)]
#[command(name = "delegation-log", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print a log line to stderr for every delegation that settles (its id,
    /// target, attempt, outcome and reason): `text` or `json`. Nothing is logged
    /// without it.
    #[cfg(feature = "tracing")]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<logs::LogFormat>,
    /// Serve the delivery metrics (outcomes by reason, latency, queue depth) in
    /// the Prometheus text format at http://ADDR/metrics while the command runs.
    #[cfg(feature = "metrics")]
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start loopback targets (healthy, busy, v1-only, offline, slow), delegate a batch of
    /// tasks to them over HTTP, show each outcome as it settles, then audit the log.
    Demo {
        /// Where to keep the log, a directory or a `postgres://` URL (default: a new
        /// directory under the temp dir).
        #[arg(long)]
        db: Option<PathBuf>,
        /// How many tasks to delegate.
        #[arg(long, default_value_t = 15)]
        tasks: usize,
        /// The delivery deadline, in milliseconds; the slow target answers after
        /// four times this.
        #[arg(long, default_value_t = 500)]
        deadline_ms: u64,
        /// With a `postgres://` db: the dispatcher's lease, in seconds (see
        /// `delegate --lease`).
        #[arg(long, value_name = "SECS", value_parser = lease_seconds, default_value = "10")]
        lease: std::time::Duration,
        #[command(flatten)]
        retry: delegate::RetryArgs,
    },
    /// Hand a task to an A2A agent over HTTP: record it queued, deliver it, print the
    /// outcome as `status` does.
    ///
    /// Exit codes: 0 delivered; 1 failed (the reason is in the output); 2 a usage
    /// error or a log that cannot be opened (nothing is sent), or an outcome that
    /// could not be recorded (the delegation stays queued until `recover` settles it).
    ///
    /// With --no-wait the receipt is printed as soon as `queued` is durable. The
    /// process still delivers and records the outcome before it exits, within the
    /// delivery deadline, so nothing is left queued; it exits 0 whichever the
    /// outcome, and holds the log's lock until it exits. If it is killed first, the
    /// delegation stays queued and `recover` settles it.
    ///
    /// Running again with an --id the log holds sends nothing: it prints that
    /// delegation's status and exits by it (0 delivered, 1 failed). A delegation
    /// still queued there has no live process delivering it: exit 1, with a note to
    /// run `recover` (exit 0 with --no-wait). An id the log holds for another
    /// source, target or task is a usage error.
    Delegate(delegate::Args),
    /// Serve the MCP tools `delegate_task_async`, `check_task_status` and
    /// `list_pending` over stdio, for an agent runtime to start.
    ///
    /// Deliveries go on while the client polls. When the client closes stdin, or on
    /// SIGTERM or Ctrl-C, the server takes no more delegations, drains every
    /// delivery (outcomes recorded), and exits 0; 2 if the log cannot be opened.
    #[cfg(feature = "mcp")]
    Mcp(mcp::Args),
    /// Show one delegation's status.
    Status {
        /// The log's directory, or a `postgres://` URL.
        db: PathBuf,
        /// The delegation id.
        id: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the records of every attempt of the task a delegation is an attempt
    /// of, first to latest (for a task never retried, its own records).
    History {
        /// The log's directory, or a `postgres://` URL.
        db: PathBuf,
        /// The delegation id.
        id: String,
        /// Print the records as JSON Lines (the portable form, with hashes).
        #[arg(long)]
        json: bool,
    },
    /// List what is not settled: queued, and retries waiting for their time. One
    /// line each, oldest first: id, attempt, age, why it waits (`in_flight`, or
    /// `retry_at <time>`), target, and the first attempt's id. Served from the
    /// log's index, not a scan. Read-only.
    Pending(pending::PendingArgs),
    /// List the tasks that gave up: the last attempt failed and nothing retries
    /// it. One line each: first id, last id, attempts, target, and how the last
    /// attempt failed. Served from the log's index, not a scan. Read-only.
    Dead(pending::DeadArgs),
    /// Settle every delegation a dead process left queued: as failed / interrupted,
    /// or, with --redeliver, by delivering each again over HTTP.
    ///
    /// On a `postgres://` db shared by several dispatchers, only what a dispatcher
    /// whose lease ran out left (or what nobody claims) is taken over.
    Recover {
        /// The log's directory, or a `postgres://` URL.
        db: PathBuf,
        /// Deliver each pending delegation again as `<first id>.r<n>` (a retry of
        /// it, linked by `retry_of`), with the first attempt's id as the A2A
        /// messageId, so receivers can drop the repeat.
        #[arg(long)]
        redeliver: bool,
        /// How to reach the agents, with --redeliver.
        #[command(flatten)]
        http: http::HttpArgs,
        /// With a `postgres://` db: the lease (in seconds) recovery holds while it
        /// settles and redelivers. Recovery takes over only delegations whose
        /// dispatcher's lease has run out (or that nobody claims): live
        /// dispatchers on other hosts keep theirs.
        #[arg(long, value_name = "SECS", value_parser = lease_seconds, default_value = "10")]
        lease: std::time::Duration,
    },
    /// Rewrite a log of an older format in the current one, in place. Every
    /// delegation is checked first, as `audit` checks it: any damage stops the
    /// migration with the log unchanged. A crash at any point leaves the log as it
    /// was or migrated; running it again finishes the job. A log already current
    /// is left alone. A log of format 3, written before the index that `pending`
    /// and `dead` read, keeps its records and gains the index, built by one scan.
    Migrate {
        /// The log's directory.
        db: PathBuf,
    },
    /// Print a log's events, one line each (`<time> <id> seq <n> <event> …`) or,
    /// with --json, one JSON object each (the record as `export` writes it).
    ///
    /// Then go on printing what other processes write, each event once, until
    /// Ctrl-C or SIGTERM (exit 0): on PostgreSQL (`--db postgres://…`) by
    /// polling; on a sled directory another delegation-log process holds (`mcp`,
    /// `demo`, `delegate`, `recover --redeliver`) through the feed it serves on
    /// DIR/feed.sock, until that process ends (exit 0). A sled directory held by
    /// a process that serves no feed is exit 2; one held by nobody is printed and
    /// tail ends, since nothing else can write to it meanwhile. A closed stdout
    /// ends tail too (exit 0). A damaged log is exit 1.
    Tail(tail::Args),
    #[command(flatten)]
    Audit(audit::Command),
}

/// What went wrong, by exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 1: an id not found, or problems found.
    Problems(String),
    /// Exit 2: bad usage or an unreadable log.
    Unusable(String),
}

pub(crate) type Done = Result<(), Failure>;

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "tracing")]
    if let Some(format) = cli.log_format {
        logs::install(format);
    }
    #[cfg(feature = "metrics")]
    if let Some(addr) = cli.metrics_addr
        && let Err(Failure::Unusable(message) | Failure::Problems(message)) = metrics::serve(addr)
    {
        eprintln!("delegation-log: {}", printable(&message));
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Demo {
            db,
            tasks,
            deadline_ms,
            lease,
            retry,
        } => demo::run(
            db,
            tasks,
            std::time::Duration::from_millis(deadline_ms),
            lease,
            retry.policy(),
        ),
        Command::Delegate(args) => delegate::run(args),
        #[cfg(feature = "mcp")]
        Command::Mcp(args) => mcp::run(args),
        Command::Status { db, id, json } => inspect::status(&db, &id, json),
        Command::History { db, id, json } => inspect::history(&db, &id, json),
        Command::Pending(args) => pending::pending(&args),
        Command::Dead(args) => pending::dead(&args),
        Command::Recover {
            db,
            redeliver,
            http,
            lease,
        } => recover::run(&db, redeliver, &http, lease),
        Command::Migrate { db } => migrate(&db),
        Command::Tail(args) => tail::run(args),
        Command::Audit(command) => return audit::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Problems(message)) => {
            if !message.is_empty() {
                eprintln!("delegation-log: {}", printable(&message));
            }
            ExitCode::from(1)
        }
        Err(Failure::Unusable(message)) => {
            eprintln!("delegation-log: {}", printable(&message));
            ExitCode::from(2)
        }
    }
}

/// Opens the log at `db`, creating it if missing; one that cannot be opened is
/// exit 2.
pub(crate) fn open(db: &Path) -> Result<Ledger, Failure> {
    place::open(db).map_err(|e| cannot_open(db, e))
}

/// Opens an existing log; a missing or unreadable one is exit 2.
pub(crate) fn open_existing(db: &Path) -> Result<Ledger, Failure> {
    place::open_existing(db).map_err(|e| cannot_open(db, e))
}

/// The log at `db` could not be opened: exit 2, with the error, which names the
/// place itself when there is no store there, and after `cannot open <db>:`
/// otherwise.
pub(crate) fn cannot_open(db: &Path, e: delegation_log::Error) -> Failure {
    match e {
        delegation_log::Error::Open(OpenError::NotAStore { .. }) => {
            Failure::Unusable(e.to_string())
        }
        e => Failure::Unusable(format!("cannot open {}: {e}", place::shown(db))),
    }
}

/// `migrate`: exit 0 migrated or already current, 1 damage found (nothing
/// changed), 2 no log there or it cannot be opened.
fn migrate(db: &Path) -> Done {
    match delegation_log::migrate(db) {
        Ok(done) if done.already_current => {
            println!(
                "{}: already in the current format; nothing to do",
                place::shown(db)
            );
            Ok(())
        }
        Ok(done) => {
            println!(
                "{}: migrated {} delegations, {} records, to the current format",
                place::shown(db),
                done.delegations,
                done.records
            );
            Ok(())
        }
        Err(
            e @ (delegation_log::Error::Corrupt { .. }
            | delegation_log::Error::UnknownVersion { .. }),
        ) => Err(Failure::Problems(format!(
            "{}: not migrated, the log is unchanged: {e}; run `delegation-log audit {}`",
            place::shown(db),
            place::shown(db)
        ))),
        Err(e @ delegation_log::Error::Open(OpenError::NotAStore { .. })) => {
            Err(Failure::Unusable(e.to_string()))
        }
        Err(e) => Err(Failure::Unusable(format!(
            "cannot migrate {}: {e}",
            place::shown(db)
        ))),
    }
}

/// Parses an id given on the command line; a bad one is exit 2.
pub(crate) fn parse_id(id: &str) -> Result<DelegationId, Failure> {
    id.parse()
        .map_err(|e| Failure::Unusable(format!("bad delegation id: {e}")))
}

/// A tokio runtime for the async subcommands.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Unusable(format!("cannot start the async runtime: {e}")))
}

/// `--lease`: seconds (fractions allowed), at least the dispatcher's minimum.
/// `--backoff`: a duration, as a number and a unit (`ms`, `s`, `m`, `h`;
/// fractions allowed: `1.5s`), or a bare number of seconds.
pub(crate) fn duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "`{other}` is not a unit: use ms, s, m or h (as in 200ms, 1s)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (as in 200ms, 1s, 1.5s)"))?;
    std::time::Duration::try_from_secs_f64(value * scale).map_err(|e| e.to_string())
}

pub(crate) fn lease_seconds(text: &str) -> Result<std::time::Duration, String> {
    let lease = delegate::seconds(text)?;
    let min = delegation_log::dispatch::MIN_LEASE;
    if lease < min {
        return Err(format!("the lease must be at least {min:?}"));
    }
    Ok(lease)
}

/// `-` for what does not apply.
pub(crate) fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Ends on SIGTERM or Ctrl-C. A signal that cannot be watched is never seen; the
/// command then ends by its other ways (the MCP server when stdin closes).
pub(crate) async fn stopped() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::duration;

    #[test]
    fn a_backoff_is_a_number_and_a_unit_or_seconds() {
        assert_eq!(duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("3").unwrap(), Duration::from_secs(3));
    }

    #[test]
    fn a_backoff_without_a_number_or_with_an_unknown_unit_is_refused() {
        for text in ["", "ms", "1d", "-1s", "fast"] {
            assert!(duration(text).is_err(), "{text:?}");
        }
    }
}
