//! The embedded store: one SQLite database in WAL mode under the data directory.
//!
//! Functions are kept as JSON documents keyed by name (the record type is the schema);
//! log events in an append-only table ordered by an autoincrement sequence. A single
//! connection behind a mutex serialises writers, which SQLite requires anyway.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{FunctionStore, LogEvent, LogStore, NewLogEvent, StoreError, log_event_bytes};
use crate::document::FunctionDocument;
use crate::function::FunctionRecord;

/// Two connections to one database: function metadata commits with `synchronous=FULL`
/// (an acknowledged change survives power loss); log events with `NORMAL` (a crash may
/// lose the last moments of logs, never corrupt them), which keeps fsyncs off the log path.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    logs: Mutex<Connection>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::from_sqlite(e)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS functions (
    name   TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    function  TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    stream    TEXT NOT NULL,
    bytes     INTEGER NOT NULL DEFAULT 0,
    message   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    key    TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    kind   TEXT NOT NULL,
    key    TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// After the migration: the index that reads a function's events in order and sums its log
/// bytes without reading the messages (it serves every query by function, so the earlier
/// `(function, seq)` index, one more B-tree write per event, goes).
const LOG_BYTES_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS logs_bytes_by_function ON logs (function, seq, bytes);
DROP INDEX IF EXISTS logs_by_function;";

/// A database of a release without log sizes gets its `bytes` column (after `message`
/// there, which only makes whole-table trims read further) and the sizes of its events.
fn migrate_log_bytes(conn: &Connection) -> Result<(), StoreError> {
    let has_bytes: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('logs') WHERE name = 'bytes'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_err(backend)?
        > 0;
    if !has_bytes {
        conn.execute_batch("ALTER TABLE logs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;")
            .map_err(backend)?;
        // Rewrites every row: on a disk too full for that, the old events keep a size of
        // 0 (the budget does not see them) and go by the count retention instead.
        if let Err(e) = conn.execute_batch(
            "UPDATE logs SET bytes = length(CAST(message AS BLOB)) + 26 WHERE bytes = 0;",
        ) {
            tracing::warn!(error = %e, "sizing the log events of an earlier release failed");
        }
    }
    conn.execute_batch(LOG_BYTES_INDEX).map_err(backend)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connect = |synchronous| super::connect(path, synchronous);
        let conn = connect("FULL")?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        migrate_log_bytes(&conn)?;
        let logs = connect("NORMAL")?;
        Ok(Self {
            conn: Mutex::new(conn),
            logs: Mutex::new(logs),
        })
    }

    /// The data directory's home region (see `crate::region`): the one recorded, else
    /// `region`, recorded now. It never changes, so the keys of resources never do.
    pub fn home_region(&self, region: &str) -> Result<String, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO settings (key, value) VALUES ('home_region', ?1)",
            params![region],
        )
        .map_err(backend)?;
        conn.query_row(
            "SELECT value FROM settings WHERE key = 'home_region'",
            [],
            |row| row.get(0),
        )
        .map_err(backend)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back), so a poisoned lock is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_logs(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn encode(document: &FunctionDocument) -> Result<String, StoreError> {
    serde_json::to_string(document).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads a stored document; a bare `$LATEST` record (the first schema) still loads.
fn decode(name: &str, json: &str) -> Result<FunctionDocument, StoreError> {
    serde_json::from_str::<FunctionDocument>(json)
        .or_else(|_| serde_json::from_str::<FunctionRecord>(json).map(FunctionDocument::new))
        .map_err(|e| StoreError::Corrupt(format!("function {name}: {e}")))
}

impl FunctionStore for SqliteStore {
    fn load_functions(&self) -> Result<Vec<FunctionDocument>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT name, record FROM functions ORDER BY name")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(backend)?;
        let mut records = Vec::new();
        for row in rows {
            let (name, json) = row.map_err(backend)?;
            let record = decode(&name, &json)?;
            records.push(record);
        }
        Ok(records)
    }

    fn insert_function(&self, record: &FunctionDocument) -> Result<(), StoreError> {
        let json = encode(record)?;
        let conn = self.lock();
        let inserted = conn
            .execute(
                "INSERT INTO functions (name, record) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![record.key(), json],
            )
            .map_err(backend)?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(record.latest.spec.name.clone()));
        }
        Ok(())
    }

    fn update_function(&self, record: &FunctionDocument) -> Result<(), StoreError> {
        let json = encode(record)?;
        let conn = self.lock();
        let updated = conn
            .execute(
                "UPDATE functions SET record = ?2 WHERE name = ?1",
                params![record.key(), json],
            )
            .map_err(backend)?;
        if updated == 0 {
            return Err(StoreError::NotFound(record.latest.spec.name.clone()));
        }
        Ok(())
    }

    fn delete_function(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        let deleted = conn
            .execute("DELETE FROM functions WHERE name = ?1", params![name])
            .map_err(backend)?;
        if deleted == 0 {
            return Err(StoreError::NotFound(name.to_string()));
        }
        Ok(())
    }
}

impl super::LayerStore for SqliteStore {
    fn load_layers(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key, record FROM layers ORDER BY key")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn put_layer(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO layers (key, record) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET record = excluded.record",
                params![key, record],
            )
            .map_err(backend)?;
        Ok(())
    }
}

impl super::DocumentStore for SqliteStore {
    fn load_documents(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key, record FROM documents WHERE kind = ?1 ORDER BY key")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![kind], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn put_document(&self, kind: &str, key: &str, record: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO documents (kind, key, record) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(kind, key) DO UPDATE SET record = excluded.record",
                params![kind, key, record],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete_document(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "DELETE FROM documents WHERE kind = ?1 AND key = ?2",
                params![kind, key],
            )
            .map_err(backend)?;
        Ok(())
    }
}

impl LogStore for SqliteStore {
    fn append_logs(&self, events: &[NewLogEvent]) -> Result<(), StoreError> {
        let mut conn = self.lock_logs();
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (function, ts, stream, bytes, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?;
            for event in events {
                stmt.execute(params![
                    event.function,
                    event.timestamp_ms as i64,
                    event.stream,
                    log_event_bytes(&event.message) as i64,
                    event.message
                ])
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn read_logs(
        &self,
        function: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        let conn = self.lock_logs();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, ts, stream, message FROM logs WHERE function = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![function, after as i64, limit as i64], |row| {
                Ok(LogEvent {
                    seq: row.get::<_, i64>(0)? as u64,
                    timestamp: row.get::<_, i64>(1)? as u64,
                    log_stream: row.get(2)?,
                    message: row.get(3)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn trim_logs(&self, function: &str, keep: usize) -> Result<(), StoreError> {
        let conn = self.lock_logs();
        let cutoff: Option<i64> = conn
            .query_row(
                "SELECT seq FROM logs WHERE function = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                params![function, keep as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)?;
        if let Some(cutoff) = cutoff {
            conn.execute(
                "DELETE FROM logs WHERE function = ?1 AND seq <= ?2",
                params![function, cutoff],
            )
            .map_err(backend)?;
        }
        Ok(())
    }

    fn trim_log_bytes(&self, function: Option<&str>, keep_bytes: u64) -> Result<(), StoreError> {
        let conn = self.lock_logs();
        let keep = keep_bytes.min(i64::MAX as u64) as i64;
        // The newest event that no longer fits: it and everything older go. The running
        // sum reads the (function, seq, bytes) index, or for all functions the table in
        // seq order, whose rows hold `bytes` before the message.
        let cutoff: Option<i64> = match function {
            Some(function) => conn.query_row(
                "SELECT seq FROM (SELECT seq, SUM(bytes) OVER (ORDER BY seq DESC) AS newer
                                  FROM logs WHERE function = ?1)
                 WHERE newer > ?2 ORDER BY seq DESC LIMIT 1",
                params![function, keep],
                |row| row.get(0),
            ),
            None => conn.query_row(
                "SELECT seq FROM (SELECT seq, SUM(bytes) OVER (ORDER BY seq DESC) AS newer FROM logs)
                 WHERE newer > ?1 ORDER BY seq DESC LIMIT 1",
                params![keep],
                |row| row.get(0),
            ),
        }
        .optional()
        .map_err(backend)?;
        match (cutoff, function) {
            (None, _) => {}
            (Some(cutoff), Some(function)) => {
                conn.execute(
                    "DELETE FROM logs WHERE function = ?1 AND seq <= ?2",
                    params![function, cutoff],
                )
                .map_err(backend)?;
            }
            (Some(cutoff), None) => {
                conn.execute("DELETE FROM logs WHERE seq <= ?1", params![cutoff])
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    fn log_usage(&self, function: Option<&str>) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock_logs();
        let row =
            |row: &rusqlite::Row<'_>| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64));
        let rows = match function {
            Some(function) => conn
                .prepare_cached(
                    "SELECT function, SUM(bytes) FROM logs WHERE function = ?1 GROUP BY function",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![function], row)?
                        .collect::<Result<Vec<_>, _>>()
                }),
            None => conn
                .prepare_cached("SELECT function, SUM(bytes) FROM logs GROUP BY function")
                .and_then(|mut stmt| stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()),
        };
        rows.map_err(backend)
    }

    fn delete_logs(&self, function: &str) -> Result<(), StoreError> {
        let conn = self.lock_logs();
        conn.execute("DELETE FROM logs WHERE function = ?1", params![function])
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> FunctionDocument {
        FunctionDocument::new(crate::function::sample_record(
            name,
            crate::function::LATEST,
            "00",
        ))
    }

    #[test]
    fn functions_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.insert_function(&record("a")).unwrap();
            assert!(matches!(
                store.insert_function(&record("a")),
                Err(StoreError::AlreadyExists(_))
            ));
            let mut changed = record("a");
            std::sync::Arc::make_mut(&mut changed.latest).spec.memory_mb = 256;
            store.update_function(&changed).unwrap();
            assert!(matches!(
                store.update_function(&record("zz")),
                Err(StoreError::NotFound(_))
            ));
        }
        let store = SqliteStore::open(&path).unwrap();
        let loaded = store.load_functions().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].latest.spec.memory_mb, 256);
        store.delete_function("a").unwrap();
        assert!(store.load_functions().unwrap().is_empty());
    }

    #[test]
    fn logs_read_in_order_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("shoal.db")).unwrap();
        let events: Vec<_> = (0..10)
            .map(|i| NewLogEvent {
                function: "f".into(),
                stream: "s".into(),
                timestamp_ms: i,
                message: format!("line {i}"),
            })
            .collect();
        store.append_logs(&events).unwrap();
        let all = store.read_logs("f", 0, 100).unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[3].message, "line 3");
        let after = store.read_logs("f", all[7].seq, 100).unwrap();
        assert_eq!(after.len(), 2);
        store.trim_logs("f", 4).unwrap();
        let kept = store.read_logs("f", 0, 100).unwrap();
        assert_eq!(
            kept.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["line 6", "line 7", "line 8", "line 9"]
        );
    }

    fn event(function: &str, message: String) -> NewLogEvent {
        NewLogEvent {
            function: function.into(),
            stream: "s".into(),
            timestamp_ms: 0,
            message,
        }
    }

    #[test]
    fn log_bytes_trim_oldest_first_per_function_and_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("shoal.db")).unwrap();
        // Each event weighs 74 + 26 = 100 bytes.
        let line = |f: &str, i: usize| event(f, format!("{f}{i:073}"));
        let batch: Vec<_> = (0..10).flat_map(|i| [line("f", i), line("g", i)]).collect();
        store.append_logs(&batch).unwrap();
        let usage = |f: &str| store.log_usage(Some(f)).unwrap().first().map_or(0, |u| u.1);
        assert_eq!(usage("f"), 1000);
        store.trim_log_bytes(Some("f"), 450).unwrap();
        assert_eq!(usage("f"), 400);
        assert_eq!(usage("g"), 1000);
        let kept = store.read_logs("f", 0, 100).unwrap();
        assert_eq!(kept[0].message, format!("f{:073}", 6));
        // In all: the oldest events of any function go first (f's 6..9 are older than g's last).
        store.trim_log_bytes(None, 500).unwrap();
        let all = store.log_usage(None).unwrap();
        assert_eq!(all.iter().map(|u| u.1).sum::<u64>(), 500);
        assert_eq!(usage("g"), 500 - usage("f"));
        assert_eq!(
            store
                .read_logs("g", 0, 100)
                .unwrap()
                .last()
                .unwrap()
                .message,
            format!("g{:073}", 9)
        );
    }

    #[test]
    fn a_database_without_log_sizes_gets_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, function TEXT NOT NULL,
                                    ts INTEGER NOT NULL, stream TEXT NOT NULL, message TEXT NOT NULL);
                 INSERT INTO logs (function, ts, stream, message) VALUES ('f', 1, 's', 'héllo');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.log_usage(None).unwrap(),
            vec![("f".to_string(), 6 + 26)]
        );
        store.append_logs(&[event("f", "x".into())]).unwrap();
        assert_eq!(store.log_usage(Some("f")).unwrap()[0].1, 6 + 26 + 27);
    }
}
