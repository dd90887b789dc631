//! A fresh, uniquely named PostgreSQL database per test on the real server.
//!
//! [`fresh_database`] creates `slipway_test_<uuid>` on the local server
//! (`postgres://postgres@127.0.0.1:5432`, trust auth) and hands back its
//! [`PgDatabase::url`]. Drop it with [`PgDatabase::drop_db`] at the end of the
//! test; dropping the value without that still removes the database, best
//! effort, `WITH (FORCE)`. If the server is down the error says how to start it.

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use uuid::Uuid;

/// The server every test database lives on.
const HOST: &str = "127.0.0.1:5432";

/// A test database that exists until [`PgDatabase::drop_db`] (or drop).
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
    dropped: bool,
}

/// Create a uniquely named, empty database on the local PostgreSQL server.
pub async fn fresh_database() -> anyhow::Result<PgDatabase> {
    let mut admin = admin_connection().await?;
    let name = format!("slipway_test_{}", Uuid::new_v4().simple());
    // The name is built from a uuid above, never from input: safe to inline.
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .with_context(|| format!("creating test database {name}"))?;
    admin.close().await.ok();
    Ok(PgDatabase {
        url: format!("postgres://postgres@{HOST}/{name}"),
        name,
        dropped: false,
    })
}

impl PgDatabase {
    /// The connection url of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`slipway_test_...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drop the database, closing any connection still open to it.
    pub async fn drop_db(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_named(&self.name).await
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and may run inside a runtime: use a short-lived
        // runtime on its own thread. Best effort only.
        let name = self.name.clone();
        let worker = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(drop_named(&name));
            }
        });
        let _ = worker.join();
    }
}

async fn drop_named(name: &str) -> anyhow::Result<()> {
    let mut admin = admin_connection().await?;
    // `name` only ever comes from `fresh_database`, which built it from a uuid.
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await
        .with_context(|| format!("dropping test database {name}"))?;
    admin.close().await.ok();
    Ok(())
}

async fn admin_connection() -> anyhow::Result<PgConnection> {
    admin_connection_at(HOST).await
}

/// Connect to the maintenance database on `host`, to create and drop others.
async fn admin_connection_at(host: &str) -> anyhow::Result<PgConnection> {
    let admin_url = format!("postgres://postgres@{host}/postgres");
    let unreachable = || {
        format!(
            "PostgreSQL is not reachable at {host}: start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    };
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err @ sqlx::Error::Io(_))) => Err(err).with_context(unreachable),
        Ok(Err(err)) => Err(err).context(format!("connecting to {admin_url}")),
        Err(_) => bail!("{} (connecting timed out)", unreachable()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_a_usable_database_and_drops_it() {
        let db = fresh_database().await.unwrap();
        assert!(db.name().starts_with("slipway_test_"));
        let mut conn = PgConnection::connect(db.url()).await.unwrap();
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(current, db.name());
        let name = db.name().to_owned();
        db.drop_db().await.unwrap(); // even with `conn` still open
        let mut admin = admin_connection().await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn unreachable_server_says_how_to_start_it() {
        let err = admin_connection_at("127.0.0.1:1").await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not reachable at 127.0.0.1:1"), "{msg}");
        assert!(
            msg.contains("pg_ctlcluster --skip-systemctl-redirect"),
            "{msg}"
        );
    }
}
