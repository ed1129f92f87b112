//! Everything persisted about one function: `$LATEST`, its published versions, its
//! aliases and its concurrency settings, as one document.
//!
//! One document per function keeps every change to a function a single atomic write
//! (publishing a version and moving an alias never half-happen). The document is plain
//! data with the rules that only need the document itself: which version a qualifier
//! names, how an alias with a routing configuration picks a version, whether publishing
//! would create a new version.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::function::{ArnContext, FunctionRecord, InvalidField, LATEST};

/// An alias: a name pointing at a version, optionally splitting traffic with a second one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// Additional version and the share of invocations (0.0..=1.0) it receives.
    pub additional_weights: BTreeMap<String, f64>,
    pub revision_id: String,
}

/// How asynchronous invocations of a version or alias are retried and where their
/// results go (Lambda's `FunctionEventInvokeConfig`); `None` fields take Lambda's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_s: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified_ms: u64,
}

impl EventInvokeConfig {
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_MAX_AGE_S: u32 = 21_600;

    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts.unwrap_or(Self::DEFAULT_RETRIES)
    }

    pub fn max_age_ms(&self) -> u64 {
        u64::from(self.maximum_event_age_s.unwrap_or(Self::DEFAULT_MAX_AGE_S)) * 1000
    }
}

/// A provisioned concurrency setting on a version or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConfig {
    pub requested: u32,
    pub last_modified_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDocument {
    pub latest: Arc<FunctionRecord>,
    /// Published versions in increasing order.
    #[serde(default)]
    pub versions: Vec<Arc<FunctionRecord>>,
    /// The number the next published version gets (numbers are never reused).
    #[serde(default = "one")]
    pub next_version: u64,
    #[serde(default)]
    pub aliases: BTreeMap<String, Alias>,
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Keyed by qualifier (a version number or an alias name).
    #[serde(default)]
    pub provisioned: BTreeMap<String, ProvisionedConfig>,
    /// Keyed by qualifier (`$LATEST`, a version number or an alias name).
    #[serde(default)]
    pub event_invoke_configs: BTreeMap<String, EventInvokeConfig>,
    /// The function's tags (Lambda tags functions, not versions or aliases).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Function URLs, keyed by the qualifier they serve (`$LATEST` for the unqualified
    /// function, or an alias name).
    #[serde(default)]
    pub urls: BTreeMap<String, crate::urls::UrlConfig>,
    /// Resource-policy statements, keyed by qualifier (`$LATEST` for the unqualified
    /// function, a version or an alias).
    #[serde(default)]
    pub policies: BTreeMap<String, Vec<crate::policy::Statement>>,
}

impl FunctionDocument {
    /// The resource-policy statements of the function as `qualifier` names it (`None` or
    /// `$LATEST`: the unqualified function).
    pub fn statements(&self, qualifier: Option<&str>) -> &[crate::policy::Statement] {
        let key = match qualifier {
            None | Some(crate::function::LATEST) => "",
            Some(q) => q,
        };
        self.policies
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

fn one() -> u64 {
    1
}

/// What a qualifier designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Version(String),
    Alias(String),
}

impl FunctionDocument {
    pub fn new(latest: FunctionRecord) -> Self {
        Self {
            latest: Arc::new(latest),
            versions: Vec::new(),
            next_version: 1,
            aliases: BTreeMap::new(),
            reserved_concurrency: None,
            provisioned: BTreeMap::new(),
            event_invoke_configs: BTreeMap::new(),
            tags: BTreeMap::new(),
            urls: BTreeMap::new(),
            policies: BTreeMap::new(),
        }
    }

    /// The function's key in the registry and the stores (see `crate::region`).
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        self.latest.spec.key()
    }

    pub fn name(&self) -> &str {
        &self.latest.spec.name
    }

    pub fn version(&self, version: &str) -> Option<&Arc<FunctionRecord>> {
        if version == LATEST {
            return Some(&self.latest);
        }
        self.versions.iter().find(|v| v.version == version)
    }

    /// Classifies a qualifier: digits or `$LATEST` name a version, anything else an alias.
    pub fn target_of(qualifier: &str) -> Target {
        if qualifier == LATEST || qualifier.bytes().all(|b| b.is_ascii_digit()) {
            Target::Version(qualifier.to_string())
        } else {
            Target::Alias(qualifier.to_string())
        }
    }

    /// The version a qualifier designates for an invocation; an alias with a routing
    /// configuration picks its additional version with the configured probability.
    pub fn resolve(&self, qualifier: Option<&str>, roll: f64) -> Option<&Arc<FunctionRecord>> {
        match qualifier.map(Self::target_of) {
            None => Some(&self.latest),
            Some(Target::Version(v)) => self.version(&v),
            Some(Target::Alias(a)) => {
                let alias = self.aliases.get(&a)?;
                let mut threshold = 0.0;
                for (version, weight) in &alias.additional_weights {
                    threshold += weight;
                    if roll < threshold {
                        return self.version(version);
                    }
                }
                self.version(&alias.function_version)
            }
        }
    }

    /// The version a qualifier points at without routing (an alias's primary version).
    pub fn primary_version(&self, qualifier: &str) -> Option<String> {
        match Self::target_of(qualifier) {
            Target::Version(v) => self.version(&v).map(|r| r.version.clone()),
            Target::Alias(a) => self.aliases.get(&a).map(|a| a.function_version.clone()),
        }
    }

    /// True when `$LATEST` differs from the newest published version in code or settings.
    pub fn latest_changed_since_last_version(&self) -> bool {
        match self.versions.last() {
            None => true,
            Some(last) => {
                let mut a = last.spec.clone();
                let mut b = self.latest.spec.clone();
                // The description of a version is the publisher's note, not a change.
                a.description.clear();
                b.description.clear();
                a != b || last.code != self.latest.code
            }
        }
    }

    /// Aliases that route any traffic to `version`.
    pub fn aliases_using(&self, version: &str) -> Vec<String> {
        self.aliases
            .values()
            .filter(|a| a.function_version == version || a.additional_weights.contains_key(version))
            .map(|a| a.name.clone())
            .collect()
    }
}

impl Alias {
    pub fn configuration(&self, function: &str, arns: &ArnContext) -> serde_json::Value {
        let mut config = serde_json::json!({
            "AliasArn": arns.qualified_arn(function, &self.name),
            "Name": self.name,
            "FunctionVersion": self.function_version,
            "Description": self.description,
            "RevisionId": self.revision_id,
        });
        if !self.additional_weights.is_empty() {
            config["RoutingConfig"] =
                serde_json::json!({ "AdditionalVersionWeights": self.additional_weights });
        }
        config
    }
}

pub fn validate_alias_name(name: &str) -> Result<(), InvalidField> {
    if crate::function::is_plain_name(name, 128) && !name.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(InvalidField(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str, code: &str) -> Arc<FunctionRecord> {
        Arc::new(crate::function::sample_record("f", version, code))
    }

    fn document() -> FunctionDocument {
        let mut doc = FunctionDocument::new((*record(LATEST, "c3")).clone());
        doc.versions = vec![record("1", "c1"), record("2", "c2")];
        doc.aliases.insert(
            "live".into(),
            Alias {
                name: "live".into(),
                function_version: "1".into(),
                description: String::new(),
                additional_weights: [("2".to_string(), 0.1)].into_iter().collect(),
                revision_id: "r".into(),
            },
        );
        doc
    }

    #[test]
    fn qualifiers_resolve_to_versions() {
        let doc = document();
        assert_eq!(doc.resolve(None, 0.5).unwrap().version, LATEST);
        assert_eq!(doc.resolve(Some("2"), 0.5).unwrap().version, "2");
        assert!(doc.resolve(Some("9"), 0.5).is_none());
        assert!(doc.resolve(Some("nope"), 0.5).is_none());
        assert_eq!(doc.resolve(Some("live"), 0.05).unwrap().version, "2");
        assert_eq!(doc.resolve(Some("live"), 0.5).unwrap().version, "1");
        assert_eq!(doc.primary_version("live").as_deref(), Some("1"));
        assert_eq!(doc.aliases_using("2"), ["live"]);
    }

    #[test]
    fn publishing_needs_a_change() {
        let mut doc = document();
        assert!(doc.latest_changed_since_last_version());
        doc.latest = record(LATEST, "c2");
        assert!(!doc.latest_changed_since_last_version());
    }

    #[test]
    fn alias_names_are_not_numbers() {
        assert!(validate_alias_name("live").is_ok());
        assert!(validate_alias_name("12").is_err());
        assert!(validate_alias_name("a b").is_err());
    }

    #[test]
    fn old_documents_still_load() {
        let doc: FunctionDocument = serde_json::from_value(
            serde_json::json!({ "latest": serde_json::to_value(&*record(LATEST, "c")).unwrap() }),
        )
        .unwrap();
        assert_eq!(doc.next_version, 1);
        assert!(doc.versions.is_empty());
    }
}
