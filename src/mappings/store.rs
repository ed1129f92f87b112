//! The `event_source_mappings` table: one row per mapping, its record as JSON, committed
//! (`synchronous=FULL`) before the API answers, so mappings survive restarts.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::{Mapping, MappingError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS event_source_mappings (
    uuid      TEXT PRIMARY KEY,
    function  TEXT NOT NULL,
    queue     TEXT NOT NULL,
    record    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_source_mappings_function ON event_source_mappings (function);
";

fn backend(e: impl std::fmt::Display) -> MappingError {
    MappingError::Backend(e.to_string())
}

pub struct MappingStore {
    conn: Mutex<Connection>,
}

impl MappingStore {
    pub fn open(path: &Path) -> Result<Self, MappingError> {
        let conn = crate::store::connect(path, "FULL").map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn load(&self) -> Result<Vec<Mapping>, MappingError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT record FROM event_source_mappings ORDER BY uuid")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(backend)?;
        let mut mappings = Vec::new();
        for row in rows {
            let text = row.map_err(backend)?;
            match serde_json::from_str(&text) {
                Ok(mapping) => mappings.push(mapping),
                Err(e) => {
                    tracing::error!(error = %e, "an event source mapping record is unreadable; skipped")
                }
            }
        }
        Ok(mappings)
    }

    /// Inserts or replaces `mapping`.
    pub fn put(&self, mapping: &Mapping) -> Result<(), MappingError> {
        let record = serde_json::to_string(mapping).map_err(backend)?;
        self.lock()
            .execute(
                "INSERT INTO event_source_mappings (uuid, function, queue, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (uuid) DO UPDATE SET function = ?2, queue = ?3, record = ?4",
                params![mapping.uuid, mapping.function, mapping.queue, record],
            )
            .map(|_| ())
            .map_err(backend)
    }

    pub fn delete(&self, uuid: &str) -> Result<(), MappingError> {
        self.lock()
            .execute(
                "DELETE FROM event_source_mappings WHERE uuid = ?1",
                params![uuid],
            )
            .map(|_| ())
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_survive_reopen_and_are_replaced_by_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        let mut mapping = crate::mappings::spec::tests::sample("u1");
        {
            let store = MappingStore::open(&path).unwrap();
            store.put(&mapping).unwrap();
            mapping.batch_size = 7;
            store.put(&mapping).unwrap();
            store
                .put(&crate::mappings::spec::tests::sample("u2"))
                .unwrap();
            store.delete("u2").unwrap();
        }
        let store = MappingStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), vec![mapping]);
    }
}
