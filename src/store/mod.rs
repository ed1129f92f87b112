//! Durable state behind traits: function metadata and log events.
//!
//! The traits are the seam for other backends (a NATS JetStream store for cluster mode);
//! [`sqlite::SqliteStore`] is the embedded default. Methods are synchronous: callers on
//! the async runtime run them through `spawn_blocking`, keeping the store free of any
//! executor. A successful write has been committed (WAL, `synchronous=FULL`).

pub mod sqlite;

use crate::document::FunctionDocument;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("function {0} already exists")]
    AlreadyExists(String),
    #[error("function {0} does not exist")]
    NotFound(String),
    #[error("store failure: {0}")]
    Backend(String),
    /// The disk is full: nothing more can be written until space is freed.
    #[error("store failure: {0}")]
    DiskFull(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the store failed for want of disk space.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::DiskFull(_))
    }

    /// A SQLite failure: [`StoreError::DiskFull`] when the disk is full (`SQLITE_FULL`).
    pub fn from_sqlite(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull(e.to_string()),
            _ => Self::Backend(e.to_string()),
        }
    }
}

pub trait FunctionStore: Send + Sync {
    fn load_functions(&self) -> Result<Vec<FunctionDocument>, StoreError>;
    /// Inserts a new function; fails with [`StoreError::AlreadyExists`] if the name is taken.
    fn insert_function(&self, document: &FunctionDocument) -> Result<(), StoreError>;
    /// Replaces an existing function; fails with [`StoreError::NotFound`] if it is gone.
    fn update_function(&self, document: &FunctionDocument) -> Result<(), StoreError>;
    fn delete_function(&self, name: &str) -> Result<(), StoreError>;
}

/// Layers, each one JSON document (all its versions) under its key (see `crate::layers`).
pub trait LayerStore: Send + Sync {
    /// Every layer: (key, document).
    fn load_layers(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Writes a layer's document, committed when this returns.
    fn put_layer(&self, key: &str, record: &str) -> Result<(), StoreError>;
}

/// Documents of the services that keep one JSON document per resource (HTTP APIs, ...),
/// each under its kind and key.
pub trait DocumentStore: Send + Sync {
    /// Every document of `kind`: (key, document).
    fn load_documents(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Writes a document, committed when this returns.
    fn put_document(&self, kind: &str, key: &str, record: &str) -> Result<(), StoreError>;
    /// Deletes a document (nothing happens when there is none).
    fn delete_document(&self, kind: &str, key: &str) -> Result<(), StoreError>;
}

/// What a log event costs the log budget: its message's UTF-8 bytes plus 26, CloudWatch
/// Logs' rule for the size of an event.
pub fn log_event_bytes(message: &str) -> u64 {
    message.len() as u64 + 26
}

/// One line of a function's log, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEvent {
    pub function: String,
    pub stream: String,
    pub timestamp_ms: u64,
    pub message: String,
}

/// One line of a function's log, as read back; `seq` orders all events of the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    pub seq: u64,
    pub timestamp: u64,
    pub log_stream: String,
    pub message: String,
}

pub trait LogStore: Send + Sync {
    fn append_logs(&self, events: &[NewLogEvent]) -> Result<(), StoreError>;
    /// Events of `function` with `seq > after`, oldest first, at most `limit`.
    fn read_logs(
        &self,
        function: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError>;
    /// Keeps only the newest `keep` events of `function`.
    fn trim_logs(&self, function: &str, keep: usize) -> Result<(), StoreError>;
    /// Drops the oldest events of `function` (of every function with `None`) until what
    /// is left weighs at most `keep_bytes` (by [`log_event_bytes`]).
    fn trim_log_bytes(&self, function: Option<&str>, keep_bytes: u64) -> Result<(), StoreError>;
    /// Bytes of log events (by [`log_event_bytes`]) per function: of `function` only, or
    /// of every function with `None`.
    fn log_usage(&self, function: Option<&str>) -> Result<Vec<(String, u64)>, StoreError>;
    fn delete_logs(&self, function: &str) -> Result<(), StoreError>;
}

pub mod events;

/// A connection to the database at `path` in WAL mode, with the `synchronous` level
/// (`FULL`: each commit on disk before it returns; `NORMAL`: on disk at the next
/// checkpoint or `FULL` commit) and a 5 s wait for the write lock.
pub fn connect(
    path: &std::path::Path,
    synchronous: &str,
) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path).map_err(StoreError::from_sqlite)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(StoreError::from_sqlite)?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(StoreError::from_sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(StoreError::from_sqlite)?;
    Ok(conn)
}
