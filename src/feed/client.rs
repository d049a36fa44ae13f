//! The following side: a blocking reader of one connection to a store's feed, which
//! checks the server's hello, then reads one message a line until the end.

use std::io::{self, BufRead as _, BufReader};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::socket::{address, socket};
use super::{Error, Hello, Message, VERSION};

/// How long a client waits for the hello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);

/// One connection to a [`Server`](super::Server), read line by line.
#[derive(Debug)]
pub struct Client {
    lines: BufReader<UnixStream>,
    socket: PathBuf,
}

/// Ends a [`Client`]'s connection from another thread: its next read sees the
/// end.
#[derive(Debug)]
pub struct Closer(UnixStream);

impl Closer {
    /// Shuts the connection down.
    pub fn close(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

impl Client {
    /// Connects to the feed of the store at `dir` and checks its hello.
    ///
    /// # Errors
    /// [`Error::NotServed`] if nobody serves it; [`Error::Version`] if the
    /// server speaks another protocol version; [`Error::PathTooLong`] or
    /// [`Error::Io`] otherwise.
    pub fn connect(dir: &Path) -> Result<Self, Error> {
        let socket = socket(dir);
        let stream = {
            let address = address(dir)?;
            UnixStream::connect(&address.path)
        };
        let stream = stream.map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::NotServed {
                socket: socket.clone(),
                source,
            },
            _ => Error::Io {
                socket: socket.clone(),
                source,
            },
        })?;
        let io = |source: io::Error| Error::Io {
            socket: socket.clone(),
            source,
        };
        stream.set_read_timeout(Some(HELLO_WITHIN)).map_err(io)?;
        let mut lines = BufReader::new(stream);
        let mut first = String::new();
        lines.read_line(&mut first).map_err(io)?;
        let hello: Option<Hello> = serde_json::from_str(&first).ok();
        if hello != Some(Hello::current()) {
            let found = match serde_json::from_str::<serde_json::Value>(&first) {
                Ok(value)
                    if value.get("feed").and_then(|v| v.as_str()) == Some("delegation-log") =>
                {
                    let version = value.get("version").cloned().unwrap_or_default();
                    format!("feed version {version}")
                }
                _ if first.is_empty() => "nothing (it closed the connection)".to_owned(),
                _ => format!("something else ({})", cut(first.trim_end())),
            };
            return Err(Error::Version { found });
        }
        debug_assert_eq!(Hello::current().version, VERSION);
        lines.get_ref().set_read_timeout(None).map_err(io)?;
        Ok(Client { lines, socket })
    }

    /// The next message; `None` once the connection ended without an `end`
    /// line (the serving process went away, or cut this client off).
    ///
    /// # Errors
    /// [`Error::Garbled`] for a line that is not a message; [`Error::Io`].
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        let mut text = String::new();
        match self.lines.read_line(&mut text) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            // A killed server resets the connection: it went away.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    socket: self.socket.clone(),
                    source,
                });
            }
        }
        if !text.ends_with('\n') {
            // Cut off mid-line: the serving process went away.
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Garbled {
                line: cut(text.trim_end()),
                reason: e.to_string(),
            })
    }

    /// Whether a message is already buffered, so that the next read does not
    /// wait (a reader can hold its output until this turns false).
    pub fn has_buffered(&self) -> bool {
        !self.lines.buffer().is_empty()
    }

    /// A handle that ends this connection from another thread.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket cannot be shared.
    pub fn closer(&self) -> Result<Closer, Error> {
        self.lines
            .get_ref()
            .try_clone()
            .map(Closer)
            .map_err(|source| Error::Io {
                socket: self.socket.clone(),
                source,
            })
    }
}

/// At most 200 bytes of `text`, on a char boundary.
fn cut(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}
