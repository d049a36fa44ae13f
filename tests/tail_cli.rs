//! Guards `delegation-log tail` on sled. A store held by nobody is printed, one
//! escaped line per event (`<time> <id> seq <n> <event> …`, pinned by insta) or
//! one JSON object per line as `export` writes it, even with a stale socket file
//! there; a reader that closes stdout ends it without a panic. A store another
//! delegation-log process (`mcp`) holds is followed through the feed it serves:
//! `tail --json` prints every event once, in seq order per delegation, the same
//! lines byte for byte as `export` once the server has exited, and ends with
//! exit 0 when the server exits (closing the feed, or killed) or on SIGTERM. A
//! server replaces a stale socket and removes its own on exit. A store held by
//! a process that serves no feed is exit 2 naming the lock, within a second and
//! without a hang; a feed of another protocol version is exit 2 naming both.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::{mask, run};
use delegation_log::ledger::Options;
use delegation_log::{Durability, Event, FailureReason, Ledger, ManualClock};

/// A store of three delegations: delivered, failed with a detail that holds a
/// newline and an escape code, and still queued with a task.
fn written_store(dir: &std::path::Path) {
    let clock = ManualClock::at_unix_nanos(1_764_000_000_000_000_000);
    let ledger = Ledger::open_with(dir, Options::new().clock(clock.clone())).unwrap();
    let (a, b, c) = (
        "review-1".parse().unwrap(),
        "review-2".parse().unwrap(),
        "review-3".parse().unwrap(),
    );
    ledger
        .record(&a, Event::queued("planner", "http://127.0.0.1:8080/a2a"))
        .unwrap();
    clock.advance(Duration::from_millis(250));
    ledger
        .record(&a, Event::delivered(Some(200)).unwrap())
        .unwrap();
    ledger
        .record(&b, Event::queued("planner", "http://127.0.0.1:9/a2a"))
        .unwrap();
    clock.advance(Duration::from_millis(1));
    ledger
        .record(
            &b,
            Event::failed(
                FailureReason::TargetOffline,
                Some("refused\n\u{1b}[31mred".into()),
            )
            .unwrap(),
        )
        .unwrap();
    let mut queued = delegation_log::event::Queued::new("planner", "http://127.0.0.1:8080/a2a");
    queued.task = Some(serde_json::json!("summarize the diff"));
    ledger.record(&c, Event::Queued(queued)).unwrap();
}

#[test]
fn tail_prints_each_event_of_a_store_held_by_nobody_as_one_escaped_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    written_store(&db);
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    insta::assert_snapshot!("tail_lines", stdout);
    assert!(stderr.contains("tail ends here"), "{stderr}");
}

#[test]
fn tail_json_prints_each_record_as_export_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    written_store(&db);
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let out = dir.path().join("export.jsonl");
    let (code, _, stderr) = run(&[
        "export",
        db.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, std::fs::read_to_string(out).unwrap());
    insta::assert_snapshot!("tail_json", stdout);
}

#[test]
fn tail_on_a_sled_store_another_process_holds_exits_2_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let held = Ledger::open_with(&db, Options::new().durability(Durability::Buffered)).unwrap();
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.is_empty());
    insta::assert_snapshot!("tail_locked", mask(&stderr, &db));
    drop(held);
}

#[test]
fn tail_ends_without_a_panic_when_its_reader_closes_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    {
        let ledger =
            Ledger::open_with(&db, Options::new().durability(Durability::Buffered)).unwrap();
        // Well over a pipe's 64 KiB of lines.
        for n in 0..3000 {
            let id = format!("closing-{n:04}").parse().unwrap();
            ledger
                .record(&id, Event::queued("planner", "http://127.0.0.1:9/a2a"))
                .unwrap();
        }
        ledger.flush().unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .args(["tail", "--db", db.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// What a killed server leaves in `db`: a socket file nobody listens on.
#[cfg(unix)]
fn stale_socket(db: &std::path::Path) {
    drop(std::os::unix::net::UnixListener::bind(db.join("feed.sock")).unwrap());
}

#[cfg(unix)]
#[test]
fn a_stale_socket_file_does_not_mislead_tail_on_a_store_held_by_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    written_store(&db);
    stale_socket(&db);
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(stderr.contains("tail ends here"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn tail_refuses_a_feed_of_another_protocol_version_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let held = Ledger::open_with(&db, Options::new().durability(Durability::Buffered)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(db.join("feed.sock")).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::Write as _;
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .write_all(b"{\"feed\":\"delegation-log\",\"version\":99}\n")
            .unwrap();
        // Held open until tail has read the hello and gone.
        let _ = std::io::Read::read(&mut stream, &mut [0; 1]);
    });
    let (code, stdout, stderr) = run(&["tail", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.is_empty());
    insta::assert_snapshot!("tail_feed_version", mask(&stderr, &db));
    server.join().unwrap();
    drop(held);
}

/// `tail` following a sled store another process holds, through the feed that
/// process serves: here `delegation-log mcp`, driven by rmcp's client, and
/// `demo`.
#[cfg(all(unix, feature = "mcp"))]
mod following {
    use std::collections::{HashMap, HashSet};
    use std::io::Read as _;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rmcp::ServiceExt as _;
    use rmcp::model::CallToolRequestParams;
    use rmcp::service::{RoleClient, RunningService};
    use serde_json::{Value, json};

    use super::cli_support::{Agent, run};
    use super::stale_socket;
    use super::support::closed_port_url;

    type Mcp = RunningService<RoleClient, ()>;

    fn message_answer(request: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": request["id"], "result": {
            "kind": "message", "messageId": "m-1", "role": "agent", "contextId": "c-1",
            "parts": [{"kind": "text", "text": "on it"}]
        }})
    }

    /// `delegation-log mcp --db DB`, with rmcp's client on its stdio, once its
    /// feed socket is there.
    async fn mcp(db: &Path) -> (Mcp, tokio::process::Child) {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_delegation-log"))
            .arg("mcp")
            .arg("--db")
            .arg(db)
            .args(["--protocol", "0.3", "--timeout", "10"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let client = ().serve((stdout, stdin)).await.unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !db.join("feed.sock").exists() {
            assert!(Instant::now() < until, "mcp never served its feed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (client, child)
    }

    /// Delegates `id` to `target` and waits until it settled.
    async fn delegate(client: &Mcp, id: &str, target: &str) {
        let call = |tool: &'static str, arguments: Value| {
            let Value::Object(arguments) = arguments else {
                unreachable!()
            };
            client.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        };
        let receipt = call(
            "delegate_task_async",
            json!({"id": id, "target": target, "task": format!("task {id}")}),
        )
        .await
        .unwrap();
        assert_ne!(receipt.is_error, Some(true), "{receipt:#?}");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let status = call("check_task_status", json!({"id": id}))
                .await
                .unwrap()
                .structured_content
                .unwrap();
            if status["status"] != "queued" {
                return;
            }
            assert!(Instant::now() < until, "{id} never settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A `tail --db DB --json` process, its stdout gathered as it comes.
    struct Tail {
        child: Child,
        stdout: Arc<Mutex<String>>,
        reader: Option<std::thread::JoinHandle<()>>,
    }

    impl Tail {
        fn start(db: &Path) -> Self {
            let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
                .args(["tail", "--json", "--db"])
                .arg(db)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = child.stdout.take().unwrap();
            let stdout = Arc::new(Mutex::new(String::new()));
            let gathered = Arc::clone(&stdout);
            let reader = std::thread::spawn(move || {
                let mut chunk = [0; 4096];
                while let Ok(n) = out.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    gathered
                        .lock()
                        .unwrap()
                        .push_str(std::str::from_utf8(&chunk[..n]).unwrap());
                }
            });
            Tail {
                child,
                stdout,
                reader: Some(reader),
            }
        }

        fn lines(&self) -> usize {
            self.stdout.lock().unwrap().lines().count()
        }

        /// Waits until it printed `n` lines (within 20 s).
        fn printed(&self, n: usize) {
            let until = Instant::now() + Duration::from_secs(20);
            while self.lines() < n {
                assert!(
                    Instant::now() < until,
                    "tail printed {} lines, not {n}",
                    self.lines()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Waits for it to exit (within 20 s): its code, stdout and stderr.
        fn finish(mut self) -> (Option<i32>, String, String) {
            let until = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > until {
                    let _ = self.child.kill();
                    panic!("tail did not exit");
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            self.reader.take().unwrap().join().unwrap();
            let mut stderr = String::new();
            self.child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            let stdout = self.stdout.lock().unwrap().clone();
            (status.code(), stdout, stderr)
        }
    }

    /// What `export` writes of `db`, once nobody holds it.
    fn exported(db: &Path) -> String {
        let out = db.with_extension("jsonl");
        let (code, _, stderr) = run(&[
            "export",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        std::fs::read_to_string(out).unwrap()
    }

    /// Every line once, and per delegation in seq order from 1; then the same
    /// lines, byte for byte, as `export`.
    fn assert_each_event_once_as_export_has_it(tailed: &str, exported: &str) {
        let mut last: HashMap<String, u64> = HashMap::new();
        for line in tailed.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let id = record["delegation"].as_str().unwrap().to_owned();
            let seq = record["seq"].as_u64().unwrap();
            let before = last.insert(id.clone(), seq).unwrap_or(0);
            assert_eq!(before + 1, seq, "{id}: seq {seq} after {before}");
        }
        let mut tailed: Vec<&str> = tailed.lines().collect();
        let mut exported: Vec<&str> = exported.lines().collect();
        assert_eq!(
            tailed.iter().collect::<HashSet<_>>().len(),
            tailed.len(),
            "a line twice"
        );
        tailed.sort_unstable();
        exported.sort_unstable();
        assert_eq!(tailed, exported);
    }

    fn db_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("log")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tail_json_follows_a_store_mcp_holds_printing_each_event_once_as_export_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        let agent = Agent::answering(message_answer);
        let offline = closed_port_url();
        let (client, mut server) = mcp(&db).await;
        // Before tail: these come in its first read of the log.
        delegate(&client, "before-1", &agent.url()).await;
        delegate(&client, "before-2", &offline).await;
        let tail = Tail::start(&db);
        tail.printed(4);
        // After: these come on the live feed.
        for n in 0..6 {
            let target = if n % 2 == 0 {
                agent.url()
            } else {
                offline.clone()
            };
            delegate(&client, &format!("after-{n}"), &target).await;
        }
        tail.printed(16);
        client.cancel().await.unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(30), server.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success());
        assert!(
            !db.join("feed.sock").exists(),
            "the socket is removed on exit"
        );

        let (code, stdout, stderr) = tail.finish();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("closed its feed"), "{stderr}");
        assert_eq!(stdout.lines().count(), 16, "{stdout}");
        assert_each_event_once_as_export_has_it(&stdout, &exported(&db));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_socket_from_a_killed_server_is_replaced_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        std::fs::create_dir_all(&db).unwrap();
        stale_socket(&db);
        let agent = Agent::answering(message_answer);
        let (client, mut server) = mcp(&db).await;
        let tail = Tail::start(&db);
        delegate(&client, "fresh-1", &agent.url()).await;
        tail.printed(2);
        // Killed: the socket stays; tail sees the feed end without its end
        // line, and finishes from the log (nothing left to print here).
        server.kill().await.unwrap();
        let (code, stdout, stderr) = tail.finish();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("ended without its end line"), "{stderr}");
        assert!(stderr.contains("printed the 0 events"), "{stderr}");
        assert!(db.join("feed.sock").exists());
        drop(client);

        let (client, mut server) = mcp(&db).await;
        let tail = Tail::start(&db);
        tail.printed(2);
        delegate(&client, "fresh-2", &agent.url()).await;
        tail.printed(4);
        client.cancel().await.unwrap();
        assert!(server.wait().await.unwrap().success());
        let (code, stdout_2, stderr) = tail.finish();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout_2.starts_with(&stdout), "the first read is the log");
        assert_each_event_once_as_export_has_it(&stdout_2, &exported(&db));
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to `pid`.
    fn signal(pid: u32, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    #[test]
    fn a_stopped_tail_never_stalls_the_demo_and_once_resumed_prints_every_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        // 3000 tasks: 6000 records, more than the feed holds for a follower
        // (4096) and the socket buffers together.
        let mut demo = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
            .args(["demo", "--tasks", "3000", "--deadline-ms", "100", "--db"])
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while !db.join("feed.sock").exists() {
            assert!(Instant::now() < until, "demo never served its feed");
            std::thread::sleep(Duration::from_millis(5));
        }
        let tail = Tail::start(&db);
        tail.printed(1);
        signal(tail.child.id(), "STOP");
        let until = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if let Some(status) = demo.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                signal(tail.child.id(), "CONT");
                let _ = demo.kill();
                panic!("the demo stalled behind a stopped tail");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(finished.success());
        signal(tail.child.id(), "CONT");

        // The demo, ending, cut the stopped tail off; resumed, tail prints what
        // the socket held, then the rest from the log, now nobody holds it.
        let (code, stdout, stderr) = tail.finish();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("ended without its end line"), "{stderr}");
        assert!(stderr.contains("it had not sent, from the log"), "{stderr}");
        assert_eq!(stdout.lines().count(), 6000);
        assert_each_event_once_as_export_has_it(&stdout, &exported(&db));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_or_sigint_ends_tail_with_exit_0_and_leaves_the_server_serving() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        let agent = Agent::answering(message_answer);
        let (client, mut server) = mcp(&db).await;
        delegate(&client, "term-1", &agent.url()).await;
        let tail = Tail::start(&db);
        tail.printed(2);
        let killed = Command::new("kill")
            .args(["-TERM", &tail.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (code, _, stderr) = tail.finish();
        assert_eq!(code, Some(0), "{stderr}");
        // Ctrl-C ends a tail the same way.
        let interrupted = Tail::start(&db);
        interrupted.printed(2);
        let killed = Command::new("kill")
            .args(["-INT", &interrupted.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (code, _, stderr) = interrupted.finish();
        assert_eq!(code, Some(0), "{stderr}");
        // The server goes on, and another tail follows it to its end.
        delegate(&client, "term-2", &agent.url()).await;
        let again = Tail::start(&db);
        again.printed(4);
        client.cancel().await.unwrap();
        assert!(server.wait().await.unwrap().success());
        assert_eq!(again.finish().0, Some(0));
    }
}
