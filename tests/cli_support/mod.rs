//! Helpers shared by the command-line tests: running the binary, masking what
//! changes between runs (times, ports, paths), and loopback A2A agents that count
//! the requests they get.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use serde_json::Value;
use tokio::sync::{Semaphore, oneshot};

/// Runs the binary; returns its exit code, stdout and stderr.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Masks `127.0.0.1:<port>`, RFC 3339 UTC times, and `path`.
pub fn mask(text: &str, path: &Path) -> String {
    let text = text.replace(path.to_str().unwrap(), "[db]");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("127.0.0.1:") {
        let (before, after) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(before);
        out.push_str("[port]");
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    mask_times(&out)
}

/// Replaces every `YYYY-MM-DDTHH:MM:SS[.fff…]Z` with `[time]`.
pub fn mask_times(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let looks_like_time = i + 20 <= chars.len()
            && chars[i..i + 4].iter().all(char::is_ascii_digit)
            && chars[i + 4] == '-'
            && chars[i + 10] == 'T'
            && chars[i + 13] == ':';
        if looks_like_time {
            let mut end = i + 19;
            while end < chars.len() && (chars[end] == '.' || chars[end].is_ascii_digit()) {
                end += 1;
            }
            if end < chars.len() && chars[end] == 'Z' {
                out.push_str("[time]");
                i = end + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// A loopback agent on its own thread and runtime, so that tests can run the
/// binary with blocking calls while it answers. It stops when dropped.
pub struct Agent {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    methods: Arc<std::sync::Mutex<Vec<String>>>,
    gate: Option<Arc<Semaphore>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    /// An agent that answers every JSON-RPC request with `answer(request)` at once.
    pub fn answering(answer: fn(&Value) -> Value) -> Self {
        Self::start(answer, None)
    }

    /// Like [`Agent::answering`], but each answer waits for [`Agent::release`].
    pub fn held(answer: fn(&Value) -> Value) -> Self {
        Self::start(answer, Some(Arc::new(Semaphore::new(0))))
    }

    fn start(answer: fn(&Value) -> Value, gate: Option<Arc<Semaphore>>) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let methods = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counted, seen, held) = (Arc::clone(&requests), Arc::clone(&methods), gate.clone());
        let app = Router::new().route(
            "/a2a",
            post(move |axum::Json(request): axum::Json<Value>| {
                let (counted, seen, held) = (Arc::clone(&counted), Arc::clone(&seen), held.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let method = request["method"].as_str().unwrap_or("?").to_owned();
                    seen.lock().unwrap().push(method);
                    if let Some(gate) = held
                        && let Ok(permit) = gate.acquire().await
                    {
                        permit.forget();
                    }
                    axum::Json(answer(&request))
                }
            }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Agent {
            addr,
            requests,
            methods,
            gate,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its A2A endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/a2a", self.addr)
    }

    /// How many requests it has received.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The JSON-RPC methods of the requests it received, in order.
    pub fn methods(&self) -> Vec<String> {
        self.methods.lock().unwrap().clone()
    }

    /// Lets one held answer go.
    pub fn release(&self) {
        self.gate.as_ref().unwrap().add_permits(1);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(gate) = &self.gate {
            gate.close();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
