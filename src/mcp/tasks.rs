//! Delegations as MCP tasks: the `io.modelcontextprotocol/tasks` extension
//! (SEP-2663) as rmcp 3.11 models it, answered from the ledger.
//!
//! A task is a delegation: its id is the delegation id the client delegated under
//! (for a task retried, its first attempt's id, which any later attempt's id also
//! answers for), and every answer is read from the log when it is asked, through
//! [`Ledger::task_status`], never from a map kept beside it. So a task outlives the
//! server run that opened it, and `tasks/get` can never say what the log does not.
//!
//! | the log (`status`) | the task (`tasks/get`) |
//! | --- | --- |
//! | `queued` (delivering, or a retry waiting for its backoff) | `working` |
//! | `delivered` | `completed`; `result` is `check_task_status`'s answer, `isError: false` |
//! | `failed` (and no retry coming) | `completed`; `result` is `check_task_status`'s answer, `isError: true` |
//! | `not_found` | JSON-RPC -32602, unknown task |

use rmcp::ErrorData;
use rmcp::model::{
    CallToolResult, CreateTaskResult, DetailedTask, JsonObject, Task, TaskPayload, TaskStatus,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use crate::Status;
use crate::StatusKind;
use crate::dispatch::Receipt;
use crate::event::Timestamp;

/// How often a client should ask `tasks/get`, in milliseconds: a delivery takes
/// from milliseconds (a loopback agent) to the delivery deadline.
pub(crate) const POLL_INTERVAL_MS: u64 = 500;

/// Whether the client that sent this request declared the tasks extension: at
/// `initialize` for a session, or in the request's `_meta` (2026-07-28).
pub(crate) fn declared(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks())
}

/// The task a delegation opens: `working`, created when `queued` was recorded.
pub(crate) fn created(receipt: &Receipt) -> CreateTaskResult {
    let at = receipt.queued_at.to_string();
    CreateTaskResult::new(
        Task::new(receipt.id.as_str(), TaskStatus::Working, at.clone(), at)
            .with_status_message("queued: durable, and delivery has started")
            .with_poll_interval_ms(POLL_INTERVAL_MS),
    )
}

/// The task of `status` (a task status from [`Ledger::task_status`]), opened
/// at `created`; `None` if the log has no such delegation.
///
/// [`Ledger::task_status`]: crate::Ledger::task_status
pub(crate) fn detailed(
    status: &Status,
    created: Option<Timestamp>,
) -> Result<Option<DetailedTask>, ErrorData> {
    let id = match &status.attempts {
        Some(attempts) => attempts.first.as_str(),
        None => status.id.as_str(),
    };
    let stamp = |at: Option<Timestamp>| at.map(|at| at.to_string()).unwrap_or_default();
    let created_at = stamp(created.or(status.queued_at));
    let updated_at = stamp(status.settled_at.or(status.queued_at));
    let task = |message: String| {
        Task::new(
            id,
            TaskStatus::Working,
            created_at.clone(),
            updated_at.clone(),
        )
        .with_status_message(message)
        .with_poll_interval_ms(POLL_INTERVAL_MS)
    };
    let answer = |failed: bool| -> Result<JsonObject, ErrorData> {
        let value = serde_json::to_value(status)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let result = if failed {
            CallToolResult::structured_error(value)
        } else {
            CallToolResult::structured(value)
        };
        match serde_json::to_value(result) {
            Ok(Value::Object(result)) => Ok(result),
            Ok(_) => Err(ErrorData::internal_error(
                "a tool result is an object",
                None,
            )),
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        }
    };
    Ok(Some(match status.status {
        StatusKind::NotFound => return Ok(None),
        StatusKind::Queued => {
            let message = match &status.attempts {
                Some(attempts) => match attempts.next_attempt_at {
                    Some(at) => format!(
                        "queued: attempt {} of the task waits for its backoff until {at}",
                        attempts.count
                    ),
                    None => format!("queued: attempt {} is being delivered", attempts.count),
                },
                None => "queued: being delivered".to_owned(),
            };
            DetailedTask::new(task(message), TaskPayload::Working)
        }
        StatusKind::Delivered => DetailedTask::new(
            task("delivered: the agent took the task".to_owned()),
            TaskPayload::Completed {
                result: answer(false)?,
            },
        ),
        StatusKind::Failed => {
            let text = |value: Value| value.as_str().unwrap_or("unknown").to_owned();
            let reason = text(json!(status.reason));
            let received = text(json!(status.target_received));
            DetailedTask::new(
                task(format!(
                    "failed: {reason}; the target may have the task: {received}"
                )),
                TaskPayload::Completed {
                    result: answer(true)?,
                },
            )
        }
    }))
}

/// The answer to a `taskId` the log does not hold, or that is no delegation id:
/// -32602, as the extension asks.
pub(crate) fn unknown(task_id: &str, why: Option<String>) -> ErrorData {
    let message = match why {
        Some(why) => format!("unknown task `{task_id}`: {why}"),
        None => format!("unknown task `{task_id}`: the log holds no such delegation"),
    };
    ErrorData::invalid_params(message, Some(json!({"taskId": task_id})))
}

/// The answer to `tasks/cancel` on a task the log holds: -32602, for every
/// task. A delegation is durable from the moment it is queued, and its
/// delivery may already have reached the agent; nothing can unsend it, and an
/// acknowledgement would let a client believe otherwise.
pub(crate) fn not_cancellable(task_id: &str, status: TaskStatus) -> ErrorData {
    let state = match status {
        TaskStatus::Working => "working",
        _ => "completed",
    };
    ErrorData::invalid_params(
        format!(
            "task `{task_id}` cannot be cancelled: a delegation is recorded durably when it is \
             queued and may already have reached the agent, so it is never withdrawn; \
             tasks/get tells its outcome"
        ),
        Some(json!({"taskId": task_id, "status": state, "cancellable": false})),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::event::{ReasonCode, Received};

    fn status(kind: StatusKind) -> Status {
        let mut status = Status::not_found("d-1".parse().unwrap());
        status.status = kind;
        status.target = Some("http://127.0.0.1:9/a2a".to_owned());
        status.queued_at = Some("2026-11-30T05:33:32.7Z".parse().unwrap());
        status
    }

    fn result(task: &DetailedTask) -> &JsonObject {
        match &task.payload {
            TaskPayload::Completed { result } => result,
            other => panic!("not completed: {other:?}"),
        }
    }

    #[test]
    fn a_queued_delegation_is_a_working_task_opened_when_it_was_queued() {
        let task = detailed(&status(StatusKind::Queued), None)
            .unwrap()
            .unwrap();
        assert_eq!(task.status(), TaskStatus::Working);
        assert_eq!(task.payload, TaskPayload::Working);
        assert_eq!(task.task.task_id, "d-1");
        assert_eq!(task.task.created_at, "2026-11-30T05:33:32.700Z");
        assert_eq!(task.task.ttl_ms, None);
    }

    #[test]
    fn a_delivered_delegation_completes_with_its_status_as_the_result() {
        let mut delivered = status(StatusKind::Delivered);
        delivered.settled_at = Some("2026-11-30T05:33:33Z".parse().unwrap());
        let task = detailed(&delivered, None).unwrap().unwrap();
        assert_eq!(task.status(), TaskStatus::Completed);
        assert_eq!(task.task.last_updated_at, "2026-11-30T05:33:33Z");
        let result = result(&task);
        assert_eq!(result["isError"], false);
        assert_eq!(
            result["structuredContent"],
            serde_json::to_value(&delivered).unwrap()
        );
    }

    #[test]
    fn a_failed_delegation_completes_with_an_error_result_naming_the_reason() {
        let mut failed = status(StatusKind::Failed);
        failed.reason = Some(ReasonCode::TargetOffline);
        failed.target_received = Some(Received::No);
        let task = detailed(&failed, None).unwrap().unwrap();
        assert_eq!(task.status(), TaskStatus::Completed);
        let message = task.task.status_message.clone().unwrap();
        assert!(message.contains("target_offline"), "{message}");
        assert!(message.contains("no"), "{message}");
        let result = result(&task);
        assert_eq!(result["isError"], true);
        assert_eq!(result["structuredContent"]["reason"], "target_offline");
    }

    #[test]
    fn a_delegation_the_log_does_not_hold_is_no_task() {
        let missing = Status::not_found("nope".parse().unwrap());
        assert_eq!(detailed(&missing, None).unwrap(), None);
        let error = unknown("nope", None);
        assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    }
}
