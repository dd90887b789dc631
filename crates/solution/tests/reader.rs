//! The reader against packages built by the testkit builder: every fact the
//! issue lists, in every encoding variant.
#![allow(clippy::unwrap_used)]

use slipway_solution::{
    ComponentKey, ComponentType, EnvironmentVariableType, Limits, ReadMode, Solution, Version,
};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};

const FLOW: &str = "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e";

fn rich() -> SolutionZip {
    SolutionZip::new("ContosoOrders", "1.22043.1")
        .display_name("Contoso Orders")
        .publisher("contoso", "cts")
        .root_component(1, "cts_order")
        .missing_dependency(
            DepEnd::new("61", "msdyn_/Images/AppModule_Default_Icon.png")
                .display_name("icon")
                .solution("AppModuleWebResources (2.5)"),
            DepEnd::new("80", "cts_OrdersApp").display_name("Orders"),
        )
        .missing_dependency(
            DepEnd::new("1", "msdyn_aimodel")
                .solution("msdyn_AISolution (1.0)")
                .package("msdyn_AISolutionAnchor (1.0)"),
            DepEnd::new("300", "cts_app_1a2b3").parent_display_name("Parent"),
        )
        .missing_dependency(
            DepEnd::new("90", "Some.Plugin").id("727E8789-BD29-46FA-B00A-3A49605EEB06"),
            DepEnd::named_type("CustomAPI", "msdyn_customapi1"),
        )
        .connection_reference_named(
            "cts_sharepoint",
            "SharePoint",
            "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
        )
        .connection_reference(
            "cts_outlook",
            "/providers/Microsoft.PowerApps/apis/shared_office365",
        )
        .env_var(
            "cts_Url",
            100000000,
            Some("https://contoso"),
            Some("https://prod"),
        )
        .env_var("cts_Days", 100000001, Some("60"), None)
        .env_var("cts_Flag", 100000002, None, None)
        .env_var("cts_Json", 100000003, Some("[{\"a\":1}]"), None)
        .env_var("cts_Secret", 100000005, None, None)
        .data_source_env_var(
            "cts_Site",
            "/providers/microsoft.powerapps/apis/shared_sharepointonline",
            "dataset",
            None,
        )
        .data_source_env_var(
            "cts_List",
            "/providers/microsoft.powerapps/apis/shared_sharepointonline",
            "table",
            Some("cts_Site"),
        )
        .required_env_var("cts_Required")
        .flow("SyncOrders", FLOW, "{\"properties\":{}}")
        .canvas_app("cts_app_1a2b3", b"PK-msapp")
        .file("bots/cts_bot/bot.xml", b"<bot/>")
        .file(
            "botcomponents/cts_bot.topic.Greeting/data",
            b"kind: AdaptiveDialog",
        )
}

fn check_rich(s: &Solution) {
    assert_eq!(s.unique_name, "ContosoOrders");
    assert_eq!(s.version.as_written(), "1.22043.1");
    assert!(!s.managed);
    assert_eq!(s.package_version.as_deref(), Some("9.2"));
    assert_eq!(s.localized_names[0].description, "Contoso Orders");
    assert_eq!(s.localized_names[0].language_code, 1033);
    assert_eq!(s.publisher.unique_name, "contoso");
    assert_eq!(s.publisher.customization_prefix, "cts");
    assert_eq!(s.root_components.len(), 3);
    assert_eq!(s.root_components[1].id.as_deref(), Some(FLOW));
    assert_eq!(s.root_components[1].component_type, ComponentType::Code(29));
    assert_eq!(s.missing_dependencies.len(), 3);
    let md = &s.missing_dependencies;
    assert_eq!(
        md[0].required.solution.as_deref(),
        Some("AppModuleWebResources (2.5)")
    );
    assert_eq!(md[0].dependent.display_name.as_deref(), Some("Orders"));
    assert_eq!(
        md[1].required.package.as_deref(),
        Some("msdyn_AISolutionAnchor (1.0)")
    );
    assert_eq!(
        md[1].dependent.parent_display_name.as_deref(),
        Some("Parent")
    );
    assert_eq!(
        md[2].required.id.as_deref(),
        Some("727e8789-bd29-46fa-b00a-3a49605eeb06")
    );
    assert_eq!(
        md[2].dependent.component_type,
        ComponentType::Name("CustomAPI".into())
    );
    assert_eq!(
        md[2].dependent.schema_name.as_deref(),
        Some("msdyn_customapi1")
    );
    assert_eq!(
        md[2].dependent.key(),
        Some(ComponentKey::new(
            ComponentType::Name("customapi".into()),
            "MSDYN_customapi1"
        ))
    );
    assert_eq!(s.connection_references.len(), 2);
    assert_eq!(s.connection_references[0].logical_name, "cts_sharepoint");
    assert_eq!(
        s.connection_references[0].display_name.as_deref(),
        Some("SharePoint")
    );
    assert_eq!(
        s.connection_references[1].connector_id,
        "/providers/Microsoft.PowerApps/apis/shared_office365"
    );
    let ev = |n: &str| {
        s.environment_variables
            .iter()
            .find(|e| e.schema_name == n)
            .unwrap()
    };
    assert_eq!(s.environment_variables.len(), 8);
    assert_eq!(ev("cts_Url").kind, EnvironmentVariableType::String);
    assert_eq!(
        ev("cts_Url").default_value.as_deref(),
        Some("https://contoso")
    );
    assert_eq!(ev("cts_Url").current_value.as_deref(), Some("https://prod"));
    assert_eq!(ev("cts_Url").display_name.as_deref(), Some("cts_Url"));
    assert_eq!(ev("cts_Days").kind, EnvironmentVariableType::Number);
    assert_eq!(ev("cts_Flag").kind, EnvironmentVariableType::Boolean);
    assert_eq!(ev("cts_Json").default_value.as_deref(), Some("[{\"a\":1}]"));
    assert_eq!(ev("cts_Secret").kind, EnvironmentVariableType::Secret);
    assert_eq!(ev("cts_List").kind, EnvironmentVariableType::DataSource);
    assert_eq!(ev("cts_List").parameter_key.as_deref(), Some("table"));
    assert_eq!(ev("cts_List").parent.as_deref(), Some("cts_Site"));
    assert!(
        ev("cts_List")
            .api_id
            .as_deref()
            .unwrap()
            .ends_with("shared_sharepointonline")
    );
    assert!(ev("cts_Required").required);
    assert!(!ev("cts_Url").required);
}

#[test]
fn reads_every_fact_from_a_realistic_package() {
    check_rich(&Solution::from_bytes(&rich().build(), &Limits::default()).unwrap());
}

#[test]
fn reads_the_same_facts_with_bom_crlf_and_no_declaration() {
    for (bom, crlf, decl) in [
        (true, false, true),
        (false, true, true),
        (true, true, false),
        (false, false, false),
    ] {
        let zip = rich().bom(bom).crlf(crlf).xml_declaration(decl).build();
        check_rich(&Solution::from_bytes(&zip, &Limits::default()).unwrap());
    }
}

#[test]
fn reads_stored_entries_and_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.zip");
    std::fs::write(&path, rich().stored(true).build()).unwrap();
    check_rich(&Solution::open(&path, &Limits::default()).unwrap());
}

#[test]
fn matches_entry_names_case_insensitively() {
    let b = rich();
    let entries: Vec<(String, Vec<u8>)> = b
        .entries()
        .into_iter()
        .map(|(n, d)| {
            let n = match n.as_str() {
                "solution.xml" => "Solution.XML".to_owned(),
                "customizations.xml" => "CUSTOMIZATIONS.xml".to_owned(),
                _ => n
                    .replace(
                        "environmentvariabledefinitions",
                        "EnvironmentVariableDefinitions",
                    )
                    .replace(
                        "environmentvariablevalues.json",
                        "EnvironmentVariableValues.JSON",
                    ),
            };
            (n, d)
        })
        .collect();
    let s = Solution::from_bytes(
        &slipway_testkit::solution_zip::zip_of(&entries, false),
        &Limits::default(),
    )
    .unwrap();
    check_rich(&s);
}

#[test]
fn reads_managed_and_empty_missing_dependencies() {
    let zip = SolutionZip::new("M", "1.0").managed(true).build();
    let s = Solution::from_bytes(&zip, &Limits::default()).unwrap();
    assert!(s.managed);
    assert!(s.missing_dependencies.is_empty());
    assert_eq!(s.version, Version::parse("1.0.0.0").unwrap());
    assert_eq!(s.version.as_written(), "1.0");
}

#[test]
fn maps_files_to_components() {
    let s = Solution::from_bytes(&rich().build(), &Limits::default()).unwrap();
    let files = |k: ComponentKey| {
        s.components
            .iter()
            .find(|c| c.key == k)
            .map(|c| c.files.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        files(ComponentKey::new(ComponentType::Code(29), FLOW)),
        vec![format!("Workflows/SyncOrders-{}.json", FLOW.to_uppercase())]
    );
    assert_eq!(
        files(ComponentKey::new(ComponentType::Code(300), "cts_app_1a2b3")).len(),
        2
    );
    let env = files(ComponentKey::new(ComponentType::Code(380), "cts_url"));
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(
        files(ComponentKey::new(
            ComponentType::Name("bots".into()),
            "cts_bot"
        )),
        vec!["bots/cts_bot/bot.xml".to_owned()]
    );
    assert_eq!(
        files(ComponentKey::new(
            ComponentType::Name("botcomponents".into()),
            "cts_bot.topic.greeting"
        ))
        .len(),
        1
    );
    // the table lives in customizations.xml: a component with no files of its own
    assert!(files(ComponentKey::new(ComponentType::Code(1), "cts_order")).is_empty());
    assert!(s.components.iter().all(|c| {
        c.files
            .iter()
            .all(|f| !f.eq_ignore_ascii_case("solution.xml"))
    }));
    assert!(s.customizations_sha256.is_some());
}

#[test]
fn json_shape_has_the_documented_fields() {
    let s = Solution::from_bytes(&rich().build(), &Limits::default()).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["unique_name"], "ContosoOrders");
    assert_eq!(v["version"], "1.22043.1");
    assert_eq!(v["environment_variables"][0]["type"], "string");
    assert_eq!(v["root_components"][0]["component_type"], 1);
    assert_eq!(
        v["missing_dependencies"][2]["dependent"]["component_type"],
        "CustomAPI"
    );
    let back: Solution = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
}

#[test]
fn facts_mode_reads_the_same_facts_without_digests() {
    let zip = rich().build();
    let full = Solution::from_bytes(&zip, &Limits::default()).unwrap();
    let facts = Solution::from_reader_mode(
        std::io::Cursor::new(&zip),
        &Limits::default(),
        ReadMode::Facts,
    )
    .unwrap();
    check_rich(&facts);
    assert!(facts.components.iter().all(|c| c.sha256.is_none()));
    assert!(full.components.iter().all(|c| c.sha256.is_some()));
    let strip = |s: &Solution| Solution {
        components: s
            .components
            .iter()
            .map(|c| slipway_solution::Component {
                sha256: None,
                ..c.clone()
            })
            .collect(),
        customizations_sha256: None,
        ..s.clone()
    };
    assert_eq!(strip(&full), strip(&facts));
}
