//! Reconciliation: from a function's document to the pool operations that make the
//! running environments match it.
//!
//! [`Reconciler`] remembers, per function, what it last applied ([`Applied`]: the
//! revision of every version, the reserved concurrency, the provisioned target of every
//! version) and compares each new document with it:
//! - a version whose revision changed (`$LATEST` after an update of its code or
//!   configuration, every version after a change of the network mode) or that is gone
//!   (a deleted version) is retired: its idle environments are shut down, busy ones when
//!   they finish;
//! - a changed reserved concurrency is set;
//! - changed provisioned targets (a setting put or deleted, an alias moved or deleted,
//!   a version of a new revision) are synced, settings on an alias and on its version
//!   adding up.
//!
//! Nothing that did not change is touched, so reconciling the same document twice
//! does nothing the second time. The pools are behind [`PoolControl`], which the
//! scheduler implements.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::document::FunctionDocument;
use crate::function::FunctionRecord;
use crate::scheduler::Scheduler;

/// The pool operations reconciliation uses.
pub trait PoolControl {
    /// Shuts down the environments of one version of a function (of all of them and
    /// its settings when `version` is `None`).
    fn retire(&self, function: &str, version: Option<&str>);
    /// Sets or clears a function's reserved concurrency.
    fn set_reserved(&self, function: &str, reserved: Option<u32>);
    /// Points the provisioned pools of a function at `targets`; other versions get none.
    fn sync_provisioned(&self, function: &str, targets: Vec<(Arc<FunctionRecord>, usize)>);
}

impl PoolControl for Arc<Scheduler> {
    fn retire(&self, function: &str, version: Option<&str>) {
        Scheduler::retire(self, function, version);
    }

    fn set_reserved(&self, function: &str, reserved: Option<u32>) {
        Scheduler::set_reserved(self, function, reserved);
    }

    fn sync_provisioned(&self, function: &str, targets: Vec<(Arc<FunctionRecord>, usize)>) {
        Scheduler::sync_provisioned(self, function, targets);
    }
}

/// A provisioned target as applied: the version's revision and how many environments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    revision_id: String,
    environments: usize,
}

/// What the pools of one function were last made to match.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Applied {
    /// Version (`$LATEST` or a number) → its revision.
    revisions: BTreeMap<String, String>,
    reserved: Option<u32>,
    /// Version → its provisioned target.
    provisioned: BTreeMap<String, Target>,
}

/// The provisioned environments a document asks for, per version: settings on an
/// alias count for its primary version and add up with the version's own.
fn provisioned_targets(
    document: &FunctionDocument,
) -> BTreeMap<String, (Arc<FunctionRecord>, usize)> {
    let mut targets: BTreeMap<String, (Arc<FunctionRecord>, usize)> = BTreeMap::new();
    for (qualifier, config) in &document.provisioned {
        let Some(version) = document.primary_version(qualifier) else {
            continue;
        };
        let Some(record) = document.version(&version) else {
            continue;
        };
        targets
            .entry(version)
            .or_insert_with(|| (record.clone(), 0))
            .1 += config.requested as usize;
    }
    targets
}

/// Makes pools match documents; see the module's documentation.
pub struct Reconciler<P> {
    pools: P,
    applied: HashMap<String, Applied>,
}

impl<P: PoolControl> Reconciler<P> {
    pub fn new(pools: P) -> Self {
        Self {
            pools,
            applied: HashMap::new(),
        }
    }

    /// Makes the pools of `document`'s function match it.
    pub fn reconcile(&mut self, document: &FunctionDocument) {
        let key = document.key();
        let name: &str = &key;
        let before = self.applied.remove(name).unwrap_or_default();
        let revisions: BTreeMap<String, String> = std::iter::once(&document.latest)
            .chain(document.versions.iter())
            .map(|r| (r.version.clone(), r.revision_id.clone()))
            .collect();
        for (version, revision) in &before.revisions {
            if revisions.get(version) != Some(revision) {
                tracing::debug!(function = %name, %version, "retiring environments of an old revision");
                self.pools.retire(name, Some(version));
            }
        }
        if before.reserved != document.reserved_concurrency {
            self.pools.set_reserved(name, document.reserved_concurrency);
        }
        let targets = provisioned_targets(document);
        let provisioned: BTreeMap<String, Target> = targets
            .iter()
            .map(|(version, (record, environments))| {
                let target = Target {
                    revision_id: record.revision_id.clone(),
                    environments: *environments,
                };
                (version.clone(), target)
            })
            .collect();
        if before.provisioned != provisioned {
            self.pools
                .sync_provisioned(name, targets.into_values().collect());
        }
        self.applied.insert(
            name.to_string(),
            Applied {
                revisions,
                reserved: document.reserved_concurrency,
                provisioned,
            },
        );
    }

    /// Retires everything of a deleted function and forgets it.
    pub fn reconcile_deleted(&mut self, name: &str) {
        self.applied.remove(name);
        self.pools.retire(name, None);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::document::{Alias, ProvisionedConfig};
    use crate::function::{LATEST, sample_record};

    /// One pool operation, as the fake saw it.
    #[derive(Debug, PartialEq, Eq)]
    enum Call {
        Retire(Option<String>),
        Reserved(Option<u32>),
        /// (version, revision, environments) per target.
        Provisioned(Vec<(String, String, usize)>),
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Call>>);

    impl Recorder {
        fn take(&self) -> Vec<Call> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl PoolControl for Arc<Recorder> {
        fn retire(&self, function: &str, version: Option<&str>) {
            assert_eq!(function, "f");
            self.0
                .lock()
                .unwrap()
                .push(Call::Retire(version.map(String::from)));
        }

        fn set_reserved(&self, function: &str, reserved: Option<u32>) {
            assert_eq!(function, "f");
            self.0.lock().unwrap().push(Call::Reserved(reserved));
        }

        fn sync_provisioned(&self, function: &str, targets: Vec<(Arc<FunctionRecord>, usize)>) {
            assert_eq!(function, "f");
            let targets = targets
                .into_iter()
                .map(|(r, n)| (r.version.clone(), r.revision_id.clone(), n))
                .collect();
            self.0.lock().unwrap().push(Call::Provisioned(targets));
        }
    }

    fn record(version: &str, revision: &str) -> Arc<FunctionRecord> {
        let mut record = sample_record("f", version, "code");
        record.revision_id = revision.into();
        Arc::new(record)
    }

    /// `$LATEST` at revision `l0`, versions 1 and 2 at `r1` and `r2`.
    fn document() -> FunctionDocument {
        let mut doc = FunctionDocument::new((*record(LATEST, "l0")).clone());
        doc.versions = vec![record("1", "r1"), record("2", "r2")];
        doc.next_version = 3;
        doc
    }

    fn alias(name: &str, version: &str) -> Alias {
        Alias {
            name: name.into(),
            function_version: version.into(),
            description: String::new(),
            additional_weights: BTreeMap::new(),
            revision_id: "a".into(),
        }
    }

    fn provision(doc: &mut FunctionDocument, qualifier: &str, requested: u32) {
        let config = ProvisionedConfig {
            requested,
            last_modified_ms: 0,
        };
        doc.provisioned.insert(qualifier.into(), config);
    }

    fn set_revision(doc: &mut FunctionDocument, version: &str, revision: &str) {
        let record = std::iter::once(&mut doc.latest)
            .chain(doc.versions.iter_mut())
            .find(|r| r.version == version)
            .unwrap();
        Arc::make_mut(record).revision_id = revision.into();
    }

    fn target(version: &str, revision: &str, n: usize) -> (String, String, usize) {
        (version.into(), revision.into(), n)
    }

    /// The calls reconciling `before` changed by `change` makes, once `before` is applied.
    fn calls_for(
        before: &FunctionDocument,
        change: impl FnOnce(&mut FunctionDocument),
    ) -> Vec<Call> {
        let (mut reconciler, recorder) = applied(before);
        let mut after = before.clone();
        change(&mut after);
        reconciler.reconcile(&after);
        recorder.take()
    }

    /// `document()` with alias `live` on version 1 and two provisioned environments on it.
    fn live_provisioned() -> FunctionDocument {
        let mut doc = document();
        doc.aliases.insert("live".into(), alias("live", "1"));
        provision(&mut doc, "live", 2);
        doc
    }

    /// A reconciler that has already applied `before`, and its recorder emptied.
    fn applied(before: &FunctionDocument) -> (Reconciler<Arc<Recorder>>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let mut reconciler = Reconciler::new(recorder.clone());
        reconciler.reconcile(before);
        recorder.take();
        (reconciler, recorder)
    }

    #[test]
    fn a_new_function_without_settings_needs_nothing() {
        let recorder = Arc::new(Recorder::default());
        let mut reconciler = Reconciler::new(recorder.clone());
        reconciler.reconcile(&document());
        assert_eq!(recorder.take(), []);
    }

    #[test]
    fn a_stored_document_sets_its_reservation_and_provisioned_pools() {
        let recorder = Arc::new(Recorder::default());
        let mut reconciler = Reconciler::new(recorder.clone());
        let mut doc = document();
        doc.reserved_concurrency = Some(7);
        provision(&mut doc, "2", 3);
        reconciler.reconcile(&doc);
        assert_eq!(
            recorder.take(),
            [
                Call::Reserved(Some(7)),
                Call::Provisioned(vec![target("2", "r2", 3)])
            ]
        );
    }

    #[test]
    fn the_same_document_again_changes_nothing() {
        let mut doc = live_provisioned();
        doc.reserved_concurrency = Some(7);
        assert_eq!(calls_for(&doc, |_| {}), []);
    }

    #[test]
    fn an_update_of_latest_retires_latest_only() {
        let calls = calls_for(&document(), |doc| set_revision(doc, LATEST, "l1"));
        assert_eq!(calls, [Call::Retire(Some(LATEST.into()))]);
    }

    #[test]
    fn publishing_and_aliases_without_provisioned_settings_retire_nothing() {
        let calls = calls_for(&document(), |doc| {
            doc.versions.push(record("3", "r3"));
            doc.aliases.insert("live".into(), alias("live", "3"));
        });
        assert_eq!(calls, []);
    }

    #[test]
    fn a_network_change_retires_every_version_and_replaces_provisioned_ones() {
        let calls = calls_for(&live_provisioned(), |doc| {
            for (version, revision) in [(LATEST, "l1"), ("1", "r1b"), ("2", "r2b")] {
                set_revision(doc, version, revision);
            }
        });
        assert_eq!(
            calls,
            [
                Call::Retire(Some("$LATEST".into())),
                Call::Retire(Some("1".into())),
                Call::Retire(Some("2".into())),
                Call::Provisioned(vec![target("1", "r1b", 2)]),
            ]
        );
    }

    #[test]
    fn a_deleted_version_is_retired_and_its_provisioned_pool_emptied() {
        let mut before = document();
        provision(&mut before, "2", 1);
        let calls = calls_for(&before, |doc| {
            doc.versions.retain(|r| r.version != "2");
            doc.provisioned.remove("2");
        });
        assert_eq!(
            calls,
            [Call::Retire(Some("2".into())), Call::Provisioned(vec![])]
        );
    }

    #[test]
    fn moving_an_alias_moves_its_provisioned_environments() {
        let calls = calls_for(&live_provisioned(), |doc| {
            doc.aliases.insert("live".into(), alias("live", "2"));
        });
        assert_eq!(calls, [Call::Provisioned(vec![target("2", "r2", 2)])]);
    }

    #[test]
    fn deleting_an_alias_removes_its_provisioned_environments() {
        let mut before = live_provisioned();
        provision(&mut before, "2", 1);
        let calls = calls_for(&before, |doc| {
            doc.aliases.remove("live");
            doc.provisioned.remove("live");
        });
        assert_eq!(calls, [Call::Provisioned(vec![target("2", "r2", 1)])]);
    }

    #[test]
    fn settings_on_an_alias_and_its_version_add_up() {
        let calls = calls_for(&document(), |doc| {
            doc.aliases.insert("live".into(), alias("live", "1"));
            provision(doc, "live", 2);
            provision(doc, "1", 3);
        });
        assert_eq!(calls, [Call::Provisioned(vec![target("1", "r1", 5)])]);
    }

    #[test]
    fn reserved_concurrency_is_set_changed_and_cleared() {
        let before = document();
        let (mut reconciler, recorder) = applied(&before);
        let mut after = before.clone();
        for reserved in [Some(5), Some(0), None] {
            after.reserved_concurrency = reserved;
            reconciler.reconcile(&after);
            assert_eq!(recorder.take(), [Call::Reserved(reserved)]);
        }
    }

    #[test]
    fn a_deleted_function_is_retired_whole_and_forgotten() {
        let mut before = document();
        before.reserved_concurrency = Some(5);
        let (mut reconciler, recorder) = applied(&before);
        reconciler.reconcile_deleted("f");
        assert_eq!(recorder.take(), [Call::Retire(None)]);
        // A new function of the same name starts from nothing: no old version to retire.
        let mut again = FunctionDocument::new((*record(LATEST, "new")).clone());
        again.reserved_concurrency = Some(5);
        reconciler.reconcile(&again);
        assert_eq!(recorder.take(), [Call::Reserved(Some(5))]);
    }
}
