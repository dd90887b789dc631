//! The importer: imports an artifact's managed file into the target
//! environment as an upgrade, with the deployment settings, and polls the
//! import to its end. It is the last step: it publishes no command.
//!
//! Until the real import lands the step completes at once; the flow around
//! it (acks, retries, parking, events) is the real one. It never touches
//! the database.

use slipway_bus::HandlerError;
use slipway_messages::{Envelope, Message, Role};
use slipway_service::worker::{Step, StepDone};

/// The import step.
#[derive(Debug, Default)]
pub struct ImporterStep;

#[async_trait::async_trait]
impl Step for ImporterStep {
    fn role(&self) -> Role {
        Role::Importer
    }

    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError> {
        match &envelope.message {
            Message::Import(_) => Ok(StepDone::succeeded(None, None)),
            other => Err(HandlerError::Permanent(format!(
                "the importer takes `import` commands, not `{}`",
                other.kind()
            ))),
        }
    }
}
