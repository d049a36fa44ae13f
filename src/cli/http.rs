//! The HTTP options that every delivering command shares: which A2A wire
//! generation to speak, which extra CA to trust, and which credential to send.

use std::path::PathBuf;

use delegation_log::transport::Http;
use delegation_log::transport::http::{Credential, Protocol};

use super::Failure;

/// `--protocol`, `--ca-cert`, `--auth-env` and `--auth-file`.
#[derive(Debug, clap::Args)]
pub(crate) struct HttpArgs {
    /// The A2A wire generation. `auto` reads the agent card at
    /// `<URL path>/.well-known/agent-card.json` (then at the origin) and speaks the
    /// newest JSON-RPC version both sides know; a card that cannot be had fails
    /// the delivery with the reason of that fetch, naming the card. `0.3` sends
    /// `message/send`; `1.0` sends `SendMessage` with `A2A-Version: 1.0`.
    #[arg(long, value_enum, default_value_t = Protocol::Auto)]
    pub(crate) protocol: Protocol,
    /// A PEM file of extra certificate authorities to trust for https:// agents,
    /// beside the platform's roots (for private deployments).
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The name of an environment variable holding the agent's credential. It is
    /// sent as the agent card's security schemes ask (a bearer token, or an API-key
    /// header), else as `Authorization: Bearer`, and never printed or logged.
    #[arg(long, value_name = "VAR", conflicts_with = "auth_file")]
    pub(crate) auth_env: Option<String>,
    /// As --auth-env, with the credential read from a file (its final newline
    /// dropped).
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_file: Option<PathBuf>,
}

impl HttpArgs {
    /// The transport these options ask for. A credential or CA that cannot be
    /// read is a usage error (exit 2), and its message never quotes the secret.
    pub(crate) fn transport(&self) -> Result<Http, Failure> {
        let mut builder = Http::builder();
        if let Some(path) = &self.ca_cert {
            builder = builder.ca_cert(path);
        }
        let credential = match (&self.auth_env, &self.auth_file) {
            (Some(var), _) => Some(Credential::from_env(var)),
            (None, Some(path)) => Some(Credential::from_file(path)),
            (None, None) => None,
        };
        if let Some(credential) = credential {
            let credential = credential
                .map_err(|e| Failure::Unusable(format!("cannot use the credential: {e}")))?;
            builder = builder.credential(credential);
        }
        let http = builder
            .build()
            .map_err(|e| Failure::Unusable(format!("cannot start HTTP: {e}")))?;
        Ok(http.protocol(self.protocol))
    }
}
