//! Import semantics of the simulator, with realistic solutions built by the
//! testkit, over real HTTP (simulator in-process on port 0).
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use slipway_dataverse::{ComponentParameter, ImportRequest};
use slipway_envsim::EnvSim;
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};

/// Provider: owns tables `cts_customer` and `cts_region`.
fn provider(version: &str, tables: &[&str]) -> SolutionZip {
    let mut z = SolutionZip::new("CoreTables", version)
        .publisher("contoso", "cts")
        .managed(true);
    for t in tables {
        z = z.root_component(1, t);
    }
    z
}

/// Consumer: needs `table` from the provider.
fn consumer(name: &str, table: &str) -> SolutionZip {
    SolutionZip::new(name, "1.0.0.0")
        .publisher("contoso", "cts")
        .managed(true)
        .root_component(1, &format!("cts_{name}").to_lowercase())
        .missing_dependency(
            DepEnd::new("1", table)
                .display_name(table)
                .solution("CoreTables (1.0.0.0)"),
            DepEnd::new("1", &format!("cts_{name}").to_lowercase()),
        )
}

#[tokio::test]
async fn missing_dependencies_fail_until_the_provider_is_installed() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    let app = consumer("Invoices", "cts_customer").build();

    let message = import_error(&c, app.clone()).await;
    assert!(
        message.starts_with(
            "The following solution cannot be imported: Invoices. Some dependencies are missing. \
             The missing dependencies are : <MissingDependencies><MissingDependency><Required type=\"1\" schemaName=\"cts_customer\""
        ),
        "{message}"
    );
    assert!(c.solution("Invoices").await.unwrap().is_none());

    import(
        &c,
        provider("1.0.0.0", &["cts_customer", "cts_region"]).build(),
    )
    .await
    .unwrap();
    import(&c, app).await.unwrap();
    let installed = c.solution("Invoices").await.unwrap().unwrap();
    assert!(installed.is_managed);
}

#[tokio::test]
async fn dependencies_compare_case_insensitively_and_platform_solutions_count() {
    let mut config = config();
    config.environments[0].platform_solutions = vec!["AppModuleWebResources".into()];
    let sim = EnvSim::start(config).await.unwrap();
    let c = client(&sim, "test");
    import(&c, provider("1.0.0.0", &["cts_Customer"]).build())
        .await
        .unwrap();
    let app = consumer("Invoices", "CTS_CUSTOMER")
        .missing_dependency(
            DepEnd::new("61", "msdyn_/Images/AppModule_Default_Icon.png")
                .solution("AppModuleWebResources (2.5)"),
            DepEnd::new("80", "cts_app"),
        )
        .build();
    import(&c, app).await.unwrap();
}

#[tokio::test]
async fn lower_versions_are_refused_and_equal_ones_accepted() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(&c, provider("1.2.0.0", &["cts_customer"]).build())
        .await
        .unwrap();
    let message = import_error(&c, provider("1.1.9.9", &["cts_customer"]).build()).await;
    assert!(
        message.contains("lower than the installed version (1.2.0.0)"),
        "{message}"
    );
    import(&c, provider("1.2.0.0", &["cts_customer"]).build())
        .await
        .unwrap();
    import(&c, provider("1.10", &["cts_customer"]).build())
        .await
        .unwrap();
    assert_eq!(
        c.solution("CoreTables").await.unwrap().unwrap().version,
        "1.10"
    );
}

#[tokio::test]
async fn managed_cannot_overwrite_unmanaged_nor_the_reverse() {
    let mut config = config();
    config.environments.push(environment("other"));
    let sim = EnvSim::start(config).await.unwrap();
    let c = client(&sim, "test");
    import(
        &c,
        provider("1.0.0.0", &["cts_customer"])
            .managed(false)
            .build(),
    )
    .await
    .unwrap();
    let message = import_error(&c, provider("2.0.0.0", &["cts_customer"]).build()).await;
    assert!(
        message.contains("already installed on this system as an unmanaged solution")
            && message.contains("Import can only update solutions when the modes match"),
        "{message}"
    );

    // The reverse, in a second environment.
    let c2 = client(&sim, "other");
    import(&c2, provider("1.0.0.0", &["cts_customer"]).build())
        .await
        .unwrap();
    let message = import_error(
        &c2,
        provider("2.0.0.0", &["cts_customer"])
            .managed(false)
            .build(),
    )
    .await;
    assert!(message.contains("as a managed solution"), "{message}");
}

#[tokio::test]
async fn a_managed_solution_cannot_take_over_unmanaged_components() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(
        &c,
        SolutionZip::new("DevWork", "1.0.0.0")
            .root_component(1, "cts_customer")
            .build(),
    )
    .await
    .unwrap();
    let message = import_error(
        &c,
        provider("1.0.0.0", &["cts_Customer", "cts_region"]).build(),
    )
    .await;
    assert!(
        message.starts_with(
            "A managed solution cannot overwrite the Entity component cts_customer which has an \
             unmanaged base instance (installed by unmanaged solution DevWork)"
        ),
        "{message}"
    );
    assert!(c.solution("CoreTables").await.unwrap().is_none());
    // Unmanaged over unmanaged components is fine (they merge).
    import(
        &c,
        provider("1.0.0.0", &["cts_customer"])
            .managed(false)
            .build(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_upgrade_removes_dropped_components_unless_others_need_them() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(
        &c,
        provider("1.0.0.0", &["cts_customer", "cts_region", "cts_legacy"]).build(),
    )
    .await
    .unwrap();
    import(&c, consumer("Invoices", "cts_customer").build())
        .await
        .unwrap();

    // v2 drops cts_customer, which Invoices needs: refused.
    let message = import_error(&c, provider("2.0.0.0", &["cts_region"]).build()).await;
    assert!(
        message.contains("cts_customer") && message.contains("Invoices"),
        "{message}"
    );
    assert_eq!(
        c.solution("CoreTables").await.unwrap().unwrap().version,
        "1.0.0.0"
    );

    // v2 drops only cts_legacy: accepted, and cts_legacy is gone.
    import(
        &c,
        provider("2.0.0.0", &["cts_customer", "cts_region"]).build(),
    )
    .await
    .unwrap();
    let message = import_error(&c, consumer("Reports", "cts_legacy").build()).await;
    assert!(message.contains("schemaName=\"cts_legacy\""), "{message}");
    import(&c, consumer("Regions", "cts_region").build())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unmanaged_update_never_removes_components() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(
        &c,
        provider("1.0.0.0", &["cts_customer", "cts_legacy"])
            .managed(false)
            .build(),
    )
    .await
    .unwrap();
    import(
        &c,
        provider("2.0.0.0", &["cts_customer"])
            .managed(false)
            .build(),
    )
    .await
    .unwrap();
    import(&c, consumer("Reports", "cts_legacy").build())
        .await
        .unwrap();
}

fn with_connection(version: &str) -> SolutionZip {
    SolutionZip::new("Flows", version)
        .publisher("contoso", "cts")
        .managed(true)
        .connection_reference("cts_sharepoint", SHAREPOINT)
        .env_var("cts_Retries", 100000001, Some("3"), None)
        .env_var("cts_Site", 100000000, None, Some("https://packaged"))
}

async fn import_with(
    c: &slipway_dataverse::Client,
    zip: Vec<u8>,
    params: Vec<ComponentParameter>,
) -> Result<slipway_dataverse::AsyncOperation, slipway_dataverse::DataverseError> {
    let mut r = ImportRequest::new(Bytes::from(zip));
    r.component_parameters = params;
    c.import_solution(&r).await
}

fn bind(connection: &str) -> ComponentParameter {
    ComponentParameter::ConnectionReference {
        logical_name: "cts_sharepoint".into(),
        connection_id: connection.into(),
    }
}

#[tokio::test]
async fn connection_references_must_point_at_a_usable_connection_of_their_connector() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    let cases = [
        ("outlook-1", "needs a connection of connector"),
        (
            "nope",
            "connection nope does not exist in environment test; connections of connector",
        ),
        ("sharepoint-broken", "is in status Error"),
    ];
    for (connection, expected) in cases {
        let err = import_with(
            &c,
            with_connection("1.0.0.0").build(),
            vec![bind(connection)],
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(expected), "{connection}: {err}");
    }
    import_with(
        &c,
        with_connection("1.0.0.0").build(),
        vec![bind("sharepoint-1")],
    )
    .await
    .unwrap();
    let refs = c.connection_references().await.unwrap();
    assert_eq!(refs[0].connection_id.as_deref(), Some("sharepoint-1"));

    // A later import without parameters keeps the binding.
    import(&c, with_connection("1.0.0.1").build())
        .await
        .unwrap();
    let refs = c.connection_references().await.unwrap();
    assert_eq!(refs[0].connection_id.as_deref(), Some("sharepoint-1"));
}

#[tokio::test]
async fn environment_variable_values_come_from_parameters_and_must_fit_their_type() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    let set = |schema: &str, value: &str| ComponentParameter::EnvironmentVariableValue {
        schema_name: schema.into(),
        value: value.into(),
    };
    let err = import_with(
        &c,
        with_connection("1.0.0.0").build(),
        vec![set("cts_Retries", "many")],
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("cts_Retries must be a number"),
        "{err}"
    );
    let err = import_with(
        &c,
        with_connection("1.0.0.0").build(),
        vec![set("cts_Unknown", "1")],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cts_Unknown"), "{err}");

    import_with(
        &c,
        with_connection("1.0.0.0").build(),
        vec![set("cts_Retries", "5")],
    )
    .await
    .unwrap();
    let values: Vec<(String, Option<String>)> = c
        .environment_variable_values()
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.schema_name, v.value))
        .collect();
    assert_eq!(
        values,
        [
            ("cts_Retries".to_string(), Some("5".to_string())),
            ("cts_Site".to_string(), Some("https://packaged".to_string())),
        ]
    );
}

#[tokio::test]
async fn unreadable_packages_fail_the_import_with_a_clear_message() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    let message = import_error(&c, b"not a zip".to_vec()).await;
    assert!(
        message.starts_with("The import file is not a valid solution package"),
        "{message}"
    );
}

#[tokio::test]
async fn managed_solutions_cannot_be_exported() {
    let sim = EnvSim::start(config()).await.unwrap();
    let c = client(&sim, "test");
    import(&c, provider("1.0.0.0", &["cts_customer"]).build())
        .await
        .unwrap();
    let err = c.export_solution("CoreTables", false).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string()
            .contains("is managed and cannot be exported"),
        "{err}"
    );
}

#[tokio::test]
async fn environments_are_isolated() {
    let mut config = config();
    config.environments.push(environment("prod"));
    let sim = EnvSim::start(config).await.unwrap();
    import(
        &client(&sim, "test"),
        provider("1.0.0.0", &["cts_customer"]).build(),
    )
    .await
    .unwrap();
    assert!(client(&sim, "prod").solutions().await.unwrap().is_empty());
    let a = client(&sim, "test").who_am_i().await.unwrap();
    let b = client(&sim, "prod").who_am_i().await.unwrap();
    assert_ne!(a.organization_id, b.organization_id);
}

#[tokio::test]
async fn packages_from_a_newer_platform_are_refused() {
    let mut config = config();
    config.environments[0].platform_version = Some("9.1.0.23474".into());
    let sim = EnvSim::start(config).await.unwrap();
    let c = client(&sim, "test");
    let message = import_error(
        &c,
        provider("1.0.0.0", &["cts_customer"])
            .package_version("9.2")
            .build(),
    )
    .await;
    assert!(
        message.contains("newer version of Dataverse (SolutionPackageVersion 9.2)"),
        "{message}"
    );
    import(
        &c,
        provider("1.0.0.0", &["cts_customer"])
            .package_version("9.1")
            .build(),
    )
    .await
    .unwrap();
}
