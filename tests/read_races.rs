//! Guards the reads that are made of several store reads, not one snapshot,
//! against a write landing between two of them: each answers a state the log
//! held, never a mixture of before and after, and never one that contradicts
//! itself.
//!
//! A retry is written together with the failure it follows, so a reader can
//! see one attempt before that write and the next after it. A store wrapper
//! runs the write (by a second ledger on the same store) at a chosen point:
//! before or after the n-th read of one delegation's head or history. Each
//! case runs on the memory store, on sled, and on PostgreSQL when
//! `DATABASE_URL` is set (under `CI=true` it must be), with the store's index
//! and, where the index matters, without it (links from a scan).
//!
//! - `task_status` (what `status` prints and `check_task_status` answers):
//!   the status and the attempts come from the same reads, so they agree, and
//!   a retry is never shown without the failure it follows; a task being
//!   retried is never answered `failed` (MCP would call it finished).
//! - `pending`: a task retried while the list is walked is still listed, once.
//! - `task_history`: an attempt that failed and was retried in one write is
//!   never shown as the task's last.
//! - `Tail::poll` (what `tail` prints): a retry is never handed out while the
//!   attempt it retries was last handed out `queued`, nor a retry of a retry
//!   held back; and it is held back by one poll at most, so a retry whose
//!   original the log holds `queued` (damage) is still handed out. On
//!   PostgreSQL the scan reads pages of 256 delegations, each its own
//!   snapshot; the cases put the original last on the first page and its
//!   retries on the second.
//! - `pending` and `queued` list a task once even when its retry's hint, or
//!   its retry, was read after the original was read `queued`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "postgres")]
mod pg_support;
mod support;

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use delegation_log::event::{Failed, Queued, ReasonCode};
use delegation_log::ledger::{Options, Tail};
use delegation_log::store::{
    Append, AppendError, Expect, Head, Index, Memory, Sled, Store, Stream,
};
use delegation_log::{
    DelegationId, Error, Event, FailureReason, Ledger, ManualClock, ReadError, StatusKind,
};
use support::id;

type Hook = Box<dyn FnOnce() + Send>;

/// Which read of the watched delegation the hook goes with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Read {
    Head,
    History,
    /// The scan handing out the watched delegation.
    Scan,
}

/// Whether the hook runs just before that read, or just after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum When {
    Before,
    After,
}

/// A store over another that runs `hook` once, at the `nth` read of kind
/// `read` of `watched`.
struct Interleaved {
    inner: Arc<dyn Store>,
    index: bool,
    watched: DelegationId,
    read: Read,
    nth: usize,
    when: When,
    hook: Mutex<Option<Hook>>,
    reads: AtomicUsize,
}

impl Interleaved {
    fn around<T>(&self, id: &DelegationId, read: Read, f: impl FnOnce() -> T) -> T {
        let fire = *id == self.watched
            && read == self.read
            && self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.nth;
        let run = || {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        };
        if fire && self.when == When::Before {
            run();
        }
        let out = f();
        if fire && self.when == When::After {
            run();
        }
        out
    }
}

impl Store for Interleaved {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        self.inner.append(appends)
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        self.around(id, Read::Head, || self.inner.head(id))
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        self.around(id, Read::History, || self.inner.history(id))
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        Box::new(self.inner.scan().inspect(move |item| {
            if let Ok(stream) = item {
                self.around(&stream.id, Read::Scan, || ());
            }
        }))
    }

    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }

    fn index(&self) -> Option<&dyn Index> {
        if self.index { self.inner.index() } else { None }
    }
}

fn ledger_on(store: Arc<dyn Store>) -> Ledger {
    Ledger::with_store(store, Options::new().clock(ManualClock::default()))
}

fn offline() -> Failed {
    Failed {
        reason: FailureReason::TargetOffline,
        detail: Some("connection refused".into()),
    }
}

/// Where the hook runs, on which store view.
#[derive(Clone, Copy)]
struct At {
    index: bool,
    read: Read,
    nth: usize,
    when: When,
}

fn reader(shared: Arc<dyn Store>, watched: &DelegationId, at: At, hook: Hook) -> Ledger {
    ledger_on(Arc::new(Interleaved {
        inner: shared,
        index: at.index,
        watched: watched.clone(),
        read: at.read,
        nth: at.nth,
        when: at.when,
        hook: Mutex::new(Some(hook)),
        reads: AtomicUsize::new(0),
    }))
}

/// The hook: `writer` retries `from` as `to` (`from` failed, `to` queued, one
/// write).
fn retry_hook(writer: &Ledger, from: &DelegationId, to: &DelegationId) -> Hook {
    let (writer, from, to) = (writer.clone(), from.clone(), to.clone());
    Box::new(move || {
        writer
            .retry(&from, offline(), &to, Queued::new("p", "t"))
            .unwrap();
    })
}

/// A store, its kind's name, and what keeps it alive (a directory, a schema).
type Named = (&'static str, Arc<dyn Store>, Box<dyn Any>);

/// A fresh store of each kind.
fn stores(tag: &str) -> Vec<Named> {
    let mut out: Vec<Named> = Vec::new();
    out.push(("memory", Arc::new(Memory::new()), Box::new(())));
    let dir = tempfile::tempdir().unwrap();
    let sled = Sled::open(dir.path().join("log")).unwrap();
    out.push(("sled", Arc::new(sled), Box::new(dir)));
    #[cfg(feature = "postgres")]
    if let Some(schema) = pg_support::fresh(tag) {
        let store: Arc<dyn Store> = schema.store.clone();
        out.push(("postgres", store, Box::new(schema)));
    }
    let _ = tag;
    out
}

/// `first` is queued; its retry `first.r1` is written just before or after
/// each of the first reads of `first`'s head in turn. Whatever the reader saw,
/// its view is one the log held: `first` alone and queued, or the retry queued
/// behind `first`'s failure, as a quiet read then gives.
fn a_retry_written_mid_view_shows_the_failure_it_follows(index: bool) {
    for (name, shared, _keep) in stores("view") {
        for nth in 1..=4 {
            for when in [When::Before, When::After] {
                let first = id(&format!("v{nth}{when:?}"));
                let retry = id(&format!("{first}.r1"));
                let writer = ledger_on(shared.clone());
                writer.record(&first, Event::queued("p", "t")).unwrap();
                let at = At {
                    index,
                    read: Read::Head,
                    nth,
                    when,
                };
                let reader = reader(
                    shared.clone(),
                    &first,
                    at,
                    retry_hook(&writer, &first, &retry),
                );
                let status = reader.task_status(&first).unwrap();
                let case = format!("{name}, hook {when:?} head read {nth}: {status:?}");
                if status.id == first {
                    assert_eq!(status.status, StatusKind::Queued, "{case}");
                    assert_eq!(status.attempts, None, "{case}");
                    continue;
                }
                assert_eq!(status.id, retry, "{case}");
                assert_eq!(status.status, StatusKind::Queued, "{case}");
                let seen = status.attempts.clone().expect("two attempts");
                assert_eq!(seen.count, 2, "{case}");
                let failure = seen.last_failure.as_ref().expect(&case);
                assert_eq!(failure.id, first, "{case}");
                assert_eq!(failure.reason, ReasonCode::TargetOffline, "{case}");
                assert_eq!(writer.attempts(&first).unwrap().unwrap(), seen, "{case}");
            }
        }
    }
}

#[test]
fn a_retry_written_between_the_reads_of_a_view_shows_the_failure_it_follows_with_the_index() {
    a_retry_written_mid_view_shows_the_failure_it_follows(true);
}

#[test]
fn a_retry_written_between_the_reads_of_a_view_shows_the_failure_it_follows_without_an_index() {
    a_retry_written_mid_view_shows_the_failure_it_follows(false);
}

/// `t` failed and `t.r1` is queued; asked by the first id, while `t.r1` is
/// retried as `t.r2` between the reads, the status and the attempts still
/// agree, and a task being retried is never answered `failed`.
fn a_task_retried_mid_status_is_never_answered_failed(index: bool) {
    for (name, shared, _keep) in stores("retried") {
        for nth in 1..=3 {
            let (first, r1, r2) = (
                id(&format!("t{nth}")),
                id(&format!("t{nth}.r1")),
                id(&format!("t{nth}.r2")),
            );
            let writer = ledger_on(shared.clone());
            writer.record(&first, Event::queued("p", "t")).unwrap();
            writer
                .retry(&first, offline(), &r1, Queued::new("p", "t"))
                .unwrap();
            let at = At {
                index,
                read: Read::Head,
                nth,
                when: When::Before,
            };
            let reader = reader(shared.clone(), &r1, at, retry_hook(&writer, &r1, &r2));
            let status = reader.task_status(&first).unwrap();
            let attempts = status.attempts.clone().unwrap();
            let case = format!("{name}, hook before head read {nth} of {r1}: {status:?}");
            assert_eq!(status.status, attempts.latest_status, "{case}");
            assert_eq!(status.id, attempts.latest, "{case}");
            assert_eq!(status.status, StatusKind::Queued, "{case}");
            assert!(!attempts.exhausted, "{case}");
        }
    }
}

#[test]
fn a_task_retried_between_the_reads_of_its_status_is_never_answered_failed_with_the_index() {
    a_task_retried_mid_status_is_never_answered_failed(true);
}

#[test]
fn a_task_retried_between_the_reads_of_its_status_is_never_answered_failed_without_an_index() {
    a_task_retried_mid_status_is_never_answered_failed(false);
}

/// Asked by the latest attempt's own id while that attempt settles between
/// the reads: the status and the attempts' `latest_status` agree.
#[test]
fn the_latest_attempt_settling_between_the_reads_of_its_status_agrees_with_its_attempts() {
    for (name, shared, _keep) in stores("settling") {
        for nth in 1..=3 {
            let (first, r1) = (id(&format!("s{nth}")), id(&format!("s{nth}.r1")));
            let writer = ledger_on(shared.clone());
            writer.record(&first, Event::queued("p", "t")).unwrap();
            writer
                .retry(&first, offline(), &r1, Queued::new("p", "t"))
                .unwrap();
            let hook: Hook = {
                let (writer, r1) = (writer.clone(), r1.clone());
                Box::new(move || {
                    writer
                        .record(&r1, Event::delivered(Some(200)).unwrap())
                        .unwrap();
                })
            };
            let at = At {
                index: true,
                read: Read::Head,
                nth,
                when: When::Before,
            };
            let status = reader(shared.clone(), &r1, at, hook)
                .task_status(&r1)
                .unwrap();
            let attempts = status.attempts.clone().unwrap();
            let case = format!("{name}, hook before head read {nth}: {status:?}");
            assert_eq!(status.status, attempts.latest_status, "{case}");
        }
    }
}

/// `t` is queued and listed by its open hint; it is retried as `t.r1` before
/// its head is read. The task was pending all along: `pending` lists its
/// queued attempt, once.
#[test]
fn a_task_retried_while_pending_is_walked_is_listed_once() {
    for (name, shared, _keep) in stores("pending") {
        for nth in 1..=1 {
            let (first, r1) = (id(&format!("p{nth}")), id(&format!("p{nth}.r1")));
            let writer = ledger_on(shared.clone());
            writer.record(&first, Event::queued("p", "t")).unwrap();
            let at = At {
                index: true,
                read: Read::Head,
                nth,
                when: When::Before,
            };
            let reader = reader(shared.clone(), &first, at, retry_hook(&writer, &first, &r1));
            let listed: Vec<String> = reader
                .pending(None)
                .unwrap()
                .iter()
                .map(|pending| pending.id.to_string())
                .filter(|listed| listed.starts_with(first.as_str()))
                .collect();
            assert_eq!(
                listed,
                [r1.to_string()],
                "{name}, hook before head read {nth}"
            );
        }
    }
}

/// `t` is queued; it is retried as `t.r1` just before its history is read.
/// The task's history never ends at `t`'s failure without the retry.
#[test]
fn a_task_retried_while_its_history_is_read_shows_the_retry() {
    for (name, shared, _keep) in stores("history") {
        let (first, r1) = (id("h"), id("h.r1"));
        let writer = ledger_on(shared.clone());
        writer.record(&first, Event::queued("p", "t")).unwrap();
        let at = At {
            index: true,
            read: Read::History,
            nth: 1,
            when: When::Before,
        };
        let reader = reader(shared.clone(), &first, at, retry_hook(&writer, &first, &r1));
        let history = reader.task_history(&first).unwrap();
        let ids: Vec<String> = history.iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids, [first.to_string(), r1.to_string()], "{name}");
        assert_eq!(history, writer.task_history(&first).unwrap(), "{name}");
    }
}

/// 255 delegations sort before `t-999` (same length, smaller bytes), so it
/// ends the first page of a PostgreSQL scan, and its retry `t-999.r1`
/// (longer) falls on a later page. The retry is written just after the scan
/// hands out `t-999` as `queued`. The poll holds the retry back, and the next
/// hands out the failure, then the retry; every record exactly once.
#[test]
fn a_tail_never_hands_out_a_retry_before_the_failure_it_follows() {
    for (name, shared, _keep) in stores("tail") {
        let writer = ledger_on(shared.clone());
        for n in 0..255 {
            writer
                .record(&id(&format!("d-{n:03}")), Event::queued("p", "t"))
                .unwrap();
        }
        let (first, r1) = (id("t-999"), id("t-999.r1"));
        writer.record(&first, Event::queued("p", "t")).unwrap();
        let at = At {
            index: true,
            read: Read::Scan,
            nth: 1,
            when: When::After,
        };
        let reader = reader(shared.clone(), &first, at, retry_hook(&writer, &first, &r1));
        let mut tail = Tail::new();
        let mut handed: Vec<(String, &'static str)> = Vec::new();
        for _ in 0..3 {
            for record in tail.poll(&reader).unwrap() {
                if record.delegation == first || record.delegation == r1 {
                    handed.push((record.delegation.to_string(), record.event.kind().as_str()));
                }
            }
        }
        let expected = [
            ("t-999", "queued"),
            ("t-999", "failed"),
            ("t-999.r1", "queued"),
        ]
        .map(|(id, kind)| (id.to_owned(), kind));
        assert_eq!(handed, expected, "{name}");
    }
}

/// The first page of a PostgreSQL scan ends at `last`: 255 delegations of its
/// length sort before it.
fn fill_first_page(writer: &Ledger) {
    for n in 0..255 {
        writer
            .record(&id(&format!("d-{n:03}")), Event::queued("p", "t"))
            .unwrap();
    }
}

/// As [`a_tail_never_hands_out_a_retry_before_the_failure_it_follows`], with
/// two retries written one after the other (`t-999.r1`, then `t-999.r2`)
/// just after the scan hands out `t-999`: the second is held back with the
/// first, and the next poll hands out every attempt in order.
#[test]
fn a_tail_holds_back_a_retry_of_a_retry_it_held_back() {
    for (name, shared, _keep) in stores("tail2") {
        let writer = ledger_on(shared.clone());
        fill_first_page(&writer);
        let (first, r1, r2) = (id("t-999"), id("t-999.r1"), id("t-999.r2"));
        writer.record(&first, Event::queued("p", "t")).unwrap();
        let hook: Hook = {
            let (writer, first, r1, r2) = (writer.clone(), first.clone(), r1.clone(), r2.clone());
            Box::new(move || {
                for (from, to) in [(&first, &r1), (&r1, &r2)] {
                    writer
                        .retry(from, offline(), to, Queued::new("p", "t"))
                        .unwrap();
                }
            })
        };
        let at = At {
            index: true,
            read: Read::Scan,
            nth: 1,
            when: When::After,
        };
        let reader = reader(shared.clone(), &first, at, hook);
        let mut tail = Tail::new();
        let mut handed: Vec<(String, &'static str)> = Vec::new();
        for _ in 0..3 {
            for record in tail.poll(&reader).unwrap() {
                if record.delegation.as_str().starts_with("t-999") {
                    handed.push((record.delegation.to_string(), record.event.kind().as_str()));
                }
            }
        }
        let expected = [
            ("t-999", "queued"),
            ("t-999", "failed"),
            ("t-999.r1", "queued"),
            ("t-999.r1", "failed"),
            ("t-999.r2", "queued"),
        ]
        .map(|(id, kind)| (id.to_owned(), kind));
        assert_eq!(handed, expected, "{name}");
    }
}

/// Writes `record` (its hash chained here) past `store`'s history of its
/// delegation, behind the ledger's back: damage the ledger's own checks let
/// pass, which only `audit` names.
fn plant(store: &dyn Store, mut record: delegation_log::Record) {
    use delegation_log::delegation::Fold;
    use delegation_log::envelope;
    let stream = store.history(&record.delegation).unwrap();
    let mut fold = Fold::new(record.delegation.clone());
    for entry in &stream.entries {
        fold.apply(&envelope::decode(&entry.bytes).unwrap())
            .unwrap();
    }
    record.hash = Some(record.chain_hash(&fold.hash()));
    fold.apply(&record).unwrap();
    let head = envelope::head::encode(fold.delegation().unwrap());
    store
        .append(&[Append {
            id: &record.delegation.clone(),
            expect: Expect::after(stream.entries.last().map_or(0, |entry| entry.seq)),
            record: &envelope::encode(&record),
            head: &head,
        }])
        .unwrap();
}

/// A retry whose original the log holds `queued` (damage: no write makes it)
/// is held back by one poll, not for ever: a tail hands out every record.
#[test]
fn a_tail_hands_out_a_retry_whose_original_stayed_queued_after_one_poll() {
    let store = Arc::new(Memory::new());
    let ledger = ledger_on(store.clone());
    ledger.record(&id("orig"), Event::queued("p", "t")).unwrap();
    let retry: delegation_log::Record = serde_json::from_str(
        r#"{"delegation":"orig.r1","seq":1,"event":"queued","source":"planner",
            "target":"reviewer","retry_of":"orig","attempt":2,"at":"2026-06-07T01:32:10Z"}"#,
    )
    .unwrap();
    plant(store.as_ref(), retry);
    ledger
        .record(&id("orig.r1"), Event::delivered(Some(200)).unwrap())
        .unwrap();
    let kinds = |records: Vec<delegation_log::Record>| -> Vec<(String, &'static str)> {
        records
            .iter()
            .map(|record| (record.delegation.to_string(), record.event.kind().as_str()))
            .collect()
    };
    let mut tail = Tail::new();
    let mut handed = kinds(tail.poll(&ledger).unwrap());
    handed.extend(kinds(tail.poll(&ledger).unwrap()));
    let expected = [
        ("orig", "queued"),
        ("orig.r1", "queued"),
        ("orig.r1", "delivered"),
    ]
    .map(|(id, kind)| (id.to_owned(), kind));
    assert_eq!(handed, expected);
    // One poll for a one-shot reader hands out all of it.
    assert_eq!(kinds(Tail::new().poll_all(&ledger).unwrap()), expected);
    assert!(
        !ledger.audit().unwrap().is_clean(),
        "audit names the damage"
    );
}

/// `queued` reads the log one delegation at a time (on PostgreSQL, in pages):
/// a retry written after it read the original `queued` does not list the
/// task twice.
#[test]
fn queued_lists_a_task_retried_mid_scan_once() {
    for (name, shared, _keep) in stores("queued") {
        let writer = ledger_on(shared.clone());
        fill_first_page(&writer);
        let (first, r1) = (id("q-990"), id("q-990.r1"));
        writer.record(&first, Event::queued("p", "t")).unwrap();
        let at = At {
            index: true,
            read: Read::Scan,
            nth: 1,
            when: When::After,
        };
        let reader = reader(shared.clone(), &first, at, retry_hook(&writer, &first, &r1));
        let listed: Vec<String> = reader
            .queued()
            .unwrap()
            .iter()
            .map(|delegation| delegation.id.to_string())
            .filter(|listed| listed.starts_with("q-"))
            .collect();
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");
    }
}

/// A store whose appends of two records (a retry) wait at a gate: the
/// ledger has written the retry's hints (stores that do not write hints with
/// their appends write them first), and not yet the retry.
struct Gate {
    inner: Arc<dyn Store>,
    at_gate: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
    done: Mutex<Option<mpsc::Sender<()>>>,
}

impl Store for Gate {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        if appends.len() < 2 {
            return self.inner.append(appends);
        }
        if let Some(at_gate) = self.at_gate.lock().unwrap().take() {
            at_gate.send(()).unwrap();
        }
        if let Some(go) = self.go.lock().unwrap().take() {
            go.recv().unwrap();
        }
        let appended = self.inner.append(appends);
        if let Some(done) = self.done.lock().unwrap().take() {
            done.send(()).unwrap();
        }
        appended
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        self.inner.head(id)
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        self.inner.history(id)
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        self.inner.scan()
    }

    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }

    fn index(&self) -> Option<&dyn Index> {
        self.inner.index()
    }

    fn hints_with_appends(&self) -> bool {
        self.inner.hints_with_appends()
    }
}

/// On a store that writes hints before the append they describe, `pending`
/// can list the retry's hint beside the original's, read the original
/// `queued`, and read the retry once it is written: the task is listed once.
#[test]
fn pending_lists_a_task_once_when_its_retry_lands_between_its_hints_and_its_heads() {
    for (name, shared, _keep) in stores("gate") {
        if shared.hints_with_appends() {
            continue;
        }
        let (first, r1) = (id("g9"), id("g9.r1"));
        let (at_gate, at_gate_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let (done, done_rx) = mpsc::channel();
        let gate: Arc<dyn Store> = Arc::new(Gate {
            inner: shared.clone(),
            at_gate: Mutex::new(Some(at_gate)),
            go: Mutex::new(Some(go_rx)),
            done: Mutex::new(Some(done)),
        });
        let writer = ledger_on(gate);
        writer.record(&first, Event::queued("p", "t")).unwrap();
        let retrying = {
            let (writer, first, r1) = (writer.clone(), first.clone(), r1.clone());
            std::thread::spawn(move || {
                writer
                    .retry(&first, offline(), &r1, Queued::new("p", "t"))
                    .unwrap();
            })
        };
        at_gate_rx.recv().unwrap();
        // The retry is appended just after the reader reads the original.
        let hook: Hook = Box::new(move || {
            go.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        let at = At {
            index: true,
            read: Read::Head,
            nth: 1,
            when: When::After,
        };
        let listed: Vec<String> = reader(shared.clone(), &first, at, hook)
            .pending(None)
            .unwrap()
            .iter()
            .map(|pending| pending.id.to_string())
            .collect();
        retrying.join().unwrap();
        assert_eq!(listed, [r1.to_string()], "{name}");
    }
}
