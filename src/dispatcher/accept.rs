//! The producer side of the async queue: [`EventQueue::accept`] returns once an event is
//! durable. Concurrent accepts are batched into one transaction; the dispatcher is woken
//! when events arrive.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::{Metrics, names};
use crate::store::StoreError;
use crate::store::events::{EventStore, NewEvent};

/// Most events committed in one transaction.
const ACCEPT_BATCH_MAX: usize = 512;

/// Why an event was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcceptError {
    #[error("the async queue has stopped")]
    Stopped,
    #[error("the async queue could not store the event: {0}")]
    Store(#[from] StoreError),
}

type Ack = oneshot::Sender<Result<(), AcceptError>>;

pub struct EventQueue {
    tx: mpsc::Sender<(NewEvent, Ack)>,
    /// Notified after every commit: the dispatcher's wake-up.
    arrived: Arc<Notify>,
}

impl EventQueue {
    /// Starts the batcher that commits accepted events to `store`.
    pub fn start(store: Arc<dyn EventStore>, metrics: Arc<Metrics>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(8192);
        let arrived = Arc::new(Notify::new());
        tokio::spawn(commit_loop(store, metrics, arrived.clone(), rx));
        Arc::new(Self { tx, arrived })
    }

    /// Commits an event; returns once it is durable.
    pub async fn accept(&self, event: NewEvent) -> Result<(), AcceptError> {
        let (ack_tx, ack_rx) = oneshot::channel();
        self.tx
            .send((event, ack_tx))
            .await
            .map_err(|_| AcceptError::Stopped)?;
        ack_rx.await.map_err(|_| AcceptError::Stopped)?
    }

    /// Resolves when events were committed since the last call (or at once if they were).
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }
}

async fn commit_loop(
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    arrived: Arc<Notify>,
    mut rx: mpsc::Receiver<(NewEvent, Ack)>,
) {
    let mut batch = Vec::with_capacity(ACCEPT_BATCH_MAX);
    while rx.recv_many(&mut batch, ACCEPT_BATCH_MAX).await > 0 {
        let (events, acks): (Vec<NewEvent>, Vec<Ack>) = batch.drain(..).unzip();
        let store = store.clone();
        let count = events.len() as u64;
        let result = match tokio::task::spawn_blocking(move || store.enqueue(&events)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AcceptError::Store(e)),
            Err(e) => Err(AcceptError::Store(StoreError::Backend(e.to_string()))),
        };
        match &result {
            Ok(()) => {
                metrics.add(names::ASYNC_RECEIVED, &[], count);
                arrived.notify_one();
            }
            Err(e) => tracing::error!(error = %e, "committing async events failed"),
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::SqliteEventStore;

    #[tokio::test]
    async fn concurrent_accepts_are_all_durable_when_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteEventStore::open(&dir.path().join("shoal.db")).unwrap());
        let queue = EventQueue::start(store.clone(), Arc::new(Metrics::default()));
        let accepts: Vec<_> = (0..100)
            .map(|n| {
                let queue = queue.clone();
                tokio::spawn(
                    async move { queue.accept(crate::store::events::sample_event(n, 1)).await },
                )
            })
            .collect();
        for accept in accepts {
            accept.await.unwrap().unwrap();
        }
        queue.arrived().await;
        assert_eq!(store.depth().unwrap()[0].1, 100);
    }
}
