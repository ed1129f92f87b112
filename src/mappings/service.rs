//! The mappings service: create, read, change and delete mappings, each change committed
//! before it is answered and announced to the supervisor (a `watch` of a generation
//! number), which starts, restarts or stops the pollers to match.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::spec::{self, MappingInput};
use super::store::MappingStore;
use super::{Mapping, MappingError, MappingState};
use crate::arn::Arn;
use crate::function::ArnContext;
use crate::queues::QueueService;
use crate::registry::Registry;
use crate::timefmt::now_ms;

/// Most mappings a list returns when `MaxItems` is not given.
pub const LIST_DEFAULT: usize = 100;

pub struct Mappings {
    store: MappingStore,
    /// Every mapping by UUID; `last_processing_result` is kept here only.
    cache: RwLock<BTreeMap<String, Mapping>>,
    registry: Arc<Registry>,
    queues: Arc<QueueService>,
    /// The account in the data directory's home region.
    arns: ArnContext,
    changed: watch::Sender<u64>,
}

impl Mappings {
    pub fn open(
        path: &Path,
        registry: Arc<Registry>,
        queues: Arc<QueueService>,
        arns: ArnContext,
    ) -> Result<Arc<Self>, MappingError> {
        let store = MappingStore::open(path)?;
        let cache = store
            .load()?
            .into_iter()
            .map(|m| (m.uuid.clone(), m))
            .collect();
        Ok(Arc::new(Self {
            store,
            cache: RwLock::new(cache),
            registry,
            queues,
            arns,
            changed: watch::Sender::new(0),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Mapping>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Mapping>> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    fn announce(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Resolves to the supervisor's next turn after each change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every mapping, as it is now.
    pub fn snapshot(&self) -> Vec<Mapping> {
        self.read().values().cloned().collect()
    }

    pub fn queues(&self) -> &Arc<QueueService> {
        &self.queues
    }

    /// The ARN of the mapping (`...:event-source-mapping:<uuid>`).
    pub fn arn(&self, mapping: &Mapping) -> String {
        format!(
            "arn:aws:lambda:{}:{}:event-source-mapping:{}",
            mapping.region, self.arns.account_id, mapping.uuid
        )
    }

    /// The ARN of the mapping's function, with its qualifier when it names one.
    pub fn function_arn(&self, mapping: &Mapping) -> String {
        let (arns, name) = self.arns.of_key(&mapping.function);
        match &mapping.qualifier {
            Some(q) => arns.qualified_arn(name, q),
            None => arns.function_arn(name),
        }
    }

    /// Checks that the function (and its qualifier) exists.
    fn check_function(&self, key: &str, qualifier: Option<&str>) -> Result<(), MappingError> {
        let (arns, name) = self.arns.of_key(key);
        let document = self.registry.get(key).ok_or_else(|| {
            MappingError::NotFound(format!("Function not found: {}", arns.function_arn(name)))
        })?;
        if let Some(q) = qualifier
            && document.primary_version(q).is_none()
        {
            return Err(MappingError::NotFound(format!(
                "Function not found: {}",
                arns.qualified_arn(name, q)
            )));
        }
        Ok(())
    }

    /// The queue key an SQS ARN names, in the request's region `scope`; the queue must
    /// exist.
    fn queue_of(&self, scope: &ArnContext, source_arn: &str) -> Result<String, MappingError> {
        let invalid = |why: String| MappingError::Invalid(why);
        let arn = Arn::parse(source_arn)
            .map_err(|e| invalid(format!("Invalid event source ARN {source_arn}: {e}")))?;
        if arn.service != "sqs" {
            return Err(invalid(format!(
                "Unsupported event source type for {source_arn}: this server maps Amazon SQS queues."
            )));
        }
        if arn.account != scope.account_id {
            return Err(invalid(format!(
                "The queue {source_arn} belongs to account {}, not to this server's account {}",
                arn.account, scope.account_id
            )));
        }
        if arn.region != scope.region {
            return Err(invalid(format!(
                "The queue {source_arn} is in region {}; a mapping's queue must be in its function's region, {}",
                arn.region, scope.region
            )));
        }
        let name = arn
            .queue_name()
            .map_err(|e| invalid(format!("Invalid event source ARN {source_arn}: {e}")))?;
        crate::queues::validate_name(name)
            .map_err(|e| invalid(format!("Invalid event source ARN {source_arn}: {e}")))?;
        let key = scope.key(name).into_owned();
        self.queues.info(&key).map_err(|_| {
            invalid(
                "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. \
                 SQS Error Message: The specified queue does not exist or you do not have access to it."
                    .into(),
            )
        })?;
        Ok(key)
    }

    fn conflict_of(&self, mapping: &Mapping) -> Result<(), MappingError> {
        let cache = self.read();
        if let Some(other) = cache.values().find(|m| {
            m.uuid != mapping.uuid
                && m.queue == mapping.queue
                && m.function == mapping.function
                && m.qualifier == mapping.qualifier
        }) {
            return Err(MappingError::Conflict(format!(
                "An event source mapping with SQS arn (\" {} \") and function (\" {} \") already exists. \
                 Please update or delete the existing mapping with UUID {}",
                other.source_arn,
                self.arns.of_key(&other.function).1,
                other.uuid
            )));
        }
        Ok(())
    }

    /// CreateEventSourceMapping in region `scope`; answers the mapping (`Creating`).
    pub fn create(
        &self,
        scope: &ArnContext,
        input: MappingInput,
    ) -> Result<(Mapping, MappingState), MappingError> {
        let source_arn = input.source_arn.clone().ok_or_else(|| {
            MappingError::Invalid("Unrecognized event source, must be an Amazon SQS queue ARN: EventSourceArn is required.".into())
        })?;
        let (function, qualifier) = input
            .function
            .clone()
            .ok_or_else(|| MappingError::Invalid("FunctionName is required.".into()))?;
        let tags = input.tags.clone().unwrap_or_default();
        crate::function::validate_tags(&tags).map_err(|e| MappingError::Invalid(e.to_string()))?;
        let change = spec::check(input)?;
        self.check_function(&function, qualifier.as_deref())?;
        let queue = self.queue_of(scope, &source_arn)?;
        let mut mapping = Mapping::new(
            uuid::Uuid::new_v4().to_string(),
            (function, qualifier),
            (source_arn, queue),
            scope.region.clone(),
        );
        mapping.tags = tags;
        spec::apply(&mut mapping, change);
        spec::check_whole(&mapping, mapping.queue.ends_with(".fifo"))?;
        self.conflict_of(&mapping)?;
        self.store.put(&mapping)?;
        self.write().insert(mapping.uuid.clone(), mapping.clone());
        self.announce();
        tracing::info!(uuid = %mapping.uuid, function = %mapping.function, queue = %mapping.queue, "event source mapping created");
        Ok((mapping, MappingState::Creating))
    }

    /// The mapping `uuid` in region `scope`.
    pub fn get(&self, scope: &ArnContext, uuid: &str) -> Result<Mapping, MappingError> {
        self.read()
            .get(uuid)
            .filter(|m| m.region == scope.region)
            .cloned()
            .ok_or_else(|| {
                MappingError::NotFound(format!(
                    "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})"
                ))
            })
    }

    /// UpdateEventSourceMapping; answers the mapping and its transitional state.
    pub fn update(
        &self,
        scope: &ArnContext,
        uuid: &str,
        input: MappingInput,
    ) -> Result<(Mapping, MappingState), MappingError> {
        let mut mapping = self.get(scope, uuid)?;
        let was_enabled = mapping.enabled;
        let change = spec::check(input)?;
        if let Some((function, qualifier)) = &change.function {
            self.check_function(function, qualifier.as_deref())?;
        }
        spec::apply(&mut mapping, change);
        spec::check_whole(&mapping, mapping.queue.ends_with(".fifo"))?;
        self.conflict_of(&mapping)?;
        mapping.last_modified_ms = now_ms();
        self.store.put(&mapping)?;
        self.write().insert(mapping.uuid.clone(), mapping.clone());
        self.announce();
        let state = match (was_enabled, mapping.enabled) {
            (false, true) => MappingState::Enabling,
            (true, false) => MappingState::Disabling,
            _ => MappingState::Updating,
        };
        tracing::info!(uuid = %mapping.uuid, enabled = mapping.enabled, "event source mapping updated");
        Ok((mapping, state))
    }

    /// TagResource / UntagResource on a mapping: adds `add`, removes `remove`.
    pub fn retag(
        &self,
        scope: &ArnContext,
        uuid: &str,
        add: std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), MappingError> {
        let mut mapping = self.get(scope, uuid)?;
        mapping.tags.extend(add);
        for key in remove {
            mapping.tags.remove(key);
        }
        crate::function::validate_tags(&mapping.tags)
            .map_err(|e| MappingError::Invalid(e.to_string()))?;
        self.store.put(&mapping)?;
        self.write().insert(mapping.uuid.clone(), mapping);
        Ok(())
    }

    /// DeleteEventSourceMapping; answers the mapping as it was (`Deleting`).
    pub fn delete(&self, scope: &ArnContext, uuid: &str) -> Result<Mapping, MappingError> {
        let mapping = self.get(scope, uuid)?;
        self.store.delete(uuid)?;
        self.write().remove(uuid);
        self.announce();
        tracing::info!(uuid = %uuid, "event source mapping deleted");
        Ok(mapping)
    }

    /// Deletes every mapping of the function `key` (it was deleted).
    pub fn delete_for_function(&self, key: &str) {
        let doomed: Vec<String> = self
            .read()
            .values()
            .filter(|m| m.function == key)
            .map(|m| m.uuid.clone())
            .collect();
        for uuid in &doomed {
            if let Err(e) = self.store.delete(uuid) {
                tracing::error!(uuid = %uuid, error = %e, "deleting the mapping of a deleted function failed");
                continue;
            }
            self.write().remove(uuid);
        }
        if !doomed.is_empty() {
            tracing::info!(function = %key, mappings = doomed.len(), "event source mappings of a deleted function deleted");
            self.announce();
        }
    }

    /// ListEventSourceMappings in region `scope`: by function (all its qualifiers when
    /// unqualified) and queue ARN, in UUID order after `marker`, at most `max`; with the
    /// next marker.
    pub fn list(
        &self,
        scope: &ArnContext,
        function: Option<(String, Option<String>)>,
        source_arn: Option<&str>,
        marker: Option<&str>,
        max: usize,
    ) -> (Vec<Mapping>, Option<String>) {
        let cache = self.read();
        let mut matching = cache
            .values()
            .filter(|m| m.region == scope.region)
            .filter(|m| match &function {
                Some((key, None)) => &m.function == key,
                Some((key, qualifier)) => &m.function == key && &m.qualifier == qualifier,
                None => true,
            })
            .filter(|m| source_arn.is_none_or(|arn| m.source_arn == arn))
            .filter(|m| marker.is_none_or(|after| m.uuid.as_str() > after));
        let page: Vec<Mapping> = matching.by_ref().take(max).cloned().collect();
        let next = (matching.next().is_some())
            .then(|| page.last().map(|m| m.uuid.clone()))
            .flatten();
        (page, next)
    }

    /// Records the outcome of a mapping's last batch (`LastProcessingResult`).
    pub fn record_result(&self, uuid: &str, result: &'static str) {
        if let Some(m) = self.write().get_mut(uuid)
            && m.last_processing_result != result
        {
            m.last_processing_result = result.to_string();
        }
    }
}
