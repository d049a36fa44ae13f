//! A real HTTP transport: posts the A2A JSON-RPC 2.0 envelope to the target URL.
//!
//! The target of a delegation is the URL to post to. The message id is the
//! delegation id (a redelivery keeps the original's), so receivers can drop
//! duplicates.
//!
//! **A2A 0.3** (the default), as the platform in the crate's story sends it:
//!
//! ```json
//! {"jsonrpc":"2.0","id":"task-1","method":"message/send",
//!  "params":{"message":{"kind":"message","messageId":"task-1","role":"user",
//!   "parts":[{"kind":"text","text":"<the task>"}],
//!   "metadata":{"delegationId":"task-1","source":"planner"}}}}
//! ```
//!
//! **A2A 1.0** ([`Version::V1_0`]): method `SendMessage`, header `A2A-Version: 1.0`,
//! parts `[{"text":…}]`, role `ROLE_USER`, no `kind` fields.
//!
//! The task travels as one text part: a task that is a JSON string is sent as that
//! string; any other JSON value is sent as its compact JSON text. A text part is
//! what every A2A agent reads; a data part would require the task to be an object.
//!
//! ## What the answer means
//!
//! `delivered` is written only when the agent accepted the message: a 2xx answer
//! carrying a JSON-RPC `result` for this request. What came back (a Message, or a
//! Task with its id, context id and state) is recorded as the delivered event's
//! `remote`, with task states in one vocabulary for both wire generations (0.3
//! `"working"` and 1.0 `"TASK_STATE_WORKING"` are both `working`).
//!
//! | the answer | reason | target may have it? |
//! | --- | --- | --- |
//! | 2xx, `{"jsonrpc":"2.0","id":"task-1","result":{"kind":"message",…}}` (0.3) or `{"result":{"message":{…}}}` (1.0) | delivered, `remote.kind` `message` | yes |
//! | 2xx, `{"result":{"kind":"task","id":"t-1","status":{"state":"working"},…}}` (0.3) or `{"result":{"task":{"id":"t-1","status":{"state":"TASK_STATE_WORKING"},…}}}` (1.0) | delivered, `remote.kind` `task` with its `task_id`, `context_id` and `state` | yes |
//! | 2xx, a Task whose `status.state` is `rejected` / `TASK_STATE_REJECTED` | `rejected` | yes |
//! | 2xx, `{"jsonrpc":"2.0","id":"task-1","error":{"code":-32601,"message":"Method not found"}}` (`id` may be `null`) | `rpc_error`, `rpc_code` -32601, the message as detail | no; unknown for -32603 |
//! | 2xx that is not a JSON-RPC response to this request: HTML from a proxy, an empty body, neither or both of `result` and `error`, another `id`, a `result` that is neither a Message nor a Task, an answer over [`Http::max_answer`] | `bad_response` | unknown |
//! | 3xx (redirects are not followed), 4xx, 5xx | `http_status`; the detail holds the start of the body, and says for 401 and 403 that the credentials were refused | no for 3xx, 4xx, 501, 503; unknown for other 5xx |
//! | connection refused, unknown host, unusable URL | `target_offline` | no |
//! | no complete answer before the delivery deadline (a 2xx body that never ends included) | `timeout` | unknown |
//! | the connection broke after the request may have been sent | `timeout`, the detail says what broke | unknown |
//! | the envelope is larger than [`Http::max_body`] | `marshal_error` | no |
//!
//! The body of a non-2xx answer is only read for the detail: at most
//! [`DETAIL_READ`] bytes, for at most [`DETAIL_WAIT`], so a 500 whose body streams
//! forever is still `http_status 500`, at once, with bounded memory. A 2xx body is
//! read whole, up to [`Http::max_answer`] bytes, within the dispatcher's deadline.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Accepted, BoxFuture, Failure, Message, Transport};
use crate::event::FailureReason;

mod answer;
mod auth;
mod card;
mod client;

pub use self::auth::{Credential, CredentialError, Secret};
pub use self::card::{CARD_LIMIT, CARD_PATH, DEFAULT_CARD_CACHE, DEFAULT_CARD_TTL};
pub use self::client::{BuildError, Builder};

/// An A2A wire generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// A2A 0.3: method `message/send`, `kind` fields, role `user`.
    #[default]
    V0_3,
    /// A2A 1.0: method `SendMessage`, header `A2A-Version: 1.0`, role `ROLE_USER`.
    V1_0,
}

impl Version {
    /// The version as A2A writes it: `0.3` or `1.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3 => "0.3",
            Version::V1_0 => "1.0",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default limit on an encoded envelope: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The default limit on a 2xx answer's body: 1 MiB. A larger answer is
/// `bad_response`.
pub const DEFAULT_MAX_ANSWER: usize = 1024 * 1024;

/// How much of a non-2xx answer's body is read, for the failure's detail.
pub const DETAIL_READ: usize = 4096;

/// How long a non-2xx answer's body is waited for, for the failure's detail.
pub const DETAIL_WAIT: Duration = Duration::from_millis(500);

/// Posts A2A JSON-RPC envelopes over plain HTTP (no TLS is compiled in).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    version: Version,
    max_body: usize,
    max_answer: usize,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("version", &self.version)
            .field("max_body", &self.max_body)
            .field("max_answer", &self.max_answer)
            .finish_non_exhaustive()
    }
}

impl Http {
    /// An A2A 0.3 transport with a 5 s connect timeout. The delivery deadline is
    /// the dispatcher's. Redirects are not followed (a 3xx is a non-2xx answer:
    /// `http_status`), and proxies come from the environment (`HTTP_PROXY`,
    /// `NO_PROXY`), as reqwest does by default.
    ///
    /// # Errors
    /// [`BuildError`] if reqwest cannot build its client.
    pub fn new() -> Result<Self, BuildError> {
        Ok(Http {
            client: Http::builder().client()?,
            version: Version::default(),
            max_body: DEFAULT_MAX_BODY,
            max_answer: DEFAULT_MAX_ANSWER,
        })
    }

    /// Speaks `version` instead of A2A 0.3.
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Refuses, as `marshal_error`, envelopes larger than `bytes`.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Reads at most `bytes` of a 2xx answer; a longer one is `bad_response`.
    pub fn max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }

    /// The JSON-RPC envelope this transport posts for `message`.
    pub fn envelope(&self, message: &Message) -> Value {
        envelope(self.version, message)
    }

    async fn post(&self, message: Message) -> Result<Accepted, Failure> {
        self.post_to(self.version, &message.target, &message).await
    }

    /// Posts `message` to `url` in `version`, and reads the answer.
    async fn post_to(
        &self,
        version: Version,
        url: &str,
        message: &Message,
    ) -> Result<Accepted, Failure> {
        let body = serde_json::to_vec(&envelope(version, message)).map_err(Failure::marshal)?;
        if body.len() > self.max_body {
            return Err(Failure::marshal(format!(
                "the envelope is {} bytes, over the transport's limit of {}",
                body.len(),
                self.max_body
            )));
        }
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if version == Version::V1_0 {
            request = request.header("A2A-Version", "1.0");
        }
        let mut response = request.send().await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let prefix = read_prefix(&mut response).await;
            return Err(answer::non_success(status, &prefix));
        }
        let body = read_answer(&mut response, self.max_answer).await?;
        answer::classify(status, &body, message.delegation.as_str())
    }
}

/// Reads what arrives of a non-2xx body within [`DETAIL_WAIT`], up to
/// [`DETAIL_READ`] bytes. Never fails: the status already decided.
async fn read_prefix(response: &mut reqwest::Response) -> Vec<u8> {
    let mut prefix = Vec::new();
    let read = async {
        while prefix.len() < DETAIL_READ {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(DETAIL_WAIT, read).await;
    prefix.truncate(DETAIL_READ);
    prefix
}

/// Reads a 2xx body whole, refusing one longer than `limit`.
async fn read_answer(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        Failure::timeout(format!(
            "the answer broke off after {} bytes: {}",
            body.len(),
            chain(&e)
        ))
    })? {
        if body.len() + chunk.len() > limit {
            return Err(Failure::new(
                FailureReason::BadResponse,
                format!("the answer is longer than the limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The JSON-RPC envelope for `message` in `version`.
fn envelope(version: Version, message: &Message) -> Value {
    let text = match &message.task {
        Some(Value::String(text)) => text.clone(),
        Some(task) => task.to_string(),
        None => String::new(),
    };
    let metadata = json!({
        "delegationId": message.delegation.as_str(),
        "source": message.source,
    });
    match version {
        Version::V0_3 => json!({
            "jsonrpc": "2.0",
            "id": message.delegation.as_str(),
            "method": "message/send",
            "params": { "message": {
                "kind": "message",
                "messageId": message.message_id.as_str(),
                "role": "user",
                "parts": [{ "kind": "text", "text": text }],
                "metadata": metadata,
            }},
        }),
        Version::V1_0 => json!({
            "jsonrpc": "2.0",
            "id": message.delegation.as_str(),
            "method": "SendMessage",
            "params": { "message": {
                "messageId": message.message_id.as_str(),
                "role": "ROLE_USER",
                "parts": [{ "text": text }],
                "metadata": metadata,
            }},
        }),
    }
}

impl Transport for Http {
    fn send(&self, message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        Box::pin(self.post(message))
    }
}

/// Classifies a reqwest error into a failure reason, keeping its whole source
/// chain as the detail.
pub fn classify(error: &reqwest::Error) -> Failure {
    let detail = chain(error);
    if error.is_connect() || error.is_builder() || refused_before_sending(error) {
        Failure::offline(detail)
    } else if error.is_timeout() {
        Failure::timeout(detail)
    } else {
        Failure::timeout(format!("no answer: {detail}"))
    }
}

/// Whether an I/O error in the chain says the connection never carried the request.
fn refused_before_sending(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, NotFound};
            return matches!(io.kind(), ConnectionRefused | AddrNotAvailable | NotFound);
        }
        source = cause.source();
    }
    false
}

/// `error: cause: cause…`, without repeating a cause that its parent already quoted.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            delegation: "d.r1".parse().unwrap(),
            message_id: "d".parse().unwrap(),
            source: "planner".into(),
            target: "http://127.0.0.1:9/a2a".into(),
            task: Some(json!({"review": 42})),
        }
    }

    #[test]
    fn a2a_0_3_envelopes_carry_the_original_id_as_message_id() {
        let envelope = Http::new().unwrap().envelope(&message());
        assert_eq!(envelope["method"], "message/send");
        let m = &envelope["params"]["message"];
        assert_eq!(m["messageId"], "d");
        assert_eq!(m["role"], "user");
        assert_eq!(m["parts"][0]["kind"], "text");
        assert_eq!(m["parts"][0]["text"], r#"{"review":42}"#);
    }

    #[test]
    fn a2a_1_0_envelopes_use_send_message_and_role_user() {
        let envelope = Http::new()
            .unwrap()
            .version(Version::V1_0)
            .envelope(&message());
        assert_eq!(envelope["method"], "SendMessage");
        let m = &envelope["params"]["message"];
        assert_eq!(m["role"], "ROLE_USER");
        assert_eq!(m["parts"][0], json!({"text": r#"{"review":42}"#}));
    }
}
