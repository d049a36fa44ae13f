//! The delegations a run knows: a small pool of ids, so that events collide, with
//! the slots fresh delegations take and the rest left free for their retries.

use crate::event::{DelegationId, MAX_ID_LEN};

/// How many delegations the model knows: ids come from a small pool, so that
/// events collide. The pool holds a prefix of another id and an id of the
/// maximum length, then two ids named as the dispatcher names retries.
pub const POOL: usize = 6;

/// The slots fresh delegations are queued in (the fuzzer's scripts use only
/// these); the rest of the pool is free for retries to be queued in, so that
/// chains of several attempts are common.
pub const FIRST_SLOTS: usize = 4;

/// The delegation id of pool slot `index` (taken modulo [`POOL`]).
pub fn pool_id(index: usize) -> DelegationId {
    let text = match index % POOL {
        0 => "a".to_owned(),
        1 => "ab".to_owned(),
        2 => "b".to_owned(),
        3 => "z".repeat(MAX_ID_LEN),
        4 => "a.r1".to_owned(),
        _ => "a.r2".to_owned(),
    };
    DelegationId::try_from(text).unwrap_or_else(|e| panic!("a pool id is refused: {e}"))
}

/// The pool slots in the store's key order.
pub(super) fn key_order() -> Vec<usize> {
    let mut order: Vec<usize> = (0..POOL).collect();
    order.sort_by_key(|&index| crate::store::key::prefix(&pool_id(index)));
    order
}
