//! Pins what people and tools see of a verdict, plain and JSON: a clean log, one
//! log for each violation kind, and a tampered export. A changed snapshot is a
//! changed contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use audit_support::{delivered, failed, hashed, log, queued, verify};

fn pin(name: &str, text: &str) {
    let verdict = verify(text);
    insta::assert_snapshot!(format!("{name}_plain"), verdict.to_plain());
    insta::assert_snapshot!(format!("{name}_json"), verdict.to_json());
}

#[test]
fn a_clean_log() {
    pin(
        "clean",
        &log(&[
            queued("a", 1),
            queued("b", 1),
            delivered("a", 2),
            queued("c", 1),
            failed("c", 2),
        ]),
    );
}

#[test]
fn a_malformed_line() {
    pin(
        "malformed",
        &log(&[
            queued("a", 1),
            r#"{"delegation":"a","seq":2,"event":"failed","reason":"http_status","at":"2026-06-07T01:32:08Z"}"#.to_owned(),
            "not json".to_owned(),
        ]),
    );
}

#[test]
fn a_sequence_violation() {
    pin(
        "sequence",
        &log(&[queued("a", 1), delivered("a", 3), queued("b", 2)]),
    );
}

#[test]
fn an_illegal_transition() {
    pin(
        "illegal_transition",
        &log(&[
            delivered("a", 1),
            queued("b", 1),
            delivered("b", 2),
            failed("b", 3),
        ]),
    );
}

#[test]
fn a_broken_chain() {
    let mut lines = hashed(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    lines[1] = lines[1].replace("\"http_status\":200", "\"http_status\":204");
    let mut value: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    value.as_object_mut().unwrap().remove("hash");
    lines[2] = value.to_string();
    pin("broken_chain", &log(&lines));
}

#[test]
fn a_tampered_export() {
    // An export of four delegations, then: a field edited (line 2), a middle
    // record deleted (b's queued), two records of one delegation swapped (d).
    let mut lines = hashed(&[
        queued("a", 1),
        delivered("a", 2),
        queued("b", 1),
        failed("b", 2),
        queued("c", 1),
        queued("d", 1),
        delivered("d", 2),
    ]);
    lines[1] = lines[1].replace("2026-06-07T01:32:08Z", "2026-06-07T01:32:18Z");
    lines.remove(2);
    lines.swap(4, 5);
    pin("tampered_export", &log(&lines));
}
