//! `--log-format text|json` (feature `tracing`): prints the crate's spans and
//! events to stderr, one line per event, so operators see every delegation settle.
//!
//! Without the flag nothing is installed and nothing is printed, as before. Stdout
//! is never used: `mcp` speaks the protocol there.

use tracing_subscriber::fmt;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human line per event, with its span's fields.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`, and
    /// `span` (for a delegation: `id`, `target`, `attempt`, `outcome`, `reason`).
    Json,
}

/// Installs the subscriber for `format` at level INFO. A second install (none
/// happens) would be ignored, never a panic.
pub(crate) fn install(format: LogFormat) {
    let builder = fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
