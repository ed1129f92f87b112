//! Routes, integrations and authorizers of an API: create, get, list, update, delete.
//! Every change redeploys the API's auto-deploying stages.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{PageQuery, check_length, created, input, listed, page, shown};
use crate::api::{Scope, SharedState};
use crate::gateway::route_key::RouteKey;
use crate::gateway::service::GatewayError;
use crate::gateway::{
    Authorizer, FunctionTarget, HttpApi, Integration, Route, SUBTYPES, mapping, new_id,
};

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(message.into())
}

fn wire<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

// ---- routes

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteInput {
    route_key: Option<String>,
    target: Option<String>,
    authorization_type: Option<String>,
    authorizer_id: Option<String>,
    authorization_scopes: Option<Vec<String>>,
    api_key_required: Option<bool>,
    operation_name: Option<String>,
}

/// Checks a route against its API: its key (unique), target and authorizer.
fn check_route(api: &HttpApi, route: &Route) -> Result<(), GatewayError> {
    RouteKey::parse(&route.route_key).map_err(|e| bad(e.to_string()))?;
    if api
        .routes
        .values()
        .any(|r| r.route_key == route.route_key && r.route_id != route.route_id)
    {
        return Err(GatewayError::Conflict(format!(
            "Route with key {} already exists for this API",
            route.route_key
        )));
    }
    if let Some(target) = &route.target {
        let id = route.integration_id().ok_or_else(|| {
            bad(format!(
                "Invalid target {target}: must be integrations/<integration id>"
            ))
        })?;
        if !api.integrations.contains_key(id) {
            return Err(bad(format!("Invalid target {target}: no integration {id}")));
        }
    }
    match route.authorization_type.as_str() {
        "NONE" | "AWS_IAM" => {}
        "CUSTOM" => {
            let id = route
                .authorizer_id
                .as_deref()
                .ok_or_else(|| bad("authorizerId is required for authorizationType CUSTOM"))?;
            if !api.authorizers.contains_key(id) {
                return Err(bad(format!("Invalid authorizerId {id}")));
            }
        }
        "JWT" => {
            return Err(bad(
                "JWT authorization is not supported by this server; use a Lambda authorizer (CUSTOM)",
            ));
        }
        other => {
            return Err(bad(format!(
                "Invalid authorizationType {other}: must be NONE, AWS_IAM, CUSTOM or JWT"
            )));
        }
    }
    if route.authorization_type != "CUSTOM" && route.authorizer_id.is_some() {
        return Err(bad(
            "authorizerId is only taken with authorizationType CUSTOM",
        ));
    }
    Ok(())
}

pub(super) async fn create_route(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let input: RouteInput = input(&body)?;
    let route = Route {
        route_id: new_id(7),
        route_key: input.route_key.ok_or_else(|| bad("routeKey is required"))?,
        target: input.target,
        authorization_type: input.authorization_type.unwrap_or_else(|| "NONE".into()),
        authorizer_id: input.authorizer_id,
        authorization_scopes: input.authorization_scopes.unwrap_or_default(),
        api_key_required: input.api_key_required.unwrap_or(false),
        operation_name: input.operation_name,
        api_gateway_managed: false,
    };
    let (_, route) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            check_route(api, &route)?;
            api.routes.insert(route.route_id.clone(), route.clone());
            api.changed();
            Ok(route)
        })
        .await?;
    Ok(created(wire(&route)))
}

pub(super) async fn update_route(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, GatewayError> {
    let input: RouteInput = input(&body)?;
    let (_, route) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            let mut route = api
                .routes
                .get(&id)
                .cloned()
                .ok_or_else(|| GatewayError::missing("Route", &id))?;
            if let Some(key) = input.route_key {
                if route.api_gateway_managed && key != route.route_key {
                    return Err(bad(
                        "The route key of a route made by quick create is changed with UpdateApi",
                    ));
                }
                route.route_key = key;
            }
            if let Some(t) = input.target {
                route.target = (!t.is_empty()).then_some(t);
            }
            if let Some(t) = input.authorization_type {
                route.authorization_type = t;
                if route.authorization_type != "CUSTOM" {
                    route.authorizer_id = None;
                }
            }
            if let Some(a) = input.authorizer_id {
                route.authorizer_id = (!a.is_empty()).then_some(a);
            }
            if let Some(s) = input.authorization_scopes {
                route.authorization_scopes = s;
            }
            if let Some(k) = input.api_key_required {
                route.api_key_required = k;
            }
            if let Some(o) = input.operation_name {
                route.operation_name = Some(o);
            }
            check_route(api, &route)?;
            api.routes.insert(id.clone(), route.clone());
            api.changed();
            Ok(route)
        })
        .await?;
    Ok(axum::Json(wire(&route)))
}

pub(super) async fn get_route(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    shown(&api.routes, "Route", &id)
}

pub(super) async fn list_routes(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    let mut routes: Vec<&Route> = api.routes.values().collect();
    routes.sort_by(|a, b| a.route_key.cmp(&b.route_key));
    Ok(axum::Json(page(
        routes.into_iter().map(wire).collect(),
        &query,
    )?))
}

pub(super) async fn delete_route(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<StatusCode, GatewayError> {
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            api.routes
                .remove(&id)
                .ok_or_else(|| GatewayError::missing("Route", &id))?;
            api.changed();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- integrations

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct IntegrationInput {
    integration_type: Option<String>,
    integration_subtype: Option<String>,
    integration_uri: Option<String>,
    integration_method: Option<String>,
    payload_format_version: Option<String>,
    request_parameters: Option<BTreeMap<String, String>>,
    response_parameters: Option<BTreeMap<String, Value>>,
    request_templates: Option<BTreeMap<String, String>>,
    timeout_in_millis: Option<u64>,
    connection_type: Option<String>,
    connection_id: Option<String>,
    description: Option<String>,
    credentials_arn: Option<String>,
}

/// Checks an integration: its type, subtype, target, payload version, parameters and
/// timeout, as API Gateway checks those of HTTP APIs.
fn check_integration(i: &Integration) -> Result<(), GatewayError> {
    match i.integration_type.as_str() {
        "AWS_PROXY" => {}
        "HTTP_PROXY" => {
            return Err(bad(
                "HTTP_PROXY integrations are not supported by this server; use AWS_PROXY (a Lambda function or a first-class integration)",
            ));
        }
        "AWS" | "HTTP" | "MOCK" => {
            return Err(bad(format!(
                "Integration type {} is not supported for HTTP APIs",
                i.integration_type
            )));
        }
        other => {
            return Err(bad(format!(
                "Invalid integrationType {other}: must be AWS_PROXY or HTTP_PROXY for HTTP APIs"
            )));
        }
    }
    if !(50..=30_000).contains(&i.timeout_in_millis) {
        return Err(bad(format!(
            "Invalid timeoutInMillis {}: must be between 50 and 30000",
            i.timeout_in_millis
        )));
    }
    if i.connection_type != "INTERNET" {
        return Err(bad(
            "VPC links are not supported by this server; connectionType is INTERNET",
        ));
    }
    match &i.integration_subtype {
        None => {
            let uri = i
                .integration_uri
                .as_deref()
                .ok_or_else(|| bad("integrationUri is required for a Lambda integration"))?;
            if FunctionTarget::parse(uri).is_none() {
                return Err(bad(format!(
                    "Invalid integrationUri {uri}: a Lambda function ARN, or arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function ARN>/invocations"
                )));
            }
            if !matches!(i.payload_format_version.as_str(), "1.0" | "2.0") {
                return Err(bad(format!(
                    "Invalid payloadFormatVersion {}: must be 1.0 or 2.0",
                    i.payload_format_version
                )));
            }
            if !i.request_parameters.is_empty() {
                return Err(bad(
                    "Parameter mapping of Lambda integrations is not supported by this server",
                ));
            }
        }
        Some(subtype) => {
            match SUBTYPES.iter().find(|(name, _)| name == subtype) {
                None => {
                    return Err(bad(format!(
                        "Invalid integrationSubtype {subtype}: must be one of {}",
                        SUBTYPES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some((_, Some(why))) => {
                    return Err(bad(format!(
                        "Integration subtype {subtype} is not available: {why}"
                    )));
                }
                Some((_, None)) => {}
            }
            if i.payload_format_version != "1.0" {
                return Err(bad(
                    "payloadFormatVersion of a first-class integration is 1.0",
                ));
            }
            if i.integration_uri.is_some() {
                return Err(bad(
                    "integrationUri is not taken by a first-class integration",
                ));
            }
            let parameters = crate::gateway::parameters_of(subtype).unwrap_or_default();
            for (name, required) in parameters {
                if *required && !i.request_parameters.contains_key(*name) {
                    return Err(bad(format!(
                        "{subtype} requires the request parameter {name}"
                    )));
                }
            }
            for (name, value) in &i.request_parameters {
                if !parameters.iter().any(|(n, _)| n == name) {
                    return Err(bad(format!(
                        "Invalid request parameter {name} for {subtype}: takes {}",
                        parameters
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                mapping::validate(value).map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    Ok(())
}

fn refuse_unsupported(input: &IntegrationInput) -> Result<(), GatewayError> {
    if input
        .response_parameters
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(bad(
            "Response parameter mapping is not supported by this server",
        ));
    }
    if input
        .request_templates
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(bad(
            "requestTemplates are supported only for WebSocket APIs",
        ));
    }
    if input.connection_id.is_some() {
        return Err(bad("VPC links are not supported by this server"));
    }
    Ok(())
}

pub(super) async fn create_integration(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let input: IntegrationInput = input(&body)?;
    refuse_unsupported(&input)?;
    let integration = Integration {
        integration_id: new_id(7),
        integration_type: input
            .integration_type
            .ok_or_else(|| bad("integrationType is required"))?,
        integration_subtype: input.integration_subtype,
        integration_uri: input.integration_uri,
        integration_method: input.integration_method,
        payload_format_version: input.payload_format_version.unwrap_or_else(|| "1.0".into()),
        request_parameters: input.request_parameters.unwrap_or_default(),
        timeout_in_millis: input.timeout_in_millis.unwrap_or(30_000),
        connection_type: input.connection_type.unwrap_or_else(|| "INTERNET".into()),
        description: input.description,
        credentials_arn: input.credentials_arn,
        api_gateway_managed: false,
    };
    check_integration(&integration)?;
    let (_, integration) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            api.integrations
                .insert(integration.integration_id.clone(), integration.clone());
            api.changed();
            Ok(integration)
        })
        .await?;
    Ok(created(wire(&integration)))
}

pub(super) async fn update_integration(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, GatewayError> {
    let input: IntegrationInput = input(&body)?;
    refuse_unsupported(&input)?;
    let (_, integration) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            let mut i = api
                .integrations
                .get(&id)
                .cloned()
                .ok_or_else(|| GatewayError::missing("Integration", &id))?;
            if let Some(t) = input.integration_type {
                i.integration_type = t;
            }
            if let Some(s) = input.integration_subtype {
                i.integration_subtype = (!s.is_empty()).then_some(s);
            }
            if let Some(u) = input.integration_uri {
                i.integration_uri = (!u.is_empty()).then_some(u);
            }
            if let Some(m) = input.integration_method {
                i.integration_method = Some(m);
            }
            if let Some(v) = input.payload_format_version {
                i.payload_format_version = v;
            }
            if let Some(p) = input.request_parameters {
                i.request_parameters = p;
            }
            if let Some(t) = input.timeout_in_millis {
                i.timeout_in_millis = t;
            }
            if let Some(c) = input.connection_type {
                i.connection_type = c;
            }
            if let Some(d) = input.description {
                i.description = Some(d);
            }
            if let Some(c) = input.credentials_arn {
                i.credentials_arn = Some(c);
            }
            check_integration(&i)?;
            api.integrations.insert(id.clone(), i.clone());
            api.changed();
            Ok(i)
        })
        .await?;
    Ok(axum::Json(wire(&integration)))
}

pub(super) async fn get_integration(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    shown(&api.integrations, "Integration", &id)
}

pub(super) async fn list_integrations(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Value>, GatewayError> {
    listed(
        state
            .gateway
            .find(&scope.region, &api_id)?
            .integrations
            .values(),
        &query,
    )
}

pub(super) async fn delete_integration(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<StatusCode, GatewayError> {
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if !api.integrations.contains_key(&id) {
                return Err(GatewayError::missing("Integration", &id));
            }
            if let Some(route) = api.routes.values().find(|r| r.integration_id() == Some(id.as_str())) {
                return Err(GatewayError::Conflict(format!(
                    "Integration {id} is the target of route {} ({}); change or delete the route first",
                    route.route_id, route.route_key
                )));
            }
            api.integrations.remove(&id);
            api.changed();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- authorizers

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuthorizerInput {
    name: Option<String>,
    authorizer_type: Option<String>,
    authorizer_uri: Option<String>,
    authorizer_payload_format_version: Option<String>,
    enable_simple_responses: Option<bool>,
    identity_source: Option<Vec<String>>,
    authorizer_result_ttl_in_seconds: Option<u64>,
    authorizer_credentials_arn: Option<String>,
    identity_validation_expression: Option<String>,
    jwt_configuration: Option<Value>,
}

fn check_authorizer(a: &Authorizer) -> Result<(), GatewayError> {
    check_length("name", &a.name, 128)?;
    match a.authorizer_type.as_str() {
        "REQUEST" => {}
        "JWT" => {
            return Err(bad(
                "JWT authorizers are not supported by this server; use a Lambda authorizer (REQUEST)",
            ));
        }
        other => {
            return Err(bad(format!(
                "Invalid authorizerType {other}: must be REQUEST or JWT"
            )));
        }
    }
    if FunctionTarget::parse(&a.authorizer_uri).is_none() {
        return Err(bad(format!(
            "Invalid authorizerUri {}: arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function ARN>/invocations, or the function's ARN",
            a.authorizer_uri
        )));
    }
    match a.authorizer_payload_format_version.as_str() {
        "1.0" => {
            if a.enable_simple_responses == Some(true) {
                return Err(bad(
                    "enableSimpleResponses is only taken with authorizerPayloadFormatVersion 2.0",
                ));
            }
        }
        "2.0" => {}
        other => {
            return Err(bad(format!(
                "Invalid authorizerPayloadFormatVersion {other}: must be 1.0 or 2.0"
            )));
        }
    }
    if a.authorizer_result_ttl_in_seconds > 3600 {
        return Err(bad(
            "authorizerResultTtlInSeconds must be between 0 and 3600",
        ));
    }
    if a.authorizer_result_ttl_in_seconds > 0 && a.identity_source.is_empty() {
        return Err(bad(
            "identitySource is required when authorizer caching is enabled",
        ));
    }
    for source in &a.identity_source {
        let expression = source.trim();
        let ok = [
            "$request.header.",
            "$request.querystring.",
            "$context.",
            "$stageVariables.",
        ]
        .iter()
        .any(|p| {
            expression
                .strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !ok {
            return Err(bad(format!(
                "Invalid identity source {source}: $request.header.<name>, $request.querystring.<name>, $context.<name> or $stageVariables.<name>"
            )));
        }
    }
    Ok(())
}

fn refuse_jwt_parts(input: &AuthorizerInput) -> Result<(), GatewayError> {
    if input.jwt_configuration.is_some() {
        return Err(bad("JWT authorizers are not supported by this server"));
    }
    if input.identity_validation_expression.is_some() {
        return Err(bad(
            "identityValidationExpression is not taken by HTTP APIs",
        ));
    }
    Ok(())
}

pub(super) async fn create_authorizer(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let input: AuthorizerInput = input(&body)?;
    refuse_jwt_parts(&input)?;
    let authorizer = Authorizer {
        authorizer_id: new_id(6),
        name: input.name.ok_or_else(|| bad("name is required"))?,
        authorizer_type: input
            .authorizer_type
            .ok_or_else(|| bad("authorizerType is required"))?,
        authorizer_uri: input.authorizer_uri.unwrap_or_default(),
        authorizer_payload_format_version: input.authorizer_payload_format_version.ok_or_else(
            || bad("authorizerPayloadFormatVersion is required for REQUEST authorizers"),
        )?,
        enable_simple_responses: input.enable_simple_responses,
        identity_source: input.identity_source.unwrap_or_default(),
        authorizer_result_ttl_in_seconds: input.authorizer_result_ttl_in_seconds.unwrap_or(0),
        authorizer_credentials_arn: input.authorizer_credentials_arn,
    };
    check_authorizer(&authorizer)?;
    let (_, authorizer) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if api.authorizers.values().any(|a| a.name == authorizer.name) {
                return Err(GatewayError::Conflict(format!(
                    "An authorizer named {} already exists for this API",
                    authorizer.name
                )));
            }
            api.authorizers
                .insert(authorizer.authorizer_id.clone(), authorizer.clone());
            api.changed();
            Ok(authorizer)
        })
        .await?;
    Ok(created(wire(&authorizer)))
}

pub(super) async fn update_authorizer(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, GatewayError> {
    let input: AuthorizerInput = input(&body)?;
    refuse_jwt_parts(&input)?;
    let (_, authorizer) = state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            let mut a = api
                .authorizers
                .get(&id)
                .cloned()
                .ok_or_else(|| GatewayError::missing("Authorizer", &id))?;
            if let Some(n) = input.name {
                a.name = n;
            }
            if let Some(t) = input.authorizer_type {
                a.authorizer_type = t;
            }
            if let Some(u) = input.authorizer_uri {
                a.authorizer_uri = u;
            }
            if let Some(v) = input.authorizer_payload_format_version {
                a.authorizer_payload_format_version = v;
            }
            if let Some(s) = input.enable_simple_responses {
                a.enable_simple_responses = Some(s);
            }
            if let Some(s) = input.identity_source {
                a.identity_source = s;
            }
            if let Some(t) = input.authorizer_result_ttl_in_seconds {
                a.authorizer_result_ttl_in_seconds = t;
            }
            if let Some(c) = input.authorizer_credentials_arn {
                a.authorizer_credentials_arn = Some(c);
            }
            check_authorizer(&a)?;
            api.authorizers.insert(id.clone(), a.clone());
            api.changed();
            Ok(a)
        })
        .await?;
    Ok(axum::Json(wire(&authorizer)))
}

pub(super) async fn get_authorizer(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>, GatewayError> {
    let api = state.gateway.find(&scope.region, &api_id)?;
    shown(&api.authorizers, "Authorizer", &id)
}

pub(super) async fn list_authorizers(
    State(state): State<SharedState>,
    scope: Scope,
    Path(api_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<Value>, GatewayError> {
    listed(
        state
            .gateway
            .find(&scope.region, &api_id)?
            .authorizers
            .values(),
        &query,
    )
}

pub(super) async fn delete_authorizer(
    State(state): State<SharedState>,
    scope: Scope,
    Path((api_id, id)): Path<(String, String)>,
) -> Result<StatusCode, GatewayError> {
    state
        .gateway
        .modify(&scope.region, &api_id, |api| {
            if !api.authorizers.contains_key(&id) {
                return Err(GatewayError::missing("Authorizer", &id));
            }
            if let Some(route) = api
                .routes
                .values()
                .find(|r| r.authorizer_id.as_deref() == Some(id.as_str()))
            {
                return Err(GatewayError::Conflict(format!(
                    "Authorizer {id} is used by route {} ({}); change or delete the route first",
                    route.route_id, route.route_key
                )));
            }
            api.authorizers.remove(&id);
            api.changed();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
