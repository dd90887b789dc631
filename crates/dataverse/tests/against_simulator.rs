//! The client's whole suite, over real HTTP, against the environment
//! simulator started in-process on port 0 (one simulator per test).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use slipway_dataverse::{
    AsyncStatus, Client, ClientConfig, ComponentParameter, Credentials, DataverseError,
    ImportRequest, RetryPolicy,
};
use slipway_envsim::config::{ClientCredentials, ConnectionConfig, EnvironmentConfig};
use slipway_envsim::{Config, EnvSim, Faults, Running};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};

const OUTLOOK: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";
const SHAREPOINT: &str = "/providers/Microsoft.PowerApps/apis/shared_sharepointonline";

fn sim_config(token_lifetime_secs: u64) -> Config {
    let mut config = Config::in_memory();
    config.token_lifetime_secs = token_lifetime_secs;
    config.dev_tokens = vec!["dev-token".into()];
    config.clients = vec![ClientCredentials {
        client_id: "slipway".into(),
        client_secret: "s3cret".into(),
    }];
    config.environments = vec![EnvironmentConfig {
        connections: vec![
            ConnectionConfig {
                id: "outlook-1".into(),
                connector_id: OUTLOOK.into(),
                display_name: Some("Outlook".into()),
                status: "Connected".into(),
            },
            ConnectionConfig {
                id: "sharepoint-1".into(),
                connector_id: SHAREPOINT.into(),
                display_name: None,
                status: "Connected".into(),
            },
        ],
        ..EnvironmentConfig::new("dev")
    }];
    config
}

async fn sim(token_lifetime_secs: u64) -> Running {
    EnvSim::start(sim_config(token_lifetime_secs))
        .await
        .unwrap()
}

fn config_for(sim: &Running, secret: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        sim.env_url("dev"),
        Credentials::ClientSecret {
            token_url: sim.token_url(),
            client_id: "slipway".into(),
            client_secret: secret.into(),
            scope: None,
        },
    );
    c.request_timeout = Duration::from_secs(10);
    c.retry = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    };
    c.poll_interval = Duration::from_millis(50);
    c.poll_timeout = Some(Duration::from_secs(30));
    c
}

fn client(sim: &Running) -> Client {
    Client::new(config_for(sim, "s3cret")).unwrap()
}

fn app_zip(version: &str) -> Bytes {
    Bytes::from(
        SolutionZip::new("ContosoApp", version)
            .publisher("contoso", "cts")
            .root_component(1, "cts_order")
            .connection_reference("cts_outlook", OUTLOOK)
            .env_var("cts_ApiUrl", 100000000, Some("https://default"), None)
            .env_var("cts_Retries", 100000001, Some("3"), None)
            .build(),
    )
}

#[tokio::test]
async fn who_am_i_uses_client_credentials_and_caches_the_token() {
    let sim = sim(3600).await;
    let c = client(&sim);
    let first = c.who_am_i().await.unwrap();
    let second = c.who_am_i().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(sim.tokens_issued(), 1, "the token must be cached");
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_error_naming_the_endpoint() {
    let sim = sim(3600).await;
    let c = Client::new(config_for(&sim, "wrong")).unwrap();
    let err = c.who_am_i().await.unwrap_err();
    match &err {
        DataverseError::Auth { url, message } => {
            assert_eq!(url, &sim.token_url());
            assert!(message.contains("invalid_client"), "{message}");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_static_token_works_and_a_bad_one_gets_401() {
    let sim = sim(3600).await;
    let mut config = config_for(&sim, "unused");
    config.credentials = Credentials::StaticToken("dev-token".into());
    Client::new(config.clone())
        .unwrap()
        .who_am_i()
        .await
        .unwrap();
    config.credentials = Credentials::StaticToken("nope".into());
    let err = Client::new(config).unwrap().who_am_i().await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(sim.tokens_issued(), 0);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    // Lifetime 2 s: the client refreshes after half of it.
    let sim = sim(2).await;
    let c = client(&sim);
    c.who_am_i().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.who_am_i().await.unwrap();
    assert_eq!(sim.tokens_issued(), 2);
    assert_eq!(
        sim.stats("dev").unwrap().unauthorized,
        0,
        "no request may go out with a stale token"
    );
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once_and_retries() {
    let sim = sim(3600).await;
    let c = client(&sim);
    c.who_am_i().await.unwrap();
    sim.revoke_tokens();
    c.who_am_i().await.unwrap();
    assert_eq!(sim.tokens_issued(), 2);
    assert_eq!(sim.stats("dev").unwrap().unauthorized, 1);
}

#[tokio::test]
async fn the_token_endpoint_is_retried_like_the_web_api() {
    let sim = sim(3600).await;
    sim.set_token_faults(Faults {
        server_error_every_nth: 1,
        ..Faults::default()
    });
    let c = client(&sim);
    let err = c.who_am_i().await.unwrap_err();
    match &err {
        DataverseError::Auth { message, .. } => {
            assert!(message.contains("temporarily_unavailable"), "{message}")
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert_eq!(sim.token_stats().requests, 4, "1 attempt + 3 retries");

    // Request 5 is throttled, its retry gets the token.
    sim.set_token_faults(Faults {
        throttle_every_nth: 5,
        ..Faults::default()
    });
    c.who_am_i().await.unwrap();
    let stats = sim.token_stats();
    assert_eq!((stats.requests, stats.throttled), (6, 1));
    assert_eq!(sim.tokens_issued(), 1);
}

#[tokio::test]
async fn throttling_waits_for_retry_after_then_succeeds() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            throttle_every_nth: 2,
            retry_after_secs: 1,
            ..Faults::default()
        },
    )
    .unwrap();
    let c = client(&sim);
    c.who_am_i().await.unwrap(); // request 1
    let started = Instant::now();
    c.who_am_i().await.unwrap(); // request 2 throttled, 3 succeeds
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the client must wait Retry-After before retrying"
    );
    assert_eq!(sim.stats("dev").unwrap().throttled, 1);
}

#[tokio::test]
async fn a_retry_after_beyond_the_bound_fails_as_throttled() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            throttle_every_nth: 1,
            retry_after_secs: 600,
            ..Faults::default()
        },
    )
    .unwrap();
    let err = client(&sim).who_am_i().await.unwrap_err();
    assert!(
        matches!(
            err,
            DataverseError::Throttled {
                retry_after_secs: 600
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            server_error_every_nth: 2,
            ..Faults::default()
        },
    )
    .unwrap();
    let c = client(&sim);
    for _ in 0..3 {
        c.solutions().await.unwrap();
    }
    let stats = sim.stats("dev").unwrap();
    assert!(stats.server_errors >= 1, "{stats:?}");
}

#[tokio::test]
async fn retries_stop_at_the_configured_bound_with_the_odata_error() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            server_error_every_nth: 1,
            server_error_status: Some(502),
            ..Faults::default()
        },
    )
    .unwrap();
    let err = client(&sim).who_am_i().await.unwrap_err();
    assert_eq!(err.status(), Some(502), "{err}");
    assert_eq!(err.code(), Some("0x80040216"));
    assert_eq!(
        sim.stats("dev").unwrap().requests,
        4,
        "1 attempt + 3 retries"
    );
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            response_delay_ms: 2000,
            ..Faults::default()
        },
    )
    .unwrap();
    let mut config = config_for(&sim, "s3cret");
    config.request_timeout = Duration::from_millis(300);
    config.retry.max_retries = 1;
    let err = Client::new(config).unwrap().who_am_i().await.unwrap_err();
    match &err {
        DataverseError::Transport {
            attempts, source, ..
        } => {
            assert_eq!(*attempts, 2);
            assert!(source.is_timeout(), "{source}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(sim.stats("dev").unwrap().requests, 2);
}

#[tokio::test]
async fn odata_errors_carry_code_and_message() {
    let sim = sim(3600).await;
    let err = client(&sim)
        .export_solution("NotThere", false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("0x80040217"));
    assert!(err.to_string().contains("NotThere"), "{err}");
}

#[tokio::test]
async fn import_export_and_the_records_it_creates() {
    let sim = sim(3600).await;
    let c = client(&sim);
    let zip = app_zip("1.0.0.0");
    let mut request = ImportRequest::new(zip.clone());
    request.component_parameters = vec![
        ComponentParameter::EnvironmentVariableValue {
            schema_name: "cts_ApiUrl".into(),
            value: "https://test.example".into(),
        },
        ComponentParameter::ConnectionReference {
            logical_name: "cts_outlook".into(),
            connection_id: "outlook-1".into(),
        },
    ];
    let op = c.import_solution(&request).await.unwrap();
    assert_eq!(op.statuscode, AsyncStatus::Succeeded);
    assert!(op.is_completed());

    let installed = c.solution("contosoapp").await.unwrap().unwrap();
    assert_eq!(installed.unique_name, "ContosoApp");
    assert_eq!(installed.version, "1.0.0.0");
    assert!(!installed.is_managed);
    assert_eq!(c.solutions().await.unwrap(), vec![installed.clone()]);
    // The pick list: the same rows, each with its publisher expanded.
    let listed = c.solutions_with_publishers().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].solution, installed);
    let publisher = listed[0].publisher.clone().unwrap();
    assert_eq!(publisher.unique_name, "contoso");
    assert_eq!(publisher.friendly_name.as_deref(), Some("contoso"));
    assert_eq!(c.solution("Other").await.unwrap(), None);
    assert_eq!(
        c.solution("O'Brien").await.unwrap(),
        None,
        "quotes are escaped"
    );

    // Unmanaged export returns the imported bytes; managed export the same package marked managed.
    assert_eq!(c.export_solution("ContosoApp", false).await.unwrap(), zip);
    let managed = c.export_solution("ContosoApp", true).await.unwrap();
    let read = slipway_solution::Solution::from_bytes(&managed, &Default::default()).unwrap();
    assert!(read.managed);
    assert_eq!(read.unique_name, "ContosoApp");
    assert_eq!(read.root_components.len(), 1);

    let defs = c.environment_variable_definitions().await.unwrap();
    let names: Vec<&str> = defs.iter().map(|d| d.schema_name.as_str()).collect();
    assert_eq!(names, ["cts_ApiUrl", "cts_Retries"]);
    assert_eq!(defs[1].kind, 100000001);
    assert_eq!(defs[1].default_value.as_deref(), Some("3"));
    let values = c.environment_variable_values().await.unwrap();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].value.as_deref(), Some("https://test.example"));
    assert_eq!(values[0].definition_id, Some(defs[0].id));

    let refs = c.connection_references().await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].logical_name, "cts_outlook");
    assert_eq!(refs[0].connector_id.as_deref(), Some(OUTLOOK));
    assert_eq!(refs[0].connection_id.as_deref(), Some("outlook-1"));

    let connections = c.connections().await.unwrap();
    assert_eq!(connections.len(), 2);
    assert_eq!(connections[0].id, "outlook-1");
    assert_eq!(connections[0].status, "Connected");
}

#[tokio::test]
async fn a_long_import_is_polled_to_its_end() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            import_delay_ms: 1500,
            ..Faults::default()
        },
    )
    .unwrap();
    let c = client(&sim);
    let started = c
        .import_solution_async(&ImportRequest::new(app_zip("1.0.0.0")))
        .await
        .unwrap();
    let running = c.async_operation(started.async_operation_id).await.unwrap();
    assert!(!running.is_completed());
    assert_eq!(running.statuscode, AsyncStatus::InProgress);
    let done = c
        .wait_for_async_operation(started.async_operation_id)
        .await
        .unwrap();
    assert_eq!(done.statuscode, AsyncStatus::Succeeded);
    assert!(sim.stats("dev").unwrap().requests >= 5, "several polls");
}

#[tokio::test]
async fn polling_a_long_import_outlives_failed_polls() {
    let sim = sim(3600).await;
    // Every other request fails and the client does not retry within a
    // request: only the tolerance of failed polls gets the wait to the end.
    sim.set_faults(
        "dev",
        Faults {
            import_delay_ms: 600,
            server_error_every_nth: 2,
            ..Faults::default()
        },
    )
    .unwrap();
    let mut config = config_for(&sim, "s3cret");
    config.retry.max_retries = 0;
    config.poll_failures_tolerated = 1;
    let c = Client::new(config.clone()).unwrap();
    let op = c
        .import_solution(&ImportRequest::new(app_zip("1.0.0.0")))
        .await
        .unwrap();
    assert_eq!(op.statuscode, AsyncStatus::Succeeded);
    assert!(sim.stats("dev").unwrap().server_errors >= 2);

    // Without the tolerance the first failed poll ends the wait.
    config.poll_failures_tolerated = 0;
    let err = Client::new(config)
        .unwrap()
        .import_solution(&ImportRequest::new(app_zip("1.0.0.1")))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
}

#[tokio::test]
async fn a_failed_import_returns_dataverse_message() {
    let sim = sim(3600).await;
    let c = client(&sim);
    let consumer = SolutionZip::new("Consumer", "1.0.0.0")
        .publisher("contoso", "cts")
        .root_component(1, "cts_invoice")
        .missing_dependency(
            DepEnd::new("1", "cts_customer")
                .display_name("Customer")
                .solution("Active"),
            DepEnd::new("1", "cts_invoice").display_name("Invoice"),
        )
        .build();
    let err = c
        .import_solution(&ImportRequest::new(Bytes::from(consumer)))
        .await
        .unwrap_err();
    match err {
        DataverseError::AsyncOperationFailed {
            status, message, ..
        } => {
            assert_eq!(status, AsyncStatus::Failed);
            assert!(
                message.starts_with("The following solution cannot be imported: Consumer. Some dependencies are missing."),
                "{message}"
            );
            assert!(message.contains("schemaName=\"cts_customer\""), "{message}");
        }
        other => panic!("expected a failed operation, got {other:?}"),
    }
}

#[tokio::test]
async fn an_injected_import_failure_is_reported_with_its_message() {
    let sim = sim(3600).await;
    sim.set_faults(
        "dev",
        Faults {
            fail_imports_with: Some("Solution manifest import: FAILURE: disk full".into()),
            ..Faults::default()
        },
    )
    .unwrap();
    let err = client(&sim)
        .import_solution(&ImportRequest::new(app_zip("1.0.0.0")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FAILURE: disk full"), "{err}");
}

#[tokio::test]
async fn a_holding_solution_is_staged_then_promoted_dropping_removed_components() {
    let first = sim(3600).await;
    let c = client(&first);
    let tables = |version: &str, tables: &[&str]| {
        let mut z = SolutionZip::new("Core", version)
            .publisher("contoso", "cts")
            .managed(true);
        for t in tables {
            z = z.root_component(1, t);
        }
        Bytes::from(z.build())
    };
    let needs = |name: &str, table: &str| {
        Bytes::from(
            SolutionZip::new(name, "1.0.0.0")
                .managed(true)
                .root_component(1, &format!("cts_{name}"))
                .missing_dependency(
                    DepEnd::new("1", table).solution("Core (1.0)"),
                    DepEnd::new("1", &format!("cts_{name}")),
                )
                .build(),
        )
    };
    let holding = |zip: Bytes| {
        let mut r = ImportRequest::new(zip);
        r.holding_solution = true;
        r
    };
    // Nothing to hold over yet.
    let err = c
        .import_solution(&holding(tables("2.0.0.0", &["cts_a"])))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("install Core as managed first"),
        "{err}"
    );

    c.import_solution(&ImportRequest::new(tables("1.0.0.0", &["cts_a", "cts_b"])))
        .await
        .unwrap();
    c.import_solution(&holding(tables("2.0.0.0", &["cts_a"])))
        .await
        .unwrap();
    let names: Vec<(String, String)> = c
        .solutions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.unique_name, s.version))
        .collect();
    assert_eq!(
        names,
        [
            ("Core".to_string(), "1.0.0.0".to_string()),
            ("Core_Upgrade".to_string(), "2.0.0.0".to_string())
        ]
    );
    // Until promoted, cts_b is still there; no other version may be imported.
    c.import_solution(&ImportRequest::new(needs("usesb", "cts_b")))
        .await
        .unwrap();
    let err = c
        .import_solution(&ImportRequest::new(tables("3.0.0.0", &["cts_a"])))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DeleteAndPromote"), "{err}");

    // cts_b is required by usesb: promotion refused, with the reason.
    let err = c.delete_and_promote("Core").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("usesb"), "{err}");

    // In a fresh environment nothing needs cts_b: promotion drops it.
    let sim2 = sim(3600).await;
    let c = client(&sim2);
    c.import_solution(&ImportRequest::new(tables("1.0.0.0", &["cts_a", "cts_b"])))
        .await
        .unwrap();
    c.import_solution(&holding(tables("2.0.0.0", &["cts_a"])))
        .await
        .unwrap();
    c.delete_and_promote("Core").await.unwrap();
    let core = c.solution("Core").await.unwrap().unwrap();
    assert_eq!(core.version, "2.0.0.0");
    assert!(c.solution("Core_Upgrade").await.unwrap().is_none());
    let err = c
        .import_solution(&ImportRequest::new(needs("usesb", "cts_b")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("schemaName=\"cts_b\""), "{err}");
    c.import_solution(&ImportRequest::new(needs("usesa", "cts_a")))
        .await
        .unwrap();
    let err = c.delete_and_promote("Core").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[tokio::test]
async fn the_same_import_job_id_names_the_same_operation() {
    let sim = sim(3600).await;
    let c = client(&sim);
    let mut request = ImportRequest::new(app_zip("1.0.0.0"));
    request.import_job_id = Some(uuid::Uuid::new_v4());
    let a = c.import_solution_async(&request).await.unwrap();
    let b = c.import_solution_async(&request).await.unwrap();
    assert_eq!(a.async_operation_id, b.async_operation_id);
}

#[tokio::test]
async fn stage_solution_reports_missing_dependencies_without_installing() {
    let sim = sim(3600).await;
    let c = client(&sim);
    let zip = Bytes::from(
        SolutionZip::new("Consumer", "1.0.0.0")
            .missing_dependency(
                DepEnd::new("1", "cts_customer").display_name("Customer"),
                DepEnd::new("1", "cts_invoice"),
            )
            .build(),
    );
    let staged = c.stage_solution(&zip).await.unwrap();
    assert_eq!(staged.stage_solution_status.as_deref(), Some("Failed"));
    let errors: Vec<_> = staged.errors().collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].error_code, -2147188707);
    assert_eq!(staged.missing_dependencies.len(), 1);
    assert_eq!(
        staged.missing_dependencies[0]
            .required_component_schema_name
            .as_deref(),
        Some("cts_customer")
    );
    let details = staged.solution_details.unwrap();
    assert_eq!(details.solution_unique_name.as_deref(), Some("Consumer"));
    assert_eq!(details.is_managed, Some(false));

    let ok = c.stage_solution(&app_zip("1.0.0.0")).await.unwrap();
    assert_eq!(ok.stage_solution_status.as_deref(), Some("Passed"));
    assert_eq!(ok.errors().count(), 0);
    assert!(
        c.solutions().await.unwrap().is_empty(),
        "staging installs nothing"
    );
}

#[tokio::test]
async fn bad_configuration_is_refused_before_any_request() {
    let err = Client::new(ClientConfig::new(
        "contoso.crm.dynamics.com",
        Credentials::StaticToken("t".into()),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
}
