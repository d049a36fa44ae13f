//! `tail`: print a log's events, one line each or as JSON, and on PostgreSQL go
//! on following what other processes write until Ctrl-C or SIGTERM.
//!
//! On PostgreSQL it polls with a [`Tail`], a key-set of each delegation's last
//! seq printed, so a transaction that commits late is printed at the next poll,
//! never skipped, and nothing is printed twice. A sled store takes one process:
//! one held by another process cannot be read (exit 2, naming the lock); one
//! held by nobody is read, its handle dropped before printing (sled lets go of
//! the file lock from a background thread shortly after; no test yet shows how
//! soon), and printed, and `tail` ends there: nothing else can write to it while
//! `tail` holds it, and `tail` must not keep writers out.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use delegation_log::audit::printable;
use delegation_log::ledger::Tail;
use delegation_log::{Error, Ledger, OpenError, Record};

use super::inspect::what;
use super::place::url;
use super::{Done, Failure, runtime, stopped};

/// The arguments of `tail`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The log: a `postgres://` URL to follow, or a sled directory to print.
    #[arg(long, value_name = "DB")]
    db: PathBuf,
    /// One JSON object per line: each record as `export` writes it.
    #[arg(long)]
    json: bool,
    /// How often to look for new events on PostgreSQL, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval_ms: u64,
}

pub(crate) fn run(args: Args) -> Done {
    match url(&args.db) {
        Some(url) => follow(url, args.json, Duration::from_millis(args.interval_ms)),
        None => print_sled(&args.db, args.json),
    }
}

/// A sled store: print what it holds, then end (see the module docs).
fn print_sled(db: &Path, json: bool) -> Done {
    let ledger = Ledger::open_existing(db).map_err(|e| match e {
        Error::Open(OpenError::Locked { .. }) => Failure::Unusable(format!(
            "cannot tail {}: another process holds the store's lock (sled's file lock \
             on {}, one process per store). Stop that process first, or keep the log \
             on PostgreSQL (--db postgres://…), where tail follows what other \
             processes write",
            super::place::shown(db),
            db.join("db").display()
        )),
        e @ Error::Open(OpenError::NotAStore { .. }) => Failure::Unusable(e.to_string()),
        e => Failure::Unusable(format!("cannot open {}: {e}", super::place::shown(db))),
    })?;
    let records = Tail::new().poll(&ledger).map_err(unreadable)?;
    // Drop the handle before printing, so that sled can let go of its lock while
    // a slow reader of stdout is still reading (sled does so from a background
    // thread; how soon is not tested).
    drop(ledger);
    let printed = records.len();
    if print(&records, json)? == Printed::Closed {
        return Ok(());
    }
    eprintln!(
        "delegation-log tail: printed the {printed} events of {}; nothing else can write to \
         a sled store while tail holds it, so tail ends here",
        printable(&super::place::shown(db).to_string())
    );
    Ok(())
}

/// A PostgreSQL store: print what it holds, then every new event as other
/// processes write it, until Ctrl-C, SIGTERM, or a closed stdout.
fn follow(url: &str, json: bool, interval: Duration) -> Done {
    let ledger = Ledger::open_url(url).map_err(|e| {
        Failure::Unusable(format!(
            "cannot open the PostgreSQL log {}: {e}",
            super::place::redact(url)
        ))
    })?;
    let signals = runtime()?;
    let stopping = watch_signals(&signals);
    let mut tail = Tail::new();
    let done = loop {
        let records = match tail.poll(&ledger) {
            Ok(records) => records,
            Err(e) => break Err(unreadable(e)),
        };
        match print(&records, json) {
            Ok(Printed::Closed) => break Ok(()),
            Ok(Printed::All) => {}
            Err(failure) => break Err(failure),
        }
        match stopping.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    signals.shutdown_background();
    done
}

/// A channel that gets a message on Ctrl-C or SIGTERM. On unix both handlers are
/// installed before this returns, so a signal that comes once the first line is
/// out is never the default one (which would kill the process).
fn watch_signals(runtime: &tokio::runtime::Runtime) -> mpsc::Receiver<()> {
    let (stop, stopping) = mpsc::channel::<()>();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let _inside = runtime.enter();
        if let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            runtime.spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                let _ = stop.send(());
            });
            return stopping;
        }
    }
    runtime.spawn(async move {
        stopped().await;
        let _ = stop.send(());
    });
    stopping
}

/// What a log that cannot be read comes to: damage is exit 1 (with the command
/// that shows it all), anything else exit 2.
fn unreadable(e: Error) -> Failure {
    match e {
        e @ (Error::Corrupt { .. } | Error::UnknownVersion { .. }) => Failure::Problems(format!(
            "the log is damaged: {e}; run `delegation-log audit` on it"
        )),
        e => Failure::Unusable(format!("cannot read the log: {e}")),
    }
}

/// Whether every line was written, or stdout was closed (a reader that went
/// away, as `tail … | head` does): not a failure, the end.
#[derive(Debug, PartialEq, Eq)]
enum Printed {
    All,
    Closed,
}

/// Prints `records`, one line each, and flushes.
fn print(records: &[Record], json: bool) -> Result<Printed, Failure> {
    let mut out = io::stdout().lock();
    let written = records
        .iter()
        .try_for_each(|record| writeln!(out, "{}", line(record, json)?))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(Printed::All),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Printed::Closed),
        Err(e) => Err(Failure::Unusable(format!("cannot write to stdout: {e}"))),
    }
}

/// One record's line: `<time> <id> seq <n> <event> <what>`, escaped with
/// `printable`; or, with `json`, the record as `export` writes it.
pub(crate) fn line(record: &Record, json: bool) -> io::Result<String> {
    if json {
        return serde_json::to_string(record).map_err(io::Error::from);
    }
    let what = what(&record.event);
    let text = format!(
        "{} {} seq {} {} {what}",
        record.at,
        record.delegation,
        record.seq,
        record.event.kind().as_str()
    );
    Ok(printable(text.trim_end()).into_owned())
}
