//! How a task reaches its target: the [`Transport`] trait, the classification of
//! what went wrong, and an in-process transport for tests and benchmarks.
//!
//! A transport does one thing: send one [`Message`] and say how it went. It
//! answers [`Accepted`] for a 2xx, or a [`Failure`] whose [`FailureReason`] tells
//! the sender whether the target may have the task. It does not enforce the delivery
//! deadline: the [`Dispatcher`](crate::dispatch::Dispatcher) does, around every call,
//! so a transport that hangs still ends as `timeout`.
//!
//! A [`Failure`] may also say how long the target asked the sender to wait
//! before trying again ([`Failure::retry_after`]: HTTP `Retry-After` on 429 and
//! 503), which the dispatcher's [retry policy](crate::dispatch::Retry) honours.
//! That field is the only thing retries added to what a transport answers; the
//! [`Transport`] trait itself is unchanged.
//!
//! - [`Immediate`]: answers at once, from a closure; for tests and benchmarks.
//! - `Http` (feature `http`): posts the A2A JSON-RPC envelope to the target URL.

#[cfg(feature = "http")]
pub mod http;
mod immediate;
#[cfg(feature = "http")]
pub(crate) mod retry_after;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::event::http_status::{Class, Code, NonSuccess};
use crate::event::{DelegationId, FailureReason, Remote};

#[cfg(feature = "http")]
pub use self::http::Http;
pub use self::immediate::Immediate;

/// A boxed, sendable future: what [`Transport::send`] returns, so that the trait
/// stays object-safe (`Arc<dyn Transport>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a transport sends: one delegated task.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The delegation this delivery settles.
    pub delegation: DelegationId,
    /// The id receivers see (A2A `messageId`), so they can drop duplicates: the id
    /// of the first attempt, found by following `retry_of` links in the log (the
    /// delegation's own id for a first attempt).
    pub message_id: DelegationId,
    /// Who delegated.
    pub source: String,
    /// To whom: for HTTP, the target URL.
    pub target: String,
    /// What was delegated.
    pub task: Option<serde_json::Value>,
}

/// The target accepted the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Accepted {
    /// The 2xx status, for HTTP transports.
    pub http_status: Option<u16>,
    /// What the agent answered: a message, or a task with its id and state.
    pub remote: Option<Remote>,
}

impl Accepted {
    /// Accepted with this 2xx status and nothing more known.
    pub fn status(http_status: u16) -> Self {
        Accepted {
            http_status: Some(http_status),
            remote: None,
        }
    }
}

/// A delivery that did not succeed, already classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Failure {
    /// Why, in the log's terms.
    pub reason: FailureReason,
    /// The error text, kept as the failed event's `detail`.
    pub detail: String,
    /// How long the target asked the sender to wait before trying again: for
    /// HTTP, the `Retry-After` of a 429 or 503 answer. Not recorded in the log;
    /// read by the dispatcher's [retry policy](crate::dispatch::Retry).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure with its reason and detail.
    pub fn new(reason: FailureReason, detail: impl fmt::Display) -> Self {
        Failure {
            reason,
            detail: detail.to_string(),
            retry_after: None,
        }
    }

    /// The same failure, saying the target asked to wait `wait` before trying
    /// again.
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The target could not be reached (refused, unknown host, reset before sending).
    pub fn offline(detail: impl fmt::Display) -> Self {
        Self::new(FailureReason::TargetOffline, detail)
    }

    /// The target answered with a non-2xx status.
    ///
    /// A 2xx `code` here is a bug in the transport; it is kept as a failure with
    /// reason `marshal_error` rather than recorded as a contradiction. A
    /// transport that has classified the status already says
    /// [`Failure::non_success`].
    pub fn status(code: u16, detail: impl fmt::Display) -> Self {
        match Code(code).classify() {
            Class::NonSuccess(code) => Self::non_success(code, detail),
            Class::Success(code) => Self::new(
                FailureReason::MarshalError,
                format!("transport reported 2xx status {code} as a failure: {detail}"),
            ),
        }
    }

    /// The target answered with this non-2xx status.
    pub fn non_success(code: NonSuccess, detail: impl fmt::Display) -> Self {
        Self::new(FailureReason::HttpStatus(code.get()), detail)
    }

    /// The task could not be encoded for this transport.
    pub fn marshal(detail: impl fmt::Display) -> Self {
        Self::new(FailureReason::MarshalError, detail)
    }

    /// No answer came in time.
    pub fn timeout(detail: impl fmt::Display) -> Self {
        Self::new(FailureReason::Timeout, detail)
    }
}

/// Sends messages to targets.
///
/// Implementations must be cheap to call concurrently; the dispatcher bounds how
/// many sends run at once and enforces the deadline around each.
pub trait Transport: Send + Sync + 'static {
    /// Sends `message` and resolves when the target has answered, or the attempt has
    /// failed.
    fn send(&self, message: Message) -> BoxFuture<'_, Result<Accepted, Failure>>;
}

impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn send(&self, message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        (**self).send(message)
    }
}
