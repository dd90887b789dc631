//! `slipway-exporter`: the exporter worker, run as its own process. Scale it by
//! running more of them: they compete for the same queue.

use slipway_exporter::ExporterStep;

fn main() -> anyhow::Result<()> {
    slipway_service::worker::main(
        "slipway-exporter",
        "Exports a solution from its source environment and stores the artifact",
        |config| async move { ExporterStep::from_config(&config).await },
    )
}
