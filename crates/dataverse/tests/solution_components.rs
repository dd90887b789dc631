//! `Client::solution_components` against the simulator: the components of
//! one installed solution, named as packages name them.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use slipway_dataverse::ImportRequest;
use slipway_testkit::solution_zip::SolutionZip;

const FLOW_ID: &str = "6b53c887-1111-2222-3333-444455556666";

#[tokio::test]
async fn lists_the_components_of_one_installed_solution() {
    let (_sim, client) = common::dev_only().await;

    let app = SolutionZip::new("ContosoApp", "1.0.0.0")
        .root_component(1, "cts_Project")
        .flow("Sync", FLOW_ID, "{}")
        .env_var("cts_Url", 100000000, Some("https://x"), None)
        .build();
    let other = SolutionZip::new("Other", "1.0.0.0")
        .root_component(1, "oth_thing")
        .build();
    for zip in [app, other] {
        client
            .import_solution(&ImportRequest::new(Bytes::from(zip)))
            .await
            .unwrap();
    }

    let installed = client.solution("ContosoApp").await.unwrap().unwrap();
    let rows = client
        .solution_components(installed.solution_id)
        .await
        .unwrap();
    let entity = rows
        .iter()
        .find(|r| r.schema_name.as_deref() == Some("cts_project"))
        .unwrap_or_else(|| panic!("no table row in {rows:?}"));
    assert_eq!(entity.type_code(), Some(1));
    assert_eq!(entity.component_type_name.as_deref(), Some("Entity"));
    assert_eq!(entity.object_id, None);
    let flow = rows
        .iter()
        .find(|r| r.object_id.as_deref() == Some(FLOW_ID))
        .unwrap_or_else(|| panic!("no flow row in {rows:?}"));
    assert_eq!(flow.type_code(), Some(29));
    assert_eq!(flow.schema_name, None);
    assert!(
        rows.iter()
            .any(|r| r.type_code() == Some(380) && r.schema_name.as_deref() == Some("cts_url")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r.schema_name.as_deref() != Some("oth_thing")),
        "another solution's component is listed: {rows:?}"
    );

    // A solution id nothing is installed under has no components.
    let none = client
        .solution_components(uuid::Uuid::new_v4())
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}
