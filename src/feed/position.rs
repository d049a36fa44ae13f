//! A connection's place in the log: the last seq sent of each delegation, and
//! the records that came past a gap, held until it is filled.

use std::collections::{BTreeMap, HashMap};

use crate::event::{DelegationId, Record, Seq};

#[derive(Debug, Default)]
pub(super) struct Position {
    sent: HashMap<DelegationId, Seq>,
    held: HashMap<DelegationId, BTreeMap<Seq, Record>>,
}

impl Position {
    /// Takes `record` from the snapshot, the feed or a catch-up, and pushes onto
    /// `out` what can now be sent: nothing if it was sent already, nothing yet
    /// if it comes past a gap, else it and the held records it lets through.
    pub(super) fn take(&mut self, record: Record, out: &mut Vec<Record>) {
        let last = self.sent.get(&record.delegation).copied().unwrap_or(0);
        if record.seq <= last {
            return;
        }
        if record.seq > last.saturating_add(1) {
            self.held
                .entry(record.delegation.clone())
                .or_default()
                .insert(record.seq, record);
            return;
        }
        let id = record.delegation.clone();
        let mut next = record.seq;
        out.push(record);
        if let Some(held) = self.held.get_mut(&id) {
            while let Some(entry) = held.first_entry() {
                if *entry.key() <= next {
                    entry.remove();
                } else if *entry.key() == next.saturating_add(1) {
                    next = *entry.key();
                    out.push(entry.remove());
                } else {
                    break;
                }
            }
            if held.is_empty() {
                self.held.remove(&id);
            }
        }
        self.sent.insert(id, next);
    }
}

#[cfg(test)]
mod tests {
    use super::Position;
    use crate::event::{Event, Record};

    fn record(id: &str, seq: u64) -> Record {
        Record {
            delegation: id.parse().unwrap(),
            seq,
            event: Event::queued("p", "http://127.0.0.1:9/a2a"),
            at: crate::event::Timestamp::from_unix_nanos(0),
            hash: None,
        }
    }

    fn seqs(records: &[Record]) -> Vec<(String, u64)> {
        records
            .iter()
            .map(|r| (r.delegation.to_string(), r.seq))
            .collect()
    }

    #[test]
    fn a_record_at_or_below_the_last_sent_is_dropped() {
        let mut position = Position::default();
        let mut out = Vec::new();
        for seq in [1, 2, 1, 2, 3] {
            position.take(record("a", seq), &mut out);
        }
        assert_eq!(
            seqs(&out),
            [("a".into(), 1), ("a".into(), 2), ("a".into(), 3)]
        );
    }

    #[test]
    fn a_record_past_a_gap_waits_for_it_and_then_goes_out_in_seq_order() {
        let mut position = Position::default();
        let mut out = Vec::new();
        position.take(record("a", 1), &mut out);
        position.take(record("a", 3), &mut out);
        position.take(record("b", 2), &mut out);
        assert_eq!(seqs(&out), [("a".into(), 1)]);
        position.take(record("a", 2), &mut out);
        position.take(record("b", 1), &mut out);
        assert_eq!(
            seqs(&out),
            [
                ("a".into(), 1),
                ("a".into(), 2),
                ("a".into(), 3),
                ("b".into(), 1),
                ("b".into(), 2)
            ]
        );
    }

    #[test]
    fn records_held_past_a_gap_go_out_once_when_a_catch_up_fills_it() {
        let mut position = Position::default();
        let mut out = Vec::new();
        position.take(record("a", 3), &mut out);
        for seq in 1..=4 {
            position.take(record("a", seq), &mut out);
        }
        position.take(record("a", 3), &mut out);
        assert_eq!(
            seqs(&out),
            (1..=4).map(|s| ("a".to_owned(), s)).collect::<Vec<_>>()
        );
        assert!(position.held.is_empty());
    }
}
