//! Guards what only the PostgreSQL store does, beside the contract that
//! `store_conformance.rs` runs on every store: appends are rows the database
//! holds (checked with a client of its own); damage made behind the store's back
//! (a record slot taken without its head, a head whose record is gone) is
//! `Damaged` and writes nothing of the group; the schema carries a version row and
//! a newer one is refused (version 1 is raised to 3, gaining leases, claims and
//! hints; version 2 gains its index, filled from its heads); bad names and URLs are typed errors, and a
//! URL's `connections=N` is how many backends the store keeps; the scan pages
//! through more delegations than a page, in sled's key order, and sees records
//! without heads and heads without records; the store works inside a tokio
//! runtime (where the blocking client alone would panic); and when the server goes
//! away, calls fail with typed errors, then work again once it is back, without a
//! failed call after a restart. A write blocked by a lock another session holds
//! ends at the statement timeout as a typed error (SQLSTATE `57014`), not a
//! hang; it wrote nothing, and the ledger that made it goes on. Needs `DATABASE_URL` (`bash .ci/postgres`); under
//! `CI=true` its absence fails.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delegation_log::ledger::Options;
use delegation_log::store::{
    Append, AppendError, Connect, DEFAULT_CONNECTIONS, Expect, Head, MAX_CONNECTIONS, Postgres,
    PostgresError, Store,
};
use delegation_log::{DelegationId, Error, Event, Ledger, ReadError, StatusKind, StorageError};
use support::id;

fn one(
    store: &dyn Store,
    id: &DelegationId,
    expect: Expect,
    record: &[u8],
) -> Result<(), AppendError> {
    let head = format!("head {}", expect.next()).into_bytes();
    store.append(&[Append {
        id,
        expect,
        record,
        head: &head,
    }])
}

/// `bytes` as PostgreSQL prints a `bytea`.
fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("\\x{digits}")
}

/// The delegations `store`'s index hints open, as one string.
fn open_hints(store: &Postgres) -> Vec<String> {
    use delegation_log::store::Index as _;
    store
        .hinted(delegation_log::store::index::Set::Open)
        .map(|id| id.unwrap().to_string())
        .collect()
}

/// PostgreSQL writes an append's hints in the append's own statement: they
/// change exactly when the append is written, and not at all when it is
/// refused (a lost race, a taken record slot) or when any append of its group
/// is (the group is rolled back whole).
#[test]
fn hints_written_with_an_append_change_only_when_it_is_written() {
    use delegation_log::store::Hint;
    let Some(schema) = pg_support::fresh("hinted") else {
        return;
    };
    let store = &schema.store;
    assert!(store.hints_with_appends());
    let (x, y, z) = (id("x"), id("y"), id("z"));
    let append = |id, expect, head: &'static [u8]| Append {
        id,
        expect,
        record: b"record",
        head,
    };
    store
        .append_hinted(
            &[append(&x, Expect::Empty, b"head x 1")],
            &[Hint::Open(x.clone())],
            &[],
        )
        .unwrap();
    assert_eq!(open_hints(store), ["x"]);

    // A lost race: x's head is at 1, not empty. Nothing changes.
    let lost = store.append_hinted(
        &[append(&x, Expect::Empty, b"head x 1")],
        &[Hint::Open(y.clone())],
        &[Hint::Open(x.clone())],
    );
    assert!(
        matches!(lost, Err(AppendError::Conflict { .. })),
        "{lost:?}"
    );
    assert_eq!(open_hints(store), ["x"]);

    // A group whose second append loses: the first is rolled back, hints and all.
    let group = store.append_hinted(
        &[
            append(&z, Expect::Empty, b"head z 1"),
            append(&x, Expect::At(7), b"head x 8"),
        ],
        &[Hint::Open(z.clone())],
        &[Hint::Open(x.clone())],
    );
    assert!(
        matches!(group, Err(AppendError::Conflict { .. })),
        "{group:?}"
    );
    assert_eq!(store.head(&z).unwrap(), None);
    assert_eq!(open_hints(store), ["x"]);

    // A taken record slot: the head says 1, but a record 2 is there already.
    schema.query(&format!(
        "INSERT INTO records (delegation, seq, bytes) VALUES ('{}', 2, '\\x00')",
        hex(b"x")
    ));
    let taken = store.append_hinted(
        &[append(&x, Expect::At(1), b"head x 2")],
        &[],
        &[Hint::Open(x.clone())],
    );
    assert!(
        matches!(taken, Err(AppendError::Damaged { .. })),
        "{taken:?}"
    );
    assert_eq!(open_hints(store), ["x"]);
    schema.query(&format!(
        "DELETE FROM records WHERE delegation = '{}' AND seq = 2",
        hex(b"x")
    ));

    // Written: the stale hint goes with it, and the new one comes.
    store
        .append_hinted(
            &[append(&x, Expect::At(1), b"head x 2")],
            &[Hint::Open(y.clone())],
            &[Hint::Open(x.clone())],
        )
        .unwrap();
    assert_eq!(open_hints(store), ["y"]);
}

#[test]
fn appends_are_the_rows_the_database_holds() {
    let Some(schema) = pg_support::fresh("rows") else {
        return;
    };
    let store = schema.store.as_ref();
    let a = id("a\u{0}é");
    one(store, &a, Expect::Empty, b"first").unwrap();
    one(store, &a, Expect::At(1), b"second").unwrap();
    let rows = schema.query("SELECT delegation, seq, bytes FROM records ORDER BY seq");
    let expected: Vec<Vec<Option<String>>> = [(1, &b"first"[..]), (2, &b"second"[..])]
        .iter()
        .map(|(seq, bytes)| {
            vec![
                Some(hex(a.as_str().as_bytes())),
                Some(seq.to_string()),
                Some(hex(bytes)),
            ]
        })
        .collect();
    assert_eq!(rows, expected);
    let heads = schema.query("SELECT delegation, seq, summary FROM heads");
    assert_eq!(
        heads,
        vec![vec![
            Some(hex(a.as_str().as_bytes())),
            Some("2".into()),
            Some(hex(b"head 2")),
        ]]
    );
    assert_eq!(
        store.head(&a).unwrap(),
        Some(Head {
            seq: 2,
            summary: b"head 2".to_vec()
        })
    );
}

#[test]
fn a_record_slot_taken_behind_the_stores_back_is_damage_and_writes_nothing() {
    let Some(schema) = pg_support::fresh("occupied") else {
        return;
    };
    let store = schema.store.as_ref();
    let (a, b) = (id("a"), id("b"));
    one(store, &a, Expect::Empty, b"a1").unwrap();
    schema.execute(&format!(
        "INSERT INTO records VALUES ('{}', 2, 'stray'::bytea)",
        hex(b"a")
    ));
    let (b1, a2) = (b"b1 head".to_vec(), b"a2 head".to_vec());
    let group = [
        Append {
            id: &b,
            expect: Expect::Empty,
            record: b"b1",
            head: &b1,
        },
        Append {
            id: &a,
            expect: Expect::At(1),
            record: b"a2",
            head: &a2,
        },
    ];
    match store.append(&group) {
        Err(AppendError::Damaged { id, seq, reason }) => {
            assert_eq!((id, seq), (a.clone(), 2));
            assert!(reason.contains("beyond the head"), "{reason}");
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    // Nothing of the group: b has no row, a's head did not move, the stray stays.
    assert_eq!(
        schema.query("SELECT count(*) FROM heads WHERE delegation = '\\x62'"),
        vec![vec![Some("0".into())]]
    );
    assert_eq!(
        schema.query("SELECT seq FROM heads WHERE delegation = '\\x61'"),
        vec![vec![Some("1".into())]]
    );
    assert_eq!(
        schema.query("SELECT bytes FROM records WHERE seq = 2"),
        vec![vec![Some(hex(b"stray"))]]
    );
    assert_eq!(store.history(&b).unwrap().entries.len(), 0);
}

#[test]
fn a_head_whose_record_is_gone_is_damage_not_a_conflict() {
    let Some(schema) = pg_support::fresh("missing") else {
        return;
    };
    let store = schema.store.as_ref();
    let a = id("a");
    one(store, &a, Expect::Empty, b"a1").unwrap();
    schema.execute("DELETE FROM records");
    match one(store, &a, Expect::At(1), b"a2") {
        Err(AppendError::Damaged { id, seq, reason }) => {
            assert_eq!((id, seq), (a.clone(), 1));
            assert!(reason.contains("records were lost"), "{reason}");
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert_eq!(
        schema.query("SELECT count(*) FROM records"),
        vec![vec![Some("0".into())]]
    );
    assert_eq!(store.head(&a).unwrap().map(|h| h.seq), Some(1));
}

#[test]
fn the_schema_has_a_version_row_and_a_newer_version_is_refused() {
    let Some(schema) = pg_support::fresh("version") else {
        return;
    };
    assert_eq!(
        schema.query("SELECT version FROM meta"),
        vec![vec![Some("3".into())]]
    );
    // A schema of version 1 (no leases, no claims, no hints) gains them, and
    // version 3, so that an older crate refuses it from then on.
    schema.execute("DROP TABLE claims, dispatchers, hints; UPDATE meta SET version = 1");
    let again = Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone()));
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(
        schema.query(
            "SELECT version, (SELECT count(*) FROM claims), (SELECT count(*) FROM dispatchers) \
             FROM meta"
        ),
        vec![vec![Some("3".into()), Some("0".into()), Some("0".into())]]
    );
    // Connecting again finds the schema and leaves it as it is.
    let again = Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone()));
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(
        schema.query("SELECT count(*) FROM meta"),
        vec![vec![Some("1".into())]]
    );
    schema.execute("UPDATE meta SET version = 99");
    match Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone())) {
        Err(Error::Storage(error)) => {
            let message = error.to_string();
            assert!(message.contains("version 99"), "{message}");
            assert!(message.contains("upgrade"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bad_schema_names_urls_and_servers_are_typed_errors() {
    let Some(url) = pg_support::url() else {
        return;
    };
    for name in [
        "",
        "Upper",
        "1digit",
        "semi;colon",
        "quo\"te",
        &"x".repeat(64),
    ] {
        match Postgres::connect_with(&url, Connect::new().schema(name)) {
            Err(Error::Storage(error)) => {
                let message = error.to_string();
                assert!(message.contains("refused"), "{message}");
            }
            other => panic!("schema {name:?}: expected a refusal, got {other:?}"),
        }
    }
    assert!(matches!(
        Postgres::connect("postgres://no host here:x/"),
        Err(Error::Storage(_))
    ));
    // A port where nothing listens: a typed error naming the server, no password.
    match Postgres::connect("postgres://someone:secret@127.0.0.1:9/db") {
        Err(Error::Storage(error)) => {
            // The client's own error is kept whole, as the source.
            let StorageError::Engine(engine) = &error else {
                panic!("expected the engine's error, got {error:?}");
            };
            let failure = engine
                .downcast_ref::<PostgresError>()
                .expect("a PostgresError");
            assert!(failure.client_error().is_some(), "{failure:?}");
            let message = error.to_string();
            assert!(message.contains("someone@127.0.0.1:9/db"), "{message}");
            assert!(message.contains("cannot connect"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[test]
fn the_scan_pages_through_many_delegations_in_key_order_damage_included() {
    let Some(schema) = pg_support::fresh("pages") else {
        return;
    };
    // 700 delegations of one record each, written by the database itself.
    schema.execute(
        "INSERT INTO records SELECT convert_to('d-' || n, 'UTF8'), 1, 'r'::bytea \
             FROM generate_series(1, 700) AS n;
         INSERT INTO heads SELECT delegation, 1, 'h'::bytea FROM records;
         INSERT INTO records VALUES ('\\x7a7a', 1, 'no head'::bytea);
         INSERT INTO heads VALUES ('\\x7979', 1, 'no records'::bytea);
         INSERT INTO records VALUES ('\\xff', 1, 'not utf-8'::bytea);",
    );
    let mut expected: Vec<String> = (1..=700).map(|n| format!("d-{n}")).collect();
    expected.extend(["zz".to_owned(), "yy".to_owned()]);
    expected.sort_by(|x, y| (x.len(), x.as_bytes()).cmp(&(y.len(), y.as_bytes())));
    let mut seen = Vec::new();
    let mut damaged = 0;
    for stream in schema.store.scan() {
        match stream {
            Ok(stream) => {
                match stream.id.as_str() {
                    "zz" => assert_eq!((stream.entries.len(), stream.head.is_none()), (1, true)),
                    "yy" => assert_eq!((stream.entries.len(), stream.head.is_some()), (0, true)),
                    _ => assert!(stream.in_step(), "{stream:?}"),
                }
                seen.push(stream.id.to_string());
            }
            Err(ReadError::Corrupt { key, .. }) => {
                assert!(key.contains("ff"), "{key}");
                damaged += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(damaged, 1, "the key that is not UTF-8");
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "current_thread")]
async fn the_store_works_inside_a_current_thread_runtime() {
    inside_a_runtime().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_inside_a_multi_thread_runtime() {
    inside_a_runtime().await;
}

async fn inside_a_runtime() {
    let Some(schema) = pg_support::fresh("runtime") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Options::new());
    let a = id("in-a-runtime");
    ledger
        .record(&a, Event::queued("planner", "target"))
        .unwrap();
    ledger
        .record(&a, Event::delivered(Some(200)).unwrap())
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(ledger.status(&a).unwrap().status, StatusKind::Delivered);
    assert_eq!(ledger.history(&a).unwrap().len(), 2);
    assert_eq!(ledger.replay().count(), 1);
}

/// A server of this test's own, from `.ci/postgres` with its own home.
struct Server {
    home: tempfile::TempDir,
}

impl Server {
    fn run(&self, action: &str) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
        let out = Command::new("bash")
            .arg(script)
            .arg(action)
            .env("PG_HOME", self.home.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            ".ci/postgres {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start(&self) -> String {
        let out = self.run("start");
        out.trim()
            .strip_prefix("export DATABASE_URL=")
            .unwrap_or_else(|| panic!("unexpected output: {out}"))
            .to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

#[test]
fn calls_fail_typed_while_the_server_is_down_and_work_again_when_it_is_back() {
    // Same rule as every PostgreSQL case: no DATABASE_URL outside CI passes over.
    if pg_support::url().is_none() {
        return;
    }
    let server = Server {
        home: tempfile::tempdir().unwrap(),
    };
    let url = server.start();
    let store = Arc::new(Postgres::connect_with(&url, Connect::new().connections(3)).unwrap());
    let ledger = Ledger::with_store(store.clone(), Options::new());
    let (a, b) = (id("a"), id("b"));
    ledger
        .record(&a, Event::queued("planner", "target"))
        .unwrap();

    // A restart between two calls costs no call, read or write: a connection
    // the server ended while it was idle is replaced, and the call run again on
    // the new one (the server said it never ran it).
    for round in 0..3 {
        server.run("restart");
        for n in 0..4 {
            assert_eq!(ledger.status(&a).unwrap().status, StatusKind::Queued);
            let written = id(&format!("after-restart-{round}-{n}"));
            ledger
                .record(&written, Event::queued("planner", "target"))
                .unwrap();
        }
        server.run("restart");
        for n in 0..4 {
            let written = id(&format!("after-restart-{round}-{n}"));
            ledger
                .record(&written, Event::delivered(Some(200)).unwrap())
                .unwrap();
        }
    }

    server.run("stop");
    for _ in 0..3 {
        match store.head(&a) {
            Err(ReadError::Storage(error)) => {
                let message = error.to_string();
                assert!(message.contains("127.0.0.1"), "{message}");
            }
            other => panic!("expected a storage error while down, got {other:?}"),
        }
        assert!(matches!(ledger.status(&a), Err(ReadError::Storage(_))));
        assert!(matches!(ledger.history(&a), Err(ReadError::Storage(_))));
    }
    // A write while down fails typed before anything was sent (a new
    // delegation's `queued` is written unread, so the append itself finds the
    // server gone): nothing was written, so it does not poison the ledger.
    assert!(matches!(
        ledger.record(&b, Event::queued("planner", "target")),
        Err(Error::Storage(_))
    ));

    let again = server.start();
    assert_eq!(again, url, "the server came back on its port");
    for _ in 0..6 {
        assert_eq!(store.head(&a).unwrap().map(|h| h.seq), Some(1));
    }
    assert_eq!(ledger.status(&a).unwrap().status, StatusKind::Queued);
    assert_eq!(ledger.status(&b).unwrap().status, StatusKind::NotFound);
    ledger
        .record(&b, Event::queued("planner", "target"))
        .unwrap();
    ledger
        .record(&a, Event::delivered(Some(200)).unwrap())
        .unwrap();
    assert_eq!(ledger.status(&a).unwrap().status, StatusKind::Delivered);
    assert_eq!(ledger.replay().count(), 2 + 3 * 4);
}

/// A server that crashes (stops at once, telling no session) while a
/// connection sits idle leaves a connection that looks open until it is used.
/// A write sent on it would fail with no word from the server and an unknown
/// outcome, which poisons a ledger; so an idle connection is checked first:
/// a write while the server is down, even one made without reading a head (an
/// outcome on a remembered head, a new `queued`), fails typed having sent
/// nothing, the ledger is not poisoned, and once the server is back the same
/// writes go through.
#[test]
fn a_write_after_the_server_crashed_under_an_idle_connection_fails_typed_and_does_not_poison() {
    if pg_support::url().is_none() {
        return;
    }
    let server = Server {
        home: tempfile::tempdir().unwrap(),
    };
    let url = server.start();
    let store = Arc::new(Postgres::connect_with(&url, Connect::new().connections(1)).unwrap());
    let ledger = Ledger::with_store(store, Options::new());
    let (a, b) = (id("a"), id("b"));
    ledger
        .record(&a, Event::queued("planner", "target"))
        .unwrap();

    server.run("crash");
    // Longer than a connection may sit idle unchecked.
    std::thread::sleep(Duration::from_millis(1_500));
    for (written, event) in [
        (&a, Event::delivered(Some(200)).unwrap()),
        (&b, Event::queued("planner", "target")),
    ] {
        let failed = ledger.record(written, event);
        assert!(matches!(failed, Err(Error::Storage(_))), "{failed:?}");
    }

    assert_eq!(server.start(), url, "the server came back on its port");
    ledger
        .record(&a, Event::delivered(Some(200)).unwrap())
        .unwrap();
    ledger
        .record(&b, Event::queued("planner", "target"))
        .unwrap();
    assert_eq!(ledger.status(&a).unwrap().status, StatusKind::Delivered);
    assert_eq!(ledger.status(&b).unwrap().status, StatusKind::Queued);
    assert!(ledger.audit().unwrap().is_clean());
}

#[test]
fn a_write_blocked_by_a_lock_ends_at_the_statement_timeout_as_a_typed_error_and_the_ledger_goes_on()
{
    let Some(url) = pg_support::url() else {
        return;
    };
    let timeout = Duration::from_millis(400);
    let name = pg_support::unique("timeout");
    let store = Arc::new(
        Postgres::connect_with(
            &url,
            Connect::new()
                .schema(name.clone())
                .statement_timeout(timeout),
        )
        .unwrap(),
    );
    let schema = pg_support::Schema {
        store: store.clone(),
        name: name.clone(),
        url: url.clone(),
    };
    let ledger = Ledger::with_store(store.clone(), Options::new());
    let locked = id("locked");
    ledger
        .record(&locked, Event::queued("planner", "http://127.0.0.1:9/a2a"))
        .unwrap();

    // Another session takes the head's row lock and holds it until told.
    let held = pg_support::hold(&url, format!("SELECT 1 FROM {name}.heads FOR UPDATE"));
    let started = Instant::now();
    let result = ledger.record(&locked, Event::delivered(Some(200)).unwrap());
    let waited = started.elapsed();
    held.release();

    assert!(waited >= timeout, "ended after {waited:?}");
    assert!(waited < Duration::from_secs(10), "ended after {waited:?}");
    match result {
        Err(Error::Storage(StorageError::Engine(engine))) => {
            let failure = engine.downcast_ref::<PostgresError>().unwrap();
            let code = failure.client_error().and_then(|e| e.code()).cloned();
            assert_eq!(code, Some(postgres::error::SqlState::QUERY_CANCELED));
            let message = failure.to_string();
            assert!(message.contains("statement timeout"), "{message}");
            assert!(message.contains("appending"), "{message}");
        }
        other => panic!("expected the statement timeout, got {other:?}"),
    }
    // The cancelled statement wrote nothing, and the server said so: the
    // ledger that made it is not poisoned, the delegation is still queued,
    // and the same ledger writes its outcome once the lock is gone.
    assert_eq!(ledger.history(&locked).unwrap().len(), 1);
    assert_eq!(ledger.status(&locked).unwrap().status, StatusKind::Queued);
    ledger
        .record(&locked, Event::delivered(Some(200)).unwrap())
        .unwrap();
    assert_eq!(
        ledger.status(&locked).unwrap().status,
        StatusKind::Delivered
    );
    let reopened = Ledger::with_store(store, Options::new());
    assert_eq!(
        reopened.status(&locked).unwrap().status,
        StatusKind::Delivered
    );
    drop(schema);
}

/// How many of `app`'s backends wait for a lock now.
fn waiting_backends(url: &str, app: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = '{app}' AND wait_event_type = 'Lock'"
    );
    pg_support::raw(url, move |client| {
        client.query_one(&sql, &[]).unwrap().get(0)
    })
}

/// A store keeps as many connections as its URL's `connections=N` says, and
/// [`DEFAULT_CONNECTIONS`] without one: with every read of the heads held up by
/// a table lock another session holds, exactly that many of the store's
/// backends wait on the server, the other readers wait in the store for a
/// connection, and every reader is answered once the lock goes. A count out of
/// range is refused as a typed error, naming the parameter; so is a count over
/// [`MAX_CONNECTIONS`] given in code, unless the URL gives one.
#[test]
fn a_url_s_connections_are_the_store_s_backends_and_a_bad_count_is_refused() {
    let Some(url) = pg_support::url() else {
        return;
    };
    for bad in ["0", "65", "two", ""] {
        let refused =
            Postgres::connect(&format!("{url}{}connections={bad}", pg_support::sep(&url)));
        match refused {
            Err(Error::Storage(error)) => {
                let message = error.to_string();
                assert!(
                    message.contains(&format!("`connections={bad}`")),
                    "{message}"
                );
                assert!(message.contains("refused"), "{message}");
            }
            other => panic!("connections={bad}: expected a refusal, got {other:?}"),
        }
    }
    // The same bound for a count given in code, and the URL's count wins
    // over it.
    let over = Connect::new().connections(MAX_CONNECTIONS + 1);
    match Postgres::connect_with(&url, over.clone()) {
        Err(Error::Storage(error)) => {
            let message = error.to_string();
            assert!(message.contains("65 connections refused"), "{message}");
            assert!(message.contains("at most 64"), "{message}");
        }
        other => panic!(
            "{} connections: expected a refusal, got {other:?}",
            MAX_CONNECTIONS + 1
        ),
    }
    let name = pg_support::unique("connections_over");
    let overridden = format!("{url}{}schema={name}&connections=1", pg_support::sep(&url));
    let store = Postgres::connect_with(&overridden, over).expect("the URL's count wins");
    drop(pg_support::Schema {
        store: Arc::new(store),
        name,
        url: url.clone(),
    });
    for (query, connections) in [("&connections=3", 3), ("", DEFAULT_CONNECTIONS)] {
        let name = pg_support::unique("connections");
        let app = name.clone();
        let store = Arc::new(
            Postgres::connect(&format!(
                "{url}{}schema={name}&application_name={app}{query}",
                pg_support::sep(&url)
            ))
            .unwrap(),
        );
        let schema = pg_support::Schema {
            store: store.clone(),
            name: name.clone(),
            url: url.clone(),
        };
        let known = id("known");
        one(&*store, &known, Expect::Empty, b"queued").unwrap();

        let held = pg_support::hold(
            &url,
            format!("LOCK TABLE {name}.heads IN ACCESS EXCLUSIVE MODE"),
        );
        let readers: Vec<_> = (0..connections + 2)
            .map(|_| {
                let (store, known) = (store.clone(), known.clone());
                std::thread::spawn(move || store.head(&known))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut waiting = 0;
        while Instant::now() < deadline {
            waiting = waiting_backends(&url, &app);
            if waiting >= i64::try_from(connections).unwrap() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A moment more, for any backend beyond the count to show up.
        std::thread::sleep(Duration::from_millis(200));
        let settled = waiting_backends(&url, &app);
        held.release();
        for reader in readers {
            let head = reader.join().unwrap().unwrap().expect("the head");
            assert_eq!(head.seq, 1);
        }
        assert_eq!(
            (waiting, settled),
            (
                i64::try_from(connections).unwrap(),
                i64::try_from(connections).unwrap()
            ),
            "backends of {app} waiting for the lock{query}"
        );
        drop(schema);
    }
}

/// A schema of version 2 was written without hints: connecting fills its index
/// from the heads, under the schema's lock, so `pending` and `dead` answer from
/// it exactly what a scan of the log answers.
#[test]
fn a_schema_written_without_hints_gets_its_index_from_its_heads() {
    use delegation_log::FailureReason;
    use delegation_log::event::{Failed, Queued};
    let Some(schema) = pg_support::fresh("hints") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Options::new());
    let id = |text: &str| -> DelegationId { text.parse().unwrap() };
    let queued = || Event::Queued(Queued::new("planner", "t"));
    ledger.record(&id("open"), queued()).unwrap();
    ledger.record(&id("dead"), queued()).unwrap();
    ledger
        .record(
            &id("dead"),
            Event::failed(FailureReason::Timeout, None).unwrap(),
        )
        .unwrap();
    ledger.record(&id("retried"), queued()).unwrap();
    let failed = Failed {
        reason: FailureReason::TargetOffline,
        detail: None,
    };
    ledger
        .retry(
            &id("retried"),
            failed,
            &id("retried.r1"),
            Queued::new("planner", "t"),
        )
        .unwrap();
    ledger.record(&id("done"), queued()).unwrap();
    ledger
        .record(&id("done"), Event::delivered(None).unwrap())
        .unwrap();
    let written =
        schema.query("SELECT kind, encode(delegation, 'escape') FROM hints ORDER BY 1, 2");
    drop(ledger);

    schema.execute("DROP TABLE hints; UPDATE meta SET version = 2");
    let store =
        Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone())).unwrap();
    assert_eq!(
        schema.query("SELECT version FROM meta"),
        vec![vec![Some("3".into())]]
    );
    let filled = schema.query("SELECT kind, encode(delegation, 'escape') FROM hints ORDER BY 1, 2");
    assert_eq!(
        filled, written,
        "the filled index is the one the writes kept"
    );
    let ledger = Ledger::with_store(Arc::new(store), Options::new());
    let pending: Vec<String> = ledger
        .pending(None)
        .unwrap()
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(pending, ["open", "retried.r1"]);
    let dead: Vec<String> = ledger
        .dead()
        .unwrap()
        .into_iter()
        .map(|d| d.last.to_string())
        .collect();
    assert_eq!(dead, ["dead"]);
    let attempts = ledger.attempts(&id("retried")).unwrap().unwrap();
    assert_eq!(attempts.latest.as_str(), "retried.r1");
}
