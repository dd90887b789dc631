//! A builder for realistic Dataverse solution zips, shaped like real exports:
//! `solution.xml` (publisher, root components, missing dependencies in the
//! variants real files use), `customizations.xml` (connection references),
//! `environmentvariabledefinitions/<schema>/...` (+ values json), flows under
//! `Workflows/`, canvas apps under `CanvasApps/`, and `[Content_Types].xml`.
//!
//! ```
//! use slipway_testkit::solution_zip::{DepEnd, SolutionZip};
//! let zip: Vec<u8> = SolutionZip::new("Contoso", "1.0.0.0")
//!     .publisher("contoso", "cts")
//!     .root_component(1, "cts_order")
//!     .missing_dependency(DepEnd::new("61", "msdyn_/icon.png").solution("AppModuleWebResources (2.5)"),
//!                         DepEnd::new("80", "cts_app"))
//!     .connection_reference("cts_sharepoint", "/providers/Microsoft.PowerApps/apis/shared_sharepointonline")
//!     .env_var("cts_Url", 100000000, Some("https://x"), None)
//!     .flow("Sync", "6b53c887-1111-2222-3333-444455556666", "{}")
//!     .build();
//! assert!(!zip.is_empty());
//! ```
//!
//! It never depends on the reader crate: it writes the format from scratch.

use std::io::{Cursor, Write};

use zip::ZipWriter;
use zip::write::SimpleFileOptions;

/// One end (`<Required>` or `<Dependent>`) of a missing dependency.
#[derive(Debug, Clone, Default)]
pub struct DepEnd {
    type_: String,
    schema_name: Option<String>,
    id_uniquename: Option<String>,
    id: Option<String>,
    display_name: Option<String>,
    parent_display_name: Option<String>,
    solution: Option<String>,
    package: Option<String>,
    package_attrs: Option<(String, String)>,
    extra: Vec<(String, String)>,
}

impl DepEnd {
    /// `type` (a code such as "61", or a name) and `schemaName`.
    pub fn new(type_: &str, schema_name: &str) -> Self {
        DepEnd {
            type_: type_.into(),
            schema_name: Some(schema_name.into()),
            ..Self::default()
        }
    }

    /// A type written as a name with `id.uniquename`, as in `type="CustomAPI"`.
    pub fn named_type(type_name: &str, unique_name: &str) -> Self {
        DepEnd {
            type_: type_name.into(),
            id_uniquename: Some(unique_name.into()),
            ..Self::default()
        }
    }

    /// Only a `type` and an `id` (no schema name).
    pub fn by_id(type_: &str, id: &str) -> Self {
        DepEnd {
            type_: type_.into(),
            id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Adds an `id="{..}"` attribute.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds `displayName`.
    pub fn display_name(mut self, v: &str) -> Self {
        self.display_name = Some(v.into());
        self
    }

    /// Adds `parentDisplayName`.
    pub fn parent_display_name(mut self, v: &str) -> Self {
        self.parent_display_name = Some(v.into());
        self
    }

    /// Adds `solution`, e.g. `AppModuleWebResources (2.5)`.
    pub fn solution(mut self, v: &str) -> Self {
        self.solution = Some(v.into());
        self
    }

    /// Adds a `<package>` child element.
    pub fn package(mut self, v: &str) -> Self {
        self.package = Some(v.into());
        self
    }

    /// Gives the `<package>` child `appName` and `version` attributes, as in
    /// `<package appName="EnvironmentVariables" version="1.0.2406.4">`.
    pub fn package_attrs(mut self, app_name: &str, version: &str) -> Self {
        self.package_attrs = Some((app_name.into(), version.into()));
        self
    }

    /// Any other attribute, written after the usual ones (`parentSchemaName`,
    /// `key`, `id.parentappmoduleid.uniquename`...).
    pub fn attr(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    fn write(&self, tag: &str, out: &mut String, nl: &str) {
        let mut attrs = format!(" type=\"{}\"", esc(&self.type_));
        let pairs = [
            ("schemaName", &self.schema_name),
            ("displayName", &self.display_name),
            ("parentDisplayName", &self.parent_display_name),
            ("solution", &self.solution),
            ("id.uniquename", &self.id_uniquename),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                attrs.push_str(&format!(" {k}=\"{}\"", esc(v)));
            }
        }
        if let Some(id) = &self.id {
            attrs.push_str(&format!(" id=\"{{{id}}}\""));
        }
        for (k, v) in &self.extra {
            attrs.push_str(&format!(" {k}=\"{}\"", esc(v)));
        }
        let package_attrs = self
            .package_attrs
            .as_ref()
            .map(|(a, v)| format!(" appName=\"{}\" version=\"{}\"", esc(a), esc(v)))
            .unwrap_or_default();
        match &self.package {
            Some(p) => out.push_str(&format!(
                "        <{tag}{attrs}>{nl}          <package{package_attrs}>{}</package>{nl}        </{tag}>{nl}",
                esc(p)
            )),
            None => out.push_str(&format!("        <{tag}{attrs} />{nl}")),
        }
    }
}

#[derive(Debug, Clone)]
struct EnvVar {
    schema: String,
    type_code: u32,
    default: Option<String>,
    current: Option<String>,
    required: bool,
    api_id: Option<String>,
    parameter_key: Option<String>,
    parent: Option<String>,
}

/// Builds a solution zip in memory. Every setter returns the builder.
#[derive(Debug, Clone)]
pub struct SolutionZip {
    unique_name: String,
    version: String,
    display_name: String,
    managed: bool,
    publisher: (String, String),
    package_version: String,
    roots: Vec<(String, Option<String>, Option<String>)>,
    missing: Vec<(DepEnd, DepEnd)>,
    conn_refs: Vec<(String, String, String)>,
    env_vars: Vec<EnvVar>,
    files: Vec<(String, Vec<u8>)>,
    bom: bool,
    crlf: bool,
    declaration: bool,
    customizations: bool,
    stored: bool,
    extra_names: Vec<(u32, String)>,
    raw_conn_refs: Vec<String>,
    replaced: Vec<(String, Vec<u8>)>,
    backslashes: bool,
    directories: bool,
    zip64: bool,
    methods: Vec<(String, u16)>,
}

/// Escapes text for XML content and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl SolutionZip {
    /// A minimal unmanaged solution with the given unique name and version
    /// (written as given), publisher `DefaultPublisher`/`new`.
    pub fn new(unique_name: &str, version: &str) -> Self {
        SolutionZip {
            unique_name: unique_name.into(),
            version: version.into(),
            display_name: unique_name.into(),
            managed: false,
            publisher: ("DefaultPublisher".into(), "new".into()),
            package_version: "9.2".into(),
            roots: Vec::new(),
            missing: Vec::new(),
            conn_refs: Vec::new(),
            env_vars: Vec::new(),
            files: Vec::new(),
            bom: false,
            crlf: false,
            declaration: true,
            customizations: true,
            stored: false,
            extra_names: Vec::new(),
            raw_conn_refs: Vec::new(),
            replaced: Vec::new(),
            backslashes: false,
            directories: false,
            zip64: false,
            methods: Vec::new(),
        }
    }

    /// Another `<LocalizedName>` of the solution, e.g. (1036, "Commandes").
    pub fn localized_name(mut self, language_code: u32, name: &str) -> Self {
        self.extra_names.push((language_code, name.into()));
        self
    }

    /// A `<connectionreference>` written exactly as given (for odd element
    /// orders, missing display names, CDATA...), inside `<connectionreferences>`.
    pub fn raw_connection_reference(mut self, xml: &str) -> Self {
        self.raw_conn_refs.push(xml.into());
        self
    }

    /// An environment variable folder written as given:
    /// `environmentvariabledefinitions/<folder>/environmentvariabledefinition.xml`
    /// holding `definition_xml`, plus `environmentvariablevalues.json` holding
    /// `values_json` when given (bytes as given: BOM, arrays...).
    pub fn raw_env_var(
        mut self,
        folder: &str,
        definition_xml: &str,
        values_json: Option<&[u8]>,
    ) -> Self {
        let dir = format!("environmentvariabledefinitions/{folder}");
        self.files.push((
            format!("{dir}/environmentvariabledefinition.xml"),
            definition_xml.as_bytes().to_vec(),
        ));
        if let Some(v) = values_json {
            self.files
                .push((format!("{dir}/environmentvariablevalues.json"), v.to_vec()));
        }
        self
    }

    /// Replaces the bytes of the entry `name` (e.g. `solution.xml` rewritten
    /// from [`SolutionZip::solution_xml`] with namespace prefixes).
    pub fn replace_entry(mut self, name: &str, bytes: &[u8]) -> Self {
        self.replaced.push((name.into(), bytes.to_vec()));
        self
    }

    /// Writes entry names with `\` separators, as some Windows zip tools do.
    pub fn backslashes(mut self, on: bool) -> Self {
        self.backslashes = on;
        self
    }

    /// Writes a directory record (`Workflows/`) before the first file of each folder.
    pub fn directory_entries(mut self, on: bool) -> Self {
        self.directories = on;
        self
    }

    /// Writes every entry with zip64 extra fields (as large-file writers do).
    pub fn zip64(mut self, on: bool) -> Self {
        self.zip64 = on;
        self
    }

    /// Marks entry `name` as compressed with `method` (e.g. 9 Deflate64,
    /// 12 bzip2, 14 LZMA, 93 zstd) in both headers; the entry is stored, so
    /// only a reader that trusts the method field would read it.
    pub fn compression_method(mut self, name: &str, method: u16) -> Self {
        self.methods.push((name.into(), method));
        self
    }

    /// Localized (1033) display name of the solution.
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = name.into();
        self
    }

    /// Publisher unique name and customization prefix.
    pub fn publisher(mut self, unique_name: &str, prefix: &str) -> Self {
        self.publisher = (unique_name.into(), prefix.into());
        self
    }

    /// `<Managed>1</Managed>` when true.
    pub fn managed(mut self, managed: bool) -> Self {
        self.managed = managed;
        self
    }

    /// The `SolutionPackageVersion` attribute (default `9.2`).
    pub fn package_version(mut self, v: &str) -> Self {
        self.package_version = v.into();
        self
    }

    /// A root component named by schema name.
    pub fn root_component(mut self, component_type: u32, schema_name: &str) -> Self {
        self.roots
            .push((component_type.to_string(), Some(schema_name.into()), None));
        self
    }

    /// A root component named by id (a guid, written in braces).
    pub fn root_component_id(mut self, component_type: u32, id: &str) -> Self {
        self.roots
            .push((component_type.to_string(), None, Some(id.into())));
        self
    }

    /// A `<MissingDependency>` with its two ends.
    pub fn missing_dependency(mut self, required: DepEnd, dependent: DepEnd) -> Self {
        self.missing.push((required, dependent));
        self
    }

    /// A connection reference in customizations.xml (display name = logical name).
    pub fn connection_reference(self, logical_name: &str, connector_id: &str) -> Self {
        self.connection_reference_named(logical_name, logical_name, connector_id)
    }

    /// A connection reference with its display name.
    pub fn connection_reference_named(
        mut self,
        logical_name: &str,
        display_name: &str,
        connector_id: &str,
    ) -> Self {
        self.conn_refs.push((
            logical_name.into(),
            display_name.into(),
            connector_id.into(),
        ));
        self
    }

    /// An environment variable definition; `type_code` is 100000000 (string)
    /// to 100000005 (secret). `current` adds `environmentvariablevalues.json`.
    pub fn env_var(
        mut self,
        schema: &str,
        type_code: u32,
        default: Option<&str>,
        current: Option<&str>,
    ) -> Self {
        self.env_vars.push(EnvVar {
            schema: schema.into(),
            type_code,
            default: default.map(Into::into),
            current: current.map(Into::into),
            required: false,
            api_id: None,
            parameter_key: None,
            parent: None,
        });
        self
    }

    /// A required (`<isrequired>1`) string environment variable.
    pub fn required_env_var(mut self, schema: &str) -> Self {
        self = self.env_var(schema, 100000000, None, None);
        if let Some(v) = self.env_vars.last_mut() {
            v.required = true;
        }
        self
    }

    /// A data-source environment variable (type 100000004) with api id,
    /// parameter key and optional parent definition.
    pub fn data_source_env_var(
        mut self,
        schema: &str,
        api_id: &str,
        parameter_key: &str,
        parent: Option<&str>,
    ) -> Self {
        self = self.env_var(schema, 100000004, None, None);
        if let Some(v) = self.env_vars.last_mut() {
            v.api_id = Some(api_id.into());
            v.parameter_key = Some(parameter_key.into());
            v.parent = parent.map(Into::into);
        }
        self
    }

    /// A cloud flow: `Workflows/<name>-<GUID>.json` plus a type-29 root component by id.
    pub fn flow(mut self, name: &str, guid: &str, json: &str) -> Self {
        self.files.push((
            format!("Workflows/{name}-{}.json", guid.to_ascii_uppercase()),
            json.as_bytes().to_vec(),
        ));
        self.root_component_id(29, guid)
    }

    /// A canvas app: `CanvasApps/<schema>_DocumentUri.msapp` and
    /// `_BackgroundImageUri`, plus a type-300 root component.
    pub fn canvas_app(mut self, schema: &str, msapp: &[u8]) -> Self {
        self.files.push((
            format!("CanvasApps/{schema}_DocumentUri.msapp"),
            msapp.to_vec(),
        ));
        self.files.push((
            format!("CanvasApps/{schema}_BackgroundImageUri"),
            b"\x89PNG\r\n".to_vec(),
        ));
        self.root_component(300, schema)
    }

    /// Any other entry, written as given.
    pub fn file(mut self, name: &str, bytes: &[u8]) -> Self {
        self.files.push((name.into(), bytes.to_vec()));
        self
    }

    /// Starts XML and JSON files with a UTF-8 byte-order mark.
    pub fn bom(mut self, on: bool) -> Self {
        self.bom = on;
        self
    }

    /// Uses CRLF line ends (default LF).
    pub fn crlf(mut self, on: bool) -> Self {
        self.crlf = on;
        self
    }

    /// Writes the `<?xml ...?>` declaration (default true).
    pub fn xml_declaration(mut self, on: bool) -> Self {
        self.declaration = on;
        self
    }

    /// Leaves out customizations.xml when false.
    pub fn with_customizations(mut self, on: bool) -> Self {
        self.customizations = on;
        self
    }

    /// Stores entries uncompressed when true (default deflate).
    pub fn stored(mut self, on: bool) -> Self {
        self.stored = on;
        self
    }

    fn nl(&self) -> &'static str {
        if self.crlf { "\r\n" } else { "\n" }
    }

    fn text(&self, body: &str, xml: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        if xml && self.declaration {
            out.extend_from_slice(
                format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{}", self.nl()).as_bytes(),
            );
        }
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// The solution.xml text (without BOM or declaration).
    pub fn solution_xml(&self) -> String {
        let nl = self.nl();
        let mut s = format!(
            "<ImportExportXml version=\"9.2.24124.140\" SolutionPackageVersion=\"{}\" languagecode=\"1033\" generatedBy=\"CrmLive\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">{nl}  <SolutionManifest>{nl}    <UniqueName>{}</UniqueName>{nl}    <LocalizedNames>{nl}      <LocalizedName description=\"{}\" languagecode=\"1033\" />{nl}{}    </LocalizedNames>{nl}    <Descriptions />{nl}    <Version>{}</Version>{nl}    <Managed>{}</Managed>{nl}",
            esc(&self.package_version),
            esc(&self.unique_name),
            esc(&self.display_name),
            self.extra_names
                .iter()
                .map(|(code, n)| format!(
                    "      <LocalizedName description=\"{}\" languagecode=\"{code}\" />{nl}",
                    esc(n)
                ))
                .collect::<String>(),
            esc(&self.version),
            u8::from(self.managed)
        );
        s.push_str(&format!(
            "    <Publisher>{nl}      <UniqueName>{}</UniqueName>{nl}      <LocalizedNames>{nl}        <LocalizedName description=\"{}\" languagecode=\"1033\" />{nl}      </LocalizedNames>{nl}      <Descriptions />{nl}      <EMailAddress xsi:nil=\"true\"></EMailAddress>{nl}      <CustomizationPrefix>{}</CustomizationPrefix>{nl}      <CustomizationOptionValuePrefix>10000</CustomizationOptionValuePrefix>{nl}      <Addresses />{nl}    </Publisher>{nl}",
            esc(&self.publisher.0),
            esc(&self.publisher.0),
            esc(&self.publisher.1)
        ));
        s.push_str(&format!("    <RootComponents>{nl}"));
        for (t, schema, id) in &self.roots {
            let name = match (schema, id) {
                (Some(sc), _) => format!(" schemaName=\"{}\"", esc(sc)),
                (None, Some(id)) => format!(" id=\"{{{id}}}\""),
                (None, None) => String::new(),
            };
            s.push_str(&format!(
                "      <RootComponent type=\"{t}\"{name} behavior=\"0\" />{nl}"
            ));
        }
        s.push_str(&format!("    </RootComponents>{nl}"));
        if self.missing.is_empty() {
            s.push_str(&format!("    <MissingDependencies />{nl}"));
        } else {
            s.push_str(&format!("    <MissingDependencies>{nl}"));
            for (r, d) in &self.missing {
                s.push_str(&format!("      <MissingDependency>{nl}"));
                r.write("Required", &mut s, nl);
                d.write("Dependent", &mut s, nl);
                s.push_str(&format!("      </MissingDependency>{nl}"));
            }
            s.push_str(&format!("    </MissingDependencies>{nl}"));
        }
        s.push_str(&format!("  </SolutionManifest>{nl}</ImportExportXml>"));
        s
    }

    fn customizations_xml(&self) -> String {
        let nl = self.nl();
        let mut s = format!(
            "<ImportExportXml xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" OrganizationVersion=\"9.2.24124.140\" OrganizationSchemaType=\"Standard\" CRMServerServiceabilityVersion=\"9.2.24124.00140\">{nl}  <Entities></Entities>{nl}  <Roles></Roles>{nl}  <Workflows></Workflows>{nl}"
        );
        if !self.conn_refs.is_empty() || !self.raw_conn_refs.is_empty() {
            s.push_str(&format!("  <connectionreferences>{nl}"));
            for raw in &self.raw_conn_refs {
                s.push_str(&format!("    {raw}{nl}"));
            }
            for (logical, display, connector) in &self.conn_refs {
                s.push_str(&format!(
                    "    <connectionreference connectionreferencelogicalname=\"{}\">{nl}      <connectionreferencedisplayname>{}</connectionreferencedisplayname>{nl}      <connectorid>{}</connectorid>{nl}      <iscustomizable>1</iscustomizable>{nl}      <promptingbehavior>0</promptingbehavior>{nl}      <statecode>0</statecode>{nl}      <statuscode>1</statuscode>{nl}    </connectionreference>{nl}",
                    esc(logical),
                    esc(display),
                    esc(connector)
                ));
            }
            s.push_str(&format!("  </connectionreferences>{nl}"));
        }
        s.push_str(&format!(
            "  <Languages>{nl}    <Language>1033</Language>{nl}  </Languages>{nl}</ImportExportXml>"
        ));
        s
    }

    fn env_var_xml(&self, v: &EnvVar) -> String {
        let nl = self.nl();
        let mut s = format!(
            "<environmentvariabledefinition schemaname=\"{}\">{nl}",
            esc(&v.schema)
        );
        if let Some(api) = &v.api_id {
            s.push_str(&format!("  <apiid>{}</apiid>{nl}", esc(api)));
        }
        if let Some(d) = &v.default {
            s.push_str(&format!("  <defaultvalue>{}</defaultvalue>{nl}", esc(d)));
        }
        s.push_str(&format!(
            "  <displayname default=\"{0}\">{nl}    <label description=\"{0}\" languagecode=\"1033\" />{nl}  </displayname>{nl}  <introducedversion>1.0.0.0</introducedversion>{nl}  <iscustomizable>1</iscustomizable>{nl}  <isrequired>{1}</isrequired>{nl}",
            esc(&v.schema),
            u8::from(v.required)
        ));
        if let Some(k) = &v.parameter_key {
            s.push_str(&format!("  <parameterkey>{}</parameterkey>{nl}", esc(k)));
        }
        if let Some(p) = &v.parent {
            s.push_str(&format!("  <parentdefinitionid>{nl}    <schemaname>{}</schemaname>{nl}  </parentdefinitionid>{nl}", esc(p)));
        }
        s.push_str(&format!("  <secretstore>0</secretstore>{nl}  <type>{}</type>{nl}</environmentvariabledefinition>", v.type_code));
        s
    }

    /// All entries (name, bytes) in the order [`SolutionZip::build`] writes them.
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if self.customizations {
            out.push((
                "customizations.xml".to_owned(),
                self.text(&self.customizations_xml(), true),
            ));
        }
        out.push((
            "solution.xml".to_owned(),
            self.text(&self.solution_xml(), true),
        ));
        for v in &self.env_vars {
            let dir = format!("environmentvariabledefinitions/{}", v.schema);
            out.push((
                format!("{dir}/environmentvariabledefinition.xml"),
                self.text(&self.env_var_xml(v), false),
            ));
            if let Some(cur) = &v.current {
                let json = serde_json::json!({"environmentvariablevalues": {"environmentvariablevalue": {
                    "@environmentvariablevalueid": "d7736e79-ecd4-ed11-a7c7-6045bdf5407f", "iscustomizable": "1", "value": cur}}});
                let body = serde_json::to_string_pretty(&json).unwrap_or_default();
                out.push((
                    format!("{dir}/environmentvariablevalues.json"),
                    self.text(&body, false),
                ));
            }
        }
        out.extend(self.files.iter().cloned());
        out.push((
            "[Content_Types].xml".to_owned(),
            b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"xml\" ContentType=\"application/octet-stream\" /><Default Extension=\"json\" ContentType=\"application/octet-stream\" /><Default Extension=\"msapp\" ContentType=\"application/octet-stream\" /></Types>".to_vec(),
        ));
        out
    }

    /// The zip bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut entries = self.entries();
        for (name, bytes) in &self.replaced {
            if let Some(e) = entries.iter_mut().find(|(n, _)| n == name) {
                e.1 = bytes.clone();
            }
        }
        if self.backslashes {
            for (n, _) in &mut entries {
                *n = n.replace('/', "\\");
            }
        }
        let method = if self.stored || !self.methods.is_empty() {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(self.zip64);
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let mut dirs: Vec<String> = Vec::new();
        for (name, bytes) in &entries {
            if self.directories
                && let Some((dir, _)) = name.rsplit_once(['/', '\\'])
            {
                // every ancestor folder, outermost first
                let mut prefix = String::new();
                for part in dir.split(['/', '\\']) {
                    prefix.push_str(part);
                    prefix.push('/');
                    if !dirs.contains(&prefix) {
                        dirs.push(prefix.clone());
                        let _ = w.add_directory(prefix.as_str(), options);
                    }
                }
            }
            if w.start_file(name.as_str(), options).is_ok() {
                let _ = w.write_all(bytes);
            }
        }
        let mut zip = w.finish().map(Cursor::into_inner).unwrap_or_default();
        for (name, method) in &self.methods {
            set_method(&mut zip, name, *method);
        }
        zip
    }
}

/// Rewrites the compression method of entry `name` in its local header and
/// its central directory record.
fn set_method(zip: &mut [u8], name: &str, method: u16) {
    let m = method.to_le_bytes();
    let n = name.as_bytes();
    let u16_at = |z: &[u8], i: usize| usize::from(u16::from_le_bytes([z[i], z[i + 1]]));
    let mut i = 0;
    while i + 46 <= zip.len() {
        if zip[i..i + 4] == *b"PK\x03\x04" && i + 30 + n.len() <= zip.len() {
            if u16_at(zip, i + 26) == n.len() && &zip[i + 30..i + 30 + n.len()] == n {
                zip[i + 8..i + 10].copy_from_slice(&m);
            }
        } else if zip[i..i + 4] == *b"PK\x01\x02"
            && i + 46 + n.len() <= zip.len()
            && u16_at(zip, i + 28) == n.len()
            && &zip[i + 46..i + 46 + n.len()] == n
        {
            zip[i + 10..i + 12].copy_from_slice(&m);
        }
        i += 1;
    }
}

/// A zip of arbitrary (name, bytes) entries, deflated unless `stored`; for
/// tests that need hand-made (including hostile) packages.
pub fn zip_of(entries: &[(String, Vec<u8>)], stored: bool) -> Vec<u8> {
    let method = if stored {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    let options = SimpleFileOptions::default().compression_method(method);
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        // Writing to memory cannot fail for well-formed names; a test that
        // passes odd names gets whatever the zip crate wrote.
        if w.start_file(name.as_str(), options).is_ok() {
            let _ = w.write_all(bytes);
        }
    }
    w.finish().map(Cursor::into_inner).unwrap_or_default()
}
