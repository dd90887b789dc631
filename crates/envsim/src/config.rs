//! The simulator's configuration (a TOML file). Every key is documented on
//! its field; the crate README shows a complete file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SimError;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `listen`: address to bind. Default `127.0.0.1:0` (any free port) for
    /// the library; the binary's `--listen` overrides it.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// `data`: the SQLite file holding all state (created if absent), or
    /// `":memory:"` for state that dies with the process. Default
    /// `envsim.sqlite` (relative paths are resolved against the config file's
    /// directory by [`Config::from_file`]).
    #[serde(default)]
    pub data: DataLocation,
    /// `token_lifetime_secs`: lifetime of the access tokens the token
    /// endpoint issues (`expires_in`). Default 3600.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// `dev_tokens`: bearer tokens accepted for every environment without
    /// expiry (for a client configured with a static token). Default none.
    #[serde(default)]
    pub dev_tokens: Vec<String>,
    /// `[token_faults]`: faults of the token endpoint (`response_delay_ms`,
    /// `throttle_every_nth`, `retry_after_secs`, `server_error_every_nth`,
    /// `server_error_status`; the import keys do not apply). Also settable
    /// at run time with `PUT /_admin/_token/faults`.
    #[serde(default)]
    pub token_faults: Faults,
    /// `[[clients]]`: app registrations allowed to use the token endpoint.
    #[serde(default)]
    pub clients: Vec<ClientCredentials>,
    /// `[[environments]]`: the environments served, each at
    /// `http://HOST:PORT/{name}/api/data/v9.2/`.
    #[serde(default)]
    pub environments: Vec<EnvironmentConfig>,
}

fn default_token_lifetime() -> u64 {
    3600
}

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum DataLocation {
    /// A SQLite file; state survives restarts.
    File(PathBuf),
    /// In memory (`":memory:"`); for tests.
    Memory,
}

impl Default for DataLocation {
    fn default() -> Self {
        Self::File(PathBuf::from("envsim.sqlite"))
    }
}

impl From<String> for DataLocation {
    fn from(s: String) -> Self {
        if s == ":memory:" {
            Self::Memory
        } else {
            Self::File(PathBuf::from(s))
        }
    }
}

impl From<DataLocation> for String {
    fn from(d: DataLocation) -> String {
        match d {
            DataLocation::Memory => ":memory:".into(),
            DataLocation::File(p) => p.display().to_string(),
        }
    }
}

/// `[[clients]]`: one client id / secret pair for the client-credentials grant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
}

/// `[[environments]]`: one simulated environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// `name`: the first path segment of the environment's URL
    /// (letters, digits, `-` and `_`; not starting with `_`).
    pub name: String,
    /// `platform_solutions`: unique names of solutions the platform provides
    /// in this environment without them being installed here (first-party
    /// solutions such as `AppModuleWebResources`). A missing dependency whose
    /// `solution="Name (version)"` names one of them counts as present.
    #[serde(default)]
    pub platform_solutions: Vec<String>,
    /// `platform_version`: the Dataverse version the environment runs, e.g.
    /// `9.2.24124.140`. When set, a package whose `SolutionPackageVersion`
    /// is newer is refused, as an older platform refuses it. Default unset:
    /// every package version is accepted.
    #[serde(default)]
    pub platform_version: Option<String>,
    /// `[[environments.connections]]`: connections that exist in the
    /// environment, for connection references to bind to.
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    /// `[[environments.solutions]]`: zips installed at start-up (in order)
    /// unless the same or a higher version is already installed.
    #[serde(default)]
    pub solutions: Vec<SeedSolution>,
    /// `[[environments.users]]`: users and application users of the
    /// environment (the `systemusers` entity set), whom requests may act
    /// for with `CallerObjectId` or `MSCRMCallerID`.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// `[environments.faults]`: fault injection (also settable at run time
    /// with `PUT /_admin/{env}/faults`).
    #[serde(default)]
    pub faults: Faults,
}

impl EnvironmentConfig {
    /// An environment with this name and nothing else configured.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            platform_solutions: Vec::new(),
            platform_version: None,
            connections: Vec::new(),
            solutions: Vec::new(),
            users: Vec::new(),
            faults: Faults::default(),
        }
    }
}

/// `[[environments.connections]]`: a connection (what the Power Apps
/// connections list would show).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// `id`: the connection name put in `ComponentParameters` `connectionid`.
    pub id: String,
    /// `connector_id`, e.g. `/providers/Microsoft.PowerApps/apis/shared_office365`.
    pub connector_id: String,
    /// `display_name` (optional).
    #[serde(default)]
    pub display_name: Option<String>,
    /// `status`: `Connected` (default) or anything else (e.g. `Error`), which
    /// makes binding a connection reference to it fail.
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "Connected".into()
}

/// `[[environments.users]]`: a row of `systemusers`. A user has a
/// `domain_name` (and usually an `object_id`); an application user has an
/// `application_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// `id`: the `systemuserid` (what `MSCRMCallerID` names). Default: a
    /// uuid derived from the environment and the user's domain name or
    /// application id, the same on every start.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// `domain_name`: the user principal name, e.g. `ana@contoso.com`.
    #[serde(default)]
    pub domain_name: Option<String>,
    /// `full_name` (optional).
    #[serde(default)]
    pub full_name: Option<String>,
    /// `object_id`: the Microsoft Entra object id (what `CallerObjectId`
    /// names).
    #[serde(default)]
    pub object_id: Option<uuid::Uuid>,
    /// `application_id`: an application user's application (client) id.
    #[serde(default)]
    pub application_id: Option<uuid::Uuid>,
    /// `disabled`: a disabled user cannot be acted for. Default false.
    #[serde(default)]
    pub disabled: bool,
}

impl UserConfig {
    /// The `systemuserid`: the configured one, else one derived from
    /// `env` and the user's domain name or application id.
    pub fn system_user_id(&self, env: &str) -> uuid::Uuid {
        self.id.unwrap_or_else(|| {
            let who = match (&self.domain_name, &self.application_id) {
                (Some(name), _) => name.to_ascii_lowercase(),
                (None, Some(app)) => app.to_string(),
                (None, None) => String::new(),
            };
            let name = format!(
                "slipway-envsim systemuser\n{}\n{who}",
                env.to_ascii_lowercase()
            );
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes())
        })
    }
}

/// `[[environments.solutions]]`: a solution installed at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSolution {
    /// `path`: the solution zip (relative to the config file's directory).
    pub path: PathBuf,
}

/// Fault injection for one environment. All zero/absent means none.
///
/// Request counting is per environment and covers every Web API request;
/// "every Nth" is deterministic: requests N, 2N, 3N... are hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// `import_delay_ms`: how long an import runs before it completes.
    pub import_delay_ms: u64,
    /// `fail_imports_with`: when set, every import fails with this message
    /// (after its delay).
    pub fail_imports_with: Option<String>,
    /// `response_delay_ms`: delay before answering any Web API request (to
    /// make clients time out).
    pub response_delay_ms: u64,
    /// `throttle_every_nth`: answer every Nth request with 429 and
    /// `Retry-After` (0 = never).
    pub throttle_every_nth: u64,
    /// `retry_after_secs`: the `Retry-After` sent with a 429. Default 0.
    pub retry_after_secs: u64,
    /// `server_error_every_nth`: answer every Nth request with a 5xx (0 = never).
    pub server_error_every_nth: u64,
    /// `server_error_status`: the status of those answers. Default 503.
    pub server_error_status: Option<u16>,
}

impl Config {
    /// A configuration with nothing in it and in-memory state (for tests).
    pub fn in_memory() -> Self {
        Self {
            listen: None,
            data: DataLocation::Memory,
            token_lifetime_secs: default_token_lifetime(),
            dev_tokens: Vec::new(),
            clients: Vec::new(),
            token_faults: Faults::default(),
            environments: Vec::new(),
        }
    }

    /// Parses TOML text (relative paths stay as written).
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        let config: Config = toml::from_str(text).map_err(|e| SimError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file and resolves relative `data` and solution paths
    /// against its directory.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SimError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mut config = Self::from_toml(&text).map_err(|e| match e {
            SimError::Config(m) => SimError::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let DataLocation::File(p) = &mut config.data
            && p.is_relative()
        {
            *p = dir.join(&*p);
        }
        for env in &mut config.environments {
            for s in &mut env.solutions {
                if s.path.is_relative() {
                    s.path = dir.join(&s.path);
                }
            }
        }
        Ok(config)
    }

    /// Checks what serde cannot: names, duplicates, lifetimes.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.token_lifetime_secs == 0 {
            return bad("token_lifetime_secs must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for env in &self.environments {
            let ok = !env.name.is_empty()
                && !env.name.starts_with('_')
                && env
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return bad(format!(
                    "environment name {:?} must be letters, digits, '-' or '_' and not start with '_'",
                    env.name
                ));
            }
            if !seen.insert(env.name.to_ascii_lowercase()) {
                return bad(format!("environment {:?} is configured twice", env.name));
            }
            if let Some(v) = &env.platform_version
                && let Err(e) = slipway_solution::Version::parse(v)
            {
                return bad(format!(
                    "platform_version {v:?} of environment {:?} is not a version: {e}",
                    env.name
                ));
            }
            let mut users = std::collections::HashSet::new();
            for u in &env.users {
                if u.domain_name.as_deref().is_none_or(|d| d.trim().is_empty())
                    && u.application_id.is_none()
                {
                    return bad(format!(
                        "a user of environment {:?} has neither domain_name nor application_id; give the user principal name of a user or the application id of an application user",
                        env.name
                    ));
                }
                if !users.insert(u.system_user_id(&env.name)) {
                    return bad(format!(
                        "user {} is configured twice in environment {:?}",
                        u.domain_name
                            .clone()
                            .or(u.application_id.map(|a| a.to_string()))
                            .unwrap_or_default(),
                        env.name
                    ));
                }
            }
            let mut ids = std::collections::HashSet::new();
            for c in &env.connections {
                if !ids.insert(c.id.as_str()) {
                    return bad(format!(
                        "connection {:?} is configured twice in environment {:?}",
                        c.id, env.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c = Config::from_toml(
            r#"
            data = ":memory:"
            token_lifetime_secs = 60
            dev_tokens = ["dev"]
            [[clients]]
            client_id = "app"
            client_secret = "s3cret"
            [[environments]]
            name = "test"
            platform_solutions = ["AppModuleWebResources"]
            [[environments.connections]]
            id = "conn-1"
            connector_id = "/providers/Microsoft.PowerApps/apis/shared_office365"
            [[environments.solutions]]
            path = "base.zip"
            [[environments.users]]
            domain_name = "ana@contoso.com"
            object_id = "6f1f7b54-3ad2-4a8f-a6e0-7d1c6c0d9b11"
            [[environments.users]]
            application_id = "11111111-2222-3333-4444-555555555555"
            [environments.faults]
            import_delay_ms = 100
            throttle_every_nth = 3
            retry_after_secs = 1
            "#,
        )
        .unwrap();
        assert_eq!(c.data, DataLocation::Memory);
        assert_eq!(c.environments[0].connections[0].status, "Connected");
        assert_eq!(c.environments[0].faults.throttle_every_nth, 3);
        let users = &c.environments[0].users;
        assert_eq!(users.len(), 2);
        // Derived ids are stable and differ between users.
        assert_eq!(
            users[0].system_user_id("test"),
            users[0].system_user_id("TEST")
        );
        assert_ne!(
            users[0].system_user_id("test"),
            users[1].system_user_id("test")
        );
    }

    #[test]
    fn users_need_a_name_and_are_unique() {
        let e = Config::from_toml(
            "[[environments]]\nname = \"t\"\n[[environments.users]]\nfull_name = \"x\"",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("neither domain_name nor application_id"),
            "{e}"
        );
        let e = Config::from_toml(
            "[[environments]]\nname = \"t\"\n[[environments.users]]\ndomain_name = \"a@c.com\"\n[[environments.users]]\ndomain_name = \"A@c.com\"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("configured twice"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused() {
        let e = Config::from_toml("listn = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = Config::from_toml("[[environments]]\nname = \"a/b\"").unwrap_err();
        assert!(e.to_string().contains("a/b"), "{e}");
    }
}
