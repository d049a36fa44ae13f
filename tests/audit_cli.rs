//! Guards the audit commands of the `delegation-log` binary: exit statuses 0, 1
//! and 2 as the format page gives them, `--json` printing exactly the library's
//! verdict, no progress output when stderr is not a terminal, and `import` /
//! `export` round trips and refusals.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use audit_support::{delivered, failed, hashed, log, queued};

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn verify_exits_0_for_a_clean_log_and_prints_no_progress_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "log",
        &log(&[queued("a", 1), delivered("a", 2)]),
    );
    let output = run(&["verify", &file], None);
    assert_eq!(code(&output), 0);
    assert!(stdout(&output).starts_with("verdict: clean\n"));
    assert!(output.stderr.is_empty());
}

#[test]
fn verify_exits_1_for_violations_and_json_is_the_librarys_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let text = log(&[queued("a", 1), delivered("a", 2), failed("a", 3)]);
    let file = write(dir.path(), "log", &text);
    let output = run(&["verify", &file, "--json"], None);
    assert_eq!(code(&output), 1);
    let library = audit_support::verify(&text);
    assert_eq!(stdout(&output), format!("{}\n", library.to_json()));
    let plain = run(&["verify", &file], None);
    assert_eq!(code(&plain), 1);
    assert!(stdout(&plain).contains("line 3: a: illegal_transition:"));
}

#[test]
fn verify_reads_standard_input_for_a_dash() {
    let output = run(
        &["verify", "-"],
        Some(&log(&[queued("a", 1), queued("a", 1)])),
    );
    assert_eq!(code(&output), 1);
    assert!(stdout(&output).contains("line 2: a: sequence:"));
}

#[test]
fn verify_requires_hashes_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "log", &log(&[queued("a", 1)]));
    assert_eq!(code(&run(&["verify", &file], None)), 0);
    assert_eq!(code(&run(&["verify", &file, "--require-hashes"], None)), 1);
}

#[test]
fn verify_exits_2_when_the_input_cannot_be_read_or_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_eq!(code(&run(&["verify", missing.to_str().unwrap()], None)), 2);
    assert_eq!(
        code(&run(&["verify", dir.path().to_str().unwrap()], None)),
        2
    );
    let binary = write(dir.path(), "binary", "\u{0}\u{1}\u{2}\nzzz\n");
    let output = run(&["verify", &binary], None);
    assert_eq!(code(&output), 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a log"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&run(&["verify"], None)), 2);
    assert_eq!(code(&run(&["verify", "a", "--no-such-flag"], None)), 2);
    assert_eq!(code(&run(&["frobnicate"], None)), 2);
    assert_eq!(code(&run(&["--help"], None)), 0);
}

#[test]
fn import_then_export_gives_back_the_same_records_and_audit_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let lines = hashed(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    let file = write(dir.path(), "log", &log(&lines));
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let imported = run(&["import", &file, db], None);
    assert_eq!(
        code(&imported),
        0,
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let out = dir.path().join("out.jsonl");
    let exported = run(&["export", db, "--out", out.to_str().unwrap()], None);
    assert_eq!(code(&exported), 0);
    let first = run(&["export", db], None);
    assert_eq!(stdout(&first), std::fs::read_to_string(&out).unwrap());
    let again = dir.path().join("again");
    assert_eq!(
        code(&run(
            &["import", out.to_str().unwrap(), again.to_str().unwrap()],
            None
        )),
        0
    );
    assert_eq!(
        stdout(&run(&["export", again.to_str().unwrap()], None)),
        stdout(&first)
    );
    let audited = run(&["audit", db, "--json"], None);
    assert_eq!(code(&audited), 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&audited)).unwrap();
    assert_eq!(json["records"], 3);
    assert_eq!(json["pending"][0]["delegation"], "b");
}

#[test]
fn import_of_a_log_with_violations_exits_1_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "log", &log(&[queued("a", 1), queued("b", 3)]));
    let db = dir.path().join("db");
    let output = run(&["import", &file, db.to_str().unwrap(), "--json"], None);
    assert_eq!(code(&output), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["violations"][0]["line"], 2);
    let audited = run(&["audit", db.to_str().unwrap(), "--json"], None);
    let json: serde_json::Value = serde_json::from_str(&stdout(&audited)).unwrap();
    assert_eq!(json["records"], 0);
}

#[test]
fn import_refuses_delegations_already_stored_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "log", &log(&[queued("a", 1)]));
    let db = dir.path().join("db");
    assert_eq!(
        code(&run(&["import", &file, db.to_str().unwrap()], None)),
        0
    );
    assert_eq!(
        code(&run(&["import", &file, db.to_str().unwrap()], None)),
        1
    );
}

#[test]
fn audit_exits_2_for_a_store_it_cannot_open_and_for_a_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("conf"), b"\xff garbage").unwrap();
    std::fs::write(db.join("db"), vec![0x5au8; 8192]).unwrap();
    let output = run(&["audit", db.to_str().unwrap()], None);
    assert_eq!(
        code(&output),
        2,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let missing = dir.path().join("missing");
    assert_eq!(code(&run(&["audit", missing.to_str().unwrap()], None)), 2);
    assert!(!missing.exists());
    assert_eq!(code(&run(&["export", missing.to_str().unwrap()], None)), 2);
}

#[test]
fn audit_exits_1_for_a_damaged_store_and_export_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "log",
        &log(&[queued("a", 1), delivered("a", 2)]),
    );
    let db = dir.path().join("db");
    assert_eq!(
        code(&run(&["import", &file, db.to_str().unwrap()], None)),
        0
    );
    {
        let sled = support::raw_sled(&db);
        let records = audit_support::Keys {
            tree: sled.open_tree("delegations").unwrap(),
        };
        let id = "a".parse().unwrap();
        records
            .remove(delegation_log::store::key::record(&id, 2))
            .unwrap();
        sled.flush().unwrap();
    }
    let output = run(&["audit", db.to_str().unwrap()], None);
    assert_eq!(code(&output), 1);
    let text = stdout(&output);
    assert!(
        text.contains("delegation `a`: the head says seq 2, and the value holds 1 records"),
        "{text}"
    );
    assert_eq!(code(&run(&["export", db.to_str().unwrap()], None)), 1);
}
