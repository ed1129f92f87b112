//! Alias operations: CreateAlias, GetAlias, UpdateAlias, DeleteAlias, ListAliases.
//! An alias names a version and may send a share of its traffic to one other version.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Scope;
use super::functions::max_items;
use super::{ApiError, SharedState, parse_json, read_body};
use crate::document::{Alias, FunctionDocument, validate_alias_name};
use crate::function::{self, LATEST};
use crate::registry::RegistryError;

const BODY_MAX: usize = 64 * 1024;

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!("Request must be smaller than {BODY_MAX} bytes"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingConfigInput {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateAliasRequest {
    name: String,
    function_version: String,
    description: Option<String>,
    routing_config: Option<RoutingConfigInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateAliasRequest {
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingConfigInput>,
    revision_id: Option<String>,
}

#[derive(Deserialize)]
pub struct ListAliasesQuery {
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

fn function_name(scope: &Scope, raw: &str) -> Result<String, ApiError> {
    Ok(super::function_ref(scope, raw)?.name)
}

/// Checks an alias's target and routing against the function's versions.
fn check_routing(
    document: &FunctionDocument,
    version: &str,
    weights: &BTreeMap<String, f64>,
) -> Result<(), RegistryError> {
    if document.version(version).is_none() {
        return Err(RegistryError::Missing(format!(
            "Function not found: {}:{version}",
            document.name()
        )));
    }
    if weights.len() > 1 {
        return Err(RegistryError::Invalid(
            "An alias can send traffic to at most one additional version".into(),
        ));
    }
    for (extra, weight) in weights {
        if !(0.0..=1.0).contains(weight) || !weight.is_finite() {
            return Err(RegistryError::Invalid(format!(
                "1 validation error detected: Value '{weight}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: \
                 Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]"
            )));
        }
        if extra == version {
            return Err(RegistryError::Invalid(format!(
                "Invalid function version {extra}. Function version {extra} is already included in routing configuration."
            )));
        }
        if extra == LATEST || version == LATEST {
            return Err(RegistryError::Invalid(
                "$LATEST is not supported for an alias pointing to more than 1 version".into(),
            ));
        }
        if document.version(extra).is_none() {
            return Err(RegistryError::Invalid(format!(
                "Function version {extra} does not exist for function {}",
                document.name()
            )));
        }
    }
    Ok(())
}

fn check_version_syntax(version: &str) -> Result<(), ApiError> {
    if version == LATEST || (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{version}' at 'functionVersion' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)"
        )))
    }
}

pub async fn create(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = function_name(&scope, &raw)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let request: CreateAliasRequest = parse_json(&body)?;
    validate_alias_name(&request.name)?;
    check_version_syntax(&request.function_version)?;
    let description = request.description.unwrap_or_default();
    function::validate_description(&description)?;
    let weights = request
        .routing_config
        .map(|r| r.additional_version_weights)
        .unwrap_or_default();
    let arn = scope.function_arn(&name);
    let (_, alias) = state
        .registry
        .modify(&scope.key(&name), arn, |doc| {
            if doc.aliases.contains_key(&request.name) {
                return Err(RegistryError::Conflict(format!(
                    "Alias already exists: {}",
                    scope.qualified_arn(&name, &request.name)
                )));
            }
            check_routing(doc, &request.function_version, &weights)?;
            let alias = Alias {
                name: request.name.clone(),
                function_version: request.function_version.clone(),
                description,
                additional_weights: weights,
                revision_id: uuid::Uuid::new_v4().to_string(),
            };
            doc.aliases.insert(alias.name.clone(), alias.clone());
            Ok(alias)
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, alias = %alias.name, version = %alias.function_version, "alias created");
    Ok((
        StatusCode::CREATED,
        Json(alias.configuration(&name, &scope)),
    )
        .into_response())
}

fn alias_not_found(scope: &Scope, name: &str, alias: &str) -> ApiError {
    ApiError::ResourceNotFound(format!(
        "Alias not found: {}",
        scope.qualified_arn(name, alias)
    ))
}

pub async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, document) = super::named_function(&state, &scope, &raw)?;
    let alias = document
        .aliases
        .get(&alias)
        .ok_or_else(|| alias_not_found(&scope, &name, &alias))?;
    Ok(Json(alias.configuration(&name, &scope)))
}

pub async fn update(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, alias_name)): Path<(String, String)>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = function_name(&scope, &raw)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let request: UpdateAliasRequest = parse_json(&body)?;
    if let Some(version) = &request.function_version {
        check_version_syntax(version)?;
    }
    if let Some(description) = &request.description {
        function::validate_description(description)?;
    }
    let missing = alias_not_found(&scope, &name, &alias_name).to_string();
    let (_, alias) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            let mut alias = doc
                .aliases
                .get(&alias_name)
                .cloned()
                .ok_or(RegistryError::Missing(missing))?;
            if request
                .revision_id
                .as_deref()
                .is_some_and(|r| r != alias.revision_id)
            {
                return Err(RegistryError::PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetAlias API to retrieve the latest Revision Id".into(),
                ));
            }
            if let Some(version) = request.function_version {
                alias.function_version = version;
            }
            if let Some(description) = request.description {
                alias.description = description;
            }
            if let Some(routing) = request.routing_config {
                alias.additional_weights = routing.additional_version_weights;
            }
            check_routing(doc, &alias.function_version, &alias.additional_weights)?;
            alias.revision_id = uuid::Uuid::new_v4().to_string();
            doc.aliases.insert(alias.name.clone(), alias.clone());
            Ok(alias)
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, alias = %alias.name, version = %alias.function_version, "alias updated");
    Ok(Json(alias.configuration(&name, &scope)))
}

pub async fn delete(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, alias_name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = function_name(&scope, &raw)?;
    state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            // Deleting an alias that does not exist succeeds, as on Lambda.
            doc.aliases.remove(&alias_name);
            doc.provisioned.remove(&alias_name);
            // Its URL and its policy go with it.
            doc.urls.remove(&alias_name);
            doc.policies.remove(&alias_name);
            Ok(())
        })
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, alias = %alias_name, "alias deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<ListAliasesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, document) = super::named_function(&state, &scope, &raw)?;
    let limit = max_items(query.max_items.as_deref())?;
    let filter = query.function_version.filter(|v| !v.is_empty());
    let matching: Vec<&Alias> = document
        .aliases
        .values()
        .filter(|a| {
            filter
                .as_deref()
                .is_none_or(|v| a.function_version == v || a.additional_weights.contains_key(v))
        })
        .filter(|a| {
            query
                .marker
                .as_deref()
                .filter(|m| !m.is_empty())
                .is_none_or(|m| a.name.as_str() > m)
        })
        .collect();
    let page: Vec<_> = matching.iter().take(limit).collect();
    let mut body = json!({
        "Aliases": page.iter().map(|a| a.configuration(&name, &scope)).collect::<Vec<_>>()
    });
    if matching.len() > page.len()
        && let Some(last) = page.last()
    {
        body["NextMarker"] = json!(last.name);
    }
    Ok(Json(body))
}
