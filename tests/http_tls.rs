//! Guards that the HTTP transport reaches agents behind HTTPS, on a loopback
//! server whose certificate is made in the test by a private CA: trusted through
//! `ca_cert` (a file) or `ca_cert_pem`, the task is `delivered`; without the CA it
//! is `failed / target_offline`, and the detail says the certificate was refused.
//! It also guards that a proxy named in the environment (`HTTP_PROXY`,
//! `HTTPS_PROXY`), bogus here, never stands between the transport and a loopback
//! target: a child process runs the delivery with those variables set.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use delegation_log::Status;
use delegation_log::dispatch::DEFAULT_DEADLINE;
use delegation_log::transport::Http;
use delivery_support::deliver_one;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A CA and a server certificate it signed for `localhost` and `127.0.0.1`.
struct Pki {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "delegation-log test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server.der().clone(), ca_cert.der().clone()], key)
    .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

/// Accepts TCP connections and completes their TLS handshake; a handshake the
/// client refuses is dropped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An A2A agent over HTTPS on loopback that accepts every message.
async fn agent(acceptor: TlsAcceptor) -> SocketAddr {
    let app = Router::new().route(
        "/a2a",
        post(|| async {
            axum::Json(json!({
                "jsonrpc": "2.0",
                "id": "task-1",
                "result": {"kind": "message", "messageId": "m-1", "role": "agent",
                           "parts": [{"kind": "text", "text": "on it"}]},
            }))
        }),
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(TlsListener { tcp, acceptor }, app).await });
    addr
}

/// Delegates one task to `target` through `http` and returns its status.
async fn deliver(http: Http, target: String) -> Status {
    let (ledger, id) = deliver_one(http, "task-1", target, DEFAULT_DEADLINE).await;
    ledger.status(&id).unwrap()
}

fn json(status: &Status) -> serde_json::Value {
    serde_json::to_value(status).unwrap()
}

#[tokio::test]
async fn an_agent_whose_certificate_a_trusted_private_ca_signed_gets_the_task() {
    let pki = pki();
    let addr = agent(pki.acceptor).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    let http = Http::builder().ca_cert(&ca_file).build().unwrap();
    let status = json(&deliver(http, format!("https://127.0.0.1:{}/a2a", addr.port())).await);
    assert_eq!(status["status"], "delivered", "{status}");

    let http = Http::builder().ca_cert_pem(pki.ca_pem).build().unwrap();
    let status = json(&deliver(http, format!("https://localhost:{}/a2a", addr.port())).await);
    assert_eq!(status["status"], "delivered", "{status}");
}

#[tokio::test]
async fn an_agent_whose_certificate_no_trusted_ca_signed_is_target_offline() {
    let pki = pki();
    let addr = agent(pki.acceptor).await;
    let status = json(
        &deliver(
            Http::new().unwrap(),
            format!("https://127.0.0.1:{}/a2a", addr.port()),
        )
        .await,
    );
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["reason"], "target_offline");
    assert_eq!(status["target_received"], "no");
    let detail = status["error_detail"].as_str().unwrap();
    assert!(detail.contains("certificate"), "{detail}");
}

/// Set in the child process that runs under a bogus proxy.
const CHILD: &str = "DELEGATION_LOG_TEST_PROXY_CHILD";

#[test]
fn a_bogus_proxy_in_the_environment_does_not_stand_before_a_loopback_agent() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bogus = format!("http://{closed}");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "under_a_bogus_proxy_a_loopback_agent_gets_the_task",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("HTTP_PROXY", &bogus)
        .env("HTTPS_PROXY", &bogus)
        .env("ALL_PROXY", &bogus)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("child delivered over http and https"),
        "{stdout}"
    );
}

/// Run by the test above, in a child process whose environment names a proxy
/// that does not exist; does nothing in a plain `cargo test`.
#[tokio::test]
async fn under_a_bogus_proxy_a_loopback_agent_gets_the_task() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert!(std::env::var_os("HTTP_PROXY").is_some());
    let pki = pki();
    let tls = agent(pki.acceptor).await;
    let http = Http::builder().ca_cert_pem(pki.ca_pem).build().unwrap();
    let status = json(
        &deliver(
            http.clone(),
            format!("https://localhost:{}/a2a", tls.port()),
        )
        .await,
    );
    assert_eq!(status["status"], "delivered", "{status}");

    let app = Router::new().route(
        "/a2a",
        post(|| async {
            axum::Json(json!({"jsonrpc": "2.0", "id": "task-1",
                "result": {"kind": "message", "messageId": "m", "role": "agent", "parts": []}}))
        }),
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(tcp, app).await });
    let status = json(&deliver(http, format!("http://{plain}/a2a")).await);
    assert_eq!(status["status"], "delivered", "{status}");
    println!("child delivered over http and https");
}
