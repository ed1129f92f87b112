//! `CreateApi` (with quick create), `GetApi(s)`, `UpdateApi`, `DeleteApi`, and the tags
//! of APIs (`GetTags`, `TagResource`, `UntagResource` on `arn:aws:apigateway:<region>::/
//! apis/<id>`).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{PageQuery, check_length, created, input, page};
use crate::api::{Scope, SharedState};
use crate::gateway::service::GatewayError;
use crate::gateway::{
    API_ID_LEN, API_KEY_SELECTION, ApiCors, DEFAULT_STAGE, FunctionTarget, HttpApi, Integration,
    ROUTE_SELECTION, Route, Stage, iso, new_id,
};

/// The endpoint an API is served at (host form).
pub(super) fn endpoint(state: &SharedState, api_id: &str) -> String {
    crate::gateway::endpoint_of(api_id, crate::api::urls::public_port(state))
}

fn cors(raw: Option<ApiCors>) -> Result<Option<ApiCors>, GatewayError> {
    if let Some(c) = &raw {
        c.as_cors().validate().map_err(GatewayError::BadRequest)?;
    }
    Ok(raw)
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), GatewayError> {
    if tags.len() > 50 {
        return Err(GatewayError::BadRequest(
            "A resource can have at most 50 tags".into(),
        ));
    }
    for (k, v) in tags {
        check_length("Tag key", k, 128)?;
        if v.chars().count() > 256 {
            return Err(GatewayError::BadRequest(format!(
                "The value of tag {k} is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateApi {
    name: Option<String>,
    protocol_type: Option<String>,
    description: Option<String>,
    cors_configuration: Option<ApiCors>,
    #[serde(default)]
    disable_execute_api_endpoint: bool,
    #[serde(default)]
    disable_schema_validation: bool,
    version: Option<String>,
    route_selection_expression: Option<String>,
    api_key_selection_expression: Option<String>,
    ip_address_type: Option<String>,
    route_key: Option<String>,
    target: Option<String>,
    credentials_arn: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn check_protocol(protocol: Option<&str>) -> Result<(), GatewayError> {
    match protocol {
        Some("HTTP") => Ok(()),
        Some("WEBSOCKET") => Err(GatewayError::BadRequest(
            "WebSocket APIs are not supported by this server; use ProtocolType HTTP".into(),
        )),
        Some(other) => Err(GatewayError::BadRequest(format!(
            "Invalid protocolType {other}: must be HTTP or WEBSOCKET"
        ))),
        None => Err(GatewayError::BadRequest("protocolType is required".into())),
    }
}

/// The integration and route quick create makes for `target`.
fn quick_parts(
    target: &str,
    route_key: Option<&str>,
    credentials_arn: Option<String>,
) -> Result<(Integration, Route), GatewayError> {
    if FunctionTarget::parse(target).is_none() {
        return Err(GatewayError::BadRequest(format!(
            "Invalid target {target}: quick create takes a Lambda function ARN here"
        )));
    }
    let route_key = route_key.unwrap_or("$default");
    crate::gateway::route_key::RouteKey::parse(route_key)
        .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let integration = Integration {
        integration_id: new_id(7),
        integration_type: "AWS_PROXY".into(),
        integration_subtype: None,
        integration_uri: Some(target.to_string()),
        integration_method: Some("POST".into()),
        payload_format_version: "2.0".into(),
        request_parameters: BTreeMap::new(),
        timeout_in_millis: 30_000,
        connection_type: "INTERNET".into(),
        description: None,
        credentials_arn,
        api_gateway_managed: true,
    };
    let route = Route {
        route_id: new_id(7),
        route_key: route_key.to_string(),
        target: Some(format!("integrations/{}", integration.integration_id)),
        authorization_type: "NONE".into(),
        authorizer_id: None,
        authorization_scopes: Vec::new(),
        api_key_required: false,
        operation_name: None,
        api_gateway_managed: true,
    };
    Ok((integration, route))
}

fn check_selection(
    expression: Option<&str>,
    default: &str,
    field: &str,
) -> Result<(), GatewayError> {
    match expression {
        Some(e) if e != default => Err(GatewayError::BadRequest(format!(
            "Invalid {field} {e}: HTTP APIs use {default}"
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn create(
    State(state): State<SharedState>,
    scope: Scope,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let input: CreateApi = input(&body)?;
    let name = input
        .name
        .ok_or_else(|| GatewayError::BadRequest("name is required".into()))?;
    check_length("name", &name, 128)?;
    check_protocol(input.protocol_type.as_deref())?;
    check_selection(
        input.route_selection_expression.as_deref(),
        ROUTE_SELECTION,
        "routeSelectionExpression",
    )?;
    check_tags(&input.tags)?;
    if input.route_key.is_some() && input.target.is_none() {
        return Err(GatewayError::BadRequest(
            "routeKey is only taken with target (quick create)".into(),
        ));
    }
    let now = crate::timefmt::now_ms();
    let mut api = HttpApi {
        api_id: new_id(API_ID_LEN),
        name,
        protocol_type: "HTTP".into(),
        description: input.description,
        route_selection_expression: ROUTE_SELECTION.into(),
        api_key_selection_expression: input
            .api_key_selection_expression
            .unwrap_or_else(|| API_KEY_SELECTION.into()),
        cors_configuration: cors(input.cors_configuration)?,
        disable_execute_api_endpoint: input.disable_execute_api_endpoint,
        disable_schema_validation: input.disable_schema_validation,
        version: input.version,
        ip_address_type: input.ip_address_type.unwrap_or_else(|| "ipv4".into()),
        tags: input.tags,
        created_date: iso(now),
        region: scope.region.clone(),
        routes: BTreeMap::new(),
        integrations: BTreeMap::new(),
        authorizers: BTreeMap::new(),
        stages: BTreeMap::new(),
        deployments: BTreeMap::new(),
    };
    if let Some(target) = &input.target {
        let (integration, route) =
            quick_parts(target, input.route_key.as_deref(), input.credentials_arn)?;
        api.integrations
            .insert(integration.integration_id.clone(), integration);
        api.routes.insert(route.route_id.clone(), route);
        api.stages.insert(
            DEFAULT_STAGE.into(),
            Stage {
                stage_name: DEFAULT_STAGE.into(),
                auto_deploy: true,
                deployment_id: None,
                description: None,
                stage_variables: BTreeMap::new(),
                default_route_settings: None,
                route_settings: BTreeMap::new(),
                access_log_settings: None,
                created_date: iso(now),
                last_updated_date: iso(now),
                last_deployment_status_message: None,
                tags: BTreeMap::new(),
                api_gateway_managed: true,
            },
        );
        api.changed();
    }
    let api = state.gateway.create(api).await?;
    tracing::info!(api_id = %api.api_id, name = %api.name, "HTTP API created");
    Ok(created(api.wire(&endpoint(&state, &api.api_id))))
}

pub(super) async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Value>, GatewayError> {
    let items = state
        .gateway
        .list(&scope.region)
        .iter()
        .map(|api| api.wire(&endpoint(&state, &api.api_id)))
        .collect();
    Ok(axum::Json(page(items, &query)?))
}

pub(super) async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    Ok(axum::Json(api.wire(&endpoint(&state, &api.api_id))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateApi {
    name: Option<String>,
    description: Option<String>,
    cors_configuration: Option<ApiCors>,
    disable_execute_api_endpoint: Option<bool>,
    disable_schema_validation: Option<bool>,
    version: Option<String>,
    route_selection_expression: Option<String>,
    api_key_selection_expression: Option<String>,
    ip_address_type: Option<String>,
    route_key: Option<String>,
    target: Option<String>,
    credentials_arn: Option<String>,
}

pub(super) async fn update(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, GatewayError> {
    let input: UpdateApi = input(&body)?;
    if let Some(name) = &input.name {
        check_length("name", name, 128)?;
    }
    check_selection(
        input.route_selection_expression.as_deref(),
        ROUTE_SELECTION,
        "routeSelectionExpression",
    )?;
    let cors_configuration = cors(input.cors_configuration)?;
    let (api, ()) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if let Some(name) = input.name {
                api.name = name;
            }
            if let Some(d) = input.description {
                api.description = Some(d);
            }
            if let Some(c) = cors_configuration {
                api.cors_configuration = Some(c);
            }
            if let Some(d) = input.disable_execute_api_endpoint {
                api.disable_execute_api_endpoint = d;
            }
            if let Some(d) = input.disable_schema_validation {
                api.disable_schema_validation = d;
            }
            if let Some(v) = input.version {
                api.version = Some(v);
            }
            if let Some(e) = input.api_key_selection_expression {
                api.api_key_selection_expression = e;
            }
            if let Some(t) = input.ip_address_type {
                api.ip_address_type = t;
            }
            // Quick update: the managed integration's target, the managed route's key.
            if let Some(target) = &input.target {
                if FunctionTarget::parse(target).is_none() {
                    return Err(GatewayError::BadRequest(format!(
                        "Invalid target {target}: a Lambda function ARN"
                    )));
                }
                let managed = api
                    .integrations
                    .values_mut()
                    .find(|i| i.api_gateway_managed)
                    .ok_or_else(|| {
                        GatewayError::BadRequest(
                            "target is only updated on an API made by quick create".into(),
                        )
                    })?;
                managed.integration_uri = Some(target.clone());
                if let Some(c) = input.credentials_arn {
                    managed.credentials_arn = Some(c);
                }
            }
            if let Some(key) = &input.route_key {
                crate::gateway::route_key::RouteKey::parse(key)
                    .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
                let managed = api
                    .routes
                    .values_mut()
                    .find(|r| r.api_gateway_managed)
                    .ok_or_else(|| {
                        GatewayError::BadRequest(
                            "routeKey is only updated on an API made by quick create".into(),
                        )
                    })?;
                managed.route_key = key.clone();
            }
            if input.target.is_some() || input.route_key.is_some() {
                api.changed();
            }
            Ok(())
        })
        .await?;
    Ok(axum::Json(api.wire(&endpoint(&state, &api.api_id))))
}

pub(super) async fn delete(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    state.gateway.delete(&scope.region, &api_id).await?;
    tracing::info!(%api_id, "HTTP API deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `(api id, stage)` of a taggable resource's ARN: `arn:aws:apigateway:<region>::/apis/
/// <id>` or `.../apis/<id>/stages/<name>`.
fn tagged(scope: &Scope, arn: &str) -> Result<(String, Option<String>), GatewayError> {
    let bad = || GatewayError::NotFound {
        resource_type: "Resource",
        message: format!("Invalid resource ARN {arn}"),
    };
    let prefix = format!("arn:aws:apigateway:{}::/apis/", scope.region);
    let rest = arn.strip_prefix(&prefix).ok_or_else(bad)?;
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(id), None, ..) => Ok((id.to_string(), None)),
        (Some(id), Some("stages"), Some(stage), None) => {
            Ok((id.to_string(), Some(stage.to_string())))
        }
        _ => Err(bad()),
    }
}

fn tags_of<'a>(
    api: &'a mut HttpApi,
    stage: &Option<String>,
) -> Result<&'a mut BTreeMap<String, String>, GatewayError> {
    match stage {
        None => Ok(&mut api.tags),
        Some(s) => api
            .stages
            .get_mut(s)
            .map(|s| &mut s.tags)
            .ok_or_else(|| GatewayError::missing("Stage", s)),
    }
}

pub(super) async fn get_tags(
    State(state): State<SharedState>,
    scope: Scope,
    Path(arn): Path<String>,
) -> Result<axum::Json<Value>, GatewayError> {
    let (api_id, stage) = tagged(&scope, &arn)?;
    let mut api = (*state.gateway.find(&scope.region, &api_id)?).clone();
    let tags = tags_of(&mut api, &stage)?.clone();
    Ok(axum::Json(json!({ "tags": tags })))
}

#[derive(Deserialize)]
pub(super) struct TagInput {
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

pub(super) async fn tag(
    State(state): State<SharedState>,
    scope: Scope,
    Path(arn): Path<String>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let (api_id, stage) = tagged(&scope, &arn)?;
    let input: TagInput = input(&body)?;
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            let tags = tags_of(api, &stage)?;
            tags.extend(input.tags);
            check_tags(tags)
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(json!({}))).into_response())
}

pub(super) async fn untag(
    State(state): State<SharedState>,
    scope: Scope,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
) -> Result<StatusCode, GatewayError> {
    let (api_id, stage) = tagged(&scope, &arn)?;
    // `tagKeys` repeats in the query string.
    let keys: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            let tags = tags_of(api, &stage)?;
            for key in &keys {
                tags.remove(key);
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
