//! `worker.concurrency` bounds the steps a worker runs at once, whatever
//! its prefetch; the deliveries beyond it wait and are all done in the end.
//! On the real RabbitMQ, in a vhost of its own.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use slipway_bus::{Bus, BusConfig, HandlerError, QueueName, Transport};
use slipway_messages::{Deployment, Envelope, ExportCommand, Message, Role};
use slipway_service::config::WorkerConfig;
use slipway_service::shutdown::CancellationToken;
use slipway_service::worker::{Step, StepDone, serve_with};

/// An exporter step that counts how many of it run at once.
struct Counting {
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Step for Counting {
    fn role(&self) -> Role {
        Role::Exporter
    }

    async fn run(&self, _envelope: &Envelope) -> Result<StepDone, HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        // Nothing next: the step reports its end as an event.
        Ok(StepDone::succeeded(None, None))
    }
}

#[tokio::test]
async fn concurrency_bounds_running_steps_below_the_prefetch() {
    let vhost = slipway_testkit::rabbit::fresh_vhost().await.unwrap();
    let config = BusConfig {
        transport: Transport::Amqp,
        url: vhost.amqp_url(),
        prefetch: 64,
        ..BusConfig::default()
    };
    let bus = Bus::connect(&config).await.unwrap();
    const JOBS: usize = 24;
    for _ in 0..JOBS {
        let command = Envelope::new(
            uuid::Uuid::now_v7(),
            Message::Export(ExportCommand {
                deployment: Deployment::between("Contoso", "dev", "test"),
            }),
        );
        bus.publish(&command).await.unwrap();
    }
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let step = Counting {
        running: Arc::clone(&running),
        most: Arc::clone(&most),
        done: Arc::clone(&done),
    };
    let worker = WorkerConfig {
        concurrency: 3,
        ..WorkerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        async move { serve_with(bus, step, &worker, shutdown).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < JOBS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {JOBS} steps finished",
            done.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // All the jobs could be delivered at once (prefetch 64), yet three ran
    // at a time.
    assert_eq!(most.load(Ordering::SeqCst), 3, "steps running at once");
    let exporter = QueueName::Role(Role::Exporter);
    assert_eq!(bus.queue_depth(exporter).await.unwrap(), 0);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    vhost.delete().await.unwrap();
}
