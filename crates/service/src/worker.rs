//! The part every worker shares: consume the role's queue, report the step
//! as started, do it, publish the next command, report it succeeded, ack.
//!
//! Each worker crate only implements [`Step`]; retries, parking, failure
//! events, acks and shutdown come from here and from `slipway-bus`.

use std::time::Duration;

use slipway_bus::{Bus, Handler, HandlerError, QueueName};
use slipway_messages::{Envelope, Message, Role, RunEvent, StepStatus};

use crate::shutdown::CancellationToken;

/// One worker role's job.
#[async_trait::async_trait]
pub trait Step: Send + Sync + 'static {
    /// The role whose queue this step consumes.
    fn role(&self) -> Role;

    /// Does the work for one command and returns the next command, if any.
    /// Must be idempotent: a command may be delivered more than once.
    async fn run(&self, envelope: &Envelope) -> Result<Option<Message>, HandlerError>;
}

/// Consume `step`'s queue on `bus` until `shutdown` is cancelled.
pub async fn serve<S: Step>(bus: Bus, step: S, shutdown: CancellationToken) -> anyhow::Result<()> {
    let role = step.role();
    tracing::info!(%role, "worker consuming");
    let handler = StepHandler {
        bus: bus.clone(),
        step,
        instance: slipway_bus::instance_name(),
    };
    bus.consume(QueueName::Role(role), handler, shutdown)
        .await?;
    tracing::info!(%role, "worker stopped");
    Ok(())
}

#[derive(Debug)]
struct StepHandler<S> {
    bus: Bus,
    step: S,
    instance: String,
}

impl<S> StepHandler<S>
where
    S: Step,
{
    async fn report(
        &self,
        envelope: &Envelope,
        status: StepStatus,
        detail: Option<String>,
    ) -> Result<(), HandlerError> {
        let role = self.step.role();
        let event = envelope.next(Message::RunEvent(RunEvent {
            step: Some(role.step()),
            status,
            service: role.as_str().into(),
            instance: Some(self.instance.clone()),
            detail,
        }));
        self.bus.publish(&event).await.map_err(|err| {
            HandlerError::Transient(format!("cannot publish the {status:?} event: {err}"))
        })
    }

    /// The failures a deployment's placeholder settings ask for.
    fn placeholder_failure(&self, envelope: &Envelope) -> Option<HandlerError> {
        let work = &envelope.message.deployment()?.placeholder;
        let step = self.step.role().step();
        if work.always_fail == Some(step) {
            return Some(HandlerError::Transient(format!(
                "placeholder {} step told to fail on every attempt",
                step.as_str()
            )));
        }
        match work.fail_first_attempts {
            Some((s, n)) if s == step && envelope.attempt <= n => {
                Some(HandlerError::Transient(format!(
                    "placeholder {} step told to fail its first {n} attempts (this is attempt {})",
                    step.as_str(),
                    envelope.attempt
                )))
            }
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl<S: Step> Handler for StepHandler<S> {
    #[tracing::instrument(name = "step", skip_all, fields(role = %self.step.role(), run_id = %envelope.run_id, attempt = envelope.attempt))]
    async fn handle(&self, envelope: Envelope) -> Result<(), HandlerError> {
        self.report(&envelope, StepStatus::Started, None).await?;
        if let Some(millis) = envelope
            .message
            .deployment()
            .map(|d| d.placeholder.step_millis)
            && millis > 0
        {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        if let Some(err) = self.placeholder_failure(&envelope) {
            return Err(err);
        }
        let next = self.step.run(&envelope).await?;
        // Success is reported before the next step is handed its command, so
        // observers see the steps in order; both are confirmed before the
        // bus acks this command. A crash in between redelivers the command,
        // and the idempotent step does it again.
        self.report(&envelope, StepStatus::Succeeded, None).await?;
        if let Some(next) = next {
            self.bus
                .publish(&envelope.next(next))
                .await
                .map_err(|err| {
                    HandlerError::Transient(format!("cannot publish the next command: {err}"))
                })?;
        }
        Ok(())
    }
}

/// The `main` of a worker binary `name` (whose `--help` says `about`):
/// arguments, configuration, telemetry, bus, consume until SIGTERM/SIGINT.
pub async fn main<S: Step>(name: &'static str, about: &'static str, step: S) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let args = crate::args::ServiceArgs::parse_for(name, about);
    let config = crate::config::Config::load(args.config.as_deref())?;
    let _telemetry = crate::telemetry::init(name, &config.telemetry)?;
    let shutdown = crate::shutdown::on_signal();
    let bus = Bus::connect(&config.bus)
        .await
        .context("cannot connect to the bus")?;
    serve(bus, step, shutdown).await
}
