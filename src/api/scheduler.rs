//! EventBridge Scheduler's operations (rest-json, signed for `scheduler`): schedules under
//! `/schedules/{Name}`, groups under `/schedule-groups/{Name}`, group tags under
//! `/tags/{ResourceArn}`, over `crate::schedules`.
//!
//! Errors are `{"Message": ...}` with the code in `x-amzn-ErrorType`:
//! `ValidationException` 400, `ResourceNotFoundException` 404, `ConflictException` 409.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::{Tag, checked_tags, tag_list};
use super::{Scope, SharedState};
use crate::schedules::service::ScheduleInput;
use crate::schedules::{DEFAULT_GROUP, Group, Schedule, SchedulerError};

/// The routes of the operations.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/schedules", get(list_schedules))
        .route(
            "/schedules/{name}",
            get(get_schedule)
                .post(create_schedule)
                .put(update_schedule)
                .delete(delete_schedule),
        )
        .route("/schedule-groups", get(list_groups))
        .route(
            "/schedule-groups/{name}",
            get(get_group).post(create_group).delete(delete_group),
        )
        .route("/tags/{*arn}", get(list_tags).post(tag).delete(untag))
}

/// Whether a request (by its path) is one of the Scheduler's, signed for `scheduler`.
pub fn is_scheduler_path(path: &str) -> bool {
    path == "/schedules"
        || path.starts_with("/schedules/")
        || path == "/schedule-groups"
        || path.starts_with("/schedule-groups/")
        || path.starts_with("/tags/arn:aws:scheduler:")
        || path.starts_with("/tags/arn%3Aaws%3Ascheduler%3A")
}

impl IntoResponse for SchedulerError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "ValidationException"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "ConflictException"),
            Self::Internal(_) => {
                tracing::error!(error = %self, "a Scheduler operation failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException")
            }
        };
        let mut response =
            (status, axum::Json(json!({ "Message": self.to_string() }))).into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(code));
        response
    }
}

type Answer = Result<Response, SchedulerError>;

fn ok(value: Value) -> Answer {
    Ok(axum::Json(value).into_response())
}

fn input<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, SchedulerError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text)
        .map_err(|e| SchedulerError::Validation(format!("The request body is not valid: {e}")))
}

fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A timestamp as sent (epoch seconds, or an ISO-8601 string).
fn time(value: Option<&Value>, field: &str) -> Result<Option<u64>, SchedulerError> {
    match value.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => crate::bus::event::time_of(v)
            .map(Some)
            .ok_or_else(|| SchedulerError::Validation(format!("{field} is not a time."))),
    }
}

/// A page of `items` by an offset token.
fn page(
    items: Vec<Value>,
    max: Option<usize>,
    token: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), SchedulerError> {
    let start: usize = match token {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| SchedulerError::Validation(format!("Invalid NextToken {t}")))?,
    };
    let max = max.unwrap_or(100).clamp(1, 100);
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.get(start..end).unwrap_or_default().to_vec(), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleBody {
    group_name: Option<String>,
    description: Option<String>,
    schedule_expression: Option<String>,
    schedule_expression_timezone: Option<String>,
    start_date: Option<Value>,
    end_date: Option<Value>,
    state: Option<String>,
    flexible_time_window: Option<Value>,
    action_after_completion: Option<String>,
    target: Option<Value>,
}

impl ScheduleBody {
    fn into_input(self, name: String) -> Result<ScheduleInput, SchedulerError> {
        let required = |field: &str| {
            SchedulerError::Validation(format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            ))
        };
        Ok(ScheduleInput {
            name,
            group: self.group_name,
            description: self.description,
            expression: self
                .schedule_expression
                .ok_or_else(|| required("scheduleExpression"))?,
            timezone: self.schedule_expression_timezone,
            start_ms: time(self.start_date.as_ref(), "StartDate")?,
            end_ms: time(self.end_date.as_ref(), "EndDate")?,
            state: self.state,
            flexible_time_window: self
                .flexible_time_window
                .ok_or_else(|| required("flexibleTimeWindow"))?,
            action_after_completion: self.action_after_completion,
            target: self.target.ok_or_else(|| required("target"))?,
        })
    }
}

fn schedule_view(s: &Schedule) -> Value {
    let mut out = json!({
        "Arn": s.arn,
        "Name": s.name,
        "GroupName": s.group,
        "ScheduleExpression": s.expression,
        "State": s.state,
        "FlexibleTimeWindow": s.flexible_time_window,
        "ActionAfterCompletion": s.action_after_completion,
        "Target": s.target,
        "CreationDate": seconds(s.created_ms),
        "LastModificationDate": seconds(s.modified_ms),
    });
    if let Some(d) = &s.description {
        out["Description"] = json!(d);
    }
    if let Some(z) = &s.timezone {
        out["ScheduleExpressionTimezone"] = json!(z);
    }
    if let Some(t) = s.start_ms {
        out["StartDate"] = seconds(t);
    }
    if let Some(t) = s.end_ms {
        out["EndDate"] = seconds(t);
    }
    out
}

fn group_view(g: &Group) -> Value {
    json!({
        "Arn": g.arn,
        "Name": g.name,
        "State": "ACTIVE",
        "CreationDate": seconds(g.created_ms),
        "LastModificationDate": seconds(g.modified_ms),
    })
}

async fn create_schedule(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer {
    save(&state, &scope, name, &body, true).await
}

async fn update_schedule(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer {
    save(&state, &scope, name, &body, false).await
}

async fn save(
    state: &SharedState,
    scope: &Scope,
    name: String,
    body: &Bytes,
    creating: bool,
) -> Answer {
    let body: ScheduleBody = input(body)?;
    let made = state
        .schedules
        .save(
            &scope.region,
            body.into_input(name)?,
            creating,
            &state.targets,
        )
        .await?;
    ok(json!({ "ScheduleArn": made.arn }))
}

#[derive(Deserialize)]
struct GroupQuery {
    #[serde(rename = "groupName")]
    group_name: Option<String>,
}

async fn get_schedule(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
    Query(query): Query<GroupQuery>,
) -> Answer {
    let group = query.group_name.as_deref().unwrap_or(DEFAULT_GROUP);
    let s = state.schedules.schedule(&scope.region, group, &name)?;
    ok(schedule_view(&s))
}

async fn delete_schedule(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
    Query(query): Query<GroupQuery>,
) -> Answer {
    let group = query.group_name.as_deref().unwrap_or(DEFAULT_GROUP);
    state.schedules.delete(&scope.region, group, &name).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "ScheduleGroup")]
    group: Option<String>,
    #[serde(rename = "NamePrefix")]
    name_prefix: Option<String>,
    #[serde(rename = "State")]
    state: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<usize>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

async fn list_schedules(
    State(state): State<SharedState>,
    scope: Scope,
    Query(query): Query<ListQuery>,
) -> Answer {
    if let Some(g) = &query.group {
        state.schedules.group(&scope.region, g)?;
    }
    let items = state
        .schedules
        .list(&scope.region, query.group.as_deref())
        .iter()
        .filter(|s| {
            query
                .name_prefix
                .as_deref()
                .is_none_or(|p| s.name.starts_with(p))
                && query.state.as_deref().is_none_or(|st| s.state == st)
        })
        .map(|s| {
            json!({
                "Arn": s.arn, "Name": s.name, "GroupName": s.group, "State": s.state,
                "CreationDate": seconds(s.created_ms),
                "LastModificationDate": seconds(s.modified_ms),
                "Target": { "Arn": s.target.get("Arn").cloned().unwrap_or(Value::Null) },
            })
        })
        .collect();
    let (items, next) = page(items, query.max_results, query.next_token.as_deref())?;
    let mut out = json!({ "Schedules": items });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    ok(out)
}

fn tag_map(tags: Vec<Tag>) -> Result<BTreeMap<String, String>, SchedulerError> {
    checked_tags(tags, 200).map_err(SchedulerError::Validation)
}

async fn create_group(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        #[serde(default)]
        tags: Vec<Tag>,
    }
    let body: Body = input(&body)?;
    let group = state
        .schedules
        .create_group(&scope.region, &name, tag_map(body.tags)?)
        .await?;
    ok(json!({ "ScheduleGroupArn": group.arn }))
}

async fn get_group(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
) -> Answer {
    let group = state.schedules.group(&scope.region, &name)?;
    ok(group_view(&group))
}

async fn delete_group(
    State(state): State<SharedState>,
    scope: Scope,
    Path(name): Path<String>,
) -> Answer {
    state.schedules.delete_group(&scope.region, &name).await?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct GroupListQuery {
    #[serde(rename = "NamePrefix")]
    name_prefix: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<usize>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

async fn list_groups(
    State(state): State<SharedState>,
    scope: Scope,
    Query(query): Query<GroupListQuery>,
) -> Answer {
    let items = state
        .schedules
        .groups(&scope.region)
        .iter()
        .filter(|g| {
            query
                .name_prefix
                .as_deref()
                .is_none_or(|p| g.name.starts_with(p))
        })
        .map(|g| group_view(g))
        .collect();
    let (items, next) = page(items, query.max_results, query.next_token.as_deref())?;
    let mut out = json!({ "ScheduleGroups": items });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    ok(out)
}

fn tagged_group(state: &SharedState, arn: &str) -> Result<std::sync::Arc<Group>, SchedulerError> {
    state
        .schedules
        .group_by_arn(arn)
        .ok_or_else(|| SchedulerError::NotFound(format!("Resource {arn} does not exist.")))
}

async fn list_tags(State(state): State<SharedState>, Path(arn): Path<String>) -> Answer {
    let group = tagged_group(&state, &arn)?;
    ok(json!({ "Tags": tag_list(&group.tags) }))
}

async fn tag(State(state): State<SharedState>, Path(arn): Path<String>, body: Bytes) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        tags: Vec<Tag>,
    }
    let body: Body = input(&body)?;
    let tags = tag_map(body.tags)?;
    state
        .schedules
        .tag_group(&arn, |current| current.extend(tags))
        .await?;
    ok(json!({}))
}

async fn untag(
    State(state): State<SharedState>,
    Path(arn): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Answer {
    let keys: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "TagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    state
        .schedules
        .tag_group(&arn, |current| {
            for k in &keys {
                current.remove(k);
            }
        })
        .await?;
    ok(json!({}))
}
