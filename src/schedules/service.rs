//! The Scheduler service: schedules and groups kept as documents in the store and served
//! from memory, their checks, and the hand-over of a schedule's firing state to the event
//! bus's outbox (reset whenever a schedule is made or changed).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::expression::Expression;
use super::{DEFAULT_GROUP, GROUP_KIND, Group, KIND, Schedule, is_name, schedule_key};
use crate::bus::EventBusService;
use crate::store::{DocumentStore, StoreError};

/// Why an operation failed, as the Scheduler names it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchedulerError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for SchedulerError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::bus::BusError> for SchedulerError {
    fn from(e: crate::bus::BusError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// What `CreateSchedule` and `UpdateSchedule` set (an update replaces everything).
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    pub name: String,
    pub group: Option<String>,
    pub description: Option<String>,
    pub expression: String,
    pub timezone: Option<String>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub state: Option<String>,
    pub flexible_time_window: Value,
    pub action_after_completion: Option<String>,
    pub target: Value,
}

pub struct SchedulerService {
    store: Arc<dyn DocumentStore>,
    bus: Arc<EventBusService>,
    schedules: RwLock<BTreeMap<String, Arc<Schedule>>>,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    writes: tokio::sync::Mutex<()>,
}

fn group_key(region: &str, name: &str) -> String {
    format!("{region}/{name}")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SchedulerError> + Send + 'static,
) -> Result<T, SchedulerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SchedulerError::Internal(format!("background task failed: {e}")))?
}

fn validation(message: impl Into<String>) -> SchedulerError {
    SchedulerError::Validation(message.into())
}

impl SchedulerService {
    pub fn open(
        store: Arc<dyn DocumentStore>,
        bus: Arc<EventBusService>,
    ) -> Result<Self, SchedulerError> {
        let mut schedules = BTreeMap::new();
        for (k, json) in store.load_documents(KIND)? {
            let s: Schedule = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("schedule {k}: {e}")))?;
            schedules.insert(k, Arc::new(s));
        }
        let mut groups = BTreeMap::new();
        for (k, json) in store.load_documents(GROUP_KIND)? {
            let g: Group = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("schedule group {k}: {e}")))?;
            groups.insert(k, Arc::new(g));
        }
        Ok(Self {
            store,
            bus,
            schedules: RwLock::new(schedules),
            groups: RwLock::new(groups),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn bus(&self) -> &Arc<EventBusService> {
        &self.bus
    }

    fn arn(&self, region: &str, rest: &str) -> String {
        format!("arn:aws:scheduler:{region}:{}:{rest}", self.bus.account())
    }

    fn new_group(&self, region: &str, name: &str) -> Group {
        let now = crate::timefmt::now_ms();
        Group {
            name: name.to_string(),
            arn: self.arn(region, &format!("schedule-group/{name}")),
            region: region.to_string(),
            created_ms: now,
            modified_ms: now,
            tags: BTreeMap::new(),
        }
    }

    /// Group `name` of `region` (the default group always exists).
    pub fn group(&self, region: &str, name: &str) -> Result<Arc<Group>, SchedulerError> {
        if let Some(g) = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group_key(region, name))
        {
            return Ok(g.clone());
        }
        if name == DEFAULT_GROUP {
            return Ok(Arc::new(self.new_group(region, name)));
        }
        Err(SchedulerError::NotFound(format!(
            "Schedule group {name} does not exist."
        )))
    }

    /// The groups of `region` by name, the default group among them.
    pub fn groups(&self, region: &str) -> Vec<Arc<Group>> {
        let mut out: Vec<Arc<Group>> = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|g| g.region == region)
            .cloned()
            .collect();
        if !out.iter().any(|g| g.name == DEFAULT_GROUP) {
            out.push(Arc::new(self.new_group(region, DEFAULT_GROUP)));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Commits `document` under `key`, then serves it from `map`.
    async fn keep_in<T: serde::Serialize>(
        &self,
        kind: &'static str,
        key: String,
        map: &RwLock<BTreeMap<String, Arc<T>>>,
        document: T,
    ) -> Result<Arc<T>, SchedulerError> {
        let json = serde_json::to_string(&document)
            .map_err(|e| SchedulerError::Internal(e.to_string()))?;
        let store = self.store.clone();
        let owned = key.clone();
        blocking(move || Ok(store.put_document(kind, &owned, &json)?)).await?;
        let document = Arc::new(document);
        map.write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, document.clone());
        Ok(document)
    }

    async fn delete_document(&self, kind: &'static str, key: String) -> Result<(), SchedulerError> {
        let store = self.store.clone();
        blocking(move || Ok(store.delete_document(kind, &key)?)).await
    }

    async fn keep_group(&self, group: Group) -> Result<Arc<Group>, SchedulerError> {
        let key = group_key(&group.region, &group.name);
        self.keep_in(GROUP_KIND, key, &self.groups, group).await
    }

    /// `CreateScheduleGroup`.
    pub async fn create_group(
        &self,
        region: &str,
        name: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<Group>, SchedulerError> {
        if !is_name(name) {
            return Err(validation(format!(
                "Schedule group name {name} is not valid: 1 to 64 letters, digits, '-', '_' and '.'."
            )));
        }
        let _guard = self.writes.lock().await;
        if name == DEFAULT_GROUP || self.group(region, name).is_ok() {
            return Err(SchedulerError::Conflict(format!(
                "Schedule group {name} already exists."
            )));
        }
        let mut group = self.new_group(region, name);
        group.tags = tags;
        self.keep_group(group).await
    }

    /// `DeleteScheduleGroup`: the group and its schedules.
    pub async fn delete_group(&self, region: &str, name: &str) -> Result<(), SchedulerError> {
        if name == DEFAULT_GROUP {
            return Err(validation("The default schedule group cannot be deleted."));
        }
        self.group(region, name)?;
        let doomed: Vec<Arc<Schedule>> = self.list(region, Some(name)).into_iter().collect();
        for s in doomed {
            self.delete(region, &s.group, &s.name).await?;
        }
        let _guard = self.writes.lock().await;
        let key = group_key(region, name);
        self.delete_document(GROUP_KIND, key.clone()).await?;
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(())
    }

    /// Changes the tags of the group with ARN `arn`.
    pub async fn tag_group(
        &self,
        arn: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), SchedulerError> {
        let _guard = self.writes.lock().await;
        let Some(mut group) = self.group_by_arn(arn).map(|g| (*g).clone()) else {
            return Err(SchedulerError::NotFound(format!(
                "Resource {arn} does not exist."
            )));
        };
        change(&mut group.tags);
        group.modified_ms = crate::timefmt::now_ms();
        self.keep_group(group).await.map(|_| ())
    }

    /// The group with ARN `arn`.
    pub fn group_by_arn(&self, arn: &str) -> Option<Arc<Group>> {
        let rest = arn.strip_prefix("arn:aws:scheduler:")?;
        let (region, rest) = rest.split_once(':')?;
        let name = rest.split_once(":schedule-group/")?.1;
        self.group(region, name).ok()
    }

    /// Schedule `name` of `group`.
    pub fn schedule(
        &self,
        region: &str,
        group: &str,
        name: &str,
    ) -> Result<Arc<Schedule>, SchedulerError> {
        self.schedules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&schedule_key(region, group, name))
            .cloned()
            .ok_or_else(|| SchedulerError::NotFound(format!("Schedule {name} does not exist.")))
    }

    /// The schedules of `region` (of one group if named), by group and name.
    pub fn list(&self, region: &str, group: Option<&str>) -> Vec<Arc<Schedule>> {
        self.schedules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.region == region && group.is_none_or(|g| s.group == g))
            .cloned()
            .collect()
    }

    /// Every schedule of every region.
    pub fn all(&self) -> Vec<Arc<Schedule>> {
        self.schedules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Checks `input` and makes the schedule it describes (`existing` keeps its creation
    /// time).
    fn build(
        &self,
        region: &str,
        input: ScheduleInput,
        created_ms: Option<u64>,
        delivery: &crate::delivery::Targets,
    ) -> Result<Schedule, SchedulerError> {
        let group = input.group.clone().unwrap_or_else(|| DEFAULT_GROUP.into());
        if !is_name(&input.name) {
            return Err(validation(format!(
                "Schedule name {} is not valid: 1 to 64 letters, digits, '-', '_' and '.'.",
                input.name
            )));
        }
        self.group(region, &group)?;
        Expression::parse(&input.expression, input.timezone.as_deref()).map_err(validation)?;
        if let (Some(start), Some(end)) = (input.start_ms, input.end_ms)
            && end <= start
        {
            return Err(validation("The EndDate must be after the StartDate."));
        }
        if input
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 512)
        {
            return Err(validation("The Description is longer than 512 characters."));
        }
        let state = input.state.unwrap_or_else(|| "ENABLED".into());
        if !matches!(state.as_str(), "ENABLED" | "DISABLED") {
            return Err(validation(format!(
                "State {state} is not ENABLED or DISABLED."
            )));
        }
        let action = input
            .action_after_completion
            .unwrap_or_else(|| "NONE".into());
        if !matches!(action.as_str(), "NONE" | "DELETE") {
            return Err(validation(format!(
                "ActionAfterCompletion {action} is not NONE or DELETE."
            )));
        }
        check_window(&input.flexible_time_window)?;
        check_target(&self.bus, &input.target, delivery)?;
        let now = crate::timefmt::now_ms();
        Ok(Schedule {
            arn: self.arn(region, &format!("schedule/{group}/{}", input.name)),
            name: input.name,
            group,
            region: region.to_string(),
            description: input.description,
            expression: input.expression,
            timezone: input.timezone,
            start_ms: input.start_ms,
            end_ms: input.end_ms,
            state,
            flexible_time_window: input.flexible_time_window,
            action_after_completion: action,
            target: input.target,
            created_ms: created_ms.unwrap_or(now),
            modified_ms: now,
        })
    }

    /// Commits a schedule and restarts its firing state.
    async fn keep(&self, schedule: Schedule) -> Result<Arc<Schedule>, SchedulerError> {
        let outbox = self.bus.outbox();
        let (arn, now) = (schedule.arn.clone(), self.bus.schedule_clock.now());
        blocking(move || Ok(outbox.restart_schedule(&arn, now)?)).await?;
        self.keep_in(KIND, schedule.key(), &self.schedules, schedule)
            .await
    }

    /// `CreateSchedule` (`creating`) or `UpdateSchedule` (everything is replaced by what
    /// is given).
    pub async fn save(
        &self,
        region: &str,
        input: ScheduleInput,
        creating: bool,
        delivery: &crate::delivery::Targets,
    ) -> Result<Arc<Schedule>, SchedulerError> {
        let _guard = self.writes.lock().await;
        let group = input.group.clone().unwrap_or_else(|| DEFAULT_GROUP.into());
        let existing = self.schedule(region, &group, &input.name);
        let created_ms = match (&existing, creating) {
            (Ok(_), true) => {
                return Err(SchedulerError::Conflict(format!(
                    "Schedule {} already exists.",
                    input.name
                )));
            }
            (Err(_), true) => None,
            (Ok(s), false) => Some(s.created_ms),
            (Err(e), false) => {
                self.group(region, &group)?;
                return Err(e.clone());
            }
        };
        let schedule = self.build(region, input, created_ms, delivery)?;
        self.keep(schedule).await
    }

    /// `DeleteSchedule`.
    pub async fn delete(
        &self,
        region: &str,
        group: &str,
        name: &str,
    ) -> Result<(), SchedulerError> {
        let _guard = self.writes.lock().await;
        let schedule = self.schedule(region, group, name)?;
        self.delete_document(KIND, schedule.key()).await?;
        self.schedules
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&schedule.key());
        Ok(())
    }

    /// Deletes `schedule` if it is still the version given (a schedule completed while
    /// being updated stays).
    pub async fn delete_completed(&self, schedule: &Schedule) -> Result<(), SchedulerError> {
        let current = self.schedule(&schedule.region, &schedule.group, &schedule.name)?;
        if current.modified_ms != schedule.modified_ms {
            return Ok(());
        }
        self.delete(&schedule.region, &schedule.group, &schedule.name)
            .await
    }
}

fn check_window(window: &Value) -> Result<(), SchedulerError> {
    let minutes = window
        .get("MaximumWindowInMinutes")
        .filter(|v| !v.is_null());
    match window.get("Mode").and_then(Value::as_str) {
        Some("OFF") if minutes.is_none() => Ok(()),
        Some("OFF") => Err(validation(
            "MaximumWindowInMinutes is only given with the FLEXIBLE mode.",
        )),
        Some("FLEXIBLE") => match minutes.and_then(Value::as_u64) {
            Some(1..=1440) => Ok(()),
            _ => Err(validation(
                "A FLEXIBLE time window needs MaximumWindowInMinutes between 1 and 1440.",
            )),
        },
        _ => Err(validation("FlexibleTimeWindow.Mode is OFF or FLEXIBLE.")),
    }
}

/// The Scheduler target as the event bus's deliverer takes it (EventBridge's `Target`
/// shape, without an input: the firing's event is the input text, handed as is).
pub fn bus_target(target: &Value) -> Value {
    let mut out = json!({
        "Id": "schedule",
        "Arn": target.get("Arn").cloned().unwrap_or(Value::Null),
    });
    for field in ["RetryPolicy", "DeadLetterConfig", "SqsParameters"] {
        if let Some(v) = target.get(field).filter(|v| !v.is_null()) {
            out[field] = v.clone();
        }
    }
    out
}

fn check_target(
    bus: &EventBusService,
    target: &Value,
    delivery: &crate::delivery::Targets,
) -> Result<(), SchedulerError> {
    for field in ["Arn", "RoleArn"] {
        if target
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(validation(format!("Target.{field} is required.")));
        }
    }
    if target
        .get("Input")
        .is_some_and(|i| i.as_str().is_none_or(str::is_empty))
    {
        return Err(validation("Target.Input is a non-empty string."));
    }
    bus.check_target(&bus_target(target), delivery)
        .map_err(|(_, message)| validation(message))
}
