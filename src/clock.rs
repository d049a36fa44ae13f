//! Where timestamps come from: the [`Clock`] trait, the system's wall clock, and a
//! manual clock that moves only when told to, for deterministic tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::event::Timestamp;

/// A source of timestamps for records.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from(chrono::Utc::now())
    }
}

/// A clock that moves only when told to, so tests are deterministic. Clones share
/// the same time.
///
/// ```
/// use std::time::Duration;
/// use delegation_log::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix_nanos(1_780_000_000_000_000_000);
/// let before = clock.now();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now().since(before), Duration::from_millis(250));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `nanos` after the Unix epoch.
    pub fn at_unix_nanos(nanos: i64) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(nanos)),
        }
    }

    /// Moves the clock forward (saturating at the end of time).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `nanos` after the Unix epoch.
    pub fn set_unix_nanos(&self, nanos: i64) {
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// 2026-06-07T01:32:07Z, the example instant of the format page.
    fn default() -> Self {
        Self::at_unix_nanos(1_780_795_927_000_000_000)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.nanos.load(Ordering::SeqCst))
    }
}
