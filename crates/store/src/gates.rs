//! What people and external systems do to a waiting run: approve or reject
//! it, complete a gate (pre-export, pre-deployment), or supply the
//! settings its validation asked for. Each is one transaction that checks
//! the run is waiting for exactly that, records the decision on the run,
//! moves it on, releases (or writes) the command that continues it, and
//! appends history and audit rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use slipway_messages::{Envelope, Message, ValidateCommand};
use uuid::Uuid;

use crate::audit::{self, AuditAction, NewAudit};
use crate::model::{GateDecision, Run, RunState};
use crate::{
    HELD, NewHistory, Release, RunRow, Store, StoreError, from_millis, insert_history,
    insert_outbox, millis_of, now_millis, run_columns, run_from_row, to_json, update_runs,
};

/// The gates a person or an external system completes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// An approver's decision before the import.
    Approval,
    /// An external system's check before the export (OnPreExportStarted).
    PreExport,
    /// An external system's check before the import (OnPreDeploymentStarted).
    PreDeployment,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Approval => "approval",
            Gate::PreExport => "pre_export",
            Gate::PreDeployment => "pre_deployment",
        }
    }

    /// The state a run waits in for this gate.
    pub fn waiting_state(self) -> RunState {
        match self {
            Gate::Approval => RunState::AwaitingApproval,
            Gate::PreExport => RunState::AwaitingPreExport,
            Gate::PreDeployment => RunState::AwaitingPreDeployment,
        }
    }
}

impl Store {
    /// Record `actor`'s decision on `gate` of a run waiting for it. Passed:
    /// the run moves on (to its next gate, its scheduled time or the
    /// import; after the pre-export gate, to the export) and the held
    /// command is released. Rejected: the run fails with the comment.
    /// `Conflict` when the run is not waiting for this gate.
    pub async fn decide_gate(
        &self,
        run_id: Uuid,
        gate: Gate,
        actor: &str,
        passed: bool,
        comment: Option<&str>,
    ) -> Result<Run, StoreError> {
        let id = run_id.to_string();
        let mut tx = self.begin_write().await?;
        let Some((current, pipeline)) = self.lock_run(&mut tx, &id).await? else {
            return Err(StoreError::not_found("run", run_id));
        };
        if current != gate.waiting_state() {
            return Err(StoreError::Conflict(format!(
                "run {run_id} is {current}, not waiting for its {} gate",
                gate.as_str()
            )));
        }
        let run = self
            .get_run_in(&mut tx, &id)
            .await?
            .ok_or_else(|| StoreError::not_found("run", run_id))?;
        let now = now_millis();
        let decision = GateDecision {
            by: actor.to_owned(),
            passed,
            comment: comment.map(str::to_owned),
            at: from_millis(now)?,
        };
        let mut gates = run.gates.clone();
        match gate {
            Gate::Approval => gates.approval = Some(decision),
            Gate::PreExport => gates.pre_export = Some(decision),
            Gate::PreDeployment => gates.pre_deployment = Some(decision),
        }
        let (to, reason) = if !passed {
            let what = match gate {
                Gate::Approval => "approval rejected",
                Gate::PreExport => "pre-export gate rejected",
                Gate::PreDeployment => "pre-deployment gate rejected",
            };
            let reason = match comment.filter(|c| !c.trim().is_empty()) {
                Some(c) => format!("{what} by {actor}: {c}"),
                None => format!("{what} by {actor}"),
            };
            settle_unpublished(&mut tx, &id).await?;
            (RunState::Failed, Some(reason))
        } else if gate == Gate::PreExport {
            release_held(&mut tx, &id, Release::Now).await?;
            (RunState::Requested, None)
        } else {
            let next = gates.after_validation(from_millis(now)?);
            let release = match next {
                RunState::Importing => Release::Now,
                RunState::Scheduled => Release::At(gates.scheduled_at.map_or(now, millis_of)),
                _ => Release::Held,
            };
            release_held(&mut tx, &id, release).await?;
            (next, None)
        };
        sqlx::query("UPDATE runs SET gates = $2 WHERE id = $1")
            .bind(&id)
            .bind(to_json("run gates", &gates)?)
            .execute(&mut *tx)
            .await?;
        update_runs(&mut tx, now, &[(&id, to, reason.as_deref())]).await?;
        let history = NewHistory::transition(&id, to, actor, reason.as_deref().or(comment), None);
        insert_history(&mut tx, self.backend, now, &[history]).await?;
        let mut record = NewAudit::new(actor, AuditAction::Transition, "run", &id)
            .before(&serde_json::json!({ "state": current }))
            .after(&serde_json::json!({
                "state": to,
                "gate": gate.as_str(),
                "passed": passed,
                "comment": comment,
            }));
        record.pipeline_id = pipeline;
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        self.get_run(run_id)
            .await?
            .ok_or_else(|| StoreError::not_found("run", run_id))
    }

    /// The maker supplies the deployment settings a validation asked for:
    /// the run (waiting in `AwaitingSettings`) goes back to validation of
    /// the same artifact with the new settings.
    pub async fn supply_settings(
        &self,
        run_id: Uuid,
        actor: &str,
        settings: serde_json::Value,
    ) -> Result<Run, StoreError> {
        let id = run_id.to_string();
        let mut tx = self.begin_write().await?;
        let Some((current, pipeline)) = self.lock_run(&mut tx, &id).await? else {
            return Err(StoreError::not_found("run", run_id));
        };
        if current != RunState::AwaitingSettings {
            return Err(StoreError::Conflict(format!(
                "run {run_id} is {current}; settings are supplied to runs awaiting settings"
            )));
        }
        let run = self
            .get_run_in(&mut tx, &id)
            .await?
            .ok_or_else(|| StoreError::not_found("run", run_id))?;
        let artifact = run.artifact.clone().ok_or_else(|| {
            StoreError::corrupt(
                "run artifact",
                format!("run {run_id} awaits settings without an artifact"),
            )
        })?;
        let mut deployment = run.deployment.clone();
        deployment.settings = Some(settings.clone());
        let now = now_millis();
        sqlx::query("UPDATE runs SET deployment = $2 WHERE id = $1")
            .bind(&id)
            .bind(to_json("deployment", &deployment)?)
            .execute(&mut *tx)
            .await?;
        let command = Envelope::new(
            run_id,
            Message::Validate(ValidateCommand {
                deployment,
                artifact,
            }),
        );
        insert_outbox(&mut tx, now, &command, &BTreeMap::new(), Release::Now).await?;
        update_runs(&mut tx, now, &[(&id, RunState::Validating, None)]).await?;
        let history = NewHistory::transition(
            &id,
            RunState::Validating,
            actor,
            Some("settings supplied"),
            None,
        );
        insert_history(&mut tx, self.backend, now, &[history]).await?;
        let mut record = NewAudit::new(actor, AuditAction::Transition, "run", &id)
            .before(&serde_json::json!({ "state": current, "settings": run.deployment.settings }))
            .after(&serde_json::json!({ "state": RunState::Validating, "settings": settings }));
        record.pipeline_id = pipeline;
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        self.get_run(run_id)
            .await?
            .ok_or_else(|| StoreError::not_found("run", run_id))
    }

    /// The succeeded runs of `stage_id` for `solution_name`, newest first,
    /// of the versions that succeeded in *every* target environment of the
    /// stage: what a later stage may deploy. A stage that fans out to
    /// several targets lets a version go on only once all of them have it
    /// (matched by the target's name, case-insensitively); dry runs, which
    /// import nothing, never count.
    pub async fn succeeded_versions(
        &self,
        stage_id: Uuid,
        solution_name: &str,
    ) -> Result<Vec<Run>, StoreError> {
        let targets: Vec<String> = sqlx::query_scalar(
            "SELECT e.name FROM stage_targets t JOIN environments e ON e.id = t.environment_id \
             WHERE t.stage_id = $1",
        )
        .bind(stage_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let runs = sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE stage_id = $1 AND state = 'succeeded' ORDER BY created_at DESC"
        ))
        .bind(stage_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(run_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let runs = runs
            .into_iter()
            .filter(|run| {
                !run.gates.dry_run
                    && run
                        .deployment
                        .solution_name
                        .eq_ignore_ascii_case(solution_name)
            })
            .collect();
        Ok(in_every_target(runs, &targets))
    }

    /// The pipeline's stored artifact of `solution_name` at `version`.
    pub async fn artifact_of(
        &self,
        pipeline_id: Uuid,
        solution_name: &str,
        version: &str,
    ) -> Result<Option<slipway_messages::ArtifactRef>, StoreError> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT version, managed_sha256, unmanaged_sha256, managed_bytes FROM artifacts \
             WHERE pipeline_id = $1 AND LOWER(solution_name) = LOWER($2) AND version = $3",
        )
        .bind(pipeline_id.to_string())
        .bind(solution_name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(version, managed, unmanaged, bytes)| slipway_messages::ArtifactRef {
                managed_sha256: managed,
                unmanaged_sha256: unmanaged,
                version,
                managed_bytes: u64::try_from(bytes).unwrap_or(0),
            },
        ))
    }

    /// The newest `limit` runs in `state`, newest first.
    pub async fn runs_in_state(&self, state: RunState, limit: u32) -> Result<Vec<Run>, StoreError> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE state = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(run_from_row)
        .collect()
    }
}

/// The runs whose version (their artifact's) succeeded in every one of
/// `targets`, in the order given. Without targets (a stage being edited)
/// every run with an artifact counts.
fn in_every_target(runs: Vec<Run>, targets: &[String]) -> Vec<Run> {
    let version = |run: &Run| run.artifact.as_ref().map(|a| a.version.clone());
    let mut reached: HashMap<String, HashSet<String>> = HashMap::new();
    for run in &runs {
        if let Some(v) = version(run) {
            reached
                .entry(v)
                .or_default()
                .insert(run.deployment.target_environment.to_lowercase());
        }
    }
    runs.into_iter()
        .filter(|run| {
            version(run).is_some_and(|v| {
                targets.iter().all(|t| {
                    reached
                        .get(&v)
                        .is_some_and(|r| r.contains(&t.to_lowercase()))
                })
            })
        })
        .collect()
}

/// Let a run's held outbox rows go (now, or at a time), unless `Release::Held`.
async fn release_held(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run_id: &str,
    release: Release,
) -> Result<(), StoreError> {
    let until = match release {
        Release::Held => return Ok(()),
        Release::Now => None,
        Release::At(at) => Some(at),
    };
    sqlx::query(
        "UPDATE outbox SET claimed_until = $2 WHERE run_id = $1 AND published_at IS NULL AND claimed_until = $3",
    )
    .bind(run_id)
    .bind(until)
    .bind(HELD)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Commands of a run that must never go out now (it was canceled or
/// rejected): deleted, as published ones are, so no relay claims them.
pub(crate) async fn settle_unpublished(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox WHERE run_id = $1")
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunGates;
    use slipway_messages::{ArtifactRef, Deployment};

    fn run(target: &str, version: &str) -> Run {
        Run {
            id: Uuid::now_v7(),
            state: RunState::Succeeded,
            deployment: Deployment::between("Contoso", "dev", target),
            requested_by: "maker".into(),
            reason: None,
            gates: RunGates::default(),
            artifact: Some(ArtifactRef {
                managed_sha256: "a".repeat(64),
                unmanaged_sha256: "b".repeat(64),
                version: version.into(),
                managed_bytes: 1,
            }),
            validation: None,
            source_version: None,
            import_progress: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn versions(runs: &[Run]) -> Vec<(&str, &str)> {
        runs.iter()
            .map(|r| {
                (
                    r.deployment.target_environment.as_str(),
                    r.artifact.as_ref().map_or("", |a| a.version.as_str()),
                )
            })
            .collect()
    }

    #[test]
    fn a_version_counts_once_every_target_has_it() {
        let targets = ["prod-eu".to_owned(), "prod-us".to_owned()];
        let runs = vec![
            run("prod-eu", "1.0.0.3"),
            run("PROD-US", "1.0.0.2"),
            run("prod-eu", "1.0.0.2"),
            run("prod-us", "1.0.0.1"),
        ];
        assert_eq!(
            versions(&in_every_target(runs, &targets)),
            [("PROD-US", "1.0.0.2"), ("prod-eu", "1.0.0.2")],
            "1.0.0.3 is only in prod-eu and 1.0.0.1 only in prod-us"
        );
        let mut no_artifact = run("prod-eu", "1.0.0.4");
        no_artifact.artifact = None;
        assert!(in_every_target(vec![no_artifact], &targets[..1]).is_empty());
        // One target: every succeeded version counts, as before fan-out.
        let one = in_every_target(vec![run("test", "2.0.0.0")], &["test".to_owned()]);
        assert_eq!(versions(&one), [("test", "2.0.0.0")]);
    }
}
