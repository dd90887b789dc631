//! Prints how many confirmed publishes per second the bus sustains on the
//! local RabbitMQ (on a throwaway vhost), at a few concurrency levels.
//!
//! `cargo run -p slipway-bus --example publish_rate [messages]`

use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use slipway_bus::{Bus, BusConfig, QueueName};
use slipway_messages::{Deployment, Envelope, ExportCommand, Message, Role};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages: usize = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .context("the argument is the number of messages")?,
        None => 5_000,
    };
    let vhost = slipway_testkit::rabbit::fresh_vhost().await?;
    let config = BusConfig {
        url: vhost.amqp_url(),
        ..BusConfig::default()
    };
    let bus = Bus::connect(&config).await?;
    let envelope = Envelope::new(
        uuid::Uuid::now_v7(),
        Message::Export(ExportCommand {
            deployment: Deployment::between("Contoso", "dev", "test"),
        }),
    );
    for concurrency in [1, 16, 128] {
        let start = Instant::now();
        let failures = futures::stream::iter(0..messages)
            .map(|_| bus.publish(&envelope))
            .buffer_unordered(concurrency)
            .filter(|result| std::future::ready(result.is_err()))
            .count()
            .await;
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "concurrency {concurrency:>3}: {messages} confirmed publishes in {seconds:.2} s = {:.0}/s ({failures} failed)",
            messages as f64 / seconds
        );
    }
    let queued = bus.queue_depth(QueueName::Role(Role::Exporter)).await?;
    println!("exporter queue holds {queued} messages");
    vhost.delete().await
}
