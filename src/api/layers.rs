//! Layer operations: PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn,
//! ListLayers, ListLayerVersions, DeleteLayerVersion, AddLayerVersionPermission,
//! RemoveLayerVersionPermission, GetLayerVersionPolicy (`/2018-10-31/layers...`), and
//! the download of a version's zip (`Content.Location`). The layers themselves are
//! `crate::layers`'.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Scope;
use super::functions::{decode_zip, max_items};
use super::{ApiError, SharedState, parse_json, read_body};
use crate::layers::{LayerDocument, LayerError, LayerVersion, NewVersion, layer_arn};
use crate::timefmt::lambda_timestamp;

impl From<LayerError> for ApiError {
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Invalid(m) => ApiError::InvalidParameterValue(m),
            LayerError::NotFound(m) => ApiError::ResourceNotFound(m),
            LayerError::Conflict(m) => ApiError::ResourceConflict(m),
            LayerError::PreconditionFailed(m) => ApiError::PreconditionFailed(m),
            LayerError::Code(c) if c.is_client_error() => {
                ApiError::InvalidParameterValue(c.to_string())
            }
            other => ApiError::Service(other.to_string()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContentInput {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishRequest {
    content: Option<ContentInput>,
    description: Option<String>,
    compatible_runtimes: Option<Vec<String>>,
    compatible_architectures: Option<Vec<String>>,
    license_info: Option<String>,
}

#[derive(Deserialize)]
pub struct LayersQuery {
    find: Option<String>,
    #[serde(rename = "Arn")]
    arn: Option<String>,
    #[serde(rename = "CompatibleRuntime")]
    compatible_runtime: Option<String>,
    #[serde(rename = "CompatibleArchitecture")]
    compatible_architecture: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

#[derive(Deserialize)]
pub struct RevisionQuery {
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

/// A layer name, or a layer's ARN in this account and region, as its name.
fn layer_name(scope: &Scope, raw: &str) -> Result<String, ApiError> {
    let name = match raw.strip_prefix("arn:") {
        Some(_) => {
            let parts: Vec<&str> = raw.split(':').collect();
            match parts.as_slice() {
                ["arn", _, "lambda", region, account, "layer", name] => {
                    if *account != scope.account_id || *region != scope.region {
                        return Err(ApiError::AccessDenied(format!(
                            "User is not authorized to perform this action on resource {raw}: \
                             it belongs to another account or region"
                        )));
                    }
                    name.to_string()
                }
                _ => raw.to_string(),
            }
        }
        None => raw.to_string(),
    };
    crate::layers::validate_name(&name)?;
    Ok(name)
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
}

fn version_number(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{raw}' at 'versionNumber' failed to satisfy constraint: \
             Member must be a number"
        ))
    })
}

/// The fields a version shows in lists (`LayerVersionsListItem`).
fn list_item(scope: &Scope, name: &str, v: &LayerVersion) -> Value {
    let mut out = json!({
        "LayerVersionArn": layer_arn(scope, name, Some(v.version)),
        "Version": v.version,
        "Description": v.description,
        "CreatedDate": lambda_timestamp(v.created_ms),
        "CompatibleRuntimes": v.compatible_runtimes,
        "CompatibleArchitectures": v.compatible_architectures,
    });
    if let Some(license) = &v.license_info {
        out["LicenseInfo"] = json!(license);
    }
    out
}

/// A version as Publish and Get show it.
fn version_view(scope: &Scope, headers: &HeaderMap, name: &str, v: &LayerVersion) -> Value {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9600");
    let mut out = list_item(scope, name, v);
    out["LayerArn"] = json!(layer_arn(scope, name, None));
    out["Content"] = json!({
        "Location": format!("http://{host}/shoal/v1/layers/{name}/versions/{}/content.zip", v.version),
        "CodeSha256": v.code.sha256_b64,
        "CodeSize": v.code.size,
    });
    out
}

fn matches(v: &LayerVersion, query: &LayersQuery) -> bool {
    query
        .compatible_runtime
        .as_deref()
        .is_none_or(|r| v.compatible_runtimes.iter().any(|c| c == r))
        && query
            .compatible_architecture
            .as_deref()
            .is_none_or(|a| v.compatible_architectures.iter().any(|c| c == a))
}

pub async fn publish(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let body = read_body(body, super::UPLOAD_BODY_MAX, || {
        ApiError::RequestTooLarge(
            "Request must be smaller than 70167211 bytes for the PublishLayerVersion operation"
                .into(),
        )
    })
    .await?;
    let request: PublishRequest = parse_json(&body)?;
    drop(body);
    let content = request.content.ok_or_else(|| {
        ApiError::InvalidParameterValue(
            "1 validation error detected: Value null at 'content' failed to satisfy constraint: \
             Member must not be null"
                .into(),
        )
    })?;
    let zip = decode_zip(content.zip_file, content.s3_bucket, None)?;
    state.disk.check(zip.len() as u64 * 3, "a layer's code")?;
    let settings = NewVersion {
        description: request.description.unwrap_or_default(),
        compatible_runtimes: request.compatible_runtimes.unwrap_or_default(),
        compatible_architectures: request.compatible_architectures.unwrap_or_default(),
        license_info: request.license_info,
    };
    let version = state
        .layers
        .publish(&scope.key(&name), &name, zip, settings)
        .await?;
    tracing::info!(layer = %name, version = version.version, "layer version published");
    Ok((
        StatusCode::CREATED,
        Json(version_view(&scope, &headers, &name, &version)),
    )
        .into_response())
}

fn find(
    state: &SharedState,
    scope: &Scope,
    name: &str,
    version: u64,
) -> Result<(std::sync::Arc<LayerDocument>, LayerVersion), ApiError> {
    let document = state.layers.get(&scope.key(name)).ok_or_else(not_found)?;
    let v = document
        .versions
        .get(&version)
        .cloned()
        .ok_or_else(not_found)?;
    Ok((document, v))
}

pub async fn get_version(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let (_, v) = find(&state, &scope, &name, version_number(&version)?)?;
    Ok(Json(version_view(&scope, &headers, &name, &v)))
}

/// `GET /2018-10-31/layers`: ListLayers, or GetLayerVersionByArn with `find=LayerVersion`.
pub async fn list_or_find(
    State(state): State<SharedState>,
    scope: Scope,
    Query(query): Query<LayersQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if query.find.as_deref() == Some("LayerVersion") {
        let arn = query.arn.as_deref().unwrap_or_default();
        let Some((region, account, name, version)) = crate::layers::parse_version_arn(arn) else {
            return Err(ApiError::InvalidParameterValue(format!(
                "1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: \
                 Member must satisfy regular expression pattern: \
                 arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+"
            )));
        };
        if account != scope.account_id || region != scope.region {
            return Err(not_found());
        }
        let (_, v) = find(&state, &scope, name, version)?;
        return Ok(Json(version_view(&scope, &headers, name, &v)));
    }
    let limit = max_items(query.max_items.as_deref())?.min(50);
    let mut layers: Vec<Value> = Vec::new();
    let mut next = None;
    for document in state.layers.list(&scope) {
        if query
            .marker
            .as_deref()
            .is_some_and(|m| document.name.as_str() <= m)
        {
            continue;
        }
        let Some(latest) = document
            .versions
            .values()
            .rev()
            .find(|v| matches(v, &query))
        else {
            continue;
        };
        if layers.len() == limit {
            next = layers
                .last()
                .and_then(|l| l["LayerName"].as_str().map(str::to_string));
            break;
        }
        layers.push(json!({
            "LayerName": document.name,
            "LayerArn": layer_arn(&scope, &document.name, None),
            "LatestMatchingVersion": list_item(&scope, &document.name, latest),
        }));
    }
    let mut out = json!({ "Layers": layers });
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(Json(out))
}

pub async fn list_versions(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<LayersQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let limit = max_items(query.max_items.as_deref())?.min(50);
    let marker: Option<u64> = query.marker.as_deref().and_then(|m| m.parse().ok());
    let document = state.layers.get(&scope.key(&name));
    let versions: Vec<&LayerVersion> = document
        .iter()
        .flat_map(|d| d.versions.values().rev())
        .filter(|v| marker.is_none_or(|m| v.version < m) && matches(v, &query))
        .collect();
    let next = (versions.len() > limit).then(|| versions[limit - 1].version.to_string());
    let items: Vec<Value> = versions
        .iter()
        .take(limit)
        .map(|v| list_item(&scope, &name, v))
        .collect();
    let mut out = json!({ "LayerVersions": items });
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(Json(out))
}

pub async fn delete_version(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let version = version_number(&version)?;
    state.layers.delete(&scope.key(&name), version).await?;
    tracing::info!(layer = %name, version, "layer version deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn download(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let (_, v) = find(&state, &scope, &name, version_number(&version)?)?;
    let path = state.registry.code_store().zip_path(&v.code.sha256_hex);
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| ApiError::Service(format!("reading the layer's zip failed: {e}")))?;
    Ok(([("content-type", "application/zip")], bytes).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LayerPermission {
    statement_id: String,
    action: String,
    principal: String,
    organization_id: Option<String>,
}

pub async fn add_permission(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, version)): Path<(String, String)>,
    Query(query): Query<RevisionQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let version = version_number(&version)?;
    let body = read_body(body, 64 * 1024, || {
        ApiError::RequestTooLarge("Request must be smaller than 65536 bytes".into())
    })
    .await?;
    let request: LayerPermission = parse_json(&body)?;
    if request.action != "lambda:GetLayerVersion" {
        return Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{}' at 'action' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: lambda:GetLayerVersion",
            request.action
        )));
    }
    let principal_ok = request.principal == "*"
        || (request.principal.len() == 12 && request.principal.bytes().all(|b| b.is_ascii_digit()))
        || (request.principal.starts_with("arn:aws:iam::") && request.principal.ends_with(":root"));
    if !principal_ok {
        return Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{}' at 'principal' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: \\d{{12}}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{{12}}:root",
            request.principal
        )));
    }
    let permission = crate::policy::Permission {
        statement_id: request.statement_id.clone(),
        action: request.action.clone(),
        principal: request.principal.clone(),
        principal_org_id: request.organization_id.clone(),
        ..crate::policy::Permission::default()
    };
    let statement = permission
        .statement(&layer_arn(&scope, &name, Some(version)))
        .map_err(ApiError::InvalidParameterValue)?;
    let (_, revision) = state
        .layers
        .modify(&scope.key(&name), &name, |doc| {
            let v = policy_target(doc, version, query.revision_id.as_deref())?;
            if v.policy.iter().any(|s| s.sid() == request.statement_id) {
                return Err(LayerError::Conflict(format!(
                    "The statement id ({}) provided already exists. Please provide a new statement id, \
                     or remove the existing statement.",
                    request.statement_id
                )));
            }
            v.policy.push(statement.clone());
            v.revision_id = uuid::Uuid::new_v4().to_string();
            Ok(v.revision_id.clone())
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Statement": statement.0.to_string(), "RevisionId": revision })),
    )
        .into_response())
}

/// The version whose policy changes, if it exists and (when given) has `revision`.
fn policy_target<'a>(
    doc: &'a mut LayerDocument,
    version: u64,
    revision: Option<&str>,
) -> Result<&'a mut LayerVersion, LayerError> {
    let v = doc
        .versions
        .get_mut(&version)
        .ok_or_else(|| LayerError::NotFound(not_found().to_string()))?;
    if revision.is_some_and(|r| r != v.revision_id) {
        return Err(LayerError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. \
             Call the GetLayerVersionPolicy API to retrieve the latest Revision Id"
                .into(),
        ));
    }
    Ok(v)
}

pub async fn remove_permission(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, version, sid)): Path<(String, String, String)>,
    Query(query): Query<RevisionQuery>,
) -> Result<StatusCode, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let version = version_number(&version)?;
    state
        .layers
        .modify(&scope.key(&name), &name, |doc| {
            let v = policy_target(doc, version, query.revision_id.as_deref())?;
            let before = v.policy.len();
            v.policy.retain(|s| s.sid() != sid);
            if v.policy.len() == before {
                return Err(LayerError::NotFound(format!(
                    "Statement {sid} is not found in resource policy."
                )));
            }
            v.revision_id = uuid::Uuid::new_v4().to_string();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_policy(
    State(state): State<SharedState>,
    scope: Scope,
    Path((raw, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = layer_name(&scope, &raw)?;
    let (_, v) = find(&state, &scope, &name, version_number(&version)?)?;
    if v.policy.is_empty() {
        return Err(not_found());
    }
    Ok(Json(json!({
        "Policy": crate::policy::document(&v.policy),
        "RevisionId": v.revision_id,
    })))
}
