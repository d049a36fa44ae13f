//! Reading an agent's answer: what the HTTP status and the JSON-RPC body say
//! about whether the agent took the task.
//!
//! The rule is the format page's: `delivered` only when the agent accepted the
//! message, with a JSON-RPC `result` that is a Message or a Task. Every other answer
//! is a failure whose reason says honestly whether the agent may have the task.
//! [`classify`] is a pure function of the status and the bytes, so each row of the
//! table in the [module docs](super) is a unit test on the bytes real SDK servers
//! send.

use serde_json::{Map, Value};

use crate::event::http_status::{Class, NonSuccess, Success};
use crate::event::{FailureReason, Remote, RemoteKind, TaskState};
use crate::transport::{Accepted, Failure};

/// How much of an answer goes into a failure's detail, in characters.
pub(super) const DETAIL_CHARS: usize = 300;

/// Classifies an answer to the JSON-RPC request whose id is `request_id`, its
/// status already split by [`Code::classify`](crate::event::http_status::Code::classify).
///
/// - A non-2xx status decides the reason (`http_status`); the body (what was read
///   of it) only fills the detail, and 401 and 403 say that credentials were
///   refused.
/// - A 2xx body must be a JSON-RPC response to this request: a `result` is
///   `delivered` (or `rejected`, for a Task in state rejected); an `error` is
///   `rpc_error`; anything else is `bad_response`.
pub(super) fn classify(status: Class, body: &[u8], request_id: &str) -> Result<Accepted, Failure> {
    let status = match status {
        Class::Success(status) => status,
        Class::NonSuccess(status) => return Err(non_success(status, body)),
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err(bad(format!(
            "HTTP {status} with a body that is not JSON: {}",
            excerpt_or_empty(body)
        )));
    };
    let Value::Object(response) = value else {
        return Err(bad(format!(
            "HTTP {status} with JSON that is not a JSON-RPC response object: {}",
            excerpt(body)
        )));
    };
    match (response.get("result"), response.get("error")) {
        (Some(result), None) => {
            check_id(&response, request_id, false)?;
            accepted(status, result)
        }
        (None, Some(error)) => {
            // JSON-RPC answers `"id": null` when it could not read the request's id.
            check_id(&response, request_id, true)?;
            Err(rpc_error(error, body))
        }
        (Some(_), Some(_)) => Err(bad(format!(
            "the answer carries both `result` and `error`: {}",
            excerpt(body)
        ))),
        (None, None) => Err(bad(format!(
            "the answer carries neither `result` nor `error`: {}",
            excerpt(body)
        ))),
    }
}

/// The failure for a non-2xx answer: the status decides, the body fills the detail.
fn non_success(status: NonSuccess, body: &[u8]) -> Failure {
    let phrase = reqwest::StatusCode::from_u16(status.get())
        .ok()
        .and_then(|code| code.canonical_reason())
        .map_or(String::new(), |reason| format!(" {reason}"));
    let mut detail = format!("HTTP {status}{phrase}");
    if matches!(status.get(), 401 | 403) {
        detail.push_str(": the agent refused the credentials (or asked for some)");
    }
    let text = excerpt(body);
    if !text.is_empty() {
        detail.push_str(": ");
        detail.push_str(&text);
    }
    Failure::non_success(status, detail)
}

fn bad(detail: String) -> Failure {
    Failure::new(FailureReason::BadResponse, detail)
}

/// The response's `id` must be this request's; `null` is allowed for errors.
fn check_id(
    response: &Map<String, Value>,
    request_id: &str,
    null_allowed: bool,
) -> Result<(), Failure> {
    match response.get("id") {
        Some(Value::String(id)) if id == request_id => Ok(()),
        Some(Value::Null) if null_allowed => Ok(()),
        Some(other) => Err(bad(format!(
            "the answer is for request id {other}, not \"{}\"",
            truncate(request_id)
        ))),
        None => Err(bad("the answer carries no `id`".to_owned())),
    }
}

/// A JSON-RPC `error` object: its code is the `rpc_code`, its message the detail.
fn rpc_error(error: &Value, body: &[u8]) -> Failure {
    let code = error.get("code").and_then(Value::as_i64);
    let Some(code) = code else {
        return bad(format!(
            "the answer's `error` has no integer `code`: {}",
            excerpt(body)
        ));
    };
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)");
    let mut detail = truncate(message);
    if let Some(data) = error.get("data").filter(|data| !data.is_null()) {
        detail.push_str(": ");
        detail.push_str(&truncate(&data.to_string()));
    }
    Failure::new(FailureReason::RpcError(code), detail)
}

/// A `result`: a Message or a Task, in either wire generation.
///
/// - A2A 0.3: the result is the object itself, with `kind` `message` or `task`.
/// - A2A 1.0: the result holds exactly one key, `message` or `task`, and no `kind`.
fn accepted(status: Success, result: &Value) -> Result<Accepted, Failure> {
    let shape = |detail: &str| {
        bad(format!(
            "{detail}: {}",
            excerpt(result.to_string().as_bytes())
        ))
    };
    let Value::Object(result) = result else {
        return Err(shape("the `result` is not an object"));
    };
    let (kind, body) = match result.get("kind").and_then(Value::as_str) {
        Some("message") => (RemoteKind::Message, result),
        Some("task") => (RemoteKind::Task, result),
        Some(_) => return Err(shape("the `result` has an unknown `kind`")),
        None => match (result.get("message"), result.get("task")) {
            (Some(Value::Object(message)), None) => (RemoteKind::Message, message),
            (None, Some(Value::Object(task))) => (RemoteKind::Task, task),
            _ => return Err(shape("the `result` is neither a Message nor a Task")),
        },
    };
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let remote = match kind {
        RemoteKind::Message => Remote {
            kind,
            task_id: text("taskId"),
            context_id: text("contextId"),
            state: None,
        },
        RemoteKind::Task => {
            let status = body.get("status");
            let state = status
                .and_then(|status| status.get("state"))
                .and_then(Value::as_str)
                .map(TaskState::from_wire);
            let remote = Remote {
                kind,
                task_id: text("id"),
                context_id: text("contextId"),
                state,
            };
            if remote.state == Some(TaskState::Rejected) {
                return Err(rejected(&remote, status));
            }
            remote
        }
    };
    Ok(Accepted {
        http_status: Some(status.get()),
        remote: Some(remote),
    })
}

/// A Task that came back `rejected`: the agent had the task and refused it.
fn rejected(remote: &Remote, status: Option<&Value>) -> Failure {
    let mut detail = format!(
        "the agent rejected the task (task {})",
        remote
            .task_id
            .as_deref()
            .map_or("without an id".to_owned(), truncate)
    );
    let said = status
        .and_then(|status| status.get("message"))
        .and_then(|message| message.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|said| !said.is_empty());
    if let Some(said) = said {
        detail.push_str(": ");
        detail.push_str(&truncate(&said));
    }
    Failure::new(FailureReason::Rejected, detail)
}

/// The start of a body, as text, for a detail.
pub(super) fn excerpt(body: &[u8]) -> String {
    truncate(&String::from_utf8_lossy(body))
}

fn excerpt_or_empty(body: &[u8]) -> String {
    if body.is_empty() {
        "(empty)".to_owned()
    } else {
        excerpt(body)
    }
}

/// At most [`DETAIL_CHARS`] characters, trimmed, with `…` where cut.
fn truncate(text: &str) -> String {
    let text = text.trim();
    let mut out: String = text.chars().take(DETAIL_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Received;
    use crate::event::http_status::Code;

    /// [`super::classify`] of a status as a number, as these tests give it.
    fn classify(status: u16, body: &[u8], request_id: &str) -> Result<Accepted, Failure> {
        super::classify(Code(status).classify(), body, request_id)
    }

    fn ok(body: &str) -> Accepted {
        classify(200, body.as_bytes(), "task-1").expect("delivered")
    }

    fn failed(status: u16, body: &str) -> Failure {
        classify(status, body.as_bytes(), "task-1").expect_err("failed")
    }

    #[test]
    fn a_0_3_message_result_is_delivered_as_a_message() {
        let accepted = ok(
            r#"{"id":"task-1","jsonrpc":"2.0","result":{"kind":"message","messageId":"m-2","role":"agent","parts":[{"kind":"text","text":"on it"}],"contextId":"c-1"}}"#,
        );
        let remote = accepted.remote.unwrap();
        assert_eq!(remote.kind, RemoteKind::Message);
        assert_eq!(remote.context_id.as_deref(), Some("c-1"));
        assert_eq!(remote.state, None);
        assert_eq!(accepted.http_status, Some(200));
    }

    #[test]
    fn a_1_0_task_result_is_delivered_with_its_id_context_and_state() {
        let accepted = ok(
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"task":{"id":"t-9","contextId":"c-9","status":{"state":"TASK_STATE_WORKING"}}}}"#,
        );
        let remote = accepted.remote.unwrap();
        assert_eq!(remote.kind, RemoteKind::Task);
        assert_eq!(remote.task_id.as_deref(), Some("t-9"));
        assert_eq!(remote.context_id.as_deref(), Some("c-9"));
        assert_eq!(remote.state, Some(TaskState::Working));
    }

    #[test]
    fn a_0_3_task_in_input_required_is_delivered_in_the_one_vocabulary() {
        let accepted = ok(
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"kind":"task","id":"t-1","contextId":"c-1","status":{"state":"input-required"}}}"#,
        );
        assert_eq!(
            accepted.remote.unwrap().state,
            Some(TaskState::InputRequired)
        );
    }

    #[test]
    fn a_task_in_state_rejected_is_failed_rejected_and_the_agent_has_it() {
        let failure = failed(
            200,
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"task":{"id":"t-3","contextId":"c-3","status":{"state":"TASK_STATE_REJECTED","message":{"role":"ROLE_AGENT","parts":[{"text":"not my job"}]}}}}}"#,
        );
        assert_eq!(failure.reason, FailureReason::Rejected);
        assert_eq!(failure.reason.received(), Received::Yes);
        assert!(failure.detail.contains("t-3"), "{}", failure.detail);
        assert!(failure.detail.contains("not my job"), "{}", failure.detail);
    }

    #[test]
    fn a_method_not_found_error_is_rpc_error_with_its_code_and_message() {
        let failure = failed(
            200,
            r#"{"id":"task-1","jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"}}"#,
        );
        assert_eq!(failure.reason, FailureReason::RpcError(-32601));
        assert_eq!(failure.detail, "Method not found");
        assert_eq!(failure.reason.received(), Received::No);
    }

    #[test]
    fn an_error_with_a_null_id_is_still_the_agents_refusal() {
        let failure = failed(
            200,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":{"why":"x"}}}"#,
        );
        assert_eq!(failure.reason, FailureReason::RpcError(-32700));
        assert_eq!(failure.detail, r#"Parse error: {"why":"x"}"#);
    }

    #[test]
    fn an_internal_error_leaves_it_unknown_whether_the_agent_has_the_task() {
        let failure = failed(
            200,
            r#"{"jsonrpc":"2.0","id":"task-1","error":{"code":-32603,"message":"Internal error"}}"#,
        );
        assert_eq!(failure.reason.received(), Received::Unknown);
    }

    #[test]
    fn two_xx_answers_that_are_not_json_rpc_responses_are_bad_response() {
        for body in [
            "<html><body>Welcome to our proxy</body></html>",
            "",
            "[]",
            r#"{"jsonrpc":"2.0","id":"task-1"}"#,
            r#"{"jsonrpc":"2.0","id":"task-2","result":{"kind":"message"}}"#,
            r#"{"jsonrpc":"2.0","result":{"kind":"message"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"result":{"kind":"message"}}"#,
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"kind":"message"},"error":{"code":1}}"#,
            r#"{"jsonrpc":"2.0","id":"task-1","error":{"code":"-32601"}}"#,
            r#"{"jsonrpc":"2.0","id":"task-1","result":"ok"}"#,
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"kind":"note"}}"#,
            r#"{"jsonrpc":"2.0","id":"task-1","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"message":{},"task":{}}}"#,
        ] {
            let failure = failed(200, body);
            assert_eq!(failure.reason, FailureReason::BadResponse, "{body}");
            assert_eq!(failure.reason.received(), Received::Unknown);
        }
    }

    #[test]
    fn a_non_2xx_status_decides_the_reason_whatever_the_body_says() {
        let failure = failed(
            404,
            r#"{"jsonrpc":"2.0","id":"task-1","result":{"kind":"message"}}"#,
        );
        assert_eq!(failure.reason, FailureReason::HttpStatus(404));
        assert!(
            failure.detail.starts_with("HTTP 404 Not Found: {"),
            "{}",
            failure.detail
        );
        assert_eq!(failure.reason.received(), Received::No);
        let failure = failed(500, "");
        assert_eq!(failure.detail, "HTTP 500 Internal Server Error");
        assert_eq!(failure.reason.received(), Received::Unknown);
    }

    #[test]
    fn refused_credentials_are_named_in_the_detail() {
        for status in [401, 403] {
            let failure = failed(status, "");
            assert_eq!(failure.reason, FailureReason::HttpStatus(status));
            assert!(failure.detail.contains("credentials"), "{}", failure.detail);
        }
    }

    /// An answer of an agent on the official A2A Python SDK (1.3.0), byte for byte:
    /// `tests/fixtures/a2a/README.md` says which request brought each.
    macro_rules! sdk {
        ($file:literal) => {
            include_bytes!(concat!("../../../tests/fixtures/a2a/", $file)).as_slice()
        };
    }

    #[test]
    fn the_sdks_message_answers_in_both_versions_are_delivered_as_messages() {
        for body in [
            sdk!("v0_3_compat.json"),
            sdk!("v1_0_compat.json"),
            sdk!("v1_0_v1.json"),
        ] {
            let accepted = classify(200, body, "task-1").expect("delivered");
            let remote = accepted.remote.unwrap();
            assert_eq!(remote.kind, RemoteKind::Message);
            assert_eq!(remote.state, None);
        }
    }

    #[test]
    fn the_sdks_task_answers_in_both_versions_are_delivered_as_working_tasks() {
        for body in [sdk!("v0_3_task.json"), sdk!("v1_0_task.json")] {
            let remote = classify(200, body, "task-1")
                .expect("delivered")
                .remote
                .unwrap();
            assert_eq!(remote.kind, RemoteKind::Task);
            assert_eq!(remote.state, Some(TaskState::Working));
            assert!(remote.task_id.is_some() && remote.context_id.is_some());
        }
    }

    #[test]
    fn the_sdks_rejections_in_both_versions_are_rejected_with_the_agents_words() {
        for body in [sdk!("v0_3_reject.json"), sdk!("v1_0_reject.json")] {
            let failure = classify(200, body, "task-1").expect_err("rejected");
            assert_eq!(failure.reason, FailureReason::Rejected);
            assert!(
                failure.detail.contains("I do not review pull requests."),
                "{}",
                failure.detail
            );
        }
    }

    #[test]
    fn the_sdks_refusals_are_rpc_errors_with_their_codes() {
        for (body, code, received) in [
            // The bug this crate was fixed for: 0.3 to a 1.0-only agent.
            (sdk!("v0_3_v1.json"), -32601, Received::No),
            (sdk!("v1_0_wrong_version_2_0.json"), -32009, Received::No),
            (sdk!("v1_0_no_version_header.json"), -32009, Received::No),
            (
                sdk!("v0_3_with_version_header_1_0.json"),
                -32603,
                Received::Unknown,
            ),
            (sdk!("not_json.json"), -32700, Received::No),
        ] {
            let failure = classify(200, body, "task-1").expect_err("refused");
            assert_eq!(failure.reason, FailureReason::RpcError(code));
            assert_eq!(failure.reason.received(), received);
        }
    }

    #[test]
    fn a_proxys_html_and_a_404_from_the_sdks_server_are_never_delivered() {
        let failure = classify(200, sdk!("proxy_html.html"), "task-1").expect_err("refused");
        assert_eq!(failure.reason, FailureReason::BadResponse);
        let failure = classify(404, sdk!("unknown_path.txt"), "task-1").expect_err("refused");
        assert_eq!(failure.reason, FailureReason::HttpStatus(404));
        assert_eq!(failure.detail, "HTTP 404 Not Found: Not Found");
    }

    #[test]
    fn an_sdk_answer_to_another_request_id_is_bad_response() {
        let failure = classify(200, sdk!("v1_0_task.json"), "task-2").expect_err("refused");
        assert_eq!(failure.reason, FailureReason::BadResponse);
    }

    #[test]
    fn long_bodies_are_cut_in_the_detail() {
        let failure = failed(502, &"x".repeat(10_000));
        assert!(failure.detail.chars().count() < DETAIL_CHARS + 40);
        assert!(failure.detail.ends_with('…'));
    }
}
