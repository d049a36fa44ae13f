//! RFC 8785 (JCS) canonical JSON of a record without its hash, the bytes the chain
//! hashes: a direct writer for the record's own fields, the generic one behind it.

use serde::Serialize;

use super::{
    Attempt, DelegationId, Event, EventKind, FailureReason, Record, Remote, Seq, Timestamp,
};

/// The canonical bytes of `record`: the direct writer's, or the generic
/// canonicalizer's where the direct writer does not apply.
pub(super) fn to_vec(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match write(&Unhashed::of(record), &mut out) {
        Ok(()) => out,
        Err(NotFast) => generic(record),
    }
}

/// The canonical bytes of the record `fields` describe, where the direct
/// writer applies (where it does, [`to_vec`] of the same record gives the
/// same bytes); `None` where only the generic canonicalizer does, which needs
/// the record itself.
pub(crate) fn to_vec_direct(fields: &Unhashed<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write(fields, &mut out).ok().map(|()| out)
}

/// JCS through the generic canonicalizer, which sorts keys at run time.
fn generic(record: &Record) -> Vec<u8> {
    let unhashed = UnhashedRecord {
        delegation: &record.delegation,
        seq: record.seq,
        event: &record.event,
        at: record.at,
    };
    // JCS of a value that serde_json can always represent: the record's own
    // fields are strings, integers and an already-parsed JSON task.
    serde_json_canonicalizer::to_vec(&unhashed).unwrap_or_default()
}

/// A record without its hash, its fields borrowed: what the direct writer
/// writes, from a [`Record`] or from a record read in place.
pub(crate) struct Unhashed<'a> {
    /// The delegation.
    pub(crate) delegation: &'a str,
    /// The seq.
    pub(crate) seq: Seq,
    /// When it was recorded.
    pub(crate) at: Timestamp,
    /// What happened.
    pub(crate) event: UnhashedEvent<'a>,
}

/// The event of an [`Unhashed`] record.
pub(crate) enum UnhashedEvent<'a> {
    /// A `queued`.
    Queued {
        source: &'a str,
        target: &'a str,
        task: Option<&'a serde_json::Value>,
        retry_of: Option<&'a str>,
        attempt: Option<Attempt>,
        not_before: Option<Timestamp>,
    },
    /// A `delivered`.
    Delivered {
        http_status: Option<u16>,
        remote: Option<&'a Remote>,
    },
    /// A `failed`.
    Failed {
        reason: FailureReason,
        detail: Option<&'a str>,
    },
}

impl<'a> Unhashed<'a> {
    /// The fields of `record`.
    fn of(record: &'a Record) -> Self {
        Unhashed {
            delegation: record.delegation.as_str(),
            seq: record.seq,
            at: record.at,
            event: match &record.event {
                Event::Queued(queued) => UnhashedEvent::Queued {
                    source: &queued.source,
                    target: &queued.target,
                    task: queued.task.as_ref(),
                    retry_of: queued.retry_of.as_ref().map(DelegationId::as_str),
                    attempt: queued.attempt,
                    not_before: queued.not_before,
                },
                Event::Delivered(delivered) => UnhashedEvent::Delivered {
                    http_status: delivered.http_status,
                    remote: delivered.remote.as_ref(),
                },
                Event::Failed(failed) => UnhashedEvent::Failed {
                    reason: failed.reason,
                    detail: failed.detail.as_deref(),
                },
            },
        }
    }

    fn kind(&self) -> EventKind {
        match self.event {
            UnhashedEvent::Queued { .. } => EventKind::Queued,
            UnhashedEvent::Delivered { .. } => EventKind::Delivered,
            UnhashedEvent::Failed { .. } => EventKind::Failed,
        }
    }
}

/// JCS written directly, the keys in the order JCS sorts them: `at`,
/// `attempt`, `delegation`, `detail`, `event`, `http_status`, `not_before`,
/// `reason`, `remote`, `retry_of`, `rpc_code`, `seq`, `source`, `target`,
/// `task`. Strings are escaped as serde_json escapes them, which is what JCS
/// asks; integers up to 2^53 are their decimal digits in both. A seq or an
/// attempt beyond 2^53 (which JCS writes as a rounded double) is left to the
/// generic path; a task is canonicalized by it in place.
fn write(record: &Unhashed<'_>, out: &mut Vec<u8>) -> Result<(), NotFast> {
    const MAX_EXACT: Seq = 1 << 53;
    if record.seq > MAX_EXACT {
        return Err(NotFast);
    }
    let string = |out: &mut Vec<u8>, text: &str| {
        // serde_json escapes only `"`, `\` and the controls below U+0020; a text
        // without them is written as it is, between quotes.
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut *out, text).map_err(|_| NotFast)
        }
    };
    let (attempt, not_before, retry_of) = match &record.event {
        UnhashedEvent::Queued {
            attempt,
            not_before,
            retry_of,
            ..
        } => (*attempt, *not_before, *retry_of),
        _ => (None, None, None),
    };
    out.extend_from_slice(b"{\"at\":\"");
    out.extend_from_slice(record.at.text().as_bytes());
    out.push(b'"');
    if let Some(attempt) = attempt {
        if attempt > MAX_EXACT {
            return Err(NotFast);
        }
        out.extend_from_slice(b",\"attempt\":");
        decimal(out, attempt);
    }
    out.extend_from_slice(b",\"delegation\":");
    string(out, record.delegation)?;
    let (detail, http_status, reason, remote, rpc_code) = match &record.event {
        UnhashedEvent::Queued { .. } => (None, None, None, None, None),
        UnhashedEvent::Delivered {
            http_status,
            remote,
        } => (None, *http_status, None, *remote, None),
        UnhashedEvent::Failed { reason, detail } => (
            *detail,
            reason.http_status(),
            Some(reason.code()),
            None,
            reason.rpc_code(),
        ),
    };
    if let Some(detail) = detail {
        out.extend_from_slice(b",\"detail\":");
        string(out, detail)?;
    }
    out.extend_from_slice(b",\"event\":\"");
    out.extend_from_slice(record.kind().as_str().as_bytes());
    out.push(b'"');
    if let Some(code) = http_status {
        out.extend_from_slice(b",\"http_status\":");
        decimal(out, code);
    }
    if let Some(not_before) = not_before {
        out.extend_from_slice(b",\"not_before\":\"");
        out.extend_from_slice(not_before.text().as_bytes());
        out.push(b'"');
    }
    if let Some(reason) = reason {
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(reason.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(remote) = remote {
        out.extend_from_slice(b",\"remote\":");
        serde_json_canonicalizer::to_writer(remote, &mut *out).map_err(|_| NotFast)?;
    }
    if let Some(retry_of) = retry_of {
        out.extend_from_slice(b",\"retry_of\":");
        string(out, retry_of)?;
    }
    if let Some(code) = rpc_code {
        // JCS writes integers beyond 2^53 as rounded doubles: the generic path.
        if code.unsigned_abs() > MAX_EXACT {
            return Err(NotFast);
        }
        out.extend_from_slice(b",\"rpc_code\":");
        decimal(out, code);
    }
    out.extend_from_slice(b",\"seq\":");
    decimal(out, record.seq);
    if let UnhashedEvent::Queued {
        source,
        target,
        task,
        ..
    } = &record.event
    {
        out.extend_from_slice(b",\"source\":");
        string(out, source)?;
        out.extend_from_slice(b",\"target\":");
        string(out, target)?;
        if let Some(task) = task.filter(|task| !task.is_null()) {
            out.extend_from_slice(b",\"task\":");
            serde_json_canonicalizer::to_writer(task, &mut *out).map_err(|_| NotFast)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// Appends the decimal digits of `n` (with its sign), as `to_string` writes
/// them, without a string of their own.
fn decimal(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    use std::io::Write;
    // Writing to a `Vec` never fails.
    let _ = write!(out, "{n}");
}

/// The fast JCS writer does not apply; the generic one does.
struct NotFast;

#[derive(Serialize)]
struct UnhashedRecord<'a> {
    delegation: &'a DelegationId,
    seq: Seq,
    #[serde(flatten)]
    event: &'a Event,
    at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Delivered, Failed, FailureReason, Queued, Remote, RemoteKind, TaskState};

    // RFC 8785's own vectors, as literal input / expected output pairs, run
    // through `Record::canonical_bytes`. Each is also checked against the generic
    // canonicalizer (serde_json_canonicalizer), which the direct writer must match.

    /// 2026-06-07T01:32:07Z.
    const AT: i64 = 1_780_795_927_000_000_000;

    /// A record of delegation `d` at [`AT`], so that only `seq` and `event` vary.
    fn record(seq: Seq, event: Event) -> Record {
        Record {
            delegation: DelegationId::try_from("d").unwrap(),
            seq,
            event,
            at: Timestamp::from_unix_nanos(AT),
            hash: None,
        }
    }

    /// `record`'s canonical bytes as text, once the direct writer and the generic
    /// canonicalizer have agreed on them.
    fn jcs(record: &Record) -> String {
        let direct = String::from_utf8(record.canonical_bytes()).unwrap();
        let generic = String::from_utf8(generic(record)).unwrap();
        assert_eq!(
            direct, generic,
            "the direct writer and the generic one differ"
        );
        direct
    }

    /// A `queued` record whose task is `task`, given as JSON text.
    fn with_task(task: &str) -> Record {
        let task: serde_json::Value = serde_json::from_str(task).unwrap();
        record(
            1,
            Event::Queued(Queued {
                task: Some(task),
                ..Queued::new("a", "b")
            }),
        )
    }

    /// The canonical task of [`with_task`]'s record.
    fn canonical_task(task: &str) -> String {
        let bytes = jcs(&with_task(task));
        let prefix = r#"{"at":"2026-06-07T01:32:07Z","delegation":"d","event":"queued","seq":1,"source":"a","target":"b","task":"#;
        let inner = bytes
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('}'));
        inner
            .unwrap_or_else(|| panic!("not a queued record with a task: {bytes}"))
            .to_owned()
    }

    /// RFC 8785 §3.2.2.2: strings are written as ECMAScript's JSON.stringify
    /// writes them. Of the controls U+0000 to U+001F, the five with a short form
    /// take it and the rest are `\u00xx` in lowercase hex; `"` and `\` are escaped;
    /// everything else, `/`, DEL, C1 controls, U+2028, U+2029 and characters
    /// outside the BMP included, is written as itself in UTF-8.
    const STRINGS: [(&str, &str); 9] = [
        (
            "\u{0}\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{e}\u{f}\
             \u{10}\u{11}\u{12}\u{13}\u{14}\u{15}\u{16}\u{17}\u{18}\u{19}\u{1a}\u{1b}\u{1c}\u{1d}\u{1e}\u{1f}",
            r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#,
        ),
        ("\"\\", r#""\"\\""#),
        ("/", r#""/""#),
        ("\u{7f}", "\"\u{7f}\""),
        ("\u{80}\u{9f}", "\"\u{80}\u{9f}\""),
        ("\u{2028}\u{2029}", "\"\u{2028}\u{2029}\""),
        ("😀\u{10ffff}", "\"😀\u{10ffff}\""),
        ("ö€\u{fb33}", "\"ö€\u{fb33}\""),
        // The string of the example in §3.2.2, `"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/"`.
        ("€$\u{f}\nA'B\"\\\\\"/", r#""€$\u000f\nA'B\"\\\\\"/""#),
    ];

    #[test]
    fn a_records_own_strings_are_escaped_as_rfc_8785_section_3_2_2_2_says() {
        for (text, escaped) in STRINGS {
            let failed = record(
                2,
                Event::Failed(Failed {
                    reason: FailureReason::Timeout,
                    detail: Some(text.to_owned()),
                }),
            );
            assert_eq!(
                jcs(&failed),
                format!(
                    r#"{{"at":"2026-06-07T01:32:07Z","delegation":"d","detail":{escaped},"event":"failed","reason":"timeout","seq":2}}"#
                ),
                "{text:?}"
            );
            let queued = Record {
                delegation: DelegationId::try_from(text).unwrap(),
                ..record(1, Event::queued(text, text))
            };
            assert_eq!(
                jcs(&queued),
                format!(
                    r#"{{"at":"2026-06-07T01:32:07Z","delegation":{escaped},"event":"queued","seq":1,"source":{escaped},"target":{escaped}}}"#
                ),
                "{text:?}"
            );
            assert_eq!(
                canonical_task(&serde_json::to_string(text).unwrap()),
                escaped
            );
        }
    }

    #[test]
    fn a_records_own_keys_come_in_the_order_rfc_8785_section_3_2_3_sorts_them() {
        let retry = record(
            1,
            Event::Queued(Queued {
                task: Some(serde_json::json!({"k": 1})),
                retry_of: Some(DelegationId::try_from("r").unwrap()),
                attempt: Some(2),
                not_before: Some(Timestamp::from_unix_nanos(AT + 250_000_000)),
                ..Queued::new("a", "b")
            }),
        );
        let delivered = record(
            2,
            Event::Delivered(Delivered {
                http_status: Some(200),
                remote: Some(Remote {
                    kind: RemoteKind::Task,
                    task_id: Some("t".into()),
                    context_id: Some("c".into()),
                    state: Some(TaskState::Working),
                }),
            }),
        );
        let status = record(
            2,
            Event::Failed(Failed {
                reason: FailureReason::HttpStatus(503),
                detail: Some("x".into()),
            }),
        );
        let rpc = record(
            2,
            Event::Failed(Failed {
                reason: FailureReason::RpcError(-32601),
                detail: None,
            }),
        );
        for (record, expected) in [
            (
                retry,
                r#"{"at":"2026-06-07T01:32:07Z","attempt":2,"delegation":"d","event":"queued","not_before":"2026-06-07T01:32:07.250Z","retry_of":"r","seq":1,"source":"a","target":"b","task":{"k":1}}"#,
            ),
            (
                delivered,
                r#"{"at":"2026-06-07T01:32:07Z","delegation":"d","event":"delivered","http_status":200,"remote":{"context_id":"c","kind":"task","state":"working","task_id":"t"},"seq":2}"#,
            ),
            (
                status,
                r#"{"at":"2026-06-07T01:32:07Z","delegation":"d","detail":"x","event":"failed","http_status":503,"reason":"http_status","seq":2}"#,
            ),
            (
                rpc,
                r#"{"at":"2026-06-07T01:32:07Z","delegation":"d","event":"failed","reason":"rpc_error","rpc_code":-32601,"seq":2}"#,
            ),
        ] {
            assert_eq!(jcs(&record), expected);
        }
    }

    #[test]
    fn a_tasks_keys_sort_by_utf16_code_units_as_in_rfc_8785_section_3_2_3() {
        // The example of §3.2.3: U+1F600 (UTF-16 D83D DE00) sorts before U+FB33,
        // although its code point and its UTF-8 bytes are larger.
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
            \"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canonical_task(input), expected);
        // A private-use character past the surrogates against one beyond the BMP,
        // nested: the same order at every level.
        assert_eq!(
            canonical_task(r#"{"z":{"\ue000":1,"\ud800\udc00":2},"a":[{"b":0,"a":0}]}"#),
            "{\"a\":[{\"a\":0,\"b\":0}],\"z\":{\"\u{10000}\":2,\"\u{e000}\":1}}"
        );
    }

    #[test]
    fn the_example_of_rfc_8785_section_3_2_2_is_canonical_as_a_task() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50,
                        2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canonical_task(input), expected);
    }

    /// RFC 8785 Appendix B: IEEE 754 doubles (by their bits) and the text JCS
    /// writes for them (ECMAScript's Number.prototype.toString, §3.2.2.3). NaN
    /// and the infinities, the appendix's errors, cannot be in a task: serde_json
    /// holds no such number.
    const APPENDIX_B: [(u64, &str); 23] = [
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
    ];

    #[test]
    fn a_tasks_numbers_are_written_as_rfc_8785_appendix_b_says() {
        for (bits, expected) in APPENDIX_B {
            let number = f64::from_bits(bits);
            let task = serde_json::to_string(&serde_json::json!([number])).unwrap();
            assert_eq!(
                canonical_task(&task),
                format!("[{expected}]"),
                "{bits:#018x}"
            );
        }
        // The appendix's last sample: round half to even.
        let even = f64::from_bits(0x43143ff3c1cb0959);
        let task = serde_json::to_string(&serde_json::json!({ "n": even })).unwrap();
        assert_eq!(canonical_task(&task), r#"{"n":1424953923781206.2}"#);
    }

    #[test]
    fn a_tasks_numbers_written_any_way_come_out_in_the_one_form_of_rfc_8785_section_3_2_2_3() {
        for (written, canonical) in [
            ("1e21", "1e+21"),
            ("1E+21", "1e+21"),
            ("1000000000000000000000", "1e+21"),
            ("100000000000000000000", "100000000000000000000"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("0e10", "0"),
            ("5e-324", "5e-324"),
            ("4.9406564584124654e-324", "5e-324"),
            ("1e-7", "1e-7"),
            ("0.000001", "0.000001"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("1.0", "1"),
            ("-1.5e300", "-1.5e+300"),
            // Integers are IEEE 754 doubles in JCS (I-JSON): past 2^53, the
            // nearest double.
            ("9007199254740992", "9007199254740992"),
            ("9007199254740993", "9007199254740992"),
            ("-9007199254740993", "-9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
        ] {
            assert_eq!(canonical_task(written), canonical, "{written}");
        }
    }

    #[test]
    fn a_seq_or_attempt_past_2_53_is_the_double_jcs_writes_for_it() {
        let far = record(
            (1 << 53) + 1,
            Event::Queued(Queued {
                retry_of: Some(DelegationId::try_from("r").unwrap()),
                attempt: Some(u64::MAX),
                ..Queued::new("a", "b")
            }),
        );
        assert_eq!(
            jcs(&far),
            r#"{"at":"2026-06-07T01:32:07Z","attempt":18446744073709552000,"delegation":"d","event":"queued","retry_of":"r","seq":9007199254740992,"source":"a","target":"b"}"#
        );
        let rpc = record(
            2,
            Event::Failed(Failed {
                reason: FailureReason::RpcError(i64::MIN),
                detail: None,
            }),
        );
        assert_eq!(
            jcs(&rpc),
            r#"{"at":"2026-06-07T01:32:07Z","delegation":"d","event":"failed","reason":"rpc_error","rpc_code":-9223372036854776000,"seq":2}"#
        );
    }
}
