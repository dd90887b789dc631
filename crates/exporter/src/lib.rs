//! The exporter: takes an export command, exports the solution from the
//! source environment (managed and unmanaged, once per version), stores the
//! artifact, and hands the validator a command naming it.
//!
//! Until the real export lands (it needs the Dataverse client and the
//! artifact store), the step is a placeholder that derives the artifact's
//! identity from the deployment; the flow around it (acks, retries,
//! parking, events) is the real one. It never touches the database.

use slipway_bus::HandlerError;
use slipway_messages::{ArtifactRef, Envelope, Message, Role, StepOutcome, ValidateCommand};
use slipway_service::worker::{Step, StepDone};

/// The export step.
#[derive(Debug, Default)]
pub struct ExporterStep;

#[async_trait::async_trait]
impl Step for ExporterStep {
    fn role(&self) -> Role {
        Role::Exporter
    }

    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError> {
        let Message::Export(cmd) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the exporter takes `export` commands, not `{}`",
                envelope.message.kind()
            )));
        };
        let version = cmd
            .deployment
            .version
            .clone()
            .unwrap_or_else(|| "1.0.0.0".into());
        // Placeholder identity: the real exporter stores the files and
        // names them by their sha256.
        let placeholder = format!("placeholder:{}:{version}", cmd.deployment.solution_name);
        let artifact = ArtifactRef {
            managed_sha256: format!("{placeholder}:managed"),
            unmanaged_sha256: format!("{placeholder}:unmanaged"),
            version,
            managed_bytes: 0,
        };
        Ok(StepDone::succeeded(
            Some(StepOutcome::Exported {
                artifact: artifact.clone(),
            }),
            Some(Message::Validate(ValidateCommand {
                deployment: cmd.deployment.clone(),
                artifact,
            })),
        ))
    }
}
