//! API Gateway's HTTP API operations (`apigatewayv2`, rest-json under `/v2/`): APIs and
//! their tags ([`apis`]), routes, integrations and authorizers ([`parts`]), stages and
//! deployments ([`stages`]).
//!
//! Requests are signed for the service `apigateway`; answers are camelCase JSON, errors
//! `{"message": ...}` with the code in `x-amzn-ErrorType` (`BadRequestException`,
//! `NotFoundException`, `ConflictException`), as botocore reads them.

mod apis;
mod parts;
mod stages;

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::SharedState;
use crate::gateway::service::GatewayError;

/// The routes of the operations.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v2/apis", post(apis::create).get(apis::list))
        .route(
            "/v2/apis/{api}",
            get(apis::get).patch(apis::update).delete(apis::delete),
        )
        .route(
            "/v2/apis/{api}/routes",
            post(parts::create_route).get(parts::list_routes),
        )
        .route(
            "/v2/apis/{api}/routes/{id}",
            get(parts::get_route)
                .patch(parts::update_route)
                .delete(parts::delete_route),
        )
        .route(
            "/v2/apis/{api}/integrations",
            post(parts::create_integration).get(parts::list_integrations),
        )
        .route(
            "/v2/apis/{api}/integrations/{id}",
            get(parts::get_integration)
                .patch(parts::update_integration)
                .delete(parts::delete_integration),
        )
        .route(
            "/v2/apis/{api}/authorizers",
            post(parts::create_authorizer).get(parts::list_authorizers),
        )
        .route(
            "/v2/apis/{api}/authorizers/{id}",
            get(parts::get_authorizer)
                .patch(parts::update_authorizer)
                .delete(parts::delete_authorizer),
        )
        .route(
            "/v2/apis/{api}/stages",
            post(stages::create_stage).get(stages::list_stages),
        )
        .route(
            "/v2/apis/{api}/stages/{id}",
            get(stages::get_stage)
                .patch(stages::update_stage)
                .delete(stages::delete_stage),
        )
        .route(
            "/v2/apis/{api}/deployments",
            post(stages::create_deployment).get(stages::list_deployments),
        )
        .route(
            "/v2/apis/{api}/deployments/{id}",
            get(stages::get_deployment).delete(stages::delete_deployment),
        )
        .route(
            "/v2/tags/{*arn}",
            get(apis::get_tags).post(apis::tag).delete(apis::untag),
        )
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFoundException"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "ConflictException"),
            Self::Store(_) | Self::Internal(_) => {
                tracing::error!(error = %self, "an HTTP API operation failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerErrorException",
                )
            }
        };
        let mut body = json!({ "message": self.to_string() });
        if let Self::NotFound { resource_type, .. } = &self {
            body["resourceType"] = json!(resource_type);
        }
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(code));
        response
    }
}

/// A request body as `T` (an empty body as `{}`); a malformed one is a bad request.
fn input<T: DeserializeOwned>(body: &Bytes) -> Result<T, GatewayError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| GatewayError::BadRequest(format!("Invalid request body: {e}")))?
    };
    serde_json::from_value(value)
        .map_err(|e| GatewayError::BadRequest(format!("Invalid request body: {e}")))
}

/// A created resource: 201 with its shape.
fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

/// A page of `items` (`maxResults` and `nextToken` of the query: an offset).
fn page(items: Vec<Value>, query: &PageQuery) -> Result<Value, GatewayError> {
    let start: usize = match &query.next_token {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| GatewayError::BadRequest(format!("Invalid nextToken {t}")))?,
    };
    let max: usize = match &query.max_results {
        None => usize::MAX,
        Some(m) => m
            .parse()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| GatewayError::BadRequest(format!("Invalid maxResults {m}")))?,
    };
    let end = start.saturating_add(max).min(items.len());
    let mut out = json!({ "items": items.get(start..end).unwrap_or_default() });
    if end < items.len() {
        out["nextToken"] = json!(end.to_string());
    }
    Ok(out)
}

/// One part of an API (a route, an integration, ...) in its wire shape, or
/// `NotFoundException` naming its kind.
fn shown<T: serde::Serialize>(
    parts: &std::collections::BTreeMap<String, T>,
    kind: &'static str,
    id: &str,
) -> Result<axum::Json<Value>, GatewayError> {
    let part = parts
        .get(id)
        .ok_or_else(|| GatewayError::missing(kind, id))?;
    Ok(axum::Json(serde_json::to_value(part).unwrap_or_default()))
}

/// A page of parts in their wire shape.
fn listed<'a, T: serde::Serialize + 'a>(
    parts: impl Iterator<Item = &'a T>,
    query: &PageQuery,
) -> Result<axum::Json<Value>, GatewayError> {
    let items = parts
        .map(|p| serde_json::to_value(p).unwrap_or_default())
        .collect();
    Ok(axum::Json(page(items, query)?))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    max_results: Option<String>,
    next_token: Option<String>,
}

/// A name of 1 to `max` characters.
fn check_length(field: &str, value: &str, max: usize) -> Result<(), GatewayError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(GatewayError::BadRequest(format!(
            "{field} must be between 1 and {max} characters long"
        )));
    }
    Ok(())
}
