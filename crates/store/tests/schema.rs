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
    before_0005("postgres").await.run(&pg).await.unwrap();
    sqlx::query(INSERT_RUN).execute(&pg).await.unwrap();
    Store::connect(db.url()).await.unwrap();
    let name: Option<String> = sqlx::query_scalar(READ_BACK).fetch_one(&pg).await.unwrap();
    assert_eq!(name.as_deref(), Some("ContosoCore"), "postgres");
    pg.close().await;
    db.drop_db().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let lite = SqlitePool::connect(&url).await.unwrap();
    before_0005("sqlite").await.run(&lite).await.unwrap();
    sqlx::query(INSERT_RUN).execute(&lite).await.unwrap();
    Store::connect(&url).await.unwrap();
    let name: Option<String> = sqlx::query_scalar(READ_BACK)
        .fetch_one(&lite)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("ContosoCore"), "sqlite");
}

/// The migrations of one flavour up to and including 0004.
async fn before_0005(flavour: &str) -> sqlx::migrate::Migrator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(flavour);
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    let older: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 5)
        .cloned()
        .collect();
    assert_eq!(older.len(), 4, "{flavour}: migrations 0001 to 0004");
    migrator.migrations = older.into();
    migrator
}
