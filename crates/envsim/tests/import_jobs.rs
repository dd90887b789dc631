//! The import job of an `ImportSolutionAsync` (`importjobs(<ImportJobId>)`):
//! its progress grows with the simulated import and is 100 once it is over,
//! over real HTTP through the Dataverse client.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::Value;
use slipway_dataverse::{AsyncStatus, ImportRequest};
use slipway_envsim::{EnvSim, Faults};
use slipway_testkit::solution_zip::SolutionZip;
use uuid::Uuid;

#[tokio::test]
async fn an_import_jobs_progress_grows_while_it_runs_and_is_100_when_done() {
    let sim = EnvSim::start(config()).await.unwrap();
    sim.set_faults(
        "test",
        Faults {
            import_delay_ms: 1_500,
            ..Faults::default()
        },
    )
    .unwrap();
    let c = client(&sim, "test");
    let job = Uuid::new_v4();
    let zip = SolutionZip::new("Invoices", "1.0.0.0")
        .publisher("contoso", "cts")
        .managed(true)
        .root_component(1, "cts_invoice")
        .build();
    let request = ImportRequest {
        import_job_id: Some(job),
        ..ImportRequest::new(Bytes::from(zip))
    };
    let started = c.import_solution_async(&request).await.unwrap();

    // While it runs: started, not completed, a percentage that grows and
    // stays under 100.
    let mut seen = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let running = c.import_job(job).await.unwrap().unwrap();
        assert!(running.started_on.is_some(), "{running:?}");
        assert_eq!(running.completed_on, None, "{running:?}");
        assert_eq!(running.solution_name.as_deref(), Some("Invoices"));
        seen.push(running.progress.unwrap());
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress grows: {seen:?}"
    );
    assert!(seen[0] > 0.0 && seen[3] < 99.5, "within the run: {seen:?}");

    let done = c
        .wait_for_async_operation(started.async_operation_id)
        .await
        .unwrap();
    assert_eq!(done.statuscode, AsyncStatus::Succeeded);
    let over = c.import_job(job).await.unwrap().unwrap();
    assert_eq!(over.progress, Some(100.0), "{over:?}");
    assert!(over.completed_on.is_some(), "{over:?}");
}

#[tokio::test]
async fn an_unknown_import_job_is_a_dataverse_404_and_unknown_columns_are_refused() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    let unknown = Uuid::new_v4();
    assert_eq!(c.import_job(unknown).await.unwrap(), None);

    let http = http();
    let resp = http
        .get(format!(
            "{}/api/data/v9.2/importjobs({unknown})?$select=progress",
            sim.env_url("test")
        ))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "0x80040217", "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("importjob With Id = {unknown} Does Not Exist")
    );

    // A job that exists, asked for a column importjobs do not have.
    let job = Uuid::new_v4();
    let zip = SolutionZip::new("Invoices", "1.0.0.0")
        .publisher("contoso", "cts")
        .managed(true)
        .build();
    c.import_solution_async(&ImportRequest {
        import_job_id: Some(job),
        ..ImportRequest::new(Bytes::from(zip))
    })
    .await
    .unwrap();
    let resp = http
        .get(format!(
            "{}/api/data/v9.2/importjobs({job})?$select=progress,percent",
            sim.env_url("test")
        ))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'percent' on type 'Microsoft.Dynamics.CRM.importjob'"),
        "{body}"
    );
}
