//! Asynchronous invocation: accepting events durably and running them later.
//!
//! [`Dispatcher::accept`] commits an event to the [`EventStore`] (concurrent accepts are
//! batched into one transaction) before the caller answers 202. The dispatch loop claims
//! due events and runs each through the same [`Invoker`] as synchronous calls; it retries
//! function errors up to `MaximumRetryAttempts` with exponential backoff (base delay
//! `--retry-base-delay`), retries throttled events without counting them, drops events
//! older than `MaximumEventAgeInSeconds`, and hands every final outcome to the configured
//! destination as Lambda's execution record. An event leaves the store only after its
//! outcome has been dealt with: delivery is at least once. A claimed event's outcome that
//! cannot be written (a full disk) is kept by [`WriteBacks`] and written again with a
//! bounded backoff, so the event is due again within seconds of the disk recovering
//! rather than when its lease ends.
//!
//! At shutdown the loop stops claiming; an event whose invocation the shutdown ended goes
//! back to the queue, due at once and uncounted, and [`Dispatcher::drain`] releases every
//! lease left, so that the next start runs those events at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::document::EventInvokeConfig;
use crate::function::{ArnContext, LATEST, parse_function_ref};
use crate::invoke::{InvokeError, InvokeRequest, InvokeResponse, Invoker};
use crate::metrics::{Metrics, names};
use crate::queues::QueueService;
use crate::registry::Registry;
use crate::shutdown::ShutdownSignal;
use crate::store::StoreError;
use crate::store::events::{EventStore, NewEvent, QueuedEvent};
use crate::timefmt::now_ms;

/// How long a claimed event stays leased: longer than any function may run.
const LEASE_MS: u64 = 16 * 60 * 1000;
/// Delay before a throttled event is tried again.
const THROTTLE_RETRY_MS: u64 = 1000;
const ACCEPT_BATCH_MAX: usize = 512;
/// A write-back that failed is tried again after this, then after twice as long, up to
/// [`WRITE_RETRY_MAX`] between tries.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(2);

/// What becomes of a claimed event once its run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    /// Due again at `due_ms` with `attempts` made.
    Reschedule { id: i64, attempts: u32, due_ms: u64 },
    /// Gone: its outcome has been dealt with.
    Complete { id: i64 },
}

impl WriteBack {
    fn apply(self, store: &dyn EventStore) -> Result<(), StoreError> {
        match self {
            Self::Reschedule {
                id,
                attempts,
                due_ms,
            } => store.reschedule(id, attempts, due_ms),
            Self::Complete { id } => store.complete(id),
        }
    }
}

/// Write-backs of claimed events that failed (the disk was full), kept until they land.
///
/// An event stays leased in the store until its write-back lands, and a lease outlasts
/// the longest function (16 minutes); so rather than leave the event to its lease, the
/// write is retried in the background (backoff from 100 ms up to 2 s) until it lands,
/// and the event is due again as soon as the store takes writes. A restart meanwhile
/// loses nothing: leases of an earlier run are released at start.
pub struct WriteBacks {
    store: Arc<dyn EventStore>,
    pending: std::sync::Mutex<Vec<WriteBack>>,
    retrying: std::sync::atomic::AtomicBool,
}

impl WriteBacks {
    pub fn new(store: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Default::default(),
            retrying: Default::default(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<WriteBack>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `op`; if that fails, keeps it and retries in the background. Returns
    /// whether it landed now.
    pub async fn write(self: &Arc<Self>, op: WriteBack) -> bool {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || op.apply(store.as_ref()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, ?op, "writing back an async event failed; retrying in the background");
                self.pending().push(op);
                self.retry_in_background();
                false
            }
        }
    }

    /// Write-backs still waiting to land.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pending().len()
    }

    fn retry_in_background(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = WRITE_RETRY_FIRST;
            loop {
                tokio::time::sleep(delay).await;
                let ops = std::mem::take(&mut *this.pending());
                let store = this.store.clone();
                let failed = tokio::task::spawn_blocking(move || {
                    ops.into_iter()
                        .filter(|op| op.apply(store.as_ref()).is_err())
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                let landed_all = failed.is_empty();
                let mut pending = this.pending();
                pending.extend(failed);
                if pending.is_empty() {
                    this.retrying.store(false, Ordering::SeqCst);
                    tracing::info!("pending async write-backs landed");
                    return;
                }
                drop(pending);
                delay = if landed_all {
                    WRITE_RETRY_FIRST
                } else {
                    (delay * 2).min(WRITE_RETRY_MAX)
                };
            }
        });
    }
}

#[derive(Debug, Clone)]
pub struct AsyncSettings {
    /// First retry delay after a function error; the second is twice as long.
    pub retry_base_delay: Duration,
    /// Events running at once.
    pub concurrency: usize,
}

/// What the dispatcher works with.
pub struct Services {
    /// The durable queue of accepted events.
    pub store: Arc<dyn EventStore>,
    /// Destination and dead-letter queues.
    pub queues: Arc<QueueService>,
    pub invoker: Arc<Invoker>,
    pub registry: Arc<Registry>,
    pub arns: ArnContext,
    pub metrics: Arc<Metrics>,
    pub logs: crate::logs::LogSink,
}

type Ack = oneshot::Sender<Result<(), String>>;

pub struct Dispatcher {
    services: Services,
    settings: AsyncSettings,
    /// Until when each throttled function's waiting events were last pushed back.
    deferred: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Outcomes of claimed events that could not be written yet.
    write_backs: Arc<WriteBacks>,
    wake: Notify,
    accept_tx: mpsc::Sender<(NewEvent, Ack)>,
    /// One permit per event that may run at once.
    slots: Arc<Semaphore>,
    shutdown: ShutdownSignal,
    /// Set when the dispatch loop has stopped (it claims nothing more).
    stopped: tokio::sync::watch::Sender<bool>,
}

/// How an event ended, in the words of Lambda's execution record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

impl Dispatcher {
    /// Starts the accept batcher and the dispatch loop.
    pub fn start(
        services: Services,
        settings: AsyncSettings,
        shutdown: ShutdownSignal,
    ) -> Arc<Self> {
        // Events an earlier run had claimed when it stopped are due again at once.
        if let Err(e) = services.store.release_leases() {
            tracing::error!(error = %e, "releasing the leases of an earlier run failed");
        }
        let (accept_tx, accept_rx) = mpsc::channel(8192);
        let dispatcher = Arc::new(Self {
            write_backs: WriteBacks::new(services.store.clone()),
            services,
            deferred: Default::default(),
            wake: Notify::new(),
            accept_tx,
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            shutdown,
            stopped: tokio::sync::watch::Sender::new(false),
        });
        tokio::spawn(dispatcher.clone().accept_loop(accept_rx));
        tokio::spawn(dispatcher.clone().dispatch_loop());
        dispatcher
    }

    /// Commits an event; returns once it is durable.
    pub async fn accept(&self, event: NewEvent) -> Result<(), String> {
        let (ack_tx, ack_rx) = oneshot::channel();
        self.accept_tx
            .send((event, ack_tx))
            .await
            .map_err(|_| "the async queue has stopped".to_string())?;
        ack_rx
            .await
            .map_err(|_| "the async queue has stopped".to_string())?
    }

    async fn accept_loop(self: Arc<Self>, mut rx: mpsc::Receiver<(NewEvent, Ack)>) {
        let mut batch = Vec::with_capacity(ACCEPT_BATCH_MAX);
        while rx.recv_many(&mut batch, ACCEPT_BATCH_MAX).await > 0 {
            let (events, acks): (Vec<NewEvent>, Vec<Ack>) = batch.drain(..).unzip();
            let store = self.services.store.clone();
            let count = events.len() as u64;
            let result = tokio::task::spawn_blocking(move || store.enqueue(&events))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if result.is_ok() {
                self.services.metrics.add(names::ASYNC_RECEIVED, &[], count);
                self.wake.notify_one();
            } else if let Err(e) = &result {
                tracing::error!(error = %e, "committing async events failed");
            }
            for ack in acks {
                let _ = ack.send(result.clone());
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EventStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.services.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Waits until the dispatch loop has stopped (after shutdown began) and every running
    /// event has finished, then releases the leases left, so that the next start runs
    /// those events at once rather than after the lease time.
    pub async fn drain(&self) {
        let _ = self.stopped.subscribe().wait_for(|stopped| *stopped).await;
        let all = self.settings.concurrency.max(1) as u32;
        if let Ok(permits) = self.slots.acquire_many(all).await {
            drop(permits);
        }
        self.release_leases().await;
    }

    /// Releases every lease of this run (the last step of shutdown, also after a drain
    /// that did not finish in time).
    pub async fn release_leases(&self) {
        match self.blocking(|store| store.release_leases()).await {
            Ok(()) => tracing::debug!("async event leases released"),
            Err(e) => tracing::error!(error = %e, "releasing async event leases failed"),
        }
    }

    async fn dispatch_loop(self: Arc<Self>) {
        self.claim_loop().await;
        tracing::debug!("async dispatch stopped: the server is shutting down");
        self.stopped.send_replace(true);
    }

    async fn claim_loop(self: &Arc<Self>) {
        let slots = self.slots.clone();
        loop {
            if self.shutdown.is_started() {
                return;
            }
            let free = slots.available_permits();
            if free == 0 {
                // Wait for a running event to finish.
                tokio::select! {
                    permit = slots.acquire() => drop(permit),
                    () = self.shutdown.started() => return,
                }
                continue;
            }
            let claimed = self
                .blocking(move |store| store.claim(now_ms(), LEASE_MS, free))
                .await;
            let events = match claimed {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "claiming async events failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = self.shutdown.started() => return,
                    }
                    continue;
                }
            };
            if events.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = self.shutdown.started() => return,
                }
                continue;
            }
            for event in events {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let this = self.clone();
                let span = tracing::info_span!(
                    "async_event",
                    function = %event.event.function,
                    request_id = %event.event.request_id,
                    attempt = event.attempts + 1
                );
                tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        this.run(event).await;
                        drop(permit);
                    },
                    span,
                ));
            }
        }
    }

    async fn run(&self, queued: QueuedEvent) {
        let id = queued.id;
        let event = &queued.event;
        let Some(document) = self.services.registry.get(&event.function) else {
            self.drop_event(id, "FunctionNotFound").await;
            return;
        };
        let qualifier = event
            .qualifier
            .clone()
            .unwrap_or_else(|| LATEST.to_string());
        let config = document
            .event_invoke_configs
            .get(&qualifier)
            .cloned()
            .unwrap_or_default();
        let function_arn = self
            .services
            .arns
            .qualified_arn(&event.function, &qualifier);
        if now_ms().saturating_sub(event.received_ms) > config.max_age_ms() {
            self.finish(
                &queued,
                &config,
                &function_arn,
                Condition::EventAgeExceeded,
                None,
            )
            .await;
            return;
        }
        let result = self
            .services
            .invoker
            .invoke(InvokeRequest {
                function_name: event.function.clone(),
                qualifier: event.qualifier.clone(),
                payload: bytes::Bytes::from(event.payload.clone()),
                client_context: None,
                trace_id: event.trace_id.clone(),
                want_log_tail: false,
                request_id: Some(event.request_id.clone()),
            })
            .await;
        let attempts = queued.attempts + 1;
        match result {
            Ok(response) if response.stopped_by_shutdown => self.put_back(&queued).await,
            Err(InvokeError::ShuttingDown) => self.put_back(&queued).await,
            Ok(response) if response.function_error.is_none() => {
                self.finish(
                    &queued,
                    &config,
                    &function_arn,
                    Condition::Success,
                    Some(response),
                )
                .await;
            }
            Ok(response) => {
                if attempts > config.retries() {
                    self.finish(
                        &queued,
                        &config,
                        &function_arn,
                        Condition::RetriesExhausted,
                        Some(response),
                    )
                    .await;
                } else {
                    let delay = self.settings.retry_base_delay.as_millis() as u64
                        * (1 << (attempts - 1).min(10));
                    self.retry(&queued, &config, &function_arn, attempts, delay)
                        .await;
                }
            }
            Err(InvokeError::Throttled(_)) => {
                self.retry_uncounted(&queued, &config, &function_arn).await;
                self.defer_backlog(&event.function).await;
            }
            Err(InvokeError::NotFound(_)) => self.drop_event(id, "FunctionNotFound").await,
            Err(InvokeError::Internal(message) | InvokeError::DiskFull(message)) => {
                tracing::warn!(%message, "async invocation failed inside the server; it will be retried");
                self.retry_uncounted(&queued, &config, &function_arn).await;
            }
        }
    }

    /// Returns an event the server's shutdown stopped to the queue: due at once, the
    /// attempt not counted, no lease.
    async fn put_back(&self, queued: &QueuedEvent) {
        let (id, attempts) = (queued.id, queued.attempts);
        match self
            .blocking(move |s| s.reschedule(id, attempts, now_ms()))
            .await
        {
            Ok(()) => {
                tracing::info!("async event returned to the queue: the server is shutting down")
            }
            Err(e) => tracing::error!(error = %e, "returning an async event to the queue failed"),
        }
    }

    /// Tries the event again in a second without counting an attempt (it did not run).
    async fn retry_uncounted(
        &self,
        queued: &QueuedEvent,
        config: &EventInvokeConfig,
        function_arn: &str,
    ) {
        self.retry(
            queued,
            config,
            function_arn,
            queued.attempts,
            THROTTLE_RETRY_MS,
        )
        .await;
    }

    /// Puts the event back for another try, unless it would be too old by then.
    async fn retry(
        &self,
        queued: &QueuedEvent,
        config: &EventInvokeConfig,
        function_arn: &str,
        attempts: u32,
        delay_ms: u64,
    ) {
        let due = now_ms() + delay_ms;
        if due.saturating_sub(queued.event.received_ms) > config.max_age_ms() {
            self.finish(
                queued,
                config,
                function_arn,
                Condition::EventAgeExceeded,
                None,
            )
            .await;
            return;
        }
        self.write_backs
            .write(WriteBack::Reschedule {
                id: queued.id,
                attempts,
                due_ms: due,
            })
            .await;
    }

    /// Pushes a throttled function's other waiting events back as well, in one write, so
    /// that they are not claimed (and throttled, and written back) one by one.
    async fn defer_backlog(&self, function: &str) {
        let now = now_ms();
        let until = now + THROTTLE_RETRY_MS;
        {
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            match deferred.get(function) {
                Some(&last) if last + THROTTLE_RETRY_MS / 2 > until => return,
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
        self.write_backs.write(WriteBack::Complete { id }).await;
    }

    /// Sends the outcome to its destination, then removes the event.
    async fn finish(
        &self,
        queued: &QueuedEvent,
        config: &EventInvokeConfig,
        function_arn: &str,
        condition: Condition,
        response: Option<InvokeResponse>,
    ) {
        if condition != Condition::Success {
            self.services
                .metrics
                .inc(names::ASYNC_DROPPED, &[("reason", condition.as_str())]);
            tracing::warn!(condition = condition.as_str(), request_id = %queued.event.request_id, "async event failed");
        }
        let destination = match condition {
            Condition::Success => config.on_success.as_deref(),
            _ => config.on_failure.as_deref(),
        };
        if let Some(destination) = destination {
            let record = execution_record(queued, function_arn, condition, response.as_ref());
            if let Err(e) = self.deliver(destination, &record, &queued.event).await {
                self.services.metrics.inc(names::DESTINATION_FAILURES, &[]);
                tracing::warn!(%destination, error = %e, "delivering to a destination failed");
            }
        }
        // The invocation's log lines are written before the event is gone, so that a
        // crash cannot leave a completed event without its logs.
        self.services.logs.flush().await;
        if condition != Condition::Success
            && let Err(e) = self.dead_letter(queued, response.as_ref()).await
        {
            self.services.metrics.inc(names::DEAD_LETTER_ERRORS, &[]);
            tracing::warn!(error = %e, "sending to the dead-letter queue failed");
        }
        self.write_backs
            .write(WriteBack::Complete { id: queued.id })
            .await;
    }

    /// Sends a finally failed event to its function's dead-letter queue, if it has one:
    /// the original event, with Lambda's `RequestID`, `ErrorCode` and `ErrorMessage`.
    async fn dead_letter(
        &self,
        queued: &QueuedEvent,
        response: Option<&InvokeResponse>,
    ) -> Result<(), String> {
        let event = &queued.event;
        let target = self.services.registry.get(&event.function).and_then(|doc| {
            let version = doc.primary_version(event.qualifier.as_deref().unwrap_or(LATEST))?;
            doc.version(&version)?.spec.dead_letter_target.clone()
        });
        let Some(target) = target else { return Ok(()) };
        let Destination::Queue(queue) = Destination::parse(&target)? else {
            return Err(format!("{target} is not a queue"));
        };
        let message = response
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
            .and_then(|p| p["errorMessage"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                "Event age exceeded before the event could be processed".to_string()
            });
        let text = |v: String| crate::queues::Attribute {
            data_type: "String".into(),
            string_value: Some(v),
            binary_value: None,
        };
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("RequestID".to_string(), text(event.request_id.clone()));
        attributes.insert(
            "ErrorCode".to_string(),
            crate::queues::Attribute {
                data_type: "Number".into(),
                string_value: Some("200".into()),
                binary_value: None,
            },
        );
        attributes.insert("ErrorMessage".to_string(), text(message));
        let body = String::from_utf8_lossy(&event.payload).to_string();
        let queues = self.services.queues.clone();
        tokio::task::spawn_blocking(move || queues.send(&queue, &[(body, attributes, None)]))
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn deliver(
        &self,
        destination: &str,
        record: &serde_json::Value,
        source: &NewEvent,
    ) -> Result<(), String> {
        match Destination::parse(destination)? {
            Destination::Function(target) => {
                self.accept(NewEvent {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    function: target.name,
                    qualifier: target.qualifier,
                    payload: record.to_string().into_bytes(),
                    trace_id: source.trace_id.clone(),
                    received_ms: now_ms(),
                })
                .await
            }
            Destination::Queue(name) => {
                let queues = self.services.queues.clone();
                let message = (record.to_string(), Default::default(), None);
                tokio::task::spawn_blocking(move || queues.send(&name, &[message]))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
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
}

/// Where execution records go.
pub enum Destination {
    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`, invoked asynchronously.
    Function(crate::function::FunctionRef),
    /// `arn:aws:sqs:<region>:<account>:<name>`, a built-in queue.
    Queue(String),
}

impl Destination {
    pub fn parse(arn: &str) -> Result<Self, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "lambda", _, _, "function", ..] => {
                parse_function_ref(arn).map(Self::Function).map_err(|e| e.0)
            }
            ["arn", _, "sqs", _, _, name] if !name.is_empty() => Ok(Self::Queue(name.to_string())),
            _ => Err(format!(
                "The destination ARN {arn} is invalid: use a function (arn:aws:lambda:...:function:NAME) or a queue (arn:aws:sqs:...:NAME)"
            )),
        }
    }
}

/// Lambda's execution record for an asynchronous invocation.
fn execution_record(
    queued: &QueuedEvent,
    function_arn: &str,
    condition: Condition,
    response: Option<&InvokeResponse>,
) -> serde_json::Value {
    let request_payload: serde_json::Value =
        serde_json::from_slice(&queued.event.payload).unwrap_or(serde_json::Value::Null);
    let mut record = json!({
        "version": "1.0",
        "timestamp": crate::timefmt::iso_timestamp(now_ms()),
        "requestContext": {
            "requestId": queued.event.request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": queued.attempts + u32::from(response.is_some()),
        },
        "requestPayload": request_payload,
    });
    if let Some(response) = response {
        let payload: serde_json::Value =
            serde_json::from_slice(&response.payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&response.payload).into())
            });
        let mut context =
            json!({ "statusCode": 200, "executedVersion": response.executed_version });
        if let Some(error) = response.function_error {
            context["functionError"] = json!(error);
        }
        record["responseContext"] = context;
        record["responsePayload"] = payload;
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::SqliteEventStore;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The real store, whose writes fail while `full` is set (as on a full disk).
    struct FullDisk {
        inner: SqliteEventStore,
        full: AtomicBool,
    }

    impl FullDisk {
        fn check(&self) -> Result<(), StoreError> {
            if self.full.load(Ordering::SeqCst) {
                Err(StoreError::Backend("database or disk is full".into()))
            } else {
                Ok(())
            }
        }
    }

    impl EventStore for FullDisk {
        fn enqueue(&self, events: &[NewEvent]) -> Result<(), StoreError> {
            self.check()?;
            self.inner.enqueue(events)
        }
        fn claim(
            &self,
            now: u64,
            lease: u64,
            limit: usize,
        ) -> Result<Vec<QueuedEvent>, StoreError> {
            self.check()?;
            self.inner.claim(now, lease, limit)
        }
        fn complete(&self, id: i64) -> Result<(), StoreError> {
            self.check()?;
            self.inner.complete(id)
        }
        fn reschedule(&self, id: i64, attempts: u32, due: u64) -> Result<(), StoreError> {
            self.check()?;
            self.inner.reschedule(id, attempts, due)
        }
        fn release_leases(&self) -> Result<(), StoreError> {
            self.check()?;
            self.inner.release_leases()
        }
        fn defer_function(&self, f: &str, until: u64, now: u64) -> Result<u64, StoreError> {
            self.check()?;
            self.inner.defer_function(f, until, now)
        }
        fn depth(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
            self.inner.depth()
        }
    }

    fn event(n: u64) -> NewEvent {
        NewEvent {
            request_id: format!("r{n}"),
            function: "f".into(),
            qualifier: None,
            payload: b"{}".to_vec(),
            trace_id: None,
            received_ms: now_ms(),
        }
    }

    #[tokio::test]
    async fn a_retry_that_could_not_be_written_is_due_soon_after_the_disk_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FullDisk {
            inner: SqliteEventStore::open(&dir.path().join("shoal.db")).unwrap(),
            full: AtomicBool::new(false),
        });
        store.enqueue(&[event(1), event(2)]).unwrap();
        let claimed = store.claim(now_ms(), LEASE_MS, 10).unwrap();
        assert_eq!(claimed.len(), 2);
        let write_backs = WriteBacks::new(store.clone());
        // The disk fills while the events run: neither outcome can be written.
        store.full.store(true, Ordering::SeqCst);
        let retry = WriteBack::Reschedule {
            id: claimed[0].id,
            attempts: 1,
            due_ms: now_ms(),
        };
        assert!(!write_backs.write(retry).await);
        assert!(
            !write_backs
                .write(WriteBack::Complete { id: claimed[1].id })
                .await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(write_backs.waiting(), 2, "kept while the disk is full");
        // Space is freed: within the longest backoff both land, and the retried event is
        // due now, not when its 16-minute lease ends.
        store.full.store(false, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + WRITE_RETRY_MAX + Duration::from_secs(1);
        while write_backs.waiting() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(write_backs.waiting(), 0);
        let again = store.claim(now_ms(), LEASE_MS, 10).unwrap();
        assert_eq!(again.len(), 1, "the retried event is due again");
        assert_eq!(again[0].id, claimed[0].id);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(
            store.depth().unwrap(),
            vec![("f".to_string(), 1, again[0].event.received_ms)]
        );
    }
}
