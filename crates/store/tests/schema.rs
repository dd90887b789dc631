//! The PostgreSQL and SQLite migration folders must describe the same schema:
//! same tables, columns (name, type, nullability) and indexes.

#![allow(clippy::unwrap_used)]

use slipway_store::Store;
use sqlx::{PgPool, SqlitePool};

/// (table, column, type, nullable), in declaration order.
type Column = (String, String, String, bool);

#[tokio::test]
async fn both_migration_folders_build_the_same_schema() {
    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    Store::connect(db.url()).await.unwrap();
    let pg = PgPool::connect(db.url()).await.unwrap();
    let pg_columns: Vec<Column> = sqlx::query_as::<_, (String, String, String, String)>(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&pg)
    .await
    .unwrap()
    .into_iter()
    .map(|(t, c, ty, null)| (t, c, ty, null == "YES"))
    .collect();
    let mut pg_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
         AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    pg.close().await;
    db.drop_db().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    Store::connect(&url).await.unwrap();
    let lite = SqlitePool::connect(&url).await.unwrap();
    let lite_columns: Vec<Column> = sqlx::query_as::<_, (String, String, String, bool)>(
        "SELECT m.name, p.name, p.type, NOT p.\"notnull\" \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
           AND m.name <> '_sqlx_migrations' \
         ORDER BY m.name, p.cid",
    )
    .fetch_all(&lite)
    .await
    .unwrap()
    .into_iter()
    // INTEGER is the spelling SQLite needs for an auto-assigned 64-bit id.
    .map(|(t, c, ty, null)| {
        let ty = match ty.to_lowercase().as_str() {
            "integer" => "bigint".to_owned(),
            other => other.to_owned(),
        };
        (t, c, ty, null)
    })
    .collect();
    let mut lite_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&lite)
    .await
    .unwrap();

    assert!(pg_columns.len() > 10, "{pg_columns:?}");
    assert_eq!(pg_columns, lite_columns);
    pg_indexes.sort();
    lite_indexes.sort();
    assert_eq!(
        pg_indexes,
        [
            "audit_log_actor",
            "audit_log_at",
            "audit_log_pipeline",
            "outbox_unpublished",
            "pipeline_shares_principal",
            "pipeline_sources_environment",
            "run_history_run",
            "runs_created_at",
            "runs_pipeline",
            "runs_requested_by",
            "runs_solution_name",
            "runs_stage",
            "stage_targets_environment",
            "webhook_deliveries_due",
            "webhook_deliveries_webhook"
        ]
    );
    assert_eq!(pg_indexes, lite_indexes);
}

/// Runs written before 0005 get their `solution_name` column from the
/// deployment JSON, with each database's own JSON function.
#[tokio::test]
async fn migration_0005_backfills_solution_names_on_both_databases() {
    const INSERT_RUN: &str = "INSERT INTO runs (id, state, deployment, requested_by, created_at, updated_at) \
         VALUES ('run-1', 'succeeded', '{\"solution_name\":\"ContosoCore\",\"source_environment\":\"dev\"}', 'maker', 1, 1)";
    const READ_BACK: &str = "SELECT solution_name FROM runs WHERE id = 'run-1'";

    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    let pg = PgPool::connect(db.url()).await.unwrap();
    migrations_before("postgres", 5)
        .await
        .run(&pg)
        .await
        .unwrap();
    sqlx::query(INSERT_RUN).execute(&pg).await.unwrap();
    Store::connect(db.url()).await.unwrap();
    let name: Option<String> = sqlx::query_scalar(READ_BACK).fetch_one(&pg).await.unwrap();
    assert_eq!(name.as_deref(), Some("ContosoCore"), "postgres");
    pg.close().await;
    db.drop_db().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let lite = SqlitePool::connect(&url).await.unwrap();
    migrations_before("sqlite", 5)
        .await
        .run(&lite)
        .await
        .unwrap();
    sqlx::query(INSERT_RUN).execute(&lite).await.unwrap();
    Store::connect(&url).await.unwrap();
    let name: Option<String> = sqlx::query_scalar(READ_BACK)
        .fetch_one(&lite)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("ContosoCore"), "sqlite");
}

/// The migrations of one flavour before `version`.
async fn migrations_before(flavour: &str, version: i64) -> sqlx::migrate::Migrator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(flavour);
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    let older: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect();
    assert_eq!(
        older.len() as i64,
        version - 1,
        "{flavour}: migrations 0001 to {:04}",
        version - 1
    );
    migrator.migrations = older.into();
    migrator
}

/// 0010 drops the foreign keys of run_history and outbox (SQLite rebuilds
/// both tables): rows written before it keep their ids and contents, new
/// ids continue after them, and a row no longer needs its run.
#[tokio::test]
async fn migration_0010_keeps_history_and_outbox_rows_on_both_databases() {
    const INSERT_RUN: &str = "INSERT INTO runs (id, state, deployment, requested_by, created_at, updated_at) \
         VALUES ('run-1', 'succeeded', '{}', 'maker', 1, 1)";
    const INSERT_HISTORY: &str = "INSERT INTO run_history (run_id, at, kind, state, actor, message_id) \
         VALUES ('run-1', 1, 'event', NULL, NULL, 'm-1'), ('run-1', 2, 'transition', 'succeeded', 'importer', NULL)";
    const INSERT_OUTBOX: &str = "INSERT INTO outbox (run_id, message_id, envelope, trace_headers, created_at, published_at) \
         VALUES ('run-1', 'c-1', '{}', '{}', 1, 2)";
    const ORPHANS: &str = "INSERT INTO run_history (run_id, at, kind, message_id) VALUES ('no-such-run', 3, 'event', 'm-2')";
    const HISTORY: &str = "SELECT id, kind, state, message_id FROM run_history ORDER BY id";
    const OUTBOX: &str = "SELECT id, message_id, published_at FROM outbox ORDER BY id";
    type History = Vec<(i64, String, Option<String>, Option<String>)>;
    type Outbox = Vec<(i64, String, Option<i64>)>;

    fn check(flavour: &str, before: &History, after: &History, outbox: &Outbox) {
        assert_eq!(before.len(), 2, "{flavour}: {before:?}");
        assert_eq!(
            &after[..2],
            &before[..],
            "{flavour}: rows kept as they were"
        );
        assert_eq!(after.len(), 3, "{flavour}: {after:?}");
        assert!(
            after[2].0 > before[1].0,
            "{flavour}: ids continue: {after:?}"
        );
        assert_eq!(after[2].3.as_deref(), Some("m-2"), "{flavour}");
        assert_eq!(outbox.len(), 1, "{flavour}: {outbox:?}");
        assert_eq!(outbox[0].1, "c-1", "{flavour}");
        assert_eq!(outbox[0].2, Some(2), "{flavour}");
    }

    /// Rows written before 0010, read back after it, on one database.
    async fn across_0010(flavour: &str, url: &str) -> (History, History, Outbox) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        migrations_before(flavour, 10)
            .await
            .run(&pool)
            .await
            .unwrap();
        for sql in [INSERT_RUN, INSERT_HISTORY, INSERT_OUTBOX] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let before: History = sqlx::query_as(HISTORY).fetch_all(&pool).await.unwrap();
        assert!(
            sqlx::query(ORPHANS).execute(&pool).await.is_err(),
            "{flavour}: before 0010 the foreign key refuses a row without its run"
        );
        Store::connect(url).await.unwrap();
        sqlx::query(ORPHANS).execute(&pool).await.unwrap();
        let after: History = sqlx::query_as(HISTORY).fetch_all(&pool).await.unwrap();
        let outbox: Outbox = sqlx::query_as(OUTBOX).fetch_all(&pool).await.unwrap();
        pool.close().await;
        (before, after, outbox)
    }

    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    let (before, after, outbox) = across_0010("postgres", db.url()).await;
    check("postgres", &before, &after, &outbox);
    db.drop_db().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let (before, after, outbox) = across_0010("sqlite", &url).await;
    check("sqlite", &before, &after, &outbox);
}
