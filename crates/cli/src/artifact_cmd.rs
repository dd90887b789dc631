//! `slipway artifacts download`: a run's solution zip, as it was validated
//! and imported, checked against the sha256 the run recorded. The file is
//! written whole or not at all (a temporary file renamed into place), and
//! an existing file is kept unless `--force`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::json;
use sha2::Digest as _;

use crate::client::{Client, GatewayArg, hint_not_found, runtime, text};
use crate::deploy_cmd::{RUNS_HINT, run_id};

/// `slipway artifacts ...`
#[derive(Debug, clap::Args)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    command: ArtifactsCommand,
    #[command(flatten)]
    pub gateway: GatewayArg,
}

#[derive(Debug, clap::Subcommand)]
enum ArtifactsCommand {
    /// Download a run's artifact: the managed zip (what is imported) or the unmanaged one.
    #[command(after_help = "Examples:\n  \
slipway artifacts download 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080\n  \
slipway artifacts download 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --unmanaged --out Contoso.zip\n  \
slipway artifacts download 01a21c8b-dd04-709d-9f1e-a8b3ae2a5080 --out build/Contoso.zip --force -o json\n\
Without --out the file is named as the gateway suggests (Contoso_1_0_0_1_managed.zip) in the current folder. \
An existing file is kept unless --force.")]
    Download {
        /// The deployment's id.
        #[arg(value_parser = run_id)]
        id: String,
        /// The managed file, as imported (the default).
        #[arg(long, conflicts_with = "unmanaged")]
        managed: bool,
        /// The unmanaged file, as exported from the source.
        #[arg(long)]
        unmanaged: bool,
        /// Where to write it [default: the gateway's file name, here].
        #[arg(long, short = 'O', value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: ArtifactsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.gateway)?;
    runtime()?.block_on(async {
        match args.command {
            ArtifactsCommand::Download {
                id,
                managed: _,
                unmanaged,
                out,
                force,
            } => download(&client, &id, unmanaged, out, force).await,
        }
    })
}

async fn download(
    client: &Client,
    id: &str,
    unmanaged: bool,
    out: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    let kind = if unmanaged { "unmanaged" } else { "managed" };
    // The run first: a clear word when it has no artifact yet, and the
    // sha256 to check the download against.
    let run = client
        .get(&["api", "v1", "deployments", id])
        .await
        .map_err(|e| hint_not_found(e, RUNS_HINT))?;
    let artifact = &run["artifact"];
    if artifact.is_null() {
        bail!(
            "deployment {id} has no artifact yet (it is {}); a run has one once exported: `slipway runs {id}`",
            text(&run, "state")
        );
    }
    // Refuse before downloading what could not be written.
    if let Some(path) = &out
        && !force
        && path.exists()
    {
        bail!(
            "{} exists; give another --out FILE, or --force to replace it",
            path.display()
        );
    }
    let (bytes, suggested) = client
        .download(
            &["api", "v1", "deployments", id, "artifact"],
            &[("kind", kind.to_owned())],
        )
        .await
        .map_err(|e| hint_not_found(e, RUNS_HINT))?;
    let sha = hex(&sha2::Sha256::digest(&bytes));
    if let Some(expected) = artifact[format!("{kind}_sha256")].as_str()
        && !expected.eq_ignore_ascii_case(&sha)
    {
        bail!(
            "the {kind} file of deployment {id} has sha256 {sha}, not the recorded {expected}; download it again, and tell an admin if it persists"
        );
    }
    let path = out.unwrap_or_else(|| {
        PathBuf::from(suggested.unwrap_or_else(|| {
            format!(
                "{}_{}_{kind}.zip",
                text(&run["deployment"], "solution_name"),
                text(artifact, "version").replace('.', "_")
            )
        }))
    });
    write_file(&path, &bytes, force)?;
    let size = bytes.len();
    let written = json!({
        "path": path.display().to_string(),
        "bytes": size,
        "kind": kind,
        "sha256": sha,
        "version": artifact["version"],
        "run_id": id,
    });
    client.print(&written, || {
        format!(
            "wrote {} ({}, {kind}, version {}, sha256 {sha})",
            path.display(),
            human_size(size),
            text(artifact, "version"),
        )
    });
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file
/// beside it, then renamed into place; without `force`, never over an
/// existing file (even one that appeared meanwhile).
fn write_file(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}; does the folder exist?", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    let persisted = if force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    if let Err(e) = persisted {
        if !force && path.exists() {
            bail!(
                "{} exists; give another --out FILE, or --force to replace it",
                path.display()
            );
        }
        return Err(e.error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `1234 bytes`, `12.3 KiB`, `4.5 MiB`.
fn human_size(bytes: usize) -> String {
    // Precision is not the point: this is for people.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_not_overwritten_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        write_file(&path, b"one", false).unwrap();
        let err = write_file(&path, b"two", false).unwrap_err().to_string();
        assert!(err.contains("exists") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_file(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = write_file(&dir.path().join("no/such/dir/a.zip"), b"x", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does the folder exist"), "{err}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(10), "10 bytes");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
