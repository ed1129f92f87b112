//! The control door: "a function's document changed, make the running world match",
//! and the reads of the running world the control plane answers with.
//!
//! Wire fronts (the HTTP API) and event sources go through this door and the invoke
//! service, never to the scheduler or the store. After every committed change to a
//! function they call [`Control::reconcile_current`]; at start-up the server calls
//! [`Control::reconcile`] for every stored document. [`reconcile::Reconciler`] is the
//! only caller of the scheduler's `retire`, `set_reserved` and `sync_provisioned`.

pub mod reconcile;

use std::sync::{Arc, Mutex};

use crate::document::FunctionDocument;
use crate::metrics::Gauge;
use crate::registry::Registry;
use crate::scheduler::{PoolKey, Scheduler};

use reconcile::Reconciler;

pub struct Control {
    registry: Arc<Registry>,
    scheduler: Arc<Scheduler>,
    /// Held while a document is read and applied, so that changes are applied one at a
    /// time and each sees the pools as the one before left them.
    reconciler: Mutex<Reconciler<Arc<Scheduler>>>,
}

impl Control {
    pub fn new(registry: Arc<Registry>, scheduler: Arc<Scheduler>) -> Self {
        Self {
            registry,
            reconciler: Mutex::new(Reconciler::new(scheduler.clone())),
            scheduler,
        }
    }

    fn reconciler(&self) -> std::sync::MutexGuard<'_, Reconciler<Arc<Scheduler>>> {
        self.reconciler.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the environments of `document`'s function match it.
    pub fn reconcile(&self, document: &FunctionDocument) {
        self.reconciler().reconcile(document);
    }

    /// Makes the environments of the function of key `name` (see `crate::region`) match
    /// what the registry holds for it now: its document, or, when it was deleted, nothing
    /// (every environment shut down). Reading under the reconciler's lock means two
    /// changes that finish in either order leave the newest one applied.
    pub fn reconcile_current(&self, name: &str) {
        let _span = tracing::debug_span!("reconcile", function = %name).entered();
        let mut reconciler = self.reconciler();
        match self.registry.get(name) {
            Some(document) => reconciler.reconcile(&document),
            None => reconciler.reconcile_deleted(name),
        }
    }

    /// The account's concurrency limit.
    pub fn concurrency_limit(&self) -> usize {
        self.scheduler.limits().concurrency
    }

    /// The memory live environments may take in all (MB).
    pub fn memory_capacity_mb(&self) -> u64 {
        self.scheduler.limits().memory_capacity_mb
    }

    /// Provisioned environments of a version that are initialised and live.
    pub fn provisioned_allocated(&self, function: &str, version: &str) -> usize {
        let key = PoolKey {
            function: function.to_string(),
            version: version.to_string(),
        };
        self.scheduler.provisioned_status(&key).1
    }

    /// Gauges of the environments and their load, for `/metrics`.
    pub fn gauges(&self) -> Vec<Gauge> {
        self.scheduler.gauges()
    }
}
