//! Outcomes of claimed async events, written back to the durable queue: and kept, and
//! written again with a bounded backoff, when the store does not take them (a full disk).

use std::sync::Arc;
use std::time::Duration;

use crate::store::StoreError;
use crate::store::events::EventStore;

/// A write-back that failed is tried again after this, then after twice as long, up to
/// [`WRITE_RETRY_MAX`] between tries.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(2);

/// What becomes of a claimed event once its run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    /// Due again at `due_ms` with `attempts` made.
    Reschedule { id: i64, attempts: u32, due_ms: u64 },
    /// Gone: its outcome has been dealt with.
    Complete { id: i64 },
}

impl WriteBack {
    fn apply(self, store: &dyn EventStore) -> Result<(), StoreError> {
        match self {
            Self::Reschedule {
                id,
                attempts,
                due_ms,
            } => store.reschedule(id, attempts, due_ms),
            Self::Complete { id } => store.complete(id),
        }
    }
}

/// Write-backs of claimed events that failed (the disk was full), kept until they land.
///
/// An event stays leased in the store until its write-back lands, and a lease outlasts
/// the longest function (16 minutes); so rather than leave the event to its lease, the
/// write is retried in the background (backoff from 100 ms up to 2 s) until it lands,
/// and the event is due again as soon as the store takes writes. A restart meanwhile
/// loses nothing: leases of an earlier run are released at start.
pub struct WriteBacks {
    store: Arc<dyn EventStore>,
    pending: std::sync::Mutex<Vec<WriteBack>>,
    retrying: std::sync::atomic::AtomicBool,
}

impl WriteBacks {
    pub fn new(store: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Default::default(),
            retrying: Default::default(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<WriteBack>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `op`; if that fails, keeps it and retries in the background. Returns
    /// whether it landed now.
    pub async fn write(self: &Arc<Self>, op: WriteBack) -> bool {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || op.apply(store.as_ref()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, ?op, "writing back an async event failed; retrying in the background");
                self.pending().push(op);
                self.retry_in_background();
                false
            }
        }
    }

    /// Write-backs still waiting to land.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pending().len()
    }

    fn retry_in_background(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = WRITE_RETRY_FIRST;
            loop {
                tokio::time::sleep(delay).await;
                let ops = std::mem::take(&mut *this.pending());
                let store = this.store.clone();
                let failed = tokio::task::spawn_blocking(move || {
                    ops.into_iter()
                        .filter(|op| op.apply(store.as_ref()).is_err())
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                let landed_all = failed.is_empty();
                let mut pending = this.pending();
                pending.extend(failed);
                if pending.is_empty() {
                    this.retrying.store(false, Ordering::SeqCst);
                    tracing::info!("pending async write-backs landed");
                    return;
                }
                drop(pending);
                delay = if landed_all {
                    WRITE_RETRY_FIRST
                } else {
                    (delay * 2).min(WRITE_RETRY_MAX)
                };
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::{NewEvent, QueuedEvent, SqliteEventStore};
    use crate::timefmt::now_ms;
    const LEASE_MS: u64 = 16 * 60 * 1000;
    use std::sync::atomic::{AtomicBool, Ordering};

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
        fn claim(
            &self,
            now: u64,
            lease: u64,
            limit: usize,
        ) -> Result<Vec<QueuedEvent>, StoreError> {
            self.check()?;
            self.inner.claim(now, lease, limit)
        }
        fn complete(&self, id: i64) -> Result<(), StoreError> {
            self.check()?;
            self.inner.complete(id)
        }
        fn reschedule(&self, id: i64, attempts: u32, due: u64) -> Result<(), StoreError> {
            self.check()?;
            self.inner.reschedule(id, attempts, due)
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
        let write_backs = WriteBacks::new(store.clone());
        // The disk fills while the events run: neither outcome can be written.
        store.full.store(true, Ordering::SeqCst);
        let retry = WriteBack::Reschedule {
            id: claimed[0].id,
            attempts: 1,
            due_ms: now_ms(),
        };
        assert!(!write_backs.write(retry).await);
        assert!(
            !write_backs
                .write(WriteBack::Complete { id: claimed[1].id })
                .await
        );
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
