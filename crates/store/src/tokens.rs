//! API tokens: only their sha256 is stored; the token itself is shown once
//! by whoever created it. Creating and revoking are audited.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::admin_model::{ApiToken, NewApiToken};
use crate::audit::{self, AuditAction, NewAudit};
use crate::{Store, StoreError, from_millis, millis_of, now_millis, to_json};

type TokenRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const SELECT_TOKEN: &str = "SELECT id, name, subject, groups_json, display_prefix, created_by, \
     created_at, expires_at, revoked_at, last_used_at FROM api_tokens";

/// `last_used_at` is refreshed at most this often, so that authenticating
/// is not a write on every request.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

fn token_from_row(row: TokenRow) -> Result<ApiToken, StoreError> {
    let (id, name, subject, groups, prefix, created_by, created, expires, revoked, used) = row;
    Ok(ApiToken {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::corrupt("token id", e))?,
        name,
        subject,
        groups: serde_json::from_str(&groups)
            .map_err(|e| StoreError::corrupt("token groups", e))?,
        display_prefix: prefix,
        created_by,
        created_at: from_millis(created)?,
        expires_at: expires.map(from_millis).transpose()?,
        revoked_at: revoked.map(from_millis).transpose()?,
        last_used_at: used.map(from_millis).transpose()?,
    })
}

impl Store {
    /// Store a new token (its hash) created by `actor`.
    pub async fn create_api_token(
        &self,
        actor: &str,
        new: &NewApiToken,
    ) -> Result<ApiToken, StoreError> {
        crate::admin::check_name("name", &new.name)?;
        crate::admin::check_name("subject", &new.subject)?;
        for (i, group) in new.groups.iter().enumerate() {
            crate::admin::check_name(&format!("groups[{i}]"), group)?;
        }
        let id = Uuid::now_v7();
        let now = now_millis();
        let mut tx = self.begin_admin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, subject, groups_json, token_hash, display_prefix, \
               created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&new.subject)
        .bind(to_json("token groups", &new.groups)?)
        .bind(&new.token_hash)
        .bind(&new.display_prefix)
        .bind(actor)
        .bind(now)
        .bind(new.expires_at.map(millis_of))
        .execute(&mut *tx)
        .await?;
        let sql = format!("{SELECT_TOKEN} WHERE id = $1");
        let token = token_from_row(
            sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let record = NewAudit::new(actor, AuditAction::Create, "api_token", id).after(&token);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// All tokens (active or not), newest first; only `subject`'s if given.
    pub async fn list_api_tokens(
        &self,
        subject: Option<&str>,
    ) -> Result<Vec<ApiToken>, StoreError> {
        let rows = match subject {
            Some(s) => {
                let sql =
                    format!("{SELECT_TOKEN} WHERE subject = $1 ORDER BY created_at DESC, id DESC");
                sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("{SELECT_TOKEN} ORDER BY created_at DESC, id DESC");
                sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter().map(token_from_row).collect()
    }

    /// Revoke a token; revoking twice keeps the first time.
    pub async fn revoke_api_token(&self, actor: &str, id: Uuid) -> Result<ApiToken, StoreError> {
        let now = now_millis();
        let mut tx = self.begin_admin_write().await?;
        let sql = format!("{SELECT_TOKEN} WHERE id = $1");
        let before = sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(token_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::not_found("API token", id))?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let after = token_from_row(
            sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let record = NewAudit::new(actor, AuditAction::Update, "api_token", id)
            .before(&before)
            .after(&after);
        audit::append(&mut tx, self.backend, now, &[record]).await?;
        tx.commit().await?;
        self.auth_changed();
        Ok(after)
    }

    /// The token whose sha256 is `token_hash`, if it is active at `now`;
    /// marks it used.
    pub async fn authenticate_api_token(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ApiToken>, StoreError> {
        let cached = self.auth.as_ref().map(|c| c.token(token_hash));
        let token = match cached {
            Some(Ok(token)) => token,
            Some(Err(_)) | None => {
                let sql = format!("{SELECT_TOKEN} WHERE token_hash = $1");
                let Some(token) = sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(token_from_row)
                    .transpose()?
                else {
                    return Ok(None);
                };
                if let (Some(cache), Some(Err(ticket))) = (&self.auth, cached) {
                    cache.keep_token(ticket, token_hash, &token);
                }
                token
            }
        };
        if !token.is_active(now) {
            return Ok(None);
        }
        let now_ms = millis_of(now);
        if token
            .last_used_at
            .is_none_or(|at| now_ms - millis_of(at) >= LAST_USED_RESOLUTION_MS)
        {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(token.id.to_string())
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            if let Some(cache) = &self.auth {
                let used = ApiToken {
                    last_used_at: Some(from_millis(now_ms)?),
                    ..token.clone()
                };
                cache.touch_token(token_hash, &used);
            }
        }
        Ok(Some(token))
    }
}
