//! Asynchronous invocation settings: Put/Update/Get/Delete/ListFunctionEventInvokeConfig
//! (`/2019-09-25/functions/{name}/event-invoke-config`), per function and qualifier.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Scope;
use super::{ApiError, SharedState, parse_json, read_body};
use crate::document::{EventInvokeConfig, FunctionDocument};
use crate::function::LATEST;
use crate::registry::RegistryError;

const BODY_MAX: usize = 16 * 1024;

#[derive(Deserialize)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationInput {
    destination: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfigInput {
    on_success: Option<DestinationInput>,
    on_failure: Option<DestinationInput>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigInput {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<DestinationConfigInput>,
}

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!("Request must be smaller than {BODY_MAX} bytes"))
}

/// Function name and qualifier (`$LATEST` when none) of a request.
fn target(scope: &Scope, raw: &str, query: Option<String>) -> Result<(String, String), ApiError> {
    let reference = super::function_ref(scope, raw)?;
    let qualifier = query
        .filter(|q| !q.is_empty())
        .or(reference.qualifier)
        .unwrap_or_else(|| LATEST.to_string());
    crate::function::validate_qualifier(&qualifier)?;
    Ok((reference.name, qualifier))
}

fn check_destination(state: &SharedState, arn: &str) -> Result<(), RegistryError> {
    if arn.is_empty() {
        return Ok(());
    }
    state
        .targets
        .check(arn)
        .map(|_| ())
        .map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// Applies `input` onto `config` (all of it for Put, only what is given for Update).
fn apply(
    state: &SharedState,
    config: &mut EventInvokeConfig,
    input: ConfigInput,
) -> Result<(), RegistryError> {
    if let Some(retries) = input.maximum_retry_attempts {
        if !(0..=2).contains(&retries) {
            return Err(RegistryError::Invalid(format!(
                "1 validation error detected: Value '{retries}' at 'maximumRetryAttempts' failed to satisfy constraint: \
                 Member must have value less than or equal to 2"
            )));
        }
        config.maximum_retry_attempts = Some(retries as u32);
    }
    if let Some(age) = input.maximum_event_age_in_seconds {
        if !(60..=21_600).contains(&age) {
            return Err(RegistryError::Invalid(format!(
                "1 validation error detected: Value '{age}' at 'maximumEventAgeInSeconds' failed to satisfy constraint: \
                 Member must have value between 60 and 21600"
            )));
        }
        config.maximum_event_age_s = Some(age as u32);
    }
    if let Some(destinations) = input.destination_config {
        if let Some(on_success) = destinations.on_success {
            let arn = on_success.destination.unwrap_or_default();
            check_destination(state, &arn)?;
            config.on_success = (!arn.is_empty()).then_some(arn);
        }
        if let Some(on_failure) = destinations.on_failure {
            let arn = on_failure.destination.unwrap_or_default();
            check_destination(state, &arn)?;
            config.on_failure = (!arn.is_empty()).then_some(arn);
        }
    }
    config.last_modified_ms = crate::timefmt::now_ms();
    Ok(())
}

fn render(
    scope: &Scope,
    name: &str,
    qualifier: &str,
    config: &EventInvokeConfig,
) -> serde_json::Value {
    let destination = |arn: &Option<String>| match arn {
        Some(arn) => json!({ "Destination": arn }),
        None => json!({}),
    };
    json!({
        "LastModified": config.last_modified_ms as f64 / 1000.0,
        "FunctionArn": scope.qualified_arn(name, qualifier),
        "MaximumRetryAttempts": config.retries(),
        "MaximumEventAgeInSeconds": config.maximum_event_age_s.unwrap_or(EventInvokeConfig::DEFAULT_MAX_AGE_S),
        "DestinationConfig": {
            "OnSuccess": destination(&config.on_success),
            "OnFailure": destination(&config.on_failure),
        },
    })
}

fn check_qualifier_exists(
    document: &FunctionDocument,
    qualifier: &str,
) -> Result<(), RegistryError> {
    if document.primary_version(qualifier).is_none() {
        return Err(RegistryError::Missing(format!(
            "Function not found: {}:{qualifier}",
            document.name()
        )));
    }
    Ok(())
}

async fn store(
    state: SharedState,
    scope: Scope,
    raw: String,
    query: Option<String>,
    body: Body,
    replace: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let input: ConfigInput = parse_json(&body)?;
    let (_, config) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            check_qualifier_exists(doc, &qualifier)?;
            let mut config = match (replace, doc.event_invoke_configs.get(&qualifier)) {
                (false, Some(existing)) => existing.clone(),
                (false, None) => {
                    return Err(RegistryError::Missing(format!(
                        "The function {name} doesn't have an EventInvokeConfig for {qualifier}"
                    )));
                }
                (true, _) => EventInvokeConfig::default(),
            };
            apply(&state, &mut config, input)?;
            doc.event_invoke_configs
                .insert(qualifier.clone(), config.clone());
            Ok(config)
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, %qualifier, "event invoke config stored");
    Ok(Json(render(&scope, &name, &qualifier, &config)))
}

pub async fn put(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    store(state, scope, raw, query.qualifier, body, true).await
}

pub async fn update(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    store(state, scope, raw, query.qualifier, body, false).await
}

pub async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query.qualifier)?;
    let document = state
        .registry
        .require(&scope.key(&name), || scope.function_arn(&name))?;
    let config = document
        .event_invoke_configs
        .get(&qualifier)
        .ok_or_else(|| {
            ApiError::ResourceNotFound(format!(
                "The function {} doesn't have an EventInvokeConfig",
                scope.qualified_arn(&name, &qualifier)
            ))
        })?;
    Ok(Json(render(&scope, &name, &qualifier, config)))
}

pub async fn delete(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query.qualifier)?;
    let arn = scope.qualified_arn(&name, &qualifier);
    state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            doc.event_invoke_configs
                .remove(&qualifier)
                .map(|_| ())
                .ok_or_else(|| {
                    RegistryError::Missing(format!(
                        "The function {arn} doesn't have an EventInvokeConfig"
                    ))
                })
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /shoal/v1/functions/{name}/async-events[?limit=N]`: how many events wait, the
/// oldest one's age, and the first `limit` (100 unless said, at most 1,000), next due
/// first, each with its attempts, next attempt and last error.
pub async fn pending(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<PendingQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = super::function_ref(&scope, &raw)?.name;
    let key = scope.key(&name);
    state.registry.require(&key, || scope.function_arn(&name))?;
    let limit = match query.limit.as_deref() {
        None => PENDING_LIST_DEFAULT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=PENDING_LIST_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::InvalidParameterValue(format!(
                    "limit must be a number from 1 to {PENDING_LIST_MAX}"
                ))
            })?,
    };
    let (pending, oldest) = state
        .dispatcher
        .depth()
        .await
        .into_iter()
        .find(|(function, ..)| *function == key)
        .map(|(_, n, age)| (n, age))
        .unwrap_or((0, 0));
    let now = crate::timefmt::now_ms();
    let events: Vec<_> = state
        .dispatcher
        .waiting(&key, limit)
        .await
        .map_err(|e| ApiError::Service(e.to_string()))?
        .into_iter()
        .map(|e| {
            json!({
                "requestId": e.request_id,
                "qualifier": e.qualifier.unwrap_or_else(|| crate::function::LATEST.to_string()),
                "receivedMs": e.received_ms,
                "ageMs": now.saturating_sub(e.received_ms),
                "attempts": e.attempts,
                "nextAttemptMs": e.due_ms,
                "running": e.leased_until_ms > now,
                "lastError": e.last_error,
            })
        })
        .collect();
    Ok(Json(
        json!({ "pending": pending, "oldestAgeMs": oldest, "events": events }),
    ))
}

#[derive(serde::Deserialize)]
pub struct PendingQuery {
    limit: Option<String>,
}

const PENDING_LIST_DEFAULT: usize = 100;
const PENDING_LIST_MAX: usize = 1000;

pub async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, document) = super::named_function(&state, &scope, &raw)?;
    let configs: Vec<_> = document
        .event_invoke_configs
        .iter()
        .map(|(qualifier, config)| render(&scope, &name, qualifier, config))
        .collect();
    Ok(Json(json!({ "FunctionEventInvokeConfigs": configs })))
}
