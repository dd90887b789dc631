//! The validator: checks an artifact against the target environment
//! (missing dependencies, connection references, environment variables,
//! version rule) and, when it passes, hands the importer the same artifact.
//!
//! Until the real checks land the step passes every artifact on; the flow
//! around it (acks, retries, parking, events) is the real one. It never
//! touches the database.

use slipway_bus::HandlerError;
use slipway_messages::{
    Envelope, ImportCommand, Message, Role, StepOutcome, ValidationReport, Verdict,
};
use slipway_service::worker::{Step, StepDone};

/// The validation step.
#[derive(Debug, Default)]
pub struct ValidatorStep;

#[async_trait::async_trait]
impl Step for ValidatorStep {
    fn role(&self) -> Role {
        Role::Validator
    }

    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError> {
        let Message::Validate(cmd) = &envelope.message else {
            return Err(HandlerError::Permanent(format!(
                "the validator takes `validate` commands, not `{}`",
                envelope.message.kind()
            )));
        };
        let report = ValidationReport {
            verdict: Verdict::Passed,
            artifact_version: cmd.artifact.version.clone(),
            installed_version: None,
            version_problem: None,
            missing_dependencies: Vec::new(),
            errors: Vec::new(),
            connection_references: Vec::new(),
            environment_variables: Vec::new(),
            policy_violations: Vec::new(),
            diff: None,
        };
        let next = (!cmd.deployment.hold_after_validation).then(|| {
            Message::Import(ImportCommand {
                deployment: cmd.deployment.clone(),
                artifact: cmd.artifact.clone(),
                async_operation_id: None,
                polls: 0,
            })
        });
        Ok(StepDone::succeeded(
            Some(StepOutcome::Validated {
                artifact: cmd.artifact.clone(),
                report,
            }),
            next,
        ))
    }
}
