//! The topics' tables: `topics` and `topic_subscriptions` (records as JSON), the durable
//! outbox of deliveries (`topic_messages`, one row per published message, and
//! `topic_deliveries`, one per subscription it goes to) and `topic_dedup` (FIFO topics'
//! deduplication window). Every commit is on disk before the API answers
//! (`synchronous=FULL`).
//!
//! A delivery is `claimed` while it is being attempted. Deliveries of FIFO topics carry a
//! `lane` (subscription and message group): only the oldest delivery of a lane is ever
//! claimed, so a group's messages reach each subscriber in order. At start every claim
//! of the last run is released.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::message::Published;
use super::{Subscription, Topic, TopicError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (
    arn     TEXT PRIMARY KEY,
    record  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS topic_subscriptions (
    arn     TEXT PRIMARY KEY,
    topic   TEXT NOT NULL,
    record  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS topic_messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    record  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS topic_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message       INTEGER NOT NULL,
    subscription  TEXT NOT NULL,
    lane          TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_ms        INTEGER NOT NULL,
    claimed       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS topic_deliveries_due ON topic_deliveries (claimed, due_ms);
CREATE INDEX IF NOT EXISTS topic_deliveries_lane ON topic_deliveries (lane, id) WHERE lane IS NOT NULL;
CREATE INDEX IF NOT EXISTS topic_deliveries_message ON topic_deliveries (message);
CREATE TABLE IF NOT EXISTS topic_dedup (
    topic       TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    sequence    TEXT NOT NULL,
    sent_ms     INTEGER NOT NULL,
    PRIMARY KEY (topic, dedup_key)
);
";

fn backend(e: impl std::fmt::Display) -> TopicError {
    TopicError::Backend(e.to_string())
}

/// One delivery to attempt.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub subscription: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub lane: Option<String>,
    pub message: Arc<Published>,
}

/// How an attempt ended, as written back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered, dead-lettered or given up: the row goes.
    Done { id: i64 },
    /// Tried again at `due_ms`.
    Retry { id: i64, attempts: u32, due_ms: u64 },
}

/// A published message to write: the message, its deliveries, and the (topic,
/// deduplication key) it is remembered by in a FIFO topic's window.
pub type NewMessage = (Published, Vec<NewDelivery>, Option<(String, String)>);

/// A delivery to write with its message.
pub struct NewDelivery {
    pub subscription: String,
    pub lane: Option<String>,
    /// Handed to the deliverer at once (claimed), rather than claimed later.
    pub claimed: bool,
}

/// A publish waiting to be committed, and where its result goes.
type Queued = (
    Vec<NewMessage>,
    Arc<Mutex<Option<Result<Vec<Job>, TopicError>>>>,
);

pub struct TopicStore {
    conn: Mutex<Connection>,
    /// Publishes waiting for the next group commit.
    queued: Mutex<Vec<Queued>>,
}

impl TopicStore {
    pub fn open(path: &Path) -> Result<Self, TopicError> {
        let conn = crate::store::connect(path, "FULL").map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.execute(
            "UPDATE topic_deliveries SET claimed = 0 WHERE claimed = 1",
            [],
        )
        .map_err(backend)?;
        Ok(Self {
            conn: Mutex::new(conn),
            queued: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, TopicError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(sql).map_err(backend)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(backend)?;
        let mut records = Vec::new();
        for row in rows {
            let text = row.map_err(backend)?;
            match serde_json::from_str(&text) {
                Ok(record) => records.push(record),
                Err(e) => tracing::error!(error = %e, "a topic record is unreadable; skipped"),
            }
        }
        Ok(records)
    }

    pub fn topics(&self) -> Result<Vec<Topic>, TopicError> {
        self.load("SELECT record FROM topics ORDER BY arn")
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, TopicError> {
        self.load("SELECT record FROM topic_subscriptions ORDER BY arn")
    }

    pub fn put_topic(&self, topic: &Topic) -> Result<(), TopicError> {
        let record = serde_json::to_string(topic).map_err(backend)?;
        self.lock()
            .execute(
                "INSERT INTO topics (arn, record) VALUES (?1, ?2)
                 ON CONFLICT (arn) DO UPDATE SET record = ?2",
                params![topic.arn, record],
            )
            .map(|_| ())
            .map_err(backend)
    }

    /// Deletes a topic, its subscriptions and their deliveries.
    pub fn delete_topic(&self, arn: &str) -> Result<(), TopicError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(backend)?;
        tx.execute(
            "DELETE FROM topic_deliveries WHERE subscription IN
               (SELECT arn FROM topic_subscriptions WHERE topic = ?1)",
            params![arn],
        )
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM topic_subscriptions WHERE topic = ?1",
            params![arn],
        )
        .map_err(backend)?;
        tx.execute("DELETE FROM topic_dedup WHERE topic = ?1", params![arn])
            .map_err(backend)?;
        tx.execute("DELETE FROM topics WHERE arn = ?1", params![arn])
            .map_err(backend)?;
        delete_orphan_messages(&tx)?;
        tx.commit().map_err(backend)
    }

    pub fn put_subscription(&self, subscription: &Subscription) -> Result<(), TopicError> {
        let record = serde_json::to_string(subscription).map_err(backend)?;
        self.lock()
            .execute(
                "INSERT INTO topic_subscriptions (arn, topic, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (arn) DO UPDATE SET record = ?3",
                params![subscription.arn, subscription.topic_arn, record],
            )
            .map(|_| ())
            .map_err(backend)
    }

    pub fn delete_subscription(&self, arn: &str) -> Result<(), TopicError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(backend)?;
        tx.execute(
            "DELETE FROM topic_deliveries WHERE subscription = ?1",
            params![arn],
        )
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM topic_subscriptions WHERE arn = ?1",
            params![arn],
        )
        .map_err(backend)?;
        delete_orphan_messages(&tx)?;
        tx.commit().map_err(backend)
    }

    /// A FIFO topic's earlier message with this deduplication key, sent after
    /// `since_ms`: its message id and sequence number.
    pub fn duplicate_of(
        &self,
        topic: &str,
        dedup_key: &str,
        since_ms: u64,
    ) -> Result<Option<(String, String)>, TopicError> {
        self.lock()
            .query_row(
                "SELECT message_id, sequence FROM topic_dedup
                 WHERE topic = ?1 AND dedup_key = ?2 AND sent_ms > ?3",
                params![topic, dedup_key, since_ms as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(backend)
    }

    /// Writes published messages and their deliveries; answers the jobs of their claimed
    /// deliveries. A message with a deduplication key is recorded in the topic's window
    /// (`dedup`: topic, key).
    ///
    /// Publishes are committed in groups: each queues its messages, then waits for the
    /// connection; whoever holds it commits everything queued in one transaction (one
    /// fsync for all) and leaves each publish its result, so a publish that finds its
    /// result when it gets the connection returns it.
    pub fn publish(&self, messages: Vec<NewMessage>, now_ms: u64) -> Result<Vec<Job>, TopicError> {
        let slot = Arc::new(Mutex::new(None));
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((messages, slot.clone()));
        let mut conn = self.lock();
        if let Some(result) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return result;
        }
        let group = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        let (requests, slots): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        match write_messages(&mut conn, requests, now_ms) {
            Ok(results) => {
                for (slot, jobs) in slots.iter().zip(results) {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(jobs));
                }
            }
            Err(e) => {
                for slot in &slots {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(e.clone()));
                }
            }
        }
        drop(conn);
        let result = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        result.unwrap_or_else(|| Err(TopicError::Backend("a publish was not written".into())))
    }

    /// Claims up to `limit` deliveries that are due, each the oldest of its lane.
    pub fn claim(&self, now_ms: u64, limit: usize) -> Result<Vec<Job>, TopicError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut jobs = Vec::new();
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT d.id, d.subscription, d.attempts, d.lane, m.record
                     FROM topic_deliveries d JOIN topic_messages m ON m.id = d.message
                     WHERE d.claimed = 0 AND d.due_ms <= ?1
                       AND (d.lane IS NULL OR d.id =
                            (SELECT MIN(id) FROM topic_deliveries l WHERE l.lane = d.lane))
                     ORDER BY d.due_ms, d.id LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = select
                .query_map(params![now_ms as i64, limit as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .map_err(backend)?;
            for row in rows {
                let (id, subscription, attempts, lane, record) = row.map_err(backend)?;
                match serde_json::from_str::<Published>(&record) {
                    Ok(message) => jobs.push(Job {
                        id,
                        subscription,
                        attempts: attempts as u32,
                        lane,
                        message: Arc::new(message),
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, delivery = id, "a published message is unreadable; its delivery is dropped");
                        tx.execute("DELETE FROM topic_deliveries WHERE id = ?1", params![id])
                            .map_err(backend)?;
                    }
                }
            }
            let mut mark = tx
                .prepare_cached("UPDATE topic_deliveries SET claimed = 1 WHERE id = ?1")
                .map_err(backend)?;
            for job in &jobs {
                mark.execute(params![job.id]).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(jobs)
    }

    /// When the next unclaimed delivery is due, if any.
    pub fn next_due(&self) -> Result<Option<u64>, TopicError> {
        self.lock()
            .query_row(
                "SELECT MIN(due_ms) FROM topic_deliveries WHERE claimed = 0",
                [],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|due| due.map(|d| d.max(0) as u64))
            .map_err(backend)
    }

    /// Writes back how attempts ended, in one transaction, and drops the messages no
    /// delivery needs any more.
    pub fn settle(&self, settlements: &[Settlement]) -> Result<(), TopicError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut messages = Vec::new();
        {
            let mut message_of = tx
                .prepare_cached("SELECT message FROM topic_deliveries WHERE id = ?1")
                .map_err(backend)?;
            let mut done = tx
                .prepare_cached("DELETE FROM topic_deliveries WHERE id = ?1")
                .map_err(backend)?;
            let mut retry = tx
                .prepare_cached(
                    "UPDATE topic_deliveries SET claimed = 0, attempts = ?2, due_ms = ?3 WHERE id = ?1",
                )
                .map_err(backend)?;
            for settlement in settlements {
                match settlement {
                    Settlement::Done { id } => {
                        if let Some(message) = message_of
                            .query_row(params![id], |row| row.get::<_, i64>(0))
                            .optional()
                            .map_err(backend)?
                        {
                            messages.push(message);
                        }
                        done.execute(params![id]).map_err(backend)?;
                    }
                    Settlement::Retry {
                        id,
                        attempts,
                        due_ms,
                    } => {
                        retry
                            .execute(params![id, attempts, *due_ms as i64])
                            .map_err(backend)?;
                    }
                }
            }
            let mut orphan = tx
                .prepare_cached(
                    "DELETE FROM topic_messages WHERE id = ?1
                     AND NOT EXISTS (SELECT 1 FROM topic_deliveries WHERE message = ?1)",
                )
                .map_err(backend)?;
            messages.sort_unstable();
            messages.dedup();
            for message in messages {
                orphan.execute(params![message]).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    /// Forgets deduplication keys older than `before_ms`.
    pub fn expire_dedup(&self, before_ms: u64) -> Result<(), TopicError> {
        self.lock()
            .execute(
                "DELETE FROM topic_dedup WHERE sent_ms <= ?1",
                params![before_ms as i64],
            )
            .map(|_| ())
            .map_err(backend)
    }

    /// Deliveries not yet ended (for tests and gauges).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn pending(&self) -> Result<u64, TopicError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM topic_deliveries", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(backend)
    }
}

fn delete_orphan_messages(tx: &rusqlite::Transaction<'_>) -> Result<(), TopicError> {
    tx.execute(
        "DELETE FROM topic_messages WHERE NOT EXISTS
           (SELECT 1 FROM topic_deliveries WHERE message = topic_messages.id)",
        [],
    )
    .map(|_| ())
    .map_err(backend)
}

/// Writes the messages of several publishes in one transaction; the jobs of each.
fn write_messages(
    conn: &mut Connection,
    requests: Vec<Vec<NewMessage>>,
    now_ms: u64,
) -> Result<Vec<Vec<Job>>, TopicError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let mut results = Vec::with_capacity(requests.len());
    {
        let mut insert_message = tx
            .prepare_cached("INSERT INTO topic_messages (record) VALUES (?1)")
            .map_err(backend)?;
        let mut insert_delivery = tx
            .prepare_cached(
                "INSERT INTO topic_deliveries (message, subscription, lane, due_ms, claimed)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(backend)?;
        let mut insert_dedup = tx
            .prepare_cached(
                "INSERT INTO topic_dedup (topic, dedup_key, message_id, sequence, sent_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (topic, dedup_key) DO UPDATE SET
                       message_id = ?3, sequence = ?4, sent_ms = ?5",
            )
            .map_err(backend)?;
        for messages in requests {
            let mut jobs = Vec::new();
            for (published, deliveries, dedup) in messages {
                if let Some((topic, key)) = &dedup {
                    insert_dedup
                        .execute(params![
                            topic,
                            key,
                            published.message_id,
                            published.sequence_number.clone().unwrap_or_default(),
                            now_ms as i64
                        ])
                        .map_err(backend)?;
                }
                if deliveries.is_empty() {
                    continue;
                }
                let record = serde_json::to_string(&published).map_err(backend)?;
                insert_message.execute(params![record]).map_err(backend)?;
                let message_row = tx.last_insert_rowid();
                let published = Arc::new(published);
                for delivery in deliveries {
                    insert_delivery
                        .execute(params![
                            message_row,
                            delivery.subscription,
                            delivery.lane,
                            now_ms as i64,
                            delivery.claimed as i64
                        ])
                        .map_err(backend)?;
                    if delivery.claimed {
                        jobs.push(Job {
                            id: tx.last_insert_rowid(),
                            subscription: delivery.subscription,
                            attempts: 0,
                            lane: delivery.lane,
                            message: published.clone(),
                        });
                    }
                }
            }
            results.push(jobs);
        }
    }
    tx.commit().map_err(backend)?;
    Ok(results)
}
