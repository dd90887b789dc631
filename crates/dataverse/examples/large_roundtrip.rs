//! Prints figures for moving a large solution through the client: import
//! (base64 once into the body) and export (decoded straight into `Bytes`),
//! against the simulator in-process.
//!
//! `cargo run -p slipway-dataverse --example large_roundtrip [MEGABYTES]`
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use slipway_dataverse::{Client, ClientConfig, Credentials, ImportRequest};
use slipway_envsim::config::EnvironmentConfig;
use slipway_envsim::{Config, EnvSim};
use slipway_testkit::solution_zip::SolutionZip;

#[tokio::main]
async fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    // Incompressible payload, stored: the zip is as large as asked.
    let mut payload = vec![0u8; mb * 1024 * 1024];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in payload.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let zip = Bytes::from(
        SolutionZip::new("Large", "1.0.0.0")
            .root_component(61, "cts_/big.bin")
            .file("WebResources/big.bin", &payload)
            .stored(true)
            .build(),
    );
    drop(payload);

    let mut config = Config::in_memory();
    config.dev_tokens = vec!["dev".into()];
    config.environments = vec![EnvironmentConfig::new("bench")];
    let sim = EnvSim::start(config).await.unwrap();
    let mut cc = ClientConfig::new(sim.env_url("bench"), Credentials::StaticToken("dev".into()));
    cc.poll_interval = Duration::from_millis(20);
    let client = Client::new(cc).unwrap();

    let size = zip.len() as f64 / (1024.0 * 1024.0);
    let t = Instant::now();
    client
        .import_solution(&ImportRequest::new(zip.clone()))
        .await
        .unwrap();
    let import = t.elapsed();
    let t = Instant::now();
    let exported = client.export_solution("Large", false).await.unwrap();
    let export = t.elapsed();
    assert_eq!(exported, zip, "export must return the imported bytes");
    println!("zip size            {size:>8.1} MiB");
    println!(
        "import (to the end) {:>8.0} ms  {:>6.1} MiB/s",
        import.as_secs_f64() * 1e3,
        size / import.as_secs_f64()
    );
    println!(
        "export              {:>8.0} ms  {:>6.1} MiB/s",
        export.as_secs_f64() * 1e3,
        size / export.as_secs_f64()
    );
    println!("(debug build, client and simulator in one process)");
    sim.shutdown().await.unwrap();
}
