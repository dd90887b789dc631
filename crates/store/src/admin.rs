//! Environments, pipelines, stages and sharing: the admin side's queries.
//! Every change is one transaction that also appends its audit record, and
//! the rules that need the database (names unique, a stage targets only
//! target environments, no cycles, at most so many stages) are checked
//! inside that transaction, so concurrent admins cannot break them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Transaction};
use uuid::Uuid;

use crate::admin_model::*;
use crate::audit::{self, AuditAction, NewAudit};
use crate::{Store, StoreError, from_millis, now_millis, to_json};

/// Longest name of an environment, pipeline or stage.
pub const MAX_NAME_CHARS: usize = 100;

type EnvironmentRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

const SELECT_ENVIRONMENT: &str = "SELECT id, name, url, kind, credentials, validation_status, \
     validation_error, validated_at, created_at, updated_at FROM environments";

fn parse_uuid(what: &'static str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::corrupt(what, e))
}

fn environment_from_row(row: EnvironmentRow) -> Result<Environment, StoreError> {
    let (id, name, url, kind, credentials, status, error, validated_at, created, updated) = row;
    Ok(Environment {
        id: parse_uuid("environment id", &id)?,
        name,
        url,
        kind: EnvironmentKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt("environment kind", &kind))?,
        credentials: serde_json::from_str(&credentials)
            .map_err(|e| StoreError::corrupt("environment credentials", e))?,
        validation_status: ValidationStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("validation status", &status))?,
        validation_error: error,
        validated_at: validated_at.map(from_millis).transpose()?,
        created_at: from_millis(created)?,
        updated_at: from_millis(updated)?,
    })
}

/// Checks a name an admin typed.
pub fn check_name(field: &str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if name.trim() != name {
        return Err(StoreError::invalid(
            field,
            "must not start or end with spaces",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::invalid(
            field,
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn bool_of(value: i64) -> bool {
    value != 0
}

fn int_of(value: bool) -> i64 {
    i64::from(value)
}

/// A pipeline's own fields, as its audit records show them.
#[derive(Debug, Serialize)]
struct PipelineSnapshot<'a> {
    name: &'a str,
    description: &'a str,
    allow_redeploy_older: bool,
    source_environment_ids: Vec<Uuid>,
}

impl<'a> From<&'a Pipeline> for PipelineSnapshot<'a> {
    fn from(p: &'a Pipeline) -> Self {
        PipelineSnapshot {
            name: &p.name,
            description: &p.description,
            allow_redeploy_older: p.allow_redeploy_older,
            source_environment_ids: p.source_environments.iter().map(|e| e.id).collect(),
        }
    }
}

impl Store {
    // ---- environments ----

    /// Register an environment (validation status `pending`).
    pub async fn create_environment(
        &self,
        actor: &str,
        new: &NewEnvironment,
    ) -> Result<Environment, StoreError> {
        check_name("name", &new.name)?;
        let id = Uuid::now_v7();
        let now = now_millis();
        let credentials = to_json("credentials", &new.credentials)?;
        let mut tx = self.begin_admin_write().await?;
        ensure_name_free(&mut tx, Named::Environment, &new.name, None).await?;
        sqlx::query(
            "INSERT INTO environments (id, name, url, kind, credentials, validation_status, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&new.url)
        .bind(new.kind.as_str())
        .bind(&credentials)
        .bind(ValidationStatus::Pending.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let env = load_environment(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", id))?;
        let record = NewAudit::new(actor, AuditAction::Create, "environment", id).after(&env);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(env)
    }

    /// All environments, by name.
    pub async fn list_environments(&self) -> Result<Vec<Environment>, StoreError> {
        let sql = format!("{SELECT_ENVIRONMENT} ORDER BY name");
        sqlx::query_as::<_, EnvironmentRow>(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(environment_from_row)
            .collect()
    }

    pub async fn get_environment(&self, id: Uuid) -> Result<Option<Environment>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_environment(&mut conn, id).await
    }

    /// The environment named `name`, if any.
    pub async fn environment_by_name(&self, name: &str) -> Result<Option<Environment>, StoreError> {
        let sql = format!("{SELECT_ENVIRONMENT} WHERE name = $1");
        sqlx::query_as::<_, EnvironmentRow>(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(environment_from_row)
            .transpose()
    }

    /// Change an environment. A new URL or new credentials make its
    /// validation `pending` again; its kind cannot change while a pipeline
    /// uses it in the other role.
    pub async fn update_environment(
        &self,
        actor: &str,
        id: Uuid,
        patch: &EnvironmentPatch,
    ) -> Result<Environment, StoreError> {
        if let Some(name) = &patch.name {
            check_name("name", name)?;
        }
        let mut tx = self.begin_admin_write().await?;
        let before = load_environment(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", id))?;
        if let Some(name) = &patch.name {
            ensure_name_free(&mut tx, Named::Environment, name, Some(id)).await?;
        }
        if let Some(kind) = patch.kind.filter(|k| *k != before.kind) {
            let users = pipelines_using(&mut tx, id, before.kind).await?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "environment {} is a {} environment of pipeline(s) {}; remove it there before making it a {} environment",
                    before.name,
                    if before.kind == EnvironmentKind::Development {
                        "source"
                    } else {
                        "target"
                    },
                    users.join(", "),
                    kind.as_str()
                )));
            }
        }
        let reconnect = patch.url.as_ref().is_some_and(|u| *u != before.url)
            || patch
                .credentials
                .as_ref()
                .is_some_and(|c| *c != before.credentials);
        let credentials = patch
            .credentials
            .as_ref()
            .map(|c| to_json("credentials", c))
            .transpose()?;
        let now = now_millis();
        sqlx::query(
            "UPDATE environments SET name = COALESCE($2, name), url = COALESCE($3, url), \
               kind = COALESCE($4, kind), credentials = COALESCE($5, credentials), \
               validation_status = CASE WHEN $6 = 1 THEN 'pending' ELSE validation_status END, \
               validation_error = CASE WHEN $6 = 1 THEN NULL ELSE validation_error END, \
               updated_at = $7 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(patch.name.as_deref())
        .bind(patch.url.as_deref())
        .bind(patch.kind.map(EnvironmentKind::as_str))
        .bind(credentials.as_deref())
        .bind(int_of(reconnect))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let after = load_environment(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", id))?;
        let record = NewAudit::new(actor, AuditAction::Update, "environment", id)
            .before(&before)
            .after(&after);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Remove an environment no pipeline uses.
    pub async fn delete_environment(&self, actor: &str, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.begin_admin_write().await?;
        let before = load_environment(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", id))?;
        let users = pipelines_using(&mut tx, id, before.kind).await?;
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "environment {} is used by pipeline(s) {}; remove it from them first",
                before.name,
                users.join(", ")
            )));
        }
        sqlx::query("DELETE FROM environments WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let now = now_millis();
        let record = NewAudit::new(actor, AuditAction::Delete, "environment", id).before(&before);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Store the outcome of a WhoAmI check, unless the environment changed
    /// (URL or credentials) since `checked` was read, or is gone. Audited
    /// with actor `actor`.
    pub async fn record_environment_validation(
        &self,
        actor: &str,
        checked: &Environment,
        status: ValidationStatus,
        error: Option<&str>,
    ) -> Result<Option<Environment>, StoreError> {
        let mut tx = self.begin_admin_write().await?;
        let Some(before) = load_environment(&mut tx, checked.id).await? else {
            return Ok(None);
        };
        if before.url != checked.url || before.credentials != checked.credentials {
            return Ok(Some(before));
        }
        let now = now_millis();
        sqlx::query(
            "UPDATE environments SET validation_status = $2, validation_error = $3, \
               validated_at = $4 WHERE id = $1",
        )
        .bind(checked.id.to_string())
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let after = load_environment(&mut tx, checked.id)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", checked.id))?;
        let record = NewAudit::new(actor, AuditAction::Update, "environment", checked.id)
            .before(&serde_json::json!({
                "validation_status": before.validation_status,
                "validation_error": before.validation_error,
            }))
            .after(&serde_json::json!({
                "validation_status": after.validation_status,
                "validation_error": after.validation_error,
            }));
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    // ---- pipelines ----

    pub async fn create_pipeline(
        &self,
        actor: &str,
        new: &NewPipeline,
    ) -> Result<Pipeline, StoreError> {
        check_name("name", &new.name)?;
        let id = Uuid::now_v7();
        let now = now_millis();
        let mut tx = self.begin_admin_write().await?;
        ensure_name_free(&mut tx, Named::Pipeline, &new.name, None).await?;
        check_sources(&mut tx, &new.source_environment_ids).await?;
        sqlx::query(
            "INSERT INTO pipelines (id, name, description, allow_redeploy_older, created_at, \
               updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&new.description)
        .bind(int_of(new.allow_redeploy_older))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        set_links(&mut tx, Link::Sources, id, &new.source_environment_ids).await?;
        let pipeline = load_pipeline(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", id))?;
        let record = NewAudit::new(actor, AuditAction::Create, "pipeline", id)
            .pipeline(id)
            .after(&PipelineSnapshot::from(&pipeline));
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(pipeline)
    }

    pub async fn update_pipeline(
        &self,
        actor: &str,
        id: Uuid,
        patch: &PipelinePatch,
    ) -> Result<Pipeline, StoreError> {
        if let Some(name) = &patch.name {
            check_name("name", name)?;
        }
        let mut tx = self.begin_admin_write().await?;
        let before = load_pipeline(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", id))?;
        if let Some(name) = &patch.name {
            ensure_name_free(&mut tx, Named::Pipeline, name, Some(id)).await?;
        }
        if let Some(sources) = &patch.source_environment_ids {
            check_sources(&mut tx, sources).await?;
            set_links(&mut tx, Link::Sources, id, sources).await?;
        }
        let now = now_millis();
        sqlx::query(
            "UPDATE pipelines SET name = COALESCE($2, name), description = COALESCE($3, description), \
               allow_redeploy_older = COALESCE($4, allow_redeploy_older), updated_at = $5 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(patch.name.as_deref())
        .bind(patch.description.as_deref())
        .bind(patch.allow_redeploy_older.map(int_of))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let after = load_pipeline(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", id))?;
        let record = NewAudit::new(actor, AuditAction::Update, "pipeline", id)
            .pipeline(id)
            .before(&PipelineSnapshot::from(&before))
            .after(&PipelineSnapshot::from(&after));
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Remove a pipeline with its stages and shares.
    pub async fn delete_pipeline(&self, actor: &str, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.begin_admin_write().await?;
        let before = load_pipeline(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", id))?;
        let pid = id.to_string();
        for sql in [
            "DELETE FROM stage_targets WHERE stage_id IN (SELECT id FROM stages WHERE pipeline_id = $1)",
            "DELETE FROM stages WHERE pipeline_id = $1",
            "DELETE FROM pipeline_shares WHERE pipeline_id = $1",
            "DELETE FROM pipeline_sources WHERE pipeline_id = $1",
            "DELETE FROM pipelines WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&pid).execute(&mut *tx).await?;
        }
        let now = now_millis();
        let record = NewAudit::new(actor, AuditAction::Delete, "pipeline", id)
            .pipeline(id)
            .before(&before);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_pipeline(&self, id: Uuid) -> Result<Option<Pipeline>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_pipeline(&mut conn, id).await
    }

    /// All pipelines, by name; with `visible_to`, only those shared with one
    /// of these principals.
    pub async fn list_pipelines(
        &self,
        visible_to: Option<&[Principal]>,
    ) -> Result<Vec<Pipeline>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let ids: Vec<String> = match visible_to {
            None => {
                sqlx::query_scalar("SELECT id FROM pipelines ORDER BY name")
                    .fetch_all(&mut *conn)
                    .await?
            }
            Some(principals) => {
                let ids: BTreeSet<String> =
                    granted_to(&mut conn, Granted::Shares { pipeline: None }, principals)
                        .await?
                        .into_iter()
                        .collect();
                ids.into_iter().collect()
            }
        };
        let mut pipelines = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = load_pipeline(&mut conn, parse_uuid("pipeline id", &id)?).await? {
                pipelines.push(p);
            }
        }
        pipelines.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pipelines)
    }

    /// Whether the pipeline is shared with one of `principals`.
    pub async fn pipeline_shared_with(
        &self,
        id: Uuid,
        principals: &[Principal],
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let shares = granted_to(
            &mut conn,
            Granted::Shares { pipeline: Some(id) },
            principals,
        )
        .await?;
        Ok(!shares.is_empty())
    }

    // ---- stages ----

    /// Add a stage, checking every rule (see [`check_stage`]) and that the
    /// pipeline keeps at most `max_stages` stages.
    pub async fn add_stage(
        &self,
        actor: &str,
        pipeline_id: Uuid,
        spec: &StageSpec,
        max_stages: usize,
    ) -> Result<Stage, StoreError> {
        let mut tx = self.begin_admin_write().await?;
        let pipeline = load_pipeline(&mut tx, pipeline_id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", pipeline_id))?;
        if pipeline.stages.len() >= max_stages {
            return Err(StoreError::invalid(
                "stages",
                format!(
                    "pipeline {} already has {} stages, the most allowed (gateway.max_stages_per_pipeline)",
                    pipeline.name,
                    pipeline.stages.len()
                ),
            ));
        }
        let id = Uuid::now_v7();
        check_stage(&mut tx, &pipeline, id, spec).await?;
        let now = now_millis();
        let settings = to_json("stage settings", &spec.settings)?;
        sqlx::query(
            "INSERT INTO stages (id, pipeline_id, name, previous_stage_id, settings, created_at, \
               updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(pipeline_id.to_string())
        .bind(&spec.name)
        .bind(spec.previous_stage_id.map(|p| p.to_string()))
        .bind(&settings)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        set_links(&mut tx, Link::Targets, id, &spec.target_ids).await?;
        touch_pipeline(&mut tx, pipeline_id, now).await?;
        let stage = load_stage(&mut tx, pipeline_id, id).await?;
        let record = NewAudit::new(actor, AuditAction::Create, "stage", id)
            .pipeline(pipeline_id)
            .after(&stage);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(stage)
    }

    /// Replace a stage's content with `spec`, checking every rule.
    pub async fn update_stage(
        &self,
        actor: &str,
        pipeline_id: Uuid,
        stage_id: Uuid,
        spec: &StageSpec,
    ) -> Result<Stage, StoreError> {
        let mut tx = self.begin_admin_write().await?;
        let pipeline = load_pipeline(&mut tx, pipeline_id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", pipeline_id))?;
        let before = pipeline
            .stages
            .iter()
            .find(|s| s.id == stage_id)
            .cloned()
            .ok_or_else(|| StoreError::not_found("stage", stage_id))?;
        check_stage(&mut tx, &pipeline, stage_id, spec).await?;
        let now = now_millis();
        let settings = to_json("stage settings", &spec.settings)?;
        sqlx::query(
            "UPDATE stages SET name = $2, previous_stage_id = $3, settings = $4, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(stage_id.to_string())
        .bind(&spec.name)
        .bind(spec.previous_stage_id.map(|p| p.to_string()))
        .bind(&settings)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        set_links(&mut tx, Link::Targets, stage_id, &spec.target_ids).await?;
        touch_pipeline(&mut tx, pipeline_id, now).await?;
        let after = load_stage(&mut tx, pipeline_id, stage_id).await?;
        let record = NewAudit::new(actor, AuditAction::Update, "stage", stage_id)
            .pipeline(pipeline_id)
            .before(&before)
            .after(&after);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Remove a stage no other stage follows.
    pub async fn delete_stage(
        &self,
        actor: &str,
        pipeline_id: Uuid,
        stage_id: Uuid,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_admin_write().await?;
        let pipeline = load_pipeline(&mut tx, pipeline_id)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", pipeline_id))?;
        let before = pipeline
            .stages
            .iter()
            .find(|s| s.id == stage_id)
            .cloned()
            .ok_or_else(|| StoreError::not_found("stage", stage_id))?;
        let followers: Vec<&str> = pipeline
            .stages
            .iter()
            .filter(|s| s.previous_stage_id == Some(stage_id))
            .map(|s| s.name.as_str())
            .collect();
        if !followers.is_empty() {
            return Err(StoreError::Conflict(format!(
                "stage {} is the previous stage of {}; delete those or give them another previous stage first",
                before.name,
                followers.join(", ")
            )));
        }
        for sql in [
            "DELETE FROM stage_targets WHERE stage_id = $1",
            "DELETE FROM stages WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(stage_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let now = now_millis();
        touch_pipeline(&mut tx, pipeline_id, now).await?;
        let record = NewAudit::new(actor, AuditAction::Delete, "stage", stage_id)
            .pipeline(pipeline_id)
            .before(&before);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- sharing ----

    /// Share a pipeline with a user or group; false if it already was.
    pub async fn share_pipeline(
        &self,
        actor: &str,
        pipeline_id: Uuid,
        principal: &Principal,
    ) -> Result<bool, StoreError> {
        check_name("name", &principal.name)?;
        let mut tx = self.begin_admin_write().await?;
        if load_pipeline_row(&mut tx, pipeline_id).await?.is_none() {
            return Err(StoreError::not_found("pipeline", pipeline_id));
        }
        let inserted = sqlx::query(
            "INSERT INTO pipeline_shares (pipeline_id, principal_kind, principal) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(pipeline_id.to_string())
        .bind(principal.kind.as_str())
        .bind(&principal.name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if inserted {
            let now = now_millis();
            let record = NewAudit::new(
                actor,
                AuditAction::Create,
                "share",
                format!("{pipeline_id}/{principal}"),
            )
            .pipeline(pipeline_id)
            .after(principal);
            audit::append(&mut tx, self.backend, now, &[record]).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Stop sharing; false if it was not shared.
    pub async fn unshare_pipeline(
        &self,
        actor: &str,
        pipeline_id: Uuid,
        principal: &Principal,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_admin_write().await?;
        if load_pipeline_row(&mut tx, pipeline_id).await?.is_none() {
            return Err(StoreError::not_found("pipeline", pipeline_id));
        }
        let deleted = sqlx::query(
            "DELETE FROM pipeline_shares WHERE pipeline_id = $1 AND principal_kind = $2 AND principal = $3",
        )
        .bind(pipeline_id.to_string())
        .bind(principal.kind.as_str())
        .bind(&principal.name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if deleted {
            let now = now_millis();
            let record = NewAudit::new(
                actor,
                AuditAction::Delete,
                "share",
                format!("{pipeline_id}/{principal}"),
            )
            .pipeline(pipeline_id)
            .before(principal);
            audit::append(&mut tx, self.backend, now, &[record]).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    // ---- roles ----

    /// Give a role; false if it was already given.
    pub async fn grant_role(&self, actor: &str, grant: &RoleGrant) -> Result<bool, StoreError> {
        check_name("principal.name", &grant.principal.name)?;
        let mut tx = self.begin_admin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO role_grants (principal_kind, principal, role) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(grant.principal.kind.as_str())
        .bind(&grant.principal.name)
        .bind(grant.role.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if inserted {
            let record = NewAudit::new(
                actor,
                AuditAction::Create,
                "role_grant",
                format!("{}/{}", grant.principal, grant.role.as_str()),
            )
            .after(grant);
            audit::append(&mut tx, self.backend, now_millis(), &[record]).await?;
        }
        tx.commit().await?;
        self.auth_changed();
        Ok(inserted)
    }

    /// Take a role back; false if it was not given. The last admin grant
    /// is refused (Conflict): nobody could administer Slipway after it.
    pub async fn revoke_role(&self, actor: &str, grant: &RoleGrant) -> Result<bool, StoreError> {
        let mut tx = self.begin_admin_write().await?;
        if grant.role == AccessRole::Admin {
            let admins: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM role_grants WHERE role = 'admin'")
                    .fetch_one(&mut *tx)
                    .await?;
            let this_one: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM role_grants WHERE principal_kind = $1 AND principal = $2 AND role = 'admin'",
            )
            .bind(grant.principal.kind.as_str())
            .bind(&grant.principal.name)
            .fetch_optional(&mut *tx)
            .await?;
            if this_one.is_some() && admins <= 1 {
                return Err(StoreError::Conflict(
                    "this is the last admin grant; grant admin to someone else first, or nobody could administer Slipway".into(),
                ));
            }
        }
        let deleted = sqlx::query(
            "DELETE FROM role_grants WHERE principal_kind = $1 AND principal = $2 AND role = $3",
        )
        .bind(grant.principal.kind.as_str())
        .bind(&grant.principal.name)
        .bind(grant.role.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if deleted {
            let record = NewAudit::new(
                actor,
                AuditAction::Delete,
                "role_grant",
                format!("{}/{}", grant.principal, grant.role.as_str()),
            )
            .before(grant);
            audit::append(&mut tx, self.backend, now_millis(), &[record]).await?;
        }
        tx.commit().await?;
        self.auth_changed();
        Ok(deleted)
    }

    pub async fn list_role_grants(&self) -> Result<Vec<RoleGrant>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT principal_kind, principal, role FROM role_grants ORDER BY principal_kind, principal, role",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(kind, name, role)| {
                Ok(RoleGrant {
                    principal: Principal {
                        kind: PrincipalKind::parse(&kind)
                            .ok_or_else(|| StoreError::corrupt("principal kind", &kind))?,
                        name,
                    },
                    role: AccessRole::parse(&role)
                        .ok_or_else(|| StoreError::corrupt("role", &role))?,
                })
            })
            .collect()
    }

    /// The roles granted to any of `principals`.
    pub async fn roles_of(
        &self,
        principals: &[Principal],
    ) -> Result<BTreeSet<AccessRole>, StoreError> {
        let ticket = match self.auth.as_ref().map(|c| c.roles(principals)) {
            Some(Ok(roles)) => return Ok(roles),
            Some(Err(ticket)) => Some(ticket),
            None => None,
        };
        let mut conn = self.pool.acquire().await?;
        let names = granted_to(&mut conn, Granted::Roles, principals).await?;
        // Roles this build does not know are ignored, not fatal.
        let roles = names.iter().filter_map(|n| AccessRole::parse(n)).collect();
        if let (Some(cache), Some(ticket)) = (&self.auth, ticket) {
            cache.keep_roles(ticket, principals, &roles);
        }
        Ok(roles)
    }
}

/// What is looked up for a caller's principals (the user and each group).
#[derive(Debug, Clone, Copy)]
enum Granted {
    /// Pipeline ids shared with them (only `pipeline`, when given).
    Shares { pipeline: Option<Uuid> },
    /// Role names granted to them.
    Roles,
}

/// [`Granted`] for any of `principals`, in one query per few hundred
/// principals (a caller may have many groups), not one per principal:
/// every request authenticates through this.
async fn granted_to(
    conn: &mut AnyConnection,
    what: Granted,
    principals: &[Principal],
) -> Result<Vec<String>, StoreError> {
    /// Principals per statement (two parameters each).
    const CHUNK: usize = 400;
    let (select, pipeline) = match what {
        Granted::Shares { pipeline } => {
            ("SELECT pipeline_id FROM pipeline_shares WHERE ", pipeline)
        }
        Granted::Roles => ("SELECT role FROM role_grants WHERE ", None),
    };
    let mut found = Vec::new();
    for chunk in principals.chunks(CHUNK) {
        let first = usize::from(pipeline.is_some()) + 1;
        let any: Vec<String> = (0..chunk.len())
            .map(|i| {
                let k = first + 2 * i;
                format!("(principal_kind = ${k} AND principal = ${})", k + 1)
            })
            .collect();
        let only = if pipeline.is_some() {
            "pipeline_id = $1 AND "
        } else {
            ""
        };
        // Only fixed names and numbered placeholders are spliced in.
        let sql = format!("{select}{only}({})", any.join(" OR "));
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        if let Some(p) = pipeline {
            query = query.bind(p.to_string());
        }
        for p in chunk {
            query = query.bind(p.kind.as_str()).bind(p.name.as_str());
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// What a unique name belongs to: its table and how a clash is said.
#[derive(Debug, Clone, Copy)]
enum Named {
    Environment,
    Pipeline,
}

/// Conflict unless no other row of the kind has `name`.
async fn ensure_name_free(
    tx: &mut Transaction<'static, Any>,
    kind: Named,
    name: &str,
    except: Option<Uuid>,
) -> Result<(), StoreError> {
    let (sql, what) = match kind {
        Named::Environment => (
            "SELECT id FROM environments WHERE name = $1",
            "an environment",
        ),
        Named::Pipeline => ("SELECT id FROM pipelines WHERE name = $1", "a pipeline"),
    };
    let taken: Option<String> = sqlx::query_scalar(sql)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    match taken {
        Some(id) if Some(id.as_str()) != except.map(|e| e.to_string()).as_deref() => {
            Err(StoreError::Conflict(format!(
                "{what} named {name} already exists; choose another name"
            )))
        }
        _ => Ok(()),
    }
}

/// Names of the pipelines using environment `id` in the role `kind` gives it.
async fn pipelines_using(
    tx: &mut Transaction<'static, Any>,
    id: Uuid,
    kind: EnvironmentKind,
) -> Result<Vec<String>, StoreError> {
    let sql = match kind {
        EnvironmentKind::Development => {
            "SELECT DISTINCT p.name FROM pipelines p JOIN pipeline_sources s ON s.pipeline_id = p.id \
             WHERE s.environment_id = $1 ORDER BY p.name"
        }
        EnvironmentKind::Target => {
            "SELECT DISTINCT p.name FROM pipelines p JOIN stages st ON st.pipeline_id = p.id \
             JOIN stage_targets t ON t.stage_id = st.id WHERE t.environment_id = $1 ORDER BY p.name"
        }
    };
    Ok(sqlx::query_scalar(sql)
        .bind(id.to_string())
        .fetch_all(&mut **tx)
        .await?)
}

async fn check_sources(tx: &mut Transaction<'static, Any>, ids: &[Uuid]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Err(StoreError::invalid(
            "source_environment_ids",
            "a pipeline needs at least one development environment to deploy from",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let field = format!("source_environment_ids[{i}]");
        if !seen.insert(*id) {
            return Err(StoreError::invalid(
                field,
                format!("environment {id} is listed twice"),
            ));
        }
        let env = load_environment(tx, *id)
            .await?
            .ok_or_else(|| StoreError::invalid(&field, format!("no environment with id {id}")))?;
        if env.kind != EnvironmentKind::Development {
            return Err(StoreError::invalid(
                field,
                format!(
                    "environment {} is a target environment; a pipeline deploys from development environments only",
                    env.name
                ),
            ));
        }
    }
    Ok(())
}

/// Replace the environments linked to `owner` in a link table
/// (`pipeline_sources` by pipeline, `stage_targets` by stage).
async fn set_links(
    tx: &mut Transaction<'static, Any>,
    link: Link,
    owner: Uuid,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    let (delete, insert) = match link {
        Link::Sources => (
            "DELETE FROM pipeline_sources WHERE pipeline_id = $1",
            "INSERT INTO pipeline_sources (pipeline_id, environment_id) VALUES ($1, $2)",
        ),
        Link::Targets => (
            "DELETE FROM stage_targets WHERE stage_id = $1",
            "INSERT INTO stage_targets (stage_id, environment_id) VALUES ($1, $2)",
        ),
    };
    sqlx::query(delete)
        .bind(owner.to_string())
        .execute(&mut **tx)
        .await?;
    for id in ids {
        sqlx::query(insert)
            .bind(owner.to_string())
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The two tables that link environments to what uses them.
#[derive(Debug, Clone, Copy)]
enum Link {
    Sources,
    Targets,
}

async fn touch_pipeline(
    tx: &mut Transaction<'static, Any>,
    id: Uuid,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE pipelines SET updated_at = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The rules of a stage that need the database: a unique name within the
/// pipeline; one or more targets, each an existing *target* environment not
/// already targeted by another stage of the pipeline; a previous stage of
/// the same pipeline that does not lead back to this one (no cycles); valid
/// settings.
async fn check_stage(
    tx: &mut Transaction<'static, Any>,
    pipeline: &Pipeline,
    stage_id: Uuid,
    spec: &StageSpec,
) -> Result<(), StoreError> {
    check_name("name", &spec.name)?;
    if let Some(other) = pipeline
        .stages
        .iter()
        .find(|s| s.id != stage_id && s.name == spec.name)
    {
        return Err(StoreError::Conflict(format!(
            "pipeline {} already has a stage named {}; choose another name",
            pipeline.name, other.name
        )));
    }
    if let Some((field, reason)) = spec.settings.problems().into_iter().next() {
        return Err(StoreError::invalid(field, reason));
    }
    if spec.target_ids.is_empty() {
        return Err(StoreError::invalid(
            "target_environment_ids",
            "a stage needs at least one target environment",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, id) in spec.target_ids.iter().enumerate() {
        let field = format!("target_environment_ids[{i}]");
        if !seen.insert(*id) {
            return Err(StoreError::invalid(
                field,
                format!("environment {id} is listed twice"),
            ));
        }
        let env = load_environment(tx, *id)
            .await?
            .ok_or_else(|| StoreError::invalid(&field, format!("no environment with id {id}")))?;
        if env.kind == EnvironmentKind::Development {
            return Err(StoreError::invalid(
                field,
                format!(
                    "environment {} is a development environment; a stage deploys to target environments only",
                    env.name
                ),
            ));
        }
        if let Some(other) = pipeline
            .stages
            .iter()
            .find(|s| s.id != stage_id && s.targets.iter().any(|t| t.id == *id))
        {
            return Err(StoreError::invalid(
                field,
                format!(
                    "environment {} is already the target of stage {} of this pipeline",
                    env.name, other.name
                ),
            ));
        }
    }
    if let Some(previous) = spec.previous_stage_id {
        if previous == stage_id {
            return Err(StoreError::invalid(
                "previous_stage_id",
                "a stage cannot follow itself",
            ));
        }
        let by_id: BTreeMap<Uuid, Option<Uuid>> = pipeline
            .stages
            .iter()
            .map(|s| (s.id, s.previous_stage_id))
            .collect();
        if !by_id.contains_key(&previous) {
            return Err(StoreError::invalid(
                "previous_stage_id",
                format!("pipeline {} has no stage with id {previous}", pipeline.name),
            ));
        }
        // Walk back from the new previous stage; meeting this stage again
        // means the change would close a cycle.
        let mut at = Some(previous);
        let mut steps = 0;
        while let Some(current) = at {
            if current == stage_id {
                return Err(StoreError::invalid(
                    "previous_stage_id",
                    "this previous stage would make the stages a cycle; stages must run in one direction",
                ));
            }
            steps += 1;
            if steps > by_id.len() {
                return Err(StoreError::invalid(
                    "previous_stage_id",
                    "the stages already form a cycle",
                ));
            }
            at = by_id.get(&current).copied().flatten();
        }
    }
    Ok(())
}

async fn load_environment(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<Environment>, StoreError> {
    let sql = format!("{SELECT_ENVIRONMENT} WHERE id = $1");
    sqlx::query_as::<_, EnvironmentRow>(AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .map(environment_from_row)
        .transpose()
}

type PipelineRow = (String, String, String, i64, i64, i64);

async fn load_pipeline_row(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PipelineRow>, StoreError> {
    Ok(sqlx::query_as::<_, PipelineRow>(
        "SELECT id, name, description, allow_redeploy_older, created_at, updated_at \
         FROM pipelines WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?)
}

async fn load_stage(
    conn: &mut AnyConnection,
    pipeline_id: Uuid,
    stage_id: Uuid,
) -> Result<Stage, StoreError> {
    load_pipeline(conn, pipeline_id)
        .await?
        .and_then(|p| p.stages.into_iter().find(|s| s.id == stage_id))
        .ok_or_else(|| StoreError::not_found("stage", stage_id))
}

/// A whole pipeline: its row, sources, stages with targets, and shares.
async fn load_pipeline(conn: &mut AnyConnection, id: Uuid) -> Result<Option<Pipeline>, StoreError> {
    let Some((_, name, description, redeploy, created, updated)) =
        load_pipeline_row(conn, id).await?
    else {
        return Ok(None);
    };
    let pid = id.to_string();
    let env_ref = |(id, name): (String, String)| -> Result<EnvironmentRef, StoreError> {
        Ok(EnvironmentRef {
            id: parse_uuid("environment id", &id)?,
            name,
        })
    };
    let sources = sqlx::query_as::<_, (String, String)>(
        "SELECT e.id, e.name FROM pipeline_sources s JOIN environments e ON e.id = s.environment_id \
         WHERE s.pipeline_id = $1 ORDER BY e.name",
    )
    .bind(&pid)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(env_ref)
    .collect::<Result<Vec<_>, _>>()?;
    let mut targets: BTreeMap<String, Vec<EnvironmentRef>> = BTreeMap::new();
    for (stage, env_id, env_name) in sqlx::query_as::<_, (String, String, String)>(
        "SELECT t.stage_id, e.id, e.name FROM stage_targets t \
         JOIN stages s ON s.id = t.stage_id JOIN environments e ON e.id = t.environment_id \
         WHERE s.pipeline_id = $1 ORDER BY e.name",
    )
    .bind(&pid)
    .fetch_all(&mut *conn)
    .await?
    {
        targets
            .entry(stage)
            .or_default()
            .push(env_ref((env_id, env_name))?);
    }
    let mut stages = Vec::new();
    for (stage_id, stage_name, previous, settings, s_created, s_updated) in
        sqlx::query_as::<_, (String, String, Option<String>, String, i64, i64)>(
            "SELECT id, name, previous_stage_id, settings, created_at, updated_at FROM stages \
             WHERE pipeline_id = $1 ORDER BY created_at, id",
        )
        .bind(&pid)
        .fetch_all(&mut *conn)
        .await?
    {
        stages.push(Stage {
            id: parse_uuid("stage id", &stage_id)?,
            pipeline_id: id,
            name: stage_name,
            previous_stage_id: previous
                .as_deref()
                .map(|p| parse_uuid("previous stage id", p))
                .transpose()?,
            targets: targets.remove(&stage_id).unwrap_or_default(),
            settings: serde_json::from_str(&settings)
                .map_err(|e| StoreError::corrupt("stage settings", e))?,
            created_at: from_millis(s_created)?,
            updated_at: from_millis(s_updated)?,
        });
    }
    let shares = sqlx::query_as::<_, (String, String)>(
        "SELECT principal_kind, principal FROM pipeline_shares WHERE pipeline_id = $1 \
         ORDER BY principal_kind, principal",
    )
    .bind(&pid)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(kind, name)| {
        Ok(Principal {
            kind: PrincipalKind::parse(&kind)
                .ok_or_else(|| StoreError::corrupt("principal kind", &kind))?,
            name,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(Pipeline {
        id,
        name,
        description,
        allow_redeploy_older: bool_of(redeploy),
        source_environments: sources,
        stages: in_stage_order(stages),
        shares,
        created_at: from_millis(created)?,
        updated_at: from_millis(updated)?,
    }))
}

/// First stages first, then each stage after the one it follows (creation
/// order among siblings).
fn in_stage_order(stages: Vec<Stage>) -> Vec<Stage> {
    let ids: BTreeSet<Uuid> = stages.iter().map(|s| s.id).collect();
    let mut ordered: Vec<Stage> = Vec::with_capacity(stages.len());
    let mut placed: BTreeSet<Uuid> = BTreeSet::new();
    let mut rest = stages;
    loop {
        let (ready, waiting): (Vec<Stage>, Vec<Stage>) = rest.into_iter().partition(|s| {
            s.previous_stage_id
                .is_none_or(|p| placed.contains(&p) || !ids.contains(&p))
        });
        if ready.is_empty() {
            // Whatever is left cannot be ordered (it would be a cycle, which
            // the rules refuse); keep it rather than lose it.
            ordered.extend(waiting);
            return ordered;
        }
        placed.extend(ready.iter().map(|s| s.id));
        ordered.extend(ready);
        if waiting.is_empty() {
            return ordered;
        }
        rest = waiting;
    }
}
