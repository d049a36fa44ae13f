//! Guards `verify` against `EVENT-LOG-FORMAT.md`, rule by rule: every field rule
//! (`null` is no stand-in for an absent field), every violation kind, its
//! precedence and the wording of each sequence finding, line handling (CRLF, a
//! missing final newline, blank lines, a line of exactly the 16 MiB limit and one
//! byte more), unknown fields, interleaving, judgement after a rejected record,
//! late records of settled delegations set aside (judged against the state they
//! settled in, wherever they sort), hashed-ness decided by the first record and
//! what a missing hash is reported as, the verdict object, pending delegations
//! with their age, and reading: what counts as unreadable, a read interrupted and
//! retried, and progress counted in bytes. The exact limits and wordings were
//! pinned to kill mutants that cargo-mutants found surviving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::io::{self, Read};

use audit_support::{
    assert_says, clock, delivered, failed, found, hashed, log, messages, queued, verify,
};
use delegation_log::audit::{self, AuditError, Kind, Options};
use delegation_log::event::EventKind;
use delegation_log::lifecycle::State;

fn one(line: &str) -> Vec<(u64, Kind)> {
    found(&verify(&log(&[line.to_owned()])))
}

fn queued_with(fields: &str) -> String {
    format!(r#"{{"delegation":"d","seq":1,"event":"queued","at":"2026-06-07T01:32:07Z"{fields}}}"#)
}

fn after_queued(line: &str) -> Vec<(u64, Kind)> {
    found(&verify(&log(&[queued("d", 1), line.to_owned()])))
}

fn outcome(fields: &str) -> String {
    format!(r#"{{"delegation":"d","seq":2,"at":"2026-06-07T01:32:08Z"{fields}}}"#)
}

/// Asserts that an outcome of `fields` after a `queued` line is malformed.
fn assert_malformed_outcome(fields: &str) {
    assert_eq!(
        after_queued(&outcome(fields)),
        [(2, Kind::Malformed)],
        "{fields}"
    );
}

#[test]
fn the_format_pages_example_verdict_is_reproduced_exactly() {
    let verdict = verify(&log(&[
        queued("a", 1),
        queued("b", 1),
        queued("c", 1),
        delivered("a", 2),
        failed("b", 2),
        r#"{"delegation":"x","seq":1,"event":"bogus","at":"2026-06-07T01:32:07Z"}"#.to_owned(),
    ]));
    let json: serde_json::Value = serde_json::from_str(&verdict.to_json()).unwrap();
    assert_eq!(json["records"], 6);
    assert_eq!(json["delegations"], 3);
    assert_eq!(
        json["states"],
        serde_json::json!({"queued": 1, "delivered": 1, "failed": 1})
    );
    let clean = verify(&log(&[
        queued("a", 1),
        queued("b", 1),
        queued("c", 1),
        delivered("a", 2),
        failed("b", 2),
        queued("c2", 1),
    ]));
    let text = clean.to_json();
    let at = |key: &str| text.find(&format!("\n  \"{key}\":")).expect(key);
    let keys = [
        "verdict",
        "records",
        "delegations",
        "states",
        "violations",
        "pending",
    ];
    assert!(
        keys.windows(2).all(|pair| at(pair[0]) < at(pair[1])),
        "{text}"
    );
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_object_mut().unwrap().remove("pending");
    assert_eq!(
        json,
        serde_json::json!({
            "verdict": "clean", "records": 6, "delegations": 4,
            "states": {"queued": 2, "delivered": 1, "failed": 1},
            "violations": []
        })
    );
}

#[test]
fn a_violation_is_the_four_documented_fields_in_json() {
    let verdict = verify(&log(&[queued("d", 1), queued("d", 1)]));
    let json: serde_json::Value = serde_json::from_str(&verdict.to_json()).unwrap();
    assert_eq!(
        json["violations"],
        serde_json::json!([{
            "line": 2, "delegation": "d", "kind": "sequence",
            "message": "seq 1, expected 2 (a repeat of an earlier seq)"
        }])
    );
    assert_eq!(json["verdict"], "violations");
}

#[test]
fn violations_carry_position_kind_delegation_state_and_event() {
    let verdict = verify(&log(&[queued("d", 1), delivered("d", 2), failed("d", 3)]));
    let violation = &verdict.violations[0];
    assert_eq!(violation.line, 3);
    assert_eq!(violation.kind, Kind::IllegalTransition);
    assert_eq!(violation.delegation.as_deref(), Some("d"));
    assert_eq!(violation.state, Some(State::Delivered));
    assert_eq!(violation.event, Some(EventKind::Failed));
    assert_eq!(violation.seq, Some(3));
}

// ---- delegation

#[test]
fn a_delegation_id_of_1_to_256_bytes_is_accepted() {
    assert_eq!(one(&queued("x", 1)), []);
    assert_eq!(one(&queued(&"x".repeat(256), 1)), []);
}

#[test]
fn an_empty_or_overlong_or_missing_or_non_string_delegation_is_malformed() {
    assert_eq!(one(&queued("", 1)), [(1, Kind::Malformed)]);
    assert_eq!(one(&queued(&"x".repeat(257), 1)), [(1, Kind::Malformed)]);
    assert_eq!(
        one(r#"{"seq":1,"event":"queued","source":"a","target":"b","at":"2026-06-07T01:32:07Z"}"#),
        [(1, Kind::Malformed)]
    );
    assert_eq!(
        one(
            r#"{"delegation":7,"seq":1,"event":"queued","source":"a","target":"b","at":"2026-06-07T01:32:07Z"}"#
        ),
        [(1, Kind::Malformed)]
    );
}

#[test]
fn a_malformed_line_names_its_delegation_when_it_has_one_and_null_otherwise() {
    let verdict = verify(&log(&[queued_with(""), "[1]".to_owned()]));
    assert_eq!(verdict.violations[0].delegation.as_deref(), Some("d"));
    assert_eq!(verdict.violations[1].delegation, None);
    let json: serde_json::Value = serde_json::from_str(&verdict.to_json()).unwrap();
    assert_eq!(json["violations"][1]["delegation"], serde_json::Value::Null);
}

// ---- seq

#[test]
fn a_missing_or_non_integer_seq_is_malformed() {
    for seq in ["", r#","seq":"1""#, r#","seq":1.5"#, r#","seq":null"#] {
        let line = format!(
            r#"{{"delegation":"d"{seq},"event":"queued","source":"a","target":"b","at":"2026-06-07T01:32:07Z"}}"#
        );
        assert_eq!(one(&line), [(1, Kind::Malformed)], "{line}");
    }
}

#[test]
fn a_first_record_not_at_seq_1_is_a_sequence_violation() {
    assert_eq!(one(&queued("d", 2)), [(1, Kind::Sequence)]);
    assert_eq!(one(&queued("d", 0)), [(1, Kind::Sequence)]);
    let negative = verify(&log(&[queued("d", -1)]));
    assert_eq!(found(&negative), [(1, Kind::Sequence)]);
    assert!(
        negative.violations[0]
            .message
            .starts_with("seq -1, expected 1")
    );
}

#[test]
fn a_gap_or_a_repeat_is_a_sequence_violation() {
    assert_eq!(after_queued(&delivered("d", 3)), [(2, Kind::Sequence)]);
    assert_eq!(after_queued(&delivered("d", 1)), [(2, Kind::Sequence)]);
}

#[test]
fn each_sequence_finding_says_which_rule_it_breaks() {
    let lines = [
        queued("a", 2),
        queued("b", 0),
        queued("c", -3),
        queued("d", 1),
        queued("d", 1),
        queued("e", 1),
        delivered("e", 3),
    ];
    let verdict = verify(&log(&lines));
    let messages = messages(&verdict);
    assert_eq!(
        messages,
        [
            (
                1,
                Kind::Sequence,
                "seq 2, expected 1 (a delegation's first record is seq 1)"
            ),
            (
                2,
                Kind::Sequence,
                "seq 0, expected 1 (a delegation's first record is seq 1)"
            ),
            (
                3,
                Kind::Sequence,
                "seq -3, expected 1 (a seq is a positive integer)"
            ),
            (
                5,
                Kind::Sequence,
                "seq 1, expected 2 (a repeat of an earlier seq)"
            ),
            (
                7,
                Kind::Sequence,
                "seq 3, expected 2 (a gap: records are missing before it)"
            ),
        ]
    );
}

// ---- event

#[test]
fn an_unknown_or_missing_event_is_malformed() {
    assert_malformed_outcome(r#","event":"cancelled""#);
    assert_malformed_outcome("");
    assert_malformed_outcome(r#","event":3"#);
}

// ---- at

#[test]
fn at_accepts_fractions_and_offsets() {
    for at in [
        "2026-06-07T01:32:07.123456789Z",
        "2026-06-07T03:32:07+02:00",
        "2026-06-07T01:32:07.5-00:30",
    ] {
        let line = format!(
            r#"{{"delegation":"d","seq":1,"event":"queued","source":"a","target":"b","at":"{at}"}}"#
        );
        assert_eq!(one(&line), [], "{at}");
    }
}

#[test]
fn a_missing_or_invalid_at_is_malformed() {
    for at in [
        "",
        r#","at":"yesterday""#,
        r#","at":"2026-06-07""#,
        r#","at":1780795927"#,
    ] {
        let line = format!(
            r#"{{"delegation":"d","seq":1,"event":"queued","source":"a","target":"b"{at}}}"#
        );
        assert_eq!(one(&line), [(1, Kind::Malformed)], "{line}");
    }
}

// ---- queued

#[test]
fn queued_requires_source_and_target_as_strings() {
    assert_eq!(one(&queued_with(r#","source":"a","target":"b""#)), []);
    assert_eq!(
        one(&queued_with(r#","target":"b""#)),
        [(1, Kind::Malformed)]
    );
    assert_eq!(
        one(&queued_with(r#","source":"a""#)),
        [(1, Kind::Malformed)]
    );
    assert_eq!(
        one(&queued_with(r#","source":1,"target":"b""#)),
        [(1, Kind::Malformed)]
    );
}

#[test]
fn queued_takes_any_json_as_its_task() {
    for task in [r#"{"a":[1,2]}"#, "[]", r#""text""#, "1.5", "true", "null"] {
        assert_eq!(
            one(&queued_with(&format!(
                r#","source":"a","target":"b","task":{task}"#
            ))),
            [],
            "{task}"
        );
    }
}

// ---- delivered

#[test]
fn delivered_takes_an_optional_2xx_status() {
    assert_eq!(after_queued(&outcome(r#","event":"delivered""#)), []);
    assert_eq!(
        after_queued(&outcome(r#","event":"delivered","http_status":299"#)),
        []
    );
    for status in ["199", "300", "503", r#""200""#, "200.5", "null", "70000"] {
        let line = outcome(&format!(r#","event":"delivered","http_status":{status}"#));
        assert_eq!(after_queued(&line), [(2, Kind::Malformed)], "{status}");
    }
}

#[test]
fn delivered_takes_an_optional_remote_answer_of_kind_message_or_task() {
    for remote in [
        r#"{"kind":"message"}"#,
        r#"{"kind":"message","context_id":"c-1","task_id":"t-1"}"#,
        r#"{"kind":"task","task_id":"t-1","context_id":"c-1","state":"working"}"#,
        r#"{"kind":"task","state":"input_required"}"#,
        r#"{"kind":"task","state":"TASK_STATE_SOMETHING_NEW"}"#,
        r#"{"kind":"task","unknown":"ignored"}"#,
    ] {
        let line = outcome(&format!(
            r#","event":"delivered","http_status":200,"remote":{remote}"#
        ));
        assert_eq!(after_queued(&line), [], "{remote}");
    }
}

#[test]
fn a_remote_of_another_kind_or_shape_is_malformed() {
    for remote in [
        r#"{"kind":"note"}"#,
        r#"{}"#,
        r#"{"task_id":"t-1"}"#,
        r#""task""#,
        "null",
        "[]",
        r#"{"kind":"task","task_id":7}"#,
        r#"{"kind":"task","state":null}"#,
        r#"{"kind":"task","task_id":null}"#,
        r#"{"kind":"task","context_id":["c"]}"#,
    ] {
        let line = outcome(&format!(r#","event":"delivered","remote":{remote}"#));
        assert_eq!(after_queued(&line), [(2, Kind::Malformed)], "{remote}");
    }
}

#[test]
fn a_remote_answer_is_covered_by_the_hash_and_its_unknown_fields_are_not() {
    let with = |remote: &str| {
        hashed(&[
            queued("d", 1),
            outcome(&format!(r#","event":"delivered","remote":{remote}"#)),
        ])
    };
    let honest = with(r#"{"kind":"task","task_id":"t-1","state":"working"}"#);
    let second = honest[1].clone();
    // The same hash with another state is a broken chain.
    let forged = second.replace(r#""state":"working""#, r#""state":"completed""#);
    assert_eq!(
        found(&verify(&log(&[honest[0].clone(), forged]))),
        [(2, Kind::BrokenChain)]
    );
    // An extra field inside `remote` is ignored, and not hashed.
    let extra = second.replace(r#""kind":"task""#, r#""kind":"task","note":"x""#);
    assert_eq!(found(&verify(&log(&[honest[0].clone(), extra]))), []);
}

// ---- failed

#[test]
fn failed_takes_each_documented_reason() {
    for reason in [
        "target_offline",
        "marshal_error",
        "timeout",
        "interrupted",
        "rejected",
        "bad_response",
    ] {
        let line = outcome(&format!(
            r#","event":"failed","reason":"{reason}","detail":"x""#
        ));
        assert_eq!(after_queued(&line), [], "{reason}");
    }
    let line = outcome(r#","event":"failed","reason":"http_status","http_status":503"#);
    assert_eq!(after_queued(&line), []);
    let line = outcome(r#","event":"failed","reason":"rpc_error","rpc_code":-32601"#);
    assert_eq!(after_queued(&line), []);
}

#[test]
fn rpc_code_is_required_when_and_only_when_the_reason_is_rpc_error() {
    let cases = [
        r#","event":"failed","reason":"rpc_error""#,
        r#","event":"failed","reason":"rpc_error","rpc_code":null"#,
        r#","event":"failed","reason":"rpc_error","rpc_code":"-32601""#,
        r#","event":"failed","reason":"rpc_error","rpc_code":-32601.5"#,
        r#","event":"failed","reason":"rpc_error","rpc_code":-32601,"http_status":500"#,
        r#","event":"failed","reason":"timeout","rpc_code":-32601"#,
        r#","event":"failed","reason":"http_status","http_status":500,"rpc_code":-32603"#,
    ];
    for fields in cases {
        assert_malformed_outcome(fields);
    }
}

#[test]
fn failed_without_a_reason_or_with_an_unknown_one_is_malformed() {
    assert_malformed_outcome(r#","event":"failed""#);
    assert_malformed_outcome(r#","event":"failed","reason":"gone""#);
}

#[test]
fn http_status_is_required_when_and_only_when_the_reason_is_http_status() {
    let cases = [
        r#","event":"failed","reason":"http_status""#,
        r#","event":"failed","reason":"timeout","http_status":503"#,
        r#","event":"failed","reason":"http_status","http_status":204"#,
        r#","event":"failed","reason":"http_status","http_status":"503""#,
    ];
    for fields in cases {
        assert_malformed_outcome(fields);
    }
}

#[test]
fn detail_must_be_a_string() {
    for detail in ["1", "null", "[]"] {
        let line = outcome(&format!(
            r#","event":"failed","reason":"timeout","detail":{detail}"#
        ));
        assert_eq!(after_queued(&line), [(2, Kind::Malformed)], "{detail}");
    }
}

#[test]
fn a_null_http_status_or_detail_is_malformed_not_absent() {
    let lines = [
        queued("a", 1),
        r#"{"delegation":"a","seq":2,"event":"delivered","http_status":null,"at":"2026-06-07T01:32:08Z"}"#.to_owned(),
        queued("b", 1),
        r#"{"delegation":"b","seq":2,"event":"failed","reason":"timeout","detail":null,"at":"2026-06-07T01:32:09Z"}"#.to_owned(),
    ];
    let verdict = verify(&log(&lines));
    assert_eq!(
        found(&verdict),
        [(2, Kind::Malformed), (4, Kind::Malformed)]
    );
    assert_says(&verdict, 0, "`http_status` is null");
    assert_says(&verdict, 1, "`detail` is null");
}

#[test]
fn a_null_retry_of_attempt_or_not_before_on_a_queued_is_malformed_not_absent() {
    for field in ["retry_of", "attempt", "not_before"] {
        let line = queued_with(&format!(r#","source":"a","target":"b","{field}":null"#));
        let verdict = verify(&log(&[line]));
        assert_eq!(found(&verdict), [(1, Kind::Malformed)], "{field}");
        assert_says(&verdict, 0, &format!("`{field}` is null"));
    }
}

// ---- lines

#[test]
fn crlf_line_ends_are_accepted() {
    let text = format!("{}\r\n{}\r\n", queued("d", 1), delivered("d", 2));
    assert!(verify(&text).is_clean());
    let hashed = hashed(&[queued("d", 1), delivered("d", 2)]).join("\r\n");
    assert!(verify(&hashed).is_clean());
}

#[test]
fn a_missing_final_newline_is_accepted() {
    let text = format!("{}\n{}", queued("d", 1), delivered("d", 2));
    let verdict = verify(&text);
    assert!(verdict.is_clean());
    assert_eq!(verdict.records, 2);
}

#[test]
fn a_blank_line_is_malformed_wherever_it_is() {
    let middle = format!("{}\n\n{}\n", queued("d", 1), delivered("d", 2));
    assert_eq!(found(&verify(&middle)), [(2, Kind::Malformed)]);
    let end = format!("{}\n\n", queued("d", 1));
    assert_eq!(found(&verify(&end)), [(2, Kind::Malformed)]);
    let crlf = format!("{}\r\n\r\n{}", queued("d", 1), delivered("d", 2));
    assert_eq!(found(&verify(&crlf)), [(2, Kind::Malformed)]);
    let whitespace = format!("{}\n  \n", queued("d", 1));
    assert_eq!(found(&verify(&whitespace)), [(2, Kind::Malformed)]);
}

#[test]
fn a_line_that_is_not_a_json_object_is_malformed() {
    for line in [
        "not json",
        "[1,2]",
        "\"queued\"",
        "42",
        "{\"delegation\":\"d\",",
        "\u{feff}{}",
    ] {
        let text = log(&[queued("d", 1), line.to_owned()]);
        assert_eq!(found(&verify(&text)), [(2, Kind::Malformed)], "{line}");
    }
    let mut bytes = queued("d", 1).into_bytes();
    bytes.extend_from_slice(b"\n{\"delegation\":\"\xff\"}\n");
    let verdict = audit::verify(&bytes[..], &clock()).unwrap();
    assert_eq!(found(&verdict), [(2, Kind::Malformed)]);
}

#[test]
fn a_duplicate_key_is_malformed() {
    let line = r#"{"delegation":"d","seq":1,"seq":2,"event":"queued","source":"a","target":"b","at":"2026-06-07T01:32:07Z"}"#;
    assert_eq!(after_queued(line), [(2, Kind::Malformed)]);
}

#[test]
fn unknown_extra_fields_are_ignored_and_not_hashed() {
    let line = queued_with(r#","source":"a","target":"b","priority":[1,{"x":null}],"note":"hi""#);
    assert_eq!(one(&line), []);
    let plain = hashed(&[queued("d", 1)]);
    let mut value: serde_json::Value = serde_json::from_str(&plain[0]).unwrap();
    value["comment"] = serde_json::json!("added later");
    assert!(verify(&log(&[value.to_string()])).is_clean());
}

#[test]
fn a_line_longer_than_the_limit_is_malformed_and_the_next_line_is_still_read() {
    let long = format!(r#"{{"pad":"{}"}}"#, "x".repeat(audit::MAX_LINE));
    let verdict = verify(&log(&[queued("d", 1), long, delivered("d", 2)]));
    assert_eq!(found(&verdict), [(2, Kind::Malformed)]);
    assert_eq!(verdict.states.delivered, 1);
}

const SIXTEEN_MIB: usize = 16 * 1024 * 1024;

/// `line` padded with spaces (which JSON allows after a value) to `len` bytes.
fn padded(line: &str, len: usize) -> String {
    let mut out = line.to_owned();
    out.push_str(&" ".repeat(len - line.len()));
    out
}

#[test]
fn a_line_of_exactly_sixteen_mebibytes_is_read_and_one_byte_more_is_malformed() {
    let exact = log(&[padded(&queued("a", 1), SIXTEEN_MIB), delivered("a", 2)]);
    let verdict = verify(&exact);
    assert!(verdict.is_clean(), "{:?}", verdict.violations);
    assert_eq!((verdict.records, verdict.states.delivered), (2, 1));

    let over = log(&[
        queued("a", 1),
        padded(&delivered("a", 2), SIXTEEN_MIB + 1),
        failed("b", 1),
    ]);
    let verdict = verify(&over);
    let messages = messages(&verdict);
    assert_eq!(
        messages[0],
        (2, Kind::Malformed, "line longer than 16777216 bytes")
    );
    assert_eq!(verdict.records, 3);
}

// ---- lifecycle

#[test]
fn an_outcome_before_queued_is_an_illegal_transition() {
    // seq 1 is right for a first record, so the lifecycle is what refuses it.
    assert_eq!(one(&delivered("d", 1)), [(1, Kind::IllegalTransition)]);
    assert_eq!(one(&failed("d", 1)), [(1, Kind::IllegalTransition)]);
}

#[test]
fn a_second_queued_is_an_illegal_transition() {
    assert_eq!(
        after_queued(&queued("d", 2)),
        [(2, Kind::IllegalTransition)]
    );
}

#[test]
fn nothing_follows_a_terminal_event() {
    for (end, next) in [
        (delivered("d", 2), failed("d", 3)),
        (failed("d", 2), delivered("d", 3)),
        (delivered("d", 2), delivered("d", 3)),
        (failed("d", 2), queued("d", 3)),
    ] {
        let verdict = verify(&log(&[queued("d", 1), end, next]));
        assert_eq!(found(&verdict), [(3, Kind::IllegalTransition)]);
    }
}

// ---- precedence and judgement

#[test]
fn a_record_gets_only_the_first_kind_that_applies() {
    // Wrong seq and illegal: sequence.
    assert_eq!(after_queued(&queued("d", 3)), [(2, Kind::Sequence)]);
    // Illegal and a bad hash: illegal_transition.
    let lines = hashed(&[queued("d", 1), delivered("d", 2)]);
    let mut late: serde_json::Value = serde_json::from_str(&failed("d", 3)).unwrap();
    late["hash"] = serde_json::json!("0".repeat(64));
    let verdict = verify(&log(&[
        lines[0].clone(),
        lines[1].clone(),
        late.to_string(),
    ]));
    assert_eq!(found(&verdict), [(3, Kind::IllegalTransition)]);
    // Malformed beats everything.
    let verdict = verify(&log(&[queued("d", 1), outcome(r#","event":"failed""#)]));
    assert_eq!(found(&verdict), [(2, Kind::Malformed)]);
}

#[test]
fn a_rejected_record_is_not_applied_and_the_next_is_judged_against_the_last_applied() {
    let verdict = verify(&log(&[
        queued("d", 1),
        delivered("d", 3), // gap: rejected
        failed("d", 2),    // judged after seq 1: fine
        delivered("d", 3), // now after a settled delegation: illegal
    ]));
    assert_eq!(
        found(&verdict),
        [(2, Kind::Sequence), (4, Kind::IllegalTransition)]
    );
    assert_eq!(verdict.states.failed, 1);
    assert_eq!(verdict.states.delivered, 0);
}

#[test]
fn a_delegation_whose_first_record_was_rejected_is_not_counted() {
    let verdict = verify(&log(&[delivered("d", 1), queued("e", 2), queued("f", 1)]));
    assert_eq!(verdict.delegations, 1);
    assert_eq!(verdict.states.queued, 1);
    // And a later good first record still starts it.
    let verdict = verify(&log(&[delivered("d", 1), queued("d", 1)]));
    assert_eq!(found(&verdict), [(1, Kind::IllegalTransition)]);
    assert_eq!(verdict.delegations, 1);
}

#[test]
fn interleaved_delegations_are_judged_each_on_its_own() {
    let verdict = verify(&log(&[
        queued("b", 1),
        queued("a", 1),
        queued("c", 1),
        failed("a", 2),
        delivered("c", 2),
        delivered("b", 2),
        delivered("a", 3),
        queued("b", 1),
    ]));
    assert_eq!(
        found(&verdict),
        [(7, Kind::IllegalTransition), (8, Kind::Sequence)]
    );
    assert_eq!(verdict.states.delivered, 2);
    assert_eq!(verdict.states.failed, 1);
}

#[test]
fn settled_delegations_set_aside_are_still_judged_when_they_reappear() {
    // In store order, settled delegations go to disk; a late record for one of
    // them must still be found.
    let mut lines = Vec::new();
    for n in 0..500 {
        let id = format!("d-{n:04}");
        lines.push(queued(&id, 1));
        lines.push(delivered(&id, 2));
    }
    lines.push(failed("d-0007", 3));
    lines.push(queued("d-0008", 1));
    lines.push(queued("a-new", 1));
    let verdict = verify(&log(&lines));
    assert_eq!(
        found(&verdict),
        [(1001, Kind::IllegalTransition), (1002, Kind::Sequence)]
    );
    assert_eq!(verdict.delegations, 501);
    assert_eq!(verdict.violations[0].state, Some(State::Delivered));
}

#[test]
fn a_late_record_of_a_set_aside_delegation_is_judged_against_the_state_it_settled_in() {
    // In store order (`a` < `b` < `cc`), then late records for each settled one:
    // `b` is the greatest id so far, `a` sorts before it.
    let lines = [
        queued("a", 1),
        delivered("a", 2),
        queued("b", 1),
        failed("b", 2),
        queued("cc", 1),
        failed("b", 3),
        delivered("a", 3),
        delivered("a", 5),
        queued("b", 1),
    ];
    let verdict = verify(&log(&lines));
    let seen: Vec<(u64, Kind, Option<State>)> = verdict
        .violations
        .iter()
        .map(|v| (v.line, v.kind, v.state))
        .collect();
    assert_eq!(
        seen,
        [
            (6, Kind::IllegalTransition, Some(State::Failed)),
            (7, Kind::IllegalTransition, Some(State::Delivered)),
            (8, Kind::Sequence, Some(State::Delivered)),
            (9, Kind::Sequence, Some(State::Failed)),
        ]
    );
    assert_eq!(
        verdict.violations[1].message,
        "already settled as delivered; delivered refused"
    );
    assert_eq!(
        (
            verdict.states.delivered,
            verdict.states.failed,
            verdict.states.queued
        ),
        (1, 1, 1)
    );
}

#[test]
fn a_late_record_of_the_last_delegation_in_store_order_is_still_looked_up() {
    let lines = [
        queued("a", 1),
        delivered("a", 2),
        queued("b", 1),
        delivered("b", 2),
        failed("b", 3),
    ];
    let verdict = verify(&log(&lines));
    assert_eq!(found(&verdict), [(5, Kind::IllegalTransition)]);
    assert_eq!(verdict.violations[0].state, Some(State::Delivered));
}

#[test]
fn violations_are_listed_in_line_order() {
    let verdict = verify(&log(&[
        "x".to_owned(),
        queued("d", 2),
        delivered("e", 1),
        queued("f", 1),
        queued("f", 1),
    ]));
    let lines: Vec<u64> = verdict.violations.iter().map(|v| v.line).collect();
    assert_eq!(lines, [1, 2, 3, 5]);
}

// ---- hashes

#[test]
fn a_hashed_log_verifies_and_a_wrong_hash_is_a_broken_chain() {
    let mut lines = hashed(&[queued("d", 1), delivered("d", 2)]);
    assert!(verify(&log(&lines)).is_clean());
    lines[1] = lines[1].replace("\"http_status\":200", "\"http_status\":201");
    assert_eq!(found(&verify(&log(&lines))), [(2, Kind::BrokenChain)]);
}

#[test]
fn a_hash_that_is_not_lowercase_hex_is_a_broken_chain_and_a_non_string_is_malformed() {
    let lines = hashed(&[queued("d", 1)]);
    let mut upper: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    upper["hash"] = serde_json::json!(upper["hash"].as_str().unwrap().to_uppercase());
    assert_eq!(
        found(&verify(&log(&[upper.to_string()]))),
        [(1, Kind::BrokenChain)]
    );
    let number = queued_with(r#","source":"a","target":"b","hash":5"#);
    assert_eq!(one(&number), [(1, Kind::Malformed)]);
    let null = queued_with(r#","source":"a","target":"b","hash":null"#);
    assert_eq!(one(&null), [(1, Kind::Malformed)]);
}

#[test]
fn the_first_record_decides_whether_a_log_is_hashed() {
    let with = hashed(&[queued("d", 1), delivered("d", 2), queued("e", 1)]);
    // Hashed first, then one without.
    let mixed = log(&[with[0].clone(), delivered("d", 2), with[2].clone()]);
    assert_eq!(found(&verify(&mixed)), [(2, Kind::BrokenChain)]);
    // Unhashed first, then one with.
    let mixed = log(&[queued("d", 1), with[1].clone(), queued("e", 1)]);
    assert_eq!(found(&verify(&mixed)), [(2, Kind::BrokenChain)]);
    // A wholly unhashed log is clean, unless hashes are required.
    let bare = log(&[queued("d", 1), delivered("d", 2)]);
    assert!(verify(&bare).is_clean());
    let options = Options {
        require_hashes: true,
    };
    let verdict = audit::verify_with(bare.as_bytes(), &clock(), options, &mut |_| {}).unwrap();
    // The first is rejected, so the second is judged against nothing: a gap.
    assert_eq!(
        found(&verdict),
        [(1, Kind::BrokenChain), (2, Kind::Sequence)]
    );
}

#[test]
fn a_malformed_first_line_does_not_decide_hashedness() {
    let with = hashed(&[queued("d", 1)]);
    assert_eq!(
        found(&verify(&log(&["{}".to_owned(), with[0].clone()]))),
        [(1, Kind::Malformed)]
    );
}

#[test]
fn a_missing_hash_says_whether_hashes_are_required_or_the_log_is_hashed() {
    let plain = log(&[queued("a", 1)]);
    let required = audit::verify_with(
        plain.as_bytes(),
        &clock(),
        Options {
            require_hashes: true,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(found(&required), [(1, Kind::BrokenChain)]);
    assert_says(&required, 0, "hashes are required");

    let mut mixed = hashed(&[queued("a", 1)]);
    mixed.push(delivered("a", 2));
    let verdict = verify(&log(&mixed));
    assert_eq!(found(&verdict), [(2, Kind::BrokenChain)]);
    assert_says(&verdict, 0, "the log is hashed (its first record has one)");
}

// ---- pending, and unreadable input

#[test]
fn a_delegation_still_queued_is_pending_with_its_age_not_a_violation() {
    let verdict = verify(&log(&[
        queued("old", 1),
        queued("done", 1),
        delivered("done", 2),
    ]));
    assert!(verdict.is_clean());
    assert_eq!(verdict.pending.len(), 1);
    assert_eq!(verdict.pending[0].delegation.as_str(), "old");
    assert_eq!(verdict.pending[0].age_seconds, 3600);
}

#[test]
fn an_empty_log_is_a_clean_verdict_on_nothing() {
    let verdict = verify("");
    assert!(verdict.is_clean());
    assert_eq!((verdict.records, verdict.delegations), (0, 0));
}

#[test]
fn input_with_no_json_object_at_all_is_not_a_log() {
    let err = audit::verify(&b"\x00\x01garbage\nmore garbage\n"[..], &clock()).unwrap_err();
    assert!(matches!(err, AuditError::NotALog { lines: 2 }), "{err}");
}

#[test]
fn a_read_error_is_an_error_not_a_verdict() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    assert!(matches!(
        audit::verify(Broken, &clock()),
        Err(AuditError::Io(_))
    ));
}

/// A reader that is interrupted before every chunk it hands out.
struct Interrupting<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Interrupting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = buf.len().min(self.data.len()).min(7);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn an_interrupted_read_is_retried() {
    let text = log(&[queued("a", 1), delivered("a", 2)]);
    let reader = Interrupting {
        data: text.as_bytes(),
        interrupt: false,
    };
    let verdict = audit::verify(reader, &clock()).unwrap();
    assert!(verdict.is_clean());
    assert_eq!(verdict.records, 2);
}

#[test]
fn progress_ends_at_the_number_of_bytes_read() {
    let text = log(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    let mut seen = Vec::new();
    audit::verify_with(text.as_bytes(), &clock(), Options::default(), &mut |n| {
        seen.push(n);
    })
    .unwrap();
    assert_eq!(
        seen.last().copied(),
        Some(u64::try_from(text.len()).unwrap())
    );
}
