//! Group append: the appends of writers that arrive together are written in one
//! writer's turn, each writer's on its own, and in durable mode one flush covers
//! them all.
//!
//! A durable flush (sled's flush, then one `fdatasync`) costs about a
//! millisecond here, far more than an append, so writers queue their appends,
//! and one writer at a time takes its turn: it takes the whole queue, makes each
//! writer's appends as its own [`Store::append`] (on sled's format 3, one
//! `compare_and_swap` of the delegation's one key, or, for a retry's two
//! appends, one batch), hands every writer of the group its answer, and then,
//! unless the ledger is buffered, runs the flush that covers the group
//! ([`GroupCommit`]), while the writers that arrive meanwhile queue for the
//! next turn. A lone writer takes its turn at once, as if there were no queue.
//!
//! Each writer's appends are written on their own, not as one multi-delegation
//! append: on sled that would be one `apply_batch`, which seals and writes its
//! log buffer before and after the batch (two device writes each turn, in
//! buffered mode too), and a refused group would have to be retried writer by
//! writer. Measured with `benches/profile.rs` (`record-durable-8` and `-64`, 4000
//! lifecycles, three rounds alternating, load about 5): the two ways were equal
//! within the noise (8 writers 26.4k against 27.0k records/s summed over the
//! rounds, 64 writers 55.4k against 56.0k), so the simpler one is kept. Every
//! writer gets exactly the answer it would have got alone; nothing is
//! acknowledged before the flush that covers it returns (a writer's flush
//! waits for its own ticket, [`GroupCommit::wait_for`]); a failed flush fails
//! every writer waiting on it.
//!
//! Writers of one delegation never meet in a group: each holds its delegation's
//! stripe from reading the head until its append is answered, so a group holds at
//! most one append of any delegation (a retry's two appends come as one entry).
//! The answer comes before the turn's flush, so a writer lets go of its stripe
//! while the flush runs, and waits for it with [`GroupCommit::wait_for`].

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::index::Hints;
use super::{Durability, GroupCommit};
use crate::error::{self, Error};
use crate::event::DelegationId;
use crate::store::{Append, AppendError, Expect, Head, Owner, Store};

/// An append, owning its bytes, so that another writer can make it.
#[derive(Debug)]
pub(super) struct Owned {
    pub(super) id: DelegationId,
    pub(super) expect: Expect,
    pub(super) record: Vec<u8>,
    pub(super) head: Vec<u8>,
}

impl Owned {
    /// The head this append writes.
    pub(super) fn new_head(&self) -> Head {
        Head {
            seq: self.expect.next(),
            summary: self.head.clone(),
        }
    }

    fn borrowed(&self) -> Append<'_> {
        Append {
            id: &self.id,
            expect: self.expect,
            record: &self.record,
            head: &self.head,
        }
    }
}

/// What a writer's appends came to: their commit ticket
/// ([`GroupCommit::appended`]), or why nothing was written.
type Answer = Result<u64, AppendError>;

/// A writer's appends, written.
#[derive(Debug)]
pub(super) struct Written {
    /// Their commit ticket ([`GroupCommit::appended`]).
    pub(super) ticket: u64,
    /// The result of the flush this writer ran in its turn, covering the ticket;
    /// `None` if another writer's turn ran it, or none was due (buffered): wait
    /// for the ticket with [`GroupCommit::wait_for`].
    pub(super) flushed: Option<error::Result<()>>,
}

/// One writer's appends (one, or a retry's two), the hints the store writes
/// with them ([`Store::append_hinted`]), the owner whose claims it writes with
/// them ([`Store::append_claimed`]), and the writer's place in line.
struct Entry {
    ticket: u64,
    appends: Vec<Owned>,
    hints: Hints,
    owner: Option<Owner>,
}

/// The appender shared by a ledger's writers.
#[derive(Default)]
pub(super) struct Appender {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Appends waiting for the next group.
    queue: Vec<Entry>,
    /// Whether a writer is appending a group now.
    appending: bool,
    /// The answers of written groups, until their writers take them.
    answers: HashMap<u64, Answer>,
    /// The next writer's ticket.
    next: u64,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").finish_non_exhaustive()
    }
}

impl Appender {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock leaves the state whole (a push, a take, an
        // insert or a removal), so a poisoned lock still guards a sound state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `appends` to `store`, atomically, alone or in a group with the
    /// appends of other writers: the answer is the one
    /// `store.append_hinted(appends, hints)` would give (or, with an `owner`,
    /// `store.append_claimed(appends, hints, owner)`), with the commit ticket
    /// `commit` gave the write. (`hints` are empty unless the store's index
    /// writes hints with the appends; `owner` is `None` unless the store writes
    /// claims with them.) Below
    /// [`Durability::Buffered`], a writer that takes a turn also flushes at
    /// `level` for its group before the turn ends.
    pub(super) fn append(
        &self,
        store: &dyn Store,
        commit: &GroupCommit,
        level: Durability,
        appends: Vec<Owned>,
        hints: Hints,
        owner: Option<Owner>,
    ) -> Result<Written, AppendError> {
        let mut state = self.lock();
        if !state.appending && state.queue.is_empty() {
            // Alone: the turn is this writer's, with nothing to share.
            state.appending = true;
            drop(state);
            let entry = Entry {
                ticket: 0,
                appends,
                hints,
                owner,
            };
            return self.alone(store, commit, level, &entry);
        }
        let ticket = state.next;
        state.next = state.next.wrapping_add(1);
        state.queue.push(Entry {
            ticket,
            appends,
            hints,
            owner,
        });
        loop {
            if let Some(answer) = state.answers.remove(&ticket) {
                return answer.map(|ticket| Written {
                    ticket,
                    flushed: None,
                });
            }
            if !state.appending {
                state.appending = true;
                let group = std::mem::take(&mut state.queue);
                drop(state);
                return self.turn(store, commit, level, ticket, group);
            }
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The turn of a writer that found no one queued: its `entry` alone (its
    /// ticket unused), then the flush for it.
    fn alone(
        &self,
        store: &dyn Store,
        commit: &GroupCommit,
        level: Durability,
        entry: &Entry,
    ) -> Result<Written, AppendError> {
        let _turn = Turn::new(self, Vec::new());
        let ticket = entry.write(store, commit)?;
        Ok(Written {
            ticket,
            flushed: (level != Durability::Buffered).then(|| commit.wait_for(ticket, store, level)),
        })
    }

    /// `ticket`'s turn: writes `group` (which holds `ticket`'s entry), answers
    /// its writers, and flushes for it.
    fn turn(
        &self,
        store: &dyn Store,
        commit: &GroupCommit,
        level: Durability,
        ticket: u64,
        group: Vec<Entry>,
    ) -> Result<Written, AppendError> {
        let mut turn = Turn::new(self, group.iter().map(|entry| entry.ticket).collect());
        let mut answers = Answers::of(store, commit, group).0;
        let own = answers
            .iter()
            .position(|(of, _)| *of == ticket)
            .map(|at| answers.swap_remove(at).1)
            .unwrap_or_else(|| Err(lost()));
        let covers = answers
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok())
            .chain(own.as_ref().ok())
            .max()
            .copied();
        turn.answer(answers);
        let own = own?;
        let flushed = match (level, covers) {
            (Durability::Buffered, _) | (_, None) => None,
            (level, Some(covers)) => Some(commit.wait_for(covers, store, level)),
        };
        Ok(Written {
            ticket: own,
            flushed,
        })
    }
}

/// A writer's turn: while it lasts, the others queue. When it ends, however it
/// ends, every writer of its group has an answer, and the next may go.
struct Turn<'a> {
    appender: &'a Appender,
    /// The tickets of the group not yet answered.
    unanswered: Vec<u64>,
}

impl<'a> Turn<'a> {
    fn new(appender: &'a Appender, tickets: Vec<u64>) -> Self {
        Turn {
            appender,
            unanswered: tickets,
        }
    }

    /// Hands the other writers of the group their answers (the turn's own
    /// writer has its own), and wakes them; the turn goes on.
    fn answer(&mut self, answers: Vec<(u64, Answer)>) {
        let mut state = self.appender.lock();
        for (ticket, answer) in answers {
            state.answers.insert(ticket, answer);
        }
        self.unanswered.clear();
        drop(state);
        self.appender.done.notify_all();
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.appender.lock();
        // Only if the store panicked mid-group: its writers must not wait forever.
        for ticket in self.unanswered.drain(..) {
            state.answers.insert(ticket, Err(lost()));
        }
        state.appending = false;
        drop(state);
        self.appender.done.notify_all();
    }
}

/// The answer for each writer of a group.
struct Answers(Vec<(u64, Answer)>);

impl Answers {
    /// Writes each writer's appends of `group` on its own, each with its own
    /// commit ticket.
    fn of(store: &dyn Store, commit: &GroupCommit, group: Vec<Entry>) -> Self {
        Answers(
            group
                .iter()
                .map(|entry| (entry.ticket, entry.write(store, commit)))
                .collect(),
        )
    }
}

impl Entry {
    /// Writes this writer's appends on their own, with their hints and
    /// claims, and answers their commit ticket.
    fn write(&self, store: &dyn Store, commit: &GroupCommit) -> Answer {
        let own: Vec<Append<'_>> = self.appends.iter().map(Owned::borrowed).collect();
        let (hints, stale) = (&self.hints.before, &self.hints.after);
        match self.owner {
            Some(owner) => store.append_claimed(&own, hints, stale, owner),
            None => store.append_hinted(&own, hints, stale),
        }
        .map(|()| commit.appended(count(&own)))
    }
}

/// How many appends, as the commit counts them.
fn count(appends: &[Append<'_>]) -> u64 {
    u64::try_from(appends.len()).unwrap_or(u64::MAX)
}

/// What a writer whose group was lost to a panic is told (never expected: the
/// stores return their failures). Whether anything was written is unknown, so it
/// poisons the ledger like any failed write.
fn lost() -> AppendError {
    AppendError::Store(Error::Panicked {
        what: "the writer appending this group",
        message: "its turn ended before it answered".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Memory;

    fn owned(id: &str, expect: Expect) -> Owned {
        Owned {
            id: id.parse().unwrap(),
            expect,
            record: id.as_bytes().to_vec(),
            head: b"head".to_vec(),
        }
    }

    fn entry(ticket: u64, appends: Vec<Owned>) -> Entry {
        Entry {
            ticket,
            appends,
            hints: Hints::default(),
            owner: None,
        }
    }

    #[test]
    fn each_writer_of_a_group_is_written_on_its_own_with_its_own_ticket() {
        let store = Memory::new();
        let commit = GroupCommit::default();
        let group = vec![
            entry(0, vec![owned("a", Expect::Empty)]),
            entry(
                1,
                vec![owned("b", Expect::Empty), owned("c", Expect::Empty)],
            ),
        ];
        let answers = Answers::of(&store, &commit, group).0;
        let tickets: Vec<u64> = answers.iter().map(|(_, a)| *a.as_ref().unwrap()).collect();
        assert_eq!(
            tickets,
            [1, 3],
            "a writer's ticket counts the appends written before and with it"
        );
        for id in ["a", "b", "c"] {
            assert_eq!(store.head(&id.parse().unwrap()).unwrap().unwrap().seq, 1);
        }
    }

    #[test]
    fn a_refused_group_answers_each_writer_as_if_it_were_alone() {
        let store = Memory::new();
        let commit = GroupCommit::default();
        let group = vec![
            entry(0, vec![owned("a", Expect::Empty)]),
            entry(1, vec![owned("b", Expect::At(1))]),
            entry(2, vec![owned("c", Expect::Empty)]),
        ];
        let answers = Answers::of(&store, &commit, group).0;
        assert!(matches!(answers[0], (0, Ok(_))));
        assert!(
            matches!(&answers[1], (1, Err(AppendError::Conflict { id, .. })) if id.as_str() == "b"),
            "{:?}",
            answers[1]
        );
        assert!(matches!(answers[2], (2, Ok(_))));
        assert!(store.head(&"a".parse().unwrap()).unwrap().is_some());
        assert!(store.head(&"b".parse().unwrap()).unwrap().is_none());
        assert!(store.head(&"c".parse().unwrap()).unwrap().is_some());
    }

    #[test]
    fn concurrent_writers_each_get_their_own_answer() {
        let store = Memory::new();
        let commit = GroupCommit::default();
        let appender = Appender::default();
        std::thread::scope(|scope| {
            for t in 0..16 {
                let (store, commit, appender) = (&store, &commit, &appender);
                scope.spawn(move || {
                    for n in 0..50 {
                        let id = format!("w{t}-{n}");
                        // Every fifth expects a head that is not there.
                        let expect = if n % 5 == 4 {
                            Expect::At(7)
                        } else {
                            Expect::Empty
                        };
                        let answer = appender.append(
                            store,
                            commit,
                            Durability::Durable,
                            vec![owned(&id, expect)],
                            Hints::default(),
                            None,
                        );
                        match expect {
                            Expect::Empty => assert!(answer.is_ok(), "{id}: {answer:?}"),
                            Expect::At(_) => assert!(
                                matches!(answer, Err(AppendError::Conflict { .. })),
                                "{id}: {answer:?}"
                            ),
                        }
                    }
                });
            }
        });
        let state = appender.lock();
        assert!(state.queue.is_empty() && state.answers.is_empty() && !state.appending);
    }
}
