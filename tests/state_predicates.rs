//! The lifecycle's state predicates, which callers branch on: settled means
//! delivered or failed, and nothing else.
//!
//! Written to kill a surviving mutant (`State::is_settled -> false`) that no other
//! test noticed, since the crate itself decides through the machine, not through
//! the predicate.

use delegation_log::lifecycle::State;

#[test]
fn only_delivered_and_failed_are_settled() {
    let settled: Vec<State> = State::ALL
        .into_iter()
        .filter(|state| state.is_settled())
        .collect();
    assert_eq!(settled, [State::Delivered, State::Failed]);
}

#[test]
fn every_state_has_its_own_name() {
    let names: Vec<&str> = State::ALL.into_iter().map(State::as_str).collect();
    assert_eq!(names, ["initial", "queued", "delivered", "failed"]);
    for state in State::ALL {
        assert_eq!(state.to_string(), state.as_str());
    }
}
