//! `demo`: real loopback targets, a batch of delegations over HTTP, a live table of
//! outcomes as they settle, and an audit of the log that was written.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use delegation_log::audit::printable;
use delegation_log::dispatch::{Dispatcher, Options, Request, Retry, Settled};
use delegation_log::transport::Http;
use delegation_log::{DelegationId, Ledger, Outcome};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::{Failure, runtime};

/// The demo's targets, in the order tasks are dealt to them.
const TARGETS: [&str; 5] = ["healthy", "busy", "v1-only", "offline", "slow"];

pub(crate) fn run(
    db: Option<PathBuf>,
    tasks: usize,
    deadline: Duration,
    lease: Duration,
    retry: Retry,
) -> super::Done {
    let db = db.unwrap_or_else(fresh_dir);
    let ledger = super::open(&db)?;
    println!("log: {}", super::place::shown(&db));
    let runtime = runtime()?;
    let feed = super::feed::start(&runtime, &ledger, &db, "demo");
    let done = runtime.block_on(demo(ledger, tasks, deadline, lease, retry));
    runtime.block_on(feed.close());
    done
}

/// A new directory under the temp dir, unique to this run.
fn fresh_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "delegation-log-demo-{}-{nanos:x}",
        std::process::id()
    ))
}

async fn demo(
    ledger: Ledger,
    tasks: usize,
    deadline: Duration,
    lease: Duration,
    retry: Retry,
) -> super::Done {
    let urls = start_targets(deadline).await?;
    let transport =
        Http::new().map_err(|e| Failure::Unusable(format!("cannot start HTTP: {e}")))?;
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        transport,
        Options::new().deadline(deadline).lease(lease).retry(retry),
    );
    let prefix = free_prefix(&ledger)?;
    println!(
        "delegating {tasks} tasks over A2A 0.3 to {} loopback targets (healthy, busy: 503, v1-only: an agent that speaks A2A 1.0 only, offline: closed port, slow: beyond the {deadline:?} deadline)",
        TARGETS.len()
    );

    let mut names = BTreeMap::new();
    let mut settling = JoinSet::new();
    for n in 1..=tasks {
        let name = TARGETS
            .get((n - 1) % TARGETS.len())
            .copied()
            .unwrap_or("healthy");
        let url = urls.get(name).cloned().unwrap_or_default();
        let id = format!("{prefix}-{n:02}")
            .parse::<DelegationId>()
            .map_err(|e| Failure::Unusable(e.to_string()))?;
        let request = Request::new("demo-planner", url)
            .id(id.clone())
            .task(&format!("task {n}: summarize chapter {n}"));
        let receipt = match dispatcher.delegate(request).await {
            Ok(receipt) => receipt,
            Err(e) => {
                let _ = dispatcher.shutdown().await;
                return Err(Failure::Problems(format!("delegate {id}: {e}")));
            }
        };
        names.insert(id.clone(), name);
        // Keyed by the first attempt's id: with retries, the attempt that
        // settles is `<id>.r<n>`.
        settling.spawn(async move { (id, receipt.settled().await) });
    }

    let live = Live::new(tasks);
    live.line(&format!(
        "{:<10} {:<8} {:<9} {}",
        "id", "target", "status", "outcome"
    ));
    let mut settled = Vec::new();
    let mut problems = Vec::new();
    while let Some(joined) = settling.join_next().await {
        match joined {
            Ok((first, Ok(outcome))) => {
                let name = names.get(&first).copied().unwrap_or("?");
                live.line(&row(&outcome, name));
                settled.push((first, outcome));
            }
            Ok((_, Err(e))) => problems.push(e.to_string()),
            Err(e) => problems.push(format!("a settle task ended abnormally: {e}")),
        }
        live.inc();
    }
    live.finish();
    if let Err(e) = dispatcher.shutdown().await {
        problems.push(e.to_string());
    }

    println!();
    println!("final statuses, by id:");
    settled.sort_by(|a, b| a.0.cmp(&b.0));
    for (first, outcome) in &settled {
        let name = names.get(first).copied().unwrap_or("?");
        println!("{}", row(outcome, name));
    }

    println!();
    let settled: Vec<Settled> = settled.into_iter().map(|(_, outcome)| outcome).collect();
    let clean = audit(&ledger, &settled, &mut problems);
    for problem in &problems {
        println!("problem: {problem}");
    }
    if clean && problems.is_empty() {
        println!("verdict: clean");
        Ok(())
    } else {
        println!("verdict: problems");
        Err(Failure::Problems(String::new()))
    }
}

/// Audits the log that was written, three ways: the store from its own records
/// (checksums, chains, sequences, heads); its hashed export, verified as an outside
/// auditor would; and the replay against what was recorded live.
fn audit(ledger: &Ledger, live: &[Settled], problems: &mut Vec<String>) -> bool {
    let mut clean = true;
    match ledger.audit() {
        Ok(verdict) => {
            println!("audit of the store:");
            print!("{}", indent(&verdict.to_plain()));
            clean &= verdict.is_clean() && verdict.pending.is_empty();
        }
        Err(e) => {
            problems.push(format!("audit: {e}"));
            clean = false;
        }
    }
    let mut export = Vec::new();
    match ledger.export(&mut export) {
        Ok(exported) => match delegation_log::audit::verify(export.as_slice(), ledger.clock()) {
            Ok(verdict) => {
                println!(
                    "verify of its export ({} hashed records): {}",
                    exported.records,
                    if verdict.is_clean() {
                        "clean"
                    } else {
                        "violations"
                    }
                );
                clean &= verdict.is_clean();
            }
            Err(e) => {
                problems.push(format!("verify of the export: {e}"));
                clean = false;
            }
        },
        Err(e) => {
            problems.push(format!("export: {e}"));
            clean = false;
        }
    }
    let mut replayed = BTreeMap::new();
    for delegation in ledger.replay() {
        match delegation {
            Ok(delegation) => {
                replayed.insert(delegation.id.clone(), delegation);
            }
            Err(e) => problems.push(format!("replay: {e}")),
        }
    }
    let mut matching = 0;
    for settled in live {
        match replayed.get(&settled.id) {
            Some(d) if d.outcome.as_ref() == Some(&settled.outcome) && d.seq == settled.seq => {
                matching += 1;
            }
            Some(_) => problems.push(format!(
                "`{}`: replay disagrees with the live outcome",
                settled.id
            )),
            None => problems.push(format!("`{}` is missing from the replay", settled.id)),
        }
    }
    println!(
        "replay: {matching} of {} live outcomes rebuilt exactly from the log",
        live.len()
    );
    clean && matching == live.len()
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn row(settled: &Settled, target: &str) -> String {
    let status = match settled.outcome {
        Outcome::Delivered { .. } => "delivered",
        Outcome::Failed(_) => "failed",
    };
    format!(
        "{:<10} {target:<8} {status:<9} {}",
        printable(settled.id.as_str()),
        printable(&describe(&settled.outcome))
    )
}

/// An outcome in a few words: `http 200, task t-1 submitted`, `http_status 503: …`.
pub(crate) fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered {
            http_status,
            remote,
        } => {
            let mut words = match http_status {
                Some(code) => format!("http {code}"),
                None => "delivered".to_owned(),
            };
            if let Some(remote) = remote {
                match (&remote.task_id, &remote.state) {
                    (Some(task), Some(state)) => words.push_str(&format!(", task {task} {state}")),
                    (Some(task), None) => words.push_str(&format!(", task {task}")),
                    _ => words.push_str(", answered with a message"),
                }
            }
            words
        }
        Outcome::Failed(failed) => match &failed.detail {
            Some(detail) => format!("{}: {detail}", failed.reason),
            None => failed.reason.to_string(),
        },
    }
}

/// The first `demo`, `demo2`, … whose first id the log has not seen.
fn free_prefix(ledger: &Ledger) -> Result<String, Failure> {
    for n in 1u32.. {
        let prefix = if n == 1 {
            "demo".to_owned()
        } else {
            format!("demo{n}")
        };
        let first = format!("{prefix}-01")
            .parse::<DelegationId>()
            .map_err(|e| Failure::Unusable(e.to_string()))?;
        let known = ledger
            .delegation(&first)
            .map_err(|e| Failure::Unusable(format!("cannot read the log: {e}")))?;
        if known.is_none() {
            return Ok(prefix);
        }
    }
    Err(Failure::Unusable("no free id prefix".to_owned()))
}

/// Starts the four targets and returns their URLs by name.
async fn start_targets(deadline: Duration) -> Result<BTreeMap<&'static str, String>, Failure> {
    let slow_for = deadline.saturating_mul(4);
    let healthy = Router::new().route(
        "/a2a",
        post(
            |axum::Json(request): axum::Json<serde_json::Value>| async move {
                let id = request.get("id").cloned().unwrap_or_default();
                // An A2A 0.3 agent that takes the task and opens a task for it.
                axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {
                    "kind": "task", "id": format!("task-of-{}", id.as_str().unwrap_or("?")),
                    "contextId": "demo", "status": {"state": "submitted"}
                }}))
            },
        ),
    );
    let v1_only = Router::new().route(
        "/a2a",
        post(
            |axum::Json(request): axum::Json<serde_json::Value>| async move {
                // An agent that speaks A2A 1.0 only, as the official Python SDK serves
                // it: a 0.3 `message/send` is answered 200 with a JSON-RPC error.
                let id = request.get("id").cloned().unwrap_or_default();
                let answer =
                    if request.get("method").and_then(|m| m.as_str()) == Some("SendMessage") {
                        serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"message": {
                            "messageId": "reply", "role": "ROLE_AGENT", "parts": [{"text": "on it"}]
                        }}})
                    } else {
                        serde_json::json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "Method not found"}})
                    };
                axum::Json(answer)
            },
        ),
    );
    let busy = Router::new().route(
        "/a2a",
        post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "proxy busy") }),
    );
    let slow = Router::new().route(
        "/a2a",
        post(move || async move {
            tokio::time::sleep(slow_for).await;
            StatusCode::OK
        }),
    );
    let mut urls = BTreeMap::new();
    urls.insert("healthy", url(serve(healthy).await?));
    urls.insert("busy", url(serve(busy).await?));
    urls.insert("v1-only", url(serve(v1_only).await?));
    urls.insert("offline", url(closed_port()?));
    urls.insert("slow", url(serve(slow).await?));
    Ok(urls)
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/a2a")
}

async fn serve(app: Router) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::Unusable(format!("cannot listen on loopback: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Unusable(format!("cannot listen on loopback: {e}")))?;
    // The demo's own targets live as long as the runtime; they end with it.
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A loopback port nothing listens on: bound, then released.
fn closed_port() -> Result<SocketAddr, Failure> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failure::Unusable(format!("cannot listen on loopback: {e}")))?;
    listener
        .local_addr()
        .map_err(|e| Failure::Unusable(format!("cannot listen on loopback: {e}")))
}

/// Lines as outcomes settle; on a terminal, with a progress bar under them.
struct Live {
    bar: Option<ProgressBar>,
}

impl Live {
    fn new(total: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} settled") {
                bar.set_style(style);
            }
            bar
        });
        Live { bar }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
