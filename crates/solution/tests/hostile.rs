//! Hostile input: one test per case; each must end in a clear error, never a
//! panic, with memory bounded by the limits.
#![allow(clippy::unwrap_used)]

use slipway_solution::{Limits, Solution, SolutionError};
use slipway_testkit::solution_zip::{SolutionZip, zip_of};

fn read(bytes: &[u8]) -> SolutionError {
    read_with(bytes, &Limits::default())
}

fn read_with(bytes: &[u8], limits: &Limits) -> SolutionError {
    let err = Solution::from_bytes(bytes, limits).unwrap_err();
    let msg = err.to_string();
    eprintln!("error: {msg}");
    assert!(
        !msg.is_empty() && !msg.ends_with('.'),
        "message style: {msg}"
    );
    err
}

fn with_manifest(xml: &str) -> Vec<u8> {
    zip_of(&[("solution.xml".into(), xml.as_bytes().to_vec())], false)
}

fn valid() -> Vec<u8> {
    SolutionZip::new("Valid", "1.0.0.0")
        .connection_reference("new_x", "/providers/Microsoft.PowerApps/apis/shared_x")
        .build()
}

const GOOD_MANIFEST: &str = "<ImportExportXml><SolutionManifest><UniqueName>A</UniqueName><Version>1.0</Version><Managed>0</Managed></SolutionManifest></ImportExportXml>";

#[test]
fn truncated_zip_is_a_zip_error() {
    let zip = valid();
    let err = read(&zip[..zip.len() / 2]);
    assert!(matches!(err, SolutionError::Zip { .. }), "{err}");
}

#[test]
fn corrupt_compressed_data_is_a_zip_error() {
    let zip = SolutionZip::new("Valid", "1.0.0.0")
        .file("Workflows/a.json", &vec![b'x'; 50_000])
        .build();
    let mut bad = zip.clone();
    // flip bytes inside the first entry's compressed data (after its local header)
    for b in &mut bad[60..90] {
        *b ^= 0x5a;
    }
    let err = read(&bad);
    assert!(
        matches!(
            err,
            SolutionError::Zip { .. } | SolutionError::Xml { .. } | SolutionError::Encoding { .. }
        ),
        "{err}"
    );
}

#[test]
fn garbage_that_is_not_a_zip_is_a_zip_error() {
    let err = read(b"this is not a zip file at all, just text");
    assert!(matches!(err, SolutionError::Zip { .. }), "{err}");
    assert!(err.to_string().contains("zip"), "{err}");
}

#[test]
fn zip_bomb_is_stopped_by_the_ratio_cap_while_inflating() {
    let zip = SolutionZip::new("Bomb", "1.0.0.0")
        .file("WebResources/bomb", &vec![0u8; 8 * 1024 * 1024])
        .build();
    let limits = Limits {
        max_ratio: 50,
        ..Limits::default()
    };
    let err = read_with(&zip, &limits);
    assert!(
        matches!(err, SolutionError::LimitExceeded { ref what, .. } if what.contains("compression ratio")),
        "{err}"
    );
}

#[test]
fn total_inflated_size_is_capped() {
    let mut b = SolutionZip::new("Big", "1.0.0.0");
    for i in 0..8 {
        b = b.file(&format!("WebResources/r{i}"), &vec![b'a'; 300_000]);
    }
    let limits = Limits {
        max_total_bytes: 1_000_000,
        max_ratio: 10_000,
        ..Limits::default()
    };
    let err = read_with(&b.build(), &limits);
    assert!(
        matches!(err, SolutionError::LimitExceeded { ref what, .. } if what.contains("in total")),
        "{err}"
    );
}

#[test]
fn huge_entry_is_capped() {
    let zip = SolutionZip::new("Huge", "1.0.0.0")
        .file("CanvasApps/x_DocumentUri.msapp", &vec![b'z'; 3_000_000])
        .build();
    let limits = Limits {
        max_entry_bytes: 1_000_000,
        max_ratio: 10_000,
        ..Limits::default()
    };
    let err = read_with(&zip, &limits);
    assert!(
        matches!(err, SolutionError::LimitExceeded { ref entry, .. } if entry.contains("msapp")),
        "{err}"
    );
}

#[test]
fn too_many_entries_are_refused() {
    let entries: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i}"), vec![]))
        .chain([("solution.xml".into(), GOOD_MANIFEST.into())])
        .collect();
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let err = read_with(&zip_of(&entries, false), &limits);
    assert!(matches!(err, SolutionError::LimitExceeded { .. }), "{err}");
}

#[test]
fn parent_directory_entry_name_is_refused() {
    let zip = zip_of(
        &[
            ("solution.xml".into(), GOOD_MANIFEST.into()),
            ("Workflows/../../evil.json".into(), b"{}".to_vec()),
        ],
        false,
    );
    let err = read(&zip);
    assert!(
        matches!(err, SolutionError::UnsafeEntryName { .. }),
        "{err}"
    );
}

#[test]
fn absolute_entry_name_is_refused() {
    let zip = zip_of(
        &[
            ("solution.xml".into(), GOOD_MANIFEST.into()),
            ("/etc/passwd".into(), b"x".to_vec()),
        ],
        false,
    );
    let err = read(&zip);
    assert!(
        matches!(err, SolutionError::UnsafeEntryName { .. }),
        "{err}"
    );
}

#[test]
fn entries_differing_only_in_case_are_duplicates() {
    let zip = zip_of(
        &[
            ("solution.xml".into(), GOOD_MANIFEST.into()),
            ("Solution.xml".into(), GOOD_MANIFEST.into()),
        ],
        false,
    );
    let err = read(&zip);
    assert!(matches!(err, SolutionError::DuplicateEntry { .. }), "{err}");
}

#[test]
fn exactly_repeated_entry_names_are_duplicates() {
    // write "solution.xml" and "solutioN.xmX", then rename the second in both headers
    let mut zip = zip_of(
        &[
            ("solution.xml".into(), GOOD_MANIFEST.into()),
            ("solutioN.xmX".into(), GOOD_MANIFEST.into()),
        ],
        false,
    );
    let from = b"solutioN.xmX";
    let mut i = 0;
    while i + from.len() <= zip.len() {
        if &zip[i..i + from.len()] == from {
            zip[i..i + from.len()].copy_from_slice(b"solution.xml");
        }
        i += 1;
    }
    let err = read(&zip);
    assert!(matches!(err, SolutionError::DuplicateEntry { .. }), "{err}");
}

#[test]
fn doctype_with_external_entity_is_refused() {
    let xml = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><ImportExportXml><SolutionManifest><UniqueName>&xxe;</UniqueName><Version>1.0</Version><Managed>0</Managed></SolutionManifest></ImportExportXml>";
    let err = read(&with_manifest(xml));
    assert!(
        matches!(err, SolutionError::Xml { ref message, .. } if message.contains("DOCTYPE")),
        "{err}"
    );
}

#[test]
fn billion_laughs_is_refused() {
    let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push_str("]>");
    let xml = format!(
        "{dtd}<ImportExportXml><SolutionManifest><UniqueName>&lol9;</UniqueName><Version>1.0</Version><Managed>0</Managed></SolutionManifest></ImportExportXml>"
    );
    let err = read(&with_manifest(&xml));
    assert!(
        matches!(err, SolutionError::Xml { ref message, .. } if message.contains("DOCTYPE")),
        "{err}"
    );
}

#[test]
fn undeclared_entity_reference_is_never_resolved() {
    let xml = GOOD_MANIFEST.replace("<UniqueName>A", "<UniqueName>&secret;");
    let err = read(&with_manifest(&xml));
    assert!(
        matches!(err, SolutionError::Xml { ref message, .. } if message.contains("never resolved")),
        "{err}"
    );
}

#[test]
fn deep_nesting_is_capped() {
    let depth = 10_000;
    let xml = format!(
        "<ImportExportXml><SolutionManifest>{}{}<UniqueName>A</UniqueName><Version>1.0</Version><Managed>0</Managed></SolutionManifest></ImportExportXml>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    let err = read(&with_manifest(&xml));
    assert!(
        matches!(err, SolutionError::LimitExceeded { ref what, .. } if what.contains("nesting")),
        "{err}"
    );
}

#[test]
fn text_that_is_not_utf8_is_an_encoding_error() {
    let mut xml = GOOD_MANIFEST.as_bytes().to_vec();
    let at = xml.windows(2).position(|w| w == b">A").unwrap() + 1;
    xml.splice(at..at + 1, [0xC3, 0x28, 0xFF]);
    let err = read(&zip_of(&[("solution.xml".into(), xml)], false));
    assert!(matches!(err, SolutionError::Encoding { .. }), "{err}");
}

#[test]
fn unclosed_xml_is_an_xml_error() {
    let err = read(&with_manifest(
        "<ImportExportXml><SolutionManifest><UniqueName>A</UniqueName>",
    ));
    assert!(matches!(err, SolutionError::Xml { .. }), "{err}");
}

#[test]
fn configuration_migration_data_is_not_a_solution() {
    let zip = zip_of(
        &[
            ("data.xml".into(), b"<entities/>".to_vec()),
            ("data_schema.xml".into(), b"<entities/>".to_vec()),
            ("[Content_Types].xml".into(), b"<Types/>".to_vec()),
        ],
        false,
    );
    let err = read(&zip);
    assert!(matches!(err, SolutionError::NotASolution { .. }), "{err}");
    assert!(
        err.to_string().starts_with("not a solution package"),
        "{err}"
    );
}

#[test]
fn zip_of_other_files_is_not_a_solution() {
    let zip = zip_of(
        &[
            (".promptflow/chat.jinja2".into(), b"hi".to_vec()),
            ("flow.dag.yaml".into(), b"x: 1".to_vec()),
        ],
        false,
    );
    let err = read(&zip);
    assert!(matches!(err, SolutionError::NotASolution { .. }), "{err}");
}

#[test]
fn missing_unique_name_is_named() {
    let err = read(&with_manifest(
        &GOOD_MANIFEST.replace("<UniqueName>A</UniqueName>", ""),
    ));
    assert!(
        matches!(err, SolutionError::MissingElement { ref element, .. } if element.contains("UniqueName")),
        "{err}"
    );
}

#[test]
fn missing_version_is_named() {
    let err = read(&with_manifest(
        &GOOD_MANIFEST.replace("<Version>1.0</Version>", ""),
    ));
    assert!(
        matches!(err, SolutionError::MissingElement { ref element, .. } if element.contains("Version")),
        "{err}"
    );
}

#[test]
fn missing_solution_manifest_is_named() {
    let err = read(&with_manifest(
        "<ImportExportXml><Other/></ImportExportXml>",
    ));
    assert!(
        matches!(err, SolutionError::MissingElement { ref element, .. } if element.contains("SolutionManifest")),
        "{err}"
    );
}

#[test]
fn unparseable_version_is_an_invalid_value() {
    let err = read(&with_manifest(&GOOD_MANIFEST.replace("1.0<", "one.zero<")));
    assert!(matches!(err, SolutionError::InvalidValue { .. }), "{err}");
}

#[test]
fn unknown_environment_variable_type_is_an_invalid_value() {
    let zip = SolutionZip::new("E", "1.0")
        .env_var("new_x", 42, None, None)
        .build();
    let err = read(&zip);
    assert!(
        matches!(err, SolutionError::InvalidValue { ref entry, .. } if entry.contains("new_x")),
        "{err}"
    );
}

#[test]
fn headers_that_understate_the_size_are_not_trusted() {
    let mut zip = SolutionZip::new("Liar", "1.0.0.0")
        .file("WebResources/liar", &vec![0u8; 4 * 1024 * 1024])
        .build();
    // Set the declared uncompressed size of WebResources/liar to 100 bytes in
    // its local header (offset 22) and its central directory record (offset 24).
    let name = b"WebResources/liar";
    for (sig, off, name_at) in [(b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)] {
        let pos = (0..zip.len() - name_at - name.len())
            .find(|&i| &zip[i..i + 4] == sig && &zip[i + name_at..i + name_at + name.len()] == name)
            .unwrap();
        zip[pos + off..pos + off + 4].copy_from_slice(&100u32.to_le_bytes());
    }
    let limits = Limits {
        max_entry_bytes: 1_000_000,
        max_ratio: 1_000_000,
        ..Limits::default()
    };
    let err = read_with(&zip, &limits);
    assert!(
        matches!(
            err,
            SolutionError::LimitExceeded { .. } | SolutionError::Zip { .. }
        ),
        "{err}"
    );
}

#[test]
fn oversized_environment_variable_value_file_is_refused() {
    let huge = format!(
        "{{\"environmentvariablevalues\":{{\"environmentvariablevalue\":{{\"value\":\"{}\"}}}}}}",
        "a".repeat(5 * 1024 * 1024)
    );
    let zip = SolutionZip::new("V", "1.0")
        .env_var("new_v", 100000000, None, None)
        .file(
            "environmentvariabledefinitions/new_v/environmentvariablevalues.json",
            huge.as_bytes(),
        )
        .build();
    let limits = Limits {
        max_ratio: 1_000_000,
        ..Limits::default()
    };
    let err = read_with(&zip, &limits);
    assert!(
        matches!(err, SolutionError::LimitExceeded { ref what, .. } if what.contains("environment variable value")),
        "{err}"
    );
}
