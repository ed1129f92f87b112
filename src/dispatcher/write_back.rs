//! Outcomes of claimed async events, written back to the durable queue in batches: one
//! transaction for the outcomes that arrive together, after one flush of the log lines
//! of their invocations; kept, and written again with a bounded backoff, when the store
//! does not take them (a full disk).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::logs::LogSink;
use crate::store::events::{EventStore, Settlement};

/// A write-back that failed is tried again after this, then after twice as long, up to
/// [`WRITE_RETRY_MAX`] between tries.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(2);

/// Write-backs of claimed events, written by one task in batches.
///
/// An event's log lines are in the store before the event leaves it (each batch flushes
/// the log sink first), so a crash cannot leave a completed event without its logs.
///
/// An event stays leased in the store until its write-back lands, and a lease outlasts
/// the longest function (16 minutes); so a batch the store refuses (a full disk) is kept
/// and tried again (backoff from 100 ms up to 2 s) until it lands, and a retried event is
/// due again as soon as the store takes writes. A restart meanwhile loses nothing:
/// leases of an earlier run are released at start, and an event whose completion did not
/// land runs again (delivery is at least once).
pub struct WriteBacks {
    store: Arc<dyn EventStore>,
    logs: Option<LogSink>,
    queued: std::sync::Mutex<Vec<Settlement>>,
    /// Write-backs queued or being written, not yet landed.
    waiting: AtomicUsize,
    wake: Notify,
    landed: Notify,
}

impl WriteBacks {
    /// Starts the writer task; `logs` is flushed before each batch.
    pub fn new(store: Arc<dyn EventStore>, logs: Option<LogSink>) -> Arc<Self> {
        let this = Arc::new(Self {
            store,
            logs,
            queued: Default::default(),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            landed: Notify::new(),
        });
        tokio::spawn(this.clone().write_loop());
        this
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<Settlement>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op` for the next batch; it does not wait for the write.
    pub fn write(&self, op: Settlement) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.queued().push(op);
        self.wake.notify_one();
    }

    /// Write-backs still waiting to land.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits until every write-back queued so far has landed, or `limit` has passed;
    /// returns whether they all landed.
    pub async fn landed(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.landed.notified();
            if self.waiting() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.waiting() == 0;
            }
        }
    }

    async fn write_loop(self: Arc<Self>) {
        let mut failed: Vec<Settlement> = Vec::new();
        let mut delay = WRITE_RETRY_FIRST;
        let mut retrying = false;
        loop {
            if failed.is_empty() {
                let notified = self.wake.notified();
                if self.queued().is_empty() {
                    notified.await;
                }
            } else {
                tokio::time::sleep(delay).await;
            }
            let mut batch = std::mem::take(&mut failed);
            batch.append(&mut self.queued());
            if batch.is_empty() {
                continue;
            }
            if let Some(logs) = &self.logs {
                logs.flush().await;
            }
            let store = self.store.clone();
            let ops = batch.clone();
            let result = tokio::task::spawn_blocking(move || store.settle(&ops))
                .await
                .unwrap_or_else(|e| Err(crate::store::StoreError::Backend(e.to_string())));
            match result {
                Ok(()) => {
                    if retrying {
                        tracing::info!("pending async write-backs landed");
                    }
                    retrying = false;
                    delay = WRITE_RETRY_FIRST;
                    self.waiting.fetch_sub(batch.len(), Ordering::SeqCst);
                    self.landed.notify_waiters();
                }
                Err(e) => {
                    if retrying {
                        delay = (delay * 2).min(WRITE_RETRY_MAX);
                    } else {
                        tracing::warn!(error = %e, events = batch.len(), "writing back async events failed; retrying in the background");
                        retrying = true;
                    }
                    failed = batch;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::events::{NewEvent, QueuedEvent, SqliteEventStore};
    use crate::timefmt::now_ms;
    const LEASE_MS: u64 = 16 * 60 * 1000;
    use std::sync::atomic::AtomicBool;

    /// The real store, whose writes fail while `full` is set (as on a full disk).
    struct FullDisk {
        inner: SqliteEventStore,
        full: AtomicBool,
    }

    impl FullDisk {
        fn check(&self) -> Result<(), StoreError> {
            if self.full.load(Ordering::SeqCst) {
                Err(StoreError::Backend("database or disk is full".into()))
            } else {
                Ok(())
            }
        }
    }

    impl EventStore for FullDisk {
        fn enqueue(&self, events: &[NewEvent]) -> Result<(), StoreError> {
            self.check()?;
            self.inner.enqueue(events)
        }
        fn claim_skipping(
            &self,
            now: u64,
            lease: u64,
            limit: usize,
            held: &(dyn Fn(&str) -> bool + Sync),
        ) -> Result<Vec<QueuedEvent>, StoreError> {
            self.check()?;
            self.inner.claim_skipping(now, lease, limit, held)
        }
        fn claim_received_before(
            &self,
            function: &str,
            before: u64,
            now: u64,
            lease: u64,
            limit: usize,
        ) -> Result<Vec<QueuedEvent>, StoreError> {
            self.check()?;
            self.inner
                .claim_received_before(function, before, now, lease, limit)
        }
        fn settle(&self, settlements: &[Settlement]) -> Result<(), StoreError> {
            self.check()?;
            self.inner.settle(settlements)
        }
        fn release_leases(&self) -> Result<(), StoreError> {
            self.check()?;
            self.inner.release_leases()
        }
        fn defer_function(&self, f: &str, until: u64, now: u64) -> Result<u64, StoreError> {
            self.check()?;
            self.inner.defer_function(f, until, now)
        }
        fn depth(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
            self.inner.depth()
        }
        fn waiting(
            &self,
            f: &str,
            limit: usize,
        ) -> Result<Vec<crate::store::events::WaitingEvent>, StoreError> {
            self.inner.waiting(f, limit)
        }
    }

    fn event(n: u64) -> NewEvent {
        crate::store::events::sample_event(n, now_ms())
    }

    #[tokio::test]
    async fn a_retry_that_could_not_be_written_is_due_soon_after_the_disk_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FullDisk {
            inner: SqliteEventStore::open(&dir.path().join("shoal.db")).unwrap(),
            full: AtomicBool::new(false),
        });
        store.enqueue(&[event(1), event(2)]).unwrap();
        let claimed = store.claim(now_ms(), LEASE_MS, 10).unwrap();
        assert_eq!(claimed.len(), 2);
        let write_backs = WriteBacks::new(store.clone(), None);
        // The disk fills while the events run: neither outcome can be written.
        store.full.store(true, Ordering::SeqCst);
        let retry = Settlement::Reschedule {
            id: claimed[0].id,
            attempts: 1,
            due_ms: now_ms(),
            error: None,
        };
        write_backs.write(retry);
        write_backs.write(Settlement::Complete { id: claimed[1].id });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(write_backs.waiting(), 2, "kept while the disk is full");
        // Space is freed: within the longest backoff both land, and the retried event is
        // due now, not when its 16-minute lease ends.
        store.full.store(false, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + WRITE_RETRY_MAX + Duration::from_secs(1);
        while write_backs.waiting() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(write_backs.waiting(), 0);
        let again = store.claim(now_ms(), LEASE_MS, 10).unwrap();
        assert_eq!(again.len(), 1, "the retried event is due again");
        assert_eq!(again[0].id, claimed[0].id);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(
            store.depth().unwrap(),
            vec![("f".to_string(), 1, again[0].event.received_ms)]
        );
    }
}
