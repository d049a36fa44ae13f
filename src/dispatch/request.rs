//! One task to delegate, as the caller describes it: who delegates, to whom, the
//! task, and optionally the id to record it under.

use serde::Serialize;

use crate::event::{DelegationId, Queued};

/// One task to delegate.
#[derive(Clone, Debug)]
pub struct Request {
    pub(super) id: Option<DelegationId>,
    pub(super) source: String,
    pub(super) target: String,
    /// The task as JSON, or why it could not be encoded.
    pub(super) task: Result<Option<serde_json::Value>, String>,
}

impl Request {
    /// A task-less delegation from `source` to `target` (for HTTP, the URL).
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Request {
            id: None,
            source: source.into(),
            target: target.into(),
            task: Ok(None),
        }
    }

    /// Uses `id` instead of a generated one. A second delegation with the same id
    /// is refused.
    pub fn id(mut self, id: DelegationId) -> Self {
        self.id = Some(id);
        self
    }

    /// The task, encoded to JSON now. If it cannot be encoded (a map with
    /// non-string keys, a `Serialize` impl that fails), the delegation is still
    /// queued, and then fails with reason `marshal_error` and the encoder's error as
    /// the detail.
    pub fn task<T: Serialize + ?Sized>(mut self, task: &T) -> Self {
        self.task = serde_json::to_value(task)
            .map(Some)
            .map_err(|e| e.to_string());
        self
    }

    /// The task as JSON.
    pub fn task_json(mut self, task: serde_json::Value) -> Self {
        self.task = Ok(Some(task));
        self
    }

    /// The request with its task checked against the log's limits, before anything
    /// copies or encodes it: a task nested far too deep is refused here, with no
    /// recursion over it. A `null` task is no task.
    pub(super) fn checked(mut self) -> Result<Self, crate::Error> {
        match &self.task {
            Ok(Some(serde_json::Value::Null)) => self.task = Ok(None),
            Ok(Some(task)) => crate::event::check_task(task)?,
            _ => {}
        }
        Ok(self)
    }

    /// The `queued` that records it. A task that could not be encoded is
    /// queued without one, and fails on delivery.
    pub(super) fn queued(&self) -> Queued {
        Queued {
            task: self.task.as_ref().ok().cloned().flatten(),
            ..Queued::new(self.source.clone(), self.target.clone())
        }
    }
}
