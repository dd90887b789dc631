//! Persistence: every environment's state in one SQLite database (sqlx).
//!
//! Entity rows are returned as JSON objects with Dataverse's column names,
//! so the API layer can apply `$select` and `$filter` generically.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde_json::{Map, Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::SimError;
use crate::config::{ConnectionConfig, DataLocation};

/// A component identity as stored: (type as written, lowercase name).
pub type Key = (String, String);

/// JSON object rows.
pub type Rows = Vec<Map<String, Value>>;

/// Handle on the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// In memory: a connection never used for queries, so never dropped by
    /// a canceled request, that keeps the shared in-memory database alive
    /// (it lives as long as one connection to it is open).
    _keeper: Option<std::sync::Arc<tokio::sync::Mutex<sqlx::SqliteConnection>>>,
}

/// An installed solution, as the import rules need it.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Unique name as installed.
    pub unique_name: String,
    /// Version as written.
    pub version: String,
    /// Managed or not.
    pub managed: bool,
}

/// An environment variable definition to register.
#[derive(Debug, Clone)]
pub struct EnvVarDefinition {
    pub schema_name: String,
    pub display_name: Option<String>,
    /// Option-set code, 100000000..100000005.
    pub kind: i64,
    pub default_value: Option<String>,
    pub required: bool,
}

/// Everything an accepted import writes (see `engine`).
#[derive(Debug, Clone)]
pub struct ImportWrite<'a> {
    pub env: String,
    pub unique_name: String,
    pub friendly_name: Option<String>,
    pub version: String,
    pub managed: bool,
    pub publisher: String,
    /// The publisher's display name.
    pub publisher_friendly_name: Option<String>,
    /// The package as received (stored for `ExportSolution`).
    pub zip: &'a [u8],
    /// Replace the solution's components (upgrade) instead of merging (update).
    pub replace_components: bool,
    pub components: BTreeSet<Key>,
    pub requirements: BTreeSet<Key>,
    pub env_var_definitions: Vec<EnvVarDefinition>,
    /// (schema name, value): explicit values replace, packaged current values only fill gaps.
    pub env_var_values: Vec<(String, String)>,
    pub packaged_env_var_values: Vec<(String, String)>,
    /// (logical name, display name, connector id)
    pub connection_references: Vec<(String, Option<String>, String)>,
    /// (logical name, connection id)
    pub connection_bindings: Vec<(String, String)>,
}

/// Whom a request acted for: the `systemuserid` its `CallerObjectId` or
/// `MSCRMCallerID` named, or `None` for the environment's own user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActingFor(pub Option<Uuid>);

impl ActingFor {
    fn id(self) -> Option<String> {
        self.0.map(|u| u.to_string())
    }
}

/// `created_by`-style columns: the user acted for (`?1`), else the
/// environment's (`?2`) own user; and the environment's own user as the
/// one who acted on their behalf, when it did.
const BY: &str = "COALESCE(?1, (SELECT user_id FROM environments WHERE name = ?2))";
const ON_BEHALF_BY: &str =
    "CASE WHEN ?1 IS NULL THEN NULL ELSE (SELECT user_id FROM environments WHERE name = ?2) END";

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn uuid_of(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn open(data: &DataLocation) -> Result<Self, SimError> {
        let (options, pool_options) = match data {
            // A named, shared-cache in-memory database: every connection of
            // the pool sees the same data, so sqlx replacing a connection
            // (it closes one whose query was canceled) loses nothing.
            DataLocation::Memory => (
                SqliteConnectOptions::from_str(&format!(
                    "sqlite:file:envsim-{}?mode=memory&cache=shared",
                    Uuid::new_v4()
                ))?,
                // One at a time: shared-cache connections lock tables
                // rather than wait, so concurrent writers would fail.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None),
            ),
            DataLocation::File(path) => (
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
                SqlitePoolOptions::new().max_connections(4),
            ),
        };
        let keeper = match data {
            DataLocation::Memory => {
                use sqlx::ConnectOptions as _;
                Some(std::sync::Arc::new(tokio::sync::Mutex::new(
                    options.connect().await.map_err(|error| SimError::Open {
                        path: String::from(data.clone()),
                        error,
                    })?,
                )))
            }
            DataLocation::File(_) => None,
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|error| SimError::Open {
                path: String::from(data.clone()),
                error,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            _keeper: keeper,
        })
    }

    /// Closes the pool (flushes the file).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates the environment's row (with fresh ids) unless it exists.
    pub async fn ensure_environment(&self, env: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO environments (name, organization_id, business_unit_id, user_id)
             VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(env)
        .bind(Uuid::new_v4().to_string())
        .bind(Uuid::new_v4().to_string())
        .bind(Uuid::new_v4().to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `WhoAmI` answer for the environment.
    pub async fn who_am_i(&self, env: &str) -> Result<Option<Value>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT organization_id, business_unit_id, user_id FROM environments WHERE name = ?",
        )
        .bind(env)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            json!({
                "BusinessUnitId": r.get::<String, _>(1),
                "UserId": r.get::<String, _>(2),
                "OrganizationId": r.get::<String, _>(0),
            })
        }))
    }

    /// Makes the environment's connections exactly the configured ones.
    pub async fn set_connections(
        &self,
        env: &str,
        connections: &[ConnectionConfig],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM connections WHERE env = ?")
            .bind(env)
            .execute(&mut *tx)
            .await?;
        for c in connections {
            sqlx::query(
                "INSERT INTO connections (env, connection_id, connector_id, display_name, status)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(env)
            .bind(&c.id)
            .bind(&c.connector_id)
            .bind(&c.display_name)
            .bind(&c.status)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The environment's connections as [`ConnectionConfig`]s.
    pub async fn connections(&self, env: &str) -> Result<Vec<ConnectionConfig>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT connection_id, connector_id, display_name, status FROM connections
             WHERE env = ? ORDER BY connection_id",
        )
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ConnectionConfig {
                id: r.get(0),
                connector_id: r.get(1),
                display_name: r.get(2),
                status: r.get(3),
            })
            .collect())
    }

    /// The installed solution with this unique name.
    pub async fn installed(&self, env: &str, name: &str) -> Result<Option<Installed>, sqlx::Error> {
        self.installed_where("unique_name = ?", env, name.to_owned())
            .await
    }

    /// The installed solution whose `solutionid` is `id`.
    pub async fn installed_by_id(
        &self,
        env: &str,
        id: Uuid,
    ) -> Result<Option<Installed>, sqlx::Error> {
        self.installed_where("LOWER(solution_id) = ?", env, id.to_string())
            .await
    }

    /// The installed solution of `env` matching `condition` on `key`.
    async fn installed_where(
        &self,
        condition: &'static str,
        env: &str,
        key: String,
    ) -> Result<Option<Installed>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT unique_name, version, managed FROM solutions
             WHERE env = ? AND {condition}"
        )))
        .bind(env)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Installed {
            unique_name: r.get(0),
            version: r.get(1),
            managed: r.get::<i64, _>(2) != 0,
        }))
    }

    /// A new version of an installed solution: its row and the zip it
    /// exports from (re-versioned by the caller) change together.
    pub async fn set_version(
        &self,
        env: &str,
        name: &str,
        version: &str,
        zip: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE solutions SET version = ?, zip = ? WHERE env = ? AND unique_name = ?")
            .bind(version)
            .bind(zip)
            .bind(env)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The zip an installed solution was imported from.
    pub async fn solution_zip(
        &self,
        env: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT zip FROM solutions WHERE env = ? AND unique_name = ?")
            .bind(env)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
    }

    /// Components registered by installed solutions, with their owner.
    pub async fn components(&self, env: &str) -> Result<Vec<(String, Key)>, sqlx::Error> {
        self.keys_by_solution("components", env).await
    }

    /// Unique names of the installed unmanaged solutions.
    pub async fn unmanaged_solutions(&self, env: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT unique_name FROM solutions WHERE env = ? AND managed = 0")
            .bind(env)
            .fetch_all(&self.pool)
            .await
    }

    /// What installed solutions require from others, with the requirer.
    pub async fn requirements(&self, env: &str) -> Result<Vec<(String, Key)>, sqlx::Error> {
        self.keys_by_solution("requirements", env).await
    }

    /// (solution, key) rows of `components` or `requirements`.
    async fn keys_by_solution(
        &self,
        table: &'static str,
        env: &str,
    ) -> Result<Vec<(String, Key)>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT solution, component_type, name FROM {table} WHERE env = ?"
        )))
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    /// Schema names of installed environment variable definitions, with their type code.
    pub async fn env_var_types(&self, env: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query("SELECT schema_name, type FROM env_var_definitions WHERE env = ?")
            .bind(env)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Installed connection references: (logical name, connector id).
    pub async fn connection_reference_connectors(
        &self,
        env: &str,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT logical_name, connector_id FROM connection_references WHERE env = ?",
        )
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Writes an accepted import in one transaction, recording whom it was
    /// made for (`acting`) on the solution row.
    pub async fn apply_import(
        &self,
        w: &ImportWrite<'_>,
        acting: ActingFor,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let env = w.env.as_str();
        let name = w.unique_name.as_str();
        sqlx::query(
            "INSERT INTO solutions (env, unique_name, solution_id, friendly_name, version, managed, publisher, installed_on, zip, publisher_friendly_name)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (env, unique_name) DO UPDATE SET
               friendly_name = excluded.friendly_name, version = excluded.version,
               managed = excluded.managed, publisher = excluded.publisher,
               installed_on = excluded.installed_on, zip = excluded.zip,
               publisher_friendly_name = excluded.publisher_friendly_name",
        )
        .bind(env)
        .bind(name)
        .bind(Uuid::new_v4().to_string())
        .bind(&w.friendly_name)
        .bind(&w.version)
        .bind(w.managed)
        .bind(&w.publisher)
        .bind(now())
        .bind(w.zip)
        .bind(&w.publisher_friendly_name)
        .execute(&mut *tx)
        .await?;

        if w.replace_components {
            for table in ["components", "requirements"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE env = ? AND solution = ?"
                )))
                .bind(env)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            // Definitions and references the new version dropped go too.
            let keep_vars: Vec<&str> = w
                .env_var_definitions
                .iter()
                .map(|d| d.schema_name.as_str())
                .collect();
            let keep_refs: Vec<&str> = w
                .connection_references
                .iter()
                .map(|r| r.0.as_str())
                .collect();
            let vars: Vec<String> = sqlx::query_scalar(
                "SELECT schema_name FROM env_var_definitions WHERE env = ? AND solution = ?",
            )
            .bind(env)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
            for v in vars
                .iter()
                .filter(|v| !keep_vars.iter().any(|k| k.eq_ignore_ascii_case(v)))
            {
                for table in ["env_var_definitions", "env_var_values"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE env = ? AND schema_name = ?"
                    )))
                    .bind(env)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let refs: Vec<String> = sqlx::query_scalar(
                "SELECT logical_name FROM connection_references WHERE env = ? AND solution = ?",
            )
            .bind(env)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
            for r in refs
                .iter()
                .filter(|r| !keep_refs.iter().any(|k| k.eq_ignore_ascii_case(r)))
            {
                sqlx::query("DELETE FROM connection_references WHERE env = ? AND logical_name = ?")
                    .bind(env)
                    .bind(r)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (table, keys) in [
            ("components", &w.components),
            ("requirements", &w.requirements),
        ] {
            for (t, n) in keys {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (env, solution, component_type, name) VALUES (?, ?, ?, ?)
                     ON CONFLICT DO NOTHING"
                )))
                .bind(env)
                .bind(name)
                .bind(t)
                .bind(n)
                .execute(&mut *tx)
                .await?;
            }
        }
        for d in &w.env_var_definitions {
            sqlx::query(
                "INSERT INTO env_var_definitions (env, schema_name, id, solution, display_name, type, default_value, is_required)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (env, schema_name) DO UPDATE SET solution = excluded.solution,
                   display_name = excluded.display_name, type = excluded.type,
                   default_value = excluded.default_value, is_required = excluded.is_required",
            )
            .bind(env)
            .bind(&d.schema_name)
            .bind(Uuid::new_v4().to_string())
            .bind(name)
            .bind(&d.display_name)
            .bind(d.kind)
            .bind(&d.default_value)
            .bind(d.required)
            .execute(&mut *tx)
            .await?;
        }
        for (values, conflict) in [
            (&w.packaged_env_var_values, "DO NOTHING"),
            (&w.env_var_values, "DO UPDATE SET value = excluded.value"),
        ] {
            for (schema, value) in values {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO env_var_values (env, schema_name, id, value) VALUES (?, ?, ?, ?)
                     ON CONFLICT (env, schema_name) {conflict}"
                )))
                .bind(env)
                .bind(schema)
                .bind(Uuid::new_v4().to_string())
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
        }
        for (logical, display, connector) in &w.connection_references {
            sqlx::query(
                "INSERT INTO connection_references (env, logical_name, id, solution, display_name, connector_id)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (env, logical_name) DO UPDATE SET solution = excluded.solution,
                   display_name = excluded.display_name, connector_id = excluded.connector_id",
            )
            .bind(env)
            .bind(logical)
            .bind(Uuid::new_v4().to_string())
            .bind(name)
            .bind(display)
            .bind(connector)
            .execute(&mut *tx)
            .await?;
        }
        for (logical, connection) in &w.connection_bindings {
            sqlx::query(
                "UPDATE connection_references SET connection_id = ? WHERE env = ? AND logical_name = ?",
            )
            .bind(connection)
            .bind(env)
            .bind(logical)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE solutions SET modified_by = {BY}, modified_on_behalf_by = {ON_BEHALF_BY}
             WHERE env = ?2 AND unique_name = ?3"
        )))
        .bind(acting.id())
        .bind(env)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// `DeleteAndPromote`: the holding solution `holding` replaces `name`:
    /// what `name` registered goes (definitions and references the holding
    /// version took over stay), then every row of `holding` is renamed.
    /// Returns the promoted solution's id.
    pub async fn promote(&self, env: &str, name: &str, holding: &str) -> Result<Uuid, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM components WHERE env = ?1 AND solution = ?2",
            "DELETE FROM requirements WHERE env = ?1 AND solution = ?2",
            "DELETE FROM env_var_values WHERE env = ?1 AND schema_name IN
               (SELECT schema_name FROM env_var_definitions WHERE env = ?1 AND solution = ?2)",
            "DELETE FROM env_var_definitions WHERE env = ?1 AND solution = ?2",
            "DELETE FROM connection_references WHERE env = ?1 AND solution = ?2",
            "DELETE FROM solutions WHERE env = ?1 AND unique_name = ?2",
            "UPDATE solutions SET unique_name = ?2 WHERE env = ?1 AND unique_name = ?3",
            "UPDATE components SET solution = ?2 WHERE env = ?1 AND solution = ?3",
            "UPDATE requirements SET solution = ?2 WHERE env = ?1 AND solution = ?3",
            "UPDATE env_var_definitions SET solution = ?2 WHERE env = ?1 AND solution = ?3",
            "UPDATE connection_references SET solution = ?2 WHERE env = ?1 AND solution = ?3",
        ] {
            sqlx::query(sql)
                .bind(env)
                .bind(name)
                .bind(holding)
                .execute(&mut *tx)
                .await?;
        }
        let id: String = sqlx::query_scalar(
            "SELECT solution_id FROM solutions WHERE env = ? AND unique_name = ?",
        )
        .bind(env)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(uuid_of(&id))
    }

    /// The publisher of each installed solution: (solution unique name,
    /// publisher unique name, publisher display name).
    pub async fn solution_publishers(
        &self,
        env: &str,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT unique_name, publisher, publisher_friendly_name FROM solutions WHERE env = ?",
        )
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Column names and rows of an entity set, with Dataverse's column names.
    /// `None` for an entity set the simulator does not serve.
    pub async fn entity_rows(
        &self,
        env: &str,
        set: &str,
    ) -> Result<Option<(Vec<&'static str>, Rows)>, sqlx::Error> {
        if set == "msdyn_solutioncomponentsummaries" {
            return self.component_summaries(env).await.map(Some);
        }
        let (sql, columns): (&str, &[(&'static str, Kind)]) = match set {
            "solutions" => (
                "SELECT solution_id, unique_name, friendly_name, version, managed, installed_on, 1,
                   modified_by, modified_on_behalf_by
                 FROM solutions WHERE env = ? ORDER BY unique_name",
                &[
                    ("solutionid", Kind::Text),
                    ("uniquename", Kind::Text),
                    ("friendlyname", Kind::Text),
                    ("version", Kind::Text),
                    ("ismanaged", Kind::Bool),
                    ("installedon", Kind::Text),
                    ("isvisible", Kind::Bool),
                    ("_modifiedby_value", Kind::Text),
                    ("_modifiedonbehalfby_value", Kind::Text),
                ],
            ),
            "environmentvariabledefinitions" => (
                "SELECT id, schema_name, display_name, type, default_value, is_required
                 FROM env_var_definitions WHERE env = ? ORDER BY schema_name",
                &[
                    ("environmentvariabledefinitionid", Kind::Text),
                    ("schemaname", Kind::Text),
                    ("displayname", Kind::Text),
                    ("type", Kind::Int),
                    ("defaultvalue", Kind::Text),
                    ("isrequired", Kind::Bool),
                ],
            ),
            "environmentvariablevalues" => (
                "SELECT v.id, v.schema_name, v.value, d.id FROM env_var_values v
                 LEFT JOIN env_var_definitions d ON d.env = v.env AND d.schema_name = v.schema_name
                 WHERE v.env = ? ORDER BY v.schema_name",
                &[
                    ("environmentvariablevalueid", Kind::Text),
                    ("schemaname", Kind::Text),
                    ("value", Kind::Text),
                    ("_environmentvariabledefinitionid_value", Kind::Text),
                ],
            ),
            "connectionreferences" => (
                "SELECT id, logical_name, display_name, connector_id, connection_id
                 FROM connection_references WHERE env = ? ORDER BY logical_name",
                &[
                    ("connectionreferenceid", Kind::Text),
                    ("connectionreferencelogicalname", Kind::Text),
                    ("connectionreferencedisplayname", Kind::Text),
                    ("connectorid", Kind::Text),
                    ("connectionid", Kind::Text),
                ],
            ),
            "connections" => (
                "SELECT connection_id, connector_id, display_name, status
                 FROM connections WHERE env = ? ORDER BY connection_id",
                &[
                    ("connectionid", Kind::Text),
                    ("connectorid", Kind::Text),
                    ("displayname", Kind::Text),
                    ("status", Kind::Text),
                ],
            ),
            "asyncoperations" => (ASYNC_SELECT_ALL, ASYNC_COLUMNS),
            _ => return Ok(None),
        };
        let rows = sqlx::query(sql).bind(env).fetch_all(&self.pool).await?;
        Ok(Some((
            columns.iter().map(|(name, _)| *name).collect(),
            rows.iter().map(|r| to_json(r, columns)).collect(),
        )))
    }

    /// `msdyn_solutioncomponentsummaries`: one row per component an installed
    /// solution registered. The simulator keeps components by `ComponentKey`
    /// (type + schema name or id), so a key whose name is a guid is served as
    /// `msdyn_objectid`, any other as `msdyn_schemaname`; a type written as a
    /// name (`bots`) has no `msdyn_componenttype` number, only its name.
    async fn component_summaries(
        &self,
        env: &str,
    ) -> Result<(Vec<&'static str>, Rows), sqlx::Error> {
        use std::hash::{Hash, Hasher};
        const COLUMNS: [&str; 7] = [
            "msdyn_solutioncomponentsummaryid",
            "msdyn_solutionid",
            "msdyn_componenttype",
            "msdyn_componenttypename",
            "msdyn_schemaname",
            "msdyn_objectid",
            "msdyn_name",
        ];
        let rows = sqlx::query(
            "SELECT s.solution_id, c.component_type, c.name FROM components c
             JOIN solutions s ON s.env = c.env AND s.unique_name = c.solution
             WHERE c.env = ? ORDER BY s.unique_name, c.component_type, c.name",
        )
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                let solution_id: String = r.get(0);
                let component_type: String = r.get(1);
                let name: String = r.get(2);
                // A stable row id: the same component gets the same id on every read.
                let half = |seed: u8| {
                    let mut h = std::hash::DefaultHasher::new();
                    (seed, &solution_id, &component_type, &name).hash(&mut h);
                    h.finish()
                };
                let id = Uuid::from_u64_pair(half(1), half(2));
                let parsed = slipway_solution::ComponentType::parse(&component_type);
                let code = match parsed {
                    slipway_solution::ComponentType::Code(c) => Value::from(c),
                    slipway_solution::ComponentType::Name(_) => Value::Null,
                };
                let type_name = parsed.label().unwrap_or(&component_type).to_string();
                let (schema_name, object_id) = if Uuid::parse_str(&name).is_ok() {
                    (Value::Null, Value::String(name.clone()))
                } else {
                    (Value::String(name.clone()), Value::Null)
                };
                let values = [
                    Value::String(id.to_string()),
                    Value::String(solution_id.to_ascii_lowercase()),
                    code,
                    Value::String(type_name),
                    schema_name,
                    object_id,
                    Value::String(name),
                ];
                COLUMNS
                    .iter()
                    .map(|c| (*c).to_string())
                    .zip(values)
                    .collect::<Map<String, Value>>()
            })
            .collect();
        Ok((COLUMNS.to_vec(), rows))
    }

    /// One `asyncoperations(<id>)` row as JSON.
    pub async fn async_operation_row(
        &self,
        env: &str,
        id: Uuid,
    ) -> Result<Option<Map<String, Value>>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{ASYNC_SELECT} AND id = ?")))
            .bind(env)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| to_json(&r, ASYNC_COLUMNS)))
    }

    /// Creates a running import operation made for `acting`, or returns the
    /// one already created for this `ImportJobId` (so a retried request does
    /// not import twice). The flag says whether it is new.
    /// `import_delay_ms` is how long the import is set to take (for its
    /// import job's progress).
    pub async fn create_import_operation(
        &self,
        env: &str,
        import_job_id: Option<Uuid>,
        acting: ActingFor,
        import_delay_ms: u64,
    ) -> Result<(Uuid, bool), sqlx::Error> {
        if let Some(job) = import_job_id {
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM async_operations WHERE env = ? AND import_job_id = ?",
            )
            .bind(env)
            .bind(job.to_string())
            .fetch_optional(&self.pool)
            .await?;
            if let Some(id) = existing {
                return Ok((uuid_of(&id), false));
            }
        }
        let id = Uuid::new_v4();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO async_operations (id, env, import_job_id, name, statecode, statuscode,
               created_on, created_by, created_on_behalf_by, import_delay_ms)
             VALUES (?3, ?2, ?4, 'ImportSolutionAsync', 2, 20, ?5, {BY}, {ON_BEHALF_BY}, ?6)"
        )))
        .bind(acting.id())
        .bind(env)
        .bind(id.to_string())
        .bind(import_job_id.map(|j| j.to_string()))
        .bind(now())
        .bind(i64::try_from(import_delay_ms).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok((id, true))
    }

    /// Records the unique name of the solution an import operation imports.
    pub async fn set_import_solution(&self, id: Uuid, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE async_operations SET solution_name = ? WHERE id = ?")
            .bind(name)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The `importjobs` row of the import started with `ImportJobId` = `job`:
    /// `progress` is how much of the simulated import's duration has passed
    /// (at most 99 while it runs, as the install itself comes last), 100
    /// once it is over.
    pub async fn import_job_row(
        &self,
        env: &str,
        job: Uuid,
    ) -> Result<Option<Map<String, Value>>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT created_on, completed_on, solution_name, import_delay_ms
             FROM async_operations WHERE env = ? AND import_job_id = ?",
        )
        .bind(env)
        .bind(job.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let started: String = r.get(0);
            let completed: Option<String> = r.get(1);
            let delay_ms: Option<i64> = r.get(3);
            let progress = match &completed {
                Some(_) => 100.0,
                None => {
                    running_progress(&started, delay_ms.unwrap_or(0), OffsetDateTime::now_utc())
                }
            };
            let mut out = Map::new();
            out.insert("importjobid".into(), Value::String(job.to_string()));
            out.insert(
                "solutionname".into(),
                r.get::<Option<String>, _>(2)
                    .map_or(Value::Null, Value::String),
            );
            out.insert("progress".into(), json!(progress));
            out.insert("startedon".into(), Value::String(started.clone()));
            out.insert(
                "completedon".into(),
                completed.map_or(Value::Null, Value::String),
            );
            out.insert("createdon".into(), Value::String(started));
            out
        }))
    }

    /// Completes an operation: succeeded (30) or failed (31) with a message.
    pub async fn complete_operation(
        &self,
        id: Uuid,
        failure: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let friendly = failure.map(|m| m.chars().take(300).collect::<String>());
        sqlx::query(
            "UPDATE async_operations SET statecode = 3, statuscode = ?, message = ?,
               friendlymessage = ?, completed_on = ? WHERE id = ?",
        )
        .bind(if failure.is_some() { 31 } else { 30 })
        .bind(failure)
        .bind(friendly)
        .bind(now())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Fails operations left running by a previous process.
    pub async fn fail_interrupted_operations(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE async_operations SET statecode = 3, statuscode = 31,
               message = 'the simulator restarted while this operation was running; import again',
               friendlymessage = 'interrupted by a simulator restart', completed_on = ?
             WHERE statecode <> 3",
        )
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The progress (0 to 99, two decimals) of an import started at `started`
/// (RFC 3339) and set to take `delay_ms`, at `now`. An import set to take
/// no time is as far as it gets before its install.
fn running_progress(started: &str, delay_ms: i64, now: OffsetDateTime) -> f64 {
    const RUNNING_MAX: f64 = 99.0;
    let Ok(started) = OffsetDateTime::parse(started, &Rfc3339) else {
        return 0.0;
    };
    if delay_ms <= 0 {
        return RUNNING_MAX;
    }
    let elapsed_ms = (now - started).whole_milliseconds().max(0) as f64;
    let percent = (elapsed_ms / delay_ms as f64 * 100.0).min(RUNNING_MAX);
    (percent * 100.0).round() / 100.0
}

/// `asyncoperations` rows, in [`ASYNC_COLUMNS`] order.
const ASYNC_SELECT: &str = "SELECT id, name, statecode, statuscode, message, friendlymessage, \
     created_on, completed_on, created_by, created_on_behalf_by FROM async_operations WHERE env = ?";
const ASYNC_SELECT_ALL: &str = "SELECT id, name, statecode, statuscode, message, friendlymessage, \
     created_on, completed_on, created_by, created_on_behalf_by FROM async_operations WHERE env = ? \
     ORDER BY created_on";

const ASYNC_COLUMNS: &[(&str, Kind)] = &[
    ("asyncoperationid", Kind::Text),
    ("name", Kind::Text),
    ("statecode", Kind::Int),
    ("statuscode", Kind::Int),
    ("message", Kind::Text),
    ("friendlymessage", Kind::Text),
    ("createdon", Kind::Text),
    ("completedon", Kind::Text),
    ("_createdby_value", Kind::Text),
    ("_createdonbehalfby_value", Kind::Text),
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
}

fn to_json(row: &sqlx::sqlite::SqliteRow, columns: &[(&str, Kind)]) -> Map<String, Value> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            let v = match kind {
                Kind::Text => row
                    .try_get::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, Value::String),
                Kind::Int => row
                    .try_get::<Option<i64>, _>(i)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, Value::from),
                Kind::Bool => row
                    .try_get::<Option<i64>, _>(i)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, |b| Value::Bool(b != 0)),
            };
            ((*name).to_string(), v)
        })
        .collect()
}
