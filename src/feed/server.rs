//! The serving side: a listener and one task per connection, all tracked, all
//! ended by [`Server::close`].

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::position::Position;
use super::socket::{address, socket};
use super::{Error, Hello, Message};
use crate::Ledger;
use crate::event::Record;
use crate::ledger::{FollowError, Follower, Tail};

/// How long a closing server gives each connection to take what is left.
const GRACE: Duration = Duration::from_secs(1);

/// How many records go out in one write.
const BATCH: usize = 1024;

/// A ledger's feed, served on [`SOCKET`](super::SOCKET) in its store's
/// directory (see the [module docs](super)).
///
/// Its tasks run on the tokio runtime it was started on, tracked: [`close`]
/// ends them (each connection gets what is left of the feed, then an `end`
/// line; one whose client does not read is cut off after a grace of a second
/// or two) and removes the socket file. Dropping it instead ends
/// them without waiting and removes the file too.
///
/// [`close`]: Server::close
#[derive(Debug)]
pub struct Server {
    socket: PathBuf,
    /// The device and inode of the socket this server bound, so that it removes
    /// that one and never a later holder's.
    bound: Option<(u64, u64)>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Serves `ledger`'s feed on the socket in `dir`, its store's directory,
    /// replacing a stale socket file there. Call it only while holding the
    /// store (a sled ledger opened at `dir`), from inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::PathTooLong`], [`Error::NotASocket`], or [`Error::Io`] if the
    /// socket cannot be bound.
    pub async fn start(ledger: &Ledger, dir: &Path) -> Result<Self, Error> {
        let socket = socket(dir);
        let io = |source: io::Error| Error::Io {
            socket: socket.clone(),
            source,
        };
        // Holding the store's lock, nobody else serves it: a socket there is stale.
        match std::fs::symlink_metadata(&socket) {
            Ok(meta) if meta.file_type().is_socket() => {
                std::fs::remove_file(&socket)
                    .or_else(ignore_not_found)
                    .map_err(io)?;
            }
            Ok(_) => return Err(Error::NotASocket { socket }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = {
            let address = address(dir)?;
            UnixListener::bind(&address.path).map_err(io)?
        };
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let meta = std::fs::symlink_metadata(&socket).map_err(io)?;
        let bound = Some((meta.dev(), meta.ino()));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept(
            listener,
            meta.uid(),
            ledger.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        Ok(Server {
            socket,
            bound,
            stop,
            tracker,
        })
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops taking connections, gives each what is left of the feed and an
    /// `end` line (a client that does not read is cut off after the grace),
    /// waits for every task, and removes the socket file.
    pub async fn close(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        // Drop removes the socket.
    }

    fn remove_socket(&mut self) {
        let Some(bound) = self.bound.take() else {
            return;
        };
        let same = std::fs::symlink_metadata(&self.socket)
            .map(|meta| (meta.dev(), meta.ino()) == bound)
            .unwrap_or(false);
        if same {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
        self.remove_socket();
    }
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Takes connections until stopped, each on its own tracked task.
async fn accept(
    listener: UnixListener,
    owner: u32,
    ledger: Ledger,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            // Only the socket's owner (or root) is served, whatever the
            // socket's mode was for the moment between its bind and its
            // chmod to 0600: anyone else is hung up on, unread.
            Ok((stream, _))
                if stream
                    .peer_cred()
                    .is_ok_and(|peer| peer.uid() == owner || peer.uid() == 0) =>
            {
                tracker.spawn(serve(stream, ledger.clone(), stop.clone()));
            }
            Ok(_) => {}
            // Out of file descriptors or the like: wait a little, go on.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One connection: the hello, the snapshot, then the feed until stopped or
/// the client goes away.
async fn serve(stream: UnixStream, ledger: Ledger, stop: CancellationToken) {
    let mut connection = Connection {
        stream,
        stop,
        position: Position::default(),
        tail: Some(Tail::new()),
        ledger,
    };
    // Subscribe before the snapshot: see the module docs.
    let mut follower = connection.ledger.follow();
    let _ = connection.run(&mut follower).await;
}

struct Connection {
    stream: UnixStream,
    stop: CancellationToken,
    position: Position,
    /// Where the log was read to; `None` only while a read is under way.
    tail: Option<Tail>,
    ledger: Ledger,
}

impl Connection {
    async fn run(&mut self, follower: &mut Follower) -> io::Result<()> {
        self.send(&line(&Hello::current())?).await?;
        if !self.catch_up().await? {
            return Ok(());
        }
        loop {
            let received = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                received = follower.recv() => received,
            };
            if !self.take(received, follower).await? {
                return Ok(());
            }
        }
        // Closing: what is left of the feed, then `end`, within the grace.
        let closing = async {
            loop {
                let received = follower.try_recv();
                if matches!(received, Err(FollowError::Empty)) {
                    break;
                }
                if !self.take(received, follower).await? {
                    return Ok(());
                }
            }
            let end = Message::End {
                reason: "closed".to_owned(),
            };
            self.send(&line(&end)?).await
        };
        tokio::time::timeout(GRACE, closing)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Sends what `received` (and whatever else is waiting on the feed, up to a
    /// batch) lets through. False once the connection is over.
    async fn take(
        &mut self,
        mut received: Result<Record, FollowError>,
        follower: &mut Follower,
    ) -> io::Result<bool> {
        let mut ready = Vec::new();
        loop {
            match received {
                Ok(record) => self.position.take(record, &mut ready),
                Err(FollowError::Lagged { missed }) => {
                    self.send_records(&mut ready).await?;
                    self.send(&line(&Message::Missed { records: missed })?)
                        .await?;
                    return self.catch_up().await;
                }
                Err(FollowError::Empty) => break,
                // The ledger is gone: nothing more will come.
                Err(_) => {
                    self.send_records(&mut ready).await?;
                    return Ok(false);
                }
            }
            if ready.len() >= BATCH {
                break;
            }
            received = follower.try_recv();
        }
        self.send_records(&mut ready).await?;
        Ok(true)
    }

    /// Reads the log past where this connection's [`Tail`] is and sends what it
    /// has not sent. False if the log cannot be read (the client is told).
    async fn catch_up(&mut self) -> io::Result<bool> {
        let mut tail = self.tail.take().unwrap_or_default();
        let ledger = self.ledger.clone();
        let (tail, polled) = tokio::task::spawn_blocking(move || {
            let polled = crate::store::thread::marked(|| tail.poll(&ledger));
            (tail, polled)
        })
        .await
        .map_err(io::Error::other)?;
        self.tail = Some(tail);
        match polled {
            Ok(records) => {
                let mut ready = Vec::new();
                for record in records {
                    self.position.take(record, &mut ready);
                    if ready.len() >= BATCH {
                        self.send_records(&mut ready).await?;
                    }
                }
                self.send_records(&mut ready).await?;
                Ok(true)
            }
            Err(e) => {
                let unreadable = Message::Unreadable {
                    reason: e.to_string(),
                };
                self.send(&line(&unreadable)?).await?;
                Ok(false)
            }
        }
    }

    async fn send_records(&mut self, ready: &mut Vec<Record>) -> io::Result<()> {
        if ready.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for record in ready.drain(..) {
            bytes.extend(line(&Message::Record(record))?);
        }
        self.send(&bytes).await
    }

    /// Writes `bytes` whole. A client that does not read holds this write up,
    /// never the ledger; once the server is closing, it gets the grace.
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = self.stream.write_all(bytes);
        tokio::pin!(write);
        tokio::select! {
            written = &mut write => written,
            () = self.stop.cancelled() => tokio::time::timeout(GRACE, write)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
        }
    }
}

/// One JSON line.
fn line(value: &impl serde::Serialize) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}
