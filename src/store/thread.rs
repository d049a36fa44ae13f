//! Whether the current thread may block on a client that drives a tokio
//! runtime of its own, as the blocking `postgres` client does.
//!
//! Such a client panics on a thread that is already running a runtime (an
//! async worker, or inside `block_on`). It is at home on a thread outside any
//! runtime, and on tokio's blocking threads (`spawn_blocking`), which carry a
//! runtime's handle but run none. Tokio does not say which of these a thread
//! with a handle is, so the crate marks the blocking work it starts itself
//! ([`marked`]); anything else with a handle counts as unsafe, and a store
//! hands its work to a thread of its own instead (see `postgres/pool.rs`).

use std::cell::Cell;

thread_local! {
    static MARKED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` with this thread marked as one that runs no runtime. For
/// blocking work that the crate runs with `tokio::task::spawn_blocking`
/// (or on a plain thread) only: never inside an async task.
pub(crate) fn marked<R>(work: impl FnOnce() -> R) -> R {
    /// Puts the mark back as it was, even if `work` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            MARKED.set(self.0);
        }
    }
    let _restore = Restore(MARKED.replace(true));
    work()
}

/// Whether a client that starts a runtime of its own may run on this thread:
/// it is outside any tokio runtime, or [`marked`]. A thread whose tokio
/// context is gone (it is ending, and its thread-locals are being destroyed)
/// may not: the client's runtime would need that context.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn may_block() -> bool {
    MARKED.get()
        || matches!(tokio::runtime::Handle::try_current(), Err(e) if e.is_missing_context())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_thread_may_block_and_an_async_task_may_not_unless_marked() {
        assert!(may_block(), "a plain thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            assert!(!may_block(), "inside block_on");
            assert!(marked(may_block), "marked");
            assert!(!may_block(), "the mark is gone after the work");
            let blocking = tokio::task::spawn_blocking(|| (may_block(), marked(may_block)));
            assert_eq!(
                blocking.await.ok(),
                Some((false, true)),
                "a blocking thread"
            );
        });
    }

    #[test]
    fn the_mark_is_put_back_after_a_panic() {
        let panicked = std::panic::catch_unwind(|| marked(|| panic!("work")));
        assert!(panicked.is_err());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async { assert!(!may_block()) });
    }
}
