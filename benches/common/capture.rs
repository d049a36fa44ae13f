//! What the ledger writes, captured from its store: the bytes the raw baselines
//! of `benches/ledger.rs` write and read, and `benches/profile.rs`'s raw commands.
//!
//! The baselines never assume how the store lays out its keys. The ledger records
//! delegations through its public API into a store, which is read back two ways:
//!
//! - **exactly** (`Captured::exact`): raw, every tree, and what each event wrote
//!   is what it changed: a key that no later event rewrites is a record, a key the
//!   next event rewrites is rewritten (a head, or in store format 3 the
//!   delegation's one key, holding its head and records);
//! - **split** (`Captured::lifecycles`, the baseline): through the
//!   `Store` API, each event's record bytes and its head's bytes
//!   (`Head::encode`), put under a record key and a head key
//!   (`store::key::record`, `store::key::head`) of one tree: two inserts per
//!   event, the same bytes whatever the layout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use delegation_log::Event;

use super::support::raw_sled;
use super::{ID_DIGITS, ID_PREFIX, buffered, id, outcome, queued};

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
    /// The sled trees written, by name (and the tree of the split writes).
    pub trees: Vec<Vec<u8>>,
    /// For delegation `n`: the record and the head that `queued` wrote, then
    /// those the outcome wrote, as two puts each (split).
    pub lifecycles: Vec<[Vec<Op>; 2]>,
    /// For delegation `n`: exactly the keys and values `queued` changed, then
    /// those the outcome changed.
    pub exact: Vec<[Vec<Op>; 2]>,
}

/// The tree the split writes go to.
pub const SPLIT_TREE: &[u8] = b"log";

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
    let db = raw_sled(path);
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
    use delegation_log::store::key;
    let mut split = vec![[Vec::new(), Vec::new()]; usize::try_from(delegations).unwrap()];
    let mut phase = |event: &dyn Fn(u64) -> Event, at: usize| {
        let ledger = buffered(path);
        for n in 0..delegations {
            let recorded = ledger.record(&id(n), event(n)).unwrap();
            let stream = ledger.store().history(&id(n)).unwrap();
            let record = stream.entries.iter().find(|e| e.seq == recorded.seq);
            let head = stream.head.expect("a head");
            split[usize::try_from(n).unwrap()][at] = vec![
                Op::Put {
                    tree: usize::MAX,
                    key: key::record(&id(n), recorded.seq),
                    value: record.expect("the record").bytes.clone(),
                    record: true,
                },
                Op::Put {
                    tree: usize::MAX,
                    key: key::head(&id(n)),
                    value: head.encode(),
                    record: false,
                },
            ];
        }
        ledger.flush().unwrap();
        drop(ledger);
        dump(path)
    };
    let before = phase(&|_| queued(), 0);
    let after = phase(&outcome, 1);
    let trees: Vec<Vec<u8>> = before
        .keys()
        .chain(after.keys())
        .map(|(tree, _)| tree.clone())
        .chain([SPLIT_TREE.to_vec()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let split_tree = trees.iter().position(|t| t == SPLIT_TREE).unwrap();
    for op in split.iter_mut().flatten().flatten() {
        if let Op::Put { tree, .. } = op {
            *tree = split_tree;
        }
    }
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
    for lifecycle in &mut lifecycles {
        for event in lifecycle.iter_mut() {
            // Records first, then what is rewritten: the order the ledger of
            // format 2 wrote them.
            event.sort_by_key(|op| !matches!(op, Op::Put { record: true, .. }));
        }
    }
    Captured {
        trees,
        lifecycles: split,
        exact: lifecycles,
    }
}

impl Captured {
    /// What delegation `n` writes, for any `n`: the writes captured for a
    /// delegation with the same outcome, with `n`'s id in the keys. (Values keep the
    /// captured delegation's bytes: same sizes, and nothing in sled reads them.)
    pub fn lifecycle(&self, n: u64) -> [Vec<Op>; 2] {
        Self::rekeyed(&self.lifecycles, n)
    }

    /// As [`Captured::lifecycle`], exactly what the ledger wrote.
    pub fn exact_lifecycle(&self, n: u64) -> [Vec<Op>; 2] {
        Self::rekeyed(&self.exact, n)
    }

    fn rekeyed(lifecycles: &[[Vec<Op>; 2]], n: u64) -> [Vec<Op>; 2] {
        let len = lifecycles.len() as u64;
        assert!(len.is_multiple_of(2));
        let mut lifecycle = lifecycles[usize::try_from(n % len).unwrap()].clone();
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
        let db = raw_sled(path);
        let trees = self
            .trees
            .iter()
            .map(|name| db.open_tree(name).unwrap())
            .collect();
        (db, trees)
    }

    /// The key of delegation `n`'s head (the one key its outcome rewrote, in
    /// the ledger's own store: the key `status` reads), with its tree, for any
    /// `n`.
    pub fn head(&self, n: u64) -> (usize, Vec<u8>) {
        let [_, outcome] = self.exact_lifecycle(n);
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

    /// The key of delegation `n`'s last record (its outcome's) in the ledger's
    /// own store, with its tree; `None` where records have no key of their own
    /// (store format 3).
    pub fn last_record(&self, n: u64) -> Option<(usize, Vec<u8>)> {
        let [_, outcome] = self.exact_lifecycle(n);
        records(&outcome)
            .next()
            .map(|(tree, key, _)| (tree, key.to_vec()))
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
        let view = |lifecycles: &[[Vec<Op>; 2]]| {
            lifecycles
                .iter()
                .take(2)
                .zip(["delivered", "failed"])
                .map(|([q, o], name)| {
                    format!("{name}: queued [{}], outcome [{}]", event(q), event(o))
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!(
            "exactly: {}; split into record and head: {}",
            view(&self.exact),
            view(&self.lifecycles)
        )
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
