//! The poller of one mapping: receives messages from its queue, builds batches (by size,
//! or by the batching window), drops what the filter criteria do not match, invokes the
//! function synchronously through the invoke door with SQS's event shape, and deletes
//! what succeeded. What failed is left alone: it reappears when its visibility timeout
//! ends, so the queue's redrive policy decides when it goes to the dead-letter queue.
//!
//! Scaling, as Lambda's: one worker always polls; a worker whose batch came back full
//! starts another (at most one every [`SCALE_UP_EVERY`]), up to `MaximumConcurrency`
//! (else [`DEFAULT_MAX_WORKERS`]); a worker that finds the queue empty, other than the
//! first, stops. A throttled batch is tried again with a growing pause while its
//! messages stay hidden, then left to reappear; throttles lose nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Mapping, Mappings, results};
use crate::invoke::{Invocation, InvokeDoor, InvokeError, InvokeOutcome, Mode, Origin};
use crate::pattern::FilterCriteria;
use crate::queues::{QueueError, QueueService, Received};
use crate::timefmt::now_ms;

/// Workers at most when the mapping sets no `MaximumConcurrency`.
pub const DEFAULT_MAX_WORKERS: usize = 1000;
/// The fastest the workers grow.
pub const SCALE_UP_EVERY: Duration = Duration::from_millis(20);
/// The longest a receive waits for a first message: a stopped mapping's workers notice
/// within this.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// A receive takes at most this many messages (SQS's limit).
const RECEIVE_MAX: usize = 10;
/// A batch's event stays under the synchronous payload limit (6 MB): messages beyond this
/// many bytes of body wait for the next batch.
const BATCH_BYTES_MAX: usize = 5 * 1024 * 1024;
/// The pause before a batch's queue is polled again after it was found missing.
const MISSING_QUEUE_PAUSE: Duration = Duration::from_secs(2);
/// Pauses between tries of a throttled batch: from the first, doubling up to the last.
const THROTTLE_PAUSE_FIRST: Duration = Duration::from_millis(50);
const THROTTLE_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Which messages a mapping passes to its function.
enum Filter {
    All,
    Criteria(FilterCriteria),
    Nothing,
}

impl Filter {
    fn matches(&self, record: &Value) -> bool {
        match self {
            Self::All => true,
            Self::Criteria(criteria) => criteria.matches_sqs_record(record),
            Self::Nothing => false,
        }
    }
}

pub struct Poller {
    mapping: Mapping,
    mapping_arn: String,
    account: String,
    filter: Filter,
    mappings: Arc<Mappings>,
    invoke: Arc<dyn InvokeDoor>,
    workers: AtomicUsize,
    last_scale_up_ms: AtomicU64,
}

impl Poller {
    pub fn new(
        mapping: Mapping,
        mappings: Arc<Mappings>,
        invoke: Arc<dyn InvokeDoor>,
        account: String,
    ) -> Arc<Self> {
        // The criteria were checked when set; criteria that no longer parse match nothing
        // rather than everything.
        let filter = match mapping.filter_criteria.as_ref().map(FilterCriteria::parse) {
            None => Filter::All,
            Some(Ok(criteria)) => Filter::Criteria(criteria),
            Some(Err(e)) => {
                tracing::error!(uuid = %mapping.uuid, error = %e, "a mapping's filter criteria do not parse; they match nothing");
                Filter::Nothing
            }
        };
        Arc::new(Self {
            mapping_arn: mappings.arn(&mapping),
            mapping,
            account,
            filter,
            mappings,
            invoke,
            workers: AtomicUsize::new(0),
            last_scale_up_ms: AtomicU64::new(0),
        })
    }

    fn queues(&self) -> &Arc<QueueService> {
        self.mappings.queues()
    }

    fn max_workers(&self) -> usize {
        self.mapping
            .maximum_concurrency
            .map_or(DEFAULT_MAX_WORKERS, |m| m as usize)
    }

    /// Runs until `stop` turns true; returns once every worker has finished its batch.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
        self.spawn_worker(true, stop, done_tx);
        // Each worker holds a sender: the channel closes when the last one ends.
        let _ = done_rx.recv().await;
    }

    fn spawn_worker(
        self: &Arc<Self>,
        first: bool,
        stop: watch::Receiver<bool>,
        done: tokio::sync::mpsc::Sender<()>,
    ) {
        self.workers.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        tokio::spawn(async move {
            this.work(first, stop, done).await;
            this.workers.fetch_sub(1, Ordering::SeqCst);
        });
    }

    async fn work(
        self: &Arc<Self>,
        first: bool,
        stop: watch::Receiver<bool>,
        done: tokio::sync::mpsc::Sender<()>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            let batch = match self.collect(&stop).await {
                Ok(batch) => batch,
                Err(QueueError::NoSuchQueue) => {
                    self.mappings
                        .record_result(&self.mapping.uuid, results::NO_QUEUE);
                    if !first {
                        return;
                    }
                    pause(MISSING_QUEUE_PAUSE, &stop).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving from a mapping's queue failed");
                    pause(MISSING_QUEUE_PAUSE, &stop).await;
                    continue;
                }
            };
            if batch.is_empty() {
                if !first {
                    return;
                }
                continue;
            }
            if batch.len() >= self.mapping.batch_size as usize {
                self.scale_up(&stop, &done);
            }
            if !self.process(batch, &stop).await && !first {
                // Throttled: one worker fewer.
                return;
            }
        }
    }

    /// Starts one more worker, when the last start is far enough back and the limit
    /// allows.
    fn scale_up(
        self: &Arc<Self>,
        stop: &watch::Receiver<bool>,
        done: &tokio::sync::mpsc::Sender<()>,
    ) {
        let now = now_ms();
        let last = self.last_scale_up_ms.load(Ordering::SeqCst);
        if now < last + SCALE_UP_EVERY.as_millis() as u64
            || self.workers.load(Ordering::SeqCst) >= self.max_workers()
            || self
                .last_scale_up_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return;
        }
        self.spawn_worker(false, stop.clone(), done.clone());
    }

    /// Receives one batch: up to the batch size, waiting up to the batching window once
    /// a first message came (none: what one receive returns). Empty when nothing came.
    async fn collect(&self, stop: &watch::Receiver<bool>) -> Result<Vec<Received>, QueueError> {
        let target = self.mapping.batch_size as usize;
        let window = Duration::from_secs(u64::from(self.mapping.batching_window_s));
        let mut batch: Vec<Received> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let wait = match deadline {
                None => RECEIVE_WAIT,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    left.min(RECEIVE_WAIT)
                }
            };
            let want = RECEIVE_MAX.min(target - batch.len());
            let got = match self
                .queues()
                .receive(&self.mapping.queue, want, None, wait)
                .await
            {
                Ok(got) => got,
                // What was received so far is the batch: dropped, it would stay hidden
                // until its visibility timeout ended.
                Err(e) if !batch.is_empty() => {
                    tracing::warn!(error = %e, "receiving more of a batch failed; the batch goes as it is");
                    return Ok(batch);
                }
                Err(e) => return Err(e),
            };
            for message in got {
                if bytes + message.body.len() > BATCH_BYTES_MAX && !batch.is_empty() {
                    // Over the payload limit: back to the queue at once, for the next batch.
                    let _ = self.queues().change_visibility(
                        &self.mapping.queue,
                        &message.receipt_handle,
                        0,
                    );
                    deadline = Some(tokio::time::Instant::now());
                    continue;
                }
                bytes += message.body.len();
                batch.push(message);
            }
            if batch.is_empty() {
                return Ok(batch);
            }
            if window.is_zero() || batch.len() >= target || *stop.borrow() {
                return Ok(batch);
            }
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + window);
            if tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
        }
    }

    /// Runs one batch; returns false when it was throttled to the end.
    async fn process(&self, batch: Vec<Received>, stop: &watch::Receiver<bool>) -> bool {
        let records: Vec<Value> = batch.iter().map(|m| self.record(m)).collect();
        let (matching, filtered): (Vec<usize>, Vec<usize>) =
            (0..batch.len()).partition(|&i| self.filter.matches(&records[i]));
        // Messages the criteria do not match are deleted, as Lambda does.
        self.delete(filtered.iter().map(|&i| &batch[i]));
        if matching.is_empty() {
            return true;
        }
        let event = json!({ "Records": matching.iter().map(|&i| &records[i]).collect::<Vec<_>>() });
        let payload = Bytes::from(event.to_string());
        // Messages hidden by this receive stay hidden until their visibility ends: a
        // throttled batch is tried again until shortly before.
        let visibility_ms = self
            .queues()
            .info(&self.mapping.queue)
            .map(|info| info.visibility_s() * 1000)
            .unwrap_or(30_000);
        let give_up_at = now_ms() + visibility_ms.saturating_sub(visibility_ms / 5);
        let mut pause_for = THROTTLE_PAUSE_FIRST;
        loop {
            let invocation = Invocation::new(
                self.mapping.function.clone(),
                payload.clone(),
                Mode::Sync { log_tail: false },
                Origin::EventSource(self.mapping_arn.clone()),
            )
            .qualifier(self.mapping.qualifier.clone());
            match self.invoke.invoke(invocation).await {
                Ok(InvokeOutcome::Completed(response)) if response.stopped_by_shutdown => {
                    return true;
                }
                Ok(InvokeOutcome::Completed(response)) if response.function_error.is_none() => {
                    let ids: Vec<&str> = matching
                        .iter()
                        .map(|&i| batch[i].message_id.as_str())
                        .collect();
                    let failed = if self.mapping.report_batch_item_failures {
                        failed_items(&response.payload, &ids)
                    } else {
                        Some(HashSet::new())
                    };
                    match failed {
                        Some(failed) => {
                            self.delete(
                                matching
                                    .iter()
                                    .map(|&i| &batch[i])
                                    .filter(|m| !failed.contains(m.message_id.as_str())),
                            );
                            self.mappings.record_result(&self.mapping.uuid, results::OK);
                        }
                        None => {
                            tracing::warn!(uuid = %self.mapping.uuid, "the function's batchItemFailures response is not valid: the whole batch failed");
                            self.mappings
                                .record_result(&self.mapping.uuid, results::FUNCTION_FAILED);
                        }
                    }
                    return true;
                }
                Ok(InvokeOutcome::Completed(_)) => {
                    self.mappings
                        .record_result(&self.mapping.uuid, results::FUNCTION_FAILED);
                    return true;
                }
                Ok(other) => {
                    tracing::error!(?other, "a synchronous invocation did not complete");
                    return true;
                }
                Err(InvokeError::Throttled(_)) => {
                    self.mappings
                        .record_result(&self.mapping.uuid, results::THROTTLED);
                    if now_ms() + pause_for.as_millis() as u64 >= give_up_at || *stop.borrow() {
                        return false;
                    }
                    pause(pause_for, stop).await;
                    pause_for = (pause_for * 2).min(THROTTLE_PAUSE_MAX);
                }
                Err(InvokeError::NotFound(_)) => {
                    self.mappings
                        .record_result(&self.mapping.uuid, results::NO_FUNCTION);
                    pause(MISSING_QUEUE_PAUSE, stop).await;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(uuid = %self.mapping.uuid, error = %e, "a mapping's batch could not be invoked; its messages will reappear");
                    return true;
                }
            }
        }
    }

    fn delete<'a>(&self, messages: impl Iterator<Item = &'a Received>) {
        let handles: Vec<&str> = messages.map(|m| m.receipt_handle.as_str()).collect();
        if handles.is_empty() {
            return;
        }
        if let Err(e) = self.queues().delete_messages(&self.mapping.queue, &handles) {
            tracing::warn!(error = %e, "deleting a processed batch failed; its messages will reappear");
        }
    }

    /// One message as Lambda's SQS event record.
    fn record(&self, m: &Received) -> Value {
        let attributes: serde_json::Map<String, Value> = m
            .attributes
            .iter()
            .map(|(name, a)| {
                let mut value = json!({
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": a.data_type,
                });
                if let Some(s) = &a.string_value {
                    value["stringValue"] = json!(s);
                }
                if let Some(b) = &a.binary_value {
                    value["binaryValue"] = json!(b);
                }
                (name.clone(), value)
            })
            .collect();
        let mut record = json!({
            "messageId": m.message_id,
            "receiptHandle": m.receipt_handle,
            "body": m.body,
            "attributes": {
                "ApproximateReceiveCount": m.receive_count.to_string(),
                "SentTimestamp": m.sent_ms.to_string(),
                "SenderId": self.account,
                "ApproximateFirstReceiveTimestamp": m.first_receive_ms.to_string(),
            },
            "messageAttributes": attributes,
            "md5OfBody": m.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": self.mapping.source_arn,
            "awsRegion": self.mapping.region,
        });
        if let Some(md5) = crate::queues::md5_of_attributes(&m.attributes) {
            record["md5OfMessageAttributes"] = json!(md5);
        }
        // FIFO queues: the message's place in its group.
        for (name, value) in [
            ("MessageGroupId", &m.group_id),
            ("MessageDeduplicationId", &m.dedup_id),
            ("SequenceNumber", &m.sequence_number),
        ] {
            if let Some(value) = value {
                record["attributes"][name] = json!(value);
            }
        }
        record
    }
}

/// Waits `d`, or until `stop` turns true.
async fn pause(d: Duration, stop: &watch::Receiver<bool>) {
    let mut stop = stop.clone();
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// The message ids a `ReportBatchItemFailures` response lists: empty for a complete
/// success (an empty or null response or list), `None` for a complete failure (a response
/// that is not JSON, an item without a valid `itemIdentifier`, or one naming a message not
/// in the batch), as Lambda's documentation says.
pub fn failed_items(payload: &[u8], ids: &[&str]) -> Option<HashSet<String>> {
    let trimmed = payload.trim_ascii();
    if trimmed.is_empty() {
        return Some(HashSet::new());
    }
    let response: Value = serde_json::from_slice(trimmed).ok()?;
    let items = match &response {
        Value::Null => return Some(HashSet::new()),
        Value::Object(object) => match object.get("batchItemFailures") {
            None | Some(Value::Null) => return Some(HashSet::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return None,
        },
        _ => return Some(HashSet::new()),
    };
    let mut failed = HashSet::new();
    for item in items {
        let id = item.get("itemIdentifier")?.as_str()?;
        if id.is_empty() || !ids.contains(&id) {
            return None;
        }
        failed.insert(id.to_string());
    }
    Some(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_failures_follow_lambdas_rules() {
        let ids = ["a", "b", "c"];
        let set = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<HashSet<_>>());
        // Complete successes.
        for ok in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures": []}"#,
            r#"{"batchItemFailures": null}"#,
        ] {
            assert_eq!(failed_items(ok.as_bytes(), &ids), set(&[]), "{ok}");
        }
        assert_eq!(
            failed_items(br#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#, &ids),
            set(&["b"])
        );
        // Complete failures.
        for bad in [
            "not json",
            r#"{"batchItemFailures": [{"itemIdentifier": ""}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": null}]}"#,
            r#"{"batchItemFailures": [{"id": "b"}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": "zzz"}]}"#,
            r#"{"batchItemFailures": "b"}"#,
        ] {
            assert_eq!(failed_items(bad.as_bytes(), &ids), None, "{bad}");
        }
    }
}
