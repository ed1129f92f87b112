//! The event bus service: buses (one document each in the store, kind [`KIND`]), their
//! rules and targets, and `PutEvents`: entries become events, are matched against the
//! bus's enabled rules, and are committed to the outbox with one delivery per matched
//! target before the caller hears they were accepted.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::archive::Archive;
use super::event::Entry;
use super::outbox::{Accepted, Outbox};
use super::transform::InputSpec;
use super::{Bus, DEFAULT_BUS, RULES_MAX, Rule, TARGETS_MAX, bus_arn, is_rule_name, rule_arn};
use crate::pattern::{Pattern, RuleSet};
use crate::region::ArnContext;
use crate::store::{DocumentStore, StoreError};

/// The store's kind for bus documents.
pub const KIND: &str = "event-bus";

/// Why an operation failed, as EventBridge names it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidPattern(String),
    #[error("{0}")]
    LimitExceeded(String),
    /// The resource is not in a state that allows the operation.
    #[error("{0}")]
    IllegalStatus(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for BusError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A bus version and its enabled pattern rules compiled (rule names as items).
type CompiledBus = (Arc<Bus>, Arc<RuleSet<String>>);

/// What `PutRule` sets.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub name: String,
    pub event_pattern: Option<String>,
    pub schedule_expression: Option<String>,
    pub state: Option<String>,
    pub description: Option<String>,
    pub role_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// One entry's outcome in `PutEvents`: its event id, or its error.
pub type EntryOutcome = Result<String, super::event::EntryError>;

pub struct EventBusService {
    pub(super) store: Arc<dyn DocumentStore>,
    outbox: Arc<Outbox>,
    buses: RwLock<BTreeMap<String, Arc<Bus>>>,
    /// Archives by `<region>/<name>`.
    pub(super) archives: RwLock<BTreeMap<String, Arc<Archive>>>,
    /// Compiled patterns by rule ARN (and the pattern text they were compiled from).
    compiled: RwLock<BTreeMap<String, (String, Pattern)>>,
    /// Each bus's enabled pattern rules as one matcher, with the bus version it was
    /// built from.
    rule_sets: RwLock<BTreeMap<String, CompiledBus>>,
    pub(super) writes: tokio::sync::Mutex<()>,
    arns: ArnContext,
    /// Woken when a replay starts or is cancelled.
    pub replays_changed: tokio::sync::Notify,
    /// Woken when deliveries are committed.
    pub committed: tokio::sync::Notify,
    /// The time schedules run on.
    pub schedule_clock: super::ticker::Clock,
}

fn key(region: &str, name: &str) -> String {
    format!("{region}/{name}")
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BusError::Internal(format!("background task failed: {e}")))?
}

/// Checks a pattern's text and compiles it.
pub fn compile(text: &str) -> Result<Pattern, BusError> {
    if text.len() > 4096 {
        return Err(BusError::InvalidPattern(
            "Event pattern is longer than 4096 characters.".into(),
        ));
    }
    Pattern::parse(text)
        .map_err(|e| BusError::InvalidPattern(format!("Event pattern is not valid. Reason: {e}")))
}

impl EventBusService {
    pub fn open(
        store: Arc<dyn DocumentStore>,
        outbox_path: &std::path::Path,
        arns: ArnContext,
    ) -> Result<Self, BusError> {
        let mut buses = BTreeMap::new();
        for (k, json) in store.load_documents(KIND)? {
            let bus: Bus = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("event bus {k}: {e}")))?;
            buses.insert(k, Arc::new(bus));
        }
        let mut archives = BTreeMap::new();
        for (k, json) in store.load_documents(super::archive::KIND)? {
            let archive: Archive = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("archive {k}: {e}")))?;
            archives.insert(k, Arc::new(archive));
        }
        let service = Self {
            store,
            outbox: Arc::new(Outbox::open(outbox_path)?),
            buses: RwLock::new(buses),
            archives: RwLock::new(archives),
            compiled: RwLock::new(BTreeMap::new()),
            rule_sets: RwLock::new(BTreeMap::new()),
            writes: tokio::sync::Mutex::new(()),
            arns,
            replays_changed: tokio::sync::Notify::new(),
            committed: tokio::sync::Notify::new(),
            schedule_clock: super::ticker::Clock::from_env(
                outbox_path.parent().unwrap_or(std::path::Path::new(".")),
            ),
        };
        Ok(service)
    }

    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    fn new_bus(&self, region: &str, name: &str) -> Bus {
        let now = crate::timefmt::now_ms();
        Bus {
            name: name.to_string(),
            arn: bus_arn(region, &self.arns.account_id, name),
            region: region.to_string(),
            description: None,
            created_ms: now,
            modified_ms: now,
            tags: BTreeMap::new(),
            rules: BTreeMap::new(),
        }
    }

    /// Bus `name` of `region` (the default bus always exists).
    pub fn bus(&self, region: &str, name: &str) -> Result<Arc<Bus>, BusError> {
        if let Some(bus) = self
            .buses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(region, name))
        {
            return Ok(bus.clone());
        }
        if name == DEFAULT_BUS {
            return Ok(Arc::new(self.new_bus(region, name)));
        }
        Err(BusError::NotFound(format!(
            "Event bus {name} does not exist."
        )))
    }

    /// The buses of `region` by name, the default bus first among them.
    pub fn list(&self, region: &str) -> Vec<Arc<Bus>> {
        let mut out: Vec<Arc<Bus>> = self
            .buses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|b| b.region == region)
            .cloned()
            .collect();
        if !out.iter().any(|b| b.name == DEFAULT_BUS) {
            out.push(Arc::new(self.new_bus(region, DEFAULT_BUS)));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Commits a bus's document, then serves it from memory.
    async fn keep(&self, bus: Bus) -> Result<Arc<Bus>, BusError> {
        let k = key(&bus.region, &bus.name);
        self.put_document(KIND, &k, &bus).await?;
        let bus = Arc::new(bus);
        self.buses
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, bus.clone());
        Ok(bus)
    }

    /// Writes one document of `kind` to the store, committed when this returns.
    pub(super) async fn put_document(
        &self,
        kind: &'static str,
        key: &str,
        document: &impl serde::Serialize,
    ) -> Result<(), BusError> {
        let json = serde_json::to_string(document)
            .map_err(|e| BusError::Internal(format!("encoding {kind} {key}: {e}")))?;
        let store = self.store.clone();
        let key = key.to_string();
        blocking(move || {
            store
                .put_document(kind, &key, &json)
                .map_err(BusError::from)
        })
        .await
    }

    /// Creates bus `name`.
    pub async fn create(
        &self,
        region: &str,
        name: &str,
        description: Option<String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<Bus>, BusError> {
        let _guard = self.writes.lock().await;
        if name == DEFAULT_BUS || self.bus(region, name).is_ok() {
            return Err(BusError::AlreadyExists(format!(
                "Event bus {name} already exists."
            )));
        }
        let mut bus = self.new_bus(region, name);
        bus.description = description;
        bus.tags = tags;
        self.keep(bus).await
    }

    /// Runs `change` on bus `name` as one committed write.
    pub async fn modify<T>(
        &self,
        region: &str,
        name: &str,
        change: impl FnOnce(&mut Bus) -> Result<T, BusError>,
    ) -> Result<(Arc<Bus>, T), BusError> {
        let _guard = self.writes.lock().await;
        let mut bus = (*self.bus(region, name)?).clone();
        let result = change(&mut bus)?;
        bus.modified_ms = crate::timefmt::now_ms();
        Ok((self.keep(bus).await?, result))
    }

    /// Deletes a bus and its rules (the default bus cannot go; a missing one is fine).
    pub async fn delete(&self, region: &str, name: &str) -> Result<(), BusError> {
        if name == DEFAULT_BUS {
            return Err(BusError::Validation(
                "Cannot delete event bus default.".into(),
            ));
        }
        let _guard = self.writes.lock().await;
        let store = self.store.clone();
        let k = key(region, name);
        let owned = k.clone();
        blocking(move || store.delete_document(KIND, &owned).map_err(BusError::from)).await?;
        self.buses
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&k);
        Ok(())
    }

    /// `PutRule`: creates or updates a rule; its ARN.
    pub async fn put_rule(
        &self,
        region: &str,
        bus_name: &str,
        input: RuleInput,
    ) -> Result<String, BusError> {
        if !is_rule_name(&input.name) {
            return Err(BusError::Validation(format!(
                "1 validation error detected: Value '{}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
                input.name
            )));
        }
        match (&input.event_pattern, &input.schedule_expression) {
            (None, None) => {
                return Err(BusError::Validation(
                    "Parameter(s) EventPattern or ScheduleExpression must be specified.".into(),
                ));
            }
            (pattern, Some(schedule)) => {
                if bus_name != DEFAULT_BUS {
                    return Err(BusError::Validation(
                        "ScheduleExpression is supported only on the default event bus.".into(),
                    ));
                }
                super::schedule::Schedule::parse(schedule)
                    .map_err(|e| BusError::Validation(e.to_string()))?;
                if let Some(pattern) = pattern {
                    compile(pattern)?;
                }
            }
            (Some(pattern), None) => {
                compile(pattern)?;
            }
        }
        let state = input.state.clone().unwrap_or_else(|| "ENABLED".into());
        if !matches!(state.as_str(), "ENABLED" | "DISABLED") {
            return Err(BusError::Validation(format!(
                "1 validation error detected: Value '{state}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
            )));
        }
        let arn = rule_arn(region, &self.arns.account_id, bus_name, &input.name);
        let mut schedule_changed = false;
        let (_, arn) = self
            .modify(region, bus_name, |bus| {
                let existing = bus.rules.get(&input.name).cloned();
                if existing.is_none() && bus.rules.len() >= RULES_MAX {
                    return Err(BusError::LimitExceeded(format!(
                        "The requested resource exceeds the maximum number allowed ({RULES_MAX} rules per bus)."
                    )));
                }
                let mut rule = existing.unwrap_or(Rule {
                    name: input.name.clone(),
                    arn: arn.clone(),
                    event_pattern: None,
                    schedule_expression: None,
                    state: state.clone(),
                    description: None,
                    role_arn: None,
                    tags: BTreeMap::new(),
                    targets: BTreeMap::new(),
                });
                rule.event_pattern = input.event_pattern;
                if rule.schedule_expression != input.schedule_expression {
                    schedule_changed = true;
                }
                rule.schedule_expression = input.schedule_expression;
                rule.state = state;
                rule.description = input.description;
                rule.role_arn = input.role_arn;
                rule.tags.extend(input.tags);
                bus.rules.insert(rule.name.clone(), rule);
                Ok(arn.clone())
            })
            .await?;
        if schedule_changed {
            let (outbox, owned) = (self.outbox.clone(), arn.clone());
            let now = self.schedule_clock.now();
            blocking(move || outbox.restart_schedule(&owned, now)).await?;
        }
        Ok(arn)
    }

    /// Every enabled rule with a schedule, with its region.
    pub fn scheduled_rules(&self) -> Vec<(String, Rule)> {
        self.buses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|b| {
                b.rules
                    .values()
                    .filter(|r| r.enabled() && r.schedule_expression.is_some())
                    .map(|r| (b.region.clone(), r.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The account every bus is in.
    pub fn account(&self) -> &str {
        &self.arns.account_id
    }

    /// Rule `name` of a bus.
    pub fn rule(&self, region: &str, bus_name: &str, name: &str) -> Result<Rule, BusError> {
        self.bus(region, bus_name)?
            .rules
            .get(name)
            .cloned()
            .ok_or_else(|| {
                BusError::NotFound(format!(
                    "Rule {name} does not exist on EventBus {bus_name}."
                ))
            })
    }

    /// Runs `change` on rule `name` (which must exist).
    pub async fn modify_rule<T>(
        &self,
        region: &str,
        bus_name: &str,
        name: &str,
        change: impl FnOnce(&mut Rule) -> Result<T, BusError>,
    ) -> Result<T, BusError> {
        let (_, result) = self
            .modify(region, bus_name, |bus| {
                let rule = bus.rules.get_mut(name).ok_or_else(|| {
                    BusError::NotFound(format!(
                        "Rule {name} does not exist on EventBus {bus_name}."
                    ))
                })?;
                change(rule)
            })
            .await?;
        Ok(result)
    }

    /// Deletes a rule; one with targets only when `force` (else a validation error, as
    /// EventBridge answers). A missing rule is fine.
    pub async fn delete_rule(
        &self,
        region: &str,
        bus_name: &str,
        name: &str,
        force: bool,
    ) -> Result<(), BusError> {
        self.modify(region, bus_name, |bus| {
            if let Some(rule) = bus.rules.get(name)
                && !rule.targets.is_empty()
                && !force
            {
                return Err(BusError::Validation(
                    "Rule can't be deleted since it has targets.".into(),
                ));
            }
            bus.rules.remove(name);
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Checks one target of `PutTargets`: its id, a target this server can deliver to,
    /// its input settings, retry policy and dead-letter queue.
    pub fn check_target(
        &self,
        target: &Value,
        targets: &crate::delivery::Targets,
    ) -> Result<(), (String, String)> {
        let invalid = |m: String| ("ValidationException".to_string(), m);
        let id = target.get("Id").and_then(Value::as_str).unwrap_or("");
        if !is_rule_name(id) {
            return Err(invalid(format!(
                "Target Id '{id}' is not valid: 1 to 64 letters, digits, '.', '-' and '_'"
            )));
        }
        let arn = target.get("Arn").and_then(Value::as_str).unwrap_or("");
        if let Some(service) = crate::arn::Arn::parse(arn).ok().map(|a| a.service) {
            match service.as_str() {
                "kinesis" => return Err(invalid("Kinesis stream targets are not supported by this server yet: it has no streams".into())),
                "states" => return Err(invalid("State machine targets are not supported by this server yet: it has no workflows".into())),
                _ => {}
            }
        }
        if let Err(e) = targets.check(arn) {
            return Err(invalid(format!("Target {id}: {e}")));
        }
        InputSpec::of_target(target).map_err(|e| invalid(e.to_string()))?;
        if let Some(retry) = target.get("RetryPolicy").filter(|v| !v.is_null()) {
            if let Some(n) = retry.get("MaximumRetryAttempts").and_then(Value::as_i64)
                && !(0..=185).contains(&n)
            {
                return Err(invalid(format!(
                    "MaximumRetryAttempts {n} must be between 0 and 185."
                )));
            }
            if let Some(n) = retry
                .get("MaximumEventAgeInSeconds")
                .and_then(Value::as_i64)
                && !(60..=86_400).contains(&n)
            {
                return Err(invalid(format!(
                    "MaximumEventAgeInSeconds {n} must be between 60 and 86400."
                )));
            }
        }
        if let Some(dlq) = target
            .get("DeadLetterConfig")
            .and_then(|d| d.get("Arn"))
            .and_then(Value::as_str)
            && !targets.is_service(dlq, "sqs")
        {
            return Err(invalid(format!(
                "DeadLetterConfig Arn {dlq} is not a queue of this server."
            )));
        }
        Ok(())
    }

    /// Puts `targets` on a rule (each checked; the refused ones returned with their code
    /// and message).
    pub async fn put_targets(
        &self,
        region: &str,
        bus_name: &str,
        rule: &str,
        new: Vec<Value>,
        delivery: &crate::delivery::Targets,
    ) -> Result<Vec<(String, String, String)>, BusError> {
        let mut failed = Vec::new();
        let mut ok = Vec::new();
        for target in new {
            match self.check_target(&target, delivery) {
                Ok(()) => ok.push(target),
                Err((code, message)) => failed.push((
                    target
                        .get("Id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    code,
                    message,
                )),
            }
        }
        self.modify_rule(region, bus_name, rule, |r| {
            let mut merged = r.targets.clone();
            for t in ok {
                let id = t.get("Id").and_then(Value::as_str).unwrap_or("").to_string();
                merged.insert(id, t);
            }
            if merged.len() > TARGETS_MAX {
                return Err(BusError::LimitExceeded(format!(
                    "The requested resource exceeds the maximum number allowed ({TARGETS_MAX} targets per rule)."
                )));
            }
            r.targets = merged;
            Ok(())
        })
        .await?;
        Ok(failed)
    }

    /// `PutEvents`: each entry's event id or error; the accepted ones (and their
    /// deliveries) committed before this returns.
    pub async fn put_events(
        &self,
        region: &str,
        entries: Vec<Entry>,
    ) -> Result<Vec<EntryOutcome>, BusError> {
        let now = crate::timefmt::now_ms();
        let account = self.arns.account_id.clone();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut accepted = Vec::new();
        for entry in entries {
            let bus_name = entry.event_bus_name.as_deref().unwrap_or(DEFAULT_BUS);
            let Some(name) = super::bus_name(bus_name, region, &account) else {
                outcomes.push(Err(super::event::EntryError {
                    code: "InvalidArgument",
                    message: format!("Parameter EventBusName is not valid. Reason: {bus_name} is not a bus name or ARN."),
                }));
                continue;
            };
            let bus = match self.bus(region, name) {
                Ok(bus) => bus,
                Err(_) => {
                    outcomes.push(Err(super::event::EntryError {
                        code: "NotFoundException",
                        message: format!("Event bus {name} does not exist."),
                    }));
                    continue;
                }
            };
            let event = match entry.event(&account, region, now) {
                Ok(event) => event,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let id = event["id"].as_str().unwrap_or_default().to_string();
            let deliveries = self.matches(&bus, &event);
            let archives = self.archiving(&bus, &event);
            accepted.push(Accepted {
                event,
                deliveries,
                archives,
            });
            outcomes.push(Ok(id));
        }
        if !accepted.is_empty() {
            let outbox = self.outbox.clone();
            blocking(move || outbox.accept(&accepted, now)).await?;
            self.committed.notify_one();
        }
        Ok(outcomes)
    }

    /// Puts an event another bus's rule forwarded on bus `name`, as it is; committed with
    /// its deliveries when this returns.
    pub async fn forward(&self, region: &str, name: &str, event: Value) -> Result<(), BusError> {
        if !event.is_object() || event.get("source").is_none() {
            return Err(BusError::Validation(
                "The forwarded payload is not an event.".into(),
            ));
        }
        let bus = self.bus(region, name)?;
        let deliveries = self.matches(&bus, &event);
        let archives = self.archiving(&bus, &event);
        let now = crate::timefmt::now_ms();
        let outbox = self.outbox.clone();
        let accepted = Accepted {
            event,
            deliveries,
            archives,
        };
        blocking(move || outbox.accept(&[accepted], now)).await?;
        self.committed.notify_one();
        Ok(())
    }

    /// `(rule ARN, target)` of every target of an enabled rule of `bus` that `event`
    /// matches.
    pub fn matches(&self, bus: &Arc<Bus>, event: &Value) -> Vec<(String, Value)> {
        let rules = self.rule_set(bus);
        let mut out = Vec::new();
        for name in rules.matching(event) {
            if let Some(rule) = bus.rules.get(name) {
                out.extend(rule.targets.values().map(|t| (rule.arn.clone(), t.clone())));
            }
        }
        out
    }

    /// The enabled pattern rules of `bus` compiled into one matcher, built once per
    /// version of the bus (every change replaces its `Arc`).
    fn rule_set(&self, bus: &Arc<Bus>) -> Arc<RuleSet<String>> {
        let key = key(&bus.region, &bus.name);
        if let Some((version, rules)) = self
            .rule_sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && Arc::ptr_eq(version, bus)
        {
            return rules.clone();
        }
        let rules = Arc::new(RuleSet::new(
            bus.rules
                .values()
                .filter(|r| r.enabled())
                .filter_map(|rule| {
                    let text = rule.event_pattern.as_deref()?;
                    Some((self.pattern(&rule.arn, text)?, rule.name.clone()))
                }),
        ));
        self.rule_sets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (bus.clone(), rules.clone()));
        rules
    }

    /// The compiled pattern of a rule (compiled once per text).
    pub(super) fn pattern(&self, rule_arn: &str, text: &str) -> Option<Pattern> {
        if let Some((cached_text, p)) = self
            .compiled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(rule_arn)
            && cached_text == text
        {
            return Some(p.clone());
        }
        let compiled = compile(text).ok()?;
        self.compiled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rule_arn.to_string(), (text.to_string(), compiled.clone()));
        Some(compiled)
    }
}
