//! An MCP server for agent runtimes: the tools `delegate_task_async`,
//! `check_task_status` and `list_pending` over the Model Context Protocol.
//!
//! A runtime that starts `delegation-log mcp --db DB` (or serves a [`Server`] on a
//! transport of its own) gives its agents the two tools of this crate's story, and
//! one for operators:
//!
//! | tool | arguments | structured answer |
//! | --- | --- | --- |
//! | `delegate_task_async` | `target` (an http(s) A2A endpoint), `task` (text), `id`?, `protocol`? (`auto`, `0.3`, `1.0`) | the receipt `{"id", "status": "queued", "queued_at"}`, as soon as `queued` is durable |
//! | `check_task_status` | `id` | exactly the object `delegation-log status --json` prints, `not_found` included: for a task retried, from any of its ids, its latest attempt's status with the task's attempts ([`Ledger::task_status`]) |
//! | `list_pending` | `older_than`? (seconds) | `{"pending": [status…]}`, oldest first, each with `in_flight` |
//!
//! Each tool lists a JSON Schema for its input and one for its output, and answers
//! with `structuredContent` (and the same JSON as text, for clients that read only
//! text).
//!
//! # Deliveries
//!
//! Deliveries run on the server's own [`Dispatcher`]s (one per A2A protocol, all
//! on one ledger): the answer to `delegate_task_async` does not wait for them, they
//! go on while the client polls, and [`Server::serve`] drains them before it
//! returns, when the client closes the transport or the caller's `stop` future
//! ends (the CLI's SIGTERM or Ctrl-C). Nothing is left `queued` by a server that
//! shut down. One that is killed leaves its deliveries `queued`; the next server
//! started on the same log settles them before it serves ([`Server::recover`],
//! which `delegation-log mcp` runs at start unless told `--recover off`), or
//! `delegation-log recover` does.
//!
//! # Errors
//!
//! Bad arguments (a missing or unknown argument, an id that is empty or over 256
//! bytes, a target that is not an http(s) URL with a host, a task over the log's
//! size limit, an unknown protocol) are answered as MCP tool errors: a
//! `tools/call` result with `isError: true`, the reason as text, and
//! `structuredContent` `{"error": "invalid_argument", "argument", "message"}`.
//! That is what the protocol asks for input that a model can correct (SEP-1303,
//! in the 2025-11-25 revision, moved input validation from JSON-RPC errors to
//! tool errors, so that the model sees the reason).
//! An id the log already holds gets `{"error": "id_taken", …}`: the delegation
//! exists, and `check_task_status` tells its outcome. A name that is no tool here
//! is a protocol error, JSON-RPC -32602 (invalid params), as the specification
//! answers an unknown tool. Nothing a client sends crashes the server.
//!
//! # Delegations as MCP tasks
//!
//! rmcp 2.x implements the tasks of the 2025-11-25 revision; 3.x, the current
//! line (and the one whose minimum Rust is this crate's), moved them into the
//! `io.modelcontextprotocol/tasks` extension (SEP-2663), which the server declares
//! and a client must declare too before it is answered with a task. A client that
//! declares it (at `initialize`, or in a request's `_meta` on a 2026-07-28
//! connection) gets a delegation as a task; every other client gets exactly the
//! tools above.
//!
//! - `tools/call` of `delegate_task_async` answers `resultType: "task"` with the
//!   task `working`, its `taskId` the delegation id, `createdAt` the `queued_at`,
//!   `ttlMs` null (the log keeps every delegation) and a `pollIntervalMs`. It does
//!   so once `queued` is durable, as the receipt does. Bad arguments are tool
//!   errors, as for every client, and open no task. For such a client,
//!   `tools/list` gives `delegate_task_async` the status schema as its output
//!   schema, since the call's final result is the status.
//! - `tasks/get` reads the log ([`Ledger::task_status`]) at every call, never a
//!   map of its own:
//!
//! | the log | the task |
//! | --- | --- |
//! | `queued` (being delivered, or a retry waiting for its backoff) | `working` |
//! | `delivered` | `completed`; `result` is `check_task_status`'s answer, `isError: false` |
//! | `failed`, and no retry coming | `completed`; `result` is `check_task_status`'s answer, `isError: true` |
//! | `not_found`, or not an id | JSON-RPC -32602, unknown task |
//!
//!   A failed delegation is `completed` with an error result, not `failed`: the
//!   extension keeps `failed` for a request that ended in a JSON-RPC error and
//!   counts a tool result with `isError: true` as `completed`. The delegation was
//!   accepted and what it did failed, and the result carries what a sender needs
//!   (the `reason`, the detail, whether the target may have the task), which a
//!   JSON-RPC error object would flatten. `statusMessage` names the reason too.
//!   For a task retried, the task is the first attempt's id; every attempt's id
//!   answers for it, and the task stays `working` until the last attempt settles.
//!   Since the answers come from the log, `tasks/get` on a task an earlier server
//!   run opened answers as well (a delegation a killed server left `queued` is
//!   settled by [`Server::recover`] before the next server serves).
//! - The extension has no `tasks/result` (the result is inlined in `tasks/get`
//!   once `completed`) and no `tasks/list` (`list_pending` lists what is open);
//!   rmcp answers a method it does not know with a JSON-RPC error.
//! - `tasks/cancel` is refused with -32602 for every task, `data`
//!   `{"taskId", "status", "cancellable": false}`: a delegation is durable once
//!   queued and its delivery may already have reached the agent, so nothing
//!   withdraws it, and an acknowledgement would suggest otherwise.
//! - `tasks/update` is acknowledged for a task the log holds (a delegation never
//!   asks for input, and the extension ignores unknown keys).
//! - A client that did not declare the extension and sends `tasks/*` gets rmcp's
//!   -32021 (missing required client capability).
//!
//! The official MCP Python SDK 2.3.0 ships no tasks extension, but its
//! `ClientExtension` mechanism carries one: `tests/mcp/tasks_client.py` declares
//! it with a `ResultClaim` for `resultType: "task"` whose resolver polls
//! `tasks/get`. Claims are active only on a 2026-07-28 connection (the default
//! `Client(mode="auto")` negotiates it with this server); on a handshake-era
//! connection the SDK does not advertise such an extension.

mod arguments;
mod handler;
mod schema;
mod tasks;

use std::future::Future;

use rmcp::ServiceExt as _;
use rmcp::service::RoleServer;
use rmcp::transport::IntoTransport;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{self, Dispatcher, Recovery, Report, Stats};
use crate::ledger::Ledger;
use crate::transport::Http;
use crate::transport::http::Protocol;

pub use self::arguments::{BadArgument, Check, Delegate, Pending};

/// The names of the tools, as `tools/list` gives them.
pub const TOOLS: [&str; 3] = ["delegate_task_async", "check_task_status", "list_pending"];

/// The MCP server: the tools over one ledger, delivering over HTTP.
///
/// Cheap to clone; clones share the ledger and the deliveries.
#[derive(Clone, Debug)]
pub struct Server {
    ledger: Ledger,
    source: String,
    protocol: Protocol,
    dispatchers: std::sync::Arc<Dispatchers>,
}

/// One dispatcher per A2A protocol, all on the server's ledger.
#[derive(Debug)]
struct Dispatchers {
    auto: Dispatcher,
    v0_3: Dispatcher,
    v1_0: Dispatcher,
}

impl Dispatchers {
    fn all(&self) -> [&Dispatcher; 3] {
        [&self.auto, &self.v0_3, &self.v1_0]
    }
}

/// Why [`Server::serve`] ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The MCP session could not start (the client closed the transport before
    /// `initialize`, or sent something else first). Deliveries were drained all
    /// the same.
    ///
    /// # Handling
    /// Nothing was delegated; check how the client starts the server.
    #[error("the MCP session did not start: {0}")]
    Session(String),
    /// Deliveries were drained and some outcomes could not be recorded: those
    /// delegations stay `queued` until `delegation-log recover` settles them.
    ///
    /// # Handling
    /// As for [`dispatch::Error::Drained`].
    #[error(transparent)]
    Drained(#[from] dispatch::Error),
}

impl Server {
    /// A server over `ledger` that delivers through `http` (one clone of it per
    /// protocol, sharing its connections and cards) with `options`, records
    /// `mcp` as the source of each delegation, and speaks [`Protocol::Auto`] when
    /// a call names no protocol.
    pub fn new(ledger: Ledger, http: Http, options: dispatch::Options) -> Self {
        let dispatcher = |protocol: Protocol| {
            // Periodic recovery runs on one of them, the one `recover` uses.
            let options = match protocol {
                Protocol::Auto => options,
                _ => options.recover_every(None),
            };
            Dispatcher::with_options(ledger.clone(), http.clone().protocol(protocol), options)
        };
        Server {
            dispatchers: std::sync::Arc::new(Dispatchers {
                auto: dispatcher(Protocol::Auto),
                v0_3: dispatcher(Protocol::V0_3),
                v1_0: dispatcher(Protocol::V1_0),
            }),
            ledger,
            source: "mcp".to_owned(),
            protocol: Protocol::Auto,
        }
    }

    /// Records `source` as who delegated (default `mcp`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Speaks `protocol` when a call names none (default [`Protocol::Auto`]).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The ledger it records into.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Settles what a dead server (or any dead process) left `queued` on this
    /// server's ledger, by `policy`, before the server serves: a client polling
    /// `check_task_status` for a delegation of a killed server then reads its
    /// outcome (`failed` / `interrupted`, or a redelivery's) instead of `queued`
    /// forever. Delegations live in this process are left alone, as
    /// [`Dispatcher::recover`] says; redeliveries run on the server's
    /// [`Protocol::Auto`] dispatcher and are drained by [`Server::shutdown`].
    pub async fn recover(&self, policy: Recovery) -> Report {
        self.dispatchers.auto.recover(policy).await
    }

    /// The next report of periodic recovery (the dispatch options'
    /// [`recover_every`](dispatch::Options::recover_every)), which runs on the
    /// [`Protocol::Auto`] dispatcher from the first [`Server::recover`] or
    /// delegation on; `None` once the server has shut down, and at once
    /// without it. See [`Dispatcher::next_recovery`].
    pub async fn next_recovery(&self) -> Option<Report> {
        self.dispatchers.auto.next_recovery().await
    }

    /// The dispatcher for `protocol`.
    fn dispatcher(&self, protocol: Protocol) -> &Dispatcher {
        match protocol {
            Protocol::Auto => &self.dispatchers.auto,
            Protocol::V0_3 => &self.dispatchers.v0_3,
            Protocol::V1_0 => &self.dispatchers.v1_0,
        }
    }

    /// Serves one MCP session on `transport` (for stdio, [`rmcp::transport::stdio`])
    /// until the client closes it or `stop` ends, then stops taking delegations and
    /// drains every delivery ([`Server::shutdown`]).
    ///
    /// # Errors
    /// [`Error::Session`] if the session never started; [`Error::Drained`] if an
    /// outcome could not be recorded.
    pub async fn serve<T, E, A>(
        self,
        transport: T,
        stop: impl Future<Output = ()>,
    ) -> Result<Stats, Error>
    where
        T: IntoTransport<RoleServer, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let drain = self.clone();
        let cancel = CancellationToken::new();
        let session = async {
            let running = self
                .serve_with_ct(transport, cancel.clone())
                .await
                .map_err(|e| Error::Session(e.to_string()))?;
            // The session ends when the client closes the transport; a task of
            // rmcp's that panicked ends it too, and deliveries still drain.
            let _ = running.waiting().await;
            Ok::<(), Error>(())
        };
        let ended = tokio::select! {
            ended = session => ended,
            () = stop => {
                cancel.cancel();
                Ok(())
            }
        };
        let drained = drain.shutdown().await;
        ended?;
        Ok(drained?)
    }

    /// Stops taking delegations and waits for every delivery to end with its
    /// outcome recorded (within the dispatch options' shutdown timeout, past which
    /// the rest end as `failed` / `interrupted`). Returns the counts of all the
    /// server's dispatchers together.
    ///
    /// # Errors
    /// [`dispatch::Error::Drained`] with every outcome that could not be recorded,
    /// from all the dispatchers; else [`dispatch::Error::Unrecovered`] with what
    /// periodic recovery could not settle and nobody took.
    pub async fn shutdown(&self) -> Result<Stats, dispatch::Error> {
        let [auto, v0_3, v1_0] = self.dispatchers.all().map(Dispatcher::shutdown);
        let (auto, v0_3, v1_0) = tokio::join!(auto, v0_3, v1_0);
        combined([auto, v0_3, v1_0])
    }
}

/// The dispatchers' shutdowns as one: their counts added up; every outcome
/// that could not be recorded, from all of them, first; else the first other
/// error (periodic recovery's failures).
fn combined(results: [Result<Stats, dispatch::Error>; 3]) -> Result<Stats, dispatch::Error> {
    let mut total = Stats::default();
    let mut unrecorded = Vec::new();
    let mut other = None;
    for result in results {
        match result {
            Ok(stats) => add(&mut total, stats),
            Err(dispatch::Error::Drained(lost)) => unrecorded.extend(lost),
            // Periodic recovery's failures (only `auto` runs it): they give
            // way to outcomes that could not be recorded, as one dispatcher's
            // shutdown says.
            Err(error) => {
                other.get_or_insert(error);
            }
        }
    }
    if !unrecorded.is_empty() {
        return Err(dispatch::Error::Drained(unrecorded));
    }
    other.map_or(Ok(total), Err)
}

fn add(total: &mut Stats, stats: Stats) {
    total.queued += stats.queued;
    total.delivered += stats.delivered;
    total.failed += stats.failed;
    total.unrecorded += stats.unrecorded;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unrecorded(id: &str) -> dispatch::Unrecorded {
        dispatch::Unrecorded {
            id: Some(id.parse().unwrap()),
            outcome: "delivered".to_owned(),
            cause: std::sync::Arc::new(crate::Error::Poisoned {
                cause: crate::Shared::new(crate::Error::from(std::io::Error::other("disk full"))),
            }),
        }
    }

    fn unrecovered(id: &str) -> dispatch::Unrecovered {
        dispatch::Unrecovered {
            id: Some(id.parse().unwrap()),
            error: dispatch::Error::Closed,
        }
    }

    fn counted(delivered: u64) -> Stats {
        Stats {
            queued: delivered,
            delivered,
            ..Stats::default()
        }
    }

    #[test]
    fn outcomes_no_dispatcher_could_record_come_first_from_every_dispatcher() {
        let answer = combined([
            Err(dispatch::Error::Unrecovered(vec![unrecovered("orphan")])),
            Err(dispatch::Error::Drained(vec![unrecorded("a")])),
            Err(dispatch::Error::Drained(vec![unrecorded("b")])),
        ]);
        match answer {
            Err(dispatch::Error::Drained(lost)) => {
                let ids: Vec<_> = lost.iter().map(|l| l.id.clone().unwrap()).collect();
                assert_eq!(ids, ["a".parse().unwrap(), "b".parse().unwrap()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn periodic_recoverys_failures_are_the_answer_when_every_outcome_was_recorded() {
        let answer = combined([
            Err(dispatch::Error::Unrecovered(vec![unrecovered("orphan")])),
            Ok(counted(2)),
            Ok(counted(1)),
        ]);
        assert!(
            matches!(&answer, Err(dispatch::Error::Unrecovered(left)) if left.len() == 1),
            "{answer:?}"
        );
        let total = combined([Ok(counted(2)), Ok(counted(1)), Ok(Stats::default())]).unwrap();
        assert_eq!((total.queued, total.delivered), (3, 3));
    }
}
