//! `delegation-log`: delegate a task, run the demo, inspect a log, recover what a dead
//! process left.
//!
//! Exit codes: 0 when all is well, 1 for an id that is not found, problems found or a
//! failed delegation, 2 for a usage error or a log that cannot be read.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
