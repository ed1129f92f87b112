//! Event sources: anything that runs in the background and produces invocations.
//!
//! An [`EventSource`] is started with a [`SourceContext`]: the invoke door, the delivery
//! door and the shutdown signal, and nothing else (no scheduler, no store of another
//! component's). It runs until shutdown starts, then stops producing, lets what it
//! started finish or hands it back, and returns. The async dispatcher is one; queue and
//! stream pollers, schedules and subscriptions are more. [`Sources`] starts them and, at
//! shutdown, waits for every one to return.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::delivery::Targets;
use crate::invoke::{BoxFuture, InvokeDoor};
use crate::shutdown::ShutdownSignal;

/// What an event source may use.
#[derive(Clone)]
pub struct SourceContext {
    pub invoke: Arc<dyn InvokeDoor>,
    pub delivery: Arc<Targets>,
    pub shutdown: ShutdownSignal,
}

pub trait EventSource: Send + Sync + 'static {
    /// A name for logs (`async-queue`, `sqs:<queue>`, ...).
    fn name(&self) -> String;
    /// Runs until shutdown starts; returns once the source has stopped producing and
    /// what it started has ended or been handed back.
    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()>;
}

/// The running event sources.
pub struct Sources {
    context: SourceContext,
    running: Vec<(String, JoinHandle<()>)>,
}

impl Sources {
    pub fn new(context: SourceContext) -> Self {
        Self {
            context,
            running: Vec::new(),
        }
    }

    pub fn start(&mut self, source: Arc<dyn EventSource>) {
        let name = source.name();
        tracing::debug!(source = %name, "event source started");
        let span = tracing::info_span!("event_source", source = %name);
        let task = tokio::spawn(tracing::Instrument::instrument(
            source.run(self.context.clone()),
            span,
        ));
        self.running.push((name, task));
    }

    /// Waits until every source has returned (after shutdown started).
    pub async fn stopped(self) {
        for (name, task) in self.running {
            if let Err(e) = task.await {
                tracing::error!(source = %name, error = %e, "an event source failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoke::{Invocation, InvokeError, InvokeOutcome};
    use crate::shutdown::Shutdown;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A door that counts what it is asked and queues nothing.
    #[derive(Default)]
    struct CountingDoor(AtomicUsize);

    impl InvokeDoor for CountingDoor {
        fn invoke(&self, _: Invocation) -> BoxFuture<'_, Result<InvokeOutcome, InvokeError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Ok(InvokeOutcome::Queued {
                    request_id: "r".into(),
                })
            })
        }
    }

    /// A source that invokes once a tick until shutdown.
    struct Ticker;

    impl EventSource for Ticker {
        fn name(&self) -> String {
            "ticker".into()
        }
        fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                loop {
                    let invocation = Invocation::new(
                        "f",
                        bytes::Bytes::from_static(b"{}"),
                        crate::invoke::Mode::Async,
                        crate::invoke::Origin::Bus("tick".into()),
                    );
                    let _ = context.invoke.invoke(invocation).await;
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                        () = context.shutdown.started() => return,
                    }
                }
            })
        }
    }

    #[tokio::test]
    async fn sources_produce_through_the_door_until_shutdown_then_return() {
        let shutdown = Shutdown::new();
        let door = Arc::new(CountingDoor::default());
        let mut sources = Sources::new(SourceContext {
            invoke: door.clone(),
            delivery: Arc::new(Targets::new(crate::function::ArnContext::new(
                "us-east-1",
                "000000000000",
            ))),
            shutdown: shutdown.signal(),
        });
        sources.start(Arc::new(Ticker));
        sources.start(Arc::new(Ticker));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(door.0.load(Ordering::SeqCst) >= 2);
        shutdown.begin();
        tokio::time::timeout(std::time::Duration::from_secs(2), sources.stopped())
            .await
            .expect("every source returns after shutdown starts");
    }
}
