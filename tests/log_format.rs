//! Guards `--log-format json` (features `cli` and `tracing`): a demo run prints one
//! JSON line per delegation that settles, in its `delegation` span, with the id,
//! target, attempt, outcome and reason; and each line agrees with what
//! `delegation-log status --json` reads from the same log afterwards. Stdout
//! carries none of it.
#![cfg(all(feature = "cli", feature = "tracing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use cli_support::run;
use serde_json::Value;

#[test]
fn every_settled_delegation_is_one_json_line_that_agrees_with_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let db = db.to_str().unwrap();
    let (code, stdout, stderr) = run(&["demo", "--db", db, "--tasks", "5", "--log-format", "json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("\"span\""),
        "logs must not reach stdout: {stdout}"
    );

    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .filter(|line: &Value| line["span"]["name"] == "delegation")
        .collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    for line in &lines {
        let span = &line["span"];
        let id = span["id"].as_str().unwrap();
        assert_eq!(span["attempt"], 1, "{line:#}");
        let (_, status, _) = run(&["status", db, id, "--json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(span["outcome"], status["status"], "{line:#} vs {status:#}");
        assert_eq!(span["target"], status["target"], "{line:#} vs {status:#}");
        match status["reason"].as_str() {
            Some(reason) => {
                assert_eq!(span["reason"], reason, "{line:#}");
                assert_eq!(line["fields"]["detail"], status["error_detail"], "{line:#}");
            }
            None => assert!(span.get("reason").is_none(), "{line:#}"),
        }
    }
}

#[test]
fn without_the_flag_nothing_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log");
    let (code, _, stderr) = run(&["demo", "--db", db.to_str().unwrap(), "--tasks", "3"]);
    assert_eq!(code, 0);
    assert!(
        !stderr.contains("delegation{") && !stderr.contains("\"span\""),
        "{stderr}"
    );
}
