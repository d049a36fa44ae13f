//! The audit commands of the `delegation-log` tool: `verify`, `audit`, `import` and
//! `export`. Each prints what the library returns; none judges anything itself.
//!
//! Exit status, as the format page says: 0 clean, 1 violations found (or, for
//! `import` and `export`, refused because of them), 2 the input could not be read
//! at all (missing file, not a log, a store that cannot be opened, usage error).

use std::fs::File;
use std::io::{self, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use delegation_log::audit::{self, AuditError, Options, Verdict, printable};
use delegation_log::{Error, SystemClock};
use indicatif::{ProgressBar, ProgressStyle};

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a JSON Lines log without storing it, and print its verdict.
    Verify(VerifyArgs),
    /// Judge a store on disk from its own records, and print the verdict.
    Audit(AuditArgs),
    /// Import a JSON Lines log into a store: all of it, or nothing if it has any
    /// violation.
    Import(ImportArgs),
    /// Write every record of a store as hashed JSON Lines.
    Export(ExportArgs),
}

/// `verify FILE|- [--json] [--require-hashes]`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log, or `-` for standard input.
    pub file: PathBuf,
    /// Print the verdict as the format's JSON object.
    #[arg(long)]
    pub json: bool,
    /// Treat every record without `hash` as `broken_chain` (exports are always
    /// hashed; a log with every hash stripped otherwise verifies clean).
    #[arg(long)]
    pub require_hashes: bool,
}

/// `audit DB [--json]`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The store's directory, or a `postgres://` URL.
    pub db: PathBuf,
    /// Print the verdict as the format's JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `import FILE DB [--json]`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The log, or `-` for standard input.
    pub file: PathBuf,
    /// The store's directory, created if missing; or a `postgres://` URL.
    pub db: PathBuf,
    /// Print the verdict as the format's JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `export DB [--out FILE]`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store's directory, or a `postgres://` URL.
    pub db: PathBuf,
    /// Where to write the log; standard output if left out.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs one audit subcommand.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Verify(args) => verify(&args),
        Command::Audit(args) => audit(&args),
        Command::Import(args) => import(&args),
        Command::Export(args) => export(&args),
    }
}

/// `verify`: 0 clean, 1 violations, 2 unreadable.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    let (input, len): (Box<dyn Read>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        match File::open(&args.file) {
            Ok(file) => {
                let len = file.metadata().ok().map(|m| m.len());
                (Box::new(file), len)
            }
            Err(error) => return unreadable(&args.file, &AuditError::Io(error)),
        }
    };
    let bar = progress(args.json, len, "bytes");
    let options = Options {
        require_hashes: args.require_hashes,
    };
    let verdict = audit::verify_with(input, &SystemClock, options, &mut |bytes| {
        bar.set_position(bytes);
    });
    bar.finish_and_clear();
    match verdict {
        Ok(verdict) => print_verdict(&verdict, args.json),
        Err(error) => unreadable(&args.file, &error),
    }
}

/// `audit`: 0 clean, 1 violations, 2 a store that cannot be opened or read.
pub fn audit(args: &AuditArgs) -> ExitCode {
    let bar = progress(args.json, None, "records");
    let mut progress = |records| bar.set_position(records);
    let verdict = match super::place::url(&args.db) {
        Some(_) => super::place::open_existing(&args.db)
            .map_err(AuditError::Store)
            .and_then(|ledger| {
                audit::audit_observed(ledger.store().as_ref(), &SystemClock, &mut progress)
            }),
        None => audit::audit_path_observed(&args.db, &SystemClock, &mut progress),
    };
    bar.finish_and_clear();
    match verdict {
        Ok(verdict) => print_verdict(&verdict, args.json),
        Err(error) => unreadable(&args.db, &error),
    }
}

/// `import`: 0 imported, 1 refused (violations, or delegations already stored),
/// 2 unreadable log or store.
pub fn import(args: &ImportArgs) -> ExitCode {
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        match File::open(&args.file) {
            Ok(file) => Box::new(file),
            Err(error) => return unreadable(&args.file, &AuditError::Io(error)),
        }
    };
    let ledger = match super::place::open(&args.db) {
        Ok(ledger) => ledger,
        Err(error) => return unreadable(&args.db, &AuditError::Store(error)),
    };
    match ledger.import(input) {
        Ok(imported) => {
            let code = print_verdict(&imported.verdict, args.json);
            if imported.verdict.is_clean() {
                eprintln!(
                    "imported {} records into {}",
                    imported.stored,
                    super::place::shown(&args.db)
                );
            } else {
                eprintln!("nothing imported: the log has violations");
            }
            code
        }
        Err(error @ AuditError::Exists { .. }) => {
            eprintln!("error: {}", printable(&error.to_string()));
            ExitCode::from(1)
        }
        Err(error) => unreadable(&args.file, &error),
    }
}

/// `export`: 0 written, 1 refused because the store is damaged, 2 a store that
/// cannot be opened or a destination that cannot be written.
pub fn export(args: &ExportArgs) -> ExitCode {
    if super::place::url(&args.db).is_none()
        && let Err(error) = std::fs::metadata(&args.db)
    {
        return unreadable(&args.db, &AuditError::Io(error));
    }
    let ledger = match super::place::open_existing(&args.db) {
        Ok(ledger) => ledger,
        Err(error) => return unreadable(&args.db, &AuditError::Store(error)),
    };
    let out: Box<dyn Write> = match &args.out {
        None => Box::new(io::stdout().lock()),
        Some(path) => match File::create(path) {
            Ok(file) => Box::new(file),
            Err(error) => return unreadable(path, &AuditError::Io(error)),
        },
    };
    match ledger.export(out) {
        Ok(exported) => {
            eprintln!(
                "exported {} records of {} delegations",
                exported.records, exported.delegations
            );
            ExitCode::SUCCESS
        }
        Err(error @ (Error::Corrupt { .. } | Error::UnknownVersion { .. })) => {
            eprintln!(
                "error: {}\nthe store is damaged; run `delegation-log audit` to see all of it",
                printable(&error.to_string())
            );
            ExitCode::from(1)
        }
        Err(error) => unreadable(&args.db, &AuditError::Store(error)),
    }
}

fn print_verdict(verdict: &Verdict, json: bool) -> ExitCode {
    let text = if json {
        let mut text = verdict.to_json();
        text.push('\n');
        text
    } else {
        verdict.to_plain()
    };
    let mut stdout = io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    if verdict.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn unreadable(path: &Path, error: &AuditError) -> ExitCode {
    eprintln!(
        "error: {}: {}",
        super::place::shown(path),
        printable(&error.to_string())
    );
    ExitCode::from(2)
}

/// A progress bar on stderr when stderr is a terminal and the output is not JSON;
/// a hidden one otherwise.
fn progress(json: bool, len: Option<u64>, unit: &str) -> ProgressBar {
    if json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(&format!(
                "{{bar:40}} {{bytes}}/{{total_bytes}} ({{eta}} left) {unit}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!("{{spinner}} {{pos}} {unit} {{elapsed}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
