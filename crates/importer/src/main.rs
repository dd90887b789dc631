//! `slipway-importer`: the importer worker, run as its own process. Scale it by
//! running more of them: they compete for the same queue.

fn main() -> anyhow::Result<()> {
    slipway_service::worker::main(
        "slipway-importer",
        "Imports an artifact into its target environment",
        |config| async move { slipway_importer::ImporterStep::from_config(&config).await },
    )
}
