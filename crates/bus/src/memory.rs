//! The in-process transport: one `VecDeque` per queue behind a mutex, with the
//! AMQP transport's semantics (prefetch, batches in order, ack after the
//! handler, retry after a delay, parking, requeue of unacked messages when a
//! consumer stops).
//! Nothing survives the process; that is what `slipway dev` wants.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Incoming, Process};
use crate::{Bus, BusConfig, BusError, ParkedMessage, QueueName, Route, TraceHeaders};

/// A message as it waits in a queue.
type Stored = Incoming;

#[derive(Debug, Default)]
struct Queue {
    ready: Mutex<VecDeque<Stored>>,
    parked: Mutex<VecDeque<Stored>>,
    arrived: Notify,
}

impl Queue {
    fn ready(&self) -> std::sync::MutexGuard<'_, VecDeque<Stored>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, message: Stored) {
        self.ready().push_back(message);
        self.arrived.notify_waiters();
    }

    /// Puts messages back at the front, keeping their order.
    fn requeue(&self, messages: impl DoubleEndedIterator<Item = Stored>) {
        let mut ready = self.ready();
        for message in messages.rev() {
            ready.push_front(message);
        }
        drop(ready);
        self.arrived.notify_waiters();
    }

    /// Waits for a message, then takes up to `max` without waiting further.
    /// Cancel-safe: messages are either returned or left in the queue.
    async fn take(&self, max: usize) -> Vec<Stored> {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let taken: Vec<Stored> = {
                let mut ready = self.ready();
                let n = ready.len().min(max);
                ready.drain(..n).collect()
            };
            if !taken.is_empty() {
                return taken;
            }
            arrived.await;
        }
    }
}

/// Delivered messages that go back to the front of their queue, in order,
/// unless acked, also when their handler task is aborted.
struct Unacked {
    queue: Arc<Queue>,
    messages: Vec<Option<Stored>>,
}

impl Unacked {
    fn ack(&mut self, index: usize) {
        if let Some(message) = self.messages.get_mut(index) {
            *message = None;
        }
    }
}

impl Drop for Unacked {
    fn drop(&mut self) {
        let rest: Vec<Stored> = self.messages.drain(..).flatten().collect();
        if !rest.is_empty() {
            self.queue.requeue(rest.into_iter());
        }
    }
}

#[derive(Debug)]
pub(crate) struct MemoryBus {
    pub(crate) config: BusConfig,
    queues: [Arc<Queue>; 4],
}

impl MemoryBus {
    pub(crate) fn new(config: &BusConfig) -> Self {
        MemoryBus {
            config: config.clone(),
            queues: Default::default(),
        }
    }

    fn queue(&self, name: QueueName) -> &Arc<Queue> {
        let index = QueueName::ALL
            .iter()
            .position(|q| *q == name)
            .unwrap_or_default();
        &self.queues[index]
    }

    pub(crate) fn send(&self, route: Route, body: &[u8], headers: &TraceHeaders) {
        let message = Incoming {
            body: body.to_vec(),
            headers: headers.clone(),
        };
        match route {
            Route::Command(role) => self.queue(QueueName::Role(role)).push(message),
            Route::Event(_) | Route::Queue(QueueName::Events) => {
                self.queue(QueueName::Events).push(message);
            }
            Route::Queue(queue) => self.queue(queue).push(message),
            Route::Retry(queue, delay) => {
                let queue = Arc::clone(self.queue(queue));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.push(message);
                });
            }
            Route::Parked(queue) => self
                .queue(queue)
                .parked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(message),
        }
    }

    pub(crate) fn depth(&self, queue: QueueName) -> u32 {
        let ready = self
            .queue(queue)
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        u32::try_from(ready).unwrap_or(u32::MAX)
    }

    pub(crate) fn drain_parked(&self, queue: QueueName) -> Vec<ParkedMessage> {
        let mut parked = self
            .queue(queue)
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        parked
            .drain(..)
            .map(|m| ParkedMessage::from_parts(m.body, &m.headers))
            .collect()
    }

    /// Consumes until `shutdown`: one message per task with up to
    /// `prefetch` tasks, or (batches) one task at a time taking what is
    /// ready up to the batch size.
    pub(crate) async fn consume<P: Process>(
        &self,
        bus: &Bus,
        queue: QueueName,
        process: Arc<P>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let source = Arc::clone(self.queue(queue));
        let (tasks, take) = match process.batch() {
            None => (usize::from(self.config.prefetch.max(1)), 1),
            Some(max) => (1, max.max(1)),
        };
        let slots = Arc::new(Semaphore::new(tasks));
        let mut in_flight = JoinSet::new();
        loop {
            let next = async {
                let slot = Arc::clone(&slots).acquire_owned().await;
                (slot, source.take(take).await)
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                (slot, messages) = next => {
                    let bus = bus.clone();
                    let process = Arc::clone(&process);
                    let mut unacked = Unacked {
                        queue: Arc::clone(&source),
                        messages: messages.iter().cloned().map(Some).collect(),
                    };
                    in_flight.spawn(async move {
                        let _slot = slot;
                        let settled = process.settle(&bus, queue, &messages).await;
                        let mut failed = false;
                        for (index, result) in settled.iter().enumerate() {
                            match result {
                                Ok(()) => unacked.ack(index),
                                Err(err) => {
                                    tracing::warn!(%queue, error = %err, "could not settle a delivery; requeueing it");
                                    failed = true;
                                }
                            }
                        }
                        if failed {
                            tokio::time::sleep(bus.config().retry_delay(1)).await;
                        }
                        // Dropping `unacked` requeues what was not settled.
                    });
                }
            }
        }
        crate::finish_in_flight(&mut in_flight, &self.config).await;
        Ok(())
    }
}
