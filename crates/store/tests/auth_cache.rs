//! Gateways on PostgreSQL remember the tokens and role grants they read
//! (`auth_cache.rs`). These tests run two replicas (two stores) on one fresh
//! database and show that the cache is used, that a revocation or a grant
//! made through either replica (or by hand in SQL) is obeyed by the other
//! within the time a notification takes, and that a replica that cannot
//! hear changes stops trusting what it remembers.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use slipway_store::{AccessRole, NewApiToken, Principal, RoleGrant, Store};
use slipway_testkit::pg::{PgDatabase, fresh_database};
use time::OffsetDateTime;

/// How long a change may take to reach the other replica before the test
/// fails (notifications arrive in milliseconds).
const WITHIN: Duration = Duration::from_secs(10);

struct Replicas {
    db: PgDatabase,
    a: Store,
    b: Store,
}

async fn replicas() -> Replicas {
    let db = fresh_database().await.unwrap();
    let a = Store::connect(db.url()).await.unwrap();
    let b = Store::connect(db.url()).await.unwrap();
    Replicas { db, a, b }
}

impl Replicas {
    /// Raw SQL on the same database, behind both stores' backs.
    async fn sql(&self, sql: &str) {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(self.db.url())
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    /// A token replica a has read (so cached), then revoked in SQL with
    /// the announcing triggers switched off.
    async fn cached_then_revoked_unannounced(&self, hash: &str) {
        self.a
            .create_api_token("admin", &new_token(hash))
            .await
            .unwrap();
        assert!(accepted(&self.a, hash).await);
        self.sql(&format!(
            "ALTER TABLE api_tokens DISABLE TRIGGER USER; \
             UPDATE api_tokens SET revoked_at = 1 WHERE token_hash = '{hash}'; \
             ALTER TABLE api_tokens ENABLE TRIGGER USER;"
        ))
        .await;
    }

    /// Waits until both replicas' listeners are subscribed, so that what
    /// follows is cached; gives up after [`WITHIN`].
    async fn listening(&self) {
        let started = Instant::now();
        loop {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(self.db.url())
                .await
                .unwrap();
            let listeners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND datname = current_database()",
            )
            .bind(slipway_store::LISTENER_APPLICATION_NAME)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if listeners >= 2 {
                // Connected; give LISTEN itself a moment to be issued.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
            assert!(
                started.elapsed() < WITHIN,
                "the replicas' change listeners never connected ({listeners} of 2)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn new_token(hash: &str) -> NewApiToken {
    NewApiToken {
        name: "ci".into(),
        subject: "maker@contoso.com".into(),
        groups: vec!["makers".into()],
        token_hash: hash.into(),
        display_prefix: "slw_abc".into(),
        expires_at: None,
    }
}

async fn accepted(store: &Store, hash: &str) -> bool {
    store
        .authenticate_api_token(hash, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .is_some()
}

/// Polls `check` until it holds; fails naming `what` after [`WITHIN`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_token_revoked_through_one_replica_is_refused_by_the_other() {
    let r = replicas().await;
    r.listening().await;
    let token =
        r.a.create_api_token("admin", &new_token("h1"))
            .await
            .unwrap();
    assert!(accepted(&r.a, "h1").await);
    assert!(accepted(&r.b, "h1").await);

    r.b.revoke_api_token("admin", token.id).await.unwrap();
    assert!(
        !accepted(&r.b, "h1").await,
        "the revoking replica refuses at once"
    );
    eventually("replica a refuses the revoked token", || async {
        !accepted(&r.a, "h1").await
    })
    .await;
}

#[tokio::test]
async fn the_cache_is_used_and_any_announced_change_empties_it() {
    let r = replicas().await;
    r.listening().await;
    // Revoked behind the store's back with the announcement switched off:
    // replica a still answers from what it read, which shows the cache.
    r.cached_then_revoked_unannounced("h2").await;
    assert!(
        accepted(&r.a, "h2").await,
        "replica a should have answered from its cache"
    );
    assert!(
        !accepted(&r.b, "h2").await,
        "replica b never read it: refused"
    );

    // Any announcement (here an operator's edit by hand) empties it.
    r.sql("UPDATE api_tokens SET name = 'renamed' WHERE token_hash = 'h2'")
        .await;
    eventually(
        "replica a re-reads the token after the announcement",
        || async { !accepted(&r.a, "h2").await },
    )
    .await;
}

#[tokio::test]
async fn role_grants_changed_through_one_replica_reach_the_other() {
    let r = replicas().await;
    r.listening().await;
    let user = [Principal::user("maker@contoso.com")];
    let grant = |role| RoleGrant {
        principal: Principal::user("maker@contoso.com"),
        role,
    };
    r.a.grant_role("admin", &grant(AccessRole::Maker))
        .await
        .unwrap();
    let makers: BTreeSet<_> = [AccessRole::Maker].into();
    assert_eq!(r.a.roles_of(&user).await.unwrap(), makers);

    r.b.grant_role("admin", &grant(AccessRole::Approver))
        .await
        .unwrap();
    let both: BTreeSet<_> = [AccessRole::Maker, AccessRole::Approver].into();
    eventually("replica a sees the new grant", || async {
        r.a.roles_of(&user).await.unwrap() == both
    })
    .await;

    r.b.revoke_role("admin", &grant(AccessRole::Maker))
        .await
        .unwrap();
    r.b.revoke_role("admin", &grant(AccessRole::Approver))
        .await
        .unwrap();
    eventually("replica a sees the grants revoked", || async {
        r.a.roles_of(&user).await.unwrap().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_replica_that_cannot_hear_changes_stops_trusting_its_cache() {
    let r = replicas().await;
    r.listening().await;
    // Unannounced revocation (as in the test above), then the listeners'
    // connections are cut: a change could have been missed, so replica a
    // must go back to the database rather than keep its answer.
    r.cached_then_revoked_unannounced("h3").await;
    assert!(accepted(&r.a, "h3").await, "still cached before the cut");
    r.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = '{}' AND datname = current_database()",
        slipway_store::LISTENER_APPLICATION_NAME
    ))
    .await;
    eventually("replica a refuses once its listener is cut", || async {
        !accepted(&r.a, "h3").await
    })
    .await;

    // It listens again, and caches again.
    r.listening().await;
    let token =
        r.b.create_api_token("admin", &new_token("h4"))
            .await
            .unwrap();
    assert!(accepted(&r.a, "h4").await);
    r.b.revoke_api_token("admin", token.id).await.unwrap();
    eventually("replica a hears revocations again", || async {
        !accepted(&r.a, "h4").await
    })
    .await;
}

#[tokio::test]
async fn the_embedded_sqlite_store_refuses_a_revoked_token_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display());
    let a = Store::connect(&url).await.unwrap();
    let b = Store::connect(&url).await.unwrap();
    let token = a.create_api_token("admin", &new_token("h5")).await.unwrap();
    assert!(accepted(&a, "h5").await);
    b.revoke_api_token("admin", token.id).await.unwrap();
    assert!(!accepted(&a, "h5").await);
}
