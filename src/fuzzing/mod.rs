//! Fuzz operations and their checks, as library functions (feature `fuzzing`), and
//! the one reference model of the ledger that they and the property tests share.
//!
//! The cargo-fuzz targets in `fuzz/` call these, and so does `tests/fuzz_seeds_pass.rs`
//! over the committed seed corpora, so the same checks run under the nightly fuzzer
//! and under stable `cargo test`. Each function panics only when it finds a real
//! violation of the crate's promises; a panic is the fuzzer's signal.
//!
//! - [`decode_record`]: stored bytes never panic the record or head decoder, and
//!   whatever decodes re-encodes to the same bytes.
//! - [`ops_with_crashes`]: a sequence of operations on the fault-injecting store,
//!   with crashes, torn writes, failed writes and flushes, reopens and recovery,
//!   checked step by step against the [`Model`].
//! - [`verify_jsonl`]: arbitrary bytes judged as a JSON Lines log never panic
//!   `verify`, the verdict is the same when run again and keeps its own rules
//!   (violations in line order, within the log, counts adding up), and a clean log
//!   survives `import` then `export` with the same verdict.
//!
//! The [`Model`] is the one reference model of the ledger over the fault-injecting
//! store: `tests/ledger_agrees_with_model.rs` drives it with
//! proptest-state-machine (adding racing writers),
//! `tests/refused_events_change_nothing.rs` with random events on the memory
//! store, and [`ops_with_crashes`] with the fuzzer's scripts. Each [`Transition`]
//! is taken by the model first, then by the [`Subject`] (a real ledger over a
//! [`Faulty`] store, or any store), whose answers, postconditions and invariants
//! are checked against the model's.
//!
//! [`Faulty`]: crate::store::Faulty

mod decode;
mod model;
mod pool;
mod script;
mod subject;
mod transition;
mod verify;

pub use self::decode::decode_record;
pub use self::model::Model;
pub use self::pool::{FIRST_SLOTS, POOL, pool_id};
pub use self::script::{MAX_OPS, Op, Reason, Script, ops_with_crashes};
pub use self::subject::Subject;
pub use self::transition::Transition;
pub use self::verify::verify_jsonl;
