//! What the ledger writes, captured from its store: the bytes the raw baselines
//! of `benches/ledger.rs` write and read, and `benches/profile.rs`'s raw commands.
//!
//! The baselines never assume how the store lays out its keys. The ledger records
//! delegations through its public API into a store; that store is read back raw
//! (every tree), and what each event wrote is what the baselines write: a key that
//! no later event rewrites is a record, a key the next event rewrites is the head.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use delegation_log::Event;

use super::{ID_DIGITS, ID_PREFIX, buffered, id, open_raw, outcome, queued};

/// One write the ledger made, as read back from its store.
#[derive(Clone, Debug)]
pub enum Op {
    /// A key set to a value. `record` is true for a key that no later event
    /// rewrites (an appended record), false for one that is rewritten (a head).
    Put {
        tree: usize,
        key: Vec<u8>,
        value: Vec<u8>,
        record: bool,
    },
    /// A key removed.
    Remove { tree: usize, key: Vec<u8> },
}

/// What the ledger wrote for each of a number of delegations, event by event.
pub struct Captured {
    /// The sled trees written, by name.
    pub trees: Vec<Vec<u8>>,
    /// For delegation `n`: what `queued` wrote, then what the outcome wrote.
    pub lifecycles: Vec<[Vec<Op>; 2]>,
}

/// Where delegation `n`'s id sits in a key, and `n`.
pub fn find_id(key: &[u8]) -> Option<(usize, u64)> {
    let prefix = ID_PREFIX.as_bytes();
    let at = key.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let digits = key.get(at..at + ID_DIGITS)?;
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((at, n))
}

/// Every entry of the store at `path` whose key names a delegation, by tree and
/// key.
pub type Dump = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

pub fn dump(path: &Path) -> Dump {
    let db = open_raw(path, None);
    let mut out = Dump::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for item in tree.iter() {
            let (key, value) = item.unwrap();
            if find_id(&key).is_some() {
                out.insert((name.to_vec(), key.to_vec()), value.to_vec());
            }
        }
    }
    out
}

/// Records `delegations` lifecycles with the ledger at `path` (left in place, closed),
/// and reads back what each event wrote.
///
/// All the `queued` events are recorded first and the store is read; then all the
/// outcomes, and the store is read again. A key the outcome left as it was is a
/// record; a key it changed is a head (or the like), written by both events with
/// the values read; a key it removed is removed by it; a new key is the outcome's
/// record. The ledger runs on a stopped clock, so these are the bytes it writes when
/// both events are recorded back to back.
pub fn capture(path: &Path, delegations: u64) -> Captured {
    let phase = |event: &dyn Fn(u64) -> Event| {
        let ledger = buffered(path);
        for n in 0..delegations {
            ledger.record(&id(n), event(n)).unwrap();
        }
        ledger.flush().unwrap();
        drop(ledger);
        dump(path)
    };
    let before = phase(&|_| queued());
    let after = phase(&outcome);
    let trees: Vec<Vec<u8>> = before
        .keys()
        .chain(after.keys())
        .map(|(tree, _)| tree.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = |name: &Vec<u8>| trees.iter().position(|t| t == name).unwrap();
    let owner = |key: &[u8]| usize::try_from(find_id(key).unwrap().1).unwrap();
    let mut lifecycles = vec![[Vec::new(), Vec::new()]; usize::try_from(delegations).unwrap()];
    for ((name, key), value) in &before {
        let (tree, n) = (index(name), owner(key));
        let put = |value: &Vec<u8>, record| Op::Put {
            tree,
            key: key.clone(),
            value: value.clone(),
            record,
        };
        match after.get(&(name.clone(), key.clone())) {
            Some(later) if later == value => lifecycles[n][0].push(put(value, true)),
            Some(later) => {
                lifecycles[n][0].push(put(value, false));
                lifecycles[n][1].push(put(later, false));
            }
            None => {
                lifecycles[n][0].push(put(value, false));
                lifecycles[n][1].push(Op::Remove {
                    tree,
                    key: key.clone(),
                });
            }
        }
    }
    for ((name, key), value) in &after {
        if !before.contains_key(&(name.clone(), key.clone())) {
            lifecycles[owner(key)][1].push(Op::Put {
                tree: index(name),
                key: key.clone(),
                value: value.clone(),
                record: true,
            });
        }
    }
    for (n, lifecycle) in lifecycles.iter_mut().enumerate() {
        for event in lifecycle.iter_mut() {
            // The record first, then the head: the order the ledger writes them.
            event.sort_by_key(|op| !matches!(op, Op::Put { record: true, .. }));
            assert!(
                matches!(event.first(), Some(Op::Put { record: true, .. })),
                "delegation {n}: an event that appended no record"
            );
        }
    }
    Captured { trees, lifecycles }
}

impl Captured {
    /// What delegation `n` writes, for any `n`: the writes captured for a
    /// delegation with the same outcome, with `n`'s id in the keys. (Values keep the
    /// captured delegation's bytes: same sizes, and nothing in sled reads them.)
    pub fn lifecycle(&self, n: u64) -> [Vec<Op>; 2] {
        let len = self.lifecycles.len() as u64;
        assert!(len.is_multiple_of(2));
        let mut lifecycle = self.lifecycles[usize::try_from(n % len).unwrap()].clone();
        let digits = format!("{n:0ID_DIGITS$}");
        for op in lifecycle.iter_mut().flatten() {
            let (Op::Put { key, .. } | Op::Remove { key, .. }) = op;
            let (at, _) = find_id(key).unwrap();
            key[at..at + ID_DIGITS].copy_from_slice(digits.as_bytes());
        }
        lifecycle
    }

    /// A fresh raw sled database at `path` with the trees the ledger writes.
    pub fn raw(&self, path: &Path) -> (sled::Db, Vec<sled::Tree>) {
        let db = open_raw(path, None);
        let trees = self
            .trees
            .iter()
            .map(|name| db.open_tree(name).unwrap())
            .collect();
        (db, trees)
    }

    /// The key of delegation `n`'s head (the one key its outcome rewrote), with
    /// its tree, for any `n`.
    pub fn head(&self, n: u64) -> (usize, Vec<u8>) {
        let [_, outcome] = self.lifecycle(n);
        let mut rewritten = outcome.into_iter().filter_map(|op| match op {
            Op::Put {
                tree,
                key,
                record: false,
                ..
            } => Some((tree, key)),
            _ => None,
        });
        let head = rewritten.next().expect("an outcome that rewrote no head");
        assert!(
            rewritten.next().is_none(),
            "an outcome that rewrote two keys"
        );
        head
    }

    /// The key of delegation `n`'s last record (its outcome's), with its tree.
    pub fn last_record(&self, n: u64) -> (usize, Vec<u8>) {
        let [_, outcome] = self.lifecycle(n);
        let (tree, key, _) = records(&outcome)
            .next()
            .expect("an outcome that appended no record");
        (tree, key.to_vec())
    }

    /// One line on what delegation 0 and 1 write, for the stderr of a full run.
    pub fn describe(&self) -> String {
        let event = |ops: &[Op]| {
            ops.iter()
                .map(|op| match op {
                    Op::Put {
                        tree,
                        key,
                        value,
                        record,
                    } => format!(
                        "{} {}+{} B in {}",
                        if *record { "record" } else { "rewritten" },
                        key.len(),
                        value.len(),
                        String::from_utf8_lossy(&self.trees[*tree])
                    ),
                    Op::Remove { key, .. } => format!("remove {} B", key.len()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.lifecycles
            .iter()
            .take(2)
            .zip(["delivered", "failed"])
            .map(|([q, o], name)| format!("{name}: queued [{}], outcome [{}]", event(q), event(o)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Applies an event's writes, one sled call per key.
pub fn apply(trees: &[sled::Tree], ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put {
                tree, key, value, ..
            } => {
                trees[*tree]
                    .insert(key.as_slice(), value.as_slice())
                    .unwrap();
            }
            Op::Remove { tree, key } => {
                trees[*tree].remove(key.as_slice()).unwrap();
            }
        }
    }
}

/// Applies an event's writes as one `apply_batch` per tree it touches (one in all
/// when records and heads share a tree).
pub fn apply_batched(trees: &[sled::Tree], ops: &[Op]) {
    for (t, tree) in trees.iter().enumerate() {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for op in ops {
            match op {
                Op::Put {
                    tree, key, value, ..
                } if *tree == t => batch.insert(key.as_slice(), value.as_slice()),
                Op::Remove { tree, key } if *tree == t => batch.remove(key.as_slice()),
                _ => continue,
            }
            any = true;
        }
        if any {
            tree.apply_batch(batch).unwrap();
        }
    }
}

/// The records among an event's writes: key, tree and bytes.
pub fn records(ops: &[Op]) -> impl Iterator<Item = (usize, &[u8], &[u8])> {
    ops.iter().filter_map(|op| match op {
        Op::Put {
            tree,
            key,
            value,
            record: true,
        } => Some((*tree, key.as_slice(), value.as_slice())),
        _ => None,
    })
}
