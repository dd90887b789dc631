//! Variants real exported solutions show that a plain builder output does
//! not: namespaces, attribute orders, open/close vs self-closing elements,
//! CDATA and whitespace, extra localized names, every missing-dependency
//! shape, odd connection references and environment variables, and zip
//! containers with backslashes, directory records, zip64 or other methods.
#![allow(clippy::unwrap_used)]

use slipway_solution::{
    ComponentKey, ComponentType, EnvironmentVariableType, Limits, ReadMode, Solution, SolutionError,
};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip};

const FLOW: &str = "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e";
const SP: &str = "/providers/Microsoft.PowerApps/apis/shared_sharepointonline";

fn read(zip: &[u8]) -> Solution {
    Solution::from_bytes(zip, &Limits::default()).unwrap()
}

fn err(zip: &[u8]) -> String {
    Solution::from_bytes(zip, &Limits::default())
        .unwrap_err()
        .to_string()
}

fn base() -> SolutionZip {
    SolutionZip::new("Contoso", "1.0.0.1")
        .publisher("contoso", "cts")
        .root_component(1, "cts_order")
        .flow("Sync", FLOW, "{}")
}

/// `solution.xml` of `b`, passed through `f`, with the declaration.
fn manifest_with(b: &SolutionZip, f: impl Fn(String) -> String) -> SolutionZip {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n{}",
        f(b.solution_xml())
    );
    b.clone().replace_entry("solution.xml", xml.as_bytes())
}

#[test]
fn default_namespace_and_prefixed_elements_are_read_by_local_name() {
    let b = base();
    let default_ns = manifest_with(&b, |x| {
        x.replacen(
            "<ImportExportXml ",
            "<ImportExportXml xmlns=\"http://schemas.microsoft.com/crm/2011/Contracts\" ",
            1,
        )
    });
    let s = read(&default_ns.build());
    assert_eq!(s.unique_name, "Contoso");
    assert_eq!(s.root_components.len(), 2);

    // every element prefixed `d:`; an `xsi:type` attribute must not pass for `type`
    let prefixed = manifest_with(&b, |x| {
        let x = x
            .replace("</", "</d:")
            .replace('<', "<d:")
            .replace("<d:/d:", "</d:")
            .replacen(
                "<d:ImportExportXml ",
                "<d:ImportExportXml xmlns:d=\"urn:crm\" ",
                1,
            );
        x.replace(
            "<d:RootComponent type=\"1\"",
            "<d:RootComponent xsi:type=\"Entity\" type=\"1\"",
        )
    });
    let s = read(&prefixed.build());
    assert_eq!(s.unique_name, "Contoso");
    assert_eq!(s.publisher.customization_prefix, "cts");
    assert_eq!(s.root_components[0].component_type, ComponentType::Code(1));
    assert_eq!(
        s.root_components[0].schema_name.as_deref(),
        Some("cts_order")
    );
}

#[test]
fn attribute_order_and_open_close_elements_do_not_matter() {
    let b = base();
    let z = manifest_with(&b, |x| {
        x.replace(
            &format!("<RootComponent type=\"29\" id=\"{{{FLOW}}}\" behavior=\"0\" />"),
            &format!(
                "<RootComponent behavior=\"1\" id=\"{{{}}}\" type=\"29\"></RootComponent>",
                FLOW.to_uppercase()
            ),
        )
        .replace(
            "<LocalizedName description=\"Contoso\" languagecode=\"1033\" />",
            "<LocalizedName languagecode=\"1033\" description=\"Contoso\"></LocalizedName>",
        )
        .replace(
            "<MissingDependencies />",
            "<MissingDependencies>\n    </MissingDependencies>",
        )
    });
    let s = read(&z.build());
    let flow = &s.root_components[1];
    assert_eq!(flow.id.as_deref(), Some(FLOW));
    assert_eq!(flow.behavior, Some(1));
    assert_eq!(s.localized_names[0].description, "Contoso");
    assert!(s.missing_dependencies.is_empty());
    // the flow's file is still tied to its root component (id compared case-insensitively)
    let c = s.components.iter().find(|c| c.key.name == FLOW).unwrap();
    assert_eq!(c.files.len(), 1);
}

#[test]
fn empty_root_components_and_several_localized_names() {
    let z = SolutionZip::new("Empty", "1.0")
        .localized_name(1036, "Vide")
        .localized_name(1031, "Leer")
        .build();
    let s = read(&z);
    assert!(s.root_components.is_empty());
    let names: Vec<(u32, &str)> = s
        .localized_names
        .iter()
        .map(|n| (n.language_code, n.description.as_str()))
        .collect();
    assert_eq!(names, [(1033, "Empty"), (1036, "Vide"), (1031, "Leer")]);
    let z = manifest_with(&SolutionZip::new("Empty", "1.0"), |x| {
        x.replace(
            "<RootComponents>\n    </RootComponents>",
            "<RootComponents />",
        )
    });
    assert!(read(&z.build()).root_components.is_empty());
}

#[test]
fn cdata_whitespace_and_entities_in_values() {
    let z = manifest_with(&base(), |x| {
        x.replace(
            "<UniqueName>Contoso</UniqueName>",
            "<UniqueName>\n      <![CDATA[Contoso]]>\n    </UniqueName>",
        )
        .replace(
            "<Version>1.0.0.1</Version>",
            "<Version>\r\n 1.0.0.2 \r\n</Version>",
        )
        .replace(
            "<UniqueName>contoso</UniqueName>",
            "<UniqueName>contoso&amp;co</UniqueName>",
        )
    });
    let s = read(&z.build());
    assert_eq!(s.unique_name, "Contoso");
    assert_eq!(s.version.as_written(), "1.0.0.2");
    assert_eq!(s.publisher.unique_name, "contoso&co");
}

#[test]
fn managed_two_and_textual_booleans() {
    let two = manifest_with(&base(), |x| {
        x.replace("<Managed>0</Managed>", "<Managed>2</Managed>")
    });
    assert!(!read(&two.build()).managed);
    let t = manifest_with(&base(), |x| {
        x.replace("<Managed>0</Managed>", "<Managed>TRUE</Managed>")
    });
    assert!(read(&t.build()).managed);
    let bad = manifest_with(&base(), |x| {
        x.replace("<Managed>0</Managed>", "<Managed>yes</Managed>")
    });
    assert!(err(&bad.build()).contains("<Managed> is \"yes\""));
}

#[test]
fn every_missing_dependency_shape_real_files_use() {
    let z = base()
        // a <package> child with appName/version attributes and text
        .missing_dependency(
            DepEnd::new("1", "environmentvariabledefinition")
                .display_name("Environment Variable Definition")
                .solution("EnvironmentVariables (1.0.2406.4)")
                .package("EnvironmentVariablesSolutionAnchor (1.0.2406.4)")
                .package_attrs("EnvironmentVariables", "1.0.2406.4"),
            DepEnd::new("300", "cts_app_fbe24").display_name("App"),
        )
        // a type written as a name, the dependent named by a composite alternate key
        .missing_dependency(
            DepEnd::named_type("SettingDefinition", "AppChannel")
                .display_name("AppChannel")
                .solution("msdyn_AppFrameworkInfraExtensions (1.0.0.7)"),
            DepEnd::by_id("AppSetting", "11111111-2222-3333-4444-555555555555")
                .attr("id.parentappmoduleid.uniquename", "cts_App")
                .attr("id.settingdefinitionid.uniquename", "AppChannel"),
        )
        // an attribute: parentSchemaName/parentDisplayName and a `key`
        .missing_dependency(
            DepEnd::new("2", "msdyn_field")
                .display_name("Field")
                .parent_display_name("Account")
                .attr("parentSchemaName", "account")
                .attr("key", "abc")
                .solution("Active"),
            DepEnd::new("24", "cts_form").id("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"),
        )
        // the required end only by id, package text without attributes
        .missing_dependency(
            DepEnd::by_id("90", "727E8789-BD29-46FA-B00A-3A49605EEB06")
                .package("msdyn_AISolutionAnchor (202401.3.17.1)"),
            DepEnd::named_type("CustomAPI", "msdyn_api"),
        );
    let s = read(&z.build());
    let m = &s.missing_dependencies;
    assert_eq!(m.len(), 4);
    assert_eq!(
        m[0].required.package.as_deref(),
        Some("EnvironmentVariablesSolutionAnchor (1.0.2406.4)")
    );
    assert_eq!(m[0].dependent.schema_name.as_deref(), Some("cts_app_fbe24"));
    assert_eq!(
        m[1].required.component_type,
        ComponentType::Name("SettingDefinition".into())
    );
    assert_eq!(m[1].required.schema_name.as_deref(), Some("AppChannel"));
    assert_eq!(
        m[1].dependent.schema_name.as_deref(),
        Some("parentappmoduleid.uniquename=cts_App,settingdefinitionid.uniquename=AppChannel")
    );
    assert_eq!(
        m[1].dependent.id.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        m[2].required.parent_display_name.as_deref(),
        Some("Account")
    );
    assert_eq!(m[2].required.parent_schema_name.as_deref(), Some("account"));
    assert_eq!(
        m[2].dependent.id.as_deref(),
        Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    );
    assert_eq!(m[3].required.schema_name, None);
    assert_eq!(
        m[3].required.key(),
        Some(ComponentKey::new(
            ComponentType::Code(90),
            "727e8789-bd29-46fa-b00a-3a49605eeb06"
        ))
    );
    assert_eq!(
        m[3].required.package.as_deref(),
        Some("msdyn_AISolutionAnchor (202401.3.17.1)")
    );
    assert_eq!(m[3].dependent.schema_name.as_deref(), Some("msdyn_api"));

    // a <package> with attributes and no text gives `appName (version)`
    let z = manifest_with(&base(), |x| {
        x.replace(
            "<MissingDependencies />",
            "<MissingDependencies><MissingDependency><Required type=\"1\" schemaName=\"x\"><package appName=\"Anchor\" version=\"1.2\" /></Required><Dependent type=\"1\" schemaName=\"y\" /></MissingDependency></MissingDependencies>",
        )
    });
    let s = read(&z.build());
    assert_eq!(
        s.missing_dependencies[0].required.package.as_deref(),
        Some("Anchor (1.2)")
    );
}

#[test]
fn a_missing_dependency_without_its_dependent_end_is_named() {
    let z = manifest_with(&base(), |x| {
        x.replace(
            "<MissingDependencies />",
            "<MissingDependencies><MissingDependency><Required type=\"1\" schemaName=\"x\" /></MissingDependency></MissingDependencies>",
        )
    });
    assert!(err(&z.build()).contains("<Required> and <Dependent>"));
}

#[test]
fn connection_references_in_odd_shapes() {
    let z = base()
        // connector id first, no display name
        .raw_connection_reference(&format!(
            "<connectionreference connectionreferencelogicalname=\"cts_a\"><connectorid>{SP}</connectorid><iscustomizable>1</iscustomizable></connectionreference>"
        ))
        // empty display name, CDATA connector id, extra whitespace
        .raw_connection_reference(
            "<connectionreference connectionreferencelogicalname=\" cts_b \">\n <connectionreferencedisplayname />\n <connectorid>\n <![CDATA[/providers/Microsoft.PowerApps/apis/shared_office365]]>\n </connectorid>\n</connectionreference>",
        )
        // the logical name as a child element (unpacked sources)
        .raw_connection_reference(&format!(
            "<connectionreference><connectionreferencelogicalname>cts_c</connectionreferencelogicalname><connectionreferencedisplayname>C &amp; D</connectionreferencedisplayname><connectorid>{SP}</connectorid></connectionreference>"
        ));
    let s = read(&z.build());
    let got: Vec<(&str, Option<&str>, &str)> = s
        .connection_references
        .iter()
        .map(|c| {
            (
                c.logical_name.as_str(),
                c.display_name.as_deref(),
                c.connector_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("cts_a", None, SP),
            (
                "cts_b",
                None,
                "/providers/Microsoft.PowerApps/apis/shared_office365"
            ),
            ("cts_c", Some("C & D"), SP),
        ]
    );
}

#[test]
fn a_connection_reference_without_connector_id_is_named() {
    let z = base().raw_connection_reference(
        "<connectionreference connectionreferencelogicalname=\"cts_x\"><connectionreferencedisplayname>X</connectionreferencedisplayname></connectionreference>",
    );
    let e = err(&z.build());
    assert!(
        e.contains("<connectorid> of connection reference cts_x"),
        "{e}"
    );
}

const DEF_HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n";

#[test]
fn environment_variables_in_odd_shapes() {
    let bom_json = [
        &b"\xEF\xBB\xBF"[..],
        br#"{"environmentvariablevalues":{"environmentvariablevalue":{"@environmentvariablevalueid":"1","value":"prod"}}}"#,
    ]
    .concat();
    let array_json = br#"{"environmentvariablevalues":{"environmentvariablevalue":[{"@environmentvariablevalueid":"1","value":"first"},{"@environmentvariablevalueid":"2","value":"second"}]}}"#;
    let long = "x".repeat(300_000);
    let z = base()
        // no <type>: the column's default, String; value json with a BOM
        .raw_env_var(
            "cts_NoType",
            &format!("{DEF_HEAD}<environmentvariabledefinition schemaname=\"cts_NoType\"><defaultvalue>a</defaultvalue><isrequired>1</isrequired></environmentvariabledefinition>"),
            Some(&bom_json),
        )
        // type as a name; values as an array; display name only in a label
        .raw_env_var(
            "cts_Named",
            &format!("{DEF_HEAD}<environmentvariabledefinition schemaname=\"cts_Named\"><displayname><label description=\"Named\" languagecode=\"1033\" /></displayname><type>Boolean</type></environmentvariabledefinition>"),
            Some(array_json),
        )
        // a data source whose parent is written as a guid; schema name from the folder
        .raw_env_var(
            "cts_List",
            "<environmentvariabledefinition><apiid>/providers/microsoft.powerapps/apis/shared_sharepointonline</apiid><parameterkey>table</parameterkey><parentdefinitionid>{ABCDEF12-0000-0000-0000-000000000001}</parentdefinitionid><type>100000004</type></environmentvariabledefinition>",
            None,
        )
        // a very long JSON default value, kept as written
        .raw_env_var(
            "cts_Big",
            &format!("<environmentvariabledefinition schemaname=\"cts_Big\"><defaultvalue><![CDATA[{{\"v\":\"{long}\"}}]]></defaultvalue><type>100000003</type></environmentvariabledefinition>"),
            None,
        )
        .data_source_env_var("cts_Site", SP, "dataset", None)
        .data_source_env_var("cts_Child", SP, "table", Some("cts_Site"));
    for zip in [z.build(), z.clone().crlf(true).bom(true).build()] {
        let s = read(&zip);
        let v = |n: &str| {
            s.environment_variables
                .iter()
                .find(|e| e.schema_name == n)
                .unwrap_or_else(|| panic!("{n} missing: {:?}", s.environment_variables))
        };
        let no_type = v("cts_NoType");
        assert_eq!(no_type.kind, EnvironmentVariableType::String);
        assert!(no_type.required);
        assert_eq!(no_type.current_value.as_deref(), Some("prod"));
        let named = v("cts_Named");
        assert_eq!(named.kind, EnvironmentVariableType::Boolean);
        assert_eq!(named.display_name.as_deref(), Some("Named"));
        assert_eq!(named.current_value.as_deref(), Some("first"));
        let list = v("cts_List");
        assert_eq!(list.kind, EnvironmentVariableType::DataSource);
        assert_eq!(list.parameter_key.as_deref(), Some("table"));
        assert_eq!(
            list.parent.as_deref(),
            Some("abcdef12-0000-0000-0000-000000000001")
        );
        assert_eq!(v("cts_Child").parent.as_deref(), Some("cts_Site"));
        assert_eq!(v("cts_Site").parent, None);
        assert_eq!(
            v("cts_Big").default_value.as_deref().map(str::len),
            Some(long.len() + 8)
        );
    }
}

#[test]
fn an_unknown_environment_variable_type_names_the_value() {
    let z = base().raw_env_var(
        "cts_X",
        "<environmentvariabledefinition schemaname=\"cts_X\"><type>100000009</type></environmentvariabledefinition>",
        None,
    );
    let e = err(&z.build());
    assert!(e.contains("\"100000009\"") && e.contains("cts_X"), "{e}");
}

#[test]
fn environment_variable_folder_case_differs_from_the_values_file() {
    let z = base().raw_env_var(
        "cts_Url",
        "<environmentvariabledefinition schemaname=\"cts_Url\"><type>100000000</type></environmentvariabledefinition>",
        None,
    );
    let json = br#"{"environmentvariablevalues":{"environmentvariablevalue":{"value":"v"}}}"#;
    let z = z.file(
        "EnvironmentVariableDefinitions/CTS_URL/EnvironmentVariableValues.json",
        json,
    );
    let s = read(&z.build());
    assert_eq!(s.environment_variables.len(), 1);
    assert_eq!(
        s.environment_variables[0].current_value.as_deref(),
        Some("v")
    );
}

#[test]
fn backslash_names_directory_records_and_zip64_read_the_same() {
    let b = base()
        .connection_reference("cts_sp", SP)
        .env_var("cts_Url", 100000000, Some("a"), Some("b"))
        .canvas_app("cts_app_1a2b3", b"PK-msapp");
    let plain = read(&b.build());
    for z in [
        b.clone().backslashes(true),
        b.clone().directory_entries(true),
        b.clone().zip64(true),
        b.clone().zip64(true).directory_entries(true).stored(true),
    ] {
        let s = read(&z.build());
        assert_eq!(s.environment_variables, plain.environment_variables);
        assert_eq!(s.connection_references, plain.connection_references);
        let keys = |s: &Solution| {
            s.components
                .iter()
                .map(|c| (c.key.clone(), c.files.len(), c.sha256.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&s), keys(&plain));
    }
}

#[test]
fn content_types_belongs_to_no_component() {
    let s = read(&base().build());
    assert!(
        s.components
            .iter()
            .all(|c| c.files.iter().all(|f| f != "[Content_Types].xml"))
    );
}

#[test]
fn unsupported_compression_methods_are_named() {
    let flow_entry = format!("Workflows/Sync-{}.json", FLOW.to_uppercase());
    for (method, name) in [(9, "Deflate64"), (12, "Bzip2"), (14, "Lzma"), (93, "Zstd")] {
        // a method on an entry every read needs
        let z = base().compression_method("solution.xml", method).build();
        let e = Solution::from_reader_mode(
            std::io::Cursor::new(&z),
            &Limits::default(),
            ReadMode::Facts,
        )
        .unwrap_err();
        assert!(matches!(e, SolutionError::Zip { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains(&format!("compression method {name} ({method})"))
                && e.contains("solution.xml"),
            "{e}"
        );
        // a method on a flow: the full read inflates it and says so
        let z = base().compression_method(&flow_entry, method).build();
        let e = err(&z);
        assert!(e.contains(name) && e.contains(&flow_entry), "{e}");
    }
}

#[test]
fn a_missing_file_and_a_non_zip_get_one_clear_line() {
    let e = Solution::open("/no/such/solution.zip", &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot open /no/such/solution.zip: No such file or directory (os error 2)"
    );
    assert!(std::error::Error::source(&e).is_none());
    let e = Solution::from_bytes(b"just text\n", &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("not a zip file, or a truncated one"),
        "{e}"
    );
}

#[test]
fn reversioning_keeps_bom_crlf_namespaces_and_every_other_entry() {
    use std::io::Read;
    let b = base()
        .bom(true)
        .crlf(true)
        .env_var("cts_Url", 100000000, Some("a"), None);
    let xml = b
        .solution_xml()
        .replacen(
            "<ImportExportXml ",
            "<ImportExportXml xmlns=\"urn:crm\" ",
            1,
        )
        .replace(
            "<Version>1.0.0.1</Version>",
            "<Version>\r\n  1.0.0.1\r\n</Version>",
        );
    let with_bom = format!("\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n{xml}");
    let namespaced = b.clone().replace_entry("solution.xml", with_bom.as_bytes());
    for b in [b, namespaced] {
        let old = b.build();
        let new_version = slipway_solution::Version::parse("1.2.3.4").unwrap();
        let new = slipway_solution::reversion(&old, &new_version, &Limits::default()).unwrap();
        assert_eq!(read(&new).version.as_written(), "1.2.3.4");
        let entries = |z: &[u8]| {
            let mut a = zip::ZipArchive::new(std::io::Cursor::new(z.to_vec())).unwrap();
            (0..a.len())
                .map(|i| {
                    let mut f = a.by_index(i).unwrap();
                    let mut v = Vec::new();
                    f.read_to_end(&mut v).unwrap();
                    (f.name().unwrap().into_owned(), v)
                })
                .collect::<Vec<_>>()
        };
        let (before, after) = (entries(&old), entries(&new));
        assert_eq!(before.len(), after.len());
        for ((n0, d0), (n1, d1)) in before.iter().zip(&after) {
            assert_eq!(n0, n1);
            if n0 == "solution.xml" {
                assert!(d1.starts_with(b"\xEF\xBB\xBF<?xml"), "the BOM is kept");
                let (t0, t1) = (String::from_utf8_lossy(d0), String::from_utf8_lossy(d1));
                let v0 = t0.find("<Version>").unwrap();
                assert_eq!(t0[..v0], t1[..v0]);
                let tail0 = &t0[t0.find("</Version>").unwrap()..];
                let tail1 = &t1[t1.find("</Version>").unwrap()..];
                assert_eq!(tail0, tail1);
                assert!(t1.contains("<Version>1.2.3.4</Version>"));
            } else {
                assert_eq!(d0, d1, "{n0} unchanged");
            }
        }
    }
}

#[test]
fn utf16_xml_gets_a_clear_error() {
    let xml = base().solution_xml();
    let mut utf16 = vec![0xFF, 0xFE];
    for u in xml.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let e = err(&base().replace_entry("solution.xml", &utf16).build());
    assert!(e.contains("solution.xml") && e.contains("UTF-16"), "{e}");
}

#[test]
fn an_element_with_very_many_attributes_is_read_in_linear_time() {
    // with duplicate checks, quick-xml compares every attribute with every
    // other: 100k attributes would be 10^10 comparisons
    let attrs: String = (0..100_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let z = manifest_with(&base(), |x| {
        x.replace(
            "<RootComponent type=\"1\"",
            &format!("<RootComponent{attrs} type=\"1\""),
        )
    });
    let s = read(&z.build());
    assert_eq!(
        s.root_components[0].schema_name.as_deref(),
        Some("cts_order")
    );
}
