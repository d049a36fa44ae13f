//! The HTTP client under [`Http`]: TLS, proxies, and the [`Builder`].
//!
//! **TLS** is rustls with its `ring` provider (no OpenSSL, no C toolchain beyond
//! what `ring` needs). Server certificates are checked against the platform's
//! roots (on Linux, the system's CA bundle), plus any CA given to
//! [`Builder::ca_cert`] for a private deployment. On a system without a CA
//! bundle, Mozilla's roots (the `webpki-root-certs` crate) stand in for the
//! platform's. A certificate that does not check out is `target_offline`: the
//! request was never sent.
//!
//! **Proxies** come from the environment as curl reads it (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, lower case too, and none at all under
//! CGI, where `REQUEST_METHOD` is set), except that a loopback target
//! (`localhost`, `127.0.0.0/8`, `::1`) is always reached directly: a proxy cannot
//! reach the sender's own loopback, and reqwest alone would send it there. This
//! is done by giving reqwest the environment's proxies with loopback added to
//! their exclusions, rather than turning proxies off, so that remote agents behind
//! a corporate proxy stay reachable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{NoProxy, Proxy};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Http;
use super::auth::Credential;
use super::card::{Cards, DEFAULT_CARD_CACHE, DEFAULT_CARD_TTL};

/// Hosts that are always reached without a proxy.
const LOOPBACK: &str = "localhost,127.0.0.0/8,::1";

/// How long a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP transport could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// reqwest could not build its client.
    ///
    /// Handling: report it; it points at the system (resolver configuration) or a
    /// bug.
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A CA certificate file could not be read.
    ///
    /// Handling: check the path given to [`Builder::ca_cert`] (`--ca-cert`).
    #[error("could not read the CA certificate file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A CA certificate holds no usable certificate: not PEM, no `CERTIFICATE`
    /// block, or one that rustls refuses as a root.
    ///
    /// Handling: give the CA's certificate in PEM form.
    #[error("the CA certificate {origin} is not usable: {reason}")]
    CaCert {
        /// The file, or `given as PEM`.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls could not be set up with these roots.
    ///
    /// Handling: report it.
    #[error("could not set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A proxy environment variable holds something that is no proxy URL. Its
    /// value is not quoted: it may hold a password.
    ///
    /// Handling: fix or unset the variable.
    #[error("the environment variable {var} is not a usable proxy URL")]
    Proxy {
        /// The variable's name.
        var: &'static str,
    },
}

/// A CA to trust besides the platform's roots.
#[derive(Clone)]
enum Ca {
    File(PathBuf),
    Pem(Vec<u8>),
}

/// Builds an [`Http`] transport with TLS extras, credentials and a card cache.
///
/// ```no_run
/// use std::time::Duration;
/// use delegation_log::transport::Http;
/// use delegation_log::transport::http::Credential;
///
/// let http = Http::builder()
///     .ca_cert("/etc/agents/ca.pem")
///     .credential(Credential::from_env("A2A_TOKEN")?)
///     .card_cache(256, Duration::from_secs(300))
///     .build()?;
/// # let _ = http;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Builder {
    cas: Vec<Ca>,
    credential: Option<Credential>,
    card_capacity: usize,
    card_ttl: Duration,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cas: Vec<String> = self
            .cas
            .iter()
            .map(|ca| match ca {
                Ca::File(path) => path.display().to_string(),
                Ca::Pem(_) => "given as PEM".to_owned(),
            })
            .collect();
        f.debug_struct("Builder")
            .field("ca_certs", &cas)
            .field("credential", &self.credential)
            .field("card_capacity", &self.card_capacity)
            .field("card_ttl", &self.card_ttl)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cas: Vec::new(),
            credential: None,
            card_capacity: DEFAULT_CARD_CACHE,
            card_ttl: DEFAULT_CARD_TTL,
        }
    }
}

impl Http {
    /// A [`Builder`], for a transport that trusts a private CA, presents
    /// credentials, or caches agent cards differently. `Http::builder().build()`
    /// is [`Http::new`].
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Also trusts the CA certificates (PEM, one or more) in the file at `path`,
    /// read when the transport is built. May be given several times.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.cas.push(Ca::File(path.into()));
        self
    }

    /// Also trusts the CA certificates in `pem` (one or more PEM `CERTIFICATE`
    /// blocks). May be given several times.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cas.push(Ca::Pem(pem.into()));
        self
    }

    /// Presents `credential` to agents, as their cards ask (see
    /// [`Credential`]).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Caches the route read from agent cards for at most `capacity` targets
    /// (0: read the card for every delivery), each for at most `ttl`. The default
    /// is [`DEFAULT_CARD_CACHE`] targets for [`DEFAULT_CARD_TTL`].
    pub fn card_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.card_capacity = capacity;
        self.card_ttl = ttl;
        self
    }

    /// The transport: A2A 0.3 to the target URL until told otherwise
    /// ([`Http::protocol`]).
    ///
    /// # Errors
    /// [`BuildError`] if a CA certificate cannot be read or used, a proxy
    /// variable holds no URL, or reqwest cannot build its client.
    pub fn build(self) -> Result<Http, BuildError> {
        let client = self.client()?;
        Ok(Http {
            client,
            protocol: super::Protocol::default(),
            max_body: super::DEFAULT_MAX_BODY,
            max_answer: super::DEFAULT_MAX_ANSWER,
            credential: self.credential,
            cards: Arc::new(Cards::new(self.card_capacity, self.card_ttl)),
        })
    }

    /// The reqwest client for these options.
    pub(super) fn client(&self) -> Result<reqwest::Client, BuildError> {
        let mut roots = Vec::new();
        for ca in &self.cas {
            roots.extend(match ca {
                Ca::File(path) => read_ca_file(path)?,
                Ca::Pem(pem) => parse_pem(pem, "given as PEM")?,
            });
        }
        let builder = configure(reqwest::Client::builder(), roots, &|var| {
            std::env::var(var).ok()
        })?;
        Ok(builder.build()?)
    }
}

/// The CA certificates in the PEM file at `path`.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let pem = std::fs::read(path).map_err(|source| BuildError::CaFile {
        path: path.to_owned(),
        source,
    })?;
    parse_pem(&pem, &path.display().to_string())
}

/// The `CERTIFICATE` blocks of `pem`: at least one.
fn parse_pem(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let unusable = |reason: String| BuildError::CaCert {
        origin: origin.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(unusable("no PEM CERTIFICATE block".to_owned()));
    }
    Ok(certs)
}

/// `builder` made to trust the platform's roots and `extra`, to read proxies
/// through `env`, to follow no redirect, and to connect within
/// [`CONNECT_TIMEOUT`].
fn configure(
    builder: reqwest::ClientBuilder,
    extra: Vec<CertificateDer<'static>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<reqwest::ClientBuilder, BuildError> {
    let builder = builder
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls(extra)?);
    proxies(builder, env)
}

/// rustls with the ring provider, verifying against the platform's roots and
/// `extra` (Mozilla's roots where the platform has none).
fn tls(extra: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, BuildError> {
    use rustls_platform_verifier::Verifier;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match Verifier::new_with_extra_roots(extra.clone(), provider.clone()) {
        Ok(verifier) => verifier,
        Err(rustls::Error::General(_)) => {
            // No roots on the system (a bare container): Mozilla's stand in.
            let mozilla = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned();
            Verifier::new_with_extra_roots(extra.into_iter().chain(mozilla), provider.clone())?
        }
        Err(error) => {
            return Err(BuildError::CaCert {
                origin: "given".to_owned(),
                reason: error.to_string(),
            });
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Gives `builder` the proxies `env` names, each excluding [`LOOPBACK`] and the
/// environment's `NO_PROXY`.
fn proxies(
    builder: reqwest::ClientBuilder,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<reqwest::ClientBuilder, BuildError> {
    let mut builder = builder.no_proxy();
    if env("REQUEST_METHOD").is_some() {
        // CGI: `HTTP_PROXY` may come from a request header (httpoxy).
        return Ok(builder);
    }
    let first = |names: [&'static str; 2]| {
        names.into_iter().find_map(|name| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
    };
    let exclusions = match first(["NO_PROXY", "no_proxy"]) {
        Some((_, listed)) => format!("{LOOPBACK},{listed}"),
        None => LOOPBACK.to_owned(),
    };
    type Make = fn(String) -> reqwest::Result<Proxy>;
    let kinds: [([&'static str; 2], Make); 3] = [
        (["HTTP_PROXY", "http_proxy"], |u| Proxy::http(u)),
        (["HTTPS_PROXY", "https_proxy"], |u| Proxy::https(u)),
        (["ALL_PROXY", "all_proxy"], |u| Proxy::all(u)),
    ];
    for (names, make) in kinds {
        if let Some((var, url)) = first(names) {
            let proxy = make(url)
                .map_err(|_| BuildError::Proxy { var })?
                .no_proxy(NoProxy::from_string(&exclusions));
            builder = builder.proxy(proxy);
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// A server that answers every request with `200 ok` and reports the first
    /// line it was sent (the request line: a proxy sees the absolute URL).
    async fn recorder() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buffer[..n]).to_string();
                    let _ = tx.send(head.lines().next().unwrap_or("").to_owned());
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        (addr, rx)
    }

    /// A client configured with `env` for its environment, where `agent.example`
    /// resolves to `agent` (no DNS is asked).
    fn client(
        env: &dyn Fn(&str) -> Option<String>,
        agent: std::net::SocketAddr,
    ) -> Result<reqwest::Client, BuildError> {
        let builder = reqwest::Client::builder().resolve("agent.example", agent);
        Ok(configure(builder, Vec::new(), env)?.build()?)
    }

    fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[tokio::test]
    async fn a_loopback_target_is_reached_directly_whatever_http_proxy_says() {
        let (proxy, mut proxied) = recorder().await;
        let (target, mut direct) = recorder().await;
        let env = env(&[("HTTP_PROXY", format!("http://{proxy}"))]);
        let client = client(&env, target).unwrap();
        for host in [target.to_string(), format!("localhost:{}", target.port())] {
            let response = client
                .get(format!("http://{host}/a2a"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(direct.recv().await.unwrap(), "GET /a2a HTTP/1.1");
        }
        assert!(proxied.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_remote_target_still_goes_through_the_environments_proxy() {
        let (proxy, mut proxied) = recorder().await;
        let (target, mut direct) = recorder().await;
        let env = env(&[("http_proxy", format!("http://{proxy}"))]);
        let client = client(&env, target).unwrap();
        let response = client.get("http://agent.example/a2a").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            proxied.recv().await.unwrap(),
            "GET http://agent.example/a2a HTTP/1.1"
        );
        assert!(direct.try_recv().is_err());
    }

    #[tokio::test]
    async fn no_proxy_and_cgi_still_turn_the_proxy_off() {
        let (proxy, mut proxied) = recorder().await;
        let (target, mut direct) = recorder().await;
        for extra in [
            ("NO_PROXY", "example".to_owned()),
            ("REQUEST_METHOD", "GET".to_owned()),
        ] {
            let env = env(&[("HTTP_PROXY", format!("http://{proxy}")), extra]);
            let client = client(&env, target).unwrap();
            let response = client.get("http://agent.example/a2a").send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(direct.recv().await.unwrap(), "GET /a2a HTTP/1.1");
        }
        assert!(proxied.try_recv().is_err());
    }

    #[test]
    fn a_proxy_variable_that_is_no_url_is_refused_without_quoting_it() {
        let env = env(&[("HTTPS_PROXY", "http://user:hunter2@[bad".to_owned())]);
        let error = configure(reqwest::Client::builder(), Vec::new(), &env).unwrap_err();
        assert!(matches!(error, BuildError::Proxy { var: "HTTPS_PROXY" }));
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let error = Http::builder().ca_cert(&path).client().unwrap_err();
        assert!(matches!(error, BuildError::CaCert { .. }), "{error:?}");
        assert!(error.to_string().contains("ca.pem"), "{error}");
        let error = Http::builder()
            .ca_cert(dir.path().join("missing.pem"))
            .client()
            .unwrap_err();
        assert!(matches!(error, BuildError::CaFile { .. }), "{error:?}");
    }
}
