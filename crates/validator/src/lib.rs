//! The validator: checks an artifact against the target environment
//! (missing dependencies, connection references, environment variables,
//! version rule) and, when it passes, hands the importer the same artifact.
//!
//! Until the real checks land the step passes every artifact on; the flow
//! around it (acks, retries, parking, events) is the real one. It never
//! touches the database.

use slipway_bus::HandlerError;
use slipway_messages::{Envelope, ImportCommand, Message, Role};
use slipway_service::worker::Step;

/// The validation step.
#[derive(Debug, Default)]
pub struct ValidatorStep;

#[async_trait::async_trait]
impl Step for ValidatorStep {
    fn role(&self) -> Role {
        Role::Validator
    }

    async fn run(&self, envelope: &Envelope) -> Result<Option<Message>, HandlerError> {
        let Message::Validate(cmd) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the validator takes `validate` commands, not `{}`",
                envelope.message.kind()
            )));
        };
        Ok(Some(Message::Import(ImportCommand {
            deployment: cmd.deployment.clone(),
            artifact: cmd.artifact.clone(),
        })))
    }
}
