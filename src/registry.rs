//! The function registry: the authoritative set of functions, persisted and cached.
//!
//! Every control-plane change goes through here: validated, its code stored, the new
//! [`FunctionDocument`] committed to the [`FunctionStore`], and only then published to the
//! in-memory cache the invoke path reads (so a lookup on the hot path never touches the
//! database). Changes to one function are read-modify-write of its whole document under
//! one async mutex; reads never wait for them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::code::{CodeError, CodeStore};
use crate::document::FunctionDocument;
use crate::function::{ArnContext, FunctionRecord, FunctionSpec, LATEST, NetworkMode, tag_limits};
use crate::runtimes::RuntimeCatalog;
use crate::store::{FunctionStore, LogStore, StoreError};
use crate::timefmt::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Function not found: {0}")]
    NotFound(String),
    /// A version, alias or setting of an existing function that does not exist.
    #[error("{0}")]
    Missing(String),
    #[error("Function already exist: {0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// A function's resource policy would pass its size limit.
    #[error("{0}")]
    PolicyTooLarge(String),
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
    /// `Some("")` removes the dead-letter target.
    pub dead_letter_target: Option<String>,
    /// `Some(vec![])` removes every layer.
    pub layers: Option<Vec<crate::function::LayerRef>>,
    /// The settings as they become (already merged with the current ones).
    pub settings: Option<crate::function_settings::FunctionSettings>,
}

pub struct Registry {
    functions: Arc<dyn FunctionStore>,
    logs: Arc<dyn LogStore>,
    code: CodeStore,
    runtimes: Arc<RuntimeCatalog>,
    cache: RwLock<BTreeMap<String, Arc<FunctionDocument>>>,
    /// Function URL id -> (function key, qualifier), kept with the cache.
    urls: RwLock<HashMap<String, (String, String)>>,
    writes: tokio::sync::Mutex<()>,
}

/// The URL ids of `document`, with what each serves.
fn urls_of(document: &FunctionDocument) -> impl Iterator<Item = (String, (String, String))> + '_ {
    let key = document.key().into_owned();
    document
        .urls
        .iter()
        .map(move |(qualifier, url)| (url.url_id.clone(), (key.clone(), qualifier.clone())))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Internal(format!("background task failed: {e}")))?
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn network_of(tags: &BTreeMap<String, String>) -> Result<NetworkMode, RegistryError> {
    NetworkMode::from_tags(tags).map_err(|e| RegistryError::Invalid(e.0))
}

fn check_tag_count(tags: &BTreeMap<String, String>) -> Result<(), RegistryError> {
    if tags.len() > tag_limits::COUNT_MAX {
        return Err(RegistryError::Invalid(format!(
            "A function can have at most {} tags; this change would leave {}",
            tag_limits::COUNT_MAX,
            tags.len()
        )));
    }
    Ok(())
}

impl Registry {
    pub fn open(
        functions: Arc<dyn FunctionStore>,
        logs: Arc<dyn LogStore>,
        code: CodeStore,
        runtimes: Arc<RuntimeCatalog>,
        also_in_use: &[String],
    ) -> Result<Self, RegistryError> {
        let documents = functions.load_functions()?;
        // Code no version (and no layer version: `also_in_use`) refers to, left by updates
        // and deletes, is removed at start, when no environment can still be running it.
        let in_use: HashSet<String> = documents
            .iter()
            .flat_map(|d| std::iter::once(&d.latest).chain(d.versions.iter()))
            .flat_map(|r| {
                std::iter::once(r.code.sha256_hex.clone())
                    .chain(r.spec.layers.iter().map(|l| l.code.sha256_hex.clone()))
            })
            .chain(also_in_use.iter().cloned())
            .collect();
        code.remove_unreferenced(&in_use)
            .map_err(|e| RegistryError::Internal(e.to_string()))?;
        let urls = documents.iter().flat_map(urls_of).collect();
        let cache = documents
            .into_iter()
            .map(|d| (d.key().into_owned(), Arc::new(d)))
            .collect();
        Ok(Self {
            functions,
            logs,
            code,
            runtimes,
            cache: RwLock::new(cache),
            urls: RwLock::new(urls),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The function of this key (see `crate::region`: its name in the home region,
    /// `region/name` elsewhere).
    pub fn get(&self, key: &str) -> Option<Arc<FunctionDocument>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn require(
        &self,
        key: &str,
        arn: impl FnOnce() -> String,
    ) -> Result<Arc<FunctionDocument>, RegistryError> {
        self.get(key).ok_or_else(|| RegistryError::NotFound(arn()))
    }

    /// Every function, for start-up reconciliation.
    pub fn all(&self) -> Vec<Arc<FunctionDocument>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The functions of one region in name order, starting after `marker`, at most
    /// `limit`; with the next marker.
    pub fn list(
        &self,
        region: &ArnContext,
        marker: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<FunctionDocument>>, Option<String>) {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut iter = cache
            .iter()
            .filter_map(|(key, d)| region.name_in_region(key).map(|name| (name, d)))
            .filter(|(name, _)| marker.is_none_or(|m| *name > m))
            .map(|(_, d)| d);
        let mut page: Vec<_> = iter.by_ref().cloned().collect();
        // Keys of a region other than the home one sort by region first, then by name.
        page.sort_by(|a, b| a.name().cmp(b.name()));
        let next = (page.len() > limit).then(|| page[limit - 1].name().to_string());
        page.truncate(limit);
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
            .flat_map(|d| std::iter::once(&d.latest).chain(d.versions.iter()))
            .filter(|r| seen.insert(r.code.sha256_hex.clone()))
            .map(|r| r.code.size)
            .sum()
    }

    /// Sum of reserved concurrency over all functions.
    pub fn reserved_total(&self) -> u64 {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache
            .values()
            .filter_map(|d| d.reserved_concurrency)
            .map(u64::from)
            .sum()
    }

    /// The function and qualifier the function URL `url_id` serves.
    pub fn url(&self, url_id: &str) -> Option<(Arc<FunctionDocument>, String)> {
        let (key, qualifier) = self
            .urls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url_id)
            .cloned()?;
        Some((self.get(&key)?, qualifier))
    }

    fn index_urls(&self, key: &str, document: Option<&FunctionDocument>) {
        let mut urls = self.urls.write().unwrap_or_else(|p| p.into_inner());
        urls.retain(|_, (of, _)| of != key);
        if let Some(document) = document {
            urls.extend(urls_of(document));
        }
    }

    fn publish(&self, document: Arc<FunctionDocument>) {
        let key = document.key().into_owned();
        self.index_urls(&key, Some(&document));
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, document);
    }

    fn check_runtime(&self, runtime: &str) -> Result<(), RegistryError> {
        self.runtimes
            .check(runtime)
            .map(|_| ())
            .map_err(|e| RegistryError::Invalid(e.to_string()))
    }

    async fn store_code(&self, zip: Vec<u8>) -> Result<crate::function::CodeRef, RegistryError> {
        let code_store = self.code.clone();
        blocking(move || code_store.put(&zip).map_err(RegistryError::from)).await
    }

    /// Creates a function; its network mode follows `tags`.
    pub async fn create(
        &self,
        mut spec: FunctionSpec,
        tags: BTreeMap<String, String>,
        zip: Vec<u8>,
    ) -> Result<Arc<FunctionDocument>, RegistryError> {
        self.check_runtime(&spec.runtime)?;
        check_tag_count(&tags)?;
        spec.network = network_of(&tags)?;
        let _guard = self.writes.lock().await;
        if self.get(&spec.key()).is_some() {
            return Err(RegistryError::AlreadyExists(spec.name));
        }
        let code = self.store_code(zip).await?;
        let mut document = FunctionDocument::new(FunctionRecord {
            spec,
            code,
            last_modified_ms: now_ms(),
            revision_id: new_revision(),
            version: LATEST.to_string(),
        });
        document.tags = tags;
        let store = self.functions.clone();
        let to_store = document.clone();
        blocking(move || {
            store
                .insert_function(&to_store)
                .map_err(RegistryError::from)
        })
        .await?;
        let document = Arc::new(document);
        self.publish(document.clone());
        Ok(document)
    }

    /// Applies `change` to a copy of the function's document, commits it, publishes it.
    /// Callers hold the write lock.
    async fn commit<T>(
        &self,
        key: &str,
        arn: String,
        change: impl FnOnce(&mut FunctionDocument) -> Result<T, RegistryError>,
    ) -> Result<(Arc<FunctionDocument>, T), RegistryError> {
        let current = self.require(key, || arn)?;
        let mut document = (*current).clone();
        let result = change(&mut document)?;
        let store = self.functions.clone();
        let to_store = document.clone();
        blocking(move || {
            store
                .update_function(&to_store)
                .map_err(RegistryError::from)
        })
        .await?;
        let document = Arc::new(document);
        self.publish(document.clone());
        Ok((document, result))
    }

    /// Runs `change` on the function's document as one committed write.
    pub async fn modify<T>(
        &self,
        key: &str,
        arn: String,
        change: impl FnOnce(&mut FunctionDocument) -> Result<T, RegistryError>,
    ) -> Result<(Arc<FunctionDocument>, T), RegistryError> {
        let _guard = self.writes.lock().await;
        self.commit(key, arn, change).await
    }

    pub async fn update_code(
        &self,
        key: &str,
        zip: Vec<u8>,
        arn: String,
    ) -> Result<Arc<FunctionDocument>, RegistryError> {
        let _guard = self.writes.lock().await;
        self.require(key, || arn.clone())?;
        let code = self.store_code(zip).await?;
        let (document, ()) = self
            .commit(key, arn, |doc| {
                let latest = Arc::make_mut(&mut doc.latest);
                latest.code = code;
                latest.last_modified_ms = now_ms();
                latest.revision_id = new_revision();
                Ok(())
            })
            .await?;
        Ok(document)
    }

    pub async fn update_configuration(
        &self,
        key: &str,
        patch: ConfigPatch,
        arn: String,
    ) -> Result<Arc<FunctionDocument>, RegistryError> {
        if let Some(runtime) = &patch.runtime {
            self.check_runtime(runtime)?;
        }
        let (document, ()) = self
            .modify(key, arn, |doc| {
                let latest = Arc::make_mut(&mut doc.latest);
                let spec = &mut latest.spec;
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
                if let Some(v) = patch.dead_letter_target {
                    spec.dead_letter_target = (!v.is_empty()).then_some(v);
                }
                if let Some(v) = patch.layers {
                    spec.layers = v;
                }
                if let Some(v) = patch.settings {
                    spec.settings = v;
                }
                latest.last_modified_ms = now_ms();
                latest.revision_id = new_revision();
                Ok(())
            })
            .await?;
        Ok(document)
    }

    /// Adds `add` and removes `remove` from the function's tags as one write. When the
    /// network tag changes, the new mode applies to `$LATEST` and to every published
    /// version (it is a property of the function, like its tags), each with a new
    /// revision so that no environment of the old mode is used again. Returns whether
    /// the network mode changed.
    pub async fn retag(
        &self,
        key: &str,
        arn: String,
        add: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(Arc<FunctionDocument>, bool), RegistryError> {
        self.modify(key, arn, |doc| {
            for key in remove {
                doc.tags.remove(key);
            }
            doc.tags.extend(add);
            check_tag_count(&doc.tags)?;
            let network = network_of(&doc.tags)?;
            if doc.latest.spec.network == network {
                return Ok(false);
            }
            for record in std::iter::once(&mut doc.latest).chain(doc.versions.iter_mut()) {
                let record = Arc::make_mut(record);
                record.spec.network = network;
                record.revision_id = new_revision();
            }
            Ok(true)
        })
        .await
    }

    /// Publishes `$LATEST` as a new immutable version, unless nothing changed since the
    /// newest version (then that version is returned, as Lambda does).
    pub async fn publish_version(
        &self,
        key: &str,
        description: Option<String>,
        arn: String,
    ) -> Result<Arc<FunctionRecord>, RegistryError> {
        let (_, record) = self
            .modify(key, arn, |doc| {
                if !doc.latest_changed_since_last_version()
                    && let Some(last) = doc.versions.last()
                {
                    return Ok(last.clone());
                }
                let mut record = (*doc.latest).clone();
                record.version = doc.next_version.to_string();
                record.revision_id = new_revision();
                record.last_modified_ms = now_ms();
                if let Some(description) = description {
                    record.spec.description = description;
                }
                let record = Arc::new(record);
                doc.next_version += 1;
                doc.versions.push(record.clone());
                Ok(record)
            })
            .await?;
        Ok(record)
    }

    pub async fn delete(&self, key: &str, arn: String) -> Result<(), RegistryError> {
        let _guard = self.writes.lock().await;
        self.require(key, || arn)?;
        let store = self.functions.clone();
        let logs = self.logs.clone();
        let owned = key.to_string();
        blocking(move || {
            store.delete_function(&owned)?;
            logs.delete_logs(&owned)?;
            Ok(())
        })
        .await?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.index_urls(key, None);
        Ok(())
    }

    /// Deletes one published version; refused while an alias or a provisioned
    /// concurrency setting uses it.
    pub async fn delete_version(
        &self,
        name: &str,
        version: &str,
        arns: &ArnContext,
    ) -> Result<(), RegistryError> {
        let qualified = arns.qualified_arn(name, version);
        self.modify(&arns.key(name), arns.function_arn(name), |doc| {
            let Some(index) = doc.versions.iter().position(|v| v.version == version) else {
                return Err(RegistryError::Missing(format!("Function not found: {qualified}")));
            };
            let aliases = doc.aliases_using(version);
            if !aliases.is_empty() {
                return Err(RegistryError::Conflict(format!(
                    "Unable to delete version because the following aliases reference it: {aliases:?}"
                )));
            }
            doc.versions.remove(index);
            doc.provisioned.remove(version);
            doc.policies.remove(version);
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub fn logs(&self) -> Arc<dyn LogStore> {
        self.logs.clone()
    }

    /// The runtimes this host can run.
    pub fn runtimes(&self) -> &RuntimeCatalog {
        &self.runtimes
    }

    pub fn code_store(&self) -> &CodeStore {
        &self.code
    }
}

/// A registry over a fresh store in `dir` holding `documents`, for tests of its readers.
#[cfg(test)]
pub fn test_registry(
    dir: &std::path::Path,
    documents: &[crate::document::FunctionDocument],
) -> Arc<Registry> {
    let store = Arc::new(crate::store::sqlite::SqliteStore::open(&dir.join("shoal.db")).unwrap());
    for document in documents {
        store.insert_function(document).unwrap();
    }
    let runtimes = crate::runtimes::RuntimeCatalog::prepare(
        &dir.join("runtimes"),
        &crate::runtimes::InterpreterSettings {
            python: "python3".into(),
            node: "node".into(),
            overrides: Default::default(),
        },
    )
    .unwrap();
    let code = CodeStore::open(dir.join("code")).unwrap();
    Arc::new(Registry::open(store.clone(), store, code, Arc::new(runtimes), &[]).unwrap())
}
