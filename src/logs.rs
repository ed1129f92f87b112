//! The log pipeline: every line a function prints and every platform line (START, END,
//! REPORT) goes through a [`LogSink`] into the store, batched, off the invoke path.
//!
//! Owns the writer task (one batched transaction per burst) and the retention policy:
//! the newest N events per function are kept (trimmed every few seconds), and the log
//! bytes of a function and of all functions stay within their budgets ([`LogBudget`]:
//! before a batch would pass one, the oldest events go, down to seven eighths of it so
//! that trims come once in a while, not with every batch). Also owns the formatting of
//! Lambda's platform lines, so their exact text lives in one place.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{LogStore, NewLogEvent, StoreError, log_event_bytes};

const CHANNEL_CAPACITY: usize = 16_384;
const BATCH_MAX: usize = 2_048;
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// How long the writer gathers events before one transaction writes them. Readers call
/// [`LogSink::flush`] first, so the delay is never visible to them; it only spares the
/// invoke path a database write and a thread wake-up per invocation.
const LINGER: Duration = Duration::from_millis(20);

enum Message {
    Event(NewLogEvent),
    Flush(oneshot::Sender<()>),
}

/// How much log the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct LogBudget {
    /// Newest events kept per function.
    pub events_per_function: usize,
    /// Bytes kept per function and in all (by [`log_event_bytes`]).
    pub bytes_per_function: u64,
    pub bytes_total: u64,
}

/// The writer's running tally of log bytes in the store, per function and in all.
/// Trims are computed by the store from what it holds, so a tally that is too high (a
/// function's logs were deleted) costs one needless trim query, never a lost event.
struct Usage {
    budget: LogBudget,
    per_function: HashMap<String, u64>,
    total: u64,
}

impl Usage {
    fn load(store: &dyn LogStore, budget: LogBudget) -> Result<Self, StoreError> {
        let mut usage = Self {
            budget,
            per_function: HashMap::new(),
            total: 0,
        };
        usage.reload(store, None)?;
        Ok(usage)
    }

    /// Reads the figures of `function` (of every function with `None`) back from the store.
    fn reload(&mut self, store: &dyn LogStore, function: Option<&str>) -> Result<(), StoreError> {
        match function {
            Some(function) => {
                let bytes = store
                    .log_usage(Some(function))?
                    .first()
                    .map_or(0, |(_, b)| *b);
                let old = self.per_function.insert(function.to_string(), bytes);
                self.total = (self.total + bytes).saturating_sub(old.unwrap_or(0));
            }
            None => {
                self.per_function = store.log_usage(None)?.into_iter().collect();
                self.total = self.per_function.values().sum();
            }
        }
        Ok(())
    }

    /// Writes `batch`, first trimming the oldest events where it would pass a budget.
    /// Every commit stays within the budgets: the trim commits first, then the batch.
    fn append(&mut self, store: &dyn LogStore, batch: Vec<NewLogEvent>) -> Result<(), StoreError> {
        let per_function = self.budget.bytes_per_function / 8 * 7;
        let all = self.budget.bytes_total / 8 * 7;
        let batch = newest_within(batch, per_function, all);
        let mut incoming: HashMap<&str, u64> = HashMap::new();
        for event in &batch {
            *incoming.entry(event.function.as_str()).or_default() +=
                log_event_bytes(&event.message);
        }
        let incoming_total: u64 = incoming.values().sum();
        for (&function, &bytes) in &incoming {
            let held = self.per_function.get(function).copied().unwrap_or(0);
            if held + bytes > self.budget.bytes_per_function {
                let keep = per_function - bytes;
                store.trim_log_bytes(Some(function), keep)?;
                self.reload(store, Some(function))?;
                tracing::debug!(function, keep, "log bytes of the function trimmed");
            }
        }
        if self.total + incoming_total > self.budget.bytes_total {
            let keep = all - incoming_total;
            store.trim_log_bytes(None, keep)?;
            self.reload(store, None)?;
            tracing::debug!(keep, "log bytes of all functions trimmed");
        }
        store.append_logs(&batch)?;
        for (function, bytes) in incoming {
            *self.per_function.entry(function.to_string()).or_default() += bytes;
            self.total += bytes;
        }
        Ok(())
    }
}

/// The newest events of `batch` that fit in `per_function` bytes per function and `all`
/// bytes in all, in their order: a batch larger than a budget by itself (a writer that
/// fell behind) loses its own oldest events, which a trim would remove at once anyway.
fn newest_within(batch: Vec<NewLogEvent>, per_function: u64, all: u64) -> Vec<NewLogEvent> {
    let mut used: HashMap<&str, Option<u64>> = HashMap::new();
    let mut total = Some(0u64);
    let mut keep = vec![false; batch.len()];
    for (i, event) in batch.iter().enumerate().rev() {
        let bytes = log_event_bytes(&event.message);
        let function = used.entry(event.function.as_str()).or_insert(Some(0));
        // Once an event does not fit, nothing older of its function (or of any, for the
        // total) is kept either: the oldest go first.
        match (*function, total) {
            (Some(f), Some(t)) if f + bytes <= per_function && t + bytes <= all => {
                *function = Some(f + bytes);
                total = Some(t + bytes);
                keep[i] = true;
            }
            (Some(_), Some(t)) if t + bytes > all => total = None,
            (Some(_), _) => *function = None,
            (None, _) => {}
        }
    }
    let dropped = keep.iter().filter(|k| !**k).count();
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "a log batch larger than its budget lost its oldest events"
        );
    }
    batch
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Message>,
}

impl LogSink {
    /// Starts the writer; it ends (after writing what it has) when every sink is dropped.
    pub fn start(
        store: Arc<dyn LogStore>,
        budget: LogBudget,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let handle = tokio::spawn(write_loop(store, rx, budget));
        (Self { tx }, handle)
    }

    /// Queues one event; waits only when the writer is a whole channel behind.
    pub async fn write(&self, event: NewLogEvent) {
        if self.tx.send(Message::Event(event)).await.is_err() {
            tracing::warn!("log writer has stopped; a log line was dropped");
        }
    }

    /// Waits until every event queued before this call is in the store.
    pub async fn flush(&self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.tx.send(Message::Flush(ack_tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ack_rx).await;
        }
    }
}

async fn write_loop(store: Arc<dyn LogStore>, mut rx: mpsc::Receiver<Message>, budget: LogBudget) {
    let retention = budget.events_per_function;
    let loaded = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || Usage::load(store.as_ref(), budget)).await
    };
    let usage = match loaded
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(usage) => usage,
        Err(e) => {
            tracing::error!(error = %e, "reading the log sizes failed; counting from zero");
            Usage {
                budget,
                per_function: HashMap::new(),
                total: 0,
            }
        }
    };
    let usage = Arc::new(std::sync::Mutex::new(usage));
    let mut touched: HashSet<String> = HashSet::new();
    let mut last_trim = tokio::time::Instant::now();
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        let Some(first) = rx.recv().await else { break };
        let take = |message: Message,
                    batch: &mut Vec<NewLogEvent>,
                    acks: &mut Vec<oneshot::Sender<()>>| match message {
            Message::Event(event) => batch.push(event),
            Message::Flush(ack) => acks.push(ack),
        };
        take(first, &mut batch, &mut acks);
        let deadline = tokio::time::Instant::now() + LINGER;
        while acks.is_empty() && batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => take(message, &mut batch, &mut acks),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            for event in &batch {
                if !touched.contains(&event.function) {
                    touched.insert(event.function.clone());
                }
            }
            let trim: Vec<String> = if last_trim.elapsed() >= TRIM_EVERY {
                last_trim = tokio::time::Instant::now();
                touched.drain().collect()
            } else {
                Vec::new()
            };
            let store = store.clone();
            let usage = usage.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut usage = usage.lock().unwrap_or_else(|p| p.into_inner());
                usage.append(store.as_ref(), batch)?;
                for function in trim {
                    store.trim_logs(&function, retention)?;
                    usage.reload(store.as_ref(), Some(&function))?;
                }
                Ok::<_, StoreError>(())
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "writing log events failed"),
                Err(e) => tracing::error!(error = %e, "log writer task failed"),
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Lambda's platform lines, word for word.
pub mod lines {
    pub fn start(request_id: &str, version: &str) -> String {
        format!("START RequestId: {request_id} Version: {version}")
    }

    pub fn end(request_id: &str) -> String {
        format!("END RequestId: {request_id}")
    }

    /// A platform event as `LogFormat: JSON` writes it: `{"time", "type", "record"}`.
    fn platform_event(kind: &str, record: serde_json::Value) -> String {
        serde_json::json!({
            "time": crate::timefmt::iso_timestamp(crate::timefmt::now_ms()),
            "type": kind,
            "record": record,
        })
        .to_string()
    }

    /// How a function's `LoggingConfig` has the platform write its lines: as text
    /// (START, END, REPORT) or as JSON events (`platform.start`, `platform.report`), and
    /// not at all at `SystemLogLevel: WARN` (they are INFO events).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PlatformFormat {
        json: bool,
        quiet: bool,
    }

    impl PlatformFormat {
        pub fn of(logging: &crate::function_settings::Logging) -> Self {
            Self {
                json: logging.json,
                quiet: logging.json && logging.system_level.as_deref() == Some("WARN"),
            }
        }

        pub fn start(self, request_id: &str, version: &str) -> Option<String> {
            match (self.quiet, self.json) {
                (true, _) => None,
                (false, true) => Some(platform_event(
                    "platform.start",
                    serde_json::json!({ "requestId": request_id, "version": version }),
                )),
                (false, false) => Some(start(request_id, version)),
            }
        }

        /// Text only: JSON logs end an invocation with its report.
        pub fn end(self, request_id: &str) -> Option<String> {
            (!self.json).then(|| end(request_id))
        }

        pub fn report(self, report: &Report<'_>) -> Option<String> {
            match (self.quiet, self.json) {
                (true, _) => None,
                (false, true) => Some(report.json()),
                (false, false) => Some(report.line()),
            }
        }
    }

    /// The rank of an application log level (`TRACE` 1 .. `FATAL` 6, any case), for
    /// `ApplicationLogLevel` filtering; `WARNING` and `CRITICAL` read as Python names them.
    pub fn level_rank(level: &str) -> Option<u8> {
        match level.to_ascii_uppercase().as_str() {
            "TRACE" => Some(1),
            "DEBUG" => Some(2),
            "INFO" => Some(3),
            "WARN" | "WARNING" => Some(4),
            "ERROR" => Some(5),
            "FATAL" | "CRITICAL" => Some(6),
            _ => None,
        }
    }

    /// Whether a line of the function's output passes `ApplicationLogLevel` of rank
    /// `min`: a JSON object whose `level` ranks below it does not; anything else does.
    pub fn passes_level(line: &str, min: u8) -> bool {
        if !line.trim_start().starts_with('{') {
            return true;
        }
        let Ok(serde_json::Value::Object(record)) = serde_json::from_str(line) else {
            return true;
        };
        record
            .get("level")
            .and_then(|l| l.as_str())
            .and_then(level_rank)
            .is_none_or(|rank| rank >= min)
    }

    /// Figures for the REPORT line of one invocation.
    pub struct Report<'a> {
        pub request_id: &'a str,
        pub duration_ms: f64,
        pub memory_mb: u32,
        pub max_memory_used_mb: u64,
        pub init_duration_ms: Option<f64>,
        /// `timeout`, `error`: Lambda's `Status:` field for a failed invocation.
        pub status: Option<&'a str>,
    }

    impl Report<'_> {
        /// Billed duration: the duration rounded up to the next millisecond (at least 1).
        pub fn billed_ms(&self) -> u64 {
            (self.duration_ms.ceil() as u64).max(1)
        }

        /// The report as a JSON `platform.report` event (`LogFormat: JSON`).
        pub fn json(&self) -> String {
            let mut metrics = serde_json::json!({
                "durationMs": (self.duration_ms * 100.0).round() / 100.0,
                "billedDurationMs": self.billed_ms(),
                "memorySizeMB": self.memory_mb,
                "maxMemoryUsedMB": self.max_memory_used_mb,
            });
            if let Some(init) = self.init_duration_ms {
                metrics["initDurationMs"] = serde_json::json!((init * 100.0).round() / 100.0);
            }
            platform_event(
                "platform.report",
                serde_json::json!({
                    "requestId": self.request_id,
                    "metrics": metrics,
                    "status": self.status.unwrap_or("success"),
                }),
            )
        }

        pub fn line(&self) -> String {
            let mut line = format!(
                "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
                self.request_id,
                self.duration_ms,
                self.billed_ms(),
                self.memory_mb,
                self.max_memory_used_mb
            );
            if let Some(init) = self.init_duration_ms {
                line.push_str(&format!("\tInit Duration: {init:.2} ms"));
            }
            if let Some(status) = self.status {
                line.push_str(&format!("\tStatus: {status}"));
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lines::*;

    #[test]
    fn json_logs_have_platform_events_and_filter_by_level() {
        let json = crate::function_settings::Logging {
            json: true,
            application_level: Some("WARN".into()),
            system_level: Some("INFO".into()),
            group: None,
        };
        let platform = PlatformFormat::of(&json);
        let start: serde_json::Value =
            serde_json::from_str(&platform.start("r1", "$LATEST").unwrap()).unwrap();
        assert_eq!(start["type"], "platform.start");
        assert_eq!(start["record"]["requestId"], "r1");
        assert_eq!(platform.end("r1"), None);
        let report = Report {
            request_id: "r1",
            duration_ms: 1.234,
            memory_mb: 128,
            max_memory_used_mb: 20,
            init_duration_ms: None,
            status: None,
        };
        let reported: serde_json::Value =
            serde_json::from_str(&platform.report(&report).unwrap()).unwrap();
        assert_eq!(reported["type"], "platform.report");
        assert_eq!(reported["record"]["metrics"]["billedDurationMs"], 2);
        assert_eq!(reported["record"]["status"], "success");
        // SystemLogLevel WARN: no INFO platform events.
        let quiet = PlatformFormat::of(&crate::function_settings::Logging {
            system_level: Some("WARN".into()),
            ..json.clone()
        });
        assert_eq!(quiet.start("r1", "$LATEST"), None);
        assert_eq!(quiet.report(&report), None);
        // Text stays word for word.
        let text = PlatformFormat::of(&Default::default());
        assert_eq!(
            text.start("r1", "1").unwrap(),
            super::lines::start("r1", "1")
        );
        // ApplicationLogLevel: JSON records below it go; other lines stay.
        let warn = level_rank("WARN").unwrap();
        assert!(!passes_level(r#"{"level":"INFO","message":"m"}"#, warn));
        assert!(passes_level(r#"{"level":"error","message":"m"}"#, warn));
        assert!(passes_level(r#"{"level":"WARNING"}"#, warn));
        assert!(passes_level("plain print output", warn));
        assert!(passes_level(r#"{"no":"level"}"#, warn));
    }
    use super::{LogBudget, Usage};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{LogStore, NewLogEvent};

    #[test]
    fn log_bytes_stay_within_both_budgets_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("shoal.db")).unwrap();
        let budget = LogBudget {
            events_per_function: 10_000,
            bytes_per_function: 8_000,
            bytes_total: 12_000,
        };
        let mut usage = Usage::load(&store, budget).unwrap();
        let stored = |f: &str| store.log_usage(Some(f)).unwrap().first().map_or(0, |u| u.1);
        // Batches of ten 100-byte events, alternating between two functions.
        for round in 0..20u64 {
            let function = if round % 2 == 0 { "f" } else { "g" };
            let batch: Vec<NewLogEvent> = (0..10)
                .map(|i| NewLogEvent {
                    function: function.into(),
                    stream: "s".into(),
                    timestamp_ms: round * 10 + i,
                    message: format!("{:074}", round * 10 + i),
                })
                .collect();
            usage.append(&store, batch).unwrap();
            assert!(stored("f") <= 8_000 && stored("g") <= 8_000);
            assert!(stored("f") + stored("g") <= 12_000, "round {round}");
            assert_eq!(usage.total, stored("f") + stored("g"));
        }
        // The newest events are there; the oldest went.
        let g = store.read_logs("g", 0, 1000).unwrap();
        assert_eq!(g.last().unwrap().message, format!("{:074}", 199));
        let f = store.read_logs("f", 0, 1000).unwrap();
        assert!(f[0].message > format!("{:074}", 0));
        // A batch larger than the budget by itself keeps its newest events only.
        let big: Vec<NewLogEvent> = (0..200u64)
            .map(|i| NewLogEvent {
                function: "h".into(),
                stream: "s".into(),
                timestamp_ms: i,
                message: format!("{i:074}"),
            })
            .collect();
        usage.append(&store, big).unwrap();
        let h = store.read_logs("h", 0, 1000).unwrap();
        assert_eq!(h.len(), 70, "seven eighths of 8000 bytes");
        assert_eq!(h[0].message, format!("{:074}", 130));
        assert!(stored("f") + stored("g") + stored("h") <= 12_000);
        // A server started on this store finds the same figures.
        let again = Usage::load(&store, budget).unwrap();
        assert_eq!(again.total, usage.total);
    }

    #[test]
    fn report_line_has_lambdas_fields() {
        let report = Report {
            request_id: "abc",
            duration_ms: 1.234,
            memory_mb: 128,
            max_memory_used_mb: 20,
            init_duration_ms: Some(12.5),
            status: None,
        };
        assert_eq!(
            report.line(),
            "REPORT RequestId: abc\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 12.50 ms"
        );
        assert_eq!(
            start("abc", "$LATEST"),
            "START RequestId: abc Version: $LATEST"
        );
        assert_eq!(end("abc"), "END RequestId: abc");
    }
}
