//! The EventBridge front (JSON 1.1, `X-Amz-Target: AWSEvents.<Action>`): buses, rules,
//! targets, `PutEvents`, `TestEventPattern` and tags, over `crate::bus`; archives and
//! replays in `archives.rs`.
//!
//! Errors are EventBridge's: `{"__type": "<Code>", "message": ...}` with the status its
//! model gives (`ResourceNotFoundException` 400, `InvalidEventPatternException` 400, ...).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

mod archives;

use super::fronts::{Answer, target_action, wire_actions};
use super::{ApiError, Scope, SharedState, read_body};
use crate::bus::event::{ENTRIES_MAX, Entry, REQUEST_MAX_BYTES};
use crate::bus::service::{RuleInput, compile};
use crate::bus::{BusError, DEFAULT_BUS, Rule};

/// The `X-Amz-Target` prefix of EventBridge.
pub(super) const TARGET_PREFIX: &str = "AWSEvents";
/// The largest request body (a `PutEvents` of 1 MB of entries, JSON-escaped).
pub(super) const BODY_MAX: usize = 4 * 1024 * 1024;

wire_actions! {
    /// One EventBridge action, named as on the wire.
    pub(super) enum EventsAction {
        CreateEventBus,
        DescribeEventBus,
        ListEventBuses,
        DeleteEventBus,
        PutRule,
        DescribeRule,
        ListRules,
        DeleteRule,
        EnableRule,
        DisableRule,
        PutTargets,
        RemoveTargets,
        ListTargetsByRule,
        ListRuleNamesByTarget,
        PutEvents,
        TestEventPattern,
        CreateArchive,
        DescribeArchive,
        ListArchives,
        UpdateArchive,
        DeleteArchive,
        StartReplay,
        DescribeReplay,
        ListReplays,
        CancelReplay,
        TagResource,
        UntagResource,
        ListTagsForResource,
    }
}

/// An EventBridge error: its code and message (status 400 unless internal).
#[derive(Debug)]
pub(super) struct EventsError {
    status: StatusCode,
    code: String,
    message: String,
}

impl EventsError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
}

impl From<BusError> for EventsError {
    fn from(e: BusError) -> Self {
        let message = e.to_string();
        match e {
            BusError::NotFound(_) => Self::new("ResourceNotFoundException", message),
            BusError::AlreadyExists(_) => Self::new("ResourceAlreadyExistsException", message),
            BusError::Validation(_) => Self::validation(message),
            BusError::InvalidPattern(_) => Self::new("InvalidEventPatternException", message),
            BusError::LimitExceeded(_) => Self::new("LimitExceededException", message),
            BusError::IllegalStatus(_) => Self::new("IllegalStatusException", message),
            BusError::Internal(_) => {
                tracing::error!(error = %message, "an EventBridge operation failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "InternalException".into(),
                    message,
                }
            }
        }
    }
}

impl IntoResponse for EventsError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.code, &self.message)
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "__type": code, "message": message });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    // Marks the answer as already in the service's format.
    if let Ok(v) = HeaderValue::from_str(code) {
        headers.insert("x-amzn-errortype", v);
    }
    response
}

/// An error made outside the front (authentication, limits) in EventBridge's format.
pub(super) fn foreign_error_response(status: StatusCode, code: &str, message: &str) -> Response {
    error_response(status, code, message)
}

fn ok(value: Value) -> Response {
    let mut response = (StatusCode::OK, value.to_string()).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

/// The front's entry in the table of fronts.
pub(super) fn serve(state: SharedState, headers: HeaderMap, body: Body) -> Answer {
    Box::pin(handle(state, headers, body))
}

async fn handle(state: SharedState, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, BODY_MAX, || {
        ApiError::RequestTooLarge("Request is too large".into())
    })
    .await
    {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let target = headers
        .get("x-amz-target")
        .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
        .unwrap_or_default();
    let Some(action) = target_action(&target, TARGET_PREFIX).and_then(EventsAction::from_name)
    else {
        return EventsError::new(
            "UnknownOperationException",
            format!("The operation {target} is not supported by this server"),
        )
        .into_response();
    };
    let scope = match Scope::of(&state, &headers, None) {
        Ok(scope) => scope,
        Err(e) => return e.into_response(),
    };
    let call = Call {
        state: &state,
        scope,
        body: &body,
    };
    let span = tracing::info_span!("events", action = action.name());
    match tracing::Instrument::instrument(run(action, &call), span).await {
        Ok(value) => ok(value),
        Err(e) => e.into_response(),
    }
}

struct Call<'a> {
    state: &'a SharedState,
    scope: Scope,
    body: &'a [u8],
}

impl Call<'_> {
    fn input<T: DeserializeOwned>(&self) -> Result<T, EventsError> {
        let text = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            self.body
        };
        serde_json::from_slice(text)
            .map_err(|e| EventsError::validation(format!("The request body is not valid: {e}")))
    }

    fn region(&self) -> &str {
        &self.scope.region
    }

    /// The bus an `EventBusName` names (default when absent).
    fn bus_name(&self, raw: Option<&str>) -> Result<String, EventsError> {
        let raw = raw.unwrap_or(DEFAULT_BUS);
        crate::bus::bus_name(raw, self.region(), &self.scope.account_id)
            .map(str::to_string)
            .ok_or_else(|| {
                EventsError::validation(format!(
                    "1 validation error detected: Value '{raw}' at 'eventBusName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:aws[\\w-]*:events:[a-z]+-[a-z]+-[\\w-]+:[0-9]{{12}}:event-bus\\/)?[/\\.\\-_A-Za-z0-9]+"
                ))
            })
    }
}

/// A `{"Key", "Value"}` tag as EventBridge and the Scheduler send it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Tag {
    key: String,
    value: String,
}

/// Tags as a map: at most `max`, keys 1 to 128 characters, values up to 256; the refusal's
/// message.
pub(super) fn checked_tags(tags: Vec<Tag>, max: usize) -> Result<BTreeMap<String, String>, String> {
    if tags.len() > max {
        return Err(format!("A resource can have at most {max} tags."));
    }
    let mut out = BTreeMap::new();
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
            return Err(format!(
                "Tag {} is not valid: keys 1 to 128 characters, values up to 256.",
                t.key
            ));
        }
        out.insert(t.key, t.value);
    }
    Ok(out)
}

fn tag_map(tags: Option<Vec<Tag>>) -> Result<BTreeMap<String, String>, EventsError> {
    checked_tags(tags.unwrap_or_default(), 50).map_err(EventsError::validation)
}

/// Tags as the `[{"Key", "Value"}]` list the wire takes.
pub(super) fn tag_list(tags: &BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect(),
    )
}

fn rule_view(rule: &Rule, bus: &str) -> Value {
    let mut out = json!({
        "Name": rule.name,
        "Arn": rule.arn,
        "State": rule.state,
        "EventBusName": bus,
    });
    if let Some(p) = &rule.event_pattern {
        out["EventPattern"] = json!(p);
    }
    if let Some(s) = &rule.schedule_expression {
        out["ScheduleExpression"] = json!(s);
    }
    if let Some(d) = &rule.description {
        out["Description"] = json!(d);
    }
    if let Some(r) = &rule.role_arn {
        out["RoleArn"] = json!(r);
    }
    out
}

/// `{key: <page of items>, "NextToken": ...}`.
fn paged(
    key: &str,
    items: Vec<Value>,
    limit: Option<usize>,
    token: Option<&str>,
) -> Result<Value, EventsError> {
    let (items, next) = page(items, limit, token)?;
    let mut out = json!({ key: items });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

/// A page of `items` by an offset token.
fn page(
    items: Vec<Value>,
    limit: Option<usize>,
    token: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), EventsError> {
    let start: usize = match token {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| EventsError::validation(format!("Invalid NextToken {t}")))?,
    };
    let limit = limit.unwrap_or(100).clamp(1, 100);
    let end = start.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.get(start..end).unwrap_or_default().to_vec(), next))
}

async fn run(action: EventsAction, call: &Call<'_>) -> Result<Value, EventsError> {
    use EventsAction as A;
    let bus = &call.state.bus;
    let region = call.region().to_string();
    match action {
        A::CreateEventBus => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: String,
                description: Option<String>,
                event_source_name: Option<String>,
                tags: Option<Vec<Tag>>,
            }
            let input: Input = call.input()?;
            if !crate::bus::is_bus_name(&input.name) || input.name.contains('/') {
                return Err(EventsError::validation(format!(
                    "Event bus name {} is not valid.",
                    input.name
                )));
            }
            if input.event_source_name.is_some() {
                return Err(EventsError::validation(
                    "Partner event sources are not supported by this server.",
                ));
            }
            let made = bus
                .create(
                    &region,
                    &input.name,
                    input.description,
                    tag_map(input.tags)?,
                )
                .await?;
            Ok(json!({ "EventBusArn": made.arn }))
        }
        A::DescribeEventBus => {
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: Option<String>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.name.as_deref())?;
            let b = bus.bus(&region, &name)?;
            let mut out = json!({
                "Name": b.name, "Arn": b.arn,
                "CreationTime": b.created_ms as f64 / 1000.0,
                "LastModifiedTime": b.modified_ms as f64 / 1000.0,
            });
            if let Some(d) = &b.description {
                out["Description"] = json!(d);
            }
            Ok(out)
        }
        A::ListEventBuses => {
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name_prefix: Option<String>,
                next_token: Option<String>,
                limit: Option<usize>,
            }
            let input: Input = call.input()?;
            let items: Vec<Value> = bus
                .list(&region)
                .iter()
                .filter(|b| {
                    input
                        .name_prefix
                        .as_deref()
                        .is_none_or(|p| b.name.starts_with(p))
                })
                .map(|b| {
                    let mut v = json!({
                        "Name": b.name, "Arn": b.arn,
                        "CreationTime": b.created_ms as f64 / 1000.0,
                        "LastModifiedTime": b.modified_ms as f64 / 1000.0,
                    });
                    if let Some(d) = &b.description {
                        v["Description"] = json!(d);
                    }
                    v
                })
                .collect();
            paged(
                "EventBuses",
                items,
                input.limit,
                input.next_token.as_deref(),
            )
        }
        A::DeleteEventBus => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: String,
            }
            let input: Input = call.input()?;
            bus.delete(&region, &input.name).await?;
            Ok(json!({}))
        }
        A::PutRule => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: String,
                schedule_expression: Option<String>,
                event_pattern: Option<String>,
                state: Option<String>,
                description: Option<String>,
                role_arn: Option<String>,
                tags: Option<Vec<Tag>>,
                event_bus_name: Option<String>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            if input.description.as_deref().is_some_and(|d| d.len() > 512) {
                return Err(EventsError::validation(
                    "Description is longer than 512 characters.",
                ));
            }
            let arn = bus
                .put_rule(
                    &region,
                    &name,
                    RuleInput {
                        name: input.name,
                        event_pattern: input.event_pattern,
                        schedule_expression: input.schedule_expression,
                        state: input.state,
                        description: input.description,
                        role_arn: input.role_arn,
                        tags: tag_map(input.tags)?,
                    },
                )
                .await?;
            Ok(json!({ "RuleArn": arn }))
        }
        A::DescribeRule => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: String,
                event_bus_name: Option<String>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            let rule = bus.rule(&region, &name, &input.name)?;
            let mut out = rule_view(&rule, &name);
            out["CreatedBy"] = json!(call.scope.account_id);
            Ok(out)
        }
        A::ListRules => {
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name_prefix: Option<String>,
                event_bus_name: Option<String>,
                next_token: Option<String>,
                limit: Option<usize>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            let b = bus.bus(&region, &name)?;
            let items: Vec<Value> = b
                .rules
                .values()
                .filter(|r| {
                    input
                        .name_prefix
                        .as_deref()
                        .is_none_or(|p| r.name.starts_with(p))
                })
                .map(|r| rule_view(r, &name))
                .collect();
            paged("Rules", items, input.limit, input.next_token.as_deref())
        }
        A::DeleteRule => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: String,
                event_bus_name: Option<String>,
                #[serde(default)]
                force: bool,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            bus.delete_rule(&region, &name, &input.name, input.force)
                .await?;
            Ok(json!({}))
        }
        A::EnableRule | A::DisableRule => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                name: String,
                event_bus_name: Option<String>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            let state = if action == A::EnableRule {
                "ENABLED"
            } else {
                "DISABLED"
            };
            bus.modify_rule(&region, &name, &input.name, |r| {
                r.state = state.into();
                Ok(())
            })
            .await?;
            Ok(json!({}))
        }
        A::PutTargets => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                rule: String,
                event_bus_name: Option<String>,
                targets: Vec<Value>,
            }
            let input: Input = call.input()?;
            if input.targets.is_empty() || input.targets.len() > 10 {
                return Err(EventsError::validation(
                    "Targets must have between 1 and 10 entries.",
                ));
            }
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            let failed = bus
                .put_targets(
                    &region,
                    &name,
                    &input.rule,
                    input.targets,
                    &call.state.targets,
                )
                .await?;
            Ok(json!({
                "FailedEntryCount": failed.len(),
                "FailedEntries": failed.iter().map(|(id, code, message)| json!({
                    "TargetId": id, "ErrorCode": code, "ErrorMessage": message,
                })).collect::<Vec<_>>(),
            }))
        }
        A::RemoveTargets => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                rule: String,
                event_bus_name: Option<String>,
                ids: Vec<String>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            bus.modify_rule(&region, &name, &input.rule, |r| {
                for id in &input.ids {
                    r.targets.remove(id);
                }
                Ok(())
            })
            .await?;
            Ok(json!({ "FailedEntryCount": 0, "FailedEntries": [] }))
        }
        A::ListTargetsByRule => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                rule: String,
                event_bus_name: Option<String>,
                next_token: Option<String>,
                limit: Option<usize>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            let rule = bus.rule(&region, &name, &input.rule)?;
            paged(
                "Targets",
                rule.targets.values().cloned().collect(),
                input.limit,
                input.next_token.as_deref(),
            )
        }
        A::ListRuleNamesByTarget => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                target_arn: String,
                event_bus_name: Option<String>,
                next_token: Option<String>,
                limit: Option<usize>,
            }
            let input: Input = call.input()?;
            let name = call.bus_name(input.event_bus_name.as_deref())?;
            let b = bus.bus(&region, &name)?;
            let names: Vec<Value> = b
                .rules
                .values()
                .filter(|r| {
                    r.targets.values().any(|t| {
                        t.get("Arn").and_then(Value::as_str) == Some(input.target_arn.as_str())
                    })
                })
                .map(|r| json!(r.name))
                .collect();
            paged("RuleNames", names, input.limit, input.next_token.as_deref())
        }
        A::PutEvents => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                entries: Vec<Entry>,
            }
            let input: Input = call.input()?;
            if input.entries.is_empty() || input.entries.len() > ENTRIES_MAX {
                return Err(EventsError::validation(format!(
                    "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and {ENTRIES_MAX}"
                )));
            }
            let total: usize = input.entries.iter().map(Entry::size).sum();
            if total > REQUEST_MAX_BYTES {
                return Err(EventsError::validation(format!(
                    "Total size of the entries in the request is over the limit ({total} bytes; at most {REQUEST_MAX_BYTES})."
                )));
            }
            call.state
                .disk
                .check(total as u64, "bus events")
                .map_err(|e| EventsError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "ServiceUnavailable".into(),
                    message: e.to_string(),
                })?;
            let outcomes = bus.put_events(&region, input.entries).await?;
            let failed = outcomes.iter().filter(|o| o.is_err()).count();
            let entries: Vec<Value> = outcomes
                .into_iter()
                .map(|o| match o {
                    Ok(id) => json!({ "EventId": id }),
                    Err(e) => json!({ "ErrorCode": e.code, "ErrorMessage": e.message }),
                })
                .collect();
            Ok(json!({ "FailedEntryCount": failed, "Entries": entries }))
        }
        A::TestEventPattern => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Input {
                event_pattern: String,
                event: String,
            }
            let input: Input = call.input()?;
            let pattern = compile(&input.event_pattern).map_err(EventsError::from)?;
            let event: Value = serde_json::from_str(&input.event)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| EventsError::validation("Parameter Event is not valid."))?;
            for field in ["id", "account", "source", "time", "region", "detail-type"] {
                if event.get(field).is_none() {
                    return Err(EventsError::validation(format!(
                        "Parameter Event is not valid. Reason: Provided Event is missing required field {field}."
                    )));
                }
            }
            Ok(json!({ "Result": pattern.matches(&event) }))
        }
        A::TagResource | A::UntagResource | A::ListTagsForResource => tags(action, call).await,
        A::CreateArchive
        | A::DescribeArchive
        | A::ListArchives
        | A::UpdateArchive
        | A::DeleteArchive
        | A::StartReplay
        | A::DescribeReplay
        | A::ListReplays
        | A::CancelReplay => archives::run(action, call).await,
    }
}

/// Tags of buses and rules, by ARN.
async fn tags(action: EventsAction, call: &Call<'_>) -> Result<Value, EventsError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        #[serde(rename = "ResourceARN")]
        resource_arn: String,
        tags: Option<Vec<Tag>>,
        tag_keys: Option<Vec<String>>,
    }
    let input: Input = call.input()?;
    let region = call.region().to_string();
    let prefix = format!("arn:aws:events:{region}:{}:", call.scope.account_id);
    let not_found = || {
        EventsError::new(
            "ResourceNotFoundException",
            format!("Resource {} does not exist.", input.resource_arn),
        )
    };
    let rest = input
        .resource_arn
        .strip_prefix(&prefix)
        .ok_or_else(not_found)?;
    let (bus_name, rule) = if let Some(name) = rest.strip_prefix("event-bus/") {
        (name.to_string(), None)
    } else if let Some(r) = rest.strip_prefix("rule/") {
        match r.split_once('/') {
            Some((b, n)) => (b.to_string(), Some(n.to_string())),
            None => (DEFAULT_BUS.to_string(), Some(r.to_string())),
        }
    } else {
        return Err(not_found());
    };
    let bus = &call.state.bus;
    let current = match &rule {
        None => bus
            .bus(&region, &bus_name)
            .map_err(|_| not_found())?
            .tags
            .clone(),
        Some(r) => {
            bus.rule(&region, &bus_name, r)
                .map_err(|_| not_found())?
                .tags
        }
    };
    if action == EventsAction::ListTagsForResource {
        return Ok(json!({ "Tags": tag_list(&current) }));
    }
    let add = tag_map(input.tags)?;
    let remove = input.tag_keys.unwrap_or_default();
    let edit = |tags: &mut BTreeMap<String, String>| {
        tags.extend(add);
        for k in &remove {
            tags.remove(k);
        }
    };
    match rule {
        None => {
            bus.modify(&region, &bus_name, |b| {
                edit(&mut b.tags);
                Ok(())
            })
            .await?;
        }
        Some(r) => {
            bus.modify_rule(&region, &bus_name, &r, |rule| {
                edit(&mut rule.tags);
                Ok(())
            })
            .await?;
        }
    }
    Ok(json!({}))
}
