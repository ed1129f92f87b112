//! The Invoke operation (`POST /2015-03-31/functions/{name}/invocations`): headers and
//! payload checked here, the invocation itself (sync, async or dry run) handed to the
//! invoke door.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use super::Scope;
use super::{ApiError, SharedState, read_body};
use crate::invoke::{Invocation, InvokeOutcome, Mode, Origin};

/// Lambda's quota for a synchronous request payload.
pub const PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
/// Lambda's quota for `X-Amz-Client-Context` (decoded).
const CLIENT_CONTEXT_MAX_BYTES: usize = 3583;

#[derive(Deserialize)]
pub struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The mode `X-Amz-Invocation-Type` and `X-Amz-Log-Type` ask for.
fn mode(headers: &HeaderMap) -> Result<Mode, ApiError> {
    let log_tail = wants_tail(headers)?;
    match header(headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Ok(Mode::Sync { log_tail }),
        Some("Event") => Ok(Mode::Async),
        Some("DryRun") => Ok(Mode::DryRun),
        Some(other) => Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: \
             Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ))),
    }
}

fn wants_tail(headers: &HeaderMap) -> Result<bool, ApiError> {
    match header(headers, "x-amz-log-type") {
        None | Some("None") => Ok(false),
        Some("Tail") => Ok(true),
        Some(other) => Err(ApiError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: \
             Member must satisfy enum value set: [None, Tail]"
        ))),
    }
}

fn client_context(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(encoded) = header(headers, "x-amz-client-context") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".into(),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid())?;
    if decoded.len() > CLIENT_CONTEXT_MAX_BYTES {
        return Err(ApiError::InvalidRequestContent(format!(
            "Client context must be smaller than {CLIENT_CONTEXT_MAX_BYTES} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&decoded).map_err(|_| invalid())?;
    if !value.is_object() {
        return Err(invalid());
    }
    // Re-serialised compactly: a valid header value with no line breaks.
    Ok(Some(value.to_string()))
}

pub async fn invoke(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = super::function_ref(&scope, &raw)?;
    let qualifier = query
        .qualifier
        .filter(|q| !q.is_empty())
        .or(reference.qualifier);
    let name = reference.name;
    if let Some(q) = qualifier.as_deref() {
        crate::function::validate_qualifier(q)?;
    }
    let mode = mode(&headers)?;
    let client_context = client_context(&headers)?;
    let (limit, operation) = match mode {
        Mode::Async => (state.async_payload_max, "InvokeAsync"),
        _ => (PAYLOAD_MAX_BYTES, "InvokeFunction"),
    };
    let payload = read_body(body, limit, || {
        ApiError::RequestTooLarge(format!(
            "Request must be smaller than {limit} bytes for the {operation} operation"
        ))
    })
    .await?;
    let invocation = Invocation::new(scope.owned_key(name), payload, mode, Origin::Api)
        .qualifier(qualifier)
        .trace_id(header(&headers, "x-amzn-trace-id").map(str::to_string))
        .client_context(client_context);
    let response = match state.invoke.invoke(invocation).await? {
        InvokeOutcome::Completed(response) => response,
        InvokeOutcome::Queued { request_id } => {
            let mut accepted = StatusCode::ACCEPTED.into_response();
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                accepted.headers_mut().insert("x-amzn-requestid", id);
            }
            return Ok(accepted);
        }
        InvokeOutcome::Validated => return Ok(StatusCode::NO_CONTENT.into_response()),
    };
    let mut http = (StatusCode::OK, response.payload).into_response();
    let out = http.headers_mut();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(version) = HeaderValue::from_str(&response.executed_version) {
        out.insert("x-amz-executed-version", version);
    }
    if let Ok(id) = HeaderValue::from_str(&response.request_id) {
        out.insert("x-amzn-requestid", id);
    }
    if let Some(kind) = response.function_error {
        out.insert("x-amz-function-error", HeaderValue::from_static(kind));
    }
    if let Some(tail) = response.log_tail {
        let encoded = base64::engine::general_purpose::STANDARD.encode(tail);
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            out.insert("x-amz-log-result", value);
        }
    }
    Ok(http)
}
