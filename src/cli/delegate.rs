//! `delegate`: hand one task to an A2A agent over HTTP, record `queued` durably,
//! deliver, and print the outcome as `status` prints it.
//!
//! The command keeps the crate's promise that no delivery is detached and forgotten,
//! also with `--no-wait`: the receipt is printed as soon as `queued` is durable, and
//! the process then drains the delivery and records its outcome before it exits.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use delegation_log::audit::printable;
use delegation_log::dispatch::{self, Dispatcher, Options, Receipt, Request, Retry};
use delegation_log::event::Attempt;
use delegation_log::transport::Http;
use delegation_log::{Delegation, DelegationId, Ledger, Status, StatusKind};

use super::http::HttpArgs;
use super::inspect::print_status;
use super::{Done, Failure, runtime};

/// The arguments of `delegate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The log's directory, created if it does not exist; or a `postgres://` URL.
    #[arg(long, value_name = "DIR")]
    db: PathBuf,
    /// The agent's A2A JSON-RPC endpoint (http:// or https://).
    #[arg(long, value_name = "URL", value_parser = endpoint)]
    to: String,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    retry: RetryArgs,
    /// The delegation id (default: a fresh one). Running again with an id the log
    /// already holds sends nothing and prints that delegation's status.
    #[arg(long)]
    id: Option<DelegationId>,
    /// Who delegates, as recorded in `queued`.
    #[arg(long, value_name = "NAME", default_value = "cli")]
    from: String,
    /// The delivery deadline in seconds (fractions allowed); an agent that has not
    /// answered by then ends the delegation as failed / timeout.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "8")]
    timeout: Duration,
    /// With a `postgres://` db: the lease (in seconds) this dispatcher holds while
    /// it delivers; if the process dies, other dispatchers' `recover` takes its
    /// delegation over once the lease has run out. Ignored for a directory.
    #[arg(long, value_name = "SECS", value_parser = super::lease_seconds, default_value = "10")]
    lease: Duration,
    /// Print the receipt (id, status queued, queued_at) as soon as `queued` is
    /// durable, then still deliver and record the outcome before exiting, so that
    /// nothing is left queued; exit 0 whichever the outcome. Read it with `status`.
    #[arg(long)]
    no_wait: bool,
    /// Print JSON: the same object as `status --json` for the attempt that
    /// settled, with `attempt` (which one) and `attempts` (--max-attempts) (with
    /// --no-wait, the receipt `{"id", "status": "queued", "queued_at"}`).
    #[arg(long)]
    json: bool,
    /// The task, sent to the agent as one text part.
    #[arg(value_name = "TASK_TEXT")]
    task: String,
}

pub(crate) fn run(args: Args) -> Done {
    let ledger = super::open(&args.db)?;
    if let Some(id) = &args.id
        && let Some(existing) = known(&ledger, id)?
    {
        return again(&args, &existing);
    }
    let transport = args.http.transport()?;
    let runtime = runtime()?;
    let feed = super::feed::start(&runtime, &ledger, &args.db, "delegate");
    let delivered = runtime.block_on(deliver(&ledger, transport, &args));
    runtime.block_on(feed.close());
    let (id, attempt) = delivered?;
    if args.no_wait {
        return Ok(());
    }
    let mut status = ledger
        .task_status(&id)
        .map_err(|e| Failure::Unusable(format!("cannot read `{id}` back: {e}")))?;
    status.attempt = Some(attempt);
    print_delegated(&status, args.retry.max_attempts, args.json)?;
    exit_by(&status, false)
}

/// The retry options of `delegate` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RetryArgs {
    /// How many attempts a task gets in all, the first included (1: no retry).
    /// Only failures the agent certainly does not have are retried (an agent
    /// that cannot be reached, HTTP 408, 429 and 503), each as a new delegation
    /// `<id>.r<n>` linked to the one it retries, with the same A2A messageId.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_attempts: Attempt,
    /// The backoff before the second attempt (`200ms`, `1s`, `1.5s`, `2m`); it
    /// doubles for each attempt after, with jitter, up to 30s. A `Retry-After`
    /// from the agent is honoured.
    #[arg(long, value_name = "BASE", value_parser = super::duration, default_value = "200ms")]
    pub(crate) backoff: Duration,
    /// Also retry failures the agent may have received (a timeout, HTTP 500,
    /// 502, 504, an answer that is not JSON-RPC). Safe with agents that drop a
    /// repeated messageId.
    #[arg(long)]
    pub(crate) retry_unknown: bool,
}

impl RetryArgs {
    /// The dispatcher's retry policy.
    pub(crate) fn policy(&self) -> Retry {
        Retry::new()
            .max_attempts(self.max_attempts)
            .backoff(self.backoff)
            .retry_unknown(self.retry_unknown)
    }
}

/// The status of the attempt that settled, with which attempt it is and how
/// many the policy allowed (`attempt: k of at most n`; `status` says `k of n`
/// with `n` the attempts made, so the two never read alike). As JSON: what `status --json` prints for that
/// attempt (with the task's `attempts` made, `latest` and the rest when it had
/// more than one), plus `attempt`, `attempts` when `status` left it out (a task
/// of one attempt), and `max_attempts`, the policy's; each key once.
fn print_delegated(status: &Status, max_attempts: Attempt, json: bool) -> Done {
    let attempt = status.attempt.unwrap_or(1);
    if !json {
        print_status(status, false)?;
        let mut out = std::io::stdout().lock();
        return writeln!(out, "attempt:         {attempt} of at most {max_attempts}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure::Unusable(format!("cannot write to stdout: {e}")));
    }
    #[derive(serde::Serialize)]
    struct Delegated<'a> {
        #[serde(flatten)]
        status: &'a Status,
        /// Only where `status` has no `attempts` of its own.
        #[serde(skip_serializing_if = "Option::is_none")]
        attempts: Option<Attempt>,
        max_attempts: Attempt,
    }
    let mut status = status.clone();
    status.attempt = Some(attempt);
    let attempts = status.attempts.is_none().then_some(attempt);
    let text = serde_json::to_string_pretty(&Delegated {
        status: &status,
        attempts,
        max_attempts,
    })
    .map_err(|e| Failure::Unusable(format!("cannot encode the status: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Unusable(format!("cannot write to stdout: {e}")))
}

/// Queues and delivers, through every retry; with `--no-wait`, prints the
/// receipt at once. Returns once the last attempt's outcome is recorded and the
/// dispatcher has drained: that attempt's id and number.
async fn deliver(
    ledger: &Ledger,
    transport: Http,
    args: &Args,
) -> Result<(DelegationId, Attempt), Failure> {
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        transport,
        Options::new()
            .deadline(args.timeout)
            .lease(args.lease)
            .retry(args.retry.policy()),
    );
    let mut request = Request::new(&args.from, &args.to).task(&args.task);
    if let Some(id) = &args.id {
        request = request.id(id.clone());
    }
    let receipt = match dispatcher.delegate(request).await {
        Ok(receipt) => receipt,
        Err(e) => {
            let _ = dispatcher.shutdown().await;
            return Err(Failure::Unusable(format!(
                "cannot queue the delegation: {e}"
            )));
        }
    };
    let id = receipt.id.clone();
    if args.no_wait {
        // Whatever happens to stdout (a reader that went away), the delivery goes
        // on and its outcome is recorded before the process exits.
        let printed = print_receipt(&receipt, args.json);
        drop(receipt);
        let drained = dispatcher.shutdown().await;
        drained.map_err(|e| unrecorded(&id, &e))?;
        printed.map_err(|e| {
            Failure::Unusable(format!(
                "could not print the receipt ({e}); `{id}` went ahead and its outcome is recorded: see `status`"
            ))
        })?;
        return Ok((id, 1));
    }
    let settled = receipt.settled().await;
    let drained = dispatcher.shutdown().await;
    let settled = settled.map_err(|e| unrecorded(&id, &e))?;
    drained.map_err(|e| unrecorded(&id, &e))?;
    Ok((settled.id, settled.attempt))
}

fn unrecorded(id: &DelegationId, error: &dispatch::Error) -> Failure {
    Failure::Unusable(format!(
        "the outcome of `{id}` could not be recorded: {error}; it stays queued until `delegation-log recover` settles it"
    ))
}

/// Prints the receipt and flushes stdout, so a reader has it before delivery ends.
fn print_receipt(receipt: &Receipt, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(receipt)?;
        writeln!(out, "{text}")?;
    } else {
        writeln!(out, "id:              {}", printable(receipt.id.as_str()))?;
        writeln!(out, "status:          queued")?;
        writeln!(out, "queued_at:       {}", receipt.queued_at)?;
    }
    out.flush()
}

/// The delegation `id`, if the log holds it.
fn known(ledger: &Ledger, id: &DelegationId) -> Result<Option<Delegation>, Failure> {
    ledger
        .delegation(id)
        .map_err(|e| Failure::Unusable(format!("cannot read `{id}`: {e}")))
}

/// A second run with an id the log holds: nothing is sent; the delegation's status
/// is printed, and the exit code follows it. An id that names a different
/// delegation (another source, target or task) is a usage error.
fn again(args: &Args, existing: &Delegation) -> Done {
    let task = serde_json::Value::String(args.task.clone());
    let mut differs = Vec::new();
    if existing.source != args.from {
        differs.push(format!("from {}", existing.source));
    }
    if existing.target != args.to {
        differs.push(format!("to {}", existing.target));
    }
    if existing.task.as_ref() != Some(&task) {
        differs.push("with another task".to_owned());
    }
    if !differs.is_empty() {
        return Err(Failure::Unusable(format!(
            "the log already holds `{}` for another delegation ({}); nothing was sent",
            existing.id,
            differs.join(", ")
        )));
    }
    let mut status = existing.status();
    status.attempt = Some(existing.attempt);
    print_delegated(&status, args.retry.max_attempts, args.json)?;
    exit_by(&status, args.no_wait)
}

/// 0 delivered, 1 failed; still queued: 0 with `--no-wait`, else 1 with a note.
fn exit_by(status: &Status, no_wait: bool) -> Done {
    match status.status {
        StatusKind::Delivered => Ok(()),
        StatusKind::Failed => Err(Failure::Problems(String::new())),
        StatusKind::Queued if no_wait => Ok(()),
        StatusKind::Queued => Err(Failure::Problems(format!(
            "`{}` is still queued and no outcome is recorded; if the process that queued it is gone, `delegation-log recover` settles it",
            status.id
        ))),
        StatusKind::NotFound => Err(Failure::Unusable(format!(
            "`{}` is missing from the log",
            status.id
        ))),
    }
}

/// `--to`: an absolute http:// or https:// URL with a host.
fn endpoint(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is `{}`; an A2A endpoint is http:// or https://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    Ok(text.to_owned())
}

/// `--timeout`: a positive number of seconds.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("the deadline must be more than 0 seconds".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}
