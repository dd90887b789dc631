//! `Client::set_solution_version` against the simulator: an unmanaged
//! solution takes the new version; a managed one's refusal comes back as
//! Dataverse's error, not retried.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use slipway_dataverse::{DataverseError, ImportRequest};
use slipway_testkit::solution_zip::SolutionZip;

#[tokio::test]
async fn sets_the_version_of_an_unmanaged_solution_only() {
    let (sim, client) = common::dev_only().await;
    for zip in [
        SolutionZip::new("ContosoApp", "1.2.3.4").build(),
        SolutionZip::new("Vendor", "2.0.0.0").managed(true).build(),
    ] {
        client
            .import_solution(&ImportRequest::new(Bytes::from(zip)))
            .await
            .unwrap();
    }

    let app = client.solution("ContosoApp").await.unwrap().unwrap();
    client
        .set_solution_version(app.solution_id, "1.2.3.5")
        .await
        .unwrap();
    assert_eq!(
        client
            .solution("ContosoApp")
            .await
            .unwrap()
            .unwrap()
            .version,
        "1.2.3.5"
    );

    let vendor = client.solution("Vendor").await.unwrap().unwrap();
    let requests = sim.stats("dev").unwrap().requests;
    let err = client
        .set_solution_version(vendor.solution_id, "2.0.0.1")
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let DataverseError::Api {
        status, message, ..
    } = &err
    else {
        panic!("expected Dataverse's refusal, got {err:?}");
    };
    assert_eq!(*status, 400);
    assert!(message.contains("Vendor is managed"), "{message}");
    assert_eq!(
        sim.stats("dev").unwrap().requests,
        requests + 1,
        "a refusal is not retried"
    );
    assert_eq!(
        client.solution("Vendor").await.unwrap().unwrap().version,
        "2.0.0.0"
    );
}
