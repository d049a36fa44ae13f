//! Guards recovery by redelivery (`Recovery::Redeliver`): a crash at any point of a
//! redelivery never leaves the original failed without its retry, nor a retry
//! without its original's failure; one damaged delegation or one id close to the
//! length limit does not keep the others queued; and every attempt of a task goes
//! out under the messageId of the first, however many crashes lie between them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use delegation_log::dispatch::{self, Dispatcher, Recovery};
use delegation_log::event::ReasonCode;
use delegation_log::ledger::Options;
use delegation_log::store::{Append, AppendError, Expect, Faulty, Head, Memory, Store, Stream};
use delegation_log::transport::Immediate;
use delegation_log::{
    DelegationId, Error, Event, Ledger, ManualClock, ReadError, StatusKind, StorageError,
};
use delivery_support::{Silent, recording};
use support::id;

fn ledger_on(store: Arc<dyn Store>) -> Ledger {
    Ledger::with_store(store, Options::new().clock(ManualClock::default()))
}

/// The delegation an original's detail names as its redelivery, if it names one.
fn named_redelivery(ledger: &Ledger, original: &DelegationId) -> Option<DelegationId> {
    let status = ledger.status(original).unwrap();
    status
        .error_detail?
        .strip_prefix("redelivered as ")
        .map(|new| new.parse().unwrap())
}

/// A store over a [`Faulty`] one whose process "dies" just before its `at`-th write
/// or flush: the faulty store crashes there (losing or tearing what was not
/// flushed), and from then on every call fails, as nothing runs in a dead process.
struct Doomed {
    inner: Arc<Faulty>,
    at: usize,
    tear: bool,
    ops: AtomicUsize,
    dead: AtomicBool,
}

impl Doomed {
    fn new(inner: Arc<Faulty>, at: usize, tear: bool) -> Self {
        Doomed {
            inner,
            at,
            tear,
            ops: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
        }
    }

    /// Counts one write or flush; false once the process is dead.
    fn survives(&self) -> bool {
        if self.dead.load(Ordering::SeqCst) {
            return false;
        }
        if self.ops.fetch_add(1, Ordering::SeqCst) == self.at {
            self.dead.store(true, Ordering::SeqCst);
            if self.tear {
                self.inner.crash_tearing();
            } else {
                self.inner.crash();
            }
            return false;
        }
        true
    }

    fn died(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

fn dead() -> StorageError {
    std::io::Error::other("the process is dead").into()
}

impl Store for Doomed {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        if !self.survives() {
            return Err(dead().into());
        }
        self.inner.append(appends)
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        if self.died() {
            return Err(dead().into());
        }
        self.inner.head(id)
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        if self.died() {
            return Err(dead().into());
        }
        self.inner.history(id)
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        if self.died() {
            return Box::new(std::iter::once(Err(dead().into())));
        }
        self.inner.scan()
    }

    fn flush(&self) -> Result<(), Error> {
        if !self.survives() {
            return Err(dead().into());
        }
        self.inner.flush()
    }
}

/// Runs one redelivery of `lost` on a process that dies before its `at`-th write
/// or flush; returns whether it died.
fn redeliver_dying_at(faulty: &Arc<Faulty>, at: usize, tear: bool) -> bool {
    let doomed = Arc::new(Doomed::new(Arc::clone(faulty), at, tear));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dispatcher = Dispatcher::new(ledger_on(doomed.clone()), Immediate::accepting());
        let _ = dispatcher.recover(Recovery::Redeliver).await;
        let _ = dispatcher.shutdown().await;
    });
    doomed.died()
}

/// The pairing invariant after a crash: the original is still queued and nothing
/// else exists, or it failed naming a redelivery that exists. A torn write may
/// damage a later record of the redelivery (its outcome), never the pair.
fn assert_paired(ledger: &Ledger, lost: &DelegationId, case: &str) {
    let original = ledger
        .status(lost)
        .unwrap_or_else(|e| panic!("{case}: the original is damaged: {e}"));
    match original.status {
        StatusKind::Queued => {
            let others: Vec<_> = ledger
                .store()
                .scan()
                .map(|stream| stream.unwrap().id)
                .filter(|id| id != lost)
                .collect();
            assert!(
                others.is_empty(),
                "{case}: {lost} is queued, yet {others:?} exist"
            );
        }
        StatusKind::Failed => {
            assert_eq!(original.reason, Some(ReasonCode::Interrupted), "{case}");
            let redelivery = named_redelivery(ledger, lost)
                .unwrap_or_else(|| panic!("{case}: {lost} failed without naming a redelivery"));
            assert!(
                !ledger
                    .store()
                    .history(&redelivery)
                    .unwrap()
                    .entries
                    .is_empty(),
                "{case}: {lost} names {redelivery}, which does not exist"
            );
            // The redelivery links back (unless a tear damaged its outcome).
            if let Ok(Some(delegation)) = ledger.delegation(&redelivery) {
                assert_eq!(delegation.retry_of.as_ref(), Some(lost), "{case}");
                assert_eq!(delegation.attempt, 2, "{case}");
            }
        }
        other => panic!("{case}: {lost} is {other:?}"),
    }
}

/// The next process recovers whatever the dead one left: afterwards nothing is
/// queued, the store audits clean, and every attempt went out as `lost`.
fn recover_again(ledger: &Ledger, lost: &DelegationId, case: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (transport, sent) = recording();
    runtime.block_on(async {
        let dispatcher = Dispatcher::new(ledger.clone(), transport);
        let report = dispatcher.recover(Recovery::Redeliver).await;
        assert!(report.is_complete(), "{case}: {:?}", report.failed);
        dispatcher.shutdown().await.unwrap();
    });
    assert!(ledger.queued().unwrap().is_empty(), "{case}");
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{case}: {}", verdict.to_plain());
    for (delegation, message_id) in sent.lock().unwrap().iter() {
        assert_eq!(
            message_id, lost,
            "{case}: {delegation} went out as {message_id}"
        );
    }
}

/// Defect 3 of the adversarial review: recovery settled the original as
/// interrupted, "redelivered as X.r1", before X.r1 was queued, so a kill between
/// the two left an original pointing at a redelivery that never existed, and the
/// task was lost without a trace. Here the process dies before every write and
/// flush of a redelivery in turn, with and without tearing the last write.
#[test]
fn a_crash_anywhere_in_a_redelivery_never_leaves_the_original_failed_without_its_retry() {
    let lost = id("lost");
    let mut at = 0;
    loop {
        let mut died = false;
        for tear in [false, true] {
            let case = format!("dying before write or flush {at}, tear {tear}");
            let faulty = Arc::new(Faulty::seeded(at as u64));
            ledger_on(faulty.clone())
                .record(&lost, Event::queued("planner", "reviewer"))
                .unwrap();
            died |= redeliver_dying_at(&faulty, at, tear);
            faulty.crash();

            let reopened = ledger_on(faulty.clone());
            assert_paired(&reopened, &lost, &case);
            if !tear {
                let verdict = reopened.audit().unwrap();
                assert!(verdict.is_clean(), "{case}: {}", verdict.to_plain());
                recover_again(&reopened, &lost, &case);
            }
        }
        if !died {
            break;
        }
        at += 1;
    }
    assert!(at >= 4, "the sweep covered only {at} crash points");
}

/// Defect 5 of the adversarial review: one damaged delegation, or an id of 254 or
/// 255 bytes (whose `.r1` suffix would pass the 256-byte limit), stopped
/// `recover --redeliver` at once and left every other delegation queued.
#[tokio::test]
async fn redelivery_recovers_every_delegation_even_when_one_is_damaged_or_its_id_is_near_the_limit()
{
    let store = Arc::new(Memory::new());
    let ledger = ledger_on(store.clone());
    let mut readable = vec![id("a"), id("c")];
    for len in [250, 253, 254, 255, 256] {
        readable.push(id(&"x".repeat(len)));
    }
    for original in &readable {
        ledger
            .record(original, Event::queued("planner", "reviewer"))
            .unwrap();
    }
    // Bytes that are no record (version 1, then garbage), under an id that sorts
    // between the others.
    store
        .append(&[Append {
            id: &id("b"),
            expect: Expect::Empty,
            record: b"\x01 not a record",
            head: b"",
        }])
        .unwrap();

    let (transport, sent) = recording();
    let dispatcher = Dispatcher::new(ledger.clone(), transport);
    let report = dispatcher.recover(Recovery::Redeliver).await;
    dispatcher.shutdown().await.unwrap();

    // The damaged one is reported, by id, with its own error; nothing else is.
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].id, Some(id("b")));
    assert!(
        matches!(
            report.failed[0].error,
            dispatch::Error::Ledger(Error::Corrupt { .. })
        ),
        "{}",
        report.failed[0].error
    );
    let recovered: Vec<_> = report.recovered.iter().map(|r| r.id.clone()).collect();
    let mut expected = readable.clone();
    expected.sort_by_key(delegation_log::store::key::prefix);
    assert_eq!(recovered, expected);

    for original in &readable {
        let status = ledger.status(original).unwrap();
        assert_eq!(
            status.status,
            StatusKind::Failed,
            "{original} was left queued"
        );
        let redelivery = named_redelivery(&ledger, original).unwrap();
        let plain = format!("{original}.r1");
        if plain.len() <= 256 {
            assert_eq!(redelivery.as_str(), plain);
        } else {
            // A prefix of the original, `~`, 16 hex digits of its hash, `.r1`.
            let (stem, suffix) = redelivery.as_str().rsplit_once('~').unwrap();
            assert!(original.as_str().starts_with(stem), "{redelivery}");
            assert_eq!(suffix.len(), 16 + 3, "{redelivery}");
            assert!(suffix.ends_with(".r1"), "{redelivery}");
            assert!(redelivery.as_str().len() <= 256);
        }
        let retry = ledger.delegation(&redelivery).unwrap().unwrap();
        assert_eq!(retry.retry_of.as_ref(), Some(original));
        assert_eq!(retry.attempt, 2);
        assert_eq!(
            ledger.status(&redelivery).unwrap().status,
            StatusKind::Delivered
        );
        assert!(
            sent.lock()
                .unwrap()
                .contains(&(redelivery.clone(), original.clone())),
            "{redelivery} was not sent under the message id {original}"
        );
    }
}

/// Defect 6 of the adversarial review: a redelivery took its message id from the
/// delegation it replaced, so the first redelivery X.r1 went out as X but the
/// second, after another crash, went out as X.r1, and receivers could not drop the
/// repeat.
#[tokio::test]
async fn a_second_redelivery_goes_out_under_the_first_attempts_message_id() {
    let store: Arc<dyn Store> = Arc::new(Memory::new());
    let x = id("x");
    ledger_on(store.clone())
        .record(&x, Event::queued("planner", "reviewer"))
        .unwrap();

    // The first process redelivers x, and dies while the redelivery is in flight.
    let first = Dispatcher::new(ledger_on(store.clone()), Silent);
    let _ = first.recover(Recovery::Redeliver).await;
    let second_attempt = named_redelivery(&ledger_on(store.clone()), &x).unwrap();
    drop(first);

    // The next process redelivers the redelivery.
    let reopened = ledger_on(store.clone());
    assert_eq!(
        reopened.status(&second_attempt).unwrap().status,
        StatusKind::Queued
    );
    let (transport, sent) = recording();
    let second = Dispatcher::new(reopened.clone(), transport);
    let _ = second.recover(Recovery::Redeliver).await;
    second.shutdown().await.unwrap();

    let third_attempt = named_redelivery(&reopened, &second_attempt).unwrap();
    assert_eq!(third_attempt, id("x.r2"));
    let third = reopened.delegation(&third_attempt).unwrap().unwrap();
    assert_eq!(third.retry_of, Some(second_attempt.clone()));
    assert_eq!(third.attempt, 3);
    assert_eq!(
        reopened.first_attempt(&third_attempt).unwrap(),
        Some(x.clone())
    );
    assert_eq!(
        *sent.lock().unwrap(),
        [(third_attempt.clone(), x.clone())],
        "the third attempt must go out under the first attempt's message id"
    );
    assert_eq!(
        reopened.status(&third_attempt).unwrap().status,
        StatusKind::Delivered
    );
}
