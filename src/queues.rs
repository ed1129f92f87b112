//! Built-in queues: durable message queues with the semantics of Amazon SQS standard
//! queues (visibility timeout, receive count, delay, retention, long polling).
//!
//! Owns the `queues` and `queue_messages` tables. Every send is committed before it is
//! acknowledged; a received message is hidden until its visibility timeout ends and is
//! gone only when deleted with its latest receipt handle. The wire protocol (SQS JSON)
//! lives in `api/sqs.rs`; destinations and dead-letter targets use [`QueueService::send`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::timefmt::now_ms;

pub const DEFAULT_VISIBILITY_S: u64 = 30;
pub const DEFAULT_RETENTION_S: u64 = 345_600;
pub const MAX_MESSAGE_BYTES: usize = 262_144;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("The specified queue does not exist.")]
    NoSuchQueue,
    #[error("A queue already exists with the same name and a different value for attribute {0}")]
    NameExists(String),
    /// A queue attribute out of range or unknown.
    #[error("{0}")]
    InvalidParameter(String),
    /// A message parameter (size, delay) out of range.
    #[error("{0}")]
    InvalidMessage(String),
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    InvalidReceiptHandle(String),
    #[error("queue store failure: {0}")]
    Backend(String),
}

fn backend(e: rusqlite::Error) -> QueueError {
    QueueError::Backend(e.to_string())
}

/// A message attribute (`String`, `Number` or `Binary` data types).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attribute {
    pub data_type: String,
    pub string_value: Option<String>,
    /// Base64, as on the wire.
    pub binary_value: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    pub attributes: BTreeMap<String, Attribute>,
    pub sent_ms: u64,
    pub receive_count: u32,
    pub first_receive_ms: u64,
}

pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SQS's digest of message attributes: names sorted, each as length-prefixed name, data
/// type, a transport byte (1 string, 2 binary) and length-prefixed value.
pub fn md5_of_attributes(attributes: &BTreeMap<String, Attribute>) -> Option<String> {
    use base64::Engine;
    if attributes.is_empty() {
        return None;
    }
    let mut buf = Vec::new();
    let put = |bytes: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    for (name, attr) in attributes {
        put(name.as_bytes(), &mut buf);
        put(attr.data_type.as_bytes(), &mut buf);
        match (&attr.string_value, &attr.binary_value) {
            (_, Some(binary)) if attr.data_type.starts_with("Binary") => {
                buf.push(2);
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(binary)
                    .unwrap_or_default();
                put(&decoded, &mut buf);
            }
            (Some(string), _) => {
                buf.push(1);
                put(string.as_bytes(), &mut buf);
            }
            _ => {
                buf.push(1);
                put(b"", &mut buf);
            }
        }
    }
    Some(md5_hex(&buf))
}

#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub created_ms: u64,
    pub attributes: BTreeMap<String, String>,
}

impl QueueInfo {
    fn seconds(&self, key: &str, default: u64) -> u64 {
        self.attributes
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    pub fn visibility_s(&self) -> u64 {
        self.seconds("VisibilityTimeout", DEFAULT_VISIBILITY_S)
    }
    pub fn retention_s(&self) -> u64 {
        self.seconds("MessageRetentionPeriod", DEFAULT_RETENTION_S)
    }
    pub fn delay_s(&self) -> u64 {
        self.seconds("DelaySeconds", 0)
    }
}

/// Attributes a queue may be created with, and their allowed ranges.
const SETTABLE: &[(&str, u64, u64)] = &[
    ("VisibilityTimeout", 0, 43_200),
    ("MessageRetentionPeriod", 60, 1_209_600),
    ("DelaySeconds", 0, 900),
    ("ReceiveMessageWaitTimeSeconds", 0, 20),
    ("MaximumMessageSize", 1024, 262_144),
];

/// Attributes accepted and stored without effect here.
const KEPT: &[&str] = &[
    "Policy",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
];

/// The longest delay a message may have.
pub const MAX_DELAY_S: u64 = 900;

pub fn validate_attributes(
    attributes: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, QueueError> {
    let mut out = BTreeMap::new();
    for (name, value) in attributes {
        let Some((_, min, max)) = SETTABLE.iter().find(|(n, ..)| n == name) else {
            if KEPT.contains(&name.as_str()) {
                // Policies and encryption settings are accepted and kept, not enforced.
                out.insert(name.clone(), value.clone());
                continue;
            }
            return Err(QueueError::InvalidParameter(format!(
                "Unknown Attribute {name}."
            )));
        };
        match value.parse::<u64>() {
            Ok(v) if (*min..=*max).contains(&v) => {
                out.insert(name.clone(), value.clone());
            }
            _ => {
                return Err(QueueError::InvalidParameter(format!(
                    "Invalid value for the parameter {name}."
                )));
            }
        }
    }
    Ok(out)
}

pub fn validate_name(name: &str) -> Result<(), QueueError> {
    if crate::function::is_plain_name(name, 80) {
        Ok(())
    } else {
        Err(QueueError::InvalidParameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
                .into(),
        ))
    }
}

pub struct QueueService {
    conn: Mutex<Connection>,
    /// Woken on every send, for long polls.
    arrivals: Notify,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    attributes  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    attributes       TEXT NOT NULL,
    sent_ms          INTEGER NOT NULL,
    visible_at_ms    INTEGER NOT NULL,
    receive_count    INTEGER NOT NULL DEFAULT 0,
    first_receive_ms INTEGER NOT NULL DEFAULT 0,
    receipt_handle   TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at_ms);
";

impl QueueService {
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Mutex::new(conn),
            arrivals: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        validate_name(name)?;
        let conn = self.lock();
        let existing: Option<String> = conn
            .query_row(
                "SELECT attributes FROM queues WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if let Some(existing) = existing {
            let existing: BTreeMap<String, String> =
                serde_json::from_str(&existing).unwrap_or_default();
            for (k, v) in &attributes {
                if existing.get(k) != Some(v) {
                    return Err(QueueError::NameExists(k.clone()));
                }
            }
            return Ok(());
        }
        conn.execute(
            "INSERT INTO queues (name, created_ms, attributes) VALUES (?1, ?2, ?3)",
            params![
                name,
                now_ms() as i64,
                serde_json::to_string(&attributes).unwrap_or_default()
            ],
        )
        .map_err(backend)?;
        Ok(())
    }

    pub fn info(&self, name: &str) -> Result<QueueInfo, QueueError> {
        let conn = self.lock();
        Self::info_locked(&conn, name)
    }

    fn info_locked(conn: &Connection, name: &str) -> Result<QueueInfo, QueueError> {
        conn.query_row(
            "SELECT created_ms, attributes FROM queues WHERE name = ?1",
            params![name],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(backend)?
        .map(|(created, attributes)| QueueInfo {
            created_ms: created as u64,
            attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        })
        .ok_or(QueueError::NoSuchQueue)
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<String>, QueueError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT name FROM queues ORDER BY name")
            .map_err(backend)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(names
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect())
    }

    pub fn delete(&self, name: &str) -> Result<(), QueueError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(backend)?;
        let deleted = tx
            .execute("DELETE FROM queues WHERE name = ?1", params![name])
            .map_err(backend)?;
        if deleted == 0 {
            return Err(QueueError::NoSuchQueue);
        }
        tx.execute("DELETE FROM queue_messages WHERE queue = ?1", params![name])
            .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    pub fn purge(&self, name: &str) -> Result<(), QueueError> {
        let conn = self.lock();
        Self::info_locked(&conn, name)?;
        conn.execute("DELETE FROM queue_messages WHERE queue = ?1", params![name])
            .map_err(backend)?;
        Ok(())
    }

    /// Commits messages (body, attributes, delay) to a queue; returns their ids.
    pub fn send(
        &self,
        name: &str,
        messages: &[(String, BTreeMap<String, Attribute>, Option<u64>)],
    ) -> Result<Vec<String>, QueueError> {
        let mut conn = self.lock();
        let info = Self::info_locked(&conn, name)?;
        let max_size = info.seconds("MaximumMessageSize", MAX_MESSAGE_BYTES as u64) as usize;
        for (body, _, delay) in messages {
            if body.len() > max_size {
                return Err(QueueError::InvalidMessage(format!(
                    "One or more parameters are invalid. Reason: Message must be shorter than {max_size} bytes."
                )));
            }
            if delay.is_some_and(|d| d > MAX_DELAY_S) {
                return Err(QueueError::InvalidMessage(format!(
                    "Value {} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= {MAX_DELAY_S}.",
                    delay.unwrap_or_default()
                )));
            }
        }
        let now = now_ms();
        let tx = conn.transaction().map_err(backend)?;
        let mut ids = Vec::with_capacity(messages.len());
        for (body, attributes, delay) in messages {
            let id = uuid::Uuid::new_v4().to_string();
            let visible_at = now + delay.unwrap_or(info.delay_s()) * 1000;
            tx.execute(
                "INSERT INTO queue_messages (queue, message_id, body, attributes, sent_ms, visible_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, id, body, serde_json::to_string(attributes).unwrap_or_default(), now as i64, visible_at as i64],
            )
            .map_err(backend)?;
            ids.push(id);
        }
        tx.commit().map_err(backend)?;
        self.arrivals.notify_waiters();
        Ok(ids)
    }

    /// Receives up to `max` visible messages, hiding them for `visibility_s`.
    fn receive_now(
        &self,
        name: &str,
        max: usize,
        visibility_s: Option<u64>,
    ) -> Result<Vec<Received>, QueueError> {
        let mut conn = self.lock();
        let info = Self::info_locked(&conn, name)?;
        let now = now_ms();
        let hidden_until = now + visibility_s.unwrap_or(info.visibility_s()) * 1000;
        let tx = conn.transaction().map_err(backend)?;
        // Expired messages (past retention) are removed as they are met.
        tx.execute(
            "DELETE FROM queue_messages WHERE queue = ?1 AND sent_ms < ?2",
            params![name, now.saturating_sub(info.retention_s() * 1000) as i64],
        )
        .map_err(backend)?;
        let rows: Vec<(i64, String, String, String, i64, i64, i64)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, message_id, body, attributes, sent_ms, receive_count, first_receive_ms
                     FROM queue_messages WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(backend)?;
            stmt.query_map(params![name, now as i64, max as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?
        };
        let mut received = Vec::with_capacity(rows.len());
        for (seq, message_id, body, attributes, sent, count, first) in rows {
            let handle = format!("{seq}:{}", uuid::Uuid::new_v4().simple());
            let first = if first == 0 { now as i64 } else { first };
            tx.execute(
                "UPDATE queue_messages SET visible_at_ms = ?2, receive_count = receive_count + 1,
                 first_receive_ms = ?3, receipt_handle = ?4 WHERE seq = ?1",
                params![seq, hidden_until as i64, first, handle],
            )
            .map_err(backend)?;
            let attributes: BTreeMap<String, Attribute> =
                serde_json::from_str(&attributes).unwrap_or_default();
            received.push(Received {
                message_id,
                receipt_handle: handle,
                md5_of_body: md5_hex(body.as_bytes()),
                body,
                attributes,
                sent_ms: sent as u64,
                receive_count: count as u32 + 1,
                first_receive_ms: first as u64,
            });
        }
        tx.commit().map_err(backend)?;
        Ok(received)
    }

    /// Receives, waiting up to `wait` for a message to arrive (long polling).
    pub async fn receive(
        self: &std::sync::Arc<Self>,
        name: &str,
        max: usize,
        visibility_s: Option<u64>,
        wait: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrivals.notified();
            let this = self.clone();
            let queue = name.to_string();
            let got =
                tokio::task::spawn_blocking(move || this.receive_now(&queue, max, visibility_s))
                    .await
                    .map_err(|e| QueueError::Backend(e.to_string()))??;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            // Woken by a send, or every so often for messages whose delay or visibility ended.
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(250)),
                arrived,
            )
            .await;
        }
    }

    fn seq_of(handle: &str) -> Result<i64, QueueError> {
        handle
            .split(':')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| QueueError::InvalidReceiptHandle(handle.to_string()))
    }

    pub fn delete_message(&self, name: &str, handle: &str) -> Result<(), QueueError> {
        let seq = Self::seq_of(handle)?;
        let conn = self.lock();
        Self::info_locked(&conn, name)?;
        // A stale handle of a message already deleted succeeds, as on SQS.
        conn.execute(
            "DELETE FROM queue_messages WHERE seq = ?1 AND queue = ?2 AND receipt_handle = ?3",
            params![seq, name, handle],
        )
        .map_err(backend)?;
        Ok(())
    }

    pub fn change_visibility(
        &self,
        name: &str,
        handle: &str,
        visibility_s: u64,
    ) -> Result<(), QueueError> {
        let seq = Self::seq_of(handle)?;
        let conn = self.lock();
        Self::info_locked(&conn, name)?;
        let changed = conn
            .execute(
                "UPDATE queue_messages SET visible_at_ms = ?4 WHERE seq = ?1 AND queue = ?2 AND receipt_handle = ?3",
                params![seq, name, handle, (now_ms() + visibility_s * 1000) as i64],
            )
            .map_err(backend)?;
        if changed == 0 {
            return Err(QueueError::InvalidReceiptHandle(handle.to_string()));
        }
        Ok(())
    }

    /// (visible, in flight, delayed) message counts.
    pub fn counts(&self, name: &str) -> Result<(u64, u64, u64), QueueError> {
        let conn = self.lock();
        Self::info_locked(&conn, name)?;
        let now = now_ms() as i64;
        conn.query_row(
            "SELECT
               COALESCE(SUM(visible_at_ms <= ?2), 0),
               COALESCE(SUM(visible_at_ms > ?2 AND receive_count > 0), 0),
               COALESCE(SUM(visible_at_ms > ?2 AND receive_count = 0), 0)
             FROM queue_messages WHERE queue = ?1",
            params![name, now],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )
        .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_digest_matches_sqs() {
        // The digest boto3 computes for {"k": String "v"}.
        let mut attrs = BTreeMap::new();
        attrs.insert(
            "k".to_string(),
            Attribute {
                data_type: "String".into(),
                string_value: Some("v".into()),
                binary_value: None,
            },
        );
        let mut expected = Vec::new();
        for part in [&b"k"[..], b"String"] {
            expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
            expected.extend_from_slice(part);
        }
        expected.push(1);
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(b"v");
        assert_eq!(md5_of_attributes(&attrs), Some(md5_hex(&expected)));
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn send_receive_hide_delete() {
        let dir = tempfile::tempdir().unwrap();
        let queues = QueueService::open(&dir.path().join("q.db")).unwrap();
        queues.create("q", BTreeMap::new()).unwrap();
        queues
            .send(
                "q",
                &[
                    ("one".into(), BTreeMap::new(), None),
                    ("two".into(), BTreeMap::new(), None),
                ],
            )
            .unwrap();
        let got = queues.receive_now("q", 10, Some(30)).unwrap();
        assert_eq!(
            got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert!(
            queues.receive_now("q", 10, None).unwrap().is_empty(),
            "hidden while in flight"
        );
        assert_eq!(queues.counts("q").unwrap(), (0, 2, 0));
        queues.delete_message("q", &got[0].receipt_handle).unwrap();
        queues
            .change_visibility("q", &got[1].receipt_handle, 0)
            .unwrap();
        let again = queues.receive_now("q", 10, None).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        assert_eq!(
            queues.receive_now("missing", 1, None).unwrap_err(),
            QueueError::NoSuchQueue
        );
    }
}
