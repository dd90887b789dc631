//! The admin API over real HTTP, against a gateway started in this process
//! on both databases: environments, pipelines, stages, sharing, role
//! grants, tokens and the audit log; who may call what; every validation
//! rule; environment checks (WhoAmI) against the environment simulator;
//! OIDC callers; and rules that concurrent admins must not be able to break.
//!
//! Every request goes through `common::Api`, which fails the test on any 500
//! and on any error answer that is not the API's JSON error shape.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{ADMIN, Api, Db, UNSET_SECRET, checked_environment, eventually, names, start};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

on_both_databases!(
    admin_api_end_to_end,
    authorization_matrix,
    validation_rules,
    environment_checks_use_who_am_i,
    oidc_callers_get_roles_and_shares_from_their_groups,
    audit_verify_detects_tampering,
    concurrent_admins_cannot_break_the_rules,
);

fn unknown_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

fn seqs(records: &Value) -> Vec<i64> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect()
}

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

fn format_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

// ====================================================================
// 1. The whole admin API
// ====================================================================

async fn admin_api_end_to_end(db: Db) {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;

    let me = a.get("/api/v1/me").await.ok(200);
    assert_eq!(me["subject"], ADMIN);
    assert_eq!(me["roles"], json!(["admin"]));
    assert_eq!(me["authenticated_by"], "api_token");

    // ---- environments
    let credentials = json!({
        "kind": "client_secret",
        "token_url": "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
        "client_id": "app-1",
        "client_secret_ref": "env:SLIPWAY_ADMIN_TEST_DEV_SECRET_UNSET",
    });
    let created = a
        .post(
            "/api/v1/environments",
            json!({
                "name": "dev",
                "url": "https://contoso-dev.crm4.dynamics.com/",
                "kind": "development",
                "credentials": credentials,
            }),
        )
        .await
        .ok(201);
    let dev = str_of(&created, "id").to_owned();
    assert_eq!(created["name"], "dev");
    assert_eq!(
        created["url"], "https://contoso-dev.crm4.dynamics.com",
        "the trailing slash is dropped"
    );
    assert_eq!(created["kind"], "development");
    assert_eq!(
        created["credentials"], credentials,
        "stored as given: refs only"
    );
    assert_eq!(created["validation_status"], "pending");
    assert_eq!(created["validation_error"], Value::Null);

    let test = a.env("test", "target").await;
    let prod = a.env("prod", "target").await;
    let prod_eu = a.env("prod-eu", "target").await;
    let prod_us = a.env("prod-us", "target").await;
    let scratch = a.env("scratch", "target").await;

    let list = a.get("/api/v1/environments").await.ok(200);
    assert_eq!(
        names(&list),
        ["dev", "prod", "prod-eu", "prod-us", "scratch", "test"]
    );
    let got = a.get(&format!("/api/v1/environments/{dev}")).await.ok(200);
    assert_eq!(got["id"], dev.as_str());
    assert_eq!(got["name"], "dev");

    // The background check fails (the secret is not set) and says why.
    let checked = checked_environment(a, &dev).await;
    assert_eq!(checked["validation_status"], "failed", "{checked}");
    assert!(
        str_of(&checked, "validation_error").contains("SLIPWAY_ADMIN_TEST_DEV_SECRET_UNSET"),
        "{checked}"
    );
    assert!(checked["validated_at"].is_string(), "{checked}");

    // Renaming keeps the check; a new URL makes it pending again.
    checked_environment(a, &scratch).await;
    let renamed = a
        .patch(
            &format!("/api/v1/environments/{scratch}"),
            json!({"name": "scratch-2"}),
        )
        .await
        .ok(200);
    assert_eq!(renamed["name"], "scratch-2");
    assert_eq!(renamed["validation_status"], "failed", "{renamed}");
    assert_eq!(renamed["url"], "https://scratch.crm4.dynamics.com");
    let moved = a
        .patch(
            &format!("/api/v1/environments/{scratch}"),
            json!({"url": "https://scratch-2.crm4.dynamics.com/"}),
        )
        .await
        .ok(200);
    assert_eq!(moved["url"], "https://scratch-2.crm4.dynamics.com");
    assert_eq!(moved["validation_status"], "pending", "{moved}");
    assert_eq!(moved["validation_error"], Value::Null, "{moved}");
    checked_environment(a, &scratch).await;
    a.delete(&format!("/api/v1/environments/{scratch}"))
        .await
        .ok(204);
    a.get(&format!("/api/v1/environments/{scratch}"))
        .await
        .ok(404);
    a.delete(&format!("/api/v1/environments/{scratch}"))
        .await
        .ok(404);

    // ---- pipeline
    let pipeline = a
        .post(
            "/api/v1/pipelines",
            json!({"name": "Contoso release", "description": "ALM", "source_environment_ids": [dev]}),
        )
        .await
        .ok(201);
    let p = str_of(&pipeline, "id").to_owned();
    assert_eq!(pipeline["name"], "Contoso release");
    assert_eq!(pipeline["description"], "ALM");
    assert_eq!(pipeline["allow_redeploy_older"], false);
    assert_eq!(
        pipeline["source_environments"],
        json!([{"id": dev, "name": "dev"}])
    );
    assert_eq!(pipeline["stages"], json!([]));
    assert_eq!(pipeline["shares"], json!([]));
    assert_eq!(
        a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200),
        pipeline
    );
    let patched = a
        .patch(
            &format!("/api/v1/pipelines/{p}"),
            json!({"description": "Contoso ALM", "allow_redeploy_older": true}),
        )
        .await
        .ok(200);
    assert_eq!(patched["name"], "Contoso release", "absent fields are kept");
    assert_eq!(patched["description"], "Contoso ALM");
    assert_eq!(patched["allow_redeploy_older"], true);
    assert_eq!(
        patched["source_environments"],
        pipeline["source_environments"]
    );

    // ---- stages: created out of order, then linked dev → Test → Production → Regional
    let policies = json!({
        "managed_only": true,
        "blocked_connectors": ["shared_twitter"],
        "max_artifact_bytes": 50_000_000,
        "deployment_windows": [{"days": ["mon", "tue"], "start": "08:00", "end": "18:00", "time_zone": "Europe/Paris"}],
    });
    let prod_stage = a
        .post(
            &format!("/api/v1/pipelines/{p}/stages"),
            json!({"name": "Prod", "target_environment_ids": [prod], "approval_required": true, "policies": policies}),
        )
        .await
        .ok(201);
    let prod_stage_id = str_of(&prod_stage, "id").to_owned();
    assert_eq!(prod_stage["pipeline_id"], p.as_str());
    assert_eq!(prod_stage["previous_stage_id"], Value::Null);
    assert_eq!(prod_stage["targets"], json!([{"id": prod, "name": "prod"}]));
    assert_eq!(prod_stage["approval_required"], true);
    assert_eq!(prod_stage["deploy_as"], json!({"mode": "environment"}));
    assert_eq!(prod_stage["policies"]["managed_only"], true);
    assert_eq!(
        prod_stage["policies"]["deployment_windows"],
        policies["deployment_windows"]
    );
    let test_stage = a.stage(&p, "Test", None, &[&test]).await;

    let updated = a
        .put(
            &format!("/api/v1/pipelines/{p}/stages/{prod_stage_id}"),
            json!({
                "name": "Production",
                "previous_stage_id": test_stage,
                "target_environment_ids": [prod],
                "approval_required": true,
                "pre_deployment_gate": true,
                "deploy_as": {"mode": "service_principal", "application_id": "11111111-2222-3333-4444-555555555555"},
                "policies": policies,
            }),
        )
        .await
        .ok(200);
    assert_eq!(updated["id"], prod_stage_id.as_str());
    assert_eq!(updated["name"], "Production");
    assert_eq!(updated["previous_stage_id"], test_stage.as_str());
    assert_eq!(updated["pre_deployment_gate"], true);
    assert_eq!(updated["deploy_as"]["mode"], "service_principal");
    assert_eq!(updated["created_at"], prod_stage["created_at"]);

    // Fan-out: one stage, two targets.
    let regional = a
        .post(
            &format!("/api/v1/pipelines/{p}/stages"),
            json!({"name": "Regional", "previous_stage_id": prod_stage_id, "target_environment_ids": [prod_us, prod_eu]}),
        )
        .await
        .ok(201);
    let regional_id = str_of(&regional, "id").to_owned();
    assert_eq!(names(&regional["targets"]), ["prod-eu", "prod-us"]);

    let full = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
    assert_eq!(
        names(&full["stages"]),
        ["Test", "Production", "Regional"],
        "stages come in deployment order, not creation order: {full}"
    );
    let previous: Vec<Value> = full["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["previous_stage_id"].clone())
        .collect();
    assert_eq!(
        previous,
        [Value::Null, json!(test_stage), json!(prod_stage_id)]
    );

    a.delete(&format!("/api/v1/pipelines/{p}/stages/{test_stage}"))
        .await
        .conflict("Production");
    a.delete(&format!("/api/v1/pipelines/{p}/stages/{regional_id}"))
        .await
        .ok(204);
    a.delete(&format!("/api/v1/pipelines/{p}/stages/{regional_id}"))
        .await
        .ok(404);
    let full = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
    assert_eq!(names(&full["stages"]), ["Test", "Production"]);

    // ---- sharing
    let shared = a
        .post(
            &format!("/api/v1/pipelines/{p}/shares"),
            json!({"kind": "user", "name": "maker-1"}),
        )
        .await
        .ok(200);
    assert_eq!(
        shared["shares"],
        json!([{"kind": "user", "name": "maker-1"}])
    );
    let again = a
        .post(
            &format!("/api/v1/pipelines/{p}/shares"),
            json!({"kind": "user", "name": "maker-1"}),
        )
        .await
        .ok(200);
    assert_eq!(
        again["shares"], shared["shares"],
        "sharing twice is one share"
    );
    a.share(&p, "group", "team-a").await;
    let full = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
    assert_eq!(
        full["shares"],
        json!([{"kind": "group", "name": "team-a"}, {"kind": "user", "name": "maker-1"}])
    );
    a.delete(&format!("/api/v1/pipelines/{p}/shares/user/maker-1"))
        .await
        .ok(204);
    a.delete(&format!("/api/v1/pipelines/{p}/shares/user/maker-1"))
        .await
        .ok(404);
    let full = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
    assert_eq!(full["shares"], json!([{"kind": "group", "name": "team-a"}]));

    // ---- role grants
    let grant = json!({"principal": {"kind": "group", "name": "team-a"}, "role": "maker"});
    assert_eq!(
        a.post("/api/v1/role-grants", grant.clone()).await.ok(201),
        grant
    );
    a.post("/api/v1/role-grants", grant.clone()).await.ok(200);
    let grants = a.get("/api/v1/role-grants").await.ok(200);
    let grants = grants.as_array().unwrap();
    assert!(grants.contains(&grant), "{grants:?}");
    assert!(
        grants.contains(&json!({"principal": {"kind": "user", "name": ADMIN}, "role": "admin"})),
        "{grants:?}"
    );
    a.delete("/api/v1/role-grants/group/team-a/maker")
        .await
        .ok(204);
    a.delete("/api/v1/role-grants/group/team-a/maker")
        .await
        .ok(404);
    let grants = a.get("/api/v1/role-grants").await.ok(200);
    assert!(!grants.as_array().unwrap().contains(&grant));

    // ---- tokens
    let before = OffsetDateTime::now_utc();
    let minted = a
        .post(
            "/api/v1/tokens",
            json!({"name": "ci deploys", "subject": "ci-bot", "groups": ["team-a"], "roles": ["maker"], "expires_in_days": 7}),
        )
        .await
        .ok(201);
    let token = str_of(&minted, "token").to_owned();
    let token_id = str_of(&minted["api_token"], "id").to_owned();
    assert!(token.starts_with("slw_"), "{minted}");
    let api_token = &minted["api_token"];
    assert_eq!(api_token["name"], "ci deploys");
    assert_eq!(api_token["subject"], "ci-bot");
    assert_eq!(api_token["groups"], json!(["team-a"]));
    assert_eq!(api_token["created_by"], ADMIN);
    assert_eq!(api_token["revoked_at"], Value::Null);
    assert!(token.starts_with(str_of(api_token, "display_prefix")));
    assert!(api_token.get("token_hash").is_none(), "{minted}");
    let expires = parse_time(str_of(api_token, "expires_at"));
    let days = (expires - before).whole_minutes();
    assert!(
        (7 * 24 * 60 - 1..=7 * 24 * 60 + 1).contains(&days),
        "expires in {days} minutes: {minted}"
    );

    let listed = a.get("/api/v1/tokens").await;
    assert!(
        !listed.text.contains(&token),
        "the token list shows a token: {}",
        listed.text
    );
    let listed = listed.ok(200);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap_or_else(|| panic!("token missing from {listed}"));
    assert!(entry.get("token").is_none() && entry.get("token_hash").is_none());

    let ci = a.bearer(&token);
    let ci_me = ci.get("/api/v1/me").await.ok(200);
    assert_eq!(
        ci_me,
        json!({"subject": "ci-bot", "groups": ["team-a"], "roles": ["maker"], "authenticated_by": "api_token"})
    );
    // The group on the token reaches the pipeline shared with team-a.
    let ci_pipelines = ci.get("/api/v1/pipelines").await.ok(200);
    assert_eq!(names(&ci_pipelines), ["Contoso release"]);

    let revoked = a
        .delete(&format!("/api/v1/tokens/{token_id}"))
        .await
        .ok(200);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let refused = ci.get("/api/v1/me").await;
    assert!(
        refused
            .headers
            .contains_key(reqwest::header::WWW_AUTHENTICATE),
        "{refused:?}"
    );
    refused.ok(401);
    let again = a
        .delete(&format!("/api/v1/tokens/{token_id}"))
        .await
        .ok(200);
    assert_eq!(
        again["revoked_at"], revoked["revoked_at"],
        "revoking is idempotent"
    );
    a.delete(&format!("/api/v1/tokens/{}", unknown_id()))
        .await
        .ok(404);
    let grants = a.get("/api/v1/role-grants").await.ok(200);
    assert!(
        grants
            .as_array()
            .unwrap()
            .contains(&json!({"principal": {"kind": "user", "name": "ci-bot"}, "role": "maker"})),
        "a token's roles are granted to its user and outlive it: {grants}"
    );

    // ---- deleting the pipeline frees its environments
    a.delete(&format!("/api/v1/environments/{prod}"))
        .await
        .conflict("Contoso release");
    a.delete(&format!("/api/v1/pipelines/{p}")).await.ok(204);
    a.get(&format!("/api/v1/pipelines/{p}")).await.ok(404);
    a.delete(&format!("/api/v1/pipelines/{p}")).await.ok(404);
    a.delete(&format!("/api/v1/environments/{prod}"))
        .await
        .ok(204);

    // ---- audit
    for env in [&dev, &test, &prod_eu, &prod_us] {
        checked_environment(a, env).await;
    }
    let all = a.get("/api/v1/audit?limit=1000").await.ok(200);
    let all_seqs = seqs(&all);
    let n = all_seqs.len() as i64;
    assert_eq!(all_seqs, (1..=n).collect::<Vec<_>>(), "consecutive from 1");
    let records = all.as_array().unwrap();

    let of_pipeline = a
        .get(&format!("/api/v1/audit?pipeline_id={p}&limit=1000"))
        .await
        .ok(200);
    let of_pipeline = of_pipeline.as_array().unwrap();
    assert!(
        of_pipeline.iter().all(|r| r["pipeline_id"] == p.as_str()),
        "{of_pipeline:?}"
    );
    let kinds: BTreeSet<&str> = of_pipeline
        .iter()
        .map(|r| r["entity_kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["pipeline", "share", "stage"]));
    let first = &of_pipeline[0];
    assert_eq!(
        (first["action"].as_str(), first["entity_kind"].as_str()),
        (Some("create"), Some("pipeline"))
    );
    assert_eq!(first["after"]["name"], "Contoso release");
    let last = of_pipeline.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["entity_kind"].as_str()),
        (Some("delete"), Some("pipeline"))
    );
    assert_eq!(last["before"]["name"], "Contoso release");

    // Prod created, Test created, Prod updated, Regional created and deleted.
    let stage_records = a
        .get("/api/v1/audit?entity_kind=stage&limit=1000")
        .await
        .ok(200);
    let actions: Vec<&str> = stage_records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "create", "update", "create", "delete"]);
    let update = &stage_records[2];
    assert_eq!(update["before"]["name"], "Prod");
    assert_eq!(update["after"]["name"], "Production");
    assert_eq!(
        a.get(&format!(
            "/api/v1/audit?entity_kind=stage&pipeline_id={p}&limit=1000"
        ))
        .await
        .ok(200),
        stage_records
    );
    let one_stage = a
        .get(&format!(
            "/api/v1/audit?entity_kind=stage&entity_id={regional_id}"
        ))
        .await
        .ok(200);
    assert_eq!(one_stage.as_array().unwrap().len(), 2, "{one_stage}");

    let by_admin = a
        .get(&format!("/api/v1/audit?actor={ADMIN}&limit=1000"))
        .await
        .ok(200);
    assert!(
        by_admin
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["actor"] == ADMIN)
    );
    let by_checks = a
        .get("/api/v1/audit?actor=slipway&limit=1000")
        .await
        .ok(200);
    let by_checks = by_checks.as_array().unwrap();
    assert!(!by_checks.is_empty(), "background checks are audited");
    assert!(
        by_checks
            .iter()
            .all(|r| r["actor"] == "slipway" && r["entity_kind"] == "environment"),
        "{by_checks:?}"
    );
    let total = by_admin.as_array().unwrap().len()
        + by_checks.len()
        + a.get("/api/v1/audit?actor=bootstrap&limit=1000")
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len();
    assert_eq!(total as i64, n, "every record has one of the three actors");

    // The token: created and revoked once (revoking again writes nothing).
    let token_records = a
        .get(&format!(
            "/api/v1/audit?entity_kind=api_token&entity_id={token_id}"
        ))
        .await
        .ok(200);
    let actions: Vec<&str> = token_records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "update"]);
    assert!(
        !token_records.to_string().contains(&token),
        "the audit log holds a token"
    );

    // Paging.
    let page = a.get("/api/v1/audit?after_seq=3&limit=2").await.ok(200);
    assert_eq!(seqs(&page), [4, 5]);
    let page = a.get("/api/v1/audit?limit=3").await.ok(200);
    assert_eq!(seqs(&page), [1, 2, 3]);

    // Time filters: since is inclusive, until exclusive.
    let middle = &records[records.len() / 2];
    let at = str_of(middle, "at");
    let since = a
        .get(&format!("/api/v1/audit?since={at}&limit=1000"))
        .await
        .ok(200);
    let since = since.as_array().unwrap();
    assert!(since.iter().any(|r| r["seq"] == middle["seq"]));
    assert!(
        since
            .iter()
            .all(|r| parse_time(str_of(r, "at")) >= parse_time(at))
    );
    let until = a
        .get(&format!("/api/v1/audit?until={at}&limit=1000"))
        .await
        .ok(200);
    let until = until.as_array().unwrap();
    assert!(!until.iter().any(|r| r["seq"] == middle["seq"]));
    assert!(
        until
            .iter()
            .all(|r| parse_time(str_of(r, "at")) < parse_time(at))
    );
    assert_eq!(since.len() + until.len(), records.len());
    let next_ms = format_time(parse_time(at) + time::Duration::milliseconds(1));
    let exactly = a
        .get(&format!("/api/v1/audit?since={at}&until={next_ms}"))
        .await
        .ok(200);
    assert!(exactly.as_array().unwrap().iter().all(|r| r["at"] == at));
    assert_eq!(
        a.get("/api/v1/audit?since=2100-01-01T00:00:00Z")
            .await
            .ok(200),
        json!([])
    );
    assert_eq!(
        a.get("/api/v1/audit?until=2000-01-01T00:00:00Z")
            .await
            .ok(200),
        json!([])
    );

    let verified = a.get("/api/v1/audit/verify").await.ok(200);
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["records"], n, "{verified}");
    assert_eq!(verified["head_seq"], n, "{verified}");
    assert_eq!(verified["head_hash"], records.last().unwrap()["hash"]);
    assert_eq!(verified["first_broken_seq"], Value::Null);
    gw.stop().await;
}

// ====================================================================
// 2. Who may call what
// ====================================================================

/// The callers of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Maker,
    Approver,
    NoRole,
    Revoked,
    Expired,
    NoHeader,
    GarbageBearer,
    UnknownApiToken,
    BasicAuth,
}

impl Who {
    const ALL: [Who; 10] = [
        Who::Admin,
        Who::Maker,
        Who::Approver,
        Who::NoRole,
        Who::Revoked,
        Who::Expired,
        Who::NoHeader,
        Who::GarbageBearer,
        Who::UnknownApiToken,
        Who::BasicAuth,
    ];

    /// The index into [`Route::expect`] of an authenticated caller.
    fn column(self) -> Option<usize> {
        match self {
            Who::Admin => Some(0),
            Who::Maker => Some(1),
            Who::Approver => Some(2),
            Who::NoRole => Some(3),
            _ => None,
        }
    }
}

/// One route of the router, called the same way by every caller.
struct Route {
    method: Method,
    /// As in the router and the OpenAPI document.
    template: &'static str,
    path: String,
    body: Option<Value>,
    /// Expected status for admin, maker, approver, a user with no role.
    expect: [u16; 4],
    /// Open to anyone, credentials or not.
    public: bool,
}

fn route(method: Method, template: &'static str, path: String, expect: [u16; 4]) -> Route {
    Route {
        method,
        template,
        path,
        body: None,
        expect,
        public: false,
    }
}

impl Route {
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn public(mut self) -> Self {
        self.public = true;
        self
    }
}

const ADMIN_ONLY_200: [u16; 4] = [200, 403, 403, 403];

async fn authorization_matrix(db: Db) {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;

    let dev = a.env("dev", "development").await;
    // A development environment that exists but is linked to no pipeline.
    let dev2 = a.env("dev2", "development").await;
    let test = a.env("test", "target").await;
    let prod = a.env("prod", "target").await;
    let p1 = a.pipeline("P1 shared with users", &[&dev]).await;
    let s1 = a.stage(&p1, "Test", None, &[&test]).await;
    let p2 = a.pipeline("P2 shared with team-a", &[&dev]).await;
    let s2 = a.stage(&p2, "Prod", None, &[&prod]).await;
    let p3 = a.pipeline("P3 private", &[&dev]).await;
    let s3 = a.stage(&p3, "Test", None, &[&test]).await;
    a.share(&p1, "user", "maker").await;
    a.share(&p1, "user", "approver").await;
    a.share(&p2, "group", "team-a").await;

    let maker = gw.user("maker", &["team-a"], &["maker"]).await;
    let maker2 = gw.user("maker-2", &[], &["maker"]).await;
    let approver = gw.user("approver", &[], &["approver"]).await;
    let no_role = gw.user("nobody", &[], &[]).await;

    // A revoked token worked before it was revoked.
    let doomed = gw.token("leaver", &[], &["maker"]).await;
    let revoked = a.bearer(&doomed.token);
    revoked.get("/api/v1/me").await.ok(200);
    a.delete(&format!("/api/v1/tokens/{}", doomed.id))
        .await
        .ok(200);
    // An expired token, straight into the store (the API never mints one).
    let minted = slipway_auth::generate_api_token();
    gw.store
        .create_api_token(
            "test",
            &slipway_store::NewApiToken {
                name: "expired".into(),
                subject: "maker".into(),
                groups: vec!["team-a".into()],
                token_hash: minted.hash.clone(),
                display_prefix: minted.display_prefix.clone(),
                expires_at: Some(OffsetDateTime::now_utc() - time::Duration::minutes(1)),
            },
        )
        .await
        .unwrap();
    let expired = a.bearer(&minted.plaintext);
    let unknown_token = a.bearer(&slipway_auth::generate_api_token().plaintext);

    // A run the maker requested through P1.
    let run = maker
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "pipeline_id": p1, "stage_id": s1, "source_environment": "dev", "version": "1.0.0.1"}),
        )
        .await
        .ok(202);
    let run_id = str_of(&run, "id").to_owned();
    assert_eq!(run["requested_by"], "maker");
    assert_eq!(run["deployment"]["target_environment"], "test");
    assert_eq!(run["deployment"]["pipeline_id"], p1.as_str());

    let deploy = json!({"solution_name": "Contoso", "pipeline_id": p1, "stage_id": s1, "source_environment": "dev", "version": "1.0.0.1"});
    let stage_body = json!({"name": "x", "target_environment_ids": []});
    let unknown = unknown_id();
    let routes = vec![
        route(Method::GET, "/healthz", "/healthz".into(), [200; 4]).public(),
        route(Method::GET, "/readyz", "/readyz".into(), [200; 4]).public(),
        route(
            Method::GET,
            "/api/v1/openapi.json",
            "/api/v1/openapi.json".into(),
            [200; 4],
        )
        .public(),
        route(
            Method::GET,
            "/api/v1/auth/config",
            "/api/v1/auth/config".into(),
            [200; 4],
        )
        .public(),
        route(Method::GET, "/api/v1/me", "/api/v1/me".into(), [200; 4]),
        route(
            Method::GET,
            "/api/v1/deployments",
            "/api/v1/deployments".into(),
            [200, 200, 200, 403],
        ),
        route(
            Method::POST,
            "/api/v1/deployments",
            "/api/v1/deployments".into(),
            [202, 202, 403, 403],
        )
        .body(deploy.clone()),
        route(
            Method::GET,
            "/api/v1/deployments/{id}",
            format!("/api/v1/deployments/{run_id}"),
            [200, 200, 200, 403],
        ),
        route(
            Method::GET,
            "/api/v1/deployments/{id}/events",
            format!("/api/v1/deployments/{run_id}/events"),
            [200, 200, 200, 403],
        ),
        // The run's stream stays open; an unknown id answers at once.
        route(
            Method::GET,
            "/api/v1/deployments/{id}/stream",
            format!("/api/v1/deployments/{unknown}/stream"),
            [404, 404, 404, 403],
        ),
        route(
            Method::POST,
            "/api/v1/deployments/{id}/cancel",
            format!("/api/v1/deployments/{unknown}/cancel"),
            [404, 404, 403, 403],
        )
        .body(json!({})),
        route(
            Method::GET,
            "/api/v1/approvals",
            "/api/v1/approvals".into(),
            [200, 403, 200, 403],
        ),
        route(
            Method::POST,
            "/api/v1/deployments/{id}/approve",
            format!("/api/v1/deployments/{unknown}/approve"),
            [404, 403, 404, 403],
        )
        .body(json!({})),
        route(
            Method::POST,
            "/api/v1/deployments/{id}/reject",
            format!("/api/v1/deployments/{unknown}/reject"),
            [404, 403, 404, 403],
        )
        .body(json!({"comment": "no"})),
        route(
            Method::POST,
            "/api/v1/deployments/{id}/gates/{gate}",
            format!("/api/v1/deployments/{unknown}/gates/pre_export"),
            [404, 403, 404, 403],
        )
        .body(json!({"status": 20})),
        route(
            Method::PUT,
            "/api/v1/deployments/{id}/settings",
            format!("/api/v1/deployments/{unknown}/settings"),
            [404, 404, 403, 403],
        )
        .body(json!({"settings": {}})),
        route(
            Method::POST,
            "/api/v1/deployments/{id}/retry",
            format!("/api/v1/deployments/{unknown}/retry"),
            [404, 404, 403, 403],
        ),
        route(
            Method::GET,
            "/api/v1/deployments/{id}/artifact",
            format!("/api/v1/deployments/{unknown}/artifact"),
            [404, 404, 404, 403],
        ),
        route(
            Method::GET,
            "/api/v1/environments",
            "/api/v1/environments".into(),
            ADMIN_ONLY_200,
        ),
        route(
            Method::POST,
            "/api/v1/environments",
            "/api/v1/environments".into(),
            [422, 403, 403, 403],
        )
        .body(json!({"name": "x", "url": "http://example.com", "kind": "target", "credentials": {"kind": "static_token", "token_ref": UNSET_SECRET}})),
        route(
            Method::GET,
            "/api/v1/environments/{id}",
            format!("/api/v1/environments/{dev}"),
            ADMIN_ONLY_200,
        ),
        route(
            Method::PATCH,
            "/api/v1/environments/{id}",
            format!("/api/v1/environments/{dev}"),
            [422, 403, 403, 403],
        )
        .body(json!({"url": "http://example.com"})),
        route(
            Method::DELETE,
            "/api/v1/environments/{id}",
            format!("/api/v1/environments/{unknown}"),
            [404, 403, 403, 403],
        ),
        route(
            Method::POST,
            "/api/v1/environments/{id}/validate",
            format!("/api/v1/environments/{unknown}/validate"),
            [404, 403, 403, 403],
        ),
        // dev2 is linked to no pipeline: makers may not ask it; an admin's
        // request fails at once on its credentials, which never resolve.
        route(
            Method::GET,
            "/api/v1/environments/{id}/solutions",
            format!("/api/v1/environments/{dev2}/solutions"),
            [502, 404, 403, 403],
        ),
        route(
            Method::GET,
            "/api/v1/pipelines",
            "/api/v1/pipelines".into(),
            [200, 200, 200, 403],
        ),
        route(
            Method::POST,
            "/api/v1/pipelines",
            "/api/v1/pipelines".into(),
            [422, 403, 403, 403],
        )
        .body(json!({"name": "", "source_environment_ids": []})),
        route(
            Method::GET,
            "/api/v1/pipelines/{id}",
            format!("/api/v1/pipelines/{p1}"),
            [200, 200, 200, 403],
        ),
        route(
            Method::PATCH,
            "/api/v1/pipelines/{id}",
            format!("/api/v1/pipelines/{p1}"),
            [422, 403, 403, 403],
        )
        .body(json!({"name": ""})),
        route(
            Method::DELETE,
            "/api/v1/pipelines/{id}",
            format!("/api/v1/pipelines/{unknown}"),
            [404, 403, 403, 403],
        ),
        route(
            Method::POST,
            "/api/v1/pipelines/{id}/stages",
            format!("/api/v1/pipelines/{p1}/stages"),
            [422, 403, 403, 403],
        )
        .body(stage_body.clone()),
        route(
            Method::PUT,
            "/api/v1/pipelines/{id}/stages/{stage_id}",
            format!("/api/v1/pipelines/{p1}/stages/{s1}"),
            [422, 403, 403, 403],
        )
        .body(stage_body),
        route(
            Method::DELETE,
            "/api/v1/pipelines/{id}/stages/{stage_id}",
            format!("/api/v1/pipelines/{p1}/stages/{unknown}"),
            [404, 403, 403, 403],
        ),
        route(
            Method::POST,
            "/api/v1/pipelines/{id}/shares",
            format!("/api/v1/pipelines/{unknown}/shares"),
            [404, 403, 403, 403],
        )
        .body(json!({"kind": "user", "name": "someone"})),
        route(
            Method::DELETE,
            "/api/v1/pipelines/{id}/shares/{kind}/{name}",
            format!("/api/v1/pipelines/{p1}/shares/user/nobody-at-all"),
            [404, 403, 403, 403],
        ),
        route(
            Method::GET,
            "/api/v1/role-grants",
            "/api/v1/role-grants".into(),
            ADMIN_ONLY_200,
        ),
        route(
            Method::POST,
            "/api/v1/role-grants",
            "/api/v1/role-grants".into(),
            [422, 403, 403, 403],
        )
        .body(json!({"principal": {"kind": "user", "name": ""}, "role": "maker"})),
        route(
            Method::DELETE,
            "/api/v1/role-grants/{kind}/{name}/{role}",
            "/api/v1/role-grants/user/nobody-at-all/maker".into(),
            [404, 403, 403, 403],
        ),
        route(
            Method::GET,
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            ADMIN_ONLY_200,
        ),
        route(
            Method::POST,
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            [422, 403, 403, 403],
        )
        .body(json!({"name": "x", "subject": "y", "expires_in_days": 0})),
        route(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            format!("/api/v1/tokens/{unknown}"),
            [404, 403, 403, 403],
        ),
        route(
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit".into(),
            ADMIN_ONLY_200,
        ),
        route(
            Method::GET,
            "/api/v1/audit/verify",
            "/api/v1/audit/verify".into(),
            ADMIN_ONLY_200,
        ),
        route(
            Method::GET,
            "/api/v1/webhooks",
            "/api/v1/webhooks".into(),
            ADMIN_ONLY_200,
        ),
        route(
            Method::POST,
            "/api/v1/webhooks",
            "/api/v1/webhooks".into(),
            [422, 403, 403, 403],
        )
        .body(json!({"url": "http://example.com/hook", "secret_ref": UNSET_SECRET})),
        route(
            Method::DELETE,
            "/api/v1/webhooks/{id}",
            format!("/api/v1/webhooks/{unknown}"),
            [404, 403, 403, 403],
        ),
        route(
            Method::GET,
            "/api/v1/webhooks/{id}/deliveries",
            format!("/api/v1/webhooks/{unknown}/deliveries"),
            [404, 403, 403, 403],
        ),
    ];

    // Every route of the OpenAPI document has a row, and every row a route.
    let doc = a.get("/api/v1/openapi.json").await.ok(200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let in_matrix: BTreeSet<String> = routes
        .iter()
        .filter(|r| r.template != "/api/v1/openapi.json")
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    assert_eq!(
        in_matrix, documented,
        "the matrix and the OpenAPI document list different routes"
    );
    assert_eq!(in_matrix.len() + 1, routes.len(), "a route is listed twice");

    let caller = |who: Who| -> Api {
        match who {
            Who::Admin => a.clone(),
            Who::Maker => maker.clone(),
            Who::Approver => approver.clone(),
            Who::NoRole => no_role.clone(),
            Who::Revoked => revoked.clone(),
            Who::Expired => expired.clone(),
            Who::NoHeader => gw.anonymous(),
            Who::GarbageBearer => a.with_authorization("Bearer not-a-token-at-all"),
            Who::UnknownApiToken => unknown_token.clone(),
            Who::BasicAuth => a.with_authorization("Basic YWRtaW46YWRtaW4="),
        }
    };
    let mut failures = Vec::new();
    for r in &routes {
        for who in Who::ALL {
            let expected = match who.column() {
                Some(i) => r.expect[i],
                None if r.public => r.expect[0],
                None => 401,
            };
            let resp = caller(who)
                .send(r.method.clone(), &r.path, r.body.clone())
                .await;
            if resp.status != expected {
                failures.push(format!(
                    "{who:?} {} {}: expected {expected}, got {} {}",
                    r.method, r.path, resp.status, resp.text
                ));
                continue;
            }
            if expected == 401 {
                assert!(
                    resp.headers.contains_key(reqwest::header::WWW_AUTHENTICATE),
                    "{who:?} {}: 401 without WWW-Authenticate",
                    resp.request
                );
            }
            if expected == 403 {
                let message = str_of(&resp.body, "error");
                assert!(
                    message.contains("may not") && message.contains("admin"),
                    "{who:?} {}: {message}",
                    resp.request
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} unexpected answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // ---- what each caller sees of pipelines
    let listed = maker.get("/api/v1/pipelines").await.ok(200);
    assert_eq!(
        names(&listed),
        ["P1 shared with users", "P2 shared with team-a"],
        "shared directly and through the token's group, nothing else"
    );
    for p in listed.as_array().unwrap() {
        assert_eq!(
            p["shares"],
            json!([]),
            "a maker sees who else it is shared with: {p}"
        );
    }
    let got = maker.get(&format!("/api/v1/pipelines/{p2}")).await.ok(200);
    assert_eq!(got["shares"], json!([]), "{got}");
    let got = approver
        .get(&format!("/api/v1/pipelines/{p1}"))
        .await
        .ok(200);
    assert_eq!(got["shares"], json!([]), "{got}");
    assert_eq!(
        names(&approver.get("/api/v1/pipelines").await.ok(200)),
        ["P1 shared with users"]
    );
    // Without a role nothing is readable, not even what is shared with them.
    no_role.get("/api/v1/pipelines").await.ok(403);
    assert_eq!(maker2.get("/api/v1/pipelines").await.ok(200), json!([]));
    let all = a.get("/api/v1/pipelines").await.ok(200);
    assert_eq!(names(&all).len(), 3);
    assert_eq!(all[0]["shares"].as_array().unwrap().len(), 2, "{all}");

    // Not shared is the same 404 as not there.
    let hidden = maker.get(&format!("/api/v1/pipelines/{p3}")).await;
    let missing = maker.get(&format!("/api/v1/pipelines/{unknown}")).await;
    assert_same_404(hidden, &p3, missing, &unknown);
    let hidden = maker2.get(&format!("/api/v1/pipelines/{p1}")).await;
    let missing = maker2.get(&format!("/api/v1/pipelines/{unknown}")).await;
    assert_same_404(hidden, &p1, missing, &unknown);

    // ---- deploying through pipelines
    let via = |pipeline: &str, stage: &str, source: &str| json!({"solution_name": "Contoso", "pipeline_id": pipeline, "stage_id": stage, "source_environment": source, "version": "1.0.0.1"});
    let via_group = maker
        .post("/api/v1/deployments", via(&p2, &s2, "dev"))
        .await
        .ok(202);
    assert_eq!(via_group["deployment"]["target_environment"], "prod");
    let hidden = maker
        .post("/api/v1/deployments", via(&p3, &s3, "dev"))
        .await;
    let missing = maker
        .post("/api/v1/deployments", via(&unknown, &s3, "dev"))
        .await;
    assert_same_404(hidden, &p3, missing, &unknown);
    let body = maker
        .post("/api/v1/deployments", via(&p1, &s1, "dev2"))
        .await
        .invalid("source_environment");
    assert!(
        str_of(&body["fields"][0], "reason").contains("dev2"),
        "{body}"
    );
    maker
        .post("/api/v1/deployments", via(&p1, &s2, "dev"))
        .await
        .invalid("stage_id");
    let mut wrong_target = via(&p1, &s1, "dev");
    wrong_target["target_environment"] = json!("prod");
    maker
        .post("/api/v1/deployments", wrong_target)
        .await
        .invalid("target_environment");
    maker
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "source_environment": "dev", "target_environment": "test"}),
        )
        .await
        .invalid("pipeline_id");
    maker2
        .post("/api/v1/deployments", via(&p1, &s1, "dev"))
        .await
        .ok(404);
    approver
        .post("/api/v1/deployments", via(&p1, &s1, "dev"))
        .await
        .ok(403);

    // ---- who sees the maker's run
    let ids = |list: Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids(maker.get("/api/v1/deployments").await.ok(200)).contains(&run_id));
    assert!(ids(approver.get("/api/v1/deployments").await.ok(200)).contains(&run_id));
    assert!(ids(a.get("/api/v1/deployments").await.ok(200)).contains(&run_id));
    assert!(!ids(maker2.get("/api/v1/deployments").await.ok(200)).contains(&run_id));
    no_role.get("/api/v1/deployments").await.ok(403);
    let hidden = maker2.get(&format!("/api/v1/deployments/{run_id}")).await;
    let missing = maker2.get(&format!("/api/v1/deployments/{unknown}")).await;
    assert_same_404(hidden, &run_id, missing, &unknown);
    maker2
        .get(&format!("/api/v1/deployments/{run_id}/events"))
        .await
        .ok(404);
    maker2
        .post(&format!("/api/v1/deployments/{run_id}/cancel"), json!({}))
        .await
        .ok(404);
    approver
        .post(&format!("/api/v1/deployments/{run_id}/cancel"), json!({}))
        .await
        .ok(403);

    // Unsharing hides the pipeline at once; the maker still sees their own run.
    a.delete(&format!("/api/v1/pipelines/{p1}/shares/user/maker"))
        .await
        .ok(204);
    maker.get(&format!("/api/v1/pipelines/{p1}")).await.ok(404);
    maker
        .get(&format!("/api/v1/deployments/{run_id}"))
        .await
        .ok(200);
    assert_eq!(
        names(&maker.get("/api/v1/pipelines").await.ok(200)),
        ["P2 shared with team-a"]
    );

    // The audit log of a pipeline includes the deployments through it.
    let run_records = a
        .get(&format!("/api/v1/audit?entity_kind=run&entity_id={run_id}"))
        .await
        .ok(200);
    assert_eq!(
        run_records[0]["actor"], "maker",
        "the run's first record: {run_records}"
    );
    let of_p1 = a
        .get(&format!("/api/v1/audit?pipeline_id={p1}&limit=1000"))
        .await
        .ok(200);
    assert!(
        of_p1
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["entity_kind"] == "run" && r["entity_id"] == run_id.as_str()),
        "GET /api/v1/audit?pipeline_id=<P1> lacks run {run_id}, deployed through P1; its records carry pipeline_id {}",
        run_records[0]["pipeline_id"]
    );
    gw.stop().await;
}

/// Both 404s have the same shape and the same message but for the id.
fn assert_same_404(hidden: common::Resp, hidden_id: &str, missing: common::Resp, missing_id: &str) {
    let request = hidden.request.clone();
    let hidden = hidden.ok(404);
    let missing = missing.ok(404);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&hidden), keys(&missing), "{hidden} vs {missing}");
    assert_eq!(
        str_of(&hidden, "error").replace(hidden_id, "<id>"),
        str_of(&missing, "error").replace(missing_id, "<id>"),
        "{request}: a hidden resource answers differently from a missing one"
    );
}

// ====================================================================
// 3. Every validation rule
// ====================================================================

fn env_body(name: &str, url: &str, kind: &str) -> Value {
    json!({"name": name, "url": url, "kind": kind, "credentials": {"kind": "static_token", "token_ref": UNSET_SECRET}})
}

async fn validation_rules(db: Db) {
    let gw = start(db, |c| c.gateway.max_stages_per_pipeline = 3).await;
    let a = &gw.admin;
    let envs = "/api/v1/environments";

    // ---- names (environments, pipelines, stages, tokens share the rules)
    let long = "x".repeat(101);
    for bad in [
        "",
        "   ",
        " padded",
        "padded ",
        long.as_str(),
        "line\nbreak",
    ] {
        a.post(envs, env_body(bad, "https://x.crm.dynamics.com", "target"))
            .await
            .invalid("name");
        a.post(
            "/api/v1/pipelines",
            json!({"name": bad, "source_environment_ids": []}),
        )
        .await
        .invalid("name");
    }
    let longest = "y".repeat(100);
    let ok = a
        .post(
            envs,
            env_body(&longest, "https://y.crm.dynamics.com", "target"),
        )
        .await
        .ok(201);
    a.delete(&format!("{envs}/{}", str_of(&ok, "id")))
        .await
        .ok(204);

    let dev = a.env("dev", "development").await;
    let dev_b = a.env("dev-b", "development").await;
    let t: Vec<String> = {
        let mut t = Vec::new();
        for i in 1..=5 {
            t.push(a.env(&format!("t{i}"), "target").await);
        }
        t
    };

    // ---- duplicates
    a.post(
        envs,
        env_body("dev", "https://z.crm.dynamics.com", "development"),
    )
    .await
    .conflict("already exists");
    a.patch(&format!("{envs}/{dev_b}"), json!({"name": "dev"}))
        .await
        .conflict("already exists");
    a.patch(&format!("{envs}/{dev_b}"), json!({"name": " dev-b"}))
        .await
        .invalid("name");

    // ---- environment URLs
    for bad in [
        "http://contoso.crm4.dynamics.com",
        "http://127.0.0.2:8080/x",
        "http://localhost.example.com/x",
        "http://127.0.0.1.nip.io/x",
        "ftp://contoso.crm4.dynamics.com",
        "not a url",
        "https://user:secret@contoso.crm4.dynamics.com",
        "",
    ] {
        a.post(envs, env_body("url-check", bad, "target"))
            .await
            .invalid("url");
    }
    a.patch(
        &format!("{envs}/{dev_b}"),
        json!({"url": "http://example.com"}),
    )
    .await
    .invalid("url");
    for (i, local) in ["http://127.0.0.1:9/sim", "http://localhost:9/sim"]
        .iter()
        .enumerate()
    {
        a.post(envs, env_body(&format!("local-{i}"), local, "target"))
            .await
            .ok(201);
    }

    // ---- credentials: references only, never secrets
    for (credentials, mentions) in [
        (
            json!({"kind": "client_secret", "token_url": "https://login.microsoftonline.com/t/oauth2/v2.0/token", "client_id": "app", "client_secret_ref": "env:S", "client_secret": "hunter2-very-secret"}),
            "client_secret_ref",
        ),
        (
            json!({"kind": "static_token", "token_ref": "env:T", "token": "hunter2-very-secret"}),
            "token_ref",
        ),
        (
            json!({"kind": "static_token", "token_ref": "hunter2-very-secret"}),
            "not a secret reference",
        ),
        (
            json!({"kind": "static_token", "token_ref": "file:relative/hunter2-very-secret"}),
            "absolute",
        ),
        (
            json!({"kind": "client_secret", "token_url": "https://login.microsoftonline.com/t", "client_id": "app", "client_secret_ref": "hunter2-very-secret"}),
            "not a secret reference",
        ),
    ] {
        let resp = a
            .post(
                envs,
                json!({"name": "creds", "url": "https://c.crm.dynamics.com", "kind": "target", "credentials": credentials}),
            )
            .await;
        assert!(
            !resp.text.contains("hunter2"),
            "an error echoes the secret: {}",
            resp.text
        );
        let body = resp.ok(422);
        let field = str_of(&body["fields"][0], "field");
        assert!(field.starts_with("credentials"), "{body}");
        assert!(body.to_string().contains(mentions), "{body}");
    }
    a.post(
        envs,
        json!({"name": "creds", "url": "https://c.crm.dynamics.com", "kind": "target",
               "credentials": {"kind": "client_secret", "token_url": "http://login.example.com/t", "client_id": "app", "client_secret_ref": "env:S"}}),
    )
    .await
    .invalid("credentials.token_url");
    a.post(
        envs,
        json!({"name": "creds", "url": "https://c.crm.dynamics.com", "kind": "target",
               "credentials": {"kind": "client_secret", "token_url": "https://login.example.com/t", "client_id": " ", "client_secret_ref": "env:S"}}),
    )
    .await
    .invalid("credentials.client_id");
    a.post(
        envs,
        env_body("kinds", "https://k.crm.dynamics.com", "production"),
    )
    .await
    .invalid("kind");

    // ---- bodies
    let unknown_field = a
        .post("/api/v1/pipelines", json!({"name": "p", "colour": "blue"}))
        .await;
    let body = unknown_field.invalid("colour");
    assert!(str_of(&body, "error").contains("unknown field"), "{body}");
    let stage_unknown = a
        .post(
            &format!("/api/v1/pipelines/{}/stages", unknown_id()),
            json!({"name": "s", "target_environment_ids": [], "policies": {"colour": 1}}),
        )
        .await
        .ok(422);
    assert!(
        stage_unknown.to_string().contains("colour"),
        "{stage_unknown}"
    );
    for not_json in [
        "name=x",
        "{\"name\": \"x\"",
        "{\"name\": \"x\", \"source_environment_ids\": []} trailing",
    ] {
        let resp = a
            .send_raw(
                Method::POST,
                "/api/v1/pipelines",
                Some((not_json.to_owned(), "application/json")),
            )
            .await;
        assert!(
            str_of(&resp.body, "error").contains("JSON"),
            "{}",
            resp.text
        );
        resp.ok(400);
    }
    let resp = a
        .send_raw(
            Method::POST,
            "/api/v1/pipelines",
            Some((String::new(), "application/json")),
        )
        .await;
    resp.ok(400);
    for path in [
        "/api/v1/pipelines/not-a-uuid",
        "/api/v1/environments/123",
        "/api/v1/deployments/not-a-uuid",
    ] {
        let resp = a.get(path).await;
        assert!(resp.content_type().starts_with("application/json"));
        resp.ok(400);
    }
    let resp = a.get("/api/v1/no-such-route").await;
    assert!(resp.content_type().starts_with("application/json"));
    assert!(
        str_of(&resp.body, "error").contains("openapi.json"),
        "{}",
        resp.text
    );
    resp.ok(404);
    let resp = gw.anonymous().get("/no/such/route").await;
    resp.ok(404);
    a.send(Method::PUT, "/api/v1/pipelines", Some(json!({})))
        .await
        .ok(405);
    a.get("/api/v1/deployments?limit=lots")
        .await
        .invalid("limit");
    a.get("/api/v1/audit?since=yesterday")
        .await
        .invalid("since");
    a.get("/api/v1/audit?until=2026-13-01T00:00:00Z")
        .await
        .invalid("until");
    a.get("/api/v1/audit?pipeline_id=not-a-uuid").await.ok(422);
    a.get("/api/v1/audit?colour=blue").await.ok(422);

    // ---- pipelines
    let p = a.pipeline("Release", &[&dev]).await;
    a.pipeline("Other", &[&dev]).await;
    a.post(
        "/api/v1/pipelines",
        json!({"name": "Release", "source_environment_ids": [dev]}),
    )
    .await
    .conflict("already exists");
    a.patch(&format!("/api/v1/pipelines/{p}"), json!({"name": "Other"}))
        .await
        .conflict("already exists");
    a.patch(&format!("/api/v1/pipelines/{p}"), json!({"name": ""}))
        .await
        .invalid("name");
    a.post(
        "/api/v1/pipelines",
        json!({"name": "no sources", "source_environment_ids": []}),
    )
    .await
    .invalid("source_environment_ids");
    let missing = a
        .post("/api/v1/pipelines", json!({"name": "no sources"}))
        .await
        .ok(422);
    assert!(
        missing.to_string().contains("source_environment_ids"),
        "a missing field is not named: {missing}"
    );
    a.patch(
        &format!("/api/v1/pipelines/{p}"),
        json!({"source_environment_ids": []}),
    )
    .await
    .invalid("source_environment_ids");
    a.post(
        "/api/v1/pipelines",
        json!({"name": "bad sources", "source_environment_ids": [t[0]]}),
    )
    .await
    .invalid("source_environment_ids[0]");
    a.post(
        "/api/v1/pipelines",
        json!({"name": "bad sources", "source_environment_ids": [dev, dev]}),
    )
    .await
    .invalid("source_environment_ids[1]");
    a.post(
        "/api/v1/pipelines",
        json!({"name": "bad sources", "source_environment_ids": [dev, unknown_id()]}),
    )
    .await
    .invalid("source_environment_ids[1]");
    a.patch(
        &format!("/api/v1/pipelines/{p}"),
        json!({"source_environment_ids": [dev_b, t[1]]}),
    )
    .await
    .invalid("source_environment_ids[1]");
    let unchanged = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
    assert_eq!(
        names(&unchanged["source_environments"]),
        ["dev"],
        "a refused change changes nothing"
    );

    // ---- stages
    let stages = format!("/api/v1/pipelines/{p}/stages");
    let stage = |name: &str, previous: Option<&str>, targets: &[&String]| json!({"name": name, "previous_stage_id": previous, "target_environment_ids": targets});
    a.post(&stages, stage("S", None, &[&dev]))
        .await
        .invalid("target_environment_ids[0]");
    a.post(&stages, stage("S", None, &[&t[0], &t[0]]))
        .await
        .invalid("target_environment_ids[1]");
    a.post(&stages, stage("S", None, &[]))
        .await
        .invalid("target_environment_ids");
    a.post(&stages, stage("S", None, &[&unknown_id()]))
        .await
        .invalid("target_environment_ids[0]");
    a.post(&stages, stage(" S", None, &[&t[0]]))
        .await
        .invalid("name");
    a.post(&stages, json!({"name": "S"})).await.ok(422);
    a.post(
        &format!("/api/v1/pipelines/{}/stages", unknown_id()),
        stage("S", None, &[&t[0]]),
    )
    .await
    .ok(404);

    let s_a = a.stage(&p, "A", None, &[&t[0]]).await;
    let body = a
        .post(&stages, stage("B", None, &[&t[1], &t[0]]))
        .await
        .invalid("target_environment_ids[1]");
    assert!(body.to_string().contains("stage A"), "{body}");
    a.post(&stages, stage("B", Some(&unknown_id()), &[&t[1]]))
        .await
        .invalid("previous_stage_id");
    a.post(&stages, stage("A", None, &[&t[1]]))
        .await
        .conflict("already has a stage named A");
    let s_b = a.stage(&p, "B", Some(&s_a), &[&t[1]]).await;
    let stage_a = format!("{stages}/{s_a}");
    a.put(&stage_a, stage("A", Some(&s_a), &[&t[0]]))
        .await
        .invalid("previous_stage_id");
    a.put(&stage_a, stage("A", Some(&s_b), &[&t[0]]))
        .await
        .invalid("previous_stage_id");
    a.put(&stage_a, stage("A", None, &[&t[1]]))
        .await
        .invalid("target_environment_ids[0]");
    a.put(&stage_a, stage("B", None, &[&t[0]]))
        .await
        .conflict("already has a stage named B");
    a.put(
        &format!("{stages}/{}", unknown_id()),
        stage("Z", None, &[&t[3]]),
    )
    .await
    .ok(404);
    // A stage of another pipeline is no previous stage here.
    let other = a.pipeline("Elsewhere", &[&dev]).await;
    let foreign = a.stage(&other, "F", None, &[&t[4]]).await;
    a.post(&stages, stage("C", Some(&foreign), &[&t[2]]))
        .await
        .invalid("previous_stage_id");
    let s_c = a.stage(&p, "C", Some(&s_b), &[&t[2]]).await;
    let body = a
        .post(&stages, stage("D", Some(&s_c), &[&t[3]]))
        .await
        .invalid("stages");
    assert!(
        body.to_string().contains("max_stages_per_pipeline"),
        "{body}"
    );
    let kept = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
    assert_eq!(names(&kept["stages"]), ["A", "B", "C"]);

    // ---- in use
    a.delete(&stage_a).await.conflict("B");
    a.delete(&format!("{envs}/{}", t[0]))
        .await
        .conflict("Release");
    a.delete(&format!("{envs}/{dev}")).await.conflict("Release");
    a.patch(&format!("{envs}/{}", t[0]), json!({"kind": "development"}))
        .await
        .conflict("Release");
    a.patch(&format!("{envs}/{dev}"), json!({"kind": "target"}))
        .await
        .conflict("Release");
    let changed = a
        .patch(&format!("{envs}/{}", t[3]), json!({"kind": "development"}))
        .await
        .ok(200);
    assert_eq!(
        changed["kind"], "development",
        "an unused environment may change"
    );

    // ---- stage settings and policies
    let stage_c = format!("{stages}/{s_c}");
    let with = |extra: Value| {
        let mut body = stage("C", Some(&s_b), &[&t[2]]);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let window = |start: &str, end: &str, zone: &str| json!({"deployment_windows": [{"days": ["mon"], "start": start, "end": end, "time_zone": zone}]});
    for (extra, field) in [
        (
            json!({"policies": {"allowed_connectors": ["shared_office365"], "blocked_connectors": ["/providers/Microsoft.PowerApps/apis/shared_office365"]}}),
            "policies.blocked_connectors[0]",
        ),
        (
            json!({"policies": window("25:00", "18:00", "Europe/Paris")}),
            "policies.deployment_windows[0].start",
        ),
        (
            json!({"policies": window("08:00", "8:30", "Europe/Paris")}),
            "policies.deployment_windows[0].end",
        ),
        (
            json!({"policies": window("08:00", "18:00", "Mars/Olympus_Mons")}),
            "policies.deployment_windows[0].time_zone",
        ),
        (
            json!({"policies": {"deployment_windows": [{"days": [], "start": "08:00", "end": "18:00", "time_zone": "UTC"}]}}),
            "policies.deployment_windows[0].days",
        ),
        (
            json!({"policies": {"max_artifact_bytes": 0}}),
            "policies.max_artifact_bytes",
        ),
        (
            json!({"policies": {"blocked_connectors": [" "]}}),
            "policies.blocked_connectors[0]",
        ),
        (
            json!({"deploy_as": {"mode": "service_principal", "application_id": " "}}),
            "deploy_as.application_id",
        ),
        (
            json!({"deploy_as": {"mode": "user", "user": ""}}),
            "deploy_as.user",
        ),
    ] {
        a.put(&stage_c, with(extra.clone())).await.invalid(field);
        let mut new = with(extra);
        new["name"] = json!("New");
        a.post(&stages, new).await.ok(422);
    }
    let fine = a
        .put(
            &stage_c,
            with(json!({"policies": window("22:00", "02:00", "Europe/Paris"), "deploy_as": {"mode": "user", "user": "owner@contoso.com"}})),
        )
        .await
        .ok(200);
    assert_eq!(
        fine["deploy_as"],
        json!({"mode": "user", "user": "owner@contoso.com"})
    );

    // ---- sharing and roles
    a.post(
        &format!("/api/v1/pipelines/{p}/shares"),
        json!({"kind": "robot", "name": "r2d2"}),
    )
    .await
    .invalid("kind");
    a.delete(&format!("/api/v1/pipelines/{p}/shares/robot/r2d2"))
        .await
        .invalid("kind");
    a.post(
        "/api/v1/role-grants",
        json!({"principal": {"kind": "user", "name": " "}, "role": "maker"}),
    )
    .await
    .invalid("principal.name");
    a.post(
        "/api/v1/role-grants",
        json!({"principal": {"kind": "user", "name": "u"}, "role": "owner"}),
    )
    .await
    .invalid("role");
    a.delete("/api/v1/role-grants/robot/u/maker")
        .await
        .invalid("kind");
    a.delete("/api/v1/role-grants/user/u/owner")
        .await
        .invalid("role");

    // The last admin grant stays; with a second admin it may go.
    a.delete(&format!("/api/v1/role-grants/user/{ADMIN}/admin"))
        .await
        .conflict("last admin");
    a.post(
        "/api/v1/role-grants",
        json!({"principal": {"kind": "user", "name": "second-admin"}, "role": "admin"}),
    )
    .await
    .ok(201);
    a.delete("/api/v1/role-grants/user/second-admin/admin")
        .await
        .ok(204);
    a.delete(&format!("/api/v1/role-grants/user/{ADMIN}/admin"))
        .await
        .conflict("last admin");
    a.get("/api/v1/me").await.ok(200);

    // ---- tokens
    let token = |extra: Value| {
        let mut body = json!({"name": "t", "subject": "s"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (extra, field) in [
        (json!({"expires_in_days": 0}), "expires_in_days"),
        (json!({"expires_in_days": 3651}), "expires_in_days"),
        (json!({"expires_in_days": -1}), "expires_in_days"),
        (json!({"subject": ""}), "subject"),
        (json!({"name": " t"}), "name"),
        (json!({"groups": ["ok", " padded"]}), "groups[1]"),
        (json!({"roles": ["owner"]}), "roles[0]"),
    ] {
        a.post("/api/v1/tokens", token(extra)).await.invalid(field);
    }
    let longest = a
        .post("/api/v1/tokens", token(json!({"expires_in_days": 3650})))
        .await
        .ok(201);
    assert!(longest["api_token"]["expires_at"].is_string());

    // The body of a share is the principal itself, so its name is `name`.
    a.post(
        &format!("/api/v1/pipelines/{p}/shares"),
        json!({"kind": "user", "name": ""}),
    )
    .await
    .invalid("name");
    gw.stop().await;
}

// ====================================================================
// 4. Environment checks (WhoAmI) against the simulator
// ====================================================================

const SIM_TOKEN: &str = "sim-dev-token-7f3a";

async fn environment_checks_use_who_am_i(db: Db) {
    let mut sim_config = slipway_envsim::Config::in_memory();
    sim_config.dev_tokens = vec![SIM_TOKEN.into()];
    sim_config.environments = vec![slipway_envsim::config::EnvironmentConfig::new(
        "contoso-test",
    )];
    let sim = slipway_envsim::EnvSim::start(sim_config).await.unwrap();
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good-token");
    let wrong = dir.path().join("wrong-token");
    let absent = dir.path().join("absent-token");
    std::fs::write(&good, format!("{SIM_TOKEN}\n")).unwrap();
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let register = |name: &str, url: String, file: &std::path::Path| {
        json!({"name": name, "url": url, "kind": "target",
               "credentials": {"kind": "static_token", "token_ref": format!("file:{}", file.display())}})
    };
    let url = sim.env_url("contoso-test");

    let ok = a
        .post(
            "/api/v1/environments",
            register("sim-ok", url.clone(), &good),
        )
        .await
        .ok(201);
    let ok_id = str_of(&ok, "id").to_owned();
    assert_eq!(ok["validation_status"], "pending");
    let bad = a
        .post(
            "/api/v1/environments",
            register("sim-wrong-token", url.clone(), &wrong),
        )
        .await
        .ok(201);
    let bad_id = str_of(&bad, "id").to_owned();
    let gone = a
        .post(
            "/api/v1/environments",
            register("sim-missing-file", url.clone(), &absent),
        )
        .await
        .ok(201);
    let gone_id = str_of(&gone, "id").to_owned();
    let nowhere = a
        .post(
            "/api/v1/environments",
            register("sim-unknown-env", sim.env_url("no-such-env"), &good),
        )
        .await
        .ok(201);
    let nowhere_id = str_of(&nowhere, "id").to_owned();

    let checked = checked_environment(a, &ok_id).await;
    assert_eq!(checked["validation_status"], "success", "{checked}");
    assert_eq!(checked["validation_error"], Value::Null, "{checked}");
    assert!(checked["validated_at"].is_string(), "{checked}");

    let checked = checked_environment(a, &bad_id).await;
    assert_eq!(checked["validation_status"], "failed", "{checked}");
    assert!(
        !str_of(&checked, "validation_error").trim().is_empty(),
        "{checked}"
    );
    assert!(
        !str_of(&checked, "validation_error").contains("not-the-token"),
        "the check's error shows the token: {checked}"
    );

    let checked = checked_environment(a, &gone_id).await;
    assert_eq!(checked["validation_status"], "failed", "{checked}");
    assert!(
        str_of(&checked, "validation_error").contains(&absent.display().to_string()),
        "the error names the missing file: {checked}"
    );

    let checked = checked_environment(a, &nowhere_id).await;
    assert_eq!(checked["validation_status"], "failed", "{checked}");
    // The simulator was really asked: once with the right token, once with the wrong one.
    let asked = sim.stats("contoso-test").unwrap();
    assert!(asked.requests >= 2 && asked.unauthorized >= 1, "{asked:?}");

    // POST validate checks again, now, and answers with the outcome.
    std::fs::write(&wrong, format!("{SIM_TOKEN}\n")).unwrap();
    let rechecked = a
        .post(
            &format!("/api/v1/environments/{bad_id}/validate"),
            json!({}),
        )
        .await
        .ok(200);
    assert_eq!(rechecked["validation_status"], "success", "{rechecked}");
    assert_eq!(rechecked["validation_error"], Value::Null, "{rechecked}");
    assert!(sim.stats("contoso-test").unwrap().requests > asked.requests);
    std::fs::remove_file(&good).unwrap();
    let rechecked = a
        .send(
            Method::POST,
            &format!("/api/v1/environments/{ok_id}/validate"),
            None,
        )
        .await
        .ok(200);
    assert_eq!(rechecked["validation_status"], "failed", "{rechecked}");
    assert!(
        str_of(&rechecked, "validation_error").contains(&good.display().to_string()),
        "{rechecked}"
    );
    assert_eq!(
        a.get(&format!("/api/v1/environments/{ok_id}"))
            .await
            .ok(200)["validation_status"],
        "failed",
        "the outcome is stored"
    );

    // New credentials are checked again in the background.
    let patched = a
        .patch(
            &format!("/api/v1/environments/{gone_id}"),
            json!({"credentials": {"kind": "static_token", "token_ref": format!("file:{}", wrong.display())}}),
        )
        .await
        .ok(200);
    assert_eq!(patched["validation_status"], "pending");
    let checked = checked_environment(a, &gone_id).await;
    assert_eq!(checked["validation_status"], "success", "{checked}");

    // An unreachable environment fails within the check's time limit.
    let dead = a
        .post(
            "/api/v1/environments",
            register("sim-dead", "http://127.0.0.1:1/contoso".into(), &wrong),
        )
        .await
        .ok(201);
    let checked = checked_environment(a, str_of(&dead, "id")).await;
    assert_eq!(checked["validation_status"], "failed", "{checked}");

    // Background checks are audited as `slipway`, checks on request as the admin.
    let records = a
        .get(&format!(
            "/api/v1/audit?entity_kind=environment&entity_id={bad_id}"
        ))
        .await
        .ok(200);
    let records = records.as_array().unwrap();
    let check_actors: Vec<&str> = records
        .iter()
        .filter(|r| {
            r["action"] == "update"
                && r["before"].get("validation_status").is_some()
                && r["before"].get("name").is_none()
        })
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(check_actors, ["slipway", ADMIN], "{records:?}");
    gw.stop().await;
    sim.shutdown().await.unwrap();
}

// ====================================================================
// 5. OIDC callers
// ====================================================================

const ISSUER: &str = "https://login.example.test/tenant-1/v2.0";
const AUDIENCE: &str = "api://slipway-gateway";
const RSA_1_PEM: &str = include_str!("../../auth/tests/keys/test-only-rsa-1.pem");
const RSA_1_JWK: &str = include_str!("../../auth/tests/keys/test-only-rsa-1.jwk.json");
const RSA_2_PEM: &str = include_str!("../../auth/tests/keys/test-only-rsa-2.pem");

/// Serves `{"keys": [test-only-rsa-1]}` on 127.0.0.1; returns its URL.
async fn jwks_server() -> (String, tokio::task::JoinHandle<()>) {
    let jwk: Value = serde_json::from_str(RSA_1_JWK).unwrap();
    let jwks = json!({"keys": [jwk]});
    let app = axum::Router::new().route(
        "/discovery/v2.0/keys",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/discovery/v2.0/keys"), task)
}

fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str, groups: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "groups": groups,
        "iat": now_secs(),
        "nbf": now_secs() - 10,
        "exp": now_secs() + 600,
    })
}

fn jwt(pem: &str, kid: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

async fn oidc_callers_get_roles_and_shares_from_their_groups(db: Db) {
    let (jwks_url, jwks_task) = jwks_server().await;
    let gw = start(db, |c| {
        c.auth.oidc_issuer = Some(ISSUER.into());
        c.auth.oidc_audience = Some(AUDIENCE.into());
        c.auth.oidc_jwks_url = Some(jwks_url.clone());
    })
    .await;
    let a = &gw.admin;
    let dev = a.env("dev", "development").await;
    let test = a.env("test", "target").await;
    let team = a.pipeline("Team A pipeline", &[&dev]).await;
    let stage = a.stage(&team, "Test", None, &[&test]).await;
    let other = a.pipeline("Other pipeline", &[&dev]).await;
    a.stage(&other, "Test", None, &[&test]).await;
    a.share(&other, "user", "someone-else").await;
    a.share(&other, "group", "team-b").await;
    a.share(&team, "group", "team-a").await;
    a.post(
        "/api/v1/role-grants",
        json!({"principal": {"kind": "group", "name": "team-a"}, "role": "maker"}),
    )
    .await
    .ok(201);

    let token = jwt(RSA_1_PEM, "test-rsa-1", &claims("oidc-maker", &["team-a"]));
    let maker = a.bearer(&token);
    let me = maker.get("/api/v1/me").await.ok(200);
    assert_eq!(
        me,
        json!({"subject": "oidc-maker", "groups": ["team-a"], "roles": ["maker"], "authenticated_by": "oidc"})
    );
    let listed = maker.get("/api/v1/pipelines").await.ok(200);
    assert_eq!(names(&listed), ["Team A pipeline"]);
    assert_eq!(listed[0]["shares"], json!([]));
    maker
        .get(&format!("/api/v1/pipelines/{other}"))
        .await
        .ok(404);
    maker.get("/api/v1/environments").await.ok(403);
    let run = maker
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "pipeline_id": team, "stage_id": stage, "source_environment": "dev", "version": "1.0.0.1"}),
        )
        .await
        .ok(202);
    assert_eq!(run["requested_by"], "oidc-maker");

    // Without the group: no role, nothing shared.
    let loner = a.bearer(&jwt(RSA_1_PEM, "test-rsa-1", &claims("oidc-maker", &[])));
    assert_eq!(loner.get("/api/v1/me").await.ok(200)["roles"], json!([]));
    loner.get("/api/v1/pipelines").await.ok(403);

    // Refused tokens are 401, never 500 or 503.
    let mut expired = claims("oidc-maker", &["team-a"]);
    expired["iat"] = json!(now_secs() - 7200);
    expired["nbf"] = json!(now_secs() - 7200);
    expired["exp"] = json!(now_secs() - 3600);
    let mut wrong_audience = claims("oidc-maker", &["team-a"]);
    wrong_audience["aud"] = json!("api://someone-else");
    let mut wrong_issuer = claims("oidc-maker", &["team-a"]);
    wrong_issuer["iss"] = json!("https://evil.example.test/v2.0");
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    for (what, bearer) in [
        ("expired", jwt(RSA_1_PEM, "test-rsa-1", &expired)),
        (
            "wrong audience",
            jwt(RSA_1_PEM, "test-rsa-1", &wrong_audience),
        ),
        ("wrong issuer", jwt(RSA_1_PEM, "test-rsa-1", &wrong_issuer)),
        (
            "signed with another key under a known kid",
            jwt(RSA_2_PEM, "test-rsa-1", &claims("oidc-maker", &["team-a"])),
        ),
        ("bad signature", tampered),
        ("not a JWT", "not.a.jwt".to_owned()),
    ] {
        let resp = a.bearer(&bearer).get("/api/v1/me").await;
        assert_eq!(resp.status, 401, "{what}: {}", resp.text);
        assert!(
            !resp.text.contains(&bearer),
            "{what}: the answer echoes the token"
        );
    }
    // API tokens still work next to OIDC.
    a.get("/api/v1/me").await.ok(200);

    // Roles follow the grants at once.
    a.delete("/api/v1/role-grants/group/team-a/maker")
        .await
        .ok(204);
    assert_eq!(maker.get("/api/v1/me").await.ok(200)["roles"], json!([]));
    maker
        .post(
            "/api/v1/deployments",
            json!({"solution_name": "Contoso", "pipeline_id": team, "stage_id": stage, "source_environment": "dev", "version": "1.0.0.1"}),
        )
        .await
        .ok(403);
    gw.stop().await;
    jwks_task.abort();
}

// ====================================================================
// 6. Tampering with the audit log is detected through the API
// ====================================================================

async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap()
}

async fn audit_verify_detects_tampering(db: Db) {
    let gw = start(db, |_| {}).await;
    let a = &gw.admin;
    let dev = a.env("dev", "development").await;
    let test = a.env("test", "target").await;
    let p = a.pipeline("Audited", &[&dev]).await;
    a.stage(&p, "Test", None, &[&test]).await;
    a.share(&p, "user", "maker").await;
    for env in [&dev, &test] {
        checked_environment(a, env).await;
    }
    let intact = a.get("/api/v1/audit/verify").await.ok(200);
    assert_eq!(intact["intact"], true, "{intact}");
    let head = intact["head_seq"].as_i64().unwrap();
    assert!(head >= 6, "{intact}");

    let pool = raw_pool(&gw.db_url).await;
    let original: String = sqlx::query_scalar("SELECT actor FROM audit_log WHERE seq = $1")
        .bind(3_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = $1")
        .bind(3_i64)
        .execute(&pool)
        .await
        .unwrap();
    let broken = a.get("/api/v1/audit/verify").await.ok(200);
    assert_eq!(broken["intact"], false, "{broken}");
    assert_eq!(broken["first_broken_seq"], 3, "{broken}");
    assert!(str_of(&broken, "problem").contains("altered"), "{broken}");
    // The log itself still lists.
    let listed = a.get("/api/v1/audit?after_seq=2&limit=1").await.ok(200);
    assert_eq!(listed[0]["actor"], "mallory");

    // Put back exactly as it was: intact again.
    sqlx::query("UPDATE audit_log SET actor = $1 WHERE seq = $2")
        .bind(&original)
        .bind(3_i64)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(a.get("/api/v1/audit/verify").await.ok(200)["intact"], true);

    // Removing the newest record is noticed too (the head remembers it).
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(head)
        .execute(&pool)
        .await
        .unwrap();
    let truncated = a.get("/api/v1/audit/verify").await.ok(200);
    assert_eq!(truncated["intact"], false, "{truncated}");
    assert_eq!(truncated["first_broken_seq"], head, "{truncated}");
    pool.close().await;
    gw.stop().await;
}

// ====================================================================
// 7. Concurrent admins
// ====================================================================

/// Sends all `requests` at once; returns their statuses (500s included).
async fn all_at_once(api: &Api, requests: Vec<(Method, String, Value)>) -> Vec<u16> {
    let sends = requests.into_iter().map(|(method, path, body)| {
        let api = api.clone();
        let body = (!body.is_null()).then_some(body);
        async move { api.try_send(method, &path, body).await.status }
    });
    futures::future::join_all(sends).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn concurrent_admins_cannot_break_the_rules(db: Db) {
    let gw = start(db, |c| c.gateway.max_stages_per_pipeline = 3).await;
    let a = &gw.admin;
    const N: usize = 6;
    let dev = a.env("dev", "development").await;
    // Every broken rule is collected, so one run reports them all.
    let mut broken = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            broken.push(what);
        }
    };

    // The same environment name, N times at once: one 201, the rest 409.
    let statuses = all_at_once(
        a,
        (0..N)
            .map(|_| {
                (
                    Method::POST,
                    "/api/v1/environments".to_owned(),
                    env_body("same-name", "https://same.crm.dynamics.com", "target"),
                )
            })
            .collect(),
    )
    .await;
    expect(
        count(&statuses, 201) == 1 && count(&statuses, 409) == N - 1,
        format!("{N} concurrent creates of one environment name answered {statuses:?}"),
    );

    // The same pipeline name.
    let statuses = all_at_once(
        a,
        (0..N)
            .map(|_| {
                (
                    Method::POST,
                    "/api/v1/pipelines".to_owned(),
                    json!({"name": "same pipeline", "source_environment_ids": [dev]}),
                )
            })
            .collect(),
    )
    .await;
    expect(
        count(&statuses, 201) == 1 && count(&statuses, 409) == N - 1,
        format!("{N} concurrent creates of one pipeline name answered {statuses:?}"),
    );

    let mut targets = Vec::new();
    for i in 0..N + 2 {
        targets.push(a.env(&format!("target-{i}"), "target").await);
    }

    // The same stage name in one pipeline.
    let p = a.pipeline("stage names", &[&dev]).await;
    let statuses = all_at_once(
        a,
        (0..N)
            .map(|i| {
                (
                    Method::POST,
                    format!("/api/v1/pipelines/{p}/stages"),
                    json!({"name": "Same", "target_environment_ids": [targets[i]]}),
                )
            })
            .collect(),
    )
    .await;
    let stages = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200)["stages"].clone();
    expect(
        count(&statuses, 201) == 1 && count(&statuses, 409) == N - 1,
        format!(
            "{N} concurrent stages of one name answered {statuses:?}; the pipeline has {} stages",
            names(&stages).len()
        ),
    );

    // The same target for several new stages of one pipeline.
    let p = a.pipeline("one target", &[&dev]).await;
    let statuses = all_at_once(
        a,
        (0..N)
            .map(|i| {
                (
                    Method::POST,
                    format!("/api/v1/pipelines/{p}/stages"),
                    json!({"name": format!("S{i}"), "target_environment_ids": [targets[0]]}),
                )
            })
            .collect(),
    )
    .await;
    let stages = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200)["stages"].clone();
    expect(
        count(&statuses, 201) == 1 && count(&statuses, 422) == N - 1,
        format!(
            "{N} concurrent stages targeting one environment answered {statuses:?}; {} stages of the pipeline now target it",
            names(&stages).len()
        ),
    );

    // More stages than allowed.
    let p = a.pipeline("stage limit", &[&dev]).await;
    a.stage(&p, "S0", None, &[&targets[0]]).await;
    a.stage(&p, "S1", None, &[&targets[1]]).await;
    let statuses = all_at_once(
        a,
        (2..N + 2)
            .map(|i| {
                (
                    Method::POST,
                    format!("/api/v1/pipelines/{p}/stages"),
                    json!({"name": format!("S{i}"), "target_environment_ids": [targets[i]]}),
                )
            })
            .collect(),
    )
    .await;
    let stages = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200)["stages"].clone();
    expect(
        count(&statuses, 201) == 1 && count(&statuses, 422) == N - 1,
        format!(
            "{N} concurrent stage adds to a pipeline with 2 of at most 3 stages answered {statuses:?}; it now has {} stages",
            names(&stages).len()
        ),
    );

    // Two stages made to follow each other at once: never a cycle.
    let p = a.pipeline("cycle", &[&dev]).await;
    let s_a = a.stage(&p, "A", None, &[&targets[0]]).await;
    let s_b = a.stage(&p, "B", None, &[&targets[1]]).await;
    for round in 0..5 {
        let statuses = all_at_once(
            a,
            vec![
                (
                    Method::PUT,
                    format!("/api/v1/pipelines/{p}/stages/{s_a}"),
                    json!({"name": "A", "previous_stage_id": s_b, "target_environment_ids": [targets[0]]}),
                ),
                (
                    Method::PUT,
                    format!("/api/v1/pipelines/{p}/stages/{s_b}"),
                    json!({"name": "B", "previous_stage_id": s_a, "target_environment_ids": [targets[1]]}),
                ),
            ],
        )
        .await;
        let pipeline = a.get(&format!("/api/v1/pipelines/{p}")).await.ok(200);
        let linked = pipeline["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["previous_stage_id"].is_null())
            .count();
        if !(count(&statuses, 200) == 1 && count(&statuses, 422) == 1 && linked == 1) {
            expect(
                false,
                format!(
                    "round {round}: concurrent PUTs A.previous = B and B.previous = A answered {statuses:?}; {linked} of the 2 stages now have a previous stage (2 is a cycle)"
                ),
            );
            break;
        }
        // Unlink both for the next round.
        for (id, name, target) in [(&s_a, "A", &targets[0]), (&s_b, "B", &targets[1])] {
            a.put(
                &format!("/api/v1/pipelines/{p}/stages/{id}"),
                json!({"name": name, "target_environment_ids": [target]}),
            )
            .await
            .ok(200);
        }
    }
    let verified = a.get("/api/v1/audit/verify").await.ok(200);
    expect(
        verified["intact"] == true,
        format!("the audit chain broke: {verified}"),
    );

    // Two admins each revoking one of the last two admin grants at once:
    // one must stay. (Last: the test admin may lose its role here; grants
    // are restored through the store between rounds.)
    let admin_grant = |name: &str| slipway_store::RoleGrant {
        principal: slipway_store::Principal::user(name),
        role: slipway_store::AccessRole::Admin,
    };
    for round in 0..5 {
        for name in [ADMIN, "admin-2"] {
            gw.store
                .grant_role("test", &admin_grant(name))
                .await
                .unwrap();
        }
        let statuses = all_at_once(
            a,
            vec![
                (
                    Method::DELETE,
                    format!("/api/v1/role-grants/user/{ADMIN}/admin"),
                    Value::Null,
                ),
                (
                    Method::DELETE,
                    "/api/v1/role-grants/user/admin-2/admin".to_owned(),
                    Value::Null,
                ),
            ],
        )
        .await;
        let admins = gw
            .store
            .list_role_grants()
            .await
            .unwrap()
            .into_iter()
            .filter(|g| g.role == slipway_store::AccessRole::Admin)
            .count();
        if admins == 0 || count(&statuses, 204) != 1 {
            expect(
                false,
                format!(
                    "round {round}: revoking the last two admin grants at once answered {statuses:?} and left {admins} admin grant(s)"
                ),
            );
            break;
        }
    }
    gw.stop().await;
    assert!(
        broken.is_empty(),
        "concurrent admins broke {} rule(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// Waits are bounded: a gateway that never checks an environment fails the
/// test instead of hanging it.
#[tokio::test]
async fn eventually_gives_up_at_its_deadline() {
    let outcome = tokio::spawn(async {
        eventually::<(), _, _>("nothing", Duration::from_millis(50), || async { None }).await
    })
    .await;
    let panic = outcome.unwrap_err();
    assert!(panic.is_panic());
}
