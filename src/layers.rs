//! Lambda layers: named, versioned zips of code a function can add under `/opt`.
//!
//! Owns the layer model (a [`LayerDocument`] per layer: every version it has had, with
//! its code, settings and permission statements, and the number the next version gets,
//! since numbers are never reused), its validation against Lambda's limits, and the
//! [`Layers`] service: an in-memory cache of every layer over its store, written through
//! one lock so that a publish and a delete never interleave. Code is kept in the code
//! store, once per digest, like functions' code.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::code::CodeStore;
use crate::function::CodeRef;
use crate::policy::Statement;
use crate::region::ArnContext;
use crate::store::{LayerStore, StoreError};

/// Lambda's limits on a version's settings.
const DESCRIPTION_MAX: usize = 256;
const LICENSE_MAX: usize = 512;
const RUNTIMES_MAX: usize = 15;

/// One published version of a layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerVersion {
    pub version: u64,
    pub description: String,
    #[serde(default)]
    pub compatible_runtimes: Vec<String>,
    #[serde(default)]
    pub compatible_architectures: Vec<String>,
    #[serde(default)]
    pub license_info: Option<String>,
    pub created_ms: u64,
    pub code: CodeRef,
    /// Who else may use it (AddLayerVersionPermission).
    #[serde(default)]
    pub policy: Vec<Statement>,
    pub revision_id: String,
}

/// A layer: its versions, and the number the next one gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDocument {
    pub name: String,
    pub next_version: u64,
    pub versions: BTreeMap<u64, LayerVersion>,
}

/// A version's settings as PublishLayerVersion gives them.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error(transparent)]
    Code(#[from] crate::code::CodeError),
    #[error("layer store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// A layer name: 1 to 140 letters, digits, `-` and `_`.
pub fn validate_name(name: &str) -> Result<(), LayerError> {
    if crate::function::is_plain_name(name, 140) {
        Ok(())
    } else {
        Err(LayerError::Invalid(format!(
            "1 validation error detected: Value '{name}' at 'layerName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: \
             (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+"
        )))
    }
}

impl NewVersion {
    pub fn validate(&self) -> Result<(), LayerError> {
        if self.description.chars().count() > DESCRIPTION_MAX {
            return Err(LayerError::Invalid(format!(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: \
                 Member must have length less than or equal to {DESCRIPTION_MAX}"
            )));
        }
        if self
            .license_info
            .as_deref()
            .is_some_and(|l| l.chars().count() > LICENSE_MAX)
        {
            return Err(LayerError::Invalid(format!(
                "1 validation error detected: Value at 'licenseInfo' failed to satisfy constraint: \
                 Member must have length less than or equal to {LICENSE_MAX}"
            )));
        }
        if self.compatible_runtimes.len() > RUNTIMES_MAX {
            return Err(LayerError::Invalid(format!(
                "1 validation error detected: Value at 'compatibleRuntimes' failed to satisfy constraint: \
                 Member must have length less than or equal to {RUNTIMES_MAX}"
            )));
        }
        if let Some(bad) = self
            .compatible_architectures
            .iter()
            .find(|a| !matches!(a.as_str(), "x86_64" | "arm64"))
        {
            return Err(LayerError::Invalid(format!(
                "1 validation error detected: Value '[{bad}]' at 'compatibleArchitectures' failed to satisfy constraint: \
                 Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]"
            )));
        }
        if self.compatible_architectures.len() > 2 {
            return Err(LayerError::Invalid(
                "1 validation error detected: Value at 'compatibleArchitectures' failed to satisfy constraint: \
                 Member must have length less than or equal to 2"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The ARN of a layer (`version: None`) or of one of its versions.
pub fn layer_arn(scope: &ArnContext, name: &str, version: Option<u64>) -> String {
    let base = format!(
        "arn:aws:lambda:{}:{}:layer:{name}",
        scope.region, scope.account_id
    );
    match version {
        Some(v) => format!("{base}:{v}"),
        None => base,
    }
}

/// `(region, account, name, version)` of a layer version ARN.
pub fn parse_version_arn(arn: &str) -> Option<(&str, &str, &str, u64)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, account, "layer", name, version] => {
            Some((region, account, name, version.parse().ok()?))
        }
        _ => None,
    }
}

/// Every layer, over its store.
pub struct Layers {
    store: Arc<dyn LayerStore>,
    code: CodeStore,
    cache: RwLock<BTreeMap<String, Arc<LayerDocument>>>,
    writes: tokio::sync::Mutex<()>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LayerError> + Send + 'static,
) -> Result<T, LayerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LayerError::Internal(format!("background task failed: {e}")))?
}

impl Layers {
    pub fn open(store: Arc<dyn LayerStore>, code: CodeStore) -> Result<Self, LayerError> {
        let mut cache = BTreeMap::new();
        for (key, json) in store.load_layers()? {
            let document: LayerDocument = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("layer {key}: {e}")))?;
            cache.insert(key, Arc::new(document));
        }
        Ok(Self {
            store,
            code,
            cache: RwLock::new(cache),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The code digests every layer version holds (kept when unreferenced code goes).
    pub fn code_in_use(&self) -> Vec<String> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|d| d.versions.values().map(|v| v.code.sha256_hex.clone()))
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<Arc<LayerDocument>> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The layers of one region (by key prefix rule of `ArnContext::name_in_region`), in
    /// name order, with at least one version.
    pub fn list(&self, region: &ArnContext) -> Vec<Arc<LayerDocument>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = cache
            .iter()
            .filter(|(key, d)| region.name_in_region(key).is_some() && !d.versions.is_empty())
            .map(|(_, d)| d.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Runs `change` on layer `key` (a new one, named `name`, when absent) as one
    /// committed write.
    pub async fn modify<T>(
        &self,
        key: &str,
        name: &str,
        change: impl FnOnce(&mut LayerDocument) -> Result<T, LayerError>,
    ) -> Result<(Arc<LayerDocument>, T), LayerError> {
        let _guard = self.writes.lock().await;
        let mut document = self
            .get(key)
            .map(|d| (*d).clone())
            .unwrap_or(LayerDocument {
                name: name.to_string(),
                next_version: 1,
                versions: BTreeMap::new(),
            });
        let result = change(&mut document)?;
        let json = serde_json::to_string(&document)
            .map_err(|e| LayerError::Internal(format!("encoding layer {name}: {e}")))?;
        let store = self.store.clone();
        let owned = key.to_string();
        blocking(move || store.put_layer(&owned, &json).map_err(LayerError::from)).await?;
        let document = Arc::new(document);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), document.clone());
        Ok((document, result))
    }

    /// Publishes a new version of layer `key` (created if new) with the code of `zip`.
    pub async fn publish(
        &self,
        key: &str,
        name: &str,
        zip: Vec<u8>,
        settings: NewVersion,
    ) -> Result<LayerVersion, LayerError> {
        settings.validate()?;
        let code_store = self.code.clone();
        let code = blocking(move || code_store.put(&zip).map_err(LayerError::from)).await?;
        let (_, version) = self
            .modify(key, name, |doc| {
                let version = LayerVersion {
                    version: doc.next_version,
                    description: settings.description,
                    compatible_runtimes: settings.compatible_runtimes,
                    compatible_architectures: settings.compatible_architectures,
                    license_info: settings.license_info,
                    created_ms: crate::timefmt::now_ms(),
                    code,
                    policy: Vec::new(),
                    revision_id: uuid::Uuid::new_v4().to_string(),
                };
                doc.next_version += 1;
                doc.versions.insert(version.version, version.clone());
                Ok(version)
            })
            .await?;
        Ok(version)
    }

    /// Deletes a version (nothing happens when it does not exist, as on Lambda). Its
    /// code stays as long as a function uses it.
    pub async fn delete(&self, key: &str, version: u64) -> Result<(), LayerError> {
        let Some(current) = self.get(key) else {
            return Ok(());
        };
        if !current.versions.contains_key(&version) {
            return Ok(());
        }
        let name = current.name.clone();
        self.modify(key, &name, |doc| {
            doc.versions.remove(&version);
            Ok(())
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_arns_parse() {
        assert_eq!(
            parse_version_arn("arn:aws:lambda:us-east-1:000000000000:layer:deps:3"),
            Some(("us-east-1", "000000000000", "deps", 3))
        );
        assert_eq!(
            parse_version_arn("arn:aws:lambda:us-east-1:000000000000:layer:deps"),
            None
        );
        assert_eq!(
            parse_version_arn("arn:aws:lambda:us-east-1:000000000000:function:f:3"),
            None
        );
    }

    #[test]
    fn settings_are_checked_against_lambdas_limits() {
        assert!(NewVersion::default().validate().is_ok());
        let arch = NewVersion {
            compatible_architectures: vec!["sparc".into()],
            ..NewVersion::default()
        };
        assert!(arch.validate().is_err());
        let long = NewVersion {
            description: "x".repeat(257),
            ..NewVersion::default()
        };
        assert!(long.validate().is_err());
        assert!(validate_name("deps-1_a").is_ok());
        assert!(validate_name("bad name").is_err());
    }
}
