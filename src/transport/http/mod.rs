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
//! How errors are classified:
//!
//! | what happened | reason |
//! | --- | --- |
//! | a 2xx answer | delivered, with the status |
//! | a non-2xx answer, redirects included (they are not followed) | `http_status`, the detail holds the start of the body |
//! | connection refused, unknown host, unusable URL | `target_offline` |
//! | reqwest's own timeout | `timeout` |
//! | the connection broke after the request may have been sent | `timeout`: no answer came and the target may have the task (`target_received: unknown`); the detail says what broke |
//! | the envelope is larger than [`Http::max_body`] | `marshal_error` |

use std::error::Error as _;
use std::fmt;

use serde_json::{Value, json};

use super::{Accepted, BoxFuture, Failure, Message, Transport};

mod auth;
mod card;
mod client;

pub use self::auth::{Credential, CredentialError, Secret};
pub use self::card::{CARD_LIMIT, CARD_PATH, DEFAULT_CARD_CACHE, DEFAULT_CARD_TTL};
pub use self::client::{BuildError, Builder};

/// The A2A wire generation to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// A2A 0.3: method `message/send`, `kind` fields, role `user`.
    #[default]
    V0_3,
    /// A2A 1.0: method `SendMessage`, header `A2A-Version: 1.0`, role `ROLE_USER`.
    V1_0,
}

/// The default limit on an encoded envelope: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How much of a non-2xx answer's body goes into the failure's detail.
const DETAIL_BODY: usize = 200;

/// Posts A2A JSON-RPC envelopes over plain HTTP (no TLS is compiled in).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    version: Version,
    max_body: usize,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("version", &self.version)
            .field("max_body", &self.max_body)
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

    /// The JSON-RPC envelope this transport posts for `message`.
    pub fn envelope(&self, message: &Message) -> Value {
        let text = match &message.task {
            Some(Value::String(text)) => text.clone(),
            Some(task) => task.to_string(),
            None => String::new(),
        };
        let metadata = json!({
            "delegationId": message.delegation.as_str(),
            "source": message.source,
        });
        match self.version {
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

    async fn post(&self, message: Message) -> Result<Accepted, Failure> {
        let body = serde_json::to_vec(&self.envelope(&message)).map_err(Failure::marshal)?;
        if body.len() > self.max_body {
            return Err(Failure::marshal(format!(
                "the envelope is {} bytes, over the transport's limit of {}",
                body.len(),
                self.max_body
            )));
        }
        let mut request = self
            .client
            .post(&message.target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if self.version == Version::V1_0 {
            request = request.header("A2A-Version", "1.0");
        }
        let response = request.send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Accepted::status(status.as_u16()));
        }
        let body = response.text().await.unwrap_or_default();
        let mut excerpt: String = body.chars().take(DETAIL_BODY).collect();
        if excerpt.len() < body.len() {
            excerpt.push('…');
        }
        let detail = if excerpt.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {excerpt}")
        };
        Err(Failure::status(status.as_u16(), detail))
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
