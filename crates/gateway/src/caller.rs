//! Who is calling, and what they may do. Every route but the health checks
//! and the OpenAPI document takes a [`Caller`]: a bearer API token (`slw_`,
//! looked up by its sha256) or, when OIDC is configured, a JWT checked
//! against the provider's JWKS. Roles come from role grants to the caller's
//! user name or to one of their groups; admins may do everything.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use slipway_store::{AccessRole, Principal};
use time::OffsetDateTime;

use crate::Gateway;
use crate::error::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Caller {
    /// The user name: a token's subject, or the configured OIDC claim.
    pub subject: String,
    pub groups: Vec<String>,
    pub roles: BTreeSet<AccessRole>,
    /// `api_token` or `oidc`.
    pub authenticated_by: &'static str,
}

impl Caller {
    /// The user and each of their groups, as shares and grants name them.
    pub fn principals(&self) -> Vec<Principal> {
        principals_of(&self.subject, &self.groups)
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&AccessRole::Admin)
    }

    /// Allows admins and callers holding one of `roles`; 403 otherwise,
    /// decided before anything is looked up, so it reveals nothing.
    pub fn require(&self, roles: &[AccessRole], doing: &str) -> Result<(), ApiError> {
        if self.is_admin() || roles.iter().any(|r| self.roles.contains(r)) {
            return Ok(());
        }
        let needed: Vec<&str> = std::iter::once("admin")
            .chain(roles.iter().map(|r| r.as_str()))
            .collect();
        Err(ApiError::Forbidden(format!(
            "{} may not {doing}; this needs the role {} (an admin grants roles with POST /api/v1/role-grants)",
            self.subject,
            needed.join(" or ")
        )))
    }

    /// [`Caller::require`] for admin-only routes.
    pub fn require_admin(&self, doing: &str) -> Result<(), ApiError> {
        self.require(&[], doing)
    }
}

pub fn principals_of(subject: &str, groups: &[String]) -> Vec<Principal> {
    std::iter::once(Principal::user(subject))
        .chain(groups.iter().map(Principal::group))
        .collect()
}

impl FromRequestParts<Gateway> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Gateway) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "no Authorization header; send `Authorization: Bearer <token>` with an API token from your admin (or `slipway dev`'s printed token)".into(),
                )
            })?
            .to_str()
            .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
        let bearer = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let (subject, groups, by) = if slipway_auth::looks_like_api_token(bearer) {
            let hash = slipway_auth::hash_api_token(bearer);
            let token = gw
                .store
                .authenticate_api_token(&hash, OffsetDateTime::now_utc())
                .await?
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "this API token is unknown, revoked or expired; ask an admin for a new one"
                            .into(),
                    )
                })?;
            (token.subject, token.groups, "api_token")
        } else if let Some(oidc) = &gw.oidc {
            let identity = oidc.verify(bearer).await.map_err(|e| {
                if e.is_client_error() {
                    ApiError::Unauthorized(e.to_string())
                } else {
                    ApiError::Unavailable(e.to_string())
                }
            })?;
            (identity.subject, identity.groups, "oidc")
        } else {
            return Err(ApiError::Unauthorized(
                "this bearer is not a Slipway API token (slw_...) and OIDC sign-in is not configured on this gateway (auth.oidc_*)".into(),
            ));
        };
        let roles = gw.store.roles_of(&principals_of(&subject, &groups)).await?;
        Ok(Caller {
            subject,
            groups,
            roles,
            authenticated_by: by,
        })
    }
}
