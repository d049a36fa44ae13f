//! Protocol discovery: reads a target's A2A agent card, picks the interface to
//! post to and the wire generation to speak, and caches that choice per target.
//!
//! The official SDKs serve a card at `/.well-known/agent-card.json`; a server
//! hosting several agents serves each one's card under that agent's own path. So
//! for the target `https://host/agents/review` the card is looked for at
//! `https://host/agents/review/.well-known/agent-card.json`, then at
//! `https://host/.well-known/agent-card.json`. The second is tried when the first
//! answers with a non-2xx status or with something that is no usable card; a
//! first that cannot be reached at all (refused, timed out) ends the search, since
//! both live on the same server.
//!
//! What a card offers, in its order of preference:
//!
//! - A2A 1.0: `supportedInterfaces`, each `{url, protocolBinding, protocolVersion}`.
//! - A2A 0.3: the top-level `url`, `preferredTransport` (default `JSONRPC`) and
//!   `protocolVersion`, then `additionalInterfaces`, each `{url, transport}`.
//!
//! The SDK writes both forms into one card. Of the JSON-RPC interfaces in a version
//! this crate speaks (0.3 and 1.0), the newest version wins, then the card's order.
//! The interface's `url` is resolved against the card's own URL; an absent or
//! empty `url` means the target itself. An interface that would take a target
//! reached over `https` to plain `http` is passed over, so that credentials never
//! leave TLS.
//!
//! A card that cannot be had fails the delivery, and the task is never posted:
//!
//! | what happened | reason | detail |
//! | --- | --- | --- |
//! | refused, unknown host | `target_offline` | `agent card <url>: <error>` |
//! | no answer in time | `timeout` | `agent card <url>: <error>` |
//! | non-2xx | `http_status` | `agent card <url>: HTTP 404` |
//! | not JSON, larger than [`CARD_LIMIT`], no JSON-RPC interface in 0.3 or 1.0 | `bad_response` | `agent card <url>: …` |
//!
//! When both places were tried, the detail gives both, and the reason is the
//! origin's unless the origin only said 404 while the agent's path said something
//! more telling.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;

use super::Version;
use super::auth::Scheme;
use crate::event::FailureReason;
use crate::event::http_status::{Class, Code};
use crate::transport::Failure;

/// Where the SDKs serve an agent card, below an agent's path or the origin.
pub const CARD_PATH: &str = "/.well-known/agent-card.json";

/// The most of a card that is read: 256 KiB. A larger card is `bad_response`.
pub const CARD_LIMIT: usize = 256 * 1024;

/// How many targets' choices are cached by default.
pub const DEFAULT_CARD_CACHE: usize = 1024;

/// How long a target's choice is cached by default: 5 minutes, so that an agent
/// restarted with another card is read again.
pub const DEFAULT_CARD_TTL: Duration = Duration::from_secs(5 * 60);

/// Where and how to deliver to one target, as its card says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Route {
    /// The wire generation to speak.
    pub version: Version,
    /// The URL to post to.
    pub url: String,
    /// How the card asks for credentials.
    pub auth: Scheme,
}

/// Routes read from agent cards, cached per target: at most `capacity` targets
/// (the least recently used is dropped first), each for at most `ttl`.
pub(super) struct Cards {
    capacity: usize,
    ttl: Duration,
    cache: Mutex<Lru>,
}

impl fmt::Debug for Cards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cards")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("cached", &self.lock().entries.len())
            .finish()
    }
}

impl Default for Cards {
    fn default() -> Self {
        Cards::new(DEFAULT_CARD_CACHE, DEFAULT_CARD_TTL)
    }
}

impl Cards {
    /// A cache of at most `capacity` targets' routes (0 caches nothing), each kept
    /// for at most `ttl`.
    pub(super) fn new(capacity: usize, ttl: Duration) -> Self {
        Cards {
            capacity,
            ttl,
            cache: Mutex::new(Lru::default()),
        }
    }

    /// The route to `target`: from the cache, or from its agent card.
    ///
    /// Concurrent deliveries to a target whose route is not cached each read the
    /// card; the last one read is kept.
    pub(super) async fn route(
        &self,
        client: &reqwest::Client,
        target: &str,
    ) -> Result<Route, Failure> {
        if let Some(route) = self.lock().get(target, self.ttl, Instant::now()) {
            return Ok(route);
        }
        let route = discover(client, target).await?;
        self.lock().put(
            target,
            route.clone(),
            self.capacity,
            self.ttl,
            Instant::now(),
        );
        Ok(route)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A capped map whose eviction drops the least recently used entry. A linear scan
/// finds it: the cap is small, and an eviction only happens beside a card fetch.
#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    clock: u64,
}

struct Entry {
    route: Route,
    read_at: Instant,
    used: u64,
}

impl Lru {
    fn get(&mut self, target: &str, ttl: Duration, now: Instant) -> Option<Route> {
        self.clock += 1;
        let entry = self.entries.get_mut(target)?;
        if now.saturating_duration_since(entry.read_at) >= ttl {
            self.entries.remove(target);
            return None;
        }
        entry.used = self.clock;
        Some(entry.route.clone())
    }

    fn put(&mut self, target: &str, route: Route, capacity: usize, ttl: Duration, now: Instant) {
        if capacity == 0 {
            return;
        }
        self.clock += 1;
        if !self.entries.contains_key(target) && self.entries.len() >= capacity {
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.read_at) < ttl);
            while self.entries.len() >= capacity {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(key) => self.entries.remove(&key),
                    None => break,
                };
            }
        }
        self.entries.insert(
            target.to_owned(),
            Entry {
                route,
                read_at: now,
                used: self.clock,
            },
        );
    }
}

/// Reads `target`'s card, under its path and then at its origin, and picks the
/// route.
async fn discover(client: &reqwest::Client, target: &str) -> Result<Route, Failure> {
    let target_url = Url::parse(target)
        .map_err(|e| Failure::offline(format!("the target {target} is not a URL: {e}")))?;
    if !matches!(target_url.scheme(), "http" | "https") {
        return Err(Failure::offline(format!(
            "the target {target} is not an http or https URL"
        )));
    }
    let mut failures: Vec<Failure> = Vec::new();
    for card_url in card_urls(&target_url) {
        match read_card(client, &card_url).await {
            Ok(card) => match choose(&card, &card_url, &target_url) {
                Ok(route) => return Ok(route),
                Err(why) => failures.push(Failure::new(
                    FailureReason::BadResponse,
                    format!("agent card {card_url}: {why}"),
                )),
            },
            Err(failure) => {
                let unreachable = !matches!(
                    failure.reason,
                    FailureReason::HttpStatus(_) | FailureReason::BadResponse
                );
                failures.push(failure);
                if unreachable {
                    break;
                }
            }
        }
    }
    Err(worst(failures))
}

/// One failure for all the places tried: the last one that says more than a 404,
/// else the last, with every detail.
fn worst(failures: Vec<Failure>) -> Failure {
    let detail = failures
        .iter()
        .map(|f| f.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let reason = failures
        .iter()
        .rev()
        .find(|f| f.reason != FailureReason::HttpStatus(404))
        .or(failures.last())
        .map_or(FailureReason::BadResponse, |f| f.reason);
    Failure::new(reason, detail)
}

/// Where to look for `target`'s card: under its path (when it has one), then at
/// its origin.
fn card_urls(target: &Url) -> Vec<Url> {
    let mut origin = target.clone();
    origin.set_query(None);
    origin.set_fragment(None);
    let _ = origin.set_username("");
    let _ = origin.set_password(None);
    let path = origin.path().trim_end_matches('/').to_owned();
    let mut urls = Vec::with_capacity(2);
    if !path.is_empty() {
        let mut under_path = origin.clone();
        under_path.set_path(&format!("{path}{CARD_PATH}"));
        urls.push(under_path);
    }
    origin.set_path(CARD_PATH);
    urls.push(origin);
    urls
}

/// GETs the card at `url` and parses it, with failures that name `url`.
async fn read_card(client: &reqwest::Client, url: &Url) -> Result<Value, Failure> {
    let named = |failure: Failure| Failure {
        detail: format!("agent card {url}: {}", failure.detail),
        ..failure
    };
    let bad = |why: String| {
        Failure::new(
            FailureReason::BadResponse,
            format!("agent card {url}: {why}"),
        )
    };
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| named(super::classify(&e)))?;
    if let Class::NonSuccess(status) = Code(response.status().as_u16()).classify() {
        return Err(Failure::non_success(
            status,
            format!("agent card {url}: HTTP {status}"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| named(super::classify(&e)))?
    {
        if body.len() + chunk.len() > CARD_LIMIT {
            return Err(bad(format!("larger than {CARD_LIMIT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let card: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
    if !card.is_object() {
        return Err(bad("not a JSON object".to_owned()));
    }
    Ok(card)
}

/// One interface a card offers.
#[derive(Debug)]
struct Offer<'a> {
    binding: &'a str,
    version: &'a str,
    url: Option<&'a str>,
}

/// The interfaces `card` offers, in its order of preference: 1.0
/// `supportedInterfaces`, then the 0.3 top-level interface and
/// `additionalInterfaces`.
fn offers(card: &Value) -> Vec<Offer<'_>> {
    let mut offers = Vec::new();
    if let Some(list) = card.get("supportedInterfaces").and_then(Value::as_array) {
        offers.extend(list.iter().map(|i| Offer {
            binding: text(i, "protocolBinding").unwrap_or(""),
            version: text(i, "protocolVersion").unwrap_or("1.0"),
            url: text(i, "url"),
        }));
    }
    let is_0_3 = [
        "url",
        "protocolVersion",
        "preferredTransport",
        "additionalInterfaces",
    ]
    .iter()
    .any(|key| card.get(key).is_some());
    if is_0_3 {
        let version = text(card, "protocolVersion").unwrap_or("0.3");
        offers.push(Offer {
            binding: text(card, "preferredTransport").unwrap_or("JSONRPC"),
            version,
            url: text(card, "url"),
        });
        if let Some(list) = card.get("additionalInterfaces").and_then(Value::as_array) {
            offers.extend(list.iter().map(|i| Offer {
                binding: text(i, "transport").unwrap_or(""),
                version,
                url: text(i, "url"),
            }));
        }
    }
    offers
}

/// The string member `key` of `value`.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.as_str()
}

/// The version this crate speaks that `text` (`0.3`, `0.3.0`, `1.0`, `1`) names.
fn spoken(text: &str) -> Option<Version> {
    let text = text.trim().trim_start_matches(['v', 'V']);
    let mut numbers = text.split('.');
    let major = numbers.next()?.parse::<u32>().ok()?;
    let minor = numbers.next().map_or(Some(0), |m| m.parse::<u32>().ok())?;
    match (major, minor) {
        (1, 0) => Some(Version::V1_0),
        (0, 3) => Some(Version::V0_3),
        _ => None,
    }
}

/// Whether `binding` names JSON-RPC (`JSONRPC`, `jsonrpc`, `JSON-RPC`).
fn is_json_rpc(binding: &str) -> bool {
    let letters: String = binding
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    letters.eq_ignore_ascii_case("jsonrpc")
}

/// The route `card` (read at `card_url`) offers for `target`, or why there is none.
fn choose(card: &Value, card_url: &Url, target: &Url) -> Result<Route, String> {
    let offers = offers(card);
    let mut usable: Vec<(Version, Url)> = Vec::new();
    let mut passed_over = Vec::new();
    for offer in &offers {
        let Some(version) = spoken(offer.version).filter(|_| is_json_rpc(offer.binding)) else {
            continue;
        };
        let url = match offer.url.map(str::trim).filter(|u| !u.is_empty()) {
            None => target.clone(),
            Some(url) => match card_url.join(url) {
                Ok(url) => url,
                Err(e) => {
                    passed_over.push(format!("{url:?} is not a URL ({e})"));
                    continue;
                }
            },
        };
        if !matches!(url.scheme(), "http" | "https") {
            passed_over.push(format!("{url} is not http or https"));
            continue;
        }
        if target.scheme() == "https" && url.scheme() == "http" {
            passed_over.push(format!("{url} would leave TLS"));
            continue;
        }
        usable.push((version, url));
    }
    let best = usable
        .iter()
        .find(|(v, _)| *v == Version::V1_0)
        .or(usable.first());
    if let Some((version, url)) = best {
        return Ok(Route {
            version: *version,
            url: url.to_string(),
            auth: Scheme::from_card(card),
        });
    }
    let listed = offers
        .iter()
        .map(|o| format!("{} {}", o.binding, o.version))
        .collect::<Vec<_>>();
    let mut why = if listed.is_empty() {
        "lists no interface".to_owned()
    } else {
        format!(
            "no JSON-RPC interface in A2A 0.3 or 1.0 (it offers {})",
            listed.join(", ")
        )
    };
    if !passed_over.is_empty() {
        why.push_str(&format!("; passed over: {}", passed_over.join(", ")));
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Served by the official A2A SDK (a2a-sdk 1.3.0) at
    /// `GET /compat/.well-known/agent-card.json`: a 1.0 and a 0.3 interface, plus
    /// the 0.3 top-level fields the SDK adds.
    const SDK_COMPAT: &str = r#"{"name":"interop compat","description":"delegation-log interop peer at /compat","supportedInterfaces":[{"url":"http://127.0.0.1:45123/compat","protocolBinding":"JSONRPC","protocolVersion":"1.0"},{"url":"http://127.0.0.1:45123/compat","protocolBinding":"JSONRPC","protocolVersion":"0.3"}],"version":"1.0.0","capabilities":{"streaming":false},"defaultInputModes":["text/plain"],"defaultOutputModes":["text/plain"],"skills":[{"id":"review","name":"review","description":"reviews what it is sent","tags":["test"]}],"preferredTransport":"JSONRPC","protocolVersion":"0.3","url":"http://127.0.0.1:45123/compat"}"#;

    /// Served by the SDK at `GET /v1/.well-known/agent-card.json`: 1.0 only.
    const SDK_V1: &str = r#"{"name":"interop v1","description":"delegation-log interop peer at /v1","supportedInterfaces":[{"url":"http://127.0.0.1:45123/v1","protocolBinding":"JSONRPC","protocolVersion":"1.0"}],"version":"1.0.0","capabilities":{"streaming":false},"defaultInputModes":["text/plain"],"defaultOutputModes":["text/plain"],"skills":[{"id":"review","name":"review","description":"reviews what it is sent","tags":["test"]}]}"#;

    /// Written by the SDK for a card listing gRPC first, then JSON-RPC.
    const SDK_GRPC_FIRST: &str = r#"{"name": "secured", "description": "d", "supportedInterfaces": [{"url": "https://agent.example/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"}, {"url": "https://agent.example/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}], "version": "1.0.0", "capabilities": {"streaming": false}, "securitySchemes": {"grpc": {"apiKeySecurityScheme": {"location": "header", "name": "X-API-Key"}}}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"], "skills": [{"id": "r", "name": "r", "description": "r", "tags": ["t"]}]}"#;

    /// An A2A 0.3 card, as the 0.3 specification's `AgentCard` has it.
    const SPEC_0_3: &str = r#"{
        "protocolVersion": "0.3.0",
        "name": "GeoSpatial Route Planner Agent",
        "description": "Provides advanced route planning.",
        "url": "https://georoute-agent.example.com/a2a/v1",
        "preferredTransport": "JSONRPC",
        "additionalInterfaces": [
            {"url": "https://georoute-agent.example.com/a2a/v1", "transport": "JSONRPC"},
            {"url": "https://georoute-agent.example.com/a2a/grpc", "transport": "GRPC"},
            {"url": "https://georoute-agent.example.com/a2a/json", "transport": "HTTP+JSON"}
        ],
        "version": "1.2.0",
        "capabilities": {"streaming": true},
        "securitySchemes": {"google": {"type": "openIdConnect", "openIdConnectUrl": "https://accounts.google.com/.well-known/openid-configuration"}},
        "security": [{"google": ["openid", "profile", "email"]}],
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json"],
        "skills": []
    }"#;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn pick(card: &str, card_url: &str, target: &str) -> Result<Route, String> {
        let card: Value = serde_json::from_str(card).unwrap();
        choose(&card, &url(card_url), &url(target))
    }

    const COMPAT_CARD: &str = "http://127.0.0.1:45123/compat/.well-known/agent-card.json";

    #[test]
    fn a_1_0_card_with_json_rpc_1_0_first_gives_1_0_at_its_url() {
        let route = pick(
            SDK_V1,
            "http://127.0.0.1:45123/v1/.well-known/agent-card.json",
            "http://127.0.0.1:45123/v1",
        )
        .unwrap();
        assert_eq!(route.version, Version::V1_0);
        assert_eq!(route.url, "http://127.0.0.1:45123/v1");
        assert_eq!(route.auth, Scheme::Bearer);
    }

    #[test]
    fn a_card_listing_grpc_first_gives_its_json_rpc_interface() {
        let route = pick(
            SDK_GRPC_FIRST,
            "https://agent.example/.well-known/agent-card.json",
            "https://agent.example/",
        )
        .unwrap();
        assert_eq!(route.version, Version::V1_0);
        assert_eq!(route.url, "https://agent.example/rpc");
    }

    #[test]
    fn a_0_3_card_gives_0_3_at_its_url_and_its_auth_scheme() {
        let route = pick(
            SPEC_0_3,
            "https://georoute-agent.example.com/.well-known/agent-card.json",
            "https://georoute-agent.example.com/",
        )
        .unwrap();
        assert_eq!(route.version, Version::V0_3);
        assert_eq!(route.url, "https://georoute-agent.example.com/a2a/v1");
        assert_eq!(route.auth, Scheme::Bearer);
    }

    #[test]
    fn a_card_with_json_rpc_0_3_and_1_0_gives_1_0_whatever_the_order() {
        let route = pick(SDK_COMPAT, COMPAT_CARD, "http://127.0.0.1:45123/compat").unwrap();
        assert_eq!(route.version, Version::V1_0);
        let zero_three_first = json!({"supportedInterfaces": [
            {"url": "http://a.example/03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
            {"url": "http://a.example/10", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        ]});
        let route = choose(
            &zero_three_first,
            &url("http://a.example/.well-known/agent-card.json"),
            &url("http://a.example/"),
        )
        .unwrap();
        assert_eq!(
            (route.version, route.url.as_str()),
            (Version::V1_0, "http://a.example/10")
        );
    }

    #[test]
    fn a_card_without_a_json_rpc_interface_we_speak_is_refused_saying_what_it_offers() {
        let grpc_only = json!({"supportedInterfaces": [
            {"url": "http://a.example/g", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
            {"url": "http://a.example/j", "protocolBinding": "JSONRPC", "protocolVersion": "2.0"},
        ]});
        let why = choose(
            &grpc_only,
            &url("http://a.example/.well-known/agent-card.json"),
            &url("http://a.example/"),
        )
        .unwrap_err();
        assert!(why.contains("no JSON-RPC interface"), "{why}");
        assert!(why.contains("GRPC 1.0, JSONRPC 2.0"), "{why}");
        let why = pick(r#"{"name": "x"}"#, COMPAT_CARD, "http://a.example/").unwrap_err();
        assert_eq!(why, "lists no interface");
    }

    #[test]
    fn an_absent_or_empty_url_means_the_target_and_a_relative_one_is_resolved_against_the_card() {
        let card_url = "http://a.example/agents/x/.well-known/agent-card.json";
        let target = "http://a.example/agents/x?tenant=1";
        let absent = r#"{"protocolVersion": "0.3.0", "name": "x"}"#;
        let route = pick(absent, card_url, target).unwrap();
        assert_eq!((route.version, route.url.as_str()), (Version::V0_3, target));
        let empty = r#"{"supportedInterfaces": [{"url": "", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]}"#;
        assert_eq!(pick(empty, card_url, target).unwrap().url, target);
        let relative = r#"{"supportedInterfaces": [{"url": "/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]}"#;
        assert_eq!(
            pick(relative, card_url, target).unwrap().url,
            "http://a.example/rpc"
        );
    }

    #[test]
    fn an_interface_that_would_leave_tls_is_passed_over() {
        let card = r#"{"supportedInterfaces": [
            {"url": "http://a.example/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "https://a.example/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}
        ]}"#;
        let route = pick(
            card,
            "https://a.example/.well-known/agent-card.json",
            "https://a.example/",
        )
        .unwrap();
        assert_eq!(
            (route.version, route.url.as_str()),
            (Version::V0_3, "https://a.example/rpc")
        );
    }

    #[test]
    fn versions_are_read_as_major_and_minor() {
        for (text, version) in [
            ("0.3", Some(Version::V0_3)),
            ("0.3.0", Some(Version::V0_3)),
            ("1.0", Some(Version::V1_0)),
            ("1", Some(Version::V1_0)),
            ("1.0.0", Some(Version::V1_0)),
            ("0.2.5", None),
            ("1.1", None),
            ("one", None),
        ] {
            assert_eq!(spoken(text), version, "{text}");
        }
        assert!(is_json_rpc("JSONRPC") && is_json_rpc("json-rpc") && !is_json_rpc("GRPC"));
    }

    #[test]
    fn the_card_is_looked_for_under_the_targets_path_then_at_its_origin() {
        let urls = card_urls(&url("https://u:p@a.example:8443/agents/review/?q=1#f"));
        let urls: Vec<_> = urls.iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "https://a.example:8443/agents/review/.well-known/agent-card.json",
                "https://a.example:8443/.well-known/agent-card.json",
            ]
        );
        let urls = card_urls(&url("http://a.example"));
        assert_eq!(
            urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["http://a.example/.well-known/agent-card.json"]
        );
    }

    fn route(n: u8) -> Route {
        Route {
            version: Version::V1_0,
            url: format!("http://a.example/{n}"),
            auth: Scheme::Bearer,
        }
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_target_when_full() {
        let ttl = Duration::from_secs(60);
        let now = Instant::now();
        let mut lru = Lru::default();
        lru.put("a", route(1), 2, ttl, now);
        lru.put("b", route(2), 2, ttl, now);
        assert_eq!(lru.get("a", ttl, now), Some(route(1)));
        lru.put("c", route(3), 2, ttl, now);
        assert_eq!(lru.get("b", ttl, now), None);
        assert_eq!(lru.get("a", ttl, now), Some(route(1)));
        assert_eq!(lru.get("c", ttl, now), Some(route(3)));
        assert_eq!(lru.entries.len(), 2);
    }

    #[test]
    fn a_cached_route_expires_after_its_ttl() {
        let ttl = Duration::from_secs(300);
        let then = Instant::now();
        let mut lru = Lru::default();
        lru.put("a", route(1), 8, ttl, then);
        assert_eq!(
            lru.get("a", ttl, then + Duration::from_secs(299)),
            Some(route(1))
        );
        assert_eq!(lru.get("a", ttl, then + ttl), None);
        assert!(lru.entries.is_empty());
    }

    #[test]
    fn a_cache_of_capacity_zero_keeps_nothing() {
        let mut lru = Lru::default();
        lru.put("a", route(1), 0, DEFAULT_CARD_TTL, Instant::now());
        assert!(lru.entries.is_empty());
    }

    #[test]
    fn when_both_places_fail_the_origins_reason_wins_unless_it_only_said_404() {
        let at_path = Failure::new(FailureReason::BadResponse, "agent card p: not JSON");
        let at_origin = Failure::status(404, "agent card o: HTTP 404");
        let failure = worst(vec![at_path, at_origin.clone()]);
        assert_eq!(failure.reason, FailureReason::BadResponse);
        assert_eq!(
            failure.detail,
            "agent card p: not JSON; agent card o: HTTP 404"
        );
        let both_404 = worst(vec![Failure::status(404, "p: HTTP 404"), at_origin]);
        assert_eq!(both_404.reason, FailureReason::HttpStatus(404));
    }

    mod served {
        //! `Cards::route` against card servers on loopback.

        use std::net::SocketAddr;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::Router;
        use axum::http::StatusCode;
        use axum::routing::get;

        use super::super::*;
        use super::SDK_V1;

        async fn serve(app: Router) -> SocketAddr {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        }

        fn client() -> reqwest::Client {
            crate::transport::Http::builder().client().unwrap()
        }

        /// A 1.0 card whose interface is `url`.
        fn card_for(url: &str) -> String {
            SDK_V1.replace("http://127.0.0.1:45123/v1", url)
        }

        #[tokio::test]
        async fn a_card_under_the_agents_path_is_read_there() {
            let app = Router::new().route(
                "/agents/x/.well-known/agent-card.json",
                get(|| async { card_for("http://127.0.0.1:1/agents/x") }),
            );
            let addr = serve(app).await;
            let route = Cards::default()
                .route(&client(), &format!("http://{addr}/agents/x"))
                .await
                .unwrap();
            assert_eq!(route.version, Version::V1_0);
            assert_eq!(route.url, "http://127.0.0.1:1/agents/x");
        }

        #[tokio::test]
        async fn a_card_only_at_the_origin_is_read_there_after_a_404_under_the_path() {
            let app = Router::new().route(
                "/.well-known/agent-card.json",
                get(|| async { card_for("http://127.0.0.1:1/a2a") }),
            );
            let addr = serve(app).await;
            let route = Cards::default()
                .route(&client(), &format!("http://{addr}/a2a"))
                .await
                .unwrap();
            assert_eq!(route.url, "http://127.0.0.1:1/a2a");
        }

        #[tokio::test]
        async fn no_card_anywhere_is_http_status_404_naming_both_card_urls() {
            let addr = serve(Router::new()).await;
            let failure = Cards::default()
                .route(&client(), &format!("http://{addr}/a2a"))
                .await
                .unwrap_err();
            assert_eq!(failure.reason, FailureReason::HttpStatus(404));
            assert_eq!(
                failure.detail,
                format!(
                    "agent card http://{addr}/a2a/.well-known/agent-card.json: HTTP 404; \
                     agent card http://{addr}/.well-known/agent-card.json: HTTP 404"
                )
            );
        }

        #[tokio::test]
        async fn a_card_that_is_not_json_is_bad_response_naming_the_card_url() {
            let app = Router::new().route(
                "/.well-known/agent-card.json",
                get(|| async { "<html>sign in</html>" }),
            );
            let addr = serve(app).await;
            let failure = Cards::default()
                .route(&client(), &format!("http://{addr}/"))
                .await
                .unwrap_err();
            assert_eq!(failure.reason, FailureReason::BadResponse);
            assert!(
                failure.detail.starts_with(&format!(
                    "agent card http://{addr}/.well-known/agent-card.json: not JSON"
                )),
                "{}",
                failure.detail
            );
        }

        #[tokio::test]
        async fn a_card_larger_than_the_limit_is_bad_response() {
            let app = Router::new().route(
                "/.well-known/agent-card.json",
                get(|| async { " ".repeat(CARD_LIMIT + 1) }),
            );
            let addr = serve(app).await;
            let failure = Cards::default()
                .route(&client(), &format!("http://{addr}"))
                .await
                .unwrap_err();
            assert_eq!(failure.reason, FailureReason::BadResponse);
            assert!(
                failure.detail.ends_with("larger than 262144 bytes"),
                "{}",
                failure.detail
            );
        }

        #[tokio::test]
        async fn an_unreachable_target_is_target_offline_after_one_attempt() {
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let failure = Cards::default()
                .route(&client(), &format!("http://{closed}/a2a"))
                .await
                .unwrap_err();
            assert_eq!(failure.reason, FailureReason::TargetOffline);
            assert!(
                failure.detail.starts_with(&format!(
                    "agent card http://{closed}/a2a/.well-known/agent-card.json: "
                )),
                "{}",
                failure.detail
            );
            assert!(
                !failure.detail.contains("; agent card"),
                "{}",
                failure.detail
            );
        }

        #[tokio::test]
        async fn a_cached_route_is_not_read_again_until_it_expires() {
            let reads = Arc::new(AtomicUsize::new(0));
            let counter = reads.clone();
            let app = Router::new().route(
                "/.well-known/agent-card.json",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { card_for("") }
                }),
            );
            let addr = serve(app).await;
            let target = format!("http://{addr}/");
            let cached = Cards::new(4, Duration::from_secs(60));
            for _ in 0..3 {
                let route = cached.route(&client(), &target).await.unwrap();
                assert_eq!(route.url, target);
            }
            assert_eq!(reads.load(Ordering::SeqCst), 1);
            let uncached = Cards::new(4, Duration::ZERO);
            uncached.route(&client(), &target).await.unwrap();
            uncached.route(&client(), &target).await.unwrap();
            assert_eq!(reads.load(Ordering::SeqCst), 3);
        }

        #[tokio::test]
        async fn a_failed_read_is_not_cached() {
            let reads = Arc::new(AtomicUsize::new(0));
            let counter = reads.clone();
            let app = Router::new().route(
                "/.well-known/agent-card.json",
                get(move || {
                    let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                    async move {
                        if first {
                            Err(StatusCode::SERVICE_UNAVAILABLE)
                        } else {
                            Ok(card_for(""))
                        }
                    }
                }),
            );
            let addr = serve(app).await;
            let cards = Cards::default();
            let target = format!("http://{addr}/");
            let failure = cards.route(&client(), &target).await.unwrap_err();
            assert_eq!(failure.reason, FailureReason::HttpStatus(503));
            assert!(cards.route(&client(), &target).await.is_ok());
        }
    }
}
