//! Guards the store-flush span (feature `tracing`): each flush the ledger runs for
//! its writers is one `store_flush` span whose `durable` field says whether it
//! synced to the device; a crash-safe ledger's flushes say `false`, and a buffered
//! ledger runs none for a write.
#![cfg(feature = "tracing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use delegation_log::ledger::Options;
use delegation_log::{Durability, Event, Ledger};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};

/// A subscriber that keeps the name and fields of every span opened.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, String)>>>);

/// Writes each field as `name=value`.
struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?}", field.name()));
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = String::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((span.metadata().name().to_owned(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The `store_flush` spans opened while one lifecycle is recorded at `durability`.
fn flush_spans(durability: Durability) -> Vec<String> {
    let spans = Spans::default();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_with(
        dir.path().join("log"),
        Options::new().durability(durability),
    )
    .unwrap();
    let id = "traced".parse().unwrap();
    tracing::subscriber::with_default(spans.clone(), || {
        ledger
            .record(&id, Event::queued("planner", "target"))
            .unwrap();
        ledger
            .record(&id, Event::delivered(Some(200)).unwrap())
            .unwrap();
    });
    let spans = spans.0.lock().unwrap();
    spans
        .iter()
        .filter(|(name, _)| name == "store_flush")
        .map(|(_, fields)| fields.clone())
        .collect()
}

#[test]
fn each_durable_write_is_flushed_under_a_store_flush_span_that_says_it_synced() {
    assert_eq!(flush_spans(Durability::Durable), ["durable=true"; 2]);
}

#[test]
fn a_crash_safe_ledgers_flush_spans_say_they_did_not_sync() {
    assert_eq!(flush_spans(Durability::CrashSafe), ["durable=false"; 2]);
}

#[test]
fn a_buffered_write_runs_no_flush() {
    assert_eq!(flush_spans(Durability::Buffered), Vec::<String>::new());
}
