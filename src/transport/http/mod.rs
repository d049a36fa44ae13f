//! A real HTTP transport: posts the A2A JSON-RPC 2.0 envelope to the target URL.
//!
//! The target of a delegation is the URL to post to (with [`Protocol::Auto`], the
//! JSON-RPC interface its agent card names). The message id is the first
//! attempt's delegation id (a redelivery keeps it, following `retry_of` in the
//! log), so receivers can drop duplicates.
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
//! | 3xx (redirects are not followed), 4xx, 5xx | `http_status`; the detail holds the start of the body, and says for 401 and 403 that the credentials were refused | no for 3xx, 4xx, 501, 503; unknown for other 5xx; a 429 or 503 also carries its `Retry-After` (seconds or an HTTP-date) as [`Failure::retry_after`](crate::transport::Failure::retry_after) |
//! | connection refused, unknown host, unusable URL, a TLS certificate that does not check out | `target_offline` | no |
//! | no complete answer before the delivery deadline (a 2xx body that never ends included) | `timeout` | unknown |
//! | the connection broke after the request may have been sent | `timeout`, the detail says what broke | unknown |
//! | the envelope is larger than [`Http::max_body`] | `marshal_error` | no |
//!
//! The body of a non-2xx answer is only read for the detail: at most
//! [`DETAIL_READ`] bytes, for at most [`DETAIL_WAIT`], so a 500 whose body streams
//! forever is still `http_status 500`, at once, with bounded memory. A 2xx body is
//! read whole, up to [`Http::max_answer`] bytes, within the dispatcher's deadline.
//!
//! ## Protocol discovery
//!
//! With [`Protocol::Auto`] the transport first reads the target's agent card. The
//! official SDKs serve it at `/.well-known/agent-card.json`, and a server hosting
//! several agents serves each one's under that agent's path, so for the target
//! `https://host/agents/review` it is looked for at
//! `https://host/agents/review/.well-known/agent-card.json`, then at
//! `https://host/.well-known/agent-card.json` (when the first answers non-2xx or
//! with no usable card; not when it cannot be reached). At most [`CARD_LIMIT`]
//! bytes of it are read.
//!
//! Of the card's JSON-RPC interfaces (1.0 `supportedInterfaces`; 0.3 `url`,
//! `preferredTransport`, `protocolVersion` and `additionalInterfaces`) in a version
//! this crate speaks, the newest version wins, then the card's order. The task is
//! posted to that interface's `url`, resolved against the card's URL; an absent or
//! empty `url` means the target. An interface that would take an `https` target to
//! plain `http` is passed over. The choice is cached per target (by default
//! [`DEFAULT_CARD_CACHE`] targets for [`DEFAULT_CARD_TTL`]; see
//! [`Builder::card_cache`]); a failed read is not cached.
//!
//! A card that cannot be had fails the delivery, and the task is not posted. The
//! detail names the card's URL, e.g. `agent card
//! http://host/.well-known/agent-card.json: HTTP 404`:
//!
//! | the card | reason |
//! | --- | --- |
//! | refused, unknown host, bad certificate | `target_offline` |
//! | no answer | `timeout` (the dispatcher's deadline) |
//! | a non-2xx answer | `http_status` with that code |
//! | not JSON, too large, or no JSON-RPC interface in 0.3 or 1.0 | `bad_response` |
//!
//! When both places were tried, the detail gives both, and the reason is the
//! origin's unless the origin said only 404. A failure after the card was read
//! ends with where the task went: `(sent as A2A 1.0 to https://…, as the agent
//! card says)`.
//!
//! ## HTTPS and credentials
//!
//! TLS is rustls (ring provider), checking certificates against the platform's
//! roots plus any CA given to [`Builder::ca_cert`]. A [`Credential`] (from an
//! environment variable or a file) is sent as the agent card's `securitySchemes`
//! and requirements ask: `Authorization: Bearer` for HTTP bearer, OAuth 2 and
//! OpenID Connect schemes, or the named header for an API key in a header.
//! Without a card (a fixed [`Protocol`]) or when the card asks for nothing a
//! secret can satisfy, it goes as `Authorization: Bearer`. It is never sent to the
//! card's URL. A 401 or 403 is `http_status`, and its detail says which credential
//! was sent and how, or that none was configured. The secret itself never
//! reaches a detail (an agent echoing it gets `[redacted]`) or `Debug` output.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Accepted, BoxFuture, Failure, Message, Transport};
use crate::event::FailureReason;
use crate::event::http_status::{Class, Code, NonSuccess};

mod answer;
mod auth;
mod card;
mod client;

use self::auth::Scheme;
use self::card::Cards;

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

/// What the transport speaks: one A2A wire generation to every target, or, with
/// [`Protocol::Auto`], what each target's agent card advertises.
///
/// The one enum for this choice, wherever it is made: with feature `mcp`, it is
/// the `protocol` argument of the MCP tools (`"auto"`, `"0.3"`, `"1.0"`, in its
/// JSON Schema); with feature `cli`, the value of `--protocol`. Each of those
/// describes the values in its own words (`schemars(description)`, `value(help)`),
/// and lists them in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "mcp", derive(serde::Deserialize, schemars::JsonSchema))]
#[cfg_attr(
    feature = "mcp",
    schemars(description = "The A2A wire generation to speak to a target.")
)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Protocol {
    /// Reads the target's agent card (cached, see [`Builder::card_cache`]) and
    /// posts to its JSON-RPC interface in the newest version both sides speak.
    /// A card that cannot be had fails the delivery, naming the card's URL; the
    /// [Protocol discovery](self#protocol-discovery) says how.
    #[cfg_attr(feature = "mcp", serde(rename = "auto"))]
    #[cfg_attr(
        feature = "mcp",
        schemars(
            description = "Read the agent card and speak the newest version both sides know."
        )
    )]
    #[cfg_attr(
        feature = "cli",
        value(help = "Read the agent card and speak what the agent advertises")
    )]
    Auto,
    /// A2A 0.3 (`message/send`), posted to the target URL.
    #[default]
    #[cfg_attr(feature = "mcp", serde(rename = "0.3"))]
    #[cfg_attr(feature = "mcp", schemars(description = "A2A 0.3: `message/send`."))]
    #[cfg_attr(feature = "cli", value(name = "0.3", help = "A2A 0.3: `message/send`"))]
    V0_3,
    /// A2A 1.0 (`SendMessage`, header `A2A-Version: 1.0`), posted to the target
    /// URL.
    #[cfg_attr(feature = "mcp", serde(rename = "1.0"))]
    #[cfg_attr(feature = "mcp", schemars(description = "A2A 1.0: `SendMessage`."))]
    #[cfg_attr(
        feature = "cli",
        value(
            name = "1.0",
            help = "A2A 1.0: `SendMessage`, header `A2A-Version: 1.0`"
        )
    )]
    V1_0,
}

impl From<Version> for Protocol {
    fn from(version: Version) -> Self {
        match version {
            Version::V0_3 => Protocol::V0_3,
            Version::V1_0 => Protocol::V1_0,
        }
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

/// Posts A2A JSON-RPC envelopes over HTTP or HTTPS.
///
/// Clones share one connection pool and one cache of agent cards.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    protocol: Protocol,
    max_body: usize,
    max_answer: usize,
    credential: Option<Credential>,
    cards: Arc<Cards>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("protocol", &self.protocol)
            .field("max_body", &self.max_body)
            .field("max_answer", &self.max_answer)
            .field("credential", &self.credential)
            .field("cards", &self.cards)
            .finish_non_exhaustive()
    }
}

impl Http {
    /// An A2A 0.3 transport with a 5 s connect timeout, no credential, and the
    /// platform's TLS roots. The delivery deadline is the dispatcher's. Redirects
    /// are not followed (a 3xx is a non-2xx answer: `http_status`), and proxies
    /// come from the environment (`HTTP_PROXY`, `NO_PROXY`, …) except for loopback
    /// targets, which are always reached directly. [`Http::builder`] gives more.
    ///
    /// ```
    /// use delegation_log::transport::Http;
    /// use delegation_log::transport::http::Protocol;
    ///
    /// let http = Http::new()?.protocol(Protocol::Auto);
    /// # let _ = http;
    /// # Ok::<(), delegation_log::transport::http::BuildError>(())
    /// ```
    ///
    /// # Errors
    /// [`BuildError`] if a proxy variable holds no URL, or reqwest cannot build
    /// its client.
    pub fn new() -> Result<Self, BuildError> {
        Http::builder().build()
    }

    /// Speaks `version` to every target instead of A2A 0.3: the same as
    /// [`Http::protocol`] with that version.
    pub fn version(self, version: Version) -> Self {
        self.protocol(version.into())
    }

    /// Speaks `protocol`: one version to every target, or [`Protocol::Auto`] to
    /// read each target's agent card.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
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

    /// The JSON-RPC envelope this transport posts for `message`. With
    /// [`Protocol::Auto`] the version is each target's; this gives the 1.0
    /// envelope, what a target whose card offers both versions gets.
    pub fn envelope(&self, message: &Message) -> Value {
        let version = match self.protocol {
            Protocol::V0_3 => Version::V0_3,
            Protocol::V1_0 | Protocol::Auto => Version::V1_0,
        };
        envelope(version, message)
    }

    async fn post(&self, message: Message) -> Result<Accepted, Failure> {
        let outcome = match self.protocol {
            Protocol::V0_3 => {
                self.post_to(Version::V0_3, &message.target, &Scheme::Bearer, &message)
                    .await
            }
            Protocol::V1_0 => {
                self.post_to(Version::V1_0, &message.target, &Scheme::Bearer, &message)
                    .await
            }
            Protocol::Auto => self.post_by_card(&message).await,
        };
        outcome.map_err(|failure| self.redact(failure))
    }

    /// Posts `message` where and as the target's agent card says.
    async fn post_by_card(&self, message: &Message) -> Result<Accepted, Failure> {
        let route = self.cards.route(&self.client, &message.target).await?;
        self.post_to(route.version, &route.url, &route.auth, message)
            .await
            .map_err(|mut failure| {
                failure.detail.push_str(&format!(
                    " (sent as A2A {} to {}, as the agent card says)",
                    route.version, route.url
                ));
                failure
            })
    }

    /// `failure` with the credential's secret, should the agent have echoed it
    /// into the detail, replaced by `[redacted]`.
    fn redact(&self, failure: Failure) -> Failure {
        match &self.credential {
            Some(credential) => Failure {
                detail: credential.secret().scrub(&failure.detail).into_owned(),
                ..failure
            },
            None => failure,
        }
    }

    /// Posts `message` to `url` in `version`, with the credential (if any) as
    /// `scheme` says, and reads the answer.
    async fn post_to(
        &self,
        version: Version,
        url: &str,
        scheme: &Scheme,
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
        if let Some(credential) = &self.credential {
            let (name, value) = credential.header(scheme);
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|e| classify(&e))?;
        let status = Code(response.status().as_u16()).classify();
        let (body, retry_after) = match status {
            Class::Success(_) => (read_answer(&mut response, self.max_answer).await?, None),
            Class::NonSuccess(code) => {
                let retry_after = retry_after(&response, code);
                (read_prefix(&mut response).await, retry_after)
            }
        };
        answer::classify(status, &body, message.delegation.as_str()).map_err(|failure| {
            let mut failure = failure.with_retry_after(retry_after);
            if let FailureReason::HttpStatus(401 | 403) = failure.reason {
                failure.detail.push_str(&match &self.credential {
                    Some(credential) => format!(
                        " (sent the credential from the {} as {})",
                        credential.origin(),
                        scheme
                    ),
                    None => " (no credential was configured)".to_owned(),
                });
            }
            failure
        })
    }
}

/// The wait a non-2xx answer asks for before a retry: only 429 and 503 carry
/// one that a retry honours.
fn retry_after(response: &reqwest::Response, status: NonSuccess) -> Option<Duration> {
    match status.get() {
        429 | 503 => response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| crate::transport::retry_after::parse(value, chrono::Utc::now())),
        _ => None,
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
