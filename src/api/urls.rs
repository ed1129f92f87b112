//! Function URL operations: CreateFunctionUrlConfig, GetFunctionUrlConfig,
//! UpdateFunctionUrlConfig, DeleteFunctionUrlConfig, ListFunctionUrlConfigs
//! (`/2021-10-31/functions/{name}/url[s]`).
//!
//! A URL serves the unqualified function (`$LATEST`) or an alias; it is kept in the
//! function's document under that qualifier, and the registry indexes it by its id for
//! the front that serves it (`api::url_front`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Scope;
use super::functions::{ListQuery, max_items};
use super::{ApiError, SharedState, parse_json, read_body};
use crate::document::FunctionDocument;
use crate::function::LATEST;
use crate::registry::RegistryError;
use crate::timefmt::{iso_timestamp, now_ms};
use crate::urls::{AuthType, Cors, InvokeMode, UrlConfig};

const BODY_MAX: usize = 64 * 1024;

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!("Request must be smaller than {BODY_MAX} bytes"))
}

#[derive(Deserialize)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlRequest {
    auth_type: Option<String>,
    cors: Option<Cors>,
    invoke_mode: Option<String>,
}

/// A URL request's settings, each checked: auth type, invoke mode, CORS.
type UrlSettings = (Option<AuthType>, Option<InvokeMode>, Option<Cors>);

impl UrlRequest {
    /// The settings given, each checked.
    fn checked(self) -> Result<UrlSettings, ApiError> {
        let auth = self.auth_type.as_deref().map(auth_type).transpose()?;
        let mode = self.invoke_mode.as_deref().map(invoke_mode).transpose()?;
        Ok((auth, mode, cors(self.cors)?))
    }
}

/// The function and the qualifier (`$LATEST`, or an alias) a URL request names.
fn target(scope: &Scope, raw: &str, query: QualifierQuery) -> Result<(String, String), ApiError> {
    let reference = super::function_ref(scope, raw)?;
    let qualifier = query
        .qualifier
        .filter(|q| !q.is_empty())
        .or(reference.qualifier)
        .unwrap_or_else(|| LATEST.to_string());
    let is_alias_name = crate::function::is_plain_name(&qualifier, 128)
        && !qualifier.bytes().all(|b| b.is_ascii_digit());
    if qualifier != LATEST && !is_alias_name {
        return Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
        )));
    }
    Ok((reference.name, qualifier))
}

fn auth_type(raw: &str) -> Result<AuthType, ApiError> {
    AuthType::parse(raw).ok_or_else(|| {
        ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{raw}' at 'authType' failed to satisfy constraint: \
             Member must satisfy enum value set: [NONE, AWS_IAM]"
        ))
    })
}

fn invoke_mode(raw: &str) -> Result<InvokeMode, ApiError> {
    InvokeMode::parse(raw).ok_or_else(|| {
        ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{raw}' at 'invokeMode' failed to satisfy constraint: \
             Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]"
        ))
    })
}

fn cors(raw: Option<Cors>) -> Result<Option<Cors>, ApiError> {
    if let Some(cors) = &raw {
        cors.validate().map_err(ApiError::InvalidParameterValue)?;
    }
    Ok(raw)
}

/// The port clients reach this server's API on (for the URLs it prints).
pub(super) fn public_port(state: &SharedState) -> u16 {
    state
        .public_addr
        .get()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(0)
}

/// The function's ARN as a URL's configuration shows it (qualified for an alias).
fn function_arn(scope: &Scope, name: &str, qualifier: &str) -> String {
    if qualifier == LATEST {
        scope.function_arn(name)
    } else {
        scope.qualified_arn(name, qualifier)
    }
}

/// A URL's configuration as the API shows it.
pub fn configuration(
    state: &SharedState,
    scope: &Scope,
    name: &str,
    qualifier: &str,
    url: &UrlConfig,
    with_modified: bool,
) -> Value {
    let mut out = json!({
        "FunctionUrl": crate::urls::url_of(&url.url_id, &scope.region, public_port(state)),
        "FunctionArn": function_arn(scope, name, qualifier),
        "AuthType": url.auth_type.as_str(),
        "CreationTime": iso_timestamp(url.created_ms),
        "InvokeMode": url.invoke_mode.as_str(),
    });
    if let Some(cors) = &url.cors {
        out["Cors"] = json!(cors);
    }
    if with_modified {
        out["LastModifiedTime"] = json!(iso_timestamp(url.modified_ms));
    }
    out
}

fn no_such_url() -> ApiError {
    ApiError::ResourceNotFound("The resource you requested does not exist.".into())
}

fn check_alias(
    doc: &FunctionDocument,
    scope: &Scope,
    qualifier: &str,
) -> Result<(), RegistryError> {
    if qualifier != LATEST && !doc.aliases.contains_key(qualifier) {
        return Err(RegistryError::Missing(format!(
            "Alias not found: {}",
            scope.qualified_arn(doc.name(), qualifier)
        )));
    }
    Ok(())
}

pub async fn create(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let (auth, mode, cors) = parse_json::<UrlRequest>(&body)?.checked()?;
    let auth = auth.ok_or_else(|| {
        ApiError::InvalidParameterValue(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: \
             Member must not be null"
                .into(),
        )
    })?;
    let arn = function_arn(&scope, &name, &qualifier);
    let (_, url) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            check_alias(doc, &scope, &qualifier)?;
            if doc.urls.contains_key(&qualifier) {
                return Err(RegistryError::Conflict(format!(
                    "Failed to create function url config for [functionArn = {arn}]. \
                     Error message:  FunctionUrlConfig exists for this Lambda function"
                )));
            }
            let now = now_ms();
            let url = UrlConfig {
                url_id: crate::urls::new_url_id(),
                auth_type: auth,
                cors,
                invoke_mode: mode.unwrap_or_default(),
                created_ms: now,
                modified_ms: now,
            };
            doc.urls.insert(qualifier.clone(), url.clone());
            Ok(url)
        })
        .await?;
    tracing::info!(function = %name, %qualifier, url_id = %url.url_id, auth = url.auth_type.as_str(), "function URL created");
    Ok((
        StatusCode::CREATED,
        Json(configuration(
            &state, &scope, &name, &qualifier, &url, false,
        )),
    )
        .into_response())
}

pub async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<Json<Value>, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let (_, document) = super::named_function(&state, &scope, &name)?;
    let url = document.urls.get(&qualifier).ok_or_else(no_such_url)?;
    Ok(Json(configuration(
        &state, &scope, &name, &qualifier, url, true,
    )))
}

pub async fn update(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let body = read_body(body, BODY_MAX, too_large).await?;
    let (auth, mode, cors) = parse_json::<UrlRequest>(&body)?.checked()?;
    let missing = no_such_url().to_string();
    let (_, url) = state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            check_alias(doc, &scope, &qualifier)?;
            let url = doc
                .urls
                .get_mut(&qualifier)
                .ok_or(RegistryError::Missing(missing))?;
            if let Some(auth) = auth {
                url.auth_type = auth;
            }
            if let Some(mode) = mode {
                url.invoke_mode = mode;
            }
            if cors.is_some() {
                url.cors = cors;
            }
            url.modified_ms = now_ms();
            Ok(url.clone())
        })
        .await?;
    tracing::info!(function = %name, %qualifier, "function URL updated");
    Ok(Json(configuration(
        &state, &scope, &name, &qualifier, &url, true,
    )))
}

pub async fn delete(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let (name, qualifier) = target(&scope, &raw, query)?;
    let missing = no_such_url().to_string();
    state
        .registry
        .modify(&scope.key(&name), scope.function_arn(&name), |doc| {
            doc.urls
                .remove(&qualifier)
                .map(|_| ())
                .ok_or(RegistryError::Missing(missing))
        })
        .await?;
    tracing::info!(function = %name, %qualifier, "function URL deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (name, document) = super::named_function(&state, &scope, &raw)?;
    let limit = max_items(query.max_items.as_deref())?.min(50);
    let page: Vec<(&String, &UrlConfig)> = document
        .urls
        .iter()
        .filter(|(qualifier, _)| {
            query
                .marker
                .as_deref()
                .is_none_or(|m| qualifier.as_str() > m)
        })
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| page[limit - 1].0.clone());
    let configs: Vec<Value> = page
        .into_iter()
        .take(limit)
        .map(|(qualifier, url)| configuration(&state, &scope, &name, qualifier, url, true))
        .collect();
    let mut out = json!({ "FunctionUrlConfigs": configs });
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(Json(out))
}
