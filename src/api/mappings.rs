//! Event source mappings on Lambda's REST API: Create, Get, Update, Delete and
//! ListEventSourceMappings (`/2015-03-31/event-source-mappings`). Translates the wire into
//! `mappings::MappingInput` and the service's answers into
//! `EventSourceMappingConfiguration`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Scope, SharedState, parse_json, read_body};
use crate::mappings::{Mapping, MappingError, MappingInput, MappingState};

const BODY_MAX: usize = 256 * 1024;

impl From<MappingError> for ApiError {
    fn from(e: MappingError) -> Self {
        match e {
            MappingError::Invalid(m) => ApiError::InvalidParameterValue(m),
            MappingError::NotFound(m) => ApiError::ResourceNotFound(m),
            MappingError::Conflict(m) => ApiError::ResourceConflict(m),
            MappingError::Backend(m) => ApiError::Service(m),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ScalingInput {
    maximum_concurrency: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Input {
    event_source_arn: Option<String>,
    function_name: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<i64>,
    maximum_batching_window_in_seconds: Option<i64>,
    filter_criteria: Option<Value>,
    function_response_types: Option<Vec<String>>,
    scaling_config: Option<ScalingInput>,
    tags: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Parameters of stream, Kafka and MQ sources: refused for a queue.
const NOT_FOR_QUEUES: &[&str] = &[
    "StartingPosition",
    "StartingPositionTimestamp",
    "ParallelizationFactor",
    "DestinationConfig",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
];

fn input_of(scope: &Scope, body: &[u8]) -> Result<MappingInput, ApiError> {
    let input: Input = parse_json(body)?;
    let function = input
        .function_name
        .map(|raw| {
            let reference = super::function_ref(scope, &raw)?;
            Ok::<_, ApiError>((scope.key(&reference.name).into_owned(), reference.qualifier))
        })
        .transpose()?;
    let unsupported = NOT_FOR_QUEUES
        .iter()
        .copied()
        .filter(|name| input.other.get(*name).is_some_and(|v| !v.is_null()))
        .collect();
    Ok(MappingInput {
        function,
        source_arn: input.event_source_arn,
        enabled: input.enabled,
        batch_size: input.batch_size,
        batching_window_s: input.maximum_batching_window_in_seconds,
        filter_criteria: input.filter_criteria.filter(|v| !v.is_null()),
        function_response_types: input.function_response_types,
        maximum_concurrency: input.scaling_config.map(|s| s.maximum_concurrency),
        unsupported,
        tags: input.tags,
    })
}

/// `EventSourceMappingConfiguration` of `mapping`, in `state`.
fn configuration(state: &SharedState, mapping: &Mapping, shown: MappingState) -> Value {
    let mut out = json!({
        "UUID": mapping.uuid,
        "BatchSize": mapping.batch_size,
        "MaximumBatchingWindowInSeconds": mapping.batching_window_s,
        "EventSourceArn": mapping.source_arn,
        "FunctionArn": state.mappings.function_arn(mapping),
        "LastModified": mapping.last_modified_ms as f64 / 1000.0,
        "LastProcessingResult": mapping.last_processing_result,
        "State": shown.as_str(),
        "StateTransitionReason": mapping.state_reason,
        "FunctionResponseTypes": if mapping.report_batch_item_failures {
            json!([crate::mappings::REPORT_BATCH_ITEM_FAILURES])
        } else {
            json!([])
        },
        "EventSourceMappingArn": state.mappings.arn(mapping),
    });
    if let Some(criteria) = &mapping.filter_criteria {
        out["FilterCriteria"] = criteria.clone();
    }
    if let Some(max) = mapping.maximum_concurrency {
        out["ScalingConfig"] = json!({ "MaximumConcurrency": max });
    }
    out
}

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!("Request must be smaller than {BODY_MAX} bytes"))
}

pub async fn create(
    State(state): State<SharedState>,
    scope: Scope,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, BODY_MAX, too_large).await?;
    let input = input_of(&scope, &body)?;
    let (mapping, shown) = state.mappings.create(&scope, input)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(configuration(&state, &mapping, shown)),
    )
        .into_response())
}

pub async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path(uuid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mapping = state.mappings.get(&scope, &uuid)?;
    Ok(Json(configuration(&state, &mapping, mapping.state())))
}

pub async fn update(
    State(state): State<SharedState>,
    scope: Scope,
    Path(uuid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, BODY_MAX, too_large).await?;
    let input = input_of(&scope, &body)?;
    if input.source_arn.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "The event source of a mapping cannot be changed: EventSourceArn is not a parameter of UpdateEventSourceMapping.".into(),
        ));
    }
    let (mapping, shown) = state.mappings.update(&scope, &uuid, input)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(configuration(&state, &mapping, shown)),
    )
        .into_response())
}

pub async fn delete(
    State(state): State<SharedState>,
    scope: Scope,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    let mapping = state.mappings.delete(&scope, &uuid)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(configuration(&state, &mapping, MappingState::Deleting)),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(rename = "FunctionName")]
    function_name: Option<String>,
    #[serde(rename = "EventSourceArn")]
    event_source_arn: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

pub async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let max = match query.max_items.as_deref() {
        None => crate::mappings::LIST_DEFAULT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=10_000).contains(&n) => n as usize,
            _ => {
                return Err(ApiError::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{raw}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000"
                )));
            }
        },
    };
    let function = query
        .function_name
        .filter(|f| !f.is_empty())
        .map(|raw| {
            let reference = super::function_ref(&scope, &raw)?;
            Ok::<_, ApiError>((scope.key(&reference.name).into_owned(), reference.qualifier))
        })
        .transpose()?;
    let (page, next) = state.mappings.list(
        &scope,
        function,
        query.event_source_arn.as_deref().filter(|a| !a.is_empty()),
        query.marker.as_deref().filter(|m| !m.is_empty()),
        max,
    );
    let mut out = json!({
        "EventSourceMappings": page
            .iter()
            .map(|m| configuration(&state, m, m.state()))
            .collect::<Vec<_>>(),
    });
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(Json(out))
}
