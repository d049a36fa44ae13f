//! A memory store with one behaviour changed, for the tests that need a store
//! to lose a race, conflict for ever or flush slowly: an append or a flush hook
//! runs in place of the memory store's own, and every other call goes to the
//! memory store underneath. Like any store a test writes, it keeps no index and
//! no ownership (the trait's defaults), so the ledger over it scans. It can
//! also say it is remote ([`Store::remote`]), and counts the heads read and
//! the scans begun.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use delegation_log::ReadError;
use delegation_log::store::{Append, AppendError, Head, Memory, Store, Stream};
use delegation_log::{DelegationId, Result};

type AppendHook = Box<dyn Fn(&Memory, &[Append<'_>]) -> Result<(), AppendError> + Send + Sync>;
type FlushHook = Box<dyn Fn(&Memory) -> Result<()> + Send + Sync>;

/// A memory store whose appends or flushes a test's hook makes.
pub struct Hooked {
    inner: Arc<Memory>,
    append: Option<AppendHook>,
    flush: Option<FlushHook>,
    remote: bool,
    head_reads: AtomicUsize,
    scans: AtomicUsize,
}

impl Hooked {
    /// Every call forwarded to `inner` (which others may share), until a hook
    /// is set.
    pub fn over(inner: Arc<Memory>) -> Self {
        Hooked {
            inner,
            append: None,
            flush: None,
            remote: false,
            head_reads: AtomicUsize::new(0),
            scans: AtomicUsize::new(0),
        }
    }

    /// Says it is remote, as a server shared by other processes is: a ledger
    /// over it writes on the heads it remembers, unread.
    pub fn remote(mut self) -> Self {
        self.remote = true;
        self
    }

    /// How many heads were read ([`Store::head`]) so far.
    pub fn head_reads(&self) -> usize {
        self.head_reads.load(Ordering::SeqCst)
    }

    /// How many scans ([`Store::scan`]) were begun so far.
    pub fn scans(&self) -> usize {
        self.scans.load(Ordering::SeqCst)
    }

    /// Appends go through `hook`, given the memory store underneath.
    pub fn on_append(
        mut self,
        hook: impl Fn(&Memory, &[Append<'_>]) -> Result<(), AppendError> + Send + Sync + 'static,
    ) -> Self {
        self.append = Some(Box::new(hook));
        self
    }

    /// Flushes (and, by the trait's default, crash-safe flushes) go through
    /// `hook`, given the memory store underneath.
    pub fn on_flush(
        mut self,
        hook: impl Fn(&Memory) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.flush = Some(Box::new(hook));
        self
    }
}

impl Store for Hooked {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        match &self.append {
            Some(hook) => hook(&self.inner, appends),
            None => self.inner.append(appends),
        }
    }
    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        self.head_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(id)
    }
    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        self.inner.history(id)
    }
    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.scan()
    }
    fn flush(&self) -> Result<()> {
        match &self.flush {
            Some(hook) => hook(&self.inner),
            None => self.inner.flush(),
        }
    }
    fn format(&self) -> u8 {
        self.inner.format()
    }
    fn remote(&self) -> bool {
        self.remote
    }
}
