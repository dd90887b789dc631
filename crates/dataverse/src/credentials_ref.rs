//! Credentials by reference: what Slipway stores about an environment's
//! credentials, and how the process that calls the environment turns it into
//! real [`Credentials`] at use time.
//!
//! Secrets are never stored by Slipway, never put in bus messages and never
//! logged: the database keeps a [`CredentialsRef`], whose secret parts are
//! [`SecretRef`]s (`env:NAME` or `file:/absolute/path`), and only the gateway
//! or worker that talks to Dataverse resolves them, from its own environment
//! or mounted files (the way Kubernetes and Docker hand secrets to a process).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::Credentials;

/// How many characters of a refused value's scheme may be shown back; a
/// longer "scheme" is more likely the start of a pasted secret.
const MAX_SHOWN_SCHEME: usize = 16;

/// Everything that can go wrong reading or resolving a credentials reference.
///
/// No variant ever holds a secret (resolved or pasted by mistake), so `Debug`
/// and `Display` are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsRefError {
    /// The value is not `env:NAME` nor `file:/path`. `scheme` is the part
    /// before `:` when it looks like a scheme; the rest is never kept.
    #[error("{} is not a secret reference; store the secret in an environment variable or a file and give `env:NAME` or `file:/path` (secrets are never stored by Slipway)", shown_value(.scheme.as_deref()))]
    NotAReference {
        /// The scheme part of the refused value, if it has one.
        scheme: Option<String>,
    },

    /// `env:` followed by something that is not a variable name.
    #[error(
        "the variable name after `env:` is not valid: it must start with a letter or `_` and contain only letters, digits and `_` (e.g. `env:DEV_CLIENT_SECRET`)"
    )]
    InvalidEnvName,

    /// `file:` followed by a relative or empty path.
    #[error("the path after `file:` must be absolute (e.g. `file:/run/secrets/dev-client-secret`)")]
    RelativeFilePath,

    /// The referenced environment variable is not set.
    #[error(
        "environment variable `{name}` is not set; set it in the environment of the gateway and worker processes (secrets are never stored by Slipway)"
    )]
    EnvMissing {
        /// Variable name.
        name: String,
    },

    /// The referenced environment variable is set but empty (or only blanks).
    #[error(
        "environment variable `{name}` is empty; set it to the secret in the environment of the gateway and worker processes"
    )]
    EnvEmpty {
        /// Variable name.
        name: String,
    },

    /// The referenced environment variable does not hold valid UTF-8.
    #[error(
        "environment variable `{name}` is not valid UTF-8; set it to the secret as text in the environment of the gateway and worker processes"
    )]
    EnvNotUnicode {
        /// Variable name.
        name: String,
    },

    /// The referenced file does not exist.
    #[error("secret file `{}` does not exist; mount it in the gateway and worker processes or fix the reference", .path.display())]
    FileMissing {
        /// File path.
        path: PathBuf,
    },

    /// The referenced file exists but cannot be read as text.
    #[error("secret file `{}` cannot be read ({source}); make it readable as UTF-8 text by the gateway and worker processes", .path.display())]
    FileUnreadable {
        /// File path.
        path: PathBuf,
        /// Why reading failed (never the content).
        source: std::io::Error,
    },

    /// The referenced file is empty (or only blanks).
    #[error("secret file `{}` is empty; write the secret into it", .path.display())]
    FileEmpty {
        /// File path.
        path: PathBuf,
    },
}

fn shown_value(scheme: Option<&str>) -> String {
    match scheme {
        Some(s) => format!("`{s}:…`"),
        None => "the value given (not shown, in case it is a secret)".to_owned(),
    }
}

/// A reference to a secret: `env:NAME` (an environment variable of the
/// process that resolves it) or `file:/absolute/path` (a file's content, as
/// Kubernetes and Docker mount secrets). The reference itself is not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretRef(String);

/// A parsed [`SecretRef`].
enum Target<'a> {
    Env(&'a str),
    File(&'a Path),
}

impl SecretRef {
    /// Checks `value` is `env:NAME` or `file:/absolute/path` (surrounding
    /// blanks ignored). A refused value is never echoed beyond its scheme,
    /// since an admin may have pasted the secret itself.
    pub fn parse(value: &str) -> Result<Self, CredentialsRefError> {
        let value = value.trim();
        if let Some(name) = value.strip_prefix("env:") {
            if !is_env_name(name) {
                return Err(CredentialsRefError::InvalidEnvName);
            }
        } else if let Some(path) = value.strip_prefix("file:") {
            if !Path::new(path).is_absolute() {
                return Err(CredentialsRefError::RelativeFilePath);
            }
        } else {
            return Err(CredentialsRefError::NotAReference {
                scheme: shown_scheme(value),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The reference as written (`env:NAME` or `file:/path`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn target(&self) -> Target<'_> {
        // `parse` is the only constructor, so one of the prefixes is there.
        match self.0.strip_prefix("env:") {
            Some(name) => Target::Env(name),
            None => Target::File(Path::new(self.0.strip_prefix("file:").unwrap_or(&self.0))),
        }
    }

    /// Reads the secret from this process's environment or file system.
    /// Trailing whitespace (the newline of a mounted file) is dropped.
    pub fn resolve(&self) -> Result<String, CredentialsRefError> {
        self.resolve_inner(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(CredentialsRefError::EnvNotUnicode {
                name: name.to_owned(),
            }),
        })
    }

    /// Like [`SecretRef::resolve`], with environment variables looked up by
    /// `env` instead of the process environment (for tests: changing the
    /// process environment is `unsafe` in Rust 2024). Files are still read.
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, CredentialsRefError> {
        self.resolve_inner(|name| Ok(env(name)))
    }

    fn resolve_inner(
        &self,
        env: impl Fn(&str) -> Result<Option<String>, CredentialsRefError>,
    ) -> Result<String, CredentialsRefError> {
        match self.target() {
            Target::Env(name) => {
                let value = env(name)?.ok_or_else(|| CredentialsRefError::EnvMissing {
                    name: name.to_owned(),
                })?;
                let value = value.trim_end();
                if value.trim_start().is_empty() {
                    return Err(CredentialsRefError::EnvEmpty {
                        name: name.to_owned(),
                    });
                }
                Ok(value.to_owned())
            }
            Target::File(path) => {
                let content = std::fs::read_to_string(path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        CredentialsRefError::FileMissing {
                            path: path.to_owned(),
                        }
                    } else {
                        CredentialsRefError::FileUnreadable {
                            path: path.to_owned(),
                            source: e,
                        }
                    }
                })?;
                let value = content.trim_end();
                if value.trim_start().is_empty() {
                    return Err(CredentialsRefError::FileEmpty {
                        path: path.to_owned(),
                    });
                }
                Ok(value.to_owned())
            }
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SecretRef {
    type Err = CredentialsRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SecretRef {
    type Error = CredentialsRefError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> Self {
        r.0
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The part before `:` when it looks like a URI scheme (short, starts with a
/// letter, only letters, digits, `+`, `-`, `.`); anything else is not shown.
fn shown_scheme(value: &str) -> Option<String> {
    let (scheme, _) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let looks_like_scheme = scheme.len() <= MAX_SHOWN_SCHEME
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    looks_like_scheme.then(|| scheme.to_owned())
}

/// What Slipway stores about an environment's credentials: everything but
/// the secrets, which are [`SecretRef`]s resolved at use time by
/// [`CredentialsRef::resolve`].
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialsRef {
    /// OAuth 2.0 client credentials grant (an app registration with a secret).
    ClientSecret {
        /// Token endpoint, e.g.
        /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
        token_url: String,
        /// Application (client) id.
        client_id: String,
        /// Where the client secret is: `env:NAME` or `file:/absolute/path`.
        #[schema(value_type = String, example = "env:DEV_CLIENT_SECRET")]
        client_secret_ref: SecretRef,
        /// Scope; absent means `<environment url>/.default`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// A bearer token used as is, never refreshed (development only).
    StaticToken {
        /// Where the token is: `env:NAME` or `file:/absolute/path`.
        #[schema(value_type = String, example = "env:DEV_TOKEN")]
        token_ref: SecretRef,
    },
}

/// The accepted JSON, plus the inline-secret fields an admin may write by
/// mistake, refused with a message that points to the `*_ref` field (plain
/// `deny_unknown_fields` would only say "unknown field").
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    ClientSecret {
        token_url: String,
        client_id: String,
        client_secret_ref: SecretRef,
        #[serde(default)]
        scope: Option<String>,
        #[serde(
            default,
            rename = "client_secret",
            deserialize_with = "refuse_inline_client_secret"
        )]
        _client_secret: Option<Refused>,
    },
    StaticToken {
        token_ref: SecretRef,
        #[serde(default, rename = "token", deserialize_with = "refuse_inline_token")]
        _token: Option<Refused>,
    },
}

/// Never built: a refused field's deserializer always fails.
enum Refused {}

fn refuse_inline_client_secret<'de, D: Deserializer<'de>>(
    _: D,
) -> Result<Option<Refused>, D::Error> {
    Err(serde::de::Error::custom(
        "`client_secret` would store the secret in Slipway, which never stores secrets; \
         put it in an environment variable or a file of the gateway and worker processes \
         and give `client_secret_ref`: `env:NAME` or `file:/path`",
    ))
}

fn refuse_inline_token<'de, D: Deserializer<'de>>(_: D) -> Result<Option<Refused>, D::Error> {
    Err(serde::de::Error::custom(
        "`token` would store the token in Slipway, which never stores secrets; \
         put it in an environment variable or a file of the gateway and worker processes \
         and give `token_ref`: `env:NAME` or `file:/path`",
    ))
}

impl<'de> Deserialize<'de> for CredentialsRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Wire::deserialize(deserializer)? {
            Wire::ClientSecret {
                token_url,
                client_id,
                client_secret_ref,
                scope,
                _client_secret: _,
            } => Self::ClientSecret {
                token_url,
                client_id,
                client_secret_ref,
                scope,
            },
            Wire::StaticToken {
                token_ref,
                _token: _,
            } => Self::StaticToken { token_ref },
        })
    }
}

impl CredentialsRef {
    /// Checks what can be checked without resolving secrets, so an admin
    /// learns of mistakes when registering, not at the first deployment.
    /// Returns every problem as `(field, reason)`.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut problems = Vec::new();
        if let Self::ClientSecret {
            token_url,
            client_id,
            scope,
            ..
        } = self
        {
            if let Err(reason) = check_token_url(token_url) {
                problems.push(("token_url".to_owned(), reason));
            }
            if client_id.trim().is_empty() {
                problems.push((
                    "client_id".to_owned(),
                    "must not be blank: give the application (client) id of the app registration"
                        .to_owned(),
                ));
            }
            if scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
                problems.push((
                    "scope".to_owned(),
                    "must not be blank: leave it out to use `<environment url>/.default`"
                        .to_owned(),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Builds the real [`Credentials`], reading secrets from this process's
    /// environment or files. Call it where the environment is called, never
    /// to store or send the result.
    pub fn resolve(&self) -> Result<Credentials, CredentialsRefError> {
        self.build(SecretRef::resolve)
    }

    /// Like [`CredentialsRef::resolve`], with environment variables looked
    /// up by `env` (for tests).
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsRefError> {
        self.build(|r| r.resolve_with(&env))
    }

    fn build(
        &self,
        resolve: impl Fn(&SecretRef) -> Result<String, CredentialsRefError>,
    ) -> Result<Credentials, CredentialsRefError> {
        Ok(match self {
            Self::ClientSecret {
                token_url,
                client_id,
                client_secret_ref,
                scope,
            } => Credentials::ClientSecret {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: resolve(client_secret_ref)?,
                scope: scope.clone(),
            },
            Self::StaticToken { token_ref } => Credentials::StaticToken(resolve(token_ref)?),
        })
    }
}

/// `https://…`, or `http://` to a local simulator (localhost, 127.0.0.1).
fn check_token_url(token_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(token_url.trim())
        .map_err(|e| format!("is not a valid URL ({e}); give e.g. `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry a user name or password; secrets go in `client_secret_ref`".to_owned(),
        );
    }
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1"));
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        "http" if local => Ok(()),
        "http" => Err(
            "must use https (plain http is only accepted for a local simulator on localhost or 127.0.0.1)"
                .to_owned(),
        ),
        _ => Err(
            "must be an https URL, e.g. `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`"
                .to_owned(),
        ),
    }
}

/// A client for the environment at `url`, authenticating with the stored
/// credentials reference `credentials` (JSON of [`CredentialsRef`]),
/// resolved now, in this process.
pub fn client_for(
    url: &str,
    credentials: &serde_json::Value,
    request_timeout: std::time::Duration,
) -> Result<crate::Client, crate::DataverseError> {
    let reference: CredentialsRef = serde_json::from_value(credentials.clone()).map_err(|e| {
        crate::DataverseError::Config(format!("the environment's credentials are unreadable: {e}"))
    })?;
    let credentials = reference
        .resolve()
        .map_err(|e| crate::DataverseError::Config(e.to_string()))?;
    let mut config = crate::ClientConfig::new(url, credentials);
    config.request_timeout = request_timeout;
    crate::Client::new(config)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const CLIENT_SECRET_JSON: &str = r#"{"kind":"client_secret","token_url":"https://login.microsoftonline.com/t/oauth2/v2.0/token","client_id":"abc","client_secret_ref":"env:DEV_SECRET"}"#;

    #[test]
    fn parse_accepts_env_and_file_references() {
        for ok in [
            "env:DEV_SECRET",
            "env:_x1",
            "env:a",
            "file:/run/secrets/dev",
            "file:/a",
            "  env:PADDED\n",
        ] {
            let r = SecretRef::parse(ok).unwrap();
            assert_eq!(r.as_str(), ok.trim());
            assert_eq!(r.to_string(), ok.trim());
        }
    }

    #[test]
    fn parse_refuses_bad_env_names() {
        for bad in ["env:", "env:1ABC", "env:A-B", "env:A B", "env:ÉTÉ"] {
            assert!(
                matches!(
                    SecretRef::parse(bad),
                    Err(CredentialsRefError::InvalidEnvName)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parse_refuses_relative_file_paths() {
        for bad in ["file:", "file:secrets/dev", "file:./x", "file:~/x"] {
            assert!(
                matches!(
                    SecretRef::parse(bad),
                    Err(CredentialsRefError::RelativeFilePath)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parse_refuses_plain_secret_without_echoing_it() {
        let secret = "hunter2-very-secret";
        let err = SecretRef::parse(secret).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains(secret), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!format!("{err:?}").contains("hunter2"));
        assert!(message.contains("is not a secret reference"), "{message}");
        assert!(message.contains("`env:NAME` or `file:/path`"), "{message}");
        assert!(message.contains("secrets are never stored by Slipway"));
    }

    #[test]
    fn parse_refusal_shows_only_the_scheme() {
        let err = SecretRef::parse("vault:kv/dev#s3cr3t-part").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("`vault:…` is not a secret reference"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
        // Something before a colon that is not scheme-like is not shown.
        let err = SecretRef::parse("x~Q8a/b:c9d").unwrap_err();
        assert!(!err.to_string().contains("x~Q8"), "{err}");
        let err = SecretRef::parse("").unwrap_err();
        assert!(matches!(
            err,
            CredentialsRefError::NotAReference { scheme: None }
        ));
    }

    #[test]
    fn secret_ref_serde_is_a_plain_string() {
        let r: SecretRef = serde_json::from_str(r#""env:DEV_SECRET""#).unwrap();
        assert_eq!(r, SecretRef::parse("env:DEV_SECRET").unwrap());
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""env:DEV_SECRET""#);
        let err = serde_json::from_str::<SecretRef>(r#""hunter2-very-secret""#).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn resolve_env_present() {
        let r = SecretRef::parse("env:DEV_SECRET").unwrap();
        let env = env_of(&[("DEV_SECRET", "s3cr3t\n")]);
        assert_eq!(r.resolve_with(env).unwrap(), "s3cr3t");
    }

    #[test]
    fn resolve_env_missing_names_the_variable() {
        let r = SecretRef::parse("env:DEV_SECRET").unwrap();
        let err = r.resolve_with(no_env).unwrap_err();
        assert!(matches!(&err, CredentialsRefError::EnvMissing { name } if name == "DEV_SECRET"));
        let message = err.to_string();
        assert!(message.contains("`DEV_SECRET`"), "{message}");
        assert!(message.contains("gateway and worker"), "{message}");
    }

    #[test]
    fn resolve_env_empty_is_refused() {
        let r = SecretRef::parse("env:DEV_SECRET").unwrap();
        for empty in ["", "  \n"] {
            let err = r
                .resolve_with(env_of(&[("DEV_SECRET", empty)]))
                .unwrap_err();
            assert!(
                matches!(&err, CredentialsRefError::EnvEmpty { name } if name == "DEV_SECRET"),
                "{err}"
            );
        }
    }

    #[test]
    fn resolve_from_process_env_reports_missing_variable() {
        // A name no one sets; reading the real environment needs no unsafe.
        let r = SecretRef::parse("env:SLIPWAY_TEST_SURELY_UNSET_5f0c2e").unwrap();
        assert!(matches!(
            r.resolve(),
            Err(CredentialsRefError::EnvMissing { .. })
        ));
    }

    #[test]
    fn resolve_file_present_trims_trailing_newline() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"s3cr3t value\r\n\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", file.path().display())).unwrap();
        assert_eq!(r.resolve_with(no_env).unwrap(), "s3cr3t value");
        assert_eq!(r.resolve().unwrap(), "s3cr3t value");
    }

    #[test]
    fn resolve_file_missing_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let r = SecretRef::parse(&format!("file:{}", path.display())).unwrap();
        let err = r.resolve_with(no_env).unwrap_err();
        assert!(matches!(&err, CredentialsRefError::FileMissing { path: p } if *p == path));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn resolve_file_unreadable_names_the_path() {
        // A directory cannot be read as a file.
        let dir = tempfile::tempdir().unwrap();
        let r = SecretRef::parse(&format!("file:{}", dir.path().display())).unwrap();
        let err = r.resolve_with(no_env).unwrap_err();
        assert!(
            matches!(&err, CredentialsRefError::FileUnreadable { path, .. } if path == dir.path()),
            "{err}"
        );
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn resolve_file_empty_is_refused() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b" \n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", file.path().display())).unwrap();
        let err = r.resolve_with(no_env).unwrap_err();
        assert!(matches!(&err, CredentialsRefError::FileEmpty { path } if path == file.path()));
        assert!(err.to_string().contains(&file.path().display().to_string()));
    }

    #[test]
    fn credentials_ref_json_round_trip() {
        let parsed: CredentialsRef = serde_json::from_str(CLIENT_SECRET_JSON).unwrap();
        assert_eq!(
            parsed,
            CredentialsRef::ClientSecret {
                token_url: "https://login.microsoftonline.com/t/oauth2/v2.0/token".into(),
                client_id: "abc".into(),
                client_secret_ref: SecretRef::parse("env:DEV_SECRET").unwrap(),
                scope: None,
            }
        );
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::from_str::<serde_json::Value>(CLIENT_SECRET_JSON).unwrap()
        );

        let with_scope = CredentialsRef::ClientSecret {
            token_url: "https://login.microsoftonline.com/t/oauth2/v2.0/token".into(),
            client_id: "abc".into(),
            client_secret_ref: SecretRef::parse("file:/run/secrets/dev").unwrap(),
            scope: Some("https://org.crm.dynamics.com/.default".into()),
        };
        let back: CredentialsRef =
            serde_json::from_str(&serde_json::to_string(&with_scope).unwrap()).unwrap();
        assert_eq!(back, with_scope);

        let token: CredentialsRef =
            serde_json::from_str(r#"{"kind":"static_token","token_ref":"file:/run/secrets/t"}"#)
                .unwrap();
        assert_eq!(
            serde_json::to_value(&token).unwrap(),
            serde_json::json!({"kind":"static_token","token_ref":"file:/run/secrets/t"})
        );
    }

    #[test]
    fn credentials_ref_refuses_unknown_field() {
        let json = r#"{"kind":"client_secret","token_url":"https://x/t","client_id":"abc","client_secret_ref":"env:S","tenant":"t"}"#;
        let err = serde_json::from_str::<CredentialsRef>(json).unwrap_err();
        assert!(err.to_string().contains("unknown field `tenant`"), "{err}");
    }

    #[test]
    fn credentials_ref_refuses_inline_secret() {
        for json in [
            r#"{"kind":"client_secret","token_url":"https://x/t","client_id":"abc","client_secret":"hunter2-very-secret"}"#,
            r#"{"kind":"client_secret","token_url":"https://x/t","client_id":"abc","client_secret_ref":"env:S","client_secret":"hunter2-very-secret"}"#,
        ] {
            let err = serde_json::from_str::<CredentialsRef>(json).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("client_secret_ref"), "{message}");
            assert!(message.contains("never stores secrets"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let err = serde_json::from_str::<CredentialsRef>(
            r#"{"kind":"static_token","token":"hunter2-very-secret"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("token_ref"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn credentials_ref_refuses_plain_secret_in_ref_field() {
        let json = r#"{"kind":"client_secret","token_url":"https://x/t","client_id":"abc","client_secret_ref":"hunter2-very-secret"}"#;
        let err = serde_json::from_str::<CredentialsRef>(json).unwrap_err();
        assert!(
            err.to_string().contains("is not a secret reference"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    fn client_secret(token_url: &str, client_id: &str) -> CredentialsRef {
        CredentialsRef::ClientSecret {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret_ref: SecretRef::parse("env:S").unwrap(),
            scope: None,
        }
    }

    #[test]
    fn validate_accepts_https_and_local_http() {
        for url in [
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
        ] {
            assert_eq!(client_secret(url, "abc").validate(), Ok(()), "{url}");
        }
        let token = CredentialsRef::StaticToken {
            token_ref: SecretRef::parse("env:T").unwrap(),
        };
        assert_eq!(token.validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_bad_token_url_and_blank_client_id() {
        for url in [
            "http://login.microsoftonline.com/t",
            "ftp://x/t",
            "not a url",
            "https://user:pw@login.microsoftonline.com/t",
            "http://127.0.0.2/t",
        ] {
            let problems = client_secret(url, "abc").validate().unwrap_err();
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert_eq!(problems[0].0, "token_url", "{url}");
        }
        let problems = client_secret("http://example.com/t", "  ")
            .validate()
            .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["token_url", "client_id"]);
        assert!(problems[0].1.contains("https"), "{problems:?}");

        let blank_scope = CredentialsRef::ClientSecret {
            token_url: "https://x/t".into(),
            client_id: "abc".into(),
            client_secret_ref: SecretRef::parse("env:S").unwrap(),
            scope: Some(" ".into()),
        };
        assert_eq!(blank_scope.validate().unwrap_err()[0].0, "scope");
    }

    #[test]
    fn resolve_builds_credentials() {
        let parsed: CredentialsRef = serde_json::from_str(CLIENT_SECRET_JSON).unwrap();
        let creds = parsed
            .resolve_with(env_of(&[("DEV_SECRET", "s3cr3t")]))
            .unwrap();
        match &creds {
            Credentials::ClientSecret {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                assert_eq!(
                    token_url,
                    "https://login.microsoftonline.com/t/oauth2/v2.0/token"
                );
                assert_eq!(client_id, "abc");
                assert_eq!(client_secret, "s3cr3t");
                assert_eq!(scope, &None);
            }
            other => panic!("expected ClientSecret, got {other:?}"),
        }
        assert!(!format!("{creds:?}").contains("s3cr3t"));

        let token = CredentialsRef::StaticToken {
            token_ref: SecretRef::parse("env:TOK").unwrap(),
        };
        assert!(matches!(
            token.resolve_with(env_of(&[("TOK", "t0k")])).unwrap(),
            Credentials::StaticToken(t) if t == "t0k"
        ));
        assert!(matches!(
            token.resolve_with(no_env),
            Err(CredentialsRefError::EnvMissing { name }) if name == "TOK"
        ));
    }

    #[test]
    fn schema_describes_refs_as_strings() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(CredentialsRef::schema()).unwrap();
        let text = schema.to_string();
        assert!(text.contains("client_secret_ref"), "{text}");
        assert!(text.contains("token_ref"), "{text}");
        assert!(text.contains("\"kind\""), "{text}");
    }
}
