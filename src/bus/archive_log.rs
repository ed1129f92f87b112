//! What archives keep and where replays stand, in the outbox's database: archived copies
//! of events are written in the transaction that accepts them, and a replay's progress in
//! the transaction that commits the deliveries of what it replayed, so neither an
//! archived event nor a replay's place is lost or repeated by a `kill -9`.
//!
//! `bus_archive_events` holds one row per event an archive keeps: its sequence (the order
//! of arrival), its `time` (what a replay's window selects on), when it was archived (what
//! retention counts from) and its JSON. `bus_replays` holds each replay's record
//! ([`super::archive::Replay`]) as JSON.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use super::BusError;
use super::archive::Replay;
use super::outbox::{Accepted, Outbox, backend, insert as insert_accepted};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bus_archive_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    archive      TEXT NOT NULL,
    time_ms      INTEGER NOT NULL,
    archived_ms  INTEGER NOT NULL,
    record       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_archive_events_archive ON bus_archive_events (archive, seq);
CREATE TABLE IF NOT EXISTS bus_replays (
    key     TEXT PRIMARY KEY,
    record  TEXT NOT NULL
);
";

/// One archived event.
#[derive(Debug, Clone)]
pub struct Archived {
    pub time_ms: u64,
    pub event: Value,
}

/// Copies `event` (whose JSON is `record`) into each of `archives`.
pub(super) fn insert(
    tx: &Transaction<'_>,
    event: &Value,
    record: &str,
    archives: &[String],
    now_ms: u64,
) -> Result<(), BusError> {
    let time_ms = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(crate::timefmt::parse_iso)
        .unwrap_or(now_ms);
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO bus_archive_events (archive, time_ms, archived_ms, record) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(backend)?;
    for archive in archives {
        stmt.execute(params![archive, time_ms as i64, now_ms as i64, record])
            .map_err(backend)?;
    }
    Ok(())
}

fn replay_of(record: String) -> Result<Replay, BusError> {
    serde_json::from_str(&record).map_err(|e| BusError::Internal(format!("a replay record: {e}")))
}

fn record_of(replay: &Replay) -> Result<String, BusError> {
    serde_json::to_string(replay).map_err(|e| BusError::Internal(e.to_string()))
}

impl Outbox {
    /// How many events archive `key` holds and their size in bytes.
    pub fn archive_stats(&self, key: &str) -> Result<(u64, u64), BusError> {
        self.lock()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(record)), 0) FROM bus_archive_events \
                 WHERE archive = ?1",
                params![key],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(backend)
    }

    /// The last sequence archive `key` holds (0 when empty).
    pub fn archive_head(&self, key: &str) -> Result<i64, BusError> {
        self.lock()
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM bus_archive_events WHERE archive = ?1",
                params![key],
                |r| r.get(0),
            )
            .map_err(backend)
    }

    /// Up to `limit` events of archive `key` after sequence `after` and up to `through`,
    /// with a time in `[start_ms, end_ms)`, in order of arrival; and the last sequence
    /// looked at (where the next read starts).
    pub fn archived(
        &self,
        key: &str,
        after: i64,
        through: i64,
        (start_ms, end_ms): (u64, u64),
        limit: usize,
    ) -> Result<(Vec<Archived>, i64), BusError> {
        let conn = self.lock();
        // Read a page of sequences first, so that a window that selects little of a large
        // archive still advances in bounded steps.
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, time_ms, record FROM bus_archive_events \
                 WHERE archive = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![key, after, through, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        let mut last = after;
        for row in rows {
            let (seq, time_ms, record) = row.map_err(backend)?;
            last = seq;
            if time_ms < start_ms || time_ms >= end_ms {
                continue;
            }
            match serde_json::from_str(&record) {
                Ok(event) => out.push(Archived { time_ms, event }),
                Err(e) => {
                    tracing::error!(error = %e, archive = key, seq, "an archived event is not JSON")
                }
            }
        }
        Ok((out, last))
    }

    /// Deletes the events of archive `key` archived before `before_ms` (retention).
    pub fn expire_archive(&self, key: &str, before_ms: u64) -> Result<u64, BusError> {
        self.lock()
            .execute(
                "DELETE FROM bus_archive_events WHERE archive = ?1 AND archived_ms < ?2",
                params![key, before_ms as i64],
            )
            .map(|n| n as u64)
            .map_err(backend)
    }

    /// Deletes every event of archive `key`.
    pub fn drop_archive(&self, key: &str) -> Result<(), BusError> {
        self.lock()
            .execute(
                "DELETE FROM bus_archive_events WHERE archive = ?1",
                params![key],
            )
            .map(|_| ())
            .map_err(backend)
    }

    /// Writes a new replay; `false` when one of that key exists.
    pub fn create_replay(&self, key: &str, replay: &Replay) -> Result<bool, BusError> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO bus_replays (key, record) VALUES (?1, ?2)",
                params![key, record_of(replay)?],
            )
            .map(|n| n == 1)
            .map_err(backend)
    }

    pub fn replay(&self, key: &str) -> Result<Option<Replay>, BusError> {
        self.lock()
            .query_row(
                "SELECT record FROM bus_replays WHERE key = ?1",
                params![key],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(backend)?
            .map(replay_of)
            .transpose()
    }

    /// Every replay, by key.
    pub fn replays(&self) -> Result<Vec<(String, Replay)>, BusError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT key, record FROM bus_replays ORDER BY key")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (key, record) = row.map_err(backend)?;
            out.push((key, replay_of(record)?));
        }
        Ok(out)
    }

    /// Changes replay `key` with `change` (which may refuse) and commits `accepted` (the
    /// events it replayed, with their deliveries) in the same transaction; the replay as
    /// changed. Reading the record inside the transaction keeps a concurrent change (a
    /// cancel) from being overwritten.
    pub fn update_replay(
        &self,
        key: &str,
        accepted: &[Accepted],
        now_ms: u64,
        change: impl FnOnce(&mut Replay) -> Result<(), BusError>,
    ) -> Result<Replay, BusError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let record: Option<String> = tx
            .query_row(
                "SELECT record FROM bus_replays WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let Some(record) = record else {
            return Err(BusError::NotFound(format!(
                "Replay {} does not exist.",
                key.rsplit('/').next().unwrap_or(key)
            )));
        };
        let mut replay = replay_of(record)?;
        change(&mut replay)?;
        for a in accepted {
            insert_accepted(&tx, a, now_ms)?;
        }
        tx.execute(
            "UPDATE bus_replays SET record = ?2 WHERE key = ?1",
            params![key, record_of(&replay)?],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(replay)
    }
}
