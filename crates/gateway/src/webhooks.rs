//! Outgoing webhooks: the admin routes that register them, and the task
//! that delivers what runs raise (OnDeploymentRequested ...
//! OnDeploymentCompleted), the way Power Platform pipelines raise business
//! events to external systems.
//!
//! The store writes a delivery in the same transaction as the transition
//! that raised it; this task claims due deliveries with a lease, posts each
//! one signed with HMAC-SHA256, and records the outcome. A failed attempt
//! (non-2xx, timeout, connection error, a secret that cannot be read) is
//! retried after an exponential backoff until `gateway.webhook_max_attempts`;
//! then it stays undelivered with its last error, for admins to see.
//!
//! What a receiver gets, on every attempt of a delivery:
//! - the JSON body `{event, delivery_id, run_id, pipeline_id, stage_id,
//!   state, reason, at, run_url_path}` (the same bytes each time),
//! - `X-Slipway-Event`, `X-Slipway-Delivery` (the delivery id, to drop
//!   duplicates: delivery is at least once), `X-Slipway-Timestamp` (unix
//!   seconds of this attempt),
//! - `X-Slipway-Signature: sha256=<hex>`, the HMAC-SHA256 of
//!   `"<timestamp>.<body>"` keyed with the secret the webhook's `secret_ref`
//!   names. Receivers recompute it, compare in constant time, and refuse
//!   old timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use slipway_dataverse::SecretRef;
use slipway_service::config::GatewayConfig;
use slipway_service::shutdown::CancellationToken;
use slipway_store::{DueDelivery, NewWebhook, Store, Webhook, WebhookDelivery, WebhookEvent};
use uuid::Uuid;

use crate::Gateway;
use crate::admin::{UrlHints, check_url};
use crate::caller::Caller;
use crate::error::{ApiError, Body, ErrorBody, FieldError};

// ---------------------------------------------------------------- admin API

/// A webhook to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where to post: https, or http to this machine (127.0.0.1, localhost).
    #[serde(default)]
    pub url: String,
    /// The events to receive; every event when absent.
    #[serde(default)]
    pub events: Option<Vec<WebhookEvent>>,
    /// Only runs of this pipeline; every run when absent.
    #[serde(default)]
    pub pipeline_id: Option<Uuid>,
    /// Where the gateway reads the HMAC key at each attempt: `env:NAME` or
    /// `file:/path`. Never the secret itself.
    #[serde(default)]
    pub secret_ref: String,
}

/// A receiver URL: not empty, and the rules of [`check_url`].
fn url_errors(url: &str, errors: &mut Vec<FieldError>) {
    if url.trim().is_empty() {
        errors.push(FieldError {
            field: "url".into(),
            reason: "must not be empty; give the https URL that receives the events".into(),
        });
        return;
    }
    check_url("url", url.trim(), &RECEIVER_URL, errors);
}

/// The rules of a webhook receiver's URL.
const RECEIVER_URL: UrlHints = UrlHints {
    example: "the receiver's URL, e.g. https://hooks.contoso.com/slipway",
    http: "must use https (plain http is allowed only to this machine: 127.0.0.1 or localhost)",
    credentials: "the receiver checks the signature instead",
};

fn secret_ref_errors(secret_ref: &str, errors: &mut Vec<FieldError>) {
    // The message never repeats the value: it may be a pasted secret.
    let reason = if secret_ref.trim().is_empty() {
        "must not be empty; give `env:NAME` or `file:/path` naming where the gateway reads the signing secret".to_owned()
    } else {
        match SecretRef::parse(secret_ref) {
            Ok(_) => return,
            Err(e) => e.to_string(),
        }
    };
    errors.push(FieldError {
        field: "secret_ref".into(),
        reason,
    });
}

/// Registers a webhook; it receives the events of runs that move from now on.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = WebhookRequest,
    responses((status = 201, body = Webhook), (status = 403, body = ErrorBody), (status = 422, description = "a field is unusable", body = ErrorBody)))]
pub async fn create_webhook(
    State(gw): State<Gateway>,
    caller: Caller,
    Body(req): Body<WebhookRequest>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    caller.require_admin("register webhooks")?;
    let mut errors = Vec::new();
    url_errors(&req.url, &mut errors);
    if req.events.as_ref().is_some_and(Vec::is_empty) {
        errors.push(FieldError {
            field: "events".into(),
            reason: format!(
                "must name at least one event (leave it out for all): {}",
                event_names()
            ),
        });
    }
    secret_ref_errors(&req.secret_ref, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let webhook = gw
        .store
        .create_webhook(
            &caller.subject,
            &NewWebhook {
                url: req.url.trim().to_owned(),
                events: req.events.unwrap_or_default(),
                pipeline_id: req.pipeline_id,
                secret_ref: req.secret_ref.trim().to_owned(),
            },
        )
        .await?;
    tracing::info!(webhook_id = %webhook.id, events = ?webhook.events, "webhook registered");
    Ok((StatusCode::CREATED, Json(webhook)))
}

fn event_names() -> String {
    WebhookEvent::ALL
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Vec<Webhook>), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    caller.require_admin("list webhooks")?;
    Ok(Json(gw.store.list_webhooks().await?))
}

/// Removes a webhook and its deliveries; pending ones are never sent.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("remove webhooks")?;
    gw.store.delete_webhook(&caller.subject, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Most deliveries returned, newest first (1 to 1000, 100 when absent).
    pub limit: Option<u32>,
}

/// A webhook's deliveries, newest first: delivered, pending (with the next
/// attempt's time) or failed for good (with the last error).
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), DeliveriesQuery),
    responses((status = 200, body = Vec<WebhookDelivery>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn webhook_deliveries(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<WebhookDelivery>>, ApiError> {
    caller.require_admin("read webhook deliveries")?;
    let Query(q) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(gw.store.list_webhook_deliveries(id, limit).await?))
}

// ---------------------------------------------------------------- delivery

/// How deliveries are attempted, from `[gateway]`.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub poll: Duration,
    pub batch: u32,
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_attempts: u32,
    /// Longer than an attempt can take, so no other replica takes a
    /// delivery over while it is in flight.
    pub lease: Duration,
}

impl DeliverySettings {
    pub fn from_config(config: &GatewayConfig) -> Self {
        let timeout = Duration::from_millis(config.webhook_timeout_ms.max(1));
        DeliverySettings {
            poll: Duration::from_millis(config.outbox_poll_ms.max(10)),
            batch: config.outbox_batch.max(1),
            timeout,
            retry_base: Duration::from_millis(config.webhook_retry_base_ms.max(1)),
            retry_max: Duration::from_millis(config.webhook_retry_max_ms.max(1)),
            max_attempts: config.webhook_max_attempts.max(1),
            lease: Duration::from_millis(config.outbox_lease_ms.max(1_000))
                .max(timeout.saturating_mul(2)),
        }
    }

    /// The pause after the `attempts`-th failed attempt: the base, doubled
    /// for each earlier failure, capped at the maximum.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.retry_base
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }

    /// When to try again after the `attempts`-th failed attempt; `None`
    /// once out of attempts.
    pub fn retry_after(&self, attempts: u32) -> Option<Duration> {
        (attempts < self.max_attempts).then(|| self.backoff(attempts))
    }
}

/// Deliver until shutdown. Errors are logged and retried; they never stop
/// the gateway, since deliveries stay in the database until recorded.
pub async fn run(
    gateway: Gateway,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = DeliverySettings::from_config(&config);
    let http = http_client(settings.timeout)?;
    loop {
        let attempted = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            round = deliver_once(&gateway.store, &http, &settings) => match round {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(error = %err, "webhook delivery round failed; will retry");
                    0
                }
            },
        };
        // A full batch means more may be due: go again at once.
        if attempted >= settings.batch as usize {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
}

/// The client every attempt uses: bounded by `timeout`, and following no
/// redirect (a receiver answers where it was registered, or fails).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a TLS crypto provider; another one installed
    // first is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("slipway-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the webhook HTTP client: {e}"))
}

/// One round: claim due deliveries, attempt each, record the outcomes.
/// Deliveries of one webhook go one after another, in the order their
/// events happened; different webhooks are served at once. Returns how
/// many were attempted.
pub async fn deliver_once(
    store: &Store,
    http: &reqwest::Client,
    settings: &DeliverySettings,
) -> anyhow::Result<usize> {
    let due = store
        .claim_webhook_deliveries(settings.batch, settings.lease)
        .await?;
    let attempted = due.len();
    let mut by_webhook: BTreeMap<Uuid, Vec<DueDelivery>> = BTreeMap::new();
    for delivery in due {
        by_webhook
            .entry(delivery.webhook_id)
            .or_default()
            .push(delivery);
    }
    let rounds = by_webhook.into_values().map(|deliveries| async move {
        for delivery in deliveries {
            attempt(store, http, settings, &delivery).await?;
        }
        Ok::<(), slipway_store::StoreError>(())
    });
    for outcome in futures::future::join_all(rounds).await {
        outcome?;
    }
    Ok(attempted)
}

/// Post one delivery and record how it went.
async fn attempt(
    store: &Store,
    http: &reqwest::Client,
    settings: &DeliverySettings,
    delivery: &DueDelivery,
) -> Result<(), slipway_store::StoreError> {
    let attempt_no = delivery.attempts.saturating_add(1);
    match post(http, settings, delivery).await {
        Ok(()) => {
            tracing::info!(
                delivery_id = delivery.id,
                webhook_id = %delivery.webhook_id,
                event = %delivery.event,
                run_id = %delivery.run_id,
                attempt = attempt_no,
                "webhook delivered"
            );
            store.webhook_delivered(delivery).await
        }
        Err(error) => {
            let retry = settings.retry_after(attempt_no);
            tracing::warn!(
                delivery_id = delivery.id,
                webhook_id = %delivery.webhook_id,
                event = %delivery.event,
                attempt = attempt_no,
                retry_in_ms = retry.map(|d| d.as_millis()),
                %error,
                "webhook delivery failed"
            );
            store.webhook_failed(delivery, &error, retry).await
        }
    }
}

/// One attempt; `Err` says why it failed (never with the secret, nor the
/// receiver's URL, which may carry a token of its own).
async fn post(
    http: &reqwest::Client,
    settings: &DeliverySettings,
    delivery: &DueDelivery,
) -> Result<(), String> {
    let secret = SecretRef::parse(&delivery.secret_ref)
        .and_then(|r| r.resolve())
        .map_err(|e| {
            format!(
                "cannot read the signing secret `{}`: {e}",
                delivery.secret_ref
            )
        })?;
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = sign(secret.as_bytes(), timestamp, delivery.body.as_bytes())?;
    let response = http
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Slipway-Event", delivery.event.as_str())
        .header("X-Slipway-Delivery", delivery.id.to_string())
        .header("X-Slipway-Timestamp", timestamp.to_string())
        .header("X-Slipway-Signature", format!("sha256={signature}"))
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|e| describe_send_error(&e, settings.timeout))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.trim().chars().take(200).collect();
    Err(if excerpt.is_empty() {
        format!("the receiver answered {status}")
    } else {
        format!("the receiver answered {status}: {excerpt}")
    })
}

fn describe_send_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        format!(
            "no answer within {} ms (gateway.webhook_timeout_ms); check the receiver is up and answers quickly",
            timeout.as_millis()
        )
    } else if err.is_connect() {
        "cannot connect to the receiver; check the URL and that the receiver is reachable from the gateway".into()
    } else {
        // Without the URL: it may hold a token of the receiver's own.
        let err = std::error::Error::source(err)
            .map_or_else(|| err.to_string(), |source| source.to_string());
        format!("the request failed: {err}")
    }
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| format!("cannot use the signing secret as an HMAC key: {e}"))?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(base: u64, max: u64, attempts: u32) -> DeliverySettings {
        let config = GatewayConfig {
            webhook_retry_base_ms: base,
            webhook_retry_max_ms: max,
            webhook_max_attempts: attempts,
            ..GatewayConfig::default()
        };
        DeliverySettings::from_config(&config)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_stops() {
        let s = settings(1_000, 5_000, 5);
        let pauses: Vec<Option<u128>> = (1..=5)
            .map(|n| s.retry_after(n).map(|d| d.as_millis()))
            .collect();
        assert_eq!(
            pauses,
            [Some(1_000), Some(2_000), Some(4_000), Some(5_000), None]
        );
        // Far past 32 doublings nothing overflows.
        assert_eq!(
            settings(1_000, 300_000, 100).backoff(90).as_millis(),
            300_000
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = DeliverySettings::from_config(&GatewayConfig::default());
        assert_eq!(s.retry_base, Duration::from_secs(1));
        assert_eq!(s.retry_max, Duration::from_secs(300));
        assert_eq!(s.max_attempts, 10);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert!(s.lease >= s.timeout * 2);
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"Jefe", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"Jefe", 1_700_000_000, b"{\"a\":1}").unwrap(),
            "fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn urls_must_be_https_or_local_http_without_credentials() {
        let problems = |url: &str| {
            let mut errors = Vec::new();
            url_errors(url, &mut errors);
            errors
        };
        assert!(problems("https://hooks.contoso.com/x").is_empty());
        assert!(problems("http://127.0.0.1:9000/hook").is_empty());
        assert!(problems("http://localhost/hook").is_empty());
        for bad in [
            "",
            "http://hooks.contoso.com/x",
            "ftp://hooks.contoso.com",
            "not a url",
            "https://user:pw@hooks.contoso.com",
        ] {
            let errors = problems(bad);
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "url");
        }
    }

    #[test]
    fn a_pasted_secret_is_refused_without_being_echoed() {
        let mut errors = Vec::new();
        secret_ref_errors("hunter2-super-secret", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "secret_ref");
        assert!(!errors[0].reason.contains("hunter2"), "{errors:?}");
        let mut ok = Vec::new();
        secret_ref_errors("env:HOOK_SECRET", &mut ok);
        secret_ref_errors("file:/run/secrets/hook", &mut ok);
        assert!(ok.is_empty(), "{ok:?}");
    }
}
