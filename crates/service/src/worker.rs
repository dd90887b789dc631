//! The part every worker shares: consume the role's queue, do the step,
//! report how it ended (with what it produced), hand the next command on,
//! ack.
//!
//! Reports travel with the job (`Envelope::reports`): a step that hands
//! the job on at once adds its `succeeded` event to the next command, so a
//! fast pipeline publishes one message per step. Every event a worker does
//! publish (a slow step's `started`, a failure, the last step's end, a step
//! that waits for the gateway) carries the reports its command brought, so
//! the gateway learns of a step at the latest when the job next comes to
//! rest or slows down. `started` is reported only by a step still running
//! after `worker.started_event_after_ms`: worth a publish when someone
//! could watch the step run, not for a step done in milliseconds.
//!
//! Each worker crate only implements [`Step`]; retries, parking, failure
//! events, acks and shutdown come from here and from `slipway-bus`.

use std::time::Duration;

use slipway_bus::{Bus, Handler, HandlerError, QueueName};
use slipway_messages::{Envelope, Message, Role, RunEvent, StepOutcome, StepStatus};

use crate::config::WorkerConfig;
use crate::shutdown::CancellationToken;

/// One worker role's job.
#[async_trait::async_trait]
pub trait Step: Send + Sync + 'static {
    /// The role whose queue this step consumes.
    fn role(&self) -> Role;

    /// Does the work for one command. Must be idempotent: a command may be
    /// delivered more than once. Transient errors are retried by the bus;
    /// a step that ends the run on purpose (a failed validation) returns
    /// [`StepDone::failed`] instead.
    async fn run(&self, envelope: &Envelope) -> Result<StepDone, HandlerError>;

    /// True for a command that continues work already reported as started
    /// (the importer's polls): no second `started` event.
    fn is_continuation(&self, _envelope: &Envelope) -> bool {
        false
    }
}

/// How a step ended, what it produced, and what comes next.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDone {
    pub report: StepReport,
    /// Human-readable detail of the event (a failure's reason).
    pub detail: Option<String>,
    /// What the step produced, carried on its event.
    pub outcome: Option<StepOutcome>,
    /// The command to publish next (confirmed before the ack).
    pub next: Option<Message>,
    /// Deliver `next` after about this long (see `Bus::publish_delayed`).
    pub next_delay: Option<Duration>,
}

/// Which event a finished delivery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepReport {
    /// The step is done: a `succeeded` event.
    Succeeded,
    /// The step ended the run: a `failed` event with the detail.
    Failed,
    /// Still running (a long import): a `started` event carrying the
    /// progress outcome, and `next` continues it.
    InProgress,
}

impl StepDone {
    /// Done; `next` goes on at once.
    pub fn succeeded(outcome: Option<StepOutcome>, next: Option<Message>) -> Self {
        StepDone {
            report: StepReport::Succeeded,
            detail: None,
            outcome,
            next,
            next_delay: None,
        }
    }

    /// The run fails for `reason`; nothing comes next.
    pub fn failed(reason: impl Into<String>, outcome: Option<StepOutcome>) -> Self {
        StepDone {
            report: StepReport::Failed,
            detail: Some(reason.into()),
            outcome,
            next: None,
            next_delay: None,
        }
    }

    /// Still running; `next` continues after `delay`.
    pub fn in_progress(outcome: Option<StepOutcome>, next: Message, delay: Duration) -> Self {
        StepDone {
            report: StepReport::InProgress,
            detail: None,
            outcome,
            next: Some(next),
            next_delay: Some(delay),
        }
    }
}

/// Consume `step`'s queue on `bus` until `shutdown` is cancelled, with the
/// default [`WorkerConfig`].
pub async fn serve<S: Step>(bus: Bus, step: S, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve_with(bus, step, &WorkerConfig::default(), shutdown).await
}

/// [`serve`] with `config`.
pub async fn serve_with<S: Step>(
    bus: Bus,
    step: S,
    config: &WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let role = step.role();
    tracing::info!(%role, "worker consuming");
    let handler = StepHandler {
        bus: bus.clone(),
        step,
        instance: slipway_bus::instance_name(),
        started_after: Duration::from_millis(config.started_event_after_ms),
        slots: std::sync::Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
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
    /// A step still running after this long reports `started`.
    started_after: Duration,
    /// `worker.concurrency` permits: held while a step runs, not while its
    /// next command waits for the broker's confirm.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl<S> StepHandler<S>
where
    S: Step,
{
    /// This step's event.
    fn event(
        &self,
        status: StepStatus,
        detail: Option<String>,
        outcome: Option<StepOutcome>,
    ) -> RunEvent {
        let role = self.step.role();
        RunEvent {
            step: Some(role.step()),
            status,
            service: role.as_str().into(),
            instance: Some(self.instance.clone()),
            detail,
            outcome,
        }
    }

    /// Publish `event` about `envelope`'s run, carrying `reports` (the run
    /// events not yet delivered).
    async fn report(
        &self,
        envelope: &Envelope,
        event: RunEvent,
        reports: Vec<Envelope>,
    ) -> Result<(), HandlerError> {
        let status = event.status;
        let mut event = envelope.next(Message::RunEvent(event));
        event.reports = reports;
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
    async fn handle(&self, mut envelope: Envelope) -> Result<(), HandlerError> {
        // The reports this command brought, until an event delivers them.
        let mut reports = std::mem::take(&mut envelope.reports);
        let work = async {
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
            self.step.run(&envelope).await
        };
        // Waiting for a slot is not running: no `started` event meanwhile.
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| HandlerError::Transient("the worker is stopping".into()))?;
        let done = if self.step.is_continuation(&envelope) {
            work.await?
        } else {
            tokio::pin!(work);
            tokio::select! {
                biased;
                done = &mut work => done?,
                () = tokio::time::sleep(self.started_after) => {
                    let started = self.event(StepStatus::Started, None, None);
                    self.report(&envelope, started, std::mem::take(&mut reports)).await?;
                    work.await?
                }
            }
        };
        // The step is done; the confirms below wait without a slot.
        drop(slot);
        // The outcome is reported before or with the next step's command,
        // so observers see the steps in order; both are confirmed before
        // the bus acks this command. A crash in between redelivers the
        // command, and the idempotent step does it again.
        let status = match done.report {
            StepReport::Succeeded => StepStatus::Succeeded,
            StepReport::Failed => StepStatus::Failed,
            StepReport::InProgress => StepStatus::Started,
        };
        let event = self.event(status, done.detail, done.outcome);
        let Some(next) = done.next else {
            return self.report(&envelope, event, reports).await;
        };
        let mut next = envelope.next(next);
        let published = match done.next_delay {
            Some(delay) => {
                // The job rests until the delay is over: report now.
                self.report(&envelope, event, reports).await?;
                self.bus.publish_delayed(&next, delay).await
            }
            None => {
                // One publish: the command, carrying the reports on.
                reports.push(envelope.next(Message::RunEvent(event)));
                next.reports = reports;
                self.bus.publish(&next).await
            }
        };
        published.map_err(|err| {
            HandlerError::Transient(format!("cannot publish the next command: {err}"))
        })
    }
}

/// The `main` of a worker binary `name` (whose `--help` says `about`):
/// arguments, configuration, telemetry, then `make` builds the step from
/// the configuration (opening what it needs, e.g. the artifact store), then
/// bus, consume until SIGTERM/SIGINT.
///
/// A worker runs its tasks on `worker.threads` threads, one by default (a
/// current-thread runtime): a step mostly waits on the broker and on
/// Dataverse, and its CPU-heavy parts (reading a solution zip) go to
/// `spawn_blocking`. On a multi-thread runtime every delivery is handed
/// between threads several times (ARCHITECTURE.md, Performance). Scale a
/// worker with replicas.
pub fn main<S, F, Fut>(name: &'static str, about: &'static str, make: F) -> anyhow::Result<()>
where
    S: Step,
    F: FnOnce(crate::config::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<S>>,
{
    let args = crate::args::ServiceArgs::parse_for(name, about);
    let config = crate::config::Config::load(args.config.as_deref())?;
    let runtime = match config.worker.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(name, config, make))
}

async fn run<S, F, Fut>(
    name: &'static str,
    config: crate::config::Config,
    make: F,
) -> anyhow::Result<()>
where
    S: Step,
    F: FnOnce(crate::config::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<S>>,
{
    use anyhow::Context as _;
    let _telemetry = crate::telemetry::init(name, &config.telemetry)?;
    let shutdown = crate::shutdown::on_signal();
    // A worker publishes before it acks, so a throttled publish holds its
    // job whatever connection the ack would take: one connection does.
    let mut bus_config = config.bus.clone();
    bus_config
        .connections
        .get_or_insert(slipway_bus::Connections::Shared);
    let bus = Bus::connect(&bus_config)
        .await
        .context("cannot connect to the bus")?;
    let worker = config.worker.clone();
    let step = make(config).await?;
    serve_with(bus, step, &worker, shutdown).await
}
