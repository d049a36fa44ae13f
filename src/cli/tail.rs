//! `tail`: print a log's events, one line each or as JSON, and go on following
//! what other processes write until Ctrl-C or SIGTERM.
//!
//! On PostgreSQL it polls with a [`Tail`], a key-set of each delegation's last
//! seq printed, so a transaction that commits late is printed at the next poll,
//! never skipped, and nothing is printed twice.
//!
//! A sled store takes one process. One held by nobody is read, its handle
//! dropped before printing (sled lets go of the file lock from a background
//! thread shortly after; no test yet shows how soon), and printed, and `tail`
//! ends there: nothing else can write to it while `tail` holds it, and `tail`
//! must not keep writers out. One held by another delegation-log process that
//! serves its feed (`mcp`, `demo`, `delegate`, `recover --redeliver`) is
//! followed through the socket in its directory ([`delegation_log::feed`]):
//! every event already in the log, then each new one, each once, until Ctrl-C,
//! SIGTERM, a closed stdout, or the serving process ending (exit 0, said on
//! stderr). A feed that fell behind is said on stderr; the serving process reads
//! what it missed from the log, so nothing is skipped. A feed that ends without
//! its end line (its process was killed, or cut off a tail that was not reading
//! as it ended) is finished from the log once nobody holds the store: what was
//! not printed yet is printed, by the same per-delegation key-set. A store held by a process
//! that serves no feed is exit 2, naming the lock.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use delegation_log::audit::printable;
use delegation_log::ledger::Tail;
use delegation_log::{DelegationId, Error, Ledger, OpenError, Record, Seq};

use super::inspect::what;
use super::place::url;
use super::{Done, Failure, runtime, stopped};

/// The arguments of `tail`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The log: a `postgres://` URL, or a sled directory (followed through the
    /// feed of the process that holds it, or printed if nobody does).
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
        None => sled(&args.db, args.json),
    }
}

/// How long `tail` keeps trying a store that is locked but whose feed is not
/// (yet, or any more) there: its holder may be starting or ending.
const FEED_WITHIN: Duration = Duration::from_secs(1);

/// A sled store: print it if nobody holds it, else follow its holder's feed.
fn sled(db: &Path, json: bool) -> Done {
    let deadline = Instant::now() + FEED_WITHIN;
    loop {
        let not_served = match Ledger::open_existing(db) {
            Ok(ledger) => return print_sled(ledger, db, json),
            Err(Error::Open(OpenError::Locked { .. })) => match connect(db) {
                Ok(followed) => return followed(json),
                Err(not_served) => not_served,
            },
            Err(e) => return Err(super::cannot_open(db, e)),
        };
        if Instant::now() >= deadline {
            return Err(Failure::Unusable(format!(
                "cannot tail {}: another process holds the store's lock (sled's file lock \
                 on {}, one process per store) and serves no feed ({not_served}). The \
                 delegation-log commands that hold a store while they run (mcp, demo, \
                 delegate, recover --redeliver) serve one; other programs do not. Stop \
                 that process first, or keep the log on PostgreSQL (--db postgres://…), \
                 where tail follows what other processes write",
                super::place::shown(db),
                db.join("db").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A store nobody holds: print what it holds, then end (see the module docs).
fn print_sled(ledger: Ledger, db: &Path, json: bool) -> Done {
    let records = Tail::new()
        .poll_all(&ledger)
        .map_err(|e| unreadable(e.into()))?;
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

/// Connects to the feed of the process holding `db`: a follow to run, or why
/// it is not served (anything else is a failure of its own).
#[cfg(unix)]
fn connect(db: &Path) -> Result<Box<dyn FnOnce(bool) -> Done + '_>, String> {
    use delegation_log::feed::{Client, Error as FeedError};
    match Client::connect(db) {
        Ok(client) => Ok(Box::new(move |json| follow_feed(client, db, json))),
        Err(e @ FeedError::NotServed { .. }) => Err(e.to_string()),
        Err(e) => Ok(Box::new(move |_| {
            Err(Failure::Unusable(format!(
                "cannot follow {}: {e}",
                super::place::shown(db)
            )))
        })),
    }
}

#[cfg(not(unix))]
fn connect(_db: &Path) -> Result<Box<dyn FnOnce(bool) -> Done>, String> {
    Err("following another process's sled store needs Unix sockets".to_owned())
}

/// How a follow of a feed ends: a signal, or the reader done.
#[cfg(unix)]
enum Ending {
    Signal,
    Read(Done),
}

/// Prints what the feed sends until a signal, a closed stdout, or its end.
#[cfg(unix)]
fn follow_feed(client: delegation_log::feed::Client, db: &Path, json: bool) -> Done {
    let closer = client
        .closer()
        .map_err(|e| Failure::Unusable(e.to_string()))?;
    let signals = runtime()?;
    let (stop, stopping) = mpsc::channel();
    watch_signals(&signals, stop.clone(), Ending::Signal);
    let db = db.to_path_buf();
    // A thread of its own: a blocked write to stdout must not keep a signal
    // from ending tail.
    let reader = std::thread::spawn(move || {
        let done = read_feed(client, &db, json);
        let _ = stop.send(Ending::Read(done));
    });
    let done = match stopping.recv() {
        Ok(Ending::Read(done)) => {
            let _ = reader.join();
            done
        }
        Ok(Ending::Signal) | Err(_) => {
            closer.close();
            // Let the reader finish the line it is printing, if it can.
            let _ = stopping.recv_timeout(Duration::from_millis(200));
            Ok(())
        }
    };
    signals.shutdown_background();
    done
}

/// Reads the feed and prints each record, flushing whenever nothing more is
/// buffered.
#[cfg(unix)]
fn read_feed(mut client: delegation_log::feed::Client, db: &Path, json: bool) -> Done {
    use delegation_log::feed::Message;
    let shown = printable(&super::place::shown(db).to_string()).into_owned();
    // The last seq printed of each delegation, to finish from the log if the
    // feed is cut off.
    let mut printed: HashMap<DelegationId, Seq> = HashMap::new();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = |result: io::Result<()>| match result {
        Ok(()) => Ok(Printed::All),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Printed::Closed),
        Err(e) => Err(Failure::Unusable(format!("cannot write to stdout: {e}"))),
    };
    loop {
        let message = client
            .next_message()
            .map_err(|e| Failure::Unusable(format!("cannot read the feed of {shown}: {e}")))?;
        let record = match message {
            Some(Message::Record(record)) => record,
            Some(Message::Missed { records }) => {
                if written(out.flush())? == Printed::Closed {
                    return Ok(());
                }
                eprintln!(
                    "delegation-log tail: fell behind the live feed by {records} records; \
                     the serving process reads them from the log, so none is skipped or \
                     printed twice"
                );
                continue;
            }
            Some(Message::Unreadable { reason }) => {
                let _ = out.flush();
                return Err(Failure::Problems(format!(
                    "the process holding {shown} cannot read its log: {reason}; run \
                     `delegation-log audit` on it once that process has ended"
                )));
            }
            Some(Message::End { .. }) => {
                let _ = written(out.flush())?;
                eprintln!(
                    "delegation-log tail: the process holding {shown} closed its feed (it is \
                     ending); tail ends here"
                );
                return Ok(());
            }
            None => {
                let _ = written(out.flush())?;
                drop(out);
                return finish_from_log(db, &shown, &printed, json);
            }
            Some(_) => continue,
        };
        let text = line(&record, json).map_err(|e| Failure::Unusable(e.to_string()))?;
        printed.insert(record.delegation, record.seq);
        if written(writeln!(out, "{text}"))? == Printed::Closed {
            return Ok(());
        }
        if !client.has_buffered() && written(out.flush())? == Printed::Closed {
            return Ok(());
        }
    }
}

/// A PostgreSQL store: print what it holds, then every new event as other
/// processes write it, until Ctrl-C, SIGTERM, or a closed stdout.
fn follow(url: &str, json: bool, interval: Duration) -> Done {
    let ledger = Ledger::open_url(url).map_err(|e| {
        Failure::Unusable(format!(
            "cannot open the PostgreSQL log {}: {e}",
            delegation_log::store::postgres::redact(url)
        ))
    })?;
    let signals = runtime()?;
    let (stop, stopping) = mpsc::channel();
    watch_signals(&signals, stop, ());
    let mut tail = Tail::new();
    let done = loop {
        let records = match tail.poll(&ledger) {
            Ok(records) => records,
            Err(e) => break Err(unreadable(e.into())),
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

/// The feed ended without its end line: its process was killed, or cut this
/// tail off as it ended because tail did not read. Once nobody holds the store,
/// print from it what was not printed yet, so nothing acknowledged is skipped.
#[cfg(unix)]
fn finish_from_log(
    db: &Path,
    shown: &str,
    printed: &HashMap<DelegationId, Seq>,
    json: bool,
) -> Done {
    let deadline = Instant::now() + FEED_WITHIN;
    let ledger = loop {
        match Ledger::open_existing(db) {
            Ok(ledger) => break ledger,
            Err(Error::Open(OpenError::Locked { .. })) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Acknowledged events may be unprinted: not a clean end.
            Err(e) => {
                return Err(Failure::Unusable(format!(
                    "the feed of {shown} ended without its end line (its process was \
                     killed, or cut tail off as it ended), and the store cannot be read now \
                     ({}): events after the last printed may be missing",
                    e
                )));
            }
        }
    };
    let records = Tail::new()
        .poll_all(&ledger)
        .map_err(|e| unreadable(e.into()))?;
    drop(ledger);
    let rest: Vec<Record> = records
        .into_iter()
        .filter(|record| record.seq > printed.get(&record.delegation).copied().unwrap_or(0))
        .collect();
    if print(&rest, json)? == Printed::Closed {
        return Ok(());
    }
    eprintln!(
        "delegation-log tail: the feed of {shown} ended without its end line (its process was \
         killed, or cut tail off as it ended); printed the {} events it had not sent, from \
         the log; tail ends here",
        rest.len()
    );
    Ok(())
}

/// Sends `signalled` on `stop` at Ctrl-C or SIGTERM. On unix both handlers are
/// installed before this returns, so a signal that comes once the first line is
/// out is never the default one (which would kill the process).
fn watch_signals<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    stop: mpsc::Sender<T>,
    signalled: T,
) {
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
                let _ = stop.send(signalled);
            });
            return;
        }
    }
    runtime.spawn(async move {
        stopped().await;
        let _ = stop.send(signalled);
    });
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
