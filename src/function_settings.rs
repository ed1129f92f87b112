//! The settings of a function beyond its code, runtime and limits: tracing, logging,
//! VPC, KMS key and SnapStart. Owns their validation (as Lambda's model constrains them),
//! how an update merges into them, how they are stored with the function, and how
//! `FunctionConfiguration` shows them; and the fields of `CreateFunction` and
//! `UpdateFunctionConfiguration` this server refuses because they have no meaning here.
//!
//! What each does on one host (the README lists them too):
//! - `TracingConfig` `Active`: every invocation without an incoming `X-Amzn-Trace-Id`
//!   starts a sampled trace (`Sampled=1`); the header reaches the function as
//!   `Lambda-Runtime-Trace-Id` (`_X_AMZN_TRACE_ID`) and follows async and destination hops.
//! - `LoggingConfig`: the format, levels and group reach the runtime as
//!   `AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL` and `AWS_LAMBDA_LOG_GROUP_NAME`;
//!   the platform's lines follow the format and `SystemLogLevel` (`logs::lines::
//!   PlatformFormat`), the function's JSON records `ApplicationLogLevel`
//!   (`environment::output`).
//! - `VpcConfig`, `KMSKeyArn`, `SnapStart`: kept and returned, no effect (one host has no
//!   VPC to join, keeps environment variables on its own disk, and starts environments
//!   without snapshots).

use serde::{Deserialize, Serialize};

use crate::function::InvalidField;

/// A function's settings of this module, as stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSettings {
    #[serde(default)]
    pub tracing_active: bool,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<Vpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    #[serde(default)]
    pub snap_start_published_versions: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    /// `LogFormat: JSON` (else `Text`).
    #[serde(default)]
    pub json: bool,
    /// `ApplicationLogLevel` (JSON format only; `INFO` when JSON and unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_level: Option<String>,
    /// `SystemLogLevel` (JSON format only; `INFO` when JSON and unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_level: Option<String>,
    /// A custom `LogGroup`; `None` is `/aws/lambda/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    #[serde(default)]
    pub ipv6_allowed_for_dual_stack: bool,
}

impl Logging {
    /// The rank of `ApplicationLogLevel` the function's JSON records are filtered at
    /// (`logs::lines::level_rank`); `None` for text logs, which are not filtered.
    pub fn application_min_rank(&self) -> Option<u8> {
        self.json
            .then_some(self.application_level.as_deref())
            .flatten()
            .and_then(crate::logs::lines::level_rank)
    }
}

const APPLICATION_LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const SYSTEM_LEVELS: [&str; 3] = ["DEBUG", "INFO", "WARN"];

/// The members of `CreateFunction` / `UpdateFunctionConfiguration` this module reads
/// (flattened into both requests).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SettingsInput {
    tracing_config: Option<TracingInput>,
    logging_config: Option<LoggingInput>,
    vpc_config: Option<VpcInput>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
    snap_start: Option<SnapStartInput>,
    // Refused when given (see [`SettingsInput::refused`]).
    file_system_configs: Option<Vec<serde_json::Value>>,
    image_config: Option<serde_json::Value>,
    code_signing_config_arn: Option<String>,
    capacity_provider_config: Option<serde_json::Value>,
    durable_config: Option<serde_json::Value>,
    tenancy_config: Option<serde_json::Value>,
    publish_to: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TracingInput {
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoggingInput {
    log_format: Option<String>,
    application_log_level: Option<String>,
    system_log_level: Option<String>,
    log_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VpcInput {
    subnet_ids: Option<Vec<String>>,
    security_group_ids: Option<Vec<String>>,
    ipv6_allowed_for_dual_stack: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnapStartInput {
    apply_on: Option<String>,
}

fn enum_error(value: &str, at: &str, allowed: &[&str]) -> InvalidField {
    InvalidField(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: \
         Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    ))
}

fn one_of(value: &str, at: &str, allowed: &[&str]) -> Result<(), InvalidField> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(enum_error(value, at, allowed))
    }
}

impl SettingsInput {
    /// The first member given that this server refuses, with why.
    fn refused(&self) -> Option<String> {
        if self
            .file_system_configs
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            return Some(
                "FileSystemConfigs (Amazon EFS mounts) are not supported by this server; \
                 keep files in the code package, a layer or /tmp"
                    .into(),
            );
        }
        if self.image_config.is_some() {
            return Some(
                "ImageConfig applies to container images (PackageType Image), which this server does not run"
                    .into(),
            );
        }
        if self
            .code_signing_config_arn
            .as_deref()
            .is_some_and(|a| !a.is_empty())
        {
            return Some(
                "Code signing (CodeSigningConfigArn) is not supported by this server".into(),
            );
        }
        let unsupported = [
            ("CapacityProviderConfig", &self.capacity_provider_config),
            ("DurableConfig", &self.durable_config),
            ("TenancyConfig", &self.tenancy_config),
            ("PublishTo", &self.publish_to),
        ];
        unsupported
            .iter()
            .find(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
            .map(|(name, _)| format!("{name} is not supported by this server"))
    }

    /// Checks every member and merges those given into `settings` (an update's members
    /// replace the ones they name; the others stay).
    pub fn apply(self, settings: &mut FunctionSettings) -> Result<(), InvalidField> {
        if let Some(reason) = self.refused() {
            return Err(InvalidField(reason));
        }
        let mut next = settings.clone();
        if let Some(mode) = self.tracing_config.and_then(|t| t.mode) {
            one_of(&mode, "tracingConfig.mode", &["Active", "PassThrough"])?;
            next.tracing_active = mode == "Active";
        }
        if let Some(logging) = self.logging_config {
            let log = &mut next.logging;
            if let Some(format) = logging.log_format {
                one_of(&format, "loggingConfig.logFormat", &["JSON", "Text"])?;
                log.json = format == "JSON";
            }
            if let Some(level) = logging.application_log_level {
                one_of(
                    &level,
                    "loggingConfig.applicationLogLevel",
                    &APPLICATION_LEVELS,
                )?;
                log.application_level = Some(level);
            }
            if let Some(level) = logging.system_log_level {
                one_of(&level, "loggingConfig.systemLogLevel", &SYSTEM_LEVELS)?;
                log.system_level = Some(level);
            }
            if let Some(group) = logging.log_group {
                validate_log_group(&group)?;
                log.group = Some(group);
            }
            if !log.json {
                if log.application_level.is_some() || log.system_level.is_some() {
                    return Err(InvalidField(
                        "To set ApplicationLogLevel or SystemLogLevel, LogFormat must be JSON"
                            .into(),
                    ));
                }
            } else {
                log.application_level.get_or_insert_with(|| "INFO".into());
                log.system_level.get_or_insert_with(|| "INFO".into());
            }
        }
        if let Some(vpc) = self.vpc_config {
            let subnets = vpc.subnet_ids.unwrap_or_default();
            let groups = vpc.security_group_ids.unwrap_or_default();
            if subnets.len() > 16 {
                return Err(InvalidField(
                    "1 validation error detected: Value at 'vpcConfig.subnetIds' failed to satisfy constraint: Member must have length less than or equal to 16".into(),
                ));
            }
            if groups.len() > 5 {
                return Err(InvalidField(
                    "1 validation error detected: Value at 'vpcConfig.securityGroupIds' failed to satisfy constraint: Member must have length less than or equal to 5".into(),
                ));
            }
            next.vpc = (!subnets.is_empty() || !groups.is_empty()).then(|| Vpc {
                subnet_ids: subnets,
                security_group_ids: groups,
                ipv6_allowed_for_dual_stack: vpc.ipv6_allowed_for_dual_stack.unwrap_or(false),
            });
        }
        if let Some(arn) = self.kms_key_arn {
            if !arn.is_empty() && !is_arn(&arn) {
                return Err(InvalidField(format!(
                    "1 validation error detected: Value '{arn}' at 'kMSKeyArn' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()"
                )));
            }
            next.kms_key_arn = (!arn.is_empty()).then_some(arn);
        }
        if let Some(apply_on) = self.snap_start.and_then(|s| s.apply_on) {
            one_of(
                &apply_on,
                "snapStart.applyOn",
                &["PublishedVersions", "None"],
            )?;
            next.snap_start_published_versions = apply_on == "PublishedVersions";
        }
        *settings = next;
        Ok(())
    }
}

/// `[\.\-_/#A-Za-z0-9]+`, 1 to 512 characters.
fn validate_log_group(group: &str) -> Result<(), InvalidField> {
    let valid = (1..=512).contains(&group.len())
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#".contains(c));
    if valid {
        Ok(())
    } else {
        Err(InvalidField(format!(
            "1 validation error detected: Value '{group}' at 'loggingConfig.logGroup' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )))
    }
}

/// `arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*`
fn is_arn(text: &str) -> bool {
    let mut parts = text.splitn(4, ':');
    let (Some("arn"), Some(partition), Some(service), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    (partition.is_empty()
        || partition
            .strip_prefix("aws")
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphabetic() || c == '-')))
        && !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

impl FunctionSettings {
    /// The log group the function's logs go to.
    pub fn log_group(&self, function: &str) -> String {
        self.logging
            .group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{function}"))
    }

    /// The environment variables the runtime reads for these settings.
    pub fn runtime_environment(&self, function: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![("AWS_LAMBDA_LOG_GROUP_NAME", self.log_group(function))];
        if self.logging.json {
            env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON".into()));
            if let Some(level) = &self.logging.application_level {
                env.push(("AWS_LAMBDA_LOG_LEVEL", level.clone()));
            }
        }
        env
    }

    /// Adds this module's members to a `FunctionConfiguration`.
    pub fn render(&self, function: &str, config: &mut serde_json::Value) {
        config["TracingConfig"] = serde_json::json!({
            "Mode": if self.tracing_active { "Active" } else { "PassThrough" }
        });
        let mut logging = serde_json::json!({
            "LogFormat": if self.logging.json { "JSON" } else { "Text" },
            "LogGroup": self.log_group(function),
        });
        if let Some(level) = &self.logging.application_level {
            logging["ApplicationLogLevel"] = level.as_str().into();
        }
        if let Some(level) = &self.logging.system_level {
            logging["SystemLogLevel"] = level.as_str().into();
        }
        config["LoggingConfig"] = logging;
        config["SnapStart"] = serde_json::json!({
            "ApplyOn": if self.snap_start_published_versions { "PublishedVersions" } else { "None" },
            "OptimizationStatus": "Off",
        });
        if let Some(vpc) = &self.vpc {
            config["VpcConfig"] = serde_json::json!({
                "SubnetIds": vpc.subnet_ids,
                "SecurityGroupIds": vpc.security_group_ids,
                "VpcId": "",
                "Ipv6AllowedForDualStack": vpc.ipv6_allowed_for_dual_stack,
            });
        }
        if let Some(arn) = &self.kms_key_arn {
            config["KMSKeyArn"] = arn.as_str().into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> SettingsInput {
        serde_json::from_value(json).unwrap()
    }

    fn applied(json: serde_json::Value) -> Result<FunctionSettings, InvalidField> {
        let mut settings = FunctionSettings::default();
        input(json).apply(&mut settings).map(|()| settings)
    }

    #[test]
    fn settings_are_kept_and_shown() {
        let settings = applied(serde_json::json!({
            "TracingConfig": {"Mode": "Active"},
            "LoggingConfig": {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "LogGroup": "/custom/g"},
            "VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
            "KMSKeyArn": "arn:aws:kms:us-east-1:000000000000:key/k",
            "SnapStart": {"ApplyOn": "PublishedVersions"},
        }))
        .unwrap();
        let mut config = serde_json::json!({});
        settings.render("f", &mut config);
        assert_eq!(config["TracingConfig"]["Mode"], "Active");
        assert_eq!(
            config["LoggingConfig"],
            serde_json::json!({"LogFormat": "JSON", "LogGroup": "/custom/g",
                               "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"})
        );
        assert_eq!(
            config["VpcConfig"]["SubnetIds"],
            serde_json::json!(["subnet-1"])
        );
        assert_eq!(
            config["KMSKeyArn"],
            "arn:aws:kms:us-east-1:000000000000:key/k"
        );
        assert_eq!(config["SnapStart"]["ApplyOn"], "PublishedVersions");
        assert!(
            settings
                .runtime_environment("f")
                .contains(&("AWS_LAMBDA_LOG_LEVEL", "DEBUG".into()))
        );
        // Stored and read back the same.
        let stored = serde_json::to_string(&settings).unwrap();
        assert_eq!(
            serde_json::from_str::<FunctionSettings>(&stored).unwrap(),
            settings
        );
        // A function stored before these settings existed reads as the defaults.
        assert_eq!(
            serde_json::from_str::<FunctionSettings>("{}").unwrap(),
            FunctionSettings::default()
        );
    }

    #[test]
    fn an_update_replaces_only_what_it_names() {
        let mut settings = applied(serde_json::json!({
            "TracingConfig": {"Mode": "Active"},
            "VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
        }))
        .unwrap();
        input(serde_json::json!({"LoggingConfig": {"LogGroup": "g"}}))
            .apply(&mut settings)
            .unwrap();
        assert!(settings.tracing_active && settings.vpc.is_some());
        assert_eq!(settings.log_group("f"), "g");
        input(serde_json::json!({"VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}}))
            .apply(&mut settings)
            .unwrap();
        assert_eq!(settings.vpc, None);
    }

    #[test]
    fn bad_values_and_unsupported_fields_are_refused() {
        for bad in [
            serde_json::json!({"TracingConfig": {"Mode": "Bogus"}}),
            serde_json::json!({"LoggingConfig": {"LogFormat": "XML"}}),
            serde_json::json!({"LoggingConfig": {"ApplicationLogLevel": "DEBUG"}}),
            serde_json::json!({"LoggingConfig": {"LogFormat": "JSON", "SystemLogLevel": "ERROR"}}),
            serde_json::json!({"LoggingConfig": {"LogGroup": "bad group"}}),
            serde_json::json!({"VpcConfig": {"SubnetIds": vec!["s"; 17]}}),
            serde_json::json!({"KMSKeyArn": "not-an-arn"}),
            serde_json::json!({"SnapStart": {"ApplyOn": "Always"}}),
            serde_json::json!({"FileSystemConfigs": [{"Arn": "a", "LocalMountPath": "/mnt/x"}]}),
            serde_json::json!({"ImageConfig": {"Command": ["x"]}}),
            serde_json::json!({"CodeSigningConfigArn": "arn:aws:lambda:us-east-1:0:code-signing-config:c"}),
            serde_json::json!({"TenancyConfig": {"TenantIsolationMode": "PER_TENANT"}}),
        ] {
            assert!(applied(bad.clone()).is_err(), "{bad}");
        }
        // Empty values of refused members are no request for them.
        assert!(
            applied(serde_json::json!({"FileSystemConfigs": [], "CodeSigningConfigArn": ""}))
                .is_ok()
        );
        // A failed update changes nothing.
        let mut settings = FunctionSettings::default();
        let bad = input(serde_json::json!({"TracingConfig": {"Mode": "Active"}, "KMSKeyArn": "x"}));
        assert!(bad.apply(&mut settings).is_err());
        assert!(!settings.tracing_active);
    }
}
