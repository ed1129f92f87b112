//! Built-in queues: durable message queues with the semantics of Amazon SQS standard
//! and FIFO queues (visibility timeout, receive count, delay, retention, long polling;
//! message groups and deduplication in `fifo.rs`).
//!
//! Owns the `queues` and `queue_messages` tables. A standard queue hands out messages in
//! the order they became visible (best effort, as SQS's standard queues). Every send is committed before it is
//! acknowledged; a received message is hidden until its visibility timeout ends and is
//! gone only when deleted with its latest receipt handle. The wire protocol (SQS JSON)
//! lives in `api/sqs/`; destinations and dead-letter targets use [`QueueService::send`].
//!
//! Also owns `queue_tags` (a queue's cost-allocation tags, SQS's limits) and the
//! redrive policy: a message received `maxReceiveCount` times moves to the queue's
//! dead-letter queue when it would be received once more.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::function::ArnContext;
use crate::timefmt::now_ms;

mod fifo;
pub mod moves;
pub mod policy;

pub use fifo::is_fifo_name;

pub const DEFAULT_VISIBILITY_S: u64 = 30;
pub const DEFAULT_RETENTION_S: u64 = 345_600;
/// The largest message (and the default `MaximumMessageSize`): 1 MiB, as SQS since 2025.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    /// A tag over SQS's limits (count, key or value length, reserved prefix).
    #[error("{0}")]
    InvalidTag(String),
    #[error("The input receipt handle \"{0}\" is not a valid receipt handle.")]
    InvalidReceiptHandle(String),
    /// A required parameter is missing (the message says which).
    #[error("{0}")]
    MissingParameter(String),
    /// An attribute this queue does not take.
    #[error("Unknown Attribute {0}.")]
    InvalidAttributeName(String),
    /// A queue or task a move task names does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("queue store failure: {0}")]
    Backend(String),
}

/// A transaction that holds the database's write lock from its start (waiting for it up
/// to the busy timeout): a transaction that reads, then writes, would otherwise fail at
/// once with "database is locked" when another connection (the log writer, the async
/// queue) wrote in between.
fn write_transaction(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, QueueError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)
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
    /// FIFO queues: the message's group, deduplication id and sequence number.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
}

/// A message as a receive reads it from `queue_messages`.
struct StoredMessage {
    seq: i64,
    message_id: String,
    body: String,
    attributes: String,
    sent_ms: i64,
    receive_count: i64,
    first_receive_ms: i64,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub body: String,
    pub attributes: BTreeMap<String, Attribute>,
    /// Its own delay (standard queues only), else the queue's.
    pub delay_s: Option<u64>,
    /// `MessageGroupId` and `MessageDeduplicationId` (FIFO queues).
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

impl Outgoing {
    pub fn new(body: String, attributes: BTreeMap<String, Attribute>) -> Self {
        Self {
            body,
            attributes,
            ..Default::default()
        }
    }
}

/// A sent message: its id, and its sequence number in a FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    pub sequence_number: Option<String>,
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
    pub fn maximum_message_size(&self) -> usize {
        self.seconds("MaximumMessageSize", MAX_MESSAGE_BYTES as u64) as usize
    }
}

/// Attributes a queue may be created with, and their allowed ranges.
const SETTABLE: &[(&str, u64, u64)] = &[
    ("VisibilityTimeout", 0, 43_200),
    ("MessageRetentionPeriod", 60, 1_209_600),
    ("DelaySeconds", 0, 900),
    ("ReceiveMessageWaitTimeSeconds", 0, 20),
    ("MaximumMessageSize", 1024, 1_048_576),
];

/// Attributes accepted and stored without effect here (`RedrivePolicy` is checked
/// apart and acted on).
const KEPT: &[&str] = &[
    "Policy",
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
        if name == "RedrivePolicy" {
            if !value.is_empty() {
                RedrivePolicy::parse(value)?;
            }
            out.insert(name.clone(), value.clone());
            continue;
        }
        let Some((_, min, max)) = SETTABLE.iter().find(|(n, ..)| n == name) else {
            if KEPT.contains(&name.as_str()) || fifo::is_fifo_attribute(name) {
                // Checked against the queue's kind when it is created or changed.
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

/// The largest `maxReceiveCount` SQS accepts.
pub const MAX_RECEIVE_COUNT_MAX: u32 = 1000;
/// SQS's tag limits: tags per queue, key and value length.
pub const TAGS_MAX: usize = 50;
pub const TAG_KEY_MAX: usize = 128;
pub const TAG_VALUE_MAX: usize = 256;

/// A queue's `RedrivePolicy`: where messages go once received `max_receive_count` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name (the last part of its ARN).
    pub target: String,
    /// The dead-letter queue's region.
    pub target_region: String,
    pub target_arn: String,
    pub max_receive_count: u32,
}

impl RedrivePolicy {
    /// Parses the attribute's JSON as SQS does: `deadLetterTargetArn` an SQS queue ARN,
    /// `maxReceiveCount` a number (or numeric string) from 1 to 1000.
    pub fn parse(value: &str) -> Result<Self, QueueError> {
        let invalid = |reason: &str| {
            QueueError::InvalidParameter(format!(
                "Value {value} for parameter RedrivePolicy is invalid. Reason: {reason}"
            ))
        };
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(value)
            .map_err(|_| invalid("Redrive policy is not a valid JSON map."))?;
        if let Some(unknown) = map
            .keys()
            .find(|k| *k != "deadLetterTargetArn" && *k != "maxReceiveCount")
        {
            return Err(invalid(&format!(
                "Only following keys are allowed: deadLetterTargetArn, maxReceiveCount; found {unknown}."
            )));
        }
        let target_arn = map
            .get("deadLetterTargetArn")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                invalid("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
            })?;
        let (target, target_region) = crate::arn::Arn::parse(target_arn)
            .ok()
            .and_then(|arn| {
                let name = arn.queue_name().ok()?;
                crate::region::validate_region(&arn.region).ok()?;
                validate_name(name)
                    .is_ok()
                    .then(|| (name.to_string(), arn.region.clone()))
            })
            .ok_or_else(|| invalid("Invalid value for deadLetterTargetArn."))?;
        let count = match map.get("maxReceiveCount") {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
            Some(_) => None,
            None => {
                return Err(invalid(
                    "Redrive policy does not contain mandatory attribute: maxReceiveCount.",
                ));
            }
        };
        let max_receive_count = count
            .filter(|c| (1..=i64::from(MAX_RECEIVE_COUNT_MAX)).contains(c))
            .ok_or_else(|| {
                invalid(&format!(
                    "Invalid value for maxReceiveCount: {}, valid values are from 1 to {MAX_RECEIVE_COUNT_MAX} both inclusive.",
                    map["maxReceiveCount"]
                ))
            })? as u32;
        Ok(Self {
            target,
            target_region,
            target_arn: target_arn.to_string(),
            max_receive_count,
        })
    }
}

/// Checks tags against SQS's limits on their own (the count is checked with the queue's
/// existing tags).
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
    for (key, value) in tags {
        validate_tag_key(key)?;
        if value.chars().count() > TAG_VALUE_MAX {
            return Err(QueueError::InvalidTag(format!(
                "Tag value for key {key} must be at most {TAG_VALUE_MAX} characters long."
            )));
        }
    }
    Ok(())
}

pub fn validate_tag_key(key: &str) -> Result<(), QueueError> {
    if key.is_empty() || key.chars().count() > TAG_KEY_MAX {
        return Err(QueueError::InvalidTag(format!(
            "Tag key {key:?} must be 1 to {TAG_KEY_MAX} characters long."
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(QueueError::InvalidTag(format!(
            "Tag key {key} uses the reserved prefix aws:."
        )));
    }
    Ok(())
}

/// One of the attributes with a numeric range (never empty once validated).
fn is_numeric_attribute(name: &str) -> bool {
    SETTABLE.iter().any(|(n, ..)| *n == name)
}

fn too_many_tags(name: &str) -> QueueError {
    QueueError::InvalidTag(format!(
        "Too many tags added for queue {name}: a queue has at most {TAGS_MAX} tags."
    ))
}

pub fn validate_name(name: &str) -> Result<(), QueueError> {
    // A FIFO queue's name is a plain name and the `.fifo` suffix, 80 characters in all.
    let plain = name.strip_suffix(".fifo").unwrap_or(name);
    let limit = 80 - (name.len() - plain.len());
    if crate::function::is_plain_name(plain, limit) {
        Ok(())
    } else {
        Err(QueueError::InvalidParameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
                .into(),
        ))
    }
}

/// Where a send waiting for its group commit finds its result.
type SendSlot = Arc<Mutex<Option<Result<Vec<Sent>, QueueError>>>>;

pub struct QueueService {
    conn: Mutex<Connection>,
    /// Sends waiting for the next group commit: queue, messages, result.
    queued_sends: Mutex<Vec<(String, Vec<Outgoing>, SendSlot)>>,
    /// Queue records read so far (see [`QueueService::info`]).
    infos: Mutex<HashMap<String, QueueInfo>>,
    /// The account in its home region: queues are kept by key (see `crate::region`).
    arns: ArnContext,
    /// Woken on every send, for long polls.
    arrivals: Notify,
    /// When each queue's expired messages were last removed.
    swept: Mutex<HashMap<String, u64>>,
    /// Message move tasks.
    moves: moves::MoveTasks,
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
CREATE TABLE IF NOT EXISTS queue_dedup (
    queue      TEXT NOT NULL,
    dedup_key  TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    sent_ms    INTEGER NOT NULL,
    PRIMARY KEY (queue, dedup_key)
);
CREATE INDEX IF NOT EXISTS queue_dedup_sent ON queue_dedup (queue, sent_ms);
CREATE TABLE IF NOT EXISTS queue_tags (
    queue  TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (queue, key)
);
";

/// Stores of an earlier version lack the FIFO columns of `queue_messages` and the source
/// queue of dead-lettered messages: they are added (empty for the messages already
/// there).
fn add_fifo_columns(conn: &Connection) -> Result<(), QueueError> {
    let has_group: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('queue_messages') WHERE name = 'group_id')",
            [],
            |row| row.get(0),
        )
        .map_err(backend)?;
    if !has_group {
        conn.execute_batch(
            "ALTER TABLE queue_messages ADD COLUMN group_id TEXT;
             ALTER TABLE queue_messages ADD COLUMN dedup_id TEXT;",
        )
        .map_err(backend)?;
    }
    let has_source: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('queue_messages') WHERE name = 'dead_letter_source')",
            [],
            |row| row.get(0),
        )
        .map_err(backend)?;
    if !has_source {
        conn.execute_batch("ALTER TABLE queue_messages ADD COLUMN dead_letter_source TEXT;")
            .map_err(backend)?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (queue, group_id, seq);",
    )
    .map_err(backend)
}

impl QueueService {
    pub fn open(path: &Path, arns: ArnContext) -> Result<Self, QueueError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        add_fifo_columns(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            queued_sends: Mutex::new(Vec::new()),
            infos: Mutex::new(HashMap::new()),
            arns,
            arrivals: Notify::new(),
            swept: Mutex::new(HashMap::new()),
            moves: moves::MoveTasks::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a queue with tags (a queue that exists with the same attributes is left as
    /// it is, tags included, as on SQS). A redrive policy must name an existing queue.
    pub fn create(
        &self,
        name: &str,
        mut attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        // `name` is the queue's key (see `crate::region`): the front checked the name
        // before making it, and the key's own shape is checked here.
        let (region, bare) = match name.split_once('/') {
            Some((region, bare)) => (Some(region), bare),
            None => (None, name),
        };
        validate_name(bare)?;
        if let Some(region) = region {
            crate::region::validate_region(region)
                .map_err(|e| QueueError::InvalidParameter(e.to_string()))?;
        }
        // An empty policy or key is no setting (as SetQueueAttributes removes one).
        attributes.retain(|key, value| !value.is_empty() || is_numeric_attribute(key));
        fifo::check_create(bare, &mut attributes)?;
        validate_tags(&tags)?;
        if tags.len() > TAGS_MAX {
            return Err(too_many_tags(name));
        }
        let mut conn = self.lock();
        self.check_redrive_target(&conn, &attributes)?;
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
        self.forget_infos();
        let tx = write_transaction(&mut conn)?;
        tx.execute(
            "INSERT INTO queues (name, created_ms, attributes) VALUES (?1, ?2, ?3)",
            params![
                name,
                now_ms() as i64,
                serde_json::to_string(&attributes).unwrap_or_default()
            ],
        )
        .map_err(backend)?;
        for (key, value) in &tags {
            tx.execute(
                "INSERT INTO queue_tags (queue, key, value) VALUES (?1, ?2, ?3)",
                params![name, key, value],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    /// A redrive policy among `attributes` must name a queue that exists.
    fn check_redrive_target(
        &self,
        conn: &Connection,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let Some(policy) = attributes.get("RedrivePolicy").filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let policy = RedrivePolicy::parse(policy)?;
        match Self::info_locked(conn, &self.target_key(&policy)) {
            Ok(_) => Ok(()),
            Err(QueueError::NoSuchQueue) => Err(QueueError::InvalidParameter(format!(
                "Value {} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                attributes["RedrivePolicy"]
            ))),
            Err(e) => Err(e),
        }
    }

    /// Changes the queue's `Policy` with `edit` (given the current one; `None` removes it),
    /// under the lock, so that concurrent edits do not lose one another.
    pub fn edit_policy(
        &self,
        name: &str,
        edit: impl FnOnce(Option<&str>) -> Result<Option<String>, QueueError>,
    ) -> Result<(), QueueError> {
        let conn = self.lock();
        let mut info = Self::info_locked(&conn, name)?;
        match edit(info.attributes.get("Policy").map(String::as_str))? {
            Some(policy) => info.attributes.insert("Policy".into(), policy),
            None => info.attributes.remove("Policy"),
        };
        self.forget_infos();
        Self::store_attributes(&conn, name, &info.attributes)
    }

    fn store_attributes(
        conn: &Connection,
        name: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        conn.execute(
            "UPDATE queues SET attributes = ?2 WHERE name = ?1",
            params![name, serde_json::to_string(attributes).unwrap_or_default()],
        )
        .map(|_| ())
        .map_err(backend)
    }

    /// SetQueueAttributes: validated attributes replace the queue's; an empty `Policy`,
    /// `RedrivePolicy`, `RedriveAllowPolicy` or `KmsMasterKeyId` removes it.
    pub fn set_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let conn = self.lock();
        let mut info = Self::info_locked(&conn, name)?;
        fifo::check_set(is_fifo_name(name), &attributes)?;
        self.check_redrive_target(&conn, &attributes)?;
        for (key, value) in attributes {
            if value.is_empty() && !is_numeric_attribute(&key) {
                info.attributes.remove(&key);
            } else {
                info.attributes.insert(key, value);
            }
        }
        self.forget_infos();
        Self::store_attributes(&conn, name, &info.attributes)
    }

    pub fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
        let conn = self.lock();
        Self::info_locked(&conn, name)?;
        Self::tags_locked(&conn, name)
    }

    fn tags_locked(conn: &Connection, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
        let mut stmt = conn
            .prepare_cached("SELECT key, value FROM queue_tags WHERE queue = ?1")
            .map_err(backend)?;
        stmt.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(backend)
    }

    /// TagQueue: adds or overwrites tags; at most [`TAGS_MAX`] in all.
    pub fn tag(&self, name: &str, tags: BTreeMap<String, String>) -> Result<(), QueueError> {
        validate_tags(&tags)?;
        let mut conn = self.lock();
        Self::info_locked(&conn, name)?;
        let mut all = Self::tags_locked(&conn, name)?;
        all.extend(tags.clone());
        if all.len() > TAGS_MAX {
            return Err(too_many_tags(name));
        }
        let tx = write_transaction(&mut conn)?;
        for (key, value) in &tags {
            tx.execute(
                "INSERT INTO queue_tags (queue, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (queue, key) DO UPDATE SET value = excluded.value",
                params![name, key, value],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    /// UntagQueue: removes the tags of these keys (keys without a tag are ignored).
    pub fn untag(&self, name: &str, keys: &[String]) -> Result<(), QueueError> {
        let mut conn = self.lock();
        Self::info_locked(&conn, name)?;
        let tx = write_transaction(&mut conn)?;
        for key in keys {
            tx.execute(
                "DELETE FROM queue_tags WHERE queue = ?1 AND key = ?2",
                params![name, key],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    /// A queue's record, from the cache of records (filled on first read, emptied by every
    /// change of a queue, which happens under the connection's lock).
    pub fn info(&self, name: &str) -> Result<QueueInfo, QueueError> {
        if let Some(info) = self
            .infos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(info.clone());
        }
        let conn = self.lock();
        let info = Self::info_locked(&conn, name)?;
        self.infos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), info.clone());
        Ok(info)
    }

    /// Empties the cache of queue records (the caller holds the connection's lock).
    fn forget_infos(&self) {
        self.infos.lock().unwrap_or_else(|p| p.into_inner()).clear();
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

    /// The names of one region's queues that start with `prefix`, in name order.
    pub fn list(&self, region: &ArnContext, prefix: &str) -> Result<Vec<String>, QueueError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT name FROM queues ORDER BY name")
            .map_err(backend)?;
        let keys = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(keys
            .iter()
            .filter_map(|key| region.name_in_region(key))
            .filter(|name| name.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }

    /// ListDeadLetterSourceQueues: the queues (keys) whose redrive policy names `name`
    /// as their dead-letter queue.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>, QueueError> {
        let conn = self.lock();
        Self::info_locked(&conn, name)?;
        let mut stmt = conn
            .prepare("SELECT name, attributes FROM queues ORDER BY name")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .filter(|(_, attributes)| {
                serde_json::from_str::<BTreeMap<String, String>>(attributes)
                    .ok()
                    .and_then(|a| a.get("RedrivePolicy").cloned())
                    .and_then(|p| RedrivePolicy::parse(&p).ok())
                    .is_some_and(|p| self.target_key(&p) == name)
            })
            .map(|(key, _)| key)
            .collect())
    }

    /// The key of a redrive policy's dead-letter queue.
    fn target_key(&self, policy: &RedrivePolicy) -> String {
        self.arns
            .key_of_arn(&policy.target_region, &policy.target)
            .into_owned()
    }

    pub fn delete(&self, name: &str) -> Result<(), QueueError> {
        let mut conn = self.lock();
        self.forget_infos();
        let tx = write_transaction(&mut conn)?;
        let deleted = tx
            .execute("DELETE FROM queues WHERE name = ?1", params![name])
            .map_err(backend)?;
        if deleted == 0 {
            return Err(QueueError::NoSuchQueue);
        }
        tx.execute("DELETE FROM queue_messages WHERE queue = ?1", params![name])
            .map_err(backend)?;
        tx.execute("DELETE FROM queue_tags WHERE queue = ?1", params![name])
            .map_err(backend)?;
        tx.execute("DELETE FROM queue_dedup WHERE queue = ?1", params![name])
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

    /// Checks a message against the queue it is for (its size, delay, and a FIFO queue's
    /// group and deduplication ids) without sending it: what a batch's entry is refused
    /// for on its own.
    pub fn check_outgoing(&self, name: &str, message: &Outgoing) -> Result<(), QueueError> {
        let info = self.info(name)?;
        Self::ordering_of(is_fifo_name(name), &info, message).map(|_| ())
    }

    fn ordering_of(
        fifo: bool,
        info: &QueueInfo,
        message: &Outgoing,
    ) -> Result<Option<fifo::Ordering>, QueueError> {
        let max_size = info.maximum_message_size();
        if message.body.len() > max_size {
            return Err(QueueError::InvalidMessage(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {max_size} bytes."
            )));
        }
        if let Some(delay) = message.delay_s.filter(|d| *d > MAX_DELAY_S) {
            return Err(QueueError::InvalidMessage(format!(
                "Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= {MAX_DELAY_S}."
            )));
        }
        fifo::ordering_of(
            fifo,
            &info.attributes,
            &message.body,
            message.group_id.as_deref(),
            message.dedup_id.as_deref(),
            message.delay_s,
        )
    }

    /// Commits messages to a queue (all or none); returns their ids (and sequence numbers,
    /// in a FIFO queue). A FIFO message whose deduplication id was sent in the last five
    /// minutes is not enqueued again: the first one's id and sequence number answer for it.
    ///
    /// Sends are committed in groups: each queues its messages, then waits for the
    /// connection; whoever holds it writes every queued send in one transaction (each in
    /// a savepoint of its own, so one send's failure is its alone) with one fsync, and
    /// leaves each its result.
    pub fn send(&self, name: &str, messages: &[Outgoing]) -> Result<Vec<Sent>, QueueError> {
        let slot: SendSlot = Arc::new(Mutex::new(None));
        self.queued_sends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), messages.to_vec(), slot.clone()));
        let mut conn = self.lock();
        if let Some(result) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return result;
        }
        let group =
            std::mem::take(&mut *self.queued_sends.lock().unwrap_or_else(|p| p.into_inner()));
        let now = now_ms();
        let written = write_transaction(&mut conn).and_then(|tx| {
            let results: Vec<_> = group
                .iter()
                .map(|(queue, messages, _)| Self::send_one(&tx, queue, messages, now))
                .collect();
            tx.commit().map_err(backend)?;
            Ok(results)
        });
        // Every result is left before the connection is let go: a send that gets it next
        // finds its own.
        match written {
            Ok(results) => {
                for ((_, _, slot), result) in group.iter().zip(results) {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            }
            Err(e) => {
                for (_, _, slot) in &group {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(e.clone()));
                }
            }
        }
        drop(conn);
        self.arrivals.notify_waiters();
        let result = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        result.unwrap_or_else(|| Err(QueueError::Backend("a send was not written".into())))
    }

    /// Writes one send's messages inside a group's transaction, undone alone (a
    /// savepoint) when it fails.
    fn send_one(
        tx: &rusqlite::Transaction<'_>,
        name: &str,
        messages: &[Outgoing],
        now: u64,
    ) -> Result<Vec<Sent>, QueueError> {
        tx.execute_batch("SAVEPOINT send_one").map_err(backend)?;
        let result = Self::insert_messages(tx, name, messages, now);
        let end = if result.is_ok() {
            "RELEASE send_one"
        } else {
            "ROLLBACK TO send_one; RELEASE send_one"
        };
        tx.execute_batch(end).map_err(backend)?;
        result
    }

    fn insert_messages(
        tx: &rusqlite::Transaction<'_>,
        name: &str,
        messages: &[Outgoing],
        now: u64,
    ) -> Result<Vec<Sent>, QueueError> {
        let info = Self::info_locked(tx, name)?;
        let fifo = is_fifo_name(name);
        let orderings = messages
            .iter()
            .map(|m| Self::ordering_of(fifo, &info, m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sent = Vec::with_capacity(messages.len());
        for (message, ordering) in messages.iter().zip(orderings) {
            if let Some(ordering) = &ordering
                && let Some((id, seq)) =
                    fifo::deduplicate(tx, name, &info.attributes, ordering, now)?
            {
                sent.push(Sent {
                    message_id: id,
                    sequence_number: Some(fifo::sequence_number(seq)),
                });
                continue;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let visible_at = now + message.delay_s.unwrap_or(info.delay_s()) * 1000;
            let group = ordering
                .as_ref()
                .map(|o| o.group_id.as_str())
                .or(message.group_id.as_deref());
            tx.execute(
                "INSERT INTO queue_messages (queue, message_id, body, attributes, sent_ms, visible_at_ms, group_id, dedup_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    name,
                    id,
                    message.body,
                    serde_json::to_string(&message.attributes).unwrap_or_default(),
                    now as i64,
                    visible_at as i64,
                    group,
                    ordering.as_ref().map(|o| o.dedup_id.as_str())
                ],
            )
            .map_err(backend)?;
            let seq = tx.last_insert_rowid();
            if let Some(ordering) = &ordering {
                fifo::remember(tx, name, &info.attributes, ordering, &id, seq, now)?;
            }
            sent.push(Sent {
                message_id: id,
                sequence_number: ordering.is_some().then(|| fifo::sequence_number(seq)),
            });
        }
        Ok(sent)
    }

    /// Whether `queue`'s expired messages are due to be removed (once a second), noting
    /// that they are.
    fn sweep_due(&self, queue: &str, now: u64) -> bool {
        let mut swept = self.swept.lock().unwrap_or_else(|p| p.into_inner());
        match swept.get(queue) {
            Some(&last) if now < last + 1000 => false,
            _ => {
                swept.insert(queue.to_string(), now);
                true
            }
        }
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
        let tx = write_transaction(&mut conn)?;
        // Expired messages (past retention) are never received, and are removed at most
        // once a second per queue (the removal reads every message of the queue).
        let expired_before = now.saturating_sub(info.retention_s() * 1000);
        if self.sweep_due(name, now) {
            tx.execute(
                "DELETE FROM queue_messages WHERE queue = ?1 AND sent_ms < ?2",
                params![name, expired_before as i64],
            )
            .map_err(backend)?;
        }
        // Messages already received maxReceiveCount times go to the dead-letter queue
        // instead (when it exists), and the choice is made again from what is left.
        let redrive = info
            .attributes
            .get("RedrivePolicy")
            .and_then(|p| RedrivePolicy::parse(p).ok())
            .map(|p| (self.target_key(&p), p))
            .filter(|(target, _)| target != name && Self::info_locked(&tx, target).is_ok());
        let mut moved = 0usize;
        let fifo = is_fifo_name(name);
        let select = if fifo {
            fifo::RECEIVE_SQL
        } else {
            "SELECT seq, message_id, body, attributes, sent_ms, receive_count, first_receive_ms, group_id, dedup_id
             FROM queue_messages WHERE queue = ?1 AND visible_at_ms <= ?2 AND sent_ms >= ?4
             ORDER BY visible_at_ms, seq LIMIT ?3"
        };
        let rows: Vec<StoredMessage> = loop {
            let rows: Vec<StoredMessage> = {
                let mut stmt = tx.prepare_cached(select).map_err(backend)?;
                stmt.query_map(
                    params![name, now as i64, max as i64, expired_before as i64],
                    |r| {
                        Ok(StoredMessage {
                            seq: r.get(0)?,
                            message_id: r.get(1)?,
                            body: r.get(2)?,
                            attributes: r.get(3)?,
                            sent_ms: r.get(4)?,
                            receive_count: r.get(5)?,
                            first_receive_ms: r.get(6)?,
                            group_id: r.get(7)?,
                            dedup_id: r.get(8)?,
                        })
                    },
                )
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?
            };
            let Some((target, policy)) = &redrive else {
                break rows;
            };
            let (spent, fresh): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|row| row.receive_count >= i64::from(policy.max_receive_count));
            if spent.is_empty() {
                break fresh;
            }
            for row in &spent {
                tx.execute(
                    "INSERT INTO queue_messages (queue, message_id, body, attributes, sent_ms, visible_at_ms, group_id, dedup_id, dead_letter_source)
                     SELECT ?2, message_id, body, attributes, sent_ms, ?3, group_id, dedup_id, ?4 FROM queue_messages WHERE seq = ?1",
                    params![row.seq, target, now as i64, name],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM queue_messages WHERE seq = ?1",
                    params![row.seq],
                )
                .map_err(backend)?;
            }
            moved += spent.len();
            tracing::info!(queue = %name, dead_letter_queue = %target, moved = spent.len(),
                "messages past maxReceiveCount moved to the dead-letter queue");
        };
        let mut received = Vec::with_capacity(rows.len());
        for row in rows {
            let handle = format!("{}:{}", row.seq, uuid::Uuid::new_v4().simple());
            let first = if row.first_receive_ms == 0 {
                now as i64
            } else {
                row.first_receive_ms
            };
            tx.execute(
                "UPDATE queue_messages SET visible_at_ms = ?2, receive_count = receive_count + 1,
                 first_receive_ms = ?3, receipt_handle = ?4 WHERE seq = ?1",
                params![row.seq, hidden_until as i64, first, handle],
            )
            .map_err(backend)?;
            let attributes: BTreeMap<String, Attribute> =
                serde_json::from_str(&row.attributes).unwrap_or_default();
            received.push(Received {
                message_id: row.message_id,
                receipt_handle: handle,
                md5_of_body: md5_hex(row.body.as_bytes()),
                body: row.body,
                attributes,
                sent_ms: row.sent_ms as u64,
                receive_count: row.receive_count as u32 + 1,
                first_receive_ms: first as u64,
                sequence_number: fifo.then(|| fifo::sequence_number(row.seq)),
                group_id: row.group_id,
                dedup_id: row.dedup_id,
            });
        }
        tx.commit().map_err(backend)?;
        if moved > 0 {
            self.arrivals.notify_waiters();
        }
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

    /// Deletes many received messages in one transaction (stale handles are ignored, as
    /// by [`QueueService::delete_message`]; an invalid one fails them all).
    pub fn delete_messages(&self, name: &str, handles: &[&str]) -> Result<(), QueueError> {
        let seqs = handles
            .iter()
            .map(|h| Self::seq_of(h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.lock();
        Self::info_locked(&conn, name)?;
        let tx = write_transaction(&mut conn)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM queue_messages WHERE seq = ?1 AND queue = ?2 AND receipt_handle = ?3",
                )
                .map_err(backend)?;
            for (seq, handle) in seqs.iter().zip(handles) {
                stmt.execute(params![seq, name, handle]).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    /// Deletes received messages in one transaction, each by its handle: the result of
    /// each (an unreadable handle fails alone; a stale one succeeds, as SQS's does).
    pub fn delete_each(
        &self,
        name: &str,
        handles: &[&str],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut conn = self.lock();
        Self::info_locked(&conn, name)?;
        let tx = write_transaction(&mut conn)?;
        let mut results = Vec::with_capacity(handles.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM queue_messages WHERE seq = ?1 AND queue = ?2 AND receipt_handle = ?3",
                )
                .map_err(backend)?;
            for handle in handles {
                results.push(match Self::seq_of(handle) {
                    Ok(seq) => stmt
                        .execute(params![seq, name, handle])
                        .map(|_| ())
                        .map_err(backend),
                    Err(e) => Err(e),
                });
            }
        }
        tx.commit().map_err(backend)?;
        Ok(results)
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
    fn concurrent_sends_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let queues = Arc::new(
            QueueService::open(
                &dir.path().join("q.db"),
                ArnContext::new("us-east-1", "000000000000"),
            )
            .unwrap(),
        );
        queues
            .create("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let queues = queues.clone();
                std::thread::spawn(move || {
                    let mut sent = 0;
                    for i in 0..40 {
                        let queue = if i % 4 == 3 { "missing" } else { "q" };
                        let batch = [Outgoing::new(format!("{t}-{i}"), BTreeMap::new())];
                        match queues.send(queue, &batch) {
                            Ok(ids) => {
                                assert_eq!(ids.len(), 1);
                                sent += 1;
                            }
                            Err(e) => assert_eq!(e, QueueError::NoSuchQueue),
                        }
                    }
                    sent
                })
            })
            .collect();
        let sent: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(sent, 8 * 30);
        assert_eq!(queues.counts("q").unwrap().0, 240);
    }

    #[test]
    fn send_receive_hide_delete() {
        let dir = tempfile::tempdir().unwrap();
        let queues = QueueService::open(
            &dir.path().join("q.db"),
            ArnContext::new("us-east-1", "000000000000"),
        )
        .unwrap();
        queues
            .create("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        queues
            .send(
                "q",
                &[
                    Outgoing::new("one".into(), BTreeMap::new()),
                    Outgoing::new("two".into(), BTreeMap::new()),
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

    fn open() -> (tempfile::TempDir, QueueService) {
        let dir = tempfile::tempdir().unwrap();
        let queues = QueueService::open(
            &dir.path().join("q.db"),
            ArnContext::new("us-east-1", "000000000000"),
        )
        .unwrap();
        (dir, queues)
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn attrs(pairs: &[(&str, &str)]) -> Result<BTreeMap<String, String>, QueueError> {
        validate_attributes(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn redrive_policy_is_parsed_as_sqs_does() {
        let arn = "arn:aws:sqs:us-east-1:000000000000:dlq";
        let policy = RedrivePolicy::parse(&format!(
            r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3}}"#
        ))
        .unwrap();
        assert_eq!(policy.target, "dlq");
        assert_eq!(policy.max_receive_count, 3);
        // A numeric string is accepted too (the AWS CLI's shorthand sends one).
        let policy = RedrivePolicy::parse(&format!(
            r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"10"}}"#
        ))
        .unwrap();
        assert_eq!(policy.max_receive_count, 10);
        for bad in [
            "not json".to_string(),
            "[1]".to_string(),
            format!(r#"{{"deadLetterTargetArn":"{arn}"}}"#),
            r#"{"maxReceiveCount":3}"#.to_string(),
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":0}}"#),
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":1001}}"#),
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":true}}"#),
            r#"{"deadLetterTargetArn":"arn:aws:sns:us-east-1:000000000000:t","maxReceiveCount":3}"#
                .to_string(),
            r#"{"deadLetterTargetArn":"dlq","maxReceiveCount":3}"#.to_string(),
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3,"extra":1}}"#),
        ] {
            let err = RedrivePolicy::parse(&bad).unwrap_err();
            assert!(
                matches!(&err, QueueError::InvalidParameter(m) if m.contains("RedrivePolicy")),
                "{bad}: {err:?}"
            );
            // validate_attributes refuses the same values.
            assert!(attrs(&[("RedrivePolicy", &bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_attributes_validates_merges_and_removes() {
        let (_dir, queues) = open();
        queues
            .create("q", map(&[("VisibilityTimeout", "60")]), BTreeMap::new())
            .unwrap();
        assert!(matches!(
            attrs(&[("VisibilityTimeout", "43201")]),
            Err(QueueError::InvalidParameter(_))
        ));
        assert!(matches!(
            attrs(&[("NoSuchAttribute", "1")]),
            Err(QueueError::InvalidParameter(_))
        ));
        queues
            .set_attributes(
                "q",
                attrs(&[("DelaySeconds", "5"), ("Policy", "{}")]).unwrap(),
            )
            .unwrap();
        let info = queues.info("q").unwrap();
        assert_eq!(info.visibility_s(), 60, "attributes not named are kept");
        assert_eq!(info.delay_s(), 5);
        assert_eq!(
            info.attributes.get("Policy").map(String::as_str),
            Some("{}")
        );
        // An empty policy removes it.
        queues
            .set_attributes("q", attrs(&[("Policy", "")]).unwrap())
            .unwrap();
        assert!(!queues.info("q").unwrap().attributes.contains_key("Policy"));
        // A redrive policy must name an existing queue.
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":2}"#;
        let err = queues
            .set_attributes("q", attrs(&[("RedrivePolicy", policy)]).unwrap())
            .unwrap_err();
        assert!(
            matches!(&err, QueueError::InvalidParameter(m) if m.contains("Dead letter target does not exist")),
            "{err:?}"
        );
        queues
            .create("dlq", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        queues
            .set_attributes("q", attrs(&[("RedrivePolicy", policy)]).unwrap())
            .unwrap();
        assert_eq!(
            queues
                .info("q")
                .unwrap()
                .attributes
                .get("RedrivePolicy")
                .map(String::as_str),
            Some(policy)
        );
        // At creation an empty policy is no policy.
        queues
            .create(
                "r",
                attrs(&[("RedrivePolicy", ""), ("Policy", "")]).unwrap(),
                BTreeMap::new(),
            )
            .unwrap();
        assert!(queues.info("r").unwrap().attributes.is_empty());
        assert_eq!(
            queues
                .set_attributes("missing", BTreeMap::new())
                .unwrap_err(),
            QueueError::NoSuchQueue
        );
    }

    #[test]
    fn tags_follow_sqs_limits_and_go_with_the_queue() {
        let (_dir, queues) = open();
        queues
            .create("q", BTreeMap::new(), map(&[("team", "a")]))
            .unwrap();
        assert_eq!(queues.tags("q").unwrap(), map(&[("team", "a")]));
        queues
            .tag("q", map(&[("team", "b"), ("env", "dev")]))
            .unwrap();
        assert_eq!(
            queues.tags("q").unwrap(),
            map(&[("env", "dev"), ("team", "b")])
        );
        queues
            .untag("q", &["team".to_string(), "absent".to_string()])
            .unwrap();
        assert_eq!(queues.tags("q").unwrap(), map(&[("env", "dev")]));
        // Key and value lengths, the reserved prefix.
        let long_key = "k".repeat(TAG_KEY_MAX + 1);
        let long_value = "v".repeat(TAG_VALUE_MAX + 1);
        for bad in [
            map(&[(long_key.as_str(), "v")]),
            map(&[("k", long_value.as_str())]),
            map(&[("", "v")]),
            map(&[("aws:owner", "v")]),
        ] {
            assert!(matches!(
                queues.tag("q", bad),
                Err(QueueError::InvalidTag(_))
            ));
        }
        let at_limit = "k".repeat(TAG_KEY_MAX);
        let value_at_limit = "v".repeat(TAG_VALUE_MAX);
        queues
            .tag("q", map(&[(at_limit.as_str(), value_at_limit.as_str())]))
            .unwrap();
        // At most 50 tags, counting the ones the queue has (2 now).
        let many: BTreeMap<String, String> = (0..TAGS_MAX - 2)
            .map(|i| (format!("t{i}"), "x".into()))
            .collect();
        queues.tag("q", many).unwrap();
        assert_eq!(queues.tags("q").unwrap().len(), TAGS_MAX);
        assert!(matches!(
            queues.tag("q", map(&[("one-more", "x")])),
            Err(QueueError::InvalidTag(_))
        ));
        // Overwriting an existing key does not count as a new tag.
        queues.tag("q", map(&[("t0", "y")])).unwrap();
        let too_many: BTreeMap<String, String> = (0..=TAGS_MAX)
            .map(|i| (format!("n{i}"), "x".into()))
            .collect();
        assert!(matches!(
            queues.create("r", BTreeMap::new(), too_many),
            Err(QueueError::InvalidTag(_))
        ));
        // Gone with the queue: a queue of the same name starts without tags.
        queues.delete("q").unwrap();
        assert_eq!(queues.tags("q").unwrap_err(), QueueError::NoSuchQueue);
        queues
            .create("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        assert!(queues.tags("q").unwrap().is_empty());
    }

    #[test]
    fn a_message_past_max_receive_count_moves_to_the_dead_letter_queue() {
        let (_dir, queues) = open();
        queues
            .create("dlq", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":2}"#;
        queues
            .create(
                "q",
                attrs(&[("RedrivePolicy", policy)]).unwrap(),
                BTreeMap::new(),
            )
            .unwrap();
        let mut message_attrs = BTreeMap::new();
        message_attrs.insert(
            "k".to_string(),
            Attribute {
                data_type: "String".into(),
                string_value: Some("v".into()),
                binary_value: None,
            },
        );
        let ids = queues
            .send(
                "q",
                &[Outgoing::new("poison".into(), message_attrs.clone())],
            )
            .unwrap();
        // Received maxReceiveCount (2) times: still delivered from the source queue.
        for count in 1..=2 {
            let got = queues.receive_now("q", 1, Some(0)).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(
                (got[0].body.as_str(), got[0].receive_count),
                ("poison", count)
            );
        }
        queues
            .send("q", &[Outgoing::new("fine".into(), BTreeMap::new())])
            .unwrap();
        // The third receive moves it and hands out the next message instead.
        let got = queues.receive_now("q", 10, Some(30)).unwrap();
        assert_eq!(
            got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["fine"]
        );
        assert_eq!(queues.counts("q").unwrap(), (0, 1, 0));
        let dead = queues.receive_now("dlq", 10, Some(30)).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].message_id, ids[0].message_id,
            "the same message, same id"
        );
        assert_eq!(dead[0].body, "poison");
        assert_eq!(dead[0].attributes, message_attrs);
        assert_eq!(
            dead[0].receive_count, 1,
            "counted anew in the dead-letter queue"
        );

        // Without a redrive policy nothing moves, however often a message is received.
        queues
            .create("plain", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        queues
            .send("plain", &[Outgoing::new("m".into(), BTreeMap::new())])
            .unwrap();
        for count in 1..=5 {
            assert_eq!(
                queues.receive_now("plain", 1, Some(0)).unwrap()[0].receive_count,
                count
            );
        }
        // A dead-letter queue deleted since: messages stay where they are.
        queues.delete("dlq").unwrap();
        queues
            .send("q", &[Outgoing::new("kept".into(), BTreeMap::new())])
            .unwrap();
        for count in 1..=4 {
            let got = queues.receive_now("q", 10, Some(0)).unwrap();
            let kept = got.iter().find(|m| m.body == "kept").unwrap();
            assert_eq!(kept.receive_count, count);
        }
    }
}
