//! Helpers shared by the tests that deliver: an in-memory ledger, in-process
//! transports (one that never answers, one that keeps every message), and, for
//! delivery over real HTTP, a loopback server and one delegation delivered to its
//! end.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
#[cfg(feature = "http")]
use std::time::Duration;

use axum::Router;
use delegation_log::store::Memory;
use delegation_log::transport::{Accepted, BoxFuture, Failure, Immediate, Message, Transport};
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

/// A ledger in memory, on a manual clock.
pub fn memory_ledger() -> Ledger {
    Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new().clock(ManualClock::default()),
    )
}

/// A target that never answers.
pub struct Silent;

impl Transport for Silent {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        Box::pin(std::future::pending())
    }
}

/// Every message a transport was given, as (delegation, message id).
pub type Sent = Arc<Mutex<Vec<(DelegationId, DelegationId)>>>;

/// A transport that accepts everything with a 200 and keeps every message it was
/// given.
pub fn recording() -> (impl Transport, Sent) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&sent);
    let transport = Immediate::new(move |message: &Message| {
        kept.lock()
            .unwrap()
            .push((message.delegation.clone(), message.message_id.clone()));
        Ok(Accepted::status(200))
    });
    (transport, sent)
}

/// Delegates [`TASK`] as `id` to `target` through `http` within `deadline`, and
/// shuts the dispatcher down, so the outcome is recorded when this returns. The
/// test itself never hangs: a dispatcher that does not settle fails it.
#[cfg(feature = "http")]
pub async fn deliver_one(
    http: delegation_log::transport::Http,
    id: &str,
    target: String,
    deadline: Duration,
) -> (Ledger, DelegationId) {
    use delegation_log::dispatch::{Dispatcher, Options, Request};

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
