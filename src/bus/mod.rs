//! The event bus (EventBridge): buses, their rules and the rules' targets; events put on
//! a bus go to the targets of every enabled rule whose pattern they match.
//!
//! Owns what a bus is as persisted (one document per bus, [`Bus`], holding its rules and
//! their targets; targets kept in EventBridge's wire shape, so `ListTargetsByRule` returns
//! what `PutTargets` stored), the checks of names, patterns and targets, the event an
//! entry of `PutEvents` becomes ([`event`]), what a target is handed ([`transform`]), the
//! durable outbox of deliveries ([`outbox`]), the service ([`service`]), the event source
//! that delivers through the delivery door ([`deliverer`]), schedule expressions
//! ([`schedule`]), the event source that fires scheduled rules ([`ticker`]), archives
//! and replays ([`archive`], kept in the outbox's database by `archive_log`) and the
//! event source that replays ([`replayer`]). The operations are `api::events`.

pub mod archive;
mod archive_log;
pub mod deliverer;
pub mod event;
pub mod outbox;
pub mod replayer;
pub mod schedule;
pub mod service;
pub mod ticker;
pub mod transform;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use service::{BusError, EventBusService};

/// The bus every account has from the start.
pub const DEFAULT_BUS: &str = "default";
/// Rules a bus may have.
pub const RULES_MAX: usize = 300;
/// Targets a rule may have.
pub const TARGETS_MAX: usize = 5;
/// EventBridge's default retry policy: 185 attempts within 24 hours.
pub const DEFAULT_RETRIES: u32 = 185;
pub const DEFAULT_MAX_AGE_S: u64 = 86_400;

/// One rule: a pattern (or a schedule) and the targets of what it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub event_pattern: Option<String>,
    #[serde(default)]
    pub schedule_expression: Option<String>,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// By id, each in EventBridge's `Target` shape.
    #[serde(default)]
    pub targets: BTreeMap<String, Value>,
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.state == "ENABLED"
    }
}

/// One bus and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bus {
    pub name: String,
    pub arn: String,
    pub region: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_ms: u64,
    pub modified_ms: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub rules: BTreeMap<String, Rule>,
}

/// `arn:aws:events:<region>:<account>:event-bus/<name>`.
pub fn bus_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:events:{region}:{account}:event-bus/{name}")
}

/// A rule's ARN: `rule/<name>` on the default bus, `rule/<bus>/<name>` on another.
pub fn rule_arn(region: &str, account: &str, bus: &str, name: &str) -> String {
    if bus == DEFAULT_BUS {
        format!("arn:aws:events:{region}:{account}:rule/{name}")
    } else {
        format!("arn:aws:events:{region}:{account}:rule/{bus}/{name}")
    }
}

/// The bus name an `EventBusName` names: a name, or a bus ARN of `account` in `region`.
pub fn bus_name<'a>(raw: &'a str, region: &str, account: &str) -> Option<&'a str> {
    if let Some(rest) = raw.strip_prefix("arn:") {
        let prefix = format!("aws:events:{region}:{account}:event-bus/");
        return rest
            .strip_prefix(prefix.as_str())
            .filter(|n| is_bus_name(n));
    }
    is_bus_name(raw).then_some(raw)
}

/// `[/\.\-_A-Za-z0-9]{1,256}`.
pub fn is_bus_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.-_".contains(&b))
}

/// `[\.\-_A-Za-z0-9]{1,64}`: rule names and target ids.
pub fn is_rule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert_eq!(
            rule_arn("us-east-1", "000000000000", "default", "r"),
            "arn:aws:events:us-east-1:000000000000:rule/r"
        );
        assert_eq!(
            rule_arn("us-east-1", "000000000000", "orders", "r"),
            "arn:aws:events:us-east-1:000000000000:rule/orders/r"
        );
        let arn = bus_arn("us-east-1", "000000000000", "orders");
        assert_eq!(bus_name(&arn, "us-east-1", "000000000000"), Some("orders"));
        assert_eq!(bus_name(&arn, "eu-west-1", "000000000000"), None);
        assert_eq!(
            bus_name("orders", "us-east-1", "000000000000"),
            Some("orders")
        );
        assert_eq!(bus_name("bad name", "us-east-1", "000000000000"), None);
        assert!(is_rule_name("a.b-c_1"));
        assert!(!is_rule_name("a/b"));
        assert!(!is_rule_name(&"x".repeat(65)));
    }
}
