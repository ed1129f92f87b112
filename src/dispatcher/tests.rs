//! The dispatcher driven through fakes of both doors: a door whose function fails a given
//! number of times, and a queue target that records what it receives.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::arn::Arn;
use crate::delivery::{Delivered, DeliveryError, Target, Targets};
use crate::document::FunctionDocument;
use crate::invoke::InvokeDoor;
use crate::shutdown::Shutdown;
use crate::sources::Sources;
use crate::store::events::{NewEvent, SqliteEventStore};

const DESTINATION: &str = "arn:aws:sqs:us-east-1:000000000000:records";
const DEAD_LETTERS: &str = "arn:aws:sqs:us-east-1:000000000000:dead";

fn arns() -> ArnContext {
    ArnContext::new("us-east-1", "000000000000")
}

/// A door whose function fails its first `failures` runs, then succeeds (or throttles
/// while `throttle` is above zero); it records every invocation it is given.
#[derive(Default)]
struct FakeDoor {
    failures: AtomicU32,
    throttles: AtomicU32,
    seen: Mutex<Vec<Invocation>>,
}

impl InvokeDoor for FakeDoor {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'_, Result<InvokeOutcome, InvokeError>> {
        self.seen.lock().unwrap().push(invocation.clone());
        let take = |n: &AtomicU32| {
            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok()
        };
        let result = if take(&self.throttles) {
            Err(InvokeError::Throttled(
                crate::scheduler::Throttle::AccountConcurrency,
            ))
        } else {
            let failed = take(&self.failures);
            Ok(InvokeOutcome::Completed(InvokeResponse {
                request_id: invocation.request_id.clone().unwrap_or_default(),
                payload: if failed {
                    bytes::Bytes::from_static(br#"{"errorMessage":"boom","errorType":"E"}"#)
                } else {
                    bytes::Bytes::from_static(b"\"ok\"")
                },
                function_error: failed.then_some("Unhandled"),
                log_tail: None,
                executed_version: "$LATEST".into(),
                stopped_by_shutdown: false,
            }))
        };
        Box::pin(async move { result })
    }
}

/// The `sqs` target, recording (ARN, body, attribute names) of every delivery.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, serde_json::Value, Vec<String>)>>);

impl Target for Recorder {
    fn service(&self) -> &'static str {
        "sqs"
    }
    fn check(&self, _: &Arn) -> Result<(), DeliveryError> {
        Ok(())
    }
    fn deliver<'a>(&'a self, arn: &'a Arn, delivery: Delivery) -> Delivered<'a> {
        let body = serde_json::from_slice(&delivery.body).unwrap_or(serde_json::Value::Null);
        let names = delivery.attributes.keys().cloned().collect();
        self.0.lock().unwrap().push((arn.to_string(), body, names));
        Box::pin(async { Ok(()) })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteEventStore>,
    queue: Arc<EventQueue>,
    door: Arc<FakeDoor>,
    recorder: Arc<Recorder>,
    shutdown: Shutdown,
    sources: Option<Sources>,
}

/// A dispatcher for function `f` (up to `retries` retries, destinations on both outcomes,
/// a dead-letter queue), started as an event source.
fn start(retries: u32, door: FakeDoor) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut record = crate::function::sample_record("f", LATEST, "c0de");
    record.spec.dead_letter_target = Some(DEAD_LETTERS.into());
    let mut document = FunctionDocument::new(record);
    document.event_invoke_configs.insert(
        LATEST.into(),
        EventInvokeConfig {
            maximum_retry_attempts: Some(retries),
            on_success: Some(DESTINATION.into()),
            on_failure: Some(DESTINATION.into()),
            ..Default::default()
        },
    );
    let registry = crate::registry::test_registry(dir.path(), &[document]);
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let metrics = Arc::new(Metrics::default());
    let queue = EventQueue::start(store.clone(), metrics.clone());
    let (logs, _) = crate::logs::LogSink::start(
        registry.logs(),
        crate::logs::LogBudget {
            events_per_function: 100,
            bytes_per_function: 1 << 20,
            bytes_total: 1 << 20,
        },
    );
    let dispatcher = Dispatcher::new(
        Services {
            store: store.clone(),
            queue: queue.clone(),
            registry,
            arns: arns(),
            metrics,
            logs,
        },
        AsyncSettings {
            retry_base_delay: Duration::from_millis(10),
            concurrency: 4,
            init_timeout: Duration::from_secs(10),
        },
    );
    let door = Arc::new(door);
    let recorder = Arc::new(Recorder::default());
    let mut targets = Targets::new(arns());
    targets.register(recorder.clone());
    let shutdown = Shutdown::new();
    let mut sources = Sources::new(SourceContext {
        invoke: door.clone(),
        delivery: Arc::new(targets),
        shutdown: shutdown.signal(),
    });
    sources.start(dispatcher);
    Fixture {
        _dir: dir,
        store,
        queue,
        door,
        recorder,
        shutdown,
        sources: Some(sources),
    }
}

impl Fixture {
    async fn accept(&self, n: u64) {
        let event: NewEvent = crate::store::events::sample_event(n, now_ms());
        self.queue.accept(event).await.unwrap();
    }

    /// Waits until `n` deliveries were recorded and the store is empty.
    async fn settled(&self, n: usize) -> Vec<(String, serde_json::Value, Vec<String>)> {
        for _ in 0..500 {
            let delivered = self.recorder.0.lock().unwrap().clone();
            if delivered.len() >= n && self.store.depth().unwrap().is_empty() {
                return delivered;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not settled: {:?}", self.recorder.0.lock().unwrap());
    }

    async fn stop(mut self) {
        self.shutdown.begin();
        self.sources.take().unwrap().stopped().await;
    }
}

#[tokio::test]
async fn a_success_after_a_retry_goes_to_the_destination_once() {
    let f = start(
        2,
        FakeDoor {
            failures: AtomicU32::new(1),
            ..Default::default()
        },
    );
    f.accept(1).await;
    let delivered = f.settled(1).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let (arn, record, _) = &delivered[0];
    assert_eq!(arn, DESTINATION);
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["requestId"], "r1");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(record["responsePayload"], "ok");
    let seen = f.door.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for invocation in &seen {
        assert_eq!(invocation.origin, Origin::AsyncQueue);
        assert_eq!(invocation.mode, Mode::Sync { log_tail: false });
        assert_eq!(
            invocation.request_id.as_deref(),
            Some("r1"),
            "the 202's id is kept"
        );
    }
    f.stop().await;
}

#[tokio::test]
async fn exhausted_retries_go_to_the_failure_destination_and_the_dead_letter_queue() {
    let f = start(
        1,
        FakeDoor {
            failures: AtomicU32::new(10),
            ..Default::default()
        },
    );
    f.accept(7).await;
    let mut delivered = f.settled(2).await;
    delivered.sort_by(|a, b| a.0.cmp(&b.0));
    let (dead_arn, dead_body, attributes) = &delivered[0];
    assert_eq!(dead_arn, DEAD_LETTERS);
    assert_eq!(*dead_body, serde_json::json!({}), "the original event");
    assert_eq!(attributes, &["ErrorCode", "ErrorMessage", "RequestID"]);
    let (arn, record, _) = &delivered[1];
    assert_eq!(arn, DESTINATION);
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(
        f.door.seen.lock().unwrap().len(),
        2,
        "one try and one retry"
    );
    f.stop().await;
}

#[tokio::test]
async fn throttled_events_wait_uncounted_and_run_once_admitted() {
    let f = start(
        0,
        FakeDoor {
            throttles: AtomicU32::new(1),
            ..Default::default()
        },
    );
    f.accept(3).await;
    let delivered = f.settled(1).await;
    assert_eq!(delivered[0].1["requestContext"]["condition"], "Success");
    // Not counted: with no retries allowed, a counted throttle would have failed it.
    assert_eq!(
        delivered[0].1["requestContext"]["approximateInvokeCount"],
        1
    );
    assert_eq!(f.door.seen.lock().unwrap().len(), 2);
    f.stop().await;
}
