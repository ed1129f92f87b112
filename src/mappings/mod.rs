//! Event source mappings: the pull model. A mapping ties a built-in queue to a function;
//! the platform polls the queue and invokes the function synchronously with batches of
//! its messages, as Lambda does for Amazon SQS.
//!
//! Owns the mapping records (`Mapping`, kept in the `event_source_mappings` table by
//! `store.rs`), their validation against Lambda's limits (`spec.rs`), the service the API
//! calls to create, read, change and delete them (`service.rs`), the pollers that do the
//! work (`poller.rs`: receive, batch, filter, invoke through the invoke door, delete what
//! succeeded) and the event source that keeps one poller per enabled mapping running
//! (`supervisor.rs`). The wire format (Lambda's REST API) is `api/mappings.rs`'s.
//!
//! A mapping's state is stored as where it settles (`Enabled` or `Disabled`); the
//! transitional states Lambda reports (`Creating`, `Enabling`, `Updating`, `Disabling`,
//! `Deleting`) are what the operation that caused them answers, since a change here takes
//! effect within the supervisor's next turn (well under a second).

mod poller;
mod service;
mod spec;
mod store;
mod supervisor;

pub use service::{LIST_DEFAULT, Mappings};
pub use spec::{MappingInput, REPORT_BATCH_ITEM_FAILURES};
pub use supervisor::Supervisor;

use serde::{Deserialize, Serialize};

/// Lambda's states of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MappingState {
    Creating,
    Enabling,
    Enabled,
    Disabling,
    Disabled,
    Updating,
    Deleting,
}

impl MappingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Enabling => "Enabling",
            Self::Enabled => "Enabled",
            Self::Disabling => "Disabling",
            Self::Disabled => "Disabled",
            Self::Updating => "Updating",
            Self::Deleting => "Deleting",
        }
    }

    /// Where a mapping settles: `Enabled` or `Disabled`.
    pub fn settled(enabled: bool) -> Self {
        if enabled {
            Self::Enabled
        } else {
            Self::Disabled
        }
    }
}

/// One event source mapping, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub uuid: String,
    /// The function's key (see `crate::region`) and the qualifier the mapping names.
    pub function: String,
    pub qualifier: Option<String>,
    /// The queue's ARN as given, and its key.
    pub source_arn: String,
    pub queue: String,
    /// The region the mapping lives in (its function's and its queue's).
    pub region: String,
    pub batch_size: u32,
    pub batching_window_s: u32,
    /// `FilterCriteria` as given (checked when set), echoed back by the API.
    pub filter_criteria: Option<serde_json::Value>,
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`: batches in flight at most.
    pub maximum_concurrency: Option<u32>,
    pub enabled: bool,
    pub state_reason: String,
    pub last_modified_ms: u64,
    pub last_processing_result: String,
    /// The mapping's tags (`CreateEventSourceMapping`'s `Tags`, TagResource).
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

impl Mapping {
    /// A new mapping of `function` (key, qualifier) to `source` (queue ARN, queue key), with
    /// Lambda's defaults: enabled, batches of 10, no window, no filter.
    pub fn new(
        uuid: String,
        function: (String, Option<String>),
        source: (String, String),
        region: String,
    ) -> Self {
        Self {
            uuid,
            function: function.0,
            qualifier: function.1,
            source_arn: source.0,
            queue: source.1,
            region,
            batch_size: spec::BATCH_SIZE_DEFAULT,
            batching_window_s: 0,
            filter_criteria: None,
            report_batch_item_failures: false,
            maximum_concurrency: None,
            enabled: true,
            state_reason: "USER_INITIATED".into(),
            last_modified_ms: crate::timefmt::now_ms(),
            last_processing_result: results::NONE.into(),
            tags: Default::default(),
        }
    }

    pub fn state(&self) -> MappingState {
        MappingState::settled(self.enabled)
    }
}

/// Why a mapping operation failed; `api/mappings.rs` maps these to Lambda's errors.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    /// A parameter out of range or of the wrong shape (`InvalidParameterValueException`).
    #[error("{0}")]
    Invalid(String),
    /// The mapping, its function or its queue does not exist (`ResourceNotFoundException`).
    #[error("{0}")]
    NotFound(String),
    /// A mapping of the same queue and function exists (`ResourceConflictException`).
    #[error("{0}")]
    Conflict(String),
    #[error("event source mapping store failure: {0}")]
    Backend(String),
}

/// What `LastProcessingResult` says before any batch and after each.
pub mod results {
    pub const NONE: &str = "No records processed";
    pub const OK: &str = "OK";
    pub const FUNCTION_FAILED: &str = "PROBLEM: Function call failed";
    pub const THROTTLED: &str = "PROBLEM: Function call throttled";
    pub const NO_QUEUE: &str = "PROBLEM: The event source queue does not exist";
    pub const NO_FUNCTION: &str = "PROBLEM: Function does not exist";
}
