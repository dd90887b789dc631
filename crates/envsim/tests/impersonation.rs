//! Acting for another user (`CallerObjectId`, `MSCRMCallerID`): the
//! simulator serves `systemusers`, refuses unknown and disabled users the
//! way Dataverse refuses an unknown record, and records whom an import was
//! made for on its operation and on the installed solution.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use slipway_dataverse::{CallerId, DataverseError};
use slipway_envsim::config::UserConfig;
use slipway_envsim::{EnvSim, Running};
use slipway_testkit::solution_zip::SolutionZip;
use uuid::Uuid;

const ANA_OBJECT_ID: Uuid = Uuid::from_u128(0x6f1f_7b54_3ad2_4a8f_a6e0_7d1c_6c0d_9b11);
const APP_ID: Uuid = Uuid::from_u128(0x1111_1111_2222_3333_4444_5555_5555_5555);

async fn sim() -> Running {
    let mut config = config();
    config.environments[0].users = vec![
        UserConfig {
            domain_name: Some("ana@contoso.com".into()),
            full_name: Some("Ana".into()),
            object_id: Some(ANA_OBJECT_ID),
            ..UserConfig::default()
        },
        UserConfig {
            application_id: Some(APP_ID),
            full_name: Some("# release-bot".into()),
            ..UserConfig::default()
        },
        UserConfig {
            domain_name: Some("gone@contoso.com".into()),
            disabled: true,
            ..UserConfig::default()
        },
    ];
    EnvSim::start(config).await.unwrap()
}

fn zip(version: &str) -> Vec<u8> {
    SolutionZip::new("Contoso", version)
        .publisher("contoso", "cts")
        .managed(true)
        .root_component(1, "cts_order")
        .build()
}

/// What `test` answers to `GET /api/data/v9.2/<path>` as the dev token.
async fn get(sim: &Running, path: &str) -> Value {
    http()
        .get(format!("{}/api/data/v9.2/{path}", sim.env_url("test")))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every `asyncoperations` row of `test`.
async fn operations(sim: &Running) -> Vec<Value> {
    let body = get(sim, "asyncoperations").await;
    body["value"].as_array().unwrap().clone()
}

/// The `solutions` row of `name`.
async fn solution_row(sim: &Running, name: &str) -> Value {
    let body = get(
        sim,
        &format!("solutions?$filter=uniquename eq '{name}'&$select=uniquename,_modifiedby_value,_modifiedonbehalfby_value"),
    )
    .await;
    body["value"][0].clone()
}

#[tokio::test]
async fn systemusers_are_looked_up_by_upn_and_application_id() {
    let sim = sim().await;
    let c = client(&sim, "test");
    let ana = c
        .system_user_by_domain_name("ANA@contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ana.object_id, Some(ANA_OBJECT_ID));
    assert_eq!(ana.full_name.as_deref(), Some("Ana"));
    let app = c
        .system_user_by_application_id(APP_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.application_id, Some(APP_ID));
    assert_ne!(app.id, ana.id);
    assert!(
        c.system_user_by_domain_name("nobody@contoso.com")
            .await
            .unwrap()
            .is_none()
    );

    // How a deploy-as identity becomes a caller.
    assert_eq!(
        c.caller_for_user("ana@contoso.com").await.unwrap(),
        CallerId::SystemUserId(ana.id)
    );
    assert_eq!(
        c.caller_for_user(&ANA_OBJECT_ID.to_string()).await.unwrap(),
        CallerId::ObjectId(ANA_OBJECT_ID),
        "an object id is used as it is"
    );
    assert_eq!(
        c.caller_for_application(&APP_ID.to_string()).await.unwrap(),
        CallerId::SystemUserId(app.id)
    );
    for (result, says) in [
        (
            c.caller_for_user("nobody@contoso.com").await,
            "user nobody@contoso.com is not a user of this environment",
        ),
        (
            c.caller_for_user("gone@contoso.com").await,
            "user gone@contoso.com is disabled",
        ),
        (
            c.caller_for_application("release-bot").await,
            "`release-bot` is not an application (client) id",
        ),
        (
            c.caller_for_application(&Uuid::nil().to_string()).await,
            "is not a user of this environment",
        ),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, DataverseError::UnknownCaller(_)), "{e:?}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains(says), "{e}");
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_import_made_for_a_user_records_them() {
    let sim = sim().await;
    let c = client(&sim, "test");
    let own = c.who_am_i().await.unwrap().user_id;
    let ana = c.caller_for_user("ana@contoso.com").await.unwrap();
    let as_ana = c.acting_for(ana);
    assert_eq!(as_ana.caller(), Some(ana));
    assert_eq!(
        as_ana.who_am_i().await.unwrap().user_id,
        ana.id(),
        "WhoAmI names the user acted for"
    );

    import(&as_ana, zip("1.0.0.0")).await.unwrap();
    let ops = operations(&sim).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["_createdby_value"], ana.id().to_string());
    assert_eq!(ops[0]["_createdonbehalfby_value"], own.to_string());
    let row = solution_row(&sim, "Contoso").await;
    assert_eq!(row["_modifiedby_value"], ana.id().to_string(), "{row}");
    assert_eq!(row["_modifiedonbehalfby_value"], own.to_string(), "{row}");

    // By object id (CallerObjectId) it is the same user.
    let by_object = c.acting_for(CallerId::ObjectId(ANA_OBJECT_ID));
    import(&by_object, zip("1.0.0.1")).await.unwrap();
    assert_eq!(
        solution_row(&sim, "Contoso").await["_modifiedby_value"],
        ana.id().to_string()
    );

    // Without impersonation the environment's own user made it.
    import(&c, zip("1.0.0.2")).await.unwrap();
    let row = solution_row(&sim, "Contoso").await;
    assert_eq!(row["_modifiedby_value"], own.to_string(), "{row}");
    assert_eq!(row["_modifiedonbehalfby_value"], Value::Null, "{row}");
    let ops = operations(&sim).await;
    assert_eq!(ops[2]["_createdby_value"], own.to_string());
    assert_eq!(ops[2]["_createdonbehalfby_value"], Value::Null);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_and_disabled_callers_are_refused_and_nothing_is_imported() {
    let sim = sim().await;
    let c = client(&sim, "test");
    let unknown = Uuid::from_u128(42);
    for (caller, status, code, says) in [
        (
            CallerId::SystemUserId(unknown),
            404,
            "0x80040217",
            format!("systemuser With Id = {unknown} Does Not Exist"),
        ),
        (
            CallerId::ObjectId(unknown),
            404,
            "0x80040217",
            format!("systemuser With AzureActiveDirectoryObjectId = {unknown} Does Not Exist"),
        ),
    ] {
        let e = import(&c.acting_for(caller), zip("1.0.0.0"))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(status), "{e}");
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(e.to_string().contains(&says), "{e}");
        // Reads are refused the same way.
        assert_eq!(
            c.acting_for(caller).who_am_i().await.unwrap_err().status(),
            Some(status)
        );
    }
    let gone = c
        .system_user_by_domain_name("gone@contoso.com")
        .await
        .unwrap()
        .unwrap();
    let e = import(
        &c.acting_for(CallerId::SystemUserId(gone.id)),
        zip("1.0.0.0"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("is disabled"), "{e}");
    assert!(operations(&sim).await.is_empty());
    assert!(c.solution("Contoso").await.unwrap().is_none());

    // A header that is not a guid is a 400 naming it.
    let answer = http()
        .get(format!("{}/api/data/v9.2/WhoAmI", sim.env_url("test")))
        .bearer_auth(DEV_TOKEN)
        .header("MSCRMCallerID", "ana@contoso.com")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MSCRMCallerID header must be a guid"),
        "{body}"
    );
    sim.shutdown().await.unwrap();
}
