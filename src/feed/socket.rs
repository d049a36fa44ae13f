//! Where the feed's socket lives, and how to name it within a Unix socket
//! address's 107 bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::Error;

/// The socket's file name inside the store's directory.
pub const SOCKET: &str = "feed.sock";

/// The longest path a Unix socket address holds (108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// A path to bind or connect to: the socket's own, or a short one through an
/// open handle to its directory, which must stay open while the path is used.
pub(super) struct Address {
    pub(super) path: PathBuf,
    _dir: Option<File>,
}

/// The socket of the store at `dir`.
pub(super) fn socket(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// How to reach the socket of the store at `dir`.
pub(super) fn address(dir: &Path) -> Result<Address, Error> {
    let path = socket(dir);
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok(Address { path, _dir: None });
    }
    short(dir, path)
}

/// On Linux, `/proc/self/fd/<n>/feed.sock`, `n` an open handle to `dir`: the
/// kernel resolves it to the socket in `dir`, for bind and connect alike.
#[cfg(target_os = "linux")]
fn short(dir: &Path, socket: PathBuf) -> Result<Address, Error> {
    use std::os::fd::AsRawFd as _;
    let handle = File::open(dir).map_err(|source| Error::Io { socket, source })?;
    Ok(Address {
        path: PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", handle.as_raw_fd())),
        _dir: Some(handle),
    })
}

#[cfg(not(target_os = "linux"))]
fn short(_dir: &Path, socket: PathBuf) -> Result<Address, Error> {
    Err(Error::PathTooLong { socket })
}
