//! The facts read from a solution package. Plain data: serializable, no I/O.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::version::Version;

/// A name in one language (`<LocalizedName description=".." languagecode="1033"/>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizedName {
    pub language_code: u32,
    pub description: String,
}

/// The publisher that owns the solution; its prefix starts every schema name it creates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Publisher {
    pub unique_name: String,
    pub customization_prefix: String,
    pub localized_names: Vec<LocalizedName>,
}

/// The `type` attribute of a component: usually a number (1 Entity, 29 Workflow,
/// 61 WebResource, 300 CanvasApp, 380 EnvVarDefinition...) but real files also
/// write names such as `CustomAPI`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentType {
    Code(u32),
    Name(String),
}

impl ComponentType {
    /// Reads the attribute as written: digits become a code, anything else a name.
    pub fn parse(s: &str) -> ComponentType {
        let t = s.trim();
        t.parse::<u32>()
            .map(ComponentType::Code)
            .unwrap_or_else(|_| ComponentType::Name(t.to_owned()))
    }

    /// A readable name for well-known codes (Microsoft's list plus what real
    /// files use), e.g. `Entity` for 1; names are returned as written.
    /// Connection references have no fixed code, so none is named here.
    pub fn label(&self) -> Option<&str> {
        let c = match self {
            ComponentType::Name(n) => return Some(n),
            ComponentType::Code(c) => c,
        };
        Some(match c {
            1 => "Entity",
            2 => "Attribute",
            3 => "Relationship",
            9 => "OptionSet",
            10 => "EntityRelationship",
            14 => "EntityKey",
            20 => "Role",
            24 => "Form",
            25 => "Organization",
            26 => "SavedQuery",
            29 => "Workflow",
            31 => "Report",
            36 => "EmailTemplate",
            38 => "KbArticleTemplate",
            44 => "DuplicateRule",
            59 => "SavedQueryVisualization",
            60 => "SystemForm",
            61 => "WebResource",
            62 => "SiteMap",
            63 => "ConnectionRole",
            65 => "HierarchyRule",
            66 => "CustomControl",
            68 => "CustomControlDefaultConfig",
            70 => "FieldSecurityProfile",
            80 => "AppModule",
            90 => "PluginType",
            91 => "PluginAssembly",
            92 => "SdkMessageProcessingStep",
            93 => "SdkMessageProcessingStepImage",
            95 => "ServiceEndpoint",
            150 => "RoutingRule",
            152 => "SLA",
            154 => "ConvertRule",
            161 => "MobileOfflineProfile",
            208 => "ImportMap",
            300 => "CanvasApp",
            371 => "Connector",
            372 => "Connector",
            380 => "EnvironmentVariableDefinition",
            381 => "EnvironmentVariableValue",
            400 => "AIProjectType",
            401 => "AIProject",
            402 => "AIConfiguration",
            430 => "EntityAnalyticsConfiguration",
            431 => "AttributeImageConfiguration",
            432 => "EntityImageConfiguration",
            _ => return None,
        })
    }

    /// Case-insensitive equality (names), numeric equality (codes).
    pub fn same(&self, other: &ComponentType) -> bool {
        match (self, other) {
            (ComponentType::Code(a), ComponentType::Code(b)) => a == b,
            (ComponentType::Name(a), ComponentType::Name(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}

impl fmt::Display for ComponentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentType::Code(c) => write!(f, "{c}"),
            ComponentType::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for ComponentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ComponentType::Code(c) => s.serialize_u32(*c),
            ComponentType::Name(n) => s.serialize_str(n),
        }
    }
}

impl<'de> Deserialize<'de> for ComponentType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(u32),
            Name(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Code(c) => ComponentType::Code(c),
            Raw::Name(n) => ComponentType::parse(&n),
        })
    }
}

/// Identity of a component as the platform resolves dependencies: type +
/// (schema name if present, else id). Build it with [`ComponentKey::new`] so
/// that comparison is case-insensitive (the name is stored lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ComponentKey {
    pub component_type: ComponentType,
    pub name: String,
}

impl ComponentKey {
    /// A key with the name lowercased (and braces stripped from guids), so
    /// keys compare case-insensitively.
    pub fn new(component_type: ComponentType, name: &str) -> ComponentKey {
        let component_type = match component_type {
            ComponentType::Name(n) => ComponentType::Name(n.to_ascii_lowercase()),
            c => c,
        };
        ComponentKey {
            component_type,
            name: normalize_id(name),
        }
    }

    fn from_parts(
        t: &ComponentType,
        schema: Option<&String>,
        id: Option<&String>,
    ) -> Option<ComponentKey> {
        schema.or(id).map(|n| ComponentKey::new(t.clone(), n))
    }
}

impl fmt::Display for ComponentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.component_type, self.name)
    }
}

/// Lowercases and strips `{}` so `{ABC-..}` and `abc-..` name the same thing.
pub(crate) fn normalize_id(s: &str) -> String {
    s.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase()
}

/// A component the solution declares it contains (`<RootComponent>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootComponent {
    pub component_type: ComponentType,
    pub schema_name: Option<String>,
    /// Guid, braces stripped, lowercase.
    pub id: Option<String>,
    /// 0 include subcomponents, 1 do not, 2 shell only.
    pub behavior: Option<u8>,
}

impl RootComponent {
    /// The identity used for dependency resolution and diffs; `None` when the
    /// element names neither a schema name nor an id.
    pub fn key(&self) -> Option<ComponentKey> {
        ComponentKey::from_parts(
            &self.component_type,
            self.schema_name.as_ref(),
            self.id.as_ref(),
        )
    }
}

/// A component the solution needs but does not contain, and who needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingDependency {
    pub required: DependencyEnd,
    pub dependent: DependencyEnd,
}

/// One end of a [`MissingDependency`] (`<Required>` or `<Dependent>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyEnd {
    pub component_type: ComponentType,
    /// `schemaName`, or `id.uniquename` when the type is written as a name.
    pub schema_name: Option<String>,
    /// Guid, braces stripped, lowercase.
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub parent_display_name: Option<String>,
    /// `parentSchemaName`: the schema name of the component's parent (an
    /// attribute's table, a form's table...).
    pub parent_schema_name: Option<String>,
    /// e.g. `AppModuleWebResources (2.5)`.
    pub solution: Option<String>,
    /// Text of the `<package>` child, e.g. `msdyn_AISolutionAnchor (202308.3.15.1)`.
    pub package: Option<String>,
}

impl DependencyEnd {
    /// See [`RootComponent::key`].
    pub fn key(&self) -> Option<ComponentKey> {
        ComponentKey::from_parts(
            &self.component_type,
            self.schema_name.as_ref(),
            self.id.as_ref(),
        )
    }
}

/// A connection reference from customizations.xml: the deployment must bind
/// a connection for this connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReference {
    pub logical_name: String,
    pub display_name: Option<String>,
    pub connector_id: String,
}

/// The `<type>` of an environment variable definition (100000000..100000005).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentVariableType {
    String,
    Number,
    Boolean,
    Json,
    DataSource,
    Secret,
}

impl EnvironmentVariableType {
    /// Maps the platform's option-set code.
    pub fn from_code(code: u32) -> Option<EnvironmentVariableType> {
        use EnvironmentVariableType::*;
        Some(match code {
            100000000 => String,
            100000001 => Number,
            100000002 => Boolean,
            100000003 => Json,
            100000004 => DataSource,
            100000005 => Secret,
            _ => return None,
        })
    }

    /// Reads a `<type>`: the option-set code, or a type name as the maker
    /// portal shows it (`String`, `Number`, `Boolean`/`Two options`, `JSON`,
    /// `Data source`, `Secret`), case and spaces ignored.
    pub fn parse(s: &str) -> Option<EnvironmentVariableType> {
        use EnvironmentVariableType::*;
        let t = s.trim();
        if let Ok(code) = t.parse::<u32>() {
            return EnvironmentVariableType::from_code(code);
        }
        let name: std::string::String = t
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Some(match name.as_str() {
            "string" | "text" => String,
            "number" | "decimal" => Number,
            "boolean" | "twooptions" | "yesno" => Boolean,
            "json" => Json,
            "datasource" => DataSource,
            "secret" => Secret,
            _ => return None,
        })
    }

    /// The platform's option-set code.
    pub fn code(self) -> u32 {
        use EnvironmentVariableType::*;
        match self {
            String => 100000000,
            Number => 100000001,
            Boolean => 100000002,
            Json => 100000003,
            DataSource => 100000004,
            Secret => 100000005,
        }
    }

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        use EnvironmentVariableType::*;
        match self {
            String => "string",
            Number => "number",
            Boolean => "boolean",
            Json => "json",
            DataSource => "data_source",
            Secret => "secret",
        }
    }
}

impl fmt::Display for EnvironmentVariableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment variable definition (and its current value, if the package carries one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    pub schema_name: String,
    pub display_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: EnvironmentVariableType,
    pub default_value: Option<String>,
    /// From `environmentvariablevalues.json` beside the definition.
    pub current_value: Option<String>,
    pub required: bool,
    /// Data sources: connector api id, e.g. `/providers/microsoft.powerapps/apis/shared_sharepointonline`.
    pub api_id: Option<String>,
    /// Data sources: parameter key, e.g. `table`.
    pub parameter_key: Option<String>,
    /// Data sources: schema name of the parent definition (e.g. the site of a list).
    pub parent: Option<String>,
}

/// A component and the zip entries that make it up (see the crate docs for
/// the mapping). `sha256` digests the entries' names and contents, so two
/// packages hold the same component content exactly when the digests match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub key: ComponentKey,
    /// Entry names as written in the zip, in zip order.
    pub files: Vec<String>,
    /// Hex sha256 over (name, sha256(content)) of `files` sorted by lowercase name
    /// (the digest of nothing when the component has no files of its own);
    /// `None` when the package was read with [`crate::ReadMode::Facts`].
    pub sha256: Option<String>,
}

/// Everything the reader learns from one solution zip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    pub unique_name: String,
    pub localized_names: Vec<LocalizedName>,
    pub version: Version,
    pub managed: bool,
    pub publisher: Publisher,
    /// `SolutionPackageVersion` attribute of `<ImportExportXml>`, e.g. `9.2`.
    pub package_version: Option<String>,
    pub root_components: Vec<RootComponent>,
    pub missing_dependencies: Vec<MissingDependency>,
    pub connection_references: Vec<ConnectionReference>,
    pub environment_variables: Vec<EnvironmentVariable>,
    pub components: Vec<Component>,
    /// Hex sha256 of customizations.xml (tables, forms, views... live there
    /// rather than in files of their own); `None` when the zip has none or was
    /// read with [`crate::ReadMode::Facts`].
    pub customizations_sha256: Option<String>,
}
