//! The service that keeps HTTP APIs: one document per API in the store (kind
//! [`KIND`]), all of them in memory for the front, every change one committed write.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::HttpApi;
use super::authorizer::Cache;
use crate::store::{DocumentStore, StoreError};

/// The store's kind for API documents.
pub const KIND: &str = "http-api";

/// Why an operation on an API failed, as `apigatewayv2` names it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    NotFound {
        resource_type: &'static str,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// `NotFoundException` for a missing part of an API (`Route`, `Integration`, ...).
    pub fn missing(resource_type: &'static str, id: &str) -> Self {
        Self::NotFound {
            resource_type,
            message: format!("Invalid {resource_type} identifier specified {id}"),
        }
    }
}

/// Every HTTP API, over its store.
pub struct Gateway {
    store: Arc<dyn DocumentStore>,
    cache: RwLock<BTreeMap<String, Arc<HttpApi>>>,
    writes: tokio::sync::Mutex<()>,
    /// Answers of Lambda authorizers, kept for their TTL.
    pub verdicts: Cache,
}

impl Gateway {
    pub fn open(store: Arc<dyn DocumentStore>) -> Result<Self, GatewayError> {
        let mut cache = BTreeMap::new();
        for (key, json) in store.load_documents(KIND)? {
            let api: HttpApi = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("HTTP API {key}: {e}")))?;
            cache.insert(key, Arc::new(api));
        }
        Ok(Self {
            store,
            cache: RwLock::new(cache),
            writes: tokio::sync::Mutex::new(()),
            verdicts: Cache::default(),
        })
    }

    pub fn get(&self, api_id: &str) -> Option<Arc<HttpApi>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(api_id)
            .cloned()
    }

    /// The APIs of `region`, by id.
    pub fn list(&self, region: &str) -> Vec<Arc<HttpApi>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|api| api.region == region)
            .cloned()
            .collect()
    }

    /// The API `api_id` of `region`, or `NotFoundException`.
    pub fn find(&self, region: &str, api_id: &str) -> Result<Arc<HttpApi>, GatewayError> {
        self.get(api_id)
            .filter(|api| api.region == region)
            .ok_or_else(|| GatewayError::missing("API", api_id))
    }

    async fn write(&self, api: &HttpApi) -> Result<(), GatewayError> {
        let json = serde_json::to_string(api)
            .map_err(|e| GatewayError::Internal(format!("encoding API {}: {e}", api.api_id)))?;
        let store = self.store.clone();
        let key = api.api_id.clone();
        tokio::task::spawn_blocking(move || store.put_document(KIND, &key, &json))
            .await
            .map_err(|e| GatewayError::Internal(format!("background task failed: {e}")))??;
        Ok(())
    }

    /// Stores a new API.
    pub async fn create(&self, api: HttpApi) -> Result<Arc<HttpApi>, GatewayError> {
        let _guard = self.writes.lock().await;
        if self.get(&api.api_id).is_some() {
            return Err(GatewayError::Conflict(format!(
                "API {} already exists",
                api.api_id
            )));
        }
        self.write(&api).await?;
        let api = Arc::new(api);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(api.api_id.clone(), api.clone());
        Ok(api)
    }

    /// Runs `change` on API `api_id` of `region` as one committed write.
    pub async fn modify<T>(
        &self,
        region: &str,
        api_id: &str,
        change: impl FnOnce(&mut HttpApi) -> Result<T, GatewayError>,
    ) -> Result<(Arc<HttpApi>, T), GatewayError> {
        let _guard = self.writes.lock().await;
        let mut api = (*self.find(region, api_id)?).clone();
        let result = change(&mut api)?;
        self.write(&api).await?;
        let api = Arc::new(api);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(api.api_id.clone(), api.clone());
        self.verdicts.forget(api_id);
        Ok((api, result))
    }

    pub async fn delete(&self, region: &str, api_id: &str) -> Result<(), GatewayError> {
        let _guard = self.writes.lock().await;
        self.find(region, api_id)?;
        let store = self.store.clone();
        let key = api_id.to_string();
        tokio::task::spawn_blocking(move || store.delete_document(KIND, &key))
            .await
            .map_err(|e| GatewayError::Internal(format!("background task failed: {e}")))??;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(api_id);
        self.verdicts.forget(api_id);
        Ok(())
    }
}
