//! The bus's durable outbox: `bus_events` (one row per accepted event) and
//! `bus_deliveries` (one per target a rule matched it for, with the target's settings as
//! they were when it matched). A `PutEvents` call's events and deliveries are committed
//! in one transaction (`synchronous=FULL`) before it is answered, so an accepted event
//! survives `kill -9` and reaches every target it matched, at least once.
//!
//! A delivery is `claimed` while it is attempted; at start every claim of the last run is
//! released. An event goes once its last delivery does. Every write takes the database's
//! write lock when it begins (`BEGIN IMMEDIATE`): the file is shared with the other
//! services' connections, and a transaction that read first could not take it later.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;

use super::BusError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bus_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    record  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event        INTEGER NOT NULL,
    rule_arn     TEXT NOT NULL,
    target       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    accepted_ms  INTEGER NOT NULL,
    due_ms       INTEGER NOT NULL,
    claimed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS bus_deliveries_due ON bus_deliveries (claimed, due_ms);
CREATE INDEX IF NOT EXISTS bus_deliveries_event ON bus_deliveries (event);
CREATE TABLE IF NOT EXISTS bus_schedules (
    rule_arn   TEXT PRIMARY KEY,
    origin_ms  INTEGER NOT NULL,
    last_ms    INTEGER NOT NULL
);
";

pub(super) fn backend(e: impl std::fmt::Display) -> BusError {
    BusError::Internal(e.to_string())
}

/// An accepted event and the deliveries it makes.
pub struct Accepted {
    pub event: Value,
    /// `(rule ARN, target)` for each target it goes to.
    pub deliveries: Vec<(String, Value)>,
    /// The keys of the archives that keep a copy.
    pub archives: Vec<String>,
}

/// Writes one accepted event: its row and deliveries if it has any, and a copy in each
/// of its archives.
pub(super) fn insert(
    tx: &rusqlite::Transaction<'_>,
    accepted: &Accepted,
    now_ms: u64,
) -> Result<(), BusError> {
    let record = accepted.event.to_string();
    if !accepted.deliveries.is_empty() {
        tx.prepare_cached("INSERT INTO bus_events (record) VALUES (?1)")
            .and_then(|mut stmt| stmt.execute(params![record]))
            .map_err(backend)?;
        let event_id = tx.last_insert_rowid();
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO bus_deliveries (event, rule_arn, target, accepted_ms, due_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .map_err(backend)?;
        for (rule_arn, target) in &accepted.deliveries {
            stmt.execute(params![
                event_id,
                rule_arn,
                target.to_string(),
                now_ms as i64
            ])
            .map_err(backend)?;
        }
    }
    if !accepted.archives.is_empty() {
        super::archive_log::insert(tx, &accepted.event, &record, &accepted.archives, now_ms)?;
    }
    Ok(())
}

/// One delivery to attempt.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub event: Value,
    pub rule_arn: String,
    pub target: Value,
    pub attempts: u32,
    pub accepted_ms: u64,
}

pub struct Outbox {
    conn: Mutex<Connection>,
}

impl Outbox {
    pub fn open(path: &Path) -> Result<Self, BusError> {
        let conn = crate::store::connect(path, "FULL").map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.execute_batch(super::archive_log::SCHEMA)
            .map_err(backend)?;
        conn.execute(
            "UPDATE bus_deliveries SET claimed = 0 WHERE claimed = 1",
            [],
        )
        .map_err(backend)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits accepted events with their deliveries and archive copies, all or none.
    /// Events that match no target and no archive are not written.
    pub fn accept(&self, accepted: &[Accepted], now_ms: u64) -> Result<(), BusError> {
        if accepted
            .iter()
            .all(|a| a.deliveries.is_empty() && a.archives.is_empty())
        {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        for a in accepted {
            insert(&tx, a, now_ms)?;
        }
        tx.commit().map_err(backend)
    }

    /// When a scheduled rule's schedule began and last fired; a rule seen for the first
    /// time begins (and counts as fired) at `now_ms`.
    pub fn schedule_state(&self, rule_arn: &str, now_ms: u64) -> Result<(u64, u64), BusError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO bus_schedules (rule_arn, origin_ms, last_ms) VALUES (?1, ?2, ?2)",
            params![rule_arn, now_ms as i64],
        )
        .map_err(backend)?;
        conn.query_row(
            "SELECT origin_ms, last_ms FROM bus_schedules WHERE rule_arn = ?1",
            params![rule_arn],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(backend)
    }

    /// Restarts a rule's schedule at `now_ms` (its expression changed).
    pub fn restart_schedule(&self, rule_arn: &str, now_ms: u64) -> Result<(), BusError> {
        self.lock()
            .execute(
                "INSERT INTO bus_schedules (rule_arn, origin_ms, last_ms) VALUES (?1, ?2, ?2) \
                 ON CONFLICT(rule_arn) DO UPDATE SET origin_ms = ?2, last_ms = ?2",
                params![rule_arn, now_ms as i64],
            )
            .map(|_| ())
            .map_err(backend)
    }

    /// A firing of a scheduled rule: its event and deliveries committed together with the
    /// time it fired, so that a firing is neither lost nor repeated across a restart.
    pub fn fire(
        &self,
        rule_arn: &str,
        accepted: Accepted,
        fired_ms: u64,
        now_ms: u64,
    ) -> Result<(), BusError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        insert(&tx, &accepted, now_ms)?;
        tx.execute(
            "UPDATE bus_schedules SET last_ms = ?2 WHERE rule_arn = ?1",
            params![rule_arn, fired_ms as i64],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    /// Claims up to `limit` deliveries due by `now_ms`, oldest first.
    pub fn claim(&self, now_ms: u64, limit: usize) -> Result<Vec<Due>, BusError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut due = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT d.id, e.record, d.rule_arn, d.target, d.attempts, d.accepted_ms \
                     FROM bus_deliveries d JOIN bus_events e ON e.id = d.event \
                     WHERE d.claimed = 0 AND d.due_ms <= ?1 ORDER BY d.due_ms, d.id LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![now_ms as i64, limit as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, i64>(5)?,
                    ))
                })
                .map_err(backend)?;
            for row in rows {
                let (id, event, rule_arn, target, attempts, accepted_ms) = row.map_err(backend)?;
                due.push(Due {
                    id,
                    event: serde_json::from_str(&event).unwrap_or(Value::Null),
                    rule_arn,
                    target: serde_json::from_str(&target).unwrap_or(Value::Null),
                    attempts: attempts as u32,
                    accepted_ms: accepted_ms as u64,
                });
            }
            let mut mark = tx
                .prepare_cached("UPDATE bus_deliveries SET claimed = 1 WHERE id = ?1")
                .map_err(backend)?;
            for d in &due {
                mark.execute(params![d.id]).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(due)
    }

    /// Settles attempts: `done` deliveries go (and their events once they have no other),
    /// `retry` ones come back at their due time with one attempt more.
    pub fn settle(&self, done: &[i64], retry: &[(i64, u64)]) -> Result<(), BusError> {
        if done.is_empty() && retry.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        {
            let mut event_of = tx
                .prepare_cached("SELECT event FROM bus_deliveries WHERE id = ?1")
                .map_err(backend)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM bus_deliveries WHERE id = ?1")
                .map_err(backend)?;
            let mut orphan = tx
                .prepare_cached(
                    "DELETE FROM bus_events WHERE id = ?1 AND NOT EXISTS \
                     (SELECT 1 FROM bus_deliveries WHERE event = ?1)",
                )
                .map_err(backend)?;
            for id in done {
                let event: Option<i64> = event_of.query_row(params![id], |r| r.get(0)).ok();
                delete.execute(params![id]).map_err(backend)?;
                if let Some(event) = event {
                    orphan.execute(params![event]).map_err(backend)?;
                }
            }
            let mut again = tx
                .prepare_cached(
                    "UPDATE bus_deliveries SET claimed = 0, attempts = attempts + 1, due_ms = ?2 \
                     WHERE id = ?1",
                )
                .map_err(backend)?;
            for (id, due_ms) in retry {
                again
                    .execute(params![id, *due_ms as i64])
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    /// Deliveries not yet done.
    #[cfg(test)]
    pub fn pending(&self) -> Result<u64, BusError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM bus_deliveries", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepted_events_are_claimed_retried_and_settled() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("db")).unwrap();
        outbox
            .accept(
                &[
                    Accepted {
                        event: json!({"id": "e1"}),
                        deliveries: vec![
                            ("rule/a".into(), json!({"Id": "t1", "Arn": "x"})),
                            ("rule/b".into(), json!({"Id": "t2", "Arn": "y"})),
                        ],
                        archives: vec![],
                    },
                    Accepted {
                        event: json!({"id": "e2"}),
                        deliveries: vec![],
                        archives: vec![],
                    },
                ],
                100,
            )
            .unwrap();
        assert_eq!(outbox.pending().unwrap(), 2);
        let due = outbox.claim(100, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].event, json!({"id": "e1"}));
        assert!(
            outbox.claim(100, 10).unwrap().is_empty(),
            "claimed ones are not claimed again"
        );
        outbox.settle(&[due[0].id], &[(due[1].id, 500)]).unwrap();
        assert!(outbox.claim(499, 10).unwrap().is_empty());
        let again = outbox.claim(500, 10).unwrap();
        assert_eq!((again.len(), again[0].attempts), (1, 1));
        // A restart releases claims.
        drop(outbox);
        let outbox = Outbox::open(&dir.path().join("db")).unwrap();
        let after = outbox.claim(500, 10).unwrap();
        assert_eq!(after.len(), 1);
        outbox.settle(&[after[0].id], &[]).unwrap();
        assert_eq!(outbox.pending().unwrap(), 0);
        let events: i64 = outbox
            .lock()
            .query_row("SELECT COUNT(*) FROM bus_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 0);
    }
}
