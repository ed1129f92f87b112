//! The Invoke operation (`POST /2015-03-31/functions/{name}/invocations`): headers and
//! payload checked here, the invocation itself delegated to the invoke service.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use super::{ApiError, SharedState, read_body};
use crate::invoke::{InvokeError, InvokeRequest};

/// Lambda's quota for a synchronous request payload.
pub const PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
/// Lambda's quota for `X-Amz-Client-Context` (decoded).
const CLIENT_CONTEXT_MAX_BYTES: usize = 3583;

#[derive(Deserialize)]
pub struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invocation_type(headers: &HeaderMap) -> Result<InvocationType, ApiError> {
    match header(headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Ok(InvocationType::RequestResponse),
        Some("Event") => Ok(InvocationType::Event),
        Some("DryRun") => Ok(InvocationType::DryRun),
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
    Path(raw): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = super::function_ref(&state, &raw)?;
    let qualifier = query
        .qualifier
        .filter(|q| !q.is_empty())
        .or(reference.qualifier);
    let name = reference.name;
    if let Some(q) = qualifier.as_deref() {
        crate::function::validate_qualifier(q)?;
    }
    let kind = invocation_type(&headers)?;
    let tail = wants_tail(&headers)?;
    let client_context = client_context(&headers)?;
    let (limit, operation) = match kind {
        InvocationType::Event => (state.async_payload_max, "InvokeAsync"),
        _ => (PAYLOAD_MAX_BYTES, "InvokeFunction"),
    };
    let payload = read_body(body, limit, || {
        ApiError::RequestTooLarge(format!(
            "Request must be smaller than {limit} bytes for the {operation} operation"
        ))
    })
    .await?;
    super::functions::resolve_version(&state, &raw, qualifier.clone())?;
    let payload = if payload.iter().all(u8::is_ascii_whitespace) {
        bytes::Bytes::from_static(b"{}")
    } else {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
            return Err(ApiError::InvalidRequestContent(format!(
                "Could not parse request body into json: Could not parse payload into json: {e}"
            )));
        }
        payload
    };
    match kind {
        InvocationType::DryRun => return Ok(StatusCode::NO_CONTENT.into_response()),
        InvocationType::Event => {
            // A full disk answers a clear 503 rather than SQLite's failure to write.
            state.disk.check(payload.len() as u64, "an async event")?;
            let request_id = uuid::Uuid::new_v4().to_string();
            state
                .dispatcher
                .accept(crate::store::events::NewEvent {
                    request_id: request_id.clone(),
                    function: name,
                    qualifier: qualifier.filter(|q| q != crate::function::LATEST),
                    payload: payload.to_vec(),
                    trace_id: header(&headers, "x-amzn-trace-id").map(str::to_string),
                    received_ms: crate::timefmt::now_ms(),
                })
                .await
                .map_err(ApiError::Service)?;
            let mut accepted = StatusCode::ACCEPTED.into_response();
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                accepted.headers_mut().insert("x-amzn-requestid", id);
            }
            return Ok(accepted);
        }
        InvocationType::RequestResponse => {}
    }
    let result = state
        .invoker
        .invoke(InvokeRequest {
            function_name: name,
            qualifier,
            payload,
            client_context,
            trace_id: header(&headers, "x-amzn-trace-id").map(str::to_string),
            want_log_tail: tail,
            request_id: None,
        })
        .await;
    let response = match result {
        Ok(response) => response,
        Err(InvokeError::NotFound(arn)) => {
            return Err(ApiError::ResourceNotFound(format!(
                "Function not found: {arn}"
            )));
        }
        Err(InvokeError::Throttled(throttle)) => {
            return Err(ApiError::TooManyRequests {
                reason: throttle.reason(),
                message: throttle.message().to_string(),
            });
        }
        Err(InvokeError::Internal(message)) => return Err(ApiError::Service(message)),
        Err(InvokeError::DiskFull(message)) => return Err(ApiError::Unavailable(message)),
        Err(e @ InvokeError::ShuttingDown) => return Err(ApiError::Unavailable(e.to_string())),
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
