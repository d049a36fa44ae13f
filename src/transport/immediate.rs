//! A transport that answers at once, from a closure: no network, no waiting. For
//! tests, examples and benchmarks, where the dispatcher and the ledger are measured.

use std::fmt;

use super::{Accepted, BoxFuture, Failure, Message, Transport};

/// A transport that answers at once, with whatever its closure says: for tests and
/// benchmarks.
///
/// ```
/// use delegation_log::transport::{Accepted, Immediate};
///
/// let always_ok = Immediate::new(|_message| Ok(Accepted::status(200)));
/// # let _ = always_ok;
/// ```
pub struct Immediate<F> {
    answer: F,
}

impl<F> Immediate<F>
where
    F: Fn(&Message) -> Result<Accepted, Failure> + Send + Sync + 'static,
{
    /// A transport whose every send resolves at once with `answer(message)`.
    pub fn new(answer: F) -> Self {
        Immediate { answer }
    }
}

impl Immediate<fn(&Message) -> Result<Accepted, Failure>> {
    /// A transport that accepts everything with status 200.
    pub fn accepting() -> Self {
        Immediate {
            answer: |_| Ok(Accepted::status(200)),
        }
    }
}

impl<F> fmt::Debug for Immediate<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Immediate").finish_non_exhaustive()
    }
}

impl<F> Transport for Immediate<F>
where
    F: Fn(&Message) -> Result<Accepted, Failure> + Send + Sync + 'static,
{
    fn send(&self, message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        let answer = (self.answer)(&message);
        Box::pin(std::future::ready(answer))
    }
}
