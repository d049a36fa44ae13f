//! The `delegation-log` command-line tool.
//!
//! This minimal `main` wires only the audit commands (`src/cli/audit.rs`); the
//! full tool adds `demo`, `status` and `history` beside them.

mod cli {
    pub mod audit;
}

use std::process::ExitCode;

use clap::Parser;

/// Records, audits and moves delegation logs.
#[derive(Debug, Parser)]
#[command(name = "delegation-log", version, about)]
struct Cli {
    #[command(subcommand)]
    command: cli::audit::Command,
}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(cli) => cli::audit::run(cli.command),
        Err(error) => {
            let _ = error.print();
            // Help and version are not errors; every usage error exits 2.
            if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
