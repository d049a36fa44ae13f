//! Serving a sled ledger's [`Ledger::follow`] feed to other local processes, so
//! that `delegation-log tail` can follow a store another process holds.
//!
//! sled's file lock lets one process open a store. The process that holds it
//! runs a [`Server`]: a Unix domain socket, [`SOCKET`] inside the store's
//! directory, on tasks the server tracks. A [`Client`] in another process
//! connects to it and reads every record of the log once, then each new one.
//!
//! # The protocol
//! Newline-delimited JSON, from the server only (the client sends nothing):
//! - first a hello, `{"feed":"delegation-log","version":1}`; a client that
//!   speaks another [`VERSION`] stops there with [`Error::Version`];
//! - then one [`Message`] per line: `{"record":{…}}` (the record as `export`
//!   writes it), `{"missed":{"records":N}}`, `{"unreadable":{"reason":"…"}}` or
//!   `{"end":{"reason":"closed"}}`, the last line of a server that closed.
//!
//! # Nothing twice, nothing skipped
//! For each connection the server subscribes to the feed *first*, then reads a
//! snapshot of the log with a [`Tail`] (every delegation whole, in seq order).
//! A record acknowledged after the subscription is on the feed; one
//! acknowledged before it was written to the store before it, so the snapshot
//! holds it. The server keeps, per delegation, the last seq it sent: a record
//! at or below it is dropped (the snapshot had it), the next one is sent, and
//! one past a gap (two writers of one delegation acknowledged in the other
//! order) is held until the gap is filled. So every delegation's records go out
//! once each and in seq order. The snapshot can hold a record whose write is
//! still being made durable (acknowledged a moment later).
//!
//! # A slow or stopped client
//! The server writes to the socket with back-pressure, but the feed never
//! waits for it ([`FOLLOW_CAPACITY`](crate::ledger::FOLLOW_CAPACITY) records,
//! then the oldest are overwritten): the ledger's writers are never stalled. A
//! connection that fell behind is told `{"missed":{"records":N}}`, and the
//! server then reads what it missed from the log (the same [`Tail`], so only
//! delegations that moved are read again) and goes on: the client still gets
//! every record once. `tail` says so on stderr and carries on. A closing
//! server gives a client that does not read a grace of a second or two, then
//! cuts it off: no `end` line, so `tail` finishes from the log itself.
//!
//! # The socket
//! [`SOCKET`] in the store's directory, mode 0600. A Unix socket address holds
//! 107 bytes of path: for a longer one, on Linux, both sides go through
//! `/proc/self/fd/<n>/feed.sock` of an open handle to the directory; elsewhere
//! that is [`Error::PathTooLong`]. Only the holder of sled's lock binds it, so a
//! socket file found at start is stale (left by a killed process) and is
//! replaced; one left at [`SOCKET`] while nobody listens refuses connections
//! ([`Error::NotServed`]), and while nobody holds the lock `tail` reads the
//! store itself. [`Server::close`] (or dropping the server) removes the file it
//! bound, and only that one.
//!
//! [`Ledger::follow`]: crate::Ledger::follow
//! [`Tail`]: crate::ledger::Tail

mod client;
mod position;
mod server;
mod socket;

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::Record;

pub use client::{Client, Closer};
pub use server::Server;
pub use socket::SOCKET;

/// The protocol version a hello names; a client refuses any other.
pub const VERSION: u32 = 1;

/// The first line a server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always `delegation-log`.
    pub feed: String,
    /// The protocol version: [`VERSION`].
    pub version: u32,
}

impl Hello {
    /// This build's hello.
    pub fn current() -> Self {
        Hello {
            feed: "delegation-log".to_owned(),
            version: VERSION,
        }
    }
}

/// One line after the hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// A record of the log, as `export` writes it.
    Record(Record),
    /// This connection fell behind the live feed by `records` records; the
    /// server reads them from the log, so they still come, once each.
    Missed {
        /// How many the feed dropped for this connection.
        records: u64,
    },
    /// The server cannot read the log (damage or an I/O failure); the last line.
    Unreadable {
        /// Why, as the ledger's error says it.
        reason: String,
    },
    /// The server closed the feed (its process is ending); the last line.
    End {
        /// Why: `closed`.
        reason: String,
    },
}

/// Why a feed could not be served, reached or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nobody serves a feed at `socket`: no socket file, or a stale one nobody
    /// listens on.
    ///
    /// # Handling
    /// The store's holder does not serve a feed (a command that does not, a
    /// program using the library, an older build) or is starting or ending:
    /// retry a little, then report it.
    #[error("no process serves a feed at {socket}: {source}")]
    NotServed {
        /// The socket's path.
        socket: PathBuf,
        /// What connecting said.
        source: io::Error,
    },
    /// The server speaks another protocol version (or is not a feed at all).
    ///
    /// # Handling
    /// Use the `delegation-log` build the serving process runs.
    #[error(
        "the process serving the feed speaks {found}, this build speaks feed version {VERSION}: \
         use the same delegation-log build as the process that holds the store"
    )]
    Version {
        /// What its first line said.
        found: String,
    },
    /// A line after the hello is not a [`Message`].
    ///
    /// # Handling
    /// Stop reading: the stream cannot be trusted.
    #[error("a garbled line from the feed ({reason}): {line}")]
    Garbled {
        /// The line, cut to 200 bytes.
        line: String,
        /// What decoding said.
        reason: String,
    },
    /// The socket's path does not fit a Unix socket address, and this platform
    /// has no short way round it.
    ///
    /// # Handling
    /// Keep the store at a shorter path.
    #[error(
        "{socket} is longer than the 107 bytes a Unix socket address holds: keep the store at a shorter path"
    )]
    PathTooLong {
        /// The socket's path.
        socket: PathBuf,
    },
    /// Something at `socket` is not a socket, so the server will not replace it.
    ///
    /// # Handling
    /// Move it away.
    #[error("{socket} exists and is not a socket: move it away to serve the feed")]
    NotASocket {
        /// The path.
        socket: PathBuf,
    },
    /// Any other I/O failure on the socket.
    ///
    /// # Handling
    /// Report it; for a client, the connection is over.
    #[error("feed socket {socket}: {source}")]
    Io {
        /// The socket's path.
        socket: PathBuf,
        /// The failure.
        source: io::Error,
    },
}
