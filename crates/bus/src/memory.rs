//! The in-process transport: one `VecDeque` per queue behind a mutex, with the
//! AMQP transport's semantics (prefetch, ack after the handler, retry after a
//! delay, parking, requeue of unacked messages when a consumer stops).
//! Nothing survives the process; that is what `slipway dev` wants.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    Bus, BusConfig, BusError, Handler, ParkedMessage, QueueName, Route, TraceHeaders, deliver,
};

#[derive(Debug, Clone)]
struct Stored {
    body: Vec<u8>,
    headers: TraceHeaders,
}

#[derive(Debug, Default)]
struct Queue {
    ready: Mutex<VecDeque<Stored>>,
    parked: Mutex<VecDeque<Stored>>,
    arrived: Notify,
}

impl Queue {
    fn push(&self, message: Stored, front: bool) {
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        if front {
            ready.push_front(message);
        } else {
            ready.push_back(message);
        }
        drop(ready);
        self.arrived.notify_waiters();
    }

    /// Cancel-safe: a message is either returned or left in the queue.
    async fn pop(&self) -> Stored {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let next = self
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            if let Some(message) = next {
                return message;
            }
            arrived.await;
        }
    }
}

/// A delivered message that goes back to the front of its queue unless acked,
/// also when its handler task is aborted.
struct Unacked {
    queue: Arc<Queue>,
    message: Option<Stored>,
}

impl Unacked {
    fn ack(mut self) {
        self.message = None;
    }
}

impl Drop for Unacked {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.queue.push(message, true);
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
        let message = Stored {
            body: body.to_vec(),
            headers: headers.clone(),
        };
        match route {
            Route::Command(role) => self.queue(QueueName::Role(role)).push(message, false),
            Route::Event(_) | Route::Queue(QueueName::Events) => {
                self.queue(QueueName::Events).push(message, false);
            }
            Route::Queue(queue) => self.queue(queue).push(message, false),
            Route::Retry(queue, delay) => {
                let queue = Arc::clone(self.queue(queue));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.push(message, false);
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

    pub(crate) async fn consume<H: Handler>(
        &self,
        bus: &Bus,
        queue: QueueName,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let source = Arc::clone(self.queue(queue));
        let slots = Arc::new(Semaphore::new(usize::from(self.config.prefetch.max(1))));
        let mut in_flight = JoinSet::new();
        loop {
            let next = async {
                let slot = Arc::clone(&slots).acquire_owned().await;
                (slot, source.pop().await)
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                (slot, message) = next => {
                    let bus = bus.clone();
                    let handler = Arc::clone(&handler);
                    let unacked = Unacked { queue: Arc::clone(&source), message: Some(message.clone()) };
                    in_flight.spawn(async move {
                        let _slot = slot;
                        match deliver::process(&bus, queue, handler.as_ref(), &message.body, &message.headers).await {
                            Ok(()) => unacked.ack(),
                            Err(err) => {
                                tracing::warn!(%queue, error = %err, "could not settle a delivery; requeueing it");
                                tokio::time::sleep(bus.config().retry_delay(1)).await;
                            }
                        }
                    });
                }
            }
        }
        crate::finish_in_flight(&mut in_flight, &self.config).await;
        Ok(())
    }
}
