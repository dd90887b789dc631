//! Re-versioning, deployment settings and diffs.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Read};

use slipway_solution::diff::{diff, diff_installed};
use slipway_solution::{
    ComponentKey, ComponentType, Limits, Solution, Version, VersionPart, reversion, settings,
};
use slipway_testkit::solution_zip::SolutionZip;

const FLOW: &str = "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e";

fn base() -> SolutionZip {
    SolutionZip::new("Orders", "1.2.3.4")
        .publisher("contoso", "cts")
        .root_component(1, "cts_order")
        .connection_reference(
            "cts_sp",
            "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
        )
        .env_var("cts_Url", 100000000, Some("https://a"), None)
        .env_var("cts_Days", 100000001, Some("7"), Some("9"))
        .flow("Sync", FLOW, "{\"v\":1}")
        .canvas_app("cts_app_1", b"msapp-1")
}

fn raw_entries(zip: &[u8]) -> Vec<(String, Vec<u8>, u32, zip::CompressionMethod)> {
    let mut a = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    (0..a.len())
        .map(|i| {
            let mut f = a.by_index_raw(i).unwrap();
            let mut raw = Vec::new();
            f.read_to_end(&mut raw).unwrap();
            (
                f.name().unwrap().into_owned(),
                raw,
                f.crc32(),
                f.compression(),
            )
        })
        .collect()
}

fn inflate(zip: &[u8], name: &str) -> Vec<u8> {
    let mut a = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut out = Vec::new();
    a.by_name(name).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn reversion_changes_only_the_version_text() {
    for b in [
        base(),
        base().bom(true).crlf(true),
        base().xml_declaration(false).stored(true),
    ] {
        let old = b.build();
        let new_version = Version::parse("1.2.3.4").unwrap().bump(VersionPart::Build);
        let new = reversion(&old, &new_version, &Limits::default()).unwrap();

        let (before, after) = (raw_entries(&old), raw_entries(&new));
        assert_eq!(before.len(), after.len());
        for (o, n) in before.iter().zip(&after) {
            assert_eq!(o.0, n.0, "same names in the same order");
            if o.0 != "solution.xml" {
                assert_eq!(o, n, "{} copied byte for byte", o.0);
            }
        }
        let expected = String::from_utf8(inflate(&old, "solution.xml"))
            .unwrap()
            .replace("<Version>1.2.3.4</Version>", "<Version>1.2.4.0</Version>");
        assert_eq!(
            String::from_utf8(inflate(&new, "solution.xml")).unwrap(),
            expected
        );

        let s = Solution::from_bytes(&new, &Limits::default()).unwrap();
        assert_eq!(s.version.as_written(), "1.2.4.0");
        assert_eq!(s.unique_name, "Orders");
    }
}

#[test]
fn reversion_refuses_a_non_solution() {
    let zip =
        slipway_testkit::solution_zip::zip_of(&[("data.xml".into(), b"<x/>".to_vec())], false);
    assert!(reversion(&zip, &Version::parse("2.0").unwrap(), &Limits::default()).is_err());
}

#[test]
fn deployment_settings_match_pac_create_settings() {
    let s = Solution::from_bytes(&base().build(), &Limits::default()).unwrap();
    let expected = r#"{
  "EnvironmentVariables": [
    {
      "SchemaName": "cts_Url",
      "Value": ""
    },
    {
      "SchemaName": "cts_Days",
      "Value": ""
    }
  ],
  "ConnectionReferences": [
    {
      "LogicalName": "cts_sp",
      "ConnectionId": "",
      "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_sharepointonline"
    }
  ]
}"#;
    assert_eq!(settings::to_json_string(&s), expected);
    let v = settings::deployment_settings(&s);
    assert_eq!(
        v["ConnectionReferences"][0]["ConnectorId"],
        "/providers/Microsoft.PowerApps/apis/shared_sharepointonline"
    );
}

#[test]
fn diff_reports_added_removed_and_changed() {
    let old = Solution::from_bytes(&base().build(), &Limits::default()).unwrap();
    let new_zip = SolutionZip::new("Orders", "1.3.0.0")
        .publisher("contoso", "cts")
        .root_component(1, "cts_order")
        .connection_reference(
            "cts_sp",
            "/providers/Microsoft.PowerApps/apis/shared_sharepointonline",
        )
        .connection_reference(
            "cts_mail",
            "/providers/Microsoft.PowerApps/apis/shared_office365",
        )
        .env_var("cts_Url", 100000000, Some("https://a"), None)
        .flow("Sync", FLOW, "{\"v\":2}")
        .canvas_app("cts_app_1", b"msapp-1")
        .canvas_app("cts_app_2", b"msapp-2")
        .build();
    let new = Solution::from_bytes(&new_zip, &Limits::default()).unwrap();
    let d = diff(&old, &new);
    assert_eq!(
        d.components_added,
        vec![ComponentKey::new(ComponentType::Code(300), "cts_app_2")]
    );
    assert_eq!(
        d.components_removed,
        vec![ComponentKey::new(ComponentType::Code(380), "cts_days")]
    );
    assert_eq!(
        d.components_changed,
        vec![ComponentKey::new(ComponentType::Code(29), FLOW)]
    );
    assert_eq!(d.connection_references_added.len(), 1);
    assert_eq!(d.connection_references_added[0].logical_name, "cts_mail");
    assert!(d.connection_references_removed.is_empty());
    assert_eq!(d.environment_variables_removed[0].schema_name, "cts_Days");
    assert!(d.environment_variables_added.is_empty());
    assert!(
        d.customizations_changed,
        "a connection reference was added to customizations.xml"
    );

    let same = diff(&old, &old);
    assert!(same.is_empty());
}

#[test]
fn diff_against_installed_components() {
    let new = Solution::from_bytes(&base().build(), &Limits::default()).unwrap();
    let installed = vec![
        ComponentKey::new(ComponentType::Code(1), "CTS_Order"),
        ComponentKey::new(ComponentType::Code(300), "cts_old_app"),
    ];
    let d = diff_installed(&installed, &new);
    assert_eq!(
        d.components_removed,
        vec![ComponentKey::new(ComponentType::Code(300), "cts_old_app")]
    );
    assert!(
        d.components_added
            .contains(&ComponentKey::new(ComponentType::Code(29), FLOW))
    );
    assert!(
        !d.components_added
            .contains(&ComponentKey::new(ComponentType::Code(1), "cts_order"))
    );
}
