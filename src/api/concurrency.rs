//! Concurrency settings: reserved concurrency (PutFunctionConcurrency,
//! GetFunctionConcurrency, DeleteFunctionConcurrency) and provisioned concurrency
//! (Put/Get/DeleteProvisionedConcurrencyConfig). Stored in the function's document and
//! applied to the running environments through the control door.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Scope;
use super::{ApiError, SharedState, parse_json, read_body};
use crate::document::{FunctionDocument, ProvisionedConfig};
use crate::function::LATEST;
use crate::registry::RegistryError;

/// Lambda keeps at least this much of the account limit unreserved.
pub const UNRESERVED_MINIMUM: u64 = 100;
const BODY_MAX: usize = 16 * 1024;

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!("Request must be smaller than {BODY_MAX} bytes"))
}

fn function_name(scope: &Scope, raw: &str) -> Result<String, ApiError> {
    Ok(super::function_ref(scope, raw)?.name)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutReservedRequest {
    reserved_concurrent_executions: Option<i64>,
}

pub async fn put_reserved(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = function_name(&scope, &raw)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let request: PutReservedRequest = parse_json(&body)?;
    let Some(reserved) = request.reserved_concurrent_executions else {
        return Err(ApiError::InvalidParameterValue(
            "ReservedConcurrentExecutions is a required parameter".into(),
        ));
    };
    if reserved < 0 {
        return Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{reserved}' at 'reservedConcurrentExecutions' failed to satisfy constraint: \
             Member must have value greater than or equal to 0"
        )));
    }
    let limit = state.control.concurrency_limit() as u64;
    let (_, reserved) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            let others = state.registry.reserved_total()
                - u64::from(doc.reserved_concurrency.unwrap_or(0));
            let unreserved_after = limit as i64 - others as i64 - reserved;
            if unreserved_after < UNRESERVED_MINIMUM as i64 {
                return Err(RegistryError::Invalid(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MINIMUM}]."
                )));
            }
            doc.reserved_concurrency = Some(reserved as u32);
            Ok(reserved as u32)
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, reserved, "reserved concurrency set");
    Ok(Json(json!({ "ReservedConcurrentExecutions": reserved })))
}

pub async fn get_reserved(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, document) = super::named_function(&state, &scope, &raw)?;
    Ok(Json(match document.reserved_concurrency {
        Some(reserved) => json!({ "ReservedConcurrentExecutions": reserved }),
        None => json!({}),
    }))
}

pub async fn delete_reserved(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = function_name(&scope, &raw)?;
    state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            doc.reserved_concurrency = None;
            Ok(())
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, "reserved concurrency removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ProvisionedQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutProvisionedRequest {
    provisioned_concurrent_executions: Option<i64>,
}

fn required_qualifier(query: ProvisionedQuery) -> Result<String, ApiError> {
    let qualifier = query.qualifier.filter(|q| !q.is_empty()).ok_or_else(|| {
        ApiError::InvalidParameterValue("Qualifier is a required parameter".into())
    })?;
    crate::function::validate_qualifier(&qualifier)?;
    if qualifier == LATEST {
        return Err(ApiError::InvalidParameterValue(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
                .into(),
        ));
    }
    Ok(qualifier)
}

/// The memory (MB) a function's provisioned environments take, all configs but `skip`.
fn provisioned_memory_mb(document: &FunctionDocument, skip: Option<&str>) -> u64 {
    document
        .provisioned
        .iter()
        .filter(|(qualifier, _)| Some(qualifier.as_str()) != skip)
        .filter_map(|(qualifier, config)| {
            let record = document.version(&document.primary_version(qualifier)?)?;
            Some(u64::from(config.requested) * u64::from(record.spec.memory_mb))
        })
        .sum()
}

fn status_body(
    state: &SharedState,
    document: &FunctionDocument,
    qualifier: &str,
    config: &ProvisionedConfig,
) -> serde_json::Value {
    let allocated = document
        .primary_version(qualifier)
        .map(|version| {
            state
                .control
                .provisioned_allocated(&document.key(), &version)
        })
        .unwrap_or(0)
        .min(config.requested as usize);
    let ready = allocated >= config.requested as usize;
    json!({
        "RequestedProvisionedConcurrentExecutions": config.requested,
        "AvailableProvisionedConcurrentExecutions": allocated,
        "AllocatedProvisionedConcurrentExecutions": allocated,
        "Status": if ready { "READY" } else { "IN_PROGRESS" },
        "LastModified": crate::timefmt::lambda_timestamp(config.last_modified_ms),
    })
}

pub async fn put_provisioned(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<ProvisionedQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = function_name(&scope, &raw)?;
    let qualifier = required_qualifier(query)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let request: PutProvisionedRequest = parse_json(&body)?;
    let requested = match request.provisioned_concurrent_executions {
        Some(n) if n >= 1 => n as u32,
        other => {
            return Err(ApiError::InvalidParameterValue(format!(
                "1 validation error detected: Value '{}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: \
                 Member must have value greater than or equal to 1",
                other
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "null".into())
            )));
        }
    };
    let limit = state.control.concurrency_limit() as u64;
    let capacity_mb = state.control.memory_capacity_mb();
    // What other functions' provisioned environments take of the memory capacity.
    let others_mb: u64 = state
        .registry
        .all()
        .iter()
        .filter(|d| d.key() != scope.key(&name))
        .map(|d| provisioned_memory_mb(d, None))
        .sum();
    let missing = format!(
        "Function not found: {}",
        scope.qualified_arn(&name, &qualifier)
    );
    let (document, config) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            let target = doc
                .primary_version(&qualifier)
                .ok_or(RegistryError::Missing(missing))?;
            if target == LATEST {
                return Err(RegistryError::Invalid(
                    "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
                        .into(),
                ));
            }
            let total: u64 = doc
                .provisioned
                .iter()
                .filter(|(q, _)| **q != qualifier)
                .map(|(_, c)| u64::from(c.requested))
                .sum::<u64>()
                + u64::from(requested);
            let ceiling = doc
                .reserved_concurrency
                .map(u64::from)
                .unwrap_or(limit.saturating_sub(UNRESERVED_MINIMUM));
            if total > ceiling {
                return Err(RegistryError::Invalid(format!(
                    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function ({ceiling})"
                )));
            }
            let memory_mb = doc
                .version(&target)
                .map_or(0, |r| u64::from(r.spec.memory_mb));
            let needed_mb = others_mb
                + provisioned_memory_mb(doc, Some(&qualifier))
                + u64::from(requested) * memory_mb;
            if needed_mb > capacity_mb {
                return Err(RegistryError::Invalid(format!(
                    "Requested Provisioned Concurrency cannot be met: {requested} environments of \
                     {memory_mb} MB, with the provisioned environments already configured, need \
                     {needed_mb} MB, more than this server's memory capacity of {capacity_mb} MB \
                     (--memory-capacity)"
                )));
            }
            let config = ProvisionedConfig {
                requested,
                last_modified_ms: crate::timefmt::now_ms(),
            };
            doc.provisioned.insert(qualifier.clone(), config.clone());
            Ok(config)
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, %qualifier, requested, "provisioned concurrency set");
    Ok((
        StatusCode::ACCEPTED,
        Json(status_body(&state, &document, &qualifier, &config)),
    )
        .into_response())
}

pub async fn get_provisioned(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<ProvisionedQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = function_name(&scope, &raw)?;
    let qualifier = required_qualifier(query)?;
    let document = state
        .registry
        .require(&scope.key(&name), || scope.function_arn(&name))?;
    let config = document.provisioned.get(&qualifier).ok_or_else(|| {
        ApiError::ProvisionedConcurrencyConfigNotFound(format!(
            "No Provisioned Concurrency Config found for this function: {}",
            scope.qualified_arn(&name, &qualifier)
        ))
    })?;
    Ok(Json(status_body(&state, &document, &qualifier, config)))
}

pub async fn delete_provisioned(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<ProvisionedQuery>,
) -> Result<StatusCode, ApiError> {
    let name = function_name(&scope, &raw)?;
    let qualifier = required_qualifier(query)?;
    state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            doc.provisioned.remove(&qualifier);
            Ok(())
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, %qualifier, "provisioned concurrency removed");
    Ok(StatusCode::NO_CONTENT)
}
