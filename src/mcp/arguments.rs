//! The tools' arguments: their JSON Schemas, and the checks that turn what a client
//! sent into a request or a refusal naming the argument and why.
//!
//! Everything a client can send is checked here, before the ledger or the
//! dispatcher sees it: a refusal is a [`BadArgument`], which the server answers as
//! a tool error (`isError: true`), never a crash.

use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::DelegationId;
use crate::dispatch::Request;
use crate::event::{MAX_TASK_BYTES, MAX_TEXT_BYTES};
use crate::transport::http::Protocol;

/// An argument the server refuses, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad argument `{argument}`: {reason}")]
pub struct BadArgument {
    /// The argument (`target`, `task`, `id`, `protocol`, `older_than`), or
    /// `arguments` for the whole object.
    pub argument: String,
    /// Why it is refused.
    pub reason: String,
}

impl BadArgument {
    fn new(argument: &str, reason: impl Into<String>) -> Self {
        BadArgument {
            argument: argument.to_owned(),
            reason: reason.into(),
        }
    }

    /// The structured form of the tool error: `{"error": "invalid_argument",
    /// "argument", "message"}`.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "error": "invalid_argument",
            "argument": self.argument,
            "message": self.to_string(),
        })
    }
}

/// The arguments of `delegate_task_async`.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Delegate {
    /// The agent's A2A JSON-RPC endpoint: an http:// or https:// URL.
    pub target: String,
    /// The task, sent to the agent as one text part.
    pub task: String,
    /// The delegation id (1 to 256 bytes); a fresh one when absent. An id the log
    /// already holds is refused: ask `check_task_status` for it.
    pub id: Option<String>,
    /// The A2A wire generation: `auto` (read the agent card), `0.3` or `1.0`.
    /// Default: the server's (`--protocol`, itself `auto` by default).
    pub protocol: Option<Protocol>,
}

/// The arguments of `check_task_status`.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Check {
    /// The delegation id, as `delegate_task_async` answered it.
    pub id: String,
}

/// The arguments of `list_pending`.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Pending {
    /// Only delegations queued at least this many seconds ago (fractions
    /// allowed); all of them when absent.
    #[schemars(range(min = 0))]
    pub older_than: Option<f64>,
}

/// The input schema of `T`, as the object MCP's `inputSchema` is, with no `$ref`
/// (every subschema inline), for clients that do not resolve references.
pub(crate) fn schema<T: JsonSchema>() -> Map<String, Value> {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    super::schema::object(schema.to_value())
}

/// Arguments a tool takes, decoded one by one so that a refusal names the
/// argument it is about.
pub(crate) trait Decode: Sized {
    /// The argument names, for the message about one that is unknown.
    const NAMES: &'static [&'static str];

    /// Takes each argument out of `arguments`.
    fn take(arguments: &mut Map<String, Value>) -> Result<Self, BadArgument>;
}

/// Decodes a tool's arguments (a missing object is an empty one): each argument
/// by its type, then anything left over is an unknown argument.
pub(crate) fn decode<T: Decode>(arguments: Option<Map<String, Value>>) -> Result<T, BadArgument> {
    let mut arguments = arguments.unwrap_or_default();
    let decoded = T::take(&mut arguments)?;
    if let Some(unknown) = arguments.keys().next() {
        return Err(BadArgument::new(
            unknown,
            format!(
                "no such argument; the arguments are {}",
                T::NAMES.join(", ")
            ),
        ));
    }
    Ok(decoded)
}

/// Takes the argument `name`; `None` if absent or `null`.
fn optional<T: DeserializeOwned>(
    arguments: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, BadArgument> {
    match arguments.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| BadArgument::new(name, e.to_string())),
    }
}

/// Takes the argument `name`, which must be there.
fn required<T: DeserializeOwned>(
    arguments: &mut Map<String, Value>,
    name: &str,
) -> Result<T, BadArgument> {
    optional(arguments, name)?.ok_or_else(|| BadArgument::new(name, "missing; it is required"))
}

impl Decode for Delegate {
    const NAMES: &'static [&'static str] = &["target", "task", "id", "protocol"];

    fn take(arguments: &mut Map<String, Value>) -> Result<Self, BadArgument> {
        Ok(Delegate {
            target: required(arguments, "target")?,
            task: required(arguments, "task")?,
            id: optional(arguments, "id")?,
            protocol: optional(arguments, "protocol")?,
        })
    }
}

impl Decode for Check {
    const NAMES: &'static [&'static str] = &["id"];

    fn take(arguments: &mut Map<String, Value>) -> Result<Self, BadArgument> {
        Ok(Check {
            id: required(arguments, "id")?,
        })
    }
}

impl Decode for Pending {
    const NAMES: &'static [&'static str] = &["older_than"];

    fn take(arguments: &mut Map<String, Value>) -> Result<Self, BadArgument> {
        Ok(Pending {
            older_than: optional(arguments, "older_than")?,
        })
    }
}

impl Delegate {
    /// The checked id, if one was given.
    pub(crate) fn id(&self) -> Result<Option<DelegationId>, BadArgument> {
        self.id.as_deref().map(delegation_id).transpose()
    }

    /// The request these arguments describe, from `source`, or what is wrong with
    /// them: a target that is no http(s) URL with a host, a task or target over
    /// the log's size limits, a bad id.
    pub(crate) fn request(&self, source: &str) -> Result<Request, BadArgument> {
        check_target(&self.target)?;
        // The task's size as the log stores it: its compact JSON, quotes and
        // escapes included.
        let bytes = serde_json::to_string(&self.task)
            .map(|json| json.len())
            .unwrap_or(usize::MAX);
        if bytes > MAX_TASK_BYTES {
            return Err(BadArgument::new(
                "task",
                format!("{bytes} bytes as JSON; the limit is {MAX_TASK_BYTES}"),
            ));
        }
        let mut request = Request::new(source, &self.target).task(&self.task);
        if let Some(id) = self.id()? {
            request = request.id(id);
        }
        Ok(request)
    }
}

/// A delegation id from a client.
pub(crate) fn delegation_id(text: &str) -> Result<DelegationId, BadArgument> {
    text.parse()
        .map_err(|e: crate::event::InvalidId| BadArgument::new("id", e.to_string()))
}

/// An absolute http:// or https:// URL with a host, within the log's text limit.
fn check_target(text: &str) -> Result<(), BadArgument> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(BadArgument::new(
            "target",
            format!("{} bytes; the limit is {MAX_TEXT_BYTES}", text.len()),
        ));
    }
    let url = reqwest::Url::parse(text)
        .map_err(|e| BadArgument::new("target", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BadArgument::new(
            "target",
            format!(
                "the scheme is `{}`; an A2A endpoint is http:// or https://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BadArgument::new("target", "the URL names no host"));
    }
    Ok(())
}

impl Pending {
    /// The minimum age, if one was asked for.
    pub(crate) fn older_than(&self) -> Result<Option<Duration>, BadArgument> {
        let Some(secs) = self.older_than else {
            return Ok(None);
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(BadArgument::new(
                "older_than",
                format!("{secs} is not a number of seconds of 0 or more"),
            ));
        }
        Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|e| BadArgument::new("older_than", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn delegate(arguments: Value) -> Result<Delegate, BadArgument> {
        match arguments {
            Value::Object(map) => decode(Some(map)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_target_that_is_not_an_http_url_is_refused_naming_the_target() {
        for target in [
            "not a url",
            "ftp://host/a2a",
            "file:///etc/passwd",
            "http://",
        ] {
            let args = delegate(json!({"target": target, "task": "t"})).unwrap();
            let refused = args.request("mcp").unwrap_err();
            assert_eq!(refused.argument, "target", "{target}: {refused}");
        }
    }

    #[test]
    fn an_unknown_protocol_is_refused_naming_the_protocol() {
        let refused = delegate(json!({"target": "http://h/a2a", "task": "t", "protocol": "2.0"}))
            .unwrap_err();
        assert_eq!(refused.argument, "protocol", "{refused}");
    }

    #[test]
    fn a_missing_task_and_an_unknown_argument_are_refused() {
        let refused = delegate(json!({"target": "http://h/a2a"})).unwrap_err();
        assert_eq!(refused.argument, "task", "{refused}");
        let refused =
            delegate(json!({"target": "http://h/a2a", "task": "t", "url": "x"})).unwrap_err();
        assert_eq!(refused.argument, "url", "{refused}");
    }

    #[test]
    fn null_is_absent_for_an_optional_argument_and_missing_for_a_required_one() {
        let args = delegate(json!({"target": "http://h/a2a", "task": "t", "id": null})).unwrap();
        assert_eq!(args.id, None);
        let refused = delegate(json!({"target": null, "task": "t"})).unwrap_err();
        assert_eq!(refused.argument, "target", "{refused}");
    }

    #[test]
    fn an_empty_or_overlong_id_is_refused_naming_the_id() {
        for id in [String::new(), "x".repeat(257)] {
            let args = delegate(json!({"target": "http://h/a2a", "task": "t", "id": id})).unwrap();
            assert_eq!(args.request("mcp").unwrap_err().argument, "id");
        }
    }

    #[test]
    fn a_task_over_the_size_limit_is_refused_and_one_at_it_is_taken() {
        // Two bytes of quotes around the text.
        let at_limit = "x".repeat(MAX_TASK_BYTES - 2);
        let args = Delegate {
            target: "http://h/a2a".into(),
            task: at_limit,
            id: None,
            protocol: None,
        };
        assert!(args.request("mcp").is_ok());
        let over = Delegate {
            task: "x".repeat(MAX_TASK_BYTES - 1),
            ..args
        };
        assert_eq!(over.request("mcp").unwrap_err().argument, "task");
    }

    #[test]
    fn older_than_must_be_a_finite_number_of_seconds_not_below_zero() {
        for bad in [-1.0, f64::INFINITY, f64::NAN] {
            let refused = Pending {
                older_than: Some(bad),
            }
            .older_than()
            .unwrap_err();
            assert_eq!(refused.argument, "older_than");
        }
        assert_eq!(
            Pending {
                older_than: Some(1.5)
            }
            .older_than()
            .unwrap(),
            Some(Duration::from_millis(1500))
        );
    }
}
