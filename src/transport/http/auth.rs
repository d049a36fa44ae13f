//! Credentials for agents that ask for them: where the secret comes from, how the
//! agent card says to send it, and how it is kept out of every log, failure detail
//! and `Debug` output.
//!
//! The secret is read once, when the [`Credential`] is made, from an environment
//! variable ([`Credential::from_env`]) or a file ([`Credential::from_file`]). It is
//! held in a [`Secret`], whose `Debug` and `Display` print `[redacted]`, and the
//! header values made from it are marked sensitive. A failure detail that quotes the
//! secret (an agent echoing the header back in a 401 page, say) has it replaced by
//! `[redacted]` before it is recorded ([`Secret::scrub`]).
//!
//! How the secret is sent ([`Scheme`]) is what the agent card's security asks:
//!
//! | card scheme (1.0 / 0.3) | header sent |
//! | --- | --- |
//! | `httpAuthSecurityScheme` with scheme `Bearer` / `type: http, scheme: bearer` | `Authorization: Bearer <secret>` |
//! | `oauth2SecurityScheme` / `type: oauth2` | `Authorization: Bearer <secret>` (the secret is the access token) |
//! | `openIdConnectSecurityScheme` / `type: openIdConnect` | `Authorization: Bearer <secret>` (the secret is the token) |
//! | `apiKeySecurityScheme` with `location: header` / `type: apiKey, in: header` | `<name>: <secret>` |
//!
//! The card's requirements (`securityRequirements` in 1.0, `security` in 0.3) are
//! alternatives, tried in order: the first one that a single secret can satisfy
//! wins. A card with no requirement uses the first scheme it declares that a secret
//! can satisfy. Schemes a secret cannot satisfy (HTTP Basic, mutual TLS, an API key
//! in a query or a cookie) are passed over. Without a card (a fixed protocol), or
//! with a card that asks for nothing usable, the secret goes as
//! `Authorization: Bearer`.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::Value;

/// What a redacted secret prints as.
const REDACTED: &str = "[redacted]";

/// A secret that never prints: its `Debug` and `Display` are `[redacted]`.
#[derive(Clone)]
pub struct Secret {
    text: Arc<str>,
    bearer: HeaderValue,
    raw: HeaderValue,
}

impl Secret {
    /// The secret, checked to fit in an HTTP header. `origin` names where it came
    /// from, for the error.
    fn new(text: &str, origin: &str) -> Result<Self, CredentialError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CredentialError::Empty {
                origin: origin.to_owned(),
            });
        }
        let not_a_header = || CredentialError::NotAHeader {
            origin: origin.to_owned(),
        };
        if !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(not_a_header());
        }
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {text}")).map_err(|_| not_a_header())?;
        bearer.set_sensitive(true);
        let mut raw = HeaderValue::from_str(text).map_err(|_| not_a_header())?;
        raw.set_sensitive(true);
        Ok(Secret {
            text: Arc::from(text),
            bearer,
            raw,
        })
    }

    /// `text` with every occurrence of the secret replaced by `[redacted]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.contains(&*self.text) {
            Cow::Owned(text.replace(&*self.text, REDACTED))
        } else {
            Cow::Borrowed(text)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A secret to present to agents (a bearer token or an API key), and where it
/// came from.
///
/// It is sent as the agent card asks (see [HTTPS and
/// credentials](super#https-and-credentials)), or as `Authorization: Bearer`
/// when there is no card. It never reaches the log, a
/// failure detail, or `Debug` output.
///
/// ```no_run
/// use delegation_log::transport::http::Credential;
///
/// let token = Credential::from_env("A2A_TOKEN")?;
/// assert_eq!(
///     format!("{token:?}"),
///     r#"Credential { origin: "environment variable A2A_TOKEN", secret: [redacted] }"#
/// );
/// # Ok::<(), delegation_log::transport::http::CredentialError>(())
/// ```
#[derive(Clone)]
pub struct Credential {
    origin: String,
    secret: Secret,
}

impl Credential {
    /// The secret held by the environment variable `var`, read now. Surrounding
    /// whitespace is dropped.
    ///
    /// # Errors
    /// [`CredentialError`] if `var` is unset, empty, not Unicode, or holds
    /// something that cannot go in an HTTP header.
    pub fn from_env(var: &str) -> Result<Self, CredentialError> {
        let origin = format!("environment variable {var}");
        let text = match std::env::var(var) {
            Ok(text) => text,
            Err(std::env::VarError::NotPresent) => {
                return Err(CredentialError::Unset {
                    var: var.to_owned(),
                });
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CredentialError::NotAHeader { origin });
            }
        };
        let secret = Secret::new(&text, &origin)?;
        Ok(Credential { origin, secret })
    }

    /// The secret held by the file at `path`, read now. Surrounding whitespace
    /// (a final newline, say) is dropped.
    ///
    /// # Errors
    /// [`CredentialError`] if the file cannot be read, is empty, or holds
    /// something that cannot go in an HTTP header.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialError> {
        let path = path.as_ref();
        let origin = format!("file {}", path.display());
        let bytes = std::fs::read(path).map_err(|source| CredentialError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| CredentialError::NotAHeader {
            origin: origin.clone(),
        })?;
        let secret = Secret::new(&text, &origin)?;
        Ok(Credential { origin, secret })
    }

    /// Where the secret came from: `environment variable A2A_TOKEN`, or
    /// `file /run/secrets/a2a`. Never the secret itself.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The secret, which prints as `[redacted]`.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The header that carries the secret as `scheme` asks.
    pub(super) fn header(&self, scheme: &Scheme) -> (HeaderName, HeaderValue) {
        match scheme {
            Scheme::Bearer => (AUTHORIZATION, self.secret.bearer.clone()),
            Scheme::ApiKey(name) => (name.clone(), self.secret.raw.clone()),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("origin", &self.origin)
            .field("secret", &self.secret)
            .finish()
    }
}

/// A [`Credential`] could not be read. None of these quote the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The environment variable is not set.
    ///
    /// Handling: set it, or name the right one (`--auth-env`).
    #[error("the environment variable {var} is not set")]
    Unset {
        /// The variable's name.
        var: String,
    },
    /// The file could not be read.
    ///
    /// Handling: check the path and its permissions.
    #[error("could not read the credential file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The variable or file holds nothing but whitespace.
    ///
    /// Handling: put the token there.
    #[error("the credential in the {origin} is empty")]
    Empty {
        /// Where it was read: `environment variable X` or `file P`.
        origin: String,
    },
    /// The secret holds bytes that cannot go in an HTTP header (a control
    /// character, a line break inside it, non-ASCII text).
    ///
    /// Handling: check that the variable or file holds the token alone.
    #[error("the credential in the {origin} holds characters that cannot go in an HTTP header")]
    NotAHeader {
        /// Where it was read: `environment variable X` or `file P`.
        origin: String,
    },
}

/// How a secret is presented to an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `Authorization: Bearer <secret>`.
    #[default]
    Bearer,
    /// `<header>: <secret>`.
    ApiKey(HeaderName),
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Bearer => f.write_str("Authorization: Bearer"),
            Scheme::ApiKey(name) => write!(f, "header {name}"),
        }
    }
}

impl Scheme {
    /// What the card's `securitySchemes` and requirements ask (see the module
    /// docs), or [`Scheme::Bearer`] when they ask for nothing a secret can satisfy.
    pub(super) fn from_card(card: &Value) -> Self {
        let Some(declared) = card.get("securitySchemes").and_then(Value::as_object) else {
            return Scheme::Bearer;
        };
        let usable = |name: &str| declared.get(name).and_then(usable_scheme);
        let requirements = requirements(card);
        if requirements.is_empty() {
            return declared
                .values()
                .find_map(usable_scheme)
                .unwrap_or_default();
        }
        requirements
            .iter()
            .find_map(|names| {
                let mut schemes = names.iter().map(|name| usable(name));
                let first = schemes.next()??;
                schemes
                    .all(|other| other.as_ref() == Some(&first))
                    .then_some(first)
            })
            .unwrap_or_default()
    }
}

/// The card's requirements, each a list of scheme names that must all be met:
/// 1.0 `securityRequirements: [{"schemes": {name: …}}]`, else 0.3
/// `security: [{name: [scopes]}]`.
fn requirements(card: &Value) -> Vec<Vec<&str>> {
    fn names(object: &serde_json::Map<String, Value>) -> Vec<&str> {
        object.keys().map(String::as_str).collect()
    }
    if let Some(list) = card.get("securityRequirements").and_then(Value::as_array) {
        return list
            .iter()
            .filter_map(|r| r.get("schemes").and_then(Value::as_object))
            .map(names)
            .filter(|n| !n.is_empty())
            .collect();
    }
    card.get("security")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_object)
                .map(names)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// How one declared scheme (1.0 or 0.3 form) takes a single secret, if it can.
fn usable_scheme(scheme: &Value) -> Option<Scheme> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let api_key = |location: Option<String>, name: Option<String>| {
        if !location?.eq_ignore_ascii_case("header") {
            return None;
        }
        HeaderName::from_bytes(name?.as_bytes())
            .ok()
            .map(Scheme::ApiKey)
    };
    let bearer = |scheme: Option<String>| {
        scheme
            .filter(|s| s.eq_ignore_ascii_case("bearer"))
            .map(|_| Scheme::Bearer)
    };
    // 1.0: one member naming the kind.
    if let Some(key) = scheme.get("apiKeySecurityScheme") {
        return api_key(text(key, "location"), text(key, "name"));
    }
    if let Some(http) = scheme.get("httpAuthSecurityScheme") {
        return bearer(text(http, "scheme"));
    }
    if scheme.get("oauth2SecurityScheme").is_some()
        || scheme.get("openIdConnectSecurityScheme").is_some()
    {
        return Some(Scheme::Bearer);
    }
    if scheme.get("mtlsSecurityScheme").is_some() {
        return None;
    }
    // 0.3: OpenAPI's `type`.
    match scheme.get("type").and_then(Value::as_str)? {
        "apiKey" => api_key(text(scheme, "in"), text(scheme, "name")),
        "http" => bearer(text(scheme, "scheme")),
        "oauth2" | "openIdConnect" => Some(Scheme::Bearer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> Scheme {
        Scheme::ApiKey(HeaderName::from_bytes(name.as_bytes()).unwrap())
    }

    /// Written by the official A2A SDK (a2a-sdk 1.3.0, `agent_card_to_dict`): both
    /// the 1.0 members and the 0.3 ones it adds for compatibility.
    const SDK_API_KEY: &str = r#"{"name": "secured", "description": "d", "supportedInterfaces": [{"url": "https://agent.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}, {"url": "https://agent.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}], "version": "1.0.0", "capabilities": {"streaming": false}, "securitySchemes": {"apikey": {"apiKeySecurityScheme": {"location": "header", "name": "X-API-Key"}, "in": "header", "name": "X-API-Key", "type": "apiKey"}}, "securityRequirements": [{"schemes": {"apikey": {}}}], "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": [{"id": "r", "name": "r", "description": "r", "tags": ["t"]}], "preferredTransport": "JSONRPC", "protocolVersion": "0.3", "security": [{"apikey": []}], "url": "https://agent.example/a2a"}"#;

    /// The SDK's card declaring a bearer and an OpenID Connect scheme, requiring
    /// OpenID Connect.
    const SDK_OIDC: &str = r#"{"name": "secured", "description": "d", "supportedInterfaces": [{"url": "https://agent.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}], "version": "1.0.0", "capabilities": {"streaming": false}, "securitySchemes": {"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer", "bearerFormat": "JWT"}, "bearerFormat": "JWT", "scheme": "Bearer", "type": "http"}, "oidc": {"openIdConnectSecurityScheme": {"openIdConnectUrl": "https://id.example/.well-known/openid-configuration"}, "openIdConnectUrl": "https://id.example/.well-known/openid-configuration", "type": "openIdConnect"}}, "securityRequirements": [{"schemes": {"oidc": {"list": ["openid"]}}}], "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": [{"id": "r", "name": "r", "description": "r", "tags": ["t"]}]}"#;

    /// The SDK's card requiring mutual TLS, or an API key in the query, or OAuth 2.
    const SDK_MTLS_QUERY_OAUTH: &str = r#"{"name": "secured", "description": "d", "supportedInterfaces": [{"url": "https://agent.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}], "version": "1.0.0", "capabilities": {"streaming": false}, "securitySchemes": {"mtls": {"mtlsSecurityScheme": {}, "type": "mutualTLS"}, "oauth": {"oauth2SecurityScheme": {"flows": {"clientCredentials": {"tokenUrl": "https://id.example/token", "scopes": {"a2a": "use"}}}}, "flows": {"clientCredentials": {"scopes": {"a2a": "use"}, "tokenUrl": "https://id.example/token"}}, "type": "oauth2"}, "q": {"apiKeySecurityScheme": {"location": "query", "name": "key"}, "in": "query", "name": "key", "type": "apiKey"}}, "securityRequirements": [{"schemes": {"mtls": {}}}, {"schemes": {"q": {}}}, {"schemes": {"oauth": {"list": ["a2a"]}}}], "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": [{"id": "r", "name": "r", "description": "r", "tags": ["t"]}]}"#;

    fn card(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_api_key_scheme_in_a_header_is_sent_in_that_header() {
        assert_eq!(Scheme::from_card(&card(SDK_API_KEY)), key("x-api-key"));
    }

    #[test]
    fn an_open_id_connect_requirement_is_met_with_a_bearer_token() {
        assert_eq!(Scheme::from_card(&card(SDK_OIDC)), Scheme::Bearer);
    }

    #[test]
    fn requirements_a_secret_cannot_meet_are_passed_over_for_the_next() {
        assert_eq!(
            Scheme::from_card(&card(SDK_MTLS_QUERY_OAUTH)),
            Scheme::Bearer
        );
        let key_second = json!({
            "securitySchemes": {
                "mtls": {"mtlsSecurityScheme": {}},
                "k": {"apiKeySecurityScheme": {"location": "header", "name": "X-Key"}},
            },
            "securityRequirements": [{"schemes": {"mtls": {}}}, {"schemes": {"k": {}}}],
        });
        assert_eq!(Scheme::from_card(&key_second), key("x-key"));
    }

    #[test]
    fn a_0_3_card_names_its_schemes_by_type_and_its_requirements_in_security() {
        let card = json!({
            "protocolVersion": "0.3.0",
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "key": {"type": "apiKey", "in": "header", "name": "X-Agent-Key"},
            },
            "security": [{"basic": []}, {"key": []}],
        });
        assert_eq!(Scheme::from_card(&card), key("x-agent-key"));
    }

    #[test]
    fn a_card_without_requirements_uses_its_first_usable_declared_scheme() {
        let card = json!({
            "securitySchemes": {
                "a": {"type": "mutualTLS"},
                "b": {"apiKeySecurityScheme": {"location": "header", "name": "X-Key"}},
            },
        });
        assert_eq!(Scheme::from_card(&card), key("x-key"));
    }

    #[test]
    fn a_card_without_security_or_with_nothing_usable_gets_a_bearer_token() {
        assert_eq!(Scheme::from_card(&json!({"name": "open"})), Scheme::Bearer);
        let only_query = json!({
            "securitySchemes": {"q": {"type": "apiKey", "in": "query", "name": "key"}},
            "security": [{"q": []}],
        });
        assert_eq!(Scheme::from_card(&only_query), Scheme::Bearer);
    }

    #[test]
    fn a_requirement_of_two_different_schemes_cannot_be_met_by_one_secret() {
        let card = json!({
            "securitySchemes": {
                "k1": {"type": "apiKey", "in": "header", "name": "X-One"},
                "k2": {"type": "apiKey", "in": "header", "name": "X-Two"},
            },
            "security": [{"k1": [], "k2": []}],
        });
        assert_eq!(Scheme::from_card(&card), Scheme::Bearer);
    }

    #[test]
    fn a_secret_prints_as_redacted_everywhere() {
        let secret = Secret::new("s3cr3t-token", "test").unwrap();
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let credential = Credential {
            origin: "test".into(),
            secret,
        };
        let debug = format!("{credential:?} {credential:#?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        let (_, value) = credential.header(&Scheme::Bearer);
        assert!(!format!("{value:?}").contains("s3cr3t"));
    }

    #[test]
    fn scrubbing_replaces_every_occurrence_of_the_secret() {
        let secret = Secret::new("tok-123", "test").unwrap();
        assert_eq!(
            secret.scrub("HTTP 401: bad token tok-123 (tok-123)"),
            "HTTP 401: bad token [redacted] ([redacted])"
        );
        assert!(matches!(secret.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_credential_is_read_from_a_file_without_its_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc.def\n").unwrap();
        let credential = Credential::from_file(&path).unwrap();
        let (name, value) = credential.header(&Scheme::Bearer);
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value, "Bearer abc.def");
        let (name, value) = credential.header(&key("X-Key"));
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-key", "abc.def")
        );
    }

    #[test]
    fn unusable_credentials_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            Credential::from_file(&empty),
            Err(CredentialError::Empty { .. })
        ));
        let two_lines = dir.path().join("two");
        std::fs::write(&two_lines, "secret-one\nsecret-two\n").unwrap();
        let error = Credential::from_file(&two_lines).unwrap_err();
        assert!(matches!(error, CredentialError::NotAHeader { .. }));
        assert!(!error.to_string().contains("secret-one"), "{error}");
        assert!(matches!(
            Credential::from_file(dir.path().join("missing")),
            Err(CredentialError::Read { .. })
        ));
        assert!(matches!(
            Credential::from_env("DELEGATION_LOG_TEST_SURELY_UNSET_VAR"),
            Err(CredentialError::Unset { .. })
        ));
    }
}
