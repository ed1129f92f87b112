//! Asynchronous invocation: the durable async queue and its consumer.
//!
//! Producers put events in through the invoke door (mode `Async`), which commits them
//! with [`EventQueue::accept`] (`accept.rs`: concurrent accepts batched into one
//! transaction) before the caller answers 202. The [`Dispatcher`] is the queue's
//! consumer, an event source like any other: it claims due events and runs each through
//! the invoke door (mode `Sync`, origin `AsyncQueue`); what follows an attempt is the
//! pure policy of `policy.rs` (retries of function errors with exponential backoff from
//! `--retry-base-delay`, throttled events retried uncounted, events older than
//! `MaximumEventAgeInSeconds` dropped), and every final outcome goes to the configured
//! destination as Lambda's execution record (`record.rs`), and a failed event to the
//! function's dead-letter queue, both through the delivery door. An event leaves the
//! store only after its outcome has been dealt with: delivery is at least once. A claimed
//! event's outcome that cannot be written (a full disk) is kept and written again
//! (`write_back.rs`).
//!
//! At shutdown the loop stops claiming; an event whose invocation the shutdown ended goes
//! back to the queue, due at once and uncounted, and the dispatcher releases every lease
//! left before it returns, so that the next start runs those events at once.

mod accept;
mod policy;
mod record;
mod write_back;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use accept::{AcceptError, EventQueue};
use write_back::WriteBacks;

use crate::delivery::Delivery;
use crate::document::EventInvokeConfig;
use crate::function::{ArnContext, LATEST};
use crate::invoke::{
    BoxFuture, Invocation, InvokeError, InvokeOutcome, InvokeResponse, Mode, Origin,
};
use crate::metrics::{Metrics, names};
use crate::queues::Attribute;
use crate::registry::Registry;
use crate::sources::{EventSource, SourceContext};
use crate::store::StoreError;
use crate::store::events::{EventStore, QueuedEvent, Settlement};
use crate::timefmt::now_ms;
use policy::{Attempt, Condition, Next, Policy};

/// How long a claimed event stays leased beyond the longest run a function may have (its
/// timeout at Lambda's maximum plus the init phase): time to write its outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct AsyncSettings {
    /// First retry delay after a function error; the second is twice as long.
    pub retry_base_delay: Duration,
    /// Events running at once.
    pub concurrency: usize,
    /// The longest init phase (part of the longest run, so of the lease).
    pub init_timeout: Duration,
}

impl AsyncSettings {
    /// How long a claimed event is leased: longer than any function may run.
    fn lease_ms(&self) -> u64 {
        let longest_run = Duration::from_secs(u64::from(crate::function::limits::TIMEOUT_MAX))
            + self.init_timeout;
        (longest_run + LEASE_MARGIN).as_millis() as u64
    }
}

/// What the dispatcher reads besides its own queue.
pub struct Services {
    /// The durable queue of accepted events.
    pub store: Arc<dyn EventStore>,
    /// Where accepted events are announced.
    pub queue: Arc<EventQueue>,
    /// Functions' async settings (retries, age, destinations, dead-letter target).
    pub registry: Arc<Registry>,
    pub arns: ArnContext,
    pub metrics: Arc<Metrics>,
    pub logs: crate::logs::LogSink,
}

/// How long an event waits for its function to have capacity (an environment of its own
/// to free, or memory) before it counts as throttled and the function's backlog is pushed
/// back: a backlog runs at the rate of the environments the function can get.
const ADMISSION_WAIT: Duration = Duration::from_secs(2);

/// Most slots a claim waits to have free while a backlog drains, and how long it waits
/// for them.
const CLAIM_BULK: usize = 16;
const CLAIM_BULK_WAIT: Duration = Duration::from_millis(1);

/// How often the events of held functions (reserved concurrency 0), which claims pass
/// over, are looked at for any that outlived their maximum age.
const HELD_SWEEP: Duration = Duration::from_secs(2);

/// Whether `function`'s events wait without being claimed: its reserved concurrency is 0,
/// so none could run (they are claimed again within a claim loop's wait of the
/// reservation changing).
fn is_held(registry: &Registry, function: &str) -> bool {
    registry
        .get(function)
        .is_some_and(|d| d.reserved_concurrency == Some(0))
}

/// How long shutdown waits for the outcomes of the last events to be written.
const WRITE_BACKS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    services: Services,
    settings: AsyncSettings,
    /// Until when each throttled function's waiting events were last pushed back.
    deferred: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Outcomes of claimed events that could not be written yet.
    write_backs: Arc<WriteBacks>,
    /// One permit per event that may run at once.
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    /// The consumer of `services.store`; it runs once started as an event source.
    pub fn new(services: Services, settings: AsyncSettings) -> Arc<Self> {
        // Events an earlier run had claimed when it stopped are due again at once.
        if let Err(e) = services.store.release_leases() {
            tracing::error!(error = %e, "releasing the leases of an earlier run failed");
        }
        Arc::new(Self {
            write_backs: WriteBacks::new(services.store.clone(), Some(services.logs.clone())),
            services,
            deferred: Default::default(),
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EventStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.services.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// Releases every lease of this run (the last step of shutdown, also after a drain
    /// that did not finish in time).
    pub async fn release_leases(&self) {
        match self.blocking(|store| store.release_leases()).await {
            Ok(()) => tracing::debug!("async event leases released"),
            Err(e) => tracing::error!(error = %e, "releasing async event leases failed"),
        }
    }

    /// Claims and runs events until shutdown starts, then waits for the running ones and
    /// releases the leases left.
    async fn consume(self: Arc<Self>, context: SourceContext) {
        let context = Arc::new(context);
        self.claim_loop(&context).await;
        tracing::debug!("async dispatch stopped: the server is shutting down");
        let all = self.settings.concurrency.max(1) as u32;
        if let Ok(permits) = self.slots.acquire_many(all).await {
            drop(permits);
        }
        if !self.write_backs.landed(WRITE_BACKS_AT_SHUTDOWN).await {
            tracing::warn!(
                waiting = self.write_backs.waiting(),
                "outcomes of async events were not written before shutdown; those events will run again"
            );
        }
        self.release_leases().await;
    }

    async fn claim_loop(self: &Arc<Self>, context: &Arc<SourceContext>) {
        let slots = self.slots.clone();
        let shutdown = &context.shutdown;
        let lease_ms = self.settings.lease_ms();
        let mut next_sweep = tokio::time::Instant::now() + HELD_SWEEP;
        let bulk = (self.settings.concurrency / 4).clamp(1, CLAIM_BULK);
        // Whether the last claim took all it asked for: a backlog is being drained.
        let mut backlog = false;
        loop {
            if shutdown.is_started() {
                return;
            }
            let free = slots.available_permits();
            if free == 0 {
                // Wait for a running event to finish.
                tokio::select! {
                    permit = slots.acquire() => drop(permit),
                    () = shutdown.started() => return,
                }
                continue;
            }
            if backlog && free < bulk {
                // Draining a backlog: claim in bulk rather than a transaction per event
                // that ends, waiting a moment for more slots to free up.
                let more = tokio::time::timeout(CLAIM_BULK_WAIT, slots.acquire_many(bulk as u32));
                if let Ok(Ok(permits)) = more.await {
                    drop(permits);
                }
            }
            let free = slots.available_permits();
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + HELD_SWEEP;
                let aged = self.claim_aged_held(free).await;
                if !aged.is_empty() {
                    self.spawn_events(context, aged).await;
                    continue;
                }
            }
            let registry = self.services.registry.clone();
            let claimed = self
                .blocking(move |store| {
                    store.claim_skipping(now_ms(), lease_ms, free, &|function| {
                        is_held(&registry, function)
                    })
                })
                .await;
            let events = match claimed {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "claiming async events failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.started() => return,
                    }
                    continue;
                }
            };
            backlog = events.len() == free;
            if events.is_empty() {
                tokio::select! {
                    () = self.services.queue.arrived() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = shutdown.started() => return,
                }
                continue;
            }
            self.spawn_events(context, events).await;
        }
    }

    /// Runs each claimed event in a task of its own, as slots free up.
    async fn spawn_events(
        self: &Arc<Self>,
        context: &Arc<SourceContext>,
        events: Vec<QueuedEvent>,
    ) {
        for event in events {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let this = self.clone();
            let context = context.clone();
            let span = tracing::info_span!(
                "async_event",
                function = %event.event.function,
                request_id = %event.event.request_id,
                attempt = event.attempts + 1
            );
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    this.run_event(&context, event).await;
                    drop(permit);
                },
                span,
            ));
        }
    }

    /// Claims the events of held functions (reserved concurrency 0) that may be older
    /// than the shortest maximum event age of their function: claims pass held functions
    /// over, so their events would otherwise never age out. Each one claimed is dropped
    /// as too old by the policy, or (for a version that allows a longer age) throttled
    /// and put back.
    async fn claim_aged_held(&self, limit: usize) -> Vec<QueuedEvent> {
        let lease_ms = self.settings.lease_ms();
        let held: Vec<(String, u64)> = self
            .services
            .registry
            .all()
            .into_iter()
            .filter(|d| d.reserved_concurrency == Some(0))
            .map(|d| {
                let shortest = d
                    .event_invoke_configs
                    .values()
                    .map(EventInvokeConfig::max_age_ms)
                    .chain(std::iter::once(EventInvokeConfig::default().max_age_ms()))
                    .min()
                    .unwrap_or(u64::MAX);
                (d.key().into_owned(), shortest)
            })
            .collect();
        if held.is_empty() {
            return Vec::new();
        }
        let claimed = self
            .blocking(move |store| {
                let now = now_ms();
                let mut claimed = Vec::new();
                for (function, max_age_ms) in held {
                    let room = limit - claimed.len();
                    if room == 0 {
                        break;
                    }
                    claimed.extend(store.claim_received_before(
                        &function,
                        now.saturating_sub(max_age_ms),
                        now,
                        lease_ms,
                        room,
                    )?);
                }
                Ok(claimed)
            })
            .await;
        claimed.unwrap_or_else(|e| {
            tracing::error!(error = %e, "claiming the aged events of held functions failed");
            Vec::new()
        })
    }

    async fn run_event(&self, context: &SourceContext, queued: QueuedEvent) {
        let event = &queued.event;
        let Some(document) = self.services.registry.get(&event.function) else {
            self.drop_event(queued.id, "FunctionNotFound").await;
            return;
        };
        let qualifier = event.qualifier.as_deref().unwrap_or(LATEST);
        let config = document
            .event_invoke_configs
            .get(qualifier)
            .cloned()
            .unwrap_or_default();
        let outcome = Outcome {
            queued: &queued,
            config: &config,
            function_arn: {
                let (arns, name) = self.services.arns.of_key(&event.function);
                arns.qualified_arn(name, qualifier)
            },
        };
        let policy = Policy::new(&config, self.settings.retry_base_delay.as_millis() as u64);
        if policy.too_old(event.received_ms, now_ms()) {
            self.finish(context, &outcome, Condition::EventAgeExceeded, None)
                .await;
            return;
        }
        let invocation = Invocation::new(
            event.function.clone(),
            bytes::Bytes::from(event.payload.clone()),
            Mode::Sync { log_tail: false },
            Origin::AsyncQueue,
        )
        .qualifier(event.qualifier.clone())
        .trace_id(event.trace_id.clone())
        .request_id(Some(event.request_id.clone()))
        .admission_wait(ADMISSION_WAIT);
        let (attempt, response, error) = match context.invoke.invoke(invocation).await {
            Ok(InvokeOutcome::Completed(response)) if response.stopped_by_shutdown => {
                return self.put_back(&queued).await;
            }
            Err(InvokeError::ShuttingDown) => return self.put_back(&queued).await,
            Ok(InvokeOutcome::Completed(response)) if response.function_error.is_none() => {
                (Attempt::Succeeded, Some(response), None)
            }
            Ok(InvokeOutcome::Completed(response)) => {
                let error = function_error(&response);
                (Attempt::FunctionFailed, Some(response), Some(error))
            }
            Ok(other) => {
                tracing::error!(?other, "a synchronous invocation did not complete");
                (Attempt::NotRun, None, Some("ServiceException".into()))
            }
            Err(InvokeError::NotFound(_)) => {
                return self.drop_event(queued.id, "FunctionNotFound").await;
            }
            Err(InvokeError::Throttled(e)) => {
                self.defer_backlog(&event.function).await;
                (
                    Attempt::NotRun,
                    None,
                    Some(format!("TooManyRequestsException: {}", e.message()).into()),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "async invocation failed inside the server; it will be retried");
                (
                    Attempt::NotRun,
                    None,
                    Some(format!("ServiceException: {e}").into()),
                )
            }
        };
        match policy.after(attempt, queued.attempts, event.received_ms, now_ms()) {
            Next::Finish(condition) => {
                // An event that aged out while being retried reports no response.
                let response = response.filter(|_| condition != Condition::EventAgeExceeded);
                self.finish(context, &outcome, condition, response).await;
            }
            Next::Retry { attempts, due_ms } => {
                self.write_backs.write(Settlement::Reschedule {
                    id: queued.id,
                    attempts,
                    due_ms,
                    error,
                });
            }
        }
    }

    /// Returns an event the server's shutdown stopped to the queue: due at once, the
    /// attempt not counted, no lease.
    async fn put_back(&self, queued: &QueuedEvent) {
        let (id, attempts) = (queued.id, queued.attempts);
        match self
            .blocking(move |s| {
                s.settle(&[Settlement::Reschedule {
                    id,
                    attempts,
                    due_ms: now_ms(),
                    error: None,
                }])
            })
            .await
        {
            Ok(()) => {
                tracing::info!("async event returned to the queue: the server is shutting down")
            }
            Err(e) => tracing::error!(error = %e, "returning an async event to the queue failed"),
        }
    }

    /// Pushes a throttled function's other waiting events back as well, in one write, so
    /// that they are not claimed (and throttled, and written back) one by one.
    async fn defer_backlog(&self, function: &str) {
        let now = now_ms();
        let until = now + policy::NOT_RUN_RETRY_MS;
        {
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            match deferred.get(function) {
                Some(&last) if last + policy::NOT_RUN_RETRY_MS / 2 > until => return,
                _ => {
                    deferred.insert(function.to_string(), until);
                }
            }
        }
        let owned = function.to_string();
        if let Err(e) = self
            .blocking(move |s| s.defer_function(&owned, until, now))
            .await
        {
            tracing::error!(error = %e, "deferring a throttled function's events failed");
        }
    }

    async fn drop_event(&self, id: i64, reason: &'static str) {
        self.services
            .metrics
            .inc(names::ASYNC_DROPPED, &[("reason", reason)]);
        self.write_backs.write(Settlement::Complete { id });
    }

    /// Sends the outcome to its destination (and a failed event to the dead-letter
    /// queue), then removes the event.
    async fn finish(
        &self,
        context: &SourceContext,
        outcome: &Outcome<'_>,
        condition: Condition,
        response: Option<InvokeResponse>,
    ) {
        let queued = outcome.queued;
        if condition != Condition::Success {
            self.services
                .metrics
                .inc(names::ASYNC_DROPPED, &[("reason", condition.as_str())]);
            tracing::warn!(condition = condition.as_str(), request_id = %queued.event.request_id, "async event failed");
        }
        let destination = match condition {
            Condition::Success => outcome.config.on_success.as_deref(),
            _ => outcome.config.on_failure.as_deref(),
        };
        if let Some(destination) = destination {
            let record = record::execution_record(
                queued,
                &outcome.function_arn,
                condition,
                response.as_ref(),
            );
            let delivery =
                Delivery::new(record.to_string()).with_trace(queued.event.trace_id.clone());
            if let Err(e) = context.delivery.deliver(destination, delivery).await {
                self.services.metrics.inc(names::DESTINATION_FAILURES, &[]);
                tracing::warn!(%destination, error = %e, "delivering to a destination failed");
            }
        }
        if condition != Condition::Success
            && let Some(target) = self.dead_letter_target(queued)
        {
            let delivery = dead_letter(queued, response.as_ref());
            if let Err(e) = context.delivery.deliver(&target, delivery).await {
                self.services.metrics.inc(names::DEAD_LETTER_ERRORS, &[]);
                tracing::warn!(%target, error = %e, "sending to the dead-letter queue failed");
            }
        }
        // Its log lines are flushed before the completion lands (see `write_back.rs`).
        self.write_backs
            .write(Settlement::Complete { id: queued.id });
    }

    /// The dead-letter target of the version the event was for, if it has one.
    fn dead_letter_target(&self, queued: &QueuedEvent) -> Option<String> {
        let event = &queued.event;
        let document = self.services.registry.get(&event.function)?;
        let version = document.primary_version(event.qualifier.as_deref().unwrap_or(LATEST))?;
        document.version(&version)?.spec.dead_letter_target.clone()
    }

    /// Events waiting, per function: (function, count, age of the oldest in ms).
    pub async fn depth(&self) -> Vec<(String, u64, u64)> {
        let now = now_ms();
        self.blocking(|s| s.depth())
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(f, n, oldest)| (f, n, now.saturating_sub(oldest)))
            .collect()
    }

    /// Up to `limit` of `function`'s waiting events, next due first.
    pub async fn waiting(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<crate::store::events::WaitingEvent>, StoreError> {
        let function = function.to_string();
        self.blocking(move |s| s.waiting(&function, limit)).await
    }
}

/// What a failed attempt says of itself, for the listing of waiting events: the
/// function's `errorType: errorMessage` (cut to [`ERROR_TEXT_MAX`] characters), or the
/// `X-Amz-Function-Error` kind when its payload is not Lambda's error shape.
fn function_error(response: &InvokeResponse) -> std::sync::Arc<str> {
    let kind = response.function_error.unwrap_or("Unhandled");
    let parsed: serde_json::Value = serde_json::from_slice(&response.payload).unwrap_or_default();
    let text = match (
        parsed["errorType"].as_str(),
        parsed["errorMessage"].as_str(),
    ) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (Some(t), None) => t.to_string(),
        (None, Some(m)) => format!("{kind}: {m}"),
        (None, None) => kind.to_string(),
    };
    text.chars().take(ERROR_TEXT_MAX).collect::<String>().into()
}

/// The longest error text kept with a waiting event.
const ERROR_TEXT_MAX: usize = 512;

impl EventSource for Dispatcher {
    fn name(&self) -> String {
        "async-queue".into()
    }

    fn run(self: Arc<Self>, context: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(self.consume(context))
    }
}

/// An event being finished, with what its destination needs.
struct Outcome<'a> {
    queued: &'a QueuedEvent,
    config: &'a EventInvokeConfig,
    function_arn: String,
}

/// What a finally failed event leaves in its function's dead-letter queue: the original
/// event, with Lambda's `RequestID`, `ErrorCode` and `ErrorMessage` attributes.
fn dead_letter(queued: &QueuedEvent, response: Option<&InvokeResponse>) -> Delivery {
    let event = &queued.event;
    let message = response
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
        .and_then(|p| p["errorMessage"].as_str().map(str::to_string))
        .unwrap_or_else(|| "Event age exceeded before the event could be processed".to_string());
    let attribute = |data_type: &str, value: String| Attribute {
        data_type: data_type.into(),
        string_value: Some(value),
        binary_value: None,
    };
    let attributes = BTreeMap::from([
        (
            "RequestID".to_string(),
            attribute("String", event.request_id.clone()),
        ),
        ("ErrorCode".to_string(), attribute("Number", "200".into())),
        ("ErrorMessage".to_string(), attribute("String", message)),
    ]);
    Delivery::new(event.payload.clone())
        .with_attributes(attributes)
        .with_trace(event.trace_id.clone())
}
