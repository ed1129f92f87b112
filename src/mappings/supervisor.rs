//! The event source that keeps one poller running per enabled mapping: at start and after
//! every change the service announces, it stops the pollers of mappings that were deleted,
//! disabled or changed, and starts those of mappings that are enabled and not running. At
//! shutdown it stops them all and waits for their batches in flight.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::poller::Poller;
use super::{Mapping, Mappings};
use crate::invoke::BoxFuture;
use crate::sources::{EventSource, SourceContext};

pub struct Supervisor {
    mappings: Arc<Mappings>,
    account: String,
}

struct Running {
    /// The mapping as the poller was started with (its processing result aside).
    config: Mapping,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A mapping's settings, without what changes as it runs.
fn config_of(mapping: &Mapping) -> Mapping {
    Mapping {
        last_processing_result: String::new(),
        ..mapping.clone()
    }
}

impl Supervisor {
    pub fn new(mappings: Arc<Mappings>, account: String) -> Arc<Self> {
        Arc::new(Self { mappings, account })
    }

    async fn supervise(self: Arc<Self>, context: SourceContext) {
        let mut changes = self.mappings.subscribe();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut stopping: Vec<JoinHandle<()>> = Vec::new();
        loop {
            changes.mark_unchanged();
            let wanted: HashMap<String, Mapping> = self
                .mappings
                .snapshot()
                .into_iter()
                .filter(|m| m.enabled)
                .map(|m| (m.uuid.clone(), config_of(&m)))
                .collect();
            let stale: Vec<String> = running
                .iter()
                .filter(|(uuid, p)| wanted.get(*uuid) != Some(&p.config) || p.task.is_finished())
                .map(|(uuid, _)| uuid.clone())
                .collect();
            for uuid in stale {
                if let Some(poller) = running.remove(&uuid) {
                    let _ = poller.stop.send(true);
                    tracing::debug!(uuid = %uuid, "mapping poller stopped");
                    stopping.push(poller.task);
                }
            }
            for (uuid, config) in wanted {
                if running.contains_key(&uuid) {
                    continue;
                }
                let (stop, stop_rx) = watch::channel(false);
                let poller = Poller::new(
                    config.clone(),
                    self.mappings.clone(),
                    context.invoke.clone(),
                    self.account.clone(),
                );
                tracing::debug!(uuid = %uuid, queue = %config.queue, "mapping poller started");
                let span = tracing::info_span!("mapping", uuid = %uuid);
                let task = tokio::spawn(tracing::Instrument::instrument(poller.run(stop_rx), span));
                running.insert(uuid, Running { config, stop, task });
            }
            stopping.retain(|task| !task.is_finished());
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = context.shutdown.started() => break,
            }
        }
        for poller in running.values() {
            let _ = poller.stop.send(true);
        }
        for task in running.into_values().map(|p| p.task).chain(stopping) {
            let _ = task.await;
        }
    }
}

impl EventSource for Supervisor {
    fn name(&self) -> String {
        "event-source-mappings".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(self.supervise(context))
    }
}
