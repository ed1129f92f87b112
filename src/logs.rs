//! The log pipeline: every line a function prints and every platform line (START, END,
//! REPORT) goes through a [`LogSink`] into the store, batched, off the invoke path.
//!
//! Owns the writer task (one batched transaction per burst) and the retention policy
//! (the newest N events per function are kept). Also owns the formatting of Lambda's
//! platform lines, so their exact text lives in one place.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{LogStore, NewLogEvent};

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

#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Message>,
}

impl LogSink {
    /// Starts the writer; it ends (after writing what it has) when every sink is dropped.
    pub fn start(
        store: Arc<dyn LogStore>,
        retention: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let handle = tokio::spawn(write_loop(store, rx, retention));
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

async fn write_loop(store: Arc<dyn LogStore>, mut rx: mpsc::Receiver<Message>, retention: usize) {
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
            let result = tokio::task::spawn_blocking(move || {
                store.append_logs(&batch)?;
                for function in trim {
                    store.trim_logs(&function, retention)?;
                }
                Ok::<_, crate::store::StoreError>(())
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
