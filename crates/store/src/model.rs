//! The store's plain data types and the run state machine (no I/O).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use slipway_messages::{ArtifactRef, Deployment, Envelope, RunEvent, Step, StepStatus};
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

/// Where a run is in its life. Events only move it forward (see
/// [`RunState::rank`]); the gateway's own actions (settings supplied, a gate
/// passed) move it on from a waiting state. The terminal states are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Requested,
    /// Waiting for an external system to complete the pre-export gate.
    AwaitingPreExport,
    Exporting,
    Validating,
    /// Validation found settings missing or wrong; the maker supplies them.
    AwaitingSettings,
    /// Waiting for an approver.
    AwaitingApproval,
    /// Waiting for an external system to complete the pre-deployment gate.
    AwaitingPreDeployment,
    /// Waiting for its scheduled time.
    Scheduled,
    Importing,
    Succeeded,
    Failed,
    Canceled,
}

impl RunState {
    pub const ALL: [RunState; 12] = [
        RunState::Requested,
        RunState::AwaitingPreExport,
        RunState::Exporting,
        RunState::Validating,
        RunState::AwaitingSettings,
        RunState::AwaitingApproval,
        RunState::AwaitingPreDeployment,
        RunState::Scheduled,
        RunState::Importing,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Canceled,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Requested => "requested",
            RunState::AwaitingPreExport => "awaiting_pre_export",
            RunState::Exporting => "exporting",
            RunState::Validating => "validating",
            RunState::AwaitingSettings => "awaiting_settings",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::AwaitingPreDeployment => "awaiting_pre_deployment",
            RunState::Scheduled => "scheduled",
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

    /// Progress order: events only move a run to a state of higher rank, so
    /// stale or out-of-order events never move it backwards.
    pub fn rank(self) -> u8 {
        match self {
            RunState::Requested => 0,
            RunState::AwaitingPreExport => 1,
            RunState::Exporting => 2,
            RunState::Validating => 3,
            RunState::AwaitingSettings => 4,
            RunState::AwaitingApproval => 5,
            RunState::AwaitingPreDeployment => 6,
            RunState::Scheduled => 7,
            RunState::Importing => 8,
            RunState::Succeeded | RunState::Failed | RunState::Canceled => 9,
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
    /// The gates it passes (from its stage) and its scheduled time.
    pub gates: RunGates,
    /// An artifact stored earlier that this run reuses (later stages,
    /// redeployments): the run starts with validation, not export.
    pub artifact: Option<ArtifactRef>,
}

/// Which runs a listing keeps; every filter set must match. Applied in SQL,
/// before the limit, so a filtered page is as full as the runs allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub pipeline_id: Option<Uuid>,
    pub stage_id: Option<Uuid>,
    /// Compared case-insensitively, as Dataverse compares unique names.
    pub solution_name: Option<String>,
    pub state: Option<RunState>,
}

/// A gate's outcome: who decided, when, and what they said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateDecision {
    pub by: String,
    /// Approved / completed (true) or rejected (false).
    pub passed: bool,
    pub comment: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The gates a run passes, fixed when it is submitted (from its stage),
/// and how each went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RunGates {
    pub approval_required: bool,
    pub pre_export_gate: bool,
    pub pre_deployment_gate: bool,
    /// Validate only: the run ends after a passed validation, no import.
    pub dry_run: bool,
    /// Import no earlier than this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub scheduled_at: Option<OffsetDateTime>,
    pub approval: Option<GateDecision>,
    pub pre_export: Option<GateDecision>,
    pub pre_deployment: Option<GateDecision>,
}

impl RunGates {
    /// True when the import must wait for the gateway after validation
    /// (an approval, a pre-deployment gate or a scheduled time).
    pub fn holds_after_validation(&self) -> bool {
        self.dry_run
            || self.approval_required
            || self.pre_deployment_gate
            || self.scheduled_at.is_some()
    }

    /// Where a run whose validation passed goes next at `now`: the first
    /// gate not yet passed, else its scheduled time, else the import.
    pub fn after_validation(&self, now: OffsetDateTime) -> RunState {
        if self.dry_run {
            RunState::Succeeded
        } else if self.approval_required && self.approval.is_none() {
            RunState::AwaitingApproval
        } else if self.pre_deployment_gate && self.pre_deployment.is_none() {
            RunState::AwaitingPreDeployment
        } else if self.scheduled_at.is_some_and(|at| at > now) {
            RunState::Scheduled
        } else {
            RunState::Importing
        }
    }
}

/// A run's latest import progress, from the importer's reports while the
/// run imports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportProgress {
    /// 0 to 100, as the environment's import job last said; `None` while
    /// it has said nothing (a report without a percentage keeps the last
    /// one). 100 once the import succeeded.
    pub percent: Option<f64>,
    /// How many times the importer reported on the running import: once
    /// when it started it, then once per check.
    pub polls: u32,
    /// When the latest report (or the import's success) was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
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
    pub gates: RunGates,
    /// The artifact validated (and imported).
    pub artifact: Option<ArtifactRef>,
    /// The latest validation report.
    pub validation: Option<slipway_messages::ValidationReport>,
    /// The solution's version in the source environment before this run
    /// exported it (the exporter then moved the source on); `None` when
    /// the run did not export (yet).
    #[serde(default)]
    pub source_version: Option<String>,
    /// How far the import has got, once the importer reported on it.
    #[serde(default)]
    pub import_progress: Option<ImportProgress>,
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
