//! Throughput of 1, 2 and 4 dispatcher **processes** sharing one PostgreSQL
//! schema, against as many processes inserting the same rows by hand, in the
//! same run (issue 14; feature `postgres`, `DATABASE_URL` from `bash .ci/postgres`).
//!
//! For each N, two runs on fresh schemas of the same server:
//!
//! - **ledger**: N child processes, each a [`Dispatcher`] over
//!   [`Ledger::open_url`] (the store's own pool of connections, 2 by default, durable
//!   commits) with its own lease (the default 10 s), each delegating M tasks
//!   (`d<proc>-<n>`, task `"task <n>"`) to [`Immediate::accepting`]: an
//!   in-process target that accepts at once with 200. Not a loopback HTTP server:
//!   on two cores its JSON-RPC parsing and sockets would be charged to the ledger
//!   side alone, since the raw side has no delivery to make, and the HTTP path is
//!   already proven across processes by `tests/multi_dispatcher.rs`. Each child
//!   awaits every `delegate` (which returns once `queued` is durable; the
//!   delivery and its outcome run on, up to 64 at once), then `shutdown` (every
//!   outcome recorded, the lease ended), then exits. Per delegation the ledger
//!   makes two statements: `queued` with its claim (record, head, `open` hint
//!   and claim, one durable commit) and the outcome (record and head, the hint
//!   removed and the claim ended, one durable commit; see
//!   `src/store/postgres/`). No head is read: the ledger
//!   writes on the heads it wrote (`src/ledger/known.rs`).
//! - **raw**: N child processes, each one `postgres::Client` (one connection,
//!   `synchronous_commit = on`) inserting the very rows the ledger run wrote for
//!   its M delegations, copied from that run's schema into the same tables of a
//!   fresh one: per delegation one transaction of `INSERT` record 1 and
//!   `INSERT` head, committed, then one of `INSERT` record 2 and `UPDATE` head,
//!   committed (the equal-atomicity baseline of `benches/postgres.rs`, one
//!   durable commit per log record). The record bytes are exactly the ledger's;
//!   both head writes use the delegation's final head summary (the log does not
//!   keep the `queued` head, which is a few bytes shorter). No claim, no hint,
//!   no lease, no delivery: those are the ledger's cost.
//!
//! Each child opens its connections (and, for the ledger, takes its lease)
//! first, prints `ready`, and waits for a line on stdin; once all are ready the
//! parent writes `go` to each. The time runs from there to the last child's
//! exit, and throughput is N·M / time. After each ledger run the parent checks
//! that every delegation settled exactly once (`delivered`, two records, none
//! left `queued`), that no claim or lease is left, and that the library's audit
//! ([`Ledger::audit`]) is clean; after each raw run, that the raw schema holds
//! the same delegations and audits clean too (its rows are the ledger's bytes).
//!
//! Ratios (ledger ÷ raw throughput, above 1 means the ledger is faster) are
//! printed first, then the absolute figures of every round, then the load
//! average at the start and the end. `cargo bench --features postgres --bench
//! postgres_processes`; `PG_PROCESSES_TASKS` (M, default 2000) and
//! `PG_PROCESSES_ROUNDS` (default 3; the median is reported) change the size;
//! `PG_PROCESSES_CONNECTIONS` sets each ledger process's connections (the
//! URL's `connections=N`; the store's default otherwise).
//! `-- --test` runs N = 1 and 2 with M = 20 once, and still verifies. Without
//! `DATABASE_URL` it says how to start a server and measures nothing; under
//! `CI=true` that fails.
//!
//! A `harness = false` bench that re-spawns itself; a child's role comes from
//! `DELEGATION_LOG_PGPROC_ROLE` (`ledger` or `raw`).
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use delegation_log::dispatch::{Dispatcher, Options, Recovery, Request};
use delegation_log::lifecycle::State;
use delegation_log::transport::Immediate;
use delegation_log::{DelegationId, Ledger};

const ROLE: &str = "DELEGATION_LOG_PGPROC_ROLE";
/// The ledger child's URL (with `?schema=`); the raw child's plain server URL.
const URL: &str = "DELEGATION_LOG_PGPROC_URL";
/// The raw child's schema, and the ledger run's schema it copies its rows from.
const SCHEMA: &str = "DELEGATION_LOG_PGPROC_SCHEMA";
const SOURCE: &str = "DELEGATION_LOG_PGPROC_SOURCE";
/// The child's index, and how many tasks it delegates (M).
const PROC: &str = "DELEGATION_LOG_PGPROC_PROC";
const TASKS: &str = "DELEGATION_LOG_PGPROC_TASKS";

/// What every delegation names as its target (the transport ignores it).
const TARGET: &str = "http://127.0.0.1:8080/a2a";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("ledger") => ledger_child(),
        Ok("raw") => raw_child(),
        Ok(other) => panic!("unknown {ROLE} {other:?}"),
        Err(_) => parent(),
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a count: {e}"))
    })
}

/// Delegation `n` of process `proc`.
fn id(proc: u64, n: u64) -> DelegationId {
    format!("d{proc}-{n:08}").parse().unwrap()
}

/// Says `ready`, then blocks until the parent's `go`.
fn barrier() {
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go", "the parent said {line:?}");
}

/// One dispatcher process: see the module docs.
fn ledger_child() {
    let (url, proc, tasks) = (env(URL), env_u64(PROC).unwrap(), env_u64(TASKS).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dispatcher = runtime.block_on(async {
        let ledger = Ledger::open_url(&url).unwrap();
        let dispatcher = Dispatcher::with_options(ledger, Immediate::accepting(), Options::new());
        // Takes the lease (and opens a connection) before the barrier; the
        // schema is empty, so there is nothing to recover.
        let report = dispatcher.recover(Recovery::Interrupt).await;
        assert!(
            report.recovered.is_empty() && report.failed.is_empty(),
            "{report:?}"
        );
        dispatcher
    });
    barrier();
    let cpu = cpu_ticks(Path::new("/proc/self/stat")).unwrap();
    let stats = runtime.block_on(async {
        for n in 0..tasks {
            dispatcher
                .delegate(
                    Request::new("planner", TARGET)
                        .id(id(proc, n))
                        .task(&format!("task {n}")),
                )
                .await
                .unwrap();
        }
        dispatcher.shutdown().await.unwrap()
    });
    assert_eq!(
        (
            stats.queued,
            stats.delivered,
            stats.failed,
            stats.unrecorded
        ),
        (tasks, tasks, 0, 0),
        "{stats:?}"
    );
    let cpu = cpu_ticks(Path::new("/proc/self/stat")).unwrap() - cpu;
    println!("done {} {cpu}", stats.delivered);
}

/// One delegation's rows, as the ledger run wrote them.
struct Copied {
    /// The head's final summary.
    summary: Vec<u8>,
    /// Record 1's bytes (`queued`).
    queued: Vec<u8>,
    /// Record 2's bytes (the outcome).
    outcome: Vec<u8>,
}

/// One raw process: see the module docs.
fn raw_child() {
    let (url, schema, source) = (env(URL), env(SCHEMA), env(SOURCE));
    let (proc, tasks) = (env_u64(PROC).unwrap(), env_u64(TASKS).unwrap());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "SET search_path = {schema}; SET synchronous_commit = on;"
        ))
        .unwrap();
    // This process's delegations, as the ledger run wrote them.
    let prefix = format!("d{proc}-");
    let mut rows: BTreeMap<Vec<u8>, Copied> = BTreeMap::new();
    let select = format!(
        "SELECT h.delegation, h.summary, r1.bytes, r2.bytes FROM {source}.heads h \
         JOIN {source}.records r1 ON r1.delegation = h.delegation AND r1.seq = 1 \
         JOIN {source}.records r2 ON r2.delegation = h.delegation AND r2.seq = 2"
    );
    for row in client.query(&select, &[]).unwrap() {
        let key: Vec<u8> = row.get(0);
        if key.starts_with(prefix.as_bytes()) {
            let (summary, queued, outcome) = (row.get(1), row.get(2), row.get(3));
            rows.insert(
                key,
                Copied {
                    summary,
                    queued,
                    outcome,
                },
            );
        }
    }
    assert_eq!(rows.len() as u64, tasks, "{prefix}: rows of the ledger run");
    let insert_record = client
        .prepare("INSERT INTO records (delegation, seq, bytes) VALUES ($1, $2, $3)")
        .unwrap();
    let insert_head = client
        .prepare("INSERT INTO heads (delegation, seq, summary) VALUES ($1, 1, $2)")
        .unwrap();
    let update_head = client
        .prepare("UPDATE heads SET seq = 2, summary = $2 WHERE delegation = $1")
        .unwrap();
    barrier();
    let cpu = cpu_ticks(Path::new("/proc/self/stat")).unwrap();
    for (key, row) in &rows {
        let Copied {
            summary,
            queued,
            outcome,
        } = row;
        let mut tx = client.transaction().unwrap();
        tx.execute(&insert_record, &[key, &1i64, queued]).unwrap();
        tx.execute(&insert_head, &[key, summary]).unwrap();
        tx.commit().unwrap();
        let mut tx = client.transaction().unwrap();
        tx.execute(&insert_record, &[key, &2i64, outcome]).unwrap();
        assert_eq!(tx.execute(&update_head, &[key, summary]).unwrap(), 1);
        tx.commit().unwrap();
    }
    let cpu = cpu_ticks(Path::new("/proc/self/stat")).unwrap() - cpu;
    println!("done {} {cpu}", rows.len());
}

/// The CPU time a process has used, in clock ticks (`utime + stime` of
/// `/proc/<pid>/stat`), and, with `children`, that of its children it has
/// reaped (`cutime + cstime`). `None` if the process is gone.
fn cpu_ticks_of(stat: &Path, children: bool) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The fields after the command's `(...)`, which may hold spaces: state is
    // field 3, utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let own = field(14)? + field(15)?;
    Some(if children {
        own + field(16)? + field(17)?
    } else {
        own
    })
}

fn cpu_ticks(stat: &Path) -> Option<u64> {
    cpu_ticks_of(stat, false)
}

/// The CPU time of the whole local PostgreSQL server, in clock ticks: the
/// postmaster's own and its reaped backends', plus each live child's (the
/// checkpointer, the WAL writer, open backends). `None` when the server's
/// processes cannot be read (not on this machine).
fn server_ticks(postmaster: u32) -> Option<u64> {
    let mut total = cpu_ticks_of(Path::new(&format!("/proc/{postmaster}/stat")), true)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let stat = entry.path().join("stat");
        let Ok(text) = std::fs::read_to_string(&stat) else {
            continue;
        };
        let parent = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(postmaster) {
            total += cpu_ticks(&stat).unwrap_or(0);
        }
    }
    Some(total)
}

/// The postmaster's pid, from the first line of `postmaster.pid` in the
/// server's data directory (read while no backend of ours need stay alive: the
/// parent of a backend that exits as soon as its query is answered could not
/// always be read). `None` if the server is not on this machine.
fn postmaster(schema: &pg_support::Schema) -> Option<u32> {
    let rows = schema.query("SELECT current_setting('data_directory')");
    let data = rows.first()?.first()?.clone()?;
    let text = std::fs::read_to_string(Path::new(&data).join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`): 100 on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// What a run took: its wall time, the CPU its children used from `go` to
/// their end, and the server's CPU over the same span (`None` if unreadable).
#[derive(Clone, Copy, Debug)]
struct Took {
    wall: Duration,
    clients: u64,
    server: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ledger,
    Raw,
}

/// `processes` children of `kind`, behind the barrier: the wall time from `go`
/// to the last exit, and the CPU the children and the server (`postmaster`)
/// used meanwhile.
fn run(
    kind: Kind,
    processes: u64,
    tasks: u64,
    env: &[(&str, String)],
    postmaster: Option<u32>,
) -> Took {
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = (0..processes)
        .map(|proc| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .env(
                    ROLE,
                    match kind {
                        Kind::Ledger => "ledger",
                        Kind::Raw => "raw",
                    },
                )
                .env(PROC, proc.to_string())
                .env(TASKS, tasks.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            for (name, value) in env {
                command.env(name, value);
            }
            let mut child = command.spawn().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            (child, stdout)
        })
        .collect();
    for (child, stdout) in &mut children {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "a {kind:?} child did not start: {:?}",
            child.try_wait()
        );
    }
    let server_before = postmaster.and_then(server_ticks);
    let start = Instant::now();
    for (child, _) in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    for (child, _) in &mut children {
        assert!(child.wait().unwrap().success(), "a {kind:?} child failed");
    }
    let wall = start.elapsed();
    // The backends of the children's connections end once their clients are
    // gone; the postmaster then holds their CPU in its reaped children's.
    std::thread::sleep(Duration::from_millis(300));
    let server = postmaster
        .and_then(server_ticks)
        .zip(server_before)
        .map(|(after, before)| after.saturating_sub(before));
    let mut clients = 0;
    for (_, mut stdout) in children {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let (done, cpu) = rest
            .trim()
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{kind:?}: {rest:?}"));
        assert_eq!(done, format!("done {tasks}"), "{kind:?}");
        clients += cpu.parse::<u64>().unwrap();
    }
    Took {
        wall,
        clients,
        server,
    }
}

/// The ledger's checks after a run: every delegation settled exactly once,
/// nothing left claimed or leased, the audit clean.
fn verify_ledger(schema: &pg_support::Schema, delegations: u64) {
    let ledger = Ledger::with_store(schema.store.clone(), delegation_log::ledger::Options::new());
    assert!(
        ledger.queued().unwrap().is_empty(),
        "delegations left queued"
    );
    let mut settled = 0u64;
    for delegation in ledger.replay() {
        let delegation = delegation.unwrap();
        assert_eq!(delegation.state, State::Delivered, "{}", delegation.id);
        assert_eq!(
            delegation.seq, 2,
            "{}: queued and one outcome",
            delegation.id
        );
        settled += 1;
    }
    assert_eq!(settled, delegations, "delegations in the log");
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    assert_eq!(
        schema.query(
            "SELECT (SELECT count(*) FROM claims), (SELECT count(*) FROM dispatchers), \
             (SELECT count(*) FROM records)"
        ),
        vec![vec![
            Some("0".into()),
            Some("0".into()),
            Some((2 * delegations).to_string())
        ]],
        "claims, leases and records left"
    );
}

/// The raw run's checks: the same delegations, two records each, and the same
/// bytes (so the library's audit of the raw schema is clean too).
fn verify_raw(schema: &pg_support::Schema, delegations: u64) {
    assert_eq!(
        schema.query(
            "SELECT (SELECT count(*) FROM records), \
             (SELECT count(*) FROM heads WHERE seq = 2), (SELECT count(*) FROM heads)"
        ),
        vec![vec![
            Some((2 * delegations).to_string()),
            Some(delegations.to_string()),
            Some(delegations.to_string())
        ]],
        "the raw rows"
    );
    let ledger = Ledger::with_store(schema.store.clone(), delegation_log::ledger::Options::new());
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
}

/// One round for `processes`: the ledger run, then the raw run of its rows.
fn round(processes: u64, tasks: u64) -> (Took, Took) {
    let ledger_schema = pg_support::fresh(&format!("pgproc_ledger_{processes}")).unwrap();
    let sep = if ledger_schema.url.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut url = format!("{}{sep}schema={}", ledger_schema.url, ledger_schema.name);
    if let Ok(connections) = std::env::var("PG_PROCESSES_CONNECTIONS") {
        url.push_str(&format!("&connections={connections}"));
    }
    let postmaster = postmaster(&ledger_schema);
    let ledger = run(Kind::Ledger, processes, tasks, &[(URL, url)], postmaster);
    verify_ledger(&ledger_schema, processes * tasks);

    let raw_schema = pg_support::fresh(&format!("pgproc_raw_{processes}")).unwrap();
    let raw = run(
        Kind::Raw,
        processes,
        tasks,
        &[
            (URL, raw_schema.url.clone()),
            (SCHEMA, raw_schema.name.clone()),
            (SOURCE, ledger_schema.name.clone()),
        ],
        postmaster,
    );
    verify_raw(&raw_schema, processes * tasks);
    (ledger, raw)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn per_second(delegations: u64, time: Duration) -> f64 {
    delegations as f64 / time.as_secs_f64()
}

/// Milliseconds of CPU per delegation, summed over a kind's rounds.
fn cpu_ms(ticks: u64, delegations: u64) -> f64 {
    ticks as f64 / TICKS_PER_SECOND * 1000.0 / delegations as f64
}

fn parent() {
    if pg_support::url().is_none() {
        return;
    }
    let smoke = common::smoke();
    let (counts, tasks, rounds): (&[u64], u64, u64) = if smoke {
        (&[1, 2], 20, 1)
    } else {
        (
            &[1, 2, 4],
            env_u64("PG_PROCESSES_TASKS").unwrap_or(2000),
            env_u64("PG_PROCESSES_ROUNDS").unwrap_or(3).max(1),
        )
    };
    common::load_average("postgres_processes", "start");
    let started = Instant::now();
    let mut took: BTreeMap<(u64, Kind), Vec<Took>> = BTreeMap::new();
    for _ in 0..rounds {
        for &processes in counts {
            let (ledger, raw) = round(processes, tasks);
            took.entry((processes, Kind::Ledger))
                .or_default()
                .push(ledger);
            took.entry((processes, Kind::Raw)).or_default().push(raw);
        }
    }
    let total = started.elapsed();
    if smoke {
        println!(
            "postgres_processes: N = {counts:?}, M = {tasks}: every delegation settled \
             once, audits clean ({total:.1?})"
        );
        return;
    }
    let median_of = |processes: u64, kind: Kind| {
        median(took[&(processes, kind)].iter().map(|t| t.wall).collect())
    };
    println!(
        "postgres_processes: N processes x M = {tasks} delegations each, median of \
         {rounds} round(s); throughput = N*M / (barrier to last exit); connections per \
         ledger process: {}",
        std::env::var("PG_PROCESSES_CONNECTIONS").unwrap_or_else(|_| "the default".into())
    );
    println!("ratios, ledger / raw throughput (above 1: the ledger is faster):");
    for &processes in counts {
        let (ledger, raw) = (
            median_of(processes, Kind::Ledger),
            median_of(processes, Kind::Raw),
        );
        println!(
            "  N = {processes}: {:.2}x",
            raw.as_secs_f64() / ledger.as_secs_f64()
        );
    }
    println!("absolute (delegations/s, median; every round's time):");
    for &processes in counts {
        for kind in [Kind::Ledger, Kind::Raw] {
            let delegations = processes * tasks;
            let all = &took[&(processes, kind)];
            println!(
                "  N = {processes} {:<6} {:>8.0}/s  rounds: {}",
                format!("{kind:?}").to_lowercase(),
                per_second(delegations, median_of(processes, kind)),
                all.iter()
                    .map(|t| format!("{:.2?}", t.wall))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    // CPU per delegation does not move with the machine's other load the way
    // wall time does: it says where the two cores went.
    println!(
        "CPU per delegation, all rounds (ms; clients = the N processes, server = \
         every PostgreSQL process; cores-bound = 2 cores / (clients + server)):"
    );
    for &processes in counts {
        for kind in [Kind::Ledger, Kind::Raw] {
            let all = &took[&(processes, kind)];
            let delegations = processes * tasks * all.len() as u64;
            let clients = cpu_ms(all.iter().map(|t| t.clients).sum(), delegations);
            let server = all
                .iter()
                .map(|t| t.server)
                .sum::<Option<u64>>()
                .map(|ticks| cpu_ms(ticks, delegations));
            let (server, bound) = match server {
                Some(server) => (
                    format!("{server:.3}"),
                    format!("{:.0}/s", 2000.0 / (clients + server)),
                ),
                None => ("unreadable".to_owned(), "-".to_owned()),
            };
            println!(
                "  N = {processes} {:<6} clients {clients:.3}  server {server}  cores-bound {bound}",
                format!("{kind:?}").to_lowercase(),
            );
        }
    }
    println!("total {total:.1?}, verification included");
    common::load_average("postgres_processes", "end");
}
