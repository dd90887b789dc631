//! Outgoing webhooks: a run's gate events (OnDeploymentRequested,
//! OnApprovalStarted, ... OnDeploymentCompleted, named as Power Platform
//! pipelines name their business events) posted to URLs an admin registers.
//!
//! - Deliveries are written by [`enqueue_deliveries`], called from
//!   `insert_history` for the transition rows, so a delivery row exists if
//!   and only if its transition committed: none is lost, none is invented.
//! - The gateway claims due deliveries with a lease
//!   ([`Store::claim_webhook_deliveries`], `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, like the outbox), posts them, and records the outcome
//!   ([`Store::webhook_delivered`], [`Store::webhook_failed`]). A delivery
//!   out of attempts stays, undelivered, with its last error.
//! - Secrets are stored by reference (`env:NAME`, `file:/path`) and resolved
//!   by the gateway at each attempt; this crate never sees them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{Any, AssertSqlSafe, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, AuditAction, NewAudit};
use crate::model::{HistoryKind, RunState};
use crate::{Backend, NewHistory, Store, StoreError, from_millis, now_millis, rowset, to_json};

/// A run event a webhook may subscribe to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum WebhookEvent {
    /// A run was created (in `requested`, or `awaiting_pre_export`).
    OnDeploymentRequested,
    /// The run waits for its pre-export gate.
    OnPreExportStarted,
    /// The run waits for an approver.
    OnApprovalStarted,
    /// The run waits for its pre-deployment gate.
    OnPreDeploymentStarted,
    /// The import started.
    OnDeploymentStarted,
    /// The run ended: succeeded, failed or canceled.
    OnDeploymentCompleted,
}

impl WebhookEvent {
    /// Every event, in the order a run raises them.
    pub const ALL: [WebhookEvent; 6] = [
        WebhookEvent::OnDeploymentRequested,
        WebhookEvent::OnPreExportStarted,
        WebhookEvent::OnApprovalStarted,
        WebhookEvent::OnPreDeploymentStarted,
        WebhookEvent::OnDeploymentStarted,
        WebhookEvent::OnDeploymentCompleted,
    ];

    /// The name stored, sent in `X-Slipway-Event` and in the payload.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::OnDeploymentRequested => "OnDeploymentRequested",
            WebhookEvent::OnPreExportStarted => "OnPreExportStarted",
            WebhookEvent::OnApprovalStarted => "OnApprovalStarted",
            WebhookEvent::OnPreDeploymentStarted => "OnPreDeploymentStarted",
            WebhookEvent::OnDeploymentStarted => "OnDeploymentStarted",
            WebhookEvent::OnDeploymentCompleted => "OnDeploymentCompleted",
        }
    }

    pub fn parse(name: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// The events a run's move to `state` raises; `created` when it is the
    /// run's first state (a new run raises OnDeploymentRequested, and, when
    /// it starts at its pre-export gate, OnPreExportStarted too). Going
    /// back to `requested` after the pre-export gate raises nothing.
    pub fn for_transition(state: RunState, created: bool) -> Vec<WebhookEvent> {
        let mut events = Vec::with_capacity(2);
        if created {
            events.push(WebhookEvent::OnDeploymentRequested);
        }
        events.extend(Self::of_state(state));
        events
    }

    /// The event entering `state` raises, whoever moved the run there.
    fn of_state(state: RunState) -> Option<WebhookEvent> {
        match state {
            RunState::AwaitingPreExport => Some(WebhookEvent::OnPreExportStarted),
            RunState::AwaitingApproval => Some(WebhookEvent::OnApprovalStarted),
            RunState::AwaitingPreDeployment => Some(WebhookEvent::OnPreDeploymentStarted),
            RunState::Importing => Some(WebhookEvent::OnDeploymentStarted),
            RunState::Succeeded | RunState::Failed | RunState::Canceled => {
                Some(WebhookEvent::OnDeploymentCompleted)
            }
            RunState::Requested
            | RunState::Exporting
            | RunState::Validating
            | RunState::AwaitingSettings
            | RunState::Scheduled => None,
        }
    }

    /// The events a transition to `state` may raise (when it creates the run or not).
    fn possible(state: RunState) -> Vec<WebhookEvent> {
        Self::for_transition(state, true)
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A webhook an admin registers. The signing key is a reference.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Checked by the caller: https, or http to this machine.
    pub url: String,
    /// What it receives; empty means every event.
    pub events: Vec<WebhookEvent>,
    /// Only runs of this pipeline; every run when `None`.
    pub pipeline_id: Option<Uuid>,
    /// `env:NAME` or `file:/path`, checked by the caller.
    pub secret_ref: String,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// The events it receives.
    pub events: Vec<WebhookEvent>,
    /// Only runs of this pipeline; every run when null.
    pub pipeline_id: Option<Uuid>,
    /// Where the gateway reads the HMAC key (`env:NAME` or `file:/path`).
    pub secret_ref: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; `next_attempt_at` says when it is tried (again).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Out of attempts; `last_error` says why the last one failed.
    Failed,
}

/// One event for one webhook, as the deliveries endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// Sent as `X-Slipway-Delivery` and `delivery_id`: the same on every attempt.
    pub id: i64,
    pub webhook_id: Uuid,
    pub event: WebhookEvent,
    pub run_id: Uuid,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// Why the latest failed attempt failed (kept once delivered).
    pub last_error: Option<String>,
    /// When it is tried next (while one is in flight: when it is tried
    /// again if that attempt's outcome is never recorded); null once
    /// delivered or out of attempts.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// A delivery claimed for one attempt: what to post, where, signed with
/// which key reference. Pass it back to [`Store::webhook_delivered`] or
/// [`Store::webhook_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: i64,
    pub webhook_id: Uuid,
    pub url: String,
    pub secret_ref: String,
    pub event: WebhookEvent,
    pub run_id: Uuid,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The JSON body, the same on every attempt.
    pub body: String,
    /// The end of this claim's lease: outcomes are recorded only while the
    /// row is still this claim's (not taken over after the lease ran out).
    claimed_until: i64,
}

type WebhookRow = (String, String, String, Option<String>, String, String, i64);

const SELECT_WEBHOOK: &str =
    "SELECT id, url, events, pipeline_id, secret_ref, created_by, created_at FROM webhooks";

type DeliveryRow = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

const CLAIM_POSTGRES: &str = "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id IN ( \
       SELECT id FROM webhook_deliveries \
       WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $2 \
       ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING id, webhook_id, event, run_id, payload, attempts";
/// One statement takes SQLite's write lock, so no two claimers overlap.
const CLAIM_SQLITE: &str = "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id IN ( \
       SELECT id FROM webhook_deliveries \
       WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $2 \
       ORDER BY id LIMIT $3) \
     RETURNING id, webhook_id, event, run_id, payload, attempts";

/// Columns of one `webhook_deliveries` row as [`enqueue_deliveries`] binds them.
const DELIVERY_COLUMNS: usize = 6;
/// Delivery rows per INSERT, well under both databases' parameter limit.
const DELIVERY_CHUNK: usize = 500;

fn parse_uuid(what: &'static str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::corrupt(what, e))
}

fn parse_event(name: &str) -> Result<WebhookEvent, StoreError> {
    WebhookEvent::parse(name).ok_or_else(|| StoreError::corrupt("webhook event", name))
}

fn parse_events(id: &str, json: &str) -> Result<Vec<WebhookEvent>, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt("webhook events", format!("webhook {id}: {e}")))
}

fn webhook_from_row(row: WebhookRow) -> Result<Webhook, StoreError> {
    let (id, url, events, pipeline_id, secret_ref, created_by, created_at) = row;
    Ok(Webhook {
        events: parse_events(&id, &events)?,
        id: parse_uuid("webhook id", &id)?,
        url,
        pipeline_id: pipeline_id
            .as_deref()
            .map(|p| parse_uuid("webhook pipeline id", p))
            .transpose()?,
        secret_ref,
        created_by,
        created_at: from_millis(created_at)?,
    })
}

fn count_of(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

fn delivery_from_row(webhook_id: Uuid, row: DeliveryRow) -> Result<WebhookDelivery, StoreError> {
    let (id, event, run_id, _, attempts, created_at, delivered_at, last_error, next_attempt_at) =
        row;
    let status = match (delivered_at, next_attempt_at) {
        (Some(_), _) => DeliveryStatus::Delivered,
        (None, Some(_)) => DeliveryStatus::Pending,
        (None, None) => DeliveryStatus::Failed,
    };
    Ok(WebhookDelivery {
        id,
        webhook_id,
        event: parse_event(&event)?,
        run_id: parse_uuid("delivery run id", &run_id)?,
        status,
        attempts: count_of(attempts),
        created_at: from_millis(created_at)?,
        delivered_at: delivered_at.map(from_millis).transpose()?,
        last_error,
        next_attempt_at: next_attempt_at.map(from_millis).transpose()?,
    })
}

fn millis_in(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Register a webhook (audited as `actor`). `events` empty means all;
    /// `pipeline_id`, if given, must name a pipeline.
    pub async fn create_webhook(
        &self,
        actor: &str,
        new: &NewWebhook,
    ) -> Result<Webhook, StoreError> {
        let events: Vec<WebhookEvent> = if new.events.is_empty() {
            WebhookEvent::ALL.to_vec()
        } else {
            let wanted: BTreeSet<WebhookEvent> = new.events.iter().copied().collect();
            WebhookEvent::ALL
                .into_iter()
                .filter(|e| wanted.contains(e))
                .collect()
        };
        let id = Uuid::now_v7();
        let now = now_millis();
        let mut tx = self.begin_admin_write().await?;
        if let Some(pipeline) = new.pipeline_id {
            let known: Option<String> =
                sqlx::query_scalar("SELECT id FROM pipelines WHERE id = $1")
                    .bind(pipeline.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                return Err(StoreError::invalid(
                    "pipeline_id",
                    format!(
                        "no pipeline with id {pipeline}; GET /api/v1/pipelines lists them (leave pipeline_id out for every run)"
                    ),
                ));
            }
        }
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, pipeline_id, secret_ref, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(&new.url)
        .bind(to_json("webhook events", &events)?)
        .bind(new.pipeline_id.map(|p| p.to_string()))
        .bind(&new.secret_ref)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let webhook = load_webhook(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("webhook", id))?;
        let mut record = NewAudit::new(actor, AuditAction::Create, "webhook", id).after(&webhook);
        record.pipeline_id = new.pipeline_id.map(|p| p.to_string());
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(webhook)
    }

    /// Every webhook, oldest first.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let sql = format!("{SELECT_WEBHOOK} ORDER BY created_at, id");
        sqlx::query_as::<_, WebhookRow>(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(webhook_from_row)
            .collect()
    }

    pub async fn get_webhook(&self, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        let sql = format!("{SELECT_WEBHOOK} WHERE id = $1");
        sqlx::query_as::<_, WebhookRow>(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(webhook_from_row)
            .transpose()
    }

    /// Remove a webhook and its deliveries (pending ones are never sent);
    /// the audit record keeps what it was.
    pub async fn delete_webhook(&self, actor: &str, id: Uuid) -> Result<Webhook, StoreError> {
        let now = now_millis();
        let mut tx = self.begin_admin_write().await?;
        let before = load_webhook(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("webhook", id))?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let mut record = NewAudit::new(actor, AuditAction::Delete, "webhook", id).before(&before);
        record.pipeline_id = before.pipeline_id.map(|p| p.to_string());
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(before)
    }

    /// A webhook's newest `limit` deliveries, newest first; `NotFound` for
    /// an unknown webhook.
    pub async fn list_webhook_deliveries(
        &self,
        webhook_id: Uuid,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        if self.get_webhook(webhook_id).await?.is_none() {
            return Err(StoreError::not_found("webhook", webhook_id));
        }
        sqlx::query_as::<_, DeliveryRow>(
            "SELECT id, event, run_id, payload, attempts, created_at, delivered_at, last_error, \
               next_attempt_at FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(webhook_id.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| delivery_from_row(webhook_id, row))
        .collect()
    }

    /// Claim up to `limit` due deliveries, oldest first, for `lease`: until
    /// it ends no other claimer gets them; an outcome not recorded by then
    /// lets the delivery be claimed again (delivery is at least once).
    pub async fn claim_webhook_deliveries(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let until = now.saturating_add(millis_in(lease));
        let claim = match self.backend {
            Backend::Postgres => CLAIM_POSTGRES,
            Backend::Sqlite => CLAIM_SQLITE,
        };
        let mut rows = sqlx::query_as::<_, (i64, String, String, String, String, i64)>(claim)
            .bind(until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // RETURNING promises no order.
        rows.sort_unstable_by_key(|row| row.0);
        // The table is small: one read instead of a join per row.
        let hooks: HashMap<String, (String, String)> =
            sqlx::query_as::<_, (String, String, String)>(
                "SELECT id, url, secret_ref FROM webhooks",
            )
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(id, url, secret)| (id, (url, secret)))
            .collect();
        let mut due = Vec::with_capacity(rows.len());
        for (id, webhook_id, event, run_id, payload, attempts) in rows {
            // Deleted since the claim: its deliveries went with it.
            let Some((url, secret_ref)) = hooks.get(&webhook_id) else {
                continue;
            };
            let mut body: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&payload).map_err(|e| {
                    StoreError::corrupt("webhook payload", format!("delivery {id}: {e}"))
                })?;
            body.insert("delivery_id".into(), id.into());
            due.push(DueDelivery {
                id,
                webhook_id: parse_uuid("webhook id", &webhook_id)?,
                url: url.clone(),
                secret_ref: secret_ref.clone(),
                event: parse_event(&event)?,
                run_id: parse_uuid("delivery run id", &run_id)?,
                attempts: count_of(attempts),
                body: to_json("webhook payload", &body)?,
                claimed_until: until,
            });
        }
        Ok(due)
    }

    /// The receiver took `delivery` (2xx): it is never sent again.
    pub async fn webhook_delivered(&self, delivery: &DueDelivery) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, delivered_at = $2, \
               next_attempt_at = NULL \
             WHERE id = $1 AND next_attempt_at = $3 AND delivered_at IS NULL",
        )
        .bind(delivery.id)
        .bind(now_millis())
        .bind(delivery.claimed_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An attempt at `delivery` failed with `error`: it is tried again
    /// after `retry_in`, or, when `None` (out of attempts), stays
    /// undelivered with `error` for people to see.
    pub async fn webhook_failed(
        &self,
        delivery: &DueDelivery,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2, \
               next_attempt_at = $3 \
             WHERE id = $1 AND next_attempt_at = $4 AND delivered_at IS NULL",
        )
        .bind(delivery.id)
        .bind(error)
        .bind(retry_in.map(|d| now.saturating_add(millis_in(d))))
        .bind(delivery.claimed_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn load_webhook(
    tx: &mut Transaction<'static, Any>,
    id: Uuid,
) -> Result<Option<Webhook>, StoreError> {
    let sql = format!("{SELECT_WEBHOOK} WHERE id = $1");
    sqlx::query_as::<_, WebhookRow>(AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .map(webhook_from_row)
        .transpose()
}

/// A webhook as the transition hook needs it.
struct Subscriber {
    id: String,
    events: BTreeSet<WebhookEvent>,
    pipeline_id: Option<String>,
}

/// What the payload says about a run, read once per call.
struct RunFacts {
    pipeline_id: Option<String>,
    stage_id: Option<String>,
    reason: Option<String>,
    /// Transitions recorded before this call: 0 for a run being created.
    earlier_transitions: i64,
}

/// Write the deliveries the transition rows among `rows` raise, inside the
/// transaction that records them (call before those rows are inserted).
/// Costs one small `SELECT` of the webhooks table when a transition may
/// raise an event, and nothing more when no webhook wants it.
pub(crate) async fn enqueue_deliveries(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    at: i64,
    rows: &[NewHistory<'_>],
) -> Result<(), StoreError> {
    let transitions: Vec<(&str, RunState, Option<&str>)> = rows
        .iter()
        .filter(|row| row.kind == HistoryKind::Transition)
        .filter_map(|row| Some((row.run_id, row.state?, row.detail.as_deref())))
        .collect();
    if transitions.is_empty() {
        return Ok(());
    }
    let subscribers: Vec<Subscriber> = sqlx::query_as::<_, (String, String, Option<String>)>(
        "SELECT id, events, pipeline_id FROM webhooks ORDER BY created_at, id",
    )
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(id, events, pipeline_id)| {
        Ok(Subscriber {
            events: parse_events(&id, &events)?.into_iter().collect(),
            id,
            pipeline_id,
        })
    })
    .collect::<Result<_, StoreError>>()?;
    let wanted = |state: RunState| {
        WebhookEvent::possible(state)
            .into_iter()
            .any(|e| subscribers.iter().any(|s| s.events.contains(&e)))
    };
    let run_ids: BTreeSet<&str> = transitions
        .iter()
        .filter(|(_, state, _)| wanted(*state))
        .map(|(run, _, _)| *run)
        .collect();
    if run_ids.is_empty() {
        return Ok(());
    }
    let facts = run_facts(tx, backend, &run_ids).await?;
    let when = from_millis(at)?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::corrupt("timestamp", e))?;
    // (webhook, event, run, payload), in transition order.
    let mut deliveries: Vec<(&str, WebhookEvent, &str, String)> = Vec::new();
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for (run_id, state, detail) in &transitions {
        let Some(run) = facts.get(run_id) else {
            continue;
        };
        let earlier = seen.entry(run_id).or_insert(run.earlier_transitions);
        let created = *earlier == 0;
        *earlier += 1;
        let reason = matches!(state, RunState::Failed | RunState::Canceled)
            .then(|| detail.map(str::to_owned).or_else(|| run.reason.clone()))
            .flatten();
        for event in WebhookEvent::for_transition(*state, created) {
            let payload = serde_json::json!({
                "event": event,
                "run_id": run_id,
                "pipeline_id": run.pipeline_id,
                "stage_id": run.stage_id,
                "state": state,
                "reason": reason,
                "at": when,
                "run_url_path": format!("/api/v1/deployments/{run_id}"),
            });
            for subscriber in &subscribers {
                let scoped_out = subscriber
                    .pipeline_id
                    .as_ref()
                    .is_some_and(|p| run.pipeline_id.as_ref() != Some(p));
                if subscriber.events.contains(&event) && !scoped_out {
                    deliveries.push((
                        &subscriber.id,
                        event,
                        run_id,
                        to_json("webhook payload", &payload)?,
                    ));
                }
            }
        }
    }
    for chunk in deliveries.chunks(DELIVERY_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = row * DELIVERY_COLUMNS;
                let p = |column: usize| format!("${}", first + column);
                format!(
                    "({}, {}, {}, {}, {}, 0, {})",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6)
                )
            })
            .collect();
        // Only numbered placeholders are spliced in; the values are bound.
        let sql = format!(
            "INSERT INTO webhook_deliveries \
               (webhook_id, event, run_id, payload, created_at, attempts, next_attempt_at) \
             VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (webhook, event, run, payload) in chunk {
            query = query
                .bind(*webhook)
                .bind(event.as_str())
                .bind(*run)
                .bind(payload.as_str())
                .bind(at)
                .bind(at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Pipeline, stage, reason and the number of transitions already recorded
/// of each run, in one query.
async fn run_facts<'a>(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    run_ids: &BTreeSet<&'a str>,
) -> Result<BTreeMap<&'a str, RunFacts>, StoreError> {
    // Only the list's fixed SQL is spliced in; the ids are bound.
    let sql = format!(
        "SELECT r.id, r.pipeline_id, r.stage_id, r.reason, \
           (SELECT COUNT(*) FROM run_history h WHERE h.run_id = r.id AND h.state IS NOT NULL) \
         FROM runs r WHERE r.id IN {}",
        rowset::list(backend, 1, rowset::Type::Text)
    );
    let rows = sqlx::query_as::<_, (String, Option<String>, Option<String>, Option<String>, i64)>(
        AssertSqlSafe(sql),
    )
    .bind(to_json("run ids", run_ids)?)
    .fetch_all(&mut **tx)
    .await?;
    let mut facts = BTreeMap::new();
    for (id, pipeline_id, stage_id, reason, earlier) in rows {
        if let Some(known) = run_ids.get(id.as_str()) {
            facts.insert(
                *known,
                RunFacts {
                    pipeline_id,
                    stage_id,
                    reason,
                    earlier_transitions: earlier,
                },
            );
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use WebhookEvent::*;

    #[test]
    fn a_new_run_raises_requested_and_its_first_gate() {
        assert_eq!(
            WebhookEvent::for_transition(RunState::Requested, true),
            [OnDeploymentRequested]
        );
        assert_eq!(
            WebhookEvent::for_transition(RunState::AwaitingPreExport, true),
            [OnDeploymentRequested, OnPreExportStarted]
        );
    }

    #[test]
    fn each_gate_and_the_end_raise_their_event() {
        let cases = [
            (RunState::AwaitingPreExport, vec![OnPreExportStarted]),
            (RunState::AwaitingApproval, vec![OnApprovalStarted]),
            (
                RunState::AwaitingPreDeployment,
                vec![OnPreDeploymentStarted],
            ),
            (RunState::Importing, vec![OnDeploymentStarted]),
            (RunState::Succeeded, vec![OnDeploymentCompleted]),
            (RunState::Failed, vec![OnDeploymentCompleted]),
            (RunState::Canceled, vec![OnDeploymentCompleted]),
        ];
        for (state, events) in cases {
            assert_eq!(
                WebhookEvent::for_transition(state, false),
                events,
                "{state}"
            );
        }
    }

    #[test]
    fn working_states_and_requested_again_raise_nothing() {
        for state in [
            RunState::Requested,
            RunState::Exporting,
            RunState::Validating,
            RunState::AwaitingSettings,
            RunState::Scheduled,
        ] {
            assert_eq!(WebhookEvent::for_transition(state, false), [], "{state}");
        }
    }

    fn new_run(pre_export_gate: bool) -> (crate::NewRun, slipway_messages::Envelope) {
        let id = Uuid::now_v7();
        let deployment = slipway_messages::Deployment::between("Contoso", "dev", "test");
        let command = slipway_messages::Envelope::new(
            id,
            slipway_messages::Message::Export(slipway_messages::ExportCommand {
                deployment: deployment.clone(),
            }),
        );
        let run = crate::NewRun {
            id,
            deployment,
            requested_by: "maker".into(),
            gates: crate::RunGates {
                pre_export_gate,
                ..crate::RunGates::default()
            },
            artifact: None,
        };
        (run, command)
    }

    /// Deliveries come with the transitions, none without a webhook; a
    /// claim leases them; an outcome is recorded only by the claim that
    /// still holds the lease.
    #[tokio::test]
    async fn deliveries_follow_transitions_and_claims_lease_them() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let (quiet, command) = new_run(true);
        store
            .create_run(&quiet, &command, &BTreeMap::new())
            .await
            .unwrap();
        let hook = store
            .create_webhook(
                "admin",
                &NewWebhook {
                    url: "https://hooks.contoso.com/x".into(),
                    events: vec![],
                    pipeline_id: None,
                    secret_ref: "env:HOOK".into(),
                },
            )
            .await
            .unwrap();
        // The run created before the webhook raised nothing for it.
        assert!(
            store
                .list_webhook_deliveries(hook.id, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let (run, command) = new_run(true);
        store
            .create_run(&run, &command, &BTreeMap::new())
            .await
            .unwrap();
        // Passing the pre-export gate goes back to `requested`: no event.
        store
            .decide_gate(run.id, crate::Gate::PreExport, "bot", true, None)
            .await
            .unwrap();
        store
            .cancel_run(run.id, "maker", Some("not today"))
            .await
            .unwrap();
        let listed = store.list_webhook_deliveries(hook.id, 10).await.unwrap();
        let events: Vec<WebhookEvent> = listed.iter().rev().map(|d| d.event).collect();
        assert_eq!(
            events,
            [
                OnDeploymentRequested,
                OnPreExportStarted,
                OnDeploymentCompleted
            ]
        );
        assert!(listed.iter().all(|d| d.status == DeliveryStatus::Pending));

        let claimed = store
            .claim_webhook_deliveries(10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 3);
        let completed: serde_json::Value = serde_json::from_str(&claimed[2].body).unwrap();
        assert_eq!(completed["event"], "OnDeploymentCompleted");
        assert_eq!(completed["state"], "canceled");
        assert_eq!(completed["reason"], "not today");
        assert_eq!(completed["delivery_id"], claimed[2].id);
        assert_eq!(completed["run_id"], run.id.to_string());
        // Leased: nobody else gets them.
        assert!(
            store
                .claim_webhook_deliveries(10, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );

        store.webhook_delivered(&claimed[0]).await.unwrap();
        store
            .webhook_failed(&claimed[1], "the receiver answered 500", None)
            .await
            .unwrap();
        store
            .webhook_failed(&claimed[2], "timeout", Some(Duration::ZERO))
            .await
            .unwrap();
        let again = store
            .claim_webhook_deliveries(10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, claimed[2].id);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(
            again[0].body, claimed[2].body,
            "the same body every attempt"
        );
        // The first claim's lease is gone: its late outcome changes nothing.
        store.webhook_delivered(&claimed[2]).await.unwrap();
        let by_id: BTreeMap<i64, WebhookDelivery> = store
            .list_webhook_deliveries(hook.id, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        let first = &by_id[&claimed[0].id];
        assert_eq!(
            (first.status, first.attempts),
            (DeliveryStatus::Delivered, 1)
        );
        let given_up = &by_id[&claimed[1].id];
        assert_eq!(
            (given_up.status, given_up.attempts),
            (DeliveryStatus::Failed, 1)
        );
        assert_eq!(
            given_up.last_error.as_deref(),
            Some("the receiver answered 500")
        );
        let retried = &by_id[&claimed[2].id];
        assert_eq!(
            (retried.status, retried.attempts),
            (DeliveryStatus::Pending, 1)
        );

        // Removing the webhook removes its deliveries.
        store.delete_webhook("admin", hook.id).await.unwrap();
        assert!(matches!(
            store.list_webhook_deliveries(hook.id, 10).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(
            store
                .claim_webhook_deliveries(10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn every_event_is_raised_by_some_state_and_names_round_trip() {
        let raised: BTreeSet<WebhookEvent> = RunState::ALL
            .into_iter()
            .flat_map(|s| WebhookEvent::for_transition(s, true))
            .collect();
        assert_eq!(raised, WebhookEvent::ALL.into_iter().collect());
        for event in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
            assert_eq!(serde_json::to_value(event).unwrap(), event.as_str());
        }
        assert_eq!(WebhookEvent::parse("OnSomethingElse"), None);
    }
}
