//! Guards the lifecycle's specification: the whole (state × event) table of the
//! statig machine, pinned as a snapshot, with the wording of each refusal. A
//! change to what is legal shows up here as a diff to review, never silently.
//!
//! It also guards the state predicates callers branch on: settled means delivered
//! or failed and nothing else, and each state has its own name. The crate itself
//! decides through the machine, not through `is_settled`, so a mutant of it
//! (`State::is_settled -> false`, found by cargo-mutants) survived every other
//! test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;

use delegation_log::event::EventKind;
use delegation_log::lifecycle::{State, step};

#[test]
fn the_state_by_event_table_is_the_spec() {
    let mut table =
        String::from("state      | queued                | delivered             | failed\n");
    table.push_str(
        "---------- | --------------------- | --------------------- | ---------------------\n",
    );
    for state in State::ALL {
        write!(table, "{:<10}", state.as_str()).unwrap();
        for event in EventKind::ALL {
            let cell = match step(state, event) {
                Ok(next) => format!("-> {next}"),
                Err(refusal) => match refusal {
                    delegation_log::lifecycle::Refusal::AlreadySettled { .. } => {
                        "refused: settled".to_owned()
                    }
                    delegation_log::lifecycle::Refusal::IllegalTransition { .. } => {
                        "refused: illegal".to_owned()
                    }
                },
            };
            write!(table, " | {cell:<21}").unwrap();
        }
        table.push('\n');
    }
    insta::assert_snapshot!(table);
}

#[test]
fn refusals_name_the_state_and_the_event() {
    let messages: Vec<String> = State::ALL
        .iter()
        .flat_map(|state| EventKind::ALL.iter().map(move |event| (*state, *event)))
        .filter_map(|(state, event)| step(state, event).err())
        .map(|refusal| refusal.to_string())
        .collect();
    insta::assert_snapshot!(messages.join("\n"));
}

#[test]
fn only_delivered_and_failed_are_settled() {
    let settled: Vec<State> = State::ALL
        .into_iter()
        .filter(|state| state.is_settled())
        .collect();
    assert_eq!(settled, [State::Delivered, State::Failed]);
}

#[test]
fn every_state_has_its_own_name_and_prints_as_it() {
    let names: Vec<&str> = State::ALL.into_iter().map(State::as_str).collect();
    assert_eq!(names, ["initial", "queued", "delivered", "failed"]);
    for state in State::ALL {
        assert_eq!(state.to_string(), state.as_str());
    }
}
