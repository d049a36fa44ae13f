//! Guards `migrate`: a store of format 1, 2 or 3 opens and reads (format 1's
//! records upcast) but refuses writes until migrated; migration rewrites it in
//! place to format 4 (from format 3 it only builds the index), keeping
//! every record (the export is byte for byte the same before and after) and
//! giving every delegation a head that answers `status` alone; a damaged store
//! is not migrated at all; and a migration killed with SIGKILL at any moment
//! leaves the store either as it was or migrated, never in between, and running
//! it again finishes the job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use audit_support::{copy_dir, downgrade_to_v1, downgrade_to_v2, downgrade_to_v3, raw_v1};
use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::store::key;
use delegation_log::{Error, Event, FailureReason, Ledger, ManualClock, StatusKind};
use support::id;

/// A store of `n` delegations in format 4: delivered, failed, pending and
/// retried ones, with tasks; returns its export.
fn build(path: &Path, n: usize) -> Vec<u8> {
    let ledger = Ledger::open_with(path, Options::new().clock(ManualClock::default())).unwrap();
    for i in 0..n {
        let name = id(&format!("d-{i:05}"));
        let queued = Queued {
            task: Some(serde_json::json!({"text": format!("task {i}"), "n": i})),
            ..Queued::new("planner", "http://127.0.0.1:9/a2a")
        };
        ledger.record(&name, Event::Queued(queued)).unwrap();
        match i % 4 {
            0 => {
                ledger
                    .record(&name, Event::delivered(Some(200)).unwrap())
                    .unwrap();
            }
            1 => {
                let failed = Event::failed(FailureReason::HttpStatus(503), Some("busy".into()));
                ledger.record(&name, failed.unwrap()).unwrap();
            }
            2 => {
                let failed = Failed {
                    reason: FailureReason::Interrupted,
                    detail: None,
                };
                let retry = id(&format!("d-{i:05}.r1"));
                ledger
                    .retry(&name, failed, &retry, Queued::new("planner", "t"))
                    .unwrap();
            }
            _ => {}
        }
    }
    export(&ledger)
}

fn export(ledger: &Ledger) -> Vec<u8> {
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    out
}

/// The store format of the closed store at `path`.
fn store_format(path: &Path) -> u8 {
    delegation_log::store::Sled::open_existing(path)
        .unwrap()
        .store_format()
}

/// Rewrites the closed format 4 store at `path` in `format`.
fn downgrade(path: &Path, format: u8) {
    match format {
        1 => downgrade_to_v1(path),
        2 => downgrade_to_v2(path),
        3 => downgrade_to_v3(path),
        _ => {}
    }
}

/// Checks a store that must hold exactly the export `expected`, in any format;
/// returns its store format.
fn check(path: &Path, expected: &[u8]) -> u8 {
    let format = store_format(path);
    let ledger = Ledger::open_existing(path).unwrap();
    assert_eq!(
        export(&ledger),
        expected,
        "format {format}: the records changed"
    );
    let verdict = ledger.audit().unwrap();
    assert!(
        verdict.is_clean(),
        "format {format}: {}",
        verdict.to_plain()
    );
    for delegation in ledger.replay() {
        let delegation = delegation.unwrap();
        assert_eq!(ledger.status(&delegation.id).unwrap(), delegation.status());
    }
    format
}

#[test]
fn a_format_1_2_or_3_store_reads_refuses_writes_and_migrates_to_the_same_records() {
    for format in [1u8, 2, 3] {
        an_older_store_reads_refuses_writes_and_migrates_to_the_same_records(format);
    }
}

fn an_older_store_reads_refuses_writes_and_migrates_to_the_same_records(format: u8) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let expected = build(&path, 40);
    downgrade(&path, format);
    assert_eq!(check(&path, &expected), format);

    let ledger = Ledger::open(&path).unwrap();
    let pending = id("d-00003");
    assert_eq!(ledger.status(&pending).unwrap().status, StatusKind::Queued);
    let refused = ledger.record(&pending, Event::delivered(None).unwrap());
    assert!(
        matches!(refused, Err(Error::NeedsMigration { found, .. }) if found == format),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("delegation-log migrate")
    );
    // Refused, not failed: the ledger still serves.
    assert_eq!(ledger.status(&pending).unwrap().status, StatusKind::Queued);
    drop(ledger);

    let migration = delegation_log::migrate(&path).unwrap();
    assert_eq!((migration.delegations, migration.records), (50, 80));
    assert!(!migration.already_current);
    assert_eq!(check(&path, &expected), 4);

    let ledger = Ledger::open(&path).unwrap();
    ledger
        .record(&pending, Event::delivered(None).unwrap())
        .unwrap();
    assert_eq!(
        ledger.status(&pending).unwrap().status,
        StatusKind::Delivered
    );
    drop(ledger);
    assert!(delegation_log::migrate(&path).unwrap().already_current);
}

#[test]
fn a_damaged_format_1_store_is_not_migrated_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    build(&path, 8);
    downgrade_to_v1(&path);
    raw_v1(&path, |records, _| {
        let key = key::record(&id("d-00004"), 2);
        let mut bytes = records.get(&key).unwrap().unwrap().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        records.insert(key, bytes).unwrap();
    });
    let before = std::fs::read(path.join("db")).unwrap().len();
    match delegation_log::migrate(&path) {
        Err(Error::Corrupt { key, .. }) => assert!(key.contains("d-00004"), "{key}"),
        other => panic!("migrated a damaged store: {other:?}"),
    }
    let ledger = Ledger::open_existing(&path).unwrap();
    assert_eq!(ledger.store().format(), 1);
    assert!(ledger.status(&id("d-00000")).is_ok());
    assert!(before > 0);
}

#[test]
fn a_damaged_format_2_store_is_not_migrated_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    build(&path, 8);
    downgrade_to_v2(&path);
    audit_support::raw_v2(&path, |log, _| {
        let key = key::record(&id("d-00004"), 2);
        let mut bytes = log.get(&key).unwrap().unwrap().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        log.insert(key, bytes).unwrap();
    });
    match delegation_log::migrate(&path) {
        Err(Error::Corrupt { key, .. }) => assert!(key.contains("d-00004"), "{key}"),
        other => panic!("migrated a damaged store: {other:?}"),
    }
    assert_eq!(store_format(&path), 2);
    let ledger = Ledger::open_existing(&path).unwrap();
    assert!(ledger.status(&id("d-00000")).is_ok());
    drop(ledger);
    let db = support::raw_sled(&path);
    assert!(
        !db.tree_names()
            .iter()
            .any(|name| name.as_ref() == b"delegations"),
        "a refused migration left its partial tree"
    );
}

#[test]
fn the_migrate_command_reports_and_exits_by_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    build(&path, 4);
    downgrade_to_v1(&path);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_delegation-log"))
            .arg("migrate")
            .arg(&path)
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let text = String::from_utf8(first.stdout).unwrap();
    assert!(text.contains("migrated 5 delegations, 8 records"), "{text}");
    let second = run();
    assert_eq!(second.status.code(), Some(0));
    assert!(
        String::from_utf8(second.stdout)
            .unwrap()
            .contains("already")
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .arg("migrate")
        .arg(dir.path().join("nothing here"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(!dir.path().join("nothing here").exists());
}

/// SIGKILLs `delegation-log migrate` at spread moments of its run, the later half
/// of them near its end, where the format marker switches and the old trees drop;
/// from format 1, from format 2 and from format 3.
#[test]
fn a_migration_killed_at_any_moment_leaves_the_store_as_it_was_or_migrated() {
    for format in [1u8, 2, 3] {
        a_migration_from_killed_at_any_moment(format);
    }
}

fn a_migration_from_killed_at_any_moment(from: u8) {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("old");
    let expected = build(&original, 1000);
    downgrade(&original, from);

    // How long one whole migration takes, to spread the kills over it.
    let timed = dir.path().join("timed");
    copy_dir(&original, &timed);
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
        .arg("migrate")
        .arg(&timed)
        .status()
        .unwrap();
    assert!(status.success());
    let whole = started.elapsed();

    let kills = 8u32;
    let mut seen = [0u32; 5];
    for kill in 0..kills {
        let path = dir.path().join(format!("kill-{kill}"));
        copy_dir(&original, &path);
        let mut child = Command::new(env!("CARGO_BIN_EXE_delegation-log"))
            .arg("migrate")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(
            whole.mul_f64(0.2 + 1.1 * f64::from(kill) / f64::from(kills))
                + Duration::from_millis(5),
        );
        let _ = child.kill();
        child.wait().unwrap();
        let format = check(&path, &expected);
        assert!(format == from || format == 4, "{format}");
        seen[usize::from(format)] += 1;
        delegation_log::migrate(&path).unwrap();
        assert_eq!(check(&path, &expected), 4);
        std::fs::remove_dir_all(&path).unwrap();
    }
    println!(
        "{kills} kills over a {whole:?} migration from format {from}: {} left format \
         {from}, {} format 4",
        seen[usize::from(from)],
        seen[4]
    );
}

/// Found by review of ledger v2: a store of format 1 whose format marker was lost
/// to damage was taken for a new store, marked 2, and its records dropped, by any
/// open, even a read-only audit's. A store that lost its marker is read as the
/// format its trees show, and nothing is written or dropped.
#[test]
fn a_store_that_lost_its_format_marker_is_read_as_its_trees_show_and_never_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let expected = build(&path, 12);
    downgrade_to_v1(&path);
    for format in [1u8, 4] {
        if format == 4 {
            delegation_log::migrate(&path).unwrap();
        }
        {
            let db = support::raw_sled(&path);
            db.open_tree("meta").unwrap().remove("format").unwrap();
            db.flush().unwrap();
        }
        let verdict = delegation_log::audit::audit_path(&path, &audit_support::clock()).unwrap();
        assert_eq!(
            verdict.records,
            24,
            "format {format}: {}",
            verdict.to_plain()
        );
        assert_eq!(check(&path, &expected), format);
        let db = support::raw_sled(&path);
        assert!(
            db.open_tree("meta")
                .unwrap()
                .get("format")
                .unwrap()
                .is_none()
        );
    }
}

/// The moment after the marker switch and before the old trees are dropped,
/// made by hand: the marker says 4, the new tree is whole, and the old format's
/// trees are still there, from format 1 and from format 2. An open finishes the job (drops them) and reads the same
/// records; nothing of the old trees is ever read.
#[test]
fn a_migration_stopped_after_its_marker_switch_is_finished_by_the_next_open() {
    for format in [1u8, 2] {
        a_migration_from_stopped_after_its_marker_switch(format);
    }
}

fn a_migration_from_stopped_after_its_marker_switch(from: u8) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let expected = build(&path, 10);
    downgrade(&path, from);
    let old = dir.path().join("old");
    copy_dir(&path, &old);
    delegation_log::migrate(&path).unwrap();
    {
        // Put the old trees back beside the migrated tree, as a process
        // killed between the switch and the drop leaves them.
        let source_db = support::raw_sled(&old);
        let into = support::raw_sled(&path);
        let names: &[&str] = if from == 1 {
            &["records", "heads"]
        } else {
            &["log"]
        };
        for name in names {
            let (source, target) = (
                source_db.open_tree(name).unwrap(),
                into.open_tree(name).unwrap(),
            );
            for item in source.iter() {
                let (key, value) = item.unwrap();
                target.insert(key, value).unwrap();
            }
        }
        into.flush().unwrap();
    }
    assert_eq!(check(&path, &expected), 4);
    let db = support::raw_sled(&path);
    let names: Vec<_> = db.tree_names();
    for old in ["records", "heads", "log"] {
        assert!(!names.iter().any(|name| name.as_ref() == old.as_bytes()));
    }
}
