//! The store's plain data types and the run state machine (no I/O).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use slipway_messages::{Deployment, Envelope, RunEvent, Step, StepStatus};
use time::OffsetDateTime;
use uuid::Uuid;

/// Which database a [`crate::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// PostgreSQL: production, several gateway replicas.
    Postgres,
    /// SQLite: the embedded default, one gateway process.
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        })
    }
}

/// Where a run is in its life. Only moves forward (see [`RunState::rank`]);
/// the terminal states are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Requested,
    Exporting,
    Validating,
    Importing,
    Succeeded,
    Failed,
    Canceled,
}

impl RunState {
    pub const ALL: [RunState; 7] = [
        RunState::Requested,
        RunState::Exporting,
        RunState::Validating,
        RunState::Importing,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Canceled,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Requested => "requested",
            RunState::Exporting => "exporting",
            RunState::Validating => "validating",
            RunState::Importing => "importing",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Canceled => "canceled",
        }
    }

    /// Parse a stored name; `None` for a name this build does not know.
    pub fn parse(name: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for the states a run never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Canceled
        )
    }

    /// True while a run may still be canceled: before the import starts.
    pub fn is_cancelable(self) -> bool {
        self.rank() < RunState::Importing.rank()
    }

    /// Progress order: a run only moves to a state of higher rank, so stale
    /// or out-of-order events never move it backwards.
    pub fn rank(self) -> u8 {
        match self {
            RunState::Requested => 0,
            RunState::Exporting => 1,
            RunState::Validating => 2,
            RunState::Importing => 3,
            RunState::Succeeded | RunState::Failed | RunState::Canceled => 4,
        }
    }

    /// The state a run in `self` moves to on `event`, or `None` if the event
    /// changes nothing (retrying, stale, out of order, or the run is over).
    pub fn after(self, event: &RunEvent) -> Option<RunState> {
        if self.is_terminal() {
            return None;
        }
        let target = match (event.step, event.status) {
            (_, StepStatus::Failed) => RunState::Failed,
            (_, StepStatus::Retrying) | (None, _) => return None,
            (Some(Step::Export), StepStatus::Started) => RunState::Exporting,
            (Some(Step::Export), StepStatus::Succeeded) => RunState::Validating,
            (Some(Step::Validate), StepStatus::Started) => RunState::Validating,
            (Some(Step::Validate), StepStatus::Succeeded) => RunState::Importing,
            (Some(Step::Import), StepStatus::Started) => RunState::Importing,
            (Some(Step::Import), StepStatus::Succeeded) => RunState::Succeeded,
        };
        (target.rank() > self.rank()).then_some(target)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway needs to start a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub id: Uuid,
    pub deployment: Deployment,
    /// Who asked for it: the first audit row's actor.
    pub requested_by: String,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: Uuid,
    pub state: RunState,
    pub deployment: Deployment,
    pub requested_by: String,
    /// Why the run failed or was canceled, when it was.
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Whether a history entry is a state change or an event received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The run moved to `state` (audit row: who, when, why).
    Transition,
    /// A run event reported by a service.
    Event,
}

impl HistoryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Transition => "transition",
            HistoryKind::Event => "event",
        }
    }
}

/// One line of a run's history, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: HistoryKind,
    /// The state moved to (transitions only).
    pub state: Option<RunState>,
    /// The step and status of the event (of the event that caused a transition).
    pub step: Option<Step>,
    pub status: Option<StepStatus>,
    /// The service that reported the event.
    pub service: Option<String>,
    /// Which replica of that service (host and process id).
    pub instance: Option<String>,
    /// The event's detail, or a failed run's reason.
    pub detail: Option<String>,
    /// Who caused a transition: the requester or the reporting service.
    pub actor: Option<String>,
}

/// What [`crate::Store::apply_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was recorded and moved the run.
    Transitioned { from: RunState, to: RunState },
    /// The event was recorded; the run's state did not change.
    Recorded,
    /// This message id was applied before; nothing was done.
    Duplicate,
    /// No run has this id; nothing was recorded.
    UnknownRun,
}

/// What [`crate::Store::cancel_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was canceled from this state.
    Canceled { from: RunState },
    /// The run is importing or over; it was left as is.
    TooLate { state: RunState },
    /// No run has this id.
    UnknownRun,
}

/// An outbox row claimed for publishing.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Pass to [`crate::Store::mark_published`] once the broker confirmed.
    pub id: i64,
    pub envelope: Envelope,
    /// Trace context (`traceparent`...) to send as message headers.
    pub trace_headers: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(step: Option<Step>, status: StepStatus) -> RunEvent {
        RunEvent {
            step,
            status,
            service: "test".into(),
            instance: None,
            detail: None,
            outcome: None,
        }
    }

    #[test]
    fn happy_path_moves_forward_step_by_step() {
        use RunState::*;
        use StepStatus::{Started, Succeeded as Ok};
        let mut state = Requested;
        let mut seen = vec![];
        for (step, status) in [
            (Step::Export, Started),
            (Step::Export, Ok),
            (Step::Validate, Started),
            (Step::Validate, Ok),
            (Step::Import, Started),
            (Step::Import, Ok),
        ] {
            if let Some(next) = state.after(&ev(Some(step), status)) {
                state = next;
                seen.push(next);
            }
        }
        assert_eq!(seen, [Exporting, Validating, Importing, Succeeded]);
    }

    #[test]
    fn never_moves_backwards_nor_out_of_a_terminal_state() {
        let late_export = ev(Some(Step::Export), StepStatus::Started);
        assert_eq!(RunState::Validating.after(&late_export), None);
        for terminal in RunState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for status in [
                StepStatus::Started,
                StepStatus::Succeeded,
                StepStatus::Failed,
            ] {
                assert_eq!(terminal.after(&ev(Some(Step::Import), status)), None);
            }
        }
    }

    #[test]
    fn failure_from_any_live_state_and_retrying_changes_nothing() {
        for live in RunState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert_eq!(
                live.after(&ev(None, StepStatus::Failed)),
                Some(RunState::Failed)
            );
            assert_eq!(
                live.after(&ev(Some(Step::Export), StepStatus::Retrying)),
                None
            );
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(RunState::parse("launched"), None);
    }
}
