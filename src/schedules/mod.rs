//! EventBridge Scheduler: schedules (one-time `at`, `rate`, `cron` in a time zone, with
//! start and end dates, flexible time windows and an action after completion) in schedule
//! groups, each with one target.
//!
//! Owns what a schedule and a group are as persisted (documents of kinds [`KIND`] and
//! [`GROUP_KIND`]), their checks, the expression and its next firing in its zone
//! ([`expression`]), the service ([`service`]) and the event source that fires schedules
//! ([`runner`]). A firing goes through the event bus's durable outbox and deliverer: its
//! target is handed the schedule's `Input` (default `{}`) with the Scheduler's context
//! attributes filled in, retried under its `RetryPolicy` and dead-lettered as event bus
//! targets are. The operations are `api::scheduler`.

pub mod expression;
pub mod runner;
pub mod service;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use service::{SchedulerError, SchedulerService};

/// The store's kind for schedules (keyed `<region>/<group>/<name>`).
pub const KIND: &str = "schedule";
/// The store's kind for schedule groups (keyed `<region>/<name>`).
pub const GROUP_KIND: &str = "schedule-group";
/// The group every account has from the start.
pub const DEFAULT_GROUP: &str = "default";

/// One schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub group: String,
    pub arn: String,
    pub region: String,
    #[serde(default)]
    pub description: Option<String>,
    pub expression: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub start_ms: Option<u64>,
    #[serde(default)]
    pub end_ms: Option<u64>,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// `FlexibleTimeWindow` as given (`Mode` `OFF` or `FLEXIBLE`).
    pub flexible_time_window: Value,
    /// `NONE` or `DELETE`.
    pub action_after_completion: String,
    /// The target in the Scheduler's wire shape.
    pub target: Value,
    pub created_ms: u64,
    pub modified_ms: u64,
}

impl Schedule {
    pub fn enabled(&self) -> bool {
        self.state == "ENABLED"
    }

    /// The most a firing may be put off, in milliseconds (0 unless the window is
    /// flexible).
    pub fn window_ms(&self) -> u64 {
        if self
            .flexible_time_window
            .get("Mode")
            .and_then(Value::as_str)
            != Some("FLEXIBLE")
        {
            return 0;
        }
        self.flexible_time_window
            .get("MaximumWindowInMinutes")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            * 60_000
    }

    /// The store key: `<region>/<group>/<name>`.
    pub fn key(&self) -> String {
        schedule_key(&self.region, &self.group, &self.name)
    }
}

pub fn schedule_key(region: &str, group: &str, name: &str) -> String {
    format!("{region}/{group}/{name}")
}

/// One schedule group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub arn: String,
    pub region: String,
    pub created_ms: u64,
    pub modified_ms: u64,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// `^[0-9a-zA-Z-_.]+$`, 1 to 64 characters: schedule and group names.
pub fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
