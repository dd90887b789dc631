//! The gateway's database: runs, their append-only history, and the outbox of
//! commands waiting to be published. PostgreSQL in production, SQLite as the
//! embedded default; both behave the same and run the same test suite.
//!
//! Layout:
//! - [`Store`] (this file): one `sqlx::AnyPool` and the queries. Every write
//!   that must be atomic is one transaction: a new run with its first audit
//!   row and outbox row; a batch of events (or a cancel) with the state
//!   changes it causes and their audit rows.
//! - [`model`]: plain types ([`Run`], [`HistoryEntry`], [`OutboxItem`]...) and
//!   the run state machine ([`RunState::after`]), free of I/O.
//! - [`error`]: [`StoreError`], each message saying what to check.
//! - `migrations/postgres` and `migrations/sqlite`: the same tables, embedded
//!   and applied by [`Store::connect`]. Two folders only because an
//!   auto-assigned 64-bit id has no syntax both databases accept.
//!
//! Portable schema: uuids, enum names and JSON are TEXT, times are BIGINT
//! milliseconds since the Unix epoch, taken from the gateway's clock.
//!
//! Concurrency: several gateway replicas may share one PostgreSQL database.
//! The runs a batch of events touches are locked (`SELECT ... ORDER BY id
//! FOR UPDATE`, so in one order everywhere) while it is applied,
//! outbox rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease. On
//! SQLite, write transactions start with `BEGIN IMMEDIATE`, so the single
//! writer lock serializes them.
//!
//! This crate never publishes to the bus, never talks HTTP, and never moves a
//! run backwards or out of a terminal state.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod admin_model;
pub mod audit;
mod auth_cache;
mod create;
pub use create::{Publish, Started};
pub mod error;
pub mod gates;
pub mod model;
mod rowset;
pub mod tokens;
pub mod webhooks;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use slipway_messages::{
    ArtifactRef, Envelope, ImportCommand, Message, RunEvent, StepOutcome, StepStatus, Verdict,
};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

pub use admin_model::*;
pub use audit::{AuditAction, AuditQuery, AuditRecord, AuditVerification, NewAudit};
pub use auth_cache::LISTENER_APPLICATION_NAME;
pub use error::StoreError;
pub use gates::Gate;
pub use model::{
    Applied, Backend, CancelOutcome, GateDecision, HistoryEntry, HistoryKind, ImportProgress,
    NewRun, OutboxItem, Run, RunFilter, RunGates, RunState,
};
pub use webhooks::{
    DeliveryStatus, DueDelivery, NewWebhook, Webhook, WebhookDelivery, WebhookEvent,
};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// The advisory lock key admin changes serialize on ("slipway" in ASCII).
const ADMIN_LOCK_KEY: i64 = 0x0073_6c69_7077_6179;

/// Most shared pipelines a run listing binds, one parameter each (well
/// under both databases' limit on bind parameters).
const MAX_VISIBLE_PIPELINES: usize = 500;

/// The gateway's handle on its database. Cheap to clone (a pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Writes concurrent run creations in shared transactions (`create`);
    /// `None` in the committer's own handle, which writes directly.
    committer: Option<create::Committer>,
    /// Tokens and role grants already read (PostgreSQL only; `auth_cache`).
    auth: Option<Arc<auth_cache::AuthCache>>,
}

pub(crate) type RunRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
);
type HistoryRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The columns of a [`RunRow`], in its order (`SELECT {RUN_COLUMNS} FROM runs ...`).
macro_rules! run_columns {
    () => {
        "id, state, deployment, requested_by, reason, created_at, updated_at, gates, artifact, validation, source_version, \
         import_percent, import_polls, import_progress_at"
    };
}
pub(crate) use run_columns;

const SELECT_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");
const CLAIM_POSTGRES: &str = "UPDATE outbox SET claimed_until = $1 WHERE id IN ( \
       SELECT id FROM outbox \
       WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2) \
       ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING id, envelope, trace_headers";
/// One statement takes SQLite's write lock, so no two claimers overlap.
const CLAIM_SQLITE: &str = "UPDATE outbox SET claimed_until = $1 WHERE id IN ( \
       SELECT id FROM outbox \
       WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2) \
       ORDER BY id LIMIT $3) \
     RETURNING id, envelope, trace_headers";

impl Store {
    /// Open `url` (`postgres://...`, `sqlite://path?mode=rwc`, `sqlite::memory:`)
    /// and bring its schema up to date. Safe to call again on the same
    /// database, also from several replicas at once.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let backend = backend_of(url)?;
        install_default_drivers();
        // Every connection re-reads the url, and each `sqlite::memory:`
        // connection is a separate database: keep exactly one, forever.
        let in_memory =
            backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let options = if in_memory {
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            AnyPoolOptions::new().max_connections(match backend {
                Backend::Postgres => 10,
                Backend::Sqlite => 4,
            })
        };
        let pool = options
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        if backend == Backend::Sqlite && !in_memory {
            // Readers no longer wait for the writer; persists in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let migrations = match backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrations
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { backend, source })?;
        let auth = match backend {
            Backend::Postgres => Some(
                auth_cache::AuthCache::spawn(url)
                    .map_err(|source| StoreError::Connect { backend, source })?,
            ),
            Backend::Sqlite => None,
        };
        let direct = Store {
            pool,
            backend,
            committer: None,
            auth: None,
        };
        Ok(Store {
            committer: Some(create::spawn(direct.clone())),
            auth,
            ..direct
        })
    }

    /// Call after committing a change to a token or a role grant.
    pub(crate) fn auth_changed(&self) {
        if let Some(cache) = &self.auth {
            cache.changed();
        }
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Check the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// [`Store::get_run`] inside a transaction.
    pub(crate) async fn get_run_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<Option<Run>, StoreError> {
        sqlx::query_as::<_, RunRow>(SELECT_RUN)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .map(run_from_row)
            .transpose()
    }

    /// The run with this id, if any.
    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        fetch_run(&self.pool, id).await
    }

    /// The newest `limit` runs, newest first.
    pub async fn list_runs(&self, limit: u32) -> Result<Vec<Run>, StoreError> {
        self.list_runs_filtered(limit, &RunFilter::default(), None)
            .await
    }

    /// The newest `limit` runs that `subject` requested or that belong to
    /// one of `pipelines`, newest first.
    pub async fn list_runs_visible(
        &self,
        limit: u32,
        subject: &str,
        pipelines: &[Uuid],
    ) -> Result<Vec<Run>, StoreError> {
        self.list_runs_filtered(limit, &RunFilter::default(), Some((subject, pipelines)))
            .await
    }

    /// The newest `limit` runs matching `filter`, newest first; with
    /// `visible_to` = (subject, pipelines), only the runs `subject`
    /// requested or that belong to one of `pipelines` (the first 500).
    /// Filtering happens in the query, before the limit.
    pub async fn list_runs_filtered(
        &self,
        limit: u32,
        filter: &RunFilter,
        visible_to: Option<(&str, &[Uuid])>,
    ) -> Result<Vec<Run>, StoreError> {
        /// Binds `value` as the next parameter ($1 is the limit) and names it.
        fn param(binds: &mut Vec<String>, value: String) -> String {
            binds.push(value);
            format!("${}", binds.len() + 1)
        }
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        if let Some((subject, pipelines)) = visible_to {
            let mut any = vec![format!(
                "requested_by = {}",
                param(&mut binds, subject.to_owned())
            )];
            let shared: Vec<String> = pipelines
                .iter()
                .take(MAX_VISIBLE_PIPELINES)
                .map(|p| param(&mut binds, p.to_string()))
                .collect();
            if !shared.is_empty() {
                any.push(format!("pipeline_id IN ({})", shared.join(", ")));
            }
            conditions.push(format!("({})", any.join(" OR ")));
        }
        if let Some(pipeline) = filter.pipeline_id {
            let p = param(&mut binds, pipeline.to_string());
            conditions.push(format!("pipeline_id = {p}"));
        }
        if let Some(stage) = filter.stage_id {
            let p = param(&mut binds, stage.to_string());
            conditions.push(format!("stage_id = {p}"));
        }
        if let Some(solution) = &filter.solution_name {
            // The same expression as the runs_solution_name index.
            let p = param(&mut binds, solution.clone());
            conditions.push(format!("LOWER(solution_name) = LOWER({p})"));
        }
        if let Some(state) = filter.state {
            let p = param(&mut binds, state.as_str().to_owned());
            conditions.push(format!("state = {p}"));
        }
        let filtered = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        // Only numbered placeholders are spliced in; the values are bound.
        let sql = format!(
            "SELECT {} FROM runs{filtered} ORDER BY created_at DESC, id DESC LIMIT $1",
            run_columns!()
        );
        let mut query = sqlx::query_as::<_, RunRow>(AssertSqlSafe(sql)).bind(i64::from(limit));
        for value in binds {
            query = query.bind(value);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(run_from_row)
            .collect()
    }

    /// A run's full history, oldest first: its state transitions (who, why)
    /// and every event received. Empty for an unknown run.
    pub async fn run_history(&self, id: Uuid) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query_as::<_, HistoryRow>(
            "SELECT at, kind, state, step, status, service, instance, detail, actor \
             FROM run_history WHERE run_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::with_capacity(rows.len() * 2);
        for (at, kind, state, step, status, service, instance, detail, actor) in rows {
            let kind = match kind.as_str() {
                "transition" => HistoryKind::Transition,
                "event" => HistoryKind::Event,
                other => return Err(StoreError::corrupt("history kind", other)),
            };
            let entry = HistoryEntry {
                at: from_millis(at)?,
                kind,
                state: state.as_deref().map(parse_state).transpose()?,
                step: parse_name("step", step)?,
                status: parse_name("step status", status)?,
                service,
                instance,
                detail,
                actor,
            };
            match (kind, entry.state) {
                // A folded row: the event, then the transition it caused
                // ([`fold_history`]).
                (HistoryKind::Event, Some(to)) => {
                    let reason = (to == RunState::Failed).then(|| {
                        failure_text(
                            entry.detail.as_deref(),
                            entry.step,
                            entry.service.as_deref().unwrap_or_default(),
                        )
                    });
                    let transition = HistoryEntry {
                        kind: HistoryKind::Transition,
                        detail: reason,
                        ..entry.clone()
                    };
                    entries.push(HistoryEntry {
                        state: None,
                        actor: None,
                        ..entry
                    });
                    entries.push(transition);
                }
                _ => entries.push(entry),
            }
        }
        Ok(entries)
    }

    /// Record a `run_event` envelope once per message id and move the run's
    /// state machine ([`RunState::after`]): a redelivered event is
    /// [`Applied::Duplicate`]; stale events and events after a terminal state
    /// are recorded without a state change; each change writes an audit row.
    /// Safe when replicas apply events of the same run concurrently.
    /// [`Store::apply_events`] with one event.
    #[tracing::instrument(skip_all, fields(run_id = %envelope.run_id, message_id = %envelope.message_id))]
    pub async fn apply_event(&self, envelope: &Envelope) -> Result<Applied, StoreError> {
        let mut applied = self.apply_events(std::slice::from_ref(envelope)).await?;
        // One outcome per envelope.
        applied.pop().ok_or_else(|| {
            StoreError::corrupt("event outcome", "no outcome for the one event applied")
        })
    }

    /// [`Store::apply_event`] for many events in ONE transaction, applied in
    /// the given order (the order they were delivered in): one [`Applied`]
    /// per envelope, in the same order. Duplicates are recognized within the
    /// batch too. Nothing is written if any envelope is not a `run_event` or
    /// the database fails. The runs involved are locked up front in sorted id
    /// order (PostgreSQL; SQLite takes its write lock with `BEGIN
    /// IMMEDIATE`), so concurrent batches of other replicas neither interleave
    /// with nor deadlock on this one. A batch costs a fixed handful of
    /// statements whatever its size (lock, one history insert, one update of
    /// the runs that moved, the audit rows), the run states being kept in
    /// memory through the batch; a batch holding an event recorded before is
    /// applied twice (the second time with a lookup of repeated events).
    #[tracing::instrument(skip_all, fields(events = envelopes.len()))]
    pub async fn apply_events(&self, envelopes: &[Envelope]) -> Result<Vec<Applied>, StoreError> {
        // Almost every batch is all new: apply it without looking for
        // repeated events first. The history insert (ON CONFLICT DO
        // NOTHING on the message id) tells if one was repeated after all;
        // then that attempt is rolled back and the batch is applied again,
        // looking them up first.
        match self.apply_events_once(envelopes, Dedup::Optimistic).await? {
            Some(applied) => Ok(applied),
            None => {
                tracing::debug!("a repeated event in the batch: applying it again with a lookup");
                self.apply_events_once(envelopes, Dedup::LookUp)
                    .await?
                    .ok_or_else(|| {
                        StoreError::corrupt(
                            "run history",
                            "an event's message id conflicted after the lookup said it was new",
                        )
                    })
            }
        }
    }

    /// [`Store::apply_events`] once; `None` when `dedup` was optimistic and
    /// an event turned out to be recorded already (nothing was written).
    async fn apply_events_once(
        &self,
        envelopes: &[Envelope],
        dedup: Dedup,
    ) -> Result<Option<Vec<Applied>>, StoreError> {
        let mut events = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let Message::RunEvent(event) = &envelope.message else {
                return Err(StoreError::NotAnEvent {
                    kind: envelope.message.kind(),
                });
            };
            events.push((envelope, envelope.run_id.to_string(), event));
        }
        if events.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let run_ids: BTreeSet<&str> = events.iter().map(|(_, id, _)| id.as_str()).collect();
        let message_ids: Vec<String> = events
            .iter()
            .map(|(envelope, _, _)| envelope.message_id.to_string())
            .collect();
        let mut tx = self.begin_write().await?;
        let locked = self.lock_runs(&mut tx, &run_ids).await?;
        // The state of every run involved, kept current through the batch.
        let mut runs: BTreeMap<&str, RunState> =
            locked.iter().map(|(id, run)| (*id, run.state)).collect();
        let pipelines: BTreeMap<&str, &String> = locked
            .iter()
            .filter_map(|(id, run)| Some((*id, run.pipeline.as_ref()?)))
            .collect();
        // What the batch validated, per run (the last report wins).
        let mut validations: BTreeMap<&str, (String, String)> = BTreeMap::new();
        // Under the run locks nobody else records these runs' events.
        let mut recorded = match dedup {
            Dedup::Optimistic => HashSet::new(),
            Dedup::LookUp => recorded_message_ids(&mut tx, self.backend, &message_ids).await?,
        };
        let mut history = Vec::with_capacity(events.len() * 2);
        let mut moved: BTreeMap<&str, Option<String>> = BTreeMap::new();
        let mut applied = Vec::with_capacity(events.len());
        let mut audits = Vec::new();
        // The import progress each importing run reported in this batch.
        let mut progress: BTreeMap<&str, ProgressReports> = BTreeMap::new();
        for ((_, run_id, event), message_id) in events.iter().zip(message_ids) {
            let Some(current) = runs.get(run_id.as_str()).copied() else {
                applied.push(Applied::UnknownRun);
                continue;
            };
            if recorded.contains(&message_id) {
                applied.push(Applied::Duplicate);
                continue;
            }
            recorded.insert(message_id.clone());
            history.push(NewHistory::event(run_id, event, message_id));
            if let Some(StepOutcome::Exported {
                source_version: Some(version),
                ..
            }) = &event.outcome
            {
                record_source_version(&mut tx, run_id, version).await?;
            }
            let mut next = current.after(event);
            if let Some(StepOutcome::Validated { artifact, report }) = &event.outcome {
                // Keep what was validated, whatever the verdict.
                validations.insert(
                    run_id,
                    (
                        to_json("artifact", artifact)?,
                        to_json("validation report", report)?,
                    ),
                );
                // A passed artifact is the pipeline's for its version even
                // when this event arrives after the import's first events
                // (they come from another worker): a retry or a later stage
                // must find it.
                if event.status == StepStatus::Succeeded && report.verdict == Verdict::Passed {
                    record_artifact(
                        &mut tx,
                        run_id,
                        artifact,
                        pipelines.get(run_id.as_str()).copied(),
                    )
                    .await?;
                }
                if event.status == StepStatus::Succeeded && next.is_some() {
                    next = Some(match report.verdict {
                        Verdict::NeedsSettings => RunState::AwaitingSettings,
                        Verdict::Passed => {
                            let run = locked.get(run_id.as_str()).ok_or_else(|| {
                                StoreError::corrupt("run", format!("run {run_id} was not locked"))
                            })?;
                            after_validation(&mut tx, run_id, run, artifact).await?
                        }
                        // A failed verdict comes with a failed event.
                        Verdict::Failed => RunState::Failed,
                    });
                }
            }
            if current == RunState::Importing || next == Some(RunState::Importing) {
                ProgressReports::add(&mut progress, run_id, event);
            }
            let Some(to) = next else {
                applied.push(Applied::Recorded);
                continue;
            };
            let reason = (to == RunState::Failed).then(|| failure_reason(event));
            runs.insert(run_id, to);
            let run_reason = moved.entry(run_id).or_default();
            if reason.is_some() {
                run_reason.clone_from(&reason);
            }
            let mut audit = NewAudit::new(&event.service, AuditAction::Transition, "run", run_id)
                .before(&serde_json::json!({ "state": current }))
                .after(&serde_json::json!({ "state": to, "reason": reason }));
            audit.pipeline_id = pipelines.get(run_id.as_str()).map(|p| (*p).clone());
            audits.push(audit);
            history.push(NewHistory {
                detail: reason,
                ..NewHistory::transition(run_id, to, &event.service, None, Some(event))
            });
            applied.push(Applied::Transitioned { from: current, to });
        }
        let now = now_millis();
        if !insert_history(&mut tx, self.backend, now, &history).await? {
            // Only an event's message id can conflict (transitions have none).
            tx.rollback().await?;
            return Ok(None);
        }
        // Each run that moved, to where the batch left it, and what it validated.
        let mut changes: BTreeMap<&str, RunChange> = BTreeMap::new();
        for (id, reason) in &moved {
            if let Some(state) = runs.get(id) {
                let change = changes.entry(*id).or_default();
                change.state = Some(*state);
                change.reason = reason.as_deref();
            }
        }
        for (id, (artifact, report)) in &validations {
            let change = changes.entry(*id).or_default();
            change.artifact = Some(artifact);
            change.validation = Some(report);
        }
        for (id, reports) in &progress {
            changes.entry(*id).or_default().progress = Some(reports);
        }
        write_run_changes(&mut tx, now, &changes).await?;
        audit::append(&mut tx, self.backend, now, &audits).await?;
        tx.commit().await?;
        tracing::debug!(?applied, "run events applied");
        Ok(Some(applied))
    }

    /// Cancel a run that has not reached the import (an import cannot be
    /// stopped half way): it becomes `Canceled` with `reason`, and the audit
    /// log records `actor`. Events arriving later change nothing.
    #[tracing::instrument(skip_all, fields(run_id = %id))]
    pub async fn cancel_run(
        &self,
        id: Uuid,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<CancelOutcome, StoreError> {
        let run_id = id.to_string();
        let mut tx = self.begin_write().await?;
        let Some((current, pipeline)) = self.lock_run(&mut tx, &run_id).await? else {
            return Ok(CancelOutcome::UnknownRun);
        };
        if !current.is_cancelable() {
            return Ok(CancelOutcome::TooLate { state: current });
        }
        let now = now_millis();
        update_runs(&mut tx, now, &[(&run_id, RunState::Canceled, reason)]).await?;
        gates::settle_unpublished(&mut tx, &run_id).await?;
        let canceled = NewHistory::transition(&run_id, RunState::Canceled, actor, reason, None);
        insert_history(&mut tx, self.backend, now, &[canceled]).await?;
        let mut audit = NewAudit::new(actor, AuditAction::Transition, "run", &run_id)
            .before(&serde_json::json!({ "state": current }))
            .after(&serde_json::json!({ "state": RunState::Canceled, "reason": reason }));
        audit.pipeline_id = pipeline;
        audit::append(&mut tx, self.backend, now, &[audit]).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Canceled { from: current })
    }

    /// Claim up to `limit` unpublished outbox rows, oldest first, for `lease`:
    /// until it expires no other claimer gets them. Rows not marked published
    /// by then are claimed again (publishing is at least once).
    pub async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let claim = match self.backend {
            Backend::Postgres => CLAIM_POSTGRES,
            Backend::Sqlite => CLAIM_SQLITE,
        };
        let mut rows = sqlx::query_as::<_, (i64, String, String)>(claim)
            .bind(until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        // RETURNING promises no order.
        rows.sort_unstable_by_key(|row| row.0);
        rows.into_iter()
            .map(|(id, envelope, headers)| {
                let corrupt = |what, detail: String| {
                    StoreError::corrupt(what, format!("outbox row {id}: {detail}"))
                };
                Ok(OutboxItem {
                    id,
                    envelope: Envelope::decode(envelope.as_bytes())
                        .map_err(|e| corrupt("outbox envelope", e.to_string()))?,
                    trace_headers: serde_json::from_str(&headers)
                        .map_err(|e| corrupt("outbox trace headers", e.to_string()))?,
                })
            })
            .collect()
    }

    /// Mark claimed rows as published (after the broker confirmed them), so
    /// they are never claimed again: they are deleted, which costs
    /// PostgreSQL no new row version and no index entries (setting
    /// `published_at` did both), and keeps the outbox as small as what is
    /// waiting. The run history records what was sent. Unknown or already
    /// published ids are ignored.
    pub async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Only the list's fixed SQL is spliced in; the ids are bound.
        let sql = format!(
            "DELETE FROM outbox WHERE id IN {}",
            rowset::list(self.backend, 1, rowset::Type::BigInt)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(to_json("outbox ids", ids)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lock a run's row for the rest of `tx` and read its state; `None` if
    /// there is no such run.
    async fn lock_run(
        &self,
        tx: &mut Transaction<'static, Any>,
        run_id: &str,
    ) -> Result<Option<(RunState, Option<String>)>, StoreError> {
        let mut runs = self.lock_runs(tx, &BTreeSet::from([run_id])).await?;
        Ok(runs.remove(run_id).map(|run| (run.state, run.pipeline)))
    }

    /// Lock the rows of `run_ids` for the rest of `tx`, in sorted id order
    /// (so two transactions never wait for each other in a cycle), and read
    /// what applying events needs of them. Unknown ids are left out.
    async fn lock_runs<'a>(
        &self,
        tx: &mut Transaction<'static, Any>,
        run_ids: &BTreeSet<&'a str>,
    ) -> Result<BTreeMap<&'a str, LockedRun>, StoreError> {
        let ids: Vec<&'a str> = run_ids.iter().copied().collect();
        let mut runs = BTreeMap::new();
        let mut rest = ids.as_slice();
        for size in create::chunk_sizes(ids.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            // SQLite has no row locks; the transaction began with `BEGIN IMMEDIATE`.
            let lock = match self.backend {
                Backend::Postgres => " FOR UPDATE",
                Backend::Sqlite => "",
            };
            // Only numbered placeholders are spliced in; the ids are bound.
            let sql = format!(
                "SELECT id, state, pipeline_id, deployment, gates FROM runs WHERE id IN ({}) ORDER BY id{lock}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query_as::<
                _,
                (String, String, Option<String>, String, Option<String>),
            >(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for (id, state, pipeline, deployment, gates) in query.fetch_all(&mut **tx).await? {
                if let Some(known) = run_ids.get(id.as_str()) {
                    runs.insert(
                        *known,
                        LockedRun {
                            state: parse_state(&state)?,
                            pipeline,
                            deployment,
                            gates,
                        },
                    );
                }
            }
        }
        Ok(runs)
    }

    /// A write transaction for an admin change: on PostgreSQL it first takes
    /// a transaction-scoped advisory lock shared by all admin changes, so
    /// rules read and then written (unique names, targets, stage counts, no
    /// cycles, the last admin) hold under concurrent admins; SQLite's write
    /// lock already serializes. Admin changes are rare; runs never take it.
    pub(crate) async fn begin_admin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ADMIN_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// A write transaction; on SQLite it takes the write lock up front, so a
    /// read-then-write never fails to upgrade its lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Postgres => self.pool.begin().await?,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
        })
    }
}

/// The source's version before the run's export; the first export
/// reported wins (a redelivered export may see the source moved on).
async fn record_source_version(
    tx: &mut Transaction<'static, Any>,
    run_id: &str,
    version: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE runs SET source_version = $2 WHERE id = $1 AND source_version IS NULL")
        .bind(run_id)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What the importer reported on one run's running import in a batch.
#[derive(Debug, Default)]
struct ProgressReports {
    /// Progress reports (`started` events with an `import_progress` outcome).
    reports: i64,
    /// The latest percentage given, if any; 100 when the import succeeded.
    percent: Option<f64>,
}

impl ProgressReports {
    /// Counts `event` of a run that is importing, if it tells the import's
    /// progress or its success.
    fn add<'a>(progress: &mut BTreeMap<&'a str, Self>, run_id: &'a str, event: &RunEvent) {
        if event.step != Some(slipway_messages::Step::Import) {
            return;
        }
        match (&event.outcome, event.status) {
            (Some(StepOutcome::ImportProgress { percent, .. }), StepStatus::Started) => {
                let reports = progress.entry(run_id).or_default();
                reports.reports += 1;
                // A report without a percentage keeps the last one.
                if let Some(p) = percent.filter(|p| p.is_finite()) {
                    reports.percent = Some(p.clamp(0.0, 100.0));
                }
            }
            (_, StepStatus::Succeeded) => {
                progress.entry(run_id).or_default().percent = Some(100.0);
            }
            _ => {}
        }
    }
}

/// Where a run whose validation passed goes: on to the import the
/// validator already sent, or (when its deployment holds after validation)
/// to its first gate, its scheduled time or the import, with the import
/// command written to the outbox, held or timed accordingly.
async fn after_validation(
    tx: &mut Transaction<'static, Any>,
    run_id: &str,
    run: &LockedRun,
    artifact: &ArtifactRef,
) -> Result<RunState, StoreError> {
    let (deployment, gates) = (&run.deployment, run.gates.clone());
    let deployment: slipway_messages::Deployment = serde_json::from_str(deployment)
        .map_err(|e| StoreError::corrupt("deployment", format!("run {run_id}: {e}")))?;
    let gates: RunGates = json_column("run gates", run_id, gates)?.unwrap_or_default();
    let now = now_millis();
    if !deployment.hold_after_validation {
        return Ok(RunState::Importing);
    }
    let next = gates.after_validation(from_millis(now)?);
    if next == RunState::Succeeded {
        // A dry run: validated, nothing to import.
        return Ok(next);
    }
    let release = match next {
        RunState::Importing => Release::Now,
        RunState::Scheduled => Release::At(gates.scheduled_at.map_or(now, millis_of)),
        _ => Release::Held,
    };
    let run = Uuid::parse_str(run_id).map_err(|e| StoreError::corrupt("run id", e))?;
    let import = Envelope::new(
        run,
        Message::Import(ImportCommand {
            deployment,
            artifact: artifact.clone(),
            async_operation_id: None,
            polls: 0,
        }),
    );
    insert_outbox(tx, now, &import, &BTreeMap::new(), release).await?;
    Ok(next)
}

/// Makes a validated artifact the pipeline's artifact of its version (the
/// first one stays), for later stages, retries and redeployments.
async fn record_artifact(
    tx: &mut Transaction<'static, Any>,
    run_id: &str,
    artifact: &ArtifactRef,
    pipeline: Option<&String>,
) -> Result<(), StoreError> {
    let Some(pipeline) = pipeline else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO artifacts (pipeline_id, solution_name, version, managed_sha256, \
           unmanaged_sha256, managed_bytes, run_id, created_at) \
         SELECT $1, solution_name, $2, $3, $4, $5, id, $6 FROM runs WHERE id = $7 \
         ON CONFLICT DO NOTHING",
    )
    .bind(pipeline)
    .bind(&artifact.version)
    .bind(&artifact.managed_sha256)
    .bind(&artifact.unmanaged_sha256)
    .bind(i64::try_from(artifact.managed_bytes).unwrap_or(i64::MAX))
    .bind(now_millis())
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A run locked by [`Store::lock_runs`]: what applying events needs of it.
#[derive(Debug)]
struct LockedRun {
    state: RunState,
    pipeline: Option<String>,
    /// The deployment as stored (JSON), parsed only when a passed
    /// validation needs it.
    deployment: String,
    gates: Option<String>,
}

/// What a batch of events changes on one run.
#[derive(Debug, Default)]
struct RunChange<'a> {
    /// Where the run moved (and `updated_at` with it), if it moved.
    state: Option<RunState>,
    reason: Option<&'a str>,
    /// The artifact and report of its latest validation (JSON).
    artifact: Option<&'a str>,
    validation: Option<&'a str>,
    /// The import progress it reported in the batch.
    progress: Option<&'a ProgressReports>,
}

/// `rows` rows of the VALUES list of [`write_run_changes`], numbered from
/// `$2`; the numbers typed, so a column of NULLs is still a number.
fn change_rows(rows: usize) -> String {
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let p = change_first_param(row);
        out.push(format!(
            "(${}, ${}, ${}, ${}, ${}, CAST(${} AS DOUBLE PRECISION), CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        ));
    }
    out.join(", ")
}

/// The number of the first placeholder (the run id) of `row` in
/// [`change_rows`]: `$1` is the time, then eight per row.
fn change_first_param(row: usize) -> usize {
    2 + row * 8
}

/// The id placeholders of [`change_rows`] again, for `runs.id IN (...)`:
/// without it PostgreSQL may join the VALUES list to a sequential scan of
/// the runs (it did at 8,000 runs: 1.2 ms against 0.4 ms through the
/// primary key for 32 rows); with it, the runs are fetched by their key.
fn change_ids(rows: usize) -> String {
    (0..rows)
        .map(|row| format!("${}", change_first_param(row)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write a batch's run changes: one multi-row UPDATE per chunk; columns a
/// change leaves `None` keep their value.
async fn write_run_changes(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    changes: &BTreeMap<&str, RunChange<'_>>,
) -> Result<(), StoreError> {
    let changes: Vec<(&&str, &RunChange<'_>)> = changes.iter().collect();
    let mut rest = changes.as_slice();
    for size in create::chunk_sizes(changes.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        // Only numbered placeholders are spliced in; the values are bound.
        // Both databases name the columns of a bare VALUES list column1...
        let sql = format!(
            "UPDATE runs SET state = COALESCE(v.column2, runs.state), \
               reason = COALESCE(v.column3, runs.reason), \
               artifact = COALESCE(v.column4, runs.artifact), \
               validation = COALESCE(v.column5, runs.validation), \
               updated_at = CASE WHEN v.column2 IS NULL THEN runs.updated_at ELSE $1 END, \
               import_percent = CASE WHEN v.column6 >= 0 THEN v.column6 ELSE runs.import_percent END, \
               import_polls = CASE WHEN v.column8 = 1 \
                 THEN COALESCE(runs.import_polls, 0) + v.column7 ELSE runs.import_polls END, \
               import_progress_at = CASE WHEN v.column8 = 1 THEN $1 ELSE runs.import_progress_at END \
             FROM (VALUES {}) AS v WHERE runs.id = v.column1 AND runs.id IN ({})",
            change_rows(chunk.len()),
            change_ids(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(at);
        for (id, change) in chunk {
            query = query
                .bind(**id)
                .bind(change.state.map(RunState::as_str))
                .bind(change.reason)
                .bind(change.artifact)
                .bind(change.validation)
                // -1 for "no percentage": sqlx's Any driver declares a NULL
                // f64 as float4 on PostgreSQL, which breaks a statement
                // prepared with a NULL and then given a number.
                .bind(change.progress.and_then(|p| p.percent).unwrap_or(-1.0))
                .bind(change.progress.map_or(0, |p| p.reports))
                .bind(i64::from(change.progress.is_some()));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// When an outbox row may be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// At once.
    Now,
    /// Not before this time (ms since the epoch): a scheduled import.
    At(i64),
    /// Only after the gateway releases it (a gate passed).
    Held,
}

/// `claimed_until` of a held outbox row: claims only take rows whose lease
/// ran out, and this one never runs out.
pub(crate) const HELD: i64 = i64::MAX;

/// Write `command` to the outbox inside `tx`.
pub(crate) async fn insert_outbox(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    command: &Envelope,
    trace_headers: &BTreeMap<String, String>,
    release: Release,
) -> Result<(), StoreError> {
    let row = OutboxInsert::of(command, trace_headers, release)?;
    insert_outbox_rows(tx, now, std::slice::from_ref(&row)).await?;
    Ok(())
}

/// An outbox row about to be inserted, encoded.
pub(crate) struct OutboxInsert {
    run_id: String,
    message_id: String,
    envelope: String,
    trace_headers: String,
    claimed_until: Option<i64>,
}

impl OutboxInsert {
    pub(crate) fn of(
        command: &Envelope,
        trace_headers: &BTreeMap<String, String>,
        release: Release,
    ) -> Result<Self, StoreError> {
        Ok(OutboxInsert {
            run_id: command.run_id.to_string(),
            message_id: command.message_id.to_string(),
            envelope: to_json("command envelope", command)?,
            trace_headers: to_json("trace headers", trace_headers)?,
            claimed_until: match release {
                Release::Now => None,
                Release::At(at) => Some(at),
                Release::Held => Some(HELD),
            },
        })
    }
}

/// Insert outbox rows, a few multi-row statements for many rows; returns
/// each new row's id with its message id.
pub(crate) async fn insert_outbox_rows(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    rows: &[OutboxInsert],
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut rest = rows;
    for size in create::chunk_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        // Only numbered placeholders are spliced in; the values are bound.
        let sql = format!(
            "INSERT INTO outbox (run_id, message_id, envelope, trace_headers, created_at, claimed_until) \
             VALUES {} RETURNING id, message_id",
            create::placeholders(chunk.len(), 6, 1)
        );
        let mut query = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(&row.run_id)
                .bind(&row.message_id)
                .bind(&row.envelope)
                .bind(&row.trace_headers)
                .bind(now)
                .bind(row.claimed_until);
        }
        ids.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(ids)
}

/// A row to append to a run's history.
#[derive(Clone)]
struct NewHistory<'a> {
    run_id: &'a str,
    kind: HistoryKind,
    /// The state moved to (transitions).
    state: Option<RunState>,
    /// The event received, or the one that caused a transition.
    cause: Option<&'a RunEvent>,
    detail: Option<String>,
    actor: Option<&'a str>,
    /// Events only: the envelope's message id, recorded once.
    message_id: Option<String>,
}

impl<'a> NewHistory<'a> {
    fn event(run_id: &'a str, event: &'a RunEvent, message_id: String) -> Self {
        NewHistory {
            run_id,
            kind: HistoryKind::Event,
            state: None,
            cause: Some(event),
            detail: event.detail.clone(),
            actor: None,
            message_id: Some(message_id),
        }
    }

    fn transition(
        run_id: &'a str,
        to: RunState,
        actor: &'a str,
        detail: Option<&str>,
        cause: Option<&'a RunEvent>,
    ) -> Self {
        NewHistory {
            run_id,
            kind: HistoryKind::Transition,
            state: Some(to),
            cause,
            detail: detail.map(str::to_owned),
            actor: Some(actor),
            message_id: None,
        }
    }
}

/// Append rows to the history in the given order (ids ascend with it), in
/// one statement (a JSON row set, `rowset`). Returns whether every row was
/// written: an event whose message id is recorded already is not.
async fn insert_history(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    at: i64,
    rows: &[NewHistory<'_>],
) -> Result<bool, StoreError> {
    /// One row as the statement reads it from the JSON.
    #[derive(Serialize)]
    struct Row<'a> {
        run_id: &'a str,
        kind: &'static str,
        state: Option<&'static str>,
        // Written by serde, as `parse_name` reads them back.
        step: Option<slipway_messages::Step>,
        status: Option<StepStatus>,
        service: Option<&'a str>,
        instance: Option<&'a str>,
        detail: Option<&'a str>,
        actor: Option<&'a str>,
        message_id: Option<&'a str>,
    }
    // Before the rows: a run with no transition recorded yet is being created.
    webhooks::enqueue_deliveries(tx, backend, at, rows).await?;
    let rows = fold_history(rows);
    if rows.is_empty() {
        return Ok(true);
    }
    let json: Vec<Row<'_>> = rows
        .iter()
        .map(|row| Row {
            run_id: row.run_id,
            kind: row.kind.as_str(),
            state: row.state.map(RunState::as_str),
            step: row.cause.and_then(|e| e.step),
            status: row.cause.map(|e| e.status),
            service: row.cause.map(|e| e.service.as_str()),
            instance: row.cause.and_then(|e| e.instance.as_deref()),
            detail: row.detail.as_deref(),
            actor: row.actor,
            message_id: row.message_id.as_deref(),
        })
        .collect();
    use rowset::Type::Text;
    let table = rowset::table(
        backend,
        2,
        &[
            ("run_id", Text),
            ("kind", Text),
            ("state", Text),
            ("step", Text),
            ("status", Text),
            ("service", Text),
            ("instance", Text),
            ("detail", Text),
            ("actor", Text),
            ("message_id", Text),
        ],
    );
    // Only the row set's fixed SQL is spliced in; the rows are bound.
    // `WHERE true` keeps SQLite from reading ON CONFLICT as a join's ON.
    let sql = format!(
        "INSERT INTO run_history \
           (run_id, at, kind, state, step, status, service, instance, detail, actor, message_id) \
         SELECT r.run_id, $1, r.kind, r.state, r.step, r.status, r.service, r.instance, \
           r.detail, r.actor, r.message_id FROM {table} WHERE true ORDER BY r.ord \
         ON CONFLICT (message_id) DO NOTHING"
    );
    let inserted = sqlx::query(AssertSqlSafe(sql))
        .bind(at)
        .bind(to_json("history rows", &json)?)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(inserted == rows.len() as u64)
}

/// How [`Store::apply_events`] finds events it recorded before.
#[derive(Debug, Clone, Copy)]
enum Dedup {
    /// Assume none; the history insert tells otherwise.
    Optimistic,
    /// Look their message ids up first.
    LookUp,
}

/// The rows [`insert_history`] writes: an event followed by the transition
/// it caused become ONE row, the event's with the transition's state and
/// actor, which [`Store::run_history`] reads back as the two entries they
/// were. Only folded when the transition can be rebuilt exactly from the
/// event (its actor is the reporting service, its detail the failure
/// reason or nothing); anything else is written as it is. Halves the rows
/// a deployment's steps add to the history.
fn fold_history<'a>(rows: &'a [NewHistory<'a>]) -> Vec<NewHistory<'a>> {
    let mut out: Vec<NewHistory<'a>> = Vec::with_capacity(rows.len());
    let mut rows = rows.iter().peekable();
    while let Some(row) = rows.next() {
        let mut folded = row.clone();
        if let (HistoryKind::Event, Some(event), Some(next)) = (row.kind, row.cause, rows.peek())
            && next.kind == HistoryKind::Transition
            && next.run_id == row.run_id
            && next.cause.is_some_and(|cause| std::ptr::eq(cause, event))
            && next.actor == Some(event.service.as_str())
            && let Some(to) = next.state
            && next.detail == (to == RunState::Failed).then(|| failure_reason(event))
            && row.detail == event.detail
        {
            folded.state = Some(to);
            folded.actor = next.actor;
            rows.next();
        }
        out.push(folded);
    }
    out
}

/// Which of `message_ids` the history already holds.
async fn recorded_message_ids(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    message_ids: &[String],
) -> Result<HashSet<String>, StoreError> {
    // Only the list's fixed SQL is spliced in; the ids are bound.
    let sql = format!(
        "SELECT message_id FROM run_history WHERE message_id IN {}",
        rowset::list(backend, 1, rowset::Type::Text)
    );
    let recorded = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
        .bind(to_json("message ids", message_ids)?)
        .fetch_all(&mut **tx)
        .await?;
    Ok(recorded.into_iter().collect())
}

/// Move locked runs to new states (id, state, reason), keeping an earlier
/// reason unless there is a new one ([`write_run_changes`] with only the
/// state and reason set).
async fn update_runs(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    moves: &[(&str, RunState, Option<&str>)],
) -> Result<(), StoreError> {
    let changes: BTreeMap<&str, RunChange<'_>> = moves
        .iter()
        .map(|(id, state, reason)| {
            let change = RunChange {
                state: Some(*state),
                reason: *reason,
                ..RunChange::default()
            };
            (*id, change)
        })
        .collect();
    write_run_changes(tx, at, &changes).await
}

fn failure_reason(event: &RunEvent) -> String {
    failure_text(event.detail.as_deref(), event.step, &event.service)
}

/// A failed run's reason: the failing event's detail, or which step failed
/// and who said so. Also rebuilds the reason of a folded history row.
fn failure_text(
    detail: Option<&str>,
    step: Option<slipway_messages::Step>,
    service: &str,
) -> String {
    match (detail, step) {
        (Some(detail), _) => detail.to_owned(),
        (None, Some(step)) => format!("{} failed (reported by {service})", step.as_str()),
        (None, None) => format!("failed (reported by {service})"),
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        // Only the scheme: the rest may hold a password.
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(StoreError::UnsupportedUrl {
            scheme: scheme.to_owned(),
        })
    }
}

/// The run with this id, read through `executor` (the pool, or a
/// transaction that has not committed yet).
async fn fetch_run<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<Option<Run>, StoreError> {
    sqlx::query_as::<_, RunRow>(SELECT_RUN)
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?
        .map(run_from_row)
        .transpose()
}

pub(crate) fn run_from_row(row: RunRow) -> Result<Run, StoreError> {
    let (
        id,
        state,
        deployment,
        requested_by,
        reason,
        created_at,
        updated_at,
        gates,
        artifact,
        validation,
        source_version,
        import_percent,
        import_polls,
        import_progress_at,
    ) = row;
    Ok(Run {
        source_version,
        import_progress: import_progress_at
            .map(|at| -> Result<ImportProgress, StoreError> {
                Ok(ImportProgress {
                    percent: import_percent,
                    polls: import_polls
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    updated_at: from_millis(at)?,
                })
            })
            .transpose()?,
        gates: json_column("run gates", &id, gates)?.unwrap_or_default(),
        artifact: json_column("run artifact", &id, artifact)?,
        validation: json_column("validation report", &id, validation)?,
        id: Uuid::parse_str(&id).map_err(|e| StoreError::corrupt("run id", e))?,
        state: parse_state(&state)?,
        deployment: serde_json::from_str(&deployment)
            .map_err(|e| StoreError::corrupt("deployment", format!("run {id}: {e}")))?,
        requested_by,
        reason,
        created_at: from_millis(created_at)?,
        updated_at: from_millis(updated_at)?,
    })
}

/// A nullable JSON column of run `id`.
fn json_column<T: DeserializeOwned>(
    what: &'static str,
    id: &str,
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::corrupt(what, format!("run {id}: {e}")))
    })
    .transpose()
}

fn parse_state(name: &str) -> Result<RunState, StoreError> {
    RunState::parse(name).ok_or_else(|| StoreError::corrupt("run state", name))
}

/// A step or status column (written by serde, in `insert_history`) read
/// back, for a nullable column.
fn parse_name<T: DeserializeOwned>(
    what: &'static str,
    name: Option<String>,
) -> Result<Option<T>, StoreError> {
    name.map(|name| {
        serde_json::from_value(serde_json::Value::String(name))
            .map_err(|e| StoreError::corrupt(what, e))
    })
    .transpose()
}

fn to_json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

fn now_millis() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn millis_of(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_millis(millis: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|e| StoreError::corrupt("timestamp", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_urls_without_echoing_secrets() {
        let err = backend_of("mysql://root:hunter2@db/slipway").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`mysql`") && !msg.contains("hunter2"), "{msg}");
        assert_eq!(backend_of("postgresql://x/y").unwrap(), Backend::Postgres);
        assert_eq!(backend_of("sqlite::memory:").unwrap(), Backend::Sqlite);
    }

    #[test]
    fn millis_round_trip() {
        let now = now_millis();
        let back = from_millis(now).unwrap();
        assert_eq!(
            i64::try_from(back.unix_timestamp_nanos() / 1_000_000).unwrap(),
            now
        );
    }
}
