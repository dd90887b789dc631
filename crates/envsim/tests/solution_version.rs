//! `PATCH solutions(<id>)`: the version of an unmanaged solution, as a
//! pipeline sets it in the development environment after an export; a
//! managed solution refuses, in Dataverse's error format.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use slipway_dataverse::DataverseError;
use slipway_envsim::EnvSim;
use slipway_solution::{Limits, Solution};
use slipway_testkit::solution_zip::SolutionZip;

#[tokio::test]
async fn an_unmanaged_solution_takes_a_new_version_and_exports_with_it() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(&c, SolutionZip::new("Contoso", "1.0.0.0").build())
        .await
        .unwrap();
    let installed = c.solution("Contoso").await.unwrap().unwrap();

    c.set_solution_version(installed.solution_id, "1.0.0.1")
        .await
        .unwrap();

    let after = c.solution("Contoso").await.unwrap().unwrap();
    assert_eq!(after.version, "1.0.0.1");
    assert_eq!(after.solution_id, installed.solution_id);
    assert!(!after.is_managed);
    // What it exports carries the new version, as in Dataverse.
    for managed in [false, true] {
        let zip = c.export_solution("Contoso", managed).await.unwrap();
        let exported = Solution::from_bytes(&zip, &Limits::default()).unwrap();
        assert_eq!(exported.version.to_string(), "1.0.0.1");
        assert_eq!(exported.managed, managed);
    }
}

#[tokio::test]
async fn a_managed_solution_refuses_a_new_version() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(
        &c,
        SolutionZip::new("Vendor", "3.0.0.0").managed(true).build(),
    )
    .await
    .unwrap();
    let installed = c.solution("Vendor").await.unwrap().unwrap();

    match c
        .set_solution_version(installed.solution_id, "3.0.0.1")
        .await
    {
        Err(DataverseError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(
                message.contains("Vendor is managed") && message.contains("importing a newer"),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after = c.solution("Vendor").await.unwrap().unwrap();
    assert_eq!(after.version, "3.0.0.0", "nothing changed");
}

#[tokio::test]
async fn bad_updates_are_refused_in_the_odata_error_format() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(&c, SolutionZip::new("Contoso", "1.0.0.0").build())
        .await
        .unwrap();
    let id = c.solution("Contoso").await.unwrap().unwrap().solution_id;
    let http = http();
    let patch = |path: String, body: Value| {
        http.patch(format!("{}/api/data/v9.2/{path}", sim.env_url("test")))
            .bearer_auth(DEV_TOKEN)
            .json(&body)
            .send()
    };
    let cases = [
        (
            format!("solutions({id})"),
            json!({"version": "1.x"}),
            400,
            "not a valid solution version",
        ),
        (
            format!("solutions({id})"),
            json!({"friendlyname": "New"}),
            400,
            "only the version",
        ),
        (
            format!("solutions({})", uuid::Uuid::from_u128(9)),
            json!({"version": "1.0.0.1"}),
            404,
            "Does Not Exist",
        ),
        (
            format!("solutions({id})"),
            json!({}),
            400,
            "names no column",
        ),
        (
            "connections(x)".to_owned(),
            json!({"version": "1.0.0.1"}),
            404,
            "updates solutions(<solutionid>) only",
        ),
    ];
    for (path, body, status, says) in cases {
        let resp = patch(path.clone(), body.clone()).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path} {body}");
        let error: Value = resp.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path} {body}: {message}");
        assert!(error["error"]["code"].as_str().unwrap().starts_with("0x"));
    }
    let unchanged = c.solution("Contoso").await.unwrap().unwrap();
    assert_eq!(unchanged.version, "1.0.0.0");

    // Without a token: 401, like every other request.
    let resp = http
        .patch(format!(
            "{}/api/data/v9.2/solutions({id})",
            sim.env_url("test")
        ))
        .json(&json!({"version": "1.0.0.1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
