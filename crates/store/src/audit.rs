//! The audit log: every admin change and every run transition, with actor,
//! time, and the record before and after. Append-only and tamper-evident:
//! each record's hash covers its own fields and the previous record's hash,
//! so editing, deleting or reordering any record breaks the chain from there
//! on, and [`Store::verify_audit`] says where.
//!
//! Records are appended by the same transaction as the change they describe
//! (see [`append`]). The single `audit_head` row is locked while appending,
//! which gives records consecutive sequence numbers with no gaps even with
//! several gateway replicas on one PostgreSQL database.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Any, AssertSqlSafe, Transaction};
use time::OffsetDateTime;

use crate::{Backend, Store, StoreError, from_millis, rowset, to_json};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records read per round while verifying.
const VERIFY_PAGE: i64 = 2000;

/// What a change was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    /// A run moved to another state.
    Transition,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Transition => "transition",
        }
    }

    fn parse(name: &str) -> Option<AuditAction> {
        [
            AuditAction::Create,
            AuditAction::Update,
            AuditAction::Delete,
            AuditAction::Transition,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// A record to append; [`append`] gives it its sequence number and hashes.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: AuditAction,
    /// `environment`, `pipeline`, `stage`, `share`, `role_grant`,
    /// `api_token`, `webhook` or `run`.
    pub entity_kind: &'static str,
    pub entity_id: String,
    /// The pipeline the change belongs to, for filtering.
    pub pipeline_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl NewAudit {
    pub fn new(
        actor: &str,
        action: AuditAction,
        entity_kind: &'static str,
        entity_id: impl ToString,
    ) -> Self {
        NewAudit {
            actor: actor.to_owned(),
            action,
            entity_kind,
            entity_id: entity_id.to_string(),
            pipeline_id: None,
            before: None,
            after: None,
        }
    }

    pub fn pipeline(mut self, id: impl ToString) -> Self {
        self.pipeline_id = Some(id.to_string());
        self
    }

    pub fn before(mut self, value: &impl Serialize) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    pub fn after(mut self, value: &impl Serialize) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }
}

/// One stored record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: AuditAction,
    pub entity_kind: String,
    pub entity_id: String,
    pub pipeline_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters of [`Store::list_audit`]; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub pipeline_id: Option<String>,
    pub actor: Option<String>,
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Only records after this sequence number (paging).
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// The outcome of [`Store::verify_audit`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditVerification {
    /// True when every record links to the one before and hashes right.
    pub intact: bool,
    /// Records checked.
    pub records: i64,
    /// The head's sequence number and hash (the last record's).
    pub head_seq: i64,
    pub head_hash: String,
    /// The first record found broken, and how.
    pub first_broken_seq: Option<i64>,
    pub problem: Option<String>,
}

/// The hash of a record: sha256 over a JSON array of its fields as stored,
/// so verification recomputes it from exactly what the database holds.
#[allow(clippy::too_many_arguments)]
fn record_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    entity_kind: &str,
    entity_id: &str,
    pipeline_id: Option<&str>,
    before: Option<&str>,
    after: Option<&str>,
    prev_hash: &str,
) -> String {
    let fields = serde_json::json!([
        seq,
        at,
        actor,
        action,
        entity_kind,
        entity_id,
        pipeline_id,
        before,
        after,
        prev_hash
    ]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

/// Append `records` to the chain inside `tx` (which holds the change they
/// describe): lock the head, number and hash them, insert, move the head.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    at: i64,
    records: &[NewAudit],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        // The transaction began with `BEGIN IMMEDIATE`: SQLite's write lock.
        Backend::Sqlite => "",
    };
    let head_sql = format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}");
    let (mut seq, mut prev) = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(head_sql))
        .fetch_one(&mut **tx)
        .await?;
    struct Row {
        seq: i64,
        before: Option<String>,
        after: Option<String>,
        prev_hash: String,
        hash: String,
    }
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        seq += 1;
        let before = record
            .before
            .as_ref()
            .map(|v| to_json("audit before", v))
            .transpose()?;
        let after = record
            .after
            .as_ref()
            .map(|v| to_json("audit after", v))
            .transpose()?;
        let hash = record_hash(
            seq,
            at,
            &record.actor,
            record.action.as_str(),
            record.entity_kind,
            &record.entity_id,
            record.pipeline_id.as_deref(),
            before.as_deref(),
            after.as_deref(),
            &prev,
        );
        rows.push(Row {
            seq,
            before,
            after,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    /// One row as the insert reads it from the JSON.
    #[derive(Serialize)]
    struct Json<'a> {
        seq: i64,
        actor: &'a str,
        action: &'static str,
        entity_kind: &'static str,
        entity_id: &'a str,
        pipeline_id: Option<&'a str>,
        before_json: Option<&'a str>,
        after_json: Option<&'a str>,
        prev_hash: &'a str,
        hash: &'a str,
    }
    let json: Vec<Json<'_>> = rows
        .iter()
        .zip(records)
        .map(|(row, record)| Json {
            seq: row.seq,
            actor: &record.actor,
            action: record.action.as_str(),
            entity_kind: record.entity_kind,
            entity_id: &record.entity_id,
            pipeline_id: record.pipeline_id.as_deref(),
            before_json: row.before.as_deref(),
            after_json: row.after.as_deref(),
            prev_hash: &row.prev_hash,
            hash: &row.hash,
        })
        .collect();
    use rowset::Type::{BigInt, Text};
    let table = rowset::table(
        backend,
        2,
        &[
            ("seq", BigInt),
            ("actor", Text),
            ("action", Text),
            ("entity_kind", Text),
            ("entity_id", Text),
            ("pipeline_id", Text),
            ("before_json", Text),
            ("after_json", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
    );
    // Only the row set's fixed SQL is spliced in; the rows are bound.
    let sql = format!(
        "INSERT INTO audit_log (seq, at, actor, action, entity_kind, entity_id, pipeline_id, \
           before_json, after_json, prev_hash, hash) \
         SELECT r.seq, $1, r.actor, r.action, r.entity_kind, r.entity_id, r.pipeline_id, \
           r.before_json, r.after_json, r.prev_hash, r.hash FROM {table}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(at)
        .bind(to_json("audit rows", &json)?)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(prev.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

type AuditRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

const AUDIT_SELECT: &str = "SELECT seq, at, actor, action, entity_kind, entity_id, pipeline_id, \
     before_json, after_json, prev_hash, hash FROM audit_log";

fn record_from_row(row: AuditRow) -> Result<AuditRecord, StoreError> {
    let (seq, at, actor, action, entity_kind, entity_id, pipeline_id, before, after, prev, hash) =
        row;
    let json = |what: &'static str, text: Option<String>| {
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt(what, e)))
            .transpose()
    };
    Ok(AuditRecord {
        seq,
        at: from_millis(at)?,
        actor,
        action: AuditAction::parse(&action)
            .ok_or_else(|| StoreError::corrupt("audit action", &action))?,
        entity_kind,
        entity_id,
        pipeline_id,
        before: json("audit before", before)?,
        after: json("audit after", after)?,
        prev_hash: prev,
        hash,
    })
}

impl Store {
    /// Records matching `query`, oldest first, at most `query.limit` (1 to
    /// 1000).
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let param = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(p) = &query.pipeline_id {
            let n = param(&mut binds, Bind::Text(p.clone()));
            conditions.push(format!("pipeline_id = {n}"));
        }
        if let Some(a) = &query.actor {
            let n = param(&mut binds, Bind::Text(a.clone()));
            conditions.push(format!("actor = {n}"));
        }
        if let Some(k) = &query.entity_kind {
            let n = param(&mut binds, Bind::Text(k.clone()));
            conditions.push(format!("entity_kind = {n}"));
        }
        if let Some(e) = &query.entity_id {
            let n = param(&mut binds, Bind::Text(e.clone()));
            conditions.push(format!("entity_id = {n}"));
        }
        if let Some(since) = query.since {
            let n = param(&mut binds, Bind::Int(crate::millis_of(since)));
            conditions.push(format!("at >= {n}"));
        }
        if let Some(until) = query.until {
            let n = param(&mut binds, Bind::Int(crate::millis_of(until)));
            conditions.push(format!("at < {n}"));
        }
        if let Some(after) = query.after_seq {
            let n = param(&mut binds, Bind::Int(after));
            conditions.push(format!("seq > {n}"));
        }
        let limit = param(&mut binds, Bind::Int(i64::from(query.limit.clamp(1, 1000))));
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        // Only fixed column names and numbered placeholders are spliced in.
        let sql = format!("{AUDIT_SELECT}{filter} ORDER BY seq LIMIT {limit}");
        let mut q = sqlx::query_as::<_, AuditRow>(AssertSqlSafe(sql));
        for bind in binds {
            q = match bind {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(record_from_row)
            .collect()
    }

    /// Walk the whole chain: sequence numbers consecutive from 1, each record
    /// linking to the hash before it and hashing to what it says, and the
    /// head pointing at the last record. Reports the first break.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let (head_seq, head_hash) =
            sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        let mut expected_seq = 1;
        let mut prev = GENESIS_HASH.to_owned();
        let mut records = 0;
        let broken = |seq: i64, problem: String, records: i64| AuditVerification {
            intact: false,
            records,
            head_seq,
            head_hash: head_hash.clone(),
            first_broken_seq: Some(seq),
            problem: Some(problem),
        };
        loop {
            let sql = format!("{AUDIT_SELECT} WHERE seq >= $1 ORDER BY seq LIMIT {VERIFY_PAGE}");
            let page = sqlx::query_as::<_, AuditRow>(AssertSqlSafe(sql))
                .bind(expected_seq)
                .fetch_all(&self.pool)
                .await?;
            let done = page.len() < usize::try_from(VERIFY_PAGE).unwrap_or(usize::MAX);
            for row in page {
                let (seq, at, actor, action, kind, id, pipeline, before, after, prev_hash, hash) =
                    row;
                records += 1;
                if seq != expected_seq {
                    return Ok(broken(
                        expected_seq,
                        format!("record {expected_seq} is missing (next is {seq})"),
                        records,
                    ));
                }
                if prev_hash != prev {
                    return Ok(broken(
                        seq,
                        format!("record {seq} does not link to the record before it"),
                        records,
                    ));
                }
                let recomputed = record_hash(
                    seq,
                    at,
                    &actor,
                    &action,
                    &kind,
                    &id,
                    pipeline.as_deref(),
                    before.as_deref(),
                    after.as_deref(),
                    &prev_hash,
                );
                if recomputed != hash {
                    return Ok(broken(
                        seq,
                        format!("record {seq} was altered: its content does not match its hash"),
                        records,
                    ));
                }
                prev = hash;
                expected_seq += 1;
            }
            if done {
                break;
            }
        }
        let last = expected_seq - 1;
        if last > head_seq {
            return Ok(broken(
                head_seq + 1,
                format!(
                    "records {} to {last} lie beyond the chain's head ({head_seq}): they were added outside Slipway",
                    head_seq + 1
                ),
                records,
            ));
        }
        if last < head_seq {
            return Ok(broken(
                last + 1,
                format!(
                    "the chain ends at record {last} but its head says {head_seq}: records were removed from the end"
                ),
                records,
            ));
        }
        if prev != head_hash {
            return Ok(broken(
                last,
                format!(
                    "the chain's head does not match record {last}'s hash: the head was altered"
                ),
                records,
            ));
        }
        Ok(AuditVerification {
            intact: true,
            records,
            head_seq,
            head_hash,
            first_broken_seq: None,
            problem: None,
        })
    }

    /// Append records outside any other change (for tests and tools).
    pub async fn append_audit(&self, records: &[NewAudit]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        append(&mut tx, self.backend, crate::now_millis(), records).await?;
        tx.commit().await?;
        Ok(())
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_field_and_the_previous_hash() {
        let base = record_hash(
            1,
            2,
            "a",
            "create",
            "pipeline",
            "x",
            None,
            None,
            Some("{}"),
            GENESIS_HASH,
        );
        let variants = [
            record_hash(
                2,
                2,
                "a",
                "create",
                "pipeline",
                "x",
                None,
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                3,
                "a",
                "create",
                "pipeline",
                "x",
                None,
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "b",
                "create",
                "pipeline",
                "x",
                None,
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "update",
                "pipeline",
                "x",
                None,
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "create",
                "stage",
                "x",
                None,
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "create",
                "pipeline",
                "y",
                None,
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "create",
                "pipeline",
                "x",
                Some("p"),
                None,
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "create",
                "pipeline",
                "x",
                None,
                Some("{}"),
                Some("{}"),
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "create",
                "pipeline",
                "x",
                None,
                None,
                None,
                GENESIS_HASH,
            ),
            record_hash(
                1,
                2,
                "a",
                "create",
                "pipeline",
                "x",
                None,
                None,
                Some("{}"),
                "1",
            ),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
        assert_eq!(base.len(), 64);
    }
}
