//! Guards the read-only commands against wrong paths (hardening review, defect
//! 8): `status`, `history`, `audit`, `export`, `recover`, `pending` and `dead` on a directory that is
//! not a store, or on a missing path, exit 2 with a message that names the path,
//! and leave the path exactly as it was: a command that reads never creates a
//! store. Before the fix, `audit` of a directory holding only `notes.txt` said
//! `verdict: clean`, exit 0, and left `blobs/`, `conf` and `db` behind.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;

use std::path::Path;

use cli_support::run;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_only_commands(db: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["status", db, "d-1"],
        vec!["status", db, "d-1", "--json"],
        vec!["history", db, "d-1"],
        vec!["audit", db],
        vec!["audit", db, "--json"],
        vec!["export", db],
        vec!["recover", db],
        vec!["pending", "--db", db],
        vec!["pending", "--db", db, "--json"],
        vec!["dead", "--db", db],
        vec!["dead", "--db", db, "--json"],
    ]
}

#[test]
fn read_only_commands_on_a_foreign_directory_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a store").unwrap();
    let db = dir.path().to_str().unwrap();
    for args in read_only_commands(db) {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(db),
            "{args:?} does not name the path: {stderr}"
        );
        assert!(!stdout.contains("clean"), "{args:?}: {stdout}");
        assert_eq!(entries(dir.path()), ["notes.txt"], "{args:?} wrote there");
    }
}

#[test]
fn read_only_commands_on_a_missing_path_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-log");
    let db = missing.to_str().unwrap();
    for args in read_only_commands(db) {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(db),
            "{args:?} does not name the path: {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created {db}");
    }
}
