//! `slipway-validator`: the validator worker, run as its own process. Scale it by
//! running more of them: they compete for the same queue.

fn main() -> anyhow::Result<()> {
    slipway_service::worker::main(
        "slipway-validator",
        "Validates an artifact against its target environment",
        |config| async move { slipway_validator::ValidatorStep::from_config(&config).await },
    )
}
