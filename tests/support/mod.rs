//! Helpers any test may need, written once: delegation ids, a loopback port
//! nothing listens on, and sled's own handle on a store's files. The benches
//! include this file too (`benches/common/mod.rs`), so not every binary uses
//! every item.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use delegation_log::DelegationId;

/// A delegation id from text; panics on text the ledger refuses as an id.
pub fn id(text: &str) -> DelegationId {
    text.parse().unwrap()
}

/// Delegation `n` of a test's few: `d-0`, `d-1`, …
pub fn numbered(n: usize) -> DelegationId {
    id(&format!("d-{n}"))
}

/// A loopback port nothing listens on: bound, then released.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An A2A URL on a loopback port nothing listens on ([`closed_port`]).
pub fn closed_port_url() -> String {
    format!("http://{}/a2a", closed_port())
}

/// How long [`raw_sled`] waits for a lock that a just-closed handle still holds.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// sled's own handle on the closed store at `path`, for a test that reads or
/// edits its trees by hand. sled lets go of its file lock from a background
/// thread shortly after the last handle drops, so an open right after a close
/// can find it still held: wait for it, as `Sled::open` does, but up to
/// [`LOCK_WAIT`] (longer than the crate's own wait, for a loaded test machine),
/// then fail saying the store is still open.
pub fn raw_sled(path: &Path) -> sled::Db {
    open(path, sled::Config::new().path(path))
}

/// [`raw_sled`], with sled's page cache capped at `cache_bytes`.
pub fn raw_sled_with_cache(path: &Path, cache_bytes: u64) -> sled::Db {
    open(
        path,
        sled::Config::new().path(path).cache_capacity(cache_bytes),
    )
}

fn open(path: &Path, config: sled::Config) -> sled::Db {
    let started = Instant::now();
    loop {
        match config.open() {
            Ok(db) => return db,
            Err(sled::Error::Io(io)) if is_locked(&io) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(sled::Error::Io(io)) if is_locked(&io) => panic!(
                "{} is still locked after {LOCK_WAIT:?}: a handle to it is still open ({io})",
                path.display()
            ),
            Err(other) => panic!("sled cannot open {}: {other}", path.display()),
        }
    }
}

/// Whether sled's open failed on its file lock: sled reports the `WouldBlock` of
/// its `try_lock` as an error of kind `Other` that says so (sled 0.34.7,
/// `config.rs`).
fn is_locked(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

/// Every sample of a Prometheus text exposition, as `name{labels}` to value.
pub fn prometheus_samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}
