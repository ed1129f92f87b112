//! The function registry: the authoritative set of functions, persisted and cached.
//!
//! Every control-plane change goes through here: validated, its code stored, the record
//! committed to the [`FunctionStore`], and only then published to the in-memory cache the
//! invoke path reads (so a lookup on the hot path never touches the database). Writes are
//! serialised by one async mutex; reads never wait for them.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::code::{CodeError, CodeStore};
use crate::function::{FunctionRecord, FunctionSpec};
use crate::runtimes::RuntimeCatalog;
use crate::store::{FunctionStore, LogStore, StoreError};
use crate::timefmt::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Function not found: {0}")]
    NotFound(String),
    #[error("Function already exist: {0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(name) => Self::AlreadyExists(name),
            StoreError::NotFound(name) => Self::NotFound(name),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CodeError> for RegistryError {
    fn from(e: CodeError) -> Self {
        if e.is_client_error() {
            Self::Invalid(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

/// The fields of UpdateFunctionConfiguration; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ConfigPatch {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub description: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub ephemeral_storage_mb: Option<u32>,
    pub environment: Option<BTreeMap<String, String>>,
}

pub struct Registry {
    functions: Arc<dyn FunctionStore>,
    logs: Arc<dyn LogStore>,
    code: CodeStore,
    runtimes: Arc<RuntimeCatalog>,
    cache: RwLock<BTreeMap<String, Arc<FunctionRecord>>>,
    writes: tokio::sync::Mutex<()>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Internal(format!("background task failed: {e}")))?
}

impl Registry {
    pub fn open(
        functions: Arc<dyn FunctionStore>,
        logs: Arc<dyn LogStore>,
        code: CodeStore,
        runtimes: Arc<RuntimeCatalog>,
    ) -> Result<Self, RegistryError> {
        let records = functions.load_functions()?;
        // Code no function refers to (left by updates and deletes) is removed at start,
        // when no environment can still be running it.
        let in_use: HashSet<String> = records.iter().map(|r| r.code.sha256_hex.clone()).collect();
        code.remove_unreferenced(&in_use)
            .map_err(|e| RegistryError::Internal(e.to_string()))?;
        let cache = records
            .into_iter()
            .map(|r| (r.spec.name.clone(), Arc::new(r)))
            .collect();
        Ok(Self {
            functions,
            logs,
            code,
            runtimes,
            cache: RwLock::new(cache),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<FunctionRecord>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn require(
        &self,
        name: &str,
        arn: impl FnOnce() -> String,
    ) -> Result<Arc<FunctionRecord>, RegistryError> {
        self.get(name).ok_or_else(|| RegistryError::NotFound(arn()))
    }

    /// Functions in name order, starting after `marker`, at most `limit`; with the next marker.
    pub fn list(
        &self,
        marker: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<FunctionRecord>>, Option<String>) {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut iter: Box<dyn Iterator<Item = &Arc<FunctionRecord>>> = match marker {
            Some(m) => Box::new(
                cache
                    .range::<str, _>((std::ops::Bound::Excluded(m), std::ops::Bound::Unbounded))
                    .map(|(_, r)| r),
            ),
            None => Box::new(cache.values()),
        };
        let page: Vec<_> = iter.by_ref().take(limit).cloned().collect();
        let next = if iter.next().is_some() {
            page.last().map(|r| r.spec.name.clone())
        } else {
            None
        };
        (page, next)
    }

    pub fn count(&self) -> usize {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn total_code_size(&self) -> u64 {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashSet::new();
        cache
            .values()
            .filter(|r| seen.insert(r.code.sha256_hex.clone()))
            .map(|r| r.code.size)
            .sum()
    }

    fn publish(&self, record: Arc<FunctionRecord>) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.spec.name.clone(), record);
    }

    fn check_runtime(&self, runtime: &str) -> Result<(), RegistryError> {
        self.runtimes
            .check(runtime)
            .map(|_| ())
            .map_err(|e| RegistryError::Invalid(e.to_string()))
    }

    pub async fn create(
        &self,
        spec: FunctionSpec,
        zip: Vec<u8>,
    ) -> Result<Arc<FunctionRecord>, RegistryError> {
        self.check_runtime(&spec.runtime)?;
        let _guard = self.writes.lock().await;
        if self.get(&spec.name).is_some() {
            return Err(RegistryError::AlreadyExists(spec.name));
        }
        let code_store = self.code.clone();
        let code = blocking(move || code_store.put(&zip).map_err(RegistryError::from)).await?;
        let record = FunctionRecord {
            spec,
            code,
            last_modified_ms: now_ms(),
            revision_id: uuid::Uuid::new_v4().to_string(),
        };
        let store = self.functions.clone();
        let to_store = record.clone();
        blocking(move || {
            store
                .insert_function(&to_store)
                .map_err(RegistryError::from)
        })
        .await?;
        let record = Arc::new(record);
        self.publish(record.clone());
        Ok(record)
    }

    async fn replace(&self, record: FunctionRecord) -> Result<Arc<FunctionRecord>, RegistryError> {
        let store = self.functions.clone();
        let to_store = record.clone();
        blocking(move || {
            store
                .update_function(&to_store)
                .map_err(RegistryError::from)
        })
        .await?;
        let record = Arc::new(record);
        self.publish(record.clone());
        Ok(record)
    }

    pub async fn update_code(
        &self,
        name: &str,
        zip: Vec<u8>,
        arn: String,
    ) -> Result<Arc<FunctionRecord>, RegistryError> {
        let _guard = self.writes.lock().await;
        let current = self.require(name, || arn)?;
        let code_store = self.code.clone();
        let code = blocking(move || code_store.put(&zip).map_err(RegistryError::from)).await?;
        let mut record = (*current).clone();
        record.code = code;
        record.last_modified_ms = now_ms();
        record.revision_id = uuid::Uuid::new_v4().to_string();
        self.replace(record).await
    }

    pub async fn update_configuration(
        &self,
        name: &str,
        patch: ConfigPatch,
        arn: String,
    ) -> Result<Arc<FunctionRecord>, RegistryError> {
        if let Some(runtime) = &patch.runtime {
            self.check_runtime(runtime)?;
        }
        let _guard = self.writes.lock().await;
        let current = self.require(name, || arn)?;
        let mut record = (*current).clone();
        let spec = &mut record.spec;
        if let Some(v) = patch.runtime {
            spec.runtime = v;
        }
        if let Some(v) = patch.handler {
            spec.handler = v;
        }
        if let Some(v) = patch.role {
            spec.role = v;
        }
        if let Some(v) = patch.description {
            spec.description = v;
        }
        if let Some(v) = patch.memory_mb {
            spec.memory_mb = v;
        }
        if let Some(v) = patch.timeout_s {
            spec.timeout_s = v;
        }
        if let Some(v) = patch.ephemeral_storage_mb {
            spec.ephemeral_storage_mb = v;
        }
        if let Some(v) = patch.environment {
            spec.environment = v;
        }
        record.last_modified_ms = now_ms();
        record.revision_id = uuid::Uuid::new_v4().to_string();
        self.replace(record).await
    }

    pub async fn delete(&self, name: &str, arn: String) -> Result<(), RegistryError> {
        let _guard = self.writes.lock().await;
        self.require(name, || arn)?;
        let store = self.functions.clone();
        let logs = self.logs.clone();
        let owned = name.to_string();
        blocking(move || {
            store.delete_function(&owned)?;
            logs.delete_logs(&owned)?;
            Ok(())
        })
        .await?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    pub fn logs(&self) -> Arc<dyn LogStore> {
        self.logs.clone()
    }
}

impl Registry {
    pub fn code_store(&self) -> &CodeStore {
        &self.code
    }
}
