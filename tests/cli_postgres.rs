//! Guards "the CLI takes a URL wherever it takes a directory": `demo`, `status`,
//! `history`, `audit`, `export`, `import`, `delegate` and `recover` given a
//! `postgres://…?schema=…` URL work on that schema as they do on a directory, and
//! what they wrote is in the database (checked with a client of its own). The
//! export of one schema, imported into another and exported again, is the same
//! bytes. `recover --lease` on a shared server takes over only what a dispatcher
//! whose lease ran out left, and leaves a live one's claims alone (how `recover`
//! reports a damaged delegation, on both stores, is `tests/recover_command.rs`). No command
//! ever prints a URL's password, in an error or in its output: a server that
//! cannot be reached, a URL that does not parse, and the demo's "log:" line
//! show `user:***@host`. Needs `DATABASE_URL` (`bash .ci/postgres`); under `CI=true` its absence
//! fails.
#![cfg(all(feature = "cli", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cli_support;
mod pg_support;

use cli_support::run;
use delegation_log::{Event, Ledger, StatusKind};

/// The URL of `schema`'s ledger on the test server.
fn url_of(schema: &pg_support::Schema) -> String {
    let sep = if schema.url.contains('?') { '&' } else { '?' };
    format!("{}{sep}schema={}", schema.url, schema.name)
}

#[test]
fn every_command_that_takes_a_directory_takes_a_postgres_url() {
    let (Some(first), Some(second)) = (pg_support::fresh("cli_a"), pg_support::fresh("cli_b"))
    else {
        return;
    };
    let url = url_of(&first);

    let (code, stdout, stderr) = run(&[
        "demo",
        "--db",
        &url,
        "--tasks",
        "5",
        "--deadline-ms",
        "1000",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("demo-05"), "{stdout}");

    let (code, stdout, _) = run(&["status", &url, "demo-01", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["status"], "delivered");
    let (code, stdout, _) = run(&["history", &url, "demo-01", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 2);
    let (code, stdout, _) = run(&["status", &url, "nope"]);
    assert_eq!(code, 1, "{stdout}");

    // A target where nothing listens: failed / target_offline, exit 1.
    let (code, stdout, stderr) = run(&[
        "delegate",
        "--db",
        &url,
        "--to",
        "http://127.0.0.1:9/a2a",
        "--id",
        "by-hand",
        "--json",
        "review this",
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["reason"], "target_offline");

    // Left queued by a process that died: recover settles it.
    let ledger = Ledger::with_store(first.store.clone(), Default::default());
    let left = "left-queued".parse().unwrap();
    ledger
        .record(&left, Event::queued("planner", "http://127.0.0.1:9/a2a"))
        .unwrap();
    let (code, stdout, stderr) = run(&["recover", &url]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(ledger.status(&left).unwrap().status, StatusKind::Failed);

    let (code, stdout, stderr) = run(&["audit", &url, "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let verdict: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdict["verdict"], "clean");
    // 5 demo delegations, the delegated one, the recovered one: two records each.
    assert_eq!(verdict["delegations"], 7);
    assert_eq!(
        first.query("SELECT count(*), count(DISTINCT delegation) FROM records"),
        vec![vec![Some("14".into()), Some("7".into())]]
    );

    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.jsonl"), dir.path().join("two.jsonl"));
    let (code, _, stderr) = run(&["export", &url, "--out", one.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let other = url_of(&second);
    let (code, _, stderr) = run(&["import", one.to_str().unwrap(), &other]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&["export", &other, "--out", two.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (one, two) = (std::fs::read(one).unwrap(), std::fs::read(two).unwrap());
    assert_eq!(one.iter().filter(|b| **b == b'\n').count(), 14);
    assert!(one == two, "the exports differ");
    assert_eq!(
        second.query("SELECT count(*) FROM records"),
        vec![vec![Some("14".into())]]
    );
}

#[test]
fn recover_on_a_shared_server_takes_over_only_what_expired_leases_left() {
    let Some(schema) = pg_support::fresh("cli_lease") else {
        return;
    };
    let url = url_of(&schema);
    let ledger = Ledger::with_store(schema.store.clone(), Default::default());
    let queue_under = |lease: &delegation_log::ledger::Lease, id: &str| {
        let id = id.parse().unwrap();
        let claim = ledger.claim_leased(&id, Some(lease)).unwrap();
        ledger
            .record(&id, Event::queued("planner", "http://127.0.0.1:9/a2a"))
            .unwrap();
        drop(claim);
    };
    // A live dispatcher elsewhere, and one whose lease runs out (ended on the
    // server once its delegation is queued, as if it had run out).
    let live = ledger
        .lease(std::time::Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let dead = ledger
        .lease(std::time::Duration::from_secs(60))
        .unwrap()
        .unwrap();
    queue_under(&live, "owned-by-live");
    queue_under(&dead, "owned-by-dead");
    schema.expire(dead.owner());
    assert_eq!(
        schema.query(&format!(
            "SELECT count(*) FROM dispatchers WHERE id = '\\x{}'::bytea AND lease_until <= now()",
            dead.owner()
        )),
        vec![vec![Some("1".into())]]
    );
    let (code, stdout, stderr) = run(&["recover", &url, "--lease", "2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("recovered 1 delegation(s)"), "{stdout}");
    assert!(stdout.contains("owned-by-dead"), "{stdout}");
    let status = |id: &str| ledger.status(&id.parse().unwrap()).unwrap().status;
    assert_eq!(status("owned-by-dead"), StatusKind::Failed);
    assert_eq!(status("owned-by-live"), StatusKind::Queued);
    // The live claim stands; recovery released what it took and ended its lease.
    assert_eq!(
        schema.query("SELECT convert_from(delegation, 'UTF8'), encode(owner, 'hex') FROM claims"),
        vec![vec![
            Some("owned-by-live".into()),
            Some(live.owner().to_string())
        ]]
    );
    assert_eq!(
        schema.query("SELECT count(*) FROM dispatchers WHERE lease_until > now()"),
        vec![vec![Some("1".into())]]
    );
    // A lease below the minimum is a usage error.
    let (code, _, stderr) = run(&["recover", &url, "--lease", "0.01"]);
    assert_eq!(code, 2, "{stderr}");
}

/// The password the redaction tests put in their URLs.
const SECRET: &str = "hunter2-secret";

fn assert_no_password(what: &str, code: i32, stdout: &str, stderr: &str) {
    assert!(!stdout.contains(SECRET), "{what}: {stdout}");
    assert!(!stderr.contains(SECRET), "{what}: {stderr}");
    assert!(!stdout.contains("hunter2"), "{what}: {stdout}");
    assert!(!stderr.contains("hunter2"), "{what}: {stderr}");
    assert_ne!(code, 0, "{what}: {stdout}{stderr}");
}

#[test]
fn no_command_prints_the_password_of_a_server_it_cannot_reach() {
    // Nothing listens on port 9; the second URL's port does not parse; the
    // third gives its password as a parameter, which the client reads too.
    for url in [
        format!("postgres://someone:{SECRET}@127.0.0.1:9/agents"),
        format!("postgresql://someone:{SECRET}@127.0.0.1:notaport/agents"),
        format!("postgres://someone@127.0.0.1:9/agents?password={SECRET}"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("export.jsonl");
        std::fs::write(&file, "").unwrap();
        let file = file.to_str().unwrap();
        let commands: Vec<Vec<&str>> = vec![
            vec!["status", &url, "d-1"],
            vec!["history", &url, "d-1"],
            vec!["recover", &url],
            vec!["audit", &url],
            vec!["export", &url, "--out", file],
            vec!["import", file, &url],
            vec![
                "delegate",
                "--db",
                &url,
                "--to",
                "http://127.0.0.1:9/a2a",
                "t",
            ],
            vec!["demo", "--db", &url, "--tasks", "1"],
            vec!["tail", "--db", &url],
        ];
        for command in commands {
            let (code, stdout, stderr) = run(&command);
            assert_no_password(&command.join(" "), code, &stdout, &stderr);
            let shown = stdout.clone() + &stderr;
            assert!(
                shown.contains("someone") || shown.contains("127.0.0.1"),
                "{command:?} names no server: {shown}"
            );
        }
    }
}

#[test]
fn the_demo_shows_its_log_url_without_the_password() {
    let Some(schema) = pg_support::fresh("cli_secret") else {
        return;
    };
    // The test server trusts 127.0.0.1, so a password in the URL is accepted
    // and ignored: the demo runs and prints where its log is.
    let url = url_of(&schema).replacen("://postgres@", &format!("://postgres:{SECRET}@"), 1);
    assert!(url.contains(SECRET), "{url}");
    let (code, stdout, stderr) = run(&[
        "demo",
        "--db",
        &url,
        "--tasks",
        "1",
        "--deadline-ms",
        "1000",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("log: postgres://postgres:***@"), "{stdout}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{stdout}{stderr}"
    );
}
