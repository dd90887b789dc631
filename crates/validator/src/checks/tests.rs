use serde_json::json;
use slipway_dataverse::SolutionValidationResult;
use slipway_solution::Limits;
use slipway_testkit::solution_zip::SolutionZip;
use uuid::Uuid;

use super::*;

const OUTLOOK: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";
const TEAMS: &str = "/providers/Microsoft.PowerApps/apis/shared_teams";
const VAULT_REF: &str = "/subscriptions/0f6a3f1e-8b0c-4a61-9d0e-3c2b1a000001/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-app/secrets/api-key";

fn solution(zip: SolutionZip) -> Solution {
    Solution::from_bytes(&zip.build(), &Limits::default()).unwrap()
}

fn installed(version: &str, managed: bool) -> InstalledSolution {
    InstalledSolution {
        solution_id: Uuid::new_v4(),
        unique_name: "Contoso".into(),
        friendly_name: None,
        version: version.into(),
        is_managed: managed,
    }
}

fn connection(id: &str, connector: &str, status: &str) -> Connection {
    Connection {
        id: id.into(),
        connector_id: connector.into(),
        display_name: Some(format!("{id} display")),
        status: status.into(),
    }
}

fn bound(logical: &str, connection: Option<&str>) -> ConnectionReferenceRecord {
    ConnectionReferenceRecord {
        id: Uuid::new_v4(),
        logical_name: logical.into(),
        display_name: None,
        connector_id: Some(OUTLOOK.into()),
        connection_id: connection.map(Into::into),
    }
}

fn outlook_ref() -> ConnectionReference {
    ConnectionReference {
        logical_name: "cts_outlook".into(),
        display_name: Some("Outlook".into()),
        connector_id: OUTLOOK.into(),
    }
}

fn env_var(
    schema: &str,
    kind: EnvironmentVariableType,
    default: Option<&str>,
) -> EnvironmentVariable {
    EnvironmentVariable {
        schema_name: schema.into(),
        display_name: None,
        kind,
        default_value: default.map(Into::into),
        current_value: None,
        required: false,
        api_id: None,
        parameter_key: None,
        parent: None,
    }
}

fn current(schema: &str, value: &str) -> EnvironmentVariableValue {
    EnvironmentVariableValue {
        id: Uuid::new_v4(),
        schema_name: schema.into(),
        value: Some(value.into()),
        definition_id: None,
    }
}

fn settings(v: serde_json::Value) -> Settings {
    Settings::parse(Some(&v)).unwrap()
}

fn empty_report() -> ValidationReport {
    ValidationReport {
        verdict: Verdict::Passed,
        artifact_version: "1.0.0.2".into(),
        installed_version: None,
        version_problem: None,
        missing_dependencies: Vec::new(),
        errors: Vec::new(),
        connection_references: Vec::new(),
        environment_variables: Vec::new(),
        policy_violations: Vec::new(),
        diff: None,
        warnings: Vec::new(),
    }
}

#[test]
fn settings_read_pac_shape_and_skip_empty_values() {
    let s = settings(json!({
        "EnvironmentVariables": [
            {"SchemaName": "cts_Url", "Value": "https://x"},
            {"SchemaName": "cts_Empty", "Value": ""},
            {"SchemaName": "cts_Count", "Value": 5}
        ],
        "ConnectionReferences": [
            {"LogicalName": "cts_Outlook", "ConnectionId": " conn-1 ", "ConnectorId": OUTLOOK},
            {"LogicalName": "cts_blank", "ConnectionId": "", "ConnectorId": OUTLOOK}
        ]
    }));
    assert_eq!(
        s.values.get("cts_url").map(String::as_str),
        Some("https://x")
    );
    assert_eq!(s.values.get("cts_count").map(String::as_str), Some("5"));
    assert!(!s.values.contains_key("cts_empty"));
    assert_eq!(
        s.connections.get("cts_outlook").map(String::as_str),
        Some("conn-1")
    );
    assert!(!s.connections.contains_key("cts_blank"));
    assert!(Settings::parse(None).unwrap().values.is_empty());
}

#[test]
fn settings_in_another_shape_are_refused_by_name() {
    let e = Settings::parse(Some(&json!("text"))).unwrap_err();
    assert!(e.contains("not a JSON object"), "{e}");
    let e = Settings::parse(Some(&json!({"ConnectionReferences": {}}))).unwrap_err();
    assert!(
        e.contains("ConnectionReferences") && e.contains("not a list"),
        "{e}"
    );
    let e = Settings::parse(Some(&json!({"EnvironmentVariables": [{"Value": "x"}]}))).unwrap_err();
    assert!(
        e.contains("EnvironmentVariables[0]") && e.contains("SchemaName"),
        "{e}"
    );
}

#[test]
fn version_must_be_higher_unless_older_versions_are_allowed() {
    let s = solution(SolutionZip::new("Contoso", "1.0.0.2").managed(true));
    assert_eq!(version_problem(&s, None, "test", false), None);
    assert_eq!(
        version_problem(&s, Some(&installed("1.0.0.1", true)), "test", false),
        None
    );
    let p = version_problem(&s, Some(&installed("1.0.0.3", true)), "test", false).unwrap();
    assert!(
        p.starts_with("version 1.0.0.2 is not higher than 1.0.0.3 installed in test"),
        "{p}"
    );
    let p = version_problem(&s, Some(&installed("1.0.0.2", true)), "test", false).unwrap();
    assert!(p.contains("not higher than 1.0.0.2"), "{p}");
    for older_or_same in ["1.0.0.2", "1.0.0.3"] {
        assert_eq!(
            version_problem(&s, Some(&installed(older_or_same, true)), "test", true),
            None
        );
    }
}

#[test]
fn an_unmanaged_install_cannot_be_upgraded_by_a_managed_import() {
    let s = solution(SolutionZip::new("Contoso", "2.0.0.0").managed(true));
    // Even with older versions allowed and a higher version.
    let p = version_problem(&s, Some(&installed("1.0.0.0", false)), "test", true).unwrap();
    assert!(p.contains("installed unmanaged in test"), "{p}");
    assert!(p.contains("delete the unmanaged Contoso"), "{p}");
    let unmanaged = solution(SolutionZip::new("Contoso", "2.0.0.0"));
    let p = version_problem(&unmanaged, Some(&installed("1.0.0.0", true)), "test", false).unwrap();
    assert!(p.contains("installed managed"), "{p}");
}

#[test]
fn values_must_fit_their_type() {
    use EnvironmentVariableType::*;
    assert!(check_value(Number, " 42.5 ").is_ok());
    assert!(check_value(Number, "-1e3").is_ok());
    let e = check_value(Number, "abc").unwrap_err();
    assert!(e.contains("not a number") && e.contains("\"abc\""), "{e}");
    assert!(check_value(Number, "NaN").is_err());
    assert!(check_value(Number, "inf").is_err());
    for ok in ["yes", "No", "true", "FALSE"] {
        assert!(check_value(Boolean, ok).is_ok(), "{ok}");
    }
    assert!(check_value(Boolean, "1").unwrap_err().contains("yes or no"));
    assert!(check_value(Json, r#"{"a":[1,2]}"#).is_ok());
    assert!(
        check_value(Json, "{a:")
            .unwrap_err()
            .contains("not valid JSON")
    );
    assert!(check_value(String, "x").is_ok());
    assert!(check_value(String, "  ").is_err());
    assert!(check_value(DataSource, "https://contoso.sharepoint.com/sites/x").is_ok());
}

#[test]
fn secrets_must_be_key_vault_references_and_are_never_repeated() {
    use EnvironmentVariableType::Secret;
    assert!(check_value(Secret, VAULT_REF).is_ok());
    assert!(check_value(Secret, &VAULT_REF.to_ascii_lowercase()).is_ok());
    let bad = [
        "hunter2",
        "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/secrets/s",
        "/subscriptions/0f6a3f1e-8b0c-4a61-9d0e-3c2b1a000001/resourceGroups/rg/providers/Microsoft.Storage/vaults/kv/secrets/s",
        "/subscriptions/0f6a3f1e-8b0c-4a61-9d0e-3c2b1a000001/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/secrets/",
        "/subscriptions/0f6a3f1e-8b0c-4a61-9d0e-3c2b1a000001/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/secrets/s/",
        "https://kv.vault.azure.net/secrets/s",
    ];
    for value in bad {
        let e = check_value(Secret, value).unwrap_err();
        assert_eq!(
            e,
            "must be an Azure Key Vault secret reference /subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{name}"
        );
    }
    let checks = check_environment_variables(
        &[env_var("cts_Key", Secret, None)],
        &settings(json!({"EnvironmentVariables": [{"SchemaName": "cts_Key", "Value": "hunter2"}]})),
        &[],
        "test",
    );
    let problem = checks[0].problem.clone().unwrap();
    assert!(!problem.contains("hunter2"), "{problem}");
    assert!(
        problem.contains("Azure Key Vault secret reference"),
        "{problem}"
    );
}

#[test]
fn environment_variables_take_settings_then_current_then_default() {
    use EnvironmentVariableType::*;
    let vars = [
        env_var("cts_A", String, Some("default-a")),
        env_var("cts_B", String, Some("default-b")),
        env_var("cts_C", String, Some("default-c")),
        env_var("cts_D", Number, None),
        EnvironmentVariable {
            current_value: Some("packaged".into()),
            ..env_var("cts_E", String, None)
        },
    ];
    let s = settings(json!({"EnvironmentVariables": [{"SchemaName": "CTS_A", "Value": "set"}]}));
    let cur = [current("cts_a", "target-a"), current("cts_b", "target-b")];
    let checks = check_environment_variables(&vars, &s, &cur, "test");
    let sources: Vec<Option<&str>> = checks.iter().map(|c| c.value_source.as_deref()).collect();
    assert_eq!(
        sources,
        [
            Some("settings"),
            Some("current"),
            Some("default"),
            None,
            Some("default")
        ]
    );
    assert!(checks[..3].iter().all(|c| c.problem.is_none()));
    assert_eq!(checks[3].type_name, "number");
    let p = checks[3].problem.clone().unwrap();
    assert!(p.starts_with("needs a value") && p.contains("cts_D"), "{p}");
    assert_eq!(checks[4].problem, None);
}

#[test]
fn a_bad_value_names_where_it_came_from() {
    let vars = [env_var("cts_N", EnvironmentVariableType::Number, None)];
    let from_target = check_environment_variables(
        &vars,
        &Settings::default(),
        &[current("cts_N", "abc")],
        "test",
    );
    let p = from_target[0].problem.clone().unwrap();
    assert!(
        p.starts_with("the value set in test is not a number"),
        "{p}"
    );
    let from_settings = check_environment_variables(
        &vars,
        &settings(json!({"EnvironmentVariables": [{"SchemaName": "cts_N", "Value": "abc"}]})),
        &[],
        "test",
    );
    let p = from_settings[0].problem.clone().unwrap();
    assert!(
        p.starts_with("the value in the deployment settings is not a number: \"abc\""),
        "{p}"
    );
}

#[test]
fn connection_references_use_settings_then_the_bound_connection() {
    let connections = [
        connection("outlook-1", OUTLOOK, "Connected"),
        connection("outlook-broken", OUTLOOK, "Error"),
        connection("teams-1", TEAMS, "Connected"),
    ];
    let refs = [outlook_ref()];
    let none = check_connection_references(
        &refs,
        &Settings::default(),
        &[],
        Some(&connections[..]),
        "test",
    );
    let c = &none[0];
    assert_eq!(c.connection_id, None);
    assert!(
        c.problem
            .as_deref()
            .unwrap()
            .starts_with("needs a connection"),
        "{c:?}"
    );
    let ids: Vec<&str> = c.candidates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["outlook-1"],
        "only connected connections of the connector"
    );
    assert_eq!(
        c.candidates[0].display_name.as_deref(),
        Some("outlook-1 display")
    );

    let from_target = check_connection_references(
        &refs,
        &Settings::default(),
        &[bound("CTS_OUTLOOK", Some("outlook-1"))],
        Some(&connections[..]),
        "test",
    );
    assert_eq!(from_target[0].connection_id.as_deref(), Some("outlook-1"));
    assert_eq!(from_target[0].problem, None);

    let s = settings(
        json!({"ConnectionReferences": [{"LogicalName": "cts_outlook", "ConnectionId": "teams-1"}]}),
    );
    let wrong = check_connection_references(
        &refs,
        &s,
        &[bound("cts_outlook", Some("outlook-1"))],
        Some(&connections[..]),
        "test",
    );
    assert_eq!(
        wrong[0].connection_id.as_deref(),
        Some("teams-1"),
        "settings win"
    );
    assert_eq!(
        wrong[0].problem.as_deref(),
        Some(
            "connection teams-1 is a shared_teams connection; this reference needs shared_office365"
        )
    );
}

#[test]
fn connection_problems_name_the_connection() {
    let connections = [connection("outlook-broken", OUTLOOK, "Error")];
    let refs = [outlook_ref()];
    let check = |id: &str| {
        let s = settings(
            json!({"ConnectionReferences": [{"LogicalName": "cts_outlook", "ConnectionId": id}]}),
        );
        check_connection_references(&refs, &s, &[], Some(&connections[..]), "test")[0]
            .problem
            .clone()
            .unwrap()
    };
    assert!(check("nope").starts_with("no connection nope in test"));
    let p = check("outlook-broken");
    assert!(
        p.contains("status Error") && p.contains("not Connected"),
        "{p}"
    );
    let p = check_connection_references(
        &refs,
        &Settings::default(),
        &[bound("cts_outlook", Some(""))],
        Some(&[]),
        "test",
    )[0]
    .problem
    .clone()
    .unwrap();
    assert!(
        p.contains("test has no connected shared_office365 connection"),
        "{p}"
    );
}

#[test]
fn staging_maps_missing_dependencies_and_drops_the_error_restating_them() {
    let staged: StageSolutionResults = serde_json::from_value(json!({
        "StageSolutionUploadId": Uuid::new_v4(),
        "MissingDependencies": [{
            "RequiredComponentType": "1",
            "RequiredComponentSchemaName": "contoso_project",
            "DependentComponentType": "29",
            "DependentComponentDisplayName": "Sync flow"
        }, {
            "RequiredComponentType": "CustomAPI",
            "RequiredComponentDisplayName": "Do thing"
        }],
        "SolutionValidationResults": [
            {"SolutionValidationResultType": "Error", "Message": "dependencies are missing", "ErrorCode": MISSING_DEPENDENCIES_CODE},
            {"SolutionValidationResultType": "Warning", "Message": "just so you know", "ErrorCode": 1},
            {"SolutionValidationResultType": "Error", "Message": " something else ", "ErrorCode": 2}
        ]
    }))
    .unwrap();
    let (missing, errors) = staging_findings(&staged);
    assert_eq!(
        missing[0],
        MissingDependency {
            required_type: "Entity".into(),
            required: "contoso_project".into(),
            required_by: Some("Sync flow".into()),
        }
    );
    assert_eq!(missing[1].required_type, "CustomAPI");
    assert_eq!(missing[1].required_by, None);
    assert_eq!(errors, ["something else"]);

    let no_missing = StageSolutionResults {
        missing_dependencies: Vec::new(),
        solution_validation_results: vec![SolutionValidationResult {
            solution_validation_result_type: "error".into(),
            message: "dependencies are missing".into(),
            error_code: MISSING_DEPENDENCIES_CODE,
            additional_info: None,
        }],
        ..staged
    };
    assert_eq!(
        staging_findings(&no_missing).1,
        ["dependencies are missing"]
    );
}

#[test]
fn the_diff_keys_installed_components_like_packages_do() {
    let s = solution(
        SolutionZip::new("Contoso", "1.0.0.2")
            .managed(true)
            .root_component(1, "cts_Project")
            .root_component(1, "cts_New")
            .connection_reference("cts_outlook", OUTLOOK),
    );
    let rows: Vec<SolutionComponentSummary> = serde_json::from_value(json!([
        {"msdyn_componenttype": 1.0, "msdyn_componenttypename": "Entity", "msdyn_schemaname": "cts_project"},
        {"msdyn_componenttype": 1, "msdyn_schemaname": "cts_Old"},
        {"msdyn_componenttypename": "connectionreference", "msdyn_schemaname": "cts_outlook"},
        {"msdyn_componenttype": 29, "msdyn_objectid": "6B53C887-1111-2222-3333-444455556666"},
        {"msdyn_componenttype": 1}
    ]))
    .unwrap();
    let keys = installed_keys(&rows);
    assert_eq!(keys.len(), 4, "a row without a name is skipped: {keys:?}");
    let d = diff(&keys, &s);
    assert_eq!(
        d["components_added"],
        json!([{"component_type": 1, "name": "cts_new"}])
    );
    assert_eq!(
        d["components_removed"],
        json!([
            {"component_type": 1, "name": "cts_old"},
            {"component_type": 29, "name": "6b53c887-1111-2222-3333-444455556666"}
        ])
    );
    let fresh = diff(&[], &s);
    assert_eq!(
        fresh["components_added"].as_array().unwrap().len(),
        3,
        "{fresh}"
    );
}

#[test]
fn verdict_fails_for_what_settings_cannot_fix() {
    let mut r = empty_report();
    assert_eq!(verdict(&r), Verdict::Passed);
    r.environment_variables.push(EnvironmentVariableCheck {
        schema_name: "x".into(),
        display_name: None,
        type_name: "string".into(),
        value_source: None,
        problem: Some("needs a value".into()),
    });
    assert_eq!(verdict(&r), Verdict::NeedsSettings);
    r.version_problem = Some("lower".into());
    assert_eq!(verdict(&r), Verdict::Failed);
    r.version_problem = None;
    r.errors.push("refused".into());
    assert_eq!(verdict(&r), Verdict::Failed);
}

#[test]
fn the_failure_summary_is_one_line_in_a_makers_words() {
    let mut r = empty_report();
    r.missing_dependencies = vec![
        MissingDependency {
            required_type: "Entity".into(),
            required: "contoso_project".into(),
            required_by: Some("Sync flow".into()),
        },
        MissingDependency {
            required_type: "WebResource".into(),
            required: "cts_/logo.png".into(),
            required_by: None,
        },
    ];
    r.version_problem = Some("version 1.0.0.2 is not higher than 1.0.0.3 installed in test".into());
    r.policy_violations.push(slipway_policy::PolicyViolation {
        policy: "blocked_connectors".into(),
        message: "uses a blocked connector".into(),
    });
    r.errors = vec!["first\nsecond line".into(), "other".into()];
    let s = failure_summary(&r, "test");
    assert_eq!(
        s,
        "2 missing dependencies in test: table contoso_project (needed by Sync flow), web resource cts_/logo.png; \
         version 1.0.0.2 is not higher than 1.0.0.3 installed in test; \
         policy blocked_connectors: uses a blocked connector; \
         test refused the solution: first second line (and 1 more error)"
    );
    let items = (0..7)
        .map(|i| MissingDependency {
            required_type: "Attribute".into(),
            required: format!("c{i}"),
            required_by: None,
        })
        .collect();
    let many = ValidationReport {
        missing_dependencies: items,
        ..empty_report()
    };
    assert!(failure_summary(&many, "t").ends_with("column c4 and 2 more"));
}

#[test]
fn connections_the_target_does_not_list_are_taken_on_trust() {
    let refs = [ConnectionReference {
        logical_name: "new_sharedoffice365".into(),
        display_name: None,
        connector_id: "/providers/Microsoft.PowerApps/apis/shared_office365".into(),
    }];
    let missing = check_connection_references(&refs, &Settings::default(), &[], None, "prod");
    assert!(
        missing[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("does not list its connections"),
        "{missing:?}"
    );
    let settings = Settings::parse(Some(&serde_json::json!({
        "ConnectionReferences": [{"LogicalName": "new_sharedoffice365", "ConnectionId": "abc"}]
    })))
    .unwrap();
    let given = check_connection_references(&refs, &settings, &[], None, "prod");
    assert_eq!(given[0].problem, None);
    assert_eq!(given[0].connection_id.as_deref(), Some("abc"));
}
