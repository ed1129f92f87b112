//! What a function *is*: its configuration, its code reference, and the rules a valid one obeys.
//!
//! Owns the typed [`FunctionRecord`] (what the store persists), the validation of every
//! user-controlled field against Lambda's limits, the parsing of function references
//! (`name`, `name:qualifier`, partial and full ARNs), and the rendering of Lambda's
//! `FunctionConfiguration` JSON. It does not own storage, code blobs or execution.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Lambda's quotas for the fields Shoal validates.
pub mod limits {
    pub const MEMORY_MIN: u32 = 128;
    pub const MEMORY_MAX: u32 = 10_240;
    pub const TIMEOUT_MIN: u32 = 1;
    pub const TIMEOUT_MAX: u32 = 900;
    pub const EPHEMERAL_MIN: u32 = 512;
    pub const EPHEMERAL_MAX: u32 = 10_240;
    pub const NAME_MAX: usize = 64;
    pub const HANDLER_MAX: usize = 128;
    pub const DESCRIPTION_MAX: usize = 256;
    /// Total size of all environment variable names and values.
    pub const ENVIRONMENT_BYTES_MAX: usize = 4 * 1024;
    pub const DEFAULT_MEMORY: u32 = 128;
    pub const DEFAULT_TIMEOUT: u32 = 3;
}

/// Environment variable names the platform sets itself; a function may not override them.
pub const RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// A validation failure; the message names the offending field as Lambda's do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidField(pub String);

/// Everything about a function that its owner sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub description: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub ephemeral_storage_mb: u32,
    pub environment: BTreeMap<String, String>,
    pub architecture: String,
    /// Queue ARN that receives asynchronous events that finally failed (`DeadLetterConfig`).
    #[serde(default)]
    pub dead_letter_target: Option<String>,
    /// What the function's environments reach over the network (the `shoal:network` tag).
    #[serde(default)]
    pub network: NetworkMode,
    /// The region the function lives in; `None` is the data directory's home region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Its layers, in order (later ones win where paths meet), unpacked under `/opt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRef>,
    /// Tracing, logging, VPC, KMS key and SnapStart.
    #[serde(default)]
    pub settings: crate::function_settings::FunctionSettings,
}

/// A layer version a function uses: its ARN and its code (kept while the function holds
/// it, even once the layer version is deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub arn: String,
    pub code: CodeRef,
}

impl FunctionSpec {
    /// The function's key in the registry and the stores (see `crate::region`): its name
    /// in the home region, `region/name` in any other.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match &self.region {
            None => std::borrow::Cow::Borrowed(&self.name),
            Some(region) => std::borrow::Cow::Owned(format!("{region}/{}", self.name)),
        }
    }
}

/// What an isolated environment's network reaches. Set per function with the tag
/// [`NETWORK_TAG`]; unisolated environments share the host's network whatever it says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback and the environment's own Runtime API only.
    #[default]
    None,
    /// Outbound connections to whatever the host reaches, through user-mode NAT; never
    /// the host's loopback.
    Egress,
}

/// The tag that selects a function's [`NetworkMode`].
pub const NETWORK_TAG: &str = "shoal:network";

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Egress => "egress",
        }
    }

    /// The mode a function's tags select (`none` without the tag).
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Result<Self, InvalidField> {
        match tags.get(NETWORK_TAG).map(String::as_str) {
            None | Some("none") => Ok(Self::None),
            Some("egress") => Ok(Self::Egress),
            Some(other) => Err(InvalidField(format!(
                "Tag {NETWORK_TAG} must be none or egress; got '{other}'"
            ))),
        }
    }
}

/// Lambda's limits on a resource's tags.
pub mod tag_limits {
    pub const COUNT_MAX: usize = 50;
    pub const KEY_MAX: usize = 128;
    pub const VALUE_MAX: usize = 256;
}

/// Checks tags to be added against Lambda's rules (the total count is checked by the caller,
/// which knows the tags already there).
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), InvalidField> {
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > tag_limits::KEY_MAX {
            return Err(InvalidField(format!(
                "Tag keys must be 1 to {} characters long: '{key}'",
                tag_limits::KEY_MAX
            )));
        }
        if value.chars().count() > tag_limits::VALUE_MAX {
            return Err(InvalidField(format!(
                "Tag values must be at most {} characters long (tag '{key}')",
                tag_limits::VALUE_MAX
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(InvalidField(format!(
                "Tag keys starting with 'aws:' are reserved for system use: '{key}'"
            )));
        }
    }
    NetworkMode::from_tags(tags).map(|_| ())
}

/// The content-addressed code package a function runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// Lowercase hex SHA-256 of the zip; names the blob on disk.
    pub sha256_hex: String,
    /// Base64 SHA-256 of the zip, Lambda's `CodeSha256`.
    pub sha256_b64: String,
    /// Size of the zip in bytes, Lambda's `CodeSize`.
    pub size: u64,
}

/// A function as the store persists it: spec, code and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub spec: FunctionSpec,
    pub code: CodeRef,
    pub last_modified_ms: u64,
    /// Changes on every update; environments of an older revision are never reused.
    pub revision_id: String,
    /// `$LATEST`, or the number of a published (immutable) version.
    #[serde(default = "latest")]
    pub version: String,
}

/// The name of the mutable version.
pub const LATEST: &str = "$LATEST";

fn latest() -> String {
    LATEST.to_string()
}

/// What makes a function reference name something outside this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    Account(String),
    Region(String),
}

pub use crate::region::ArnContext;

impl FunctionRef {
    /// Why this reference cannot name a function of `arns`' account and region (another
    /// account's, or another region's), if it cannot.
    pub fn foreign(&self, arns: &ArnContext) -> Option<Foreign> {
        if let Some(account) = self.account.as_deref().filter(|a| *a != arns.account_id) {
            return Some(Foreign::Account(account.to_string()));
        }
        self.region
            .as_deref()
            .filter(|r| *r != arns.region)
            .map(|r| Foreign::Region(r.to_string()))
    }
}

/// Whether `s` is 1 to `max` bytes of `[a-zA-Z0-9-_]`: the shape of Lambda's function
/// and alias names and of queue names.
pub fn is_plain_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn validate_name(name: &str) -> Result<(), InvalidField> {
    if is_plain_name(name, limits::NAME_MAX) {
        Ok(())
    } else {
        Err(InvalidField(format!(
            "1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+ and have length 1 to {}",
            limits::NAME_MAX
        )))
    }
}

/// A reference to a function as the API accepts it in a path: `name`, `name:qualifier`,
/// `123456789012:name`, or a full ARN with an optional qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
    /// The account the reference names (`123456789012:name` or an ARN), if any.
    pub account: Option<String>,
    /// The region an ARN names, if any.
    pub region: Option<String>,
}

pub fn parse_function_ref(raw: &str) -> Result<FunctionRef, InvalidField> {
    let invalid = || {
        InvalidField(format!(
            "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: \
             Member must be a function name or a function ARN"
        ))
    };
    let arn;
    let (name, qualifier, account, region) = if raw.starts_with("arn:") {
        arn = crate::arn::Arn::parse(raw).map_err(|_| invalid())?;
        let (name, qualifier) = arn.function_parts().map_err(|_| invalid())?;
        (
            name,
            qualifier,
            Some(arn.account.as_str()),
            Some(arn.region.as_str()),
        )
    } else {
        let parts: Vec<&str> = raw.split(':').collect();
        match parts.as_slice() {
            [name] => (*name, None, None, None),
            [name, qualifier] if !is_account_id(name) => (*name, Some(*qualifier), None, None),
            [account, name] => (*name, None, Some(*account), None),
            [account, "function", name] => (*name, None, Some(*account), None),
            [account, "function", name, qualifier] => {
                (*name, Some(*qualifier), Some(*account), None)
            }
            _ => return Err(invalid()),
        }
    };
    if account.is_some_and(|a| !is_account_id(a)) {
        return Err(InvalidField(format!(
            "1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: \
             the account id must be 12 digits"
        )));
    }
    validate_name(name)?;
    if let Some(q) = qualifier {
        validate_qualifier(q)?;
    }
    Ok(FunctionRef {
        name: name.to_string(),
        qualifier: qualifier.map(str::to_string),
        account: account.map(str::to_string),
        region: region.map(str::to_string),
    })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

pub fn validate_qualifier(q: &str) -> Result<(), InvalidField> {
    let ok = !q.is_empty()
        && q.len() <= 128
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'$' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidField(format!(
            "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"
        )))
    }
}

fn range_error(field: &str, value: i64, min: u32, max: u32) -> InvalidField {
    let bound = if value < i64::from(min) {
        format!("greater than or equal to {min}")
    } else {
        format!("less than or equal to {max}")
    };
    InvalidField(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have value {bound}"
    ))
}

fn validate_range(field: &str, value: i64, min: u32, max: u32) -> Result<u32, InvalidField> {
    if (i64::from(min)..=i64::from(max)).contains(&value) {
        Ok(value as u32)
    } else {
        Err(range_error(field, value, min, max))
    }
}

pub fn validate_memory(value: i64) -> Result<u32, InvalidField> {
    validate_range("memorySize", value, limits::MEMORY_MIN, limits::MEMORY_MAX)
}

pub fn validate_timeout(value: i64) -> Result<u32, InvalidField> {
    validate_range("timeout", value, limits::TIMEOUT_MIN, limits::TIMEOUT_MAX)
}

pub fn validate_ephemeral_storage(value: i64) -> Result<u32, InvalidField> {
    validate_range(
        "ephemeralStorage.size",
        value,
        limits::EPHEMERAL_MIN,
        limits::EPHEMERAL_MAX,
    )
}

pub fn validate_handler(handler: &str) -> Result<(), InvalidField> {
    if handler.len() > limits::HANDLER_MAX || handler.chars().any(char::is_whitespace) {
        return Err(InvalidField(format!(
            "1 validation error detected: Value '{handler}' at 'handler' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [^\\s]+ and have length at most {}",
            limits::HANDLER_MAX
        )));
    }
    Ok(())
}

pub fn validate_description(description: &str) -> Result<(), InvalidField> {
    if description.chars().count() > limits::DESCRIPTION_MAX {
        return Err(InvalidField(format!(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: \
             Member must have length less than or equal to {}",
            limits::DESCRIPTION_MAX
        )));
    }
    Ok(())
}

pub fn validate_architecture(architectures: &[String]) -> Result<String, InvalidField> {
    match architectures {
        [] => Ok(host_architecture().to_string()),
        [one] if one == host_architecture() => Ok(one.clone()),
        [one] if one == "x86_64" || one == "arm64" => Err(InvalidField(format!(
            "Architecture {one} is not available on this host; it runs {}",
            host_architecture()
        ))),
        _ => Err(InvalidField(format!(
            "1 validation error detected: Value '{architectures:?}' at 'architectures' failed to satisfy constraint: \
             Member must have length 1 and contain one of [x86_64, arm64]"
        ))),
    }
}

/// The Lambda name of the architecture this server runs on.
pub fn host_architecture() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x86_64"
    }
}

pub fn validate_environment(vars: &BTreeMap<String, String>) -> Result<(), InvalidField> {
    let mut total = 0;
    for (key, value) in vars {
        let well_formed = key.len() >= 2
            && key.as_bytes()[0].is_ascii_alphabetic()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !well_formed {
            return Err(InvalidField(format!(
                "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: \
                 Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+] (key '{key}')"
            )));
        }
        if RESERVED_VARIABLES.contains(&key.as_str()) {
            return Err(InvalidField(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {key}"
            )));
        }
        total += key.len() + value.len();
    }
    if total > limits::ENVIRONMENT_BYTES_MAX {
        return Err(InvalidField(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {total} bytes"
        )));
    }
    Ok(())
}

impl FunctionRecord {
    /// The ARN of this version: unqualified for `$LATEST`, `...:function:NAME:N` for a version.
    pub fn arn(&self, arns: &ArnContext) -> String {
        if self.version == LATEST {
            arns.function_arn(&self.spec.name)
        } else {
            arns.qualified_arn(&self.spec.name, &self.version)
        }
    }

    /// Lambda's `FunctionConfiguration` of this version.
    pub fn configuration(&self, arns: &ArnContext) -> serde_json::Value {
        let spec = &self.spec;
        let mut config = serde_json::json!({
            "FunctionName": spec.name,
            "FunctionArn": self.arn(arns),
            "Runtime": spec.runtime,
            "Role": spec.role,
            "Handler": spec.handler,
            "CodeSize": self.code.size,
            "Description": spec.description,
            "Timeout": spec.timeout_s,
            "MemorySize": spec.memory_mb,
            "LastModified": crate::timefmt::lambda_timestamp(self.last_modified_ms),
            "CodeSha256": self.code.sha256_b64,
            "Version": self.version,
            "RevisionId": self.revision_id,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": [spec.architecture],
            "EphemeralStorage": { "Size": spec.ephemeral_storage_mb },
        });
        spec.settings.render(&spec.name, &mut config);
        if !spec.environment.is_empty() {
            config["Environment"] = serde_json::json!({ "Variables": spec.environment });
        }
        if let Some(target) = &spec.dead_letter_target {
            config["DeadLetterConfig"] = serde_json::json!({ "TargetArn": target });
        }
        if !spec.layers.is_empty() {
            config["Layers"] = spec
                .layers
                .iter()
                .map(|l| serde_json::json!({ "Arn": l.arn, "CodeSize": l.code.size }))
                .collect();
        }
        config
    }
}

/// A minimal valid record for tests elsewhere: function `name`, `version`, code digest
/// `code` (also its revision).
#[cfg(test)]
pub fn sample_record(name: &str, version: &str, code: &str) -> FunctionRecord {
    FunctionRecord {
        spec: FunctionSpec {
            name: name.into(),
            runtime: "python3.12".into(),
            handler: "app.handler".into(),
            role: String::new(),
            description: String::new(),
            memory_mb: limits::DEFAULT_MEMORY,
            timeout_s: limits::DEFAULT_TIMEOUT,
            ephemeral_storage_mb: limits::EPHEMERAL_MIN,
            environment: BTreeMap::new(),
            architecture: "x86_64".into(),
            dead_letter_target: None,
            network: NetworkMode::None,
            region: None,
            layers: Vec::new(),
            settings: Default::default(),
        },
        code: CodeRef {
            sha256_hex: code.into(),
            sha256_b64: code.into(),
            size: 1,
        },
        last_modified_ms: 0,
        revision_id: version.into(),
        version: version.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reference_form() {
        let plain = parse_function_ref("hello").unwrap();
        assert_eq!((plain.name.as_str(), plain.qualifier), ("hello", None));
        let qualified = parse_function_ref("hello:$LATEST").unwrap();
        assert_eq!(qualified.qualifier.as_deref(), Some("$LATEST"));
        let partial = parse_function_ref("123456789012:function:hello").unwrap();
        assert_eq!(partial.name, "hello");
        let account = parse_function_ref("123456789012:hello").unwrap();
        assert_eq!((account.name.as_str(), account.qualifier), ("hello", None));
        let arn = parse_function_ref("arn:aws:lambda:us-east-1:123456789012:function:hello:prod")
            .unwrap();
        assert_eq!(
            (arn.name.as_str(), arn.qualifier.as_deref()),
            ("hello", Some("prod"))
        );
        assert_eq!(arn.account.as_deref(), Some("123456789012"));
        assert_eq!(arn.region.as_deref(), Some("us-east-1"));
        let ours = ArnContext::new("us-east-1", "123456789012");
        assert_eq!(arn.foreign(&ours), None);
        assert_eq!(parse_function_ref("hello").unwrap().foreign(&ours), None);
        let other = parse_function_ref("999999999999:function:hello").unwrap();
        assert_eq!(
            other.foreign(&ours),
            Some(Foreign::Account("999999999999".into()))
        );
        let west = parse_function_ref("arn:aws:lambda:us-west-2:123456789012:function:x").unwrap();
        assert_eq!(
            west.foreign(&ours),
            Some(Foreign::Region("us-west-2".into()))
        );
        assert!(parse_function_ref("arn:aws:lambda:us-east-1:12:function:x").is_err());
        assert!(parse_function_ref("bad name!").is_err());
        assert!(parse_function_ref("").is_err());
        assert!(parse_function_ref("a:b:c:d:e").is_err());
    }

    #[test]
    fn ranges_are_lambdas() {
        assert!(validate_memory(127).is_err());
        assert_eq!(validate_memory(128).unwrap(), 128);
        assert_eq!(validate_memory(10_240).unwrap(), 10_240);
        assert!(validate_memory(10_241).is_err());
        assert!(validate_timeout(0).is_err());
        assert!(validate_timeout(901).is_err());
        assert!(validate_timeout(900).is_ok());
        assert!(validate_ephemeral_storage(511).is_err());
        assert!(
            validate_memory(-5)
                .unwrap_err()
                .0
                .contains("greater than or equal to 128")
        );
    }

    #[test]
    fn environment_rules() {
        let mut vars = BTreeMap::new();
        vars.insert("GOOD_NAME".to_string(), "v".to_string());
        assert!(validate_environment(&vars).is_ok());
        vars.insert("AWS_REGION".to_string(), "x".to_string());
        assert!(
            validate_environment(&vars)
                .unwrap_err()
                .0
                .contains("reserved")
        );
        let mut bad = BTreeMap::new();
        bad.insert("1X".to_string(), "v".to_string());
        assert!(validate_environment(&bad).is_err());
        let mut big = BTreeMap::new();
        big.insert("BIG".to_string(), "x".repeat(5000));
        assert!(validate_environment(&big).unwrap_err().0.contains("4KB"));
    }

    #[test]
    fn the_network_tag_selects_the_mode() {
        let mut tags = BTreeMap::new();
        assert_eq!(NetworkMode::from_tags(&tags).unwrap(), NetworkMode::None);
        tags.insert(NETWORK_TAG.to_string(), "egress".to_string());
        assert_eq!(NetworkMode::from_tags(&tags).unwrap(), NetworkMode::Egress);
        tags.insert(NETWORK_TAG.to_string(), "none".to_string());
        assert_eq!(NetworkMode::from_tags(&tags).unwrap(), NetworkMode::None);
        tags.insert(NETWORK_TAG.to_string(), "host".to_string());
        assert!(
            validate_tags(&tags)
                .unwrap_err()
                .0
                .contains("none or egress")
        );
    }

    #[test]
    fn tag_rules_are_lambdas() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(validate_tags(&one("team", "payments")).is_ok());
        assert!(validate_tags(&one("", "x")).is_err());
        assert!(validate_tags(&one(&"k".repeat(129), "x")).is_err());
        assert!(validate_tags(&one("k", &"v".repeat(257))).is_err());
        assert!(validate_tags(&one("aws:cloudformation", "x")).is_err());
    }
}
