//! Guards what people read when something goes wrong: the text of every error the
//! ledger returns for refusals, damage and failures, pinned as a snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use delegation_log::envelope;
use delegation_log::ledger::Options;
use delegation_log::store::{Append, Expect, Fault, Faulty, Memory, Store};
use delegation_log::{Error, Event, FailureReason, Ledger, ManualClock};

#[test]
fn error_messages_say_what_happened_and_where() {
    let store = Arc::new(Memory::new());
    let ledger = Ledger::with_store(store.clone(), Options::new().clock(ManualClock::default()));
    let id = "task-9".parse().unwrap();
    let mut messages = vec![
        ledger
            .record(&id, Event::delivered(None).unwrap())
            .unwrap_err(),
    ];
    ledger
        .record(&id, Event::queued("planner", "reviewer"))
        .unwrap();
    messages.push(
        ledger
            .record(&id, Event::queued("planner", "reviewer"))
            .unwrap_err(),
    );
    ledger
        .record(&id, Event::failed(FailureReason::Timeout, None).unwrap())
        .unwrap();
    messages.push(
        ledger
            .record(&id, Event::delivered(Some(200)).unwrap())
            .unwrap_err(),
    );

    // Damage: a record whose checksum is wrong, and one of an unknown version.
    let bad = "bad".parse().unwrap();
    store
        .append(&[Append {
            id: &bad,
            expect: Expect::Empty,
            record: b"\x01\x00\x00\x00\x00garbage",
            head: b"\x02\x00\x00\x00\x00not a head",
        }])
        .unwrap();
    messages.push(ledger.history(&bad).unwrap_err().into());
    // A head that does not decode: `status` reads only the head.
    messages.push(ledger.status(&bad).unwrap_err().into());
    let newer = "newer".parse().unwrap();
    let mut bytes = envelope::encode(&ledger.history(&id).unwrap()[0]);
    bytes[0] = 9;
    store
        .append(&[Append {
            id: &newer,
            expect: Expect::Empty,
            record: &bytes,
            head: b"",
        }])
        .unwrap();
    messages.push(ledger.history(&newer).unwrap_err().into());

    let faulty = Arc::new(Faulty::seeded(1));
    let poisoned = Ledger::with_store(faulty.clone(), Options::new().clock(ManualClock::default()));
    faulty.inject(Fault::FailFlush);
    messages.push(poisoned.record(&id, Event::queued("p", "r")).unwrap_err());
    messages.push(poisoned.record(&id, Event::queued("p", "r")).unwrap_err());
    messages.push(Error::from(Event::delivered(Some(503)).unwrap_err()));

    let text: Vec<String> = messages.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(text.join("\n"));
}
