//! Helpers shared by the tests that deliver over real HTTP: a loopback server, a
//! closed port, an in-memory ledger, and one delegation delivered to its end.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use delegation_log::dispatch::{Dispatcher, Options, Request};
use delegation_log::store::Memory;
use delegation_log::transport::Http;
use delegation_log::{DelegationId, Ledger, ManualClock};

/// The task every helper delegates.
pub const TASK: &str = "review PR 42";

/// Serves `app` on an ephemeral loopback port for the rest of the test.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A loopback port nothing listens on: bound, then released.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A ledger in memory, on a manual clock.
pub fn memory_ledger() -> Ledger {
    Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::Options::new().clock(ManualClock::default()),
    )
}

/// Delegates [`TASK`] as `id` to `target` through `http` within `deadline`, and
/// shuts the dispatcher down, so the outcome is recorded when this returns. The
/// test itself never hangs: a dispatcher that does not settle fails it.
pub async fn deliver_one(
    http: Http,
    id: &str,
    target: String,
    deadline: Duration,
) -> (Ledger, DelegationId) {
    let ledger = memory_ledger();
    let dispatcher =
        Dispatcher::with_options(ledger.clone(), http, Options::new().deadline(deadline));
    let id = tokio::time::timeout(deadline * 4 + Duration::from_secs(10), async {
        let receipt = dispatcher
            .delegate(
                Request::new("planner", target)
                    .id(id.parse().unwrap())
                    .task(TASK),
            )
            .await
            .unwrap();
        dispatcher.shutdown().await.unwrap();
        receipt.id
    })
    .await
    .expect("the delegation settled (the dispatcher did not hang)");
    (ledger, id)
}
