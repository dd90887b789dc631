//! The CLI profile: where the gateway is and the token to present, so they
//! need not be typed on every command. `SLIPWAY_URL` and `SLIPWAY_TOKEN`
//! (and `--gateway`) override it.
//!
//! The file is `$SLIPWAY_PROFILE`, else `$XDG_CONFIG_HOME/slipway/profile.toml`,
//! else `~/.config/slipway/profile.toml`; it is written readable by its
//! owner only, since it may hold a token.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// What the profile file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The gateway's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A bearer token for the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `slipway profile ...`
#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Save the gateway URL and/or token.
    Set {
        /// The gateway's base URL.
        #[arg(long)]
        url: Option<String>,
        /// A bearer token for the gateway.
        #[arg(long)]
        token: Option<String>,
    },
    /// Show the profile (the token masked) and where it is.
    Show,
}

/// Where the profile lives.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLIPWAY_PROFILE") {
        return Ok(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context(
            "cannot find a place for the profile: set SLIPWAY_PROFILE, XDG_CONFIG_HOME or HOME",
        )?;
    Ok(config.join("slipway").join("profile.toml"))
}

/// The saved profile; an empty one when there is no file yet.
pub fn load() -> anyhow::Result<Profile> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| {
            format!(
                "the profile {} is not valid; fix it or remove it",
                path.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
        Err(err) => Err(err).with_context(|| format!("cannot read the profile {}", path.display())),
    }
}

fn save(profile: &Profile) -> anyhow::Result<PathBuf> {
    let path = path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(profile).context("cannot write the profile")?;
    write_private(&path, &text)?;
    Ok(path)
}

/// Writes a file only its owner can read: created so, and restricted again
/// in case it existed with wider permissions (it holds tokens).
pub(crate) fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn run(cmd: ProfileCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ProfileCommand::Set { url, token } => {
            anyhow::ensure!(
                url.is_some() || token.is_some(),
                "nothing to set: give --url, --token or both"
            );
            let mut profile = load()?;
            if url.is_some() {
                profile.url = url;
            }
            if token.is_some() {
                profile.token = token;
            }
            let path = save(&profile)?;
            println!("saved {}", path.display());
        }
        ProfileCommand::Show => {
            let profile = load()?;
            let masked = profile.token.as_ref().map(|_| "********".to_string());
            if json {
                let value =
                    serde_json::json!({"path": path()?, "url": profile.url, "token": masked});
                println!("{value:#}");
            } else {
                println!("profile {}", path()?.display());
                println!("url     {}", profile.url.as_deref().unwrap_or("(not set)"));
                println!("token   {}", masked.as_deref().unwrap_or("(not set)"));
            }
        }
    }
    Ok(())
}
