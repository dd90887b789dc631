//! The workspace's service binaries, for tests that run each service as its
//! own OS process.
//!
//! Cargo only builds a package's own binaries for its integration tests, so
//! the first call builds the service binaries once per test process with
//! the same `cargo` and target directory, then hands out their paths.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The binaries the end-to-end tests start.
pub const SERVICES: [&str; 4] = [
    "slipway-gateway",
    "slipway-exporter",
    "slipway-validator",
    "slipway-importer",
];

fn workspace_root() -> PathBuf {
    // crates/testkit -> the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Variables Cargo sets for running one package's target, not for Cargo
/// itself (`CARGO`, `CARGO_HOME`, `CARGO_TARGET_DIR` stay).
fn set_by_cargo_for_a_package(key: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|prefix| key.starts_with(prefix))
        || matches!(
            key,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
        )
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Path of the freshly built service binary `name` (one of [`SERVICES`]).
/// Builds them all on first use.
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let dir = BUILT
        .get_or_init(build)
        .clone()
        .map_err(anyhow::Error::msg)?;
    let exe = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(exe.exists(), "{} was not built", exe.display());
    Ok(exe)
}

fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--bins"]);
    // Cargo gives the process it runs (a test, the benchmark) the variables
    // of its package. Passed on, they differ from a plain `cargo build`'s,
    // and build scripts that watch them (ring watches CARGO_MANIFEST_DIR)
    // would rebuild half the workspace on every call.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_a_package) {
            cmd.env_remove(key);
        }
    }
    // Same profile as the caller: the benchmark (built --release) measures
    // release services, the tests debug ones.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    if profile == "release" {
        cmd.arg("--release");
    }
    for p in SERVICES {
        cmd.args(["-p", p]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build the service binaries: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the service binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir().join(profile))
}
