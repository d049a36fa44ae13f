//! Guards `--metrics-addr` (features `cli` and `metrics`): during a demo run, the
//! Prometheus endpoint counts every recorded outcome by outcome and reason, shows
//! the deliveries still in flight as the queue depth, and has a latency sample per
//! outcome; and what it counted agrees with the log: `audit --json`'s counts, and
//! the reasons `status --json` gives for each delegation, once the run is over.
//!
//! The demo's slow targets answer after four delivery deadlines, so they are the
//! deliveries in flight while the scrape reads the others' outcomes.
#![cfg(all(feature = "cli", feature = "metrics"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::run;
use serde_json::Value;
use support::prometheus_samples;

/// Tasks in the demo: two rounds of its five targets, so two slow ones.
const TASKS: usize = 10;
const SLOW: usize = 2;

/// The body of `GET /metrics` on `addr`, or `None` while nothing listens.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The outcome counters, as `(outcome, reason)` to count.
fn outcomes(samples: &BTreeMap<String, f64>) -> BTreeMap<(String, String), u64> {
    let mut counted = BTreeMap::new();
    for (key, value) in samples {
        let Some(labels) = key.strip_prefix("delegation_outcomes_total{") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches(['"', '}']).to_owned())
                .unwrap_or_default()
        };
        counted.insert((label("outcome"), label("reason")), *value as u64);
    }
    counted
}

#[test]
fn the_scraped_counters_agree_with_the_audit_and_the_in_flight_are_the_queue_depth() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .args(["--metrics-addr", &addr, "demo", "--db"])
        .arg(&db)
        .args(["--tasks", &TASKS.to_string(), "--deadline-ms", "10000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Scrape until every delivery but the slow ones has its outcome counted
    // (the slow ones settle at the deadline, later than this).
    let until = Instant::now() + Duration::from_secs(9);
    let during = loop {
        if let Some(body) = scrape(&addr) {
            let samples = prometheus_samples(&body);
            let settled: u64 = outcomes(&samples).values().sum();
            if settled == (TASKS - SLOW) as u64 {
                break samples;
            }
        }
        assert!(
            Instant::now() < until,
            "the quick outcomes were never all counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = demo.wait().unwrap();
    let mut stderr = String::new();
    demo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");

    // In flight at the scrape: the slow ones, and only they.
    assert_eq!(during["delegation_queue_depth"], SLOW as f64, "{during:#?}");
    let counted = outcomes(&during);
    assert!(
        !counted.contains_key(&("failed".into(), "timeout".into())),
        "{counted:?}"
    );

    // The log, after the run: the audit's counts, and each delegation's reason.
    let db = db.to_str().unwrap();
    let (_, audit, _) = run(&["audit", db, "--json"]);
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit["verdict"], "clean", "{audit:#}");
    assert_eq!(audit["delegations"], TASKS, "{audit:#}");
    let mut by_reason: BTreeMap<(String, String), u64> = BTreeMap::new();
    for n in 1..=TASKS {
        let (_, status, _) = run(&["status", db, &format!("demo-{n:02}"), "--json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        let outcome = status["status"].as_str().unwrap().to_owned();
        let reason = status["reason"].as_str().unwrap_or_default().to_owned();
        *by_reason.entry((outcome, reason)).or_default() += 1;
    }
    let timeouts = by_reason.remove(&("failed".into(), "timeout".into()));
    assert_eq!(timeouts, Some(SLOW as u64), "{by_reason:?}");
    assert_eq!(counted, by_reason, "scraped vs the log");
    let delivered = counted
        .get(&("delivered".into(), String::new()))
        .copied()
        .unwrap_or(0);
    let failed: u64 = counted
        .iter()
        .filter(|((o, _), _)| o == "failed")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        delivered,
        audit["states"]["delivered"].as_u64().unwrap(),
        "{audit:#}"
    );
    assert_eq!(
        failed + SLOW as u64,
        audit["states"]["failed"].as_u64().unwrap(),
        "{audit:#}"
    );

    // One latency sample per counted outcome, in the histogram's buckets.
    for outcome in ["delivered", "failed"] {
        let count = during[&format!("delegation_delivery_seconds_count{{outcome=\"{outcome}\"}}")];
        let expected = counted
            .iter()
            .filter(|((o, _), _)| o == outcome)
            .map(|(_, n)| *n)
            .sum::<u64>();
        assert_eq!(count, expected as f64, "{outcome}: {during:#?}");
        let inf =
            format!("delegation_delivery_seconds_bucket{{outcome=\"{outcome}\",le=\"+Inf\"}}");
        assert_eq!(during[&inf], count, "{during:#?}");
    }
}
