//! `--log-format text|json` (feature `tracing`): prints the crate's events to
//! stderr, one line per event, so operators see every delegation settle.
//!
//! The crate's own events are printed from INFO up; those of the libraries it
//! runs on (rmcp under `mcp`, hyper) only from WARN up, so a session's protocol
//! chatter does not bury the delegations. Spans print no line of their own: a
//! delegation's span is in the fields of its `settled` line, and the
//! `store_flush` spans, one per flush, are for span-aware subscribers that a
//! program using the library installs. Without the flag nothing is installed
//! and nothing is printed, as before. Stdout is never used: `mcp` speaks the
//! protocol there.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human line per event, with its span's fields.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`, and
    /// `span` (for a delegation: `id`, `target`, `attempt`, `outcome`, `reason`).
    Json,
}

/// The events printed: the crate's from INFO up, any other library's from
/// WARN up.
fn printed() -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("delegation_log", LevelFilter::INFO)
}

/// Installs the subscriber for `format` ([`printed`] events). A second
/// install (none happens) would be ignored, never a panic.
pub(crate) fn install(format: LogFormat) {
    let lines = fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.with_ansi(false).boxed(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(printed()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_s_info_is_printed_and_another_library_s_only_from_warn() {
        let printed = printed();
        let enabled = |target: &str, level| printed.would_enable(target, &level);
        assert!(enabled(
            "delegation_log::dispatch::trace",
            tracing::Level::INFO
        ));
        assert!(!enabled(
            "delegation_log::dispatch::trace",
            tracing::Level::DEBUG
        ));
        assert!(!enabled("rmcp::service", tracing::Level::INFO));
        assert!(enabled("rmcp::service", tracing::Level::WARN));
        assert!(!enabled("hyper_util::client", tracing::Level::INFO));
    }
}
