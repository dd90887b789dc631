//! `slipway-exporter`: the exporter worker, run as its own process. Scale it by
//! running more of them: they compete for the same queue.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    slipway_service::worker::main(
        "slipway-exporter",
        "Exports a solution from its source environment and stores the artifact",
        |_config| async { Ok(slipway_exporter::ExporterStep) },
    )
    .await
}
