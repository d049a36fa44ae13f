//! Bad input never panics and never reads as a wrong state.
//!
//! - Encoded records of every event kind (with and without task, status and detail,
//!   short and maximum-length ids), in format versions 2 and 1: every single-bit
//!   flip, every truncation, and every unknown version byte gives a typed decode
//!   error, and through the ledger a typed `Error::Corrupt` or
//!   `Error::UnknownVersion`.
//! - The same damage on every store, from one definition (`Kind`): memory runs
//!   every case; sled (the damaged bytes appended, a fresh store each) and
//!   PostgreSQL (each history written intact, then its row overwritten with an
//!   `UPDATE`, as damage behind the store's back would) run a sample, and each
//!   case must read as the same typed error, with the same fields and message,
//!   as in memory. Racing writers and illegal transitions run on every store in
//!   `racing_writers.rs` and `ledger_agrees_with_model.rs`.
//! - Arbitrary bytes, raw and behind a valid header and checksum of either format
//!   version, never panic the decoder; whatever decodes re-encodes, in the version
//!   it was read in, to the same bytes.
//! - Real sled files, overwritten with 16 bytes of `0xFF` or of random bytes at 20
//!   spread offsets of each file in turn: opening, replaying and asking the status
//!   of every delegation gives a typed error, or a clean result, never a panic.
//!
//! "Silently wrong" means a delegation whose status differs from the original
//! while reading it reported no error. sled itself may silently drop keys, or
//! roll a file back to an earlier state, when its files are damaged (it has no
//! error for that). A dropped record is caught by the chain and the redundant
//! head, but when a delegation's records and its head are lost together, or
//! rolled back together to an earlier consistent point, nothing inside the store
//! can tell from that delegation alone: it reads as `not_found`, or as an earlier state of
//! itself (queued where it was settled). The sweep asserts that every silently
//! different status is such a loss, a prefix of the true history, and never a
//! state that was not written; it counts them and prints the counts. Catching
//! those losses needs something outside the store (an export, or the sender's own
//! list of delegations). The sled store keeps one such reference itself: a count of
//! acknowledged records outside sled's files. For every copy whose reads were
//! silently different, the sweep runs the audit, and asserts that it reports the
//! loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
#[cfg(feature = "postgres")]
mod pg_support;
mod support;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_support::{copy_dir, edit, sealed_bytes};
use delegation_log::delegation::Fold;
use delegation_log::envelope::{self, DecodeError, HEADER_LEN};
use delegation_log::event::{Delivered, Failed, Queued, Remote, RemoteKind, TaskState};
use delegation_log::ledger::Options;
use delegation_log::store::{Append, Expect, Memory, Sled, Store};
use delegation_log::{
    ChainHash, DelegationId, Error, Event, FailureReason, Ledger, ManualClock, OpenError, Record,
    Status, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

// ---------------------------------------------------------------------------
// Records of every kind
// ---------------------------------------------------------------------------

/// A history of one delegation, with its chain.
fn history(id: &str, events: Vec<Event>) -> Vec<Record> {
    let mut previous = ChainHash::GENESIS;
    events
        .into_iter()
        .zip(1..)
        .map(|(event, seq)| {
            let mut record = Record {
                delegation: id.parse().unwrap(),
                seq,
                event,
                at: Timestamp::from_unix_nanos(1_780_795_927_000_000_000 + seq as i64 * 1_500_000),
                hash: None,
            };
            let hash = record.chain_hash(&previous);
            record.hash = Some(hash);
            previous = hash;
            record
        })
        .collect()
}

fn queued(task: Option<serde_json::Value>) -> Event {
    Event::Queued(Queued {
        source: "planner".to_owned(),
        target: "http://127.0.0.1:8080/a2a".to_owned(),
        task,
        retry_of: None,
        attempt: None,
        not_before: None,
    })
}

fn failed(reason: FailureReason, detail: Option<&str>) -> Event {
    Event::Failed(Failed {
        reason,
        detail: detail.map(str::to_owned),
    })
}

/// Histories covering every event kind and every optional field.
fn histories() -> Vec<Vec<Record>> {
    let long_id = "ø".repeat(128); // 256 bytes, the maximum
    vec![
        history("q", vec![queued(None)]),
        history(
            "task",
            vec![
                queued(Some(
                    serde_json::json!({"review": "pr-42", "lines": [1, 2.5, null], "ok": true}),
                )),
                Event::Delivered(Delivered {
                    http_status: Some(200),
                    remote: Some(Remote {
                        kind: RemoteKind::Task,
                        task_id: Some("t-9".into()),
                        context_id: Some("c-9".into()),
                        state: Some(TaskState::Working),
                    }),
                }),
            ],
        ),
        history(
            "plain",
            vec![
                queued(None),
                Event::Delivered(Delivered {
                    http_status: None,
                    remote: None,
                }),
            ],
        ),
        history(
            "offline",
            vec![
                queued(None),
                failed(FailureReason::TargetOffline, Some("connection refused")),
            ],
        ),
        history(
            "busy",
            vec![
                queued(None),
                failed(
                    FailureReason::HttpStatus(503),
                    Some("503 Service Unavailable"),
                ),
            ],
        ),
        history(
            "gone",
            vec![queued(None), failed(FailureReason::HttpStatus(404), None)],
        ),
        history(
            "marshal",
            vec![queued(None), failed(FailureReason::MarshalError, None)],
        ),
        history(
            "refused",
            vec![
                queued(None),
                failed(FailureReason::RpcError(-32601), Some("Method not found")),
            ],
        ),
        history(
            "late",
            vec![
                queued(None),
                failed(FailureReason::Timeout, Some("no answer in 30 s")),
            ],
        ),
        history(
            &long_id,
            vec![
                queued(Some(serde_json::json!("tâche — \"quoted\"\n\u{1F600}"))),
                failed(
                    FailureReason::Interrupted,
                    Some("the process stopped before the outcome was known"),
                ),
            ],
        ),
    ]
}

fn records() -> Vec<Record> {
    histories().into_iter().flatten().collect()
}

/// Damage done to one delegation's stored bytes, as the ledger will find it.
#[derive(Clone, Debug)]
enum Damage {
    /// Nothing: the history as written.
    Intact,
    /// The record at `seq` holds `bytes` in place of its encoding.
    Record { seq: u64, bytes: Vec<u8> },
    /// The delegation's head holds these bytes in place of its summary.
    Head(Vec<u8>),
}

/// A kind of store the damage is read from: it holds `history` (each record
/// with the head its fold gives) with `damage` done to it.
///
/// One definition of the sweeps runs on every kind. Memory (the full sweeps'
/// reference) and sled take the damaged bytes through `Store::append`, as
/// opaque bytes they are; PostgreSQL is written intact and then damaged as an
/// outsider would, by an `UPDATE` of the stored row.
trait Kind {
    /// The store holding `history` damaged by `damage`.
    fn damaged(&mut self, history: &[Record], damage: &Damage) -> Arc<dyn Store>;
}

/// Each record of `history` with the head its fold gives, in the store's
/// terms: (encoded record, encoded head).
fn written(history: &[Record]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut fold = Fold::new(history[0].delegation.clone());
    history
        .iter()
        .map(|record| {
            fold.apply(record).unwrap();
            (
                envelope::encode(record),
                envelope::head::encode(fold.delegation().unwrap()),
            )
        })
        .collect()
}

/// Appends `history` to `store` with `damage` done to the bytes on their way in.
fn append_damaged(store: &dyn Store, history: &[Record], damage: &Damage) {
    let id = &history[0].delegation;
    for (index, (record, head)) in written(history).iter().enumerate() {
        let record = match damage {
            Damage::Record { seq, bytes } if *seq == index as u64 + 1 => bytes,
            _ => record,
        };
        let head = match damage {
            Damage::Head(bytes) => bytes,
            _ => head,
        };
        store
            .append(&[Append {
                id,
                expect: Expect::after(index as u64),
                record,
                head,
            }])
            .unwrap();
    }
}

/// A fresh in-memory store per case.
struct InMemory;

impl Kind for InMemory {
    fn damaged(&mut self, history: &[Record], damage: &Damage) -> Arc<dyn Store> {
        let store = Arc::new(Memory::new());
        append_damaged(store.as_ref(), history, damage);
        store
    }
}

/// A fresh sled store per case, in a directory of its own.
struct InSled(Vec<tempfile::TempDir>);

impl Kind for InSled {
    fn damaged(&mut self, history: &[Record], damage: &Damage) -> Arc<dyn Store> {
        // The previous case's store is dropped by now: remove its files.
        self.0.clear();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Sled::open(dir.path().join("db")).unwrap());
        self.0.push(dir);
        append_damaged(store.as_ref(), history, damage);
        store
    }
}

/// One PostgreSQL schema for every case: each history written intact once,
/// then its row damaged with SQL, and put back before the next case.
#[cfg(feature = "postgres")]
struct InPostgres {
    schema: pg_support::Schema,
    client: postgres::Client,
    written: std::collections::BTreeSet<DelegationId>,
    undo: String,
}

#[cfg(feature = "postgres")]
impl InPostgres {
    /// On a fresh schema, or `None` with no server outside CI.
    fn new() -> Option<Self> {
        let schema = pg_support::fresh("bad_input")?;
        let mut client = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path = {}", schema.name))
            .unwrap();
        Some(InPostgres {
            schema,
            client,
            written: Default::default(),
            undo: String::new(),
        })
    }
}

/// `bytes` as a PostgreSQL `bytea` literal.
#[cfg(feature = "postgres")]
fn bytea(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("decode('{hex}', 'hex')")
}

#[cfg(feature = "postgres")]
impl Kind for InPostgres {
    fn damaged(&mut self, history: &[Record], damage: &Damage) -> Arc<dyn Store> {
        let id = &history[0].delegation;
        if self.written.insert(id.clone()) {
            append_damaged(self.schema.store.as_ref(), history, &Damage::Intact);
        }
        let key = bytea(id.as_str().as_bytes());
        let intact = written(history);
        let mut sql = std::mem::take(&mut self.undo);
        match damage {
            Damage::Intact => {}
            Damage::Record { seq, bytes } => {
                let update = |bytes: &[u8]| {
                    format!(
                        "UPDATE records SET bytes = {} WHERE delegation = {key} AND seq = {seq};",
                        bytea(bytes)
                    )
                };
                sql += &update(bytes);
                self.undo = update(&intact[*seq as usize - 1].0);
            }
            Damage::Head(bytes) => {
                let update = |bytes: &[u8]| {
                    format!(
                        "UPDATE heads SET summary = {} WHERE delegation = {key};",
                        bytea(bytes)
                    )
                };
                sql += &update(bytes);
                self.undo = update(&intact.last().unwrap().1);
            }
        }
        if !sql.is_empty() {
            self.client.batch_execute(&sql).unwrap();
        }
        self.schema.store.clone()
    }
}

/// What the ledger reads of `history` stored with `damage` in a store of `kind`:
/// `status` (the head alone) and, for damage to a record, the delegation (which
/// decodes every record and checks the head against them), which must agree.
fn read_damaged(
    kind: &mut dyn Kind,
    history: &[Record],
    damage: &Damage,
) -> delegation_log::Result<Status> {
    let store = kind.damaged(history, damage);
    let id = &history[0].delegation;
    let ledger = Ledger::with_store(store, Options::new().clock(ManualClock::default()));
    if let Damage::Head(_) = damage {
        return Ok(ledger.status(id)?);
    }
    let delegation = ledger.delegation(id)?.expect("the delegation has records");
    assert_eq!(ledger.status(id)?, delegation.status());
    Ok(delegation.status())
}

/// What the ledger reads when a delegation's record at `seq` holds `bytes` and the
/// others are intact, with the head where it was written (in memory).
fn read_through_ledger(
    history: &[Record],
    seq: usize,
    bytes: &[u8],
) -> delegation_log::Result<Status> {
    let damage = match seq {
        0 => Damage::Intact,
        seq => Damage::Record {
            seq: seq as u64,
            bytes: bytes.to_vec(),
        },
    };
    read_damaged(&mut InMemory, history, &damage)
}

/// What `status` reads when the delegation's head holds `bytes` (in memory).
fn status_with_head(history: &[Record], bytes: &[u8]) -> delegation_log::Result<Status> {
    read_damaged(&mut InMemory, history, &Damage::Head(bytes.to_vec()))
}

#[test]
fn every_single_bit_flip_and_truncation_of_every_head_is_a_typed_error_from_status() {
    let mut checked = 0;
    for history in histories() {
        let mut fold = Fold::new(history[0].delegation.clone());
        for record in &history {
            fold.apply(record).unwrap();
        }
        let head = envelope::head::encode(fold.delegation().unwrap());
        assert_eq!(
            status_with_head(&history, &head).unwrap(),
            fold.delegation().unwrap().status()
        );
        for bit in 0..head.len() * 8 {
            let mut flipped = head.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let what = format!("head bit {bit} of {}", history[0].delegation);
            assert_damage_is_reported(status_with_head(&history, &flipped), &what);
            checked += 1;
        }
        for len in 0..head.len() {
            let what = format!("head cut to {len} bytes of {}", history[0].delegation);
            assert_damage_is_reported(status_with_head(&history, &head[..len]), &what);
            checked += 1;
        }
    }
    println!("{checked} damaged heads, each a typed error from status");
}

fn assert_damage_is_reported(result: delegation_log::Result<Status>, what: &str) {
    match result {
        Err(Error::Corrupt { .. } | Error::UnknownVersion { .. }) => {}
        other => panic!("{what}: the ledger read {other:?}"),
    }
}

/// A record's stored bytes in each format version the ledger reads: the
/// current one, and version 1, which stores written before it still hold.
fn encodings(record: &Record) -> [Vec<u8>; 2] {
    [envelope::encode(record), envelope::encode_v1(record)]
}

#[test]
fn every_single_bit_flip_of_every_record_kind_is_a_typed_error() {
    let mut flips = 0;
    for history in histories() {
        for record in &history {
            for bytes in encodings(record) {
                for bit in 0..bytes.len() * 8 {
                    let mut flipped = bytes.clone();
                    flipped[bit / 8] ^= 1 << (bit % 8);
                    match envelope::decode(&flipped) {
                        Err(DecodeError::UnknownVersion { .. }) => assert!(bit < 8),
                        Err(DecodeError::Checksum { .. }) => assert!(bit >= 8),
                        other => panic!("bit {bit} of {record:?}: {other:?}"),
                    }
                    let what = format!(
                        "bit {bit} of {} seq {} (version {})",
                        record.delegation, record.seq, bytes[0]
                    );
                    assert_damage_is_reported(
                        read_through_ledger(&history, record.seq as usize, &flipped),
                        &what,
                    );
                    flips += 1;
                }
            }
        }
    }
    println!("{flips} single-bit flips, each a typed error through decode and the ledger");
    assert!(flips > 20_000, "only {flips} flips");
}

#[test]
fn every_truncation_of_every_record_kind_is_a_typed_error() {
    let mut truncations = 0;
    for history in histories() {
        for record in &history {
            for bytes in encodings(record) {
                for len in 0..bytes.len() {
                    let cut = &bytes[..len];
                    match envelope::decode(cut) {
                        Err(DecodeError::Truncated { len: found }) => {
                            assert_eq!(found, len);
                            assert!(len < HEADER_LEN);
                        }
                        Err(DecodeError::Checksum { .. }) => assert!(len >= HEADER_LEN),
                        other => panic!("{len} bytes of {record:?}: {other:?}"),
                    }
                    let what = format!(
                        "{len} bytes of {} seq {} (version {})",
                        record.delegation, record.seq, bytes[0]
                    );
                    assert_damage_is_reported(
                        read_through_ledger(&history, record.seq as usize, cut),
                        &what,
                    );
                    truncations += 1;
                }
            }
        }
    }
    println!("{truncations} truncations, each a typed error through decode and the ledger");
}

#[test]
fn every_unknown_version_byte_is_refused_as_such() {
    for history in histories() {
        for record in &history {
            let bytes = envelope::encode(record);
            // Version 1 is known too: its header is the same, so these bytes
            // relabelled as version 1 are a body that is not JSON, not misread.
            for version in (0..=u8::MAX).filter(|v| ![1, envelope::VERSION].contains(v)) {
                let mut other = bytes.clone();
                other[0] = version;
                assert_eq!(
                    envelope::decode(&other),
                    Err(DecodeError::UnknownVersion { found: version })
                );
                match read_through_ledger(&history, record.seq as usize, &other) {
                    Err(Error::UnknownVersion { found, .. }) => assert_eq!(found, version),
                    other => panic!("version {version}: the ledger read {other:?}"),
                }
            }
        }
    }
}

#[test]
fn every_record_kind_decodes_to_itself_and_reads_back_through_the_ledger() {
    for history in histories() {
        for record in &history {
            for bytes in encodings(record) {
                assert_eq!(envelope::decode(&bytes).as_ref(), Ok(record));
            }
        }
        let last = history.last().unwrap();
        let status = read_through_ledger(&history, 0, &[]).unwrap();
        assert_eq!(status.id, last.delegation);
        assert_eq!(status.settled_at.is_some(), history.len() == 2);
    }
}

/// Every damage the sweeps above make, each `stride`th only: (what, history
/// index, damage). Record flips and truncations in both format versions, every
/// unknown version byte, head flips and truncations.
fn damages(stride: usize) -> Vec<(String, usize, Damage)> {
    let mut all = Vec::new();
    for (index, history) in histories().iter().enumerate() {
        for record in history {
            let (id, seq) = (&record.delegation, record.seq);
            let mut push = |what: String, bytes: Vec<u8>| {
                all.push((what, index, Damage::Record { seq, bytes }));
            };
            for bytes in encodings(record) {
                for bit in 0..bytes.len() * 8 {
                    let mut flipped = bytes.clone();
                    flipped[bit / 8] ^= 1 << (bit % 8);
                    push(
                        format!("bit {bit} of {id} seq {seq} v{}", bytes[0]),
                        flipped,
                    );
                }
                for len in 0..bytes.len() {
                    let cut = bytes[..len].to_vec();
                    push(format!("{len} bytes of {id} seq {seq} v{}", bytes[0]), cut);
                }
            }
            let bytes = envelope::encode(record);
            for version in (0..=u8::MAX).filter(|v| ![1, envelope::VERSION].contains(v)) {
                let mut other = bytes.clone();
                other[0] = version;
                push(format!("version {version} of {id} seq {seq}"), other);
            }
        }
        let head = written(history).last().unwrap().1.clone();
        let id = &history[0].delegation;
        for bit in 0..head.len() * 8 {
            let mut flipped = head.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            all.push((
                format!("head bit {bit} of {id}"),
                index,
                Damage::Head(flipped),
            ));
        }
        for len in 0..head.len() {
            let cut = head[..len].to_vec();
            all.push((
                format!("head cut to {len} of {id}"),
                index,
                Damage::Head(cut),
            ));
        }
    }
    all.into_iter().step_by(stride).collect()
}

/// A result as the comparison sees it: the status read, or the error with
/// every field.
fn shown(result: &delegation_log::Result<Status>) -> String {
    match result {
        Ok(status) => format!("Ok({status:?})"),
        Err(error) => format!("Err({error:?}: {error})"),
    }
}

/// Reads every `stride`th damage on `kind` and asserts it gives what memory
/// gives (a damage-reporting typed error, by the full sweeps above): the same
/// variant with the same fields and message. Returns how many it read.
fn same_as_memory(kind: &mut dyn Kind, stride: usize) -> usize {
    let histories = histories();
    let damages = damages(stride);
    for (what, index, damage) in &damages {
        let history = &histories[*index];
        let expected = read_damaged(&mut InMemory, history, damage);
        let shown_expected = shown(&expected);
        assert_damage_is_reported(expected, &format!("memory: {what}"));
        let found = read_damaged(kind, history, damage);
        assert_eq!(shown(&found), shown_expected, "{what}");
    }
    for history in &histories {
        let intact = read_damaged(kind, history, &Damage::Intact);
        let expected = read_damaged(&mut InMemory, history, &Damage::Intact);
        assert_eq!(
            shown(&intact),
            shown(&expected),
            "{}",
            history[0].delegation
        );
        assert!(intact.is_ok());
    }
    damages.len()
}

/// Sled stores what it is given as opaque bytes too: a sample of the damages
/// (each 97th, a fresh store each) reads as the same typed error as in memory.
#[test]
fn damaged_records_and_heads_in_sled_give_the_same_typed_errors_as_in_memory() {
    let read = same_as_memory(&mut InSled(Vec::new()), 97);
    println!("{read} damaged records and heads read from sled");
    assert!(read > 700, "only {read}");
}

/// A row damaged with SQL after an intact write (a sample: each 7th damage)
/// reads as the same typed error as in memory: the store hands the ledger the
/// row's bytes, and the ledger's checks judge them alike on every store.
#[cfg(feature = "postgres")]
#[test]
fn rows_damaged_with_sql_on_postgresql_give_the_same_typed_errors_as_in_memory() {
    let Some(mut kind) = InPostgres::new() else {
        return;
    };
    let read = same_as_memory(&mut kind, 7);
    println!("{read} damaged rows read from PostgreSQL");
    assert!(read > 4_000, "only {read}");
}

// ---------------------------------------------------------------------------
// Arbitrary bytes
// ---------------------------------------------------------------------------

/// Arbitrary edits of a valid body of `version`: replaced, inserted and deleted
/// bytes drawn mostly from JSON's own alphabet (and from any byte, which is what
/// reaches version 2's binary decoder), so that the edits reach the strict
/// decoder.
fn edited_body(version: u8) -> impl Strategy<Value = Vec<u8>> {
    let encode = if version == 1 {
        envelope::encode_v1
    } else {
        envelope::encode
    };
    let bodies: Vec<Vec<u8>> = records()
        .iter()
        .map(|record| encode(record)[HEADER_LEN..].to_vec())
        .collect();
    let byte = prop_oneof![
        prop::sample::select(b"{}[]\":,0123456789.eE+- \\nutrfalsyq".to_vec()),
        any::<u8>(),
    ];
    (
        prop::sample::select(bodies),
        prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, byte), 1..6),
    )
        .prop_map(|(mut body, edits)| {
            edit(&mut body, &edits);
            body
        })
}

/// Whatever decodes re-encodes, in the version it was read in, to the same bytes.
fn assert_decode_round_trips_or_errs(bytes: &[u8]) {
    if let Ok(record) = envelope::decode(bytes) {
        let again = match bytes[0] {
            1 => envelope::encode_v1(&record),
            _ => envelope::encode(&record),
        };
        assert_eq!(again, bytes, "decoded {record:?}");
    }
}

/// Feeds `bytes` to the ledger as the only record of a delegation, and as its
/// head's summary.
fn read_alone(bytes: &[u8]) {
    let store = Arc::new(Memory::new());
    let id: DelegationId = "q".parse().unwrap();
    store
        .append(&[Append {
            id: &id,
            expect: Expect::Empty,
            record: bytes,
            head: bytes,
        }])
        .unwrap();
    let ledger = Ledger::with_store(store, Options::new());
    let _ = ledger.status(&id);
    let _ = ledger.history(&id);
    let _ = ledger.replay().count();
    let _ = ledger.record(&id, Event::delivered(None).unwrap());
}

proptest! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/bad_input.txt",
        ))),
        .. Config::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        assert_decode_round_trips_or_errs(&bytes);
        read_alone(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_checksum_never_panic_and_round_trip(
        version in prop_oneof![Just(1u8), Just(envelope::VERSION)],
        hash in any::<[u8; 32]>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let bytes = sealed_bytes(version, hash, &body);
        assert_decode_round_trips_or_errs(&bytes);
        read_alone(&bytes);
    }

    #[test]
    fn edited_json_bodies_behind_a_valid_checksum_decode_strictly(
        hash in any::<[u8; 32]>(),
        body in edited_body(1),
    ) {
        let bytes = sealed_bytes(1, hash, &body);
        assert_decode_round_trips_or_errs(&bytes);
        read_alone(&bytes);
    }

    #[test]
    fn edited_binary_bodies_behind_a_valid_checksum_decode_strictly(
        hash in any::<[u8; 32]>(),
        body in edited_body(envelope::VERSION),
    ) {
        let bytes = sealed_bytes(envelope::VERSION, hash, &body);
        assert_decode_round_trips_or_errs(&bytes);
        read_alone(&bytes);
    }
}

// ---------------------------------------------------------------------------
// Damaged sled files
// ---------------------------------------------------------------------------

const OFFSETS_PER_FILE: u64 = 20;
const OVERWRITE_LEN: usize = 16;

/// A sled store with delegations in every state, and what each one reads as.
fn pristine(dir: &Path) -> BTreeMap<DelegationId, (Status, Vec<Record>)> {
    let clock = ManualClock::default();
    let ledger = Ledger::open_with(dir, Options::new().clock(clock.clone())).unwrap();
    for n in 0..60u16 {
        let id: DelegationId = format!("delegation-{n:03}").parse().unwrap();
        let task = (n % 3 == 0)
            .then(|| serde_json::json!({"n": n, "text": "x".repeat(usize::from(n) * 7)}));
        ledger.record(&id, queued(task)).unwrap();
        clock.advance(std::time::Duration::from_millis(3));
        let outcome = match n % 4 {
            0 => None,
            1 => Some(Event::delivered(Some(200)).unwrap()),
            2 => Some(failed(FailureReason::HttpStatus(503), Some("busy"))),
            _ => Some(failed(FailureReason::TargetOffline, None)),
        };
        if let Some(outcome) = outcome {
            ledger.record(&id, outcome).unwrap();
        }
    }
    ledger.flush().unwrap();
    let state = ledger
        .replay()
        .map(|d| {
            let d = d.unwrap();
            let history = ledger.history(&d.id).unwrap();
            (d.id.clone(), (d.status(), history))
        })
        .collect();
    drop(ledger);
    state
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// What one damaged copy read as.
#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    refused_at_open: u64,
    detected: u64,
    clean: u64,
    /// Delegations that read, without error, as an earlier state of themselves.
    rolled_back: u64,
    /// Delegations that read, without error, as `not_found`.
    vanished: u64,
    /// Copies that read silently different, whose audit reported the loss.
    silent_caught_by_audit: u64,
    /// Copies that read silently different, whose audit did not see it.
    silent_missed_by_audit: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.cases += other.cases;
        self.refused_at_open += other.refused_at_open;
        self.detected += other.detected;
        self.clean += other.clean;
        self.rolled_back += other.rolled_back;
        self.vanished += other.vanished;
        self.silent_caught_by_audit += other.silent_caught_by_audit;
        self.silent_missed_by_audit += other.silent_missed_by_audit;
    }
}

/// Opens a damaged copy, replays it and asks every original delegation's status.
/// Panics only if something reads as a state that was never written.
fn judge(
    dir: &Path,
    original: &BTreeMap<DelegationId, (Status, Vec<Record>)>,
    tally: &mut Tally,
    what: &str,
) {
    tally.cases += 1;
    let ledger = match Ledger::open(dir) {
        Ok(ledger) => ledger,
        Err(
            Error::Open(OpenError::Panicked { .. })
            | Error::Corrupt { .. }
            | Error::Storage(_)
            | Error::UnknownVersion { .. },
        ) => {
            tally.refused_at_open += 1;
            return;
        }
        Err(other) => panic!("{what}: unexpected error at open: {other:?}"),
    };
    let mut errors = 0;
    for delegation in ledger.replay() {
        match delegation {
            Ok(delegation) => {
                let Some((_, history)) = original.get(&delegation.id) else {
                    panic!("{what}: replay invented delegation {}", delegation.id);
                };
                let replayed = ledger.history(&delegation.id).unwrap();
                assert!(
                    history.starts_with(&replayed),
                    "{what}: replay of {} is not a prefix of what was written",
                    delegation.id
                );
            }
            Err(_) => errors += 1,
        }
    }
    let mut silent = false;
    for (id, (status, written)) in original {
        match ledger.status(id) {
            Ok(read) if &read == status => {}
            Ok(read) => {
                silent = true;
                let read_history = ledger.history(id).unwrap();
                assert!(
                    written.starts_with(&read_history),
                    "{what}: {id} reads as {read:?}, a state never written (was {status:?})"
                );
                if read_history.is_empty() {
                    tally.vanished += 1;
                } else {
                    tally.rolled_back += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    drop(ledger);
    if errors > 0 {
        tally.detected += 1;
    } else if !silent {
        tally.clean += 1;
    }
    if silent {
        // What reads could not tell, the audit must: the store's count of
        // acknowledged records, kept outside sled's files, exceeds what is left.
        match delegation_log::audit::audit_path(dir, &delegation_log::ManualClock::default()) {
            Ok(verdict) if !verdict.violations.is_empty() => tally.silent_caught_by_audit += 1,
            Ok(_) => tally.silent_missed_by_audit += 1,
            Err(_) => tally.silent_caught_by_audit += 1,
        }
    }
}

#[test]
fn overwritten_sled_files_give_typed_errors_or_a_true_prefix_of_the_log() {
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("pristine");
    let original = pristine(&clean);
    let mut total = Tally::default();
    let mut rng = 0x0bad_5eed_u64;
    let mut case = 0;
    for file in files(&clean) {
        let relative = file.strip_prefix(&clean).unwrap().to_path_buf();
        let len = std::fs::metadata(&file).unwrap().len();
        if len == 0 {
            continue;
        }
        let mut tally = Tally::default();
        for k in 0..OFFSETS_PER_FILE {
            let offset = len * k / OFFSETS_PER_FILE;
            for random in [false, true] {
                let copy = root.path().join(format!("case-{case}"));
                case += 1;
                copy_dir(&clean, &copy);
                let mut bytes = std::fs::read(copy.join(&relative)).unwrap();
                for (i, byte) in bytes
                    .iter_mut()
                    .skip(offset as usize)
                    .take(OVERWRITE_LEN)
                    .enumerate()
                {
                    *byte = if random {
                        rng = rng
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        (rng >> 56) as u8 ^ i as u8
                    } else {
                        0xFF
                    };
                }
                std::fs::write(copy.join(&relative), &bytes).unwrap();
                let what = format!(
                    "{} at offset {offset} ({})",
                    relative.display(),
                    if random { "random" } else { "0xFF" }
                );
                let judged = catch_unwind(AssertUnwindSafe(|| {
                    judge(&copy, &original, &mut tally, &what)
                }));
                if let Err(panic) = judged {
                    std::panic::resume_unwind(panic);
                }
                std::fs::remove_dir_all(&copy).unwrap();
            }
        }
        println!(
            "sled overwrite sweep, {} ({len} bytes): {tally:?}",
            relative.display()
        );
        total.add(&tally);
    }
    println!("sled overwrite sweep, all files: {total:?}");
    assert!(total.cases >= 2 * OFFSETS_PER_FILE, "{total:?}");
    assert_eq!(
        total.silent_missed_by_audit, 0,
        "a loss that reads could not see went past the audit too: {total:?}"
    );
}
