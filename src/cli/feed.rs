//! Serving the follow feed from the commands that hold a sled store while they
//! run (`mcp`, `demo`, `delegate`, `recover --redeliver`), so that `tail` in
//! another process can follow it. See `delegation_log::feed`.

use std::path::Path;

use delegation_log::Ledger;
use delegation_log::audit::printable;

/// The feed a command serves, if any: none on PostgreSQL (`tail` polls it), and
/// none if the socket cannot be bound (said on stderr; the command goes on).
pub(crate) struct Serving {
    #[cfg(unix)]
    server: Option<delegation_log::feed::Server>,
}

/// Serves `ledger`'s feed in `db` on `runtime`, if `db` is a sled directory.
pub(crate) fn start(
    runtime: &tokio::runtime::Runtime,
    ledger: &Ledger,
    db: &Path,
    command: &str,
) -> Serving {
    #[cfg(unix)]
    {
        if super::place::url(db).is_some() {
            return Serving { server: None };
        }
        match runtime.block_on(delegation_log::feed::Server::start(ledger, db)) {
            Ok(server) => Serving {
                server: Some(server),
            },
            Err(e) => {
                eprintln!(
                    "delegation-log {command}: not serving the log to `tail`: {}",
                    printable(&e.to_string())
                );
                Serving { server: None }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (runtime, ledger, db, command);
        Serving {}
    }
}

impl Serving {
    /// Gives each follower what is left and an end line, then removes the socket.
    pub(crate) async fn close(self) {
        #[cfg(unix)]
        if let Some(server) = self.server {
            server.close().await;
        }
    }
}
