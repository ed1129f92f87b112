//! Tagging: TagResource, UntagResource and ListTags on functions and event source
//! mappings (`arn:aws:lambda:REGION:ACCOUNT:event-source-mapping:UUID`).
//!
//! Tags are the function's own (Lambda tags functions, not versions or aliases). One tag
//! means something to Shoal: `shoal:network` selects the function's network mode, so a
//! change of it takes effect on the next environment started, never on one already warm.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Scope;
use super::{ApiError, SharedState, parse_json, read_body};
use crate::function::{self, NetworkMode};

const TAGS_BODY_MAX: usize = 256 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceRequest {
    tags: Option<BTreeMap<String, String>>,
}

/// The UUID of the event source mapping an ARN names, when it names one.
fn tagged_mapping(resource: &str) -> Option<&str> {
    let arn = crate::arn::Arn::parse(resource).ok()?;
    (arn.service == "lambda")
        .then_some(())
        .and_then(|()| resource.rsplit_once(":event-source-mapping:"))
        .map(|(_, uuid)| uuid)
}

/// The function a taggable resource ARN names; versions and aliases carry no tags.
fn tagged_function(state: &SharedState, scope: &Scope, resource: &str) -> Result<String, ApiError> {
    if !resource.starts_with("arn:") {
        return Err(ApiError::InvalidParameterValue(format!(
            "Resource must be a function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME); got {resource}"
        )));
    }
    let reference = super::function_ref(scope, resource)?;
    if reference.qualifier.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Tags apply to functions, not to their versions or aliases: use the unqualified function ARN".into(),
        ));
    }
    state
        .registry
        .require(&reference.name, || scope.function_arn(&reference.name))?;
    Ok(reference.name)
}

/// Refuses a network mode this server cannot give its environments.
pub(super) fn check_network_available(
    state: &SharedState,
    tags: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    match (NetworkMode::from_tags(tags)?, &state.egress_unavailable) {
        (NetworkMode::Egress, Some(why)) => Err(ApiError::InvalidParameterValue(format!(
            "Tag {}=egress cannot be honoured by this server: {why}",
            function::NETWORK_TAG
        ))),
        _ => Ok(()),
    }
}

async fn retag(
    state: &SharedState,
    scope: &Scope,
    name: &str,
    add: BTreeMap<String, String>,
    remove: &[String],
) -> Result<(), ApiError> {
    let (document, network_changed) = state
        .registry
        .retag(&scope.key(name), scope.function_arn(name), add, remove)
        .await?;
    // A new network mode gave every version a new revision: reconciling retires the
    // environments of the old mode (idle ones now, busy ones when they are released)
    // and replaces provisioned ones.
    state.control.reconcile_current(&scope.key(name));
    if network_changed {
        tracing::info!(function = %name, network = document.latest.spec.network.as_str(), "network mode changed");
    }
    Ok(())
}

pub async fn tag(
    State(state): State<SharedState>,
    scope: Scope,
    Path(resource): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body = read_body(body, TAGS_BODY_MAX, || {
        ApiError::RequestTooLarge(format!(
            "Request must be smaller than {TAGS_BODY_MAX} bytes"
        ))
    })
    .await?;
    let request: TagResourceRequest = parse_json(&body)?;
    let tags = request
        .tags
        .ok_or_else(|| ApiError::InvalidParameterValue("Tags is a required parameter".into()))?;
    function::validate_tags(&tags)?;
    if let Some(uuid) = tagged_mapping(&resource) {
        state.mappings.retag(&scope, uuid, tags, &[])?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let name = tagged_function(&state, &scope, &resource)?;
    check_network_available(&state, &tags)?;
    retag(&state, &scope, &name, tags, &[]).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn untag(
    State(state): State<SharedState>,
    scope: Scope,
    Path(resource): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<StatusCode, ApiError> {
    let keys: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    if keys.is_empty() {
        return Err(ApiError::InvalidParameterValue(
            "TagKeys is a required parameter".into(),
        ));
    }
    if let Some(uuid) = tagged_mapping(&resource) {
        state.mappings.retag(&scope, uuid, BTreeMap::new(), &keys)?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let name = tagged_function(&state, &scope, &resource)?;
    retag(&state, &scope, &name, BTreeMap::new(), &keys).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Path(resource): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(uuid) = tagged_mapping(&resource) {
        let mapping = state.mappings.get(&scope, uuid)?;
        return Ok(Json(json!({ "Tags": mapping.tags })));
    }
    let name = tagged_function(&state, &scope, &resource)?;
    let document = state
        .registry
        .require(&scope.key(&name), || scope.function_arn(&name))?;
    Ok(Json(json!({ "Tags": document.tags })))
}
