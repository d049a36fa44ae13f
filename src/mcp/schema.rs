//! The JSON Schemas of the tools' structured outputs, written by hand from the
//! `Serialize` forms they describe (the status, the receipt, the pending list).
//!
//! The status schema describes [`Status`](crate::Status) as `status --json` prints
//! it. It names every field the crate writes and allows more, so that a client
//! validating against it keeps working when a later version adds a field.

use serde_json::{Map, Value, json};

/// A nullable string.
fn string_or_null() -> Value {
    json!({"type": ["string", "null"]})
}

/// The status object: what `check_task_status` answers and `status --json` prints.
pub(crate) fn status() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "The delegation id."},
            "status": {
                "type": "string",
                "enum": ["queued", "delivered", "failed", "not_found"],
                "description": "Where the delegation stands; `queued` until delivery ends."
            },
            "reason": {
                "type": ["string", "null"],
                "enum": ["target_offline", "http_status", "rpc_error", "rejected",
                         "bad_response", "marshal_error", "timeout", "interrupted", null],
                "description": "Why it failed, for `failed`."
            },
            "http_status": {"type": ["integer", "null"], "description": "The HTTP status the target answered."},
            "rpc_code": {"type": ["integer", "null"], "description": "The JSON-RPC error code the agent answered, for `rpc_error`."},
            "error_detail": {"type": ["string", "null"], "description": "The error detail, for `failed`."},
            "target_received": {
                "type": ["string", "null"],
                "enum": ["yes", "no", "unknown", null],
                "description": "Whether the target may have the task: decides whether a retry could duplicate it."
            },
            "remote": {
                "type": ["object", "null"],
                "description": "What the agent answered, for `delivered`: a message, or the task it opened.",
                "properties": {
                    "kind": {"type": "string", "enum": ["message", "task"]},
                    "task_id": {"type": "string"},
                    "context_id": {"type": "string"},
                    "state": {"type": "string"}
                },
                "required": ["kind"]
            },
            "target": string_or_null(),
            "attempt": {"type": "integer", "minimum": 2, "description": "For a retry: which attempt it is."},
            "retry_of": {"type": "string", "description": "For a retry: the delegation it retries."},
            "queued_at": {"type": ["string", "null"], "description": "RFC 3339, nanoseconds, UTC."},
            "settled_at": {"type": ["string", "null"], "description": "RFC 3339, nanoseconds, UTC."},
            "first": {"type": "string", "description": "For a task of several attempts: its first attempt's id (the A2A messageId of every attempt)."},
            "latest": {"type": "string", "description": "For a task of several attempts: its latest attempt's id."},
            "latest_status": {
                "type": "string",
                "enum": ["queued", "delivered", "failed"],
                "description": "For a task of several attempts: where its latest attempt stands, which is where the task stands."
            },
            "attempts": {"type": "integer", "minimum": 2, "description": "For a task of several attempts: how many so far."},
            "last_failure": {
                "type": ["object", "null"],
                "description": "For a task of several attempts: the latest attempt that failed.",
                "properties": {
                    "id": {"type": "string"},
                    "reason": {"type": "string"},
                    "http_status": {"type": ["integer", "null"]},
                    "detail": {"type": ["string", "null"]},
                    "at": {"type": "string"}
                },
                "required": ["id", "reason", "at"]
            },
            "next_attempt_at": {"type": ["string", "null"], "description": "For a task of several attempts: when its latest attempt may be sent, while it waits for its backoff."},
            "exhausted": {"type": "boolean", "description": "For a task of several attempts: whether it gave up (the latest failed, and nothing retries it)."}
        },
        "required": ["id", "status", "reason", "http_status", "rpc_code", "error_detail",
                     "target_received", "remote", "target", "queued_at", "settled_at"]
    })
}

/// The receipt: what `delegate_task_async` answers.
pub(crate) fn receipt() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "The delegation id: ask `check_task_status` with it."},
            "status": {"type": "string", "const": "queued"},
            "queued_at": {"type": "string", "description": "RFC 3339, nanoseconds, UTC."}
        },
        "required": ["id", "status", "queued_at"]
    })
}

/// The pending list: what `list_pending` answers.
pub(crate) fn pending() -> Value {
    let mut entry = status();
    if let Some(properties) = entry.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert(
            "in_flight".to_owned(),
            json!({
                "type": "boolean",
                "description": "Whether a live dispatcher is delivering it; a pending delegation that is not in flight was left by a process that is gone, and `delegation-log recover` settles it."
            }),
        );
    }
    json!({
        "type": "object",
        "properties": {
            "pending": {"type": "array", "items": entry, "description": "Oldest first."}
        },
        "required": ["pending"]
    })
}

/// A schema as the object rmcp takes; every schema here is an object.
pub(crate) fn object(schema: Value) -> Map<String, Value> {
    match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
