//! Message move tasks: a dead-letter queue's messages moved back to the queues they came
//! from (or to one destination), as SQS's `StartMessageMoveTask` does.
//!
//! A message that a redrive policy moved to its dead-letter queue keeps the key of the
//! queue it came from (`queue_messages.dead_letter_source`). A task moves the messages
//! that were in the dead-letter queue when it started (those up to its highest sequence
//! then), in order, in transactions of up to 100, at most `MaxNumberOfMessagesPerSecond`
//! a second when one is given; a message in flight is moved once it is visible again.
//! Each moved message is a new message of its destination (received 0 times). One task
//! at a time runs per source queue; the ten latest of each are listed. Tasks are kept in
//! memory: a restart ends the one under way (what it moved stays moved).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rusqlite::params;

use super::{QueueError, QueueService, backend, write_transaction};
use crate::timefmt::now_ms;

/// The most messages moved in one transaction.
const BATCH: usize = 100;
/// The largest `MaxNumberOfMessagesPerSecond`.
pub const MAX_RATE: u32 = 500;
/// Tasks listed (and kept) per source queue.
const KEPT: usize = 10;
/// How long a task waits for messages in flight to become visible again.
const IN_FLIGHT_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStatus {
    Running,
    Cancelling,
    Cancelled,
    Completed,
    Failed,
}

impl MoveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Cancelling => "CANCELLING",
            Self::Cancelled => "CANCELLED",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

/// One task.
#[derive(Debug)]
pub struct MoveTask {
    pub handle: String,
    /// The dead-letter queue's key and ARN.
    pub source: String,
    pub source_arn: String,
    /// The one destination (key, ARN), else each message's source queue.
    pub destination: Option<(String, String)>,
    pub rate: Option<u32>,
    pub started_ms: u64,
    pub to_move: u64,
    /// The highest sequence number it moves (the newest message when it started).
    last_seq: i64,
    moved: AtomicU64,
    state: Mutex<(MoveStatus, Option<String>)>,
}

impl MoveTask {
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Its status and failure reason.
    pub fn status(&self) -> (MoveStatus, Option<String>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, status: MoveStatus, reason: Option<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (status, reason);
    }

    /// Ends the task unless it ended already.
    fn finish(&self, status: MoveStatus, reason: Option<String>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(state.0, MoveStatus::Running | MoveStatus::Cancelling) {
            *state = (status, reason);
        }
    }
}

/// The tasks of every source queue, newest last.
#[derive(Default)]
pub struct MoveTasks {
    by_source: Mutex<BTreeMap<String, VecDeque<Arc<MoveTask>>>>,
}

/// How one batch went.
struct Batch {
    moved: usize,
    /// Messages of the task not yet moved (some may be in flight).
    left: bool,
}

impl QueueService {
    /// Starts moving the messages of dead-letter queue `source` (a key) back to their
    /// source queues, or to `destination`.
    pub fn start_move(
        self: &Arc<Self>,
        source: (String, String),
        destination: Option<(String, String)>,
        rate: Option<u32>,
    ) -> Result<Arc<MoveTask>, QueueError> {
        let (source, source_arn) = source;
        let missing =
            |arn: &str| QueueError::ResourceNotFound(format!("The resource {arn} does not exist."));
        if rate.is_some_and(|r| r == 0 || r > MAX_RATE) {
            return Err(QueueError::InvalidMessage(format!(
                "Value for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: it must be between 1 and {MAX_RATE}."
            )));
        }
        if self.info(&source).is_err() {
            return Err(missing(&source_arn));
        }
        if let Some((key, arn)) = &destination
            && self.info(key).is_err()
        {
            return Err(missing(arn));
        }
        if self.dead_letter_sources(&source)?.is_empty() {
            return Err(QueueError::InvalidMessage(
                "Source queue must be configured as a Dead Letter Queue.".into(),
            ));
        }
        let mut tasks = self
            .moves
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let list = tasks.entry(source.clone()).or_default();
        if list
            .iter()
            .any(|t| matches!(t.status().0, MoveStatus::Running | MoveStatus::Cancelling))
        {
            return Err(QueueError::InvalidMessage(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time."
                    .into(),
            ));
        }
        let (to_move, last_seq) = {
            let conn = self.lock();
            conn.query_row(
                "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM queue_messages WHERE queue = ?1",
                params![source],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(backend)?
        };
        let id = uuid::Uuid::new_v4().to_string();
        let handle = base64::engine::general_purpose::STANDARD
            .encode(serde_json::json!({ "taskId": id, "sourceArn": source_arn }).to_string());
        let task = Arc::new(MoveTask {
            handle,
            source: source.clone(),
            source_arn,
            destination,
            rate,
            started_ms: now_ms(),
            to_move: to_move as u64,
            last_seq,
            moved: AtomicU64::new(0),
            state: Mutex::new((MoveStatus::Running, None)),
        });
        list.push_back(task.clone());
        while list.len() > KEPT {
            list.pop_front();
        }
        drop(tasks);
        let queues = self.clone();
        let running = task.clone();
        tokio::spawn(async move { queues.run_move(running).await });
        Ok(task)
    }

    /// The latest tasks of a source queue, newest first.
    pub fn list_moves(&self, source: &str, max: usize) -> Vec<Arc<MoveTask>> {
        let tasks = self
            .moves
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tasks
            .get(source)
            .map(|list| list.iter().rev().take(max).cloned().collect())
            .unwrap_or_default()
    }

    /// Cancels a running task; answers how many messages it moved.
    pub fn cancel_move(&self, handle: &str) -> Result<u64, QueueError> {
        let tasks = self
            .moves
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let task = tasks
            .values()
            .flatten()
            .find(|t| t.handle == handle)
            .ok_or_else(|| {
                QueueError::ResourceNotFound("The task handle does not name a task.".into())
            })?;
        match task.status().0 {
            MoveStatus::Running => {
                task.set(MoveStatus::Cancelling, None);
                Ok(task.moved())
            }
            _ => Err(QueueError::InvalidMessage(
                "Only a task that is running can be cancelled.".into(),
            )),
        }
    }

    /// Runs a task to its end.
    async fn run_move(self: Arc<Self>, task: Arc<MoveTask>) {
        let per_batch = task.rate.map_or(BATCH, |r| (r as usize).min(BATCH));
        loop {
            if task.status().0 == MoveStatus::Cancelling {
                task.finish(MoveStatus::Cancelled, None);
                return;
            }
            let started = tokio::time::Instant::now();
            let queues = self.clone();
            let running = task.clone();
            let batch =
                tokio::task::spawn_blocking(move || queues.move_batch(&running, per_batch)).await;
            let batch = match batch {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    tracing::warn!(source = %task.source, error = %e, "a message move task failed");
                    task.finish(MoveStatus::Failed, Some(e.to_string()));
                    return;
                }
                Err(e) => {
                    task.finish(MoveStatus::Failed, Some(e.to_string()));
                    return;
                }
            };
            task.moved.fetch_add(batch.moved as u64, Ordering::Relaxed);
            if !batch.left {
                task.finish(MoveStatus::Completed, None);
                tracing::info!(source = %task.source, moved = task.moved(), "a message move task completed");
                return;
            }
            if batch.moved == 0 {
                tokio::time::sleep(IN_FLIGHT_WAIT).await;
            } else if let Some(rate) = task.rate {
                let spent = Duration::from_secs_f64(batch.moved as f64 / f64::from(rate));
                tokio::time::sleep_until(started + spent).await;
            }
        }
    }

    /// Moves up to `limit` visible messages of the task in one transaction.
    fn move_batch(&self, task: &MoveTask, limit: usize) -> Result<Batch, QueueError> {
        let mut conn = self.lock();
        let now = now_ms();
        let tx = write_transaction(&mut conn)?;
        let rows: Vec<(i64, Option<String>)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, dead_letter_source FROM queue_messages
                     WHERE queue = ?1 AND seq <= ?2 AND visible_at_ms <= ?3
                     ORDER BY seq LIMIT ?4",
                )
                .map_err(backend)?;
            stmt.query_map(
                params![task.source, task.last_seq, now as i64, limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?
        };
        let mut moved = 0;
        for (seq, origin) in &rows {
            let target = match (&task.destination, origin) {
                (Some((key, _)), _) => key.clone(),
                (None, Some(origin)) => origin.clone(),
                (None, None) => {
                    return Err(QueueError::InvalidMessage(format!(
                        "A message of {} was not moved there by a redrive policy, so it has no source queue to go back to; give a DestinationArn.",
                        task.source_arn
                    )));
                }
            };
            if Self::info_locked(&tx, &target).is_err() {
                return Err(QueueError::InvalidMessage(format!(
                    "The queue {target} that a message goes back to does not exist."
                )));
            }
            tx.execute(
                "INSERT INTO queue_messages (queue, message_id, body, attributes, sent_ms, visible_at_ms, group_id, dedup_id)
                 SELECT ?2, message_id, body, attributes, ?3, ?3, group_id, dedup_id FROM queue_messages WHERE seq = ?1",
                params![seq, target, now as i64],
            )
            .map_err(backend)?;
            tx.execute("DELETE FROM queue_messages WHERE seq = ?1", params![seq])
                .map_err(backend)?;
            moved += 1;
        }
        let left: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND seq <= ?2)",
                params![task.source, task.last_seq],
                |r| r.get(0),
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        if moved > 0 {
            self.arrivals.notify_waiters();
        }
        Ok(Batch { moved, left })
    }
}
