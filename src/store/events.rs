//! The durable queue of asynchronous invocations.
//!
//! An event is committed (WAL, `synchronous=FULL`) before its 202 is sent, and removed
//! only after its outcome has been dealt with, so a crash at any instant loses nothing
//! that was accepted: a claimed event carries a lease, and an event whose lease ran out
//! (its dispatcher died) is claimed again. Delivery is therefore at least once.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::StoreError;

/// An event to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    pub trace_id: Option<String>,
    pub received_ms: u64,
}

/// An event claimed for dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub id: i64,
    pub event: NewEvent,
    /// Invocations already made for this event.
    pub attempts: u32,
}

/// What becomes of a claimed event once its run is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Due again at `due_ms` with `attempts` made; its lease ends. `error` says why the
    /// last attempt failed (kept, shown to whoever lists the waiting events); `None`
    /// keeps what was said before.
    Reschedule {
        id: i64,
        attempts: u32,
        due_ms: u64,
        error: Option<std::sync::Arc<str>>,
    },
    /// Gone: its outcome has been dealt with.
    Complete { id: i64 },
}

pub trait EventStore: Send + Sync {
    /// Commits a batch of events in one transaction.
    fn enqueue(&self, events: &[NewEvent]) -> Result<(), StoreError>;
    #[cfg(test)]
    /// Leases up to `limit` events that are due until `now + lease_ms`: functions take turns
    /// (the oldest due event of each function first), so one function's backlog never
    /// starves another's events.
    fn claim(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        self.claim_skipping(now_ms, lease_ms, limit, &|_| false)
    }
    /// [`EventStore::claim`], passing over the functions for which `held` is true (their
    /// events wait, unread, in their turn).
    fn claim_skipping(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
        held: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<QueuedEvent>, StoreError>;
    /// Leases up to `limit` unleased events of `function` received before
    /// `received_before_ms`, due or not: the events of a held function that may have
    /// outlived their maximum age.
    fn claim_received_before(
        &self,
        function: &str,
        received_before_ms: u64,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError>;
    /// Writes the settlements of many events at once (a completed event leaves the
    /// store; a rescheduled one is due again): all of them or none.
    fn settle(&self, settlements: &[Settlement]) -> Result<(), StoreError>;
    /// Ends every lease: called at start, when no dispatcher of an earlier run can still
    /// be working on an event.
    fn release_leases(&self) -> Result<(), StoreError>;
    /// Moves the waiting (unleased) events of `function` due before `until_ms` to
    /// `until_ms`: a throttled function's backlog waits in one write, not one per event.
    /// Returns how many moved.
    fn defer_function(&self, function: &str, until_ms: u64, now_ms: u64)
    -> Result<u64, StoreError>;
    /// Events waiting per function, and the receipt time of the oldest of each.
    fn depth(&self) -> Result<Vec<(String, u64, u64)>, StoreError>;
    /// Up to `limit` of `function`'s waiting events, oldest first.
    fn waiting(&self, function: &str, limit: usize) -> Result<Vec<WaitingEvent>, StoreError>;
}

/// An event that waits for (another) attempt, as [`EventStore::waiting`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingEvent {
    pub request_id: String,
    pub qualifier: Option<String>,
    pub received_ms: u64,
    /// Invocations already made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub due_ms: u64,
    /// Until when a dispatcher holds it (an attempt under way); 0 when none does.
    pub leased_until_ms: u64,
    /// Why the last attempt failed, if one did.
    pub last_error: Option<String>,
}

pub struct SqliteEventStore {
    /// Accepting events: each commit is on disk (`synchronous=FULL`) before it returns.
    conn: Mutex<Connection>,
    /// Everything after: claims, outcomes, deferrals (`synchronous=NORMAL`: no fsync of
    /// their own). What a power loss can take of them is safe to lose: a lease (leases of
    /// an earlier run are released at start anyway), or an outcome, which runs the event
    /// again (delivery is at least once). The next accept's fsync makes them durable too,
    /// since both connections write the one write-ahead log.
    settle: Mutex<Connection>,
    /// The functions that may have events, in the order they take turns at claims (the
    /// next one to serve first): so that a claim reads the index of each function's
    /// due events and never the whole backlog. Read at open, added to on enqueue,
    /// trimmed when a function is found to have no events left.
    turns: Mutex<std::collections::VecDeque<String>>,
}

/// A claimed row: `id, request_id, function, qualifier, payload, trace_id, received_ms,
/// attempts`.
fn queued_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedEvent> {
    Ok(QueuedEvent {
        id: row.get(0)?,
        event: NewEvent {
            request_id: row.get(1)?,
            function: row.get(2)?,
            qualifier: row.get(3)?,
            payload: row.get(4)?,
            trace_id: row.get(5)?,
            received_ms: row.get::<_, i64>(6)? as u64,
        },
        attempts: row.get::<_, i64>(7)? as u32,
    })
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::from_sqlite(e)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS async_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT NOT NULL,
    function        TEXT NOT NULL,
    qualifier       TEXT,
    payload         BLOB NOT NULL,
    trace_id        TEXT,
    received_ms     INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due_ms          INTEGER NOT NULL,
    leased_until_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS async_events_due ON async_events (due_ms);
CREATE INDEX IF NOT EXISTS async_events_function ON async_events (function, due_ms);
";

/// Stores of an earlier version lack `last_error`: it is added (empty for the events
/// already there).
fn add_last_error(conn: &Connection) -> Result<(), StoreError> {
    let has: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('async_events') WHERE name = 'last_error')",
            [],
            |row| row.get(0),
        )
        .map_err(backend)?;
    if !has {
        conn.execute_batch("ALTER TABLE async_events ADD COLUMN last_error TEXT;")
            .map_err(backend)?;
    }
    Ok(())
}

impl SqliteEventStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connect = |synchronous| super::connect(path, synchronous);
        let conn = connect("FULL")?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        add_last_error(&conn)?;
        let settle = connect("NORMAL")?;
        let turns = {
            let mut stmt = conn
                .prepare("SELECT DISTINCT function FROM async_events")
                .map_err(backend)?;
            stmt.query_map([], |row| row.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?
        };
        Ok(Self {
            conn: Mutex::new(conn),
            settle: Mutex::new(settle),
            turns: Mutex::new(turns),
        })
    }

    fn settling(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.settle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<String>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leases up to `limit` due events of one function, oldest due first.
    fn claim_of(
        conn: &Connection,
        function: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let mut stmt = conn
            .prepare_cached(
                "UPDATE async_events SET leased_until_ms = ?3
                 WHERE id IN (SELECT id FROM async_events
                              WHERE function = ?1 AND due_ms <= ?2 AND leased_until_ms <= ?2
                              ORDER BY due_ms, id LIMIT ?4)
                 RETURNING id, request_id, function, qualifier, payload, trace_id, received_ms, attempts",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![
                    function,
                    now_ms as i64,
                    (now_ms + lease_ms) as i64,
                    limit as i64
                ],
                queued_event,
            )
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn has_events(conn: &Connection, function: &str) -> Result<bool, StoreError> {
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM async_events WHERE function = ?1)")
            .and_then(|mut stmt| stmt.query_row(params![function], |row| row.get(0)))
            .map_err(backend)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EventStore for SqliteEventStore {
    fn enqueue(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO async_events (request_id, function, qualifier, payload, trace_id, received_ms, due_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )
                .map_err(backend)?;
            for e in events {
                stmt.execute(params![
                    e.request_id,
                    e.function,
                    e.qualifier,
                    e.payload,
                    e.trace_id,
                    e.received_ms as i64
                ])
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        drop(conn);
        let mut turns = self.turns();
        for e in events {
            if !turns.contains(&e.function) {
                turns.push_back(e.function.clone());
            }
        }
        Ok(())
    }

    /// Functions take turns: each gets an equal share of `limit` (the first ones one more),
    /// what a function leaves goes to the ones after it, and the next claim starts after
    /// the last function served.
    fn claim_skipping(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
        held: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        // The turns are held throughout: an accept adds its function to them only after
        // its commit, so a function found empty here and then given an event is added
        // back once this claim is done.
        let mut turns = self.turns();
        let mut conn = self.settling();
        let tx = conn.transaction().map_err(backend)?;
        let mut claimed = Vec::new();
        let mut served = 0;
        let mut empty = Vec::new();
        // A first round of equal shares, then rounds for what is left.
        let mut full: Vec<usize> = (0..turns.len()).filter(|&i| !held(&turns[i])).collect();
        while claimed.len() < limit && !full.is_empty() {
            let share = (limit - claimed.len()).div_ceil(full.len());
            let mut still_full = Vec::new();
            for &i in &full {
                let want = share.min(limit - claimed.len());
                if want == 0 {
                    break;
                }
                let got = Self::claim_of(&tx, &turns[i], now_ms, lease_ms, want)?;
                if got.len() == want {
                    still_full.push(i);
                } else if got.is_empty() && !Self::has_events(&tx, &turns[i])? {
                    empty.push(i);
                }
                if !got.is_empty() {
                    served = i + 1;
                }
                claimed.extend(got);
            }
            full = still_full;
        }
        tx.commit().map_err(backend)?;
        // Functions with nothing left leave the turns; the next claim starts after the
        // last function served.
        empty.sort_unstable();
        let removed_before = empty.iter().filter(|&&i| i < served).count();
        for i in empty.into_iter().rev() {
            turns.remove(i);
        }
        if !turns.is_empty() {
            let start = (served - removed_before) % turns.len();
            turns.rotate_left(start);
        }
        claimed.sort_by_key(|e| e.id);
        Ok(claimed)
    }

    fn claim_received_before(
        &self,
        function: &str,
        received_before_ms: u64,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let conn = self.settling();
        let mut stmt = conn
            .prepare_cached(
                "UPDATE async_events SET leased_until_ms = ?4
                 WHERE id IN (SELECT id FROM async_events
                              WHERE function = ?1 AND received_ms < ?2 AND leased_until_ms <= ?3
                              ORDER BY id LIMIT ?5)
                 RETURNING id, request_id, function, qualifier, payload, trace_id, received_ms, attempts",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![
                    function,
                    received_before_ms as i64,
                    now_ms as i64,
                    (now_ms + lease_ms) as i64,
                    limit as i64
                ],
                queued_event,
            )
            .map_err(backend)?;
        let mut claimed = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
        claimed.sort_by_key(|e| e.id);
        Ok(claimed)
    }

    /// One transaction for the batch: its statements are prepared once and no fsync is
    /// made (the `settle` connection).
    fn settle(&self, settlements: &[Settlement]) -> Result<(), StoreError> {
        let mut conn = self.settling();
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM async_events WHERE id = ?1")
                .map_err(backend)?;
            let mut reschedule = tx
                .prepare_cached(
                    "UPDATE async_events SET attempts = ?2, due_ms = ?3, leased_until_ms = 0,
                         last_error = COALESCE(?4, last_error) WHERE id = ?1",
                )
                .map_err(backend)?;
            for s in settlements {
                match s {
                    Settlement::Complete { id } => delete.execute(params![id]),
                    Settlement::Reschedule {
                        id,
                        attempts,
                        due_ms,
                        error,
                    } => {
                        reschedule.execute(params![id, attempts, *due_ms as i64, error.as_deref()])
                    }
                }
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn release_leases(&self) -> Result<(), StoreError> {
        self.settling()
            .execute(
                "UPDATE async_events SET leased_until_ms = 0 WHERE leased_until_ms > 0",
                [],
            )
            .map(|_| ())
            .map_err(backend)
    }

    fn defer_function(
        &self,
        function: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        self.settling()
            .execute(
                "UPDATE async_events SET due_ms = ?2
                 WHERE function = ?1 AND due_ms < ?2 AND leased_until_ms <= ?3",
                params![function, until_ms as i64, now_ms as i64],
            )
            .map(|n| n as u64)
            .map_err(backend)
    }

    fn depth(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let conn = self.settling();
        // Counted on the `(function, due_ms)` index alone; the oldest event is the first
        // accepted (ids are given in the order of acceptance), read by its id.
        let mut stmt = conn
            .prepare_cached(
                "SELECT d.function, d.n, e.received_ms
                 FROM (SELECT function, COUNT(*) AS n, MIN(id) AS first
                       FROM async_events INDEXED BY async_events_function GROUP BY function) d
                 JOIN async_events e ON e.id = d.first",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, i64>(1)? as u64,
                    row.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn waiting(&self, function: &str, limit: usize) -> Result<Vec<WaitingEvent>, StoreError> {
        let conn = self.settling();
        // Next due first, read in the order of the `(function, due_ms)` index.
        let mut stmt = conn
            .prepare_cached(
                "SELECT request_id, qualifier, received_ms, attempts, due_ms, leased_until_ms, last_error
                 FROM async_events INDEXED BY async_events_function
                 WHERE function = ?1 ORDER BY due_ms LIMIT ?2",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![function, limit as i64], |row| {
                Ok(WaitingEvent {
                    request_id: row.get(0)?,
                    qualifier: row.get(1)?,
                    received_ms: row.get::<_, i64>(2)? as u64,
                    attempts: row.get::<_, i64>(3)? as u32,
                    due_ms: row.get::<_, i64>(4)? as u64,
                    leased_until_ms: row.get::<_, i64>(5)? as u64,
                    last_error: row.get(6)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }
}

/// An event of function `f` for tests: request id `r<n>`, received at `received_ms`.
#[cfg(test)]
pub fn sample_event(n: u64, received_ms: u64) -> NewEvent {
    NewEvent {
        request_id: format!("r{n}"),
        function: "f".into(),
        qualifier: None,
        payload: b"{}".to_vec(),
        trace_id: None,
        received_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> NewEvent {
        sample_event(n, n)
    }

    /// A new store holding events 0..n of function f and event `other` of function g.
    fn backlog_of_f_and_one_of_g(n: u64, other: u64) -> (tempfile::TempDir, SqliteEventStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteEventStore::open(&dir.path().join("shoal.db")).unwrap();
        let mut backlog: Vec<NewEvent> = (0..n).map(event).collect();
        let mut g = event(other);
        g.function = "g".into();
        backlog.push(g);
        store.enqueue(&backlog).unwrap();
        (dir, store)
    }

    #[test]
    fn claims_lease_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        {
            let store = SqliteEventStore::open(&path).unwrap();
            store.enqueue(&[event(1), event(2), event(3)]).unwrap();
            let claimed = store.claim(10, 1000, 2).unwrap();
            assert_eq!(
                claimed
                    .iter()
                    .map(|e| e.event.received_ms)
                    .collect::<Vec<_>>(),
                [1, 2]
            );
            // Leased events are not claimed again before the lease ends.
            assert_eq!(store.claim(20, 1000, 10).unwrap().len(), 1);
            store
                .settle(&[Settlement::Complete { id: claimed[0].id }])
                .unwrap();
            store
                .settle(&[Settlement::Reschedule {
                    id: claimed[1].id,
                    attempts: 1,
                    due_ms: 5000,
                    error: Some("Unhandled: boom".into()),
                }])
                .unwrap();
        }
        let store = SqliteEventStore::open(&path).unwrap();
        // Listed next due first, with the failed attempt's error.
        let waiting = store.waiting("f", 10).unwrap();
        assert_eq!(
            waiting
                .iter()
                .map(|w| (
                    w.request_id.as_str(),
                    w.attempts,
                    w.due_ms,
                    w.last_error.as_deref()
                ))
                .collect::<Vec<_>>(),
            [("r3", 0, 3, None), ("r2", 1, 5000, Some("Unhandled: boom"))]
        );
        assert_eq!(store.waiting("f", 1).unwrap().len(), 1);
        assert!(store.waiting("g", 10).unwrap().is_empty());
        // After the lease of event 3 ran out (a crash), it is claimed again.
        let again = store.claim(2000, 1000, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].event.received_ms, 3);
        let retried = store.claim(6000, 1000, 10).unwrap();
        assert_eq!(retried.len(), 2);
        assert_eq!(retried[0].attempts, 1);
        assert_eq!(store.depth().unwrap(), vec![("f".to_string(), 2, 2)]);
    }

    #[test]
    fn events_put_back_or_released_at_shutdown_are_claimed_at_once_uncounted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.db");
        {
            let store = SqliteEventStore::open(&path).unwrap();
            store.enqueue(&[event(1), event(2)]).unwrap();
            let claimed = store.claim(10, 1_000_000, 10).unwrap();
            assert_eq!(claimed.len(), 2);
            // One invocation ended by the shutdown goes back, due now, attempt uncounted;
            // the lease of the other is released as the server stops.
            store
                .settle(&[Settlement::Reschedule {
                    id: claimed[0].id,
                    attempts: claimed[0].attempts,
                    due_ms: 11,
                    error: None,
                }])
                .unwrap();
            store.release_leases().unwrap();
        }
        let store = SqliteEventStore::open(&path).unwrap();
        // Right away, long before the lease would have ended.
        let again = store.claim(12, 1_000_000, 10).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|e| e.attempts == 0));
    }

    #[test]
    fn functions_take_turns() {
        let (_dir, store) = backlog_of_f_and_one_of_g(100, 500);
        let claimed = store.claim(1000, 1000, 2).unwrap();
        let functions: Vec<&str> = claimed.iter().map(|e| e.event.function.as_str()).collect();
        assert!(
            functions.contains(&"g"),
            "the other function's event is not starved: {functions:?}"
        );
    }

    #[test]
    fn a_function_with_nothing_left_leaves_the_turns_and_comes_back_with_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteEventStore::open(&dir.path().join("shoal.db")).unwrap();
        store.enqueue(&[event(1)]).unwrap();
        let claimed = store.claim(1000, 1000, 10).unwrap();
        store
            .settle(&[Settlement::Complete { id: claimed[0].id }])
            .unwrap();
        assert!(store.claim(1000, 1000, 10).unwrap().is_empty());
        assert!(
            store.turns().is_empty(),
            "an empty function stays in the turns"
        );
        store.enqueue(&[event(2)]).unwrap();
        assert_eq!(store.claim(1000, 1000, 10).unwrap().len(), 1);
        // A leased or deferred event keeps its function in the turns.
        assert!(store.claim(1000, 1000, 10).unwrap().is_empty());
        assert_eq!(store.turns().len(), 1);
        // Turns are read back at open.
        drop(store);
        let store = SqliteEventStore::open(&dir.path().join("shoal.db")).unwrap();
        assert_eq!(store.claim(5000, 1000, 10).unwrap().len(), 1);
    }

    #[test]
    fn held_functions_are_passed_over_and_their_old_events_can_be_claimed_alone() {
        let (_dir, store) = backlog_of_f_and_one_of_g(10, 7);
        let claimed = store
            .claim_skipping(1000, 60_000, 100, &|f| f == "f")
            .unwrap();
        let functions: Vec<&str> = claimed.iter().map(|e| e.event.function.as_str()).collect();
        assert_eq!(functions, ["g"]);
        // f keeps its turn, and its events are there once it is no longer held.
        assert_eq!(store.turns().len(), 2);
        // Its events received before 5 (0 to 4), deferred or not, alone.
        store.defer_function("f", 9000, 1000).unwrap();
        let old = store
            .claim_received_before("f", 5, 1000, 60_000, 100)
            .unwrap();
        let received: Vec<u64> = old.iter().map(|e| e.event.received_ms).collect();
        assert_eq!(received, [0, 1, 2, 3, 4]);
        assert!(
            store
                .claim_received_before("f", 5, 1000, 60_000, 100)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.claim(9000, 60_000, 100).unwrap().len(), 5);
    }

    #[test]
    fn a_deferred_backlog_waits_and_leaves_others_and_leased_events_alone() {
        let (_dir, store) = backlog_of_f_and_one_of_g(50, 7);
        let leased = store.claim(1000, 60_000, 1).unwrap();
        assert_eq!(leased.len(), 1);
        // All of f's waiting events move in one write; the leased one and g's stay.
        assert_eq!(store.defer_function("f", 5000, 1000).unwrap(), 49);
        let due_now = store.claim(1000, 60_000, 100).unwrap();
        let functions: Vec<&str> = due_now.iter().map(|e| e.event.function.as_str()).collect();
        assert_eq!(functions, ["g"]);
        assert_eq!(store.claim(5000, 60_000, 100).unwrap().len(), 49);
    }
}
