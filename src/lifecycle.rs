//! The lifecycle machine: the single authority on which events are legal.
//!
//! ```text
//! ┌──────────────────────── root: refuses what nothing handled ─────────────────────┐
//! │                                                                                  │
//! │  initial ──queued──▶ ┌─ pending ─┐ ──delivered──▶ ┌─ settled: refuses all ─────┐ │
//! │                      │  queued   │ ──failed─────▶ │  delivered      failed     │ │
//! │                      └───────────┘                └────────────────────────────┘ │
//! └──────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The machine is a statig hierarchical state machine. It is pure: no I/O, no entry
//! or exit actions, and no state outside the machine, so replay and live recording
//! drive the same code and neither can notice the other. statig drops an event that
//! bubbles past the top superstate, so every state chains up to one `root`
//! superstate, which marks the event refused in the context; [`step`] turns that
//! mark into a `Result`.

use std::fmt;

use serde::{Deserialize, Serialize};
use statig::blocking::{IntoStateMachineExt as _, Outcome, Outcome::*};
use statig::state_machine;

use crate::event::EventKind;

/// Where a delegation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing recorded yet: the only legal event is `queued`.
    Initial,
    /// Queued and not yet settled (superstate `pending`).
    Queued,
    /// Delivered: terminal (superstate `settled`).
    Delivered,
    /// Failed: terminal (superstate `settled`).
    Failed,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 4] = [
        State::Initial,
        State::Queued,
        State::Delivered,
        State::Failed,
    ];

    /// The state's name: `initial`, `queued`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::Queued => "queued",
            State::Delivered => "delivered",
            State::Failed => "failed",
        }
    }

    /// Whether the state is terminal.
    pub fn is_settled(self) -> bool {
        matches!(self, State::Delivered | State::Failed)
    }

    /// The public name of a machine state.
    fn of(phase: &Phase) -> State {
        match phase {
            Phase::Initial {} => State::Initial,
            Phase::Queued {} => State::Queued,
            Phase::Delivered {} => State::Delivered,
            Phase::Failed {} => State::Failed,
        }
    }

    fn phase(self) -> Phase {
        match self {
            State::Initial => Phase::initial(),
            State::Queued => Phase::queued(),
            State::Delivered => Phase::delivered(),
            State::Failed => Phase::failed(),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the machine refused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum Refusal {
    /// The delegation is settled; nothing follows `delivered` or `failed`.
    #[error("already settled as {state}; {event} refused")]
    AlreadySettled {
        /// The terminal state.
        state: State,
        /// The refused event.
        event: EventKind,
    },
    /// The event is not allowed in this state (an outcome before `queued`, or a
    /// second `queued`).
    #[error("{event} is illegal in state {from}")]
    IllegalTransition {
        /// The state the delegation was in.
        from: State,
        /// The refused event.
        event: EventKind,
    },
}

/// The machine's context: the state the event arrived in (superstates do not see
/// their substate), and the verdict, written by the superstate that refuses it.
struct Verdict {
    from: State,
    refused: Option<Refusal>,
}

/// The statig machine. It carries no data: the state is all there is.
#[derive(Default)]
struct Lifecycle;

#[state_machine(
    initial = "Phase::initial()",
    state(name = "Phase", derive(Debug, Clone, PartialEq, Eq)),
    superstate(derive(Debug)),
    event_identifier = "event",
    context_identifier = "verdict",
    visibility = "pub(crate)"
)]
impl Lifecycle {
    /// Before `queued`: only `queued` is legal.
    #[state(superstate = "root")]
    fn initial(event: &EventKind) -> Outcome<Phase> {
        match event {
            EventKind::Queued => Transition(Phase::queued()),
            _ => Super,
        }
    }

    /// Queued: either outcome settles it; a second `queued` bubbles up and is refused.
    #[state(superstate = "pending")]
    fn queued(event: &EventKind) -> Outcome<Phase> {
        match event {
            EventKind::Delivered => Transition(Phase::delivered()),
            EventKind::Failed => Transition(Phase::failed()),
            EventKind::Queued => Super,
        }
    }

    /// Not yet settled. It handles nothing itself.
    #[superstate(superstate = "root")]
    fn pending(event: &EventKind) -> Outcome<Phase> {
        let _ = event;
        Super
    }

    #[state(superstate = "settled")]
    fn delivered(event: &EventKind) -> Outcome<Phase> {
        let _ = event;
        Super
    }

    #[state(superstate = "settled")]
    fn failed(event: &EventKind) -> Outcome<Phase> {
        let _ = event;
        Super
    }

    /// Terminal: absorbs and refuses every event.
    #[superstate]
    fn settled(event: &EventKind, verdict: &mut Verdict) -> Outcome<Phase> {
        verdict.refused = Some(Refusal::AlreadySettled {
            state: verdict.from,
            event: *event,
        });
        Handled
    }

    /// Catches whatever no state handled, so that no event is dropped silently.
    #[superstate]
    fn root(event: &EventKind, verdict: &mut Verdict) -> Outcome<Phase> {
        verdict.refused = Some(Refusal::IllegalTransition {
            from: verdict.from,
            event: *event,
        });
        Handled
    }
}

/// Runs one event through the machine from `from`.
///
/// # Errors
/// The [`Refusal`] when the event is illegal in `from`; the caller must then
/// change nothing.
///
/// ```
/// use delegation_log::event::EventKind;
/// use delegation_log::lifecycle::{step, Refusal, State};
///
/// assert_eq!(step(State::Initial, EventKind::Queued), Ok(State::Queued));
/// assert_eq!(
///     step(State::Delivered, EventKind::Failed),
///     Err(Refusal::AlreadySettled { state: State::Delivered, event: EventKind::Failed })
/// );
/// ```
pub fn step(from: State, event: EventKind) -> Result<State, Refusal> {
    let mut machine = Lifecycle.uninitialized_state_machine();
    *machine.state_mut() = from.phase();
    let mut verdict = Verdict {
        from,
        refused: None,
    };
    let mut machine = machine.init_with_context(&mut verdict);
    machine.handle_with_context(&event, &mut verdict);
    match verdict.refused {
        Some(refusal) => Err(refusal),
        None => Ok(State::of(machine.state())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queued_starts_a_delegation() {
        assert_eq!(step(State::Initial, EventKind::Queued), Ok(State::Queued));
        for event in [EventKind::Delivered, EventKind::Failed] {
            assert_eq!(
                step(State::Initial, event),
                Err(Refusal::IllegalTransition {
                    from: State::Initial,
                    event
                })
            );
        }
    }

    #[test]
    fn settled_states_absorb_every_event() {
        for state in [State::Delivered, State::Failed] {
            for event in EventKind::ALL {
                assert_eq!(
                    step(state, event),
                    Err(Refusal::AlreadySettled { state, event })
                );
            }
        }
    }
}
