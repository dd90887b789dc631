//! The audit log's hash chain, on both backends: an untouched chain
//! verifies; editing, removing, reordering or adding records behind the
//! store's back (raw SQL on the same database) is reported at the right
//! record; concurrent writers from several replicas leave one gapless chain.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use slipway_store::audit::GENESIS_HASH;
use slipway_store::{
    AuditAction, AuditQuery, AuditRecord, EnvironmentKind, NewAudit, NewEnvironment, NewPipeline,
    Store,
};
use uuid::Uuid;

/// A database for one test: its url (for raw SQL and more replicas) and a store on it.
struct Fixture {
    url: String,
    store: Store,
}

impl Fixture {
    /// A second connection pool on the same database that bypasses the store.
    async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .unwrap()
    }

    async fn exec(&self, sql: &'static str, binds: &[Bind<'_>]) {
        let pool = self.raw().await;
        let mut query = sqlx::query(sql);
        for b in binds {
            query = match b {
                Bind::Text(t) => query.bind(*t),
            };
        }
        let done = query.execute(&pool).await.unwrap();
        assert!(done.rows_affected() > 0, "{sql} changed nothing");
        pool.close().await;
    }

    /// A development environment for pipelines to deploy from.
    async fn dev_environment(&self) -> Uuid {
        self.store
            .create_environment(
                "admin",
                &NewEnvironment {
                    name: "dev".into(),
                    url: "https://dev.crm4.dynamics.com".into(),
                    kind: EnvironmentKind::Development,
                    credentials: json!({"kind": "static_token", "token_ref": "env:DEV_TOKEN"}),
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn records(&self) -> Vec<AuditRecord> {
        self.store
            .list_audit(&AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .unwrap()
    }
}

enum Bind<'a> {
    Text(&'a str),
}

/// Generates `postgres::<name>` and `sqlite::<name>` tests calling `<name>(&Fixture)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = slipway_testkit::pg::fresh_database().await.unwrap();
                    let store = slipway_store::Store::connect(db.url()).await.unwrap();
                    let fixture = super::Fixture { url: db.url().to_owned(), store };
                    super::$name(&fixture).await;
                    drop(fixture);
                    db.drop_db().await.unwrap();
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("audit.db").display());
                    let store = slipway_store::Store::connect(&url).await.unwrap();
                    super::$name(&super::Fixture { url, store }).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_untouched_chain_verifies,
    an_altered_field_is_found_at_its_record,
    a_forged_hash_breaks_the_next_link,
    a_removed_middle_record_is_reported_missing,
    a_removed_last_record_is_reported,
    reordered_records_are_found,
    a_record_appended_behind_the_head_is_found,
    a_tampered_head_is_found,
    a_long_chain_verifies_across_pages,
    concurrent_replicas_keep_one_gapless_chain,
);

fn record(i: usize) -> NewAudit {
    NewAudit::new("tester", AuditAction::Create, "pipeline", format!("p-{i}"))
        .pipeline(format!("pipeline-{}", i % 2))
        .after(&json!({"i": i, "name": format!("P{i}")}))
}

/// Eight records: five appended one by one, three in one batch.
async fn seed(f: &Fixture) {
    for i in 0..5 {
        f.store.append_audit(&[record(i)]).await.unwrap();
    }
    f.store
        .append_audit(&[record(5), record(6), record(7)])
        .await
        .unwrap();
}

/// The documented hash: sha256 over the JSON array of the stored fields.
fn expected_hash(r: &AuditRecord) -> String {
    let text = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    let fields = json!([
        r.seq,
        (r.at.unix_timestamp_nanos() / 1_000_000) as i64,
        r.actor,
        r.action.as_str(),
        r.entity_kind,
        r.entity_id,
        r.pipeline_id,
        text(&r.before),
        text(&r.after),
        r.prev_hash,
    ]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

async fn an_untouched_chain_verifies(f: &Fixture) {
    let empty = f.store.verify_audit().await.unwrap();
    assert!(empty.intact, "{empty:?}");
    assert_eq!((empty.records, empty.head_seq), (0, 0));
    assert_eq!(empty.head_hash, GENESIS_HASH);

    seed(f).await;
    let dev = f.dev_environment().await;
    f.store
        .create_pipeline(
            "admin",
            &NewPipeline {
                name: "Release".into(),
                description: String::new(),
                allow_redeploy_older: false,
                source_environment_ids: vec![dev],
            },
        )
        .await
        .unwrap();
    let records = f.records().await;
    let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let mut prev = GENESIS_HASH.to_owned();
    for r in &records {
        assert_eq!(
            r.prev_hash, prev,
            "record {} links to the one before",
            r.seq
        );
        assert_eq!(
            r.hash,
            expected_hash(r),
            "record {} hashes its fields",
            r.seq
        );
        prev = r.hash.clone();
    }
    let verified = f.store.verify_audit().await.unwrap();
    assert!(verified.intact, "{verified:?}");
    assert_eq!(verified.records, 10);
    assert_eq!(verified.head_seq, 10);
    assert_eq!(verified.head_hash, prev);
    assert_eq!(verified.first_broken_seq, None);
    assert_eq!(verified.problem, None);
}

async fn an_altered_field_is_found_at_its_record(f: &Fixture) {
    seed(f).await;
    let original = f.records().await[3].clone();
    assert_eq!(original.seq, 4);
    let after_json = original.after.as_ref().unwrap().to_string();
    let pipeline_id = original.pipeline_id.clone().unwrap();
    // Each column the hash covers, changed alone, then put back.
    let edits: Vec<(&'static str, &'static str, Vec<Bind<'_>>)> = vec![
        (
            "UPDATE audit_log SET after_json = '{\"i\":99}' WHERE seq = 4",
            "UPDATE audit_log SET after_json = $1 WHERE seq = 4",
            vec![Bind::Text(&after_json)],
        ),
        (
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 4",
            "UPDATE audit_log SET actor = $1 WHERE seq = 4",
            vec![Bind::Text(&original.actor)],
        ),
        (
            "UPDATE audit_log SET at = at + 1 WHERE seq = 4",
            "UPDATE audit_log SET at = at - 1 WHERE seq = 4",
            vec![],
        ),
        (
            "UPDATE audit_log SET action = 'delete' WHERE seq = 4",
            "UPDATE audit_log SET action = $1 WHERE seq = 4",
            vec![Bind::Text(original.action.as_str())],
        ),
        (
            "UPDATE audit_log SET entity_id = 'p-other' WHERE seq = 4",
            "UPDATE audit_log SET entity_id = $1 WHERE seq = 4",
            vec![Bind::Text(&original.entity_id)],
        ),
        (
            "UPDATE audit_log SET pipeline_id = NULL WHERE seq = 4",
            "UPDATE audit_log SET pipeline_id = $1 WHERE seq = 4",
            vec![Bind::Text(&pipeline_id)],
        ),
        (
            "UPDATE audit_log SET before_json = '{}' WHERE seq = 4",
            "UPDATE audit_log SET before_json = NULL WHERE seq = 4",
            vec![],
        ),
    ];
    for (tamper, restore, binds) in edits {
        f.exec(tamper, &[]).await;
        let v = f.store.verify_audit().await.unwrap();
        assert!(!v.intact, "{tamper}: not detected: {v:?}");
        assert_eq!(v.first_broken_seq, Some(4), "{tamper}: {v:?}");
        assert!(
            v.problem.as_deref().unwrap().contains("altered"),
            "{tamper}: {v:?}"
        );
        assert_eq!(v.records, 4, "verification stops at the first break");
        f.exec(restore, &binds).await;
        let v = f.store.verify_audit().await.unwrap();
        assert!(v.intact, "after undoing {tamper}: {v:?}");
    }
}

async fn a_forged_hash_breaks_the_next_link(f: &Fixture) {
    seed(f).await;
    // A forger who knows the hash rewrites record 4 and recomputes its hash:
    // record 4 checks out, but record 5 still links to the old one.
    let mut forged = f.records().await[3].clone();
    forged.after = Some(json!({"i": 3, "name": "forged"}));
    forged.hash = expected_hash(&forged);
    let pool = f.raw().await;
    sqlx::query("UPDATE audit_log SET after_json = $1, hash = $2 WHERE seq = 4")
        .bind(forged.after.as_ref().unwrap().to_string())
        .bind(&forged.hash)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let v = f.store.verify_audit().await.unwrap();
    assert!(!v.intact, "{v:?}");
    assert_eq!(v.first_broken_seq, Some(5), "{v:?}");
    assert!(
        v.problem.as_deref().unwrap().contains("does not link"),
        "{v:?}"
    );
}

async fn a_removed_middle_record_is_reported_missing(f: &Fixture) {
    seed(f).await;
    f.exec("DELETE FROM audit_log WHERE seq = 4", &[]).await;
    let v = f.store.verify_audit().await.unwrap();
    assert!(!v.intact, "{v:?}");
    assert_eq!(v.first_broken_seq, Some(4), "{v:?}");
    assert!(v.problem.as_deref().unwrap().contains("missing"), "{v:?}");
}

async fn a_removed_last_record_is_reported(f: &Fixture) {
    seed(f).await;
    f.exec("DELETE FROM audit_log WHERE seq = 8", &[]).await;
    let v = f.store.verify_audit().await.unwrap();
    assert!(!v.intact, "{v:?}");
    assert_eq!(v.head_seq, 8, "{v:?}");
    assert_eq!(v.first_broken_seq, Some(8), "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .unwrap()
            .contains("removed from the end"),
        "{v:?}"
    );
    // Removing the first record is found too.
    f.exec("DELETE FROM audit_log WHERE seq = 1", &[]).await;
    let v = f.store.verify_audit().await.unwrap();
    assert_eq!(v.first_broken_seq, Some(1), "{v:?}");
}

async fn reordered_records_are_found(f: &Fixture) {
    seed(f).await;
    // Swap records 3 and 4 (their sequence numbers).
    f.exec("UPDATE audit_log SET seq = -1 WHERE seq = 3", &[])
        .await;
    f.exec("UPDATE audit_log SET seq = 3 WHERE seq = 4", &[])
        .await;
    f.exec("UPDATE audit_log SET seq = 4 WHERE seq = -1", &[])
        .await;
    let v = f.store.verify_audit().await.unwrap();
    assert!(!v.intact, "{v:?}");
    assert_eq!(v.first_broken_seq, Some(3), "{v:?}");
}

async fn a_record_appended_behind_the_head_is_found(f: &Fixture) {
    seed(f).await;
    // A well-formed record 9, linked to record 8, without moving the head.
    let last = f.records().await.pop().unwrap();
    let mut extra = last.clone();
    extra.seq = 9;
    extra.actor = "mallory".into();
    extra.prev_hash = last.hash.clone();
    extra.hash = expected_hash(&extra);
    let pool = f.raw().await;
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, entity_kind, entity_id, pipeline_id, \
           before_json, after_json, prev_hash, hash) \
         SELECT 9, at, 'mallory', action, entity_kind, entity_id, pipeline_id, before_json, \
           after_json, $1, $2 FROM audit_log WHERE seq = 8",
    )
    .bind(&extra.prev_hash)
    .bind(&extra.hash)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let listed = f.records().await;
    assert_eq!(listed.len(), 9);
    assert_eq!(
        listed[8].hash,
        expected_hash(&listed[8]),
        "record 9 is well formed"
    );
    let v = f.store.verify_audit().await.unwrap();
    assert!(!v.intact, "a record beyond the head passes: {v:?}");
    assert_eq!(
        v.first_broken_seq,
        Some(9),
        "the first broken record is the one beyond the head: {v:?}"
    );
}

async fn a_tampered_head_is_found(f: &Fixture) {
    seed(f).await;
    f.exec(
        "UPDATE audit_head SET hash = '1111111111111111111111111111111111111111111111111111111111111111' WHERE id = 1",
        &[],
    )
    .await;
    let v = f.store.verify_audit().await.unwrap();
    assert!(!v.intact, "{v:?}");
    assert!(v.problem.is_some(), "{v:?}");
}

async fn a_long_chain_verifies_across_pages(f: &Fixture) {
    // More records than one INSERT (300) and one verification page (2000).
    let batch: Vec<NewAudit> = (0..2_100).map(record).collect();
    f.store.append_audit(&batch).await.unwrap();
    f.store.append_audit(&batch[..5]).await.unwrap();
    let v = f.store.verify_audit().await.unwrap();
    assert!(v.intact, "{v:?}");
    assert_eq!((v.records, v.head_seq), (2_105, 2_105));
    f.exec(
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2050",
        &[],
    )
    .await;
    let v = f.store.verify_audit().await.unwrap();
    assert_eq!(v.first_broken_seq, Some(2_050), "{v:?}");
}

async fn concurrent_replicas_keep_one_gapless_chain(f: &Fixture) {
    const TASKS: usize = 8;
    const EACH: usize = 20;
    let dev = f.dev_environment().await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        // Each task is its own gateway replica: its own pool.
        let replica = Store::connect(&f.url).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                replica
                    .create_pipeline(
                        &format!("admin-{t}"),
                        &NewPipeline {
                            name: format!("pipeline {t}-{i}"),
                            description: String::new(),
                            allow_redeploy_older: false,
                            source_environment_ids: vec![dev],
                        },
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in futures::future::join_all(tasks).await {
        task.unwrap();
    }
    // The environment's record, then one per pipeline.
    let total = (TASKS * EACH) as i64 + 1;
    let v = f.store.verify_audit().await.unwrap();
    assert!(v.intact, "{v:?}");
    assert_eq!((v.records, v.head_seq), (total, total));
    let records = f.records().await;
    let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    for t in 0..TASKS {
        let mine = f
            .store
            .list_audit(&AuditQuery {
                actor: Some(format!("admin-{t}")),
                limit: 1000,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(mine.len(), EACH, "task {t}");
    }
    assert_eq!(
        f.store.list_pipelines(None).await.unwrap().len(),
        TASKS * EACH
    );
}
